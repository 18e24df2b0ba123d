/*
 * proxy/base/pages.c — see pages.h.
 *
 * A mapping (a chunk) is carved from its start, block after block; what
 * is left at its end when the next block does not fit becomes a free block
 * of that size (never touched, so it costs no memory). Each chunk notes
 * the size of the block starting at each of its pages, so a pointer's
 * block is found by a binary search over the chunks (sorted by address)
 * and one byte. A free list per size is a stack whose bottom entries
 * (below `cold`) have had their pages given back; trim gives back those
 * that stayed below the lowest point the stack reached since the last trim.
 */
#include "proxy/base/pages.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE TG_PAGES_SIZE
#define CHUNK_PAGES 256 /* 1 MiB mappings */

typedef struct chunk {
    unsigned char *base;
    uint32_t carved;                /* pages handed out from the start so far */
    uint32_t live;                  /* blocks in use */
    uint8_t start[CHUNK_PAGES];     /* pages of the block that starts at each page (0: none) */
} chunk_t;

typedef struct free_list {
    void **v;
    uint32_t n, cap;
    uint32_t cold;                  /* v[0 .. cold) have given their pages back */
    uint32_t low;                   /* fewest entries since the last trim */
} free_list_t;

struct tg_pages {
    chunk_t **chunks;               /* sorted by base */
    size_t n_chunks, cap_chunks;
    chunk_t *cur;                   /* the chunk being carved */
    free_list_t free[TG_PAGES_MAX_PAGES + 1]; /* by pages */
    size_t in_use, free_hot;        /* bytes */
};

tg_pages_t *tg_pages_new(void)
{
    return calloc(1, sizeof(tg_pages_t));
}

void tg_pages_destroy(tg_pages_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n_chunks; i++)
        if (a->chunks[i]->live == 0) { /* a block still out keeps its chunk (a leak, not a fault) */
            munmap(a->chunks[i]->base, (size_t)CHUNK_PAGES * PAGE);
            free(a->chunks[i]);
        }
    free(a->chunks);
    for (unsigned k = 0; k <= TG_PAGES_MAX_PAGES; k++)
        free(a->free[k].v);
    free(a);
}

/* The chunk holding p, or NULL. */
static chunk_t *find(const tg_pages_t *a, const void *p)
{
    size_t lo = 0, hi = a->n_chunks;
    while (lo < hi) { /* the last chunk whose base is at or below p */
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)a->chunks[mid]->base <= (uintptr_t)p)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    chunk_t *c = a->chunks[lo - 1];
    return (uintptr_t)p - (uintptr_t)c->base < (size_t)CHUNK_PAGES * PAGE ? c : NULL;
}

/* The pages of the block at p (0: not a block of a). */
static unsigned block_pages(const tg_pages_t *a, const void *p, chunk_t **cp)
{
    if (((uintptr_t)p & (PAGE - 1)) != 0)
        return 0;
    chunk_t *c = find(a, p);
    if (c == NULL)
        return 0;
    if (cp != NULL)
        *cp = c;
    return c->start[((uintptr_t)p - (uintptr_t)c->base) / PAGE];
}

/* Puts p (pages pages, cold: its pages already given back or never
 * touched) on its free list. -1: no memory for the list. */
static int push_free(tg_pages_t *a, void *p, unsigned pages, int cold)
{
    free_list_t *l = &a->free[pages];
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 16;
        void **v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    if (cold && l->cold == l->n) {
        l->v[l->n++] = p;
        l->cold++;
        return 0;
    }
    if (cold) { /* below the warm ones: move the first warm one up */
        l->v[l->n++] = l->v[l->cold];
        l->v[l->cold++] = p;
        return 0;
    }
    l->v[l->n++] = p;
    a->free_hot += (size_t)pages * PAGE;
    return 0;
}

static chunk_t *new_chunk(tg_pages_t *a)
{
    if (a->n_chunks == a->cap_chunks) {
        size_t cap = a->cap_chunks ? a->cap_chunks * 2 : 8;
        chunk_t **v = realloc(a->chunks, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        a->chunks = v;
        a->cap_chunks = cap;
    }
    chunk_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    void *m = mmap(NULL, (size_t)CHUNK_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) {
        free(c);
        return NULL;
    }
    c->base = m;
    size_t i = a->n_chunks;
    while (i > 0 && (uintptr_t)a->chunks[i - 1]->base > (uintptr_t)c->base) {
        a->chunks[i] = a->chunks[i - 1];
        i--;
    }
    a->chunks[i] = c;
    a->n_chunks++;
    return c;
}

void *tg_pages_alloc(tg_pages_t *a, size_t bytes)
{
    if (bytes == 0 || bytes > (size_t)TG_PAGES_MAX_PAGES * PAGE)
        return NULL;
    unsigned pages = (unsigned)((bytes + PAGE - 1) / PAGE);
    free_list_t *l = &a->free[pages];
    void *p;
    chunk_t *c = NULL;
    if (l->n > 0) {
        p = l->v[--l->n];
        if (l->n < l->low)
            l->low = l->n;
        if (l->n < l->cold)
            l->cold = l->n;
        else
            a->free_hot -= (size_t)pages * PAGE;
        block_pages(a, p, &c);
    } else {
        c = a->cur;
        if (c == NULL || c->carved + pages > CHUNK_PAGES) {
            if (c != NULL && c->carved < CHUNK_PAGES) { /* the end of the old chunk: a free block */
                unsigned rest = CHUNK_PAGES - c->carved;
                if (push_free(a, c->base + (size_t)c->carved * PAGE, rest, 1) == 0) {
                    c->start[c->carved] = (uint8_t)rest;
                    c->carved = CHUNK_PAGES;
                }
            }
            if ((c = new_chunk(a)) == NULL)
                return NULL;
            a->cur = c;
        }
        p = c->base + (size_t)c->carved * PAGE;
        c->start[c->carved] = (uint8_t)pages;
        c->carved += pages;
    }
    c->live++;
    a->in_use += (size_t)pages * PAGE;
    return p;
}

size_t tg_pages_size(const tg_pages_t *a, const void *p)
{
    return a != NULL ? (size_t)block_pages(a, p, NULL) * PAGE : 0;
}

void tg_pages_free(tg_pages_t *a, void *p)
{
    chunk_t *c = NULL;
    unsigned pages = p != NULL ? block_pages(a, p, &c) : 0;
    if (pages == 0)
        abort(); /* not a block of this arena: memory is corrupt */
    c->live--;
    a->in_use -= (size_t)pages * PAGE;
    if (push_free(a, p, pages, 0) < 0) { /* no room to list it: its pages go back, the block is lost to reuse */
        madvise(p, (size_t)pages * PAGE, MADV_DONTNEED);
        c->start[((uintptr_t)p - (uintptr_t)c->base) / PAGE] = 0;
    }
}

static int reads_zeros(const void *p, size_t n)
{
    const uint64_t *w = p;
    for (size_t i = 0; i < n / sizeof(*w); i++)
        if (w[i] != 0)
            return 0;
    return 1;
}

size_t tg_pages_release(tg_pages_t *a, void *p, int zeros_only)
{
    unsigned pages = block_pages(a, p, NULL);
    size_t n = (size_t)pages * PAGE;
    if (pages == 0 || (zeros_only && !reads_zeros(p, n)))
        return 0;
    return madvise(p, n, MADV_DONTNEED) == 0 ? n : 0;
}

void tg_pages_trim(tg_pages_t *a)
{
    if (a == NULL)
        return;
    for (unsigned k = 1; k <= TG_PAGES_MAX_PAGES; k++) {
        free_list_t *l = &a->free[k];
        uint32_t upto = l->low < l->n ? l->low : l->n;
        for (uint32_t i = l->cold; i < upto; i++) {
            madvise(l->v[i], (size_t)k * PAGE, MADV_DONTNEED);
            a->free_hot -= (size_t)k * PAGE;
        }
        if (upto > l->cold)
            l->cold = upto;
        l->low = l->n;
    }
}

void tg_pages_stats(const tg_pages_t *a, tg_pages_stats_t *out)
{
    *out = (tg_pages_stats_t){ a->n_chunks * (size_t)CHUNK_PAGES * PAGE, a->in_use, a->free_hot };
}
