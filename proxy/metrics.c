/*
 * proxy/metrics.c — see metrics.h. Names start with tollgate_; counters
 * end in _total; durations are _seconds histograms; labels are listener,
 * route, cluster, endpoint and code class — never paths or client data.
 */
#include "proxy/metrics.h"

#include <event2/buffer.h>
#include <string.h>

#include "filters/filter.h"
#include "proxy/admin.h"
#include "proxy/base/clock.h"
#include "proxy/dns.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "proxy/trace.h"
#include "tls/context.h"

static void family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values here are config names and host:port strings; escape the
 * three characters the format reserves anyway. */
static void label_value(struct evbuffer *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

/* One counter (at offset in a table's entry) summed over the workers;
 * a worker that never counted for the slot adds nothing. */
static uint64_t sum(tg_worker_t *const *w, unsigned n, tg_stats_table_t table, size_t slot, size_t offset)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < n; i++) {
        const char *e = tg_stats_peek(tg_worker_stats(w[i]), table, slot);
        if (e != NULL)
            t += tg_counter_get((tg_counter_t *)(e + offset));
    }
    return t;
}

uint64_t tg_metrics_sum_route(tg_worker_t *const *w, unsigned n, size_t slot, size_t offset)
{
    return sum(w, n, TG_STATS_ROUTE, slot, offset);
}

uint64_t tg_metrics_sum_endpoint(tg_worker_t *const *w, unsigned n, size_t slot, size_t offset)
{
    return sum(w, n, TG_STATS_ENDPOINT, slot, offset);
}

uint64_t tg_metrics_sum_listener(tg_worker_t *const *w, unsigned n, size_t slot, size_t offset)
{
    return sum(w, n, TG_STATS_LISTENER, slot, offset);
}

static void render_listeners(struct evbuffer *out, const tg_config_t *c, const tg_snapshot_t *s,
                             tg_worker_t *const *w, unsigned n)
{
    static const struct { const char *name, *type, *help; size_t off; } fams[] = {
        { "tollgate_downstream_connections_total", "counter", "Client connections accepted.",
          offsetof(tg_listener_stats_t, accepted) },
        { "tollgate_downstream_connections_active", "gauge", "Client connections open now.",
          offsetof(tg_listener_stats_t, active) },
        { "tollgate_tls_handshakes_total", "counter", "TLS handshakes completed.",
          offsetof(tg_listener_stats_t, tls_handshakes) },
        { "tollgate_tls_sessions_resumed_total", "counter", "TLS handshakes that resumed a session.",
          offsetof(tg_listener_stats_t, tls_resumed) },
        { "tollgate_tls_handshake_failures_total", "counter",
          "TLS handshakes that failed or timed out (bad or missing client certificates included).",
          offsetof(tg_listener_stats_t, tls_handshake_failures) },
        { "tollgate_http2_connections_total", "counter", "Client connections that spoke HTTP/2.",
          offsetof(tg_listener_stats_t, h2_connections) },
        { "tollgate_http2_streams_total", "counter", "HTTP/2 streams opened by clients.",
          offsetof(tg_listener_stats_t, h2_streams) },
        { "tollgate_http2_protocol_errors_total", "counter",
          "HTTP/2 connections ended for protocol errors or abuse (floods, rapid reset).",
          offsetof(tg_listener_stats_t, h2_protocol_errors) },
        { "tollgate_listener_accept_pauses_total", "counter",
          "Times a listener paused accepting because descriptors or kernel memory ran out (EMFILE, ENFILE, ENOBUFS).",
          offsetof(tg_listener_stats_t, accept_pauses) },
        { "tollgate_downstream_connections_rejected_total", "counter",
          "Client connections closed at once because max_connections (listener or process) was reached.",
          offsetof(tg_listener_stats_t, conn_limit_rejected) },
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(out, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < c->n_listeners; i++) {
            evbuffer_add_printf(out, "%s{listener=\"", fams[f].name);
            label_value(out, c->listeners[i].name);
            evbuffer_add_printf(out, "\"} %llu\n",
                                (unsigned long long)tg_metrics_sum_listener(w, n, s->listener_slot[i], fams[f].off));
        }
    }
    family(out, "tollgate_tls_certificate_expiry_timestamp_seconds", "gauge",
           "When a listener's certificate stops being valid (notAfter), seconds since the epoch, by listener and "
           "certificate file.");
    for (size_t i = 0; i < c->n_listeners; i++) {
        int64_t t;
        for (size_t k = 0; s->listener_tls[i] != NULL && tg_tls_server_not_after(s->listener_tls[i], k, &t) == 0;
             k++) {
            evbuffer_add_printf(out, "tollgate_tls_certificate_expiry_timestamp_seconds{listener=\"");
            label_value(out, c->listeners[i].name);
            evbuffer_add(out, "\",cert=\"", 8);
            label_value(out, c->listeners[i].tls.certs[k].cert);
            evbuffer_add_printf(out, "\"} %lld\n", (long long)t);
        }
    }
}

static void route_label(struct evbuffer *out, const char *name)
{
    evbuffer_add(out, "route=\"", 7);
    label_value(out, name);
    evbuffer_add(out, "\"", 1);
}

/* Is an earlier bit than b a row of family f (with value v, unless v is
 * NULL)? Then its series were written with that row's. */
static int seen_before(unsigned b, const char *f, const char *v)
{
    for (unsigned e = 0; e < b; e++) {
        const tg_filter_counter_t *r = tg_filter_counter_at(e);
        if (strcmp(r->family, f) == 0 && (v == NULL || (r->value != NULL && strcmp(r->value, v) == 0)))
            return 1;
    }
    return 0;
}

/* The counters the filter types declare (filters/filter.h), family by
 * family, one series per route and label value: the sum of the rows that
 * name it (an alias is a second row). */
static void render_filter_counters(struct evbuffer *out, const tg_config_t *c, const tg_snapshot_t *s,
                                   tg_worker_t *const *w, unsigned n)
{
    const tg_filter_counter_t *fam;
    for (unsigned b = 0; b < TG_FILTER_COUNTERS_MAX && (fam = tg_filter_counter_at(b)) != NULL; b++) {
        if (seen_before(b, fam->family, NULL))
            continue;
        family(out, fam->family, "counter", fam->help);
        for (size_t r = 0; r < c->n_routes; r++) {
            const tg_filter_counter_t *row;
            for (unsigned v = b; v < TG_FILTER_COUNTERS_MAX && (row = tg_filter_counter_at(v)) != NULL; v++) {
                if (strcmp(row->family, fam->family) != 0 || (row->value != NULL && seen_before(v, row->family, row->value)))
                    continue;
                uint64_t sum = 0;
                const tg_filter_counter_t *same;
                for (unsigned k = v; k < TG_FILTER_COUNTERS_MAX && (same = tg_filter_counter_at(k)) != NULL; k++)
                    if (strcmp(same->family, row->family) == 0 &&
                        (row->value == NULL || (same->value != NULL && strcmp(same->value, row->value) == 0)))
                        sum += tg_metrics_sum_route(w, n, s->route_slot[r],
                                                    offsetof(tg_route_stats_t, filters) + k * sizeof(tg_counter_t));
                evbuffer_add_printf(out, "%s{", row->family);
                route_label(out, c->routes[r].name);
                if (row->label != NULL) {
                    evbuffer_add_printf(out, ",%s=\"", row->label);
                    label_value(out, row->value);
                    evbuffer_add(out, "\"", 1);
                }
                evbuffer_add_printf(out, "} %llu\n", (unsigned long long)sum);
                if (row->value == NULL)
                    break; /* one series per route: every row of the family summed */
            }
        }
    }
}

static void render_routes(struct evbuffer *out, const tg_config_t *c, const tg_snapshot_t *s, tg_worker_t *const *w,
                          unsigned n)
{
    static const char *const classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
    size_t nr = c->n_routes + 1; /* + requests no route matched, as route="" */
    family(out, "tollgate_requests_total", "counter", "Responses sent, by route, its cluster and status class.");
    for (size_t r = 0; r < nr; r++) {
        size_t slot = r < c->n_routes ? s->route_slot[r] : s->unrouted_slot;
        const char *name = r < c->n_routes ? c->routes[r].name : "";
        char split[256];
        const char *cluster = r < c->n_routes ? tg_route_cluster_label(c, &c->routes[r], split, sizeof(split)) : "";
        for (size_t k = 0; k < 5; k++) {
            evbuffer_add_printf(out, "tollgate_requests_total{");
            route_label(out, name);
            evbuffer_add(out, ",cluster=\"", 10);
            label_value(out, cluster);
            evbuffer_add_printf(out, "\",code=\"%s\"} %llu\n", classes[k],
                                (unsigned long long)tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, by_class) +
                                                                              k * sizeof(tg_counter_t)));
        }
    }
    family(out, "tollgate_requests_aborted_total", "counter",
           "Exchanges that ended before any response was sent (client or upstream gone).");
    for (size_t r = 0; r < nr; r++) {
        size_t slot = r < c->n_routes ? s->route_slot[r] : s->unrouted_slot;
        evbuffer_add_printf(out, "tollgate_requests_aborted_total{");
        route_label(out, r < c->n_routes ? c->routes[r].name : "");
        evbuffer_add_printf(out, "} %llu\n",
                            (unsigned long long)tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, aborted)));
    }
    render_filter_counters(out, c, s, w, n);
    static const struct { const char *name, *help; size_t off; } rfams[] = {
        { "tollgate_retries_total", "Retry rounds started, by route.", offsetof(tg_route_stats_t, retries) },
        { "tollgate_retries_skipped_total", "Retriable failures not retried (body over the replay buffer, or "
                                            "retry budget spent), by route.",
          offsetof(tg_route_stats_t, retries_skipped) },
    };
    for (size_t f = 0; f < sizeof(rfams) / sizeof(rfams[0]); f++) {
        family(out, rfams[f].name, "counter", rfams[f].help);
        for (size_t r = 0; r < c->n_routes; r++) {
            evbuffer_add_printf(out, "%s{", rfams[f].name);
            route_label(out, c->routes[r].name);
            evbuffer_add_printf(out, "} %llu\n", (unsigned long long)tg_metrics_sum_route(w, n, s->route_slot[r], rfams[f].off));
        }
    }
    static const char *const grpc_codes[17] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    };
    static const char *const causes[TG_CB_N] = { "max_connections", "max_pending", "max_requests" };
    family(out, "tollgate_overloaded_total", "counter",
           "Requests a cluster's circuit breaker refused at once (503, x-tollgate-overloaded), by route and cause.");
    for (size_t r = 0; r < c->n_routes; r++)
        for (size_t k = 0; k < TG_CB_N; k++) {
            evbuffer_add_printf(out, "tollgate_overloaded_total{");
            route_label(out, c->routes[r].name);
            evbuffer_add_printf(out, ",cause=\"%s\"} %llu\n", causes[k],
                                (unsigned long long)tg_metrics_sum_route(
                                    w, n, s->route_slot[r], offsetof(tg_route_stats_t, overloaded) +
                                                                k * sizeof(tg_counter_t)));
        }
    family(out, "tollgate_grpc_responses_total", "counter",
           "gRPC calls by route and final grpc-status (codes seen so far), local replies included.");
    for (size_t r = 0; r < nr; r++) {
        size_t slot = r < c->n_routes ? s->route_slot[r] : s->unrouted_slot;
        for (size_t k = 0; k < 17; k++) {
            uint64_t v = tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, grpc) + k * sizeof(tg_counter_t));
            if (v == 0)
                continue;
            evbuffer_add_printf(out, "tollgate_grpc_responses_total{");
            route_label(out, r < c->n_routes ? c->routes[r].name : "");
            evbuffer_add_printf(out, ",grpc_code=\"%s\"} %llu\n", grpc_codes[k], (unsigned long long)v);
        }
    }
    family(out, "tollgate_request_duration_seconds", "histogram",
           "Time from the complete request head to the end of the exchange, by route.");
    for (size_t r = 0; r < nr; r++) {
        size_t slot = r < c->n_routes ? s->route_slot[r] : s->unrouted_slot;
        const char *name = r < c->n_routes ? c->routes[r].name : "";
        uint64_t cum = 0;
        for (size_t b = 0; b < TG_STATS_BUCKETS; b++) {
            cum += tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, buckets) + b * sizeof(tg_counter_t));
            evbuffer_add_printf(out, "tollgate_request_duration_seconds_bucket{");
            route_label(out, name);
            evbuffer_add_printf(out, ",le=\"%g\"} %llu\n", (double)tg_stats_bucket_us[b] / 1e6,
                                (unsigned long long)cum);
        }
        uint64_t count = tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, count));
        evbuffer_add_printf(out, "tollgate_request_duration_seconds_bucket{");
        route_label(out, name);
        evbuffer_add_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)count);
        evbuffer_add_printf(out, "tollgate_request_duration_seconds_sum{");
        route_label(out, name);
        evbuffer_add_printf(out, "} %.6f\n", (double)tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, sum_us)) / 1e6);
        evbuffer_add_printf(out, "tollgate_request_duration_seconds_count{");
        route_label(out, name);
        evbuffer_add_printf(out, "} %llu\n", (unsigned long long)count);
    }
}

/* Writes `name{cluster="..",endpoint=".."` and leaves the label set open
 * for the caller to add labels and close it. */
static void endpoint_labels(struct evbuffer *out, const char *name, const tg_cluster_t *cl, const tg_endpoint_t *ep)
{
    evbuffer_add_printf(out, "%s{cluster=\"", name);
    label_value(out, cl->conf->name);
    evbuffer_add(out, "\",endpoint=\"", 12);
    label_value(out, ep->conf->named ? ep->addr_text : ep->conf->address);
    if (ep->conf->named) { /* one of a name's addresses: the name too */
        evbuffer_add(out, "\",name=\"", 8);
        label_value(out, ep->conf->address);
    }
    evbuffer_add(out, "\"", 1);
}

static void render_endpoints(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n)
{
    static const struct { const char *name, *type, *help; size_t off; } fams[] = {
        { "tollgate_upstream_requests_total", "counter", "Requests sent to an upstream endpoint.",
          offsetof(tg_endpoint_stats_t, requests) },
        { "tollgate_upstream_connect_failures_total", "counter", "Connections to an endpoint that failed or timed out.",
          offsetof(tg_endpoint_stats_t, connect_failures) },
        { "tollgate_upstream_timeouts_total", "counter", "Response or idle timeouts on an endpoint.",
          offsetof(tg_endpoint_stats_t, timeouts) },
        { "tollgate_upstream_resets_total", "counter", "Upstream connections lost mid-exchange.",
          offsetof(tg_endpoint_stats_t, resets) },
        { "tollgate_upstream_connections_active", "gauge", "Open upstream connections (in use or pooled).",
          offsetof(tg_endpoint_stats_t, active) },
        { "tollgate_upstream_connections_opened_total", "counter",
          "Upstream connections opened (HTTP/1.1 and HTTP/2); many per request means the pool churns.",
          offsetof(tg_endpoint_stats_t, connects) },
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(out, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < s->clusters->n_clusters; i++) {
            const tg_cluster_t *cl = &s->clusters->clusters[i];
            for (size_t j = 0; j < cl->n_endpoints; j++) {
                endpoint_labels(out, fams[f].name, cl, &cl->endpoints[j]);
                evbuffer_add_printf(out, "} %llu\n",
                                    (unsigned long long)tg_metrics_sum_endpoint(w, n, cl->endpoints[j].slot, fams[f].off));
            }
        }
    }
}


static void render_health(struct evbuffer *out, const tg_snapshot_t *s, tg_health_t *h)
{
    uint64_t now = tg_clock_ms();
    family(out, "tollgate_upstream_endpoint_healthy", "gauge",
           "1 if the endpoint gets traffic (not failed by health checks, not ejected), else 0.");
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        const tg_cluster_t *cl = &s->clusters->clusters[i];
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            endpoint_labels(out, "tollgate_upstream_endpoint_healthy", cl, &cl->endpoints[j]);
            evbuffer_add_printf(out, "} %d\n", tg_health_usable(h, cl->endpoints[j].slot, now));
        }
    }
    family(out, "tollgate_upstream_ejections_total", "counter", "Passive outlier ejections of an endpoint.");
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        const tg_cluster_t *cl = &s->clusters->clusters[i];
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            endpoint_labels(out, "tollgate_upstream_ejections_total", cl, &cl->endpoints[j]);
            evbuffer_add_printf(out, "} %llu\n", (unsigned long long)atomic_load_explicit(
                                                   &tg_health_ep(h, cl->endpoints[j].slot)->ejections_total, memory_order_relaxed));
        }
    }
    family(out, "tollgate_health_checks_total", "counter", "Active health check results.");
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        const tg_cluster_t *cl = &s->clusters->clusters[i];
        if (!cl->conf->health_check.enabled)
            continue;
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            tg_endpoint_health_t *e = tg_health_ep(h, cl->endpoints[j].slot);
            endpoint_labels(out, "tollgate_health_checks_total", cl, &cl->endpoints[j]);
            evbuffer_add_printf(out, ",result=\"success\"} %llu\n", (unsigned long long)tg_counter_get(&e->checks_ok));
            endpoint_labels(out, "tollgate_health_checks_total", cl, &cl->endpoints[j]);
            evbuffer_add_printf(out, ",result=\"failure\"} %llu\n",
                                (unsigned long long)tg_counter_get(&e->checks_failed));
        }
    }
}

static uint64_t sum_redis(tg_worker_t *const *w, unsigned n, size_t offset)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < n; i++)
        t += tg_counter_get((tg_counter_t *)((char *)&tg_worker_stats(w[i])->redis + offset));
    return t;
}

/* The Redis store's client, all workers together. */
static void render_redis(struct evbuffer *out, tg_worker_t *const *w, unsigned n)
{
    family(out, "tollgate_redis_request_duration_seconds", "histogram",
           "Round trips of answered Redis calls (rate_limit store: redis), from the call to its reply.");
    uint64_t cum = 0;
    for (size_t b = 0; b < TG_REDIS_BUCKETS; b++) {
        cum += sum_redis(w, n, offsetof(tg_redis_stats_t, buckets) + b * sizeof(tg_counter_t));
        evbuffer_add_printf(out, "tollgate_redis_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            (double)tg_redis_bucket_us[b] / 1e6, (unsigned long long)cum);
    }
    uint64_t count = sum_redis(w, n, offsetof(tg_redis_stats_t, count));
    evbuffer_add_printf(out, "tollgate_redis_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                        (unsigned long long)count);
    evbuffer_add_printf(out, "tollgate_redis_request_duration_seconds_sum %.6f\n",
                        (double)sum_redis(w, n, offsetof(tg_redis_stats_t, sum_us)) / 1e6);
    evbuffer_add_printf(out, "tollgate_redis_request_duration_seconds_count %llu\n", (unsigned long long)count);
    static const char *const kinds[TG_REDIS_ERR_N] = {
        [TG_REDIS_ERR_CONNECT] = "connect",   [TG_REDIS_ERR_TIMEOUT] = "timeout", [TG_REDIS_ERR_CLOSED] = "closed",
        [TG_REDIS_ERR_SERVER] = "server",     [TG_REDIS_ERR_PROTOCOL] = "protocol", [TG_REDIS_ERR_AUTH] = "auth",
        [TG_REDIS_ERR_UNAVAILABLE] = "unavailable", [TG_REDIS_ERR_REPLY_SIZE] = "reply_size",
        [TG_REDIS_ERR_REDIRECT] = "redirect",
    };
    family(out, "tollgate_redis_errors_total", "counter",
           "Redis problems by kind: connect, timeout (a call unanswered within timeout), closed (a connection lost "
           "with calls on it), server (an error reply), protocol, auth, unavailable (a call not sent: no connection), "
           "reply_size (a reply past max_reply_bytes), redirect (a redirect or slot map to a node not vouched for).");
    for (size_t k = 0; k < TG_REDIS_ERR_N; k++)
        evbuffer_add_printf(out, "tollgate_redis_errors_total{kind=\"%s\"} %llu\n", kinds[k],
                            (unsigned long long)sum_redis(w, n, offsetof(tg_redis_stats_t, errors) +
                                                                    k * sizeof(tg_counter_t)));
    family(out, "tollgate_redis_cluster_redirects_total", "counter", "Redis Cluster redirects followed, by kind.");
    evbuffer_add_printf(out, "tollgate_redis_cluster_redirects_total{kind=\"moved\"} %llu\n",
                        (unsigned long long)sum_redis(w, n, offsetof(tg_redis_stats_t, moved)));
    evbuffer_add_printf(out, "tollgate_redis_cluster_redirects_total{kind=\"ask\"} %llu\n",
                        (unsigned long long)sum_redis(w, n, offsetof(tg_redis_stats_t, ask)));
    family(out, "tollgate_redis_connections_active", "gauge", "Connections to Redis that are up, all workers.");
    evbuffer_add_printf(out, "tollgate_redis_connections_active %llu\n",
                        (unsigned long long)sum_redis(w, n, offsetof(tg_redis_stats_t, connections)));
}

/* Endpoints per cluster now, and the names DNS follows (by cluster and name). */
static void render_dns(struct evbuffer *out, const tg_snapshot_t *s, const tg_process_metrics_t *pm)
{
    family(out, "tollgate_cluster_endpoints", "gauge",
           "Endpoints a cluster has now (a name counts once per address of its DNS answer).");
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        evbuffer_add(out, "tollgate_cluster_endpoints{cluster=\"", 36);
        label_value(out, s->clusters->clusters[i].conf->name);
        evbuffer_add_printf(out, "\"} %zu\n", s->clusters->clusters[i].n_endpoints);
    }
    family(out, "tollgate_dns_updates_total", "counter",
           "Endpoint sets published to the workers because DNS answers changed.");
    evbuffer_add_printf(out, "tollgate_dns_updates_total %llu\n", (unsigned long long)pm->dns_updates);
    static const struct { const char *name, *type, *help; } fams[] = {
        { "tollgate_dns_lookups_total", "counter", "DNS lookups of an endpoint name." },
        { "tollgate_dns_failures_total", "counter",
          "DNS lookups of an endpoint name that failed or answered no address (the last good addresses stay "
          "with on_failure: keep)." },
        { "tollgate_dns_changes_total", "counter", "Times an endpoint name's set of addresses changed." },
        { "tollgate_dns_addresses", "gauge", "Addresses an endpoint name has now (its endpoints)." },
    };
    size_t n = tg_dns_count(pm->dns);
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        family(out, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < n; i++) {
            tg_dns_info_t in;
            tg_dns_info(pm->dns, i, &in);
            uint64_t v = f == 0 ? in.lookups : f == 1 ? in.failures : f == 2 ? in.changes : in.n_addrs;
            evbuffer_add_printf(out, "%s{cluster=\"", fams[f].name);
            label_value(out, in.cluster);
            evbuffer_add(out, "\",name=\"", 8);
            label_value(out, in.host);
            evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)v);
        }
    }
}

/* How the workers' sockets reach the kernel (io_uring, proxy/sock.c). */
static void render_io(struct evbuffer *out, tg_worker_t *const *w, unsigned n)
{
    unsigned batched = 0;
    uint64_t subs = 0, ops = 0;
    for (unsigned i = 0; i < n; i++) {
        tg_sock_loop_t *l = tg_worker_sockloop(w[i]);
        uint64_t b, o;
        batched += tg_sock_loop_batched(l, NULL) != 0;
        tg_sock_loop_ring_counts(l, &b, &o);
        subs += b;
        ops += o;
    }
    family(out, "tollgate_io_uring_workers", "gauge",
           "Workers whose socket reads and writes go to the kernel batched through io_uring (io_uring: auto, where the kernel allows it).");
    evbuffer_add_printf(out, "tollgate_io_uring_workers %u\n", batched);
    family(out, "tollgate_io_uring_submissions_total", "counter", "io_uring submissions (system calls) the workers made.");
    evbuffer_add_printf(out, "tollgate_io_uring_submissions_total %llu\n", (unsigned long long)subs);
    family(out, "tollgate_io_uring_operations_total", "counter",
           "Socket reads and writes those submissions carried: each would otherwise have been a system call of its own.");
    evbuffer_add_printf(out, "tollgate_io_uring_operations_total %llu\n", (unsigned long long)ops);
}

void tg_metrics_render(struct evbuffer *out, const tg_snapshot_t *snap, tg_worker_t *const *workers,
                       unsigned n_workers, const tg_process_metrics_t *pm, tg_health_t *health)
{
    const tg_config_t *c = snap->cfg;
    family(out, "tollgate_build_info", "gauge", "Build information.");
    evbuffer_add_printf(out, "tollgate_build_info{version=\"%s\"} 1\n", TOLLGATE_VERSION);
    family(out, "tollgate_start_time_seconds", "gauge", "Process start time, seconds since the epoch.");
    evbuffer_add_printf(out, "tollgate_start_time_seconds %lld\n", (long long)pm->started);
    family(out, "tollgate_workers", "gauge", "Worker threads.");
    evbuffer_add_printf(out, "tollgate_workers %u\n", n_workers);
    family(out, "tollgate_config_reloads_total", "counter", "Configuration reloads, by result.");
    evbuffer_add_printf(out, "tollgate_config_reloads_total{result=\"success\"} %llu\n",
                        (unsigned long long)pm->reloads_ok);
    evbuffer_add_printf(out, "tollgate_config_reloads_total{result=\"failure\"} %llu\n",
                        (unsigned long long)pm->reloads_failed);
    family(out, "tollgate_config_last_reload_success_timestamp_seconds", "gauge",
           "When the configuration in force was loaded, seconds since the epoch.");
    evbuffer_add_printf(out, "tollgate_config_last_reload_success_timestamp_seconds %lld\n",
                        (long long)pm->last_reload_ok);
    family(out, "tollgate_config_snapshots", "gauge",
           "Loaded configurations in memory: the one in force, plus older ones requests in flight still use.");
    evbuffer_add_printf(out, "tollgate_config_snapshots %u\n",
                        pm->snapshots ? atomic_load_explicit(pm->snapshots, memory_order_relaxed) : 1);
    if (pm->registries != NULL) {
        family(out, "tollgate_slots", "gauge",
               "Slots numbered for counters and health, by table: names in use, and ones a new name may take.");
        const tg_registry_t *t[] = { &pm->registries->routes, &pm->registries->endpoints, &pm->registries->listeners };
        static const char *const names[] = { "routes", "endpoints", "listeners" };
        for (int i = 0; i < 3; i++)
            evbuffer_add_printf(out, "tollgate_slots{table=\"%s\"} %zu\n", names[i], t[i]->n);
    }
    size_t bytes = health != NULL ? tg_chunks_bytes(&health->ep) : 0;
    for (unsigned i = 0; i < n_workers; i++)
        bytes += tg_stats_bytes(tg_worker_stats(workers[i]));
    family(out, "tollgate_stats_memory_bytes", "gauge",
           "Memory of the counter tables (each worker's) and the health table, which grow with the slots in use.");
    evbuffer_add_printf(out, "tollgate_stats_memory_bytes %zu\n", bytes);
    family(out, "tollgate_admin_connections_rejected_total", "counter",
           "Admin connections closed at once because admin.max_connections were open.");
    evbuffer_add_printf(out, "tollgate_admin_connections_rejected_total %llu\n",
                        (unsigned long long)tg_admin_rejected(pm->admin));
    render_io(out, workers, n_workers);
    render_listeners(out, c, snap, workers, n_workers);
    render_routes(out, c, snap, workers, n_workers);
    render_endpoints(out, snap, workers, n_workers);
    render_health(out, snap, health);
    render_dns(out, snap, pm);
    if (c->redis.enabled)
        render_redis(out, workers, n_workers);
    if (pm->shared != NULL)
        tg_shared_metrics(pm->shared, out);
    if (pm->tracer != NULL) {
        tg_tracer_stats_t ts;
        tg_tracer_stats(pm->tracer, &ts);
        family(out, "tollgate_tracing_spans_exported_total", "counter", "Spans an OTLP collector accepted.");
        evbuffer_add_printf(out, "tollgate_tracing_spans_exported_total %llu\n", (unsigned long long)ts.exported);
        family(out, "tollgate_tracing_spans_dropped_total", "counter",
               "Spans dropped: a worker's queue was full (queue_full), or their POST failed (export_failed).");
        evbuffer_add_printf(out, "tollgate_tracing_spans_dropped_total{reason=\"queue_full\"} %llu\n",
                            (unsigned long long)ts.dropped_full);
        evbuffer_add_printf(out, "tollgate_tracing_spans_dropped_total{reason=\"export_failed\"} %llu\n",
                            (unsigned long long)ts.dropped_failed);
        family(out, "tollgate_tracing_export_requests_total", "counter", "POSTs of span batches to the collector.");
        evbuffer_add_printf(out, "tollgate_tracing_export_requests_total %llu\n", (unsigned long long)ts.batches);
    }
}
