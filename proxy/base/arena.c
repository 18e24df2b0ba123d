/*
 * proxy/base/arena.c — see arena.h.
 */
#include "proxy/base/arena.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 4096

struct tg_arena_block {
    tg_arena_block_t *next;
    size_t size;
    _Alignas(16) unsigned char data[];
};

void tg_arena_init(tg_arena_t *a)
{
    a->head = a->first = NULL;
    a->cur = a->end = NULL;
}

void *tg_arena_alloc_block(tg_arena_t *a, size_t n)
{
    size_t size = n > ARENA_BLOCK - sizeof(tg_arena_block_t) ? n : ARENA_BLOCK - sizeof(tg_arena_block_t);
    tg_arena_block_t *nb = malloc(sizeof(*nb) + size);
    if (nb == NULL)
        return NULL;
    nb->size = size;
    nb->next = a->head;
    a->head = nb;
    if (a->first == NULL)
        a->first = nb;
    a->cur = nb->data + n;
    a->end = nb->data + size;
    return nb->data;
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
        a->first->next = NULL;
        a->cur = a->first->data;
        a->end = a->first->data + a->first->size;
    } else {
        a->cur = a->end = NULL;
    }
}

void tg_arena_free(tg_arena_t *a)
{
    tg_arena_reset(a);
    free(a->first);
    a->head = a->first = NULL;
    a->cur = a->end = NULL;
}
