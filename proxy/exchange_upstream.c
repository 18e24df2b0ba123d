/*
 * proxy/exchange_upstream.c — the upstream stage of an exchange (see
 * exchange.h and exchange_int.h): the endpoints to try in round-robin
 * order over the healthy ones, one attempt at a time on a leased HTTP/1
 * connection or an HTTP/2 stream, the request and response pumps with
 * backpressure, the response head, and what happens when an attempt fails
 * (the next endpoint, a retry after backoff, or an error reply).
 */
#include "proxy/exchange_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/health.h"
#include "proxy/base/log.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "proxy/base/timer.h"

static tg_endpoint_stats_t *ep_stats(tg_exchange_t *ex);
static void report_health(tg_exchange_t *ex, int ok);
static void put(char **p, const char *s, size_t n);
static int write_request_head(tg_exchange_t *ex);
static int send_reference(tg_exchange_t *ex, struct evbuffer *out, struct evbuffer *src);
static int send_body_piece(tg_exchange_t *ex, struct evbuffer *out, struct evbuffer *piece);
static void up_set_timeout(tg_exchange_t *ex, uint64_t ms);
static int on_response_head(tg_exchange_t *ex);
static int read_response_head(tg_exchange_t *ex);
static int head_received(tg_exchange_t *ex);
static int forward_grpc_timeout(tg_exchange_t *ex);
static int start_h2_request(tg_exchange_t *ex);
static void on_connected(tg_exchange_t *ex);
static void on_up_sock(tg_sock_t *s, int events, void *arg);
static void on_h2_reset(tg_exchange_t *ex);
static void on_h2_event(tg_h2_stream_t *s, int events, void *arg);
static tg_route_stats_t *route_stats(tg_exchange_t *ex);
static int schedule_retry(tg_exchange_t *ex, unsigned cond);
static void fail_upstream(tg_exchange_t *ex, up_error_t err, const char *what);

void tg_ex_release_upstream(tg_exchange_t *ex, int reusable)
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
int tg_ex_pump_request(tg_exchange_t *ex)
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
        ssize_t n = tg_ex_read_request_body(ex, ex->scratch, TG_EXCHANGE_HWM - evbuffer_get_length(out), &fin);
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
            tg_ex_finish(ex, 1);
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
    tg_timer_set_ms(ex->timer, ms);
}

/* Upstream -> client. Returns -1 if the exchange was finished. */
int tg_ex_pump_response(tg_exchange_t *ex)
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
        /* A close-delimited body ends at the close, but over TLS only a
         * close_notify says the upstream meant it: without one, the end
         * may be an attacker's RST, and the body is truncated. */
        if (n >= 0 && fin && ex->h2s == NULL && ex->up_reader.body == TG_BODY_EOF && tg_sock_ssl(sock) != NULL &&
            !tg_sock_eof_clean(sock)) {
            n = -1;
            ex->up_reader.error_msg = "TLS connection closed without close_notify";
        }
        if (n < 0) {
            tg_warn("upstream %s: bad or truncated response body: %s", ex->ep->conf->address,
                    ex->up_reader.error_msg ? ex->up_reader.error_msg : "?");
            fail_upstream(ex, UP_RESET, "truncated response"); /* counted; the client sees an aborted response */
            return -1;
        }
        ex->bytes_out += n > 0 ? (uint64_t)n : 0;
        if (ex->body_hooks && (n > 0 || fin) && ex->fx.req != NULL)
            tg_filters_on_response_body(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, ex->scratch, fin);
        if (n > 0 && ex->ops->write_body(ex->ds, ex->scratch) < 0) {
            tg_ex_finish(ex, 1);
            return -1;
        }
        if (fin) {
            if (ex->state == EX_TUNNEL) {
                tg_ex_finish(ex, 1);
                return -1;
            }
            ex->ops->write_end(ex->ds, &ex->resp.trailers);
            ex->resp_done = 1;
        }
        if (n == 0)
            break;
    }
    if (ex->resp_done) {
        tg_ex_finish(ex, 0);
        return -1;
    }
    return 0;
}

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
    tg_ex_add_filter_headers(ex, resp, NULL);
    if (tg_headers_apply_rules(&resp->headers, &ex->arena, &ex->route->response_headers) < 0 ||
        (upgrade && resp->status == 101 &&
         tg_headers_add(&resp->headers, &ex->arena, "upgrade", 7, upgrade, strlen(upgrade)) < 0)) {
        tg_exchange_reply(ex, 500, "out of memory");
        return -1;
    }
    ex->resp_started = 1;
    if (ex->ops->write_head(ex->ds, resp) < 0) {
        tg_ex_finish(ex, 1);
        return -1;
    }
    const tg_route_conf_t *r = ex->route;
    if (resp->status == 101) {
        tg_ex_advance(ex, EXEV_UPGRADED);
        ex->req_done = 0;
        ex->req_sent = 0;
        ex->up_req_body = TG_BODY_TUNNEL;
        up_set_timeout(ex, r->idle_timeout_ms);
        if (tg_ex_pump_request(ex) < 0)
            return -1;
    } else {
        tg_ex_advance(ex, EXEV_HEAD);
        up_set_timeout(ex, r->idle_timeout_ms);
    }
    return tg_ex_pump_response(ex);
}

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
            tg_h1_reader_init(&ex->up_reader, TG_H1_RESPONSE); /* interim response: skip */
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
        ex->t_head = tg_ex_now_us();
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
    uint64_t now = tg_ex_now_us(), left = ex->deadline_us > now ? ex->deadline_us - now : 0;
    char *v = tg_arena_alloc(&ex->arena, 16);
    if (v == NULL)
        return -1;
    uint64_t ms = left / 1000 ? left / 1000 : 1; /* rounded down: the upstream's deadline is never later */
    size_t n = ms < 100000000 ? tg_fmt_u64(v, ms) : tg_fmt_u64(v, ms / 1000);
    v[n] = ms < 100000000 ? 'm' : 'S';
    v[n + 1] = '\0';
    return tg_headers_set(&ex->req.headers, &ex->arena, "grpc-timeout", v);
}

/* The request head could not be written: a field failed the egress
 * check (whatever set it, it does not go out), or memory ran out. */
static void request_not_sent(tg_exchange_t *ex, int why)
{
    if (why == TG_HTTP_UNSAFE_FIELD)
        tg_warn("exchange %s: a request header holds bytes that cannot be sent (control characters); refused",
                ex->req.target);
    tg_exchange_reply(ex, 500, why == TG_HTTP_UNSAFE_FIELD ? "request header not safe to send" : "out of memory");
}

/* Sends the request head on the attempt's HTTP/2 stream. Returns -1 if
 * the exchange was finished. */
static int start_h2_request(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    const char *authority = req->authority ? req->authority : ex->ep->conf->address;
    int end_stream = ex->req_done && evbuffer_get_length(ex->body_buf) == 0;
    int r = forward_grpc_timeout(ex);
    if (r == 0)
        r = tg_h2_stream_start(ex->h2s, req, authority, ex->te_trailers || ex->grpc, end_stream);
    if (r < 0) {
        request_not_sent(ex, r);
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
    return tg_ex_pump_request(ex);
}

static void on_connected(tg_exchange_t *ex)
{
    tg_ex_advance(ex, EXEV_SENT);
    tg_counter_add(&ep_stats(ex)->requests, 1);
    ex->t_sent = ex->up_fresh ? tg_ex_now_us() : ex->t_connect; /* a pooled connection: the same instant */
    if (ex->up_fresh)
        ex->connect_us = ex->t_sent - ex->t_connect;
    if (ex->h2s != NULL) {
        start_h2_request(ex);
        return;
    }
    tg_sock_t *sock = ex->up->sock;
    tg_h1_reader_init(&ex->up_reader, TG_H1_RESPONSE);
    int r = write_request_head(ex);
    if (r < 0) {
        request_not_sent(ex, r);
        return;
    }
    tg_sock_flush(sock);
    tg_sock_set_read_limit(sock, TG_EXCHANGE_HWM);
    tg_sock_set_write_lowat(sock, TG_EXCHANGE_HWM / 2);
    tg_sock_set_timeout(sock, ex->retry && ex->retry->per_try_timeout_ms ? ex->retry->per_try_timeout_ms
                                                                          : ex->route->timeout_ms);
    if (ex->req.expect_continue && ex->req.body != TG_BODY_NONE && !ex->req_done)
        ex->ops->send_continue(ex->ds);
    if (tg_ex_pump_request(ex) < 0)
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
            r = tg_ex_pump_response(ex);
        if (r < 0)
            return;
        /* still waiting for the response: a reset that came with these
         * bytes must not go unseen (see tg_sock_need_more) */
        if (ex->up != NULL && (ex->state == EX_WAIT_HEAD || ex->state == EX_STREAMING) && !ex->resp_done &&
            evbuffer_get_length(tg_sock_in(s)) == 0)
            tg_sock_need_more(s);
    }
    if (events & TG_SOCK_WRITE)
        tg_ex_pump_request(ex);
}

/* An HTTP/2 upstream stream failed. */
static void on_h2_reset(tg_exchange_t *ex)
{
    tg_h2_cause_t cause = TG_H2_CAUSE_RESET;
    const char *why = NULL;
    uint32_t code = tg_h2_stream_error(ex->h2s, &cause, &why);
    if (ex->state == EX_CONNECTING) {
        fail_upstream(ex, cause == TG_H2_CAUSE_CONNECT_TIMEOUT ? UP_CONNECT_TIMEOUT : UP_CONNECT_FAILED, why);
        return;
    }
    if (cause != TG_H2_CAUSE_RESET && ex->refusals < 3 && !ex->resp_started) {
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
    if ((events & (TG_H2S_DATA | TG_H2S_END)) && ex->state == EX_STREAMING && tg_ex_pump_response(ex) < 0)
        return;
    if (events & TG_H2S_WRITABLE)
        tg_ex_pump_request(ex);
}

void tg_ex_on_up_timer(evutil_socket_t fd, short what, void *arg)
{
    tg_exchange_t *ex = arg;
    if (ex->state == EX_WAIT_HEAD || ex->state == EX_STREAMING)
        fail_upstream(ex, UP_TIMEOUT, ex->state == EX_WAIT_HEAD ? "response timeout" : "idle timeout");
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
    tg_ex_release_upstream(ex, 0);
    tg_ex_advance(ex, EXEV_BACKOFF);
    uint64_t ms = tg_retry_backoff_ms(p, ex->retries, tg_worker_random(w));
    tg_debug("retry %u of %s %s in %llu ms", ex->retries, ex->req.method, ex->req.target, (unsigned long long)ms);
    if (tg_timer_arm_ms(ex->retry_ev, ms) < 0)
        return 0; /* no retry, then: the failure stands */
    return 1;
}

/* An upstream attempt failed. Before anything was sent that cannot be
 * replayed, move on to the next endpoint; otherwise answer 502/504, or
 * cut the client off if its response has already started. */
static void fail_upstream(tg_exchange_t *ex, up_error_t err, const char *what)
{
    const char *addr = ex->ep ? ex->ep->conf->address : "?";
    int reused = (ex->up && ex->up->reused) || ex->up_refused;
    tg_debug("upstream %s: %s (state %s)", addr, what, tg_ex_state_str(ex->state));
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
    tg_ex_release_upstream(ex, 0);
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
        tg_ex_try_next_endpoint(ex);
        return;
    }
    if (ex->resp_started) {
        if (ex->grpc && ex->reset_code < 0) /* the connection died: the call is UNAVAILABLE */
            tg_ex_grpc_fail_started(ex, 503, what);
        else
            tg_ex_finish(ex, 1); /* relays the upstream's RST_STREAM code, if any */
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

/* The endpoints this exchange may try, in order (tg_health_order):
 * round-robin over those health checks and outlier detection allow,
 * starting at this exchange's draw, each once. */
int tg_ex_build_order(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    if (ex->order == NULL && (ex->order = tg_arena_alloc(&ex->arena, c->n_endpoints * sizeof(size_t))) == NULL)
        return -1;
    ex->n_order = tg_health_order(ex->w->health, c, ex->rr, ex->ignore_health, tg_health_now_ms(), ex->order);
    ex->attempts = 0;
    return 0;
}

/* Tries the next endpoint of the exchange's order. */
void tg_ex_try_next_endpoint(tg_exchange_t *ex)
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
            ex->t_connect = tg_ex_now_us();
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
                    tg_ex_advance(ex, EXEV_CONNECTING);
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
                tg_ex_advance(ex, EXEV_CONNECTING);
                tg_sock_set_timeout(ex->up->sock, c->conf->connect_timeout_ms);
            } else {
                on_connected(ex);
            }
            return;
        }
        if (ex->tried > 0 || ex->ignore_health || !c->conf->all_unhealthy_try_all)
            break;
        ex->ignore_health = 1; /* every endpoint is unhealthy: try them all anyway */
        if (tg_ex_build_order(ex) < 0)
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
    tg_ex_advance(ex, EXEV_BACKOFF);
    if (ex->tried == 0)
        tg_exchange_reply(ex, 503, "no healthy upstream endpoint");
    else if (ex->last_error == UP_CONNECT_TIMEOUT)
        tg_exchange_reply(ex, 504, "upstream connect timed out");
    else if (ex->last_error == UP_RESET)
        tg_exchange_reply(ex, 502, "upstream connection failed");
    else
        tg_exchange_reply(ex, 503, "no upstream endpoint available");
}

void tg_ex_on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    tg_exchange_t *ex = arg;
    ex->rr += 1; /* start the new round on another endpoint */
    if (tg_ex_build_order(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    tg_ex_try_next_endpoint(ex);
}