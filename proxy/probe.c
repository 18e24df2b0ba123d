/*
 * proxy/probe.c — active health checks on the workers. See probe.h.
 */
#include "proxy/probe.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/arena.h"
#include "proxy/base/clock.h"
#include "proxy/base/log.h"
#include "proxy/base/loop.h"
#include "proxy/health.h"
#include "proxy/upstream.h"

#define GRPC_PATH "/grpc.health.v1.Health/Check"
#define MSG_MAX 64 /* a HealthCheckResponse is a few bytes */

typedef struct prober prober_t;

typedef struct probe {
    prober_t *pr;
    const tg_cluster_t *cl;    /* of pr->snap */
    const tg_endpoint_t *ep;
    tg_timer_t timer;          /* the next probe (spread over the interval: the loop's heap) */
    void *up;                  /* the attempt in flight (NULL: none) */
    tg_arena_t arena;          /* the request's and the response's, reset after each probe */
    tg_request_t req;
    tg_response_t resp;
    struct evbuffer *body;     /* gRPC: the response message */
    unsigned head : 1;
} probe_t;

struct prober {
    tg_worker_t *w;
    tg_snapshot_t *snap;       /* the probes' (a reference) */
    probe_t *probes;
    size_t n;
};

static void schedule(probe_t *p, uint64_t ms)
{
    tg_timer_after(tg_worker_loop(p->pr->w), &p->timer, ms * 1000);
}

/* The probe is over: the attempt goes (clean: its connection may serve
 * requests), the result counts, the next one is scheduled. */
static void done(probe_t *p, int ok, int clean, const char *why)
{
    const tg_health_check_conf_t *hc = &p->cl->conf->health_check;
    tg_endpoint_health_t *e = tg_health_ep(tg_worker_health(p->pr->w), p->ep->slot);
    if (p->up != NULL) {
        p->cl->up_ops->release(p->up, clean);
        p->up = NULL;
    }
    evbuffer_drain(p->body, evbuffer_get_length(p->body));
    tg_arena_reset(&p->arena);
    unsigned down = atomic_load(&e->active_down);
    if (ok) {
        tg_counter_add(&e->checks_ok, 1);
        e->streak_fail = 0;
        if (down == TG_HEALTH_UNCHECKED) { /* a new endpoint: one success lets it in */
            atomic_store(&e->since_ms, tg_clock_ms()); /* its slow start begins */
            atomic_store(&e->active_down, 0);
            tg_health_changed(tg_worker_health(p->pr->w));
            tg_info("cluster '%s': new endpoint %s passed its first check", p->cl->conf->name, p->ep->label);
        } else if (++e->streak_ok >= hc->healthy_threshold && down) {
            atomic_store(&e->since_ms, tg_clock_ms());
            atomic_store(&e->active_down, 0);
            tg_health_changed(tg_worker_health(p->pr->w));
            tg_info("cluster '%s': endpoint %s is healthy again", p->cl->conf->name, p->ep->label);
        }
    } else {
        tg_counter_add(&e->checks_failed, 1);
        e->streak_ok = 0;
        if (down == TG_HEALTH_UNCHECKED || (++e->streak_fail >= hc->unhealthy_threshold && !down)) {
            atomic_store(&e->active_down, 1);
            tg_health_changed(tg_worker_health(p->pr->w));
            tg_warn("cluster '%s': endpoint %s is unhealthy: %s", p->cl->conf->name, p->ep->label, why);
        }
    }
    /* up to a tenth of the interval later: checks that started together drift apart */
    schedule(p, hc->interval_ms + tg_worker_random(p->pr->w) % (hc->interval_ms / 10 + 1));
}

/* gRPC: HealthCheckRequest { string service = 1; } as one message. */
static int grpc_request_body(probe_t *p)
{
    const char *svc = p->cl->conf->health_check.service;
    size_t sl = svc ? strlen(svc) : 0;
    if (sl > 100)
        sl = 100;
    unsigned char head[7] = { 0, 0, 0, 0, (unsigned char)(sl ? sl + 2 : 0), 0x0a, (unsigned char)sl };
    struct evbuffer *b = evbuffer_new();
    int rc = b == NULL || evbuffer_add(b, head, sl ? 7 : 5) < 0 || (sl && evbuffer_add(b, svc, sl) < 0) ||
                     p->cl->up_ops->write(p->up, b, 0) < 0
                 ? -1
                 : 0;
    if (b != NULL)
        evbuffer_free(b);
    return rc;
}

/* The connection (or stream) is ready: the request goes. */
static void send_request(probe_t *p)
{
    const tg_health_check_conf_t *hc = &p->cl->conf->health_check;
    const tg_upstream_ops_t *ops = p->cl->up_ops;
    tg_request_t *req = &p->req;
    memset(req, 0, sizeof(*req));
    req->version = 11;
    req->keep_alive = 1;
    req->method = hc->grpc ? "POST" : "GET";
    req->target = hc->grpc ? GRPC_PATH : hc->path;
    req->body = hc->grpc ? TG_BODY_CHUNKED : TG_BODY_NONE;
    tg_headers_add(&req->headers, &p->arena, "user-agent", 10, "tollgate-health-check", 21);
    if (hc->grpc)
        tg_headers_add(&req->headers, &p->arena, "content-type", 12, "application/grpc", 16);
    tg_up_request_t r = {
        .req = req,
        .authority = hc->host ? hc->host : p->ep->conf->address,
        .te_trailers = hc->grpc,
        .end_stream = !hc->grpc,
        .timeout_ms = hc->timeout_ms,
    };
    if (ops->start(p->up, &r) < 0 || (hc->grpc && (grpc_request_body(p) < 0 || ops->end(p->up) < 0))) {
        done(p, 0, 0, "could not send the check");
        return;
    }
    ops->set_timeout(p->up, hc->timeout_ms);
    ops->flush(p->up);
}

/* gRPC: the whole answer is in: grpc-status 0 (trailers, or a
 * trailers-only head) and HealthCheckResponse.status (field 1) SERVING (1). */
static void grpc_verdict(probe_t *p)
{
    const tg_header_t *gs = tg_headers_get(&p->resp.trailers, "grpc-status");
    if (gs == NULL)
        gs = tg_headers_get(&p->resp.headers, "grpc-status");
    unsigned char m[7];
    ev_ssize_t got = evbuffer_copyout(p->body, m, sizeof(m));
    size_t n = got < 0 ? 0 : (size_t)got;
    if (gs == NULL)
        done(p, 0, 1, "no grpc-status");
    else if (gs->value_len != 1 || gs->value[0] != '0')
        done(p, 0, 1, "grpc-status not OK");
    else if (n < 7 || m[5] != 0x08 || m[6] != 0x01)
        done(p, 0, 1, "not SERVING");
    else
        done(p, 1, 1, NULL);
}

static void on_upstream(void *arg, int events)
{
    probe_t *p = arg;
    const tg_upstream_ops_t *ops = p->cl->up_ops;
    if (events & TG_UP_ERROR) {
        const char *why = NULL;
        long code;
        ops->error(p->up, &why, &code);
        char buf[160]; /* the message lives with the attempt, which goes first */
        snprintf(buf, sizeof(buf), "%s", why ? why : "connect or I/O error");
        done(p, 0, 0, buf);
        return;
    }
    if (events & TG_UP_CONNECTED) {
        send_request(p);
        return;
    }
    if ((events & TG_UP_HEAD) && !p->head) {
        p->head = 1;
        if (!p->cl->conf->health_check.grpc) {
            done(p, p->resp.status >= 200 && p->resp.status < 300, 0, "non-2xx answer");
            return;
        }
        if (p->resp.status != 200) {
            done(p, 0, 0, "non-200 answer");
            return;
        }
    }
    if ((events & TG_UP_DATA) && p->head) {
        int fin = 0;
        for (;;) {
            ssize_t n = ops->read(p->up, p->body, MSG_MAX, &fin);
            if (n < 0) {
                done(p, 0, 0, "malformed answer");
                return;
            }
            if (evbuffer_get_length(p->body) > MSG_MAX) {
                done(p, 0, 0, "answer too long");
                return;
            }
            if (fin || n == 0)
                break;
        }
        if (fin)
            grpc_verdict(p);
    }
}

static void on_timer(tg_timer_t *timer)
{
    probe_t *p = TG_CONTAINER_OF(timer, probe_t, timer);
    tg_up_target_t t = {
        .w = p->pr->w,
        .snap = p->pr->snap,
        .cl = p->cl,
        .ep = p->ep,
        .resp = &p->resp,
        .arena = &p->arena,
        .may_reuse = 0, /* HTTP/1.1: a new connection each time */
        .cb = on_upstream,
        .arg = p,
    };
    int fresh = 0;
    p->head = 0;
    memset(&p->resp, 0, sizeof(p->resp));
    if ((p->up = p->cl->up_ops->open(&t, &fresh)) == NULL) {
        done(p, 0, 0, "connect failed");
        return;
    }
    if (!fresh)
        send_request(p);
}

/* ---- the module: one prober per worker ---- */

static void probes_free(prober_t *pr)
{
    for (size_t i = 0; i < pr->n; i++) {
        probe_t *p = &pr->probes[i];
        tg_timer_cancel(&p->timer);
        if (p->up != NULL)
            p->cl->up_ops->release(p->up, 0);
        if (p->body != NULL)
            evbuffer_free(p->body);
        tg_arena_free(&p->arena);
    }
    free(pr->probes);
    pr->probes = NULL;
    pr->n = 0;
    tg_snapshot_unref(pr->snap);
    pr->snap = NULL;
}

static int module_init(tg_worker_t *w)
{
    prober_t *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return -1;
    pr->w = w;
    tg_worker_set_state(w, TG_WMOD_PROBE, pr);
    return 0;
}

/* snap becomes the worker's: its probes replace the old ones (this
 * worker's share of the checked endpoints). */
/* When each probe of pr is due next, by endpoint slot (0: now — none, or
 * one in flight, which the new probe starts again): an endpoint the new
 * snapshot keeps (same slot and generation) keeps its rhythm, so a reload
 * or a DNS answer does not probe every endpoint at once. NULL: out of
 * memory, everything probed now. */
static uint64_t *due_by_slot(const prober_t *pr, size_t n_slots, unsigned **gen)
{
    uint64_t *due = calloc(n_slots ? n_slots : 1, sizeof(*due));
    *gen = calloc(n_slots ? n_slots : 1, sizeof(**gen));
    if (due == NULL || *gen == NULL) {
        free(due);
        free(*gen);
        *gen = NULL;
        return NULL;
    }
    uint64_t now = tg_clock_us();
    for (size_t i = 0; i < pr->n; i++) {
        const probe_t *p = &pr->probes[i];
        if (p->ep->slot >= n_slots || p->up != NULL || !tg_timer_pending(&p->timer))
            continue;
        uint64_t at = p->timer.deadline_us;
        due[p->ep->slot] = at > now + 1000 ? (at - now) / 1000 : 1;
        (*gen)[p->ep->slot] = p->ep->gen + 1;
    }
    return due;
}

static int module_apply(tg_worker_t *w, const tg_snapshot_t *snap)
{
    prober_t *pr = tg_worker_state(w, TG_WMOD_PROBE);
    unsigned id = tg_worker_id(w), nw = tg_worker_count(w);
    size_t n = 0;
    const tg_cluster_set_t *cs = snap->clusters;
    for (size_t i = 0; i < cs->n_clusters; i++)
        for (size_t j = 0; cs->clusters[i].conf->health_check.enabled && j < cs->clusters[i].n_endpoints; j++)
            n += cs->clusters[i].endpoints[j].slot % nw == id;
    probe_t *probes = n ? calloc(n, sizeof(*probes)) : NULL;
    if (n && probes == NULL)
        return -1;
    unsigned *gen = NULL;
    uint64_t *due = due_by_slot(pr, cs->n_slots, &gen);
    probes_free(pr);
    pr->snap = tg_snapshot_ref((tg_snapshot_t *)snap);
    pr->probes = probes;
    int rc = 0;
    for (size_t i = 0; i < cs->n_clusters && rc == 0; i++) {
        const tg_cluster_t *cl = &cs->clusters[i];
        for (size_t j = 0; cl->conf->health_check.enabled && j < cl->n_endpoints; j++) {
            const tg_endpoint_t *ep = &cl->endpoints[j];
            if (ep->slot % nw != id)
                continue;
            probe_t *p = &probes[pr->n];
            *p = (probe_t){ .pr = pr, .cl = cl, .ep = ep };
            tg_arena_init(&p->arena);
            if ((p->body = evbuffer_new()) == NULL) {
                rc = -1; /* the probes so far are kept, freed with the module */
                break;
            }
            p->timer.fn = on_timer;
            pr->n++;
            int kept = due != NULL && due[ep->slot] != 0 && gen[ep->slot] == ep->gen + 1;
            /* a new one at once, slightly spread — over one interval at most, however many there are */
            uint64_t spread = cl->conf->health_check.interval_ms * j / cl->n_endpoints;
            schedule(p, kept ? due[ep->slot] : 10 * j < spread ? 10 * j : spread);
        }
    }
    free(due);
    free(gen);
    return rc;
}

static void module_free(tg_worker_t *w)
{
    prober_t *pr = tg_worker_state(w, TG_WMOD_PROBE);
    if (pr == NULL)
        return;
    probes_free(pr);
    free(pr);
    tg_worker_set_state(w, TG_WMOD_PROBE, NULL);
}

const tg_worker_module_t tg_probe_module = {
    .id = TG_WMOD_PROBE,
    .init = module_init,
    .apply = module_apply,
    .free = module_free,
};
