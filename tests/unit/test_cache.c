/* Unit tests: the cache's rules (filters/cache_rfc.h) — Cache-Control of
 * requests and responses, the three HTTP-date forms, what a shared cache
 * may store, freshness lifetimes and ages, single byte ranges and entity
 * tag comparisons — and its store (filters/cache_store.h): variants by
 * Vary, the byte budget and LRU eviction, fills with waiters woken on
 * their worker, purges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "filters/cache_rfc.h"
#include "filters/cache_store.h"

static tg_cc_t cc_of(const char *v)
{
    tg_cc_t cc;
    tg_cc_init(&cc);
    tg_cc_parse(&cc, v, strlen(v));
    return cc;
}

static void test_cache_control(void **state)
{
    (void)state;
    tg_cc_t cc = cc_of("public, max-age=600, s-maxage=\"30\", stale-while-revalidate=5, stale-if-error=60");
    assert_true(cc.public_);
    assert_int_equal(cc.max_age, 600);
    assert_int_equal(cc.s_maxage, 30);
    assert_int_equal(cc.stale_while_revalidate, 5);
    assert_int_equal(cc.stale_if_error, 60);
    cc = cc_of("No-Store,PRIVATE=\"set-cookie, x\" , must-revalidate, proxy-revalidate, must-understand");
    assert_true(cc.no_store && cc.private_ && cc.must_revalidate && cc.proxy_revalidate && cc.must_understand);
    assert_int_equal(cc.max_age, TG_CC_ABSENT);
    /* the first of two copies counts; a malformed value is 0 (stale at once) */
    cc = cc_of("max-age=10, max-age=20");
    assert_int_equal(cc.max_age, 10);
    assert_int_equal(cc_of("max-age=ten").max_age, 0);
    assert_int_equal(cc_of("max-age").max_age, 0);
    assert_int_equal(cc_of("max-age=99999999999999999999").max_age, TG_CC_DELTA_MAX);
    /* request directives */
    cc = cc_of("max-stale, min-fresh=5, only-if-cached, no-cache");
    assert_int_equal(cc.max_stale, TG_CC_DELTA_MAX);
    assert_int_equal(cc.min_fresh, 5);
    assert_true(cc.only_if_cached && cc.no_cache);
    assert_int_equal(cc_of("max-stale=7").max_stale, 7);
    /* a quoted comma does not end a directive */
    cc = cc_of("no-cache=\"a, max-age=5\", max-age=9");
    assert_int_equal(cc.max_age, 9);
    assert_true(cc.no_cache);
}

static void test_http_dates(void **state)
{
    (void)state;
    const int64_t t = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(tg_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29), t);
    assert_int_equal(tg_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", 30), t);
    const char *asc = "Sun Nov  6 08:49:37 1994";
    assert_int_equal(tg_http_date_parse(asc, strlen(asc)), t);
    char out[30];
    tg_http_date_format(t, out);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    const char *bad[] = { "0", "-1", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 32 Nov 1994 08:49:37 GMT",
                          "Sun, 06 Xyz 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_http_date_parse(bad[i], strlen(bad[i])), -1);
    assert_int_equal(tg_http_delta_parse(" 42 ", 4), 42);
    assert_int_equal(tg_http_delta_parse("4x", 2), -1);
}

static void test_may_store(void **state)
{
    (void)state;
    tg_cc_t none = cc_of(""), fresh = cc_of("max-age=60");
    assert_true(tg_cache_may_store(200, &none, 0, 0));     /* heuristically cacheable */
    assert_false(tg_cache_may_store(302, &none, 0, 0));    /* not without freshness */
    assert_true(tg_cache_may_store(302, &fresh, 0, 0));
    assert_true(tg_cache_may_store(500, &none, 1, 0));     /* Expires makes any final status storable */
    assert_false(tg_cache_may_store(206, &fresh, 0, 0));
    assert_false(tg_cache_may_store(304, &fresh, 0, 0));
    assert_false(tg_cache_may_store(100, &fresh, 0, 0));
    tg_cc_t ns = cc_of("no-store, max-age=60"), pr = cc_of("private, max-age=60");
    assert_false(tg_cache_may_store(200, &ns, 0, 0));
    assert_false(tg_cache_may_store(200, &pr, 0, 0));
    tg_cc_t mu = cc_of("no-store, must-understand, max-age=60");
    assert_true(tg_cache_may_store(200, &mu, 0, 0));
    assert_false(tg_cache_may_store(418, &mu, 0, 0));      /* a status it does not understand */
    /* credentials (RFC 9111 3.5) */
    assert_false(tg_cache_may_store(200, &fresh, 0, 1));
    tg_cc_t pub = cc_of("public"), smax = cc_of("s-maxage=5"), mr = cc_of("must-revalidate, max-age=5");
    assert_true(tg_cache_may_store(200, &pub, 0, 1));
    assert_true(tg_cache_may_store(200, &smax, 0, 1));
    assert_true(tg_cache_may_store(200, &mr, 0, 1));
}

static void test_lifetime_and_age(void **state)
{
    (void)state;
    tg_cc_t both = cc_of("max-age=60, s-maxage=10"), ma = cc_of("max-age=60"), none = cc_of("");
    assert_int_equal(tg_cache_lifetime(&both, 200, 1000, 5000, -1, 3600), 10);
    assert_int_equal(tg_cache_lifetime(&ma, 200, 1000, 5000, -1, 3600), 60);
    assert_int_equal(tg_cache_lifetime(&none, 200, 1000, 1600, -1, 3600), 600);     /* Expires - Date */
    assert_int_equal(tg_cache_lifetime(&none, 200, 1000, 0, -1, 3600), 0);          /* in the past */
    assert_int_equal(tg_cache_lifetime(&none, 200, 100000, -1, 0, 3600), 3600);     /* a tenth, capped */
    assert_int_equal(tg_cache_lifetime(&none, 200, 1000, -1, 0, 3600), 100);
    assert_int_equal(tg_cache_lifetime(&none, 302, 1000, -1, 0, 3600), 0);          /* not heuristically */
    assert_int_equal(tg_cache_lifetime(&none, 200, 1000, -1, -1, 3600), 0);
    /* age: the larger of apparent age and Age plus the trip */
    assert_int_equal(tg_cache_initial_age(-1, 1000, 1000, 1000), 0);
    assert_int_equal(tg_cache_initial_age(30, 1000, 1000, 1002), 32);
    assert_int_equal(tg_cache_initial_age(-1, 990, 1000, 1000), 10);
    assert_int_equal(tg_cache_initial_age(-1, 2000, 1000, 1000), 0);               /* a Date in the future */
}

static void test_ranges(void **state)
{
    (void)state;
    uint64_t a, b;
#define R(v, size) tg_range_parse(v, strlen(v), size, &a, &b)
    assert_int_equal(R("bytes=0-9", 100), 1);
    assert_true(a == 0 && b == 9);
    assert_int_equal(R("bytes=90-200", 100), 1);
    assert_true(a == 90 && b == 99);
    assert_int_equal(R("bytes=-10", 100), 1);
    assert_true(a == 90 && b == 99);
    assert_int_equal(R("bytes=-1000", 100), 1);
    assert_true(a == 0 && b == 99);
    assert_int_equal(R("bytes=50-", 100), 1);
    assert_true(a == 50 && b == 99);
    assert_int_equal(R("bytes=100-", 100), -1);
    assert_int_equal(R("bytes=-0", 100), -1);
    assert_int_equal(R("bytes=0-0", 0), -1);
    assert_int_equal(R("bytes=0-1,4-5", 100), 0);    /* several: the whole */
    assert_int_equal(R("items=0-1", 100), 0);
    assert_int_equal(R("bytes=5-1", 100), 0);
    assert_int_equal(R("bytes=x-1", 100), 0);
    assert_int_equal(R("bytes=99999999999999999999999-", 100), 0);
#undef R
}

static int weak(const char *list, const char *tag)
{
    return tg_etag_match_weak(list, strlen(list), tag, tag ? strlen(tag) : 0);
}

static void test_etags(void **state)
{
    (void)state;
#define W(list, tag) weak(list, tag)
    assert_true(W("\"a\"", "\"a\""));
    assert_true(W("W/\"a\"", "\"a\""));
    assert_true(W("\"x\", W/\"a\"", "W/\"a\""));
    assert_false(W("\"b\"", "\"a\""));
    assert_true(W("*", "\"a\""));
    assert_true(W("*", NULL));
    assert_false(W("\"a\"", NULL));
    assert_false(W("a", "\"a\""));
#undef W
    assert_true(tg_etag_equal_strong("\"a\"", 3, "\"a\"", 3));
    assert_false(tg_etag_equal_strong("W/\"a\"", 5, "\"a\"", 3));
    assert_false(tg_etag_equal_strong("\"a\"", 3, "\"b\"", 3));
}

/* ---- the store ---- */

static int posted;
static uint64_t posted_gen;

static int fake_post(void *home, void (*fn)(tg_filter_exchange_t *fx, uint64_t gen), tg_filter_exchange_t *fx,
                     uint64_t gen)
{
    posted++;
    posted_gen = gen;
    return 0;
}

static const tg_filter_exchange_ops_t fake_ops = { .post = fake_post };

static void on_wake(tg_filter_exchange_t *fx, uint64_t gen)
{
}

static tg_headers_t headers_of(tg_header_t *v, size_t n)
{
    return (tg_headers_t){ v, n, n };
}

static tg_cache_entry_t *entry(const char *body, const char *variant)
{
    size_t n = strlen(body);
    tg_cache_body_t *b = tg_cache_body_new(n);
    memcpy(b->data, body, n);
    b->len = n;
    tg_header_t h[] = { { "Content-Type", 12, "text/plain", 10 }, { "ETag", 4, "\"v\"", 3 } };
    tg_headers_t hs = headers_of(h, 2);
    return tg_cache_entry_new(200, &hs, variant, strlen(variant), b);
}

/* An entry records, once, whether every stored field may be written as
 * it is: answers from it then skip the writers' per-field check. */
static void test_entry_fields_safe(void **state)
{
    (void)state;
    tg_cache_entry_t *e = entry("x", "");
    assert_true(e->fields_safe);
    tg_cache_entry_put(e);
    tg_header_t h[] = { { "A", 1, "ok", 2 }, { "B", 1, "bad\r\nX: 1", 10 } };
    tg_headers_t hs = headers_of(h, 2);
    e = tg_cache_entry_new(200, &hs, "", 0, NULL);
    assert_false(e->fields_safe);
    tg_cache_entry_put(e);
    tg_header_t n[] = { { "A b", 3, "ok", 2 } };
    hs = headers_of(n, 1);
    e = tg_cache_entry_new(200, &hs, "", 0, NULL);
    assert_false(e->fields_safe);
    tg_cache_entry_put(e);
}

static void test_store_variants(void **state)
{
    (void)state;
    tg_cache_store_t *s = tg_cache_store_new(1 << 20, 64 << 10, 4, on_wake);
    assert_non_null(s);
    tg_header_t en[] = { { "Accept-Language", 15, " en ", 4 } }, fr[] = { { "accept-language", 15, "fr", 2 } };
    tg_headers_t req_en = headers_of(en, 1), req_fr = headers_of(fr, 1), none = headers_of(NULL, 0);
    char v[TG_CACHE_VARIANT_MAX];
    int vl = tg_cache_variant("accept-language", &req_en, v);
    assert_int_equal(vl, 4);
    assert_memory_equal(v, "en,\n", 4);
    assert_int_equal(tg_cache_variant("*", &req_en, v), -1);
    assert_int_equal(tg_cache_variant(NULL, &req_en, v), 0);
    v[vl] = '\0';
    tg_cache_entry_t *e = entry("english", v);
    assert_non_null(e);
    assert_string_equal(e->headers[1].name, "etag"); /* stored lower-case */
    assert_int_equal(e->etag_len, 3);
    assert_int_equal(tg_cache_insert(s, "h/p", 3, "accept-language", e), 0);
    tg_cache_entry_t *got = tg_cache_lookup(s, "h/p", 3, &req_en);
    assert_ptr_equal(got, e);
    tg_cache_entry_put(got);
    assert_null(tg_cache_lookup(s, "h/p", 3, &req_fr));
    assert_null(tg_cache_lookup(s, "h/p", 3, &none));
    assert_null(tg_cache_lookup(s, "h/q", 3, &req_en));
    /* a response with another Vary drops the variants made under the old one */
    assert_int_equal(tg_cache_insert(s, "h/p", 3, NULL, entry("any", "")), 0);
    got = tg_cache_lookup(s, "h/p", 3, &req_en); /* one entry for any request now */
    assert_non_null(got);
    tg_cache_entry_put(got);
    got = tg_cache_lookup(s, "h/p", 3, &req_fr);
    assert_non_null(got);
    assert_memory_equal(got->body->data, "any", 3);
    tg_cache_entry_put(got);
    tg_cache_stats_t st;
    tg_cache_store_stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(tg_cache_purge_prefix(s, "H", "/p"), 1);
    assert_int_equal(tg_cache_purge_key(s, "h/p", 3), 0);
    tg_cache_store_stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    tg_cache_store_free(s);
}

static void test_store_budget(void **state)
{
    (void)state;
    /* one shard of 64 KiB: entries of about 5 KiB, the oldest go first */
    tg_cache_store_t *s = tg_cache_store_new(64 << 10, 64 << 10, 4, on_wake);
    static char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    tg_headers_t none = headers_of(NULL, 0);
    char key[32];
    for (int i = 0; i < 100; i++) {
        int kl = snprintf(key, sizeof(key), "h/k%d", i);
        assert_int_equal(tg_cache_insert(s, key, (size_t)kl, NULL, entry(big, "")), 0);
        if (i == 5) { /* k0 read: it moves to the front */
            tg_cache_entry_t *e = tg_cache_lookup(s, "h/k0", 4, &none);
            assert_non_null(e);
            tg_cache_entry_put(e);
        }
    }
    tg_cache_stats_t st;
    tg_cache_store_stats(s, &st);
    assert_true(st.bytes <= 64 << 10);
    assert_true(st.evictions >= 85);
    assert_null(tg_cache_lookup(s, "h/k1", 4, &none));
    tg_cache_entry_t *e = tg_cache_lookup(s, "h/k99", 5, &none);
    assert_non_null(e);
    /* a reader's reference outlives an eviction */
    for (int i = 100; i < 120; i++) {
        int kl = snprintf(key, sizeof(key), "h/k%d", i);
        tg_cache_insert(s, key, (size_t)kl, NULL, entry(big, ""));
    }
    assert_memory_equal(e->body->data, "xxxx", 4);
    tg_cache_entry_put(e);
    /* larger than the budget: refused */
    static char huge[70000];
    memset(huge, 'y', sizeof(huge) - 1);
    assert_int_equal(tg_cache_insert(s, "h/huge", 6, NULL, entry(huge, "")), -1);
    tg_cache_store_free(s);
}

static void test_store_fills(void **state)
{
    (void)state;
    tg_cache_store_t *s = tg_cache_store_new(1 << 20, 64 << 10, 4, on_wake);
    tg_headers_t none = headers_of(NULL, 0);
    tg_cache_fill_t *f1 = NULL, *f2 = NULL;
    assert_int_equal(tg_cache_begin(s, "h/a", 3, &none, &f1, NULL), TG_CACHE_FILL);
    assert_non_null(f1);
    /* a second request waits (or is told one runs) */
    assert_int_equal(tg_cache_begin(s, "h/a", 3, &none, &f2, NULL), TG_CACHE_BUSY);
    tg_filter_exchange_t fx1 = { .gen = 7, .ops = &fake_ops }, fx2 = { .gen = 8, .ops = &fake_ops };
    tg_cache_waiter_t w1 = { .waker = tg_filter_waker(&fx1) }, w2 = { .waker = tg_filter_waker(&fx2) };
    assert_int_equal(tg_cache_begin(s, "h/a", 3, &none, &f2, &w1), TG_CACHE_WAIT);
    assert_int_equal(tg_cache_begin(s, "h/a", 3, &none, &f2, &w2), TG_CACHE_WAIT);
    tg_cache_stats_t st;
    tg_cache_store_stats(s, &st);
    assert_int_equal(st.waiting, 2);
    /* one leaves (its timeout): it goes on by itself; leaving twice is harmless */
    assert_int_equal(tg_cache_wait_cancel(s, &w2), 1);
    assert_int_equal(tg_cache_wait_cancel(s, &w2), 0);
    posted = 0;
    tg_cache_fill_end(s, f1, 0);
    assert_int_equal(posted, 1);
    assert_int_equal(posted_gen, 7);
    assert_int_equal(tg_cache_wait_cancel(s, &w1), 0); /* woken: nothing to leave */
    tg_cache_store_stats(s, &st);
    assert_int_equal(st.waiting, 0);
    /* an unstorable answer marks the key pass: nobody waits on it */
    assert_int_equal(tg_cache_begin(s, "h/b", 3, &none, &f1, NULL), TG_CACHE_FILL);
    tg_cache_fill_end(s, f1, 1);
    assert_int_equal(tg_cache_begin(s, "h/b", 3, &none, &f1, &w1), TG_CACHE_PASS);
    /* until a storable one comes */
    assert_int_equal(tg_cache_insert(s, "h/b", 3, NULL, entry("b", "")), 0);
    assert_int_equal(tg_cache_begin(s, "h/b", 3, &none, &f1, NULL), TG_CACHE_FILL);
    /* a purge while a fill runs keeps the fill */
    assert_int_equal(tg_cache_purge_key(s, "h/b", 3), 1);
    tg_cache_fill_end(s, f1, 0);
    tg_cache_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_control), cmocka_unit_test(test_http_dates),
        cmocka_unit_test(test_may_store),     cmocka_unit_test(test_lifetime_and_age),
        cmocka_unit_test(test_ranges),        cmocka_unit_test(test_etags),
        cmocka_unit_test(test_store_variants), cmocka_unit_test(test_store_budget),
        cmocka_unit_test(test_store_fills),   cmocka_unit_test(test_entry_fields_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
