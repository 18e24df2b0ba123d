/*
 * proxy/snapshot.h — one loaded configuration as the runtime sees it: the
 * immutable config plus its resolved clusters. Refcounted: the process
 * holds one reference to the current snapshot, each worker one, and every
 * exchange one for its whole life, so a request always finishes on the
 * snapshot it started with. The last unref frees it, on whatever thread.
 */
#ifndef TG_PROXY_SNAPSHOT_H
#define TG_PROXY_SNAPSHOT_H

#include <stdatomic.h>

#include "config/config.h"
#include "proxy/cluster.h"

typedef struct tg_snapshot {
    atomic_int refs;
    tg_config_t *cfg;
    tg_cluster_set_t *clusters;
} tg_snapshot_t;

/* Loads and validates the file and resolves its endpoints, numbering them
 * through reg (may be NULL). NULL on error, with "file:line:col: message"
 * lines in errs. Main thread. */
tg_snapshot_t *tg_snapshot_load(const char *path, tg_endpoint_registry_t *reg, tg_errors_t *errs);
tg_snapshot_t *tg_snapshot_ref(tg_snapshot_t *s);
void tg_snapshot_unref(tg_snapshot_t *s);

#endif
