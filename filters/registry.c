/*
 * filters/registry.c — the filter types a binary knows: the built-in ones
 * (filters/builtin.def) and, when it is compiled with
 * -DTG_FILTERS_EXTRA='"file.def"', the lines of that file after them (a
 * binary with filters of its own: tests/filters/ builds one). Immutable:
 * a table made by the compiler, read by any thread. See filter.h.
 */
#include <stdlib.h>
#include <string.h>

#include "filters/filter.h"

#define TG_FILTER(name, sym) extern const tg_filter_type_t sym;
#include "filters/builtin.def"
#ifdef TG_FILTERS_EXTRA
#include TG_FILTERS_EXTRA
#endif
#undef TG_FILTER

static const tg_filter_type_t *const types[] = {
#define TG_FILTER(name, sym) &sym,
#include "filters/builtin.def"
#ifdef TG_FILTERS_EXTRA
#include TG_FILTERS_EXTRA
#endif
#undef TG_FILTER
};
#define N_TYPES (sizeof(types) / sizeof(types[0]))

/* ", auth, rate_limit, ..." : the names as the table lists them */
static const char names[] =
#define TG_FILTER(name, sym) ", " #name
#include "filters/builtin.def"
#ifdef TG_FILTERS_EXTRA
#include TG_FILTERS_EXTRA
#endif
#undef TG_FILTER
    ;

const tg_filter_type_t *tg_filter_find(const char *name)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(types[i]->name, name) == 0)
            return types[i];
    return NULL;
}

const char *tg_filter_names(void)
{
    return names + 2;
}

const tg_filter_type_t *tg_filter_type_at(size_t i)
{
    return i < N_TYPES ? types[i] : NULL;
}

static void *registry_create(const tg_filter_type_t *type, tg_node_t *node, const char *config_path)
{
    return type->create(node, config_path);
}

static void registry_destroy(tg_filter_instance_t *f)
{
    for (unsigned w = 0; f->per_worker != NULL && w < f->n_workers; w++)
        if (f->per_worker[w] != NULL)
            f->type->worker_free(f->conf, f->per_worker[w]);
    free(f->per_worker);
    f->type->destroy(f->conf);
}

const tg_filter_registry_t *tg_filters_registry(void)
{
    static const tg_filter_registry_t reg = { tg_filter_find, tg_filter_names, registry_create, registry_destroy };
    return &reg;
}
