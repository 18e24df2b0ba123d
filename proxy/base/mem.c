/*
 * proxy/base/mem.c — see mem.h.
 *
 * No header: a block is plain C-library memory, and its class is read back
 * from the size the C library gave it (malloc_usable_size): a block whose
 * usable size is at least a class's size serves any request up to it. A
 * miss asks the C library for exactly the class's size, so the block comes
 * back to the same class. Classes are four to a doubling from 64 (64, 80,
 * 96, 112, 128, 160, ...): a request wastes at most a fifth of its block,
 * where powers of two waste up to half (a 2,928-byte HTTP/2 session took
 * 4 KiB). Any block can thus be freed by free() anywhere, and any block of
 * a cacheable size can join a cache.
 */
#include "proxy/base/mem.h"
#include "proxy/base/asan.h"

#include <event2/event.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define N_CLASSES 43                /* 32 .. 64 KiB: 32, 48, then four to a doubling */
#define LIBEVENT_MIN 1024           /* libevent's smaller allocations (events, buffer structs) stay exact */
#ifdef TG_ASAN
#define CACHING 0
#else
#define CACHING 1
#endif

typedef struct free_block {
    struct free_block *next;
} free_block_t;

struct tg_mem {
    free_block_t *lists[N_CLASSES];
    uint32_t len[N_CLASSES];        /* blocks in each list */
    uint32_t low[N_CLASSES];        /* fewest blocks each list held since the last trim */
    size_t cached_bytes, max_cached;
    uint64_t allocs, misses;
};

static __thread tg_mem_t *thread_mem; /* the cache libevent uses on this thread */

/* Classes 32 and 48, then four to a doubling from 64: 64, 80, 96, 112,
 * 128, 160, ... Steps are 16 bytes or more because the C library may
 * hand out up to 15 bytes beyond a request (a 48-byte block reads as 56):
 * with 8-byte steps a block would read as the next class up when freed,
 * and its own class would miss for ever. */
static size_t class_size(unsigned c)
{
    if (c < 2)
        return 32 + 16 * (size_t)c;
    unsigned k = c + 2; /* from 64 = class 2 = k 4: (4 + k % 4) << (k / 4 + 3) */
    return (size_t)(4 + (k & 3)) << ((k >> 2) + 3);
}

/* The class a request of size bytes is served from (N_CLASSES: none):
 * the smallest whose size is at least size. */
static unsigned class_for_request(size_t size)
{
    if (!CACHING || size > class_size(N_CLASSES - 1))
        return N_CLASSES;
    if (size <= 64)
        return size <= 32 ? 0 : size <= 48 ? 1 : 2;
    size_t v = size - 1;
    unsigned shift = (unsigned)(63 - __builtin_clzll((unsigned long long)v)); /* v's top bit, 6 or more */
    return (shift - 5) * 4 + (unsigned)(v >> (shift - 2) & 3) + 1 - 2;
}

/* The class a block of usable bytes can serve (N_CLASSES: none): the
 * largest whose size is at most usable. */
static unsigned class_for_block(size_t usable)
{
    if (usable < 64)
        return usable < 32 ? N_CLASSES : usable < 48 ? 0 : 1;
    unsigned shift = (unsigned)(63 - __builtin_clzll((unsigned long long)usable));
    unsigned c = (shift - 5) * 4 + (unsigned)(usable >> (shift - 2) & 3) - 2;
    return c < N_CLASSES ? c : N_CLASSES;
}

tg_mem_t *tg_mem_new(size_t max_cached)
{
    tg_mem_t *m = calloc(1, sizeof(*m));
    if (m != NULL)
        m->max_cached = max_cached;
    return m;
}

void tg_mem_destroy(tg_mem_t *m)
{
    if (m == NULL)
        return;
    if (thread_mem == m)
        thread_mem = NULL;
    for (unsigned c = 0; c < N_CLASSES; c++)
        while (m->lists[c] != NULL) {
            free_block_t *b = m->lists[c];
            m->lists[c] = b->next;
            free(b);
        }
    free(m);
}

void *tg_mem_alloc(tg_mem_t *m, size_t size)
{
    unsigned c = class_for_request(size);
    if (m == NULL)
        return malloc(c < N_CLASSES ? class_size(c) : size ? size : 1);
    m->allocs++;
    if (c < N_CLASSES && m->lists[c] != NULL) {
        free_block_t *b = m->lists[c];
        m->lists[c] = b->next;
        if (--m->len[c] < m->low[c])
            m->low[c] = m->len[c];
        m->cached_bytes -= class_size(c);
        return b;
    }
    m->misses++;
    return malloc(c < N_CLASSES ? class_size(c) : size ? size : 1);
}

/* tg_mem_free for a block whose usable size the caller has read. */
static void free_usable(tg_mem_t *m, void *ptr, size_t usable)
{
    unsigned c = CACHING && m != NULL ? class_for_block(usable) : N_CLASSES;
    if (c == N_CLASSES || m->cached_bytes + class_size(c) > m->max_cached) {
        free(ptr);
        return;
    }
    free_block_t *b = ptr;
    b->next = m->lists[c];
    m->lists[c] = b;
    m->len[c]++;
    m->cached_bytes += class_size(c);
}

void tg_mem_free(tg_mem_t *m, void *ptr)
{
    if (ptr != NULL)
        free_usable(m, ptr, CACHING && m != NULL ? malloc_usable_size(ptr) : 0);
}

void *tg_mem_calloc(tg_mem_t *m, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = tg_mem_alloc(m, n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

void *tg_mem_realloc(tg_mem_t *m, void *ptr, size_t size)
{
    if (ptr == NULL)
        return tg_mem_alloc(m, size);
    size_t old = malloc_usable_size(ptr);
    if (size <= old && (CACHING || size == old))
        return ptr; /* still fits (sanitizer builds: exact sizes, so it sees every overflow) */
    void *n = tg_mem_alloc(m, size);
    if (n == NULL)
        return NULL;
    memcpy(n, ptr, old < size ? old : size);
    tg_mem_free(m, ptr);
    return n;
}

void tg_mem_trim(tg_mem_t *m)
{
    if (m == NULL)
        return;
    for (unsigned c = 0; c < N_CLASSES; c++) {
        for (uint32_t k = m->low[c]; k > 0 && m->lists[c] != NULL; k--) {
            free_block_t *b = m->lists[c];
            m->lists[c] = b->next;
            m->len[c]--;
            m->cached_bytes -= class_size(c);
            free(b);
        }
        m->low[c] = m->len[c];
    }
}

void tg_mem_stats(const tg_mem_t *m, tg_mem_stats_t *out)
{
    *out = (tg_mem_stats_t){ m->allocs, m->misses, m->cached_bytes };
}

static void *ev_malloc(size_t n)
{
    return n >= LIBEVENT_MIN ? tg_mem_alloc(thread_mem, n) : malloc(n);
}

static void *ev_realloc(void *p, size_t n)
{
    return n >= LIBEVENT_MIN ? tg_mem_realloc(thread_mem, p, n) : realloc(p, n);
}

static void ev_free(void *p)
{
    if (p == NULL)
        return;
    size_t usable = malloc_usable_size(p); /* read once: it also picks the class */
    if (usable >= LIBEVENT_MIN)
        free_usable(thread_mem, p, usable);
    else
        free(p);
}

void tg_mem_hook_libevent(void)
{
    event_set_mem_functions(ev_malloc, ev_realloc, ev_free);
}

void tg_mem_bind(tg_mem_t *m)
{
    thread_mem = m;
}
