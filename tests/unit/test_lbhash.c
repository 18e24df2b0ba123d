/* Unit tests: consistent hashing (lb: ring_hash, maglev) — keys spread by
 * weight; the same key always maps to the same endpoint, whatever the
 * order endpoints are listed in; and when one of ten endpoints goes, the
 * keys that move are about the tenth that were on it (ring_hash: exactly
 * those; maglev: a little more), measured over 100,000 keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/lbhash.h"

#define KEYS 100000

static char ids[10][48];

static void members(tg_lbhash_member_t *m, size_t n, const uint32_t *weights)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "10.0.0.%zu:8000", i + 1);
        m[i] = (tg_lbhash_member_t){ ids[i], weights ? weights[i] : 1 };
    }
}

static uint64_t key(unsigned k)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "client-%u", k);
    return tg_lbhash_key(buf, (size_t)n);
}

static void spread(int maglev)
{
    tg_lbhash_member_t m[4];
    uint32_t w[4] = { 1, 1, 1, 3 };
    members(m, 4, w);
    tg_lbhash_t *t = tg_lbhash_build(m, 4, maglev);
    assert_non_null(t);
    unsigned count[4] = { 0 };
    for (unsigned k = 0; k < KEYS; k++)
        count[tg_lbhash_pick(t, key(k))]++;
    for (int i = 0; i < 3; i++) /* each a sixth, within a fifth of it */
        assert_true(count[i] > KEYS / 6 * 8 / 10 && count[i] < KEYS / 6 * 12 / 10);
    assert_true(count[3] > KEYS / 2 * 9 / 10 && count[3] < KEYS / 2 * 11 / 10); /* weight 3: half */
    tg_lbhash_free(t);
}

static void test_ring_spreads_by_weight(void **state)
{
    spread(0);
}

static void test_maglev_spreads_by_weight(void **state)
{
    spread(1);
}

/* Same endpoints in another order (a DNS answer reordered, a reload):
 * every key keeps its endpoint. */
static void order_free(int maglev)
{
    tg_lbhash_member_t m[10], r[10];
    members(m, 10, NULL);
    for (size_t i = 0; i < 10; i++)
        r[i] = m[9 - i];
    tg_lbhash_t *a = tg_lbhash_build(m, 10, maglev), *b = tg_lbhash_build(r, 10, maglev);
    for (unsigned k = 0; k < KEYS; k++)
        assert_string_equal(m[tg_lbhash_pick(a, key(k))].id, r[tg_lbhash_pick(b, key(k))].id);
    tg_lbhash_free(a);
    tg_lbhash_free(b);
}

static void test_order_does_not_matter(void **state)
{
    order_free(0);
    order_free(1);
}

/* One of ten endpoints goes: the share of keys that move. */
static double moved(int maglev)
{
    tg_lbhash_member_t m[10];
    members(m, 10, NULL);
    tg_lbhash_t *all = tg_lbhash_build(m, 10, maglev), *nine = tg_lbhash_build(m, 9, maglev); /* 10.0.0.10 gone */
    unsigned n = 0, on_gone = 0;
    for (unsigned k = 0; k < KEYS; k++) {
        size_t a = tg_lbhash_pick(all, key(k)), b = tg_lbhash_pick(nine, key(k));
        on_gone += a == 9;
        if (a != b)
            n++;
        if (a != b && a != 9 && !maglev) {
            tg_lbhash_free(all);
            tg_lbhash_free(nine);
            fail_msg("ring_hash moved a key that was not on the endpoint that went");
        }
    }
    tg_lbhash_free(all);
    tg_lbhash_free(nine);
        double share = (double)n / KEYS;
    printf("%s: %.2f%% of keys moved (%.2f%% were on the endpoint that went)\n", maglev ? "maglev" : "ring_hash",
           share * 100, (double)on_gone * 100 / KEYS);
    return share;
}

static void test_minimal_movement(void **state)
{
    double ring = moved(0), mag = moved(1);
    assert_true(ring > 0.07 && ring < 0.13);
    assert_true(mag > 0.07 && mag < 0.16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_spreads_by_weight),
        cmocka_unit_test(test_maglev_spreads_by_weight),
        cmocka_unit_test(test_order_does_not_matter),
        cmocka_unit_test(test_minimal_movement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
