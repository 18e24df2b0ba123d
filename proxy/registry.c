/*
 * proxy/registry.c — see registry.h. Lookups are linear: they happen only
 * when a snapshot is built, over at most a few thousand names.
 */
#include "proxy/registry.h"

#include "proxy/base/chunks.h"

#include <stdlib.h>
#include <string.h>

static unsigned live_of(tg_registry_entry_t *e)
{
    return atomic_load_explicit(&e->live, memory_order_acquire);
}

static tg_registry_entry_t *lease(tg_registry_entry_t *e)
{
    atomic_fetch_add_explicit(&e->live, 1, memory_order_relaxed);
    return e;
}

tg_registry_entry_t *tg_registry_acquire(tg_registry_t *r, const char *name)
{
    tg_registry_entry_t *idle = NULL;
    for (size_t i = 0; i < r->n; i++) {
        tg_registry_entry_t *e = r->entries[i];
        if (strcmp(e->name, name) == 0)
            return lease(e);
        if (idle == NULL && live_of(e) == 0)
            idle = e;
    }
    if (idle != NULL) { /* nothing uses it any more: it passes to the new name */
        char *copy = strdup(name);
        if (copy == NULL)
            return NULL;
        free(idle->name);
        idle->name = copy;
        idle->gen++;
        if (r->on_reuse != NULL)
            r->on_reuse(r->reuse_arg, idle->slot);
        return lease(idle);
    }
    if (r->n >= (r->limit ? r->limit : TG_CHUNKS_MAX))
        return NULL;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        tg_registry_entry_t **n = realloc(r->entries, ncap * sizeof(*n));
        if (n == NULL)
            return NULL;
        r->entries = n;
        r->cap = ncap;
    }
    tg_registry_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->name = strdup(name)) == NULL) {
        free(e);
        return NULL;
    }
    e->slot = r->n;
    if (r->on_new != NULL && r->on_new(r->reuse_arg, e->slot) < 0) {
        free(e->name);
        free(e);
        return NULL;
    }
    atomic_init(&e->live, 0);
    r->entries[r->n++] = e;
    return lease(e);
}

void tg_registry_release(tg_registry_entry_t *e)
{
    if (e != NULL)
        atomic_fetch_sub_explicit(&e->live, 1, memory_order_release);
}

size_t tg_registry_in_use(const tg_registry_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += live_of(r->entries[i]) != 0;
    return n;
}

void tg_registry_free(tg_registry_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->entries[i]->name);
        free(r->entries[i]);
    }
    free(r->entries);
    r->entries = NULL;
    r->n = r->cap = 0;
}
