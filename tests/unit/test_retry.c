/* Unit tests: retry policy helpers — full-jitter backoff bounds, status
 * conditions, methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "filters/retry.h"

static void test_backoff_full_jitter(void **state)
{
    tg_retry_policy_t p = { .base_ms = 25, .max_ms = 1000 };
    uint64_t caps[] = { 25, 50, 100, 200, 400, 800, 1000, 1000 };
    for (unsigned n = 1; n <= 8; n++) {
        uint64_t lo = UINT64_MAX, hi = 0, x = 88172645463325252ULL;
        for (int i = 0; i < 20000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint64_t b = tg_retry_backoff_ms(&p, n, x);
            lo = b < lo ? b : lo;
            hi = b > hi ? b : hi;
        }
        assert_int_equal(lo, 0);             /* full jitter reaches zero... */
        assert_int_equal(hi, caps[n - 1]);   /* ...and the capped exponential bound, never more */
    }
}

static void test_conditions(void **state)
{
    tg_retry_policy_t p = { .on = TG_RETRY_503 | TG_RETRY_GRPC_UNAVAILABLE };
    assert_true(tg_retry_on_status(&p, 503, NULL));
    assert_false(tg_retry_on_status(&p, 502, NULL));
    assert_false(tg_retry_on_status(&p, 200, NULL));
    assert_true(tg_retry_on_status(&p, 200, "14"));
    assert_false(tg_retry_on_status(&p, 200, "4"));
    assert_false(tg_retry_on_status(&p, 200, "0"));
}

static void test_methods(void **state)
{
    char *m[] = { "GET", "PUT" };
    tg_retry_policy_t p = { .methods = m, .n_methods = 2 };
    assert_true(tg_retry_method_allowed(&p, "GET"));
    assert_false(tg_retry_method_allowed(&p, "POST"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_full_jitter),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
