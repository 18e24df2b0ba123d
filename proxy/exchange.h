/*
 * proxy/exchange.h — one request/response exchange: an HTTP/1 request or
 * (later) an HTTP/2 stream, from its parsed request head to the last byte
 * of its response. Protocol-neutral: the downstream codec fills the
 * request and implements tg_downstream_ops_t; the exchange routes it,
 * picks an endpoint round-robin, leases an upstream connection, streams
 * the request body up and the response back with backpressure on both
 * sides, retries connect failures on the next endpoint, and renders local
 * replies (JSON, or gRPC status later) for the gateway's own errors.
 *
 * Ownership: exchanges are owned by their worker and recycled through a
 * free list; a downstream holds a pointer from tg_exchange_new() until the
 * exchange calls ops->done() (or until it calls tg_exchange_abort()). All
 * calls happen on the worker's thread.
 */
#ifndef TG_PROXY_EXCHANGE_H
#define TG_PROXY_EXCHANGE_H

#include <stddef.h>
#include <sys/types.h>

#include "proxy/base/http.h"
#include "proxy/worker.h"

struct evbuffer;

typedef struct tg_downstream_ops {
    /* Moves up to max decoded request-body bytes into dst. Sets *fin at the
     * end of the body. Returns bytes moved, or -1 with *err_status set
     * (400 malformed/truncated, 413 too large). */
    ssize_t (*read_body)(void *ds, struct evbuffer *dst, size_t max, int *fin, int *err_status);
    /* Sends the response head. resp->body says how the upstream framed the
     * body (TG_BODY_TUNNEL for a 101: both directions become raw bytes).
     * Returns 0 or -1. */
    int (*write_head)(void *ds, const tg_response_t *resp);
    /* Moves all of data toward the client. */
    int (*write_body)(void *ds, struct evbuffer *data);
    /* Ends the response; trailers (may be NULL or empty) follow the body
     * where the protocol can carry them (HTTP/2; chunked HTTP/1.1). */
    int (*write_end)(void *ds, const tg_headers_t *trailers);
    /* Optional (NULL: write_head, write_body, write_end do it): the whole
     * response at once, its body (len bytes; resp->body TG_BODY_LENGTH of
     * len, or TG_BODY_NONE) by reference, no trailers — a filter's answer
     * such as a cache hit, or a local reply. release(body, len, arg) runs
     * once the bytes are written, and on failure; with no release the body
     * is the caller's only for the call (copied if it must wait). Returns
     * 0 or -1. */
    int (*write_whole)(void *ds, const tg_response_t *resp, const void *body, size_t len,
                       void (*release)(const void *data, size_t len, void *arg), void *arg);
    /* Bytes queued toward the client and not yet written. */
    size_t (*pending)(void *ds);
    /* Sends an interim 100 Continue. */
    void (*send_continue)(void *ds);
    /* The exchange is over; the downstream must drop its pointer. close:
     * the connection/stream cannot carry another request (abort, unread
     * body, local 400). Must not free the downstream synchronously. */
    void (*done)(void *ds, int close);
} tg_downstream_ops_t;

typedef struct tg_exchange tg_exchange_t;

/* A fresh exchange on the worker's current snapshot (takes a reference).
 * NULL on allocation failure. */
tg_exchange_t *tg_exchange_new(tg_worker_t *w, const tg_downstream_ops_t *ops, void *ds);

/* Where the downstream codec writes the parsed request. */
tg_request_t *tg_exchange_request(tg_exchange_t *ex);
tg_arena_t *tg_exchange_arena(tg_exchange_t *ex);
const tg_config_t *tg_exchange_config(const tg_exchange_t *ex);

/* The client's TLS identity (owned by the connection, which outlives the
 * exchange). Call before tg_exchange_start on TLS connections. */
struct tg_tls_peer;
void tg_exchange_set_peer(tg_exchange_t *ex, const struct tg_tls_peer *peer);

/* The request head is complete: route and proxy it. listener indexes the
 * config's listeners; client_addr is the peer's address (copied). */
void tg_exchange_start(tg_exchange_t *ex, size_t listener, const char *client_addr, const char *scheme);

/* Answers with a local error reply (e.g. a request the codec rejected). */
void tg_exchange_reply(tg_exchange_t *ex, int status, const char *message);

/* More request body (or EOF) is available from the downstream. */
void tg_exchange_on_request_data(tg_exchange_t *ex);
/* The downstream's output drained below its low watermark. */
void tg_exchange_on_downstream_drained(tg_exchange_t *ex);
/* The downstream is gone: tear everything down without calling done(). */
void tg_exchange_abort(tg_exchange_t *ex);

/* The HTTP/2 error code the upstream reset the stream with, for the
 * downstream to relay (NO_ERROR stays NO_ERROR); -1 if there was none. */
long tg_exchange_reset_code(const tg_exchange_t *ex);

/* The per-worker state of exchanges (recycled objects, the retry budget),
 * for the worker's module table (proxy/stack.c). */
extern const tg_worker_module_t tg_exchange_module;

#endif
