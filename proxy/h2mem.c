/*
 * proxy/h2mem.c — see h2mem.h.
 */
#include "proxy/h2mem.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PAGE TG_PAGES_SIZE
#define FRAMEBUF 16384 /* and up: a session's outbound frame buffer */

/* The pages of a page block of h's arena (0: a C-library block). */
static size_t page_block(const tg_h2mem_t *h, const void *p)
{
    return h->pages != NULL && p != NULL && ((uintptr_t)p & (PAGE - 1)) == 0 ? tg_pages_size(h->pages, p) : 0;
}

static size_t home(const tg_h2mem_t *h, const void *p)
{
    return ((uintptr_t)p / PAGE * 0x9e3779b97f4a7c15ull) >> 20 & (h->watch_cap - 1);
}

/* Remembers that *slot holds block. -1: no memory (then it is not captured). */
static int watch_add(tg_h2mem_t *h, void *block, void **slot)
{
    if ((h->watch_n + 1) * 2 > h->watch_cap) {
        size_t cap = h->watch_cap ? h->watch_cap * 2 : 64;
        tg_h2mem_watch_t *old = h->watch, *nw = calloc(cap, sizeof(*nw));
        if (nw == NULL)
            return -1;
        size_t old_cap = h->watch_cap;
        h->watch = nw;
        h->watch_cap = cap;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].block != NULL) {
                size_t j = home(h, old[i].block);
                while (nw[j].block != NULL)
                    j = (j + 1) & (cap - 1);
                nw[j] = old[i];
            }
        free(old);
    }
    size_t j = home(h, block);
    while (h->watch[j].block != NULL)
        j = (j + 1) & (h->watch_cap - 1);
    h->watch[j] = (tg_h2mem_watch_t){ block, slot };
    h->watch_n++;
    return 0;
}

/* A large block is freed: the slot that captured it forgets it. */
static void watch_drop(tg_h2mem_t *h, void *block)
{
    if (h->watch_cap == 0)
        return;
    size_t mask = h->watch_cap - 1, i = home(h, block);
    while (h->watch[i].block != NULL && h->watch[i].block != block)
        i = (i + 1) & mask;
    if (h->watch[i].block == NULL)
        return;
    *h->watch[i].slot = NULL;
    h->watch[i].block = NULL;
    h->watch_n--;
    for (size_t j = (i + 1) & mask; h->watch[j].block != NULL; j = (j + 1) & mask) {
        size_t k = home(h, h->watch[j].block); /* linear probing: move back what i's emptiness would hide */
        if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
            h->watch[i] = h->watch[j];
            h->watch[j].block = NULL;
            i = j;
        }
    }
}

static void *alloc(tg_h2mem_t *h, size_t size)
{
    if (size < PAGE || h->pages == NULL || size > (size_t)TG_PAGES_MAX_PAGES * PAGE)
        return tg_mem_alloc(h->cache, size);
    void *p = tg_pages_alloc(h->pages, size);
    if (p != NULL && h->capture != NULL) {
        if (watch_add(h, p, h->capture) == 0) {
            *h->capture++ = p;
            h->capture_n--;
        }
        if (h->capture_n == 0)
            h->capture = NULL;
    }
    return p;
}

static void release(tg_h2mem_t *h, void *ptr)
{
    if (page_block(h, ptr) != 0) {
        watch_drop(h, ptr);
        tg_pages_free(h->pages, ptr);
    } else
        tg_mem_free(h->cache, ptr);
}

static void *h2_malloc(size_t size, void *ud)
{
    return alloc(ud, size);
}

static void h2_free(void *ptr, void *ud)
{
    release(ud, ptr);
}

static void *h2_calloc(size_t n, size_t size, void *ud)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = alloc(ud, n * size);
    if (p != NULL)
        memset(p, 0, n * size);
    return p;
}

static void *h2_realloc(void *ptr, size_t size, void *ud)
{
    tg_h2mem_t *h = ud;
    if (ptr == NULL)
        return alloc(h, size);
    size_t old = page_block(h, ptr);
    if (old == 0 && (size < PAGE || h->pages == NULL))
        return tg_mem_realloc(h->cache, ptr, size);
    if (old == 0)
        old = malloc_usable_size(ptr);
    else if (size <= old && size >= PAGE)
        return ptr; /* still fits its pages */
    void *n = alloc(h, size);
    if (n == NULL)
        return NULL;
    memcpy(n, ptr, old < size ? old : size);
    release(h, ptr);
    return n;
}

void tg_h2mem_init(tg_h2mem_t *h, tg_mem_t *cache, tg_pages_t *pages)
{
    *h = (tg_h2mem_t){ .cache = cache, .pages = pages };
    h->mem = (nghttp2_mem){ h, h2_malloc, h2_free, h2_calloc, h2_realloc };
}

void tg_h2mem_free(tg_h2mem_t *h)
{
    free(h->watch);
    h->watch = NULL;
    h->watch_cap = h->watch_n = 0;
}

size_t tg_h2mem_release_idle(tg_h2mem_t *h, void *block)
{
    size_t n = page_block(h, block);
    return n != 0 ? tg_pages_release(h->pages, block, n < FRAMEBUF) : 0;
}
