/*
 * proxy/syncall.h — one HTTP/2 call through a cluster of a snapshot,
 * answered before the function returns: what filters' prepare hooks
 * fetch while a config is readied (grpc_json's descriptors by gRPC
 * server reflection), at start-up, on a reload and under `tollgate -t`,
 * before any worker runs that config.
 *
 * Blocking, on the calling (main) thread, bounded by the call's timeout
 * as a whole: a new connection (h2c, or TLS with ALPN h2 through the
 * cluster's TLS settings) to each of the cluster's endpoints in turn
 * until one answers; name endpoints a check did not resolve are looked
 * up here. The answer is read into memory up to the call's max_body.
 * Only HTTP/2 clusters (h2c, h2): the calls it serves are gRPC.
 */
#ifndef TG_PROXY_SYNCALL_H
#define TG_PROXY_SYNCALL_H

#include "filters/host.h"
#include "proxy/snapshot.h"

/* Runs c against snap's cluster c->cluster; cb(arg, result) runs once,
 * before it returns (result.status 0 and result.error on failure). */
void tg_syncall(const tg_snapshot_t *snap, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg);

/* The prepare context (filters/host.h) whose calls are tg_syncall's on
 * snap (which must outlive it). */
tg_filter_prep_t tg_syncall_prep(const tg_snapshot_t *snap);

#endif
