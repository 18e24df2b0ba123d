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

#include "proxy/h2util.h"
#include "proxy/snapshot.h"

struct event_base;
struct event;
struct evconnlistener;
typedef struct tg_upstream_pool tg_upstream_pool_t;
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
    struct tg_worker *w;
    size_t index;
    size_t stats_slot;               /* listener stats slot (see stats.h) */
    struct evconnlistener *lev;
    struct tg_listener_slot *next_retired;
    /* Out of descriptors (EMFILE and the like): accepting pauses with a
     * backoff while idle connections are closed to make room; one log
     * line when it starts and one when it ends. */
    struct event *resume_ev;
    unsigned pause_ms;               /* current backoff; 0: accepting normally */
    uint64_t episode_start_ms;
    unsigned long accept_failures;   /* in the current episode */
} tg_listener_slot_t;

typedef struct tg_reload_msg tg_reload_msg_t;

/* A downstream connection as the worker sees it: enough to drain it. */
typedef struct tg_conn_node {
    TAILQ_ENTRY(tg_conn_node) link;
    /* Called once when the worker starts draining: close if idle, else
     * finish the current exchange and close. */
    void (*on_drain)(struct tg_conn_node *n);
    /* Close the connection if it is idle (between requests, nothing in
     * flight); returns 1 if it did. Used to make room when descriptors
     * run out. */
    int (*close_if_idle)(struct tg_conn_node *n);
    /* Called when the worker shuts down for good: free now. */
    void (*on_shutdown)(struct tg_conn_node *n);
} tg_conn_node_t;

typedef struct tg_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;         /* lock-free: only this thread touches it */
    tg_sock_loop_t *sockloop;
    tg_snapshot_t *snap;             /* current snapshot (one reference) */
    tg_listener_slot_t **listeners;  /* one per config listener, same order */
    size_t n_listeners;
    tg_listener_slot_t *retired;     /* slots of listeners removed by reloads */
    pthread_mutex_t mbox_lock;       /* guards mbox: the only cross-thread data */
    tg_reload_msg_t *mbox;           /* snapshots published by the main thread */
    tg_upstream_pool_t **pools;      /* indexed by tg_endpoint_t.slot */
    size_t n_pools;
    TAILQ_HEAD(, tg_conn_node) conns;
    size_t n_conns;
    int cmd_fd[2];                   /* pipe: other threads send 'd' (drain) or 's' (stop) */
    struct event *cmd_ev;
    int draining;
    uint64_t rng[2];                 /* xorshift128+ state for request ids */
    tg_exchange_t *free_exchanges;   /* recycled exchanges (see exchange.c) */
    struct tg_h2mem *h2mem;          /* the allocator of this worker's nghttp2 sessions */
    tg_h2_obj_cache_t h2_server_streams; /* recycled HTTP/2 downstream streams (h2_server.c) */
    tg_h2_obj_cache_t h2_client_streams; /* recycled HTTP/2 upstream streams (h2_client.c) */
    tg_stats_t *stats;               /* written by this worker only; summed by /metrics */
    tg_health_t *health;             /* the process's endpoint health table (shared) */
    unsigned active_exchanges;       /* for the retry budget */
    unsigned retrying;               /* exchanges that have retried */
    uint64_t exchange_gen;           /* numbers exchanges, for paused-filter resumes */
    unsigned n_workers;              /* workers in the process (for each one's share of max_connections) */
} tg_worker_t;

/* Creates a worker on the given pre-bound listening sockets (one per
 * config listener; the worker owns them from now on). Main thread. */
tg_worker_t *tg_worker_new(unsigned id, tg_snapshot_t *snap, const int *listen_fds, size_t n, tg_health_t *health);
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
/* Makes the worker leave its loop now. Any thread. */
void tg_worker_stop(tg_worker_t *w);
/* Joins the thread and frees everything it owns. Main thread. */
void tg_worker_join_free(tg_worker_t *w);

void tg_worker_conn_add(tg_worker_t *w, tg_conn_node_t *n);
void tg_worker_conn_remove(tg_worker_t *w, tg_conn_node_t *n);

/* The worker's counters, for the main thread to sum. */
tg_stats_t *tg_worker_stats(tg_worker_t *w);

/* 64 random bits from the worker's generator. */
uint64_t tg_worker_random(tg_worker_t *w);

#endif
