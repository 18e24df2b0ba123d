/*
 * proxy/h2mem.h — the nghttp2_mem a worker's nghttp2 sessions use: their
 * allocations (stream objects, header buffers, outbound items, bursts of
 * them with a hundred streams in flight) go through the worker's block
 * cache (proxy/base/mem.h), without locks: a worker's sessions are only
 * ever used on its thread.
 *
 * Large blocks (16 KiB and up: a session's outbound frame buffer) are
 * page-aligned and own their pages, so that an idle connection can give
 * those pages back (tg_h2mem_release) and keep only what it uses: an idle
 * HTTP/2 connection otherwise holds the pages its last frames touched.
 * To know which block is a session's frame buffer, the caller captures
 * the large block made while it creates the session.
 */
#ifndef TG_PROXY_H2MEM_H
#define TG_PROXY_H2MEM_H

#include <nghttp2/nghttp2.h>

#include "proxy/base/mem.h"

typedef struct tg_h2mem_watch {
    void *block;
    void **slot;                /* set to NULL when the block is freed */
} tg_h2mem_watch_t;

typedef struct tg_h2mem {
    nghttp2_mem mem;            /* what the sessions are given */
    tg_mem_t *cache;
    void **capture;             /* while set: where the next large block's address goes */
    tg_h2mem_watch_t *watch;    /* captured blocks (open addressing, a power of two), so that a */
    size_t watch_cap, watch_n;  /* captured address never outlives its block */
} tg_h2mem_t;

/* Fills h so that its mem allocates from cache (both live as long as the sessions). */
void tg_h2mem_init(tg_h2mem_t *h, tg_mem_t *cache);
void tg_h2mem_free(tg_h2mem_t *h);

/* The first large block allocated from now on is written to *slot (NULL:
 * stop), and *slot is set to NULL when that block is freed. */
static inline void tg_h2mem_capture(tg_h2mem_t *h, void **slot)
{
    h->capture = slot;
}

/* The pages of a large block go back to the system; their contents read
 * as zeros when next touched. Only for a block whose contents are dead
 * (a frame buffer with nothing queued). Returns the bytes given back. */
size_t tg_h2mem_release(void *block);

#endif
