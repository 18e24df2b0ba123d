/*
 * proxy/history.c — see history.h.
 */
#include "proxy/history.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/base/chunks.h"
#include "proxy/base/clock.h"
#include "proxy/base/fnv.h"
#include "proxy/base/json.h"
#include "proxy/metrics.h"
#include "proxy/stats.h"

/* A route's columns, then a cluster's. */
enum { R_REQ, R_4XX, R_5XX, R_ABORTED, R_LAT0, R_N = R_LAT0 + TG_STATS_BUCKETS };
enum { C_REQ, C_CONNECT, C_TIMEOUT, C_RESET, C_UP, C_ENDPOINTS, C_N, C_COUNTED = C_UP };

#define WINDOW_TICKS (TG_HISTORY_BUCKETS * TG_HISTORY_BUCKET_MS / 1000) /* ticks are seconds */

typedef struct series {
    struct series *next;    /* hash chain */
    int route;              /* 1: a route, 0: a cluster */
    size_t slot;            /* a route's stats slot when last read */
    uint64_t last[R_N];     /* a route's sums at the last tick */
    uint64_t seen;          /* the last tick that found it in the config */
    int64_t since;          /* the first bucket it was seen in */
    int64_t at;             /* the newest bucket its ring holds */
    uint32_t *ring;         /* TG_HISTORY_BUCKETS rows of R_N or C_N counters; NULL until used */
    char name[];
} series_t;

/* An endpoint as the last tick found it (by endpoint slot). */
typedef struct ep_seen {
    uint64_t last[C_COUNTED];
    uint64_t tick;          /* 0: never seen */
    const char *state;      /* tg_health_state's (static) text */
} ep_seen_t;

typedef struct event {
    uint64_t at_ms;
    int reload;             /* else an endpoint's state changed */
    const char *from, *to;
    char cluster[64], endpoint[96];
} event_t;

struct tg_history {
    uint64_t real0, mono0;  /* the clocks at the start */
    uint32_t max_rings, rings;
    uint64_t tick;
    int64_t bucket;         /* the newest bucket a tick saw */
    series_t **tab;         /* by name: routes and clusters apart */
    size_t cap, n;
    /* The series of the config's routes and clusters by position, as the
     * last tick found them (checked by name, remade when one differs or a
     * series goes): a tick costs no hashing. */
    series_t **rmap, **cmap;
    size_t n_rmap, n_cmap;
    tg_chunks_t eps;
    event_t ev[TG_HISTORY_EVENTS];
    size_t ev_next, ev_n;
};

tg_history_t *tg_history_new(uint32_t max_rings)
{
    tg_history_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->cap = 256;
    h->tab = calloc(h->cap, sizeof(*h->tab));
    if (h->tab == NULL) {
        free(h);
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->real0 = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    h->mono0 = tg_clock_ms();
    h->max_rings = max_rings;
    h->bucket = (int64_t)(h->real0 / TG_HISTORY_BUCKET_MS);
    tg_chunks_init(&h->eps, sizeof(ep_seen_t));
    return h;
}

static void series_free(tg_history_t *h, series_t *se)
{
    if (se->ring != NULL)
        h->rings--;
    free(se->ring);
    free(se);
}

void tg_history_free(tg_history_t *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->cap; i++)
        for (series_t *se = h->tab[i], *next; se != NULL; se = next) {
            next = se->next;
            series_free(h, se);
        }
    free(h->tab);
    free(h->rmap);
    free(h->cmap);
    tg_chunks_free(&h->eps);
    free(h);
}

void tg_history_set_max(tg_history_t *h, uint32_t max_rings)
{
    h->max_rings = max_rings;
}

uint64_t tg_history_now(const tg_history_t *h)
{
    return h->real0 + (tg_clock_ms() - h->mono0);
}

size_t tg_history_bytes(const tg_history_t *h)
{
    size_t b = sizeof(*h) + h->cap * sizeof(*h->tab) + tg_chunks_bytes(&h->eps);
    for (size_t i = 0; i < h->cap; i++)
        for (const series_t *se = h->tab[i]; se != NULL; se = se->next)
            b += sizeof(*se) + strlen(se->name) + 1 +
                 (se->ring ? TG_HISTORY_BUCKETS * (se->route ? R_N : C_N) * sizeof(uint32_t) : 0);
    return b;
}

static size_t hash_of(int route, const char *name)
{
    return (size_t)tg_fnv1a64(TG_FNV1A64_INIT ^ (uint64_t)route, name, strlen(name));
}

static series_t *find(const tg_history_t *h, int route, const char *name)
{
    for (series_t *se = h->tab[hash_of(route, name) & (h->cap - 1)]; se != NULL; se = se->next)
        if (se->route == route && strcmp(se->name, name) == 0)
            return se;
    return NULL;
}

/* Twice the buckets when the table holds twice as many series. */
static void grow(tg_history_t *h)
{
    size_t cap = h->cap * 2;
    series_t **tab = calloc(cap, sizeof(*tab));
    if (tab == NULL)
        return; /* longer chains; still correct */
    for (size_t i = 0; i < h->cap; i++)
        for (series_t *se = h->tab[i], *next; se != NULL; se = next) {
            next = se->next;
            size_t k = hash_of(se->route, se->name) & (cap - 1);
            se->next = tab[k];
            tab[k] = se;
        }
    free(h->tab);
    h->tab = tab;
    h->cap = cap;
}

/* The series, made if new (*fresh set); NULL if out of memory. */
static series_t *get(tg_history_t *h, int route, const char *name, int *fresh)
{
    series_t *se = find(h, route, name);
    *fresh = se == NULL;
    if (se != NULL)
        return se;
    size_t len = strlen(name);
    if ((se = calloc(1, sizeof(*se) + len + 1)) == NULL)
        return NULL;
    memcpy(se->name, name, len + 1);
    se->route = route;
    se->since = se->at = h->bucket;
    if (h->n + 1 > h->cap * 2)
        grow(h);
    size_t k = hash_of(route, name) & (h->cap - 1);
    se->next = h->tab[k];
    h->tab[k] = se;
    h->n++;
    return se;
}

/* The series' row for the current bucket: its ring made on first use
 * (NULL past max_rings or out of memory), rows of buckets passed since it
 * was last written cleared. *first: nothing was written in it yet. */
static uint32_t *row(tg_history_t *h, series_t *se, int *first)
{
    size_t cols = se->route ? R_N : C_N;
    *first = 0;
    if (se->ring == NULL) {
        if (h->rings >= h->max_rings || (se->ring = calloc(TG_HISTORY_BUCKETS * cols, sizeof(uint32_t))) == NULL)
            return NULL;
        h->rings++;
        se->at = h->bucket;
        *first = 1;
    }
    if (se->at < h->bucket) {
        int64_t from = h->bucket - se->at >= TG_HISTORY_BUCKETS ? h->bucket - TG_HISTORY_BUCKETS + 1 : se->at + 1;
        for (int64_t b = from; b <= h->bucket; b++)
            memset(&se->ring[(size_t)(b % TG_HISTORY_BUCKETS) * cols], 0, cols * sizeof(uint32_t));
        se->at = h->bucket;
        *first = 1;
    }
    return &se->ring[(size_t)(h->bucket % TG_HISTORY_BUCKETS) * cols];
}

static uint32_t add32(uint32_t a, uint64_t b)
{
    return b > UINT32_MAX - a ? UINT32_MAX : a + (uint32_t)b;
}

/* A route's sums over the workers: the request count only (all = 0), or all. */
static void route_sums(tg_worker_t *const *w, unsigned n, size_t slot, uint64_t *v, int all)
{
    v[R_REQ] = tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, count));
    if (!all)
        return;
    v[R_4XX] = tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, by_class) + 3 * sizeof(tg_counter_t));
    v[R_5XX] = tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, by_class) + 4 * sizeof(tg_counter_t));
    v[R_ABORTED] = tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, aborted));
    for (size_t b = 0; b < TG_STATS_BUCKETS; b++)
        v[R_LAT0 + b] =
            tg_metrics_sum_route(w, n, slot, offsetof(tg_route_stats_t, buckets) + b * sizeof(tg_counter_t));
}

/* The series at position i of a map (n entries, remade if the config's
 * count differs), found by name when the position names another. */
static series_t *mapped(tg_history_t *h, series_t ***map, size_t *n_map, size_t count, size_t i, int route,
                        const char *name, int *fresh)
{
    *fresh = 0;
    if (*n_map != count) {
        series_t **m = calloc(count ? count : 1, sizeof(*m));
        if (m == NULL)
            return get(h, route, name, fresh);
        free(*map);
        *map = m;
        *n_map = count;
    }
    series_t *se = (*map)[i];
    if (se == NULL || strcmp(se->name, name) != 0)
        se = (*map)[i] = get(h, route, name, fresh);
    return se;
}

static void tick_route(tg_history_t *h, size_t at, const char *name, size_t slot, tg_worker_t *const *w, unsigned n,
                       size_t count)
{
    int fresh;
    series_t *se = mapped(h, &h->rmap, &h->n_rmap, count, at, 1, name, &fresh);
    if (se == NULL)
        return;
    se->seen = h->tick;
    uint64_t cur[R_N];
    if (fresh || se->slot != slot) { /* counts from here on: a new name's slot was reset for it */
        se->slot = slot;
        route_sums(w, n, slot, se->last, 1);
        return;
    }
    route_sums(w, n, slot, cur, 0);
    if (cur[R_REQ] == se->last[R_REQ])
        return; /* nothing ended here this second */
    route_sums(w, n, slot, cur, 1);
    int first;
    uint32_t *r = row(h, se, &first);
    for (size_t i = 0; i < R_N; i++) {
        uint64_t d = cur[i] >= se->last[i] ? cur[i] - se->last[i] : cur[i];
        if (r != NULL)
            r[i] = add32(r[i], d);
        se->last[i] = cur[i];
    }
}

static void event_add(tg_history_t *h, int reload, const char *cluster, const char *endpoint, const char *from,
                      const char *to)
{
    event_t *e = &h->ev[h->ev_next];
    h->ev_next = (h->ev_next + 1) % TG_HISTORY_EVENTS;
    if (h->ev_n < TG_HISTORY_EVENTS)
        h->ev_n++;
    memset(e, 0, sizeof(*e));
    e->at_ms = tg_history_now(h);
    e->reload = reload;
    e->from = from;
    e->to = to;
    if (cluster != NULL)
        snprintf(e->cluster, sizeof(e->cluster), "%s", cluster);
    if (endpoint != NULL)
        snprintf(e->endpoint, sizeof(e->endpoint), "%s", endpoint);
}

void tg_history_reloaded(tg_history_t *h)
{
    event_add(h, 1, NULL, NULL, NULL, NULL);
}

static void tick_cluster(tg_history_t *h, size_t at, size_t count, const tg_cluster_t *cl, tg_worker_t *const *w,
                         unsigned n, tg_health_t *health, uint64_t mono)
{
    static const size_t offs[C_COUNTED] = {
        offsetof(tg_endpoint_stats_t, requests), offsetof(tg_endpoint_stats_t, connect_failures),
        offsetof(tg_endpoint_stats_t, timeouts), offsetof(tg_endpoint_stats_t, resets),
    };
    int fresh;
    series_t *se = mapped(h, &h->cmap, &h->n_cmap, count, at, 0, cl->conf->name, &fresh);
    if (se == NULL)
        return;
    se->seen = h->tick;
    uint64_t d[C_COUNTED] = { 0 };
    uint32_t up = 0;
    for (size_t j = 0; j < cl->n_endpoints; j++) {
        const tg_endpoint_t *ep = &cl->endpoints[j];
        ep_seen_t *e = tg_chunks_get(&h->eps, ep->slot);
        uint64_t left;
        const char *state = tg_health_state(health, ep->slot, mono, &left);
        up += strcmp(state, "up") == 0;
        if (e == NULL)
            continue;
        int known = e->tick != 0 && e->tick + 1 >= h->tick; /* seen by the last tick (or this one) */
        for (size_t i = 0; i < C_COUNTED; i++) {
            uint64_t cur = tg_metrics_sum_endpoint(w, n, ep->slot, offs[i]);
            if (known)
                d[i] += cur >= e->last[i] ? cur - e->last[i] : cur;
            e->last[i] = cur;
        }
        if (known && e->state != NULL && strcmp(e->state, state) != 0)
            event_add(h, 0, cl->conf->name, ep->conf->named ? ep->addr_text : ep->conf->address, e->state, state);
        e->state = state;
        e->tick = h->tick;
    }
    int first;
    uint32_t *r = row(h, se, &first);
    if (r == NULL)
        return;
    for (size_t i = 0; i < C_COUNTED; i++)
        r[i] = add32(r[i], d[i]);
    if (first || up < r[C_UP])
        r[C_UP] = up;
    if (first || cl->n_endpoints > r[C_ENDPOINTS])
        r[C_ENDPOINTS] = (uint32_t)cl->n_endpoints;
}

/* Series whose names left the config more than the window ago. */
static void forget_gone(tg_history_t *h)
{
    for (size_t i = 0; i < h->cap; i++)
        for (series_t **pp = &h->tab[i]; *pp != NULL;) {
            series_t *se = *pp;
            if (se->seen + WINDOW_TICKS < h->tick) {
                *pp = se->next;
                series_free(h, se);
                h->n--;
                if (h->rmap != NULL) /* no position may point at it */
                    memset(h->rmap, 0, h->n_rmap * sizeof(*h->rmap));
                if (h->cmap != NULL)
                    memset(h->cmap, 0, h->n_cmap * sizeof(*h->cmap));
            } else {
                pp = &se->next;
            }
        }
}

void tg_history_tick(tg_history_t *h, const tg_snapshot_t *s, tg_worker_t *const *w, unsigned n, tg_health_t *health)
{
    h->tick++;
    int64_t b = (int64_t)(tg_history_now(h) / TG_HISTORY_BUCKET_MS);
    if (b > h->bucket) {
        h->bucket = b;
        forget_gone(h);
    }
    const tg_config_t *c = s->cfg;
    for (size_t r = 0; r < c->n_routes; r++)
        tick_route(h, r, c->routes[r].name, s->route_slot[r], w, n, c->n_routes);
    uint64_t mono = tg_clock_ms();
    for (size_t i = 0; i < s->clusters->n_clusters; i++)
        tick_cluster(h, i, s->clusters->n_clusters, &s->clusters->clusters[i], w, n, health, mono);
}

/* ---- reading ---- */

/* The q-quantile of a row's latency histogram (interpolated in its
 * bucket; past the last bound: that bound), or -1 without requests. */
static double quantile(const uint32_t *r, double q)
{
    uint64_t total = r[R_REQ];
    if (total == 0)
        return -1;
    double want = q * (double)total, seen = 0;
    for (size_t i = 0; i < TG_STATS_BUCKETS; i++) {
        uint32_t c = r[R_LAT0 + i];
        if (c > 0 && seen + c >= want) {
            double lo = i == 0 ? 0 : (double)tg_stats_bucket_us[i - 1];
            return lo + ((double)tg_stats_bucket_us[i] - lo) * (want - seen) / c;
        }
        seen += c;
    }
    return (double)tg_stats_bucket_us[TG_STATS_BUCKETS - 1];
}

/* The series' row for bucket b: NULL for no data yet (before it was
 * seen), a row of zeros for a bucket with nothing counted. */
static const uint32_t *row_at(const series_t *se, int64_t b, const uint32_t *zeros)
{
    if (b < se->since)
        return NULL;
    if (se->ring == NULL || b > se->at || b <= se->at - TG_HISTORY_BUCKETS)
        return zeros;
    return &se->ring[(size_t)(b % TG_HISTORY_BUCKETS) * (se->route ? R_N : C_N)];
}

typedef enum { V_COL, V_P50, V_P99, V_FAILURES } value_t;

/* "key": [v, ...] over buckets first..last; null where there is no data. */
static void column(struct evbuffer *out, const char *key, const series_t *se, int64_t first, int64_t last,
                   value_t what, size_t col)
{
    static const uint32_t zeros[R_N];
    evbuffer_add_printf(out, ", \"%s\": [", key);
    for (int64_t b = first; b <= last; b++) {
        const uint32_t *r = row_at(se, b, zeros);
        const char *sep = b > first ? ", " : "";
        if (r == NULL || (!se->route && col >= C_UP && r == zeros)) {
            evbuffer_add_printf(out, "%snull", sep);
        } else if (what == V_P50 || what == V_P99) {
            double v = quantile(r, what == V_P50 ? 0.5 : 0.99);
            if (v < 0)
                evbuffer_add_printf(out, "%snull", sep);
            else
                evbuffer_add_printf(out, "%s%.0f", sep, v);
        } else if (what == V_FAILURES) {
            evbuffer_add_printf(out, "%s%llu", sep,
                                (unsigned long long)r[C_CONNECT] + r[C_TIMEOUT] + r[C_RESET]);
        } else {
            evbuffer_add_printf(out, "%s%u", sep, r[col]);
        }
    }
    evbuffer_add_printf(out, "]");
}

static void name_json(struct evbuffer *out, const char *name)
{
    char esc[1024];
    tg_json_escape(esc, sizeof(esc), name);
    evbuffer_add_printf(out, "{\"name\": \"%s\"", esc);
}

void tg_history_json(const tg_history_t *h, struct evbuffer *out, const tg_snapshot_t *s, uint64_t window_ms)
{
    uint64_t now = tg_history_now(h);
    if (window_ms > (uint64_t)TG_HISTORY_BUCKETS * TG_HISTORY_BUCKET_MS)
        window_ms = (uint64_t)TG_HISTORY_BUCKETS * TG_HISTORY_BUCKET_MS;
    int64_t nb = (int64_t)((window_ms + TG_HISTORY_BUCKET_MS - 1) / TG_HISTORY_BUCKET_MS);
    if (nb < 1)
        nb = 1;
    int64_t last = h->bucket, first = last - nb + 1;
    evbuffer_add_printf(out,
                        "\"history\": {\"bucket_ms\": %d, \"start_ms\": %lld, \"now_ms\": %llu, \"buckets\": %lld, "
                        "\"routes\": [",
                        TG_HISTORY_BUCKET_MS, (long long)first * TG_HISTORY_BUCKET_MS, (unsigned long long)now,
                        (long long)nb);
    const tg_config_t *c = s->cfg;
    int any = 0;
    for (size_t i = 0; i < c->n_routes; i++) {
        const series_t *se = find(h, 1, c->routes[i].name);
        if (se == NULL)
            continue;
        evbuffer_add_printf(out, "%s", any++ ? ", " : "");
        name_json(out, se->name);
        evbuffer_add_printf(out, ", \"kept\": %s", se->ring != NULL || h->rings < h->max_rings ? "true" : "false");
        column(out, "requests", se, first, last, V_COL, R_REQ);
        column(out, "4xx", se, first, last, V_COL, R_4XX);
        column(out, "5xx", se, first, last, V_COL, R_5XX);
        column(out, "aborted", se, first, last, V_COL, R_ABORTED);
        column(out, "p50_us", se, first, last, V_P50, 0);
        column(out, "p99_us", se, first, last, V_P99, 0);
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "], \"clusters\": [");
    any = 0;
    for (size_t i = 0; i < s->clusters->n_clusters; i++) {
        const series_t *se = find(h, 0, s->clusters->clusters[i].conf->name);
        if (se == NULL)
            continue;
        evbuffer_add_printf(out, "%s", any++ ? ", " : "");
        name_json(out, se->name);
        evbuffer_add_printf(out, ", \"kept\": %s", se->ring != NULL || h->rings < h->max_rings ? "true" : "false");
        column(out, "requests", se, first, last, V_COL, C_REQ);
        column(out, "failures", se, first, last, V_FAILURES, 0);
        column(out, "connect_failures", se, first, last, V_COL, C_CONNECT);
        column(out, "timeouts", se, first, last, V_COL, C_TIMEOUT);
        column(out, "resets", se, first, last, V_COL, C_RESET);
        column(out, "up", se, first, last, V_COL, C_UP);
        column(out, "endpoints", se, first, last, V_COL, C_ENDPOINTS);
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "], \"events\": [");
    uint64_t since = (uint64_t)first * TG_HISTORY_BUCKET_MS;
    any = 0;
    for (size_t k = 0; k < h->ev_n; k++) { /* oldest first */
        const event_t *e = &h->ev[(h->ev_next + TG_HISTORY_EVENTS - h->ev_n + k) % TG_HISTORY_EVENTS];
        if (e->at_ms < since)
            continue;
        evbuffer_add_printf(out, "%s{\"at_ms\": %llu, \"kind\": \"%s\"", any++ ? ", " : "",
                            (unsigned long long)e->at_ms, e->reload ? "reload" : "endpoint");
        if (!e->reload) {
            char cl[160], ep[200];
            tg_json_escape(cl, sizeof(cl), e->cluster);
            tg_json_escape(ep, sizeof(ep), e->endpoint);
            evbuffer_add_printf(out, ", \"cluster\": \"%s\", \"endpoint\": \"%s\", \"from\": \"%s\", \"to\": \"%s\"", cl,
                                ep, e->from, e->to);
        }
        evbuffer_add_printf(out, "}");
    }
    evbuffer_add_printf(out, "]}");
}
