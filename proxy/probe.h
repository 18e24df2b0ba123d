/*
 * proxy/probe.h — active health checks, run by the workers through the
 * same upstream interface requests use (upstream.h: the cluster's
 * tg_upstream_ops_t), so a check speaks exactly what the cluster speaks —
 * HTTP/1.1 or HTTP/2, cleartext or TLS — with no HTTP client of its own.
 *
 * Each endpoint of a cluster with a `health_check` is probed by one
 * worker, the one its registry slot falls to (slot mod workers): every
 * `interval` a GET of `path` (2xx within `timeout` is a success), or for
 * `type: grpc` a grpc.health.v1.Health/Check call (grpc-status 0 and
 * SERVING). A probe opens a new connection on HTTP/1.1 (a pooled one the
 * upstream closed would read as a failure) and a stream on the endpoint's
 * session on HTTP/2. Results go to the shared health table (health.h):
 * each endpoint's streaks are written by its one worker.
 *
 * A reload rebuilds the probes from the new snapshot on each worker
 * (apply); what is known of an endpoint stays in the table by slot.
 */
#ifndef TG_PROXY_PROBE_H
#define TG_PROXY_PROBE_H

#include "proxy/worker.h"

extern const tg_worker_module_t tg_probe_module; /* per-worker state (proxy/stack.c) */

#endif
