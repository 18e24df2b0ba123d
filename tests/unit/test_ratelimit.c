/* Unit tests: the sliding-window rate limiter with a fake clock —
 * boundaries, the weighted estimate across windows, several limits,
 * retry-after, expiry of idle keys, the max_keys bound under a flood of
 * new keys (limited keys are never evicted), and exactness under
 * concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "filters/ratelimit.h"

static int allow(tg_rl_table_t *t, const char *key, uint64_t now)
{
    tg_rl_result_t r;
    tg_rl_check(t, key, strlen(key), now, &r);
    return r.allowed;
}

static int burst(tg_rl_table_t *t, const char *key, uint64_t now, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += allow(t, key, now);
    return ok;
}

static void test_limit_boundary(void **state)
{
    tg_rl_limit_t l = { 10, 1000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, TG_RL_DEFAULT_MAX_KEYS);
    uint64_t base = 1000000; /* window-aligned */
    assert_int_equal(burst(t, "k", base, 10), 10);
    tg_rl_result_t r;
    tg_rl_check(t, "k", 1, base + 10, &r);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    /* the next window starts in 990 ms, and there the previous window's 10
     * weigh 9 or less from 100 ms in: 1090 ms, rounded up */
    assert_int_equal(r.retry_after_s, 2);
    assert_false(allow(t, "k", base + 1099));
    assert_true(allow(t, "k", base + 1100));
    /* other keys are independent */
    assert_int_equal(burst(t, "other", base, 10), 10);
    tg_rl_table_free(t);
}

static void test_sliding_estimate(void **state)
{
    tg_rl_limit_t l = { 10, 1000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, TG_RL_DEFAULT_MAX_KEYS);
    uint64_t base = 5000000;
    assert_int_equal(burst(t, "k", base + 900, 10), 10);
    /* new fixed window, but the last 1000 ms still hold 10: nothing passes */
    assert_int_equal(burst(t, "k", base + 1000, 5), 0);
    /* halfway: the previous window weighs 5, so 5 pass */
    assert_int_equal(burst(t, "k", base + 1500, 10), 5);
    /* two windows later everything is forgotten */
    assert_int_equal(burst(t, "k", base + 3000, 10), 10);
    tg_rl_table_free(t);
}

static void test_several_limits(void **state)
{
    tg_rl_limit_t l[2] = { { 3, 1000 }, { 5, 60000 } };
    tg_rl_table_t *t = tg_rl_table_new(l, 2, TG_RL_DEFAULT_MAX_KEYS);
    uint64_t base = 60000 * 100;
    assert_int_equal(burst(t, "k", base, 10), 3);            /* per-second limit */
    assert_int_equal(burst(t, "k", base + 2000, 10), 2);     /* per-minute limit has 2 left */
    tg_rl_result_t r;
    tg_rl_check(t, "k", 1, base + 4000, &r);
    assert_false(r.allowed);
    assert_int_equal(r.decisive, 1);
    assert_true(r.retry_after_s > 50 && r.retry_after_s <= 120);
    tg_rl_table_free(t);
}

static void test_remaining_and_reset(void **state)
{
    tg_rl_limit_t l = { 5, 10000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, TG_RL_DEFAULT_MAX_KEYS);
    tg_rl_result_t r;
    tg_rl_check(t, "k", 1, 100000 + 2500, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 4);
    assert_int_equal(r.reset_s, 8); /* 7.5 s left in the window, rounded up */
    tg_rl_table_free(t);
}

static void test_idle_keys_expire(void **state)
{
    tg_rl_limit_t l = { 1, 1000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, TG_RL_DEFAULT_MAX_KEYS);
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "client-%d", i);
        allow(t, key, 1000);
    }
    assert_int_equal(tg_rl_table_size(t), 20000);
    /* past twice the window, touching each shard drops its idle keys */
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "later-%d", i % 4096);
        allow(t, key, 10000);
    }
    assert_int_equal(tg_rl_table_size(t), 4096);
    tg_rl_table_free(t);
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    if (f != NULL)
        fclose(f);
    return kib;
}

/* A million distinct keys (a client inventing a new one per request):
 * the table never holds more than max_keys, and the process's memory
 * stays within what that many keys cost. */
static void test_max_keys_bounds_a_flood(void **state)
{
    tg_rl_limit_t l = { 1000000, 60000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, 10000);
    char key[64];
    long before = rss_kib();
    size_t peak = 0;
    for (int i = 0; i < 1000000; i++) {
        int n = snprintf(key, sizeof(key), "attacker-%d-padding-to-make-keys-longer", i);
        tg_rl_result_t r;
        tg_rl_check(t, key, (size_t)n, 5000 + (uint64_t)(i / 1000), &r);
        assert_false(r.table_full); /* idle keys make room */
        assert_true(r.allowed);
        if (tg_rl_table_size(t) > peak)
            peak = tg_rl_table_size(t);
    }
    long grown = rss_kib() - before;
    fprintf(stderr, "1M keys into max_keys 10000: peak %zu keys, RSS +%ld KiB\n", peak, grown);
    assert_true(peak <= 10000);
#ifndef __SANITIZE_ADDRESS__ /* ASan keeps freed memory in quarantine: RSS says nothing there */
    assert_true(grown < 10 * 1024); /* 10,000 keys of ~150 bytes; unbounded, 1M keys took > 100 MiB */
#endif
    tg_rl_table_free(t);
}

/* A key that is over its limit is never evicted to make room: that would
 * hand its owner a fresh budget. When only such keys remain, the table
 * is full for new keys. */
static void test_limited_keys_are_not_evicted(void **state)
{
    tg_rl_limit_t l = { 2, 60000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, 300);
    char key[32];
    /* 300 keys, each driven over its limit */
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        allow(t, key, 1000);
        allow(t, key, 1000);
        assert_false(allow(t, key, 1000));
    }
    assert_int_equal(tg_rl_table_size(t), 300);
    int full = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "new%d", i);
        tg_rl_result_t r;
        tg_rl_check(t, key, strlen(key), 2000, &r);
        full += r.table_full;
    }
    assert_true(full > 900); /* the few that fit found a shard with room before the bound was hit */
    for (int i = 0; i < 300; i++) { /* every limited key still remembers it */
        snprintf(key, sizeof(key), "k%d", i);
        assert_false(allow(t, key, 3000));
    }
    tg_rl_table_free(t);
}

typedef struct {
    tg_rl_table_t *t;
    int allowed;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    for (int i = 0; i < 20000; i++)
        h->allowed += allow(h->t, "shared", 777000 + (uint64_t)(i % 50));
    return NULL;
}

static void test_exact_under_concurrency(void **state)
{
    tg_rl_limit_t l = { 1000, 1000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, TG_RL_DEFAULT_MAX_KEYS);
    hammer_t h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer_t){ t, 0 };
        pthread_create(&th[i], NULL, hammer, &h[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += h[i].allowed;
    }
    assert_int_equal(total, 1000); /* 80,000 attempts in one window: exactly the limit */
    tg_rl_table_free(t);
}

/* A request of several units passes only if all fit, counts them all, and
 * reports what is left in units; a cost over the limit never passes. */
static void test_cost(void **state)
{
    tg_rl_limit_t l = { 10, 1000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, 100);
    tg_rl_result_t r;
    uint64_t now = 5000;
    tg_rl_check_cost(t, "k", 1, now, 4, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 6);
    tg_rl_check_cost(t, "k", 1, now, 4, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    tg_rl_check_cost(t, "k", 1, now, 4, &r); /* 8 + 4 > 10: refused, not counted */
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 2);
    assert_true(r.retry_after_s >= 1);
    tg_rl_check_cost(t, "k", 1, now, 2, &r); /* what is left still fits */
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    tg_rl_check_cost(t, "other", 5, now, 11, &r); /* more than the limit: never */
    assert_false(r.allowed);
    /* in the next window the weighted previous one still counts: at its
     * middle, 10 * 0.5 = 5 units are taken */
    tg_rl_check_cost(t, "k", 1, now + 1500, 5, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    tg_rl_table_free(t);
}

/* Reconciling: a charge corrected afterwards, in the window it went into,
 * up or down (never below zero); an unknown key is left alone. */
static void test_adjust(void **state)
{
    tg_rl_limit_t l = { 10, 1000 };
    tg_rl_table_t *t = tg_rl_table_new(&l, 1, 100);
    tg_rl_result_t r;
    tg_rl_check_cost(t, "k", 1, 5100, 8, &r); /* estimated 8 */
    assert_true(r.allowed);
    tg_rl_adjust(t, "k", 1, 5100, -6); /* it cost 2 */
    tg_rl_check_cost(t, "k", 1, 5200, 8, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    tg_rl_adjust(t, "k", 1, 5200, 5); /* it cost 13: over, the next is refused */
    tg_rl_check_cost(t, "k", 1, 5300, 1, &r);
    assert_false(r.allowed);
    tg_rl_adjust(t, "k", 1, 5300, -100); /* given back, not below zero */
    tg_rl_check_cost(t, "k", 1, 5400, 10, &r);
    assert_true(r.allowed);
    /* after the window rolled (lazily, at the next check), the charge is
     * corrected in the previous window: at 6500 it weighs half */
    tg_rl_check_cost(t, "k", 1, 6500, 1, &r); /* 10 * 0.5 + 1 */
    assert_int_equal(r.remaining, 4);
    tg_rl_adjust(t, "k", 1, 5400, -10);
    tg_rl_check_cost(t, "k", 1, 6500, 1, &r); /* 0 + 2 */
    assert_int_equal(r.remaining, 8);
    tg_rl_adjust(t, "k", 1, 1000, 50); /* windows long gone: nothing */
    tg_rl_adjust(t, "nobody", 6, 6500, 50);
    tg_rl_check_cost(t, "k", 1, 6500, 1, &r);
    assert_int_equal(r.remaining, 7);
    assert_int_equal(tg_rl_table_size(t), 1);
    tg_rl_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_boundary),
        cmocka_unit_test(test_sliding_estimate),
        cmocka_unit_test(test_several_limits),
        cmocka_unit_test(test_remaining_and_reset),
        cmocka_unit_test(test_idle_keys_expire),
        cmocka_unit_test(test_max_keys_bounds_a_flood),
        cmocka_unit_test(test_limited_keys_are_not_evicted),
        cmocka_unit_test(test_exact_under_concurrency),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_adjust),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
