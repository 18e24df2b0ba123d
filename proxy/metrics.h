/*
 * proxy/metrics.h — renders /metrics in the Prometheus text exposition
 * format (version 0.0.4) by summing every worker's counters (stats.h) over
 * the routes, clusters/endpoints and listeners of the current snapshot.
 * Main thread; reads the workers' counters without stopping them.
 */
#ifndef TG_PROXY_METRICS_H
#define TG_PROXY_METRICS_H

#include <stdint.h>
#include <time.h>

#include "proxy/health.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"

struct evbuffer;

typedef struct tg_process_metrics {
    uint64_t reloads_ok, reloads_failed;
    time_t last_reload_ok;    /* start time until the first reload */
    time_t started;
    struct tg_tracer *tracer;  /* the span exporter (NULL: none) */
    struct tg_admin *admin;    /* the admin listener (NULL: none) */
    const atomic_uint *snapshots; /* configuration snapshots in memory (tg_registries_t) */
    const struct tg_registries *registries; /* slots numbered (NULL: none) */
    const struct tg_dns *dns;  /* endpoint names followed (NULL: none) */
    uint64_t dns_updates;      /* endpoint sets published because DNS answers changed */
    struct tg_shared *shared;  /* filters' shared objects: key sets by URL (NULL: none) */
} tg_process_metrics_t;

void tg_metrics_render(struct evbuffer *out, const tg_snapshot_t *snap, tg_worker_t *const *workers,
                       unsigned n_workers, const tg_process_metrics_t *pm, tg_health_t *health);

/* One counter of a route, endpoint or listener stats slot, summed over the
 * workers (offset: offsetof the counter in its stats struct). Main thread. */
uint64_t tg_metrics_sum_route(tg_worker_t *const *w, unsigned n, size_t slot, size_t offset);
uint64_t tg_metrics_sum_endpoint(tg_worker_t *const *w, unsigned n, size_t slot, size_t offset);
uint64_t tg_metrics_sum_listener(tg_worker_t *const *w, unsigned n, size_t slot, size_t offset);

#endif
