/*
 * proxy/status.h — what the admin listener shows people: /status.json (the
 * listeners, routes and clusters of the config in force with their
 * counters and each endpoint's health, for the status page and for
 * `tollgate ctl`), the endpoints as a text table, and the status page
 * itself (one HTML document with its style and script inline, allowed by
 * hash in a strict Content-Security-Policy). Main thread.
 */
#ifndef TG_PROXY_STATUS_H
#define TG_PROXY_STATUS_H

#include <stddef.h>

#include "proxy/health.h"
#include "proxy/history.h"
#include "proxy/metrics.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"

struct evbuffer;

/* Counters are totals since the slot was first used; the page turns two
 * reads into rates, ratios and percentiles of the interval between.
 * window_ms > 0 (?history=15m): also the last window_ms of history (hist
 * may be NULL: "history": null). */
void tg_status_json(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n,
                    const tg_process_metrics_t *pm, tg_health_t *h, const tg_history_t *hist, uint64_t window_ms);

/* One line per endpoint: cluster, address, state, requests, failures. */
void tg_status_endpoints_text(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n,
                              tg_health_t *h);

/* The page (built in: proxy/status_page.html), and in csp the value of
 * the Content-Security-Policy header it needs: nothing may load but the
 * inline script and style, allowed by their SHA-256, and fetches to this
 * origin. Returns -1 if csp is too small or the page has no script. */
const char *tg_status_page(size_t *len);
int tg_status_page_csp(char *csp, size_t cap);

#endif
