/*
 * filters/store.h — the shared store filters count in when several
 * gateways must enforce one limit (rate_limit `store: redis`): the
 * interface a filter calls, and the small per-worker "denied until" cache
 * that spares a round trip for a client already over its limit.
 *
 * The store is implemented below the filters (proxy/redis.c: a Redis
 * client on the worker's loop) and handed to each exchange as fx->store,
 * one per worker; filters/ knows it only through these operations, so the
 * layers keep pointing one way. Everything here runs on the worker's
 * thread: no locks.
 *
 * A call runs a Lua script atomically in the store (EVALSHA; the store
 * loads the script when the server does not know it). It either queues
 * (returns 0: the callback runs exactly once, later, from the worker's
 * loop, with the reply or the reason there is none: timeout, error,
 * store down) or fails at once (returns -1: not sent — the store is down
 * or overloaded; the caller decides without waiting). Callbacks are not
 * run once the store is torn down with its worker.
 */
#ifndef TG_FILTERS_STORE_H
#define TG_FILTERS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/resp.h"
#include "proxy/base/siphash.h"

/* A Lua script: its text (static, lives as long as the program) and its
 * SHA-1 as Redis names it (EVALSHA). */
typedef struct tg_store_script {
    const char *text;
    char sha1[41];
} tg_store_script_t;

/* Fills s->sha1 from text (OpenSSL). 0, or -1. */
int tg_store_script_init(tg_store_script_t *s, const char *text);

typedef enum {
    TG_STORE_OK = 0,     /* the script's reply (v) */
    TG_STORE_TIMEOUT,    /* no reply within the store's timeout */
    TG_STORE_ERROR,      /* connection lost, an error reply, or a reply that is not RESP */
    TG_STORE_DOWN,       /* not sent: no connection (reconnecting), or too many calls waiting */
} tg_store_status_t;

/* st TG_STORE_OK: v is the reply (valid during the call only). gen is
 * the value given with the call (an exchange's fx->gen). */
typedef void (*tg_store_cb)(void *arg, uint64_t gen, tg_store_status_t st, const tg_resp_value_t *v);

/* Is this an answer that is an array of exactly n integers (what the
 * filters' scripts return)? */
int tg_store_ints(tg_store_status_t st, const tg_resp_value_t *v, size_t n);

typedef struct tg_store_call {
    const tg_store_script_t *script;
    const char *key;           /* the script's one key (KEYS[1]); its hash tag picks the Redis Cluster slot */
    size_t key_len;
    int argc;                  /* ARGV */
    const char *const *argv;
    const size_t *lens;
    tg_store_cb cb;            /* NULL: fire and forget (the reply is read and dropped) */
    void *arg;
    uint64_t gen;
} tg_store_call_t;

typedef struct tg_store tg_store_t;

typedef struct tg_store_ops {
    /* 0: queued (cb later, exactly once); -1: not sent (TG_STORE_DOWN), cb never runs. */
    int (*eval)(tg_store_t *s, const tg_store_call_t *call);
} tg_store_ops_t;

/* ---- the "denied until" cache ---- */

#define TG_DENY_CACHE_SLOTS 1024 /* per worker; direct-mapped, an entry is 24 bytes */

typedef struct tg_deny_entry {
    uint64_t hash;             /* 0: empty */
    uint64_t until_ms;         /* monotonic: refused until then */
    uint32_t cost;             /* for requests of at least this cost */
    uint16_t decisive;         /* the limit that refused (RateLimit headers) */
} tg_deny_entry_t;

typedef struct tg_deny_cache {
    tg_siphash_key_t key;      /* random: a client cannot aim at one slot */
    tg_deny_entry_t slot[TG_DENY_CACHE_SLOTS];
} tg_deny_cache_t;

/* What a store is to a filter: its operations, where its keys start, and
 * the worker's deny cache. The implementation embeds it. */
struct tg_store {
    const tg_store_ops_t *ops;
    const char *key_prefix;
    size_t key_prefix_len;
    tg_deny_cache_t deny;
};

/* 0, or -1 (no randomness). */
int tg_deny_cache_init(tg_deny_cache_t *c);
/* The hash of (set id, key) under the cache's key; never 0. */
uint64_t tg_deny_cache_hash(const tg_deny_cache_t *c, uint64_t set_id, const char *key, size_t len);
/* An entry that refuses a request of this cost at now_ms, or NULL. */
const tg_deny_entry_t *tg_deny_cache_get(const tg_deny_cache_t *c, uint64_t hash, uint64_t now_ms, uint64_t cost);
/* Remembers that requests of at least `cost` are refused until until_ms. */
void tg_deny_cache_put(tg_deny_cache_t *c, uint64_t hash, uint64_t until_ms, uint64_t cost, unsigned decisive);

#endif
