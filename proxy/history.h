/*
 * proxy/history.h — the last 15 minutes, kept in the process for the
 * status page and `tollgate ctl top`: per route and per cluster, a ring of
 * 10-second buckets (requests, 4xx, 5xx, aborted and the latency
 * histogram for a route; requests, connect failures, timeouts, resets and
 * the fewest endpoints up for a cluster), and the moments that explain
 * them: endpoint state changes and reloads.
 *
 * Nothing is added to the request path. Once a second the main thread
 * reads the workers' own counters (stats.h, the same sums /metrics makes)
 * and adds what changed since the last second into the current bucket; a
 * route whose request count did not move costs one sum. Series are kept
 * by name, so a route or cluster that keeps its name through a reload
 * keeps its history; names that leave the config are forgotten 15 minutes
 * later.
 *
 * Memory is fixed per series and allocated when it first sees traffic:
 * 5,760 bytes a route (90 buckets × 16 counters × 4 bytes), 2,160 a
 * cluster, at most `admin.history_routes` rings in all (the first to see
 * traffic take them); 512 events. Main thread only.
 */
#ifndef TG_PROXY_HISTORY_H
#define TG_PROXY_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/health.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"

struct evbuffer;

#define TG_HISTORY_BUCKET_MS 10000
#define TG_HISTORY_BUCKETS 90 /* 15 minutes */
#define TG_HISTORY_EVENTS 512

typedef struct tg_history tg_history_t;

/* max_rings: admin.history_routes (0: keep no series, events only). */
tg_history_t *tg_history_new(uint32_t max_rings);
void tg_history_free(tg_history_t *h);
void tg_history_set_max(tg_history_t *h, uint32_t max_rings);

/* The wall-clock milliseconds the history runs on: the real time at
 * tg_history_new plus the monotonic time since, so buckets never go back
 * when the clock is stepped. */
uint64_t tg_history_now(const tg_history_t *h);

/* Once a second: reads the counters and endpoint states the snapshot in
 * force names. */
void tg_history_tick(tg_history_t *h, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n, tg_health_t *health);

/* A reload took effect (a vertical line on the charts). */
void tg_history_reloaded(tg_history_t *h);

/* "history": {...} for /status.json: the last window_ms (at most 15
 * minutes) of each route and cluster the snapshot names, oldest bucket
 * first, the current (partial) bucket last, and the events in that
 * window. */
void tg_history_json(const tg_history_t *h, struct evbuffer *out, const tg_snapshot_t *s, uint64_t window_ms);

/* Bytes held (series, rings, events). */
size_t tg_history_bytes(const tg_history_t *h);

#endif
