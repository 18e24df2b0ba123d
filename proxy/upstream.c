/*
 * proxy/upstream.c — upstream connections and idle pools. See upstream.h.
 */
#include "proxy/upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "proxy/log.h"

int tg_upstream_pools_ensure(tg_worker_t *w, size_t n_slots)
{
    if (n_slots <= w->n_pools)
        return 0;
    tg_upstream_pool_t **p = realloc(w->pools, n_slots * sizeof(*p));
    if (p == NULL)
        return -1;
    w->pools = p;
    for (; w->n_pools < n_slots; w->n_pools++) {
        p[w->n_pools] = calloc(1, sizeof(**p));
        if (p[w->n_pools] == NULL)
            return -1;
        TAILQ_INIT(&p[w->n_pools]->idle);
    }
    return 0;
}

static void upconn_close(tg_upconn_t *c)
{
    bufferevent_free(c->bev);
    free(c);
}

static void pool_remove(tg_upconn_t *c)
{
    tg_upstream_pool_t *p = c->w->pools[c->slot];
    TAILQ_REMOVE(&p->idle, c, link);
    p->n_idle--;
}

void tg_upstream_pools_free(tg_worker_t *w)
{
    for (size_t i = 0; i < w->n_pools; i++) {
        tg_upconn_t *c;
        while ((c = TAILQ_FIRST(&w->pools[i]->idle)) != NULL) {
            pool_remove(c);
            upconn_close(c);
        }
        free(w->pools[i]);
    }
    free(w->pools);
    w->pools = NULL;
    w->n_pools = 0;
}

/* Idle connections must stay silent: any byte, EOF, error or the idle
 * timeout closes them. */
static void on_idle_read(struct bufferevent *bev, void *arg)
{
    tg_upconn_t *c = arg;
    tg_debug("upstream: unexpected %zu bytes on an idle connection, closing",
             evbuffer_get_length(bufferevent_get_input(bev)));
    pool_remove(c);
    upconn_close(c);
}

static void on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    tg_upconn_t *c = arg;
    pool_remove(c);
    upconn_close(c);
}

tg_upconn_t *tg_upstream_acquire(tg_worker_t *w, const tg_endpoint_t *ep, int *fresh)
{
    tg_upstream_pool_t *p = w->pools[ep->slot];
    tg_upconn_t *c = TAILQ_FIRST(&p->idle);
    if (c != NULL) {
        pool_remove(c);
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        c->reused++;
        *fresh = 0;
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->w = w;
    c->slot = ep->slot;
    c->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        free(c);
        return NULL;
    }
    if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&ep->addr, (int)ep->addr_len) < 0) {
        upconn_close(c);
        return NULL;
    }
    *fresh = 1;
    return c;
}

void tg_upstream_release(tg_upconn_t *c, int reusable, const tg_cluster_conf_t *cc)
{
    tg_upstream_pool_t *p = c->w->pools[c->slot];
    if (!reusable || c->w->draining || p->n_idle >= cc->pool_size ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) != 0 ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) != 0) {
        upconn_close(c);
        return;
    }
    struct timeval tv = { (time_t)(cc->idle_timeout_ms / 1000), (suseconds_t)(cc->idle_timeout_ms % 1000) * 1000 };
    bufferevent_setcb(c->bev, on_idle_read, NULL, on_idle_event, c);
    bufferevent_set_timeouts(c->bev, cc->idle_timeout_ms ? &tv : NULL, NULL);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    TAILQ_INSERT_HEAD(&p->idle, c, link);
    p->n_idle++;
}
