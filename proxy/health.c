/*
 * proxy/health.c — see health.h.
 */
#include "proxy/health.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/base/log.h"

tg_health_t *tg_health_new(void)
{
    tg_health_t *h = calloc(1, sizeof(tg_health_t));
    if (h != NULL) {
        tg_chunks_init(&h->ep, sizeof(tg_endpoint_health_t));
        atomic_init(&h->gen, 1);
    }
    return h;
}

void tg_health_free(tg_health_t *h)
{
    if (h == NULL)
        return;
    tg_chunks_free(&h->ep);
    free(h);
}

int tg_health_reserve(tg_health_t *h, size_t slot)
{
    return tg_chunks_get(&h->ep, slot) != NULL ? 0 : -1;
}

void tg_health_reset(tg_health_t *h, size_t slot)
{
    if (tg_chunks_peek(&h->ep, slot) == NULL)
        return;
    tg_endpoint_health_t *e = tg_health_ep(h, slot);
    atomic_store(&e->active_down, 0);
    atomic_store(&e->failures, 0);
    atomic_store(&e->ejected_until_ms, 0);
    atomic_store(&e->ejections, 0);
    atomic_store(&e->ejections_total, 0);
    atomic_store(&e->ewma_us, 0);
    atomic_store(&e->ewma_at_ms, 0);
    atomic_store(&e->since_ms, 0);
    atomic_store_explicit(&e->checks_ok, 0, memory_order_relaxed);
    atomic_store_explicit(&e->checks_failed, 0, memory_order_relaxed);
    e->streak_ok = e->streak_fail = 0;
    tg_health_changed(h);
}

int tg_health_usable(tg_health_t *h, size_t slot, uint64_t now_ms)
{
    tg_endpoint_health_t *e = tg_health_ep(h, slot);
    return !atomic_load_explicit(&e->active_down, memory_order_relaxed) &&
           atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) <= now_ms;
}

const char *tg_health_state(tg_health_t *h, size_t slot, uint64_t now_ms, uint64_t *left_ms)
{
    tg_endpoint_health_t *e = tg_health_ep(h, slot);
    uint64_t until = atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed);
    *left_ms = until > now_ms ? until - now_ms : 0;
    unsigned down = atomic_load_explicit(&e->active_down, memory_order_relaxed);
    if (down)
        return down == TG_HEALTH_UNCHECKED ? "checking" : "down";
    return until > now_ms ? "ejected" : "up";
}

void tg_health_hold_new(tg_health_t *h, const tg_cluster_t *c, uint64_t now_ms)
{
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (c->endpoints[i].joined)
            atomic_store(&tg_health_ep(h, c->endpoints[i].slot)->since_ms, now_ms);
    if (!c->conf->health_check.enabled)
        return;
    int kept_usable = 0;
    for (size_t i = 0; i < c->n_endpoints && !kept_usable; i++)
        kept_usable = !c->endpoints[i].joined && tg_health_usable(h, c->endpoints[i].slot, now_ms);
    for (size_t i = 0; kept_usable && i < c->n_endpoints; i++)
        if (c->endpoints[i].joined)
            atomic_store(&tg_health_ep(h, c->endpoints[i].slot)->active_down, TG_HEALTH_UNCHECKED);
    if (kept_usable)
        tg_health_changed(h);
}

static void reverse(size_t *a, size_t from, size_t to)
{
    while (from + 1 < to) {
        size_t t = a[from];
        a[from++] = a[--to];
        a[to] = t;
    }
}

size_t tg_health_order(tg_health_t *h, const tg_cluster_t *c, unsigned draw, int ignore_health, uint64_t now_ms,
                       size_t *order)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_endpoints; i++) /* one pass: health may change meanwhile */
        if (ignore_health || tg_health_usable(h, c->endpoints[i].slot, now_ms))
            order[k++] = i;
    if (k > 1) { /* rotate left by the draw: three reversals */
        size_t shift = draw % k;
        if (c->schedule != NULL) { /* weighted: the draw's endpoint first, or the next usable one after it */
            size_t want = c->schedule[draw % c->n_schedule];
            for (shift = 0; shift < k && order[shift] < want; shift++)
                ;
            shift %= k;
        }
        reverse(order, 0, shift);
        reverse(order, shift, k);
        reverse(order, 0, k);
    }
    return k;
}

/* Brings v up to date: the usable endpoints now, and until when that
 * holds without a health change (the earliest end of an ejection left
 * out). The generation is read first, so a change during the pass is
 * seen by the next request. -1: out of memory (v is left stale). */
static int view_refresh(tg_health_t *h, const tg_cluster_t *c, tg_lb_view_t *v, uint64_t now_ms)
{
    uint64_t gen = atomic_load_explicit(&h->gen, memory_order_acquire);
    if (v->gen == gen && now_ms < v->until_ms)
        return 0;
    if (v->cap < c->n_endpoints) {
        uint32_t *u = realloc(v->usable, c->n_endpoints * sizeof(*u));
        if (u == NULL)
            return -1;
        v->usable = u;
        v->cap = c->n_endpoints;
    }
    uint64_t until = UINT64_MAX;
    size_t k = 0;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        tg_endpoint_health_t *e = tg_health_ep(h, c->endpoints[i].slot);
        unsigned down = atomic_load_explicit(&e->active_down, memory_order_relaxed);
        uint64_t ej = atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed);
        if (!down && ej <= now_ms)
            v->usable[k++] = (uint32_t)i;
        else if (!down && ej < until)
            until = ej;
    }
    v->k = k;
    v->gen = gen;
    v->until_ms = until;
    return 0;
}

/* The first position in the ascending usable list holding an index >= want. */
static size_t lower_bound(const uint32_t *a, size_t n, size_t want)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int tg_lb_view_has(const tg_lb_view_t *v, size_t i)
{
    size_t at = lower_bound(v->usable, v->k, i);
    return at < v->k && v->usable[at] == i;
}

size_t tg_health_order_window(tg_health_t *h, const tg_cluster_t *c, tg_lb_view_t *v, unsigned draw,
                              int ignore_health, uint64_t now_ms, size_t *order, size_t max, size_t *usable)
{
    if (ignore_health) { /* every endpoint, from the draw on */
        size_t n = c->n_endpoints, shift = n ? draw % n : 0;
        if (c->schedule != NULL && n)
            shift = c->schedule[draw % c->n_schedule];
        size_t w = n < max ? n : max;
        for (size_t i = 0; i < w; i++)
            order[i] = (shift + i) % n;
        *usable = n;
        return w;
    }
    if (view_refresh(h, c, v, now_ms) < 0) { /* no memory for the view: the pass over all */
        size_t all = tg_health_order(h, c, draw, 0, now_ms, order);
        *usable = all;
        return all < max ? all : max;
    }
    size_t k = v->k, shift = k ? draw % k : 0;
    if (c->schedule != NULL && k) { /* weighted: the draw's endpoint, or the next usable one after it */
        shift = lower_bound(v->usable, k, c->schedule[draw % c->n_schedule]);
        if (shift == k)
            shift = 0;
    }
    size_t w = k < max ? k : max;
    for (size_t i = 0; i < w; i++)
        order[i] = v->usable[(shift + i) % k];
    *usable = k;
    return w;
}

#define EWMA_DECAY_MS 2000

void tg_health_ewma_observe(tg_health_t *h, size_t slot, uint64_t rtt_us, uint64_t now_ms)
{
    tg_endpoint_health_t *e = tg_health_ep(h, slot);
    uint64_t cur = atomic_load_explicit(&e->ewma_us, memory_order_relaxed);
    uint64_t at = atomic_load_explicit(&e->ewma_at_ms, memory_order_relaxed);
    uint64_t dt = now_ms > at ? now_ms - at : 0, next;
    if (cur == 0 || rtt_us >= cur) {
        next = rtt_us ? rtt_us : 1; /* the peak: at once */
    } else { /* w = tau / (tau + dt): about exp(-dt / tau) */
        next = (cur * EWMA_DECAY_MS + rtt_us * dt) / (EWMA_DECAY_MS + dt);
        if (next == 0)
            next = 1;
    }
    atomic_store_explicit(&e->ewma_us, next, memory_order_relaxed);
    atomic_store_explicit(&e->ewma_at_ms, now_ms, memory_order_relaxed);
}

/* What sending one more request to ep costs: its requests in flight, or
 * with ewma its latency average — decayed for the time since it was last
 * measured, so that an endpoint avoided since a slow answer is tried again
 * after a while — times its requests in flight plus one. */
static uint64_t cost(tg_health_t *h, const tg_endpoint_t *ep, int ewma, uint64_t now_ms)
{
    tg_endpoint_health_t *e = tg_health_ep(h, ep->slot);
    uint64_t inflight = atomic_load_explicit(&e->inflight, memory_order_relaxed);
    if (!ewma)
        return inflight;
    uint64_t avg = atomic_load_explicit(&e->ewma_us, memory_order_relaxed);
    uint64_t at = atomic_load_explicit(&e->ewma_at_ms, memory_order_relaxed), dt = now_ms > at ? now_ms - at : 0;
    return (uint64_t)((double)avg * exp(-(double)dt / EWMA_DECAY_MS)) * (inflight + 1);
}

double tg_health_ramp(tg_health_t *h, size_t slot, uint64_t window_ms, uint64_t now_ms)
{
    if (window_ms == 0)
        return 1.0;
    tg_endpoint_health_t *e = tg_health_ep(h, slot);
    uint64_t since = atomic_load_explicit(&e->since_ms, memory_order_relaxed);
    uint64_t ej = atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed);
    if (ej <= now_ms && ej > since && since != 0)
        since = ej; /* back from an ejection */
    if (since == 0 || now_ms >= since + window_ms)
        return 1.0;
    double f = now_ms > since ? (double)(now_ms - since) / (double)window_ms : 0.0;
    return f < 0.1 ? 0.1 : f;
}

void tg_health_slow_first(tg_health_t *h, const tg_cluster_t *c, size_t *order, size_t n, uint64_t rnd,
                          uint64_t now_ms)
{
    uint64_t x = rnd | 1;
    for (size_t k = 0; k < n; k++) {
        double f = tg_health_ramp(h, c->endpoints[order[k]].slot, c->conf->slow_start_ms, now_ms);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64: one draw per endpoint looked at */
        if (f >= 1.0 || (double)(x >> 11) * 0x1.0p-53 < f) {
            if (k > 0) {
                size_t v = order[k];
                memmove(order + 1, order, k * sizeof(*order));
                order[0] = v;
            }
            return;
        }
    }
}

void tg_health_least_first(tg_health_t *h, const tg_cluster_t *c, size_t *order, size_t n, size_t a, size_t b,
                           int ewma, uint64_t now_ms)
{
    const tg_endpoint_t *ea = &c->endpoints[order[a]], *eb = &c->endpoints[order[b]];
    uint64_t la = cost(h, ea, ewma, now_ms), lb = cost(h, eb, ewma, now_ms);
    uint64_t wa = ea->conf->weight ? ea->conf->weight : 1, wb = eb->conf->weight ? eb->conf->weight : 1;
    if (c->conf->slow_start_ms) { /* a ramping endpoint weighs less: in thousandths */
        wa = (uint64_t)((double)wa * 1000 * tg_health_ramp(h, ea->slot, c->conf->slow_start_ms, now_ms));
        wb = (uint64_t)((double)wb * 1000 * tg_health_ramp(h, eb->slot, c->conf->slow_start_ms, now_ms));
    }
    size_t pick = lb * wa < la * wb ? b : a; /* lb/wb < la/wa */
    if (pick != 0 && pick < n) { /* to the front; what was before it moves down one */
        size_t v = order[pick];
        memmove(order + 1, order, pick * sizeof(*order));
        order[0] = v;
    }
}

void tg_health_least_of_all(tg_health_t *h, const tg_cluster_t *c, size_t *order, size_t n, int ewma,
                            uint64_t now_ms)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++) { /* the cheaper of best and i to the front: the least of all, first on ties */
        size_t pair[2] = { order[best], order[i] };
        tg_health_least_first(h, c, pair, 2, 0, 1, ewma, now_ms);
        if (pair[0] == order[i])
            best = i;
    }
    if (best != 0) {
        size_t v = order[best];
        memmove(order + 1, order, best * sizeof(*order));
        order[0] = v;
    }
}

void tg_health_report(tg_health_t *h, const tg_cluster_t *c, const tg_endpoint_t *ep, int ok, uint64_t now_ms)
{
    tg_endpoint_health_t *e = tg_health_ep(h, ep->slot);
    const tg_outlier_conf_t *o = &c->conf->outlier;
    if (ok) {
        if (atomic_load_explicit(&e->failures, memory_order_relaxed) != 0)
            atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
        if (atomic_load_explicit(&e->ejections, memory_order_relaxed) != 0 &&
            atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) <= now_ms)
            atomic_store_explicit(&e->ejections, 0, memory_order_relaxed);
        return;
    }
    if (o->consecutive_failures == 0)
        return;
    unsigned f = atomic_fetch_add_explicit(&e->failures, 1, memory_order_relaxed) + 1;
    if (f < o->consecutive_failures || atomic_load_explicit(&e->ejected_until_ms, memory_order_relaxed) > now_ms)
        return;
    size_t others = 0;
    for (size_t i = 0; i < c->n_endpoints; i++)
        others += &c->endpoints[i] != ep && tg_health_usable(h, c->endpoints[i].slot, now_ms);
    if (others == 0)
        return; /* never eject the last usable endpoint */
    unsigned n = atomic_fetch_add_explicit(&e->ejections, 1, memory_order_relaxed);
    uint64_t ms = o->base_ejection_ms << (n < 20 ? n : 20);
    if (ms > o->max_ejection_ms)
        ms = o->max_ejection_ms;
    atomic_store_explicit(&e->ejected_until_ms, now_ms + ms, memory_order_relaxed);
    tg_health_changed(h);
    atomic_store_explicit(&e->failures, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->ejections_total, 1, memory_order_relaxed);
    tg_warn("cluster '%s': endpoint %s ejected for %llu ms after %u consecutive failures", c->conf->name,
            ep->label, (unsigned long long)ms, f);
}
