/*
 * proxy/lbhash.c — see lbhash.h.
 */
#include "proxy/lbhash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/siphash.h"

/* Fixed: the same key maps to the same endpoint on every tollgate. A
 * client that picks its own key can pick its endpoint — inherent to
 * hashing on something the client sends — but it cannot learn more. */
static const tg_siphash_key_t FIXED = { 0x746f6c6c67617465ull, 0x6c62686173680001ull };

typedef struct point {
    uint64_t h;
    uint32_t member;
} point_t;

struct tg_lbhash {
    int maglev;
    point_t *ring;       /* ring_hash: sorted by h */
    size_t n_ring;
    uint32_t *table;     /* maglev: member per entry */
    size_t m;
};

uint64_t tg_lbhash_key(const void *data, size_t len)
{
    return tg_siphash(&FIXED, data, len);
}

uint64_t tg_lbhash_next(uint64_t h, unsigned attempt)
{
    uint64_t x = h + 0x9e3779b97f4a7c15ull * (attempt + 1); /* splitmix64's finalizer */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t id_hash(const char *id, unsigned salt)
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "%s#%u", id, salt);
    return tg_lbhash_key(buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static int point_cmp(const void *a, const void *b)
{
    const point_t *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h ? 1 : (x->member > y->member) - (x->member < y->member);
}

/* Each endpoint's points depend on its own weight only (POINTS per unit),
 * so an endpoint that comes or goes moves only the keys on its own points;
 * past MAX_POINTS in all every count is scaled down (then a change moves
 * a few more). */
#define POINTS 256
#define MAX_POINTS (1u << 20)

static int build_ring(tg_lbhash_t *t, const tg_lbhash_member_t *m, size_t n)
{
    uint64_t units = 0;
    for (size_t i = 0; i < n; i++)
        units += m[i].weight;
    double scale = units * POINTS > MAX_POINTS ? (double)MAX_POINTS / (double)(units * POINTS) : 1.0;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        size_t p = (size_t)((double)m[i].weight * POINTS * scale);
        count += p ? p : 1;
    }
    if ((t->ring = malloc(count * sizeof(*t->ring))) == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t p = (size_t)((double)m[i].weight * POINTS * scale);
        for (size_t k = 0; k < (p ? p : 1); k++)
            t->ring[t->n_ring++] = (point_t){ id_hash(m[i].id, (unsigned)k), (uint32_t)i };
    }
    qsort(t->ring, t->n_ring, sizeof(*t->ring), point_cmp);
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp((*(const tg_lbhash_member_t *const *)a)->id, (*(const tg_lbhash_member_t *const *)b)->id);
}

/* Maglev's population, weighted: in round r an endpoint takes its next
 * preferred free entry while it has taken fewer than r * w / w_max, so
 * shares follow weights (the paper's equal-weight fill when all are 1). */
static int build_maglev(tg_lbhash_t *t, const tg_lbhash_member_t *m, size_t n)
{
    static const size_t primes[] = { 65537, 655373, 6553577 };
    t->m = primes[n <= 655 ? 0 : n <= 65537 ? 1 : 2];
    const tg_lbhash_member_t **ord = NULL;
    uint64_t *offset = malloc(n * sizeof(*offset)), *skip = malloc(n * sizeof(*skip)), *next = calloc(n, sizeof(*next)),
             *taken = calloc(n, sizeof(*taken));
    t->table = malloc(t->m * sizeof(*t->table));
    int rc = -1;
    if (offset == NULL || skip == NULL || next == NULL || taken == NULL || t->table == NULL)
        goto out;
    uint32_t w_max = 1;
    for (size_t i = 0; i < n; i++) {
        offset[i] = id_hash(m[i].id, 0) % t->m;
        skip[i] = id_hash(m[i].id, 1) % (t->m - 1) + 1;
        if (m[i].weight > w_max)
            w_max = m[i].weight;
    }
    for (size_t e = 0; e < t->m; e++)
        t->table[e] = UINT32_MAX;
    /* members in the order of their ids: who wins a contested entry
     * must not depend on the order the config or DNS listed them in */
    if ((ord = malloc(n * sizeof(*ord))) == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        ord[i] = &m[i];
    qsort(ord, n, sizeof(*ord), member_cmp);
    size_t filled = 0;
    for (uint64_t round = 1; filled < t->m; round++) {
        for (size_t k = 0; k < n && filled < t->m; k++) {
            size_t i = (size_t)(ord[k] - m);
            if (taken[i] * w_max >= round * m[i].weight)
                continue; /* its share for this round is taken */
            size_t e;
            do /* skip and m are coprime (m prime): the walk visits every entry */
                e = (size_t)((offset[i] + next[i]++ * skip[i]) % t->m);
            while (t->table[e] != UINT32_MAX);
            t->table[e] = (uint32_t)i;
            taken[i]++;
            filled++;
        }
    }
    rc = 0;
out:
    free(offset);
    free(skip);
    free(next);
    free(taken);
    free(ord);
    return rc;
}

tg_lbhash_t *tg_lbhash_build(const tg_lbhash_member_t *m, size_t n, int maglev)
{
    if (n == 0)
        return NULL;
    tg_lbhash_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->maglev = maglev;
    if ((maglev ? build_maglev(t, m, n) : build_ring(t, m, n)) < 0) {
        tg_lbhash_free(t);
        return NULL;
    }
    return t;
}

void tg_lbhash_free(tg_lbhash_t *t)
{
    if (t == NULL)
        return;
    free(t->ring);
    free(t->table);
    free(t);
}

size_t tg_lbhash_pick(const tg_lbhash_t *t, uint64_t h)
{
    if (t->maglev)
        return t->table[h % t->m];
    size_t lo = 0, hi = t->n_ring; /* the first point at or after h, wrapping */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ring[mid].h < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return t->ring[lo == t->n_ring ? 0 : lo].member;
}
