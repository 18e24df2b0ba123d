/*
 * proxy/lbhash.h — consistent hashing over a cluster's endpoints, for
 * `lb: ring_hash` and `lb: maglev`: a request's key (its client address,
 * a header, a cookie or its path: cluster `hash_on`) picks an endpoint,
 * the same one for the same key on every worker and every tollgate with
 * the same endpoints, and when an endpoint comes or goes only the keys
 * that were on it (ring_hash), or about that share (maglev), move.
 *
 * Points are placed by each endpoint's address ("10.0.0.7:8000"), not its
 * position, so a reload or a DNS answer in another order changes nothing.
 * Built in the main thread with the cluster set (cluster.c), read by the
 * workers; immutable once built.
 */
#ifndef TG_PROXY_LBHASH_H
#define TG_PROXY_LBHASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_lbhash tg_lbhash_t;

/* One endpoint as the table sees it. */
typedef struct tg_lbhash_member {
    const char *id;     /* what places it: its address */
    uint32_t weight;    /* 1..10000 */
} tg_lbhash_member_t;

/* maglev 0: a ring with 256 points per unit of weight (scaled down past
 * 2^20 points in all); lookup O(log points).
 * maglev 1: Maglev's lookup table (Eisenbud et al., NSDI 2016), 65537
 * entries (a larger prime past 655 endpoints) filled by weight; lookup
 * O(1). NULL when n is 0 or out of memory. */
tg_lbhash_t *tg_lbhash_build(const tg_lbhash_member_t *m, size_t n, int maglev);
void tg_lbhash_free(tg_lbhash_t *t);

/* The member (index into the build's array) that key hash h maps to. */
size_t tg_lbhash_pick(const tg_lbhash_t *t, uint64_t h);

/* A request key's hash (stable across processes: a fixed key). */
uint64_t tg_lbhash_key(const void *data, size_t len);

/* The next hash to try for h when its member cannot take the request. */
uint64_t tg_lbhash_next(uint64_t h, unsigned attempt);

#endif
