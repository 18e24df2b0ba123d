/*
 * proxy/base/mem.c — see mem.h.
 *
 * Block layout: [16-byte header][payload]. The header's last byte is the
 * size class (LARGE for blocks above the largest class, whose first 8
 * header bytes then hold the size). A free block's payload holds the list
 * link.
 */
#include "proxy/base/mem.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SHIFT 5                 /* 32 bytes */
#define N_CLASSES 12                /* 32 .. 64 KiB */
#define LARGE 0xff
#define HDR 16
#if defined(__SANITIZE_ADDRESS__)
#define TG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG_ASAN 1
#endif
#endif
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

static unsigned class_of(size_t size)
{
    if (!CACHING)
        return LARGE; /* exact sizes: the sanitizer sees every overflow */
    if (size <= ((size_t)1 << MIN_SHIFT))
        return 0;
    if (size > ((size_t)1 << (MIN_SHIFT + N_CLASSES - 1)))
        return LARGE;
    /* the smallest c with 2^(MIN_SHIFT+c) >= size */
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(size - 1))) - MIN_SHIFT;
}

static size_t class_size(unsigned c)
{
    return (size_t)1 << (MIN_SHIFT + c);
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
            free((unsigned char *)b - HDR);
        }
    free(m);
}

void *tg_mem_alloc(tg_mem_t *m, size_t size)
{
    unsigned c = class_of(size);
    unsigned char *p;
    if (m != NULL)
        m->allocs++;
    if (m != NULL && c != LARGE && m->lists[c] != NULL) {
        free_block_t *b = m->lists[c];
        m->lists[c] = b->next;
        if (--m->len[c] < m->low[c])
            m->low[c] = m->len[c];
        m->cached_bytes -= class_size(c);
        p = (unsigned char *)b;
    } else {
        if (m != NULL)
            m->misses++;
        size_t n = c == LARGE ? size : class_size(c);
        if (n > SIZE_MAX - HDR || (p = malloc(HDR + n)) == NULL)
            return NULL;
        p += HDR;
    }
    p[-1] = (unsigned char)c;
    if (c == LARGE)
        memcpy(p - HDR, &size, sizeof(size));
    return p;
}

void tg_mem_free(tg_mem_t *m, void *ptr)
{
    if (ptr == NULL)
        return;
    unsigned char *p = ptr;
    unsigned c = p[-1];
    if (!CACHING || m == NULL || c == LARGE || m->cached_bytes + class_size(c) > m->max_cached) {
        free(p - HDR);
        return;
    }
    free_block_t *b = ptr;
    b->next = m->lists[c];
    m->lists[c] = b;
    m->len[c]++;
    m->cached_bytes += class_size(c);
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
    unsigned char *p = ptr;
    size_t old;
    if (p[-1] == LARGE)
        memcpy(&old, p - HDR, sizeof(old));
    else
        old = class_size(p[-1]);
    if (size <= old && p[-1] != LARGE)
        return ptr; /* still fits its class */
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
            free((unsigned char *)b - HDR);
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
    return tg_mem_alloc(thread_mem, n);
}

static void *ev_realloc(void *p, size_t n)
{
    return tg_mem_realloc(thread_mem, p, n);
}

static void ev_free(void *p)
{
    tg_mem_free(thread_mem, p);
}

void tg_mem_hook_libevent(void)
{
    event_set_mem_functions(ev_malloc, ev_realloc, ev_free);
}

void tg_mem_bind(tg_mem_t *m)
{
    thread_mem = m;
}
