/*
 * proxy/upstream.h — upstream HTTP/1 connections and the per-worker pool
 * of idle keep-alive connections, one pool per endpoint (indexed by the
 * endpoint's slot).
 *
 * Ownership: tg_upstream_acquire() lends a connection to one exchange,
 * which installs its own socket callback while it holds it and gives
 * it back with tg_upstream_release(): kept idle (reusable and room in the
 * pool) or closed. An idle connection that the peer closes, that receives
 * stray bytes, or that stays idle past the cluster's idle_timeout is
 * closed by the pool.
 */
#ifndef TG_PROXY_UPSTREAM_H
#define TG_PROXY_UPSTREAM_H

#include <sys/queue.h>

#include "proxy/cluster.h"
#include "proxy/sock.h"
#include "proxy/worker.h"

typedef struct tg_upconn {
    TAILQ_ENTRY(tg_upconn) link;
    tg_sock_t *sock;
    tg_worker_t *w;
    size_t slot;
    unsigned reused;       /* requests already served on this connection */
} tg_upconn_t;

struct tg_upstream_pool {
    TAILQ_HEAD(, tg_upconn) idle;
    size_t n_idle;
    struct tg_h2_conn *h2;  /* HTTP/2 connections to this endpoint (h2_client.c) */
};

/* Makes sure w has a pool for every slot up to n_slots. */
int tg_upstream_pools_ensure(tg_worker_t *w, size_t n_slots);
/* Closes every idle connection and frees the pools. */
void tg_upstream_pools_free(tg_worker_t *w);

/* An idle pooled connection (*fresh = 0, already connected) or a new one
 * whose connect is in progress (*fresh = 1: expect TG_SOCK_CONNECTED or
 * TG_SOCK_ERROR on the callback the caller installs). NULL if no socket could
 * be created or the connect failed at once. may_reuse = 0 forces a new
 * connection: a request that could not be replayed if a pooled one turned
 * out to have been closed by the upstream must not take that risk. */
tg_upconn_t *tg_upstream_acquire(tg_worker_t *w, const tg_cluster_t *cl, const tg_endpoint_t *ep, int may_reuse,
                                 int *fresh);

/* Gives a lent connection back; closes it unless reusable and the pool of
 * its endpoint has room (cluster pool_size). */
void tg_upstream_release(tg_upconn_t *c, int reusable, const tg_cluster_conf_t *cc);

#endif
