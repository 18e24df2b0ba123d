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

/* What one load of the config file made (snapshot.c), shared by the
 * snapshot loaded and those derived from it when DNS answers change. */
typedef struct tg_snapshot_base tg_snapshot_base_t;

typedef struct tg_snapshot {
    atomic_int refs;
    tg_snapshot_base_t *base;  /* a reference: what follows, except the clusters, is the base's */
    tg_config_t *cfg;
    tg_cluster_set_t *clusters; /* its own */
    const size_t *route_slot;   /* stats slot of each config route */
    const size_t *listener_slot;/* stats slot of each config listener */
    size_t unrouted_slot;       /* stats slot for requests no route matched */
    tg_tls_server_t *const *listener_tls; /* per config listener; NULL: cleartext */
    const tg_trust_t *trust;    /* headers only tollgate may send upstream */
    const struct tg_router *router; /* the config's compiled routes (router.h) */
    unsigned dns_generation;    /* the names' answers its clusters were built from (tg_resolver_t) */
} tg_snapshot_t;

void tg_registries_free(tg_registries_t *r);

/* Loads and validates the file and gives its endpoints their addresses
 * (names through names: prepare, then addrs; NULL: names get none, for a
 * check), numbering endpoints, routes and listeners through regs (NULL:
 * a scratch set, for checks). NULL on error, with "file:line:col:
 * message" lines in errs. Main thread.
 * upstream: the upstream protocols' ops by cluster protocol
 * (tg_cluster_proto_t: HTTP/1.1, h2c, h2), which each cluster takes as
 * its up_ops; NULL for a check. */
struct tg_upstream_ops;
tg_snapshot_t *tg_snapshot_load(const char *path, tg_registries_t *regs,
                                const struct tg_upstream_ops *const *upstream, const tg_resolver_t *names,
                                tg_errors_t *errs);
/* A snapshot of from's config, listeners and filters with the endpoint
 * set names has now (from's TLS contexts, slots and protocols kept):
 * what the process publishes when DNS answers change. NULL (errs) on
 * failure (out of memory, no endpoint slot left). Main thread. */
tg_snapshot_t *tg_snapshot_derive(const tg_snapshot_t *from, const tg_resolver_t *names, tg_errors_t *errs);
tg_snapshot_t *tg_snapshot_ref(tg_snapshot_t *s);
void tg_snapshot_unref(tg_snapshot_t *s);

#endif
