/*
 * filters/host.h — what the process offers filters beyond one exchange:
 * HTTP calls through a cluster of the config in force, its main loop for
 * timers, and objects shared by key across filters, routes and reloads
 * (one JWKS per URL). The process (proxy/filter_host.c) fills it in and
 * hands it to each filter's start hook, so filters link without proxy/.
 *
 * Threads: call() and the loop belong to the main thread; the shared
 * table (tg_shared_*) may be used from any thread.
 */
#ifndef TG_FILTERS_HOST_H
#define TG_FILTERS_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/loop.h"
#include "proxy/base/http.h"

struct event_base;
struct evbuffer;
typedef struct tg_shared tg_shared_t;

/* One HTTP request a filter sends through a cluster (its endpoints,
 * balancer, health, TLS and pools: the client every request uses). */
typedef struct tg_filter_call {
    const char *cluster;        /* a cluster of the config in force (tg_node_origin names one for a URL) */
    const char *method;         /* "GET", "POST" */
    const char *path;           /* origin-form: path and query */
    const char *authority;      /* Host / :authority; NULL: the endpoint's address */
    const char *const *headers; /* name, value, name, value, ... (lower-case names) */
    size_t n_headers;           /* pairs */
    const char *body;           /* NULL: none */
    size_t body_len;
    uint64_t timeout_ms;        /* the whole call: connect, answer and body */
    size_t max_body;            /* a longer answer fails the call */
    int grpc;                   /* a gRPC call: te: trailers is sent (the cluster speaks HTTP/2) */
    int digest_body;            /* the answer's body is read and dropped, whatever its length (max_body
                                 * unused): the result has its length and FNV-1a digest, no bytes */
    int deferred;               /* the request goes out on the loop's next turn, after what the caller's
                                 * event does (a mirror's copy after the primary's request) */
    int usable_only;            /* no endpoint usable (down, ejected): fail at once, try none (a copy
                                 * nobody waits for need not knock on a dead door each time) */
} tg_filter_call_t;

/* How it went. status 0: no answer (error says why: connect failed,
 * timeout, body too long...). headers and body live until the callback
 * returns. */
typedef struct tg_filter_call_result {
    int status;
    const char *error;
    const tg_headers_t *headers;
    const tg_headers_t *trailers; /* empty when none came (HTTP/2 and chunked answers may have them) */
    const char *body;
    size_t body_len;
    uint64_t body_digest;       /* digest_body: FNV-1a 64 of the body (proxy/base/fnv.h) */
} tg_filter_call_result_t;

typedef void (*tg_filter_call_cb)(void *arg, const tg_filter_call_result_t *r);

/* What a filter's prepare hook (filter.h) may do while its config is
 * readied: calls through the clusters of that config, each answered (or
 * failed) before call() returns — cb runs inside it, once. Main thread,
 * blocking up to the call's timeout; HTTP/2 clusters only. 0, or -1 (out
 * of memory: cb will not run). */
typedef struct tg_filter_prep tg_filter_prep_t;
struct tg_filter_prep {
    int (*call)(const tg_filter_prep_t *p, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg);
    void *impl;
};

typedef struct tg_filter_host tg_filter_host_t;
struct tg_filter_host {
    /* Main thread: runs c on a worker against the config in force
     * (cluster looked up by name there); cb runs on the main thread,
     * never before call() returns, exactly once (also at shutdown, with
     * an error). 0, or -1 (out of memory: cb will not run). */
    int (*call)(const tg_filter_host_t *h, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg);
    tg_loop_t *loop;            /* the main loop's timers and deferred calls (proxy/base/loop.h) */
    struct event_base *base;    /* ... and its libevent base: events made active from any thread */
    tg_shared_t *shared;        /* objects shared by key (below) */
    int stopping;               /* the workers are gone: wake no exchange, post nothing */
    void *impl;                 /* the process's */
};

/* ---- objects shared by key ---- */

/* A kind of shared object. make() runs on first use (main thread), with
 * the caller's argument; destroy() once the last reference is gone (on
 * the main thread while the loop runs, else where the last put ran). */
typedef struct tg_shared_type {
    const char *name;           /* "jwks" */
    void *(*make)(const tg_filter_host_t *h, const char *key, const void *arg);
    void (*destroy)(void *obj);
    /* /metrics: the families of this kind, for all its objects (main
     * thread). May be NULL. */
    void (*metrics)(void *const *objs, size_t n, struct evbuffer *out);
} tg_shared_type_t;

tg_shared_t *tg_shared_new(struct event_base *main_base);
/* No more deferred destroys (the loop is over): what remains, and what
 * later puts release, is destroyed at once. */
void tg_shared_close(tg_shared_t *s);
void tg_shared_free(tg_shared_t *s);
/* The object of this type and key, made if new; a reference the caller
 * gives back with tg_shared_put. NULL: make failed. */
void *tg_shared_get(const tg_filter_host_t *h, const tg_shared_type_t *type, const char *key, const void *arg);
void tg_shared_put(tg_shared_t *s, void *obj);
/* fn(obj, arg) for every object of type, under the table's lock (fn
 * neither gets nor puts). Any thread. */
void tg_shared_each(tg_shared_t *s, const tg_shared_type_t *type, void (*fn)(void *obj, void *arg), void *arg);
/* Writes every type's metrics (main thread). */
void tg_shared_metrics(tg_shared_t *s, struct evbuffer *out);

#endif
