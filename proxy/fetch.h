/*
 * proxy/fetch.h — one HTTP request a worker sends on its own (not for a
 * client): through a cluster's balancer, health, pools, TLS and
 * protocol (its tg_upstream_ops_t), the whole answer read into memory up
 * to a bound. What filters' calls (filters/host.h: key sets, and the
 * auth calls to come) ride on; health probes stay their own (probe.c:
 * a new connection each time, their own verdict).
 *
 * A fetch tries the cluster's usable endpoints in balancer order (every
 * endpoint when none is usable), moving on after a connection that never
 * came up or a request the upstream refused unseen, up to three; it
 * fails on a timeout, a reset after the request went, a malformed answer
 * or one longer than max_body. Worker thread; the fetch holds a
 * reference to the snapshot it was started on.
 */
#ifndef TG_PROXY_FETCH_H
#define TG_PROXY_FETCH_H

#include "filters/host.h"
#include "proxy/worker.h"

typedef struct tg_fetch tg_fetch_t;

/* Starts c on worker w against snap's cluster c->cluster. cb runs later
 * on w's thread, once (never from inside this call); the fetch is gone
 * after it returns. NULL: out of memory (cb will not run). */
tg_fetch_t *tg_fetch_start(tg_worker_t *w, tg_snapshot_t *snap, const tg_filter_call_t *c, tg_filter_call_cb cb,
                           void *arg);
/* Stops a fetch before its callback ran: cb will not run. Worker thread. */
void tg_fetch_cancel(tg_fetch_t *f);

/* Per-worker: the fetches in flight, so that a worker's teardown ends
 * those nobody waits for (a mirror's copy, a background revalidation:
 * they outlive their exchange) with an error through their callbacks. */
extern const tg_worker_module_t tg_fetch_module;

#endif
