/* Unit tests: the loop's timers and deferred calls (proxy/base/loop.h) on
 * a real libevent base. Verdicts rest on order, never on how long a turn
 * took: timers that come due together run in deadline order, so a slow
 * machine changes when they run, not what the tests see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/event.h>

#include "proxy/base/clock.h"
#include "proxy/base/loop.h"

#define N 64

typedef struct tick {
    tg_timer_t t;
    int id;
    uint64_t set_at_us, fired_at_us;
} tick_t;

static int order[4 * N], n_order;
static tg_loop_t *cur;

static void on_tick(tg_timer_t *t)
{
    tick_t *k = (tick_t *)t;
    k->fired_at_us = tg_clock_us();
    order[n_order++] = k->id;
}

/* Runs the loop until want callbacks ran (bounded: 10 s). */
static void run_until(tg_loop_t *l, int want)
{
    uint64_t end = tg_clock_us() + 10 * 1000000ull;
    while (n_order < want && tg_clock_us() < end)
        tg_loop_run(l, EVLOOP_ONCE);
    assert_int_equal(n_order, want);
}

static void test_fifo_timers(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    tg_loop_t *l = tg_loop_new(base);
    assert_non_null(l);
    tick_t k[N];
    n_order = 0;
    for (int i = 0; i < N; i++) {
        k[i] = (tick_t){ .t.fn = on_tick, .id = i, .set_at_us = tg_clock_us() };
        assert_int_equal(tg_timer_set(l, &k[i].t, 5), 0);
        assert_true(tg_timer_pending(&k[i].t));
    }
    tg_timer_cancel(&k[0].t); /* the head: the next one becomes first */
    tg_timer_cancel(&k[10].t);
    tg_timer_cancel(&k[N - 1].t); /* the tail */
    tg_timer_cancel(&k[10].t);    /* twice: nothing */
    assert_false(tg_timer_pending(&k[0].t));
    assert_int_equal(tg_timer_set(l, &k[5].t, 5), 0); /* set again: moves to the end */
    assert_int_equal(tg_timer_set(l, &k[20].t, 0), 0); /* 0: cancels */
    run_until(l, N - 4); /* 0, 10, 20 and N - 1 cancelled */
    int want = 1;
    for (int i = 0; i < N - 5; i++) {
        while (want == 5 || want == 10 || want == 20)
            want++;
        assert_int_equal(order[i], want);
        want++;
        assert_true(k[order[i]].fired_at_us - k[order[i]].set_at_us >= 5000);
    }
    assert_int_equal(order[N - 5], 5);
    for (int i = 0; i < N; i++)
        assert_false(tg_timer_pending(&k[i].t));
    tg_loop_free(l);
    event_base_free(base);
}

/* Random delays through the heap fire in deadline order; cancelled ones never. */
static void test_heap_timers(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    tg_loop_t *l = tg_loop_new(base);
    tick_t k[N];
    n_order = 0;
    srand(7);
    uint64_t delay[N];
    for (int i = 0; i < N; i++) {
        delay[i] = 1000 + (uint64_t)(rand() % 40) * 500; /* 1 to 21 ms, ties included */
        k[i] = (tick_t){ .t.fn = on_tick, .id = i, .set_at_us = tg_clock_us() };
        assert_int_equal(tg_timer_after(l, &k[i].t, delay[i]), 0);
    }
    int cancelled = 0;
    for (int i = 0; i < N; i += 7) {
        tg_timer_cancel(&k[i].t);
        cancelled++;
    }
    assert_int_equal(tg_timer_after(l, &k[3].t, 30000), 0); /* set again: later, once */
    run_until(l, N - cancelled);
    for (int i = 1; i < N - cancelled; i++)
        assert_true(k[order[i - 1]].t.deadline_us <= k[order[i]].t.deadline_us);
    assert_int_equal(order[N - cancelled - 1], 3);
    for (int i = 0; i < N - cancelled; i++) {
        assert_true(order[i] % 7 != 0);
        assert_true(k[order[i]].fired_at_us >= k[order[i]].t.deadline_us);
    }
    tg_loop_free(l);
    event_base_free(base);
}

/* A callback sets its own timer again and cancels another one; both kinds. */
typedef struct chain {
    tg_timer_t t;
    int left;
    tg_timer_t *victim;
    int heap;
} chain_t;

static int victim_fired;

static void on_victim(tg_timer_t *t)
{
    (void)t;
    victim_fired++;
}

static void on_chain(tg_timer_t *t)
{
    chain_t *c = (chain_t *)t;
    order[n_order++] = c->left;
    if (c->victim != NULL) {
        tg_timer_cancel(c->victim);
        c->victim = NULL;
    }
    if (--c->left > 0) {
        if (c->heap)
            tg_timer_after(cur, t, 100);
        else
            tg_timer_set(cur, t, 1);
    }
}

static void test_rearm_from_callback(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    cur = tg_loop_new(base);
    for (int heap = 0; heap < 2; heap++) {
        n_order = 0;
        victim_fired = 0;
        tg_timer_t victim = { .fn = on_victim };
        chain_t c = { .t.fn = on_chain, .left = 5, .victim = &victim, .heap = heap };
        if (heap) {
            tg_timer_after(cur, &c.t, 100);
            tg_timer_after(cur, &victim, 200000);
        } else {
            tg_timer_set(cur, &c.t, 1);
            tg_timer_set(cur, &victim, 200);
        }
        run_until(cur, 5);
        for (int i = 0; i < 5; i++)
            assert_int_equal(order[i], 5 - i);
        assert_false(tg_timer_pending(&victim));
        assert_false(tg_timer_pending(&c.t));
        assert_int_equal(victim_fired, 0);
    }
    /* after(0): on the next timer check */
    n_order = 0;
    tick_t z = { .t.fn = on_tick, .id = 42 };
    tg_timer_after(cur, &z.t, 0);
    run_until(cur, 1);
    assert_int_equal(order[0], 42);
    tg_loop_free(cur);
    event_base_free(base);
}

/* Deferred calls run after the turn hook, in order; one queued twice
 * runs once; one queued from a call runs on the next turn; a cancelled
 * one never. */
typedef struct call {
    tg_deferred_t d;
    int id;
    int requeue;
} call_t;

static void on_call(tg_deferred_t *d)
{
    call_t *c = (call_t *)d;
    order[n_order++] = c->id;
    if (c->requeue) {
        c->requeue = 0;
        c->id += 100;
        tg_defer(d->loop, d);
    }
}

static int turns;

static void on_turn(void *arg)
{
    assert_ptr_equal(arg, &turns);
    turns++;
    order[n_order++] = -1;
}

static void test_deferred(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    tg_loop_t *l = tg_loop_new(base);
    tg_loop_set_turn(l, on_turn, &turns);
    n_order = 0;
    turns = 0;
    call_t c[5];
    for (int i = 0; i < 5; i++) {
        c[i] = (call_t){ .d.fn = on_call, .id = i, .requeue = i == 1 };
        tg_defer(l, &c[i].d);
    }
    tg_defer(l, &c[2].d); /* queued already: once */
    tg_defer_cancel(&c[3].d);
    tg_defer_cancel(&c[3].d);
    run_until(l, 1 + 4 + 1 + 1);
    static const int want[] = { -1, 0, 1, 2, 4, -1, 101 };
    for (int i = 0; i < 7; i++)
        assert_int_equal(order[i], want[i]);
    assert_int_equal(turns, 2);
    /* a wake with nothing deferred runs the hook alone */
    tg_loop_wake(l);
    tg_loop_wake(l);
    run_until(l, 8);
    assert_int_equal(turns, 3);
    /* dropped at free: nothing runs, nothing is left pending */
    tg_defer(l, &c[0].d);
    tick_t k = { .t.fn = on_tick }, h = { .t.fn = on_tick };
    tg_timer_set(l, &k.t, 1000);
    tg_timer_after(l, &h.t, 1000000);
    tg_loop_free(l);
    assert_false(tg_timer_pending(&k.t));
    assert_false(tg_timer_pending(&h.t));
    assert_null(c[0].d.prev);
    event_base_free(base);
}

/* The turn's clock: within one callback every read gives the turn's
 * reading however far the clock has moved; tg_loop_clock_us reads anew
 * and moves the reading up; the next turn reads again; outside the loop
 * every read is the clock's. Verdicts by order: each spin waits (bounded)
 * for the clock to move on. */
static struct {
    tg_loop_t *l;
    tg_deferred_t d;
    int turn;
    uint64_t first[2], again[2], fresh, after_fresh;
    int64_t wall_first, wall_again;
} ck;

static void spin_past(uint64_t t)
{
    uint64_t end = t + 10 * 1000000ull;
    while (tg_clock_us() <= t + 1 && tg_clock_us() < end)
        ;
}

static void on_clock_call(tg_deferred_t *d)
{
    int i = ck.turn++;
    ck.first[i] = tg_loop_now_us(ck.l);
    if (i == 0)
        ck.wall_first = tg_loop_wall_us(ck.l);
    spin_past(ck.first[i]);
    ck.again[i] = tg_loop_now_us(ck.l);
    if (i == 0) {
        ck.wall_again = tg_loop_wall_us(ck.l);
        ck.fresh = tg_loop_clock_us(ck.l);
        ck.after_fresh = tg_loop_now_us(ck.l);
        spin_past(ck.fresh);
        tg_defer(ck.l, d); /* the next turn */
    }
    order[n_order++] = i;
}

static void test_turn_clock(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    ck.l = tg_loop_new(base);
    ck.turn = 0;
    ck.d = (tg_deferred_t){ .fn = on_clock_call };
    n_order = 0;
    /* outside the loop: the clock itself */
    uint64_t a = tg_loop_now_us(ck.l);
    spin_past(a);
    assert_true(tg_loop_now_us(ck.l) > a);
    tg_defer(ck.l, &ck.d);
    run_until(ck.l, 2);
    assert_int_equal(ck.again[0], ck.first[0]);   /* one reading for the turn */
    assert_int_equal(ck.wall_again, ck.wall_first);
    assert_true(ck.fresh > ck.first[0]);          /* tg_loop_clock_us reads the clock */
    assert_int_equal(ck.after_fresh, ck.fresh);   /* ... and moves the turn's reading up */
    assert_true(ck.first[1] > ck.fresh);          /* the next turn reads anew */
    assert_int_equal(ck.again[1], ck.first[1]);
    /* outside the loop a timer is due ms after the clock's own reading */
    tick_t k = { .t.fn = on_tick };
    uint64_t before = tg_clock_us();
    assert_int_equal(tg_timer_set(ck.l, &k.t, 7), 0);
    assert_true(k.t.deadline_us >= before + 7000);
    tg_timer_cancel(&k.t);
    tg_loop_free(ck.l);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_timers),
        cmocka_unit_test(test_heap_timers),
        cmocka_unit_test(test_rearm_from_callback),
        cmocka_unit_test(test_deferred),
        cmocka_unit_test(test_turn_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
