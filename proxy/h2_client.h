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
 * the exchange reads them with tg_h2_stream_read(), i.e. as they move
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
#include "proxy/worker.h"

struct evbuffer;

typedef struct tg_h2_stream tg_h2_stream_t;
typedef struct tg_h2_conn tg_h2_conn_t;

enum {
    TG_H2S_CONNECTED = 1,  /* the connection is up: submit with tg_h2_stream_start */
    TG_H2S_HEAD = 2,       /* the final response head is in the bound tg_response_t */
    TG_H2S_DATA = 4,       /* response body bytes can be read */
    TG_H2S_END = 8,        /* END_STREAM received; trailers (if any) are in resp->trailers */
    TG_H2S_RESET = 16,     /* the stream failed: tg_h2_stream_error() says how */
    TG_H2S_WRITABLE = 32,  /* queued request body fell below the low-water mark */
};

typedef void (*tg_h2_stream_cb)(tg_h2_stream_t *s, int events, void *arg);

/* A stream toward ep. *fresh = 1: its connection is still being set up
 * (expect TG_H2S_CONNECTED or TG_H2S_RESET); 0: call tg_h2_stream_start
 * now. resp/arena: where the response head and trailers are written
 * (they must live until the stream is released). snap: the snapshot cl
 * and ep belong to (a new connection keeps a reference). NULL on failure. */
tg_h2_stream_t *tg_h2_open(tg_worker_t *w, tg_snapshot_t *snap, const tg_cluster_t *cl, const tg_endpoint_t *ep,
                           tg_response_t *resp, tg_arena_t *arena, tg_h2_stream_cb cb, void *arg, int *fresh);

/* Sends the request head. te_trailers: send `te: trailers` (gRPC).
 * end_stream: the request has no body. Returns 0, -1 (out of memory) or
 * TG_HTTP_UNSAFE_FIELD (a header fails the egress check; nothing sent). */
int tg_h2_stream_start(tg_h2_stream_t *s, const tg_request_t *req, const char *authority, int te_trailers,
                       int end_stream);

/* Queues request body (moved from data). */
int tg_h2_stream_write(tg_h2_stream_t *s, struct evbuffer *data);
/* The stream's request-body queue, for callers that append to it directly
 * (by reference, for replay); call tg_h2_stream_flush() afterwards. */
struct evbuffer *tg_h2_stream_out(tg_h2_stream_t *s);
void tg_h2_stream_flush(tg_h2_stream_t *s);
/* The request body is complete. */
int tg_h2_stream_end(tg_h2_stream_t *s);
/* Request body bytes queued and not yet sent. */
size_t tg_h2_stream_pending(const tg_h2_stream_t *s);

/* Moves up to max response body bytes into dst (and opens the window by
 * as much). *fin: the body is complete (END_STREAM seen, nothing left). */
ssize_t tg_h2_stream_read(tg_h2_stream_t *s, struct evbuffer *dst, size_t max, int *fin);

/* Why a stream failed (after TG_H2S_RESET). All but RESET mean the
 * upstream certainly never processed it. */
typedef enum {
    TG_H2_CAUSE_RESET = 0,       /* the upstream reset it, or the connection broke under it */
    TG_H2_CAUSE_REFUSED,         /* REFUSED_STREAM, past the upstream's GOAWAY, or never sent */
    TG_H2_CAUSE_CONNECT_FAILED,  /* the connection never came up */
    TG_H2_CAUSE_CONNECT_TIMEOUT, /* ... within the cluster's connect_timeout */
} tg_h2_cause_t;

/* After TG_H2S_RESET: the RST_STREAM/GOAWAY error code, the cause, and a
 * message for logs (never to be parsed). */
uint32_t tg_h2_stream_error(const tg_h2_stream_t *s, tg_h2_cause_t *cause, const char **why);
/* Did the upstream itself reset the stream (RST_STREAM), as opposed to the
 * connection failing under it? */
int tg_h2_stream_peer_reset(const tg_h2_stream_t *s);

/* The owner lets go of the stream: if it is still open the upstream gets
 * RST_STREAM with code (CANCEL for a client that went away). No callback
 * runs after this. */
void tg_h2_stream_release(tg_h2_stream_t *s, uint32_t code);

/* Frees the worker's recycled streams (worker teardown, after the pools). */
void tg_h2_client_free_cache(tg_worker_t *w);

/* Closes every connection of the pool slot (worker teardown). */
void tg_h2_pool_free(tg_h2_conn_t **head);

#endif
