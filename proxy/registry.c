/*
 * proxy/registry.c — see registry.h. Lookups are linear: they happen only
 * when a snapshot is built, over at most a few thousand names.
 */
#include "proxy/registry.h"

#include <stdlib.h>
#include <string.h>

size_t tg_registry_slot(tg_registry_t *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0)
            return i;
    if (r->n == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        char **n = realloc(r->names, ncap * sizeof(*n));
        if (n == NULL)
            return (size_t)-1;
        r->names = n;
        r->cap = ncap;
    }
    if ((r->names[r->n] = strdup(name)) == NULL)
        return (size_t)-1;
    return r->n++;
}

void tg_registry_free(tg_registry_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->names[i]);
    free(r->names);
    memset(r, 0, sizeof(*r));
}
