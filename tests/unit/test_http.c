/* Unit tests: header lists and the proxy's header rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "proxy/base/http.h"

static void add(tg_headers_t *h, tg_arena_t *a, const char *n, const char *v)
{
    assert_int_equal(tg_headers_add(h, a, n, strlen(n), v, strlen(v)), 0);
}

/* tg_fmt_u64 against printf at every length and digit-pair boundary. */
static void test_fmt_u64(void **state)
{
    (void)state;
    char want[32], got[32];
    uint64_t v = 1, x = 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < 20; k++, v *= 10) {
        uint64_t probes[] = { v - 1, v, v + 1, v * 5 + 3, x % (v * 10 - 1) };
        for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
            memset(got, 'z', sizeof(got));
            size_t n = tg_fmt_u64(got, probes[i]);
            snprintf(want, sizeof(want), "%llu", (unsigned long long)probes[i]);
            assert_int_equal(n, strlen(want));
            assert_memory_equal(got, want, n);
            assert_int_equal(got[n], 'z'); /* nothing past its length */
        }
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    size_t n = tg_fmt_u64(got, UINT64_MAX);
    assert_int_equal(n, 20);
    assert_memory_equal(got, "18446744073709551615", 20);
}

/* tg_fmt_hex64 against printf: every nibble value in every place. */
static void test_fmt_hex64(void **state)
{
    (void)state;
    char want[32], got[20];
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int k = 0; k < 200; k++) {
        uint64_t probes[] = { x, (uint64_t)k * 0x1111111111111111ULL, ~x, x >> (k % 64) };
        for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
            memset(got, 'z', sizeof(got));
            tg_fmt_hex64(got, probes[i]);
            snprintf(want, sizeof(want), "%016llx", (unsigned long long)probes[i]);
            assert_memory_equal(got, want, 16);
            assert_int_equal(got[16], 'z');
        }
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    }
}

/* tg_ascii_lower against the byte rule: every length to 40, every byte
 * value at every place (the letters' edges '@', 'A', 'Z', '[' and bytes
 * with the high bit among them). */
static void test_ascii_lower(void **state)
{
    (void)state;
    static const unsigned char mix[14] = { 'A', 'z', '@', '[', 'Z', '`', 'a', '{', 0xc1, 0xda, 0x80, 0xff, '0', '.' };
    char src[48], got[48], want[48];
    for (size_t n = 0; n <= 40; n++)
        for (size_t at = 0; at < (n ? n : 1); at++)
            for (int c = 0; c < 256; c++) {
                for (size_t i = 0; i < n; i++)
                    src[i] = (char)mix[(i * 7 + n) % 14];
                if (n)
                    src[at] = (char)c;
                memset(got, 'q', sizeof(got));
                tg_ascii_lower(got, src, n);
                for (size_t i = 0; i < n; i++)
                    want[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
                assert_memory_equal(got, want, n);
                assert_int_equal(got[n], 'q');
            }
}

static void test_list_ops(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    for (int i = 0; i < 40; i++) /* grows past the first capacity */
        add(&h, &a, "X-Many", "v");
    add(&h, &a, "Content-Type", "text/plain");
    assert_int_equal(tg_headers_count(&h, "x-many"), 40);
    assert_string_equal(tg_headers_get(&h, "CONTENT-TYPE")->value, "text/plain");
    tg_headers_remove(&h, "x-many");
    assert_int_equal(h.n, 1);
    tg_headers_set(&h, &a, "content-type", "application/json");
    assert_int_equal(h.n, 1);
    assert_string_equal(tg_headers_get(&h, "content-type")->value, "application/json");
    assert_null(tg_headers_get(&h, "x-none"));
    tg_arena_free(&a);
}

static void test_join_list_lines(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    add(&h, &a, "Host", "x");
    add(&h, &a, "X-Forwarded-For", "6.6.6.6");
    add(&h, &a, "Accept", "*/*");
    add(&h, &a, "x-forwarded-for", "9.9.9.9, 10.0.0.1");
    add(&h, &a, "X-FORWARDED-FOR", "");
    assert_int_equal(tg_headers_join(&h, &a, "x-forwarded-for"), 0);
    assert_int_equal(h.n, 3);
    assert_string_equal(h.v[0].value, "x");
    assert_string_equal(h.v[1].value, "6.6.6.6, 9.9.9.9, 10.0.0.1, ");  /* in place of the first, in order */
    assert_int_equal(h.v[1].value_len, strlen(h.v[1].value));
    assert_string_equal(h.v[2].name, "Accept");
    assert_int_equal(tg_headers_join(&h, &a, "x-forwarded-for"), 0); /* one line: unchanged */
    assert_int_equal(tg_headers_join(&h, &a, "via"), 0);              /* none */
    assert_int_equal(h.n, 3);
    /* several names in one walk: each with two or more lines is joined */
    add(&h, &a, "Via", "1.1 a");
    add(&h, &a, "Forwarded", "for=1.2.3.4");
    add(&h, &a, "via", "1.1 b");
    add(&h, &a, "X-Forwarded-For", "7.7.7.7");
    static const tg_name_t lists[] = { TG_NAME("x-forwarded-for"), TG_NAME("forwarded"), TG_NAME("via") };
    assert_int_equal(tg_headers_join_each(&h, &a, lists, 3), 0);
    assert_int_equal(h.n, 5);
    assert_string_equal(tg_headers_get(&h, "x-forwarded-for")->value, "6.6.6.6, 9.9.9.9, 10.0.0.1, , 7.7.7.7");
    assert_string_equal(tg_headers_get(&h, "via")->value, "1.1 a, 1.1 b");
    assert_string_equal(tg_headers_get(&h, "forwarded")->value, "for=1.2.3.4");
    assert_int_equal(tg_headers_join_each(&h, &a, lists, 9), -1); /* more names than it takes */
    tg_arena_free(&a);
}

static void test_has_token(void **state)
{
    assert_true(tg_header_has_token("keep-alive, Upgrade", 19, "upgrade"));
    assert_true(tg_header_has_token(" close ", 7, "close"));
    assert_false(tg_header_has_token("upgraded", 8, "upgrade"));
    assert_false(tg_header_has_token("", 0, "close"));
}

static void test_hop_by_hop(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    add(&h, &a, "Connection", "keep-alive, X-Private");
    add(&h, &a, "X-Private", "secret");
    add(&h, &a, "Keep-Alive", "timeout=5");
    add(&h, &a, "Transfer-Encoding", "chunked");
    add(&h, &a, "TE", "trailers");
    add(&h, &a, "Upgrade", "websocket");
    add(&h, &a, "Proxy-Connection", "close");
    add(&h, &a, "Content-Length", "5");
    add(&h, &a, "Connection", "x-second");
    add(&h, &a, "X-Second", "1");
    add(&h, &a, "Accept", "*/*");
    tg_headers_strip_hop_by_hop(&h);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.v[0].name, "Accept");
    tg_arena_free(&a);
}

/* More Connection options than are read at once (32): every field they
 * name still goes, the others stay. */
static void test_hop_by_hop_many_options(void **state)
{
    (void)state;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    char opts[40 * 8] = "", name[16];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "%sX-O%d", i ? ", " : "", i);
        strcat(opts, name);
    }
    add(&h, &a, "Connection", opts);
    for (int i = 0; i < 40; i += 3) {
        snprintf(name, sizeof(name), "x-o%d", i);
        add(&h, &a, tg_arena_strndup(&a, name, strlen(name)), "v");
    }
    add(&h, &a, "X-O400", "kept");
    add(&h, &a, "Accept", "*/*");
    tg_headers_strip_hop_by_hop(&h);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.v[0].name, "X-O400");
    assert_string_equal(h.v[1].name, "Accept");
    tg_arena_free(&a);
}

static void test_rules(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    add(&h, &a, "x-remove", "1");
    add(&h, &a, "x-set", "old");
    add(&h, &a, "x-add", "first");
    tg_kv_t adds[] = { { "x-add", "second" } }, sets[] = { { "x-set", "new" } };
    char *removes[] = { "X-Remove" };
    tg_header_rules_t r = { adds, 1, sets, 1, removes, 1 };
    assert_int_equal(tg_headers_apply_rules(&h, &a, &r), 0);
    assert_null(tg_headers_get(&h, "x-remove"));
    assert_string_equal(tg_headers_get(&h, "x-set")->value, "new");
    assert_int_equal(tg_headers_count(&h, "x-add"), 2);
    tg_arena_free(&a);
}

static void test_reason(void **state)
{
    assert_string_equal(tg_http_reason(404), "Not Found");
    assert_string_equal(tg_http_reason(599), "Unknown");
    assert_true(tg_http_is_tchar('~'));
    assert_false(tg_http_is_tchar(' '));
    assert_false(tg_http_is_tchar(':'));
}

/* The one JSON string writer: '"' and '\\' escaped, control bytes and
 * DEL as \u00XX, UTF-8 as it is; a bounded copy cuts before an escape
 * that would not fit, never inside one. */
static void test_json_escape(void **state)
{
    char out[64];
    assert_int_equal(tg_json_escape(out, sizeof(out), "a\"b\\c\x01\x7f\n\xc3\xa9"), 27);
    assert_string_equal(out, "a\\\"b\\\\c\\u0001\\u007f\\u000a\xc3\xa9");
    assert_int_equal(tg_json_escape(out, 8, "abcdefghij"), 7);
    assert_string_equal(out, "abcdefg");
    assert_int_equal(tg_json_escape(out, 8, "abcd\x01"), 4); /* "\u0001" would not fit whole */
    assert_string_equal(out, "abcd");
    assert_int_equal(tg_json_escape(out, 1, "x"), 0);
    assert_string_equal(out, "");
}

/* A number JSON cannot say back (it overflows a double) is refused:
 * fuzz_jwks found 2.5e2222 read as inf (corpus/jwks/regress-number-overflow). */
static void test_json_numbers(void **state)
{
    (void)state;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t v;
    assert_int_equal(tg_json_parse("[1, -2.5e3, 0.0001, 1e-400]", 27, &a, &v), 0);
    assert_int_equal(v.n, 4);
    assert_true(v.items[1].num == -2500.0);
    assert_int_equal(tg_json_parse("[2.5e2222222222222222222222221]", 31, &a, &v), -1);
    assert_int_equal(tg_json_parse("-1e999", 6, &a, &v), -1);
    tg_arena_free(&a);
}

/* Number literals kept exact; \u escapes of surrogate pairs joined into
 * one 4-byte UTF-8 character, a lone surrogate refused; NUL refused
 * unless asked for (and never in keys). */
static void test_json_strings(void **state)
{
    (void)state;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t v;
    static const char big[] = "[9007199254740993]";
    assert_int_equal(tg_json_parse(big, sizeof(big) - 1, &a, &v), 0);
    assert_string_equal(v.items[0].str, "9007199254740993"); /* past 2^53: the literal says it exactly */
    assert_int_equal(v.items[0].len, 16);
    static const char pair[] = "\"a\\ud83d\\ude00b\"";
    assert_int_equal(tg_json_parse(pair, sizeof(pair) - 1, &a, &v), 0);
    assert_string_equal(v.str, "a\xf0\x9f\x98\x80" "b");
    assert_int_equal(v.len, 6);
    static const char lone_hi[] = "\"\\ud83dx\"", lone_lo[] = "\"\\ude00\"", hi_hi[] = "\"\\ud83d\\ud83d\"";
    assert_int_equal(tg_json_parse(lone_hi, sizeof(lone_hi) - 1, &a, &v), -1);
    assert_int_equal(tg_json_parse(lone_lo, sizeof(lone_lo) - 1, &a, &v), -1);
    assert_int_equal(tg_json_parse(hi_hi, sizeof(hi_hi) - 1, &a, &v), -1);
    static const char nul[] = "{\"k\": \"x\\u0000y\"}", nul_key[] = "{\"k\\u0000\": 1}";
    assert_int_equal(tg_json_parse(nul, sizeof(nul) - 1, &a, &v), -1);
    assert_int_equal(tg_json_parse_flags(nul, sizeof(nul) - 1, &a, &v, TG_JSON_NUL_OK), 0);
    assert_int_equal(v.items[0].len, 3);
    assert_memory_equal(v.items[0].str, "x\0y", 3);
    assert_int_equal(tg_json_parse_flags(nul_key, sizeof(nul_key) - 1, &a, &v, TG_JSON_NUL_OK), -1);
    tg_arena_free(&a);
}

static void test_addr_text(void **state)
{
    (void)state;
    char buf[64];
    static const uint8_t v4[][4] = { { 0, 0, 0, 0 }, { 255, 255, 255, 255 }, { 10, 1, 22, 3 }, { 127, 0, 0, 1 } };
    static const char *const want[] = { "0.0.0.0", "255.255.255.255", "10.1.22.3", "127.0.0.1" };
    for (size_t i = 0; i < 4; i++) {
        char ref[INET_ADDRSTRLEN];
        assert_string_equal(tg_addr_text(AF_INET, v4[i], buf, sizeof(buf)), want[i]);
        assert_string_equal(inet_ntop(AF_INET, v4[i], ref, sizeof(ref)), buf); /* as the C library writes it */
    }
    uint8_t v6[16] = { 0 };
    v6[15] = 1;
    assert_string_equal(tg_addr_text(AF_INET6, v6, buf, sizeof(buf)), "::1");
    assert_string_equal(tg_addr_text(0, v6, buf, sizeof(buf)), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_u64),
        cmocka_unit_test(test_fmt_hex64),
        cmocka_unit_test(test_ascii_lower),
        cmocka_unit_test(test_list_ops),
        cmocka_unit_test(test_join_list_lines),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_hop_by_hop_many_options),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_addr_text),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
