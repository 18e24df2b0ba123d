/*
 * proxy/base/pages.h — blocks of whole pages (1 to TG_PAGES_MAX_PAGES),
 * page-aligned, carved from 1 MiB mappings: what a block holds can go back
 * to the system while the block stays in use (tg_pages_release), with no
 * alignment waste around it. proxy/h2mem puts nghttp2's page-sized blocks
 * here (a session's stream map and outbound frame buffer), which an idle
 * HTTP/2 connection gives back.
 *
 * Freed blocks are kept in a list per size and handed out again; the
 * pages of those no allocation needed between two tg_pages_trim() calls go
 * back to the system (the block stays listed, and reads as zeros when
 * next handed out). Mappings are unmapped only by tg_pages_destroy().
 *
 * Single-threaded: a worker's, used on its thread only. Blocks are not
 * C-library memory: free them with tg_pages_free() on the same arena.
 */
#ifndef TG_BASE_PAGES_H
#define TG_BASE_PAGES_H

#include <stddef.h>

#define TG_PAGES_SIZE 4096
#define TG_PAGES_MAX_PAGES 8 /* the largest block: 32 KiB */

typedef struct tg_pages tg_pages_t;

/* NULL: no memory. */
tg_pages_t *tg_pages_new(void);
/* Unmaps every mapping with no block in use (blocks still out keep theirs). */
void tg_pages_destroy(tg_pages_t *a);

/* A block of bytes rounded up to whole pages; NULL when bytes is 0 or above
 * TG_PAGES_MAX_PAGES pages, or no memory. */
void *tg_pages_alloc(tg_pages_t *a, size_t bytes);
/* The size of the block p, if a holds it (0: p is not one of a's blocks). */
size_t tg_pages_size(const tg_pages_t *a, const void *p);
void tg_pages_free(tg_pages_t *a, void *p);

/* The pages of a block in use go back to the system and read as zeros
 * when next touched: for a block whose contents are dead, or (zeros_only)
 * only if it reads as zeros already, so that nothing changes for whoever
 * uses it. Returns the bytes given back. */
size_t tg_pages_release(tg_pages_t *a, void *p, int zeros_only);

/* The pages of free blocks no allocation used since the previous call go back. */
void tg_pages_trim(tg_pages_t *a);

typedef struct tg_pages_stats {
    size_t mapped;   /* bytes of mappings */
    size_t in_use;   /* bytes of blocks handed out */
    size_t free_hot; /* bytes of free blocks whose pages are still held */
} tg_pages_stats_t;
void tg_pages_stats(const tg_pages_t *a, tg_pages_stats_t *out);

#endif
