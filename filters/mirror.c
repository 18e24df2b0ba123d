/*
 * filters/mirror.c — the mirror filter: a copy of a sampled share of a
 * route's requests goes to another cluster, fire and forget; optionally
 * the mirror's answer (status, body digest) is compared with the
 * primary's.
 *
 * A sampled exchange takes a slot of the mirror's concurrency (an atomic
 * count shared by every worker), copies the request head as the chain
 * has it so far, and the body as it streams by (up to max_body_bytes);
 * the copy goes through the worker's own client (ops->call: the mirror
 * cluster's balancer, health, pools and TLS) once the body is whole, or
 * at once without one. Nothing of the primary waits on the mirror: the
 * copy is a few memcpys on the worker, the call is its own object that
 * lives on after the exchange (holding the snapshot, which holds this
 * config) and whose answer is read, digested and dropped.
 *
 * Comparing: the primary's status and body digest (FNV-1a, as it streams
 * to the client) and the mirror's meet in a record with two owners; the
 * second to finish compares and frees it.
 *
 * Counters live in an object per route and mirror cluster, shared across
 * reloads (filters/host.h shared objects): what happened to a copy is
 * known after its exchange is gone.
 */
#include <event2/buffer.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/filter.h"
#include "filters/key.h"
#include "proxy/base/clock.h"
#include "proxy/base/fnv.h"
#include "proxy/base/log.h"
#include "proxy/base/siphash.h"

extern const tg_filter_type_t tg_filter_mirror;

/* ---- counters, per route and mirror cluster ---- */

enum { M_SENT, M_ANSWERED, M_FAILED, M_DROPPED_BUSY, M_DROPPED_BODY, M_HEADERS_ONLY, M_ABORTED, M_N };
static const char *const m_results[M_N] = { "sent", "answered", "failed", "dropped_concurrency", "dropped_body",
                                            "headers_only", "aborted" };

typedef struct mirror_stats {
    char *route, *cluster;
    atomic_uint_fast64_t n[M_N];
    atomic_uint_fast64_t match, mismatch;
    atomic_uint in_flight;
    atomic_uint_fast64_t logged_ms;  /* the last mismatch sample logged */
} mirror_stats_t;

static void *stats_make(const tg_filter_host_t *h, const char *key, const void *arg)
{
    const char *const *names = arg;
    mirror_stats_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->route = strdup(names[0])) == NULL || (s->cluster = strdup(names[1])) == NULL) {
        if (s != NULL)
            free(s->route);
        free(s);
        return NULL;
    }
    return s;
}

static void stats_destroy(void *obj)
{
    mirror_stats_t *s = obj;
    free(s->route);
    free(s->cluster);
    free(s);
}

static void stats_metrics(void *const *objs, size_t n, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP tollgate_mirror_requests_total Copies of requests the mirror filter made, by "
                             "route, mirror cluster and what became of them: sent, answered (any status), failed "
                             "(no answer, timeout), dropped_concurrency (max_concurrent in flight), dropped_body "
                             "(a body over max_body_bytes, on_large_body: skip), headers_only (sent without its "
                             "body), aborted (the client's body never ended).\n"
                             "# TYPE tollgate_mirror_requests_total counter\n");
    for (size_t i = 0; i < n; i++) {
        const mirror_stats_t *s = objs[i];
        for (int r = 0; r < M_N; r++)
            evbuffer_add_printf(out, "tollgate_mirror_requests_total{route=\"%s\",mirror=\"%s\",result=\"%s\"} %llu\n",
                                s->route, s->cluster, m_results[r], (unsigned long long)atomic_load(&s->n[r]));
    }
    evbuffer_add_printf(out, "# HELP tollgate_mirror_compare_total Mirrored requests whose answer had the primary's "
                             "status and body (match) or not (mismatch), with compare: true.\n"
                             "# TYPE tollgate_mirror_compare_total counter\n");
    for (size_t i = 0; i < n; i++) {
        const mirror_stats_t *s = objs[i];
        evbuffer_add_printf(out, "tollgate_mirror_compare_total{route=\"%s\",mirror=\"%s\",result=\"match\"} %llu\n"
                                 "tollgate_mirror_compare_total{route=\"%s\",mirror=\"%s\",result=\"mismatch\"} %llu\n",
                            s->route, s->cluster, (unsigned long long)atomic_load(&s->match), s->route, s->cluster,
                            (unsigned long long)atomic_load(&s->mismatch));
    }
    evbuffer_add_printf(out, "# HELP tollgate_mirror_in_flight Copies sent and not yet answered.\n"
                             "# TYPE tollgate_mirror_in_flight gauge\n");
    for (size_t i = 0; i < n; i++) {
        const mirror_stats_t *s = objs[i];
        evbuffer_add_printf(out, "tollgate_mirror_in_flight{route=\"%s\",mirror=\"%s\"} %u\n", s->route, s->cluster,
                            atomic_load(&s->in_flight));
    }
}

static const tg_shared_type_t stats_type = { "mirror", stats_make, stats_destroy, stats_metrics };

static void bump(mirror_stats_t *s, int r)
{
    atomic_fetch_add(&s->n[r], 1);
}

/* ---- config ---- */

typedef struct mirror_conf {
    char *cluster;
    uint32_t percent;
    char *hash_on;              /* absent: each request draws */
    tg_filter_key_t key;        /* hash_on as a key */
    uint64_t max_body;
    int on_large_body;          /* 0 skip, 1 headers_only */
    uint64_t timeout_ms;
    uint32_t max_concurrent;
    int compare, strip_credentials;
    char *route;                /* the route's name ("*": the global chain) */
    tg_shared_t *shared;
    mirror_stats_t *stats;      /* from start */
} mirror_conf_t;

static const tg_key_t mirror_keys[] = {
    { "cluster", TG_KEY_STRING, "cluster name (required)", "—",
      "where the copies go: any cluster of the file (its balancer, health checks, pools and TLS)",
      .flags = TG_KEY_REQUIRED, TG_FIELD(mirror_conf_t, cluster, TG_FIELD_STR) },
    { "percent", TG_KEY_INT, "integer 0–100", "`100`", "the share of requests mirrored", .min = 0, .max = 100,
      TG_FIELD(mirror_conf_t, percent, TG_FIELD_U32), .def = 100 },
    { "hash_on", TG_KEY_STRING, "`client_address`, `identity` or `header:NAME`", "none (each request draws)",
      "sample by a hash of this key instead of at random: every request of a client (or session) is mirrored, "
      "or none",
      TG_FIELD(mirror_conf_t, hash_on, TG_FIELD_STR) },
    { "max_body_bytes", TG_KEY_SIZE, "size 0–64MiB", "`1MiB`",
      "the largest request body copied; a longer one is handled as `on_large_body` says", .min = 0,
      .max = 64LL << 20, TG_FIELD(mirror_conf_t, max_body, TG_FIELD_U64), .def = 1 << 20 },
    { "on_large_body", TG_KEY_ENUM, "`skip` or `headers_only`", "`skip`",
      "a body over `max_body_bytes`: no copy, or a copy of the head with an empty body", .choices = "skip|headers_only",
      TG_FIELD(mirror_conf_t, on_large_body, TG_FIELD_INT) },
    { "timeout", TG_KEY_DURATION, "duration 1ms–5m", "`5s`", "a copy's whole call: connect, answer and body",
      .min = 1, .max = 300000, TG_FIELD(mirror_conf_t, timeout_ms, TG_FIELD_U64), .def = 5000 },
    { "max_concurrent", TG_KEY_INT, "integer 1–100000", "`100`",
      "copies in flight at once (all workers); past it a sampled request is not copied (counted)", .min = 1,
      .max = 100000, TG_FIELD(mirror_conf_t, max_concurrent, TG_FIELD_U32), .def = 100 },
    { "compare", TG_KEY_BOOL, "boolean", "`false`",
      "compare the mirror's status and body digest with the primary's, count matches and mismatches, log a "
      "mismatch (at most one a second)",
      TG_FIELD(mirror_conf_t, compare, TG_FIELD_INT) },
    { "strip_credentials", TG_KEY_BOOL, "boolean", "`false`",
      "leave `Authorization`, `Proxy-Authorization` and `Cookie` out of the copies",
      TG_FIELD(mirror_conf_t, strip_credentials, TG_FIELD_INT) },
};
static const tg_keyset_t mirror_keyset = TG_KEYSET("filter.mirror", "mirror", mirror_keys);

static void mirror_destroy(void *p)
{
    mirror_conf_t *c = p;
    if (c == NULL)
        return;
    if (c->stats != NULL)
        tg_shared_put(c->shared, c->stats);
    free(c->cluster);
    free(c->hash_on);
    free(c->route);
    tg_filter_key_free(&c->key);
    free(c);
}

static void *mirror_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[9];
    mirror_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "mirror", &mirror_keyset, c, v);
    tg_node_t cl = tg_node_get(v, &mirror_keyset, "cluster"), hash = tg_node_get(v, &mirror_keyset, "hash_on");
    if (rc == 0)
        tg_node_cluster_ref(&cl, c->cluster, NULL);
    if (rc == 0 && c->hash_on != NULL && tg_filter_key_parse(&hash, "mirror hash_on", &c->key) < 0)
        rc = -1;
    const char *route = tg_node_route(node);
    if (rc == 0 && (c->route = strdup(route ? route : "*")) == NULL)
        rc = -1;
    if (rc < 0) {
        mirror_destroy(c);
        return NULL;
    }
    return c;
}

static int mirror_start(void *p, const tg_filter_host_t *h, tg_errors_t *errs)
{
    mirror_conf_t *c = p;
    if (c->stats != NULL)
        return 0;
    char key[512];
    snprintf(key, sizeof(key), "%s\n%s", c->route, c->cluster);
    const char *names[2] = { c->route, c->cluster };
    c->shared = h->shared;
    if ((c->stats = tg_shared_get(h, &stats_type, key, names)) == NULL) {
        tg_errors_add(errs, "mirror: out of memory");
        return -1;
    }
    return 0;
}

/* ---- a copy ---- */

/* What the primary and the mirror each add to a comparison; the second
 * to arrive compares and frees. */
typedef struct compare {
    atomic_int owners;
    mirror_stats_t *stats;
    int primary_status, mirror_status;
    uint64_t primary_digest, mirror_digest;
    size_t primary_len, mirror_len;
    unsigned primary_whole : 1, mirror_whole : 1;
    char what[128];             /* METHOD TARGET, for the log */
} compare_t;

static void compare_done(compare_t *k)
{
    if (atomic_fetch_sub(&k->owners, 1) != 1)
        return;
    if (k->primary_whole && k->mirror_whole) {
        int same = k->primary_status == k->mirror_status && k->primary_len == k->mirror_len &&
                   k->primary_digest == k->mirror_digest;
        atomic_fetch_add(same ? &k->stats->match : &k->stats->mismatch, 1);
        uint64_t now = tg_clock_ms(), last = atomic_load(&k->stats->logged_ms);
        if (!same && now - last >= 1000 && atomic_compare_exchange_strong(&k->stats->logged_ms, &last, now))
            tg_warn("mirror %s -> %s: %s: primary %d (%zu bytes, digest %016llx), mirror %d (%zu bytes, digest "
                    "%016llx)",
                    k->stats->route, k->stats->cluster, k->what, k->primary_status, k->primary_len,
                    (unsigned long long)k->primary_digest, k->mirror_status, k->mirror_len,
                    (unsigned long long)k->mirror_digest);
    }
    free(k);
}

/* The copy of one request: the exchange's while its body streams, then
 * the call's until its answer. malloc'ed: it outlives the exchange. */
typedef struct copy {
    mirror_conf_t *c;
    mirror_stats_t *stats;
    compare_t *cmp;             /* compare: true; freed by compare_done */
    tg_filter_exchange_t *fx;
    const char **hv;            /* header pairs, strings in the same block */
    size_t n_headers;
    char *method, *target, *authority;
    struct evbuffer *body;      /* NULL: the request has none */
} copy_t;

/* The exchange's part, in its arena. */
typedef struct side {
    copy_t *copy;               /* not sent yet (its body streams) */
    compare_t *cmp;             /* the primary's share of a comparison */
    uint64_t digest;            /* of the primary's answer, as it streams */
    size_t len;
    unsigned fin : 1, not_comparable : 1;
} side_t;

static void copy_free(copy_t *m)
{
    if (m->body != NULL)
        evbuffer_free(m->body);
    free(m->hv);
    free(m->method);
    free(m->target);
    free(m->authority);
    free(m);
}

/* A copy that will not be sent: its slot back, its comparison gone. */
static void copy_drop(copy_t *m)
{
    atomic_fetch_sub(&m->stats->in_flight, 1);
    free(m->cmp);
    copy_free(m);
}

static void on_answer(void *arg, const tg_filter_call_result_t *r)
{
    copy_t *m = arg;
    bump(m->stats, r->status ? M_ANSWERED : M_FAILED);
    if (r->status == 0)
        tg_debug("mirror %s -> %s: %s %s: %s", m->stats->route, m->stats->cluster, m->method, m->target,
                 r->error ? r->error : "no answer");
    if (m->cmp != NULL) {
        m->cmp->mirror_status = r->status;
        m->cmp->mirror_digest = r->body_digest;
        m->cmp->mirror_len = r->body_len;
        m->cmp->mirror_whole = r->status != 0;
        compare_done(m->cmp);
    }
    atomic_fetch_sub(&m->stats->in_flight, 1);
    copy_free(m);
}

/* Sends the copy (on the exchange's worker): from here on it is the
 * call's, and a comparison has its two owners. */
static void send_copy(side_t *sd, int with_body)
{
    copy_t *m = sd->copy;
    sd->copy = NULL;
    size_t blen = with_body && m->body ? evbuffer_get_length(m->body) : 0;
    const char *body = blen ? (const char *)evbuffer_pullup(m->body, -1) : m->body ? "" : NULL;
    tg_filter_call_t call = {
        .cluster = m->c->cluster,
        .method = m->method,
        .path = m->target,
        .authority = m->authority,
        .headers = m->hv,
        .n_headers = m->n_headers,
        .body = body,
        .body_len = blen,
        .timeout_ms = m->c->timeout_ms,
        .digest_body = 1,
        .deferred = 1,    /* the primary's request goes first */
        .usable_only = 1, /* a mirror down (health checks, ejection): copies fail at once */
    };
    if (m->cmp != NULL) {
        atomic_init(&m->cmp->owners, 2);
        sd->cmp = m->cmp;
    }
    bump(m->stats, M_SENT);
    if (m->fx->ops->call(m->fx, &call, on_answer, m) == NULL) { /* out of memory: as if no answer came */
        tg_filter_call_result_t none = { .error = "out of memory" };
        on_answer(m, &none);
    }
}

static int skip_header(const mirror_conf_t *c, const tg_header_t *h)
{
    static const char *const always[] = { "content-length", "host", "te", "connection", "upgrade", "expect",
                                          "transfer-encoding", "keep-alive", "x-tollgate-mirror" };
    static const char *const creds[] = { "authorization", "proxy-authorization", "cookie" };
    return TG_HEADER_NAMED(h, always) || (c->strip_credentials && TG_HEADER_NAMED(h, creds)) ||
           (h->name_len > 0 && h->name[0] == ':');
}

/* The request head as the chain has it now, copied (header names in
 * lower case, as the call wants them), plus x-tollgate-mirror: 1. */
static int copy_head(copy_t *m, const tg_request_t *req)
{
    const tg_headers_t *h = &req->headers;
    size_t strings = 0;
    for (size_t i = 0; i < h->n; i++)
        strings += h->v[i].name_len + h->v[i].value_len + 2;
    m->hv = malloc((h->n + 1) * 2 * sizeof(char *) + strings);
    m->method = strdup(req->method);
    m->target = strdup(req->target);
    m->authority = req->authority ? strdup(req->authority) : NULL;
    if (m->hv == NULL || m->method == NULL || m->target == NULL || (req->authority && m->authority == NULL))
        return -1;
    char *p = (char *)(m->hv + (h->n + 1) * 2);
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++) {
        const tg_header_t *f = &h->v[i];
        if (skip_header(m->c, f))
            continue;
        for (size_t k = 0; k < f->name_len; k++)
            p[k] = (char)(f->name[k] >= 'A' && f->name[k] <= 'Z' ? f->name[k] + 32 : f->name[k]);
        p[f->name_len] = '\0';
        m->hv[2 * n] = p;
        p += f->name_len + 1;
        memcpy(p, f->value, f->value_len);
        p[f->value_len] = '\0';
        m->hv[2 * n + 1] = p;
        p += f->value_len + 1;
        n++;
    }
    m->hv[2 * n] = "x-tollgate-mirror";
    m->hv[2 * n + 1] = "1";
    m->n_headers = n + 1;
    return 0;
}

/* Is this request in the sample? */
static int sampled(const mirror_conf_t *c, const tg_filter_exchange_t *fx)
{
    if (c->percent >= 100)
        return 1;
    if (c->percent == 0)
        return 0;
    uint64_t h;
    if (c->hash_on != NULL) { /* the same key, the same answer: on every worker, after every reload */
        char buf[TG_KEY_BUF];
        size_t n = tg_filter_key_build(&c->key, fx, buf, sizeof(buf));
        h = tg_fnv1a64(TG_FNV1A64_INIT, buf, n);
        h ^= h >> 29; /* FNV's low bits mix poorly */
        h *= 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 32;
    } else {
        static const tg_siphash_key_t k = { 0x6d6972726f720000ULL, 0x73616d706c650000ULL };
        uint64_t g = fx->gen ^ ((uint64_t)fx->worker << 48);
        h = tg_siphash(&k, &g, sizeof(g));
    }
    return h % 10000 < (uint64_t)c->percent * 100;
}

static tg_filter_status_t mirror_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    mirror_conf_t *c = p;
    if (c->stats == NULL || fx->ops == NULL || fx->ops->call == NULL || !sampled(c, fx))
        return TG_FILTER_CONTINUE;
    if (atomic_fetch_add(&c->stats->in_flight, 1) >= c->max_concurrent) {
        atomic_fetch_sub(&c->stats->in_flight, 1);
        bump(c->stats, M_DROPPED_BUSY);
        return TG_FILTER_CONTINUE;
    }
    side_t *sd = tg_arena_alloc(fx->arena, sizeof(*sd));
    copy_t *m = calloc(1, sizeof(*m));
    if (sd == NULL || m == NULL) {
        free(m);
        atomic_fetch_sub(&c->stats->in_flight, 1);
        return TG_FILTER_CONTINUE;
    }
    memset(sd, 0, sizeof(*sd));
    sd->digest = TG_FNV1A64_INIT;
    m->c = c;
    m->stats = c->stats;
    m->fx = fx;
    if (copy_head(m, fx->req) < 0 || (fx->req->body != TG_BODY_NONE && (m->body = evbuffer_new()) == NULL) ||
        (c->compare && (m->cmp = calloc(1, sizeof(*m->cmp))) == NULL)) {
        copy_drop(m);
        return TG_FILTER_CONTINUE;
    }
    if (m->cmp != NULL) {
        m->cmp->stats = c->stats;
        snprintf(m->cmp->what, sizeof(m->cmp->what), "%s %s", m->method, m->target);
    }
    sd->copy = m;
    fx->state[index] = sd;
    if (m->body == NULL)
        send_copy(sd, 0);
    return TG_FILTER_CONTINUE;
}

static tg_filter_status_t mirror_on_request_body(void *p, tg_filter_exchange_t *fx, size_t index,
                                                 struct evbuffer *piece, int fin)
{
    side_t *sd = fx->state[index];
    copy_t *m = sd ? sd->copy : NULL;
    if (m == NULL)
        return TG_FILTER_CONTINUE;
    size_t n = evbuffer_get_length(piece), have = evbuffer_get_length(m->body);
    struct evbuffer_iovec iov;
    if (have + n > m->c->max_body) {
        if (m->c->on_large_body == 1) { /* the head alone: its answer cannot be compared */
            bump(m->stats, M_HEADERS_ONLY);
            sd->not_comparable = 1;
            send_copy(sd, 0);
        } else {
            bump(m->stats, M_DROPPED_BODY);
            sd->copy = NULL;
            copy_drop(m);
        }
        return TG_FILTER_CONTINUE;
    }
    /* a copy of the piece's bytes (it goes on upstream as it is) */
    if (n > 0 && (evbuffer_reserve_space(m->body, (ssize_t)n, &iov, 1) < 1 ||
                  evbuffer_copyout(piece, iov.iov_base, n) != (ssize_t)n)) {
        sd->copy = NULL;
        copy_drop(m);
        return TG_FILTER_CONTINUE;
    }
    if (n > 0) {
        iov.iov_len = n;
        evbuffer_commit_space(m->body, &iov, 1);
    }
    if (fin)
        send_copy(sd, 1);
    return TG_FILTER_CONTINUE;
}

static void mirror_on_response_body(void *p, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece, int fin)
{
    side_t *sd = fx->state[index];
    if (sd == NULL || sd->cmp == NULL)
        return;
    sd->digest = tg_fnv1a64_evbuffer(sd->digest, piece);
    sd->len += evbuffer_get_length(piece);
    sd->fin |= fin != 0;
}

static void mirror_on_complete(void *p, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    side_t *sd = fx->state[index];
    if (sd == NULL)
        return;
    fx->state[index] = NULL;
    if (sd->copy != NULL) { /* the body never came whole: no copy */
        bump(sd->copy->stats, M_ABORTED);
        copy_drop(sd->copy);
        return;
    }
    compare_t *k = sd->cmp;
    if (k == NULL)
        return;
    k->primary_status = rec->status;
    k->primary_digest = sd->digest;
    k->primary_len = sd->len;
    k->primary_whole = rec->status != 0 && sd->fin && !sd->not_comparable;
    compare_done(k);
}

const tg_filter_type_t tg_filter_mirror = {
    .name = "mirror",
    .doc = "sends a copy of a sampled share of requests to another cluster, fire and forget, and may compare its "
           "answers with the primary's",
    .keys = &mirror_keyset,
    .create = mirror_create,
    .start = mirror_start,
    .destroy = mirror_destroy,
    .on_request = mirror_on_request,
    .on_request_body = mirror_on_request_body,
    .on_response_body = mirror_on_response_body,
    .on_complete = mirror_on_complete,
};
