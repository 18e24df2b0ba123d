/*
 * proxy/snapshot.c — see snapshot.h.
 */
#include "proxy/snapshot.h"

#include <stdlib.h>

tg_snapshot_t *tg_snapshot_load(const char *path, tg_endpoint_registry_t *reg, tg_errors_t *errs)
{
    tg_config_t *cfg = tg_config_load(path, errs);
    if (cfg == NULL)
        return NULL;
    tg_cluster_set_t *cs = tg_cluster_set_build(cfg, reg, errs);
    if (cs == NULL) {
        tg_config_unref(cfg);
        return NULL;
    }
    tg_snapshot_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        tg_cluster_set_free(cs);
        tg_config_unref(cfg);
        tg_errors_add(errs, "%s: out of memory", path);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->clusters = cs;
    return s;
}

tg_snapshot_t *tg_snapshot_ref(tg_snapshot_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void tg_snapshot_unref(tg_snapshot_t *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    tg_cluster_set_free(s->clusters);
    tg_config_unref(s->cfg);
    free(s);
}
