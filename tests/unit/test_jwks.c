/* Unit tests: a remote key set's waits (filters/jwks.c) on a real loop,
 * its fetches answered by the test through the host's call hook. The
 * race it pins: a worker checked a token against set N, a fetch ended
 * (set N+1, which has the key) before the worker asked to wait — that
 * token must be checked again, not refused because a fetch just ran. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/event.h>

#include "filters/filter.h"
#include "filters/host.h"
#include "filters/jwks.h"
#include "proxy/base/clock.h"
#include "proxy/base/loop.h"

static const char JWKS[] = "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"k1\",\"use\":\"sig\",\"alg\":\"ES256\",\"crv\":\"P-256\","
                           "\"x\":\"DwLNSi0-acfJVkbg-v6DNBMqe8dIOeQvzoKC86_Gt7I\","
                           "\"y\":\"BUw1jAdxjY1UAU2rax6-uZCBzgj9A2AruBAMwfsn25Q\"}]}";

static struct {
    int calls;
    tg_filter_call_cb cb;
    void *arg;
    int posts;
} seen;

static int fake_call(const tg_filter_host_t *h, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg)
{
    (void)h;
    (void)c;
    seen.calls++;
    seen.cb = cb;
    seen.arg = arg;
    return 0;
}

static int fake_post(void *home, void (*fn)(tg_filter_exchange_t *fx, uint64_t gen), tg_filter_exchange_t *fx,
                     uint64_t gen)
{
    (void)home;
    (void)fn;
    (void)fx;
    (void)gen;
    seen.posts++;
    return 0;
}

static void on_woken(tg_filter_exchange_t *fx, uint64_t gen)
{
    (void)fx;
    (void)gen;
}

/* Runs the loop until the fetch is asked for (bounded: 10 s). */
static void run_until_call(tg_loop_t *l, int want)
{
    uint64_t end = tg_clock_us() + 10 * 1000000ull;
    while (seen.calls < want && tg_clock_us() < end)
        tg_loop_run(l, EVLOOP_ONCE);
    assert_int_equal(seen.calls, want);
}

static void answer(const char *body)
{
    tg_headers_t none = { 0 };
    tg_filter_call_result_t r = { .status = 200, .headers = &none, .trailers = &none, .body = body,
                                  .body_len = strlen(body) };
    seen.cb(seen.arg, &r);
}

static void test_wait_sees_newer_set(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof(seen));
    struct event_base *base = event_base_new();
    tg_loop_t *l = tg_loop_new(base);
    tg_shared_t *shared = tg_shared_new(base);
    assert_non_null(shared);
    tg_filter_host_t host = { .call = fake_call, .loop = l, .base = base, .shared = shared };
    tg_jwks_params_t p = { .cluster = "idp", .authority = "idp", .jwks_path = "/certs",
                           .min_refresh_ms = 300000, .max_refresh_ms = 600000, .max_stale_ms = 3600000,
                           .refetch_interval_ms = 60000, .startup_wait_ms = 100, .timeout_ms = 1000 };
    tg_jwks_remote_t *r = tg_jwks_remote_get(&host, "http://idp/certs", &p);
    assert_non_null(r);
    run_until_call(l, 1); /* the first fetch */
    uint64_t before = tg_jwks_remote_generation(r, tg_clock_ms());
    answer(JWKS);
    uint64_t now = tg_clock_ms(), gen = tg_jwks_remote_generation(r, now);
    assert_true(gen != before && gen != 0); /* the set is in force */

    static const tg_filter_exchange_ops_t ops = { .post = fake_post };
    tg_filter_exchange_t fx;
    memset(&fx, 0, sizeof(fx));
    fx.ops = &ops;
    fx.gen = 7;
    /* checked against the set before it: checked again at once, no fetch */
    assert_int_equal(tg_jwks_remote_wait(r, TG_JWKS_UNKNOWN_KID, before, &fx, on_woken, now), 1);
    assert_int_equal(seen.posts, 1);
    /* checked against the set in force, a fetch just ran: refused (no
     * refetch within refetch_interval), nothing posted, nothing fetched */
    assert_int_equal(tg_jwks_remote_wait(r, TG_JWKS_UNKNOWN_KID, gen, &fx, on_woken, now), 0);
    assert_int_equal(tg_jwks_remote_wait(r, TG_JWKS_UNKNOWN_KID, TG_JWKS_GEN_UNSEEN, &fx, on_woken, now), 0);
    assert_int_equal(seen.posts, 1);
    /* once refetch_interval has passed: one fetch, the caller waits on it */
    assert_int_equal(tg_jwks_remote_wait(r, TG_JWKS_UNKNOWN_KID, gen, &fx, on_woken, now + 60000), 1);
    run_until_call(l, 2);
    assert_int_equal(seen.posts, 1);
    answer(JWKS); /* the fetch ends: its waiter is woken */
    assert_int_equal(seen.posts, 2);
    assert_true(tg_jwks_remote_generation(r, tg_clock_ms()) != gen);

    tg_jwks_remote_put(&host, r);
    for (int i = 0; i < 10; i++)
        tg_loop_run(l, EVLOOP_NONBLOCK); /* the deferred destroy */
    tg_shared_close(shared);
    tg_shared_free(shared);
    tg_loop_free(l);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_sees_newer_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
