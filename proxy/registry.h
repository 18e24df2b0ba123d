/*
 * proxy/registry.h — names seen by this process (endpoint addresses, route
 * names, listener names), each with a slot number that stays the same for
 * the life of the process. Per-worker tables indexed by slot (upstream
 * pools, stats) therefore carry over across reloads for everything that is
 * still configured. Written by the main thread only, while it builds a
 * snapshot; workers only ever see the numbers.
 */
#ifndef TG_PROXY_REGISTRY_H
#define TG_PROXY_REGISTRY_H

#include <stddef.h>

typedef struct tg_registry {
    char **names;
    size_t n, cap;
} tg_registry_t;

/* The slot for a name, adding it if new; (size_t)-1 on OOM. */
size_t tg_registry_slot(tg_registry_t *r, const char *name);
void tg_registry_free(tg_registry_t *r);

#endif
