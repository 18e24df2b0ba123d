/*
 * proxy/h2mem.c — see h2mem.h. Every block carries a 16-byte header with
 * its size class (keeping the payload 16-byte aligned); blocks above the
 * largest class go straight to malloc and are marked as such.
 */
#include "proxy/h2mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SHIFT 5                 /* 32 bytes */
#define N_CLASSES 8                 /* 32 .. 4096 */
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
#define CACHING 0                   /* AddressSanitizer must see every free */
#else
#define CACHING 1
#endif
#define MAX_CACHED_BYTES (8u << 20) /* per worker */

typedef struct free_block {
    struct free_block *next;
} free_block_t;

struct tg_h2mem {
    nghttp2_mem mem;
    free_block_t *lists[N_CLASSES];
    size_t cached_bytes;
};

static unsigned class_of(size_t size)
{
    unsigned c = 0;
    while (c < N_CLASSES && ((size_t)1 << (MIN_SHIFT + c)) < size)
        c++;
    return c < N_CLASSES ? c : LARGE;
}

static void *h2mem_malloc(size_t size, void *ud)
{
    tg_h2mem_t *m = ud;
    unsigned c = class_of(size);
    unsigned char *p;
    if (c != LARGE && m->lists[c] != NULL) {
        free_block_t *b = m->lists[c];
        m->lists[c] = b->next;
        m->cached_bytes -= (size_t)1 << (MIN_SHIFT + c);
        p = (unsigned char *)b;
    } else {
        size_t n = c == LARGE ? size : (size_t)1 << (MIN_SHIFT + c);
        if ((p = malloc(HDR + n)) == NULL)
            return NULL;
        p += HDR;
    }
    p[-1] = (unsigned char)c;
    if (c == LARGE)
        memcpy(p - HDR, &size, sizeof(size));
    return p;
}

static void h2mem_free(void *ptr, void *ud)
{
    tg_h2mem_t *m = ud;
    if (ptr == NULL)
        return;
    unsigned char *p = ptr;
    unsigned c = p[-1];
    if (!CACHING || c == LARGE || m->cached_bytes >= MAX_CACHED_BYTES) {
        free(p - HDR);
        return;
    }
    free_block_t *b = ptr;
    b->next = m->lists[c];
    m->lists[c] = b;
    m->cached_bytes += (size_t)1 << (MIN_SHIFT + c);
}

static void *h2mem_calloc(size_t n, size_t size, void *ud)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = h2mem_malloc(n * size, ud);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

static void *h2mem_realloc(void *ptr, size_t size, void *ud)
{
    if (ptr == NULL)
        return h2mem_malloc(size, ud);
    unsigned char *p = ptr;
    size_t old;
    if (p[-1] == LARGE)
        memcpy(&old, p - HDR, sizeof(old));
    else
        old = (size_t)1 << (MIN_SHIFT + p[-1]);
    if (size <= old && p[-1] != LARGE)
        return ptr; /* still fits its class */
    void *n = h2mem_malloc(size, ud);
    if (n == NULL)
        return NULL;
    memcpy(n, ptr, old < size ? old : size);
    h2mem_free(ptr, ud);
    return n;
}

tg_h2mem_t *tg_h2mem_new(void)
{
    tg_h2mem_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->mem = (nghttp2_mem){ m, h2mem_malloc, h2mem_free, h2mem_calloc, h2mem_realloc };
    return m;
}

void tg_h2mem_free(tg_h2mem_t *m)
{
    if (m == NULL)
        return;
    for (unsigned c = 0; c < N_CLASSES; c++)
        while (m->lists[c] != NULL) {
            free_block_t *b = m->lists[c];
            m->lists[c] = b->next;
            free((unsigned char *)b - HDR);
        }
    free(m);
}

nghttp2_mem *tg_h2mem_nghttp2(tg_h2mem_t *m)
{
    return &m->mem;
}
