/*
 * proxy/upstream_h1.c — the HTTP/1.1 implementation of tg_upstream_ops_t
 * (upstream.h): connections leased from the worker's per-endpoint idle
 * pool, one request at a time on each.
 *
 * A connection object carries the state of the attempt it is lent to (the
 * response reader, the request body framing, the owner's callback), so an
 * attempt on a pooled connection allocates nothing. Idle connections must
 * stay silent: any byte, EOF, error or the cluster's idle_timeout closes
 * them.
 */
#include "proxy/upstream_h1.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/queue.h>

#include "proxy/base/clock.h"
#include "proxy/base/log.h"
#include "proxy/base/slab.h"
#include "proxy/h1_codec.h"
#include "proxy/health.h"
#include "proxy/sock.h"
#include "proxy/stats.h"

typedef struct tg_h1_upconn {
    TAILQ_ENTRY(tg_h1_upconn) link;  /* in the pool's idle list */
    tg_sock_t *sock;
    tg_worker_t *w;
    tg_slab_t *slab;                 /* it lives in (may outlast the module in a teardown) */
    size_t slot;
    unsigned gen;                    /* the slot's generation when it connected (registry.h) */
    unsigned served;                 /* requests already served on this connection */

    /* the attempt in hand, while lent */
    const tg_cluster_conf_t *cc;     /* of the attempt's snapshot: pool size, idle timeout */
    tg_upstream_cb cb;
    void *arg;
    tg_response_t *resp;
    tg_arena_t *arena;
    size_t max_header;
    tg_h1_reader_t reader;
    tg_body_kind_t req_body;         /* framing of the request body */
    tg_up_cause_t cause;
    const char *why;
    char why_buf[160];
    unsigned connected : 1, started : 1, head : 1, eof : 1, is_head : 1, failed : 1;
} upconn_t;

/* The idle connections to one endpoint, and how many are out with
 * requests: an adaptive pool (no pool_size given) keeps as many idle as
 * the recent peak of those, so that load that comes back finds its
 * connections instead of opening new ones. */
typedef struct pool {
    TAILQ_HEAD(, tg_h1_upconn) idle; /* most recently used first */
    size_t n_idle;
    uint32_t leased;                 /* connections carrying a request now */
    uint32_t peak, peak_prev;        /* most leased at once in this window, and in the one before */
    uint64_t window_start_ms;
} pool_t;

/* Moves the peak window on when it is over. */
static void roll_peak(pool_t *p, uint64_t now)
{
    if (now - p->window_start_ms < TG_POOL_PEAK_WINDOW_MS)
        return;
    p->peak_prev = now - p->window_start_ms < 2 * TG_POOL_PEAK_WINDOW_MS ? p->peak : 0;
    p->peak = p->leased;
    p->window_start_ms = now;
}

/* How many idle connections the pool keeps: pool_size, or (adaptive) the
 * recent peak of connections in use, at most TG_POOL_ADAPTIVE_MAX. */
static size_t pool_cap(pool_t *p, const tg_cluster_conf_t *cc)
{
    if (!cc->pool_adaptive)
        return cc->pool_size;
    roll_peak(p, tg_clock_ms());
    uint32_t peak = p->peak > p->peak_prev ? p->peak : p->peak_prev;
    return peak > TG_POOL_ADAPTIVE_MAX ? TG_POOL_ADAPTIVE_MAX : peak;
}

/* The module's per-worker state (TG_WMOD_UPSTREAM_H1). */
typedef struct pools {
    pool_t **slots;                  /* indexed by tg_endpoint_t.slot (each allocated: list heads must not move) */
    size_t n;
    tg_slab_t *conns;                /* where the connections live */
} pools_t;

static pool_t *pool_of(tg_worker_t *w, size_t slot)
{
    pools_t *ps = tg_worker_state(w, TG_WMOD_UPSTREAM_H1);
    return ps->slots[slot];
}

static void upconn_close(upconn_t *c)
{
    tg_counter_sub(&tg_stats_endpoint(tg_worker_stats(c->w), c->slot)->active, 1);
    tg_health_conn_add(tg_worker_health(c->w), c->slot, -1);
    tg_sock_free(c->sock);
    tg_slab_free(c->slab, c);
}

static void pool_remove(upconn_t *c)
{
    pool_t *p = pool_of(c->w, c->slot);
    TAILQ_REMOVE(&p->idle, c, link);
    p->n_idle--;
}

static int module_init(tg_worker_t *w)
{
    pools_t *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return -1;
    if ((ps->conns = tg_slab_new(sizeof(upconn_t))) == NULL) {
        free(ps);
        return -1;
    }
    tg_worker_set_state(w, TG_WMOD_UPSTREAM_H1, ps);
    return 0;
}

/* A pool for every endpoint slot of snap. */
static int module_apply(tg_worker_t *w, const tg_snapshot_t *snap)
{
    pools_t *ps = tg_worker_state(w, TG_WMOD_UPSTREAM_H1);
    /* Endpoints the new config dropped: their idle connections close now
     * (their slots may pass to other endpoints once no request uses them). */
    for (size_t i = 0; i < ps->n; i++) {
        upconn_t *c, *next;
        for (c = TAILQ_FIRST(&ps->slots[i]->idle); c != NULL; c = next) {
            next = TAILQ_NEXT(c, link);
            if (!tg_cluster_set_uses(snap->clusters, c->slot, c->gen)) {
                pool_remove(c);
                upconn_close(c);
            }
        }
    }
    size_t n = snap->clusters->n_slots;
    if (n <= ps->n)
        return 0;
    pool_t **slots = realloc(ps->slots, n * sizeof(*slots));
    if (slots == NULL)
        return -1;
    ps->slots = slots;
    for (; ps->n < n; ps->n++) {
        if ((slots[ps->n] = calloc(1, sizeof(pool_t))) == NULL)
            return -1;
        TAILQ_INIT(&slots[ps->n]->idle);
    }
    return 0;
}

/* Closes every idle connection (worker teardown). */
static void module_free(tg_worker_t *w)
{
    pools_t *ps = tg_worker_state(w, TG_WMOD_UPSTREAM_H1);
    if (ps == NULL)
        return;
    for (size_t i = 0; i < ps->n; i++) {
        upconn_t *c;
        while ((c = TAILQ_FIRST(&ps->slots[i]->idle)) != NULL) {
            pool_remove(c);
            upconn_close(c);
        }
        free(ps->slots[i]);
    }
    free(ps->slots);
    tg_slab_destroy(ps->conns); /* connections leased when the worker stopped go with their exchanges */
    free(ps);
    tg_worker_set_state(w, TG_WMOD_UPSTREAM_H1, NULL);
}

const tg_worker_module_t tg_upstream_h1_module = {
    .id = TG_WMOD_UPSTREAM_H1,
    .init = module_init,
    .apply = module_apply,
    .free = module_free,
};

static void on_idle_event(tg_sock_t *s, int events, void *arg)
{
    upconn_t *c = arg;
    if (events & TG_SOCK_READ)
        tg_debug("upstream: unexpected %zu bytes on an idle connection, closing",
                 tg_sock_in_len(s));
    pool_remove(c);
    upconn_close(c);
}

/* ---- events ---- */

static int fail(upconn_t *c, tg_up_cause_t cause, const char *why)
{
    c->failed = 1;
    c->cause = cause;
    c->why = why;
    return TG_UP_ERROR;
}

/* Reads the final response head (interim 1xx responses are skipped).
 * Returns the events for the owner: 0 (more is needed), TG_UP_HEAD, or
 * TG_UP_ERROR. */
static int read_head(upconn_t *c)
{
    struct evbuffer *in = tg_sock_in(c->sock);
    for (;;) {
        memset(c->resp, 0, sizeof(*c->resp));
        tg_h1_result_t r = tg_h1_read_response_head(&c->reader, in, c->max_header, c->arena, c->resp, c->is_head);
        tg_sock_consumed(c->sock);
        if (r == TG_H1_AGAIN) {
            if (c->eof)
                return fail(c, TG_UP_CAUSE_RESET,
                            evbuffer_get_length(in) ? "truncated response head" : "connection closed before a response");
            if (evbuffer_get_length(in) == 0)
                tg_sock_need_more(c->sock); /* a reset that came with these bytes must not go unseen */
            return 0;
        }
        if (r == TG_H1_ERROR)
            return fail(c, TG_UP_CAUSE_BAD_RESPONSE, c->reader.error_msg);
        if (c->resp->status >= 100 && c->resp->status < 200 && c->resp->status != 101) {
            tg_h1_reader_init(&c->reader, TG_H1_RESPONSE); /* interim response: skip */
            continue;
        }
        c->reader.trailers = &c->resp->trailers; /* chunked trailers, for the client */
        if (c->resp->status == 101)
            c->req_body = TG_BODY_TUNNEL; /* from now on the request side is raw bytes */
        c->head = 1;
        return TG_UP_HEAD;
    }
}

static void on_sock(tg_sock_t *s, int events, void *arg)
{
    upconn_t *c = arg;
    int ev = 0;
    if (events & TG_SOCK_ERROR) {
        ev = fail(c, c->connected ? TG_UP_CAUSE_RESET : TG_UP_CAUSE_CONNECT_FAILED,
                  tg_sock_tls_error(s, c->why_buf, sizeof(c->why_buf)));
    } else if (events & TG_SOCK_CONNECTED) {
        c->connected = 1;
        ev = TG_UP_CONNECTED;
    } else if (events & TG_SOCK_TIMEOUT) {
        ev = fail(c, TG_UP_CAUSE_TIMEOUT, !c->connected ? "connect timeout" : !c->head ? "response timeout"
                                                                                      : "idle timeout");
    } else {
        if (events & TG_SOCK_EOF)
            c->eof = 1;
        if ((events & (TG_SOCK_READ | TG_SOCK_EOF)) && c->started)
            ev |= c->head ? TG_UP_DATA : read_head(c);
        if ((events & TG_SOCK_WRITE) && !(ev & TG_UP_ERROR))
            ev |= TG_UP_WRITABLE;
    }
    if (ev)
        c->cb(c->arg, ev);
}

/* ---- the ops ---- */

static void *h1_open(const tg_up_target_t *t, int *fresh)
{
    tg_worker_t *w = t->w;
    pool_t *p = pool_of(w, t->ep->slot);
    upconn_t *c;
    while (t->may_reuse && (c = TAILQ_FIRST(&p->idle)) != NULL) {
        pool_remove(c);
        if (tg_sock_peer_closed(c->sock)) {
            tg_debug("upstream: pooled connection was closed by the peer, discarding");
            upconn_close(c);
            continue;
        }
        if ((tg_sock_ssl(c->sock) != NULL) != (t->cl->tls != NULL) || /* a reload changed the cluster's tls */
            c->gen != t->ep->gen) {                                   /* ... or the slot's endpoint */
            upconn_close(c);
            continue;
        }
        c->served++;
        *fresh = 0;
        goto lent;
    }
    if (t->no_connect != NULL && t->no_connect(t->arg)) {
        errno = EBUSY;
        return NULL;
    }
    tg_slab_t *slab = ((pools_t *)tg_worker_state(w, TG_WMOD_UPSTREAM_H1))->conns;
    if ((c = tg_slab_alloc(slab)) == NULL)
        return NULL;
    c->slab = slab;
    c->w = w;
    c->slot = t->ep->slot;
    c->gen = t->ep->gen;
    if ((c->sock = tg_cluster_connect(t->cl, t->ep, tg_worker_sockloop(w))) == NULL) {
        tg_slab_free(slab, c);
        return NULL;
    }
    tg_counter_add(&tg_stats_endpoint(tg_worker_stats(w), c->slot)->active, 1);
    tg_health_conn_add(tg_worker_health(w), c->slot, 1);
    tg_counter_add(&tg_stats_endpoint(tg_worker_stats(w), c->slot)->connects, 1);
    *fresh = 1;
lent:
    p->leased++;
    roll_peak(p, tg_clock_ms());
    if (p->leased > p->peak)
        p->peak = p->leased;
    c->cc = t->cl->conf;
    c->cb = t->cb;
    c->arg = t->arg;
    c->resp = t->resp;
    c->arena = t->arena;
    c->max_header = t->snap->cfg->limits.max_header_bytes;
    c->connected = !*fresh;
    c->started = c->head = c->eof = c->failed = 0;
    tg_sock_set_cb(c->sock, on_sock, c);
    tg_sock_set_timeout(c->sock, *fresh ? t->cl->conf->connect_timeout_ms : 0);
    return c;
}

/* Appends s to the buffer at *p. */
static void put(char **p, const char *s, size_t n)
{
    memcpy(*p, s, n);
    *p += n;
}

static int h1_start(void *u, const tg_up_request_t *r)
{
    upconn_t *c = u;
    const tg_request_t *req = r->req;
    size_t ml = strlen(req->method), tl = strlen(req->target);
    char *start = tg_arena_alloc(c->arena, ml + 1 + tl + 10), *p = start;
    if (start == NULL)
        return -1;
    put(&p, req->method, ml);
    put(&p, " ", 1);
    put(&p, req->target, tl);
    put(&p, " HTTP/1.1", 10); /* with the NUL */

    /* host (for an HTTP/1.0 request without one: 1.1 requires it) and
     * the body's framing */
    size_t al = strlen(r->authority);
    char *extra = tg_arena_alloc(c->arena, al + 64);
    if (extra == NULL)
        return -1;
    p = extra;
    if (req->authority == NULL) {
        put(&p, "host: ", 6);
        put(&p, r->authority, al);
        put(&p, "\r\n", 2);
    }
    if (req->body == TG_BODY_LENGTH) {
        put(&p, "content-length: ", 16);
        p += tg_fmt_u64(p, req->content_length);
        put(&p, "\r\n", 2);
    } else if (req->body == TG_BODY_CHUNKED) {
        put(&p, "transfer-encoding: chunked\r\n", 28);
    } else if (!strcmp(req->method, "POST") || !strcmp(req->method, "PUT") || !strcmp(req->method, "PATCH")) {
        put(&p, "content-length: 0\r\n", 19);
    }
    *p = '\0';
    int rc = tg_h1_write_head(tg_sock_out(c->sock), start, &req->headers, extra);
    if (rc < 0)
        return rc;
    tg_h1_reader_init(&c->reader, TG_H1_RESPONSE);
    c->req_body = req->body;
    c->is_head = req->is_head;
    c->started = 1;
    tg_sock_flush(c->sock);
    tg_sock_set_read_limit(c->sock, TG_EXCHANGE_HWM);
    tg_sock_set_write_lowat(c->sock, TG_EXCHANGE_HWM / 2);
    tg_sock_set_timeout(c->sock, r->timeout_ms);
    return 0;
}

static int h1_write(void *u, struct evbuffer *data, int by_reference)
{
    upconn_t *c = u;
    struct evbuffer *out = tg_sock_out(c->sock);
    size_t len = evbuffer_get_length(data);
    if (!by_reference)
        return tg_h1_write_body(out, c->req_body, data);
    if (len == 0)
        return 0;
    if (c->req_body == TG_BODY_CHUNKED) {
        char hdr[24];
        size_t n = (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        if (evbuffer_add(out, hdr, n) < 0 || evbuffer_add_buffer_reference(out, data) < 0 ||
            evbuffer_add(out, "\r\n", 2) < 0)
            return -1;
        return 0;
    }
    return evbuffer_add_buffer_reference(out, data);
}

static void h1_flush(void *u)
{
    upconn_t *c = u;
    tg_sock_flush(c->sock);
}

static int h1_end(void *u)
{
    upconn_t *c = u;
    int rc = tg_h1_write_end(tg_sock_out(c->sock), c->req_body, NULL);
    tg_sock_flush_now(c->sock); /* the request is complete */
    return rc;
}

static size_t h1_queued(void *u)
{
    upconn_t *c = u;
    return tg_sock_out_len(c->sock);
}

static ssize_t h1_read(void *u, struct evbuffer *dst, size_t max, int *fin)
{
    upconn_t *c = u;
    struct evbuffer *in = tg_sock_in(c->sock);
    ssize_t n = tg_h1_read_body(&c->reader, in, dst, max, c->eof, fin);
    tg_sock_consumed(c->sock);
    if (n < 0) {
        fail(c, TG_UP_CAUSE_TRUNCATED, c->reader.error_msg ? c->reader.error_msg : "bad response body");
        return -1;
    }
    /* A close-delimited body ends at the close, but over TLS only a
     * close_notify says the upstream meant it: without one, the end may be
     * an attacker's RST, and the body is truncated. */
    if (*fin && c->reader.body == TG_BODY_EOF && tg_sock_ssl(c->sock) != NULL && !tg_sock_eof_clean(c->sock)) {
        fail(c, TG_UP_CAUSE_TRUNCATED, "TLS connection closed without close_notify");
        return -1;
    }
    if (!*fin && n == 0 && evbuffer_get_length(in) == 0 && !c->eof && c->reader.body != TG_BODY_TUNNEL)
        tg_sock_need_more(c->sock); /* a reset that came with the last bytes must not go unseen */
    return n;
}

static void h1_set_timeout(void *u, uint64_t ms)
{
    upconn_t *c = u;
    tg_sock_set_timeout(c->sock, ms);
}

static tg_up_cause_t h1_error(void *u, const char **why, long *reset_code)
{
    upconn_t *c = u;
    *why = c->why ? c->why : "connection failed";
    *reset_code = -1;
    return c->cause;
}

static int h1_reused(void *u)
{
    upconn_t *c = u;
    return c->served > 0;
}

/* Back to the pool when the exchange ended clean on a connection that can
 * carry another request and the pool has room; otherwise closed. */
static void h1_release(void *u, int clean)
{
    upconn_t *c = u;
    pool_t *p = pool_of(c->w, c->slot);
    const tg_cluster_conf_t *cc = c->cc;
    int reusable = clean && !c->failed && c->head && c->resp->keep_alive && c->reader.body != TG_BODY_EOF;
    if (p->leased > 0)
        p->leased--;
    c->cb = NULL;
    c->arg = NULL;
    c->resp = NULL;
    c->arena = NULL;
    if (!reusable || tg_worker_draining(c->w) ||
        !tg_cluster_set_uses(tg_worker_snapshot(c->w)->clusters, c->slot, c->gen) || /* its endpoint is gone */ p->n_idle >= pool_cap(p, cc) || tg_sock_peer_closed(c->sock) ||
        tg_sock_in_len(c->sock) != 0 || tg_sock_out_len(c->sock) != 0) {
        upconn_close(c);
        return;
    }
    tg_sock_set_cb(c->sock, on_idle_event, c);
    tg_sock_set_timeout(c->sock, cc->idle_timeout_ms);
    tg_sock_set_read_limit(c->sock, 0);
    tg_sock_pause_read(c->sock, 0);
    TAILQ_INSERT_HEAD(&p->idle, c, link);
    p->n_idle++;
}

const tg_upstream_ops_t tg_upstream_h1_ops = {
    .name = "http1",
    .open = h1_open,
    .start = h1_start,
    .write = h1_write,
    .flush = h1_flush,
    .end = h1_end,
    .queued = h1_queued,
    .read = h1_read,
    .set_timeout = h1_set_timeout,
    .error = h1_error,
    .reused = h1_reused,
    .release = h1_release,
};
