/*
 * proxy/upstream_h1.h — HTTP/1.1 toward upstreams: the implementation of
 * tg_upstream_ops_t (upstream.h) over connections leased from the
 * worker's per-endpoint idle pools, which this module keeps.
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

/* The per-worker idle pools (one per endpoint slot), for the worker's
 * module table (proxy/stack.c). */
extern const tg_worker_module_t tg_upstream_h1_module;

#endif
