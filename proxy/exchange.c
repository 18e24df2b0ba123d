/*
 * proxy/exchange.c — the life of a request (DESIGN.md): route, filters,
 * request preparation, the pumps between the client and the upstream
 * attempt, the response head, gRPC deadlines, local replies (JSON, or
 * trailers-only gRPC) and completion. The attempt — endpoints, circuit
 * breaking, connections, failover, retries — is exchange_upstream.c,
 * which reports here through on_attempt(); the struct both share is in
 * exchange_int.h. See exchange.h.
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
#include "proxy/fetch.h"
#include "proxy/exchange.h"
#include "proxy/exchange_int.h"

#include "filters/filter.h"

#include <assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/grpc_health.h"
#include "proxy/health.h"
#include "proxy/base/log.h"
#include "proxy/path.h"
#include "proxy/redis.h"
#include "proxy/router.h"
#include "proxy/stats.h"
#include "tls/context.h"

/* Longest message a local reply carries (JSON-escaped; longer ones are cut). */
#define REPLY_MESSAGE_MAX 256

static void record(tg_exchange_t *ex);
static void advance(tg_exchange_t *ex, ex_event_t ev);
static void finish(tg_exchange_t *ex, int abort);
static void add_filter_headers(tg_exchange_t *ex, tg_response_t *r, const tg_headers_t *extra);
static void grpc_fail_started(tg_exchange_t *ex, int status, const char *message);
static ssize_t read_request_body(tg_exchange_t *ex, struct evbuffer *dst, size_t max, int *fin);
static int pump_request(tg_exchange_t *ex);
static int pump_response(tg_exchange_t *ex);
static void on_deadline(tg_timer_t *t);
static void on_gather_timeout(tg_timer_t *t);
static void on_health_tick(tg_timer_t *t);
static int on_attempt(tg_exchange_t *ex, tg_att_event_t ev, int status, const char *why);
static void recycle(tg_exchange_t *ex);
static int grpc_status_for(int http);
static int add_grpc_status(tg_exchange_t *ex, tg_headers_t *h, int code, const char *message);
static void grpc_reply(tg_exchange_t *ex, int status, const char *message);
static void make_request_id(tg_exchange_t *ex, char out[37]);
static char *join_list(tg_arena_t *a, const char *first, const char *second);
static int ensure_request_id(tg_exchange_t *ex);
static void export_span(tg_exchange_t *ex, int status, const char *grpc_status);
static int forward_client_cert(tg_exchange_t *ex);
static int prepare_request_headers(tg_exchange_t *ex);
static int run_filters(tg_exchange_t *ex, size_t from);
static void after_filters(tg_exchange_t *ex);
static void gather_prefix(tg_exchange_t *ex);

/* ---- the state machine ---- */

/* Where each event leads from each state; -1: it cannot happen there.
 *
 *                ROUTING     CONNECTING  WAIT_HEAD   STREAMING   TUNNEL
 *  CONNECTING    CONNECTING  CONNECTING  CONNECTING  -           -
 *  SENT          WAIT_HEAD   WAIT_HEAD   WAIT_HEAD   -           -
 *  HEAD          -           -           STREAMING   -           -
 *  UPGRADED      -           -           TUNNEL      -           -
 *  LOCAL_REPLY   STREAMING   STREAMING   STREAMING   STREAMING   STREAMING
 *  BACKOFF       ROUTING     ROUTING     ROUTING     -           -
 *
 * (CONNECTING and WAIT_HEAD lead back to an attempt when the one in hand
 * fails before the response: failover to the next endpoint.) */
static const signed char transitions[EXEV_N][5] = {
    [EXEV_CONNECTING] = { EX_CONNECTING, EX_CONNECTING, EX_CONNECTING, -1, -1 },
    [EXEV_SENT] = { EX_WAIT_HEAD, EX_WAIT_HEAD, EX_WAIT_HEAD, -1, -1 },
    [EXEV_HEAD] = { -1, -1, EX_STREAMING, -1, -1 },
    [EXEV_UPGRADED] = { -1, -1, EX_TUNNEL, -1, -1 },
    [EXEV_LOCAL_REPLY] = { EX_STREAMING, EX_STREAMING, EX_STREAMING, EX_STREAMING, EX_STREAMING },
    [EXEV_BACKOFF] = { EX_ROUTING, EX_ROUTING, EX_ROUTING, -1, -1 },
};

static void advance(tg_exchange_t *ex, ex_event_t ev)
{
    int next = transitions[ev][ex->state];
    if (next < 0) { /* a bug: said loudly in tests (assert), logged in production */
        tg_error("exchange %s: event %d in state %s", ex->req.target ? ex->req.target : "?", (int)ev,
                 tg_ex_state_name(ex->state));
        assert(next >= 0);
        return;
    }
    ex->state = (ex_state_t)next;
}

/* ---- lifetime ---- */


/* ---- per-worker state (TG_WMOD_EXCHANGE) ---- */

static int module_init(tg_worker_t *w)
{
    tg_ex_worker_t *wx = calloc(1, sizeof(*wx));
    if (wx == NULL)
        return -1;
    tg_worker_set_state(w, TG_WMOD_EXCHANGE, wx);
    return 0;
}

/* Frees the worker's recycled exchanges (worker teardown). */
static void module_free(tg_worker_t *w)
{
    tg_ex_worker_t *wx = tg_worker_state(w, TG_WMOD_EXCHANGE);
    if (wx == NULL)
        return;
    tg_exchange_t *ex;
    while ((ex = wx->free) != NULL) {
        wx->free = ex->next_free;
        tg_arena_free(&ex->arena);
        evbuffer_free(ex->scratch);
        evbuffer_free(ex->body_buf);
        if (ex->pre_body)
            evbuffer_free(ex->pre_body);
        free(ex);
    }
    free(wx);
    tg_worker_set_state(w, TG_WMOD_EXCHANGE, NULL);
}

/* The worker takes a config up: its filters' per-worker states. */
static int module_apply(tg_worker_t *w, const tg_snapshot_t *snap)
{
    return tg_filters_worker_init(snap->cfg, tg_worker_id(w));
}

const tg_worker_module_t tg_exchange_module = {
    .id = TG_WMOD_EXCHANGE,
    .init = module_init,
    .apply = module_apply,
    .free = module_free,
};

tg_exchange_t *tg_exchange_new(tg_worker_t *w, const tg_downstream_ops_t *ops, void *ds)
{
    tg_ex_worker_t *wx = tg_worker_state(w, TG_WMOD_EXCHANGE);
    tg_exchange_t *ex = wx->free;
    if (ex != NULL) {
        wx->free = ex->next_free;
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
    struct evbuffer *pre_body = ex->pre_body;
    memset(ex, 0, sizeof(*ex)); /* its timers are not set: recycle() cancelled them */
    ex->pre_body = pre_body;
    ex->arena = arena;
    ex->scratch = scratch;
    ex->body_buf = body_buf;
    ex->att.retry_timer.fn = tg_ex_on_retry_timer;
    ex->deadline_timer.fn = on_deadline;
    ex->gather_timer.fn = on_gather_timeout;
    ex->health_timer.fn = on_health_tick;
    ex->att.reset_code = -1;
    wx->active++;
    ex->fx.gen = ++wx->gen;
    ex->w = w;
    ex->wx = wx;
    ex->snap = tg_snapshot_ref(tg_worker_snapshot(w));
    ex->ops = ops;
    ex->ds = ds;
    ex->on_attempt = on_attempt;
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

/* Counts the exchange once, as it ends. */
static void record(tg_exchange_t *ex)
{
    const tg_snapshot_t *s = ex->snap;
    size_t slot = ex->route ? s->route_slot[ex->route - s->cfg->routes] : s->unrouted_slot;
    uint64_t now = tg_loop_clock_us(tg_worker_loop(ex->w)), us = ex->start_us ? now - ex->start_us : 0;
    int status = ex->resp_started ? ex->resp.status : 0;
    tg_route_stats_t *rs = tg_stats_route(tg_worker_stats(ex->w), slot);
    tg_stats_request_done(rs, status, us);
    const tg_header_t *gs = NULL;
    if (ex->grpc && ex->resp_started && (gs = tg_headers_get(&ex->resp.trailers, "grpc-status")) == NULL)
        gs = tg_headers_get(&ex->resp.headers, "grpc-status");
    if (gs != NULL)
        tg_stats_grpc_done(rs, gs->value_len && gs->value_len < 4 ? atoi(gs->value) : 2);
    export_span(ex, status, gs ? gs->value : NULL);
    if (ex->route == NULL || (s->cfg->filters.n == 0 && ex->route->filters.n == 0) || ex->fx.req == NULL)
        return;
    tg_stats_filter_counted(rs, ex->fx.counted);
    const tg_header_t *rid = tg_headers_get(&ex->req.headers, "x-request-id");
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
        .upstream = ex->att.last_ep ? ex->att.last_ep->addr_text : NULL,
        .attempts = (unsigned)ex->att.tried,
        .total_us = us,
        .connect_us = ex->att.connect_us,
        .ttfb_us = ex->att.t_head && ex->att.t_sent ? ex->att.t_head - ex->att.t_sent : 0,
        .upstream_us = ex->att.t_sent ? now - ex->att.t_sent : 0,
        .counted = ex->fx.counted,
        .trace_id = ex->trace_hex,
        .span_id = ex->span_hex,
        .response_headers = ex->resp_started ? &ex->resp.headers : NULL,
        .response_trailers = ex->resp_started ? &ex->resp.trailers : NULL,
    };
    tg_filters_on_complete(&s->cfg->filters, &ex->route->filters, &ex->fx, &rec);
}

/* The exchange ends while a filter has it paused: that filter stops what
 * it started for it, before any completion hook runs. */
static void cancel_paused(tg_exchange_t *ex)
{
    if (!ex->paused)
        return;
    ex->paused = 0;
    tg_filters_on_cancel(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx);
}

/* Empties b (an empty buffer is only looked at). */
static void drain_all(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    if (n > 0)
        evbuffer_drain(b, n);
}

static void recycle(tg_exchange_t *ex)
{
    tg_ex_worker_t *wx = ex->wx;
    cancel_paused(ex);
    if (!ex->recorded)
        record(ex);
    ex->fx.gen = 0; /* a late tg_filter_resume() for this exchange is ignored */
    tg_timer_cancel(&ex->att.retry_timer);
    tg_timer_cancel(&ex->deadline_timer);
    tg_timer_cancel(&ex->health_timer);
    tg_timer_cancel(&ex->gather_timer);
    if (ex->pre_body)
        evbuffer_drain(ex->pre_body, evbuffer_get_length(ex->pre_body));
    wx->active--;
    if (ex->att.in_retry)
        wx->retrying--;
    tg_ex_release_upstream(ex, 0);
    tg_ex_leave(ex);
    tg_redis_store_release(ex->fx.store);
    ex->fx.store = NULL;
    tg_snapshot_unref(ex->snap);
    ex->snap = NULL;
    tg_arena_reset(&ex->arena);
    drain_all(ex->scratch);
    drain_all(ex->body_buf);
    ex->next_free = wx->free;
    wx->free = ex;
}

/* Ends the exchange: lets the upstream attempt go (clean: its connection
 * may carry another request), tells the downstream, recycles. */
static void finish(tg_exchange_t *ex, int abort)
{
    int clean = !abort && ex->resp_done && ex->req_sent && ex->state == EX_STREAMING;
    tg_debug("exchange %s %s: finish in %s (abort=%d clean=%d)", ex->req.method, ex->req.target,
             tg_ex_state_name(ex->state), abort, clean);
    tg_ex_release_upstream(ex, clean);
    cancel_paused(ex);
    int close = abort || ex->close_ds || !ex->req_done || ex->state == EX_TUNNEL;
    /* counted before the downstream sends the last bytes: whoever has the
     * whole response finds it in the metrics and the logs */
    record(ex);
    ex->recorded = 1;
    ex->ops->done(ex->ds, close);
    recycle(ex);
}

void tg_exchange_abort(tg_exchange_t *ex)
{
    recycle(ex);
}

long tg_exchange_reset_code(const tg_exchange_t *ex)
{
    return ex ? ex->att.reset_code : -1;
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
    tg_ex_release_upstream(ex, 0);
    t->n = 0;
    if (add_grpc_status(ex, t, grpc_status_for(status), message) < 0 || ex->ops->write_end(ex->ds, t) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    advance(ex, EXEV_LOCAL_REPLY);
    finish(ex, 0);
}

/* A gRPC request's local reply: trailers-only (HTTP 200, the status in
 * the only HEADERS frame), never an HTTP error page. code: the gRPC
 * status; status: the HTTP status it stands for, in stats and logs. */
static void grpc_reply_code(tg_exchange_t *ex, int code, int status, const char *message)
{
    tg_response_t *r = &ex->resp;
    memset(r, 0, sizeof(*r));
    r->status = 200;
    r->version = 20;
    r->body = TG_BODY_NONE;
    if (tg_headers_add(&r->headers, &ex->arena, "content-type", 12, "application/grpc", 16) < 0 ||
        add_grpc_status(ex, &r->headers, code, message) < 0) {
        finish(ex, 1);
        return;
    }
    add_filter_headers(ex, r, &ex->fx.reply_headers);
    tg_debug("local gRPC reply %d (HTTP %d): %s", code, status, message);
    ex->resp_started = 1;
    ex->reply_status = status;
    if (ex->ops->write_head(ex->ds, r) < 0 || ex->ops->write_end(ex->ds, NULL) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    advance(ex, EXEV_LOCAL_REPLY);
    finish(ex, 0);
}

static void grpc_reply(tg_exchange_t *ex, int status, const char *message)
{
    grpc_reply_code(ex, grpc_status_for(status), status, message);
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
    tg_ex_release_upstream(ex, 0);
    if (ex->grpc) {
        grpc_reply(ex, status, message);
        return;
    }
    char esc[REPLY_MESSAGE_MAX], body[REPLY_MESSAGE_MAX + 64], len[24]; /* + the JSON around it */
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
        if (ex->req.is_head) { /* the length a GET would get, no content (RFC 9110 9.3.2) */
            r->body = TG_BODY_NONE;
            blen = 0;
        }
    }
    add_filter_headers(ex, r, &ex->fx.reply_headers);
    tg_debug("local reply %d: %s", status, message);
    ex->resp_started = 1;
    ex->bytes_out += (uint64_t)blen;
    /* scratch may still hold the request-body piece whose filter check
     * brought us here: the reply's body is the reply alone (written from
     * it as it stood, the client's bytes came back as the response). */
    drain_all(ex->scratch);
    if (ex->ops->write_whole != NULL ? ex->ops->write_whole(ex->ds, r, body, (size_t)blen, NULL, NULL) < 0
                                     : ex->ops->write_head(ex->ds, r) < 0 ||
                                           (blen && evbuffer_add(ex->scratch, body, (size_t)blen) < 0) ||
                                           ex->ops->write_body(ex->ds, ex->scratch) < 0 ||
                                           ex->ops->write_end(ex->ds, NULL) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    advance(ex, EXEV_LOCAL_REPLY);
    /* A request body nobody will read means the connection must close. */
    finish(ex, 0);
}

/* The reply's body into scratch, by reference (released on failure).
 * 0, or -1 when out of memory. */
static int reply_body_to_scratch(tg_exchange_t *ex)
{
    tg_filter_exchange_t *fx = &ex->fx;
    int added = 0;
    if (fx->reply_body_len > 0)
        added = evbuffer_add_reference(ex->scratch, fx->reply_body, fx->reply_body_len, fx->reply_release,
                                       fx->reply_release_arg) == 0;
    if (!added && fx->reply_release != NULL)
        fx->reply_release(fx->reply_body, fx->reply_body_len, fx->reply_release_arg);
    fx->reply_release = NULL;
    return !added && fx->reply_body_len > 0 ? -1 : 0;
}

/* Is r framed so that write_whole can take it (no trailers, a body of
 * exactly the reply's bytes or none)? */
static int whole_framing(const tg_exchange_t *ex, const tg_response_t *r)
{
    return r->trailers.n == 0 && ((r->body == TG_BODY_LENGTH && r->content_length == ex->fx.reply_body_len) ||
                                  (r->body == TG_BODY_NONE && ex->fx.reply_body_len == 0));
}

/* A filter's own response (fx->reply_response: a cache hit, a stale
 * answer): through the response hooks of the filters before the one that
 * made it, then to the client; its body goes by reference — with the head
 * in one write when the downstream can (write_whole), else through
 * scratch. Until it is written or in scratch, fx->reply_release is the
 * body's to call. */
static void filter_response(tg_exchange_t *ex)
{
    tg_filter_exchange_t *fx = &ex->fx;
    tg_response_t *r = &ex->resp;
    const tg_response_t *made = fx->reply_response;
    fx->reply_response = NULL;
    tg_ex_release_upstream(ex, 0);
    drain_all(ex->scratch);
    *r = *made;
    /* in one piece: the downstream can, no response-body hook sees it */
    int whole = ex->ops->write_whole != NULL && whole_framing(ex, r) &&
                !(ex->body_hooks &&
                  tg_filters_see_response_body(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx));
    if (!whole && reply_body_to_scratch(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    fx->resp_trailers = &r->trailers;
    tg_filters_on_response(&ex->snap->cfg->filters, &ex->route->filters, fx, r);
    add_filter_headers(ex, r, NULL);
    int rc = tg_headers_apply_rules(&r->headers, &ex->arena, &ex->route->response_headers);
    if (rc == 0 && whole && !whole_framing(ex, r)) { /* a hook changed its framing: through scratch after all */
        whole = 0;
        rc = reply_body_to_scratch(ex);
    }
    if (rc < 0) {
        if (fx->reply_release != NULL) /* not in scratch: released here */
            fx->reply_release(fx->reply_body, fx->reply_body_len, fx->reply_release_arg);
        fx->reply_release = NULL;
        drain_all(ex->scratch);
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    ex->resp_started = 1;
    int failed;
    if (whole) {
        ex->bytes_out += fx->reply_body_len;
        void (*rel)(const void *, size_t, void *) = fx->reply_release;
        fx->reply_release = NULL; /* the downstream's to call now */
        failed = ex->ops->write_whole(ex->ds, r, fx->reply_body, fx->reply_body_len, rel, fx->reply_release_arg) < 0;
    } else if (!(failed = ex->ops->write_head(ex->ds, r) < 0)) {
        if (ex->body_hooks)
            tg_filters_on_response_body(&ex->snap->cfg->filters, &ex->route->filters, fx, ex->scratch, 1);
        size_t n = evbuffer_get_length(ex->scratch);
        ex->bytes_out += n;
        failed = (n > 0 && ex->ops->write_body(ex->ds, ex->scratch) < 0) || ex->ops->write_end(ex->ds, &r->trailers) < 0;
    }
    if (failed) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    advance(ex, EXEV_LOCAL_REPLY);
    finish(ex, 0);
}

/* A filter replied (TG_FILTER_REPLY from its chain index fx->paused_at):
 * its own response, or an error reply made from its status. */
static void filter_reply(tg_exchange_t *ex)
{
    tg_filter_exchange_t *fx = &ex->fx;
    if (fx->reply_response != NULL) {
        fx->reply_by = fx->paused_at + 1;
        filter_response(ex);
        return;
    }
    tg_exchange_reply(ex, fx->reply_status, fx->reply_message ? fx->reply_message : "refused");
}

/* ---- the request as it goes upstream ---- */

/* A random (version 4) UUID, formatted without printf. */
static void make_request_id(tg_exchange_t *ex, char out[37])
{
    uint64_t a = tg_worker_random(ex->w), b = tg_worker_random(ex->w);
    a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  /* version 4 */
    b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  /* RFC 4122 variant */
    char ha[16], hb[16]; /* 8-4-4-4-12 */
    tg_fmt_hex64(ha, a);
    tg_fmt_hex64(hb, b);
    memcpy(out, ha, 8);
    out[8] = '-';
    memcpy(out + 9, ha + 8, 4);
    out[13] = '-';
    memcpy(out + 14, ha + 12, 4);
    out[18] = '-';
    memcpy(out + 19, hb, 4);
    out[23] = '-';
    memcpy(out + 24, hb + 4, 12);
    out[36] = '\0';
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

/* The trusted proxies of the exchange's listener (its own list, or the
 * top-level one). */
static const tg_cidr_t *trusted_proxies(const tg_exchange_t *ex, size_t *n)
{
    const tg_config_t *cfg = ex->snap->cfg;
    const tg_listener_conf_t *l = ex->listener < cfg->n_listeners ? &cfg->listeners[ex->listener] : NULL;
    *n = l && l->has_trusted_proxies ? l->n_trusted_proxies : cfg->n_trusted_proxies;
    return l && l->has_trusted_proxies ? l->trusted_proxies : cfg->trusted_proxies;
}

/* X-Request-Id: the client's, or a new one. Before the filters run, so
 * that every log line of the exchange carries it. */
/* Eight or sixteen random bytes, never all zero (W3C: an invalid id). */
static void random_id(tg_exchange_t *ex, uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = tg_worker_random(ex->w);
            memcpy(out + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (out[0] == 0 && memcmp(out, out + 1, n - 1) == 0);
}

/* tracing: continues the caller's trace (a valid traceparent: its trace id
 * and sampled flag) or starts one (sampled by the ratio; an invalid
 * traceparent and its tracestate are dropped); tollgate's span gets a new
 * id, and the upstream sees it as its parent. */
static int start_trace(tg_exchange_t *ex, const tg_tracing_conf_t *tc)
{
    tg_trace_ctx_t *t = &ex->trace;
    const tg_header_t *tp = tg_headers_get(&ex->req.headers, "traceparent");
    if (tp == NULL || tg_headers_count(&ex->req.headers, "traceparent") != 1 ||
        tg_traceparent_parse(tp->value, t) < 0) {
        tg_headers_remove(&ex->req.headers, "traceparent");
        tg_headers_remove(&ex->req.headers, "tracestate");
        random_id(ex, t->trace_id, 16);
        memset(t->parent_id, 0, sizeof(t->parent_id));
        double draw = (double)(tg_worker_random(ex->w) >> 11) * (1.0 / 9007199254740992.0);
        t->flags = draw < tc->sample_ratio ? 1 : 0;
    }
    random_id(ex, t->span_id, 8);
    char *tp_out = tg_arena_alloc(&ex->arena, 56), *th = tg_arena_alloc(&ex->arena, 33),
         *sh = tg_arena_alloc(&ex->arena, 17);
    if (tp_out == NULL || th == NULL || sh == NULL)
        return -1;
    tg_traceparent_format(t, tp_out);
    tg_trace_hex(t->trace_id, 16, th);
    tg_trace_hex(t->span_id, 8, sh);
    ex->trace_hex = th;
    ex->span_hex = sh;
    ex->traced = 1;
    return tg_headers_set(&ex->req.headers, &ex->arena, "traceparent", tp_out);
}

/* A sampled request's span, to the exporter (when there is one). */
static void export_span(tg_exchange_t *ex, int status, const char *grpc_status)
{
    struct tg_tracer *tr = tg_worker_tracer(ex->w);
    if (!ex->traced || !(ex->trace.flags & 1) || tr == NULL)
        return;
    tg_span_t sp;
    memset(&sp, 0, sizeof(sp));
    sp.ctx = ex->trace;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    sp.start_unix_ns = ex->start_unix_us * 1000;
    sp.end_unix_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    sp.status = status;
    sp.grpc_status = grpc_status ? atoi(grpc_status) : -1;
    const tg_header_t *rid = tg_headers_get(&ex->req.headers, "x-request-id");
    snprintf(sp.method, sizeof(sp.method), "%s", ex->req.method ? ex->req.method : "");
    snprintf(sp.route, sizeof(sp.route), "%s", ex->route ? ex->route->name : "");
    snprintf(sp.path, sizeof(sp.path), "%.*s", (int)ex->req.path_len, ex->req.target ? ex->req.target : "");
    snprintf(sp.client, sizeof(sp.client), "%s", ex->client_addr);
    snprintf(sp.upstream, sizeof(sp.upstream), "%s", ex->att.last_ep ? ex->att.last_ep->addr_text : "");
    snprintf(sp.request_id, sizeof(sp.request_id), "%s", rid ? rid->value : "");
    tg_tracer_submit(tr, tg_worker_id(ex->w), &sp);
}

static int ensure_request_id(tg_exchange_t *ex)
{
    if (tg_headers_get(&ex->req.headers, "x-request-id") != NULL)
        return 0;
    char *id = tg_arena_alloc(&ex->arena, 37);
    if (id == NULL)
        return -1;
    make_request_id(ex, id);
    return tg_headers_add_checked(&ex->req.headers, &ex->arena, "x-request-id", 12, id, 36); /* hex and dashes */
}

/* The client-certificate header: the verified identity of a TLS client.
 * (Whatever a client sent under that name was removed on arrival.) */
static int forward_client_cert(tg_exchange_t *ex)
{
    const tg_config_t *cfg = ex->snap->cfg;
    const char *name = TG_DEFAULT_CLIENT_CERT_HEADER;
    if (ex->listener < cfg->n_listeners && cfg->listeners[ex->listener].tls.enabled)
        name = cfg->listeners[ex->listener].tls.client_cert_header;
    if (ex->peer == NULL || ex->peer->header == NULL)
        return 0;
    return tg_headers_add(&ex->req.headers, &ex->arena, name, strlen(name), ex->peer->header,
                          strlen(ex->peer->header));
}

/* path_normalization.forward: original — the path as the client sent it,
 * with the query as the filters left it. */
static int forward_original_path(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    size_t rl = strcspn(req->raw_target, "?#");
    const char *q = req->target + req->path_len;
    size_t ql = strlen(q);
    char *t = tg_arena_alloc(&ex->arena, rl + ql + 1);
    if (t == NULL)
        return -1;
    memcpy(t, req->raw_target, rl);
    memcpy(t + rl, q, ql + 1);
    req->target = t;
    req->path_len = rl;
    return 0;
}

/* The upstream's Forwarded (RFC 7239): the chain a trusted peer sent,
 * extended with this hop (for=, proto=, host=). */
static int forward_rfc7239(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    tg_arena_t *a = &ex->arena;
    const tg_header_t *old = tg_headers_get(&req->headers, "forwarded"); /* a trusted peer's, joined */
    int v6 = strchr(ex->peer_addr, ':') != NULL;
    char self[INET6_ADDRSTRLEN + 32];
    snprintf(self, sizeof(self), v6 ? "for=\"[%s]\";proto=%s" : "for=%s;proto=%s", ex->peer_addr, ex->scheme);
    size_t hl = 0;
    if (req->authority != NULL) { /* host= as a quoted-string: an authority may hold ':' */
        for (const char *p = req->authority; *p; p++)
            hl += (*p == '"' || *p == '\\') ? 2 : 1;
        hl += sizeof(";host=\"\"") - 1;
    }
    size_t ol = old ? old->value_len + 2 : 0, sl = strlen(self);
    char *v = tg_arena_alloc(a, ol + sl + hl + 1), *w = v;
    if (v == NULL)
        return -1;
    if (old) {
        memcpy(w, old->value, old->value_len);
        memcpy(w + old->value_len, ", ", 2);
        w += ol;
    }
    memcpy(w, self, sl);
    w += sl;
    if (req->authority != NULL) {
        memcpy(w, ";host=\"", 7);
        w += 7;
        for (const char *p = req->authority; *p; p++) {
            if (*p == '"' || *p == '\\')
                *w++ = '\\';
            *w++ = *p;
        }
        *w++ = '"';
    }
    *w = '\0';
    return tg_headers_set(&req->headers, a, "forwarded", v);
}

/* Sets name to value unless a trusted peer sent one (then it passes; from
 * anyone else it was removed on arrival). */
static int set_unless_trusted(tg_exchange_t *ex, const char *name, const char *value, int safe)
{
    if (ex->peer_trusted && tg_headers_get(&ex->req.headers, name) != NULL)
        return 0;
    return (safe ? tg_headers_set_checked : tg_headers_set)(&ex->req.headers, &ex->arena, name, value);
}

/* Turns the client's headers into the upstream's: hop-by-hop removed,
 * forwarding headers set, route rules applied. Done once per exchange. */
static int prepare_request_headers(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    tg_headers_t *h = &req->headers;
    tg_arena_t *a = &ex->arena;
    const tg_config_t *cfg = ex->snap->cfg;
    const char *upgrade = ex->upgrade;
    /* X-Forwarded-For grows only through proxies we trust; anyone else's
     * list was removed on arrival and is replaced by the address we see */
    const tg_header_t *xff = tg_headers_get(h, "x-forwarded-for");
    const char *xff_old = xff ? xff->value : NULL;
    const tg_header_t *via = tg_headers_get(h, "via");
    const char *via_old = via ? via->value : NULL;
    /* what is ours (an address we formatted, literals) is safe as made;
     * an old list only if it was in the checked prefix */
    int xff_safe = xff == NULL || tg_headers_in_checked(h, xff), via_safe = via == NULL || tg_headers_in_checked(h, via);

    char *v = xff_old ? join_list(a, xff_old, ex->peer_addr) : ex->peer_addr;
    if (v == NULL || (xff_safe ? tg_headers_set_checked : tg_headers_set)(h, a, "x-forwarded-for", v) < 0 ||
        set_unless_trusted(ex, "x-forwarded-proto", ex->scheme, 1) < 0)
        return -1;
    if (req->authority && set_unless_trusted(ex, "x-forwarded-host", req->authority, 0) < 0)
        return -1;
    if (cfg->forwarded_header != TG_FORWARDED_XFF && forward_rfc7239(ex) < 0)
        return -1;
    if (cfg->set_x_real_ip && tg_headers_set_checked(h, a, "x-real-ip", ex->client_addr) < 0)
        return -1;
    const char *via_self = req->version == 20 ? "2 tollgate" : req->version == 10 ? "1.0 tollgate" : "1.1 tollgate";
    v = via_old ? join_list(a, via_old, via_self) : (char *)via_self;
    if (v == NULL || (via_safe ? tg_headers_set_checked : tg_headers_set)(h, a, "via", v) < 0)
        return -1;
    if (forward_client_cert(ex) < 0 || tg_headers_apply_rules(h, a, &ex->route->request_headers) < 0)
        return -1;
    if (upgrade && (tg_headers_add(h, a, "connection", 10, "upgrade", 7) < 0 ||
                    tg_headers_add(h, a, "upgrade", 7, upgrade, strlen(upgrade)) < 0))
        return -1;
    if (cfg->paths.forward_original && forward_original_path(ex) < 0)
        return -1;
    return 0;
}

/* ---- the request body ---- */

/* The client's body could not be read (err: the codec's status, 413 for
 * one too large, else malformed): the answer, and the connection closes. */
static void body_refused(tg_exchange_t *ex, int err)
{
    ex->close_ds = 1;
    tg_exchange_reply(ex, err ? err : 400, err == 413 ? "request body too large" : "malformed request body");
}

/* Reads request body from the client into dst; a framing error or an
 * oversized body becomes a local reply. Returns -1 if the exchange ended. */
static ssize_t read_request_body(tg_exchange_t *ex, struct evbuffer *dst, size_t max, int *fin)
{
    int err = 0;
    ssize_t n;
    size_t pre = ex->pre_body ? evbuffer_get_length(ex->pre_body) : 0;
    if (pre > 0 || ex->pre_fin) { /* what was read for the filters comes first */
        size_t take = pre < max ? pre : max;
        n = evbuffer_remove_buffer(ex->pre_body, dst, take);
        *fin = take == pre && ex->pre_fin;
        if (*fin)
            ex->pre_fin = 0;
    } else {
        n = ex->ops->read_body(ex->ds, dst, max, fin, &err);
    }
    if (n < 0) {
        body_refused(ex, err);
        return n;
    }
    /* dst holds only this piece: scratch, or body_buf while still empty */
    if (n > 0 && ex->grpc_msg_max && tg_grpc_frames_check(&ex->grpc_frames, dst, ex->grpc_msg_max) < 0) {
        ex->close_ds = 1;
        tg_exchange_reply(ex, 413, "request message larger than the limit"); /* RESOURCE_EXHAUSTED */
        return -1;
    }
    if (ex->body_hooks && (n > 0 || *fin) &&
        tg_filters_on_request_body(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, dst, *fin) ==
            TG_FILTER_REPLY) {
        ex->close_ds = 1;
        tg_filter_exchange_t *fx = &ex->fx;
        if (fx->reply_response != NULL && ex->resp_started) { /* too late for a response of its own */
            if (fx->reply_release != NULL)
                fx->reply_release(fx->reply_body, fx->reply_body_len, fx->reply_release_arg);
            fx->reply_release = NULL;
            fx->reply_response = NULL;
        }
        filter_reply(ex);
        return -1;
    }
    return n;
}

/* ---- the pumps (the client's side of the attempt) ---- */

/* Client -> upstream. Returns -1 if the exchange was finished. */
static int pump_request(tg_exchange_t *ex)
{
    if (ex->att.up == NULL || ex->req_sent || ex->state == EX_CONNECTING || ex->state == EX_ROUTING)
        return 0;
    const tg_upstream_ops_t *ops = ex->att.up_ops;
    if (tg_ex_up_begin_body(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return -1;
    }
    int fin = ex->req_done;
    size_t queued;
    while (!fin && (queued = ops->queued(ex->att.up)) < TG_EXCHANGE_HWM) {
        ssize_t n = read_request_body(ex, ex->scratch, TG_EXCHANGE_HWM - queued, &fin);
        if (n < 0)
            return -1;
        if (n > 0) {
            ex->bytes_in += (uint64_t)n;
            if (tg_ex_up_send(ex, ex->scratch) < 0) {
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
        ops->end(ex->att.up);
        return 0;
    }
    ops->flush(ex->att.up);
    return 0;
}

/* Upstream -> client. Returns -1 if the exchange was finished. */
static int pump_response(tg_exchange_t *ex)
{
    while (!ex->resp_done) {
        size_t pending = ex->ops->pending(ex->ds);
        if (pending >= TG_EXCHANGE_HWM)
            break;
        int fin = 0;
        ssize_t n = ex->att.up_ops->read(ex->att.up, ex->scratch, TG_EXCHANGE_HWM - pending, &fin);
        if (n < 0) {
            tg_ex_up_failed(ex); /* counted; the client sees an aborted response */
            return -1;
        }
        ex->bytes_out += n > 0 ? (uint64_t)n : 0;
        if (ex->body_hooks && (n > 0 || fin) && ex->fx.req != NULL)
            tg_filters_on_response_body(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, ex->scratch, fin);
        /* a body hook may have turned the piece into more, less or other bytes
         * (a compressor's last flush comes with fin and no new input) */
        if (evbuffer_get_length(ex->scratch) > 0 && ex->ops->write_body(ex->ds, ex->scratch) < 0) {
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

/* Returns -1 if the exchange was finished. */
static int on_response_head(tg_exchange_t *ex)
{
    tg_response_t *resp = &ex->resp;
    const tg_header_t *upg = tg_headers_get(&resp->headers, "upgrade");
    const char *upgrade = upg ? upg->value : NULL; /* a 101 has one (the attempt checked) */
    tg_headers_strip_hop_by_hop(&resp->headers);
    ex->fx.resp_trailers = &resp->trailers;
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
    ex->att.up_ops->set_timeout(ex->att.up, r->idle_timeout_ms);
    if (resp->status == 101) {
        advance(ex, EXEV_UPGRADED); /* the upstream frames nothing from now on */
        ex->req_done = 0;
        ex->req_sent = 0;
        if (pump_request(ex) < 0)
            return -1;
    } else {
        advance(ex, EXEV_HEAD);
    }
    return pump_response(ex);
}


/* ---- gRPC deadlines ---- */

/* gRPC deadlines are honoured by default: a call with grpc-timeout ends
 * with DEADLINE_EXCEEDED at the smaller of it and the route timeout. */
static void start_deadline(tg_exchange_t *ex)
{
    const tg_header_t *h = tg_headers_get(&ex->req.headers, "grpc-timeout");
    uint64_t us;
    if (h == NULL || tg_grpc_parse_timeout(h->value, h->value_len, &us) < 0)
        return; /* none, or malformed: no deadline of the client's */
    uint64_t route_us = ex->route->timeout_ms * 1000;
    if (route_us && route_us < us)
        us = route_us;
    ex->deadline_us = ex->start_us + us;
    tg_timer_after(tg_worker_loop(ex->w), &ex->deadline_timer, us);
}

static void on_deadline(tg_timer_t *t)
{
    tg_exchange_t *ex = TG_CONTAINER_OF(t, tg_exchange_t, deadline_timer);
    tg_debug("exchange %s: gRPC deadline exceeded", ex->req.target);
    tg_exchange_reply(ex, 504, "deadline exceeded");
}


/* What the upstream attempt reports (exchange_upstream.c). -1: the
 * exchange is over. */
static int on_attempt(tg_exchange_t *ex, tg_att_event_t ev, int status, const char *why)
{
    switch (ev) {
    case ATT_CONNECTING:
        advance(ex, EXEV_CONNECTING);
        return 0;
    case ATT_SENT:
        advance(ex, EXEV_SENT);
        if (ex->req.expect_continue && ex->req.body != TG_BODY_NONE && !ex->req_done)
            ex->ops->send_continue(ex->ds);
        return pump_request(ex);
    case ATT_HEAD:
        return on_response_head(ex);
    case ATT_DATA:
        return pump_response(ex);
    case ATT_WRITABLE:
        return pump_request(ex);
    case ATT_BACKOFF:
        advance(ex, EXEV_BACKOFF);
        return 0;
    case ATT_FAILED:
        if (ex->resp_started && ex->att.reset_code >= 0)
            finish(ex, 1); /* relays the upstream's RST_STREAM code */
        else if (!ex->resp_started && ex->fx.req != NULL && !ex->grpc &&
                 tg_filters_on_no_answer(&ex->snap->cfg->filters, &ex->route->filters, &ex->fx, status) ==
                     TG_FILTER_REPLY)
            filter_response(ex); /* a filter answers for the upstream (stale-if-error) */
        else
            tg_exchange_reply(ex, status, why); /* started: cut off (gRPC: the status in trailers) */
        return -1;
    }
    return 0;
}

/* ---- entry points from the downstream ---- */


/* The trust boundary, before anything reads the request: trust headers
 * and hop-by-hop headers go (what the exchange needs of the latter is
 * kept first), and the client's address is settled. Returns -1 if the
 * request was refused. */
static int sanitize_request(tg_exchange_t *ex)
{
    tg_headers_t *h = &ex->req.headers;
    const tg_header_t *te = tg_headers_get(h, "te");
    ex->te_trailers = te != NULL && tg_header_has_token(te->value, te->value_len, "trailers");
    const tg_header_t *upg = ex->req.upgrade ? tg_headers_get(h, "upgrade") : NULL;
    ex->upgrade = upg ? upg->value : NULL;
    const char *why = NULL;
    const tg_config_t *cfg = ex->snap->cfg;
    size_t ntp;
    const tg_cidr_t *tp = trusted_proxies(ex, &ntp);
    ex->peer_trusted = ntp > 0 && tg_cidr_list_match(tp, ntp, ex->peer_addr);
    const tg_listener_conf_t *l = ex->listener < cfg->n_listeners ? &cfg->listeners[ex->listener] : NULL;
    tg_trust_peer_t peer = { ex->peer_trusted, l ? l->underscores : cfg->underscores };
    /* Several X-Forwarded-For (or Forwarded, or Via) lines are one list
     * (RFC 9110 5.3): joined before anything reads them, so the client
     * address walk, the chain sent upstream and the logs all see every hop
     * (a balancer that adds its own line, as HAProxy's option forwardfor
     * does, must not hide the line before it). */
    static const tg_name_t lists[] = { TG_NAME("x-forwarded-for"), TG_NAME("forwarded"), TG_NAME("via") };
    if (tg_headers_join_each(h, &ex->arena, lists, 3) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return -1;
    }
    if (tg_trust_sanitize_request(ex->snap->trust, h, &peer, &why) < 0) {
        ex->close_ds = 1;
        tg_exchange_reply(ex, 400, why);
        return -1;
    }
    /* routes match, and by default the upstream gets, the normalized path */
    tg_request_t *req = &ex->req;
    req->raw_target = req->target;
    if (tg_path_normalize(&ex->arena, req->target, &cfg->paths, &req->target, &req->path_len, &why) < 0) {
        ex->close_ds = 1;
        tg_exchange_reply(ex, 400, why);
        return -1;
    }
    if (ex->peer_trusted) {
        const tg_header_t *xff = tg_headers_get(h, "x-forwarded-for"), *fwd = tg_headers_get(h, "forwarded");
        tg_trust_client_addr(tp, ntp, ex->peer_addr, xff ? xff->value : NULL, fwd ? fwd->value : NULL,
                             cfg->forwarded_header, ex->client_addr, sizeof(ex->client_addr));
    }
    return 0;
}

/* tg_filter_wake: fn(fx, gen) runs on the exchange's worker. */
typedef struct fx_post {
    tg_post_t post;
    void (*fn)(tg_filter_exchange_t *fx, uint64_t gen);
    tg_filter_exchange_t *fx;
    uint64_t gen;
} fx_post_t;

static void fx_post_run(tg_post_t *p, int cancelled)
{
    fx_post_t *q = (fx_post_t *)p;
    if (!cancelled)
        q->fn(q->fx, q->gen);
    free(q);
}

static int fx_post(void *home, void (*fn)(tg_filter_exchange_t *fx, uint64_t gen), tg_filter_exchange_t *fx,
                   uint64_t gen)
{
    fx_post_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return -1;
    *q = (fx_post_t){ .post.run = fx_post_run, .fn = fn, .fx = fx, .gen = gen };
    tg_worker_post(home, &q->post);
    return 0;
}

/* A filter's own HTTP call (ext_auth) through a cluster of the exchange's snapshot. */
static void *fx_call(tg_filter_exchange_t *fx, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg)
{
    tg_exchange_t *ex = (tg_exchange_t *)((char *)fx - offsetof(tg_exchange_t, fx));
    return tg_fetch_start(ex->w, ex->snap, c, cb, arg);
}

static void fx_call_cancel(tg_filter_exchange_t *fx, void *call)
{
    (void)fx;
    tg_fetch_cancel(call);
}

static void fx_resume(tg_filter_exchange_t *fx, uint64_t gen, tg_filter_status_t status);
static const tg_filter_exchange_ops_t fx_ops = { fx_resume, fx_post, fx_call, fx_call_cancel };

void tg_exchange_start(tg_exchange_t *ex, size_t listener, const char *client_addr, const char *scheme)
{
    ex->listener = listener;
    /* the turn's clock: a request read in this turn started when it began */
    tg_loop_t *loop = tg_worker_loop(ex->w);
    ex->start_us = tg_loop_now_us(loop);
    ex->start_unix_us = tg_loop_wall_us(loop);
    ex->scheme = scheme;
    size_t al = strnlen(client_addr, sizeof(ex->peer_addr) - 1); /* every request: no printf */
    memcpy(ex->peer_addr, client_addr, al);
    ex->peer_addr[al] = '\0';
    memcpy(ex->client_addr, ex->peer_addr, sizeof(ex->client_addr));
    if (ex->req.body == TG_BODY_NONE)
        ex->req_done = 1; /* a local reply can keep the connection */
    if (sanitize_request(ex) < 0)
        return;
    /* gRPC and gRPC-Web get gRPC replies and deadlines; only a call proper
     * is exempt from the body limit (its messages bounded instead) */
    tg_grpc_kind_t grpc = tg_grpc_classify(&ex->req);
    ex->grpc = grpc != TG_GRPC_NONE;
    const tg_config_t *cfg = ex->snap->cfg;
    ex->route = tg_router_find(ex->snap->router, listener, &ex->req, &ex->arena);
    if (ex->route == NULL) {
        tg_exchange_reply(ex, 404, "no route");
        return;
    }
    ex->cluster = &ex->snap->clusters->clusters[ex->route->cluster];
    if (ex->route->n_backends > 0) { /* a split route: a pin, else the weights */
        long b = tg_router_pinned_backend(ex->route, &ex->req);
        if (b < 0)
            b = (long)tg_cluster_split_next(ex->snap->clusters, (size_t)(ex->route - cfg->routes));
        ex->cluster = &ex->snap->clusters->clusters[ex->route->backends[b].cluster];
    }
    if (ex->grpc)
        start_deadline(ex);
    if (grpc == TG_GRPC_CALL)
        ex->grpc_msg_max = ex->route->max_grpc_request_message;
    if (ensure_request_id(ex) < 0 || (cfg->tracing.enabled && start_trace(ex, &cfg->tracing) < 0)) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    if (cfg->filters.n || ex->route->filters.n) {
        tg_filter_exchange_t *fx = &ex->fx;
        fx->req = &ex->req;
        fx->arena = &ex->arena;
        fx->client_addr = ex->client_addr;
        fx->scheme = ex->scheme;
        fx->peer_identity = ex->peer ? ex->peer->subject : NULL;
        fx->route = ex->route->name;
        fx->cluster = ex->cluster->conf->name;
        fx->grpc = grpc;
        fx->listener = listener;
        fx->worker = tg_worker_id(ex->w);
        fx->loop = tg_worker_loop(ex->w);
        fx->store = tg_redis_store_acquire(ex->w); /* held until recycled: completion hooks use it */
        fx->ops = &fx_ops;
        fx->home = ex->w;
        fx->chain[0] = &cfg->filters;
        fx->chain[1] = &ex->route->filters;
        ex->body_hooks = tg_filters_have_body_hooks(&cfg->filters, &ex->route->filters) != 0;
        fx->body_whole = 1;
        if ((ex->prefix_want = tg_filters_body_prefix(&cfg->filters, &ex->route->filters)) > 0 && !ex->req_done) {
            gather_prefix(ex);
            return;
        }
        if (run_filters(ex, 0) < 0)
            return;
    }
    after_filters(ex);
}

/* ---- the start of the body, for filters that see it (body_prefix) ---- */

static void on_gather_timeout(tg_timer_t *t)
{
    tg_exchange_t *ex = TG_CONTAINER_OF(t, tg_exchange_t, gather_timer);
    ex->close_ds = 1;
    tg_exchange_reply(ex, 408, "request body not received in time");
}

/* Reads body into pre_body until it holds more than prefix_want bytes or
 * the whole body, then runs the chain with fx->body_prefix pointing at
 * it. Called again by tg_exchange_on_request_data while waiting, which
 * the route's timeout bounds (a 408). The bytes are raw: framing checks
 * and body hooks see them later, in order, when read_request_body hands
 * them out. */
static void gather_prefix(tg_exchange_t *ex)
{
    if (ex->pre_body == NULL && (ex->pre_body = evbuffer_new()) == NULL) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    if (ex->req.expect_continue) { /* the client waits for this before it sends its body */
        ex->req.expect_continue = 0;
        ex->ops->send_continue(ex->ds);
    }
    size_t have = evbuffer_get_length(ex->pre_body);
    int fin = 0;
    while (have <= ex->prefix_want) {
        int err = 0;
        ssize_t n = ex->ops->read_body(ex->ds, ex->pre_body, ex->prefix_want + 1 - have, &fin, &err);
        if (n < 0) {
            body_refused(ex, err);
            return;
        }
        have += (size_t)n;
        if (fin)
            break;
        if (n == 0) { /* the rest comes with tg_exchange_on_request_data */
            if (!ex->gathering) {
                uint64_t ms = ex->route->timeout_ms ? ex->route->timeout_ms : ex->snap->cfg->limits.idle_timeout_ms;
                ex->gathering = 1;
                if (ms && tg_timer_set(tg_worker_loop(ex->w), &ex->gather_timer, ms) < 0) {
                    tg_exchange_reply(ex, 500, "out of memory");
                    return;
                }
            }
            return;
        }
    }
    if (ex->gathering) {
        ex->gathering = 0;
        tg_timer_cancel(&ex->gather_timer);
    }
    ex->pre_fin = fin != 0;
    size_t show = have < ex->prefix_want ? have : ex->prefix_want;
    ex->fx.body_prefix = show ? evbuffer_pullup(ex->pre_body, (ssize_t)show) : (const unsigned char *)"";
    ex->fx.body_prefix_len = show;
    ex->fx.body_whole = fin && have <= ex->prefix_want;
    if (ex->fx.body_prefix == NULL) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    if (run_filters(ex, 0) == 0)
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
        filter_reply(ex);
        return -1;
    }
    return 0;
}

static void fx_resume(tg_filter_exchange_t *fx, uint64_t gen, tg_filter_status_t status)
{
    tg_exchange_t *ex = (tg_exchange_t *)((char *)fx - offsetof(tg_exchange_t, fx));
    if (gen == 0 || fx->gen != gen || !ex->paused)
        return; /* the exchange is over (client gone) */
    ex->paused = 0;
    if (status == TG_FILTER_REPLY) {
        filter_reply(ex);
        return;
    }
    if (run_filters(ex, fx->paused_at + 1) == 0)
        after_filters(ex);
}

/* The request passed the filters: forward it. */
/* ---- grpc.health.v1.Health, answered here (route grpc_health; grpc_health.h) ---- */

#define HEALTH_REQUEST_MAX 1024  /* a HealthCheckRequest is a service name */
#define HEALTH_WATCH_MS 1000     /* Watch: how often the status is looked at */

/* A trailers-only answer with a gRPC status code (not mapped from HTTP). */
static void health_fail(tg_exchange_t *ex, int code, const char *message)
{
    grpc_reply_code(ex, code, 200, message);
}

static int health_now(tg_exchange_t *ex)
{
    return tg_grpc_health_status(ex->snap, tg_worker_health(ex->w), ex->listener, ex->route, &ex->req,
                                 ex->health_service, tg_worker_draining(ex->w), &ex->arena);
}

/* One HealthCheckResponse toward the client. 0 or -1. */
static int health_send(tg_exchange_t *ex, int status)
{
    uint8_t msg[7];
    size_t n = tg_grpc_health_message(status, msg);
    ex->bytes_out += n;
    return evbuffer_add(ex->scratch, msg, n) < 0 || ex->ops->write_body(ex->ds, ex->scratch) < 0 ? -1 : 0;
}

/* The end of a call that answered: grpc-status 0. */
static void health_end(tg_exchange_t *ex)
{
    tg_headers_t *t = &ex->resp.trailers;
    t->n = 0;
    if (tg_headers_add(t, &ex->arena, "grpc-status", 11, "0", 1) < 0 || ex->ops->write_end(ex->ds, t) < 0) {
        finish(ex, 1);
        return;
    }
    ex->resp_done = 1;
    finish(ex, 0);
}

/* Watch: a message when the status changes; the stream ends (OK) once
 * the worker drains, after saying NOT_SERVING. */
static void on_health_tick(tg_timer_t *t)
{
    tg_exchange_t *ex = TG_CONTAINER_OF(t, tg_exchange_t, health_timer);
    int status = health_now(ex);
    if (status != ex->health_last) {
        ex->health_last = status;
        if (health_send(ex, status) < 0) {
            finish(ex, 1);
            return;
        }
    }
    if (tg_worker_draining(ex->w)) {
        health_end(ex);
        return;
    }
    tg_timer_set(tg_worker_loop(ex->w), &ex->health_timer, HEALTH_WATCH_MS);
}

static void health_answer(tg_exchange_t *ex)
{
    size_t len = evbuffer_get_length(ex->body_buf);
    char service[256];
    if (tg_grpc_health_parse(evbuffer_pullup(ex->body_buf, -1), len, service, sizeof(service)) < 0) {
        health_fail(ex, 3, "malformed HealthCheckRequest"); /* INVALID_ARGUMENT */
        return;
    }
    if ((ex->health_service = tg_arena_strndup(&ex->arena, service, strlen(service))) == NULL) {
        health_fail(ex, 13, "out of memory"); /* INTERNAL */
        return;
    }
    int status = health_now(ex);
    if (ex->health_call == 1 && status == TG_HEALTH_SERVICE_UNKNOWN) {
        health_fail(ex, 5, "unknown service"); /* NOT_FOUND, as the health protocol says */
        return;
    }
    tg_response_t *r = &ex->resp;
    memset(r, 0, sizeof(*r));
    r->status = 200;
    r->version = 20;
    r->body = TG_BODY_CHUNKED;
    if (tg_headers_add(&r->headers, &ex->arena, "content-type", 12, "application/grpc", 16) < 0) {
        finish(ex, 1);
        return;
    }
    add_filter_headers(ex, r, &ex->fx.reply_headers);
    ex->resp_started = 1;
    ex->reply_status = 200;
    if (ex->ops->write_head(ex->ds, r) < 0 || health_send(ex, status) < 0) {
        finish(ex, 1);
        return;
    }
    advance(ex, EXEV_LOCAL_REPLY);
    if (ex->health_call == 1) {
        health_end(ex);
        return;
    }
    ex->health_last = status;
    if (tg_timer_set(tg_worker_loop(ex->w), &ex->health_timer, HEALTH_WATCH_MS) < 0)
        finish(ex, 1);
}

/* Reads the (small) request before answering it. */
static void health_read(tg_exchange_t *ex)
{
    while (!ex->req_done) {
        int fin = 0;
        ssize_t n = read_request_body(ex, ex->body_buf, HEALTH_REQUEST_MAX + 1, &fin);
        if (n < 0)
            return; /* answered */
        ex->bytes_in += (uint64_t)n;
        ex->req_done = fin != 0;
        if (evbuffer_get_length(ex->body_buf) > HEALTH_REQUEST_MAX) {
            ex->close_ds = 1;
            health_fail(ex, 3, "HealthCheckRequest too large");
            return;
        }
        if (n == 0 && !fin)
            return; /* the rest comes with tg_exchange_on_request_data */
    }
    health_answer(ex);
}

static void after_filters(tg_exchange_t *ex)
{
    const tg_config_t *cfg = ex->snap->cfg;
    if (prepare_request_headers(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    /* A body a filter made for a request that came without one (a REST
     * GET become a gRPC call): sent, and replayed, as if read first. */
    if (ex->req_done && ex->fx.req_body_len > 0) {
        if (evbuffer_add(ex->body_buf, ex->fx.req_body, ex->fx.req_body_len) < 0) {
            tg_exchange_reply(ex, 500, "out of memory");
            return;
        }
        ex->req.body = TG_BODY_LENGTH;
        ex->req.content_length = ex->fx.req_body_len;
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
    if (ex->route->grpc_health && ex->grpc && (ex->health_call = tg_grpc_health_call(&ex->req)) != 0) {
        health_read(ex); /* answered here, not upstream */
        return;
    }
    ex->att.retry = tg_filters_retry_policy(&cfg->filters, &ex->route->filters);
    if (tg_ex_admit(ex) < 0)
        return;
    ex->att.rr = ex->cluster->conf->lb == TG_LB_RANDOM ? (unsigned)tg_worker_random(ex->w) : tg_cluster_rr_next(ex->cluster);
    if (tg_ex_build_order(ex) < 0) {
        tg_exchange_reply(ex, 500, "out of memory");
        return;
    }
    tg_ex_try_next_endpoint(ex);
}

void tg_exchange_on_request_data(tg_exchange_t *ex)
{
    if (ex->gathering)
        gather_prefix(ex);
    else if (ex->health_call && ex->state == EX_ROUTING && !ex->req_done)
        health_read(ex);
    else
        pump_request(ex);
}

void tg_exchange_on_downstream_drained(tg_exchange_t *ex)
{
    if ((ex->state == EX_STREAMING || ex->state == EX_TUNNEL) && ex->att.up != NULL)
        pump_response(ex);
}
