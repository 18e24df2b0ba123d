/*
 * proxy/h2_client.h — HTTP/2 toward upstreams (clusters with protocol h2c,
 * or h2 over TLS with ALPN): nghttp2 client sessions, each multiplexing
 * many streams over one connection, kept per worker and endpoint.
 *
 * A stream is opened on a connection of the endpoint that has a free
 * stream slot under the upstream's SETTINGS_MAX_CONCURRENT_STREAMS (100
 * until its SETTINGS arrive); when every connection is full or going away,
 * another is opened. A connection that received GOAWAY takes no new
 * streams; its streams above the GOAWAY's last stream id are reported as
 * refused (never processed: safe to retry elsewhere). Idle connections
 * close after the cluster's idle_timeout; busy ones are kept alive with
 * PINGs (keepalive_interval / keepalive_timeout).
 *
 * Flow control: response bytes are acknowledged (WINDOW_UPDATE) only as
 * the exchange reads them (the read op), i.e. as they move
 * toward the client; request bytes queue per stream up to the exchange's
 * high-water mark and go out as the upstream's windows allow.
 *
 * Events reach the stream's owner through its callback, never from inside
 * nghttp2: they are collected while frames are processed and delivered
 * afterwards. Single-threaded: everything belongs to one worker.
 */
#ifndef TG_PROXY_H2_CLIENT_H
#define TG_PROXY_H2_CLIENT_H

#include <stdint.h>
#include <sys/types.h>

#include "proxy/cluster.h"
#include "proxy/base/http.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

struct evbuffer;

typedef struct tg_h2_stream tg_h2_stream_t;
typedef struct tg_h2_conn tg_h2_conn_t;

/* The HTTP/2 implementation of tg_upstream_ops_t: an attempt is a stream
 * on a connection of the endpoint. Its timeout runs on the stream's own
 * timer, since the connection is shared. */
extern const tg_upstream_ops_t tg_upstream_h2_ops;

/* The per-worker connections and recycled streams (proxy/stack.c). */
extern const tg_worker_module_t tg_h2_client_module;

#endif
