/*
 * Unit tests of the limiting filters' refusal recorder (filters/limited.h):
 * how keys are shown (plain, truncated, hashed; never raw when hashed),
 * one row per key across workers, the last minute only, the top 20, and
 * the space-saving rule that keeps a busy key listed through a churn of
 * others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>

#include "filters/limited.h"
#include "proxy/base/arena.h"
#include "proxy/base/json.h"

typedef struct listing {
    tg_arena_t a;
    tg_json_t doc;
    const tg_json_t *rows;
} listing_t;

/* The recorder's JSON at now, parsed. */
static void list(tg_limited_t *l, uint64_t now, listing_t *out)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{");
    tg_limited_json(l, b, now);
    evbuffer_add_printf(b, "}");
    size_t n = evbuffer_get_length(b);
    tg_arena_init(&out->a);
    assert_int_equal(tg_json_parse((const char *)evbuffer_pullup(b, -1), n, &out->a, &out->doc), 0);
    evbuffer_free(b);
    out->rows = tg_json_get(&out->doc, "limited");
    assert_non_null(out->rows);
    assert_int_equal(out->rows->t, TG_JSON_ARR);
}

static const char *key_at(const listing_t *x, size_t i)
{
    return tg_json_get_str(&x->rows->items[i], "key");
}

static double refusals_at(const listing_t *x, size_t i)
{
    return tg_json_get(&x->rows->items[i], "refusals")->num;
}

static void note(tg_limited_t *l, unsigned worker, const char *key, uint64_t now)
{
    tg_limited_note(l, worker, key, strlen(key), "default", now);
}

static void test_plain_merged_across_workers(void **state)
{
    (void)state;
    tg_limited_t *l = tg_limited_new(TG_SHOW_KEYS_PLAIN);
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++)
        note(l, 0, "10.0.0.1", t);
    for (int i = 0; i < 2; i++)
        note(l, 9, "10.0.0.1", t + 1); /* worker 9 shares stripe 1 */
    note(l, 1, "10.0.0.2", t + 2);
    tg_limited_note(l, 1, "10.0.0.1", 8, "pro", t + 3); /* another plan: its own row */
    listing_t x;
    list(l, t + 10, &x);
    assert_int_equal(x.rows->n, 3);
    assert_string_equal(key_at(&x, 0), "10.0.0.1");
    assert_int_equal(refusals_at(&x, 0), 5);
    assert_string_equal(tg_json_get_str(&x.rows->items[0], "plan"), "default");
    assert_int_equal(refusals_at(&x, 1), 1);
    assert_int_equal(tg_json_get(&x.rows->items[0], "last_ms_ago")->num, 9);
    tg_arena_free(&x.a);
    /* the last minute only: a minute later nobody is listed */
    list(l, t + 70000, &x);
    assert_int_equal(x.rows->n, 0);
    tg_arena_free(&x.a);
    tg_limited_unref(l);
}

static void test_shown_forms(void **state)
{
    (void)state;
    static const char key[] = "203.0.113.7\x1fsk-live-\xc3\xa9secret";
    tg_limited_t *plain = tg_limited_new(TG_SHOW_KEYS_PLAIN), *trunc = tg_limited_new(TG_SHOW_KEYS_TRUNCATE),
                 *hash = tg_limited_new(TG_SHOW_KEYS_HASH);
    tg_limited_t *all[] = { plain, trunc, hash };
    for (size_t i = 0; i < 3; i++)
        tg_limited_note(all[i], 0, key, sizeof(key) - 1, NULL, 5000);
    listing_t x;
    list(plain, 5000, &x);
    assert_string_equal(key_at(&x, 0), "203.0.113.7 | sk-live-%C3%A9secret"); /* bytes past ASCII escaped */
    tg_arena_free(&x.a);
    list(trunc, 5000, &x);
    assert_string_equal(key_at(&x, 0), "203.... | sk-l...");
    tg_arena_free(&x.a);
    list(hash, 5000, &x);
    const char *h = key_at(&x, 0);
    assert_int_equal(strlen(h), 17);
    assert_memory_equal(h, "hash:", 5);
    assert_null(strstr(h, "sk-live"));
    char first[32];
    snprintf(first, sizeof(first), "%s", h);
    tg_arena_free(&x.a);
    tg_limited_note(hash, 3, key, sizeof(key) - 1, NULL, 5001); /* the same key: the same hash, one row */
    list(hash, 5001, &x);
    assert_int_equal(x.rows->n, 1);
    assert_string_equal(key_at(&x, 0), first);
    assert_int_equal(refusals_at(&x, 0), 2);
    tg_arena_free(&x.a);
    /* a long key is cut, marked */
    char longkey[300];
    memset(longkey, 'k', sizeof(longkey));
    tg_limited_note(plain, 0, longkey, sizeof(longkey), NULL, 5000);
    list(plain, 5000, &x);
    const char *cut = key_at(&x, 0)[0] == 'k' ? key_at(&x, 0) : key_at(&x, 1);
    assert_true(strlen(cut) < 72);
    assert_string_equal(cut + strlen(cut) - 3, "...");
    tg_arena_free(&x.a);
    for (size_t i = 0; i < 3; i++)
        tg_limited_unref(all[i]);
}

static void test_top_and_space_saving(void **state)
{
    (void)state;
    tg_limited_t *l = tg_limited_new(TG_SHOW_KEYS_PLAIN);
    uint64_t t = 20000000;
    char k[32];
    for (int i = 0; i < TG_LIMITED_KEYS; i++) { /* a full stripe of keys refused once */
        snprintf(k, sizeof(k), "once-%d", i);
        note(l, 0, k, t);
    }
    for (int i = 0; i < 100; i++) /* a busy key arrives: it takes the place of one refused once ... */
        note(l, 0, "busy", t + 1);
    for (int i = 0; i < 500; i++) { /* ... and stays through a churn of others */
        snprintf(k, sizeof(k), "churn-%d", i);
        note(l, 0, k, t + 2);
    }
    listing_t x;
    list(l, t + 3, &x);
    assert_int_equal(x.rows->n, TG_LIMITED_TOP);
    assert_string_equal(key_at(&x, 0), "busy");
    assert_true(refusals_at(&x, 0) >= 100);
    assert_true(tg_json_get(&x.rows->items[0], "estimated")->num == 1); /* it inherited a count */
    for (size_t i = 1; i < x.rows->n; i++)
        assert_true(refusals_at(&x, i) <= refusals_at(&x, i - 1)); /* most first */
    tg_arena_free(&x.a);
    /* NULL (a config never started) is a no-op */
    tg_limited_note(NULL, 0, "x", 1, NULL, t);
    tg_limited_unref(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_merged_across_workers),
        cmocka_unit_test(test_shown_forms),
        cmocka_unit_test(test_top_and_space_saving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
