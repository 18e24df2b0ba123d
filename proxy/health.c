/*
 * proxy/health.c — see health.h.
 */
#include "proxy/health.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/arena.h"
#include "proxy/h1_codec.h"
#include "proxy/log.h"
#include "proxy/snapshot.h"
#include "proxy/sock.h"

tg_health_t *tg_health_new(void)
{
    return calloc(1, sizeof(tg_health_t));
}

void tg_health_free(tg_health_t *h)
{
    free(h);
}

uint64_t tg_health_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int tg_health_usable(tg_health_t *h, size_t slot, uint64_t now_ms)
{
    tg_endpoint_health_t *e = &h->ep[slot];
    return !atomic_load_explicit(&e->active_down, memory_order_relaxed) &&
           atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) <= now_ms;
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
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(p->timer, &tv);
}

static void probe_done(probe_t *p, int ok, const char *why)
{
    tg_endpoint_health_t *e = &p->hc->health->ep[p->ep->slot];
    const tg_health_check_conf_t *hc = &p->cluster->conf->health_check;
    if (p->sock != NULL) {
        tg_sock_free(p->sock);
        p->sock = NULL;
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

static void on_probe(tg_sock_t *s, int events, void *arg)
{
    probe_t *p = arg;
    if (events & TG_SOCK_ERROR) {
        probe_done(p, 0, "connect or I/O error");
        return;
    }
    if (events & TG_SOCK_TIMEOUT) {
        probe_done(p, 0, "timeout");
        return;
    }
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

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
    probe_t *p = arg;
    const tg_endpoint_t *ep = p->ep;
    tg_h1_reader_init(&p->reader, HTTP_RESPONSE);
    p->sock = tg_cluster_connect(p->cluster, ep, p->hc->loop);
    if (p->sock == NULL) {
        probe_done(p, 0, "connect failed");
        return;
    }
    tg_sock_set_cb(p->sock, on_probe, p);
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
        if (p->timer)
            event_free(p->timer);
        tg_arena_free(&p->arena);
    }
    free(c->probes);
    tg_sock_loop_free(c->loop);
    tg_snapshot_unref(c->snap);
    free(c);
}
