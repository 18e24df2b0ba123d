/*
 * proxy/exchange_upstream.c — the exchange's upstream attempt (see
 * exchange_int.h), protocol-neutral: the endpoints to try in round-robin
 * order over the healthy ones, circuit breaking, one attempt at a time
 * through the cluster's tg_upstream_ops_t (upstream.h: an HTTP/1 lease or
 * an HTTP/2 stream), the request head and the body as the exchange hands
 * it over (kept for replay while it may be needed), passive health, and
 * what a failure means (the next endpoint, a retry after backoff, or
 * giving up). It tells the exchange what happened through its one
 * callback (ex->on_attempt: connecting, sent, head, data, writable,
 * backoff, failed) and never calls into exchange.c: the client side —
 * the pumps, the response head, replies — is the exchange's.
 */
#include "proxy/exchange_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/health.h"
#include "proxy/lbhash.h"
#include "proxy/base/log.h"
#include "proxy/stats.h"

static tg_endpoint_stats_t *ep_stats(tg_exchange_t *ex);
static void report_health(tg_exchange_t *ex, int ok);
static int head_received(tg_exchange_t *ex);
static int forward_grpc_timeout(tg_exchange_t *ex);
static int start_request(tg_exchange_t *ex);
static void on_connected(tg_exchange_t *ex);
static void on_upstream(void *arg, int events);
static tg_route_stats_t *route_stats(tg_exchange_t *ex);
static int schedule_retry(tg_exchange_t *ex, unsigned cond);
static void fail_upstream(tg_exchange_t *ex, up_error_t err, const char *what);

/* Tells the exchange (exchange.c: on_attempt). -1: the exchange is over. */
static int report(tg_exchange_t *ex, tg_att_event_t ev, int status, const char *why)
{
    return ex->on_attempt(ex, ev, status, why);
}

/* The attempt no longer waits for its connection to open. */
static void pending_done(tg_exchange_t *ex)
{
    if (ex->att.cb_pending) {
        atomic_fetch_sub_explicit(&ex->cluster->load->pending, 1, memory_order_relaxed);
        ex->att.cb_pending = 0;
    }
}

void tg_ex_release_upstream(tg_exchange_t *ex, int clean)
{
    pending_done(ex);
    if (ex->att.inflight_ep != NULL) {
        tg_health_inflight_add(tg_worker_health(ex->w), ex->att.inflight_ep->slot, -1);
        ex->att.inflight_ep = NULL;
    }
    if (ex->att.up == NULL)
        return;
    ex->att.up_ops->release(ex->att.up, clean);
    ex->att.up = NULL;
}

static tg_endpoint_stats_t *ep_stats(tg_exchange_t *ex)
{
    return tg_stats_endpoint(tg_worker_stats(ex->w), ex->att.ep->slot);
}

/* Passive health: how the current attempt on ex->att.ep went. */
static void report_health(tg_exchange_t *ex, int ok)
{
    if (ex->att.ep != NULL)
        tg_health_report(tg_worker_health(ex->w), ex->cluster, ex->att.ep, ok, tg_loop_now_us(tg_worker_loop(ex->w)) / 1000);
}

/* The request body is kept for replay (in body_buf) while it all fits in
 * TG_EXCHANGE_HWM and either it is all here or the route may retry. */
#define REPLAY_MAX TG_EXCHANGE_HWM

/* Sends one piece of body (data: body_buf at the start of an attempt, or a
 * newly read piece in scratch). Kept pieces go by reference and join
 * body_buf; once the body outgrows the replay buffer it is only moved. */
int tg_ex_up_send(tg_exchange_t *ex, struct evbuffer *piece)
{
    ex->att.req_sent_any = 1;
    if (piece == ex->body_buf)
        return ex->att.up_ops->write(ex->att.up, piece, ex->att.body_kept);
    if (ex->att.body_kept && evbuffer_get_length(ex->body_buf) + evbuffer_get_length(piece) <= REPLAY_MAX) {
        if (ex->att.up_ops->write(ex->att.up, piece, 1) < 0)
            return -1;
        return evbuffer_add_buffer(ex->body_buf, piece);
    }
    if (ex->att.body_kept) { /* too large to replay from here on */
        ex->att.body_kept = 0;
        evbuffer_drain(ex->body_buf, evbuffer_get_length(ex->body_buf));
    }
    return ex->att.up_ops->write(ex->att.up, piece, 0);
}

int tg_ex_up_begin_body(tg_exchange_t *ex)
{
    if (ex->att.body_started)
        return 0;
    /* Start of an attempt. Keep the body for replay until the response
     * starts, while it fits: when it is all here or the route retries (a
     * stale pooled connection, a retry), and always toward HTTP/2, whose
     * upstream may refuse a stream it never processed (REFUSED_STREAM, a
     * GOAWAY past it) while the body is still arriving. */
    ex->att.body_started = 1;
    if (ex->state == EX_WAIT_HEAD && evbuffer_get_length(ex->body_buf) <= REPLAY_MAX &&
        (ex->req_done || ex->att.retry != NULL || ex->cluster->conf->protocol != TG_PROTO_HTTP1) &&
        (!ex->att.req_sent_any || ex->att.body_kept))
        ex->att.body_kept = 1;
    return evbuffer_get_length(ex->body_buf) > 0 ? tg_ex_up_send(ex, ex->body_buf) : 0;
}

/* The final response head is in ex->resp. Returns -1 if the exchange was
 * finished. */
static int head_received(tg_exchange_t *ex)
{
    if (ex->resp.status == 101 && (!ex->req.upgrade || tg_headers_get(&ex->resp.headers, "upgrade") == NULL)) {
        fail_upstream(ex, UP_RESET, "101 response to a request without Upgrade");
        return -1;
    }
    report_health(ex, ex->resp.status < 500);
    ex->att.t_head = tg_loop_now_us(tg_worker_loop(ex->w));
    if (ex->cluster->conf->lb == TG_LB_PEAK_EWMA && ex->att.ep != NULL && ex->att.t_sent)
        tg_health_ewma_observe(tg_worker_health(ex->w), ex->att.ep->slot, ex->att.t_head - ex->att.t_sent, ex->att.t_head / 1000);
    if (ex->att.retry != NULL) {
        const tg_header_t *gs = tg_headers_get(&ex->resp.headers, "grpc-status");
        if (tg_retry_on_status(ex->att.retry, ex->resp.status, gs ? gs->value : NULL) && schedule_retry(ex, 0))
            return -1;
    }
    if (ex->att.body_kept) { /* the upstream answered: no replay from here on */
        evbuffer_drain(ex->body_buf, evbuffer_get_length(ex->body_buf));
        ex->att.body_kept = 0;
    }
    return report(ex, ATT_HEAD, 0, NULL);
}

/* gRPC: the time left before the call's deadline goes upstream in
 * grpc-timeout (milliseconds while they fit the spec's 8 digits). */
static int forward_grpc_timeout(tg_exchange_t *ex)
{
    if (ex->deadline_us == 0)
        return 0;
    uint64_t now = tg_loop_now_us(tg_worker_loop(ex->w)), left = ex->deadline_us > now ? ex->deadline_us - now : 0;
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
    report(ex, ATT_FAILED, 500, why == TG_HTTP_UNSAFE_FIELD ? "request header not safe to send" : "out of memory");
}

/* Sends the request head on the attempt. Returns -1 if the exchange was
 * finished. */
static int start_request(tg_exchange_t *ex)
{
    tg_request_t *req = &ex->req;
    /* A gRPC call is bounded by its deadline and by silence (the route's
     * idle_timeout), never by the route timeout meant for ordinary
     * requests: a stream may legitimately wait long for its first answer. */
    tg_up_request_t r = {
        .req = req,
        .authority = req->authority ? req->authority : ex->att.ep->conf->address,
        .te_trailers = ex->te_trailers || ex->grpc || ex->fx.want_trailers,
        .end_stream = ex->req_done && evbuffer_get_length(ex->body_buf) == 0,
        .timeout_ms = ex->att.retry && ex->att.retry->per_try_timeout_ms ? ex->att.retry->per_try_timeout_ms
                      : ex->deadline_us                          ? 0
                      : ex->grpc                                 ? ex->route->idle_timeout_ms
                                                                 : ex->route->timeout_ms,
    };
    int rc = forward_grpc_timeout(ex);
    if (rc == 0)
        rc = ex->att.up_ops->start(ex->att.up, &r);
    if (rc < 0) {
        request_not_sent(ex, rc);
        return -1;
    }
    if (r.end_stream) {
        ex->att.body_started = 1;
        ex->req_sent = 1;
    }
    return report(ex, ATT_SENT, 0, NULL);
}

static void on_connected(tg_exchange_t *ex)
{
    pending_done(ex);
    tg_counter_add(&ep_stats(ex)->requests, 1);
    ex->att.t_sent = ex->att.up_fresh ? tg_loop_now_us(tg_worker_loop(ex->w)) : ex->att.t_connect; /* a pooled connection: the same instant */
    if (ex->att.up_fresh)
        ex->att.connect_us = ex->att.t_sent - ex->att.t_connect;
    start_request(ex);
}

/* The attempt failed (an event, or a response body that could not be
 * read): what that means depends on where the exchange is. */
void tg_ex_up_failed(tg_exchange_t *ex)
{
    const char *msg = NULL;
    long code = -1;
    tg_up_cause_t cause = ex->att.up_ops->error(ex->att.up, &msg, &code);
    char why_buf[160]; /* the message lives with the attempt, which goes first */
    const char *why = why_buf;
    snprintf(why_buf, sizeof(why_buf), "%s", msg ? msg : "?");
    if (ex->state == EX_CONNECTING) {
        fail_upstream(ex, cause == TG_UP_CAUSE_TIMEOUT ? UP_CONNECT_TIMEOUT : UP_CONNECT_FAILED,
                      cause == TG_UP_CAUSE_TIMEOUT ? "connect timeout" : why);
        return;
    }
    switch (cause) {
    case TG_UP_CAUSE_TIMEOUT:
        fail_upstream(ex, UP_TIMEOUT, ex->state == EX_WAIT_HEAD ? "response timeout" : "idle timeout");
        return;
    case TG_UP_CAUSE_CONNECT_FAILED:
    case TG_UP_CAUSE_REFUSED:
        if (ex->att.refusals < 3 && !ex->resp_started) {
            /* Never processed (REFUSED_STREAM, or past a GOAWAY): like a
             * stale pooled connection, it goes again elsewhere. */
            ex->att.refusals++;
            ex->att.up_refused = 1;
        }
        break;
    case TG_UP_CAUSE_BAD_RESPONSE:
        tg_warn("upstream %s: %s", ex->att.ep->label, why);
        ex->att.req_sent_any = 1; /* the upstream answered: do not retry */
        break;
    case TG_UP_CAUSE_TRUNCATED:
        tg_warn("upstream %s: bad or truncated response body: %s", ex->att.ep->label, why);
        why = "truncated response";
        break;
    case TG_UP_CAUSE_RESET:
        ex->att.reset_code = code;
        break;
    }
    fail_upstream(ex, UP_RESET, why);
}

static void on_upstream(void *arg, int events)
{
    tg_exchange_t *ex = arg;
    if (events & TG_UP_ERROR) {
        tg_ex_up_failed(ex);
        return;
    }
    if (events & TG_UP_CONNECTED) {
        if (ex->state == EX_CONNECTING)
            on_connected(ex);
        return; /* anything else comes later */
    }
    if ((events & TG_UP_HEAD) && ex->state == EX_WAIT_HEAD && head_received(ex) < 0)
        return;
    if ((events & TG_UP_DATA) && (ex->state == EX_STREAMING || ex->state == EX_TUNNEL) &&
        report(ex, ATT_DATA, 0, NULL) < 0)
        return;
    if (events & TG_UP_WRITABLE)
        report(ex, ATT_WRITABLE, 0, NULL);
}

static tg_route_stats_t *route_stats(tg_exchange_t *ex)
{
    const tg_snapshot_t *s = ex->snap;
    return tg_stats_route(tg_worker_stats(ex->w), s->route_slot[ex->route - s->cfg->routes]);
}

/* Starts another round of attempts after a backoff, if the route's retry
 * policy covers this failure (cond: TG_RETRY_* bits, or 0 when the status
 * check was already made), nothing went to the client yet, tries are
 * left, the method may be retried, the body can be replayed, and the
 * worker's retry budget allows. Returns 1 if a retry is scheduled. */
static int schedule_retry(tg_exchange_t *ex, unsigned cond)
{
    const tg_retry_policy_t *p = ex->att.retry;
    if (p == NULL || ex->resp_started || (cond && !(p->on & cond)) || ex->att.retries + 1 >= p->attempts ||
        !tg_retry_method_allowed(p, ex->req.method))
        return 0;
    tg_ex_worker_t *wx = ex->wx;
    if (!ex->req_done || (ex->att.req_sent_any && !ex->att.body_kept)) {
        tg_counter_add(&route_stats(ex)->retries_skipped, 1);
        tg_debug("retry: %s %s not retried: its body is larger than the replay buffer", ex->req.method,
                 ex->req.target);
        return 0;
    }
    unsigned budget = wx->active * p->budget_percent / 100;
    if (!ex->att.in_retry && wx->retrying >= (budget > p->budget_min ? budget : p->budget_min)) {
        tg_counter_add(&route_stats(ex)->retries_skipped, 1);
        tg_debug("retry: budget spent (%u retrying of %u in flight)", wx->retrying, wx->active);
        return 0;
    }
    if (!ex->att.in_retry) {
        ex->att.in_retry = 1;
        wx->retrying++;
    }
    ex->att.retries++;
    tg_counter_add(&route_stats(ex)->retries, 1);
    tg_ex_release_upstream(ex, 0);
    report(ex, ATT_BACKOFF, 0, NULL);
    uint64_t ms = tg_retry_backoff_ms(p, ex->att.retries, tg_worker_random(ex->w));
    tg_debug("retry %u of %s %s in %llu ms", ex->att.retries, ex->req.method, ex->req.target, (unsigned long long)ms);
    if (tg_timer_after(tg_worker_loop(ex->w), &ex->att.retry_timer, ms * 1000) < 0)
        return 0; /* no retry, then: the failure stands */
    return 1;
}

/* An upstream attempt failed. Before anything was sent that cannot be
 * replayed, move on to the next endpoint; otherwise answer 502/504, or
 * cut the client off if its response has already started. */
static void fail_upstream(tg_exchange_t *ex, up_error_t err, const char *what)
{
    const char *addr = ex->att.ep ? ex->att.ep->label : "?";
    int reused = (ex->att.up && ex->att.up_ops->reused(ex->att.up)) || ex->att.up_refused;
    tg_debug("upstream %s: %s (state %s)", addr, what, tg_ex_state_name(ex->state));
    if (ex->att.ep != NULL) {
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
    ex->att.last_error = err;
    /* Nothing reached the upstream that cannot be sent again: a connect
     * failure; a reset before any response byte of a request whose body
     * was not sent; or a pooled connection the upstream had closed, with
     * the whole body kept for replay. */
    int retriable = ex->state == EX_CONNECTING ||
                    (ex->state == EX_WAIT_HEAD && err == UP_RESET &&
                     (!ex->att.req_sent_any || (reused && ex->att.body_kept)));
    if (retriable) {
        if (ex->state == EX_CONNECTING)
            tg_warn("upstream %s: %s", addr, what);
        if (reused)
            ex->att.attempts--; /* a stale pooled connection does not count as a try */
        tg_ex_try_next_endpoint(ex);
        return;
    }
    if (ex->resp_started) { /* the exchange cuts the response off (gRPC: UNAVAILABLE in trailers) */
        report(ex, ATT_FAILED, 503, what);
        return;
    }
    tg_warn("upstream %s: %s", addr, what);
    if (schedule_retry(ex, err == UP_TIMEOUT ? TG_RETRY_TIMEOUT : TG_RETRY_RESET))
        return;
    if (err == UP_TIMEOUT)
        report(ex, ATT_FAILED, 504, "upstream timed out");
    else
        report(ex, ATT_FAILED, 502, "upstream connection failed");
}

/* A cookie's value in the request's Cookie header(s) ("a=1; b=2"). */
static const char *cookie_value(const tg_request_t *req, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < req->headers.n; i++) {
        const tg_header_t *h = &req->headers.v[i];
        if (h->name_len != 6 || strncasecmp(h->name, "cookie", 6) != 0)
            continue;
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *e = memchr(p, ';', (size_t)(end - p));
            if (e == NULL)
                e = end;
            if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
                *len = (size_t)(e - p) - nl - 1;
                return p + nl + 1;
            }
            p = e;
        }
    }
    return NULL;
}

/* lb ring_hash / maglev: the hash of the request's key; 0 when it has
 * none (no such header or cookie: it goes round-robin). */
static int request_hash(const tg_exchange_t *ex, uint64_t *h)
{
    const tg_cluster_conf_t *cc = ex->cluster->conf;
    const tg_request_t *req = &ex->req;
    const char *k = NULL;
    size_t kl = 0;
    switch (cc->hash_on) {
    case TG_HASH_CLIENT_ADDRESS:
        k = ex->client_addr, kl = strlen(ex->client_addr);
        break;
    case TG_HASH_PATH:
        k = req->target, kl = req->path_len;
        break;
    case TG_HASH_HEADER: {
        const tg_header_t *hd = tg_headers_get(&req->headers, cc->hash_name);
        if (hd != NULL)
            k = hd->value, kl = hd->value_len;
        break;
    }
    case TG_HASH_COOKIE:
        k = cookie_value(req, cc->hash_name, &kl);
        break;
    }
    if (k == NULL)
        return 0;
    *h = tg_lbhash_key(k, kl);
    return 1;
}

/* Puts endpoint `want` first in the order, the others keeping their
 * places after it (a copy of it further down goes). */
static void to_front(tg_exchange_t *ex, size_t want)
{
    size_t i = 0;
    while (i < ex->att.n_order && ex->att.order[i] != want)
        i++;
    if (i == ex->att.n_order) { /* not in the window: it takes the last place's room */
        i = ex->att.n_order - 1;
    }
    memmove(&ex->att.order[1], &ex->att.order[0], i * sizeof(ex->att.order[0]));
    ex->att.order[0] = want;
}

/* Is endpoint index i one this round may use? */
static int usable_now(const tg_exchange_t *ex, const tg_lb_view_t *view, size_t i)
{
    if (ex->att.ignore_health)
        return 1;
    if (view != NULL)
        return tg_lb_view_has(view, i);
    for (size_t j = 0; j < ex->att.n_order; j++)
        if (ex->att.order[j] == i)
            return 1;
    return 0;
}

/* The key's endpoint first, if it is usable; else the one the key's next
 * hash gives, and so on a few times (failover keys spread over the rest,
 * each key always to the same one); the rest keep their rotation. */
static void hash_first(tg_exchange_t *ex, const tg_lb_view_t *view, uint64_t h)
{
    const tg_cluster_t *c = ex->cluster;
    for (unsigned attempt = 0; attempt < 8; attempt++) {
        size_t want = tg_lbhash_pick(c->hash, h);
        if (usable_now(ex, view, want)) {
            to_front(ex, want);
            return;
        }
        h = tg_lbhash_next(h, attempt);
    }
}

#define ORDER_WINDOW 16 /* endpoints one round of tries may reach in a large cluster */

/* The endpoints this exchange may try, in order (tg_health_order):
 * round-robin over those health checks and outlier detection allow,
 * starting at this exchange's draw, each once. A large cluster (c->views)
 * gives the first ORDER_WINDOW of them from the worker's view of its
 * usable endpoints, so a pick costs the same with 10,000 endpoints as
 * with 10; the balancers choose among all usable endpoints alike. */
int tg_ex_build_order(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    unsigned wid = tg_worker_id(ex->w);
    tg_lb_view_t *view = c->views != NULL && wid < TG_LB_VIEWS ? &c->views[wid] : NULL;
    size_t room = view != NULL ? ORDER_WINDOW : c->n_endpoints;
    if (ex->att.order == NULL && (ex->att.order = tg_arena_alloc(&ex->arena, (room ? room : 1) * sizeof(size_t))) == NULL)
        return -1;
    tg_health_t *hl = tg_worker_health(ex->w);
    uint64_t now = tg_loop_now_us(tg_worker_loop(ex->w)) / 1000;
    size_t usable;
    if (view != NULL) {
        ex->att.n_order = tg_health_order_window(hl, c, view, ex->att.rr, ex->att.ignore_health, now, ex->att.order, room, &usable);
    } else {
        ex->att.n_order = tg_health_order(hl, c, ex->att.rr, ex->att.ignore_health, now, ex->att.order);
        usable = ex->att.n_order;
    }
    ex->att.attempts = 0;
    int lb = c->conf->lb;
    uint64_t h;
    if (ex->att.n_order < 2)
        return 0;
    if ((lb == TG_LB_LEAST_REQUEST || lb == TG_LB_PEAK_EWMA) && usable <= TG_LEAST_SCAN_MAX) {
        tg_health_least_of_all(hl, c, ex->att.order, ex->att.n_order, lb == TG_LB_PEAK_EWMA, now);
    } else if (lb == TG_LB_LEAST_REQUEST || lb == TG_LB_PEAK_EWMA) { /* the power of two choices */
        uint64_t r = tg_worker_random(ex->w);
        size_t a = (size_t)(r % usable), b = (size_t)((r >> 32) % (usable - 1));
        b = b >= a ? b + 1 : b;
        if (view != NULL) { /* the two from all usable endpoints: to the front, the window after them */
            size_t ia = ex->att.ignore_health ? a : view->usable[a], ib = ex->att.ignore_health ? b : view->usable[b];
            to_front(ex, ib);
            to_front(ex, ia);
            a = 0, b = 1;
        }
        tg_health_least_first(hl, c, ex->att.order, ex->att.n_order, a, b, lb == TG_LB_PEAK_EWMA, now);
    } else if ((lb == TG_LB_ROUND_ROBIN || lb == TG_LB_RANDOM) && c->conf->slow_start_ms) {
        tg_health_slow_first(hl, c, ex->att.order, ex->att.n_order, tg_worker_random(ex->w), now);
    } else if ((lb == TG_LB_RING_HASH || lb == TG_LB_MAGLEV) && c->hash != NULL && request_hash(ex, &h)) {
        hash_first(ex, view, h);
    }
    return 0;
}

/* Open connections to the cluster's endpoints, all workers (max_connections):
 * a pass over the endpoints, so asked only when a new connection would be
 * made (no_connect), never for a request a pooled connection takes. */
static uint64_t cluster_connections(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    uint64_t n = 0;
    for (size_t j = 0; j < c->n_endpoints; j++)
        n += tg_health_connections(tg_worker_health(ex->w), c->endpoints[j].slot);
    return n;
}

static int over_max_pending(const tg_cluster_t *c)
{
    return c->conf->max_pending != 0 &&
           atomic_load_explicit(&c->load->pending, memory_order_relaxed) >= c->conf->max_pending;
}

/* tg_up_target_t.no_connect: the cluster's breakers, for a new connection. */
static int no_connect(void *arg)
{
    tg_exchange_t *ex = arg;
    const tg_cluster_conf_t *cc = ex->cluster->conf;
    return over_max_pending(ex->cluster) || (cc->max_connections != 0 && cluster_connections(ex) >= cc->max_connections);
}

/* Circuit breaking: the request is refused at once, 503 (gRPC
 * UNAVAILABLE) with x-tollgate-overloaded, counted by cause. */
static void overloaded(tg_exchange_t *ex, tg_cb_cause_t cause)
{
    static const char *const why[TG_CB_N] = {
        [TG_CB_MAX_CONNECTIONS] = "cluster max_connections reached",
        [TG_CB_MAX_PENDING] = "cluster max_pending reached",
        [TG_CB_MAX_REQUESTS] = "cluster max_requests reached",
    };
    tg_counter_add(&route_stats(ex)->overloaded[cause], 1);
    tg_headers_add(&ex->fx.reply_headers, &ex->arena, "x-tollgate-overloaded", 21, "true", 4);
    ex->att.ep = NULL;
    report(ex, ATT_BACKOFF, 0, NULL);
    report(ex, ATT_FAILED, 503, why[cause]);
}

/* Counts the exchange in its cluster's requests in flight, unless
 * max_requests is reached (then it is refused). 0 or -1 (replied). */
int tg_ex_admit(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    unsigned max = c->conf->max_requests;
    unsigned n = atomic_fetch_add_explicit(&c->load->requests, 1, memory_order_relaxed);
    ex->att.cb_request = 1;
    if (max != 0 && n >= max) {
        tg_ex_leave(ex);
        overloaded(ex, TG_CB_MAX_REQUESTS);
        return -1;
    }
    return 0;
}

void tg_ex_leave(tg_exchange_t *ex)
{
    if (ex->att.cb_request) {
        atomic_fetch_sub_explicit(&ex->cluster->load->requests, 1, memory_order_relaxed);
        ex->att.cb_request = 0;
    }
}

/* Tries the next endpoint of the exchange's order. */
void tg_ex_try_next_endpoint(tg_exchange_t *ex)
{
    tg_cluster_t *c = ex->cluster;
    const tg_cluster_conf_t *cc = c->conf;
    for (;;) {
        while (ex->att.attempts < ex->att.n_order) {
            ex->att.ep = &c->endpoints[ex->att.order[ex->att.attempts++]];
            ex->att.tried++;
            ex->req_sent = 0; /* per-attempt state; the body is still in body_buf */
            ex->att.body_started = 0;
            ex->att.last_ep = ex->att.ep;
            ex->att.t_connect = tg_loop_now_us(tg_worker_loop(ex->w));
            ex->att.connect_us = 0;
            ex->att.up_refused = 0;
            /* A body that is not all here could not be replayed should a
             * pooled connection turn out stale: it gets a new connection. */
            tg_up_target_t t = {
                .w = ex->w,
                .snap = ex->snap,
                .cl = c,
                .ep = ex->att.ep,
                .resp = &ex->resp,
                .arena = &ex->arena,
                .may_reuse = ex->req_done && !ex->att.req_sent_any,
                .cb = on_upstream,
                .arg = ex,
            };
            int fresh = 0, over_pending = over_max_pending(c);
            t.no_connect = cc->max_pending || cc->max_connections ? no_connect : NULL;
            ex->att.up_ops = c->up_ops;
            errno = 0;
            if ((ex->att.up = ex->att.up_ops->open(&t, &fresh)) == NULL && errno == EBUSY) {
                int conns = cc->max_connections != 0 && cluster_connections(ex) >= cc->max_connections;
                overloaded(ex, conns ? TG_CB_MAX_CONNECTIONS : TG_CB_MAX_PENDING);
                return;
            }
            if (ex->att.up != NULL && fresh && over_pending) { /* joined a connection still opening (HTTP/2) */
                tg_ex_release_upstream(ex, 0);
                overloaded(ex, TG_CB_MAX_PENDING);
                return;
            }
            if (ex->att.up != NULL && fresh) {
                atomic_fetch_add_explicit(&c->load->pending, 1, memory_order_relaxed);
                ex->att.cb_pending = 1;
            }
            if (ex->att.up == NULL) {
                tg_warn("upstream %s: connect failed", ex->att.ep->label);
                tg_counter_add(&ep_stats(ex)->connect_failures, 1);
                report_health(ex, 0);
                ex->att.last_error = UP_CONNECT_FAILED;
                continue;
            }
            ex->att.up_fresh = fresh != 0;
            if (cc->lb == TG_LB_LEAST_REQUEST || cc->lb == TG_LB_PEAK_EWMA) {
                tg_health_inflight_add(tg_worker_health(ex->w), ex->att.ep->slot, 1);
                ex->att.inflight_ep = ex->att.ep;
            }
            if (fresh)
                report(ex, ATT_CONNECTING, 0, NULL);
            else
                on_connected(ex);
            return;
        }
        if (ex->att.tried > 0 || ex->att.ignore_health || !c->conf->all_unhealthy_try_all)
            break;
        ex->att.ignore_health = 1; /* every endpoint is unhealthy: try them all anyway */
        if (tg_ex_build_order(ex) < 0)
            break;
    }
    if (ex->att.tried > 0) {
        unsigned cond = ex->att.last_error == UP_RESET ? TG_RETRY_RESET : TG_RETRY_CONNECT_FAILURE;
        if (ex->att.last_error == UP_CONNECT_TIMEOUT)
            cond |= TG_RETRY_TIMEOUT;
        if (schedule_retry(ex, cond))
            return;
    }
    ex->att.ep = NULL;
    report(ex, ATT_BACKOFF, 0, NULL);
    if (ex->att.tried == 0)
        report(ex, ATT_FAILED, 503, "no healthy upstream endpoint");
    else if (ex->att.last_error == UP_CONNECT_TIMEOUT)
        report(ex, ATT_FAILED, 504, "upstream connect timed out");
    else if (ex->att.last_error == UP_RESET)
        report(ex, ATT_FAILED, 502, "upstream connection failed");
    else
        report(ex, ATT_FAILED, 503, "no upstream endpoint available");
}

void tg_ex_on_retry_timer(tg_timer_t *t)
{
    tg_exchange_t *ex = TG_CONTAINER_OF(t, tg_exchange_t, att.retry_timer);
    ex->att.rr += 1; /* start the new round on another endpoint */
    if (tg_ex_build_order(ex) < 0) {
        report(ex, ATT_FAILED, 500, "out of memory");
        return;
    }
    tg_ex_try_next_endpoint(ex);
}
