/*
 * filters/cache_store.h — the cache filter's store: stored responses in
 * memory, shared by every worker, bounded by a byte budget.
 *
 * Keys are the primary cache key (authority, path and query as the filter
 * makes them). One node per key holds the Vary of its newest response and
 * up to max_variants entries, one per set of Vary'd request values; nodes
 * are sharded by a keyed hash (SipHash: keys are client-chosen), each
 * shard under its own mutex with its own LRU list of nodes and its share
 * of the budget. A lock is held for a table operation only, never while a
 * body is copied or sent.
 *
 * Entries are immutable once stored and reference-counted: a hit takes a
 * reference and the body's bytes go to the client by reference (no copy
 * per hit); eviction, replacement and purge drop the table's reference,
 * and the entry goes with the last reader's. A response freshened by a
 * 304 is a new entry sharing its predecessor's body.
 *
 * Fills: the first request that misses on a key (or must revalidate it)
 * fills it; later ones for the same variant wait on the fill (their
 * waiter, in their own arena, is queued under the shard lock) and are
 * woken on their own worker when it ends — stored or not. A key whose
 * last fill was not storable is marked pass (hit-for-pass): requests for
 * it neither wait nor fill until a storable response clears the mark.
 */
#ifndef TG_FILTERS_CACHE_STORE_H
#define TG_FILTERS_CACHE_STORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"
#include "proxy/base/http.h"

#define TG_CACHE_VARIANT_MAX 1024 /* bytes of Vary'd request values a variant may have */

typedef struct tg_cache_store tg_cache_store_t;
typedef struct tg_cache_fill tg_cache_fill_t;

/* A stored body: shared by an entry and the entries that freshen it. */
typedef struct tg_cache_body {
    atomic_uint refs;
    size_t len, cap;
    unsigned char data[];
} tg_cache_body_t;

/* Room for cap bytes (len 0), one reference. NULL: out of memory. */
tg_cache_body_t *tg_cache_body_new(size_t cap);
void tg_cache_body_put(tg_cache_body_t *b);

typedef struct tg_cache_entry {
    atomic_uint refs;           /* the table's, and each reader's */
    int status;
    int64_t response_time;      /* Unix s: when it came (or a 304 freshened it) */
    int64_t initial_age;        /* its age then (RFC 9111 4.2.3) */
    int64_t lifetime;           /* freshness lifetime, s */
    int64_t swr, sie;           /* stale-while-revalidate, stale-if-error: s, -1 none */
    unsigned no_stale : 1;      /* must-revalidate, proxy-revalidate or s-maxage: never served stale */
    unsigned no_cache : 1;      /* revalidated before each use */
    unsigned fields_safe : 1;   /* every stored field passes tg_http_field_safe (checked once, when stored) */
    int64_t last_modified;      /* -1: none */
    const char *etag;           /* NULL: none */
    size_t etag_len;
    tg_header_t *headers;       /* the stored head (no framing, no hop-by-hop) */
    size_t n_headers;
    const char *variant;        /* the Vary'd request values it answers ("" without Vary) */
    size_t variant_len;
    tg_cache_body_t *body;
    size_t mem;                 /* what it costs the budget */
} tg_cache_entry_t;

/* A new entry (one reference, the caller's) with a copy of headers and
 * variant, holding body (the caller's reference moves to it). Its
 * metadata fields are the caller's to set before it is stored. NULL: out
 * of memory (body is then released). */
tg_cache_entry_t *tg_cache_entry_new(int status, const tg_headers_t *headers, const char *variant, size_t vlen,
                                     tg_cache_body_t *body);
void tg_cache_entry_ref(tg_cache_entry_t *e);
/* Any thread. */
void tg_cache_entry_put(tg_cache_entry_t *e);
/* The entry's header of that name (lower-case), NULL if none. */
const tg_header_t *tg_cache_entry_header(const tg_cache_entry_t *e, const char *name);

/* A request waiting on a fill: in its exchange's arena. */
typedef struct tg_cache_waiter {
    struct tg_cache_waiter *next;
    tg_filter_waker_t waker;
    tg_cache_fill_t *fill;      /* while queued (under the shard lock) */
    unsigned shard;             /* its fill's shard: set by its own thread */
    unsigned queued : 1;
    unsigned orphan : 1;        /* its fill ended but could not wake it (out of memory) */
} tg_cache_waiter_t;

/* max_size bytes at most (entries, their nodes and keys), objects of at
 * most max_object bytes, max_variants entries per key; wake runs on a
 * waiter's worker when its fill ends. NULL: out of memory. */
tg_cache_store_t *tg_cache_store_new(size_t max_size, size_t max_object, unsigned max_variants,
                                     void (*wake)(tg_filter_exchange_t *fx, uint64_t gen));
void tg_cache_store_free(tg_cache_store_t *s);

/* The Vary'd values of a request for a Vary list ("a\nb", lower-case;
 * NULL or "": none) into out (TG_CACHE_VARIANT_MAX): its length, or -1
 * when they do not fit or the list has "*" (never a match). */
int tg_cache_variant(const char *vary, const tg_headers_t *req, char *out);

/* The entry for key that answers this request (its Vary'd values), with
 * a reference for the caller; NULL if none. Marks the key recently used. */
tg_cache_entry_t *tg_cache_lookup(tg_cache_store_t *s, const char *key, size_t klen, const tg_headers_t *req);

typedef enum {
    TG_CACHE_FILL = 0,          /* go upstream; *fill is this request's (end it with tg_cache_fill_end) */
    TG_CACHE_WAIT,              /* queued on another's fill: paused until woken */
    TG_CACHE_BUSY,              /* another fill runs, and no waiter was given */
    TG_CACHE_PASS,              /* hit-for-pass, or out of memory: go upstream, fill nothing */
} tg_cache_begin_t;

/* Before going upstream for key: fill, or wait on the fill already
 * running for this request's variant (w: NULL never to wait). */
tg_cache_begin_t tg_cache_begin(tg_cache_store_t *s, const char *key, size_t klen, const tg_headers_t *req,
                                tg_cache_fill_t **fill, tg_cache_waiter_t *w);

/* Stores e for key (the table takes the caller's reference), with vary
 * the Vary of its response (as tg_cache_variant takes it): replaces the
 * entry of the same variant, evicts least recently used keys to stay in
 * budget. Clears the pass mark. 0, or -1 (too large, or out of memory:
 * the reference is dropped). */
int tg_cache_insert(tg_cache_store_t *s, const char *key, size_t klen, const char *vary, tg_cache_entry_t *e);

/* The fill is over: pass marks the key hit-for-pass (its response could
 * not be stored). Its waiters are woken. */
void tg_cache_fill_end(tg_cache_store_t *s, tg_cache_fill_t *fill, int pass);

/* A waiter leaves its fill (timeout, client gone): 1 if it goes on by
 * itself (it was still queued, or its fill could not wake it), 0 if a
 * wake is already on its way. */
int tg_cache_wait_cancel(tg_cache_store_t *s, tg_cache_waiter_t *w);

/* Drops entries: the key's (exact), or every key whose path starts with
 * prefix (host: that authority only, NULL any). Returns entries dropped. */
size_t tg_cache_purge_key(tg_cache_store_t *s, const char *key, size_t klen);
size_t tg_cache_purge_prefix(tg_cache_store_t *s, const char *host, const char *prefix);

typedef struct tg_cache_stats {
    uint64_t entries, bytes, evictions, purged, waiting;
} tg_cache_stats_t;
void tg_cache_store_stats(tg_cache_store_t *s, tg_cache_stats_t *out);

#endif
