/*
 * proxy/conn.h — what every connection of a worker has in common, written
 * once for the three kinds (the HTTP/1 server, the HTTP/2 server, the
 * HTTP/2 client): the socket and its callback, one timer, closing exactly
 * once, freeing at a safe point, the lingering close, the snapshot the
 * connection was made under, and — for downstream connections — a place
 * in the worker's connection list (drain, shutdown, close-when-idle).
 * Each kind embeds a tg_conn_t as its first member and supplies only what
 * differs, in a tg_conn_kind_t.
 *
 * Lifetime: tg_conn_close() closes the socket at once and is idempotent;
 * the memory goes from the connection's defer event (kind->on_free),
 * after the callback that closed it has returned, so `c` stays valid for
 * the rest of any callback. tg_conn_free_now() is for worker teardown,
 * when no loop will run the defer event again. Single-threaded: a
 * connection belongs to its worker's loop.
 */
#ifndef TG_PROXY_CONN_H
#define TG_PROXY_CONN_H

#include <stdint.h>


#include "proxy/base/loop.h"
#include "proxy/sock.h"
#include "proxy/worker.h"

typedef struct tg_conn tg_conn_t;

typedef struct tg_conn_kind {
    const char *name;                          /* for logs */
    void (*on_sock)(tg_conn_t *c, int events); /* socket events (tg_sock.h), not while lingering */
    void (*on_timer)(tg_conn_t *c);            /* the timer fired, not while lingering */
    void (*on_defer)(tg_conn_t *c);            /* tg_conn_kick(): go on at a safe point */
    void (*on_close)(tg_conn_t *c);            /* closing: drop what refers to c (may be NULL) */
    void (*on_free)(tg_conn_t *c);             /* last: free what the kind owns, c's memory included */
    /* Listed (downstream) kinds only: */
    void (*on_drain)(tg_conn_t *c);            /* the worker drains: finish what is in flight, then close */
    int (*close_if_idle)(tg_conn_t *c);        /* descriptors ran out: close if nothing is in flight (1) */
    void (*trim)(tg_conn_t *c);                /* the worker's periodic trim: give back memory while idle (may be NULL) */
    /* A reload: point what the connection reads of c->snap at next's
     * equivalent and return 0 — the connection then holds next instead —
     * or -1 to keep its own (its listener or endpoint is gone). NULL:
     * always keeps its own. */
    int (*rebase)(tg_conn_t *c, const struct tg_snapshot *next);
} tg_conn_kind_t;

struct tg_conn {
    tg_conn_node_t node;        /* in the worker's list, when listed */
    const tg_conn_kind_t *kind;
    tg_worker_t *w;
    tg_sock_t *sock;            /* NULL once closed or handed on */
    tg_snapshot_t *snap;        /* the config it was made under (one reference) */
    tg_timer_t timer;           /* tg_conn_set_timer (armed lazily, see timer_due), lingering */
    uint64_t timer_due;         /* monotonic µs the set timer is for; 0: off */
    tg_deferred_t defer;        /* tg_conn_kick, and the release after closing */
    unsigned dead : 1, lingering : 1, listed : 1;
};

/* Sets up c on sock (owned from now on: the socket callback is c's) under
 * snap (a reference is taken); listed: in the worker's connection list.
 * Returns 0, or -1 (nothing taken: the caller still owns sock). */
int tg_conn_init(tg_conn_t *c, const tg_conn_kind_t *kind, tg_worker_t *w, tg_sock_t *sock, tg_snapshot_t *snap,
                 int listed);

/* Closes now (kind->on_close, out of the list, the socket freed); the
 * memory goes at the next safe point. Idempotent. */
void tg_conn_close(tg_conn_t *c);

/* Moves c onto next (kind->rebase): its reference to its old snapshot
 * goes, so a reload frees the old config once no exchange uses it, however
 * long the connection lives. Nothing if it is closed or already there. */
void tg_conn_rebase(tg_conn_t *c, struct tg_snapshot *next);

/* kind->on_defer at the next safe point (nothing if closed). */
void tg_conn_kick(tg_conn_t *c);

/* Arms the timer for ms from now (0: off). Lazily: a timer already armed
 * for no later is left to fire and then wait out the rest, and one turned
 * off fires into nothing — a request that turns the idle timer off and on
 * again costs no timer operation. */
void tg_conn_set_timer(tg_conn_t *c, uint64_t ms);

/* The conversation is over and the last bytes are queued: shut the write
 * side and read (discarding) until the client closes, at most ms, so that
 * bytes it still sends do not turn our close into a reset that destroys
 * what we wrote. Closes at once if the peer already closed. */
void tg_conn_linger(tg_conn_t *c, uint64_t ms);

/* Hands the socket on to another connection kind: c lets go of it and is
 * freed at the next safe point (kind->on_close is not called). */
tg_sock_t *tg_conn_hand_over(tg_conn_t *c);

/* A worker module whose per-worker state is the slab its connections
 * come from (object size `size`): the module's init and free. */
int tg_conn_slab_init(tg_worker_t *w, tg_worker_mod_t id, size_t size);
void tg_conn_slab_free(tg_worker_t *w, tg_worker_mod_t id);

/* Worker teardown: close and free now. */
void tg_conn_free_now(tg_conn_t *c);

#endif
