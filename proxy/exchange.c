/*
 * proxy/exchange.c — the life of a request (DESIGN.md): route, upstream
 * stage, streaming both ways, completion. See exchange.h.
 *
 * State machine (one place advances it: the callbacks below update state
 * and end in a call that may finish the exchange; nothing touches `ex`
 * after finish()):
 *
 *   ROUTING -> CONNECTING -> WAIT_HEAD -> STREAMING -> done
 *                  ^  |          |            \-> TUNNEL -> done
 *                  \--+----------/  (connect failure, or reset of a reused
 *                                    connection before any response byte
 *                                    with no body sent: next endpoint)
 */
#include "proxy/exchange.h"

#include "filters/filter.h"
#include "filters/retry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/h1_codec.h"
#include "proxy/h2_client.h"
#include "proxy/health.h"
#include "proxy/log.h"
#include "proxy/router.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "proxy/upstream.h"
#include "tls/context.h"

typedef enum {
    EX_ROUTING = 0,
    EX_CONNECTING,
    EX_WAIT_HEAD,
    EX_STREAMING,
    EX_TUNNEL,
} ex_state_t;

typedef enum {
    UP_OK = 0,
    UP_CONNECT_FAILED,
    UP_CONNECT_TIMEOUT,
    UP_RESET,
    UP_TIMEOUT,
} up_error_t;

struct tg_exchange {
    tg_exchange_t *next_free;
    tg_worker_t *w;
    tg_snapshot_t *snap;
    tg_arena_t arena;
    struct evbuffer *scratch;
    struct evbuffer *body_buf;  /* request body read before an upstream was ready */
    const tg_downstream_ops_t *ops;
    void *ds;
    ex_state_t state;

    tg_request_t req;
    tg_response_t resp;
    const tg_route_conf_t *route;
    tg_cluster_t *cluster;
    const tg_retry_policy_t *retry; /* NULL: no retries beyond failover */
    unsigned retries;           /* retry rounds started */
    struct event *retry_ev;     /* backoff timer (kept across recycling) */
    unsigned rr;                /* this exchange's round-robin draw */
    size_t *order, n_order;     /* endpoints to try, in order (arena) */
    size_t attempts, tried;
    unsigned ignore_health : 1; /* when_all_unhealthy: try_all */
    const tg_endpoint_t *ep;
    const tg_endpoint_t *last_ep; /* for the log: ep is cleared when attempts run out */
    up_error_t last_error;

    tg_upconn_t *up;            /* HTTP/1 upstreams: the leased connection */
    tg_h2_stream_t *h2s;        /* HTTP/2 upstreams: the stream */
    struct event *timer;        /* HTTP/2 upstreams: response / idle timeout (kept across recycling) */
    struct event *deadline_ev;  /* gRPC deadline (kept across recycling) */
    uint64_t deadline_us;       /* monotonic; 0: none */
    long reset_code;            /* the upstream's RST_STREAM code, or -1 */
    unsigned refusals;          /* HTTP/2 streams the upstream refused (retried) */
    tg_h1_reader_t up_reader;
    tg_body_kind_t up_req_body; /* framing of the request body toward the upstream */

    size_t listener;
    tg_filter_exchange_t fx;    /* the filters' view of this exchange */
    int64_t start_unix_us;      /* wall clock, for logs */
    uint64_t t_connect, t_sent, t_head; /* monotonic us of the last attempt's phases */
    uint64_t connect_us;        /* last attempt's connect time (0: pooled) */
    uint64_t bytes_in, bytes_out;
    uint64_t start_us;          /* monotonic, when the request head was complete */
    const char *scheme;
    const tg_tls_peer_t *peer;  /* TLS connections: the client certificate's identity */
    char client_addr[INET6_ADDRSTRLEN];

    unsigned req_done : 1;      /* request body fully read from the client */
    unsigned req_sent : 1;      /* request fully written toward the upstream */
    unsigned req_sent_any : 1;  /* some request body went upstream: no retry */
    unsigned body_kept : 1;     /* the whole body went by reference: replayable */
    unsigned in_retry : 1;      /* counted in the worker's retry budget */
    unsigned body_started : 1;  /* this attempt already sent body_buf */
    unsigned paused : 1;        /* a filter paused the request chain */
    unsigned body_hooks : 1;    /* some filter of the chain watches bodies */
    unsigned resp_started : 1;  /* response head sent to the client */
    unsigned resp_done : 1;
    unsigned up_eof : 1;
    unsigned close_ds : 1;
    unsigned grpc : 1;          /* content-type application/grpc*: gRPC replies and deadlines */
    unsigned te_trailers : 1;   /* the client accepts trailers (te: trailers) */
    unsigned up_fresh : 1;      /* this attempt opened a new upstream connection */
    unsigned up_refused : 1;    /* the upstream refused the stream: never processed */
    int reply_status;           /* HTTP status of a gRPC local reply, for stats (200 on the wire) */
};

static const char *state_str(ex_state_t s)
{
    static const char *const names[] = { "ROUTING", "CONNECTING", "WAIT_HEAD", "STREAMING", "TUNNEL" };
    return names[s];
}

/* ---- lifetime ---- */

static void on_retry_timer(evutil_socket_t fd, short what, void *arg);
static void on_up_timer(evutil_socket_t fd, short what, void *arg);
static void on_deadline(evutil_socket_t fd, short what, void *arg);

tg_exchange_t *tg_exchange_new(tg_worker_t *w, const tg_downstream_ops_t *ops, void *ds)
{
    tg_exchange_t *ex = w->free_exchanges;
    if (ex != NULL) {
        w->free_exchanges = ex->next_free;
    } else {
        ex = calloc(1, sizeof(*ex));
        if (ex == NULL)
            return NULL;
        tg_arena_init(&ex->arena);
        ex->scratch = evbuffer_new();
        ex->body_buf = evbuffer_new();
        if (ex->scratch == NULL || ex->body_buf == NULL) {
            if (ex->scratch)
                evbuffer_free(ex->scratch);
            if (ex->body_buf)
                evbuffer_free(ex->body_buf);
            free(ex);
            return NULL;
        }
    }
    tg_arena_t arena = ex->arena;
    struct evbuffer *scratch = ex->scratch, *body_buf = ex->body_buf;
    struct event *retry_ev = ex->retry_ev, *timer = ex->timer, *deadline_ev = ex->deadline_ev;
    memset(ex, 0, sizeof(*ex));
    ex->arena = arena;
    ex->scratch = scratch;
    ex->body_buf = body_buf;
    ex->retry_ev = retry_ev ? retry_ev : evtimer_new(w->base, on_retry_timer, ex);
    ex->timer = timer ? timer : evtimer_new(w->base, on_up_timer, ex);
    ex->deadline_ev = deadline_ev ? deadline_ev : evtimer_new(w->base, on_deadline, ex);
    if (ex->retry_ev == NULL || ex->timer == NULL || ex->deadline_ev == NULL) {
        ex->next_free = w->free_exchanges;
        w->free_exchanges = ex;
        return NULL;
    }
    ex->reset_code = -1;
    w->active_exchanges++;
    ex->fx.gen = ++w->exchange_gen;
    ex->w = w;
    ex->snap = tg_snapshot_ref(w->snap);
    ex->ops = ops;
    ex->ds = ds;
    return ex;
}

tg_request_t *tg_exchange_request(tg_exchange_t *ex)
{
    return &ex->req;
}

void tg_exchange_set_peer(tg_exchange_t *ex, const tg_tls_peer_t *peer)
{
    ex->peer = peer;
}

tg_arena_t *tg_exchange_arena(tg_exchange_t *ex)
{
    return &ex->arena;
}

const tg_config_t *tg_exchange_config(const tg_exchange_t *ex)
{
    return ex->snap->cfg;
}

static void release_upstream(tg_exchange_t *ex, int reusable)
{
    evtimer_del(ex->timer);
    if (ex->h2s != NULL) {
        tg_h2_stream_release(ex->h2s, 0x8 /* CANCEL, if still open */);
        ex->h2s = NULL;
    }
    if (ex->up == NULL)
        return;
    tg_sock_set_cb(ex->up->sock, NULL, NULL);
    tg_upstream_release(ex->up, reusable, ex->cluster->conf);
    ex->up = NULL;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static tg_endpoint_stats_t *ep_stats(tg_exchange_t *ex)
{
    return &ex->w->stats->endpoints[ex->ep->slot];
}

/* Passive health: how the current attempt on ex->ep went. */
static void report_health(tg_exchange_t *ex, int ok)
{
    if (ex->ep != NULL)
        tg_health_report(ex->w->health, ex->cluster, ex->ep, ok, tg_health_now_ms());
}

/* Counts the exchange once, as it ends. */
static void record(tg_exchange_t *ex)
{
    const tg_snapshot_t *s = ex->snap;
    size_t slot = ex->route ? s->route_slot[ex->route - s->cfg->routes] : s->unrouted_slot;
    uint64_t now = now_us(), us = ex->start_us ? now - ex->start_us : 0;
    int status = ex->resp_started ? ex->resp.status : 0;
    tg_stats_request_done(ex->w->stats, slot, status, us);
    if (ex->route == NULL || (s->cfg->filters.n == 0 && ex->route->filters.n == 0) || ex->fx.req == NULL)
        return;
    tg_stats_filter_decisions(ex->w->stats, slot, ex->fx.auth_failed, ex->fx.rl_allowed, ex->fx.rl_limited);
    const tg_header_t *rid = tg_headers_get(&ex->req.headers, "x-request-id");
    const tg_header_t *gs = NULL;
    if (ex->grpc && ex->resp_started && (gs = tg_headers_get(&ex->resp.trailers, "grpc-status")) == NULL)
        gs = tg_headers_get(&ex->resp.headers, "grpc-status");
    tg_filter_record_t rec = {
        .start_unix_us = ex->start_unix_us,
        .request_id = rid ? rid->value : NULL,
        .listener = ex->listener < s->cfg->n_listeners ? s->cfg->listeners[ex->listener].name : "",
        .route = ex->route->name,
        .method = ex->req.method,
        .path = ex->req.target,
        .protocol = ex->req.version == 20 ? "HTTP/2" : ex->req.version == 10 ? "HTTP/1.0" : "HTTP/1.1",
        .status = status,
        .grpc_status = gs ? gs->value : NULL,
        .bytes_in = ex->bytes_in,
        .bytes_out = ex->bytes_out,
        .client_addr = ex->client_addr,
        .identity = ex->fx.identity,
        .upstream = ex->last_ep ? ex->last_ep->conf->address : NULL,
        .attempts = (unsigned)ex->tried,
        .total_us = us,
        .connect_us = ex->connect_us,
        .ttfb_us = ex->t_head && ex->t_sent ? ex->t_head - ex->t_sent : 0,
        .upstream_us = ex->t_sent ? now - ex->t_sent : 0,
    };
    tg_filters_on_complete(&s->cfg->filters, &ex->route->filters, &ex->fx, &rec);
}

static void recycle(tg_exchange_t *ex)
{
    tg_worker_t *w = ex->w;
    record(ex);
    ex->fx.gen = 0; /* a late tg_filter_resume() for this exchange is ignored */
    ex->paused = 0;
    evtimer_del(ex->retry_ev);
    evtimer_del(ex->deadline_ev);
    w->active_exchanges--;
    if (ex->in_retry)
        w->retrying--;
    release_upstream(ex, 0);
    tg_snapshot_unref(ex->snap);
    ex->snap = NULL;
    tg_arena_reset(&ex->arena);
    evbuffer_drain(ex->scratch, evbuffer_get_length(ex->scratch));
    evbuffer_drain(ex->body_buf, evbuffer_get_length(ex->body_buf));
    ex->next_free = w->free_exchanges;
    w->free_exchanges = ex;
}

void tg_exchange_free_cache(tg_worker_t *w)
{
    tg_exchange_t *ex;
    while ((ex = w->free_exchanges) != NULL) {
        w->free_exchanges = ex->next_free;
        tg_arena_free(&ex->arena);
        evbuffer_free(ex->scratch);
        evbuffer_free(ex->body_buf);
        if (ex->retry_ev)
            event_free(ex->retry_ev);
        if (ex->timer)
            event_free(ex->timer);
        if (ex->deadline_ev)
            event_free(ex->deadline_ev);
        free(ex);
    }
}

/* Ends the exchange: gives the upstream connection back (kept only after a
 * clean, complete request and response), tells the downstream, recycles. */
static void finish(tg_exchange_t *ex, int abort)
{
    int clean = !abort && ex->resp_done && ex->req_sent && ex->state == EX_STREAMING;
    int reusable = clean && ex->resp.keep_alive && ex->up_reader.body != TG_BODY_EOF;
    tg_debug("exchange %s %s: finish in %s (abort=%d reusable=%d)", ex->req.method, ex->req.target,
             state_str(ex->state), abort, reusable);
    release_upstream(ex, reusable);
    int close = abort || ex->close_ds || !ex->req_done || ex->state == EX_TUNNEL;
    ex->ops->done(ex->ds, close);
    recycle(ex);
}

void tg_exchange_abort(tg_exchange_t *ex)
{
    recycle(ex);
}

long tg_exchange_reset_code(const tg_exchange_t *ex)
{
    return ex ? ex->reset_code : -1;
}

/* ---- local replies ---- */

/* Headers filters asked for: on a local reply (extra), and on any
 * response (fx.response_headers). */
static void add_filter_headers(tg_exchange_t *ex, tg_response_t *r, const tg_headers_t *extra)
{
    const tg_headers_t *lists[2] = { extra, &ex->fx.response_headers };
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; lists[l] && i < lists[l]->n; i++) {
            const tg_header_t *h = &lists[l]->v[i];
            tg_headers_add(&r->headers, &ex->arena, h->name, h->name_len, h->value, h->value_len);
        }
}

/* The gRPC status for a gateway error (DESIGN.md, "Local replies"). */
static int grpc_status_for(int http)
{
    switch (http) {
    case 400: return 13; /* INTERNAL */
    case 401: return 16; /* UNAUTHENTICATED */
    case 403: return 7;  /* PERMISSION_DENIED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 413: case 431: case 429: return 8; /* RESOURCE_EXHAUSTED */
    case 502: case 503: return 14; /* UNAVAILABLE */
    case 504: case 408: return 4;  /* DEADLINE_EXCEEDED */
    case 501: return 12;
    default: return http >= 500 ? 13 : 2; /* INTERNAL, UNKNOWN */
    }
}

/* grpc-status and grpc-message (percent-encoded, as the gRPC spec asks)
 * appended to h. */
static int add_grpc_status(tg_exchange_t *ex, tg_headers_t *h, int code, const char *message)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(message);
    char *msg = tg_arena_alloc(&ex->arena, n * 3 + 1), *p = msg, *st = tg_arena_alloc(&ex->arena, 4);
    if (msg == NULL || st == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)message[i];
        if (c < 0x20 || c > 0x7e || c == '%') {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        } else {
            *p++ = (char)c;
        }
    }
    *p = '\0';
    size_t sl = tg_fmt_u64(st, (uint64_t)code);
    st[sl] = '\0';
    return tg_headers_add(h, &ex->arena, "grpc-status", 11, st, sl) < 0 ||
                   tg_headers_add(h, &ex->arena, "grpc-message", 12, msg, (size_t)(p - msg)) < 0
               ? -1
               : 0;
}

/* A gRPC error once the response has started: its trailers carry the
 * status (the upstream stream is cancelled). */
static void grpc_fail_started(tg_exchange_t *ex, int status, const char *message)
{
    tg_headers_t *t = &ex->resp.trailers;
    release_upstream(ex, 0);
    t->n = 0;
    if (add_grpc_status(ex, t, grpc_status_for(status), message) < 0 || ex->ops->write_end(ex->ds, t) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    ex->state = EX_STREAMING;
    finish(ex, 0);
}

/* A gRPC request's local reply: trailers-only (HTTP 200, the status in
 * the only HEADERS frame), never an HTTP error page. */
static void grpc_reply(tg_exchange_t *ex, int status, const char *message)
{
    tg_response_t *r = &ex->resp;
    memset(r, 0, sizeof(*r));
    r->status = 200;
    r->version = 20;
    r->body = TG_BODY_NONE;
    if (tg_headers_add(&r->headers, &ex->arena, "content-type", 12, "application/grpc", 16) < 0 ||
        add_grpc_status(ex, &r->headers, grpc_status_for(status), message) < 0) {
        finish(ex, 1);
        return;
    }
    add_filter_headers(ex, r, &ex->fx.reply_headers);
    tg_debug("local gRPC reply %d (HTTP %d): %s", grpc_status_for(status), status, message);
    ex->resp_started = 1;
    ex->reply_status = status;
    if (ex->ops->write_head(ex->ds, r) < 0 || ex->ops->write_end(ex->ds, NULL) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    ex->state = EX_STREAMING;
    finish(ex, 0);
}

void tg_exchange_reply(tg_exchange_t *ex, int status, const char *message)
{
    if (ex->resp_started) {
        if (ex->grpc && !ex->resp_done)
            grpc_fail_started(ex, status, message);
        else
            finish(ex, 1);
        return;
    }
    release_upstream(ex, 0);
    if (ex->grpc) {
        grpc_reply(ex, status, message);
        return;
    }
    char esc[256], body[384], len[24];
    tg_json_escape(esc, sizeof(esc), message);
    int blen = snprintf(body, sizeof(body), "{\"error\": \"%s\", \"status\": %d}\n", esc, status);
    snprintf(len, sizeof(len), "%d", blen);

    tg_response_t *r = &ex->resp;
    memset(r, 0, sizeof(*r));
    r->status = status;
    r->version = 11;
    if (status == 204 || status == 304) { /* no body, by definition */
        blen = 0;
        r->body = TG_BODY_NONE;
    } else {
        r->body = TG_BODY_LENGTH;
        r->content_length = (uint64_t)blen;
        tg_headers_add(&r->headers, &ex->arena, "content-type", 12, "application/json", 16);
    }
    add_filter_headers(ex, r, &ex->fx.reply_headers);
    tg_debug("local reply %d: %s", status, message);
    ex->resp_started = 1;
    ex->bytes_out += (uint64_t)blen;
    if (ex->ops->write_head(ex->ds, r) < 0 || (blen && evbuffer_add(ex->scratch, body, (size_t)blen) < 0) ||
        ex->ops->write_body(ex->ds, ex->scratch) < 0 || ex->ops->write_end(ex->ds, NULL) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    ex->state = EX_STREAMING;
    /* A request body nobody will read means the connection must close. */
    finish(ex, 0);
}

/* ---- upstream request ---- */

/* A random (version 4) UUID, formatted without printf. */
static void make_request_id(tg_exchange_t *ex, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = tg_worker_random(ex->w), b = tg_worker_random(ex->w);
    a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  /* version 4 */
    b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  /* RFC 4122 variant */
    char *p = out;
    for (int i = 15; i >= 0; i--) {
        *p++ = hex[(a >> (i * 4)) & 15];
        if (i == 8 || i == 4)
            *p++ = '-';
    }
    *p++ = '-';
    for (int i = 15; i >= 0; i--) {
        *p++ = hex[(b >> (i * 4)) & 15];
        if (i == 12)
            *p++ = '-';
    }
    *p = '\0';
}

/* "a" + ", " + "b" in the arena. */
static char *join_list(tg_arena_t *a, const char *first, const char *second)
{
    size_t l1 = strlen(first), l2 = strlen(second);
    char *v = tg_arena_alloc(a, l1 + 2 + l2 + 1);
    if (v != NULL) {
        memcpy(v, first, l1);
        memcpy(v + l1, ", ", 2);
        memcpy(v + l1 + 2, second, l2 + 1);
    }
    return v;
}

/* X-Request-Id: the client's, or a new one. Before the filters run, so
 * that every log line of the exchange carries it. */
static int ensure_request_id(tg_exchange_t *ex)
{
    if (tg_headers_get(&ex->req.headers, "x-request-id") != NULL)
        return 0;
    char *id = tg_arena_alloc(&ex->arena, 37);
    if (id == NULL)
        return -1;
    make_request_id(ex, id);
    return tg_headers_add(&ex->req.headers, &ex->arena, "x-request-id", 12, id, 36);
}

/* The client-certificate header: whatever the client sent under that
 * name is dropped (it cannot be spoofed), then the verified identity of a
 * TLS client is added. */
static int forward_client_cert(tg_exchange_t *ex)
{
    const tg_config_t *cfg = ex->snap->cfg;
    const char *name = TG_DEFAULT_CLIENT_CERT_HEADER;
    if (ex->listener < cfg->n_listeners && cfg->listeners[ex->listener].tls.enabled)
        name = cfg->listeners[ex->listener].tls.client_cert_header;
    tg_headers_remove(&ex->req.headers, TG_DEFAULT_CLIENT_CERT_HEADER);
    tg_headers_remove(&ex->req.headers, name);
    if (ex->peer == NULL || ex->peer->header == NULL)
        return 0;
    return tg_headers_add(&ex->req.headers, &ex->arena, name, strlen(name), ex->peer->header,
                          strlen(ex->peer->header));
}

/* Turns the client's headers into the upstream's: hop-by-hop removed,
 * forwarding headers set, route rules applied. Done once per exchange. */
static int prepare_request_headers(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    tg_headers_t *h = &req->headers;
    tg_arena_t *a = &ex->arena;
    const tg_header_t *upg = req->upgrade ? tg_headers_get(h, "upgrade") : NULL;
    const char *upgrade = upg ? upg->value : NULL;
    const tg_header_t *xff = tg_headers_get(h, "x-forwarded-for");
    const char *xff_old = xff ? xff->value : NULL;
    const tg_header_t *via = tg_headers_get(h, "via");
    const char *via_old = via ? via->value : NULL;
    const tg_header_t *te = tg_headers_get(h, "te");
    ex->te_trailers = te != NULL && tg_header_has_token(te->value, te->value_len, "trailers");

    tg_headers_strip_hop_by_hop(h);
    char *v = xff_old ? join_list(a, xff_old, ex->client_addr) : ex->client_addr;
    if (v == NULL || tg_headers_set(h, a, "x-forwarded-for", v) < 0 ||
        tg_headers_set(h, a, "x-forwarded-proto", ex->scheme) < 0)
        return -1;
    if (req->authority && tg_headers_set(h, a, "x-forwarded-host", req->authority) < 0)
        return -1;
    const char *via_self = req->version == 20 ? "2 tollgate" : req->version == 10 ? "1.0 tollgate" : "1.1 tollgate";
    v = via_old ? join_list(a, via_old, via_self) : (char *)via_self;
    if (v == NULL || tg_headers_set(h, a, "via", v) < 0)
        return -1;
    if (forward_client_cert(ex) < 0 || tg_headers_apply_rules(h, a, &ex->route->request_headers) < 0)
        return -1;
    if (upgrade && (tg_headers_add(h, a, "connection", 10, "upgrade", 7) < 0 ||
                    tg_headers_add(h, a, "upgrade", 7, upgrade, strlen(upgrade)) < 0))
        return -1;
    ex->up_req_body = req->body;
    if (ex->cluster->conf->protocol != TG_PROTO_HTTP1 && req->body != TG_BODY_NONE)
        ex->up_req_body = TG_BODY_LENGTH; /* HTTP/2 frames it: the bytes go as they are */
    return 0;
}

/* Appends s to the buffer at *p. */
static void put(char **p, const char *s, size_t n)
{
    memcpy(*p, s, n);
    *p += n;
}

static int write_request_head(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    size_t ml = strlen(req->method), tl = strlen(req->target);
    char *start = tg_arena_alloc(&ex->arena, ml + 1 + tl + 10), *p = start;
    if (start == NULL)
        return -1;
    put(&p, req->method, ml);
    put(&p, " ", 1);
    put(&p, req->target, tl);
    put(&p, " HTTP/1.1", 10); /* with the NUL */

    char extra[384];
    p = extra;
    if (req->authority == NULL) { /* HTTP/1.0 without Host: HTTP/1.1 requires one */
        const char *addr = ex->ep->conf->address;
        put(&p, "host: ", 6);
        put(&p, addr, strlen(addr));
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
    return tg_h1_write_head(tg_sock_out(ex->up->sock), start, &req->headers, extra);
}

/* ---- pumps: move bytes while the sink has room ---- */

static void fail_upstream(tg_exchange_t *ex, up_error_t err, const char *what);
static void up_set_timeout(tg_exchange_t *ex, uint64_t ms);
static int schedule_retry(tg_exchange_t *ex, unsigned cond);
static void try_next_endpoint(tg_exchange_t *ex);

/* Reads request body from the client into dst; a framing error or an
 * oversized body becomes a local reply. Returns -1 if the exchange ended. */
static ssize_t read_request_body(tg_exchange_t *ex, struct evbuffer *dst, size_t max, int *fin)
{
    int err = 0;
    ssize_t n = ex->ops->read_body(ex->ds, dst, max, fin, &err);
    if (n < 0) {
        ex->close_ds = 1;
        tg_exchange_reply(ex, err ? err : 400, err == 413 ? "request body too large" : "malformed request body");
        return n;
    }
    /* dst holds only this piece: scratch, or body_buf while still empty */
    if (ex->body_hooks && (n > 0 || *fin) &&
        tg_filters_on_request_body(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, dst, *fin) ==
            TG_FILTER_REPLY) {
        ex->close_ds = 1;
        tg_exchange_reply(ex, ex->fx.reply_status, ex->fx.reply_message ? ex->fx.reply_message : "refused");
        return -1;
    }
    return n;
}

/* Appends src to out by reference (no copy; src keeps its data), framed
 * for the upstream. */
static int send_reference(tg_exchange_t *ex, struct evbuffer *out, struct evbuffer *src)
{
    size_t len = evbuffer_get_length(src);
    if (len == 0)
        return 0;
    if (ex->up_req_body == TG_BODY_CHUNKED) {
        char hdr[24];
        size_t n = (size_t)snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        if (evbuffer_add(out, hdr, n) < 0 || evbuffer_add_buffer_reference(out, src) < 0 ||
            evbuffer_add(out, "\r\n", 2) < 0)
            return -1;
        return 0;
    }
    return evbuffer_add_buffer_reference(out, src);
}

/* The request body is kept for replay (in body_buf) while it all fits in
 * TG_EXCHANGE_HWM and either it is all here or the route may retry. */
#define REPLAY_MAX TG_EXCHANGE_HWM

/* Sends one piece of body (data: body_buf at the start of an attempt, or a
 * newly read piece in scratch). Kept pieces go by reference and join
 * body_buf; once the body outgrows the replay buffer it is only moved. */
static int send_body_piece(tg_exchange_t *ex, struct evbuffer *out, struct evbuffer *piece)
{
    ex->req_sent_any = 1;
    if (piece == ex->body_buf)
        return ex->body_kept ? send_reference(ex, out, piece) : tg_h1_write_body(out, ex->up_req_body, piece);
    if (ex->body_kept && evbuffer_get_length(ex->body_buf) + evbuffer_get_length(piece) <= REPLAY_MAX) {
        if (send_reference(ex, out, piece) < 0)
            return -1;
        return evbuffer_add_buffer(ex->body_buf, piece);
    }
    if (ex->body_kept) { /* too large to replay from here on */
        ex->body_kept = 0;
        evbuffer_drain(ex->body_buf, evbuffer_get_length(ex->body_buf));
    }
    return tg_h1_write_body(out, ex->up_req_body, piece);
}

/* Client -> upstream. Returns -1 if the exchange was finished. */
static int pump_request(tg_exchange_t *ex)
{
    if ((ex->up == NULL && ex->h2s == NULL) || ex->req_sent || ex->state == EX_CONNECTING ||
        ex->state == EX_ROUTING)
        return 0;
    struct evbuffer *out = ex->h2s ? tg_h2_stream_out(ex->h2s) : tg_sock_out(ex->up->sock);
    if (!ex->body_started) {
        /* Start of an attempt. Keep the body for replay (a stale pooled
         * connection, a retry) when it is all here or the route retries,
         * until the response starts. */
        ex->body_started = 1;
        if (ex->state == EX_WAIT_HEAD && evbuffer_get_length(ex->body_buf) <= REPLAY_MAX &&
            (ex->req_done || ex->retry != NULL) && (!ex->req_sent_any || ex->body_kept))
            ex->body_kept = 1;
        if (evbuffer_get_length(ex->body_buf) > 0 && send_body_piece(ex, out, ex->body_buf) < 0) {
            tg_exchange_reply(ex, 500, "out of memory");
            return -1;
        }
    }
    int fin = ex->req_done;
    while (!fin && evbuffer_get_length(out) < TG_EXCHANGE_HWM) {
        ssize_t n = read_request_body(ex, ex->scratch, TG_EXCHANGE_HWM - evbuffer_get_length(out), &fin);
        if (n < 0)
            return -1;
        if (n > 0) {
            ex->bytes_in += (uint64_t)n;
            if (ex->h2s != NULL && ex->state == EX_STREAMING)
                up_set_timeout(ex, ex->route->idle_timeout_ms); /* the call is alive */
            if (send_body_piece(ex, out, ex->scratch) < 0) {
                tg_exchange_reply(ex, 500, "out of memory");
                return -1;
            }
        }
        if (n == 0)
            break;
    }
    if (fin) {
        ex->req_done = 1;
        ex->req_sent = 1;
        if (ex->state == EX_TUNNEL) {
            /* the client closed its side of the tunnel: so do we */
            finish(ex, 1);
            return -1;
        }
        if (ex->h2s) {
            tg_h2_stream_end(ex->h2s);
            return 0;
        }
        tg_h1_write_end(out, ex->up_req_body, NULL);
        tg_sock_flush_now(ex->up->sock); /* the request is complete */
        return 0;
    }
    if (ex->h2s)
        tg_h2_stream_flush(ex->h2s);
    else
        tg_sock_flush(ex->up->sock);
    return 0;
}

/* Upstream inactivity bound: the socket's timeout for HTTP/1, the
 * exchange's own timer for an HTTP/2 stream (its connection is shared). */
static void up_set_timeout(tg_exchange_t *ex, uint64_t ms)
{
    if (ex->h2s == NULL) {
        tg_sock_set_timeout(ex->up->sock, ms);
        return;
    }
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    if (ms)
        evtimer_add(ex->timer, &tv);
    else
        evtimer_del(ex->timer);
}

/* Upstream -> client. Returns -1 if the exchange was finished. */
static int pump_response(tg_exchange_t *ex)
{
    tg_sock_t *sock = ex->up ? ex->up->sock : NULL;
    while (!ex->resp_done) {
        size_t pending = ex->ops->pending(ex->ds);
        if (pending >= TG_EXCHANGE_HWM)
            break;
        int fin = 0;
        ssize_t n;
        if (ex->h2s != NULL) {
            n = tg_h2_stream_read(ex->h2s, ex->scratch, TG_EXCHANGE_HWM - pending, &fin);
            if (n > 0)
                up_set_timeout(ex, ex->route->idle_timeout_ms);
        } else {
            n = tg_h1_read_body(&ex->up_reader, tg_sock_in(sock), ex->scratch, TG_EXCHANGE_HWM - pending, ex->up_eof,
                                &fin);
            tg_sock_consumed(sock);
        }
        if (n < 0) {
            tg_warn("upstream %s: bad or truncated response body: %s", ex->ep->conf->address,
                    ex->up_reader.error_msg ? ex->up_reader.error_msg : "?");
            finish(ex, 1);
            return -1;
        }
        ex->bytes_out += n > 0 ? (uint64_t)n : 0;
        if (ex->body_hooks && (n > 0 || fin) && ex->fx.req != NULL)
            tg_filters_on_response_body(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, ex->scratch, fin);
        if (n > 0 && ex->ops->write_body(ex->ds, ex->scratch) < 0) {
            finish(ex, 1);
            return -1;
        }
        if (fin) {
            if (ex->state == EX_TUNNEL) {
                finish(ex, 1);
                return -1;
            }
            ex->ops->write_end(ex->ds, &ex->resp.trailers);
            ex->resp_done = 1;
        }
        if (n == 0)
            break;
    }
    if (ex->resp_done) {
        finish(ex, 0);
        return -1;
    }
    return 0;
}

/* ---- upstream events ---- */

static void on_up_sock(tg_sock_t *s, int events, void *arg);

/* Returns -1 if the exchange was finished. */
static int on_response_head(tg_exchange_t *ex)
{
    tg_response_t *resp = &ex->resp;
    const tg_header_t *upg = tg_headers_get(&resp->headers, "upgrade");
    const char *upgrade = upg ? upg->value : NULL;
    if (resp->status == 101 && (!ex->req.upgrade || upgrade == NULL)) {
        fail_upstream(ex, UP_RESET, "101 response to a request without Upgrade");
        return -1;
    }
    tg_headers_strip_hop_by_hop(&resp->headers);
    tg_filters_on_response(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, resp);
    add_filter_headers(ex, resp, NULL);
    if (tg_headers_apply_rules(&resp->headers, &ex->arena, &ex->route->response_headers) < 0 ||
        (upgrade && resp->status == 101 &&
         tg_headers_add(&resp->headers, &ex->arena, "upgrade", 7, upgrade, strlen(upgrade)) < 0)) {
        tg_exchange_reply(ex, 500, "out of memory");
        return -1;
    }
    ex->resp_started = 1;
    if (ex->ops->write_head(ex->ds, resp) < 0) {
        finish(ex, 1);
        return -1;
    }
    const tg_route_conf_t *r = ex->route;
    if (resp->status == 101) {
        ex->state = EX_TUNNEL;
        ex->req_done = 0;
        ex->req_sent = 0;
        ex->up_req_body = TG_BODY_TUNNEL;
        up_set_timeout(ex, r->idle_timeout_ms);
        if (pump_request(ex) < 0)
            return -1;
    } else {
        ex->state = EX_STREAMING;
        up_set_timeout(ex, r->idle_timeout_ms);
    }
    return pump_response(ex);
}

/* Returns -1 if the exchange was finished. */
static int head_received(tg_exchange_t *ex);

static int read_response_head(tg_exchange_t *ex)
{
    tg_sock_t *sock = ex->up->sock;
    struct evbuffer *in = tg_sock_in(sock);
    for (;;) {
        memset(&ex->resp, 0, sizeof(ex->resp));
        tg_h1_result_t r = tg_h1_read_response_head(&ex->up_reader, in, ex->snap->cfg->limits.max_header_bytes,
                                                   &ex->arena, &ex->resp, ex->req.is_head);
        tg_sock_consumed(sock);
        if (r == TG_H1_AGAIN) {
            if (!ex->up_eof)
                return 0;
            fail_upstream(ex, UP_RESET, evbuffer_get_length(in) ? "truncated response head"
                                                                 : "connection closed before a response");
            return -1;
        }
        if (r == TG_H1_ERROR) {
            tg_warn("upstream %s: %s", ex->ep->conf->address, ex->up_reader.error_msg);
            ex->req_sent_any = 1; /* the upstream answered: do not retry */
            fail_upstream(ex, UP_RESET, ex->up_reader.error_msg);
            return -1;
        }
        if (ex->resp.status >= 100 && ex->resp.status < 200 && ex->resp.status != 101) {
            tg_h1_reader_init(&ex->up_reader, HTTP_RESPONSE); /* interim response: skip */
            continue;
        }
        ex->up_reader.trailers = &ex->resp.trailers; /* chunked trailers, for the client */
        return head_received(ex);
    }
}

/* The final response head is in ex->resp (either protocol). Returns -1 if
 * the exchange was finished. */
static int head_received(tg_exchange_t *ex)
{
    {
        report_health(ex, ex->resp.status < 500);
        ex->t_head = now_us();
        if (ex->retry != NULL) {
            const tg_header_t *gs = tg_headers_get(&ex->resp.headers, "grpc-status");
            if (tg_retry_on_status(ex->retry, ex->resp.status, gs ? gs->value : NULL) && schedule_retry(ex, 0))
                return -1;
        }
        if (ex->body_kept) { /* the upstream answered: no replay from here on */
            evbuffer_drain(ex->body_buf, evbuffer_get_length(ex->body_buf));
            ex->body_kept = 0;
        }
        return on_response_head(ex);
    }
}

/* gRPC: the time left before the call's deadline goes upstream in
 * grpc-timeout (milliseconds while they fit the spec's 8 digits). */
static int forward_grpc_timeout(tg_exchange_t *ex)
{
    if (ex->deadline_us == 0)
        return 0;
    uint64_t now = now_us(), left = ex->deadline_us > now ? ex->deadline_us - now : 0;
    char *v = tg_arena_alloc(&ex->arena, 16);
    if (v == NULL)
        return -1;
    uint64_t ms = (left + 999) / 1000;
    size_t n = ms < 100000000 ? tg_fmt_u64(v, ms) : tg_fmt_u64(v, ms / 1000);
    v[n] = ms < 100000000 ? 'm' : 'S';
    v[n + 1] = '\0';
    return tg_headers_set(&ex->req.headers, &ex->arena, "grpc-timeout", v);
}

/* Sends the request head on the attempt's HTTP/2 stream. Returns -1 if
 * the exchange was finished. */
static int start_h2_request(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    const char *authority = req->authority ? req->authority : ex->ep->conf->address;
    int end_stream = ex->req_done && evbuffer_get_length(ex->body_buf) == 0;
    if (forward_grpc_timeout(ex) < 0 ||
        tg_h2_stream_start(ex->h2s, req, authority, ex->te_trailers || ex->grpc, end_stream) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return -1;
    }
    if (end_stream) {
        ex->body_started = 1;
        ex->req_sent = 1;
    }
    /* A gRPC call is bounded by its deadline and by silence (the route's
     * idle_timeout), never by the route timeout meant for ordinary
     * requests: a stream may legitimately wait long for its first answer. */
    uint64_t ms = ex->retry && ex->retry->per_try_timeout_ms ? ex->retry->per_try_timeout_ms
                  : ex->deadline_us                          ? 0
                  : ex->grpc                                 ? ex->route->idle_timeout_ms
                                                             : ex->route->timeout_ms;
    up_set_timeout(ex, ms);
    return pump_request(ex);
}

static void on_connected(tg_exchange_t *ex)
{
    ex->state = EX_WAIT_HEAD;
    tg_counter_add(&ep_stats(ex)->requests, 1);
    ex->t_sent = ex->up_fresh ? now_us() : ex->t_connect; /* a pooled connection: the same instant */
    if (ex->up_fresh)
        ex->connect_us = ex->t_sent - ex->t_connect;
    if (ex->h2s != NULL) {
        start_h2_request(ex);
        return;
    }
    tg_sock_t *sock = ex->up->sock;
    tg_h1_reader_init(&ex->up_reader, HTTP_RESPONSE);
    if (write_request_head(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    tg_sock_flush(sock);
    tg_sock_set_read_limit(sock, TG_EXCHANGE_HWM);
    tg_sock_set_write_lowat(sock, TG_EXCHANGE_HWM / 2);
    tg_sock_set_timeout(sock, ex->retry && ex->retry->per_try_timeout_ms ? ex->retry->per_try_timeout_ms
                                                                          : ex->route->timeout_ms);
    if (ex->req.expect_continue && ex->req.body != TG_BODY_NONE && !ex->req_done)
        ex->ops->send_continue(ex->ds);
    if (pump_request(ex) < 0)
        return;
    /* a pooled connection may already hold bytes (or EOF) */
    if (evbuffer_get_length(tg_sock_in(sock)) > 0)
        read_response_head(ex);
}

static void on_up_sock(tg_sock_t *s, int events, void *arg)
{
    tg_exchange_t *ex = arg;
    if (events & TG_SOCK_ERROR) {
        char why[160];
        fail_upstream(ex, ex->state == EX_CONNECTING ? UP_CONNECT_FAILED : UP_RESET,
                      tg_sock_tls_error(s, why, sizeof(why)));
        return;
    }
    if (events & TG_SOCK_CONNECTED) {
        on_connected(ex);
        return;
    }
    if (events & TG_SOCK_TIMEOUT) {
        if (ex->state == EX_CONNECTING)
            fail_upstream(ex, UP_CONNECT_TIMEOUT, "connect timeout");
        else
            fail_upstream(ex, UP_TIMEOUT, ex->state == EX_WAIT_HEAD ? "response timeout" : "idle timeout");
        return;
    }
    if (events & TG_SOCK_EOF)
        ex->up_eof = 1;
    if (events & (TG_SOCK_READ | TG_SOCK_EOF)) {
        int r = 0;
        if (ex->state == EX_WAIT_HEAD)
            r = read_response_head(ex);
        else if (ex->state == EX_STREAMING || ex->state == EX_TUNNEL)
            r = pump_response(ex);
        if (r < 0)
            return;
    }
    if (events & TG_SOCK_WRITE)
        pump_request(ex);
}

/* An HTTP/2 upstream stream failed. */
static void on_h2_reset(tg_exchange_t *ex)
{
    int refused = 0;
    const char *why = NULL;
    uint32_t code = tg_h2_stream_error(ex->h2s, &refused, &why);
    if (ex->state == EX_CONNECTING) {
        fail_upstream(ex, strstr(why, "timed out") ? UP_CONNECT_TIMEOUT : UP_CONNECT_FAILED, why);
        return;
    }
    if (refused && ex->refusals < 3 && !ex->resp_started) {
        /* Never processed (REFUSED_STREAM, or past a GOAWAY): like a stale
         * pooled connection, it goes again on another connection. */
        ex->refusals++;
        ex->up_refused = 1;
        fail_upstream(ex, UP_RESET, why);
        return;
    }
    if (tg_h2_stream_peer_reset(ex->h2s))
        ex->reset_code = (long)code;
    fail_upstream(ex, UP_RESET, why);
}

static void on_h2_event(tg_h2_stream_t *s, int events, void *arg)
{
    tg_exchange_t *ex = arg;
    if (events & TG_H2S_RESET) {
        on_h2_reset(ex);
        return;
    }
    if (events & TG_H2S_CONNECTED) {
        if (ex->state == EX_CONNECTING)
            on_connected(ex);
        return; /* anything else comes later */
    }
    if ((events & TG_H2S_HEAD) && ex->state == EX_WAIT_HEAD && head_received(ex) < 0)
        return;
    if ((events & (TG_H2S_DATA | TG_H2S_END)) && ex->state == EX_STREAMING && pump_response(ex) < 0)
        return;
    if (events & TG_H2S_WRITABLE)
        pump_request(ex);
}

static void on_up_timer(evutil_socket_t fd, short what, void *arg)
{
    tg_exchange_t *ex = arg;
    if (ex->state == EX_WAIT_HEAD || ex->state == EX_STREAMING)
        fail_upstream(ex, UP_TIMEOUT, ex->state == EX_WAIT_HEAD ? "response timeout" : "idle timeout");
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    tg_exchange_t *ex = arg;
    tg_debug("exchange %s: gRPC deadline exceeded", ex->req.target);
    tg_exchange_reply(ex, 504, "deadline exceeded");
}

static tg_route_stats_t *route_stats(tg_exchange_t *ex)
{
    const tg_snapshot_t *s = ex->snap;
    return &ex->w->stats->routes[s->route_slot[ex->route - s->cfg->routes]];
}

/* Starts another round of attempts after a backoff, if the route's retry
 * policy covers this failure (cond: TG_RETRY_* bits, or 0 when the status
 * check was already made), nothing went to the client yet, tries are
 * left, the method may be retried, the body can be replayed, and the
 * worker's retry budget allows. Returns 1 if a retry is scheduled. */
static int schedule_retry(tg_exchange_t *ex, unsigned cond)
{
    const tg_retry_policy_t *p = ex->retry;
    if (p == NULL || ex->resp_started || (cond && !(p->on & cond)) || ex->retries + 1 >= p->attempts ||
        !tg_retry_method_allowed(p, ex->req.method))
        return 0;
    tg_worker_t *w = ex->w;
    if (!ex->req_done || (ex->req_sent_any && !ex->body_kept)) {
        tg_counter_add(&route_stats(ex)->retries_skipped, 1);
        tg_debug("retry: %s %s not retried: its body is larger than the replay buffer", ex->req.method,
                 ex->req.target);
        return 0;
    }
    unsigned budget = w->active_exchanges * p->budget_percent / 100;
    if (!ex->in_retry && w->retrying >= (budget > p->budget_min ? budget : p->budget_min)) {
        tg_counter_add(&route_stats(ex)->retries_skipped, 1);
        tg_debug("retry: budget spent (%u retrying of %u in flight)", w->retrying, w->active_exchanges);
        return 0;
    }
    if (!ex->in_retry) {
        ex->in_retry = 1;
        w->retrying++;
    }
    ex->retries++;
    tg_counter_add(&route_stats(ex)->retries, 1);
    release_upstream(ex, 0);
    ex->state = EX_ROUTING;
    uint64_t ms = tg_retry_backoff_ms(p, ex->retries, tg_worker_random(w));
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    tg_debug("retry %u of %s %s in %llu ms", ex->retries, ex->req.method, ex->req.target, (unsigned long long)ms);
    evtimer_add(ex->retry_ev, &tv);
    return 1;
}

/* An upstream attempt failed. Before anything was sent that cannot be
 * replayed, move on to the next endpoint; otherwise answer 502/504, or
 * cut the client off if its response has already started. */
static void fail_upstream(tg_exchange_t *ex, up_error_t err, const char *what)
{
    const char *addr = ex->ep ? ex->ep->conf->address : "?";
    int reused = (ex->up && ex->up->reused) || ex->up_refused;
    tg_debug("upstream %s: %s (state %s)", addr, what, state_str(ex->state));
    if (ex->ep != NULL) {
        tg_endpoint_stats_t *st = ep_stats(ex);
        if (err == UP_CONNECT_FAILED || err == UP_CONNECT_TIMEOUT)
            tg_counter_add(&st->connect_failures, 1);
        else if (err == UP_TIMEOUT)
            tg_counter_add(&st->timeouts, 1);
        else if (!reused || ex->state != EX_WAIT_HEAD)
            tg_counter_add(&st->resets, 1);
        if (!(reused && ex->state == EX_WAIT_HEAD && err == UP_RESET))
            report_health(ex, 0); /* a stale pooled connection is not the endpoint's fault */
    }
    release_upstream(ex, 0);
    ex->last_error = err;
    /* Nothing reached the upstream that cannot be sent again: a connect
     * failure; a reset before any response byte of a request whose body
     * was not sent; or a pooled connection the upstream had closed, with
     * the whole body kept for replay. */
    int retriable = ex->state == EX_CONNECTING ||
                    (ex->state == EX_WAIT_HEAD && err == UP_RESET &&
                     (!ex->req_sent_any || (reused && ex->body_kept)));
    if (retriable) {
        if (ex->state == EX_CONNECTING)
            tg_warn("upstream %s: %s", addr, what);
        if (reused)
            ex->attempts--; /* a stale pooled connection does not count as a try */
        try_next_endpoint(ex);
        return;
    }
    if (ex->resp_started) {
        if (ex->grpc && ex->reset_code < 0) /* the connection died: the call is UNAVAILABLE */
            grpc_fail_started(ex, 503, what);
        else
            finish(ex, 1); /* relays the upstream's RST_STREAM code, if any */
        return;
    }
    tg_warn("upstream %s: %s", addr, what);
    if (schedule_retry(ex, err == UP_TIMEOUT ? TG_RETRY_TIMEOUT : TG_RETRY_RESET))
        return;
    if (err == UP_TIMEOUT)
        tg_exchange_reply(ex, 504, "upstream timed out");
    else
        tg_exchange_reply(ex, 502, "upstream connection failed");
}

/* The endpoints this exchange may try, in order: round-robin over those
 * health checks and outlier detection allow (all of them with
 * ignore_health), starting at this exchange's draw, each once. */
static void reverse(size_t *a, size_t from, size_t to)
{
    while (from + 1 < to) {
        size_t t = a[from];
        a[from++] = a[--to];
        a[to] = t;
    }
}

static int build_order(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    uint64_t now = tg_health_now_ms();
    if (ex->order == NULL && (ex->order = tg_arena_alloc(&ex->arena, c->n_endpoints * sizeof(size_t))) == NULL)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < c->n_endpoints; i++) /* one pass: health may change meanwhile */
        if (ex->ignore_health || tg_health_usable(ex->w->health, c->endpoints[i].slot, now))
            ex->order[k++] = i;
    if (k > 1) { /* rotate left by the draw: three reversals */
        size_t shift = ex->rr % k;
        reverse(ex->order, 0, shift);
        reverse(ex->order, shift, k);
        reverse(ex->order, 0, k);
    }
    ex->n_order = k;
    ex->attempts = 0;
    return 0;
}

/* Tries the next endpoint of the exchange's order. */
static void try_next_endpoint(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    for (;;) {
        while (ex->attempts < ex->n_order) {
            ex->ep = &c->endpoints[ex->order[ex->attempts++]];
            ex->tried++;
            ex->req_sent = 0; /* per-attempt state; the body is still in body_buf */
            ex->body_started = 0;
            ex->up_eof = 0;
            /* A body that is not all here could not be replayed should a
             * pooled connection turn out stale: it gets a new connection. */
            int replayable = ex->req_done && !ex->req_sent_any;
            int fresh = 0;
            ex->last_ep = ex->ep;
            ex->t_connect = now_us();
            ex->connect_us = 0;
            ex->up_refused = 0;
            if (c->conf->protocol != TG_PROTO_HTTP1) {
                memset(&ex->resp, 0, sizeof(ex->resp));
                ex->h2s = tg_h2_open(ex->w, ex->snap, c, ex->ep, &ex->resp, &ex->arena, on_h2_event, ex, &fresh);
                if (ex->h2s == NULL) {
                    tg_warn("upstream %s: connect failed", ex->ep->conf->address);
                    tg_counter_add(&ep_stats(ex)->connect_failures, 1);
                    report_health(ex, 0);
                    ex->last_error = UP_CONNECT_FAILED;
                    continue;
                }
                ex->up_fresh = fresh != 0;
                if (fresh)
                    ex->state = EX_CONNECTING;
                else
                    on_connected(ex);
                return;
            }
            ex->up = tg_upstream_acquire(ex->w, ex->cluster, ex->ep, replayable, &fresh);
            if (ex->up == NULL) {
                tg_warn("upstream %s: connect failed", ex->ep->conf->address);
                tg_counter_add(&ep_stats(ex)->connect_failures, 1);
                report_health(ex, 0);
                ex->last_error = UP_CONNECT_FAILED;
                continue;
            }
            tg_sock_set_cb(ex->up->sock, on_up_sock, ex);
            ex->up_fresh = fresh != 0;
            if (fresh) {
                ex->state = EX_CONNECTING;
                tg_sock_set_timeout(ex->up->sock, c->conf->connect_timeout_ms);
            } else {
                on_connected(ex);
            }
            return;
        }
        if (ex->tried > 0 || ex->ignore_health || !c->conf->all_unhealthy_try_all)
            break;
        ex->ignore_health = 1; /* every endpoint is unhealthy: try them all anyway */
        if (build_order(ex) < 0)
            break;
    }
    if (ex->tried > 0) {
        unsigned cond = ex->last_error == UP_RESET ? TG_RETRY_RESET : TG_RETRY_CONNECT_FAILURE;
        if (ex->last_error == UP_CONNECT_TIMEOUT)
            cond |= TG_RETRY_TIMEOUT;
        if (schedule_retry(ex, cond))
            return;
    }
    ex->ep = NULL;
    ex->state = EX_ROUTING;
    if (ex->tried == 0)
        tg_exchange_reply(ex, 503, "no healthy upstream endpoint");
    else if (ex->last_error == UP_CONNECT_TIMEOUT)
        tg_exchange_reply(ex, 504, "upstream connect timed out");
    else if (ex->last_error == UP_RESET)
        tg_exchange_reply(ex, 502, "upstream connection failed");
    else
        tg_exchange_reply(ex, 503, "no upstream endpoint available");
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    tg_exchange_t *ex = arg;
    ex->rr += 1; /* start the new round on another endpoint */
    if (build_order(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    try_next_endpoint(ex);
}

/* ---- entry points from the downstream ---- */

static int run_filters(tg_exchange_t *ex, size_t from);
static void after_filters(tg_exchange_t *ex);

/* grpc-timeout (RFC: 1-8 digits and a unit H M S m u n) in microseconds;
 * 0 if absent or malformed. */
static uint64_t parse_grpc_timeout(const tg_header_t *h)
{
    if (h == NULL || h->value_len < 2 || h->value_len > 9)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(h->value[i] - '0');
    }
    switch (h->value[h->value_len - 1]) {
    case 'H': return v * 3600000000ULL;
    case 'M': return v * 60000000ULL;
    case 'S': return v * 1000000ULL;
    case 'm': return v * 1000ULL;
    case 'u': return v;
    case 'n': return v / 1000 ? v / 1000 : 1;
    default: return 0;
    }
}

/* gRPC deadlines are honoured by default: a call with grpc-timeout ends
 * with DEADLINE_EXCEEDED at the smaller of it and the route timeout. */
static void start_grpc_deadline(tg_exchange_t *ex)
{
    uint64_t us = parse_grpc_timeout(tg_headers_get(&ex->req.headers, "grpc-timeout"));
    if (us == 0)
        return;
    uint64_t route_us = ex->route->timeout_ms * 1000;
    if (route_us && route_us < us)
        us = route_us;
    ex->deadline_us = ex->start_us + us;
    struct timeval tv = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) };
    evtimer_add(ex->deadline_ev, &tv);
}

void tg_exchange_start(tg_exchange_t *ex, size_t listener, const char *client_addr, const char *scheme)
{
    ex->listener = listener;
    ex->start_us = now_us();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    ex->start_unix_us = (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000;
    ex->scheme = scheme;
    snprintf(ex->client_addr, sizeof(ex->client_addr), "%s", client_addr);
    if (ex->req.body == TG_BODY_NONE)
        ex->req_done = 1; /* a local reply can keep the connection */
    const tg_header_t *ct = tg_headers_get(&ex->req.headers, "content-type");
    ex->grpc = ct != NULL && strncasecmp(ct->value, "application/grpc", 16) == 0;
    const tg_config_t *cfg = ex->snap->cfg;
    ex->route = tg_router_match(cfg, listener, &ex->req, &ex->arena);
    if (ex->route == NULL) {
        tg_exchange_reply(ex, 404, "no route");
        return;
    }
    ex->cluster = &ex->snap->clusters->clusters[ex->route->cluster];
    if (ex->grpc)
        start_grpc_deadline(ex);
    if (ensure_request_id(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    if (cfg->filters.n || ex->route->filters.n) {
        tg_filter_exchange_t *fx = &ex->fx;
        fx->req = &ex->req;
        fx->arena = &ex->arena;
        fx->client_addr = ex->client_addr;
        fx->peer_identity = ex->peer ? ex->peer->subject : NULL;
        fx->route = ex->route->name;
        fx->listener = listener;
        fx->worker = ex->w->id;
        fx->base = ex->w->base;
        ex->body_hooks = tg_filters_have_body_hooks(&cfg->filters, &ex->route->filters) != 0;
        if (run_filters(ex, 0) < 0)
            return;
    }
    after_filters(ex);
}

/* Runs the request chain from index `from`. Returns 0 to go on upstream,
 * -1 if a filter replied (done) or paused (it will resume us). */
static int run_filters(tg_exchange_t *ex, size_t from)
{
    const tg_config_t *cfg = ex->snap->cfg;
    tg_filter_exchange_t *fx = &ex->fx;
    tg_filter_status_t st = tg_filters_on_request(&cfg->filters, &ex->route->filters, fx, from);
    if (st == TG_FILTER_PAUSE) {
        ex->paused = 1;
        return -1;
    }
    if (st == TG_FILTER_REPLY) {
        tg_exchange_reply(ex, fx->reply_status, fx->reply_message ? fx->reply_message : "refused");
        return -1;
    }
    return 0;
}

void tg_filter_resume(tg_filter_exchange_t *fx, uint64_t gen, tg_filter_status_t status)
{
    tg_exchange_t *ex = (tg_exchange_t *)((char *)fx - offsetof(tg_exchange_t, fx));
    if (gen == 0 || fx->gen != gen || !ex->paused)
        return; /* the exchange is over (client gone) */
    ex->paused = 0;
    if (status == TG_FILTER_REPLY) {
        tg_exchange_reply(ex, fx->reply_status, fx->reply_message ? fx->reply_message : "refused");
        return;
    }
    if (run_filters(ex, fx->paused_at + 1) == 0)
        after_filters(ex);
}

/* The request passed the filters: forward it. */
static void after_filters(tg_exchange_t *ex)
{
    const tg_config_t *cfg = ex->snap->cfg;
    if (prepare_request_headers(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    /* Take the body bytes already here before choosing an upstream: a
     * malformed or oversized body is refused without bothering one. */
    if (!ex->req_done) {
        int fin = 0;
        ssize_t n = read_request_body(ex, ex->body_buf, TG_EXCHANGE_HWM, &fin);
        if (n < 0)
            return;
        ex->bytes_in += (uint64_t)n;
        ex->req_done = fin != 0;
    }
    ex->retry = tg_retry_policy(&cfg->filters, &ex->route->filters);
    ex->rr = tg_cluster_rr_next(ex->cluster);
    if (build_order(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    try_next_endpoint(ex);
}

void tg_exchange_on_request_data(tg_exchange_t *ex)
{
    pump_request(ex);
}

void tg_exchange_on_downstream_drained(tg_exchange_t *ex)
{
    if ((ex->state == EX_STREAMING || ex->state == EX_TUNNEL) && (ex->up != NULL || ex->h2s != NULL))
        pump_response(ex);
}
