/*
 * proxy/stats.c — see stats.h.
 */
#include "proxy/stats.h"

#include <stdlib.h>

#include "filters/filter.h"

const uint64_t tg_redis_bucket_us[TG_REDIS_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
};

const uint64_t tg_stats_bucket_us[TG_STATS_BUCKETS] = {
    1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

tg_stats_t *tg_stats_new(void)
{
    return calloc(1, sizeof(tg_stats_t));
}

void tg_stats_free(tg_stats_t *s)
{
    free(s);
}

/* Every counter of one table entry back to zero. */
static void zero(tg_counter_t *c, size_t bytes)
{
    for (size_t i = 0; i < bytes / sizeof(*c); i++)
        atomic_store_explicit(&c[i], 0, memory_order_relaxed);
}

void tg_stats_reset(tg_stats_t *s, tg_stats_table_t table, size_t slot)
{
    if (table == TG_STATS_ENDPOINT && slot < TG_STATS_MAX_ENDPOINTS)
        zero((tg_counter_t *)&s->endpoints[slot], sizeof(s->endpoints[slot]));
    else if (table == TG_STATS_ROUTE && slot < TG_STATS_MAX_ROUTES)
        zero((tg_counter_t *)&s->routes[slot], sizeof(s->routes[slot]));
    else if (table == TG_STATS_LISTENER && slot < TG_STATS_MAX_LISTENERS)
        zero((tg_counter_t *)&s->listeners[slot], sizeof(s->listeners[slot]));
}

void tg_stats_request_done(tg_stats_t *s, size_t route_slot, int status, uint64_t duration_us)
{
    if (route_slot >= TG_STATS_MAX_ROUTES)
        return;
    tg_route_stats_t *r = &s->routes[route_slot];
    if (status >= 100 && status < 600)
        tg_counter_add(&r->by_class[status / 100 - 1], 1);
    else
        tg_counter_add(&r->aborted, 1);
    size_t b = 0;
    while (b < TG_STATS_BUCKETS && duration_us > tg_stats_bucket_us[b])
        b++;
    if (b < TG_STATS_BUCKETS)
        tg_counter_add(&r->buckets[b], 1);
    tg_counter_add(&r->count, 1);
    tg_counter_add(&r->sum_us, duration_us);
}

void tg_stats_grpc_done(tg_stats_t *s, size_t route_slot, int grpc_status)
{
    if (route_slot >= TG_STATS_MAX_ROUTES)
        return;
    tg_counter_add(&s->routes[route_slot].grpc[grpc_status >= 0 && grpc_status <= 16 ? grpc_status : 2], 1);
}

_Static_assert(TG_STATS_FILTER_COUNTERS == TG_FILTER_COUNTERS_MAX, "a route has a counter for each filter counter bit");

void tg_stats_filter_counted(tg_stats_t *s, size_t route_slot, uint64_t counted)
{
    if (route_slot >= TG_STATS_MAX_ROUTES)
        return;
    tg_route_stats_t *r = &s->routes[route_slot];
    for (; counted != 0; counted &= counted - 1)
        tg_counter_add(&r->filters[__builtin_ctzll(counted)], 1);
}
