/*
 * proxy/h2_client.c — upstream HTTP/2 sessions. See h2_client.h.
 *
 * Connection states: CONNECTING (TCP/TLS handshake, until the upstream's
 * SETTINGS arrive; streams opened meanwhile wait, unsubmitted) -> READY
 * (the waiting streams get TG_UP_CONNECTED up to the upstream's
 * MAX_CONCURRENT_STREAMS; the rest move to another connection) -> GOAWAY
 * (no new streams; closes when its last stream ends) -> DEAD (freed at the
 * next safe point).
 * conn_io() is the one place that drives the session; callbacks of
 * nghttp2 only record what happened, and conn_notify() then tells each
 * stream's owner.
 */
#include "proxy/h2_client.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/conn.h"
#include "proxy/h2mem.h"
#include "proxy/h2util.h"
#include "proxy/health.h"
#include "proxy/base/log.h"
#include "proxy/base/slab.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "proxy/upstream.h"
#include "proxy/base/loop.h"

#define OUT_LOWAT (16 * 1024)
#define STREAM_WINDOW (256 * 1024)
#define CONN_WINDOW (4 * 1024 * 1024)

typedef enum { C_CONNECTING = 0, C_READY, C_GOAWAY, C_DEAD } conn_state_t;

struct tg_h2_stream {
    tg_h2_obj_t obj;               /* first: recycled through the worker's cache (h2util.h) */
    tg_h2_stream_t *next, *prev;   /* in the connection's list */
    tg_h2_conn_t *conn;
    int32_t id;                    /* 0 until submitted */
    tg_upstream_cb cb;             /* NULL once released */
    void *arg;
    tg_response_t *resp;
    tg_arena_t *arena;
    struct evbuffer *out;          /* request body to send */
    struct evbuffer *in;           /* response body received, not yet read */
    uint32_t error;
    const char *why;
    tg_up_cause_t cause;           /* after a reset: why (upstream.h) */
    tg_timer_t timer;              /* inactivity bound (set_timeout) */
    uint64_t timeout_ms;
    int pending;                   /* events to deliver */
    const char *ws_key;            /* websocket: the client's Sec-WebSocket-Key (arena), NULL: none */
    unsigned head : 1, end : 1, reset : 1, closed : 1,
        watch_out : 1, queued : 1, bad_head : 1, peer_reset : 1, told : 1, websocket : 1;
    tg_h2_stream_t *notify_next;
};

struct tg_h2_conn {
    tg_conn_t base;                /* first: the socket, timer, lifetime (conn.h) */
    tg_h2_conn_t *next, *prev;     /* in the pool slot's list */
    tg_h2_conn_t **head;           /* the list */
    tg_slab_t *slab;               /* it lives in (may outlast the module in a teardown) */
    const tg_cluster_t *cl;        /* of base.snap */
    const tg_endpoint_t *ep;
    const tg_cluster_conf_t *cc;   /* of base.snap (that opened it, or the last reload's: rebase) */
    size_t slot;
    nghttp2_session *session;
    conn_state_t state;
    tg_h2_stream_t *streams;
    size_t n_streams;
    size_t n_watching;             /* streams with watch_out set */
    tg_h2_stream_t *notify;        /* streams with events to deliver */
    unsigned in_io : 1, ping_out : 1, settings_in : 1;
};

static const char *conn_state_str(conn_state_t s)
{
    static const char *const names[] = { "CONNECTING", "READY", "GOAWAY", "DEAD" };
    return names[s];
}

static void conn_io(tg_h2_conn_t *c);
static void conn_fail(tg_h2_conn_t *c, const char *why, tg_up_cause_t cause);

static void conn_kick(tg_h2_conn_t *c)
{
    if (!c->in_io)
        tg_conn_kick(&c->base);
}

/* Records events for the owner; conn_notify delivers them. */
static void post(tg_h2_stream_t *s, int events)
{
    if (s->cb == NULL)
        return;
    s->pending |= events;
    if (!s->queued) {
        s->queued = 1;
        s->notify_next = s->conn->notify;
        s->conn->notify = s;
    }
}

static void stream_unlink(tg_h2_stream_t *s)
{
    tg_h2_conn_t *c = s->conn;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->n_streams--;
    if (s->watch_out)
        c->n_watching--;
    if (s->queued) { /* drop it from the notify list */
        tg_h2_stream_t **pp = &c->notify;
        while (*pp && *pp != s)
            pp = &(*pp)->notify_next;
        if (*pp)
            *pp = s->notify_next;
        s->queued = 0; /* its pending events are queued again wherever it goes */
    }
}

/* The module's per-worker state (TG_WMOD_H2_CLIENT): the connections to
 * each endpoint and recycled streams. */
typedef struct h2c_worker {
    tg_h2_conn_t **slots;          /* per endpoint slot: its connections' list */
    size_t n;
    tg_h2_obj_cache_t streams;
    tg_slab_t *conns;              /* where the connections live */
    nghttp2_session_callbacks *cb; /* the same for every session: made once */
    nghttp2_option *opt;
    tg_h2mem_t mem;                /* the sessions allocate from the worker's block cache (h2mem.h) */
} h2c_worker_t;

static h2c_worker_t *mstate(tg_worker_t *w)
{
    return tg_worker_state(w, TG_WMOD_H2_CLIENT);
}

static void stream_free(tg_h2_stream_t *s)
{
    tg_worker_t *w = s->conn->base.w;
    tg_timer_cancel(&s->timer);
    stream_unlink(s);
    tg_h2_obj_release(&mstate(w)->streams, &s->obj);
}

/* Delivers recorded events. The owner may release its stream (or others)
 * from its callback: each stream is taken off the list first. */
static void conn_notify(tg_h2_conn_t *c)
{
    tg_h2_stream_t *s;
    while ((s = c->notify) != NULL) {
        c->notify = s->notify_next;
        s->queued = 0;
        int ev = s->pending;
        s->pending = 0;
        if (ev && s->cb != NULL)
            s->cb(s->arg, ev);
    }
}

/* ---- connection lifetime ---- */

static void conn_unlink(tg_h2_conn_t *c)
{
    if (c->head == NULL)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        *c->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->head = NULL;
}

/* Marks the connection dead and closes its socket; the memory goes from
 * the defer event, after the owners of its streams were told. */
static void conn_close(tg_h2_conn_t *c)
{
    tg_conn_close(&c->base);
}

static void on_close(tg_conn_t *b)
{
    tg_h2_conn_t *c = (tg_h2_conn_t *)b;
    tg_debug("h2 upstream: closing connection (%s, %zu streams)", conn_state_str(c->state), c->n_streams);
    c->state = C_DEAD;
    conn_unlink(c);
    tg_counter_sub(&tg_stats_endpoint(tg_worker_stats(b->w), c->slot)->active, 1);
    tg_health_conn_add(tg_worker_health(b->w), c->slot, -1);
}

static void on_free(tg_conn_t *b)
{
    tg_h2_conn_t *c = (tg_h2_conn_t *)b;
    if (c->session)
        nghttp2_session_del(c->session);
    tg_h2_stream_t *s;
    while ((s = c->streams) != NULL)
        stream_free(s);
    tg_slab_free(c->slab, c);
}

/* Every open stream fails (connection lost or never made). */
static void conn_fail(tg_h2_conn_t *c, const char *why, tg_up_cause_t cause)
{
    if (c->state == C_CONNECTING && cause == TG_UP_CAUSE_RESET)
        cause = TG_UP_CAUSE_CONNECT_FAILED; /* the connection never came up */
    for (tg_h2_stream_t *s = c->streams, *next; s != NULL; s = next) {
        next = s->next;
        if (s->cb == NULL) {
            stream_free(s);
            continue;
        }
        if (!s->end && !s->reset) {
            s->reset = 1;
            s->error = NGHTTP2_INTERNAL_ERROR;
            s->why = why;
            s->cause = cause == TG_UP_CAUSE_RESET && s->id == 0 ? TG_UP_CAUSE_REFUSED : cause; /* 0: never sent */
            post(s, TG_UP_ERROR);
        }
    }
    conn_close(c);
    conn_notify(c);
}

/* ---- nghttp2 callbacks ---- */

static tg_h2_stream_t *stream_of(tg_h2_conn_t *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->session, id);
}

static ssize_t on_data_source_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                                   uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    return tg_h2_data_read(source->ptr, length, data_flags);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    tg_h2_conn_t *c = user_data;
    tg_h2_stream_t *s = stream_of(c, frame->hd.stream_id);
    if (s == NULL || s->cb == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (!s->head) { /* a (new) response head: after a 1xx, start over */
        s->resp->headers.n = 0;
        s->resp->status = 0;
    }
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    tg_h2_conn_t *c = user_data;
    tg_h2_stream_t *s = stream_of(c, frame->hd.stream_id);
    if (s == NULL || s->cb == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (!s->head && namelen == 7 && memcmp(name, ":status", 7) == 0) {
        s->resp->status = atoi((const char *)value);
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return 0;
    char *n = tg_arena_strndup(s->arena, (const char *)name, namelen);
    char *v = tg_arena_strndup(s->arena, (const char *)value, valuelen);
    tg_headers_t *list = s->head ? &s->resp->trailers : &s->resp->headers;
    if (n == NULL || v == NULL || tg_headers_add(list, s->arena, n, namelen, v, valuelen) < 0)
        s->bad_head = 1;
    return 0;
}

/* A WebSocket's extended CONNECT was answered 2xx: for the exchange it is
 * the 101 of the HTTP/1.1 handshake (RFC 8441 section 5), with the
 * Sec-WebSocket-Accept an HTTP/1.1 client checks against its key (RFC
 * 6455 section 4.2.2). 0, or -1 (out of memory). */
static int websocket_accepted(tg_h2_stream_t *s)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    tg_response_t *r = s->resp;
    r->status = 101;
    r->body = TG_BODY_TUNNEL; /* raw bytes both ways from now on (the stream's DATA) */
    tg_headers_remove(&r->headers, "content-length");
    if (tg_headers_add(&r->headers, s->arena, "upgrade", 7, "websocket", 9) < 0)
        return -1;
    if (s->ws_key == NULL)
        return 0;
    unsigned char md[SHA_DIGEST_LENGTH];
    char in[128];
    int n = snprintf(in, sizeof(in), "%s%s", s->ws_key, guid);
    char *accept = tg_arena_alloc(s->arena, 29);
    if (n < 0 || (size_t)n >= sizeof(in) || accept == NULL || SHA1((unsigned char *)in, (size_t)n, md) == NULL ||
        EVP_EncodeBlock((unsigned char *)accept, md, SHA_DIGEST_LENGTH) != 28)
        return -1;
    return tg_headers_add(&r->headers, s->arena, "sec-websocket-accept", 20, accept, 28);
}

static void head_done(tg_h2_stream_t *s, int end_stream)
{
    tg_response_t *r = s->resp;
    r->version = 20;
    r->keep_alive = 1;
    if (s->websocket && r->status >= 200 && r->status < 300 && !end_stream) {
        if (websocket_accepted(s) < 0)
            s->bad_head = 1;
        s->head = 1;
        post(s, TG_UP_HEAD);
        return;
    }
    const tg_header_t *cl = tg_headers_get(&r->headers, "content-length");
    if (end_stream) {
        r->body = TG_BODY_NONE;
        r->content_length = cl ? strtoull(cl->value, NULL, 10) : 0; /* HEAD */
    } else if (cl != NULL) {
        r->body = TG_BODY_LENGTH;
        r->content_length = strtoull(cl->value, NULL, 10);
    } else {
        r->body = TG_BODY_CHUNKED; /* length unknown */
    }
    s->head = 1;
    post(s, TG_UP_HEAD);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    tg_h2_conn_t *c = user_data;
    tg_h2_stream_t *s;
    int end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if ((s = stream_of(c, frame->hd.stream_id)) == NULL || s->cb == NULL)
            return 0;
        if (!s->head) {
            if (s->resp->status >= 100 && s->resp->status < 200)
                return 0; /* interim: the final head follows */
            head_done(s, end);
        }
        if (end) {
            s->end = 1;
            post(s, TG_UP_DATA);
        }
        return 0;
    case NGHTTP2_DATA:
        if ((s = stream_of(c, frame->hd.stream_id)) == NULL || s->cb == NULL)
            return 0;
        if (end) {
            s->end = 1;
            post(s, TG_UP_DATA);
        }
        return 0;
    case NGHTTP2_GOAWAY:
        tg_debug("h2 upstream: GOAWAY (last stream %d, %s)", frame->goaway.last_stream_id,
                 nghttp2_http2_strerror(frame->goaway.error_code));
        if (c->state == C_READY || c->state == C_CONNECTING)
            c->state = C_GOAWAY;
        return 0;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            c->ping_out = 0;
        return 0;
    case NGHTTP2_SETTINGS:
        if (c->state == C_CONNECTING && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
            c->state = C_READY;
            c->settings_in = 1; /* conn_io hands out the waiting streams */
        }
        return 0;
    default:
        return 0;
    }
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data)
{
    tg_h2_conn_t *c = user_data;
    tg_h2_stream_t *s = stream_of(c, stream_id);
    if (s == NULL || s->cb == NULL) {
        nghttp2_session_consume(session, stream_id, len);
        return 0;
    }
    if (evbuffer_add(s->in, data, len) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    post(s, TG_UP_DATA);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    tg_h2_conn_t *c = user_data;
    tg_h2_stream_t *s = stream_of(c, stream_id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    s->closed = 1;
    size_t unread = evbuffer_get_length(s->in);
    if (s->cb == NULL) {
        if (unread)
            nghttp2_session_consume_connection(session, unread);
        stream_free(s);
        return 0;
    }
    if (!s->end && !s->reset) {
        s->reset = 1;
        s->error = error_code;
        /* REFUSED_STREAM, or a stream above a GOAWAY's last id: never processed */
        s->cause = error_code == NGHTTP2_REFUSED_STREAM ? TG_UP_CAUSE_REFUSED : TG_UP_CAUSE_RESET;
        s->peer_reset = 1;
        s->why = s->cause == TG_UP_CAUSE_REFUSED ? "stream refused by the upstream" : "stream reset by the upstream";
        post(s, TG_UP_ERROR);
    }
    return 0;
}

static nghttp2_session_callbacks *make_callbacks(void)
{
    const tg_h2_receive_t r = {
        .begin_headers = on_begin_headers,
        .header = on_header,
        .frame_recv = on_frame_recv,
        .data_chunk_recv = on_data_chunk_recv,
        .stream_close = on_stream_close,
    };
    return tg_h2_callbacks(&r);
}

/* ---- driving the session ---- */

static void arm_timer(tg_h2_conn_t *c)
{
    uint64_t ms;
    if (c->n_streams == 0)
        ms = c->cc->idle_timeout_ms;
    else if (c->ping_out)
        ms = c->cc->keepalive_timeout_ms;
    else
        ms = c->cc->keepalive_interval_ms;
    tg_conn_set_timer(&c->base, ms);
}

static size_t stream_limit(tg_h2_conn_t *c);
static tg_h2_conn_t *conn_for(tg_worker_t *w, const tg_cluster_t *cl, const tg_endpoint_t *ep, tg_h2_conn_t *not);

static void stream_link(tg_h2_stream_t *s, tg_h2_conn_t *c)
{
    s->conn = c;
    s->prev = NULL;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->n_streams++;
    if (s->watch_out)
        c->n_watching++;
    tg_conn_set_timer(&c->base, 0); /* not idle */
}

/* The upstream's SETTINGS are in: waiting streams may start, up to its
 * MAX_CONCURRENT_STREAMS; the others move to another connection. */
static void dispatch_waiting(tg_h2_conn_t *c)
{
    c->settings_in = 0;
    tg_sock_set_timeout(c->base.sock, 0);
    size_t started = 0, limit = stream_limit(c);
    for (tg_h2_stream_t *s = c->streams; s; s = s->next)
        if (s->id > 0 || s->told)
            started++;
    for (tg_h2_stream_t *s = c->streams, *next; s != NULL; s = next) {
        next = s->next;
        if (s->id > 0 || s->told || s->cb == NULL)
            continue;
        if (started < limit) {
            started++;
            s->told = 1;
            post(s, TG_UP_CONNECTED);
            continue;
        }
        tg_h2_conn_t *other = conn_for(c->base.w, c->cl, c->ep, c);
        if (other == NULL) {
            s->reset = 1;
            s->cause = TG_UP_CAUSE_REFUSED;
            s->error = NGHTTP2_REFUSED_STREAM;
            s->why = "no upstream connection with a free stream";
            post(s, TG_UP_ERROR);
            continue;
        }
        stream_unlink(s);
        stream_link(s, other);
        if (other->state == C_READY) {
            s->told = 1;
            post(s, TG_UP_CONNECTED); /* on other's list: its conn_io delivers it */
            conn_kick(other);
        }
    }
}

/* Streams whose queued request body fell below the low-water mark may
 * take more (after nghttp2_session_send, never inside it). */
static void notify_writable(tg_h2_conn_t *c)
{
    for (tg_h2_stream_t *s = c->streams; s != NULL; s = s->next)
        if (s->watch_out && evbuffer_get_length(s->out) < TG_EXCHANGE_HWM / 2) {
            s->watch_out = 0;
            c->n_watching--;
            post(s, TG_UP_WRITABLE);
        }
}

static void conn_io(tg_h2_conn_t *c)
{
    if (c->state == C_DEAD || c->in_io)
        return;
    c->in_io = 1;
    int rv = 0;
    if (c->state != C_CONNECTING || tg_sock_in_len(c->base.sock) > 0) {
        tg_h2_feeder_t whole = { 0 }; /* no frame checks: as it comes */
        rv = tg_h2_feed(c->session, tg_sock_in(c->base.sock), &whole);
        tg_sock_consumed(c->base.sock);
    }
    if (rv == 0 && (rv = nghttp2_session_send(c->session)) == 0) {
        tg_sock_flush(c->base.sock);
        if (c->n_watching)
            notify_writable(c);
    }
    c->in_io = 0;
    if (rv != 0) {
        tg_warn("h2 upstream: %s", nghttp2_strerror(rv));
        conn_fail(c, "HTTP/2 protocol error from the upstream", TG_UP_CAUSE_RESET);
        return;
    }
    if (c->settings_in)
        dispatch_waiting(c);
    conn_notify(c);
    if (c->state == C_DEAD)
        return;
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
        conn_fail(c, "connection closed by the upstream (GOAWAY)", TG_UP_CAUSE_RESET);
        return;
    }
    if (c->state == C_GOAWAY && c->n_streams == 0) {
        conn_close(c);
        return;
    }
    arm_timer(c);
}

static void on_sock(tg_conn_t *b, int events)
{
    tg_h2_conn_t *c = (tg_h2_conn_t *)b;
    if (events & TG_SOCK_ERROR) {
        char why[160];
        int connecting = c->state == C_CONNECTING;
        tg_warn("h2 upstream %s: %s", connecting ? "connect" : "connection", tg_sock_tls_error(b->sock, why, sizeof(why)));
        if (connecting)
            tg_counter_add(&tg_stats_endpoint(tg_worker_stats(c->base.w), c->slot)->connect_failures, 1);
        conn_fail(c, connecting ? "upstream connect failed" : "upstream connection lost",
                  connecting ? TG_UP_CAUSE_CONNECT_FAILED : TG_UP_CAUSE_RESET);
        return;
    }
    if (events & TG_SOCK_TIMEOUT) {
        tg_counter_add(&tg_stats_endpoint(tg_worker_stats(c->base.w), c->slot)->connect_failures, 1);
        conn_fail(c, "upstream connect timed out", TG_UP_CAUSE_TIMEOUT);
        return;
    }
    /* TG_SOCK_CONNECTED: the preface and our SETTINGS go out; the
     * connection is READY when the upstream's SETTINGS come back (the
     * connect timeout runs until then). */
    if (events & (TG_SOCK_READ | TG_SOCK_WRITE | TG_SOCK_CONNECTED))
        conn_io(c);
    if ((events & TG_SOCK_EOF) && c->state != C_DEAD) {
        conn_io(c); /* what arrived before the close */
        if (c->state != C_DEAD)
            conn_fail(c, "upstream closed the connection", TG_UP_CAUSE_RESET);
    }
}

static void on_timer(tg_conn_t *b)
{
    tg_h2_conn_t *c = (tg_h2_conn_t *)b;
    if (c->n_streams == 0) {
        tg_debug("h2 upstream: idle connection closed");
        nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
        nghttp2_session_send(c->session);
        tg_sock_flush_now(c->base.sock);
        conn_close(c);
        return;
    }
    if (c->ping_out) {
        tg_warn("h2 upstream: keepalive PING unanswered, closing");
        conn_fail(c, "upstream stopped answering (PING timeout)", TG_UP_CAUSE_RESET);
        return;
    }
    c->ping_out = 1;
    if (nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) != 0) {
        conn_fail(c, "keepalive PING could not be queued", TG_UP_CAUSE_RESET);
        return;
    }
    conn_io(c);
}

static void on_defer(tg_conn_t *b)
{
    conn_io((tg_h2_conn_t *)b);
}

/* A reload that keeps the connection's endpoint (same pool slot, same
 * generation): the connection reads its cluster and endpoint from the new
 * config from now on, and lets the old one go. Not while connecting (the
 * TLS handshake reads the old cluster's context). */
static int rebase(tg_conn_t *b, const tg_snapshot_t *next)
{
    tg_h2_conn_t *c = (tg_h2_conn_t *)b;
    if (c->state != C_READY && c->state != C_GOAWAY)
        return -1;
    const tg_cluster_set_t *set = next->clusters;
    if (!tg_cluster_set_uses(set, c->slot, c->ep->gen))
        return -1;
    for (size_t i = 0; i < set->n_clusters; i++)
        for (size_t j = 0; j < set->clusters[i].n_endpoints; j++) {
            const tg_endpoint_t *ep = &set->clusters[i].endpoints[j];
            if (ep->slot == c->slot && ep->gen == c->ep->gen) {
                c->cl = &set->clusters[i];
                c->ep = ep;
                c->cc = set->clusters[i].conf;
                return 0;
            }
        }
    return -1;
}

static const tg_conn_kind_t h2_client_kind = {
    .name = "h2 upstream",
    .on_sock = on_sock,
    .on_timer = on_timer,
    .on_defer = on_defer,
    .on_close = on_close,
    .on_free = on_free,
    .rebase = rebase,
};

static tg_h2_conn_t *conn_new(tg_worker_t *w, tg_snapshot_t *snap, const tg_cluster_t *cl, const tg_endpoint_t *ep,
                              tg_h2_conn_t **head)
{
    h2c_worker_t *m = mstate(w);
    tg_h2_conn_t *c = tg_slab_alloc(m->conns);
    if (c == NULL)
        return NULL;
    c->slab = m->conns;
    c->slot = ep->slot;
    c->cl = cl; /* cl, ep and cc stay alive with the snapshot base holds (moved together by rebase) */
    c->ep = ep;
    c->cc = cl->conf;
    int ok = nghttp2_session_client_new3(&c->session, m->cb, c, m->opt, &mstate(w)->mem.mem) == 0;
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
        { NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
    };
    if (ok)
        ok = nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3) == 0 &&
             nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) == 0;
    tg_sock_t *sock = ok ? tg_cluster_connect(cl, ep, tg_worker_sockloop(w)) : NULL;
    if (sock == NULL || tg_conn_init(&c->base, &h2_client_kind, w, sock, snap, 0) < 0) {
        if (sock)
            tg_sock_free(sock);
        if (c->session)
            nghttp2_session_del(c->session);
        tg_slab_free(m->conns, c);
        return NULL;
    }
    tg_counter_add(&tg_stats_endpoint(tg_worker_stats(w), c->slot)->active, 1);
    tg_health_conn_add(tg_worker_health(w), c->slot, 1);
    tg_counter_add(&tg_stats_endpoint(tg_worker_stats(w), c->slot)->connects, 1);
    tg_sock_set_timeout(c->base.sock, cl->conf->connect_timeout_ms);
    tg_sock_set_read_limit(c->base.sock, TG_H2_READ_LIMIT);
    tg_sock_set_write_lowat(c->base.sock, OUT_LOWAT);
    c->head = head;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
    return c;
}

static size_t stream_limit(tg_h2_conn_t *c)
{
    uint32_t peer = nghttp2_session_get_remote_settings(c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    uint32_t cap = c->cc->max_concurrent_streams;
    return cap && cap < peer ? cap : peer;
}

/* ---- the stream API ---- */

/* A connection to ep with a free stream slot (not `not`), or a new one. */
static tg_h2_conn_t *conn_find(tg_worker_t *w, const tg_cluster_t *cl, const tg_endpoint_t *ep, tg_h2_conn_t *not)
{
    for (tg_h2_conn_t *c = mstate(w)->slots[ep->slot]; c != NULL; c = c->next)
        if (c != not && (c->state == C_READY || c->state == C_CONNECTING) && c->n_streams < stream_limit(c) &&
            (tg_sock_ssl(c->base.sock) != NULL) == (cl->tls != NULL) && c->cc->protocol == cl->conf->protocol)
            return c;
    return NULL;
}

static tg_h2_conn_t *conn_for(tg_worker_t *w, const tg_cluster_t *cl, const tg_endpoint_t *ep, tg_h2_conn_t *not)
{
    tg_h2_conn_t *c = conn_find(w, cl, ep, not);
    return c ? c : conn_new(w, not->base.snap, cl, ep, &mstate(w)->slots[ep->slot]);
}

/* ---- the upstream interface (upstream.h) ---- */

/* No progress either way within the stream's timeout. */
static void on_stream_timer(tg_timer_t *t)
{
    tg_h2_stream_t *s = TG_CONTAINER_OF(t, tg_h2_stream_t, timer);
    if (s->cb == NULL || s->reset)
        return;
    s->reset = 1;
    s->cause = TG_UP_CAUSE_TIMEOUT;
    s->why = s->head ? "idle timeout" : "response timeout";
    s->cb(s->arg, TG_UP_ERROR);
}

/* Progress: the inactivity bound starts again. */
static void stream_touch(tg_h2_stream_t *s)
{
    if (s->timeout_ms)
        tg_timer_set(tg_worker_loop(s->conn->base.w), &s->timer, s->timeout_ms);
}

static void *h2_open(const tg_up_target_t *t, int *fresh)
{
    tg_worker_t *w = t->w;
    tg_h2_conn_t *c = conn_find(w, t->cl, t->ep, NULL);
    if (c == NULL && t->no_connect != NULL && t->no_connect(t->arg)) {
        errno = EBUSY;
        return NULL;
    }
    if (c == NULL && (c = conn_new(w, t->snap, t->cl, t->ep, &mstate(w)->slots[t->ep->slot])) == NULL)
        return NULL;
    tg_h2_stream_t *s = tg_h2_obj_alloc(&mstate(w)->streams, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->out = s->obj.buf[TG_H2_OUT];
    s->in = s->obj.buf[TG_H2_IN];
    s->cb = t->cb;
    s->arg = t->arg;
    s->resp = t->resp;
    s->arena = t->arena;
    s->timer = (tg_timer_t){ .fn = on_stream_timer };
    memset(s->resp, 0, sizeof(*s->resp));
    stream_link(s, c);
    *fresh = c->state == C_CONNECTING;
    s->told = !*fresh;
    return s;
}

/* Headers HTTP/2 carries elsewhere (:authority for host, DATA framing for
 * the length) or forbids (connection-specific, RFC 9113 8.2.2): the one
 * hop-by-hop list (base/http.c), plus host; te is added back when wanted. */
static int skip_request_header(const tg_header_t *h)
{
    return tg_http_is_hop_by_hop(h->name, h->name_len) || (h->name_len == 4 && tg_http_ieq(h->name, "host", 4));
}

#define NV(n, v, vl) ((nghttp2_nv){ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE })

/* The attempt fails before anything is sent: the upstream never saw it. */
static int refuse_stream(tg_h2_stream_t *s, const char *why)
{
    s->why = why;
    s->cause = TG_UP_CAUSE_REFUSED;
    post(s, TG_UP_ERROR);
    conn_kick(s->conn);
    return 0;
}

/* An upgrade request (the exchange hands them over in their HTTP/1.1
 * form, whatever the client spoke): a WebSocket goes as an extended
 * CONNECT (RFC 8441) when the upstream said it takes them
 * (SETTINGS_ENABLE_CONNECT_PROTOCOL; its SETTINGS are in before any
 * stream starts); any other protocol has no HTTP/2 form. 1: go on as a
 * WebSocket; 0: refused (the attempt fails, the upstream saw nothing). */
static int websocket_start(tg_h2_stream_t *s, const tg_request_t *req)
{
    const tg_header_t *u = tg_headers_get(&req->headers, "upgrade");
    if (u == NULL || u->value_len != 9 || !tg_http_ieq(u->value, "websocket", 9))
        return refuse_stream(s, "this upgrade cannot be carried over HTTP/2 to the upstream");
    if (nghttp2_session_get_remote_settings(s->conn->session, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1)
        return refuse_stream(s, "the upstream does not take WebSockets over HTTP/2 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)");
    const tg_header_t *k = tg_headers_get(&req->headers, "sec-websocket-key");
    s->ws_key = k && k->value_len < 64 ? k->value : NULL;
    s->websocket = 1;
    return 1;
}

static int h2_start(void *u, const tg_up_request_t *r)
{
    tg_h2_stream_t *s = u;
    tg_h2_conn_t *c = s->conn;
    const tg_request_t *req = r->req;
    const char *authority = r->authority;
    int end_stream = r->end_stream;
    nghttp2_nv *nv = tg_arena_alloc(s->arena, (req->headers.n + 8) * sizeof(*nv));
    char *clen = tg_arena_alloc(s->arena, 24);
    if (nv == NULL || clen == NULL)
        return -1;
    size_t n = 0;
    const char *scheme = tg_sock_ssl(c->base.sock) ? "https" : "http";
    if (req->upgrade && websocket_start(s, req) != 1)
        return 0;
    if (s->websocket) {
        nv[n++] = NV(":method", "CONNECT", 7);
        nv[n++] = NV(":protocol", "websocket", 9);
        end_stream = 0; /* the tunnel's bytes follow */
    } else {
        nv[n++] = NV(":method", req->method, strlen(req->method));
    }
    nv[n++] = NV(":scheme", scheme, strlen(scheme));
    nv[n++] = NV(":authority", authority, strlen(authority));
    nv[n++] = NV(":path", req->target, strlen(req->target));
    for (size_t i = 0; i < req->headers.n; i++) {
        const tg_header_t *h = &req->headers.v[i];
        if (skip_request_header(h) ||
            (s->websocket && h->name_len == 17 && tg_http_ieq(h->name, "sec-websocket-key", 17)))
            continue;
        if (!tg_headers_field_safe(&req->headers, i))
            return TG_HTTP_UNSAFE_FIELD;
        /* Values unique to each request would only churn the HPACK dynamic
         * table (evicting the fields that do repeat): send them literally. */
        uint8_t flags = (h->name_len == 12 && tg_http_ieq(h->name, "x-request-id", 12)) ||
                                (h->name_len == 12 && tg_http_ieq(h->name, "grpc-timeout", 12))
                            ? NGHTTP2_NV_FLAG_NO_INDEX
                            : NGHTTP2_NV_FLAG_NONE;
        nv[n] = (nghttp2_nv){ NULL, (uint8_t *)h->value, h->name_len, h->value_len, flags };
        if ((nv[n].name = (uint8_t *)tg_http_lower_name(s->arena, h->name, h->name_len)) == NULL)
            return -1;
        n++;
    }
    if (r->te_trailers)
        nv[n++] = NV("te", "trailers", 8);
    if (req->body == TG_BODY_LENGTH) {
        size_t l = tg_fmt_u64(clen, req->content_length);
        nv[n++] = NV("content-length", clen, l);
    }
    nghttp2_data_provider prd = { .source.ptr = s, .read_callback = on_data_source_read };
    int32_t id = nghttp2_submit_request(c->session, NULL, nv, n, end_stream ? NULL : &prd, s);
    if (id < 0)
        return -1;
    s->id = id;
    s->obj.out_end = end_stream != 0;
    s->timeout_ms = r->timeout_ms;
    stream_touch(s);
    conn_kick(c);
    return 0;
}

static void h2_flush(void *u)
{
    tg_h2_stream_t *s = u;
    if (evbuffer_get_length(s->out) >= TG_EXCHANGE_HWM / 2 && !s->watch_out) {
        s->watch_out = 1;
        s->conn->n_watching++;
    }
    if (s->obj.deferred && s->id > 0 && !s->closed) {
        s->obj.deferred = 0;
        nghttp2_session_resume_data(s->conn->session, s->id);
    }
    conn_kick(s->conn);
}

/* Request body goes as it is: DATA frames carry the framing. */
static int h2_write(void *u, struct evbuffer *data, int by_reference)
{
    tg_h2_stream_t *s = u;
    if (evbuffer_get_length(data) == 0)
        return 0;
    if ((by_reference ? evbuffer_add_buffer_reference(s->out, data) : evbuffer_add_buffer(s->out, data)) < 0)
        return -1;
    stream_touch(s);
    return 0;
}

static int h2_end(void *u)
{
    tg_h2_stream_t *s = u;
    s->obj.out_end = 1;
    if (s->obj.deferred && s->id > 0 && !s->closed) {
        s->obj.deferred = 0;
        nghttp2_session_resume_data(s->conn->session, s->id);
    }
    conn_kick(s->conn);
    return 0;
}

static size_t h2_queued(void *u)
{
    tg_h2_stream_t *s = u;
    return evbuffer_get_length(s->out);
}

/* Moves response body toward the exchange and opens the window by as
 * much: flow control follows the client's pace. */
static ssize_t h2_read(void *u, struct evbuffer *dst, size_t max, int *fin)
{
    tg_h2_stream_t *s = u;
    size_t have = evbuffer_get_length(s->in), n = have < max ? have : max;
    if (n > 0) {
        if (evbuffer_remove_buffer(s->in, dst, n) != (int)n) {
            s->cause = TG_UP_CAUSE_TRUNCATED;
            s->why = "out of memory";
            return -1;
        }
        if (s->closed)
            nghttp2_session_consume_connection(s->conn->session, n);
        else
            nghttp2_session_consume(s->conn->session, s->id, n);
        stream_touch(s);
        conn_kick(s->conn);
    }
    *fin = s->end && evbuffer_get_length(s->in) == 0;
    return (ssize_t)n;
}

static void h2_set_timeout(void *u, uint64_t ms)
{
    tg_h2_stream_t *s = u;
    s->timeout_ms = ms;
    tg_timer_set(tg_worker_loop(s->conn->base.w), &s->timer, ms);
}

static tg_up_cause_t h2_error(void *u, const char **why, long *reset_code)
{
    tg_h2_stream_t *s = u;
    *why = s->why ? s->why : "stream reset";
    *reset_code = s->peer_reset ? (long)s->error : -1;
    return s->cause;
}

/* A stream that was refused is retried by the exchange as a stale pooled
 * connection would be: reuse itself carries no risk here. */
static int h2_reused(void *u)
{
    (void)u;
    return 0;
}

/* If the stream is still open the upstream gets RST_STREAM CANCEL (the
 * client went away, or the attempt failed); no callback runs after this. */
static void h2_release(void *u, int clean)
{
    tg_h2_stream_t *s = u;
    tg_h2_conn_t *c = s->conn;
    (void)clean;
    s->cb = NULL;
    s->pending = 0;
    tg_timer_cancel(&s->timer);
    if (c->state == C_DEAD || s->closed || s->id == 0) {
        if (!s->closed && s->id > 0 && c->state != C_DEAD)
            nghttp2_session_set_stream_user_data(c->session, s->id, NULL);
        if (c->state != C_DEAD && evbuffer_get_length(s->in) > 0)
            nghttp2_session_consume_connection(c->session, evbuffer_get_length(s->in));
        stream_free(s);
    } else {
        /* Still open: cancel it; nghttp2's stream close frees it (if the
         * reset cannot even be queued, the session is out of memory: it
         * is closed, which frees every stream). */
        if (nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL) != 0 &&
            c->state != C_DEAD)
            nghttp2_session_terminate_session(c->session, NGHTTP2_INTERNAL_ERROR);
    }
    if (c->state != C_DEAD)
        conn_kick(c);
}

const tg_upstream_ops_t tg_upstream_h2_ops = {
    .name = "http2",
    .open = h2_open,
    .start = h2_start,
    .write = h2_write,
    .flush = h2_flush,
    .end = h2_end,
    .queued = h2_queued,
    .read = h2_read,
    .set_timeout = h2_set_timeout,
    .error = h2_error,
    .reused = h2_reused,
    .release = h2_release,
};

static void module_free(tg_worker_t *w);

static int module_init(tg_worker_t *w)
{
    h2c_worker_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    tg_worker_set_state(w, TG_WMOD_H2_CLIENT, m);
    tg_h2mem_init(&m->mem, tg_worker_mem(w), tg_worker_pages(w));
    if ((m->conns = tg_slab_new(sizeof(tg_h2_conn_t))) == NULL || (m->cb = make_callbacks()) == NULL ||
        nghttp2_option_new(&m->opt) != 0) {
        module_free(w);
        return -1;
    }
    nghttp2_option_set_no_auto_window_update(m->opt, 1);
    nghttp2_option_set_no_closed_streams(m->opt, 1); /* no RFC 7540 priority tree kept */
    return 0;
}

/* A connection list for every endpoint slot of snap. */
static int module_apply(tg_worker_t *w, const tg_snapshot_t *snap)
{
    h2c_worker_t *m = mstate(w);
    /* connections to endpoints the new config keeps move onto it */
    for (size_t i = 0; i < m->n; i++)
        for (tg_h2_conn_t *c = m->slots[i]; c != NULL; c = c->next)
            tg_conn_rebase(&c->base, (tg_snapshot_t *)snap);
    size_t n = snap->clusters->n_slots;
    if (n <= m->n)
        return 0;
    tg_h2_conn_t **slots = realloc(m->slots, n * sizeof(*slots));
    if (slots == NULL)
        return -1;
    /* connections point back at their list head: move them along */
    for (size_t i = 0; i < m->n; i++)
        for (tg_h2_conn_t *c = slots[i]; c != NULL; c = c->next)
            c->head = &slots[i];
    for (size_t i = m->n; i < n; i++)
        slots[i] = NULL;
    m->slots = slots;
    m->n = n;
    return 0;
}

/* Closes every connection (worker teardown), then frees the streams. */
static void module_free(tg_worker_t *w)
{
    h2c_worker_t *m = mstate(w);
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        tg_h2_conn_t *c;
        while ((c = m->slots[i]) != NULL)
            tg_conn_free_now(&c->base); /* unlinks it */
    }
    tg_h2_obj_cache_clear(&m->streams);
    tg_slab_destroy(m->conns);
    if (m->cb != NULL)
        nghttp2_session_callbacks_del(m->cb);
    if (m->opt != NULL)
        nghttp2_option_del(m->opt);
    free(m->slots);
    tg_h2mem_free(&m->mem);
    free(m);
    tg_worker_set_state(w, TG_WMOD_H2_CLIENT, NULL);
}

const tg_worker_module_t tg_h2_client_module = {
    .id = TG_WMOD_H2_CLIENT,
    .init = module_init,
    .apply = module_apply,
    .free = module_free,
};
