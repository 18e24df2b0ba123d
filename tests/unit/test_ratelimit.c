/* Unit tests: the sliding-window rate limiter with a fake clock —
 * boundaries, the weighted estimate across windows, several limits,
 * retry-after, expiry of idle keys, and exactness under concurrency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
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
    tg_rl_table_t *t = tg_rl_table_new(&l, 1);
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
    tg_rl_table_t *t = tg_rl_table_new(&l, 1);
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
    tg_rl_table_t *t = tg_rl_table_new(l, 2);
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
    tg_rl_table_t *t = tg_rl_table_new(&l, 1);
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
    tg_rl_table_t *t = tg_rl_table_new(&l, 1);
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
    tg_rl_table_t *t = tg_rl_table_new(&l, 1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_boundary),
        cmocka_unit_test(test_sliding_estimate),
        cmocka_unit_test(test_several_limits),
        cmocka_unit_test(test_remaining_and_reset),
        cmocka_unit_test(test_idle_keys_expire),
        cmocka_unit_test(test_exact_under_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
