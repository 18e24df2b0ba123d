/*
 * proxy/upstream.c — upstream connections and idle pools. See upstream.h.
 */
#include "proxy/upstream.h"

#include "proxy/h2_client.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/log.h"
#include "proxy/stats.h"

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
    tg_counter_sub(&c->w->stats->endpoints[c->slot].active, 1);
    tg_sock_free(c->sock);
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
        tg_h2_pool_free(&w->pools[i]->h2);
        free(w->pools[i]);
    }
    free(w->pools);
    w->pools = NULL;
    w->n_pools = 0;
}

/* Idle connections must stay silent: any byte, EOF, error or the idle
 * timeout closes them. */
static void on_idle_event(tg_sock_t *s, int events, void *arg)
{
    tg_upconn_t *c = arg;
    if (events & TG_SOCK_READ)
        tg_debug("upstream: unexpected %zu bytes on an idle connection, closing",
                 evbuffer_get_length(tg_sock_in(s)));
    pool_remove(c);
    upconn_close(c);
}

tg_upconn_t *tg_upstream_acquire(tg_worker_t *w, const tg_cluster_t *cl, const tg_endpoint_t *ep, int may_reuse,
                                 int *fresh)
{
    tg_upstream_pool_t *p = w->pools[ep->slot];
    tg_upconn_t *c;
    while (may_reuse && (c = TAILQ_FIRST(&p->idle)) != NULL) {
        pool_remove(c);
        if (tg_sock_peer_closed(c->sock)) {
            tg_debug("upstream: pooled connection was closed by the peer, discarding");
            upconn_close(c);
            continue;
        }
        if ((tg_sock_ssl(c->sock) != NULL) != (cl->tls != NULL)) { /* a reload changed the cluster's tls */
            upconn_close(c);
            continue;
        }
        tg_sock_set_cb(c->sock, NULL, NULL);
        tg_sock_set_timeout(c->sock, 0);
        c->reused++;
        *fresh = 0;
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->w = w;
    c->slot = ep->slot;
    c->sock = tg_cluster_connect(cl, ep, w->sockloop);
    if (c->sock == NULL) {
        free(c);
        return NULL;
    }
    tg_counter_add(&w->stats->endpoints[c->slot].active, 1);
    *fresh = 1;
    return c;
}

void tg_upstream_release(tg_upconn_t *c, int reusable, const tg_cluster_conf_t *cc)
{
    tg_upstream_pool_t *p = c->w->pools[c->slot];
    if (!reusable || c->w->draining || p->n_idle >= cc->pool_size || tg_sock_peer_closed(c->sock) ||
        evbuffer_get_length(tg_sock_in(c->sock)) != 0 || evbuffer_get_length(tg_sock_out(c->sock)) != 0) {
        upconn_close(c);
        return;
    }
    tg_sock_set_cb(c->sock, on_idle_event, c);
    tg_sock_set_timeout(c->sock, cc->idle_timeout_ms);
    tg_sock_set_read_limit(c->sock, 0);
    tg_sock_pause_read(c->sock, 0);
    TAILQ_INSERT_HEAD(&p->idle, c, link);
    p->n_idle++;
}
