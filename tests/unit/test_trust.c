/* Unit tests: the trust boundary (proxy/trust.c) — sanitizing incoming
 * headers, the client address behind trusted proxies, CIDR parsing — and
 * the egress check every writer applies (tg_http_field_safe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/trust.h"

static void add(tg_headers_t *h, tg_arena_t *a, const char *n, const char *v)
{
    assert_int_equal(tg_headers_add(h, a, n, strlen(n), v, strlen(v)), 0);
}

static tg_trust_t trust_of(const char *const *names, size_t n)
{
    static char *store[8];
    tg_trust_t t = { store, n };
    for (size_t i = 0; i < n; i++)
        store[i] = (char *)names[i];
    return t;
}

static void test_sanitize_removes(void **state)
{
    static const char *const names[] = { "x-forwarded-client-cert", "x-auth-identity" };
    tg_trust_t t = trust_of(names, 2);
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    add(&h, &a, "Host", "x");
    add(&h, &a, "X-Auth-Identity", "root");
    add(&h, &a, "x-forwarded-client-cert", "forged");
    add(&h, &a, "Connection", "keep-alive, X-Hop");
    add(&h, &a, "X-Hop", "1");
    add(&h, &a, "Keep-Alive", "timeout=5");
    add(&h, &a, "TE", "trailers");
    add(&h, &a, "Proxy-Connection", "x");
    add(&h, &a, "X-Kept", "yes");
    const char *why = NULL;
    assert_int_equal(tg_trust_sanitize_request(&t, &h, &why), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.v[0].name, "Host");
    assert_string_equal(h.v[1].name, "X-Kept");
    tg_arena_free(&a);
}

/* Regression: compaction overwrote a Connection header that came before
 * a kept one, so the header it named (later in the list) stayed. */
static void test_sanitize_connection_first(void **state)
{
    tg_trust_t t = trust_of(NULL, 0);
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    add(&h, &a, "Connection", "x-hop");
    add(&h, &a, "Host", "x");
    add(&h, &a, "Authorization", "Bearer t");
    add(&h, &a, "X-Hop", "1");
    const char *why = NULL;
    assert_int_equal(tg_trust_sanitize_request(&t, &h, &why), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(h.v[0].name, "Host");
    assert_string_equal(h.v[1].name, "Authorization");
    tg_arena_free(&a);
}

static void test_sanitize_refuses_protected_options(void **state)
{
    static const char *const names[] = { "x-auth-identity" };
    tg_trust_t t = trust_of(names, 1);
    static const char *const bad[] = { "host", "Content-Length", "close, transfer-encoding", "X-AUTH-IDENTITY",
                                       "a,host" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_arena_t a;
        tg_arena_init(&a);
        tg_headers_t h = { 0 };
        add(&h, &a, "Host", "x");
        add(&h, &a, "Connection", bad[i]);
        const char *why = NULL;
        assert_int_equal(tg_trust_sanitize_request(&t, &h, &why), -1);
        assert_non_null(why);
        tg_arena_free(&a);
    }
}

static void test_cidr(void **state)
{
    tg_cidr_t c[3];
    assert_int_equal(tg_parse_cidr("10.0.0.0/8", &c[0]), 0);
    assert_int_equal(tg_parse_cidr("2001:db8::/32", &c[1]), 0);
    assert_int_equal(tg_parse_cidr("192.168.1.7", &c[2]), 0);
    assert_true(tg_cidr_list_match(c, 3, "10.200.3.4"));
    assert_true(tg_cidr_list_match(c, 3, "::ffff:10.1.2.3")); /* IPv4-mapped */
    assert_true(tg_cidr_list_match(c, 3, "2001:db8:1::5"));
    assert_true(tg_cidr_list_match(c, 3, "192.168.1.7"));
    assert_false(tg_cidr_list_match(c, 3, "192.168.1.8"));
    assert_false(tg_cidr_list_match(c, 3, "11.0.0.1"));
    assert_false(tg_cidr_list_match(c, 3, "2001:db9::1"));
    assert_false(tg_cidr_list_match(c, 3, "not-an-address"));
    assert_false(tg_cidr_list_match(c, 0, "10.0.0.1"));
    tg_cidr_t x;
    assert_int_equal(tg_parse_cidr("10.0.0.1/8", &x), -1); /* host bits set */
    assert_int_equal(tg_parse_cidr("10.0.0.0/33", &x), -1);
    assert_int_equal(tg_parse_cidr("10.0.0.0/", &x), -1);
    assert_int_equal(tg_parse_cidr("10.0.0/8", &x), -1);
    assert_int_equal(tg_parse_cidr("", &x), -1);
    assert_int_equal(tg_parse_cidr("::/0", &x), 0);
    assert_int_equal(tg_parse_cidr("10.1.0.0/15", &x), -1); /* bit 15 (the 1 of 10.1) is a host bit */
    assert_int_equal(tg_parse_cidr("10.1.128.0/17", &x), 0);
    assert_true(tg_cidr_list_match(&x, 1, "10.1.200.1"));
    assert_false(tg_cidr_list_match(&x, 1, "10.1.100.1"));
}

static void test_client_addr(void **state)
{
    tg_cidr_t t[2];
    assert_int_equal(tg_parse_cidr("127.0.0.0/8", &t[0]), 0);
    assert_int_equal(tg_parse_cidr("10.0.0.0/8", &t[1]), 0);
    char out[64];
    /* an untrusted peer is the client, whatever it claims */
    tg_trust_client_addr(t, 2, "8.8.8.8", "1.2.3.4", out, sizeof(out));
    assert_string_equal(out, "8.8.8.8");
    /* a trusted peer: the rightmost untrusted address */
    tg_trust_client_addr(t, 2, "127.0.0.1", "6.6.6.6, 1.2.3.4, 10.9.9.9", out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4", out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    /* all trusted: the leftmost */
    tg_trust_client_addr(t, 2, "127.0.0.1", "10.0.0.1,10.0.0.2", out, sizeof(out));
    assert_string_equal(out, "10.0.0.1");
    /* no list, or garbage: the last hop we could read */
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4, evil\r\n", out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4, 10.0.0.0/8", out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4,,10.0.0.3", out, sizeof(out));
    assert_string_equal(out, "10.0.0.3");
    tg_trust_client_addr(t, 2, "127.0.0.1", " 2001:db8::1 ", out, sizeof(out));
    assert_string_equal(out, "2001:db8::1");
}

static void test_field_safe(void **state)
{
    assert_true(tg_http_field_safe("x-a", 3, "v a\tl", 5));
    assert_true(tg_http_field_safe("x-a", 3, "", 0));
    assert_true(tg_http_field_safe("x-a", 3, "caf\xc3\xa9", 5));
    assert_false(tg_http_field_safe("x-a", 3, "a\r\nb: c", 7));
    assert_false(tg_http_field_safe("x-a", 3, "a\nb", 3));
    assert_false(tg_http_field_safe("x-a", 3, "a\rb", 3));
    assert_false(tg_http_field_safe("x-a", 3, "a\0b", 3));
    assert_false(tg_http_field_safe("x-a", 3, "a\x7f", 2));
    assert_false(tg_http_field_safe("x-a", 3, "0123456789abcdef\x01", 17)); /* past the word-at-a-time part */
    assert_false(tg_http_field_safe("", 0, "v", 1));
    assert_false(tg_http_field_safe("x a", 3, "v", 1));
    assert_false(tg_http_field_safe("x:a", 3, "v", 1));
    assert_false(tg_http_field_safe("x\r\na", 4, "v", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize_removes),
        cmocka_unit_test(test_sanitize_connection_first),
        cmocka_unit_test(test_sanitize_refuses_protected_options),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_client_addr),
        cmocka_unit_test(test_field_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
