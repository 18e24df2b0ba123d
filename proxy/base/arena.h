/*
 * proxy/base/arena.h — a bump allocator for per-exchange memory (request and
 * response heads, header arrays, scratch strings). Everything allocated
 * from an arena is freed together by tg_arena_reset() when the exchange
 * ends; the first block is kept so a recycled exchange allocates nothing
 * for a typical request. Single-threaded: an arena belongs to one worker.
 */
#ifndef TG_BASE_ARENA_H
#define TG_BASE_ARENA_H

#include <stddef.h>

typedef struct tg_arena_block tg_arena_block_t;

typedef struct tg_arena {
    tg_arena_block_t *head;   /* current block; older ones linked behind it */
    tg_arena_block_t *first;  /* kept across resets */
    unsigned char *cur, *end; /* head's free bytes */
} tg_arena_t;

void tg_arena_init(tg_arena_t *a);
/* A new block for n bytes (n a multiple of 8): tg_arena_alloc's slow path. */
void *tg_arena_alloc_block(tg_arena_t *a, size_t n);
/* Returns 8-byte aligned memory, or NULL when malloc fails. Inline: an
 * exchange allocates a dozen times per request. */
static inline void *tg_arena_alloc(tg_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (a->cur == NULL || (size_t)(a->end - a->cur) < n) /* no block yet (even for 0 bytes), or full */
        return tg_arena_alloc_block(a, n);
    void *p = a->cur;
    a->cur += n;
    return p;
}
/* Copies n bytes and appends a NUL. */
char *tg_arena_strndup(tg_arena_t *a, const char *s, size_t n);
/* Frees every block but the first, which is emptied for reuse. */
void tg_arena_reset(tg_arena_t *a);
/* Frees everything. */
void tg_arena_free(tg_arena_t *a);

#endif
