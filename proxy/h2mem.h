/*
 * proxy/h2mem.h — the nghttp2_mem a worker's nghttp2 sessions use: their
 * allocations (stream objects, header buffers, outbound items, bursts of
 * them with a hundred streams in flight) go through the worker's block
 * cache (proxy/base/mem.h), without locks: a worker's sessions are only
 * ever used on its thread.
 *
 * Blocks of a page and more (up to TG_PAGES_MAX_PAGES: a session's stream
 * map, its outbound frame buffer) come from the worker's page arena
 * (proxy/base/pages.h): page-aligned, they can give their pages back while
 * the block stays in use, which is how an idle HTTP/2 connection keeps
 * only what it uses (tg_h2mem_release_idle). To know which blocks are a
 * session's, the caller captures the page blocks made while it creates it.
 */
#ifndef TG_PROXY_H2MEM_H
#define TG_PROXY_H2MEM_H

#include <nghttp2/nghttp2.h>

#include "proxy/base/mem.h"
#include "proxy/base/pages.h"

typedef struct tg_h2mem_watch {
    void *block;
    void **slot;                /* set to NULL when the block is freed */
} tg_h2mem_watch_t;

typedef struct tg_h2mem {
    nghttp2_mem mem;            /* what the sessions are given */
    tg_mem_t *cache;
    tg_pages_t *pages;          /* NULL: page blocks are C-library memory too */
    void **capture;             /* while set: where the next page blocks' addresses go ... */
    size_t capture_n;           /* ... (this many slots left) */
    tg_h2mem_watch_t *watch;    /* captured blocks (open addressing, a power of two), so that a */
    size_t watch_cap, watch_n;  /* captured address never outlives its block */
} tg_h2mem_t;

/* Fills h so that its mem allocates from cache and pages (pages may be
 * NULL; all three live as long as the sessions). */
void tg_h2mem_init(tg_h2mem_t *h, tg_mem_t *cache, tg_pages_t *pages);
void tg_h2mem_free(tg_h2mem_t *h);

/* The page blocks allocated from now on are written to slots[0], slots[1],
 * ... (n of them at most; n 0: stop), and a slot is set to NULL when its
 * block is freed. */
static inline void tg_h2mem_capture(tg_h2mem_t *h, void **slots, size_t n)
{
    h->capture = n ? slots : NULL;
    h->capture_n = n;
}

/* A captured block of a session with no stream and nothing queued gives
 * its pages back; they read as zeros when next touched. The outbound
 * frame buffer (16 KiB and up: what it holds was sent) goes back whole;
 * a smaller block (the stream map's table) only while it reads as zeros,
 * so that nothing changes for the session. Returns the bytes given back. */
size_t tg_h2mem_release_idle(tg_h2mem_t *h, void *block);

#endif
