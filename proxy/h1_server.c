/*
 * proxy/h1_server.c — downstream HTTP/1.x connections. See h1_server.h.
 */
#include "proxy/h1_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/conn.h"
#include "proxy/exchange.h"
#include "proxy/h1_codec.h"
#include "proxy/base/log.h"
#include "proxy/base/slab.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "tls/context.h"

#define LINGER_MS 2000

typedef enum { C_READ_HEAD = 0, C_EXCHANGE, C_FLUSH, C_LINGER } conn_state_t;

typedef struct h1_conn {
    tg_conn_t base;                 /* first: the socket, timer, lifetime (conn.h) */
    const tg_listener_slot_t *slot; /* its index is the listener in the current config (TG_LISTENER_GONE
                                     * once a reload removed it) */
    tg_h1_reader_t *reader;    /* with an exchange: in its arena (an idle connection holds none) */
    tg_exchange_t *ex;         /* READ_HEAD: being parsed into; EXCHANGE: in flight */
    tg_tls_peer_t *peer;       /* TLS: the client's certificate identity (negotiate.c made it) */
    uint32_t listener;         /* its listener in base.snap (accepted under it, or moved onto it by a reload) */
    uint32_t stats_slot;       /* listener stats slot at accept time */
    uint32_t served;           /* requests started on this connection (saturates) */
    uint8_t state;             /* conn_state_t */
    uint8_t out_body;          /* tg_body_kind_t: framing of the response being written */
    uint8_t version;           /* 10 or 11 */
    unsigned keep_alive : 1, eof : 1, head_timer : 1, draining : 1, close_after : 1, tls : 1;
    uint8_t family;            /* the client's address, as accepted (AF_INET, AF_INET6; 0: unknown) ... */
    uint8_t ip[16];            /* ... in binary: written out (addr_str) per request, not kept as text */
} h1_conn_t;

/* The client's address as text, in a per-thread buffer valid until the
 * next call. */
static const char *addr_str(const h1_conn_t *c)
{
    /* the last address written: keep-alive requests, and clients behind
     * one balancer, ask for the same one again and again */
    static __thread struct {
        uint8_t family, ip[16];
        char text[INET6_ADDRSTRLEN];
    } last;
    if (last.family == 0 || last.family != c->family || memcmp(last.ip, c->ip, sizeof(last.ip)) != 0) {
        last.family = 0;
        tg_addr_text(c->family, c->ip, last.text, sizeof(last.text));
        memcpy(last.ip, c->ip, sizeof(last.ip));
        last.family = c->family;
    }
    return last.text;
}

static const char *conn_state_str(conn_state_t s)
{
    static const char *const names[] = { "READ_HEAD", "EXCHANGE", "FLUSH", "LINGER" };
    return names[s];
}

static const tg_limits_t *limits(h1_conn_t *c)
{
    return &tg_worker_snapshot(c->base.w)->cfg->limits;
}

static void arm_timer(h1_conn_t *c, uint64_t ms)
{
    tg_conn_set_timer(&c->base, ms);
}

static void conn_close(h1_conn_t *c)
{
    tg_conn_close(&c->base);
}

/* Closing (conn.h): the exchange in flight, if any, is aborted. */
static void on_close(tg_conn_t *b)
{
    h1_conn_t *c = (h1_conn_t *)b;
    tg_debug("h1 %s: closing in %s", addr_str(c), conn_state_str(c->state));
    if (c->ex != NULL) {
        tg_exchange_abort(c->ex);
        c->ex = NULL;
        c->reader = NULL; /* it was in the exchange's arena */
    }
    tg_counter_sub(&tg_stats_listener(tg_worker_stats(b->w), c->stats_slot)->active, 1);
}

static void on_free(tg_conn_t *b)
{
    h1_conn_t *c = (h1_conn_t *)b;
    if (c->peer != NULL) {
        tg_tls_peer_free(c->peer);
        free(c->peer);
    }
    tg_slab_free(tg_worker_state(b->w, TG_WMOD_H1_SERVER), c);
}

/* The worker's state: the slab its connections come from. */
static int module_init(tg_worker_t *w)
{
    return tg_conn_slab_init(w, TG_WMOD_H1_SERVER, sizeof(h1_conn_t));
}

static void module_free(tg_worker_t *w)
{
    tg_conn_slab_free(w, TG_WMOD_H1_SERVER);
}

const tg_worker_module_t tg_h1_server_module = {
    .id = TG_WMOD_H1_SERVER,
    .init = module_init,
    .free = module_free,
};

/* ---- tg_downstream_ops_t ---- */

static ssize_t ds_read_body(void *ds, struct evbuffer *dst, size_t max, int *fin, int *err)
{
    h1_conn_t *c = ds;
    ssize_t n = tg_h1_read_body(c->reader, tg_sock_in(c->base.sock), dst, max, c->eof, fin);
    tg_sock_consumed(c->base.sock);
    if (n < 0) {
        tg_debug("h1 %s: bad request body: %s", addr_str(c), c->reader->error_msg ? c->reader->error_msg : "?");
        *err = c->reader->error_status ? c->reader->error_status : 400;
        c->close_after = 1;
    }
    return n;
}

/* Chooses how the response body is framed toward this client and writes
 * the matching header lines (framing and Connection) into extra. */
static char *put(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static char *put_length(char *p, uint64_t len)
{
    p = put(p, "content-length: ");
    p += tg_fmt_u64(p, len);
    return put(p, "\r\n");
}

/* Chooses how the response body is framed toward this client and writes
 * the matching header lines (framing and Connection) into extra (which
 * has room for 128 bytes). */
static void frame_response(h1_conn_t *c, const tg_response_t *resp, char *extra)
{
    char *p = extra;
    if (resp->body == TG_BODY_TUNNEL) {
        c->out_body = TG_BODY_TUNNEL;
        c->reader->body = TG_BODY_TUNNEL; /* from now on the client sends raw bytes */
        c->close_after = 1;
        *put(p, "connection: upgrade\r\n") = '\0';
        return;
    }
    switch (resp->body) {
    case TG_BODY_LENGTH:
        c->out_body = TG_BODY_LENGTH;
        p = put_length(p, resp->content_length);
        break;
    case TG_BODY_NONE:
        c->out_body = TG_BODY_NONE;
        if (resp->status >= 200 && resp->status != 204 && resp->status != 304)
            p = put_length(p, resp->content_length);
        break;
    default: /* chunked or close-delimited upstream body */
        if (c->version >= 11) {
            c->out_body = TG_BODY_CHUNKED;
            p = put(p, "transfer-encoding: chunked\r\n");
        } else {
            c->out_body = TG_BODY_EOF;
            c->close_after = 1;
        }
        break;
    }
    if (c->close_after || c->draining || !c->keep_alive || c->eof) {
        c->close_after = 1;
        p = put(p, "connection: close\r\n");
    } else if (c->version == 10) {
        p = put(p, "connection: keep-alive\r\n");
    }
    *p = '\0';
}

/* The status line and the framing lines of a response head. */
static void head_lines(h1_conn_t *c, const tg_response_t *resp, char start[80], char extra[128])
{
    const char *reason = tg_http_reason(resp->status);
    size_t rl = strlen(reason);
    int st = resp->status % 1000;
    memcpy(start, "HTTP/1.1 ", 9);
    start[9] = (char)('0' + st / 100);
    start[10] = (char)('0' + st / 10 % 10);
    start[11] = (char)('0' + st % 10);
    start[12] = ' ';
    memcpy(start + 13, reason, rl + 1);
    frame_response(c, resp, extra);
}

static int ds_write_head(void *ds, const tg_response_t *resp)
{
    h1_conn_t *c = ds;
    char start[80], extra[128];
    head_lines(c, resp, start, extra);
    int r = tg_h1_write_head(tg_sock_out(c->base.sock), start, &resp->headers, extra);
    tg_sock_flush(c->base.sock);
    return r;
}

/* Head and body in one write, with no buffer between them and the socket
 * when it takes them at once (a cache hit's usual case). */
static int ds_write_whole(void *ds, const tg_response_t *resp, const void *body, size_t len,
                          void (*release)(const void *data, size_t len, void *arg), void *arg)
{
    h1_conn_t *c = ds;
    char start[80], extra[128], *head;
    size_t hlen;
    head_lines(c, resp, start, extra);
    int r = tg_h1_format_head(tg_exchange_arena(c->ex), start, &resp->headers, extra, &head, &hlen);
    if (r != 0) {
        if (release != NULL)
            release(body, len, arg);
        return r;
    }
    return tg_sock_write_ref(c->base.sock, head, hlen, body, len, release, arg);
}

static int ds_write_body(void *ds, struct evbuffer *data)
{
    h1_conn_t *c = ds;
    int r = tg_h1_write_body(tg_sock_out(c->base.sock), c->out_body, data);
    tg_sock_flush(c->base.sock);
    return r;
}

static int ds_write_end(void *ds, const tg_headers_t *trailers)
{
    h1_conn_t *c = ds;
    int r = tg_h1_write_end(tg_sock_out(c->base.sock), c->out_body, trailers);
    tg_sock_flush(c->base.sock); /* written at once by ds_done, once the exchange is counted */
    return r;
}

static size_t ds_pending(void *ds)
{
    h1_conn_t *c = ds;
    return tg_sock_out_len(c->base.sock);
}

static void ds_send_continue(void *ds)
{
    h1_conn_t *c = ds;
    if (c->version >= 11) {
        evbuffer_add(tg_sock_out(c->base.sock), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        tg_sock_flush(c->base.sock);
    }
}

static void ds_done(void *ds, int close)
{
    h1_conn_t *c = ds;
    c->ex = NULL;
    c->reader = NULL; /* it was in the exchange's arena */
    tg_sock_flush_now(c->base.sock); /* the response is complete */
    if (close || c->close_after || c->draining || !c->keep_alive) {
        c->state = C_FLUSH;
        tg_sock_pause_read(c->base.sock, 1);
        tg_sock_set_write_lowat(c->base.sock, 0);
    } else {
        c->state = C_READ_HEAD;
        c->head_timer = 0;
        arm_timer(c, limits(c)->idle_timeout_ms);
    }
    tg_conn_kick(&c->base);
}

static const tg_downstream_ops_t h1_ops = {
    .read_body = ds_read_body,
    .write_head = ds_write_head,
    .write_body = ds_write_body,
    .write_end = ds_write_end,
    .write_whole = ds_write_whole,
    .pending = ds_pending,
    .send_continue = ds_send_continue,
    .done = ds_done,
};

/* ---- reading requests ---- */

static void start_linger(h1_conn_t *c)
{
    if (c->eof) {
        conn_close(c);
        return;
    }
    c->state = C_LINGER;
    tg_conn_linger(&c->base, LINGER_MS);
}

static void read_head(h1_conn_t *c)
{
    if (tg_sock_in_len(c->base.sock) == 0) {
        if (c->eof || c->draining)
            conn_close(c);
        else if (c->ex == NULL) /* between requests: hold no buffer while idle */
            tg_sock_park(c->base.sock);
        return;
    }
    struct evbuffer *in = tg_sock_in(c->base.sock);
    if (c->ex == NULL) {
        c->ex = tg_exchange_new(c->base.w, &h1_ops, c);
        if (c->ex == NULL) {
            conn_close(c);
            return;
        }
        if ((c->reader = tg_arena_alloc(tg_exchange_arena(c->ex), sizeof(*c->reader))) == NULL) {
            conn_close(c);
            return;
        }
        tg_h1_reader_init(c->reader, TG_H1_REQUEST);
        c->reader->max_body = limits(c)->max_body_bytes;
    }
    tg_request_t *req = tg_exchange_request(c->ex);
    tg_h1_result_t r = tg_h1_read_request_head(c->reader, in, limits(c)->max_header_bytes,
                                               tg_exchange_arena(c->ex), req);
    tg_sock_consumed(c->base.sock);
    if (r == TG_H1_AGAIN) {
        if (c->eof) {
            conn_close(c); /* the client gave up mid-head */
        } else if (!c->head_timer) {
            c->head_timer = 1;
            arm_timer(c, limits(c)->header_timeout_ms);
        }
        return;
    }
    arm_timer(c, 0);
    c->state = C_EXCHANGE;
    if (r == TG_H1_ERROR) {
        tg_debug("h1 %s: bad request: %s", addr_str(c), c->reader->error_msg);
        c->version = 11;
        c->keep_alive = 0;
        c->close_after = 1;
        tg_exchange_reply(c->ex, c->reader->error_status, c->reader->error_msg);
        return;
    }
    c->version = req->version;
    c->keep_alive = req->keep_alive;
    if (c->served != UINT32_MAX)
        c->served++;
    if (req->upgrade) {
        /* HTTP/1.1 Upgrade to h2c (RFC 7540 3.2, removed in RFC 9113) is not
         * offered: the request goes on as HTTP/1.1, without the offer. */
        const tg_header_t *u = tg_headers_get(&req->headers, "upgrade");
        if (u != NULL && tg_header_has_token(u->value, u->value_len, "h2c")) {
            req->upgrade = 0;
            tg_headers_remove(&req->headers, "upgrade");
            tg_headers_remove(&req->headers, "http2-settings");
        }
    }
    if (c->tls)
        tg_exchange_set_peer(c->ex, c->peer);
    tg_exchange_start(c->ex, c->slot->index, addr_str(c), c->tls ? "https" : "http");
}


/* ---- events ---- */

static void on_input(h1_conn_t *c)
{
    switch (c->state) {
    case C_READ_HEAD:
        read_head(c);
        return;
    case C_EXCHANGE:
        if (c->eof) {
            c->close_after = 1;
            /* The client closed with its request complete and nothing more
             * to read: it is gone, whatever the upstream still has to say.
             * The exchange is aborted (the upstream request cancelled,
             * counted as aborted), as nginx does (499): HTTP/1.1 gives a
             * half-close no meaning in the middle of an exchange. */
            if (tg_h1_body_complete(c->reader) && tg_sock_in_len(c->base.sock) == 0) {
                tg_debug("h1 %s: client closed while its request was in flight", addr_str(c));
                conn_close(c);
                return;
            }
        }
        tg_exchange_on_request_data(c->ex);
        return;
    case C_LINGER: /* the connection base reads and discards */
    case C_FLUSH:
        return;
    }
}

static void on_drained(h1_conn_t *c)
{
    if (c->state == C_EXCHANGE)
        tg_exchange_on_downstream_drained(c->ex);
    else if (c->state == C_FLUSH && tg_sock_out_len(c->base.sock) == 0)
        start_linger(c);
}

static void on_sock(tg_conn_t *b, int events)
{
    h1_conn_t *c = (h1_conn_t *)b;
    if (events & TG_SOCK_ERROR) {
        conn_close(c); /* the client is gone */
        return;
    }
    if (events & TG_SOCK_EOF)
        c->eof = 1;
    if (events & (TG_SOCK_READ | TG_SOCK_EOF))
        on_input(c);
    if ((events & TG_SOCK_WRITE) && !b->dead)
        on_drained(c);
}

static void on_timer(tg_conn_t *b)
{
    h1_conn_t *c = (h1_conn_t *)b;
    if (c->state == C_READ_HEAD && c->head_timer && c->ex != NULL) {
        tg_debug("h1 %s: header timeout", addr_str(c));
        c->state = C_EXCHANGE;
        c->keep_alive = 0;
        c->close_after = 1;
        c->version = 11;
        tg_exchange_reply(c->ex, 408, "request header timeout");
        return;
    }
    conn_close(c); /* idle keep-alive timeout */
}

static void on_defer(tg_conn_t *b)
{
    h1_conn_t *c = (h1_conn_t *)b;
    if (c->state == C_FLUSH && tg_sock_out_len(b->sock) == 0)
        start_linger(c);
    else
        on_input(c);
}

static void on_drain(tg_conn_t *b)
{
    h1_conn_t *c = (h1_conn_t *)b;
    tg_debug("h1 %s: draining in %s", addr_str(c), conn_state_str(c->state));
    c->draining = 1;
    if (c->state == C_READ_HEAD && (c->ex == NULL || !c->head_timer))
        conn_close(c);
}

/* Between requests, with nothing received: a keep-alive connection that
 * can go when descriptors run out. */
static int close_if_idle(tg_conn_t *b)
{
    h1_conn_t *c = (h1_conn_t *)b;
    if (c->state != C_READ_HEAD || c->ex != NULL || tg_sock_in_len(b->sock) != 0)
        return 0;
    tg_debug("h1 %s: idle connection closed to free a descriptor", addr_str(c));
    conn_close(c);
    return 1;
}

/* A reload: the connection reads its listener's settings from the new
 * config (its slot carries the new index). */
static int rebase(tg_conn_t *b, const tg_snapshot_t *next)
{
    h1_conn_t *c = (h1_conn_t *)b;
    (void)next;
    if (c->slot->index == TG_LISTENER_GONE)
        return -1;
    c->listener = (uint32_t)c->slot->index;
    return 0;
}

static const tg_conn_kind_t h1_kind = {
    .name = "h1",
    .on_sock = on_sock,
    .on_timer = on_timer,
    .on_defer = on_defer,
    .on_close = on_close,
    .on_free = on_free,
    .on_drain = on_drain,
    .close_if_idle = close_if_idle,
    .rebase = rebase,
};

void tg_h1_server_take(tg_worker_t *w, tg_sock_t *sock, const tg_listener_slot_t *slot, tg_snapshot_t *snap,
                       size_t listener, size_t stats_slot, int family, const uint8_t *ip, tg_tls_peer_t *peer, int tls)
{
    tg_slab_t *slab = tg_worker_state(w, TG_WMOD_H1_SERVER);
    h1_conn_t *c = tg_slab_alloc(slab);
    if (c == NULL || tg_conn_init(&c->base, &h1_kind, w, sock, snap, 1) < 0) {
        if (c != NULL)
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
    c->listener = (uint32_t)listener;
    c->stats_slot = (uint32_t)stats_slot;
    c->family = (uint8_t)family;
    memcpy(c->ip, ip, sizeof(c->ip));
    c->peer = peer;
    c->tls = tls != 0;
    size_t limit = TG_EXCHANGE_HWM;
    if (limits(c)->max_header_bytes + 1024 > limit)
        limit = limits(c)->max_header_bytes + 1024;
    tg_sock_set_read_limit(c->base.sock, limit);
    tg_sock_set_write_lowat(c->base.sock, TG_EXCHANGE_HWM / 2);
    c->state = C_READ_HEAD;
    arm_timer(c, limits(c)->idle_timeout_ms);
    if (tg_worker_draining(w))
        conn_close(c);
    else if (tg_sock_in_len(sock) > 0)
        tg_conn_kick(&c->base); /* the bytes the protocol was told by */
}
