/*
 * proxy/registry.c — see registry.h.
 */
#include "proxy/registry.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/base/chunks.h"
#include "proxy/base/siphash.h"

static const tg_siphash_key_t index_key = { 0x7265676973747279ull, 0x6e616d6573ull }; /* names come from configs */

static size_t home_of(const tg_registry_t *r, const char *name)
{
    return tg_siphash(&index_key, name, strlen(name)) & (r->index_cap - 1);
}

static tg_registry_entry_t **find(const tg_registry_t *r, const char *name)
{
    if (r->index_cap == 0)
        return NULL;
    for (size_t i = home_of(r, name);; i = (i + 1) & (r->index_cap - 1)) {
        tg_registry_entry_t **at = &r->index[i];
        if (*at == NULL)
            return NULL;
        if (strcmp((*at)->name, name) == 0)
            return at;
    }
}

static void put(tg_registry_t *r, tg_registry_entry_t *e)
{
    size_t i = home_of(r, e->name);
    while (r->index[i] != NULL)
        i = (i + 1) & (r->index_cap - 1);
    r->index[i] = e;
}

/* Room in the index for one more name (kept at most half full). */
static int index_room(tg_registry_t *r)
{
    if ((r->n + 1) * 2 <= r->index_cap)
        return 0;
    size_t cap = r->index_cap ? r->index_cap * 2 : 64;
    tg_registry_entry_t **old = r->index;
    size_t old_cap = r->index_cap;
    if ((r->index = calloc(cap, sizeof(*r->index))) == NULL) {
        r->index = old;
        return -1;
    }
    r->index_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i] != NULL)
            put(r, old[i]);
    free(old);
    return 0;
}

/* Takes the name at `at` out of the index (linear probing: the entries
 * after it in its run move back to where a lookup finds them). */
static void unindex(tg_registry_t *r, tg_registry_entry_t **at)
{
    size_t i = (size_t)(at - r->index), mask = r->index_cap - 1;
    r->index[i] = NULL;
    for (size_t j = (i + 1) & mask; r->index[j] != NULL; j = (j + 1) & mask) {
        size_t home = home_of(r, r->index[j]->name);
        /* does j's entry stay reachable from its home with i empty? */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            r->index[i] = r->index[j];
            r->index[j] = NULL;
            i = j;
        }
    }
}

void tg_registry_begin(tg_registry_t *r)
{
    r->idle_from = 0;
}

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
    tg_registry_entry_t **own = find(r, name);
    if (own != NULL)
        return lease(*own);
    if (index_room(r) < 0)
        return NULL;
    while (r->idle_from < r->n && live_of(r->entries[r->idle_from]) != 0)
        r->idle_from++;
    if (r->idle_from < r->n) { /* nothing uses it any more: it passes to the new name */
        tg_registry_entry_t *idle = r->entries[r->idle_from++];
        char *copy = strdup(name);
        if (copy == NULL)
            return NULL;
        unindex(r, find(r, idle->name));
        free(idle->name);
        idle->name = copy;
        put(r, idle);
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
    r->idle_from = r->n; /* a new slot is in use */
    put(r, e);
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
    free(r->index);
    r->entries = NULL;
    r->index = NULL;
    r->n = r->cap = r->index_cap = r->idle_from = 0;
}
