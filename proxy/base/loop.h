/*
 * proxy/base/loop.h — the one timer and deferred-call facility of a
 * thread's event loop (a worker's, the main thread's), on top of its
 * libevent base:
 *
 *  - timers embedded in their owner (40 bytes, no allocation, no libevent
 *    event each), one callback shape, one cancel:
 *      tg_timer_set()   — a timeout whose duration repeats (idle, header,
 *                         linger, a filter's queue wait): timers of one
 *                         duration share a FIFO (appended as they are
 *                         set, so in deadline order), O(1);
 *      tg_timer_after() — any other delay (a gRPC deadline, a retry's
 *                         backoff with jitter, a Redis deadline): a
 *                         binary heap by deadline, O(log n);
 *    each FIFO and the heap keep one libevent timer armed for their first;
 *  - deferred calls: run once from the loop after the callbacks of the
 *    current turn ("go on at a safe point"), in the order queued, after
 *    the loop's turn hook (the socket layer's batched writes, sock.c).
 *
 * Single-threaded: a loop's timers and calls are set, cancelled and run
 * on its thread only. Cross-thread wake-ups are not timers: they stay
 * libevent events made active from the other thread.
 */
#ifndef TG_BASE_LOOP_H
#define TG_BASE_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct tg_loop tg_loop_t;

/* The object a timer or call is embedded in, from the callback's argument. */
#define TG_CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

typedef struct tg_timer {
    union {
        struct {
            struct tg_timer *next, **prev; /* in a FIFO */
        } fifo;
        size_t pos;                        /* in the heap: its index */
    } at;
    struct tg_timer_queue *q;              /* where it waits (NULL: not set) */
    uint64_t deadline_us;                  /* monotonic */
    void (*fn)(struct tg_timer *t);
} tg_timer_t;

typedef struct tg_deferred {
    struct tg_deferred *next, **prev; /* in the loop's list while queued (prev NULL: not queued) */
    tg_loop_t *loop;
    void (*fn)(struct tg_deferred *d);
} tg_deferred_t;

/* NULL: no memory. */
tg_loop_t *tg_loop_new(struct event_base *base);
/* Every timer and call still set is dropped (never run). */
void tg_loop_free(tg_loop_t *l);
struct event_base *tg_loop_base(const tg_loop_t *l);

/* Runs the loop (event_base_loop with libevent's flags: 0 until it is
 * broken or has nothing left, EVLOOP_ONCE, ...): the thread's only way
 * to run it, so that the turn's clock knows a turn from set-up code. */
int tg_loop_run(tg_loop_t *l, int flags);

/* fn(arg) runs at every turn the loop is woken for, before the deferred
 * calls (one hook per loop). */
void tg_loop_set_turn(tg_loop_t *l, void (*fn)(void *arg), void *arg);
/* A turn runs once the current callbacks return. */
void tg_loop_wake(tg_loop_t *l);

/* The turn's clock: the monotonic time (base/clock.h) as first read in
 * this turn of the loop, read once however many ask (each request's start,
 * every timer set in it). The reading is dropped once the callbacks queued
 * when it was taken have run, so it is never older than the turn: a
 * callback of a later turn reads the clock anew. Outside tg_loop_run it
 * is the clock itself. Timers are set from it (they fire ms
 * after the turn's reading); their dispatch reads the clock itself. */
uint64_t tg_loop_now_us(tg_loop_t *l);
/* Reads the clock itself (a request's end, for its latency) and moves the
 * turn's reading, if there is one, up to it. */
uint64_t tg_loop_clock_us(tg_loop_t *l);
/* The wall clock (microseconds since the epoch), read once a turn as above:
 * for what is logged, never for durations. */
int64_t tg_loop_wall_us(tg_loop_t *l);

/* Fires t->fn(t) once, ms milliseconds from now (0: cancels), replacing
 * any earlier setting. For durations that repeat (see above). -1: no
 * memory for a new duration's FIFO (logged; the timer is not set). */
int tg_timer_set(tg_loop_t *l, tg_timer_t *t, uint64_t ms);
/* Fires t->fn(t) once, us microseconds from now (0: at the loop's next
 * timer check), replacing any earlier setting. -1: no memory (logged). */
int tg_timer_after(tg_loop_t *l, tg_timer_t *t, uint64_t us);
void tg_timer_cancel(tg_timer_t *t);
static inline int tg_timer_pending(const tg_timer_t *t)
{
    return t->q != NULL;
}

/* Runs d->fn(d) once from the loop, after the current callbacks (again
 * if re-queued meanwhile, once per queueing that happened before it ran). */
void tg_defer(tg_loop_t *l, tg_deferred_t *d);
/* Takes d off its loop's list if it is queued. */
void tg_defer_cancel(tg_deferred_t *d);

#endif
