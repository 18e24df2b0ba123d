/*
 * proxy/worker.h — one worker thread: its own event_base, its own
 * SO_REUSEPORT listening sockets, its own upstream connection pools and
 * downstream connections. A request lives on one worker from accept to
 * completion, so nothing here is locked — the event base itself is created
 * without locks. The main thread creates workers, starts them, asks them
 * to drain or stop through a pipe, and joins them.
 */
#ifndef TG_PROXY_WORKER_H
#define TG_PROXY_WORKER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/queue.h>

#include "proxy/base/loop.h"
#include "proxy/snapshot.h"

struct sockaddr;

struct event_base;
struct event;
struct evconnlistener;
typedef struct tg_sock_loop tg_sock_loop_t;
typedef struct tg_stats tg_stats_t;
typedef struct tg_health tg_health_t;
typedef struct tg_exchange tg_exchange_t;

/* A listening socket as a worker holds it. Connections keep a pointer to
 * their slot and read `index` at each request, so that after a reload they
 * match routes against the listener as the new config numbers it. A slot
 * lives as long as its worker; a listener removed by a reload has its
 * socket closed and its index set to TG_LISTENER_GONE. */
#define TG_LISTENER_GONE ((size_t)-1)
typedef struct tg_listener_slot {
    struct tg_worker *w;             /* its worker */
    size_t index;
    size_t stats_slot;               /* listener stats slot (see stats.h) */
    struct evconnlistener *lev;
    struct tg_listener_slot *next_retired;
    /* Out of descriptors (EMFILE and the like): accepting pauses with a
     * backoff while idle connections are closed to make room; one log
     * line when it starts and one when it ends. */
    tg_timer_t resume;               /* the end of a pause */
    unsigned pause_ms;               /* current backoff; 0: accepting normally */
    uint64_t episode_start_ms;
    unsigned long accept_failures;   /* in the current episode */
} tg_listener_slot_t;

typedef struct tg_reload_msg tg_reload_msg_t;

/* A downstream connection as the worker sees it: enough to drain it. */
struct tg_conn_node;
typedef struct tg_conn_node_ops {
    /* Called once when the worker starts draining: close if idle, else
     * finish the current exchange and close. */
    void (*on_drain)(struct tg_conn_node *n);
    /* Close the connection if it is idle (between requests, nothing in
     * flight); returns 1 if it did. Used to make room when descriptors
     * run out. May be NULL. */
    int (*close_if_idle)(struct tg_conn_node *n);
    /* Called when the worker shuts down for good: free now. */
    void (*on_shutdown)(struct tg_conn_node *n);
    /* The worker adopted a new snapshot (a reload): move what the
     * connection reads of the config to it, so that an old snapshot is
     * not kept alive by a long-lived connection. May be NULL. */
    void (*on_reload)(struct tg_conn_node *n, struct tg_snapshot *next);
    /* The worker's periodic trim (every few seconds): give back memory
     * the connection holds while idle. May be NULL. */
    void (*on_trim)(struct tg_conn_node *n);
} tg_conn_node_ops_t;

typedef struct tg_conn_node {
    TAILQ_ENTRY(tg_conn_node) link;
    const tg_conn_node_ops_t *ops;   /* shared by every connection of a kind */
} tg_conn_node_t;

typedef struct tg_worker tg_worker_t;

/* ---- what the layers above the worker give it ---- */

/* Modules keep per-worker state in their own struct, stored in the
 * worker under their id and reached through their own accessor
 * (tg_worker_state). */
typedef enum {
    TG_WMOD_EXCHANGE = 0, /* recycled exchanges, the retry budget (exchange.c) */
    TG_WMOD_H2_SERVER,    /* recycled downstream HTTP/2 streams (h2_server.c) */
    TG_WMOD_UPSTREAM_H1,  /* idle HTTP/1 upstream connections per endpoint (upstream_h1.c) */
    TG_WMOD_H2_CLIENT,    /* HTTP/2 upstream connections per endpoint, recycled streams (h2_client.c) */
    TG_WMOD_REDIS,        /* the Redis store's client (redis.c) */
    TG_WMOD_NEGOTIATE,    /* connections in their TLS handshake or first bytes (negotiate.c) */
    TG_WMOD_H1_SERVER,    /* where downstream HTTP/1 connections live (h1_server.c) */
    TG_WMOD_PROBE,        /* this worker's share of the active health checks (probe.c) */
    TG_WMOD_FETCH,        /* the worker's own calls in flight (fetch.c) */
    TG_WMOD_N
} tg_worker_mod_t;

typedef struct tg_worker_module {
    tg_worker_mod_t id;
    /* Creates the module's state for w (tg_worker_set_state). 0 or -1. */
    int (*init)(tg_worker_t *w);
    /* snap is about to become current (e.g. pools for new endpoint
     * slots). 0, or -1 and the worker keeps its config. May be NULL. */
    int (*apply)(tg_worker_t *w, const tg_snapshot_t *snap);
    /* Teardown, once every connection is gone (modules in reverse order). */
    void (*free)(tg_worker_t *w);
} tg_worker_module_t;

/* Where an accepted socket goes (fd owned from the call on). */
typedef void (*tg_accept_fn)(tg_worker_t *w, int fd, const struct sockaddr *sa, const tg_listener_slot_t *slot);

/* The protocol stack a worker runs: its modules in init order and the
 * protocol entry points (proxy/stack.c has the gateway's). The worker
 * knows the protocols only through this table. */
typedef struct tg_worker_setup {
    const tg_worker_module_t *const *modules;
    size_t n_modules;
    tg_accept_fn accept;       /* an HTTP connection (HTTP/1, h2c by preface, TLS with ALPN) */
    tg_accept_fn accept_proxy; /* a listener with proxy_protocol: the PROXY header first */
    /* The upstream protocols, by cluster protocol (tg_cluster_proto_t:
     * HTTP/1.1, h2c, h2): each cluster takes its ops when a snapshot is
     * built (tg_snapshot_load). */
    const struct tg_upstream_ops *const *upstream;
} tg_worker_setup_t;

/* Creates a worker on the given pre-bound listening sockets (one per
 * config listener; the worker owns them from now on). n_workers: how many
 * the process runs (each takes its share of connection limits). Main
 * thread. */
tg_worker_t *tg_worker_new(unsigned id, unsigned n_workers, tg_snapshot_t *snap, const int *listen_fds, size_t n,
                           tg_health_t *health, const tg_worker_setup_t *setup);
int tg_worker_start(tg_worker_t *w);
/* Publishes a new snapshot to the worker (takes its own reference) with,
 * for each of the snapshot's listeners, a freshly bound socket, or -1 where
 * the worker keeps its socket for the same address (ownership of the fds
 * passes to the worker). Applied from the worker's loop: new requests use
 * the new snapshot, in-flight ones finish on theirs. Main thread. */
int tg_worker_reload(tg_worker_t *w, tg_snapshot_t *snap, const int *fds, size_t n);
/* Asks the worker to stop accepting and finish in-flight requests; it
 * leaves its loop when its last connection closes. Any thread. */
void tg_worker_drain(tg_worker_t *w);
/* Work handed to a worker from another thread: run(p, 0) on the worker's
 * thread, in the order posted, soon after (one pipe byte wakes the loop
 * when its queue was empty). A post still queued when the worker is
 * freed gets run(p, 1): free it, do nothing else. The poster owns p until
 * it is run. */
typedef struct tg_post {
    struct tg_post *next;
    void (*run)(struct tg_post *p, int cancelled);
} tg_post_t;
/* Any thread (the worker's own included). */
void tg_worker_post(tg_worker_t *w, tg_post_t *p);

/* Makes the worker leave its loop now. Any thread. */
void tg_worker_stop(tg_worker_t *w);
/* Waits for the thread to end (once; later calls return at once). */
void tg_worker_join(tg_worker_t *w);
/* Joins the thread and frees everything it owns. Main thread. */
void tg_worker_join_free(tg_worker_t *w);

/* Hands an accepted socket (whose PROXY header, if any, was read) to the
 * protocol stack's entry point. */
void tg_worker_accept(tg_worker_t *w, int fd, const struct sockaddr *sa, const tg_listener_slot_t *slot);

void tg_worker_conn_add(tg_worker_t *w, tg_conn_node_t *n);
void tg_worker_conn_remove(tg_worker_t *w, tg_conn_node_t *n);

/* ---- accessors (the struct is the worker's own) ---- */

/* The worker's counters: written by its thread, summed by /metrics. */
tg_stats_t *tg_worker_stats(tg_worker_t *w);
/* 64 random bits from the worker's generator. */
uint64_t tg_worker_random(tg_worker_t *w);
unsigned tg_worker_id(const tg_worker_t *w);
/* How many workers the process runs (ids 0 .. count-1). */
unsigned tg_worker_count(const tg_worker_t *w);
struct event_base *tg_worker_base(tg_worker_t *w);
tg_sock_loop_t *tg_worker_sockloop(tg_worker_t *w);
/* The worker's timers and deferred calls (proxy/base/loop.h). */
struct tg_loop;
struct tg_loop *tg_worker_loop(tg_worker_t *w);
/* The current snapshot (the worker holds a reference). */
tg_snapshot_t *tg_worker_snapshot(tg_worker_t *w);
tg_health_t *tg_worker_health(tg_worker_t *w);
/* The span exporter (proxy/trace.h) the worker's sampled requests go to;
 * set by the process before the worker starts (NULL: no export). */
struct tg_tracer;
void tg_worker_set_tracer(tg_worker_t *w, struct tg_tracer *t);
struct tg_tracer *tg_worker_tracer(tg_worker_t *w);
/* The worker's block cache (proxy/base/mem.h). */
struct tg_mem *tg_worker_mem(tg_worker_t *w);
/* ... and its page arena (proxy/base/pages.h), trimmed with it. */
struct tg_pages *tg_worker_pages(tg_worker_t *w);
/* Is the worker draining (finishing what is in flight, then leaving)? */
int tg_worker_draining(const tg_worker_t *w);
/* Connections in the worker's list. */
size_t tg_worker_conn_count(const tg_worker_t *w);
/* A module's per-worker state (NULL until set). */
void *tg_worker_state(tg_worker_t *w, tg_worker_mod_t m);
void tg_worker_set_state(tg_worker_t *w, tg_worker_mod_t m, void *state);

#endif
