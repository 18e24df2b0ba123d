/*
 * proxy/health.h — endpoint health, shared by all workers: what active
 * checks found (run by the workers, probe.c) and passive outlier ejection
 * (reported by workers as exchanges end). One table per process, indexed
 * by the endpoint's registry slot, so an endpoint's state survives reloads.
 *
 * Concurrency: workers read atomics on the request path (no lock, no
 * read-modify-write); a write happens only when something changes: a
 * failure, the first success after failures, an ejection. An endpoint's
 * active-check streaks and counts are written by the one worker that
 * probes it (probe.c: its slot modulo the workers).
 */
#ifndef TG_PROXY_HEALTH_H
#define TG_PROXY_HEALTH_H

#include <stdatomic.h>
#include <stdint.h>

#include "proxy/base/chunks.h"
#include "proxy/cluster.h"
#include "proxy/stats.h"

struct event_base;
typedef struct tg_snapshot tg_snapshot_t;

typedef struct tg_endpoint_health {
    atomic_uint active_down;        /* active checks: 1 = unhealthy, 2 = new, not checked yet (TG_HEALTH_UNCHECKED) */
    atomic_uint failures;           /* consecutive passive failures */
    atomic_ullong ejected_until_ms; /* monotonic ms; 0: not ejected */
    atomic_uint ejections;          /* consecutive ejections: the backoff exponent */
    atomic_ullong ejections_total;
    tg_counter_t checks_ok, checks_failed; /* written by the endpoint's probing worker */
    atomic_uint connections;        /* open upstream connections, all workers (circuit breaking); kept on reset */
    atomic_uint inflight;           /* requests in flight to it, all workers (lb: least_request, peak_ewma) */
    atomic_ullong ewma_us;          /* lb: peak_ewma — response-head latency, a peak-sensitive moving average ... */
    atomic_ullong ewma_at_ms;       /* ... and when it was last updated (monotonic) */
    atomic_ullong since_ms;         /* slow_start: when it joined or came back from unhealthy (0: never ramps) */
    uint32_t streak_ok, streak_fail;       /* the probing worker's only */
} tg_endpoint_health_t;

/* By endpoint slot, in chunks made by the main thread when a slot is
 * first given out (tg_health_reserve), before any snapshot names it. */
typedef struct tg_health {
    atomic_ullong gen;         /* bumped whenever an endpoint's usability changes (tg_lb_view_t) */
    tg_chunks_t ep;
    tg_endpoint_health_t none; /* for a slot with no entry: cannot happen once reserved */
} tg_health_t;

tg_health_t *tg_health_new(void);
void tg_health_free(tg_health_t *h);
/* A new endpoint slot is about to be used: its entry exists from now on.
 * Main thread. 0, or -1 (out of memory). */
int tg_health_reserve(tg_health_t *h, size_t slot);

/* The health of the endpoint in this slot. Any thread. */
static inline tg_endpoint_health_t *tg_health_ep(tg_health_t *h, size_t slot)
{
    tg_endpoint_health_t *e = tg_chunks_peek(&h->ep, slot);
    return e != NULL ? e : &h->none;
}
/* The endpoint slot passes to a new endpoint (registry.h): what was known
 * of the old one is forgotten. Main thread. */
void tg_health_reset(tg_health_t *h, size_t slot);

/* A worker opened / closed an upstream connection to the endpoint in
 * this slot (one atomic add; connection events only, never per request). */
static inline void tg_health_conn_add(tg_health_t *h, size_t slot, int delta)
{
    atomic_fetch_add_explicit(&tg_health_ep(h, slot)->connections, (unsigned)delta, memory_order_relaxed);
}

static inline unsigned tg_health_connections(tg_health_t *h, size_t slot)
{
    return atomic_load_explicit(&tg_health_ep(h, slot)->connections, memory_order_relaxed);
}


/* lb: least_request — a request goes to (delta 1) or leaves (-1) the endpoint in this slot. */
static inline void tg_health_inflight_add(tg_health_t *h, size_t slot, int delta)
{
    atomic_fetch_add_explicit(&tg_health_ep(h, slot)->inflight, (unsigned)delta, memory_order_relaxed);
}

#define TG_HEALTH_UNCHECKED 2

/* Endpoints of c new to the process (ep->joined: a new DNS address, or one
 * a reload added) start their slow start now, and wait for their first
 * active check — which one success ends — when c has health checks and an
 * endpoint it had before is usable meanwhile (else they serve at once
 * rather than leave it with none). Main thread, before the set is
 * published (not at start-up: endpoints that all start together ramp
 * for nothing). */
void tg_health_hold_new(tg_health_t *h, const tg_cluster_t *c, uint64_t now_ms);

/* May requests go to this endpoint now (not down, not ejected)? */
int tg_health_usable(tg_health_t *h, size_t slot, uint64_t now_ms);

/* What an endpoint is now, for people: "up", "down" (failed by active
 * checks), "checking" (new, its first check not done) or "ejected"
 * (passive outlier detection; *left_ms until it is tried again). Any
 * thread. */
const char *tg_health_state(tg_health_t *h, size_t slot, uint64_t now_ms, uint64_t *left_ms);

/* Passive detection: an exchange with endpoint ep of cluster c succeeded
 * (ok: a response below 500) or failed (connect failure, 5xx, reset,
 * timeout). Ejects the endpoint after outlier.consecutive_failures in a
 * row, for base_ejection_time doubled per consecutive ejection (capped),
 * unless that would leave the cluster with no usable endpoint. */
void tg_health_report(tg_health_t *h, const tg_cluster_t *c, const tg_endpoint_t *ep, int ok, uint64_t now_ms);

/* The endpoints (indexes into c->endpoints) a request tries, in order:
 * those usable now (every one with ignore_health), rotated to start at
 * draw (tg_cluster_rr_next) modulo their number, each once. order has
 * room for c->n_endpoints; returns how many were written. */
size_t tg_health_order(tg_health_t *h, const tg_cluster_t *c, unsigned draw, int ignore_health, uint64_t now_ms,
                       size_t *order);

/* The first `max` entries of what tg_health_order gives, from a large
 * cluster's view v (c->views[worker]), rebuilt first if stale: O(log n)
 * when nothing changed (the weighted start is a binary search), O(n)
 * once after a change. Returns how many were written; *usable: how many
 * endpoints are usable (all of them with ignore_health). The worker's
 * thread. */
size_t tg_health_order_window(tg_health_t *h, const tg_cluster_t *c, tg_lb_view_t *v, unsigned draw,
                              int ignore_health, uint64_t now_ms, size_t *order, size_t max, size_t *usable);

/* Is endpoint index i in the view's usable list? (O(log n)) */
int tg_lb_view_has(const tg_lb_view_t *v, size_t i);

/* An endpoint's usability changed (health checks, ejection, reset). */
static inline void tg_health_changed(tg_health_t *h)
{
    atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
}

/* lb: least_request (ewma 0) or peak_ewma (1) — of order[a] and order[b]
 * (a != b, both < n), moves the cheaper to the front (ties: order[a]):
 * fewer requests in flight per unit of weight, or with ewma the latency
 * average (decayed for the time since it was measured) times (requests in
 * flight + 1) per unit of weight (an endpoint not measured yet costs
 * nothing: it is tried); the rest keeps its rotation for failover. */
void tg_health_least_first(tg_health_t *h, const tg_cluster_t *c, size_t *order, size_t n, size_t a, size_t b,
                           int ewma, uint64_t now_ms);

/* The same over all n endpoints of order (few of them: a scan costs less
 * than a second-best pick): the cheapest to the front, the first of the
 * rotation on ties. */
#define TG_LEAST_SCAN_MAX 4
void tg_health_least_of_all(tg_health_t *h, const tg_cluster_t *c, size_t *order, size_t n, int ewma,
                            uint64_t now_ms);

/* slow_start: the share of its weight (1/10 .. 1) the endpoint in slot
 * takes now, window_ms after it joined, came back from unhealthy or its
 * ejection ended. 1 with window_ms 0. */
double tg_health_ramp(tg_health_t *h, size_t slot, uint64_t window_ms, uint64_t now_ms);

/* slow_start with round_robin or random: walks order (n >= 2) and moves
 * to the front the first endpoint that a draw accepts with probability
 * its ramp (one not ramping always accepts); order stays if none does. */
void tg_health_slow_first(tg_health_t *h, const tg_cluster_t *c, size_t *order, size_t n, uint64_t rnd,
                          uint64_t now_ms);

/* lb: peak_ewma — an answer from the endpoint in slot took rtt_us to its
 * head: a slower one sets the average at once (the peak), a faster one
 * pulls it down with a weight that grows with the time since the last
 * update (decay about 2 s). Workers update without a lock: two at once,
 * and one of the two is kept. */
void tg_health_ewma_observe(tg_health_t *h, size_t slot, uint64_t rtt_us, uint64_t now_ms);


#endif
