/*
 * proxy/snapshot.c — see snapshot.h.
 */
#include "proxy/snapshot.h"

#include <stdlib.h>

#include "filters/filter.h"
#include "proxy/stats.h"

void tg_registries_init(tg_registries_t *r)
{
    *r = (tg_registries_t){ 0 };
    r->endpoints.limit = TG_STATS_MAX_ENDPOINTS;
    r->routes.limit = TG_STATS_MAX_ROUTES;
    r->listeners.limit = TG_STATS_MAX_LISTENERS;
}

void tg_registries_free(tg_registries_t *r)
{
    tg_registry_free(&r->endpoints);
    tg_registry_free(&r->routes);
    tg_registry_free(&r->listeners);
}

static void snapshot_free(tg_snapshot_t *s)
{
    for (size_t i = 0; s->listener_tls && i < s->cfg->n_listeners; i++)
        tg_tls_server_free(s->listener_tls[i]);
    free(s->listener_tls);
    tg_trust_free(&s->trust);
    tg_cluster_set_free(s->clusters);
    tg_config_unref(s->cfg);
    free(s->route_slot);
    free(s->listener_slot);
    for (size_t i = 0; i < s->n_leases; i++)
        tg_registry_release(s->leases[i]);
    free(s->leases);
    if (s->counted != NULL)
        atomic_fetch_sub_explicit(s->counted, 1, memory_order_relaxed);
    if (s->own_regs != NULL) {
        tg_registries_free(s->own_regs);
        free(s->own_regs);
    }
    free(s);
}

/* A lease on name's slot in reg, kept by the snapshot; (size_t)-1 if none
 * is left (with a message) or out of memory. */
static size_t lease_slot(tg_snapshot_t *s, tg_registry_t *reg, const char *what, const char *name, tg_errors_t *errs)
{
    tg_registry_entry_t *e = tg_registry_acquire(reg, name);
    if (e == NULL) {
        if (reg->limit && reg->n >= reg->limit)
            tg_errors_add(errs, "%s: more than %zu %s in use at once (by this config and the ones still finishing "
                                "requests)", s->cfg->path, reg->limit, what);
        return (size_t)-1;
    }
    s->leases[s->n_leases++] = e;
    return e->slot;
}

/* Gives routes and listeners their stats slots. */
static int assign_slots(tg_snapshot_t *s, tg_registries_t *regs, tg_errors_t *errs)
{
    const tg_config_t *c = s->cfg;
    s->route_slot = calloc(c->n_routes + 1, sizeof(size_t));
    s->listener_slot = calloc(c->n_listeners + 1, sizeof(size_t));
    s->leases = calloc(c->n_routes + c->n_listeners + 1, sizeof(*s->leases));
    if (s->route_slot == NULL || s->listener_slot == NULL || s->leases == NULL)
        return -1;
    if ((s->unrouted_slot = lease_slot(s, &regs->routes, "routes", "", errs)) == (size_t)-1)
        return -1;
    for (size_t i = 0; i < c->n_routes; i++)
        if ((s->route_slot[i] = lease_slot(s, &regs->routes, "routes", c->routes[i].name, errs)) == (size_t)-1)
            return -1;
    for (size_t i = 0; i < c->n_listeners; i++)
        if ((s->listener_slot[i] = lease_slot(s, &regs->listeners, "listeners", c->listeners[i].name, errs)) ==
            (size_t)-1)
            return -1;
    return 0;
}

/* Reads every listener's certificates, keys and CA bundles, and those
 * of the Redis store. */
static int build_tls(tg_snapshot_t *s, tg_errors_t *errs)
{
    const tg_config_t *c = s->cfg;
    s->listener_tls = calloc(c->n_listeners + 1, sizeof(*s->listener_tls));
    if (s->listener_tls == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < c->n_listeners; i++) {
        const tg_listener_conf_t *l = &c->listeners[i];
        if (l->tls.enabled && (s->listener_tls[i] = tg_tls_server_new(&l->tls, l->name, l->http2.enabled, l->http1_enabled, errs)) == NULL)
            rc = -1;
    }
    if (c->redis.tls.enabled) { /* checked here (and by -t); each worker's Redis client builds its own */
        tg_tls_client_t *t = tg_tls_client_new(&c->redis.tls, "redis", 0, errs);
        if (t == NULL)
            rc = -1;
        tg_tls_client_free(t);
    }
    return rc;
}

tg_snapshot_t *tg_snapshot_load(const char *path, tg_registries_t *regs,
                                const struct tg_upstream_ops *const *upstream, tg_errors_t *errs)
{
    tg_snapshot_t *s = NULL;
    tg_config_t *partial = NULL;
    tg_config_t *cfg = tg_config_load_partial(path, tg_filters_registry(), errs, &partial);
    if (cfg == NULL) {
        /* the certificate files too, in the same run, whatever else is wrong */
        if (partial != NULL)
            tg_tls_check_files(partial, errs);
        tg_config_unref(partial);
        tg_errors_sort(errs);
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (regs == NULL && (s->own_regs = malloc(sizeof(*s->own_regs))) == NULL)) {
        free(s);
        tg_config_unref(cfg);
        tg_errors_add(errs, "%s: out of memory", path);
        return NULL;
    }
    if (regs == NULL) /* a scratch set, freed with the snapshot (its leases point into it) */
        tg_registries_init(s->own_regs);
    tg_registries_t *r = regs ? regs : s->own_regs;
    atomic_init(&s->refs, 1);
    if (regs != NULL) {
        s->counted = &regs->snapshots;
        atomic_fetch_add_explicit(s->counted, 1, memory_order_relaxed);
    }
    s->cfg = cfg;
    s->clusters = tg_cluster_set_build(cfg, &r->endpoints, errs);
    for (size_t i = 0; s->clusters != NULL && upstream != NULL && i < s->clusters->n_clusters; i++)
        s->clusters->clusters[i].up_ops = upstream[s->clusters->clusters[i].conf->protocol];
    if (s->clusters == NULL || build_tls(s, errs) < 0 || assign_slots(s, r, errs) < 0 ||
        tg_trust_build(&s->trust, cfg) < 0) {
        if (errs->n == 0)
            tg_errors_add(errs, "%s: out of memory", path);
        snapshot_free(s);
        s = NULL;
        tg_errors_sort(errs);
    }
    return s;
}

tg_snapshot_t *tg_snapshot_ref(tg_snapshot_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void tg_snapshot_unref(tg_snapshot_t *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        snapshot_free(s);
}
