/*
 * proxy/base/chunks.c — see chunks.h.
 */
#include "proxy/base/chunks.h"

#include <stdlib.h>
#include <string.h>

#define MID_N (1u << TG_CHUNK_MID_BITS)
#define CHUNK_N (1u << TG_CHUNK_BITS)

void tg_chunks_init(tg_chunks_t *t, size_t elem)
{
    memset(t, 0, sizeof(*t));
    t->elem = elem;
    atomic_init(&t->bytes, 0);
}

size_t tg_chunks_bytes(const tg_chunks_t *t)
{
    return atomic_load_explicit(&t->bytes, memory_order_relaxed);
}

void tg_chunks_free(tg_chunks_t *t)
{
    for (size_t i = 0; i < TG_CHUNK_TOP; i++) {
        _Atomic(char *) *mid = atomic_load_explicit(&t->top[i], memory_order_relaxed);
        if (mid == NULL)
            continue;
        for (size_t j = 0; j < MID_N; j++)
            free(atomic_load_explicit(&mid[j], memory_order_relaxed));
        free((void *)mid);
    }
    memset(t->top, 0, sizeof(t->top));
    atomic_store_explicit(&t->bytes, 0, memory_order_relaxed);
}

void *tg_chunks_get(tg_chunks_t *t, size_t i)
{
    void *e = tg_chunks_peek(t, i);
    if (e != NULL || i >= TG_CHUNKS_MAX)
        return e;
    size_t hi = i >> (TG_CHUNK_MID_BITS + TG_CHUNK_BITS), mi = (i >> TG_CHUNK_BITS) & (MID_N - 1);
    _Atomic(char *) *mid = atomic_load_explicit(&t->top[hi], memory_order_relaxed);
    if (mid == NULL) {
        if ((mid = calloc(MID_N, sizeof(*mid))) == NULL)
            return NULL;
        for (size_t j = 0; j < MID_N; j++)
            atomic_init(&mid[j], NULL);
        atomic_fetch_add_explicit(&t->bytes, MID_N * sizeof(*mid), memory_order_relaxed);
        atomic_store_explicit(&t->top[hi], mid, memory_order_release);
    }
    char *chunk = calloc(CHUNK_N, t->elem);
    if (chunk == NULL)
        return NULL;
    atomic_fetch_add_explicit(&t->bytes, CHUNK_N * t->elem, memory_order_relaxed);
    atomic_store_explicit(&mid[mi], chunk, memory_order_release);
    return chunk + (i & (CHUNK_N - 1)) * t->elem;
}
