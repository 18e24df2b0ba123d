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

static const size_t entry_size[TG_STATS_TABLES] = {
    [TG_STATS_ENDPOINT] = sizeof(tg_endpoint_stats_t),
    [TG_STATS_ROUTE] = sizeof(tg_route_stats_t),
    [TG_STATS_LISTENER] = sizeof(tg_listener_stats_t),
};

tg_stats_t *tg_stats_new(void)
{
    tg_stats_t *s = calloc(1, sizeof(tg_stats_t));
    for (int t = 0; s != NULL && t < TG_STATS_TABLES; t++)
        tg_chunks_init(&s->tables[t], entry_size[t]);
    return s;
}

void tg_stats_free(tg_stats_t *s)
{
    if (s == NULL)
        return;
    for (int t = 0; t < TG_STATS_TABLES; t++)
        tg_chunks_free(&s->tables[t]);
    free(s);
}

void *tg_stats_make(tg_stats_t *s, tg_stats_table_t table, size_t slot)
{
    void *e = tg_chunks_get(&s->tables[table], slot);
    return e != NULL ? e : &s->sink;
}

size_t tg_stats_bytes(const tg_stats_t *s)
{
    size_t n = sizeof(*s);
    for (int t = 0; t < TG_STATS_TABLES; t++)
        n += tg_chunks_bytes(&s->tables[t]);
    return n;
}

/* Every counter of one table entry back to zero. */
static void zero(tg_counter_t *c, size_t bytes)
{
    for (size_t i = 0; i < bytes / sizeof(*c); i++)
        atomic_store_explicit(&c[i], 0, memory_order_relaxed);
}

void tg_stats_reset(tg_stats_t *s, tg_stats_table_t table, size_t slot)
{
    tg_counter_t *e = (tg_counter_t *)tg_stats_peek(s, table, slot); /* NULL: never counted, nothing to clear */
    if (e != NULL)
        zero(e, entry_size[table]);
}

void tg_stats_request_done(tg_route_stats_t *r, int status, uint64_t duration_us)
{
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

void tg_stats_grpc_done(tg_route_stats_t *r, int grpc_status)
{
    tg_counter_add(&r->grpc[grpc_status >= 0 && grpc_status <= 16 ? grpc_status : 2], 1);
}

_Static_assert(TG_STATS_FILTER_COUNTERS == TG_FILTER_COUNTERS_MAX, "a route has a counter for each filter counter bit");

void tg_stats_filter_counted(tg_route_stats_t *r, uint64_t counted)
{
    for (; counted != 0; counted &= counted - 1)
        tg_counter_add(&r->filters[__builtin_ctzll(counted)], 1);
}
