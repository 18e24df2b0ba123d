/*
 * proxy/base/chunks.h — a table of fixed-size elements, indexed by slot,
 * that grows without ever moving an element: chunks of 256 elements,
 * found through a two-level directory made as slots are first used. A
 * reader on another thread may look at any element while the table
 * grows (the directory's pointers are published with release stores), so
 * per-worker counters and the process's health table need no fixed
 * capacity: memory follows the slots in use, a chunk at a time.
 *
 * Making chunks is for one thread per table (its writer: a worker for its
 * own counters, the main thread for the health table); any thread may
 * peek. Chunks live until the table is freed.
 */
#ifndef TG_BASE_CHUNKS_H
#define TG_BASE_CHUNKS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TG_CHUNK_BITS 8          /* 256 elements a chunk */
#define TG_CHUNK_MID_BITS 10     /* 1,024 chunks a middle table */
#define TG_CHUNK_TOP 1024        /* middle tables */
/* Slots a table can hold: 2^28 (268,435,456). */
#define TG_CHUNKS_MAX ((size_t)TG_CHUNK_TOP << (TG_CHUNK_MID_BITS + TG_CHUNK_BITS))

typedef struct tg_chunks {
    size_t elem;                                /* bytes an element */
    _Atomic(_Atomic(char *) *) top[TG_CHUNK_TOP]; /* middle tables of chunk pointers */
    atomic_size_t bytes;                        /* chunks and tables made (written by the writer, read by any) */
} tg_chunks_t;

void tg_chunks_init(tg_chunks_t *t, size_t elem);
void tg_chunks_free(tg_chunks_t *t);
/* Memory the table holds. Any thread. */
size_t tg_chunks_bytes(const tg_chunks_t *t);

/* Element i, or NULL if its chunk was never made. Any thread. */
static inline void *tg_chunks_peek(const tg_chunks_t *t, size_t i)
{
    if (i >= TG_CHUNKS_MAX)
        return NULL;
    _Atomic(char *) *mid = atomic_load_explicit(&t->top[i >> (TG_CHUNK_MID_BITS + TG_CHUNK_BITS)], memory_order_acquire);
    if (mid == NULL)
        return NULL;
    char *chunk = atomic_load_explicit(&mid[(i >> TG_CHUNK_BITS) & ((1u << TG_CHUNK_MID_BITS) - 1)],
                                       memory_order_acquire);
    return chunk ? chunk + (i & ((1u << TG_CHUNK_BITS) - 1)) * t->elem : NULL;
}

/* Element i, its chunk made (zeroed) if new. The table's writer only.
 * NULL: out of memory, or i >= TG_CHUNKS_MAX. */
void *tg_chunks_get(tg_chunks_t *t, size_t i);

#endif
