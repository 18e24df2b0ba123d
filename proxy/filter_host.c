/*
 * proxy/filter_host.c — see filter_host.h.
 *
 * A call is one malloc'ed object that travels: made on the main thread,
 * posted to a worker (tg_worker_post), run there as a fetch whose answer
 * is copied into it, handed back through a mutex-guarded list and one
 * event on the main loop, where the filter's callback runs and the call
 * is freed.
 */
#include "proxy/filter_host.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/arena.h"
#include "proxy/fetch.h"

typedef struct host_impl host_impl_t;

typedef struct call {
    tg_post_t post;             /* first: the worker runs it */
    struct call *next;          /* in the done list */
    host_impl_t *hi;
    tg_snapshot_t *snap;
    tg_worker_t *w;
    tg_filter_call_t c;         /* strings in arena */
    tg_arena_t arena;
    tg_filter_call_cb cb;
    void *arg;
    /* the answer */
    int status;
    char error[160];
    tg_headers_t headers;       /* in arena */
    char *body;                 /* malloc'ed */
    size_t body_len;
} call_t;

struct host_impl {
    tg_filter_host_t pub;
    tg_filter_host_src_t src;
    pthread_mutex_t mu;
    call_t *done;               /* back from the workers, for the main loop */
    struct event *done_ev;
    unsigned next_worker;
};

static void call_free(call_t *c)
{
    tg_snapshot_unref(c->snap);
    tg_arena_free(&c->arena);
    free(c->body);
    free(c);
}

/* The main thread takes the answers in and runs the callbacks. */
static void deliver(host_impl_t *hi)
{
    pthread_mutex_lock(&hi->mu);
    call_t *list = hi->done, *rev = NULL;
    hi->done = NULL;
    pthread_mutex_unlock(&hi->mu);
    while (list != NULL) { /* in the order they came back */
        call_t *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev != NULL) {
        call_t *c = rev;
        rev = c->next;
        tg_filter_call_result_t r = {
            .status = c->status,
            .error = c->status ? NULL : c->error,
            .headers = &c->headers,
            .body = c->body ? c->body : "",
            .body_len = c->body_len,
        };
        c->cb(c->arg, &r);
        call_free(c);
    }
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    deliver(arg);
}

/* Any thread: the call's answer is in. */
static void complete(call_t *c)
{
    host_impl_t *hi = c->hi;
    pthread_mutex_lock(&hi->mu);
    c->next = hi->done;
    hi->done = c;
    pthread_mutex_unlock(&hi->mu);
    event_active(hi->done_ev, EV_READ, 0);
}

/* Worker thread: the fetch ended; its answer is copied into the call. */
static void on_fetched(void *arg, const tg_filter_call_result_t *r)
{
    call_t *c = arg;
    c->status = r->status;
    if (r->status == 0)
        snprintf(c->error, sizeof(c->error), "%s", r->error ? r->error : "failed");
    for (size_t i = 0; r->status && i < r->headers->n; i++) {
        const tg_header_t *h = &r->headers->v[i];
        tg_headers_add(&c->headers, &c->arena, tg_arena_strndup(&c->arena, h->name, h->name_len), h->name_len,
                       tg_arena_strndup(&c->arena, h->value, h->value_len), h->value_len);
    }
    if (r->status && r->body_len && (c->body = malloc(r->body_len + 1)) != NULL) {
        memcpy(c->body, r->body, r->body_len);
        c->body[r->body_len] = '\0';
        c->body_len = r->body_len;
    } else if (r->status && r->body_len) {
        c->status = 0;
        snprintf(c->error, sizeof(c->error), "out of memory");
    }
    complete(c);
}

static void run_call(tg_post_t *p, int cancelled)
{
    call_t *c = (call_t *)p;
    if (cancelled) {
        snprintf(c->error, sizeof(c->error), "shutting down");
        complete(c);
        return;
    }
    if (tg_fetch_start(c->w, c->snap, &c->c, on_fetched, c) == NULL) {
        snprintf(c->error, sizeof(c->error), "out of memory");
        complete(c);
    }
}

static const char *dup_s(tg_arena_t *a, const char *s)
{
    return s ? tg_arena_strndup(a, s, strlen(s)) : NULL;
}

static int host_call(const tg_filter_host_t *h, const tg_filter_call_t *spec, tg_filter_call_cb cb, void *arg)
{
    host_impl_t *hi = h->impl;
    if (h->stopping)
        return -1;
    call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    tg_arena_init(&c->arena);
    c->hi = hi;
    c->cb = cb;
    c->arg = arg;
    c->post.run = run_call;
    c->c = *spec;
    const char **hv = spec->n_headers ? tg_arena_alloc(&c->arena, 2 * spec->n_headers * sizeof(char *)) : NULL;
    for (size_t i = 0; hv != NULL && i < 2 * spec->n_headers; i++)
        hv[i] = dup_s(&c->arena, spec->headers[i]);
    c->c.headers = hv;
    c->c.cluster = dup_s(&c->arena, spec->cluster);
    c->c.method = dup_s(&c->arena, spec->method);
    c->c.path = dup_s(&c->arena, spec->path);
    c->c.authority = dup_s(&c->arena, spec->authority);
    if (spec->body != NULL) {
        char *b = tg_arena_alloc(&c->arena, spec->body_len + 1);
        if (b != NULL)
            memcpy(b, spec->body, spec->body_len);
        c->c.body = b;
    }
    if ((spec->n_headers && hv == NULL) || c->c.cluster == NULL || c->c.method == NULL || c->c.path == NULL ||
        (spec->body != NULL && c->c.body == NULL)) {
        call_free(c);
        return -1;
    }
    tg_snapshot_t *snap = hi->src.snapshot(hi->src.arg);
    /* round-robin over the workers: calls spread, none is everyone's */
    unsigned n = 0;
    while (hi->src.worker(hi->src.arg, n) != NULL)
        n++;
    c->w = n ? hi->src.worker(hi->src.arg, hi->next_worker++ % n) : NULL;
    if (snap == NULL || c->w == NULL) {
        snprintf(c->error, sizeof(c->error), "no worker runs yet");
        complete(c);
        return 0;
    }
    c->snap = tg_snapshot_ref(snap);
    tg_worker_post(c->w, &c->post);
    return 0;
}

tg_filter_host_t *tg_filter_host_new(tg_loop_t *loop, const tg_filter_host_src_t *src)
{
    struct event_base *main_base = tg_loop_base(loop);
    host_impl_t *hi = calloc(1, sizeof(*hi));
    if (hi == NULL)
        return NULL;
    pthread_mutex_init(&hi->mu, NULL);
    hi->src = *src;
    hi->pub.call = host_call;
    hi->pub.loop = loop;
    hi->pub.base = main_base;
    hi->pub.impl = hi;
    if ((hi->done_ev = event_new(main_base, -1, 0, on_done, hi)) == NULL ||
        (hi->pub.shared = tg_shared_new(main_base)) == NULL) {
        tg_filter_host_free(&hi->pub);
        return NULL;
    }
    return &hi->pub;
}

void tg_filter_host_finish(tg_filter_host_t *h)
{
    if (h == NULL)
        return;
    host_impl_t *hi = h->impl;
    h->stopping = 1;
    deliver(hi);
    tg_shared_close(h->shared);
}

void tg_filter_host_free(tg_filter_host_t *h)
{
    if (h == NULL)
        return;
    host_impl_t *hi = h->impl;
    deliver(hi); /* nothing should be left; if something is, it is answered, not lost */
    if (hi->done_ev != NULL)
        event_free(hi->done_ev);
    tg_shared_free(h->shared);
    pthread_mutex_destroy(&hi->mu);
    free(hi);
}
