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
#include "proxy/registry.h"
#include "proxy/trust.h"
#include "tls/context.h"

/* The process's name registries (main thread only). */
typedef struct tg_registries {
    tg_registry_t endpoints;  /* "cluster/address" -> pool and stats slot */
    tg_registry_t routes;     /* route name -> stats slot ("" = no route) */
    tg_registry_t listeners;  /* listener name -> stats slot */
    atomic_uint snapshots;    /* snapshots loaded through these and not yet freed (any thread frees) */
} tg_registries_t;

/* Empty registries limited to the stats tables' capacities; the reuse
 * hooks are the caller's to set (registry.h). */
void tg_registries_init(tg_registries_t *r);

typedef struct tg_snapshot {
    atomic_int refs;
    tg_config_t *cfg;
    tg_cluster_set_t *clusters;
    size_t *route_slot;       /* stats slot of each config route */
    size_t *listener_slot;    /* stats slot of each config listener */
    size_t unrouted_slot;     /* stats slot for requests no route matched */
    struct tg_registry_entry **leases; /* route and listener slots held (given back when freed) */
    size_t n_leases;
    struct tg_registries *own_regs; /* loaded without the process's registries: a scratch set */
    tg_tls_server_t **listener_tls; /* per config listener; NULL: cleartext */
    tg_trust_t trust;         /* headers only tollgate may send upstream */
    atomic_uint *counted;     /* the registries' snapshot count, given back when freed (NULL: scratch) */
} tg_snapshot_t;

void tg_registries_free(tg_registries_t *r);

/* Loads and validates the file and resolves its endpoints, numbering
 * endpoints, routes and listeners through regs (NULL: a scratch set, for
 * checks). NULL on error, with "file:line:col: message" lines in errs.
 * Main thread. */
struct tg_upstream_ops;
/* upstream: the upstream protocols' ops by cluster protocol
 * (tg_cluster_proto_t: HTTP/1.1, h2c, h2), which each cluster takes as
 * its up_ops; NULL for a check. */
tg_snapshot_t *tg_snapshot_load(const char *path, tg_registries_t *regs,
                                const struct tg_upstream_ops *const *upstream, tg_errors_t *errs);
tg_snapshot_t *tg_snapshot_ref(tg_snapshot_t *s);
void tg_snapshot_unref(tg_snapshot_t *s);

#endif
