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

void tg_stats_filter_outcomes(tg_stats_t *s, size_t route_slot, unsigned outcomes)
{
    if (route_slot >= TG_STATS_MAX_ROUTES || outcomes == 0)
        return;
    tg_route_stats_t *r = &s->routes[route_slot];
    tg_counter_t *by_outcome[TG_OUTCOME_N] = {
        [TG_OUTCOME_AUTH_FAILED] = &r->auth_failures,
        [TG_OUTCOME_RL_ALLOWED] = &r->ratelimit_allowed,
        [TG_OUTCOME_RL_LIMITED] = &r->ratelimit_limited,
        [TG_OUTCOME_RL_TABLE_FULL] = &r->ratelimit_table_full,
        [TG_OUTCOME_RL_SHADOW_LIMITED] = &r->ratelimit_shadow_limited,
        [TG_OUTCOME_RL_TAGGED] = &r->ratelimit_tagged,
        [TG_OUTCOME_CL_LIMITED] = &r->concurrency_limited,
        [TG_OUTCOME_CL_QUEUED] = &r->concurrency_queued,
        [TG_OUTCOME_RL_CACHED] = &r->ratelimit_cached,
        [TG_OUTCOME_RL_STORE_ALLOWED] = &r->ratelimit_store_allowed,
        [TG_OUTCOME_RL_STORE_DENIED] = &r->ratelimit_store_denied,
    };
    for (unsigned i = 0; i < TG_OUTCOME_N; i++)
        if (outcomes & (1u << i))
            tg_counter_add(by_outcome[i], 1);
}
