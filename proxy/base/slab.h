/*
 * proxy/base/slab.h — fixed-size objects (connection structs, sockets)
 * carved from 64 KiB chunks a worker keeps: no C-library call per
 * connection once a worker has seen its load, no per-object header, no
 * rounding beyond 16 bytes, and a chunk (mapped from the kernel) has its pages
 * made resident only as its objects are first handed out.
 *
 * A chunk whose objects are all free is kept as the one spare (the next
 * burst reuses it) or given back; so a slab holds at most one empty chunk
 * besides those its live objects sit in.
 *
 * Single-threaded: a slab and its objects belong to one worker (or to the
 * thread that tears the worker down after it stopped). AddressSanitizer
 * builds allocate every object on its own so that the sanitizer sees each
 * use after free.
 */
#ifndef TG_BASE_SLAB_H
#define TG_BASE_SLAB_H

#include <stddef.h>

typedef struct tg_slab tg_slab_t;

/* Objects of size bytes (at most 4 KiB). NULL: no memory. */
tg_slab_t *tg_slab_new(size_t size);
/* Frees the slab; objects still out (a teardown frees them afterwards)
 * stay valid, and the last of them takes the slab's remains along. */
void tg_slab_destroy(tg_slab_t *s);
/* A zeroed object, or NULL. */
void *tg_slab_alloc(tg_slab_t *s);
void tg_slab_free(tg_slab_t *s, void *p);
/* Chunks held (for tests). */
size_t tg_slab_chunks(const tg_slab_t *s);

#endif
