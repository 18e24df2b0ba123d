/*
 * filters/cache.h — the `cache` filter: an RFC 9111 shared cache in
 * memory, per route (filters/cache.c; the rules in cache_rfc.h, the store
 * in cache_store.h). Filters naming the same `zone` with the same sizes
 * share one store across routes, workers and reloads.
 *
 * What the process asks of it beyond the filter interface: purging, from
 * the admin listener (POST /-/cache/purge).
 */
#ifndef TG_FILTERS_CACHE_H
#define TG_FILTERS_CACHE_H

#include <stddef.h>

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_cache;

/* Drops entries from every zone (zone: that one only, NULL all): the
 * exact key ("HOST/PATH?QUERY", as the filter makes keys), or every key
 * whose path starts with prefix (host: on that authority only, NULL any).
 * One of key and prefix is given. Returns the entries dropped. Any thread. */
size_t tg_cache_purge(tg_shared_t *shared, const char *zone, const char *key, const char *host, const char *prefix);

#endif
