/*
 * proxy/upstream.h — the one interface between the exchange and an
 * upstream protocol, the way tg_downstream_ops_t is the one interface
 * toward the client. An attempt is opened on an endpoint, sends one
 * request (head, then body pieces, then its end) and reads one response
 * (head, then body, then the end with any trailers); events come back on
 * one callback. Two implementations sit behind it:
 *
 *  - HTTP/1.1 (upstream_h1.c): a connection leased from the worker's
 *    per-endpoint idle pool (or a new one), the request framed with
 *    Content-Length or chunked, the response head read with our parser
 *    (interim 1xx skipped), kept for the next request when it ends clean;
 *  - HTTP/2 (h2_client.c): a stream on a multiplexed session of the
 *    endpoint, with flow control and its own inactivity timer.
 *
 * The exchange (exchange_upstream.c) keeps everything that is not about
 * the protocol: which endpoint, how many attempts, retries and their
 * backoff, deadlines, what a failure means for the client.
 *
 * Ownership: an attempt belongs to its opener from open() until
 * release(); after release() no callback runs and the handle is gone.
 * The callback may release the attempt (and finish the exchange); it
 * must not touch the handle afterwards. Single-threaded: everything
 * belongs to one worker.
 */
#ifndef TG_PROXY_UPSTREAM_H
#define TG_PROXY_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/base/http.h"
#include "proxy/cluster.h"
#include "proxy/worker.h"

struct evbuffer;

/* Events, a mask per callback (handled in this order). */
enum {
    TG_UP_CONNECTED = 1, /* the attempt can send: call start() */
    TG_UP_HEAD = 2,      /* the final response head is in the bound tg_response_t */
    TG_UP_DATA = 4,      /* response body bytes, or its end, can be read */
    TG_UP_WRITABLE = 8,  /* queued request body fell below the low-water mark */
    TG_UP_ERROR = 16,    /* the attempt failed: error() says how */
};

/* Why an attempt failed. */
typedef enum {
    TG_UP_CAUSE_CONNECT_FAILED = 0, /* the connection never came up */
    TG_UP_CAUSE_TIMEOUT,            /* no progress within the timeout (connect, response or idle) */
    TG_UP_CAUSE_RESET,              /* the connection or stream broke; the upstream may have seen the request */
    TG_UP_CAUSE_REFUSED,            /* the upstream certainly never processed it (REFUSED_STREAM, past GOAWAY) */
    TG_UP_CAUSE_BAD_RESPONSE,       /* the upstream answered with a malformed response head */
    TG_UP_CAUSE_TRUNCATED,          /* the response body is malformed or cut short */
} tg_up_cause_t;

typedef void (*tg_upstream_cb)(void *arg, int events);

/* What an attempt is opened with. resp/arena: where the response head
 * and trailers are written (they outlive the attempt). */
typedef struct tg_up_target {
    tg_worker_t *w;
    tg_snapshot_t *snap;           /* cl and ep belong to it; a new connection keeps a reference */
    const tg_cluster_t *cl;
    const tg_endpoint_t *ep;
    tg_response_t *resp;
    tg_arena_t *arena;
    int may_reuse;                 /* an idle connection may be taken (HTTP/1: see the pool) */
    /* Circuit breaking, asked only when a new connection would be made
     * (a pooled one needs no answer): nonzero means none may be, and open
     * returns NULL with errno EBUSY. NULL: always may. Called with arg. */
    int (*no_connect)(void *arg);
    tg_upstream_cb cb;
    void *arg;
} tg_up_target_t;

/* The request an attempt sends. */
typedef struct tg_up_request {
    const tg_request_t *req;       /* method, target, headers, body framing */
    const char *authority;         /* never NULL: the request's, or the endpoint's address */
    int te_trailers;               /* ask for trailers (gRPC) */
    int end_stream;                /* no body follows the head */
    uint64_t timeout_ms;           /* bound on silence until the response head (0: none) */
} tg_up_request_t;

typedef struct tg_upstream_ops {
    const char *name;
    /* Opens an attempt. *fresh = 1: its connection is being set up
     * (expect TG_UP_CONNECTED or TG_UP_ERROR); 0: call start() now. NULL
     * if no connection could even be started. */
    void *(*open)(const tg_up_target_t *t, int *fresh);
    /* Sends the request head. 0, -1 (out of memory) or TG_HTTP_UNSAFE_FIELD
     * (a field fails the egress check; nothing was sent). */
    int (*start)(void *u, const tg_up_request_t *r);
    /* Queues request body: moved from data, or by reference (data keeps
     * its bytes: a body kept for replay). */
    int (*write)(void *u, struct evbuffer *data, int by_reference);
    /* Sends what write() queued (more follows). */
    void (*flush)(void *u);
    /* The request body is complete. */
    int (*end)(void *u);
    /* Request bytes queued and not yet sent. */
    size_t (*queued)(void *u);
    /* Moves up to max response body bytes into dst; *fin at the end of the
     * body (trailers, if any, are in resp->trailers). -1: TG_UP_CAUSE_TRUNCATED. */
    ssize_t (*read)(void *u, struct evbuffer *dst, size_t max, int *fin);
    /* Fire TG_UP_ERROR (TG_UP_CAUSE_TIMEOUT) after ms without progress
     * either way (0: off). */
    void (*set_timeout)(void *u, uint64_t ms);
    /* After TG_UP_ERROR or a failed read: the cause, a message for logs
     * (never parsed; valid until release) and the upstream's own HTTP/2
     * reset code (-1: none). */
    tg_up_cause_t (*error)(void *u, const char **why, long *reset_code);
    /* Did this attempt go on a connection that had served requests before
     * (which the upstream may have closed meanwhile)? */
    int (*reused)(void *u);
    /* The owner lets go. clean: the request and response both ended
     * normally, so the connection may carry another request. */
    void (*release)(void *u, int clean);
} tg_upstream_ops_t;

#endif
