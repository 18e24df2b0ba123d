/*
 * filters/keytab.h — a chained hash table of keyed nodes: one shard of the
 * per-key tables of rate_limit, concurrency_limit and quota, each shard
 * under its owner's mutex. A node starts the owner's entry struct (which
 * holds the key's bytes); hashes are the owner's keyed SipHash, so a
 * client choosing keys cannot choose collisions. The buckets double when
 * the table holds twice as many nodes.
 */
#ifndef TG_FILTERS_KEYTAB_H
#define TG_FILTERS_KEYTAB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/base/siphash.h"

typedef struct tg_kt_node {
    struct tg_kt_node *hnext;
    uint64_t hash;
    const char *key;            /* in the owner's entry */
    size_t keylen;
} tg_kt_node_t;

typedef struct tg_keytab {
    tg_kt_node_t **buckets;
    size_t nbuckets, count;
} tg_keytab_t;

tg_kt_node_t *tg_keytab_find(const tg_keytab_t *t, uint64_t hash, const char *key, size_t len);
/* Links n (hash, key and keylen set), growing the buckets first if due.
 * 0, or -1 (out of memory: n is not linked). */
int tg_keytab_insert(tg_keytab_t *t, tg_kt_node_t *n);
void tg_keytab_remove(tg_keytab_t *t, tg_kt_node_t *n);
/* Hands every node to fn (which may free it; NULL: the owner already
 * freed them) and frees the buckets. */
void tg_keytab_clear(tg_keytab_t *t, void (*fn)(tg_kt_node_t *n));

/* Tables in shards, each under its mutex, keyed with a per-table random
 * SipHash key: what concurrency_limit and quota count in. */
#define TG_KT_SHARDS 64

typedef struct tg_kt_shard {
    pthread_mutex_t lock;
    tg_keytab_t kt;
} tg_kt_shard_t;

typedef struct tg_keyshards {
    atomic_int refs;            /* configs sharing the table (a reload passes it on) */
    void (*free_node)(tg_kt_node_t *n); /* how the owner's entries go */
    tg_siphash_key_t hkey;
    atomic_size_t keys;         /* nodes held, all shards (the owner counts) */
    tg_kt_shard_t shard[TG_KT_SHARDS];
} tg_keyshards_t;

/* A new table (one reference) whose entries free_node frees at the end;
 * NULL when out of memory or randomness. */
tg_keyshards_t *tg_keyshards_new(void (*free_node)(tg_kt_node_t *n));
tg_keyshards_t *tg_keyshards_ref(tg_keyshards_t *s);
/* Drops a reference; the last frees every entry left and the table. */
void tg_keyshards_unref(tg_keyshards_t *s);
/* The key's hash (for find/insert) and its shard. */
tg_kt_shard_t *tg_keyshards_pick(tg_keyshards_t *s, const char *key, size_t len, uint64_t *hash);
/* Hands every node to fn, each shard under its lock in turn (fn must
 * not free nor relink; a reader's walk: the status page). */
void tg_keyshards_each(tg_keyshards_t *s, void (*fn)(const tg_kt_node_t *n, void *arg), void *arg);

/* The shard a node is in. */
tg_kt_shard_t *tg_keyshards_of(tg_keyshards_t *s, const tg_kt_node_t *n);

#endif
