/*
 * proxy/status.c — see status.h.
 */
#include "proxy/status.h"

#include <arpa/inet.h>

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/base/clock.h"
#include "proxy/base/http.h"
#include "proxy/dns.h"
#include "filters/filter.h"
#include "proxy/stats.h"

/* Generated at build time from proxy/status_page.html (CMakeLists.txt). */
extern const char tg_status_page_html[];
extern const size_t tg_status_page_html_len;

static void jstr(struct evbuffer *out, const char *s)
{
    char esc[1024];
    tg_json_escape(esc, sizeof(esc), s != NULL ? s : "");
    evbuffer_add_printf(out, "\"%s\"", esc);
}

static void listeners(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n)
{
    const tg_config_t *c = s->cfg;
    evbuffer_add_printf(out, "\"listeners\": [");
    for (size_t i = 0; i < c->n_listeners; i++) {
        const tg_listener_conf_t *l = &c->listeners[i];
        size_t slot = s->listener_slot[i];
        evbuffer_add_printf(out, "%s{\"name\": ", i ? ", " : "");
        jstr(out, l->name);
        evbuffer_add_printf(out, ", \"listen\": ");
        jstr(out, l->listen);
        evbuffer_add_printf(
            out, ", \"tls\": %s, \"accepted\": %llu, \"active\": %llu, \"h2_streams\": %llu}",
            l->tls.enabled ? "true" : "false",
            (unsigned long long)tg_metrics_sum_listener(w, n, slot, offsetof(tg_listener_stats_t, accepted)),
            (unsigned long long)tg_metrics_sum_listener(w, n, slot, offsetof(tg_listener_stats_t, active)),
            (unsigned long long)tg_metrics_sum_listener(w, n, slot, offsetof(tg_listener_stats_t, h2_streams)));
    }
    evbuffer_add_printf(out, "]");
}

static void routes(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n)
{
    const tg_config_t *c = s->cfg;
    evbuffer_add_printf(out, "\"bucket_le_us\": [");
    for (size_t b = 0; b < TG_STATS_BUCKETS; b++)
        evbuffer_add_printf(out, "%s%llu", b ? ", " : "", (unsigned long long)tg_stats_bucket_us[b]);
    evbuffer_add_printf(out, "], \"routes\": [");
    for (size_t r = 0; r < c->n_routes; r++) {
        const tg_route_conf_t *rc = &c->routes[r];
        size_t slot = s->route_slot[r];
        evbuffer_add_printf(out, "%s{\"name\": ", r ? ", " : "");
        jstr(out, rc->name);
        evbuffer_add_printf(out, ", \"cluster\": ");
        char split[256];
        jstr(out, tg_route_cluster_label(c, rc, split, sizeof(split)));
        evbuffer_add_printf(out, ", \"requests\": %llu, \"aborted\": %llu, \"sum_us\": %llu, \"classes\": [",
                            (unsigned long long)tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, count)),
                            (unsigned long long)tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, aborted)),
                            (unsigned long long)tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, sum_us)));
        for (size_t k = 0; k < 5; k++)
            evbuffer_add_printf(out, "%s%llu", k ? ", " : "",
                                (unsigned long long)tg_metrics_sum_route(
                                    w, n, slot, offsetof(tg_route_stats_t, by_class) + k * sizeof(tg_counter_t)));
        evbuffer_add_printf(out, "], \"buckets\": [");
        for (size_t b = 0; b < TG_STATS_BUCKETS; b++)
            evbuffer_add_printf(out, "%s%llu", b ? ", " : "",
                                (unsigned long long)tg_metrics_sum_route(
                                    w, n, slot, offsetof(tg_route_stats_t, buckets) + b * sizeof(tg_counter_t)));
        evbuffer_add_printf(out, "]}");
    }
    evbuffer_add_printf(out, "]");
}

/* The limiting filters' own view (their status hook), global chain
 * first. */
static void limit_list(struct evbuffer *out, const tg_filter_list_t *l, const char *route, int *any)
{
    for (size_t i = 0; i < l->n; i++) {
        const tg_filter_instance_t *f = &l->v[i];
        if (f->type->status == NULL)
            continue;
        evbuffer_add_printf(out, "%s{\"route\": ", (*any)++ ? ", " : "");
        if (route != NULL)
            jstr(out, route);
        else
            evbuffer_add_printf(out, "null");
        evbuffer_add_printf(out, ", \"filter\": \"%s\", \"index\": %zu, ", f->type->name, i);
        f->type->status(f->conf, out);
        evbuffer_add_printf(out, "}");
    }
}

static void limits(struct evbuffer *out, const tg_config_t *c)
{
    int any = 0;
    evbuffer_add_printf(out, "\"limits\": [");
    limit_list(out, &c->filters, NULL, &any);
    for (size_t r = 0; r < c->n_routes; r++)
        limit_list(out, &c->routes[r].filters, c->routes[r].name, &any);
    evbuffer_add_printf(out, "]");
}

static const char *const protocols[] = { "http1", "h2c", "h2" };

/* The names DNS follows for cluster cl: each with its addresses now. */
static void dns_names(struct evbuffer *out, const tg_dns_t *d, const char *cluster)
{
    evbuffer_add_printf(out, ", \"dns\": [");
    int first = 1;
    for (size_t i = 0; i < tg_dns_count(d); i++) {
        tg_dns_info_t in;
        tg_dns_info(d, i, &in);
        if (strcmp(in.cluster, cluster) != 0)
            continue;
        evbuffer_add_printf(out, "%s{\"name\": ", first ? "" : ", ");
        first = 0;
        jstr(out, in.host);
        evbuffer_add_printf(out, ", \"addresses\": [");
        for (size_t k = 0; k < in.n_addrs; k++) {
            char ip[INET6_ADDRSTRLEN] = "?";
            const struct sockaddr_storage *a = &in.addrs[k];
            inet_ntop(a->ss_family,
                      a->ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)a)->sin_addr
                                              : (const void *)&((const struct sockaddr_in6 *)a)->sin6_addr,
                      ip, sizeof(ip));
            evbuffer_add_printf(out, "%s\"%s\"", k ? ", " : "", ip);
        }
        evbuffer_add_printf(out, "], \"resolved\": %s, \"lookups\": %llu, \"failures\": %llu, \"changes\": %llu, "
                                 "\"ttl_ms\": %llu, \"next_lookup_ms\": %llu, \"last_error\": ",
                            in.resolved ? "true" : "false", (unsigned long long)in.lookups,
                            (unsigned long long)in.failures, (unsigned long long)in.changes,
                            (unsigned long long)in.ttl_ms, (unsigned long long)in.next_in_ms);
        jstr(out, in.last_error);
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "]");
}

static void clusters(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n,
                     tg_health_t *h, const tg_dns_t *d)
{
    uint64_t now = tg_clock_ms();
    evbuffer_add_printf(out, "\"clusters\": [");
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        const tg_cluster_t *cl = &s->clusters->clusters[i];
        evbuffer_add_printf(out, "%s{\"name\": ", i ? ", " : "");
        jstr(out, cl->conf->name);
        evbuffer_add_printf(out, ", \"protocol\": \"%s\", \"health_checks\": %s, \"endpoints\": [",
                            protocols[cl->conf->protocol], cl->conf->health_check.enabled ? "true" : "false");
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            size_t slot = cl->endpoints[j].slot;
            uint64_t left;
            const char *state = tg_health_state(h, slot, now, &left);
            const tg_endpoint_t *ep = &cl->endpoints[j];
            evbuffer_add_printf(out, "%s{\"address\": ", j ? ", " : "");
            jstr(out, ep->conf->named ? ep->addr_text : ep->conf->address);
            if (ep->conf->named) { /* one of the addresses DNS has for this name */
                evbuffer_add_printf(out, ", \"name\": ");
                jstr(out, ep->conf->address);
            }
            evbuffer_add_printf(
                out,
                ", \"state\": \"%s\", \"ejected_ms\": %llu, \"ejections\": %llu, \"requests\": %llu, "
                "\"connect_failures\": %llu, \"timeouts\": %llu, \"resets\": %llu, \"connections\": %llu}",
                state, (unsigned long long)left,
                (unsigned long long)atomic_load_explicit(&tg_health_ep(h, slot)->ejections_total, memory_order_relaxed),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, requests)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot,
                                                            offsetof(tg_endpoint_stats_t, connect_failures)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, timeouts)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, resets)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, active)));
        }
        evbuffer_add_printf(out, "]");
        if (cl->conf->named && d != NULL)
            dns_names(out, d, cl->conf->name);
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "]");
}

void tg_status_json(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n,
                    const tg_process_metrics_t *pm, tg_health_t *h, const tg_history_t *hist, uint64_t window_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    evbuffer_add_printf(out, "{\"version\": \"%s\", \"config\": ", TOLLGATE_VERSION);
    jstr(out, s->cfg->path);
    evbuffer_add_printf(out,
                        ", \"now_ms\": %lld, \"started\": %lld, \"workers\": %u, \"reloads\": {\"ok\": %llu, "
                        "\"failed\": %llu, \"last_ok\": %lld}, ",
                        (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, (long long)pm->started, n,
                        (unsigned long long)pm->reloads_ok, (unsigned long long)pm->reloads_failed,
                        (long long)pm->last_reload_ok);
    listeners(out, s, w, n);
    evbuffer_add_printf(out, ", ");
    routes(out, s, w, n);
    evbuffer_add_printf(out, ", ");
    clusters(out, s, w, n, h, pm->dns);
    evbuffer_add_printf(out, ", ");
    limits(out, s->cfg);
    if (window_ms > 0 && hist != NULL) {
        evbuffer_add_printf(out, ", ");
        tg_history_json(hist, out, s, window_ms);
    } else if (window_ms > 0) {
        evbuffer_add_printf(out, ", \"history\": null");
    }
    evbuffer_add_printf(out, "}\n");
}

void tg_status_endpoints_text(struct evbuffer *out, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n,
                              tg_health_t *h)
{
    uint64_t now = tg_clock_ms();
    evbuffer_add_printf(out, "%-20s %-28s %-8s %10s %10s %9s %8s %8s %6s\n", "CLUSTER", "ENDPOINT", "STATE",
                        "REQUESTS", "CONN_FAIL", "TIMEOUTS", "RESETS", "EJECTED", "CONNS");
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        const tg_cluster_t *cl = &s->clusters->clusters[i];
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            size_t slot = cl->endpoints[j].slot;
            uint64_t left;
            const char *state = tg_health_state(h, slot, now, &left);
            evbuffer_add_printf(
                out, "%-20s %-28s %-8s %10llu %10llu %9llu %8llu %8llu %6llu\n", cl->conf->name,
                cl->endpoints[j].label, state,
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, requests)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot,
                                                            offsetof(tg_endpoint_stats_t, connect_failures)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, timeouts)),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, resets)),
                (unsigned long long)atomic_load_explicit(&tg_health_ep(h, slot)->ejections_total, memory_order_relaxed),
                (unsigned long long)tg_metrics_sum_endpoint(w, n, slot, offsetof(tg_endpoint_stats_t, active)));
        }
    }
}

const char *tg_status_page(size_t *len)
{
    *len = tg_status_page_html_len;
    return tg_status_page_html;
}

/* 'sha256-BASE64' of the text between open and close in the page. */
static int inline_hash(const char *open, const char *close, char *out, size_t cap)
{
    const char *page = tg_status_page_html, *end = page + tg_status_page_html_len;
    const char *a = memmem(page, tg_status_page_html_len, open, strlen(open));
    const char *b = a != NULL ? memmem(a, (size_t)(end - a), close, strlen(close)) : NULL;
    if (b == NULL)
        return -1;
    a += strlen(open);
    unsigned char md[32], b64[48];
    unsigned int mdlen = 0;
    if (!EVP_Digest(a, (size_t)(b - a), md, &mdlen, EVP_sha256(), NULL) || mdlen != sizeof(md))
        return -1;
    EVP_EncodeBlock(b64, md, (int)mdlen);
    int k = snprintf(out, cap, "'sha256-%s'", b64);
    return k > 0 && (size_t)k < cap ? 0 : -1;
}

int tg_status_page_csp(char *csp, size_t cap)
{
    char script[64], style[64];
    if (inline_hash("<script>", "</script>", script, sizeof(script)) < 0 ||
        inline_hash("<style>", "</style>", style, sizeof(style)) < 0)
        return -1;
    int k = snprintf(csp, cap,
                     "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src 'none'; "
                     "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                     script, style);
    return k > 0 && (size_t)k < cap ? 0 : -1;
}
