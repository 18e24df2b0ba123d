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

/* a trusted peer, underscores allowed: only trust and hop-by-hop headers go */
static const tg_trust_peer_t open_peer = { 1, TG_UNDERSCORES_ALLOW };

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
    assert_int_equal(tg_trust_sanitize_request(&t, &h, &open_peer, &why), 0);
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
    assert_int_equal(tg_trust_sanitize_request(&t, &h, &open_peer, &why), 0);
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
        assert_int_equal(tg_trust_sanitize_request(&t, &h, &open_peer, &why), -1);
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
    tg_trust_client_addr(t, 2, "8.8.8.8", "1.2.3.4", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "8.8.8.8");
    /* a trusted peer: the rightmost untrusted address */
    tg_trust_client_addr(t, 2, "127.0.0.1", "6.6.6.6, 1.2.3.4, 10.9.9.9", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    /* all trusted: the leftmost */
    tg_trust_client_addr(t, 2, "127.0.0.1", "10.0.0.1,10.0.0.2", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "10.0.0.1");
    /* no list, or garbage: the last hop we could read */
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4, evil\r\n", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4, 10.0.0.0/8", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4,,10.0.0.3", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "10.0.0.3");
    tg_trust_client_addr(t, 2, "127.0.0.1", " 2001:db8::1 ", NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "2001:db8::1");
}

/* RFC 7239 Forwarded: the same walk over for= parameters; in `both` an
 * address is believed only where the two lists agree. */
static void test_client_addr_forwarded(void **state)
{
    tg_cidr_t t[2];
    assert_int_equal(tg_parse_cidr("127.0.0.0/8", &t[0]), 0);
    assert_int_equal(tg_parse_cidr("10.0.0.0/8", &t[1]), 0);
    char out[64];
    const tg_forwarded_mode_t F = TG_FORWARDED_RFC7239, B = TG_FORWARDED_BOTH;
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, "for=6.6.6.6, for=1.2.3.4;proto=https, for=10.0.0.9", F, out,
                         sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, "For=\"[2001:db8::17]:4711\";by=x", F, out, sizeof(out));
    assert_string_equal(out, "2001:db8::17");
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, "proto=http;for=\"1.2.3.4:80\"", F, out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    /* a quoted comma is not an element boundary */
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, "for=1.2.3.4;ext=\"a, for=9.9.9.9\"", F, out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    /* unknown, obfuscated, bare IPv6, no for=: the walk stops at the last address read */
    static const char *const stop[] = { "for=unknown", "for=_hidden", "for=2001:db8::1", "proto=http",
                                        "for=\"[2001:db8::1\"", "for=1.2.3.4:80:1", "for=" };
    for (size_t i = 0; i < sizeof(stop) / sizeof(stop[0]); i++) {
        tg_trust_client_addr(t, 2, "127.0.0.1", NULL, stop[i], F, out, sizeof(out));
        assert_string_equal(out, "127.0.0.1");
    }
    /* X-Forwarded-For is not read in this mode, nor Forwarded in the default one */
    tg_trust_client_addr(t, 2, "127.0.0.1", "6.6.6.6", NULL, F, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    tg_trust_client_addr(t, 2, "127.0.0.1", NULL, "for=6.6.6.6", TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1");
    /* both: in step from the right */
    tg_trust_client_addr(t, 2, "127.0.0.1", "9.9.9.9, 1.2.3.4, 10.0.0.1", "for=7.7.7.7, for=1.2.3.4, for=10.0.0.1", B,
                         out, sizeof(out));
    assert_string_equal(out, "1.2.3.4");
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4, 10.0.0.1", "for=6.6.6.6, for=10.0.0.1", B, out, sizeof(out));
    assert_string_equal(out, "10.0.0.1"); /* they disagree past the balancer: it stands */
    tg_trust_client_addr(t, 2, "127.0.0.1", "1.2.3.4", NULL, B, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1"); /* one list missing: nothing is believed */
    tg_trust_client_addr(t, 2, "127.0.0.1", "::1", "for=\"[0:0::1]\"", B, out, sizeof(out));
    assert_string_equal(out, "::1"); /* equal as addresses, not as text */
}

/* A chain deeper than the walk reads: it stops at the deepest hop held. */
static void test_client_addr_deep(void **state)
{
    tg_cidr_t t[1];
    assert_int_equal(tg_parse_cidr("10.0.0.0/8", &t[0]), 0);
    char xff[2048] = "6.6.6.6";
    for (int i = 0; i < 40; i++)
        snprintf(xff + strlen(xff), sizeof(xff) - strlen(xff), ", 10.0.0.%d", i);
    char out[64];
    tg_trust_client_addr(t, 1, "10.1.1.1", xff, NULL, TG_FORWARDED_XFF, out, sizeof(out));
    assert_string_equal(out, "10.0.0.8"); /* 32 hops from the right: 10.0.0.39 .. 10.0.0.8 */
}

/* Forwarding headers: from a trusted peer they pass (in their own
 * spelling); from anyone else they go. Names with '_': as the setting
 * says, and never as an alias of a trust header. */
static void test_sanitize_forwarding_and_underscores(void **state)
{
    static const char *const names[] = { "x-auth-identity" };
    tg_trust_t t = trust_of(names, 1);
    static const char *const fw[] = { "Forwarded", "X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Proto",
                                      "X-Forwarded-Port", "X-Original-URL", "X-Rewrite-URL", "X-Forwarded-For" };
    const size_t nfw = sizeof(fw) / sizeof(fw[0]);
    for (int trusted = 0; trusted < 2; trusted++) {
        for (int us = TG_UNDERSCORES_DROP; us <= TG_UNDERSCORES_ALLOW; us++) {
            tg_arena_t a;
            tg_arena_init(&a);
            tg_headers_t h = { 0 };
            for (size_t i = 0; i < nfw; i++)
                add(&h, &a, fw[i], "v");
            add(&h, &a, "X_Real_IP", "6.6.6.6");
            add(&h, &a, "X_Auth_Identity", "root");
            add(&h, &a, "x-auth_identity", "root");
            add(&h, &a, "X_Custom", "1");
            add(&h, &a, "Host", "x");
            tg_trust_peer_t p = { trusted, (tg_underscores_t)us };
            const char *why = NULL;
            assert_int_equal(tg_trust_sanitize_request(&t, &h, &p, &why), 0);
            size_t want = (trusted ? nfw : 0) + (us == TG_UNDERSCORES_ALLOW) + 1;
            assert_int_equal(h.n, want);
            for (size_t i = 0; i < h.n; i++) {
                assert_false(tg_trust_is_header(&t, h.v[i].name, h.v[i].name_len));
                assert_true(strchr(h.v[i].name, '_') == NULL || strcmp(h.v[i].name, "X_Custom") == 0);
            }
            tg_arena_free(&a);
        }
    }
    tg_arena_t a;
    tg_arena_init(&a);
    tg_headers_t h = { 0 };
    add(&h, &a, "Host", "x");
    add(&h, &a, "X_Custom", "1");
    tg_trust_peer_t p = { 0, TG_UNDERSCORES_REJECT };
    const char *why = NULL;
    assert_int_equal(tg_trust_sanitize_request(&t, &h, &p, &why), -1);
    assert_string_equal(why, "header name with an underscore");
    tg_arena_free(&a);
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
        cmocka_unit_test(test_client_addr_forwarded),
        cmocka_unit_test(test_client_addr_deep),
        cmocka_unit_test(test_sanitize_forwarding_and_underscores),
        cmocka_unit_test(test_field_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
