/*
 * proxy/registry.h — names the process has configured (endpoint
 * addresses, route names, listener names), each with a slot number that
 * indexes per-worker tables (upstream pools, stats) and the health table.
 * A name keeps its slot as long as it stays configured, so its counters
 * and pooled connections carry over across reloads.
 *
 * Slots are leased: each snapshot holds a lease on every slot it uses and
 * gives them back when it is freed (on whatever thread drops the last
 * reference). A slot no live snapshot uses may be given to a new name;
 * before that, the registry's reuse hook lets the process clear what
 * belongs to the slot (counters restart at zero, health is forgotten) —
 * nothing else can touch a slot without a live snapshot that names it,
 * since connections and exchanges hold their snapshot. Each reuse bumps
 * the slot's generation, which pooled connections are checked against.
 * So a long-lived process that sees endpoints come and go never runs out
 * of slots: only the names in use at once count against the capacity.
 *
 * Acquiring happens on the main thread only, while it builds a snapshot.
 * Names are found by hash; a slot to reuse is looked for from a cursor
 * that only moves forward within one build (tg_registry_begin starts it
 * over), so a build of n names costs O(n), not O(n²).
 */
#ifndef TG_PROXY_REGISTRY_H
#define TG_PROXY_REGISTRY_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct tg_registry_entry {
    char *name;
    size_t slot;
    unsigned gen;               /* bumped at each reuse of the slot */
    atomic_uint live;           /* leases: snapshots that use the slot */
} tg_registry_entry_t;

typedef struct tg_registry {
    tg_registry_entry_t **entries; /* by slot; entries never move (released from other threads) */
    size_t n, cap;
    tg_registry_entry_t **index; /* by name: open addressing, a power of two (NULL: empty) */
    size_t index_cap;
    size_t idle_from;           /* slots below this were in use when this build looked */
    size_t limit;               /* slots available (0: TG_CHUNKS_MAX, what a table can index) */
    /* Called (main thread) when a slot passes to a new name, before the
     * snapshot that uses it is published. */
    void (*on_reuse)(void *arg, size_t slot);
    /* Called (main thread) when a slot is made, before it is given out:
     * tables the slot indexes make room for it. -1: out of memory (the
     * slot is not made). May be NULL. */
    int (*on_new)(void *arg, size_t slot);
    void *reuse_arg;            /* for both hooks */
} tg_registry_t;

/* A snapshot build begins: slots given back since the last one may be
 * taken again. Main thread. */
void tg_registry_begin(tg_registry_t *r);

/* A lease on name's slot: its own if it has one, else one no snapshot
 * uses (on_reuse runs), else a new one. NULL when limit slots are all in
 * use, or out of memory. */
tg_registry_entry_t *tg_registry_acquire(tg_registry_t *r, const char *name);
/* Gives a lease back. Any thread. */
void tg_registry_release(tg_registry_entry_t *e);
/* Slots in use by live snapshots (for tests and errors). */
size_t tg_registry_in_use(const tg_registry_t *r);
void tg_registry_free(tg_registry_t *r);

#endif
