/* Micro-benchmark of route matching (bash bench/run_router.sh): ns per
 * request for the linear scan and the compiled router, with 10 to 100,000
 * routes, the request matching the last route — the linear scan's worst
 * case — on tables shaped as multi-tenant gateways have them: routes by
 * host (tenant) and path prefix, a few without a host. Built against the
 * Release library (build-release/libtollgate_core.a). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filters/filter.h"
#include "proxy/router.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* n routes: n/10 tenants (host t<i>.example.com), 10 path prefixes each. */
static tg_config_t *table(size_t n)
{
    size_t cap = 200 + n * 120, at = 0;
    char *y = malloc(cap);
    at += (size_t)snprintf(y + at, cap - at, "listeners: [{ name: l, listen: '127.0.0.1:1' }]\nroutes:\n");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(y + at, cap - at,
                               "  - { name: r%zu, cluster: c, match: { host: t%zu.example.com, path_prefix: /svc%zu/ } }\n",
                               i, i / 10, i % 10);
    at += (size_t)snprintf(y + at, cap - at, "clusters: [{ name: c, endpoints: ['127.0.0.1:9'] }]\n");
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("bench.yaml", y, at, tg_filters_registry(), &errs);
    for (size_t i = 0; i < errs.n && i < 3; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    tg_errors_free(&errs);
    free(y);
    return c;
}

int main(void)
{
    static const size_t sizes[] = { 10, 100, 1000, 10000, 100000 };
    printf("| routes | linear ns/request | compiled ns/request | compile ms | load (parse) ms |\n|---:|---:|---:|---:|---:|\n");
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        double t0 = now_ns();
        tg_config_t *c = table(n);
        double t1 = now_ns();
        if (c == NULL)
            return 1;
        tg_router_t *rt = tg_router_build(c);
        double t2 = now_ns();
        char host[64], target[64];
        snprintf(host, sizeof(host), "t%zu.example.com", (n - 1) / 10);
        snprintf(target, sizeof(target), "/svc%zu/items/42", (n - 1) % 10);
        tg_request_t req = { .method = "GET", .target = target, .path_len = strlen(target), .authority = host,
                             .version = 11 };
        tg_arena_t a;
        tg_arena_init(&a);
        const tg_route_conf_t *want = &c->routes[n - 1];
        long iters = n >= 10000 ? 2000 : 200000;
        double l0 = now_ns();
        for (long i = 0; i < iters; i++)
            if (tg_router_match(c, 0, &req, &a) != want)
                return 2;
        double l1 = now_ns();
        long fiters = 2000000;
        for (long i = 0; i < fiters; i++)
            if (tg_router_find(rt, 0, &req, &a) != want)
                return 3;
        double l2 = now_ns();
        printf("| %zu | %.0f | %.0f | %.1f | %.1f |\n", n, (l1 - l0) / iters, (l2 - l1) / fiters, (t2 - t1) / 1e6,
               (t1 - t0) / 1e6);
        tg_arena_free(&a);
        tg_router_free(rt);
        tg_config_unref(c);
    }
    return 0;
}
