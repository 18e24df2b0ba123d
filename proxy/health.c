/*
 * proxy/health.c — see health.h.
 */
#include "proxy/health.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/base/arena.h"
#include "proxy/h1_codec.h"
#include "proxy/base/log.h"
#include "proxy/snapshot.h"
#include "proxy/sock.h"
#include "proxy/base/timer.h"

tg_health_t *tg_health_new(void)
{
    return calloc(1, sizeof(tg_health_t));
}

void tg_health_free(tg_health_t *h)
{
    free(h);
}

void tg_health_reset(tg_health_t *h, size_t slot)
{
    if (slot >= TG_STATS_MAX_ENDPOINTS)
        return;
    tg_endpoint_health_t *e = &h->ep[slot];
    atomic_store(&e->active_down, 0);
    atomic_store(&e->failures, 0);
    atomic_store(&e->ejected_until_ms, 0);
    atomic_store(&e->ejections, 0);
    atomic_store(&e->ejections_total, 0);
    atomic_store_explicit(&e->checks_ok, 0, memory_order_relaxed);
    atomic_store_explicit(&e->checks_failed, 0, memory_order_relaxed);
    e->streak_ok = e->streak_fail = 0;
}

int tg_health_usable(tg_health_t *h, size_t slot, uint64_t now_ms)
{
    tg_endpoint_health_t *e = &h->ep[slot];
    return !atomic_load_explicit(&e->active_down, memory_order_relaxed) &&
           atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) <= now_ms;
}

const char *tg_health_state(tg_health_t *h, size_t slot, uint64_t now_ms, uint64_t *left_ms)
{
    tg_endpoint_health_t *e = &h->ep[slot];
    uint64_t until = atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed);
    *left_ms = until > now_ms ? until - now_ms : 0;
    if (atomic_load_explicit(&e->active_down, memory_order_relaxed))
        return "down";
    return until > now_ms ? "ejected" : "up";
}

static void reverse(size_t *a, size_t from, size_t to)
{
    while (from + 1 < to) {
        size_t t = a[from];
        a[from++] = a[--to];
        a[to] = t;
    }
}

size_t tg_health_order(tg_health_t *h, const tg_cluster_t *c, unsigned draw, int ignore_health, uint64_t now_ms,
                       size_t *order)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_endpoints; i++) /* one pass: health may change meanwhile */
        if (ignore_health || tg_health_usable(h, c->endpoints[i].slot, now_ms))
            order[k++] = i;
    if (k > 1) { /* rotate left by the draw: three reversals */
        size_t shift = draw % k;
        if (c->schedule != NULL) { /* weighted: the draw's endpoint first, or the next usable one after it */
            size_t want = c->schedule[draw % c->n_schedule];
            for (shift = 0; shift < k && order[shift] < want; shift++)
                ;
            shift %= k;
        }
        reverse(order, 0, shift);
        reverse(order, shift, k);
        reverse(order, 0, k);
    }
    return k;
}

void tg_health_report(tg_health_t *h, const tg_cluster_t *c, const tg_endpoint_t *ep, int ok, uint64_t now_ms)
{
    tg_endpoint_health_t *e = &h->ep[ep->slot];
    const tg_outlier_conf_t *o = &c->conf->outlier;
    if (ok) {
        if (atomic_load_explicit(&e->failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
        if (atomic_load_explicit(&e->ejections, memory_order_relaxed) != 0 &&
            atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) <= now_ms)
            atomic_store_explicit(&e->ejections, 0, memory_order_relaxed);
        return;
    }
    if (o->consecutive_failures == 0)
        return;
    unsigned f = atomic_fetch_add_explicit(&e->failures, 1, memory_order_relaxed) + 1;
    if (f < o->consecutive_failures || atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) > now_ms)
        return;
    size_t others = 0;
    for (size_t i = 0; i < c->n_endpoints; i++)
        others += &c->endpoints[i] != ep && tg_health_usable(h, c->endpoints[i].slot, now_ms);
    if (others == 0)
        return; /* never eject the last usable endpoint */
    unsigned n = atomic_fetch_add_explicit(&e->ejections, 1, memory_order_relaxed);
    uint64_t ms = o->base_ejection_ms << (n < 20 ? n : 20);
    if (ms > o->max_ejection_ms)
        ms = o->max_ejection_ms;
    atomic_store_explicit(&e->ejected_until_ms, now_ms + ms, memory_order_relaxed);
    atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->ejections_total, 1, memory_order_relaxed);
    tg_warn("cluster '%s': endpoint %s ejected for %llu ms after %u consecutive failures", c->conf->name,
            ep->conf->address, (unsigned long long)ms, f);
}

/* ---- active checks ---- */

typedef struct probe {
    struct tg_health_checker *hc;
    const tg_cluster_t *cluster;
    const tg_endpoint_t *ep;
    struct event *timer;
    tg_sock_t *sock;
    tg_arena_t arena;
    tg_h1_reader_t reader;
    /* gRPC checks: a one-request HTTP/2 session per probe */
    nghttp2_session *h2;
    int grpc_status;           /* -1 until seen */
    unsigned char msg[64];     /* the (framed) HealthCheckResponse */
    size_t msg_len;
    const char *result;        /* set when the stream closed: NULL healthy, else why not */
    int closed;
} probe_t;

struct tg_health_checker {
    tg_snapshot_t *snap;
    tg_health_t *health;
    tg_sock_loop_t *loop;
    struct event_base *base;
    probe_t *probes;
    size_t n;
};

static void schedule(probe_t *p, uint64_t ms)
{
    tg_timer_arm_ms(p->timer, ms);
}

static void probe_done(probe_t *p, int ok, const char *why)
{
    tg_endpoint_health_t *e = &p->hc->health->ep[p->ep->slot];
    const tg_health_check_conf_t *hc = &p->cluster->conf->health_check;
    if (p->sock != NULL) {
        tg_sock_free(p->sock);
        p->sock = NULL;
    }
    if (p->h2 != NULL) {
        nghttp2_session_del(p->h2);
        p->h2 = NULL;
    }
    tg_arena_reset(&p->arena);
    if (ok) {
        tg_counter_add(&e->checks_ok, 1);
        e->streak_fail = 0;
        if (++e->streak_ok >= hc->healthy_threshold && atomic_load(&e->active_down)) {
            atomic_store(&e->active_down, 0);
            tg_info("cluster '%s': endpoint %s is healthy again", p->cluster->conf->name, p->ep->conf->address);
        }
    } else {
        tg_counter_add(&e->checks_failed, 1);
        e->streak_ok = 0;
        if (++e->streak_fail >= hc->unhealthy_threshold && !atomic_load(&e->active_down)) {
            atomic_store(&e->active_down, 1);
            tg_warn("cluster '%s': endpoint %s is unhealthy: %s", p->cluster->conf->name, p->ep->conf->address, why);
        }
    }
    schedule(p, hc->interval_ms);
}

/* The socket failed or timed out: the probe is over, unhealthy. */
static int probe_failed(probe_t *p, int events)
{
    if (events & (TG_SOCK_ERROR | TG_SOCK_TIMEOUT)) {
        probe_done(p, 0, (events & TG_SOCK_ERROR) ? "connect or I/O error" : "timeout");
        return 1;
    }
    return 0;
}

static void on_probe(tg_sock_t *s, int events, void *arg)
{
    probe_t *p = arg;
    if (probe_failed(p, events))
        return;
    if (events & TG_SOCK_CONNECTED) {
        const tg_health_check_conf_t *hc = &p->cluster->conf->health_check;
        evbuffer_add_printf(tg_sock_out(s),
                            "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tollgate-health-check\r\n"
                            "Connection: close\r\n\r\n",
                            hc->path, hc->host ? hc->host : p->ep->conf->address);
        tg_sock_flush(s);
        return;
    }
    if (events & (TG_SOCK_READ | TG_SOCK_EOF)) {
        tg_response_t resp;
        memset(&resp, 0, sizeof(resp));
        tg_h1_result_t r = tg_h1_read_response_head(&p->reader, tg_sock_in(s), 16384, &p->arena, &resp, 0);
        if (r == TG_H1_OK)
            probe_done(p, resp.status >= 200 && resp.status < 300, "non-2xx answer");
        else if (r == TG_H1_ERROR || (events & TG_SOCK_EOF))
            probe_done(p, 0, "malformed or no answer");
    }
}

/* ---- gRPC health checks: grpc.health.v1.Health/Check over HTTP/2 ---- */

static ssize_t h2p_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    probe_t *p = arg;
    return evbuffer_add(tg_sock_out(p->sock), data, len) == 0 ? (ssize_t)len : NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int h2p_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                      const uint8_t *value, size_t vl, uint8_t flags, void *arg)
{
    probe_t *p = arg;
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
        p->grpc_status = vl > 0 && vl < 4 ? atoi((const char *)value) : 2;
    return 0;
}

static int h2p_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *arg)
{
    probe_t *p = arg;
    size_t room = sizeof(p->msg) - p->msg_len, n = len < room ? len : room;
    memcpy(p->msg + p->msg_len, data, n);
    p->msg_len += n;
    return 0;
}

static int h2p_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
    probe_t *p = arg;
    p->closed = 1;
    /* healthy: grpc-status 0 and HealthCheckResponse.status (field 1) = SERVING (1) */
    if (code != 0)
        p->result = "stream reset";
    else if (p->grpc_status != 0)
        p->result = p->grpc_status < 0 ? "no grpc-status" : "grpc-status not OK";
    else if (p->msg_len < 7 || p->msg[5] != 0x08 || p->msg[6] != 0x01)
        p->result = "not SERVING";
    else
        p->result = NULL;
    return 0;
}

static ssize_t h2p_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *arg)
{
    probe_t *p = arg;
    const char *svc = p->cluster->conf->health_check.service;
    size_t sl = strlen(svc) > 100 ? 100 : strlen(svc), n = sl ? 7 + sl : 5;
    if (len < n)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    /* one gRPC message: HealthCheckRequest { string service = 1; } */
    buf[0] = 0;
    buf[1] = buf[2] = buf[3] = 0;
    buf[4] = (uint8_t)(n - 5);
    if (sl) {
        buf[5] = 0x0a;
        buf[6] = (uint8_t)sl;
        memcpy(buf + 7, svc, sl);
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int grpc_probe_start(probe_t *p)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return -1;
    nghttp2_session_callbacks_set_send_callback(cb, h2p_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2p_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2p_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2p_close);
    int rv = nghttp2_session_client_new(&p->h2, cb, p);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return -1;
    p->grpc_status = -1;
    p->msg_len = 0;
    p->closed = 0;
    const char *scheme = p->cluster->tls ? "https" : "http";
    const char *auth = p->cluster->conf->health_check.host ? p->cluster->conf->health_check.host
                                                             : p->ep->conf->address;
    nghttp2_nv nv[] = {
        { (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
        { (uint8_t *)":scheme", (uint8_t *)scheme, 7, strlen(scheme), 0 },
        { (uint8_t *)":authority", (uint8_t *)auth, 10, strlen(auth), 0 },
        { (uint8_t *)":path", (uint8_t *)"/grpc.health.v1.Health/Check", 5, 28, 0 },
        { (uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0 },
        { (uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0 },
        { (uint8_t *)"user-agent", (uint8_t *)"tollgate-health-check", 10, 21, 0 },
    };
    nghttp2_data_provider prd = { .read_callback = h2p_body };
    if (nghttp2_submit_settings(p->h2, NGHTTP2_FLAG_NONE, NULL, 0) != 0 ||
        nghttp2_submit_request(p->h2, NULL, nv, sizeof(nv) / sizeof(nv[0]), &prd, NULL) < 0)
        return -1;
    return 0;
}

/* Runs the probe's session over its socket; returns 1 when it finished. */
static int grpc_probe_io(probe_t *p)
{
    struct evbuffer *in = tg_sock_in(p->sock);
    size_t len = evbuffer_get_length(in);
    if (len > 0) {
        ssize_t n = nghttp2_session_mem_recv(p->h2, evbuffer_pullup(in, (ev_ssize_t)len), len);
        evbuffer_drain(in, len);
        tg_sock_consumed(p->sock);
        if (n < 0) {
            probe_done(p, 0, "HTTP/2 error");
            return 1;
        }
    }
    if (nghttp2_session_send(p->h2) != 0) {
        probe_done(p, 0, "HTTP/2 error");
        return 1;
    }
    tg_sock_flush(p->sock);
    if (p->closed) {
        probe_done(p, p->result == NULL, p->result ? p->result : "");
        return 1;
    }
    return 0;
}

static void on_grpc_probe(tg_sock_t *s, int events, void *arg)
{
    probe_t *p = arg;
    if (probe_failed(p, events))
        return;
    if ((events & TG_SOCK_CONNECTED) && grpc_probe_start(p) < 0) {
        probe_done(p, 0, "out of memory");
        return;
    }
    if (p->h2 != NULL && grpc_probe_io(p))
        return;
    if (events & TG_SOCK_EOF)
        probe_done(p, 0, "connection closed before an answer");
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
    probe_t *p = arg;
    const tg_endpoint_t *ep = p->ep;
    tg_h1_reader_init(&p->reader, TG_H1_RESPONSE);
    p->sock = tg_cluster_connect(p->cluster, ep, p->hc->loop);
    if (p->sock == NULL) {
        probe_done(p, 0, "connect failed");
        return;
    }
    tg_sock_set_cb(p->sock, p->cluster->conf->health_check.grpc ? on_grpc_probe : on_probe, p);
    tg_sock_set_timeout(p->sock, p->cluster->conf->health_check.timeout_ms);
}

tg_health_checker_t *tg_health_checker_start(struct event_base *base, tg_snapshot_t *snap, tg_health_t *h)
{
    tg_health_checker_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->snap = tg_snapshot_ref(snap);
    c->health = h;
    c->base = base;
    size_t n = 0;
    for (size_t i = 0; i < snap->clusters->n_clusters; i++)
        if (snap->clusters->clusters[i].conf->health_check.enabled)
            n += snap->clusters->clusters[i].n_endpoints;
    c->probes = calloc(n ? n : 1, sizeof(*c->probes));
    if (c->probes == NULL || (c->loop = tg_sock_loop_new(base)) == NULL) {
        tg_health_checker_free(c);
        return NULL;
    }
    for (size_t i = 0; i < snap->clusters->n_clusters; i++) {
        const tg_cluster_t *cl = &snap->clusters->clusters[i];
        if (!cl->conf->health_check.enabled)
            continue;
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            probe_t *p = &c->probes[c->n];
            p->hc = c;
            p->cluster = cl;
            p->ep = &cl->endpoints[j];
            tg_arena_init(&p->arena);
            if ((p->timer = evtimer_new(base, on_probe_timer, p)) == NULL) {
                tg_health_checker_free(c);
                return NULL;
            }
            c->n++;
            schedule(p, 10 * j); /* first round at once, slightly spread */
        }
    }
    return c;
}

void tg_health_checker_free(tg_health_checker_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        probe_t *p = &c->probes[i];
        if (p->sock)
            tg_sock_free(p->sock);
        if (p->h2)
            nghttp2_session_del(p->h2);
        if (p->timer)
            event_free(p->timer);
        tg_arena_free(&p->arena);
    }
    free(c->probes);
    tg_sock_loop_free(c->loop);
    tg_snapshot_unref(c->snap);
    free(c);
}
