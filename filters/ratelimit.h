/*
 * filters/ratelimit.h — the `rate_limit` filter and its sliding-window
 * table (exposed for unit tests with a fake clock). See docs/filters.md
 * for the algorithm, its accuracy bound and memory per key.
 */
#ifndef TG_FILTERS_RATELIMIT_H
#define TG_FILTERS_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_rate_limit;

#define TG_RL_MAX_LIMITS 8

/* on_limit: tag marks a request over its limit with this header (the
 * decisive limit as a RateLimit-Policy item) before it goes upstream. */
#define TG_RL_TAG_HEADER "x-ratelimit-exceeded"

typedef struct tg_rl_limit {
    uint64_t limit;
    uint64_t window_ms;
} tg_rl_limit_t;

typedef struct tg_rl_result {
    int allowed;
    size_t decisive;       /* index of the limit with the least room left */
    uint64_t remaining;    /* requests left in that limit's window */
    uint64_t reset_s;      /* seconds until that window rolls over */
    uint64_t retry_after_s;/* when denied: seconds until a request would pass */
    int table_full;        /* a new key found no room (max_keys): not counted, allowed = 1; the caller decides */
} tg_rl_result_t;

typedef struct tg_rl_table tg_rl_table_t;

/* Default bound on the keys a table holds (rate_limit max_keys). */
#define TG_RL_DEFAULT_MAX_KEYS 100000

/* A table of counters for these limits, holding at most max_keys keys;
 * thread-safe (sharded locks). Refcounted: configs that share it (across
 * a reload) each hold one. */
tg_rl_table_t *tg_rl_table_new(const tg_rl_limit_t *limits, size_t n, size_t max_keys);
/* A reload that keeps the table may change its bound. */
void tg_rl_table_set_max_keys(tg_rl_table_t *t, size_t max_keys);
tg_rl_table_t *tg_rl_table_ref(tg_rl_table_t *t);
void tg_rl_table_free(tg_rl_table_t *t); /* drops a reference */
/* Decides one request for key at now_ms (any monotonic millisecond clock)
 * and, if every limit has room, counts it. */
void tg_rl_check(tg_rl_table_t *t, const char *key, size_t keylen, uint64_t now_ms, tg_rl_result_t *out);
/* The same for a request that costs `cost` units (1 <= cost): it passes
 * only if every limit has room for all of them, and then counts them all;
 * remaining and reset are in units. */
void tg_rl_check_cost(tg_rl_table_t *t, const char *key, size_t keylen, uint64_t now_ms, uint64_t cost,
                      tg_rl_result_t *out);
/* Corrects a charge made at charged_ms by delta units (more, or given
 * back, never below zero), in the window it went into if that window is
 * still current or just past; an unknown key is left alone. */
void tg_rl_adjust(tg_rl_table_t *t, const char *key, size_t keylen, uint64_t charged_ms, int64_t delta);

/* For the status page: per limit, the busiest key's estimated use of its
 * window now and how many keys have no room left (each shard locked in
 * turn; O(keys)). busiest and at_limit: one per limit, zeroed by the
 * caller. */
void tg_rl_table_usage(tg_rl_table_t *t, uint64_t now_ms, uint64_t *busiest, uint64_t *at_limit);
/* Keys currently held (idle keys expire after twice the longest window). */
size_t tg_rl_table_size(tg_rl_table_t *t);

#endif
