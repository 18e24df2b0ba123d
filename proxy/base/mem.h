/*
 * proxy/base/mem.h — a worker's block cache: freed blocks are kept in
 * per-size-class lists (four to a doubling, 32 bytes to 64 KiB) and handed out
 * again, so a worker in steady state makes no heap allocation per request.
 *
 * Who uses it:
 *  - nghttp2, through proxy/h2mem (stream objects, header blocks, frames);
 *  - libevent, for everything it allocates on a worker's thread (evbuffer
 *    chains above all: a head written into an empty buffer, a read into an
 *    empty buffer): tg_mem_hook_libevent() routes libevent's allocator
 *    through tg_mem_alloc/tg_mem_free with the cache the calling thread
 *    bound with tg_mem_bind() (none on the main thread: plain malloc).
 *
 * A block is plain C-library memory with no header of ours (its class is
 * read back from malloc_usable_size), so it may be freed on any thread,
 * with or without a cache, even by free(): freed on a thread with a cache
 * it joins that cache (ownership moves with it; nothing is shared between
 * threads), otherwise it goes back to the C library. Requests above the
 * largest class are plain malloc. libevent's allocations under 1 KiB (its
 * events and buffer structs, which idle connections may keep) stay exact
 * C-library allocations; its buffer chains (1 KiB and up) are cached.
 *
 * Bounded: a cache keeps at most its byte budget, and tg_mem_trim() (the
 * worker calls it every few seconds) gives back the blocks of each class
 * that no allocation needed since the previous trim, so memory taken by a
 * burst returns to the C library once the burst is over.
 *
 * AddressSanitizer builds do not cache (every free reaches the sanitizer,
 * which then sees each use after free). Single-threaded per cache.
 */
#ifndef TG_BASE_MEM_H
#define TG_BASE_MEM_H

#include <stddef.h>
#include <stdint.h>

typedef struct tg_mem tg_mem_t;

/* A cache keeping at most max_cached bytes of free blocks. NULL: no memory. */
tg_mem_t *tg_mem_new(size_t max_cached);
/* Frees the cached blocks (blocks in use stay valid: they are plain
 * C-library memory, freed by tg_mem_free(NULL, p) or free() on any thread). */
void tg_mem_destroy(tg_mem_t *m);

/* m may be NULL (no cache: malloc with a header). */
void *tg_mem_alloc(tg_mem_t *m, size_t n);
void *tg_mem_calloc(tg_mem_t *m, size_t n, size_t size);
void *tg_mem_realloc(tg_mem_t *m, void *p, size_t n);
void tg_mem_free(tg_mem_t *m, void *p);

/* Returns the free blocks no allocation used since the previous call. */
void tg_mem_trim(tg_mem_t *m);

typedef struct tg_mem_stats {
    uint64_t allocs;        /* allocations asked of the cache */
    uint64_t misses;        /* ... that went to the C library */
    size_t cached_bytes;    /* free blocks held now */
} tg_mem_stats_t;
void tg_mem_stats(const tg_mem_t *m, tg_mem_stats_t *out);

/* Makes libevent allocate through tg_mem (call before any other libevent
 * call, once per process). */
void tg_mem_hook_libevent(void);
/* The calling thread's libevent allocations use m from now on (NULL: none). */
void tg_mem_bind(tg_mem_t *m);

#endif
