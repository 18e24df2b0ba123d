/*
 * bench/filter_bench.c — the cost of each filter alone, in-process: the
 * filter chain's request and completion hooks run on a prepared request
 * (as the exchange calls them) for a million iterations, over 1024
 * distinct clients, and the time per request is reported against an empty
 * chain and against access_log's. No network: the figures are the
 * filters' own, free of the machine's I/O noise. See bench/run_filters.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "filters/filter.h"
#include "proxy/base/arena.h"
#include "proxy/base/http.h"

#define ITERATIONS 1000000
#define CLIENTS 1024

typedef struct variant {
    const char *name;
    const char *filters; /* YAML list items */
} variant_t;

static const variant_t variants[] = {
    { "none", "" },
    { "rate_limit", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m }\n" },
    { "rate_limit shadow", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m, mode: shadow }\n" },
    { "rate_limit cost+reconcile", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m, "
                                   "cost: 'header:x-cost', max_cost: 100, reconcile: 'header:x-used' }\n" },
    { "rate_limit plans (by claim)", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m, overrides: "
                                     "[{ name: pro, claim: { plan: pro }, limit: 1000000000, window: 1m }] }\n" },
    { "rate_limit on_limit: tag", "  - rate_limit: { key: client_address, limit: 1000000000, window: 1m, "
                                  "on_limit: tag }\n" },
    { "concurrency_limit", "  - concurrency_limit: { key: client_address, limit: 100000 }\n" },
    { "access_log", "  - access_log: { path: ACCESS_LOG }\n" },
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double run(const variant_t *v, const char *log_path)
{
    char yaml[2048], filters[1024];
    const char *at = strstr(v->filters, "ACCESS_LOG");
    if (at != NULL)
        snprintf(filters, sizeof(filters), "%.*s%s%s", (int)(at - v->filters), v->filters, log_path,
                 at + strlen("ACCESS_LOG"));
    else
        snprintf(filters, sizeof(filters), "%s", v->filters);
    snprintf(yaml, sizeof(yaml),
             "filters:\n%s"
             "listeners: [{ name: bench, listen: '127.0.0.1:1' }]\n"
             "routes: [{ name: all, cluster: backend }]\n"
             "clusters: [{ name: backend, endpoints: ['127.0.0.1:2'] }]\n",
             *filters ? filters : "  []\n");
    if (!*filters) /* an empty chain */
        snprintf(yaml, sizeof(yaml), "listeners: [{ name: bench, listen: '127.0.0.1:1' }]\n"
                                     "routes: [{ name: all, cluster: backend }]\n"
                                     "clusters: [{ name: backend, endpoints: ['127.0.0.1:2'] }]\n");
    tg_errors_t errs = { 0 };
    tg_config_t *cfg = tg_config_load_string("bench.yaml", yaml, strlen(yaml), tg_filters_registry(), &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        exit(1);
    }
    tg_errors_free(&errs);
    tg_filter_list_t none = { 0 };
    char addrs[CLIENTS][32];
    for (int i = 0; i < CLIENTS; i++)
        snprintf(addrs[i], sizeof(addrs[i]), "10.%d.%d.%d", i >> 16 & 255, i >> 8 & 255, i & 255);
    tg_arena_t arena;
    tg_arena_init(&arena);
    tg_response_t resp;
    memset(&resp, 0, sizeof(resp));
    double t0 = now_s();
    for (long n = 0; n < ITERATIONS; n++) {
        tg_request_t req;
        memset(&req, 0, sizeof(req));
        req.method = "GET";
        req.target = "/v1/items?page=2";
        req.version = 11;
        tg_headers_add(&req.headers, &arena, "host", 4, "api.example.com", 15);
        tg_headers_add(&req.headers, &arena, "user-agent", 10, "bench/1.0", 9);
        tg_headers_add(&req.headers, &arena, "x-cost", 6, "7", 1);
        tg_filter_exchange_t fx;
        memset(&fx, 0, sizeof(fx));
        fx.req = &req;
        fx.arena = &arena;
        fx.client_addr = addrs[n % CLIENTS];
        fx.route = "all";
        fx.gen = (uint64_t)n + 1;
        tg_headers_add(&fx.claims, &arena, "plan", 4, (n & 1) ? "pro" : "free", (n & 1) ? 3 : 4);
        tg_filters_on_request(&cfg->filters, &none, &fx, 0);
        tg_filter_record_t rec = {
            .route = "all", .method = "GET", .path = req.target, .protocol = "HTTP/1.1", .status = 200,
            .client_addr = fx.client_addr, .upstream = "127.0.0.1:2", .attempts = 1, .total_us = 250,
            .response_headers = &resp.headers, .response_trailers = &resp.trailers,
        };
        tg_filters_on_complete(&cfg->filters, &none, &fx, &rec);
        tg_arena_reset(&arena);
    }
    double ns = (now_s() - t0) * 1e9 / ITERATIONS;
    tg_arena_free(&arena);
    tg_config_unref(cfg);
    return ns;
}

int main(int argc, char **argv)
{
    const char *log_path = argc > 1 ? argv[1] : "/tmp/tollgate-filter-bench.log";
    double base = 0, logcost = 0, cost[sizeof(variants) / sizeof(variants[0])];
    size_t nv = sizeof(variants) / sizeof(variants[0]);
    for (int round = 0; round < 3; round++) /* the best of three: the least disturbed */
        for (size_t i = 0; i < nv; i++) {
            double ns = run(&variants[i], log_path);
            if (round == 0 || ns < cost[i])
                cost[i] = ns;
        }
    base = cost[0];
    logcost = cost[nv - 1] - base;
    printf("Filter hooks alone (request + completion), %d requests over %d clients, best of 3:\n\n", ITERATIONS,
           CLIENTS);
    printf("| filter | ns per request | over an empty chain (ns) | vs access_log |\n|---|---:|---:|---:|\n");
    for (size_t i = 0; i < nv; i++)
        printf("| %s | %.0f | %+.0f | %s%.2f |\n", variants[i].name, cost[i], cost[i] - base, "",
               logcost > 0 ? (cost[i] - base) / logcost : 0.0);
    remove(log_path);
    return 0;
}
