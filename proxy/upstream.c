/*
 * proxy/upstream.c — the per-endpoint pools of a worker and the choice of
 * an upstream implementation. See upstream.h.
 */
#include "proxy/upstream.h"

#include <stdlib.h>

#include "proxy/h2_client.h"
#include "proxy/upstream_h1.h"

const tg_upstream_ops_t *tg_upstream_ops_for(tg_cluster_proto_t protocol)
{
    return protocol == TG_PROTO_HTTP1 ? &tg_upstream_h1_ops : &tg_upstream_h2_ops;
}

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

void tg_upstream_pools_free(tg_worker_t *w)
{
    for (size_t i = 0; i < w->n_pools; i++) {
        tg_h1_pool_free(w->pools[i]);
        tg_h2_pool_free(&w->pools[i]->h2);
        free(w->pools[i]);
    }
    free(w->pools);
    w->pools = NULL;
    w->n_pools = 0;
}
