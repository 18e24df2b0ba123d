/*
 * filters/cache.c — the cache filter. See cache.h; the rules it follows
 * are cache_rfc.h's, its memory cache_store.h's.
 *
 * An exchange on a cached route is in one phase at a time:
 *
 *   on_request ─┬─ HIT        a usable entry answers (fresh; stale as the
 *               │             request's max-stale or the entry's
 *               │             stale-while-revalidate allows — the latter
 *               │             starting one background revalidation)
 *               ├─ WAITING    another request fills this key: paused until
 *               │             it ends (then HIT, or UPSTREAM) or until
 *               │             collapse_timeout (then UPSTREAM)
 *               ├─ UPSTREAM   the request goes on: as the key's filler, or
 *               │             passing; with the stored validators when a
 *               │             stale entry is revalidated
 *               └─ BYPASS     a method the cache does not answer (unsafe
 *                             ones invalidate the key when they succeed)
 *
 * In UPSTREAM the answer decides: a 304 to our validators freshens the
 * entry and the client gets the stored response (its own conditions and
 * Range applied); a 5xx (or no answer at all) within stale-if-error gets
 * the stale entry; a storable answer is stored as it streams by (copied
 * once, up to max_object_size) and ends the fill. A stored or freshened
 * response replaces the upstream's: the upstream's bytes are dropped and
 * the entry's go by reference.
 */
#include "filters/cache.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "filters/cache_rfc.h"
#include "filters/cache_store.h"
#include "proxy/base/log.h"

#define KEY_MAX 8192
#define REVALIDATE_TIMEOUT_MS 30000 /* a background revalidation's whole call */

/* ---- the zone: a store shared by name across routes and reloads ---- */

typedef struct cache_zone {
    char *name;
    tg_cache_store_t *store;
    uint64_t max_size;
} cache_zone_t;

typedef struct cache_conf {
    char *zone_name;            /* absent: "default" */
    char *name;                 /* in Cache-Status; absent: "tollgate" */
    uint64_t max_size, max_object;
    uint32_t max_variants;
    int ignore_query, sort_query;
    char **ignore_params;
    size_t n_ignore_params;
    uint64_t collapse_timeout_ms;
    uint64_t heuristic_max_ms;
    unsigned counters;
    tg_shared_t *shared;        /* from start: the zone's table */
    cache_zone_t *zone;
} cache_conf_t;

enum { C_HIT, C_STALE, C_REVALIDATED, C_MISS, C_COLLAPSED, C_BYPASS };
static const tg_filter_counter_t cache_counters[] = {
    [C_HIT] = { "tollgate_cache_requests_total",
                "Requests on cached routes by what the cache did: hit (a fresh entry), stale (a stale entry, as "
                "max-stale, stale-while-revalidate or stale-if-error allow), revalidated (the upstream's 304 "
                "freshened it), collapsed (answered by another request's fill), miss (went upstream), bypass "
                "(a method or request the cache does not answer).",
                "result", "hit" },
    [C_STALE] = { "tollgate_cache_requests_total", NULL, "result", "stale" },
    [C_REVALIDATED] = { "tollgate_cache_requests_total", NULL, "result", "revalidated" },
    [C_MISS] = { "tollgate_cache_requests_total", NULL, "result", "miss" },
    [C_COLLAPSED] = { "tollgate_cache_requests_total", NULL, "result", "collapsed" },
    [C_BYPASS] = { "tollgate_cache_requests_total", NULL, "result", "bypass" },
};

static void on_woken(tg_filter_exchange_t *fx, uint64_t gen);

static void *zone_make(const tg_filter_host_t *h, const char *key, const void *arg)
{
    const cache_conf_t *c = arg;
    cache_zone_t *z = calloc(1, sizeof(*z));
    if (z == NULL || (z->name = strdup(c->zone_name)) == NULL ||
        (z->store = tg_cache_store_new(c->max_size, c->max_object, c->max_variants, on_woken)) == NULL) {
        if (z != NULL)
            free(z->name);
        free(z);
        return NULL;
    }
    z->max_size = c->max_size;
    return z;
}

static void zone_destroy(void *obj)
{
    cache_zone_t *z = obj;
    tg_cache_store_free(z->store);
    free(z->name);
    free(z);
}

static void zone_metrics(void *const *objs, size_t n, struct evbuffer *out)
{
    static const struct {
        const char *family, *type, *help;
    } fam[] = {
        { "tollgate_cache_entries", "gauge", "Responses stored in the cache zone." },
        { "tollgate_cache_bytes", "gauge", "Bytes the cache zone's entries, keys and bodies take." },
        { "tollgate_cache_max_bytes", "gauge", "The cache zone's budget (max_size)." },
        { "tollgate_cache_evictions_total", "counter", "Entries the cache zone dropped to stay in budget." },
        { "tollgate_cache_purged_total", "counter", "Entries dropped by POST /-/cache/purge or invalidated by an "
                                                    "unsafe method's success." },
        { "tollgate_cache_waiting", "gauge", "Requests waiting now for another request's fetch of the same key." },
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].family, fam[f].help, fam[f].family,
                            fam[f].type);
        for (size_t i = 0; i < n; i++) {
            const cache_zone_t *z = objs[i];
            tg_cache_stats_t st;
            tg_cache_store_stats(z->store, &st);
            uint64_t v[] = { st.entries, st.bytes, z->max_size, st.evictions, st.purged, st.waiting };
            evbuffer_add_printf(out, "%s{zone=\"%s\"} %llu\n", fam[f].family, z->name, (unsigned long long)v[f]);
        }
    }
}

static const tg_shared_type_t zone_type = { "cache", zone_make, zone_destroy, zone_metrics };

/* ---- config ---- */

static const tg_key_t cache_keys[] = {
    { "zone", TG_KEY_STRING, "name", "`default`",
      "the store this filter keeps its entries in: filters naming the same zone with the same sizes share one "
      "(across routes, workers and reloads); a reload that changes `max_size`, `max_object_size` or "
      "`max_variants` starts the zone empty",
      TG_FIELD(cache_conf_t, zone_name, TG_FIELD_STR) },
    { "max_size", TG_KEY_SIZE, "size 64KiB–64GiB", "`64MiB`",
      "the zone's memory budget: entries, their keys and bodies; the least recently used keys go first",
      .min = 64 * 1024, .max = 64LL << 30, TG_FIELD(cache_conf_t, max_size, TG_FIELD_U64), .def = 64 << 20 },
    { "max_object_size", TG_KEY_SIZE, "size 1KiB–1GiB", "`1MiB`",
      "the largest response body stored; a larger one passes (and its key is not waited on)", .min = 1024,
      .max = 1LL << 30, TG_FIELD(cache_conf_t, max_object, TG_FIELD_U64), .def = 1 << 20 },
    { "max_variants", TG_KEY_INT, "integer 1–64", "`8`",
      "entries kept per key for responses with `Vary` (one per set of the request headers it names); the "
      "oldest goes first",
      .min = 1, .max = 64, TG_FIELD(cache_conf_t, max_variants, TG_FIELD_U32), .def = 8 },
    { "ignore_query", TG_KEY_BOOL, "boolean", "`false`", "leave the query out of the key altogether",
      TG_FIELD(cache_conf_t, ignore_query, TG_FIELD_INT) },
    { "ignore_query_params", TG_KEY_STRINGS, "list of names", "none",
      "query parameters left out of the key (tracking parameters: `utm_source`, `fbclid`)" },
    { "sort_query", TG_KEY_BOOL, "boolean", "`false`",
      "sort the query's parameters in the key, so `?a=1&b=2` and `?b=2&a=1` are one entry",
      TG_FIELD(cache_conf_t, sort_query, TG_FIELD_INT) },
    { "collapse_timeout", TG_KEY_DURATION, "duration 0–60s", "`5s`",
      "how long a request for a key being fetched waits for that fetch before it goes upstream itself; `0`: "
      "never waits",
      .min = 0, .max = 60000, TG_FIELD(cache_conf_t, collapse_timeout_ms, TG_FIELD_U64), .def = 5000 },
    { "heuristic_max", TG_KEY_DURATION, "duration 0–7d", "`1h`",
      "a response without explicit freshness but with `Last-Modified` is fresh for a tenth of its age, at most "
      "this (RFC 9111 4.2.2); `0`: never",
      .min = 0, .max = 7LL * 86400 * 1000, TG_FIELD(cache_conf_t, heuristic_max_ms, TG_FIELD_U64),
      .def = 3600 * 1000 },
    { "name", TG_KEY_STRING, "token", "`tollgate`", "the cache's name in `Cache-Status`",
      TG_FIELD(cache_conf_t, name, TG_FIELD_STR) },
};
static const tg_keyset_t cache_keyset = TG_KEYSET("filter.cache", "cache", cache_keys);

static void cache_destroy(void *p)
{
    cache_conf_t *c = p;
    if (c == NULL)
        return;
    if (c->zone != NULL)
        tg_shared_put(c->shared, c->zone);
    free(c->zone_name);
    free(c->name);
    for (size_t i = 0; i < c->n_ignore_params; i++)
        free(c->ignore_params[i]);
    free(c->ignore_params);
    free(c);
}

static int token_ok(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("-_.", *s)))
            return 0;
    return 1;
}

static void *cache_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[10];
    cache_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_cache);
    int rc = tg_node_read_into(node, "cache", &cache_keyset, c, v);
    tg_node_t params = tg_node_get(v, &cache_keyset, "ignore_query_params");
    if (rc == 0 && tg_node_present(&params) &&
        tg_node_str_list(&params, "ignore_query_params", &c->ignore_params, &c->n_ignore_params) < 0)
        rc = -1;
    if (rc == 0 && c->max_object > c->max_size) {
        tg_node_t mo = tg_node_get(v, &cache_keyset, "max_object_size");
        tg_node_error(tg_node_present(&mo) ? &mo : node, "cache: max_object_size is larger than max_size");
        rc = -1;
    }
    if (rc == 0 && c->zone_name == NULL && (c->zone_name = strdup("default")) == NULL)
        rc = -1;
    if (rc == 0 && c->name == NULL && (c->name = strdup("tollgate")) == NULL)
        rc = -1;
    if (rc == 0 && (!token_ok(c->zone_name) || !token_ok(c->name))) {
        tg_node_error(node, "cache: zone and name are tokens (letters, digits, '-', '_', '.')");
        rc = -1;
    }
    if (rc < 0) {
        cache_destroy(c);
        return NULL;
    }
    return c;
}

static int cache_start(void *p, const tg_filter_host_t *h, tg_errors_t *errs)
{
    cache_conf_t *c = p;
    if (c->zone != NULL)
        return 0;
    char key[300];
    snprintf(key, sizeof(key), "%s %llu %llu %u", c->zone_name, (unsigned long long)c->max_size,
             (unsigned long long)c->max_object, c->max_variants);
    c->shared = h->shared;
    if ((c->zone = tg_shared_get(h, &zone_type, key, c)) == NULL) {
        tg_errors_add(errs, "cache: out of memory for zone %s", c->zone_name);
        return -1;
    }
    return 0;
}

/* ---- the key ---- */

static int param_ignored(const cache_conf_t *c, const char *p, size_t len)
{
    size_t nl = 0;
    while (nl < len && p[nl] != '=')
        nl++;
    for (size_t i = 0; i < c->n_ignore_params; i++)
        if (strlen(c->ignore_params[i]) == nl && memcmp(c->ignore_params[i], p, nl) == 0)
            return 1;
    return 0;
}

typedef struct {
    const char *p;
    size_t len;
} span_t;

static int span_cmp(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->p, y->p, n);
    return r ? r : (x->len > y->len) - (x->len < y->len);
}

/* AUTHORITY/PATH?QUERY: the authority lower-cased, the path as the
 * exchange normalized it, the query as configured. Length, or 0 when it
 * does not fit (such a request passes). */
static size_t make_key(const cache_conf_t *c, const tg_request_t *req, char *out, size_t cap)
{
    const char *auth = req->authority ? req->authority : "";
    size_t al = strlen(auth), pl = req->path_len, n = 0;
    if (al + pl + 2 > cap)
        return 0;
    tg_ascii_lower(out, auth, al);
    n = al;
    if (pl == 0 || req->target[0] != '/')
        out[n++] = '/';
    memcpy(out + n, req->target, pl);
    n += pl;
    const char *q = req->target[pl] == '?' ? req->target + pl + 1 : NULL;
    if (q == NULL || c->ignore_query)
        return n;
    span_t parts[128];
    size_t np = 0, ql = strlen(q);
    for (size_t i = 0; i <= ql && np < 128;) {
        size_t s = i;
        while (i < ql && q[i] != '&')
            i++;
        if (i > s && !param_ignored(c, q + s, i - s))
            parts[np++] = (span_t){ q + s, i - s };
        i++;
    }
    if (np == 128)
        return 0;
    if (c->sort_query)
        qsort(parts, np, sizeof(parts[0]), span_cmp);
    for (size_t i = 0; i < np; i++) {
        if (n + parts[i].len + 2 > cap)
            return 0;
        out[n++] = i == 0 ? '?' : '&';
        memcpy(out + n, parts[i].p, parts[i].len);
        n += parts[i].len;
    }
    return n;
}

/* ---- per exchange ---- */

typedef struct resp_meta resp_meta_t;

typedef enum { CX_BYPASS = 0, CX_HIT, CX_WAITING, CX_UPSTREAM } cx_phase_t;

typedef struct cx {
    cache_conf_t *c;
    tg_filter_exchange_t *fx;
    uint64_t gen;
    size_t index;
    cx_phase_t phase;
    char *key;
    size_t klen;
    tg_headers_t seen;          /* the request's headers as the cache saw them */
    const tg_header_t *inm, *ims, *if_range, *range_h; /* in seen: the first of each (one walk) */
    tg_cc_t rcc;                /* its Cache-Control */
    int64_t request_time;
    unsigned get : 1, unsafe : 1, credentials : 1, range : 1, added_validators : 1, replaced : 1, storing : 1,
        woken : 1, timer_set : 1, counted : 1;
    tg_cache_fill_t *fill;      /* this request fills the key */
    tg_cache_entry_t *stale;    /* the entry it revalidates or may fall back on (a reference) */
    tg_cache_entry_t *served;   /* the entry the response is made from (a reference) */
    tg_cache_waiter_t waiter;
    tg_timer_t timer;           /* WAITING: collapse_timeout */
    /* a response made from an entry: its body's part sent */
    const unsigned char *rbody;
    size_t rlen;
    /* storing */
    tg_cache_body_t *body;
    tg_headers_t store_headers;
    int store_status;
    const char *vary;
    resp_meta_t *meta;          /* what the response's head said (Age included) */
    int64_t response_time;
} cx_t;

static void count(cx_t *x, unsigned id)
{
    if (!x->counted) {
        x->counted = 1;
        tg_filter_count(x->fx, x->c->counters, id);
    }
}

static void cs_add(cx_t *x, tg_headers_t *h, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cs_add(cx_t *x, tg_headers_t *h, const char *fmt, ...)
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "%s; ", x->c->name);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(buf))
        vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    char *v = tg_arena_strndup(x->fx->arena, buf, strlen(buf));
    if (v != NULL)
        tg_headers_add(h, x->fx->arena, "cache-status", 12, v, strlen(v));
}

/* A hit's Cache-Status, made without printf (the hot path). */
static void cs_hit(cx_t *x, tg_headers_t *h, int64_t ttl)
{
    size_t nl = strlen(x->c->name);
    char *v = tg_arena_alloc(x->fx->arena, nl + 32);
    if (v == NULL)
        return;
    memcpy(v, x->c->name, nl);
    memcpy(v + nl, "; hit; ttl=", 11);
    size_t n = nl + 11;
    if (ttl < 0) {
        v[n++] = '-';
        ttl = -ttl;
    }
    n += tg_fmt_u64(v + n, (uint64_t)ttl);
    v[n] = '\0';
    tg_headers_add_checked(h, x->fx->arena, "cache-status", 12, v, n); /* a checked token, literals, digits */
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* The wall clock in seconds as the exchange's loop read it this turn. */
static int64_t now_of(const cx_t *x)
{
    return tg_loop_wall_us(x->fx->loop) / 1000000;
}

static int64_t entry_age(const tg_cache_entry_t *e, int64_t now)
{
    return e->initial_age + (now > e->response_time ? now - e->response_time : 0);
}

/* ---- entries from responses ---- */

static int is_stored_field(const tg_header_t *h)
{
    static const char *const skip[] = { "content-length", "transfer-encoding", "age", "connection", "keep-alive",
                                        "proxy-connection", "te", "trailer", "upgrade" };
    return !TG_HEADER_NAMED(h, skip);
}

struct resp_meta {
    tg_cc_t cc;
    int64_t date, expires, last_modified, age;
    int has_expires, set_cookie, etag;
    char vary[512];             /* lower-case names, "\n"-separated; "*" alone for Vary: * */
    int vary_bad;               /* too long to keep */
};

static void add_vary(resp_meta_t *m, const char *v, size_t len)
{
    size_t n = strlen(m->vary);
    for (size_t i = 0; i < len;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i == s)
            continue;
        if (n + (i - s) + 2 > sizeof(m->vary)) {
            m->vary_bad = 1;
            return;
        }
        if (n > 0)
            m->vary[n++] = '\n';
        for (size_t k = s; k < i; k++)
            m->vary[n++] = (char)(v[k] >= 'A' && v[k] <= 'Z' ? v[k] + 32 : v[k]);
        m->vary[n] = '\0';
    }
}

static void read_meta(const tg_headers_t *h, resp_meta_t *m)
{
    memset(m, 0, sizeof(*m));
    tg_cc_init(&m->cc);
    m->date = m->expires = m->last_modified = m->age = -1;
    for (size_t i = 0; i < h->n; i++) {
        const tg_header_t *f = &h->v[i];
#define IS(n) (f->name_len == sizeof(n) - 1 && strncasecmp(f->name, n, sizeof(n) - 1) == 0)
        if (IS("cache-control"))
            tg_cc_parse(&m->cc, f->value, f->value_len);
        else if (IS("date") && m->date < 0)
            m->date = tg_http_date_parse(f->value, f->value_len);
        else if (IS("expires") && !m->has_expires) {
            m->has_expires = 1;
            int64_t t = tg_http_date_parse(f->value, f->value_len);
            m->expires = t < 0 ? 0 : t; /* an invalid date is in the past (RFC 9111 5.3) */
        } else if (IS("last-modified") && m->last_modified < 0)
            m->last_modified = tg_http_date_parse(f->value, f->value_len);
        else if (IS("age") && m->age < 0)
            m->age = tg_http_delta_parse(f->value, f->value_len);
        else if (IS("set-cookie"))
            m->set_cookie = 1;
        else if (IS("etag"))
            m->etag = 1;
        else if (IS("vary"))
            add_vary(m, f->value, f->value_len);
#undef IS
    }
}

static int64_t lifetime_of(const cache_conf_t *c, const resp_meta_t *m, int status, int64_t response_time)
{
    int64_t date = m->date >= 0 ? m->date : response_time;
    return tg_cache_lifetime(&m->cc, status, date, m->has_expires ? m->expires : -1, m->last_modified,
                             (int64_t)(c->heuristic_max_ms / 1000));
}

static void set_meta(const cache_conf_t *c, tg_cache_entry_t *e, const resp_meta_t *m, int64_t request_time,
                     int64_t response_time)
{
    e->response_time = response_time;
    e->initial_age = tg_cache_initial_age(m->age, m->date, request_time, response_time);
    e->lifetime = lifetime_of(c, m, e->status, response_time);
    e->swr = m->cc.stale_while_revalidate;
    e->sie = m->cc.stale_if_error;
    e->no_stale = m->cc.must_revalidate || m->cc.proxy_revalidate || m->cc.s_maxage != TG_CC_ABSENT;
    e->no_cache = m->cc.no_cache;
    e->last_modified = m->last_modified;
}

/* May this answer to a GET be stored (and is it worth it)? */
static int storable(const cache_conf_t *c, int status, const resp_meta_t *m, int credentials, int64_t now)
{
    if (m->set_cookie || m->vary_bad || strcmp(m->vary, "*") == 0 || strstr(m->vary, "\n*") != NULL ||
        !tg_cache_may_store(status, &m->cc, m->has_expires, credentials))
        return 0;
    /* without freshness or a validator (or leave to be served stale) it could never be used */
    return lifetime_of(c, m, status, now) > 0 || m->etag || m->last_modified >= 0 ||
           m->cc.stale_while_revalidate > 0 || m->cc.stale_if_error > 0;
}

/* The stored fields: the response's, less framing and hop-by-hop. */
static int copy_stored(tg_arena_t *a, const tg_headers_t *in, tg_headers_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < in->n; i++)
        if (is_stored_field(&in->v[i]) &&
            tg_headers_add(out, a, in->v[i].name, in->v[i].name_len, in->v[i].value, in->v[i].value_len) < 0)
            return -1;
    return 0;
}

/* A stored head updated by a 304's fields (RFC 9111 3.2 and 4.3.4). */
static int merge_304(tg_arena_t *a, const tg_cache_entry_t *e, const tg_headers_t *fresh, tg_headers_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < e->n_headers; i++) {
        const tg_header_t *h = &e->headers[i];
        int replaced = 0;
        for (size_t k = 0; k < fresh->n && !replaced; k++)
            replaced = fresh->v[k].name_len == h->name_len && strncasecmp(fresh->v[k].name, h->name, h->name_len) == 0;
        if (!replaced && tg_headers_add(out, a, h->name, h->name_len, h->value, h->value_len) < 0)
            return -1;
    }
    for (size_t k = 0; k < fresh->n; k++)
        if (is_stored_field(&fresh->v[k]) && tg_headers_add(out, a, fresh->v[k].name, fresh->v[k].name_len,
                                                            fresh->v[k].value, fresh->v[k].value_len) < 0)
            return -1;
    return 0;
}

/* A freshened entry sharing e's body; NULL when out of memory. */
static tg_cache_entry_t *freshen(const cache_conf_t *c, tg_arena_t *a, const tg_cache_entry_t *e,
                                 const tg_headers_t *fresh, int64_t request_time, int64_t now)
{
    tg_headers_t merged;
    if (merge_304(a, e, fresh, &merged) < 0)
        return NULL;
    atomic_fetch_add(&e->body->refs, 1);
    tg_cache_entry_t *n = tg_cache_entry_new(e->status, &merged, e->variant, e->variant_len, e->body);
    if (n == NULL)
        return NULL;
    resp_meta_t m, f;
    read_meta(&merged, &m);
    read_meta(fresh, &f);
    m.age = f.age; /* the 304's own age: Age is never stored */
    set_meta(c, n, &m, request_time, now);
    return n;
}

/* Stores e under key, with the Vary its head names. */
static void put_entry(tg_cache_store_t *st, const char *key, size_t klen, tg_cache_entry_t *e)
{
    resp_meta_t m;
    tg_headers_t h = { .v = e->headers, .n = e->n_headers, .cap = e->n_headers };
    read_meta(&h, &m);
    if (tg_cache_insert(st, key, klen, m.vary, e) < 0)
        tg_debug("cache: %.*s not stored (over the zone's budget or out of memory)", (int)klen, key);
}

/* ---- responses made from an entry ---- */

static void release_body(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    tg_cache_entry_put(arg);
}

static int is_304_field(const tg_header_t *h)
{
    static const char *const keep[] = { "cache-control", "content-location", "date", "etag", "expires", "vary",
                                        "last-modified" };
    return TG_HEADER_NAMED(h, keep);
}

/* Would the client's own conditions (If-None-Match, If-Modified-Since)
 * make this entry a 304 (RFC 9110 13.2.2)? */
static int not_modified(const cx_t *x, const tg_cache_entry_t *e)
{
    if (e->status < 200 || e->status > 299)
        return 0;
    const tg_header_t *inm = x->inm;
    if (inm != NULL)
        return tg_etag_match_weak(inm->value, inm->value_len, e->etag, e->etag_len);
    const tg_header_t *ims = x->ims;
    if (ims == NULL)
        return 0;
    int64_t t = tg_http_date_parse(ims->value, ims->value_len);
    return t >= 0 && e->last_modified >= 0 && e->last_modified <= t;
}

/* Does If-Range (if any) let Range apply to this entry? */
static int if_range_ok(const cx_t *x, const tg_cache_entry_t *e)
{
    const tg_header_t *ir = x->if_range;
    if (ir == NULL)
        return 1;
    if (ir->value_len > 0 && (ir->value[0] == '"' || ir->value[0] == 'W'))
        return e->etag != NULL && tg_etag_equal_strong(ir->value, ir->value_len, e->etag, e->etag_len);
    int64_t t = tg_http_date_parse(ir->value, ir->value_len);
    return t >= 0 && e->last_modified >= 0 && t == e->last_modified;
}

/* Fills r with the answer entry e makes for this request: 200 (or its
 * stored status), 304 for the client's conditions, 206/416 for its Range,
 * no body for HEAD; x->rbody/rlen: the body bytes to send. x->served
 * takes a reference (its fields are the response's until the end). */
static int answer_from(cx_t *x, tg_cache_entry_t *e, tg_response_t *r, int64_t now)
{
    tg_arena_t *a = x->fx->arena;
    tg_cache_entry_ref(e);
    if (x->served != NULL)
        tg_cache_entry_put(x->served);
    x->served = e;
    memset(r, 0, sizeof(*r));
    r->version = 11;
    r->status = e->status;
    int nm = not_modified(x, e);
    /* room for the entry's fields and what the answer and later filters
     * add (Age, Cache-Status, Content-Range, ...): one allocation */
    size_t cap = e->n_headers + 8;
    if ((r->headers.v = tg_arena_alloc(a, cap * sizeof(tg_header_t))) == NULL)
        return -1;
    r->headers.cap = cap;
    for (size_t i = 0; i < e->n_headers; i++)
        if (!nm || is_304_field(&e->headers[i]))
            r->headers.v[r->headers.n++] = e->headers[i];
    if (e->fields_safe) /* checked when stored: the writers skip them */
        r->headers.checked = r->headers.n;
    int64_t ag = entry_age(e, now);
    char *av = tg_arena_alloc(a, 24);
    if (av == NULL)
        return -1;
    size_t al = tg_fmt_u64(av, (uint64_t)(ag < 0 ? 0 : ag < TG_CC_DELTA_MAX ? ag : TG_CC_DELTA_MAX));
    av[al] = '\0';
    if (tg_headers_add_checked(&r->headers, a, "age", 3, av, al) < 0) /* digits */
        return -1;
    const unsigned char *body = e->body ? e->body->data : NULL;
    size_t len = e->body ? e->body->len : 0;
    x->rbody = body;
    x->rlen = len;
    if (nm) {
        r->status = 304;
        r->body = TG_BODY_NONE;
        x->rlen = 0;
        return 0;
    }
    const tg_header_t *rg = x->get && e->status == 200 ? x->range_h : NULL;
    uint64_t first, last;
    int ranged = rg != NULL && if_range_ok(x, e) ? tg_range_parse(rg->value, rg->value_len, len, &first, &last) : 0;
    char cr[80];
    if (ranged == 1) {
        r->status = 206;
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first, (unsigned long long)last,
                 (unsigned long long)len);
        x->rbody = body + first;
        x->rlen = (size_t)(last - first + 1);
    } else if (ranged < 0) {
        r->status = 416;
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)len);
        x->rlen = 0;
    }
    if (ranged != 0) {
        char *v = tg_arena_strndup(a, cr, strlen(cr));
        if (v == NULL || tg_headers_add(&r->headers, a, "content-range", 13, v, strlen(v)) < 0)
            return -1;
    }
    if (!x->get) { /* HEAD: the length, no body */
        r->body = TG_BODY_NONE;
        r->content_length = x->rlen;
        x->rlen = 0;
    } else if (r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200)) {
        r->body = TG_BODY_NONE;
        x->rlen = 0;
    } else {
        r->body = TG_BODY_LENGTH;
        r->content_length = x->rlen;
    }
    return 0;
}

/* The request is answered from e: a response of the filter's own.
 * fwd_status: 0 for a hit, else the status of the upstream answer it
 * stands in for (stale-if-error). */
static tg_filter_status_t reply_from(cx_t *x, tg_cache_entry_t *e, int64_t now, unsigned counter, int fwd_status)
{
    tg_filter_exchange_t *fx = x->fx;
    tg_response_t *r = tg_arena_alloc(fx->arena, sizeof(*r));
    if (r == NULL || answer_from(x, e, r, now) < 0) {
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    int64_t ttl = e->lifetime - entry_age(e, now);
    if (fwd_status)
        cs_add(x, &r->headers, "fwd=stale; fwd-status=%d; ttl=%lld", fwd_status, (long long)ttl);
    else
        cs_hit(x, &r->headers, ttl);
    x->phase = CX_HIT;
    count(x, counter);
    fx->reply_response = r;
    fx->reply_body = x->rbody;
    fx->reply_body_len = x->rlen;
    if (x->rlen > 0) {
        tg_cache_entry_ref(e); /* the body's bytes: until they are written */
        fx->reply_release = release_body;
        fx->reply_release_arg = e;
    } else {
        fx->reply_release = NULL;
    }
    return TG_FILTER_REPLY;
}

/* The upstream's answer is replaced by entry e's (a 304 that freshened
 * it, a 5xx within stale-if-error): its bytes are dropped as they come,
 * e's are sent at the end. */
static void replace_with(cx_t *x, tg_cache_entry_t *e, tg_response_t *resp, int64_t now)
{
    tg_response_t r;
    if (answer_from(x, e, &r, now) < 0)
        return; /* out of memory: the upstream's answer goes on */
    r.trailers = resp->trailers;
    r.trailers.n = 0;
    r.keep_alive = resp->keep_alive;
    *resp = r;
    x->replaced = 1;
}

/* ---- going upstream ---- */

static int add_header(cx_t *x, const char *name, const char *value, size_t vlen)
{
    char *v = tg_arena_strndup(x->fx->arena, value, vlen);
    return v == NULL ? -1 : tg_headers_add(&x->fx->req->headers, x->fx->arena, name, strlen(name), v, vlen);
}

/* Revalidating a stale entry: our validators go instead of the client's
 * own conditions (those are answered from the result). */
static void add_validators(cx_t *x, const tg_cache_entry_t *e)
{
    const tg_header_t *lm = tg_cache_entry_header(e, "last-modified");
    if (e->etag == NULL && lm == NULL)
        return;
    tg_headers_t *h = &x->fx->req->headers;
    tg_headers_remove(h, "if-none-match");
    tg_headers_remove(h, "if-modified-since");
    tg_headers_remove(h, "if-range");
    tg_headers_remove(h, "range");
    if ((e->etag != NULL && add_header(x, "if-none-match", e->etag, e->etag_len) < 0) ||
        (lm != NULL && add_header(x, "if-modified-since", lm->value, lm->value_len) < 0))
        return;
    x->added_validators = 1;
}

static tg_filter_status_t go_upstream(cx_t *x)
{
    x->phase = CX_UPSTREAM;
    x->request_time = now_of(x);
    if (x->stale != NULL && x->get && !x->range)
        add_validators(x, x->stale);
    return TG_FILTER_CONTINUE;
}

/* ---- background revalidation (stale-while-revalidate) ---- */

typedef struct bg {
    cache_conf_t *c;
    int credentials;
    cache_zone_t *zone;         /* kept by the call's snapshot reference, which keeps c */
    tg_cache_fill_t *fill;
    tg_cache_entry_t *stale;
    int64_t request_time;
    size_t klen;
    char key[];
} bg_t;

static void on_bg_answer(void *arg, const tg_filter_call_result_t *res)
{
    bg_t *b = arg;
    int64_t now = now_s();
    tg_arena_t a;
    tg_arena_init(&a);
    tg_cache_entry_t *e = NULL;
    resp_meta_t m;
    if (res->status == 304) {
        e = freshen(b->c, &a, b->stale, res->headers, b->request_time, now);
    } else if (res->status >= 200) {
        read_meta(res->headers, &m);
        tg_headers_t stored;
        tg_cache_body_t *body;
        /* only without Vary: the request's headers are not kept for a variant */
        if (storable(b->c, res->status, &m, b->credentials, now) && m.vary[0] == '\0' && b->stale->variant_len == 0 &&
            res->body_len <= b->c->max_object && copy_stored(&a, res->headers, &stored) == 0 &&
            (body = tg_cache_body_new(res->body_len)) != NULL) {
            memcpy(body->data, res->body, res->body_len);
            body->len = res->body_len;
            if ((e = tg_cache_entry_new(res->status, &stored, "", 0, body)) != NULL)
                set_meta(b->c, e, &m, b->request_time, now);
        }
    }
    if (e != NULL)
        put_entry(b->zone->store, b->key, b->klen, e);
    tg_debug("cache: background revalidation of %.*s: %d%s", (int)b->klen, b->key, res->status,
             res->status ? "" : res->error ? res->error : "");
    tg_cache_fill_end(b->zone->store, b->fill, 0);
    tg_cache_entry_put(b->stale);
    tg_arena_free(&a);
    free(b);
}

static int skip_in_bg(const tg_header_t *h)
{
    static const char *const skip[] = { "if-none-match", "if-modified-since", "if-range", "range", "content-length",
                                        "host", "te", "connection", "upgrade", "expect" };
    return TG_HEADER_NAMED(h, skip) || (h->name_len > 0 && h->name[0] == ':');
}

static void revalidate_in_background(cx_t *x, tg_cache_entry_t *e)
{
    tg_filter_exchange_t *fx = x->fx;
    tg_cache_fill_t *fill;
    if (fx->cluster == NULL || fx->ops == NULL || fx->ops->call == NULL ||
        tg_cache_begin(x->c->zone->store, x->key, x->klen, &x->seen, &fill, NULL) != TG_CACHE_FILL)
        return; /* one runs already */
    bg_t *b = malloc(sizeof(*b) + x->klen + 1);
    const char **hv = tg_arena_alloc(fx->arena, (x->seen.n + 2) * 2 * sizeof(char *));
    if (b == NULL || hv == NULL) {
        free(b);
        tg_cache_fill_end(x->c->zone->store, fill, 0);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < x->seen.n; i++) {
        const tg_header_t *h = &x->seen.v[i];
        if (skip_in_bg(h))
            continue;
        const char *name = tg_http_lower_name(fx->arena, h->name, h->name_len);
        const char *value = tg_arena_strndup(fx->arena, h->value, h->value_len);
        if (name == NULL || value == NULL)
            continue;
        hv[2 * n] = name;
        hv[2 * n + 1] = value;
        n++;
    }
    const tg_header_t *lm = tg_cache_entry_header(e, "last-modified");
    if (e->etag != NULL) {
        hv[2 * n] = "if-none-match";
        hv[2 * n + 1] = tg_arena_strndup(fx->arena, e->etag, e->etag_len);
        n += hv[2 * n + 1] != NULL;
    }
    if (lm != NULL) {
        hv[2 * n] = "if-modified-since";
        hv[2 * n + 1] = tg_arena_strndup(fx->arena, lm->value, lm->value_len);
        n += hv[2 * n + 1] != NULL;
    }
    *b = (bg_t){ .c = x->c, .credentials = x->credentials, .zone = x->c->zone, .fill = fill, .stale = e, .request_time = now_s(), .klen = x->klen };
    memcpy(b->key, x->key, x->klen);
    b->key[x->klen] = '\0';
    tg_cache_entry_ref(e);
    tg_filter_call_t call = {
        .cluster = fx->cluster,
        .method = "GET",
        .path = fx->req->target,
        .authority = fx->req->authority,
        .headers = hv,
        .n_headers = n,
        .timeout_ms = REVALIDATE_TIMEOUT_MS,
        .max_body = x->c->max_object,
        .deferred = 1, /* the stale answer goes first */
    };
    if (fx->ops->call(fx, &call, on_bg_answer, b) == NULL) {
        tg_cache_entry_put(e);
        tg_cache_fill_end(x->c->zone->store, fill, 0);
        free(b);
    }
}

/* ---- the request ---- */

/* What the cache does with a request, given what it holds: answer, wait,
 * or let it go upstream. woken: after a wait (it neither waits again nor
 * counts as a plain hit). */
static tg_filter_status_t decide(cx_t *x)
{
    tg_cache_store_t *st = x->c->zone->store;
    int64_t now = now_of(x);
    tg_cache_entry_t *e = tg_cache_lookup(st, x->key, x->klen, &x->seen);
    if (e != NULL) {
        int64_t age = entry_age(e, now), ttl = e->lifetime - age;
        const tg_cc_t *r = &x->rcc;
        int usable = !r->no_cache && !e->no_cache;
        if (usable && ttl > 0 && (r->max_age == TG_CC_ABSENT || age <= r->max_age) &&
            (r->min_fresh == TG_CC_ABSENT || ttl >= r->min_fresh)) {
            tg_filter_status_t s = reply_from(x, e, now, x->woken ? C_COLLAPSED : C_HIT, 0);
            tg_cache_entry_put(e);
            return s;
        }
        if (usable && ttl <= 0 && !e->no_stale) {
            int by_client = r->max_stale != TG_CC_ABSENT && -ttl <= r->max_stale;
            int by_swr = e->swr > 0 && -ttl < e->swr && r->max_age == TG_CC_ABSENT;
            if (by_client || by_swr) {
                if (by_swr && !by_client)
                    revalidate_in_background(x, e);
                tg_filter_status_t s = reply_from(x, e, now, C_STALE, 0);
                tg_cache_entry_put(e);
                return s;
            }
        }
        x->stale = e; /* revalidated on the way, or the stale-if-error answer */
    }
    if (x->rcc.only_if_cached) {
        count(x, C_BYPASS);
        x->fx->reply_status = 504;
        x->fx->reply_message = "not in the cache (only-if-cached)";
        cs_add(x, &x->fx->reply_headers, "fwd=miss");
        x->phase = CX_BYPASS;
        return TG_FILTER_REPLY;
    }
    if (!x->get || x->range)
        return go_upstream(x); /* HEAD and Range misses go as they came, fill nothing */
    tg_cache_waiter_t *w = x->c->collapse_timeout_ms && !x->woken ? &x->waiter : NULL;
    if (w != NULL) {
        memset(w, 0, sizeof(*w));
        w->waker = tg_filter_waker(x->fx); /* before it is queued: a filler may wake it at once */
    }
    switch (tg_cache_begin(st, x->key, x->klen, &x->seen, &x->fill, w)) {
    case TG_CACHE_WAIT:
        x->phase = CX_WAITING;
        return TG_FILTER_PAUSE; /* the caller arms the timer */
    case TG_CACHE_FILL:
    case TG_CACHE_BUSY:
    case TG_CACHE_PASS:
        break;
    }
    return go_upstream(x);
}

static void on_collapse_timeout(tg_timer_t *t)
{
    cx_t *x = TG_CONTAINER_OF(t, cx_t, timer);
    x->timer_set = 0;
    if (!tg_cache_wait_cancel(x->c->zone->store, &x->waiter))
        return; /* the fill ended meanwhile: its wake is on the way */
    tg_debug("cache: waited collapse_timeout for %.*s; going upstream", (int)x->klen, x->key);
    x->woken = 1;
    tg_filter_resume(x->fx, x->gen, go_upstream(x));
}

/* The fill this request waited on ended (posted by the filler). */
static void on_woken(tg_filter_exchange_t *fx, uint64_t gen)
{
    cx_t *x = tg_filter_paused_state(fx, gen);
    if (x == NULL)
        return; /* the exchange ended meanwhile */
    if (x->timer_set) {
        tg_timer_cancel(&x->timer);
        x->timer_set = 0;
    }
    x->woken = 1;
    if (x->stale != NULL) {
        tg_cache_entry_put(x->stale);
        x->stale = NULL;
    }
    tg_filter_status_t s = decide(x);
    tg_filter_resume(fx, gen, s == TG_FILTER_PAUSE ? TG_FILTER_CONTINUE : s);
}

static int is_unsafe(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "DELETE") == 0 || strcmp(m, "PATCH") == 0;
}

static tg_filter_status_t cache_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    cache_conf_t *c = p;
    if (c->zone == NULL)
        return TG_FILTER_CONTINUE; /* not started (a check of the config) */
    cx_t *x = tg_arena_alloc(fx->arena, sizeof(*x));
    char key[KEY_MAX];
    if (x == NULL)
        return TG_FILTER_CONTINUE;
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->fx = fx;
    x->gen = fx->gen;
    x->index = index;
    fx->state[index] = x;
    const char *m = fx->req->method;
    x->get = strcmp(m, "GET") == 0;
    size_t kl = make_key(c, fx->req, key, sizeof(key));
    if (kl > 0 && (x->key = tg_arena_strndup(fx->arena, key, kl)) != NULL)
        x->klen = kl;
    if ((!x->get && strcmp(m, "HEAD") != 0) || x->key == NULL || fx->req->upgrade) {
        x->unsafe = is_unsafe(m) && x->key != NULL;
        count(x, C_BYPASS);
        return TG_FILTER_CONTINUE;
    }
    /* the request as the cache sees it: later filters may change fx->req */
    tg_headers_t *h = &fx->req->headers;
    x->seen.v = tg_arena_alloc(fx->arena, (h->n ? h->n : 1) * sizeof(tg_header_t));
    if (x->seen.v == NULL)
        return TG_FILTER_CONTINUE;
    memcpy(x->seen.v, h->v, h->n * sizeof(tg_header_t));
    x->seen.n = x->seen.cap = h->n;
    tg_cc_init(&x->rcc);
    /* one walk for every field the cache reads of the request: each
     * Cache-Control line, and the first of the others */
    int has_cc = 0, auth = 0;
    const tg_header_t *pragma = NULL;
    for (size_t i = 0; i < x->seen.n; i++) {
        const tg_header_t *f = &x->seen.v[i];
        switch (f->name_len) {
        case 5:
            if (x->range_h == NULL && tg_http_ieq(f->name, "range", 5))
                x->range_h = f;
            break;
        case 6:
            if (pragma == NULL && tg_http_ieq(f->name, "pragma", 6))
                pragma = f;
            break;
        case 8:
            if (x->if_range == NULL && tg_http_ieq(f->name, "if-range", 8))
                x->if_range = f;
            break;
        case 13:
            if (tg_http_ieq(f->name, "cache-control", 13)) {
                tg_cc_parse(&x->rcc, f->value, f->value_len);
                has_cc = 1;
            } else if (tg_http_ieq(f->name, "authorization", 13)) {
                auth = 1;
            } else if (x->inm == NULL && tg_http_ieq(f->name, "if-none-match", 13)) {
                x->inm = f;
            }
            break;
        case 17:
            if (x->ims == NULL && tg_http_ieq(f->name, "if-modified-since", 17))
                x->ims = f;
            break;
        }
    }
    if (!has_cc && pragma != NULL && tg_header_has_token(pragma->value, pragma->value_len, "no-cache"))
        x->rcc.no_cache = 1;
    /* credentials: RFC 9111 3.5 (an identity an auth filter or a client
     * certificate gave the request counts as one) */
    x->credentials = auth || fx->identity != NULL || fx->peer_identity != NULL;
    x->range = x->range_h != NULL;
    tg_filter_status_t s = decide(x);
    if (s == TG_FILTER_PAUSE) {
        x->timer.fn = on_collapse_timeout;
        x->timer_set = tg_timer_set(fx->loop, &x->timer, c->collapse_timeout_ms) == 0;
    }
    return s;
}

/* ---- the response ---- */

static void end_fill(cx_t *x, int pass)
{
    if (x->fill != NULL) {
        tg_cache_fill_end(x->c->zone->store, x->fill, pass);
        x->fill = NULL;
    }
}

static void start_storing(cx_t *x, tg_response_t *resp, const resp_meta_t *m)
{
    const cache_conf_t *c = x->c;
    if (resp->body == TG_BODY_LENGTH && resp->content_length > c->max_object)
        return;
    size_t cap = resp->body == TG_BODY_LENGTH ? (size_t)resp->content_length
                 : resp->body == TG_BODY_NONE ? 0
                 : c->max_object < 16384      ? c->max_object
                                              : 16384;
    if (copy_stored(x->fx->arena, &resp->headers, &x->store_headers) < 0 ||
        (x->vary = tg_arena_strndup(x->fx->arena, m->vary, strlen(m->vary))) == NULL ||
        (x->meta = tg_arena_alloc(x->fx->arena, sizeof(*m))) == NULL ||
        (x->body = tg_cache_body_new(cap)) == NULL)
        return;
    *x->meta = *m;
    x->store_status = resp->status;
    x->response_time = now_of(x);
    x->storing = 1;
}

static void stop_storing(cx_t *x)
{
    x->storing = 0;
    tg_cache_body_put(x->body);
    x->body = NULL;
}

static void cache_on_response(void *p, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp)
{
    cx_t *x = fx->state[index];
    if (x == NULL)
        return;
    if (x->phase == CX_BYPASS) {
        if (x->unsafe && resp->status >= 200 && resp->status < 400) /* RFC 9111 4.4 */
            tg_cache_purge_key(x->c->zone->store, x->key, x->klen);
        if (x->c->zone != NULL)
            cs_add(x, &resp->headers, "fwd=%s", x->unsafe || !x->get ? "method" : "bypass");
        return;
    }
    if (x->phase != CX_UPSTREAM)
        return;
    int64_t now = now_of(x);
    tg_cache_store_t *st = x->c->zone->store;
    int status = resp->status;
    if (x->stale != NULL && status == 304 && x->added_validators) {
        tg_cache_entry_t *e = freshen(x->c, fx->arena, x->stale, &resp->headers, x->request_time, now);
        if (e != NULL) {
            tg_cache_entry_ref(e);
            put_entry(st, x->key, x->klen, e);
            replace_with(x, e, resp, now);
            tg_cache_entry_put(e);
            count(x, C_REVALIDATED);
            cs_add(x, &resp->headers, "fwd=stale; fwd-status=304");
        }
        end_fill(x, 0);
        return;
    }
    if (x->stale != NULL && (status == 500 || status == 502 || status == 503 || status == 504) && !x->stale->no_stale &&
        x->stale->sie >= 0 && x->stale->lifetime - entry_age(x->stale, now) > -x->stale->sie) {
        replace_with(x, x->stale, resp, now);
        count(x, C_STALE);
        cs_add(x, &resp->headers, "fwd=stale; fwd-status=%d", status);
        end_fill(x, 0);
        return;
    }
    count(x, C_MISS);
    resp_meta_t m;
    read_meta(&resp->headers, &m);
    int ok = x->get && !x->range && !x->rcc.no_store && status != 304 && resp->body != TG_BODY_TUNNEL &&
             storable(x->c, status, &m, x->credentials, now);
    if (ok)
        start_storing(x, resp, &m);
    const char *fwd = x->rcc.no_cache ? "request" : x->stale ? "stale" : "uri-miss";
    if (x->storing)
        cs_add(x, &resp->headers, "fwd=%s; fwd-status=%d; stored", fwd, status);
    else
        cs_add(x, &resp->headers, "fwd=%s; fwd-status=%d", fwd, status);
    if (!x->storing)
        end_fill(x, status != 304 && status >= 200); /* not storable: hit-for-pass */
}

/* A whole body has come: it becomes the key's entry. */
static void store_now(cx_t *x)
{
    char variant[TG_CACHE_VARIANT_MAX];
    int vl = tg_cache_variant(x->vary, &x->seen, variant);
    tg_cache_body_t *body = x->body;
    x->body = NULL;
    x->storing = 0;
    if (vl < 0) {
        tg_cache_body_put(body);
        end_fill(x, 1);
        return;
    }
    tg_cache_entry_t *e = tg_cache_entry_new(x->store_status, &x->store_headers, variant, (size_t)vl, body);
    if (e != NULL) {
        set_meta(x->c, e, x->meta, x->request_time, x->response_time);
        if (tg_cache_insert(x->c->zone->store, x->key, x->klen, x->vary, e) < 0)
            tg_debug("cache: %.*s not stored (over the zone's budget or out of memory)", (int)x->klen, x->key);
    }
    end_fill(x, 0);
}

static void cache_on_response_body(void *p, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece, int fin)
{
    cx_t *x = fx->state[index];
    if (x == NULL)
        return;
    if (x->replaced) {
        evbuffer_drain(piece, evbuffer_get_length(piece)); /* the upstream's bytes; the entry's go instead */
        if (fin && x->rlen > 0) {
            tg_cache_entry_ref(x->served);
            if (evbuffer_add_reference(piece, x->rbody, x->rlen, release_body, x->served) < 0)
                tg_cache_entry_put(x->served);
        }
        return;
    }
    if (!x->storing)
        return;
    size_t n = evbuffer_get_length(piece);
    tg_cache_body_t *b = x->body;
    if (b->len + n > x->c->max_object) {
        stop_storing(x);
        end_fill(x, 1);
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > x->c->max_object)
            cap = x->c->max_object;
        tg_cache_body_t *nb = realloc(b, sizeof(*b) + cap);
        if (nb == NULL) {
            stop_storing(x);
            end_fill(x, 0);
            return;
        }
        nb->cap = cap;
        x->body = b = nb;
    }
    if (n > 0 && evbuffer_copyout(piece, b->data + b->len, n) != (ssize_t)n) {
        stop_storing(x);
        end_fill(x, 0);
        return;
    }
    b->len += n;
    if (fin)
        store_now(x);
}

/* No answer at all: a stale entry within stale-if-error answers. */
static tg_filter_status_t cache_on_no_answer(void *p, tg_filter_exchange_t *fx, size_t index, int status)
{
    cx_t *x = fx->state[index];
    if (x == NULL || x->phase != CX_UPSTREAM)
        return TG_FILTER_CONTINUE;
    int64_t now = now_of(x);
    if (x->stale == NULL || x->stale->no_stale || x->stale->sie < 0 ||
        x->stale->lifetime - entry_age(x->stale, now) <= -x->stale->sie) {
        /* the gateway's error reply says what the cache did too */
        cs_add(x, &fx->response_headers, "fwd=%s; detail=no-answer",
               x->rcc.no_cache ? "request" : x->stale ? "stale" : "uri-miss");
        return TG_FILTER_CONTINUE;
    }
    end_fill(x, 0);
    return reply_from(x, x->stale, now, C_STALE, status);
}

static void cache_on_cancel(void *p, tg_filter_exchange_t *fx, size_t index)
{
    cx_t *x = fx->state[index];
    if (x == NULL || x->phase != CX_WAITING)
        return;
    if (x->timer_set) {
        tg_timer_cancel(&x->timer);
        x->timer_set = 0;
    }
    tg_cache_wait_cancel(x->c->zone->store, &x->waiter);
}

static void cache_on_complete(void *p, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    cx_t *x = fx->state[index];
    if (x == NULL)
        return;
    fx->state[index] = NULL;
    if (x->timer_set) {
        tg_timer_cancel(&x->timer);
        x->timer_set = 0;
    }
    if (x->phase == CX_WAITING)
        tg_cache_wait_cancel(x->c->zone->store, &x->waiter); /* idempotent: on_cancel may have left already */
    if (x->body != NULL)
        stop_storing(x);
    end_fill(x, 0); /* an abandoned fill: its waiters try again */
    if (x->stale != NULL)
        tg_cache_entry_put(x->stale);
    if (x->served != NULL)
        tg_cache_entry_put(x->served);
}

/* ---- purging ---- */

typedef struct purge {
    const char *zone, *key, *host, *prefix;
    size_t dropped;
} purge_t;

static void purge_zone(void *obj, void *arg)
{
    cache_zone_t *z = obj;
    purge_t *p = arg;
    if (p->zone != NULL && strcmp(p->zone, z->name) != 0)
        return;
    p->dropped += p->key ? tg_cache_purge_key(z->store, p->key, strlen(p->key))
                         : tg_cache_purge_prefix(z->store, p->host, p->prefix);
}

size_t tg_cache_purge(tg_shared_t *shared, const char *zone, const char *key, const char *host, const char *prefix)
{
    purge_t p = { zone, key, host, prefix, 0 };
    if (shared != NULL && (key != NULL || prefix != NULL))
        tg_shared_each(shared, &zone_type, purge_zone, &p);
    return p.dropped;
}

const tg_filter_type_t tg_filter_cache = {
    .name = "cache",
    .doc = "an RFC 9111 shared cache in memory: fresh responses answered without the upstream, stale ones "
           "revalidated, concurrent misses collapsed into one upstream request",
    .keys = &cache_keyset,
    .create = cache_create,
    .start = cache_start,
    .destroy = cache_destroy,
    .on_request = cache_on_request,
    .on_response = cache_on_response,
    .on_response_body = cache_on_response_body,
    .on_no_answer = cache_on_no_answer,
    .on_cancel = cache_on_cancel,
    .on_complete = cache_on_complete,
    .counters = cache_counters,
    .n_counters = sizeof(cache_counters) / sizeof(cache_counters[0]),
};
