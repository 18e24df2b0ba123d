/*
 * proxy/base/loop.c — see loop.h.
 *
 * A timer waits in a queue: one FIFO per duration in use (tg_timer_set;
 * appended as set, and the clock only goes forward, so the head is the
 * first due), or the loop's heap (tg_timer_after). Each queue has one
 * libevent timer, armed for its first deadline and re-armed only when that
 * changes; when it fires, every due timer of the queue runs (each taken
 * off first, so its callback may set it again).
 */
#include "proxy/base/loop.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <sys/time.h>

#include "proxy/base/clock.h"
#include "proxy/base/log.h"

struct tg_timer_queue {
    struct tg_timer_queue *next;     /* the loop's FIFOs */
    tg_loop_t *loop;
    uint64_t ms;                     /* a FIFO's duration (0: the heap) */
    tg_timer_t *head, **tail;        /* a FIFO's timers */
    struct event ev;
    uint64_t armed_for;              /* the deadline ev is armed for (0: not armed) */
};

struct tg_loop {
    struct event_base *base;
    struct event run_ev;
    int run_pending;
    void (*turn)(void *arg);
    void *turn_arg;
    tg_deferred_t *deferred, **deferred_tail; /* in order */
    size_t n_deferred;
    struct tg_timer_queue *fifos;    /* one per duration in use */
    struct tg_timer_queue heapq;     /* the heap's queue: its timers are in heap[] */
    tg_timer_t **heap;
    size_t n_heap, cap_heap;
    /* The clock as this turn first read it (tg_loop_now_us): valid from
     * that read until stale_ev, made active by it, runs after the
     * callbacks queued so far; a callback that runs later reads anew. */
    uint64_t now_us;
    int64_t wall_us;
    unsigned now_ok : 1, wall_ok : 1, stale_pending : 1, running : 1;
    struct event stale_ev;
};

static void on_queue(evutil_socket_t fd, short what, void *arg);
static void on_run(evutil_socket_t fd, short what, void *arg);
static void on_stale(evutil_socket_t fd, short what, void *arg);

tg_loop_t *tg_loop_new(struct event_base *base)
{
    tg_loop_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->base = base;
    l->deferred_tail = &l->deferred;
    l->heapq.loop = l;
    if (event_assign(&l->run_ev, base, -1, 0, on_run, l) < 0 ||
        event_assign(&l->stale_ev, base, -1, 0, on_stale, l) < 0 || evtimer_assign(&l->heapq.ev, base, on_queue, &l->heapq) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void tg_loop_free(tg_loop_t *l)
{
    if (l == NULL)
        return;
    event_del(&l->run_ev);
    event_del(&l->stale_ev);
    event_del(&l->heapq.ev);
    for (size_t i = 0; i < l->n_heap; i++)
        l->heap[i]->q = NULL;
    free(l->heap);
    struct tg_timer_queue *q;
    while ((q = l->fifos) != NULL) {
        l->fifos = q->next;
        event_del(&q->ev);
        for (tg_timer_t *t = q->head; t != NULL; t = t->at.fifo.next)
            t->q = NULL;
        free(q);
    }
    while (l->deferred != NULL)
        tg_defer_cancel(l->deferred);
    free(l);
}

struct event_base *tg_loop_base(const tg_loop_t *l)
{
    return l->base;
}

void tg_loop_set_turn(tg_loop_t *l, void (*fn)(void *arg), void *arg)
{
    l->turn = fn;
    l->turn_arg = arg;
}

void tg_loop_wake(tg_loop_t *l)
{
    if (!l->run_pending) {
        l->run_pending = 1;
        event_active(&l->run_ev, EV_TIMEOUT, 0);
    }
}

static void on_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tg_loop_t *l = arg;
    l->run_pending = 0;
    if (l->turn != NULL)
        l->turn(l->turn_arg);
    /* the calls queued so far; those they queue wait for the next turn */
    size_t n = l->n_deferred;
    tg_deferred_t *d;
    while (n-- > 0 && (d = l->deferred) != NULL) {
        tg_defer_cancel(d);
        d->fn(d);
    }
}

/* ---- the turn's clock ---- */

static void on_stale(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    tg_loop_t *l = arg;
    l->stale_pending = 0;
    l->now_ok = l->wall_ok = 0;
}

static void expire_soon(tg_loop_t *l)
{
    if (!l->stale_pending) {
        l->stale_pending = 1;
        event_active(&l->stale_ev, EV_TIMEOUT, 0);
    }
}

/* A reading is kept only while the loop runs (tg_loop_run: every call
 * then comes from one of its callbacks), and stale_ev drops it once the
 * turn's callbacks have run. Outside (set-up before the loop runs, which
 * may take long: a config of 100,000 routes) every call reads the clock. */
static int in_turn(const tg_loop_t *l)
{
    return l->running;
}

int tg_loop_run(tg_loop_t *l, int flags)
{
    l->running = 1;
    int r = event_base_loop(l->base, flags);
    l->running = 0;
    l->now_ok = l->wall_ok = 0;
    return r;
}

uint64_t tg_loop_now_us(tg_loop_t *l)
{
    if (!l->now_ok) {
        l->now_us = tg_clock_us();
        if (!in_turn(l))
            return l->now_us;
        l->now_ok = 1;
        expire_soon(l);
    }
    return l->now_us;
}

uint64_t tg_loop_clock_us(tg_loop_t *l)
{
    uint64_t now = tg_clock_us();
    if (l->now_ok) /* moves the turn's reading up (the clock is monotonic) */
        l->now_us = now;
    return now;
}

int64_t tg_loop_wall_us(tg_loop_t *l)
{
    if (!l->wall_ok) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        l->wall_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        if (!in_turn(l))
            return l->wall_us;
        l->wall_ok = 1;
        expire_soon(l);
    }
    return l->wall_us;
}

/* ---- the heap (by deadline; at.pos is each timer's index) ---- */

static void heap_place(tg_loop_t *l, size_t i, tg_timer_t *t)
{
    l->heap[i] = t;
    t->at.pos = i;
}

static void sift_up(tg_loop_t *l, size_t i, tg_timer_t *t)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (l->heap[parent]->deadline_us <= t->deadline_us)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void sift_down(tg_loop_t *l, size_t i, tg_timer_t *t)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->n_heap)
            break;
        if (c + 1 < l->n_heap && l->heap[c + 1]->deadline_us < l->heap[c]->deadline_us)
            c++;
        if (t->deadline_us <= l->heap[c]->deadline_us)
            break;
        heap_place(l, i, l->heap[c]);
        i = c;
    }
    heap_place(l, i, t);
}

static tg_timer_t *first(const struct tg_timer_queue *q)
{
    if (q->ms != 0)
        return q->head;
    return q->loop->n_heap ? q->loop->heap[0] : NULL;
}

/* Arms q's libevent timer for its first deadline (or disarms it). */
static void arm(struct tg_timer_queue *q)
{
    tg_timer_t *t = first(q);
    if (t == NULL) {
        if (q->armed_for) {
            event_del(&q->ev);
            q->armed_for = 0;
        }
        return;
    }
    if (q->armed_for == t->deadline_us)
        return;
    uint64_t now = tg_loop_now_us(q->loop), us = t->deadline_us > now ? t->deadline_us - now : 0;
    struct timeval tv = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) };
    if (evtimer_add(&q->ev, &tv) < 0) {
        tg_error("cannot arm a timer of %llu us", (unsigned long long)us);
        q->armed_for = 0;
        return;
    }
    q->armed_for = t->deadline_us;
}

static void on_queue(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct tg_timer_queue *q = arg;
    q->armed_for = 0;
    uint64_t now = tg_loop_clock_us(q->loop);
    tg_timer_t *t;
    while ((t = first(q)) != NULL && t->deadline_us <= now) {
        tg_timer_cancel(t);
        t->fn(t); /* may set timers, this one included */
    }
    arm(q);
}

void tg_timer_cancel(tg_timer_t *t)
{
    struct tg_timer_queue *q = t->q;
    if (q == NULL)
        return;
    t->q = NULL;
    if (q->ms == 0) {
        tg_loop_t *l = q->loop;
        size_t i = t->at.pos;
        tg_timer_t *last = l->heap[--l->n_heap];
        if (last != t) {
            if (i > 0 && l->heap[(i - 1) / 2]->deadline_us > last->deadline_us)
                sift_up(l, i, last);
            else
                sift_down(l, i, last);
        }
        if (i == 0)
            arm(q); /* a new first (a later one is also caught when the timer fires) */
        return;
    }
    int was_head = q->head == t;
    if (t->at.fifo.next != NULL)
        t->at.fifo.next->at.fifo.prev = t->at.fifo.prev;
    else
        q->tail = t->at.fifo.prev;
    *t->at.fifo.prev = t->at.fifo.next;
    if (was_head && q->head == NULL)
        arm(q); /* nothing left: disarm; a later head is caught when the timer fires */
}

int tg_timer_set(tg_loop_t *l, tg_timer_t *t, uint64_t ms)
{
    tg_timer_cancel(t);
    if (ms == 0)
        return 0;
    struct tg_timer_queue *q = l->fifos;
    while (q != NULL && q->ms != ms)
        q = q->next;
    if (q == NULL) {
        q = calloc(1, sizeof(*q));
        if (q == NULL || evtimer_assign(&q->ev, l->base, on_queue, q) < 0) {
            free(q);
            tg_error("out of memory setting a %llums timer", (unsigned long long)ms);
            return -1;
        }
        q->loop = l;
        q->ms = ms;
        q->tail = &q->head;
        q->next = l->fifos;
        l->fifos = q;
    }
    t->q = q;
    t->deadline_us = tg_loop_now_us(l) + ms * 1000;
    t->at.fifo.next = NULL;
    t->at.fifo.prev = q->tail;
    *q->tail = t;
    q->tail = &t->at.fifo.next;
    if (q->head == t)
        arm(q);
    return 0;
}

int tg_timer_after(tg_loop_t *l, tg_timer_t *t, uint64_t us)
{
    tg_timer_cancel(t);
    if (l->n_heap == l->cap_heap) {
        size_t cap = l->cap_heap ? l->cap_heap * 2 : 64;
        tg_timer_t **v = realloc(l->heap, cap * sizeof(*v));
        if (v == NULL) {
            tg_error("out of memory setting a %llu us timer", (unsigned long long)us);
            return -1;
        }
        l->heap = v;
        l->cap_heap = cap;
    }
    t->q = &l->heapq;
    t->deadline_us = tg_loop_now_us(l) + us;
    sift_up(l, l->n_heap++, t);
    if (t->at.pos == 0)
        arm(&l->heapq);
    return 0;
}

void tg_defer(tg_loop_t *l, tg_deferred_t *d)
{
    if (d->prev != NULL)
        return; /* queued already: it runs once */
    d->loop = l;
    d->next = NULL;
    d->prev = l->deferred_tail;
    *l->deferred_tail = d;
    l->deferred_tail = &d->next;
    l->n_deferred++;
    tg_loop_wake(l);
}

void tg_defer_cancel(tg_deferred_t *d)
{
    if (d->prev == NULL)
        return;
    tg_loop_t *l = d->loop;
    if (d->next != NULL)
        d->next->prev = d->prev;
    else
        l->deferred_tail = d->prev;
    *d->prev = d->next;
    d->prev = NULL;
    l->n_deferred--;
}
