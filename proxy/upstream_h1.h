/*
 * proxy/upstream_h1.h — HTTP/1.1 toward upstreams: the implementation of
 * tg_upstream_ops_t over connections leased from the worker's
 * per-endpoint idle pool (upstream.h has the interface and the pools).
 *
 * A connection serves one request at a time. open() takes the newest idle
 * connection of the endpoint (unless the target forbids reuse: a request
 * that could not be replayed should the pooled connection turn out to
 * have been closed) or starts a new one; release() gives it back to the
 * pool after a clean exchange that leaves it able to carry another
 * request (keep-alive, not close-delimited, nothing unread or unsent, room
 * in the pool under the cluster's pool_size) and closes it otherwise.
 */
#ifndef TG_PROXY_UPSTREAM_H1_H
#define TG_PROXY_UPSTREAM_H1_H

#include "proxy/upstream.h"

extern const tg_upstream_ops_t tg_upstream_h1_ops;

/* Closes the pool's idle connections (worker teardown). */
void tg_h1_pool_free(tg_upstream_pool_t *p);

#endif
