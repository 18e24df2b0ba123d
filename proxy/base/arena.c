/*
 * proxy/base/arena.c — see arena.h.
 */
#include "proxy/base/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 4096

struct tg_arena_block {
    tg_arena_block_t *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void tg_arena_init(tg_arena_t *a)
{
    a->head = a->first = NULL;
}

void *tg_arena_alloc(tg_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    tg_arena_block_t *b = a->head;
    if (b == NULL || b->size - b->used < n) {
        size_t size = n > ARENA_BLOCK - sizeof(*b) ? n : ARENA_BLOCK - sizeof(*b);
        tg_arena_block_t *nb = malloc(sizeof(*nb) + size);
        if (nb == NULL)
            return NULL;
        nb->size = size;
        nb->used = 0;
        nb->next = b;
        a->head = nb;
        if (a->first == NULL)
            a->first = nb;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *tg_arena_strndup(tg_arena_t *a, const char *s, size_t n)
{
    char *p = tg_arena_alloc(a, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void tg_arena_reset(tg_arena_t *a)
{
    tg_arena_block_t *b = a->head;
    while (b != NULL && b != a->first) {
        tg_arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    a->head = a->first;
    if (a->first != NULL) {
        a->first->used = 0;
        a->first->next = NULL;
    }
}

void tg_arena_free(tg_arena_t *a)
{
    tg_arena_reset(a);
    free(a->first);
    a->head = a->first = NULL;
}
