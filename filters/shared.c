/*
 * filters/shared.c — objects filters share by key (host.h).
 *
 * A short list under one mutex: objects are few (one per JWKS URL) and
 * taken only when a config starts or is freed, never per request. The
 * last reference may go on any thread (a config is freed by whichever
 * thread ran its last exchange); the object's destroy then runs on the
 * main loop, where its timers and calls live, through an event made with
 * the entry (made active from any thread: nothing to allocate then, so
 * the destroy never runs on the wrong thread for want of memory).
 */
#include "filters/host.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    const tg_shared_type_t *type;
    char *key;
    void *obj;
    unsigned refs;
    struct event destroy_ev;   /* on the main loop: the last reference went ... */
    int has_ev;                /* ... (made while the loop was open) */
} entry_t;

struct tg_shared {
    pthread_mutex_t mu;
    entry_t *list;
    struct event_base *base;   /* NULL once closed */
};

tg_shared_t *tg_shared_new(struct event_base *main_base)
{
    tg_shared_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    s->base = main_base;
    return s;
}

static void entry_free(entry_t *e)
{
    e->type->destroy(e->obj);
    free(e->key);
    free(e);
}

static void on_deferred_destroy(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    entry_free(arg);
}

void tg_shared_close(tg_shared_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->base = NULL;
    pthread_mutex_unlock(&s->mu);
}

void tg_shared_free(tg_shared_t *s)
{
    if (s == NULL)
        return;
    for (entry_t *e = s->list, *next; e != NULL; e = next) { /* still referenced: a bug upstream, but no leak */
        next = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void *tg_shared_get(const tg_filter_host_t *h, const tg_shared_type_t *type, const char *key, const void *arg)
{
    tg_shared_t *s = h->shared;
    pthread_mutex_lock(&s->mu);
    entry_t *e = s->list;
    while (e != NULL && (e->type != type || strcmp(e->key, key) != 0))
        e = e->next;
    if (e != NULL) {
        e->refs++;
        pthread_mutex_unlock(&s->mu);
        return e->obj;
    }
    pthread_mutex_unlock(&s->mu);
    /* made outside the lock (make may take its time); the main thread is
     * the only one that makes, so no second one can appear meanwhile */
    if ((e = calloc(1, sizeof(*e))) == NULL || (e->key = strdup(key)) == NULL ||
        (e->obj = type->make(h, key, arg)) == NULL) {
        if (e != NULL)
            free(e->key);
        free(e);
        return NULL;
    }
    e->type = type;
    e->refs = 1;
    pthread_mutex_lock(&s->mu);
    if (s->base != NULL)
        e->has_ev = event_assign(&e->destroy_ev, s->base, -1, 0, on_deferred_destroy, e) == 0;
    e->next = s->list;
    s->list = e;
    pthread_mutex_unlock(&s->mu);
    return e->obj;
}

void tg_shared_put(tg_shared_t *s, void *obj)
{
    if (s == NULL || obj == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    entry_t **pp = &s->list;
    while (*pp != NULL && (*pp)->obj != obj)
        pp = &(*pp)->next;
    entry_t *e = *pp;
    if (e == NULL || --e->refs > 0) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    *pp = e->next;
    int closed = s->base == NULL || !e->has_ev;
    pthread_mutex_unlock(&s->mu);
    if (closed)
        entry_free(e); /* the main thread at shutdown: the loop runs no more */
    else
        event_active(&e->destroy_ev, EV_TIMEOUT, 0);
}

void tg_shared_each(tg_shared_t *s, const tg_shared_type_t *type, void (*fn)(void *obj, void *arg), void *arg)
{
    pthread_mutex_lock(&s->mu);
    for (entry_t *e = s->list; e != NULL; e = e->next)
        if (e->type == type)
            fn(e->obj, arg);
    pthread_mutex_unlock(&s->mu);
}

void tg_shared_metrics(tg_shared_t *s, struct evbuffer *out)
{
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    for (entry_t *e = s->list; e != NULL; e = e->next)
        n++;
    void **objs = n ? malloc(n * sizeof(*objs)) : NULL;
    /* one call per type, with all its objects */
    for (entry_t *e = s->list; objs != NULL && e != NULL; e = e->next) {
        int seen = 0;
        for (entry_t *f = s->list; f != e; f = f->next)
            seen |= f->type == e->type;
        if (seen || e->type->metrics == NULL)
            continue;
        size_t k = 0;
        for (entry_t *f = e; f != NULL; f = f->next)
            if (f->type == e->type)
                objs[k++] = f->obj;
        e->type->metrics(objs, k, out);
    }
    pthread_mutex_unlock(&s->mu);
    free(objs);
}
