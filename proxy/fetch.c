/*
 * proxy/fetch.c — a worker's own HTTP requests. See fetch.h.
 */
#include "proxy/fetch.h"
#include "proxy/base/loop.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "proxy/base/arena.h"
#include "proxy/base/clock.h"
#include "proxy/base/fnv.h"
#include "proxy/health.h"
#include "proxy/upstream.h"

#define MAX_TRIES 3

struct tg_fetch {
    LIST_ENTRY(tg_fetch) link;  /* the worker's fetches in flight */
    tg_worker_t *w;
    tg_snapshot_t *snap;
    const tg_cluster_t *cl;     /* of snap; NULL: no such cluster */
    const tg_endpoint_t *ep;    /* of the attempt in flight */
    void *up;                   /* the attempt (NULL: none) */
    tg_arena_t arena;           /* the request as sent, the answer's head */
    tg_request_t req;
    tg_response_t resp;
    const char *authority;
    const char *body;           /* arena copy */
    size_t body_len, max_body;
    struct evbuffer *answer;
    size_t *order, n_order, tried;
    tg_timer_t deadline;        /* the whole call's timeout */
    tg_deferred_t finish;       /* delivers the result outside start() */
    tg_deferred_t kick;         /* deferred: the first attempt, on the loop's next turn */
    tg_filter_call_cb cb;
    void *arg;
    size_t seen;                /* digest_body: the body's bytes so far, and their digest */
    uint64_t digest;
    int status;                 /* the result, once known */
    const char *error;
    char why[160];
    unsigned head : 1, done : 1, grpc : 1, digest_body : 1, listed : 1;
};

typedef struct fetch_worker {
    LIST_HEAD(, tg_fetch) live;
} fetch_worker_t;

static void fetch_free(tg_fetch_t *f)
{
    if (f->listed)
        LIST_REMOVE(f, link);
    if (f->up != NULL)
        f->cl->up_ops->release(f->up, 0);
    tg_timer_cancel(&f->deadline);
    tg_defer_cancel(&f->finish);
    tg_defer_cancel(&f->kick);
    if (f->answer != NULL)
        evbuffer_free(f->answer);
    tg_arena_free(&f->arena);
    tg_snapshot_unref(f->snap);
    free(f);
}

static void on_finish(tg_deferred_t *d)
{
    tg_fetch_t *f = TG_CONTAINER_OF(d, tg_fetch_t, finish);
    tg_filter_call_result_t r = {
        .status = f->status, .error = f->error, .headers = &f->resp.headers, .trailers = &f->resp.trailers
    };
    if (f->status != 0 && f->digest_body) {
        r.body = "";
        r.body_len = f->seen;
        r.body_digest = f->digest;
    } else if (f->status != 0) {
        r.body_len = evbuffer_get_length(f->answer);
        r.body = r.body_len ? (const char *)evbuffer_pullup(f->answer, -1) : "";
        if (r.body == NULL) {
            r = (tg_filter_call_result_t){
                .error = "out of memory", .headers = &f->resp.headers, .trailers = &f->resp.trailers
            };
        }
    }
    f->cb(f->arg, &r);
    fetch_free(f);
}

/* The result is known: the attempt goes (clean: its connection may serve
 * again), the callback runs from the loop. */
static void finish(tg_fetch_t *f, int status, int clean, const char *error)
{
    if (f->done)
        return;
    f->done = 1;
    f->status = status;
    if (error != NULL && error != f->why) {
        snprintf(f->why, sizeof(f->why), "%s", error);
        error = f->why;
    }
    f->error = error;
    if (f->up != NULL) {
        f->cl->up_ops->release(f->up, clean);
        f->up = NULL;
    }
    tg_timer_cancel(&f->deadline);
    tg_defer(tg_worker_loop(f->w), &f->finish);
}

static void on_deadline(tg_timer_t *t)
{
    finish(TG_CONTAINER_OF(t, tg_fetch_t, deadline), 0, 0, "timeout");
}

static void try_next(tg_fetch_t *f, const char *why);

static void send_request(tg_fetch_t *f)
{
    const tg_upstream_ops_t *ops = f->cl->up_ops;
    tg_up_request_t r = {
        .req = &f->req,
        .authority = f->authority ? f->authority : f->ep->conf->address,
        .end_stream = f->body == NULL,
        .te_trailers = f->grpc,
    };
    struct evbuffer *b = NULL;
    if (ops->start(f->up, &r) != 0 ||
        (f->body != NULL && ((b = evbuffer_new()) == NULL || evbuffer_add(b, f->body, f->body_len) < 0 ||
                             ops->write(f->up, b, 0) < 0 || ops->end(f->up) < 0))) {
        if (b != NULL)
            evbuffer_free(b);
        finish(f, 0, 0, "could not send the request");
        return;
    }
    if (b != NULL)
        evbuffer_free(b);
    ops->flush(f->up);
}

static void read_body(tg_fetch_t *f)
{
    const tg_upstream_ops_t *ops = f->cl->up_ops;
    for (;;) {
        int fin = 0;
        ssize_t n = ops->read(f->up, f->answer, f->digest_body ? 65536 : f->max_body + 1, &fin);
        if (n < 0) {
            finish(f, 0, 0, "malformed answer body");
            return;
        }
        if (f->digest_body) { /* digested and dropped as it comes */
            f->digest = tg_fnv1a64_evbuffer(f->digest, f->answer);
            f->seen += evbuffer_get_length(f->answer);
            evbuffer_drain(f->answer, evbuffer_get_length(f->answer));
        } else if (evbuffer_get_length(f->answer) > f->max_body) {
            finish(f, 0, 0, "answer longer than its bound");
            return;
        }
        if (fin) {
            tg_health_report(tg_worker_health(f->w), f->cl, f->ep, f->resp.status < 500, tg_clock_ms());
            finish(f, f->resp.status, 1, NULL);
            return;
        }
        if (n == 0)
            return;
    }
}

static void on_upstream(void *arg, int events)
{
    tg_fetch_t *f = arg;
    const tg_upstream_ops_t *ops = f->cl->up_ops;
    if (events & TG_UP_ERROR) {
        const char *why = NULL;
        long code;
        tg_up_cause_t cause = ops->error(f->up, &why, &code);
        int unseen = cause == TG_UP_CAUSE_CONNECT_FAILED || cause == TG_UP_CAUSE_REFUSED ||
                     (cause == TG_UP_CAUSE_RESET && ops->reused(f->up) && !f->head && f->body == NULL);
        snprintf(f->why, sizeof(f->why), "%s: %s", f->ep->label, why ? why : "connect or I/O error");
        ops->release(f->up, 0);
        f->up = NULL;
        if (cause == TG_UP_CAUSE_CONNECT_FAILED)
            tg_health_report(tg_worker_health(f->w), f->cl, f->ep, 0, tg_clock_ms());
        if (unseen && !f->head)
            try_next(f, f->why);
        else
            finish(f, 0, 0, f->why);
        return;
    }
    if (events & TG_UP_CONNECTED) {
        send_request(f);
        return;
    }
    if ((events & TG_UP_HEAD) && !f->head)
        f->head = 1;
    if ((events & (TG_UP_HEAD | TG_UP_DATA)) && f->head)
        read_body(f);
}

/* The next endpoint of the order, or the end with why. */
static void try_next(tg_fetch_t *f, const char *why)
{
    while (f->tried < f->n_order && f->tried < MAX_TRIES) {
        f->ep = &f->cl->endpoints[f->order[f->tried++]];
        memset(&f->resp, 0, sizeof(f->resp));
        tg_up_target_t t = {
            .w = f->w,
            .snap = f->snap,
            .cl = f->cl,
            .ep = f->ep,
            .resp = &f->resp,
            .arena = &f->arena,
            .may_reuse = 1,
            .cb = on_upstream,
            .arg = f,
        };
        int fresh = 0;
        if ((f->up = f->cl->up_ops->open(&t, &fresh)) == NULL) {
            snprintf(f->why, sizeof(f->why), "%s: connect failed", f->ep->label);
            why = f->why;
            continue;
        }
        if (!fresh)
            send_request(f);
        return;
    }
    finish(f, 0, 0, why);
}

static void on_kick(tg_deferred_t *d)
{
    try_next(TG_CONTAINER_OF(d, tg_fetch_t, kick), "no endpoint");
}

static const char *copy(tg_arena_t *a, const char *s)
{
    return s ? tg_arena_strndup(a, s, strlen(s)) : NULL;
}

tg_fetch_t *tg_fetch_start(tg_worker_t *w, tg_snapshot_t *snap, const tg_filter_call_t *c, tg_filter_call_cb cb,
                           void *arg)
{
    tg_fetch_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->w = w;
    fetch_worker_t *fw = tg_worker_state(w, TG_WMOD_FETCH);
    if (fw != NULL) { /* a worker without the module (a test's) ends its fetches itself */
        LIST_INSERT_HEAD(&fw->live, f, link);
        f->listed = 1;
    }
    f->snap = tg_snapshot_ref(snap);
    f->cb = cb;
    f->arg = arg;
    f->max_body = c->max_body;
    f->grpc = c->grpc != 0;
    f->digest_body = c->digest_body != 0;
    f->digest = TG_FNV1A64_INIT;
    tg_arena_init(&f->arena);
    f->deadline.fn = on_deadline;
    f->finish.fn = on_finish;
    f->kick.fn = on_kick;
    if ((f->answer = evbuffer_new()) == NULL) {
        fetch_free(f);
        return NULL;
    }
    const tg_cluster_set_t *cs = snap->clusters;
    for (size_t i = 0; i < cs->n_clusters && f->cl == NULL; i++)
        if (strcmp(cs->clusters[i].conf->name, c->cluster) == 0)
            f->cl = &cs->clusters[i];
    if (f->cl == NULL || f->cl->up_ops == NULL || f->cl->n_endpoints == 0) {
        finish(f, 0, 0, f->cl == NULL ? "no such cluster" : "the cluster has no endpoint");
        return f;
    }
    tg_request_t *req = &f->req;
    req->version = 11;
    req->keep_alive = 1;
    req->method = copy(&f->arena, c->method);
    req->target = copy(&f->arena, c->path);
    req->path_len = req->target ? strcspn(req->target, "?") : 0;
    req->body = c->body ? TG_BODY_LENGTH : TG_BODY_NONE;
    req->content_length = c->body ? c->body_len : 0;
    f->authority = copy(&f->arena, c->authority);
    int bad = req->method == NULL || req->target == NULL;
    int own_agent = 0;
    for (size_t i = 0; i < c->n_headers; i++)
        own_agent |= strcmp(c->headers[2 * i], "user-agent") == 0;
    if (!own_agent)
        tg_headers_add(&req->headers, &f->arena, "user-agent", 10, "tollgate", 8);
    for (size_t i = 0; i < c->n_headers && !bad; i++) {
        const char *n = c->headers[2 * i], *v = c->headers[2 * i + 1];
        bad = tg_headers_add(&req->headers, &f->arena, copy(&f->arena, n), strlen(n), copy(&f->arena, v), strlen(v)) < 0;
    }
    if (c->body != NULL) {
        char *b = tg_arena_alloc(&f->arena, c->body_len + 1);
        if (b != NULL)
            memcpy(b, c->body, c->body_len);
        f->body = b;
        f->body_len = c->body_len;
        bad |= b == NULL;
    }
    size_t n = f->cl->n_endpoints;
    if (bad || (f->order = tg_arena_alloc(&f->arena, n * sizeof(size_t))) == NULL) {
        finish(f, 0, 0, "out of memory");
        return f;
    }
    tg_health_t *h = tg_worker_health(w);
    unsigned draw = tg_cluster_rr_next((tg_cluster_t *)f->cl);
    if ((f->n_order = tg_health_order(h, f->cl, draw, 0, tg_clock_ms(), f->order)) == 0 && !c->usable_only)
        f->n_order = tg_health_order(h, f->cl, draw, 1, tg_clock_ms(), f->order); /* none usable: try them all */
    if (f->n_order == 0) {
        finish(f, 0, 0, "no usable endpoint");
        return f;
    }
    if (c->timeout_ms && tg_timer_set(tg_worker_loop(w), &f->deadline, c->timeout_ms) < 0) {
        finish(f, 0, 0, "out of memory");
        return f;
    }
    if (c->deferred)
        tg_defer(tg_worker_loop(w), &f->kick);
    else
        try_next(f, "no endpoint");
    return f;
}

void tg_fetch_cancel(tg_fetch_t *f)
{
    fetch_free(f);
}

/* ---- per worker ---- */

static int module_init(tg_worker_t *w)
{
    fetch_worker_t *fw = calloc(1, sizeof(*fw));
    if (fw == NULL)
        return -1;
    LIST_INIT(&fw->live);
    tg_worker_set_state(w, TG_WMOD_FETCH, fw);
    return 0;
}

/* Teardown: every call still out ends now, its callback told why. */
static void module_free(tg_worker_t *w)
{
    fetch_worker_t *fw = tg_worker_state(w, TG_WMOD_FETCH);
    if (fw == NULL)
        return;
    tg_fetch_t *f;
    while ((f = LIST_FIRST(&fw->live)) != NULL) {
        tg_filter_call_result_t r = { .error = "the worker is stopping", .headers = &f->resp.headers,
                                      .trailers = &f->resp.trailers };
        f->cb(f->arg, &r);
        fetch_free(f);
    }
    free(fw);
    tg_worker_set_state(w, TG_WMOD_FETCH, NULL);
}

const tg_worker_module_t tg_fetch_module = {
    .id = TG_WMOD_FETCH,
    .init = module_init,
    .free = module_free,
};
