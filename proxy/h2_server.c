/*
 * proxy/h2_server.c — downstream HTTP/2 connections. See h2_server.h.
 *
 * Re-entrancy rule: nghttp2 callbacks and the exchange's downstream ops
 * only queue work (submit frames, move buffers, mark the connection);
 * nghttp2_session_mem_recv/send run from one place, conn_io(), which the
 * socket callback and the connection's defer event call. A stream's
 * memory is freed only in on_stream_close (or when the session goes), so
 * an exchange may finish from inside any callback.
 *
 * Stream states, as the exchange sees them: OPEN (headers arriving) ->
 * ACTIVE (exchange running) -> DONE (exchange ended; the stream may still
 * be sending queued response data) -> freed by nghttp2's stream close.
 */
#include "proxy/h2_server.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "proxy/conn.h"
#include "proxy/exchange.h"
#include "proxy/base/grpc_frames.h"
#include "proxy/base/mem.h"
#include "proxy/base/slab.h"
#include "proxy/h2mem.h"
#include "proxy/h2util.h"
#include "proxy/base/log.h"
#include "proxy/stats.h"
#include "tls/context.h"

#define OUT_LOWAT (16 * 1024)
#define RESET_WINDOW_MS 10000
#define CLOSED_RING 16 /* closed stream ids remembered of each kind */
#define RESET_HARD_FACTOR 4 /* resets past 4x the budget close the connection, whatever the ratio */
#define LINGER_MS 2000

typedef enum { S_OPEN = 0, S_ACTIVE, S_DONE } stream_state_t;

typedef struct h2_conn h2_conn_t;

typedef struct h2_stream {
    tg_h2_obj_t obj;            /* first: recycled through the worker's cache (h2util.h) */
    TAILQ_ENTRY(h2_stream) link;
    h2_conn_t *conn;
    int32_t id;
    stream_state_t state;
    tg_exchange_t *ex;          /* OPEN/ACTIVE: the exchange; DONE: NULL */
    tg_exchange_t *ex_last;     /* valid only inside ds_done */
    struct evbuffer *req_body;  /* DATA received, not yet read by the exchange */
    struct evbuffer *resp_body; /* response bytes not yet framed */
    uint64_t header_bytes;      /* decoded header list size (RFC 9113 6.5.2) */
    uint64_t body_bytes;        /* request body received */
    int reject_status;          /* set while decoding: answer with this once the head is in */
    nghttp2_nv *trailers;       /* response trailers to send after the body (one block of the worker's cache) */
    size_t n_trailers;
    const char *reject_msg;
    unsigned req_fin : 1;       /* END_STREAM received */
    unsigned client_reset : 1;  /* RST_STREAM received */
    unsigned watch_drain : 1;   /* tell the exchange when resp_body drains */
    unsigned has_cookie : 1;
    unsigned grpc : 1;          /* content-type application/grpc* */
    unsigned connect : 1;       /* a CONNECT request */
    unsigned websocket : 1;     /* extended CONNECT (RFC 8441) for a WebSocket */
    unsigned tunnel_open : 1;   /* ... answered: DATA both ways are the WebSocket's bytes */
    const char *protocol;       /* :protocol of an extended CONNECT */
} h2_stream_t;

struct h2_conn {
    tg_conn_t base;             /* first: the socket, timer, lifetime (conn.h) */
    const tg_listener_slot_t *slot;
    size_t stats_slot;
    char addr[64];
    tg_tls_peer_t *peer;        /* TLS: the client's certificate identity (owned); NULL in cleartext */
    nghttp2_session *session;
    TAILQ_HEAD(, h2_stream) streams;
    size_t n_streams;
    size_t n_watching;          /* streams with watch_drain set */
    const tg_http2_conf_t *conf;/* of base.snap (current at accept, or at the last reload) */
    uint64_t reset_window_start;
    uint32_t resets;            /* client resets in the current window */
    uint32_t window_streams;    /* streams the client opened in it */
    /* Recently closed streams (nghttp2 keeps none without the RFC 7540
     * tree): those the client had finished (END_STREAM or RST_STREAM),
     * where a further DATA or HEADERS is a STREAM_CLOSED error, and those
     * we reset first, where the client may still send what was in flight.
     * forgotten_max: the highest id pushed out of either ring. */
    uint32_t closed_by_client[CLOSED_RING], reset_by_us[CLOSED_RING], forgotten_max;
    uint8_t closed_next, reset_next;
    /* Input goes to nghttp2 frame by frame (the client preface first), each
     * frame header seen by check_frame() before (h2util.h). */
    tg_h2_feeder_t feed;
    void *blocks[2];            /* nghttp2's two page blocks (stream map, frame buffer; h2mem.h): their pages go back while idle */
    unsigned quiet : 1;         /* idle at the last trim tick */
    unsigned trimmed : 1;       /* those pages were given back since the last stream */
    unsigned tls : 1, draining : 1, goaway : 1, in_io : 1, ping_out : 1, peer_eof : 1, stop_reading : 1,
        fatal : 1 /* a frame we had to send could not be queued (out of memory): close */;
};

static const char *stream_state_str(stream_state_t s)
{
    static const char *const names[] = { "OPEN", "ACTIVE", "DONE" };
    return names[s];
}

static void conn_io(h2_conn_t *c);
static void conn_error(h2_conn_t *c, uint32_t code, const char *why);
static void window_roll(h2_conn_t *c);

/* Asks for conn_io at the next safe point. */
static void conn_kick(h2_conn_t *c)
{
    if (!c->in_io)
        tg_conn_kick(&c->base);
}

/* ---- lifetime ---- */

/* The module's per-worker state (TG_WMOD_H2_SERVER): recycled streams
 * (a stream per request is the hot path). */
typedef struct h2s_worker {
    tg_h2_obj_cache_t streams;
    tg_slab_t *conns;                 /* where the connections live */
    nghttp2_session_callbacks *cb;    /* the same for every session: made once */
    nghttp2_option *opt;
    tg_h2mem_t mem;                   /* the sessions allocate from the worker's block cache (h2mem.h) */
} h2s_worker_t;

static h2s_worker_t *mstate(tg_worker_t *w)
{
    return tg_worker_state(w, TG_WMOD_H2_SERVER);
}

static tg_h2_obj_cache_t *stream_cache(tg_worker_t *w)
{
    return &mstate(w)->streams;
}

static nghttp2_session_callbacks *make_callbacks(void);

static void module_free(tg_worker_t *w);

static int module_init(tg_worker_t *w)
{
    h2s_worker_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    tg_worker_set_state(w, TG_WMOD_H2_SERVER, m);
    tg_h2mem_init(&m->mem, tg_worker_mem(w), tg_worker_pages(w));
    if ((m->conns = tg_slab_new(sizeof(h2_conn_t))) == NULL || (m->cb = make_callbacks()) == NULL ||
        nghttp2_option_new(&m->opt) != 0) {
        module_free(w);
        return -1;
    }
    /* Windows open only as the exchange moves request bytes onward. */
    nghttp2_option_set_no_auto_window_update(m->opt, 1);
    nghttp2_option_set_max_outbound_ack(m->opt, 1000);     /* SETTINGS/PING flood bound */
    nghttp2_option_set_max_settings(m->opt, 32);
    /* RFC 9113 deprecates the RFC 7540 priority tree: no closed streams
     * kept for it (SETTINGS_NO_RFC7540_PRIORITIES below drops the tree). */
    nghttp2_option_set_no_closed_streams(m->opt, 1);
    return 0;
}

static void module_free(tg_worker_t *w)
{
    h2s_worker_t *m = tg_worker_state(w, TG_WMOD_H2_SERVER);
    if (m == NULL)
        return;
    tg_h2_obj_cache_clear(&m->streams);
    tg_slab_destroy(m->conns);
    if (m->cb != NULL)
        nghttp2_session_callbacks_del(m->cb);
    if (m->opt != NULL)
        nghttp2_option_del(m->opt);
    tg_h2mem_free(&m->mem);
    free(m);
    tg_worker_set_state(w, TG_WMOD_H2_SERVER, NULL);
}

const tg_worker_module_t tg_h2_server_module = {
    .id = TG_WMOD_H2_SERVER,
    .init = module_init,
    .free = module_free,
};

static void stream_free(h2_stream_t *st)
{
    if (st->watch_drain)
        st->conn->n_watching--;
    tg_mem_free(tg_worker_mem(st->conn->base.w), st->trailers);
    TAILQ_REMOVE(&st->conn->streams, st, link);
    st->conn->n_streams--;
    tg_h2_obj_release(stream_cache(st->conn->base.w), &st->obj);
}

/* Closes the connection now; memory goes from the defer event. */
static void conn_close(h2_conn_t *c)
{
    tg_conn_close(&c->base);
}

/* Closing (conn.h): every exchange still running is aborted. */
static void on_close(tg_conn_t *b)
{
    h2_conn_t *c = (h2_conn_t *)b;
    tg_debug("h2 %s: closing (%zu streams)", c->addr, c->n_streams);
    h2_stream_t *st;
    TAILQ_FOREACH(st, &c->streams, link)
        if (st->ex != NULL) {
            tg_exchange_t *ex = st->ex;
            st->ex = NULL;
            tg_exchange_abort(ex);
        }
    tg_counter_sub(&tg_stats_listener(tg_worker_stats(b->w), c->stats_slot)->active, 1);
}

static void on_free(tg_conn_t *b)
{
    h2_conn_t *c = (h2_conn_t *)b;
    if (c->session != NULL)
        nghttp2_session_del(c->session); /* no callbacks run from here */
    h2_stream_t *st;
    while ((st = TAILQ_FIRST(&c->streams)) != NULL)
        stream_free(st);
    if (c->peer != NULL) {
        tg_tls_peer_free(c->peer);
        free(c->peer);
    }
    tg_slab_free(mstate(b->w)->conns, c);
}

/* ---- tg_downstream_ops_t ---- */

static ssize_t ds_read_body(void *ds, struct evbuffer *dst, size_t max, int *fin, int *err)
{
    h2_stream_t *st = ds;
    h2_conn_t *c = st->conn;
    size_t have = evbuffer_get_length(st->req_body), n = have < max ? have : max;
    uint64_t limit = st->grpc ? 0 : c->base.snap->cfg->limits.max_body_bytes; /* gRPC: per message, see exchange.c */
    if (limit && st->body_bytes > limit) {
        *err = 413;
        return -1;
    }
    if (n > 0) {
        if (evbuffer_remove_buffer(st->req_body, dst, n) != (int)n) {
            *err = 500;
            return -1;
        }
        /* The bytes moved on: let the client send as much again. */
        nghttp2_session_consume(c->session, st->id, n);
        conn_kick(c);
    }
    *fin = st->req_fin && evbuffer_get_length(st->req_body) == 0;
    return (ssize_t)n;
}

static ssize_t on_data_source_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                                   uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    h2_stream_t *st = source->ptr;
    ssize_t n = tg_h2_data_read(&st->obj, length, data_flags);
    if (n >= 0 && (*data_flags & NGHTTP2_DATA_FLAG_EOF) && st->trailers != NULL) {
        /* END_STREAM goes on the trailers instead */
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        int r = nghttp2_submit_trailer(session, stream_id, st->trailers, st->n_trailers);
        tg_mem_free(tg_worker_mem(st->conn->base.w), st->trailers);
        st->trailers = NULL;
        if (r != 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return n;
}

static int ds_write_head(void *ds, const tg_response_t *resp)
{
    h2_stream_t *st = ds;
    h2_conn_t *c = st->conn;
    tg_arena_t *a = tg_exchange_arena(st->ex);
    nghttp2_nv *nv = tg_arena_alloc(a, (resp->headers.n + 2) * sizeof(*nv));
    char *status = tg_arena_alloc(a, 4), *clen = tg_arena_alloc(a, 24);
    if (nv == NULL || status == NULL || clen == NULL)
        return -1;
    int s = resp->status % 1000;
    int tunnel = st->websocket && s == 101; /* RFC 8441: the upgrade is answered 200 */
    if (tunnel)
        s = 200;
    status[0] = (char)('0' + s / 100);
    status[1] = (char)('0' + s / 10 % 10);
    status[2] = (char)('0' + s % 10);
    status[3] = '\0';
    size_t n = 0;
    nv[n++] = (nghttp2_nv){ (uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE };
    for (size_t i = 0; i < resp->headers.n; i++) {
        const tg_header_t *h = &resp->headers.v[i];
        if (!tg_headers_field_safe(&resp->headers, i))
            return TG_HTTP_UNSAFE_FIELD;
        const char *name = tg_http_lower_name(a, h->name, h->name_len);
        if (name == NULL)
            return -1;
        if (strcmp(name, "content-length") == 0 || strcmp(name, "transfer-encoding") == 0)
            continue; /* framing is ours */
        if (tunnel && (strcmp(name, "upgrade") == 0 || strcmp(name, "connection") == 0 ||
                       strcmp(name, "sec-websocket-accept") == 0))
            continue; /* the HTTP/1.1 handshake's, not the client's */
        nv[n++] = (nghttp2_nv){ (uint8_t *)name, (uint8_t *)h->value, h->name_len, h->value_len,
                                NGHTTP2_NV_FLAG_NONE };
    }
    if (resp->body == TG_BODY_LENGTH || (resp->body == TG_BODY_NONE && resp->content_length > 0)) {
        size_t l = tg_fmt_u64(clen, resp->content_length);
        nv[n++] = (nghttp2_nv){ (uint8_t *)"content-length", (uint8_t *)clen, 14, l, NGHTTP2_NV_FLAG_NONE };
    }
    int no_body = resp->body == TG_BODY_NONE || (resp->body == TG_BODY_LENGTH && resp->content_length == 0);
    nghttp2_data_provider prd = { .source.ptr = st, .read_callback = on_data_source_read };
    if (tunnel) {
        no_body = 0;
        st->tunnel_open = 1;
    }
    int r = nghttp2_submit_response(c->session, st->id, nv, n, no_body ? NULL : &prd);
    if (no_body)
        st->obj.out_end = 1;
    conn_kick(c);
    return r == 0 ? 0 : -1;
}

static void resume(h2_stream_t *st)
{
    if (st->obj.deferred) {
        st->obj.deferred = 0;
        nghttp2_session_resume_data(st->conn->session, st->id);
    }
    conn_kick(st->conn);
}

static int ds_write_body(void *ds, struct evbuffer *data)
{
    h2_stream_t *st = ds;
    if (st->obj.out_end) { /* a body for a response announced without one */
        evbuffer_drain(data, evbuffer_get_length(data));
        return 0;
    }
    if (evbuffer_add_buffer(st->resp_body, data) < 0)
        return -1;
    if (evbuffer_get_length(st->resp_body) >= TG_EXCHANGE_HWM / 2)
        if (!st->watch_drain) {
            st->watch_drain = 1;
            st->conn->n_watching++;
        }
    resume(st);
    return 0;
}

/* Copies trailers into one block of the worker's cache that the stream
 * owns until they are submitted (the exchange's arena may be gone by then). */
static int keep_trailers(h2_stream_t *st, const tg_headers_t *t)
{
    size_t bytes = t->n * sizeof(nghttp2_nv);
    for (size_t i = 0; i < t->n; i++) {
        if (!tg_headers_field_safe(t, i))
            return TG_HTTP_UNSAFE_FIELD;
        bytes += t->v[i].name_len + t->v[i].value_len + 2;
    }
    nghttp2_nv *nv = tg_mem_alloc(tg_worker_mem(st->conn->base.w), bytes);
    if (nv == NULL)
        return -1;
    char *p = (char *)(nv + t->n);
    for (size_t i = 0; i < t->n; i++) {
        const tg_header_t *h = &t->v[i];
        nv[i] = (nghttp2_nv){ (uint8_t *)p, NULL, h->name_len, h->value_len, NGHTTP2_NV_FLAG_NONE };
        for (size_t k = 0; k < h->name_len; k++)
            *p++ = (char)tolower((unsigned char)h->name[k]);
        *p++ = '\0';
        nv[i].value = (uint8_t *)p;
        memcpy(p, h->value, h->value_len);
        p += h->value_len;
        *p++ = '\0';
    }
    st->trailers = nv;
    st->n_trailers = t->n;
    return 0;
}

static int ds_write_end(void *ds, const tg_headers_t *trailers)
{
    h2_stream_t *st = ds;
    if (trailers != NULL && trailers->n > 0 && !st->obj.out_end && keep_trailers(st, trailers) < 0)
        return -1;
    st->obj.out_end = 1;
    resume(st);
    return 0;
}

static size_t ds_pending(void *ds)
{
    h2_stream_t *st = ds;
    return evbuffer_get_length(st->resp_body);
}

static void ds_send_continue(void *ds)
{
    (void)ds; /* HTTP/2 clients do not wait for 100 Continue here */
}

static void ds_done(void *ds, int close)
{
    h2_stream_t *st = ds;
    h2_conn_t *c = st->conn;
    tg_debug("h2 %s: stream %d done in %s (close=%d)", c->addr, st->id, stream_state_str(st->state), close);
    st->ex_last = st->ex; /* still valid during done() */
    st->ex = NULL;
    st->state = S_DONE;
    if (!st->obj.out_end && st->tunnel_open) {
        /* A WebSocket tunnel ended (either side closed): END_STREAM after
         * what is queued, not a reset. */
        st->obj.out_end = 1;
        resume(st);
    } else if (!st->obj.out_end) {
        /* The response was cut short: say so, with the upstream's own
         * RST_STREAM code when there was one. */
        long code = tg_exchange_reset_code(st->ex_last);
        if (nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id,
                                      code >= 0 ? (uint32_t)code : NGHTTP2_INTERNAL_ERROR) != 0)
            c->fatal = 1; /* the client would wait forever: conn_io closes the connection */
    } else if (!st->req_fin) {
        /* Request bytes nobody will read: give their window back as they
         * arrive (on_data_chunk_recv) so the stream can finish. */
        size_t n = evbuffer_get_length(st->req_body);
        evbuffer_drain(st->req_body, n);
        nghttp2_session_consume(c->session, st->id, n);
    }
    conn_kick(c);
}

static const tg_downstream_ops_t h2_ops = {
    .read_body = ds_read_body,
    .write_head = ds_write_head,
    .write_body = ds_write_body,
    .write_end = ds_write_end,
    .pending = ds_pending,
    .send_continue = ds_send_continue,
    .done = ds_done,
};

/* ---- nghttp2 callbacks: receiving ---- */

static h2_stream_t *stream_of(h2_conn_t *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->session, id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream_t *st = tg_h2_obj_alloc(stream_cache(c->base.w), sizeof(*st));
    if (st == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->resp_body = st->obj.buf[TG_H2_OUT]; /* out_end: the exchange wrote the whole response */
    st->req_body = st->obj.buf[TG_H2_IN];
    st->conn = c;
    st->id = frame->hd.stream_id;
    st->ex = tg_exchange_new(c->base.w, &h2_ops, st);
    if (st->ex == NULL) {
        tg_h2_obj_release(stream_cache(c->base.w), &st->obj);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM for this stream only */
    }
    TAILQ_INSERT_TAIL(&c->streams, st, link);
    c->n_streams++;
    c->quiet = c->trimmed = 0;
    window_roll(c);
    c->window_streams++;
    nghttp2_session_set_stream_user_data(session, st->id, st);
    tg_counter_add(&tg_stats_listener(tg_worker_stats(c->base.w), c->stats_slot)->h2_streams, 1);
    return 0;
}

static void reject(h2_stream_t *st, int status, const char *msg)
{
    if (st->reject_status == 0) {
        st->reject_status = status;
        st->reject_msg = msg;
    }
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    h2_conn_t *c = user_data;
    h2_stream_t *st = stream_of(c, frame->hd.stream_id);
    if (st == NULL || st->ex == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* request trailers: not forwarded */
    uint64_t max = c->conf->max_header_list_size ? c->conf->max_header_list_size
                                                 : c->base.snap->cfg->limits.max_header_bytes;
    st->header_bytes += namelen + valuelen + 32;
    if (st->header_bytes > max) {
        reject(st, 431, "request header fields too large");
        return 0;
    }
    if (st->reject_status)
        return 0;
    tg_request_t *req = tg_exchange_request(st->ex);
    tg_arena_t *a = tg_exchange_arena(st->ex);
    char *v = tg_arena_strndup(a, (const char *)value, valuelen);
    if (v == NULL) {
        reject(st, 500, "out of memory");
        return 0;
    }
    if (namelen > 0 && name[0] == ':') {
        /* nghttp2 has checked the pseudo-header set (RFC 9113 8.3.1) */
        if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
            req->method = v;
        } else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
            req->target = v;
        } else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
            req->authority = v;
        } else if (namelen == 9 && memcmp(name, ":protocol", 9) == 0) {
            st->protocol = v;
        }
        return 0;
    }
    if (namelen == 4 && memcmp(name, "host", 4) == 0) {
        if (req->authority == NULL)
            req->authority = v;
        return 0; /* re-added from :authority below */
    }
    if (namelen == 6 && memcmp(name, "cookie", 6) == 0)
        st->has_cookie = 1;
    char *n = tg_arena_strndup(a, (const char *)name, namelen);
    if (n == NULL || tg_headers_add(&req->headers, a, n, namelen, v, valuelen) < 0)
        reject(st, 500, "out of memory");
    return 0;
}

/* HTTP/2 may split Cookie into several fields; HTTP/1 needs one
 * (RFC 9113 8.2.3). */
static int join_cookies(tg_request_t *req, tg_arena_t *a)
{
    size_t total = 0, count = 0;
    for (size_t i = 0; i < req->headers.n; i++)
        if (req->headers.v[i].name_len == 6 && memcmp(req->headers.v[i].name, "cookie", 6) == 0) {
            total += req->headers.v[i].value_len + 2;
            count++;
        }
    if (count < 2)
        return 0;
    char *joined = tg_arena_alloc(a, total + 1), *p = joined;
    if (joined == NULL)
        return -1;
    for (size_t i = 0; i < req->headers.n; i++) {
        const tg_header_t *h = &req->headers.v[i];
        if (h->name_len == 6 && memcmp(h->name, "cookie", 6) == 0) {
            if (p != joined) {
                memcpy(p, "; ", 2);
                p += 2;
            }
            memcpy(p, h->value, h->value_len);
            p += h->value_len;
        }
    }
    *p = '\0';
    tg_headers_remove(&req->headers, "cookie");
    return tg_headers_add(&req->headers, a, "cookie", 6, joined, (size_t)(p - joined));
}

/* A WebSocket over HTTP/2 (RFC 8441: CONNECT with :protocol websocket)
 * goes to the upstream as the HTTP/1.1 handshake (RFC 6455): GET with
 * Upgrade, and a Sec-WebSocket-Key of our own (HTTP/2 clients send none).
 * The upstream's 101 becomes the client's 200; from then on the stream's
 * DATA in both directions is the tunnel. */
static int websocket_to_upgrade(h2_conn_t *c, h2_stream_t *st, tg_request_t *req, tg_arena_t *a)
{
    unsigned char raw[16];
    uint64_t r0 = tg_worker_random(c->base.w), r1 = tg_worker_random(c->base.w);
    memcpy(raw, &r0, 8);
    memcpy(raw + 8, &r1, 8);
    char *key = tg_arena_alloc(a, 25);
    if (key == NULL || EVP_EncodeBlock((unsigned char *)key, raw, 16) != 24)
        return -1;
    st->websocket = 1;
    req->method = "GET";
    req->upgrade = 1;
    req->body = TG_BODY_NONE; /* the handshake has none; the tunnel's bytes come after the 101 */
    st->req_fin = 0;
    tg_headers_remove(&req->headers, "sec-websocket-key");
    if (tg_headers_add(&req->headers, a, "upgrade", 7, "websocket", 9) < 0 ||
        tg_headers_add(&req->headers, a, "sec-websocket-key", 17, key, 24) < 0)
        return -1;
    if (tg_headers_get(&req->headers, "sec-websocket-version") == NULL &&
        tg_headers_add(&req->headers, a, "sec-websocket-version", 21, "13", 2) < 0)
        return -1;
    return 0;
}

/* The request head is complete: hand it to the exchange. */
static void start_exchange(h2_conn_t *c, h2_stream_t *st, int end_stream)
{
    tg_exchange_t *ex = st->ex;
    tg_request_t *req = tg_exchange_request(ex);
    tg_arena_t *a = tg_exchange_arena(ex);
    st->state = S_ACTIVE;
    st->req_fin = end_stream != 0;
    req->version = 20;
    req->keep_alive = 1;
    if (c->tls)
        tg_exchange_set_peer(ex, c->peer);
    const char *scheme = c->tls ? "https" : "http";
    if (st->reject_status) {
        tg_exchange_reply(ex, st->reject_status, st->reject_msg);
        return;
    }
    st->connect = req->method != NULL && strcmp(req->method, "CONNECT") == 0;
    if (req->method == NULL || (strcmp(req->method, "CONNECT") == 0 &&
                                (st->protocol == NULL || strcasecmp(st->protocol, "websocket") != 0))) {
        tg_exchange_reply(ex, 501, "CONNECT is not supported (except WebSockets, RFC 8441)");
        return;
    }
    if (req->target == NULL || req->target[0] != '/') {
        tg_exchange_reply(ex, 400, "invalid :path");
        return;
    }
    const char *q = strchr(req->target, '?');
    req->path_len = q ? (size_t)(q - req->target) : strlen(req->target);
    req->is_head = strcmp(req->method, "HEAD") == 0;
    const tg_header_t *cl = tg_headers_get(&req->headers, "content-length");
    if (end_stream) {
        req->body = TG_BODY_NONE;
    } else if (cl != NULL) { /* nghttp2 checks the DATA against it */
        req->body = TG_BODY_LENGTH;
        req->content_length = strtoull(cl->value, NULL, 10);
    } else {
        req->body = TG_BODY_CHUNKED; /* length unknown: chunked toward HTTP/1 */
    }
    if (strcmp(req->method, "CONNECT") == 0 && websocket_to_upgrade(c, st, req, a) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    tg_headers_remove(&req->headers, "content-length");
    tg_headers_remove(&req->headers, "expect");
    /* Only a gRPC call proper streams past limits.max_body_bytes, its
     * messages bounded one by one instead; anything else that claims to be
     * gRPC keeps the body limit. */
    st->grpc = tg_grpc_classify(req) == TG_GRPC_CALL;
    uint64_t limit = c->base.snap->cfg->limits.max_body_bytes;
    if (!st->grpc && limit && req->body == TG_BODY_LENGTH && req->content_length > limit) {
        tg_exchange_reply(ex, 413, "request body too large"); /* declared too large: refused before it flows */
        return;
    }
    if ((st->has_cookie && join_cookies(req, a) < 0) ||
        (req->authority && tg_headers_add(&req->headers, a, "host", 4, req->authority, strlen(req->authority)) < 0)) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    tg_exchange_start(ex, c->slot->index, c->addr, scheme);
}

/* The rapid-reset window: streams opened and reset in the last 10 s (the
 * loop's cached clock is precise enough for it). */
static void window_roll(h2_conn_t *c)
{
    struct timeval tv;
    event_base_gettimeofday_cached(tg_worker_base(c->base.w), &tv);
    uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    if (now - c->reset_window_start > RESET_WINDOW_MS) {
        c->reset_window_start = now;
        c->resets = c->window_streams = 0;
    }
}

/* Rapid reset (CVE-2023-44487): streams the client opens and cancels cost
 * us work but count against no stream limit. Past max_resets_per_10s in
 * a window, and when they are most of the streams it opened (a client
 * whose calls often hit their deadline cancels many, but not most), the
 * connection goes away with ENHANCE_YOUR_CALM. The ratio cannot be gamed
 * by mixing in cheap completed streams: past RESET_HARD_FACTOR times the
 * budget, the connection goes whatever the ratio. Resets we send because
 * the client got a frame wrong count too (see on_invalid_frame_recv). */
static void count_reset(h2_conn_t *c)
{
    window_roll(c);
    uint32_t max = c->conf->max_resets_per_10s;
    if (++c->resets <= max || (c->resets * 2 <= c->window_streams && c->resets <= RESET_HARD_FACTOR * max))
        return;
    tg_warn("h2 %s: %u stream resets in %d s: closing (rapid reset)", c->addr, c->resets, RESET_WINDOW_MS / 1000);
    conn_error(c, NGHTTP2_ENHANCE_YOUR_CALM, "rapid reset");
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2_conn_t *c = user_data;
    h2_stream_t *st;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        st = stream_of(c, frame->hd.stream_id);
        if (st == NULL)
            return 0;
        if (st->state == S_OPEN && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
            start_exchange(c, st, frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
        } else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            st->req_fin = 1; /* trailers end the request body */
            if (st->ex)
                tg_exchange_on_request_data(st->ex);
        }
        return 0;
    case NGHTTP2_DATA:
        st = stream_of(c, frame->hd.stream_id);
        if (st == NULL)
            return 0;
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            st->req_fin = 1;
        if (st->ex != NULL && st->state == S_ACTIVE)
            tg_exchange_on_request_data(st->ex);
        return 0;
    case NGHTTP2_RST_STREAM:
        if ((st = stream_of(c, frame->hd.stream_id)) != NULL)
            st->client_reset = 1;
        if (!c->stop_reading && !c->draining) /* after our GOAWAY, clients cancel what we will not serve */
            count_reset(c);
        return 0;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            c->ping_out = 0;
        return 0;

    default:
        return 0;
    }
}

static void remember_closed(h2_conn_t *c, uint32_t *ring, uint8_t *next, uint32_t id)
{
    if (ring[*next] > c->forgotten_max)
        c->forgotten_max = ring[*next];
    ring[*next] = id;
    *next = (uint8_t)((*next + 1) % CLOSED_RING);
}

static int in_ring(const uint32_t *ring, uint32_t id)
{
    for (int i = 0; i < CLOSED_RING; i++)
        if (ring[i] == id)
            return 1;
    return 0;
}

/* Stops reading: a GOAWAY with `code` goes out, then the connection. */
static void conn_error(h2_conn_t *c, uint32_t code, const char *why)
{
    tg_debug("h2 %s: %s", c->addr, why);
    tg_counter_add(&tg_stats_listener(tg_worker_stats(c->base.w), c->stats_slot)->h2_protocol_errors, 1);
    nghttp2_session_terminate_session(c->session, code);
    c->stop_reading = 1;
}

/* Checks one frame header (and a PRIORITY frame's payload) before nghttp2
 * sees the frame; conn_io feeds the session frame by frame, so the session
 * state here reflects every earlier frame. These are the rules nghttp2
 * does not enforce once the RFC 7540 priority tree is off (RFC 9113
 * 5.3.2): it keeps no closed streams and skips PRIORITY payloads and DATA
 * on unknown streams unread. h: 9 header bytes (+5 for PRIORITY). */
static void check_frame(h2_conn_t *c, const unsigned char *h, size_t len)
{
    uint8_t type = h[3];
    uint32_t id = ((uint32_t)h[5] << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8]) & 0x7fffffffu;
    if (type == NGHTTP2_PRIORITY) {
        if (id == 0) /* RFC 9113 6.3 */
            conn_error(c, NGHTTP2_PROTOCOL_ERROR, "PRIORITY on stream 0");
        else if (len == 5 && (((uint32_t)h[9] << 24 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 8 | h[12]) &
                              0x7fffffffu) == id) /* RFC 9113 5.3.1: a stream cannot depend on itself */
            conn_error(c, NGHTTP2_PROTOCOL_ERROR, "PRIORITY: stream depends on itself");
        return;
    }
    /* DATA or HEADERS on a stream nghttp2 no longer knows (RFC 9113 5.1):
     * after the client finished it, STREAM_CLOSED; a HEADERS opening a
     * stream below one already opened, PROTOCOL_ERROR (5.1.1). A stream
     * we reset first may still see frames that were in flight: ignored. */
    if ((type != NGHTTP2_DATA && type != NGHTTP2_HEADERS) || id == 0 ||
        nghttp2_session_find_stream(c->session, (int32_t)id) != NULL)
        return;
    if (in_ring(c->closed_by_client, id))
        conn_error(c, NGHTTP2_STREAM_CLOSED, "frame on a stream the client closed");
    else if (type == NGHTTP2_HEADERS && (id & 1) &&
             id <= (uint32_t)nghttp2_session_get_last_proc_stream_id(c->session) && id > c->forgotten_max &&
             !in_ring(c->reset_by_us, id))
        conn_error(c, NGHTTP2_PROTOCOL_ERROR, "HEADERS on a stream id below one already used");
}

/* A frame the client got wrong on a stream: nghttp2 answers it with
 * RST_STREAM. A reset the client makes us send costs what one it sends
 * does (the "MadeYouReset" pattern, CVE-2025-8671): both count. */
static int on_invalid_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                                 void *user_data)
{
    h2_conn_t *c = user_data;
    if (frame->hd.stream_id != 0 && !c->stop_reading && !c->draining)
        count_reset(c);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *user_data)
{
    h2_conn_t *c = user_data;
    h2_stream_t *st = stream_of(c, stream_id);
    if (st == NULL || st->state == S_DONE || st->ex == NULL) {
        nghttp2_session_consume(session, stream_id, len); /* nobody reads it */
        return 0;
    }
    st->body_bytes += len;
    if (evbuffer_add(st->req_body, data, len) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    h2_conn_t *c = user_data;
    h2_stream_t *st = stream_of(c, stream_id);
    if (st != NULL && (st->req_fin || st->client_reset))
        remember_closed(c, c->closed_by_client, &c->closed_next, (uint32_t)stream_id);
    else
        remember_closed(c, c->reset_by_us, &c->reset_next, (uint32_t)stream_id);
    if (st == NULL)
        return 0;
    if (st->ex != NULL) { /* the client cancelled, or the stream failed */
        tg_debug("h2 %s: stream %d closed (%s) while %s", c->addr, stream_id, nghttp2_http2_strerror(error_code),
                 stream_state_str(st->state));
        tg_exchange_t *ex = st->ex;
        st->ex = NULL;
        tg_exchange_abort(ex);
    }
    /* Bytes never read still count against the connection window. */
    size_t unread = evbuffer_get_length(st->req_body);
    if (unread > 0)
        nghttp2_session_consume_connection(session, unread);
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_free(st);
    return 0;
}

/* ---- nghttp2 callbacks: sending ---- */

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    h2_conn_t *c = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        c->goaway = 1;
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        /* The response to a CONNECT (a refused one, or a WebSocket tunnel
         * the upstream ended) is complete, and the client may never end
         * its side: RST_STREAM NO_ERROR closes the stream (RFC 9113 8.1).
         * Other requests still being sent are drained instead: some
         * clients (curl 7.88) drop a complete response that is followed
         * by a reset. */
        h2_stream_t *st = stream_of(c, frame->hd.stream_id);
        if (st != NULL && st->state == S_DONE && !st->req_fin && st->connect &&
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR) != 0)
            c->fatal = 1;
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
        .frame_send = on_frame_send,
        .invalid_frame_recv = on_invalid_frame_recv,
    };
    return tg_h2_callbacks(&r);
}

/* ---- driving the session ---- */

/* Streams whose queued response fell to the low-water mark get their
 * exchange pumped again (after nghttp2_session_send, never inside it). */
static void notify_drained(h2_conn_t *c)
{
    h2_stream_t *st, *next;
    if (c->n_watching == 0)
        return; /* the common case: no stream's response is backed up */
    for (st = TAILQ_FIRST(&c->streams); st != NULL && !c->base.dead; st = next) {
        next = TAILQ_NEXT(st, link);
        if (st->watch_drain && (st->ex == NULL || evbuffer_get_length(st->resp_body) < TG_EXCHANGE_HWM / 2)) {
            st->watch_drain = 0;
            c->n_watching--;
            if (st->ex == NULL)
                continue;
            tg_exchange_on_downstream_drained(st->ex); /* may free only this stream's exchange */
        }
    }
}

static void arm_timer(h2_conn_t *c)
{
    uint64_t ms = c->n_streams == 0 ? c->base.snap->cfg->limits.idle_timeout_ms
                  : c->ping_out    ? c->conf->ping_timeout_ms
                                   : c->conf->ping_interval_ms;
    tg_conn_set_timer(&c->base, ms);
}

/* After the client's FIN no WINDOW_UPDATE can arrive: a response waiting
 * for flow-control window will never finish, so the connection is done. */
static int stuck_on_window(h2_conn_t *c)
{
    int conn_shut = nghttp2_session_get_remote_window_size(c->session) <= 0;
    h2_stream_t *st;
    TAILQ_FOREACH(st, &c->streams, link)
        if (evbuffer_get_length(st->resp_body) > 0 &&
            (conn_shut || nghttp2_session_get_stream_remote_window_size(c->session, st->id) <= 0))
            return 1;
    return 0;
}

/* Feeds input to nghttp2, then serializes what it has to send; closes the
 * connection when both directions are done. The one place the session
 * is driven from. */
static void conn_io(h2_conn_t *c)
{
    if (c->base.dead || c->in_io || c->base.lingering)
        return;
    c->in_io = 1;
    struct evbuffer *in = tg_sock_in(c->base.sock);
    int rv = 0;
    if ((rv = tg_h2_feed(c->session, in, &c->feed)) != 0) {
        tg_debug("h2 %s: %s", c->addr, nghttp2_strerror(rv));
        tg_counter_add(&tg_stats_listener(tg_worker_stats(c->base.w), c->stats_slot)->h2_protocol_errors, 1);
    }
    if (c->stop_reading && !c->base.dead) {
        evbuffer_drain(in, evbuffer_get_length(in));
        tg_sock_pause_read(c->base.sock, 1);
    }
    if (!c->base.dead)
        tg_sock_consumed(c->base.sock);
    /* Send; exchanges pumped by notify_drained may queue more: a few
     * rounds, bounded, while the socket has room. */
    for (int round = 0; rv == 0 && !c->base.dead && round < 4; round++) {
        if ((rv = nghttp2_session_send(c->session)) != 0) {
            tg_debug("h2 %s: send: %s", c->addr, nghttp2_strerror(rv));
            break;
        }
        tg_sock_flush(c->base.sock);
        notify_drained(c);
        if (c->base.dead || tg_sock_out_len(c->base.sock) >= TG_H2_OUT_HWM ||
            !nghttp2_session_want_write(c->session))
            break;
    }
    c->in_io = 0;
    if (c->base.dead)
        return;
    if (c->fatal && rv == 0)
        rv = NGHTTP2_ERR_NOMEM;
    if (rv != 0 && rv != NGHTTP2_ERR_WOULDBLOCK) {
        /* A fatal session error (bad preface, flood, out of memory):
         * whatever GOAWAY nghttp2 queued goes out best-effort. */
        if (rv != NGHTTP2_ERR_FLOODED && nghttp2_session_send(c->session) == 0)
            tg_sock_flush_now(c->base.sock);
        conn_close(c);
        return;
    }
    int flushed = tg_sock_out_len(c->base.sock) == 0;
    if (c->peer_eof && (c->n_streams == 0 || stuck_on_window(c))) {
        conn_close(c); /* nothing can arrive, and nothing is left to answer (or can be) */
        return;
    }
    if (flushed && ((!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) ||
                    (c->draining && c->goaway && c->n_streams == 0))) {
        tg_conn_linger(&c->base, LINGER_MS); /* GOAWAY sent and every stream finished */
        return;
    }
    if (!flushed && !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session))
        tg_sock_set_write_lowat(c->base.sock, 0); /* wake up when the last frames are out */
    arm_timer(c);
}

static void on_sock(tg_conn_t *b, int events)
{
    h2_conn_t *c = (h2_conn_t *)b;
    if (events & TG_SOCK_ERROR) {
        conn_close(c);
        return;
    }
    if (events & (TG_SOCK_READ | TG_SOCK_WRITE))
        conn_io(c);
    if ((events & TG_SOCK_EOF) && !b->dead) {
        /* The client closed its side: nothing more can arrive. Streams
         * whose request is complete may still be answered; one still
         * waiting for request bytes never will be, so then the client is
         * simply gone and the connection closes now. */
        c->peer_eof = 1;
        h2_stream_t *st;
        TAILQ_FOREACH(st, &c->streams, link)
            if (!st->req_fin)
                break;
        if (c->n_streams == 0 || st != NULL || stuck_on_window(c))
            conn_close(c);
    }
}

static void on_timer(tg_conn_t *b)
{
    h2_conn_t *c = (h2_conn_t *)b;
    if (c->n_streams == 0 || c->ping_out) {
        tg_debug("h2 %s: %s", c->addr, c->n_streams ? "ping timeout" : "idle timeout");
        if (c->ping_out) { /* the peer is gone: nothing to say goodbye to */
            conn_close(c);
            return;
        }
        nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
        conn_io(c); /* GOAWAY, then linger */
        return;
    }
    c->ping_out = 1; /* keepalive: a peer that does not answer is gone */
    if (nghttp2_submit_ping(c->session, NGHTTP2_FLAG_NONE, NULL) != 0)
        c->fatal = 1;
    conn_io(c);
}

/* The worker's trim tick (every few seconds): a connection that has had
 * no stream and nothing to send for a whole period gives back the pages of
 * its frame buffer and of its stream map (that one while it reads as
 * zeros); the next stream touches again what it writes. Busy
 * connections never pay a page fault for it. */
static void on_trim(tg_conn_t *b)
{
    h2_conn_t *c = (h2_conn_t *)b;
    if (c->n_streams != 0 || c->session == NULL || nghttp2_session_want_write(c->session) ||
        c->base.sock == NULL || tg_sock_out_len(c->base.sock) != 0) {
        c->quiet = 0;
        return;
    }
    if (!c->quiet) {
        c->quiet = 1;
        return;
    }
    if (!c->trimmed) {
        size_t n[sizeof(c->blocks) / sizeof(c->blocks[0])] = { 0 };
        for (size_t i = 0; i < sizeof(c->blocks) / sizeof(c->blocks[0]); i++)
            if (c->blocks[i] != NULL)
                n[i] = tg_h2mem_release_idle(&mstate(c->base.w)->mem, c->blocks[i]);
        tg_debug("h2 %s: idle, pages given back: %zu + %zu bytes", c->addr, n[0], n[1]);
        c->trimmed = 1;
    }
}

static void on_defer(tg_conn_t *b)
{
    conn_io((h2_conn_t *)b);
}

static void on_drain(tg_conn_t *b)
{
    h2_conn_t *c = (h2_conn_t *)b;
    tg_debug("h2 %s: draining (%zu streams)", c->addr, c->n_streams);
    c->draining = 1;
    /* GOAWAY naming the last stream we took: the client retries later
     * streams elsewhere; those in flight finish. */
    if (nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->session),
                              NGHTTP2_NO_ERROR, NULL, 0) != 0)
        c->fatal = 1;
    conn_io(c);
}

/* No stream open: the connection can go (after a GOAWAY) when
 * descriptors run out. */
static int close_if_idle(tg_conn_t *b)
{
    h2_conn_t *c = (h2_conn_t *)b;
    if (c->draining || c->n_streams != 0)
        return 0;
    on_drain(b);
    return 1;
}

/* A reload: the connection's settings and limits are read from the new
 * config from now on (those agreed with the client stay as they are). */
static int rebase(tg_conn_t *b, const tg_snapshot_t *next)
{
    h2_conn_t *c = (h2_conn_t *)b;
    if (c->slot->index == TG_LISTENER_GONE)
        return -1;
    c->conf = &next->cfg->listeners[c->slot->index].http2;
    return 0;
}

static const tg_conn_kind_t h2_kind = {
    .name = "h2",
    .on_sock = on_sock,
    .on_timer = on_timer,
    .on_defer = on_defer,
    .on_close = on_close,
    .on_free = on_free,
    .on_drain = on_drain,
    .close_if_idle = close_if_idle,
    .trim = on_trim,
    .rebase = rebase,
};

static int feed_check(void *arg, const unsigned char *h, size_t len)
{
    h2_conn_t *c = arg;
    check_frame(c, h, len);
    return c->stop_reading;
}

static int feed_stop(void *arg)
{
    h2_conn_t *c = arg;
    return c->base.dead || c->stop_reading;
}

static int start_session(h2_conn_t *c)
{
    const tg_http2_conf_t *h = c->conf;
    h2s_worker_t *m = mstate(c->base.w);
    uint64_t hls = h->max_header_list_size ? h->max_header_list_size : c->base.snap->cfg->limits.max_header_bytes;
    /* the session's page blocks (its stream map, its outbound frame buffer): given back while idle */
    tg_h2mem_capture(&m->mem, c->blocks, sizeof(c->blocks) / sizeof(c->blocks[0]));
    int rv = nghttp2_session_server_new3(&c->session, m->cb, c, m->opt, &m->mem.mem);
    tg_h2mem_capture(&m->mem, NULL, 0);
    if (rv != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->max_concurrent_streams },
        { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->initial_window_size },
        { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)(hls > 0xffffffffu ? 0xffffffffu : hls) },
        { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
        { NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
        { NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1 }, /* WebSockets over HTTP/2 (RFC 8441) */
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, (int32_t)h->connection_window_size) != 0)
        return -1;
    return 0;
}

void tg_h2_server_take(tg_worker_t *w, tg_sock_t *sock, const tg_listener_slot_t *slot, tg_snapshot_t *snap,
                       size_t listener, size_t stats_slot, const char *addr, tg_tls_peer_t *peer, int tls)
{
    tg_slab_t *slab = mstate(w)->conns;
    h2_conn_t *c = tg_slab_alloc(slab);
    if (c == NULL || tg_conn_init(&c->base, &h2_kind, w, sock, snap, 1) < 0) {
        tg_slab_free(slab, c);
        if (peer != NULL) {
            tg_tls_peer_free(peer);
            free(peer);
        }
        tg_sock_free(sock);
        tg_counter_sub(&tg_stats_listener(tg_worker_stats(w), stats_slot)->active, 1);
        return;
    }
    c->slot = slot;
    c->stats_slot = stats_slot;
    c->tls = tls != 0;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->peer = peer;
    c->conf = &c->base.snap->cfg->listeners[listener].http2;
    c->feed = (tg_h2_feeder_t){ .frame_left = 24, /* the client preface (RFC 9113 3.4) */
                                .check = feed_check, .stop = feed_stop, .arg = c };
    TAILQ_INIT(&c->streams);
    if (start_session(c) < 0) {
        tg_conn_free_now(&c->base); /* counted out as it closes */
        return;
    }
    tg_counter_add(&tg_stats_listener(tg_worker_stats(w), stats_slot)->h2_connections, 1);
    tg_sock_set_read_limit(sock, TG_H2_READ_LIMIT);
    tg_sock_set_write_lowat(sock, OUT_LOWAT);
    tg_sock_set_timeout(sock, 0);
    if (tg_worker_draining(w))
        on_drain(&c->base);
    else
        conn_io(c); /* the preface (h2c) or the first frames may be here */
}
