/*
 * proxy/base/slab.c — see slab.h. A chunk is 64 KiB aligned to its size,
 * so an object finds its chunk by masking its address. Chunks with free
 * room are on the slab's partial list; full ones are on no list.
 */
#include "proxy/base/slab.h"
#include "proxy/base/asan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK ((size_t)64 * 1024)
#ifdef TG_ASAN
#define CARVING 0 /* every object on its own: the sanitizer sees each use after free */
#else
#define CARVING 1
#endif

typedef struct free_obj {
    struct free_obj *next;
} free_obj_t;

typedef struct chunk {
    struct chunk *next, **prev;  /* in the partial list (prev NULL: not on it) */
    free_obj_t *free;            /* freed objects */
    uint32_t used;               /* objects handed out */
    uint32_t carved;             /* objects ever handed out from the untouched tail */
} chunk_t;

#define FIRST_OFFSET ((sizeof(chunk_t) + 15) & ~(size_t)15)

struct tg_slab {
    size_t size;
    uint32_t per_chunk;
    chunk_t *partial;
    chunk_t *spare;              /* one empty chunk kept */
    size_t n_chunks;
    size_t live;                 /* objects handed out and not freed */
    int orphaned;                /* destroyed while objects lived: goes with the last */
};

tg_slab_t *tg_slab_new(size_t size)
{
    if (size == 0 || size > 4096)
        return NULL;
    tg_slab_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->size = (size + 15) & ~(size_t)15;
    s->per_chunk = (uint32_t)((CHUNK - FIRST_OFFSET) / s->size);
    return s;
}

static void partial_add(tg_slab_t *s, chunk_t *c)
{
    c->next = s->partial;
    if (c->next)
        c->next->prev = &c->next;
    c->prev = &s->partial;
    s->partial = c;
}

static void partial_remove(chunk_t *c)
{
    *c->prev = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
}

/* A chunk aligned to its size, straight from the kernel: its pages become
 * resident only as objects are carved from them (a C-library aligned
 * allocation would leave a touched hole before each chunk). */
static chunk_t *chunk_new(tg_slab_t *s)
{
    char *p = mmap(NULL, 2 * CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    char *c = (char *)(((uintptr_t)p + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1));
    if (c > p)
        munmap(p, (size_t)(c - p));
    if (c + CHUNK < p + 2 * CHUNK)
        munmap(c + CHUNK, (size_t)(p + 2 * CHUNK - (c + CHUNK)));
    s->n_chunks++;
    return (chunk_t *)c; /* zero-filled */
}

static void chunk_release(tg_slab_t *s, chunk_t *c)
{
    munmap(c, CHUNK);
    s->n_chunks--;
}

void tg_slab_destroy(tg_slab_t *s)
{
    if (s == NULL)
        return;
    if (s->spare != NULL) {
        chunk_release(s, s->spare);
        s->spare = NULL;
    }
    if (s->live > 0) {
        /* objects still out (freed later in a teardown): the last one's
         * free releases its chunk and the slab */
        s->orphaned = 1;
        return;
    }
    free(s);
}

void *tg_slab_alloc(tg_slab_t *s)
{
    if (!CARVING) {
        void *o = calloc(1, s->size);
        s->live += o != NULL;
        return o;
    }
    chunk_t *c = s->partial;
    if (c == NULL) {
        if ((c = s->spare) != NULL)
            s->spare = NULL;
        else if ((c = chunk_new(s)) == NULL)
            return NULL;
        partial_add(s, c);
    }
    void *p;
    if (c->free != NULL) {
        p = c->free;
        c->free = c->free->next;
    } else
        p = (char *)c + FIRST_OFFSET + (size_t)c->carved++ * s->size;
    if (++c->used == s->per_chunk)
        partial_remove(c);
    s->live++;
    memset(p, 0, s->size);
    return p;
}

void tg_slab_free(tg_slab_t *s, void *p)
{
    if (p == NULL)
        return;
    s->live--;
    if (!CARVING) {
        free(p);
        if (s->orphaned && s->live == 0)
            free(s);
        return;
    }
    chunk_t *c = (chunk_t *)((uintptr_t)p & ~(uintptr_t)(CHUNK - 1));
    free_obj_t *o = p;
    o->next = c->free;
    c->free = o;
    if (c->used-- == s->per_chunk)
        partial_add(s, c);
    if (c->used == 0) {
        partial_remove(c);
        if (s->spare == NULL && !s->orphaned) {
            c->free = NULL; /* carve again from the start: the pages it touches stay the same */
            c->carved = 0;
            s->spare = c;
        } else
            chunk_release(s, c);
    }
    if (s->orphaned && s->live == 0)
        free(s);
}

size_t tg_slab_chunks(const tg_slab_t *s)
{
    return s->n_chunks;
}
