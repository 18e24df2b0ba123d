/*
 * proxy/snapshot.c — see snapshot.h.
 */
#include "proxy/snapshot.h"

#include <stdlib.h>

#include "filters/filter.h"
#include "proxy/router.h"
#include "proxy/stats.h"

void tg_registries_init(tg_registries_t *r)
{
    *r = (tg_registries_t){ 0 }; /* no limits but what a table can index (TG_CHUNKS_MAX) */
}

void tg_registries_free(tg_registries_t *r)
{
    tg_registry_free(&r->endpoints);
    tg_registry_free(&r->routes);
    tg_registry_free(&r->listeners);
}

struct tg_snapshot_base {
    atomic_int refs;
    tg_config_t *cfg;
    tg_registries_t *regs;    /* what its snapshots number endpoints through */
    size_t *route_slot;
    size_t *listener_slot;
    size_t unrouted_slot;
    struct tg_registry_entry **leases; /* route and listener slots held (given back when freed) */
    size_t n_leases;
    struct tg_registries *own_regs; /* loaded without the process's registries: a scratch set */
    tg_tls_server_t **listener_tls;
    tg_trust_t trust;
    tg_router_t *router;
    atomic_uint *counted;     /* the registries' snapshot count, given back when freed (NULL: scratch) */
};

static void base_unref(tg_snapshot_base_t *b)
{
    if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; b->listener_tls && i < b->cfg->n_listeners; i++)
        tg_tls_server_free(b->listener_tls[i]);
    free(b->listener_tls);
    tg_trust_free(&b->trust);
    tg_router_free(b->router);
    tg_config_unref(b->cfg);
    free(b->route_slot);
    free(b->listener_slot);
    for (size_t i = 0; i < b->n_leases; i++)
        tg_registry_release(b->leases[i]);
    free(b->leases);
    if (b->counted != NULL)
        atomic_fetch_sub_explicit(b->counted, 1, memory_order_relaxed);
    if (b->own_regs != NULL) {
        tg_registries_free(b->own_regs);
        free(b->own_regs);
    }
    free(b);
}

static void snapshot_free(tg_snapshot_t *s)
{
    tg_cluster_set_free(s->clusters); /* before the base: its leases point into the registries */
    base_unref(s->base);
    free(s);
}

/* A lease on name's slot in reg, kept by the base; (size_t)-1 if none
 * is left (with a message) or out of memory. */
static size_t lease_slot(tg_snapshot_base_t *b, tg_registry_t *reg, const char *what, const char *name,
                         tg_errors_t *errs)
{
    tg_registry_entry_t *e = tg_registry_acquire(reg, name);
    if (e == NULL) {
        size_t limit = reg->limit ? reg->limit : TG_CHUNKS_MAX;
        if (reg->n >= limit)
            tg_errors_add(errs, "%s: more than %zu %s in use at once (by this config and the ones still finishing "
                                "requests)", b->cfg->path, limit, what);
        return (size_t)-1;
    }
    b->leases[b->n_leases++] = e;
    return e->slot;
}

/* Gives routes and listeners their stats slots. */
static int assign_slots(tg_snapshot_base_t *b, tg_errors_t *errs)
{
    const tg_config_t *c = b->cfg;
    tg_registries_t *regs = b->regs;
    b->route_slot = calloc(c->n_routes + 1, sizeof(size_t));
    b->listener_slot = calloc(c->n_listeners + 1, sizeof(size_t));
    b->leases = calloc(c->n_routes + c->n_listeners + 1, sizeof(*b->leases));
    if (b->route_slot == NULL || b->listener_slot == NULL || b->leases == NULL)
        return -1;
    tg_registry_begin(&regs->routes);
    tg_registry_begin(&regs->listeners);
    if ((b->unrouted_slot = lease_slot(b, &regs->routes, "routes", "", errs)) == (size_t)-1)
        return -1;
    for (size_t i = 0; i < c->n_routes; i++)
        if ((b->route_slot[i] = lease_slot(b, &regs->routes, "routes", c->routes[i].name, errs)) == (size_t)-1)
            return -1;
    for (size_t i = 0; i < c->n_listeners; i++)
        if ((b->listener_slot[i] = lease_slot(b, &regs->listeners, "listeners", c->listeners[i].name, errs)) ==
            (size_t)-1)
            return -1;
    return 0;
}

/* Reads every listener's certificates, keys and CA bundles, and those
 * of the Redis store. */
static int build_tls(tg_snapshot_base_t *b, tg_errors_t *errs)
{
    const tg_config_t *c = b->cfg;
    b->listener_tls = calloc(c->n_listeners + 1, sizeof(*b->listener_tls));
    if (b->listener_tls == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < c->n_listeners; i++) {
        const tg_listener_conf_t *l = &c->listeners[i];
        if (l->tls.enabled && (b->listener_tls[i] = tg_tls_server_new(&l->tls, l->name, l->http2.enabled, l->http1_enabled, errs)) == NULL)
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

/* A snapshot of base b (its reference passes to it) and clusters. */
static tg_snapshot_t *snapshot_new(tg_snapshot_base_t *b)
{
    tg_snapshot_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        base_unref(b);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    s->base = b;
    s->cfg = b->cfg;
    s->route_slot = b->route_slot;
    s->listener_slot = b->listener_slot;
    s->unrouted_slot = b->unrouted_slot;
    s->listener_tls = b->listener_tls;
    s->trust = &b->trust;
    s->router = b->router;
    return s;
}

/* The clusters of s as names has them now; -1 with errs. */
static int build_clusters(tg_snapshot_t *s, const tg_resolver_t *names, const struct tg_upstream_ops *const *upstream,
                          const tg_cluster_set_t *from, tg_errors_t *errs)
{
    if (names != NULL)
        s->dns_generation = names->generation(names->arg);
    s->clusters = tg_cluster_set_build(s->cfg, &s->base->regs->endpoints, names, from, errs);
    for (size_t i = 0; s->clusters != NULL && upstream != NULL && i < s->clusters->n_clusters; i++)
        s->clusters->clusters[i].up_ops = upstream[s->clusters->clusters[i].conf->protocol];
    return s->clusters != NULL ? 0 : -1;
}

tg_snapshot_t *tg_snapshot_load(const char *path, tg_registries_t *regs,
                                const struct tg_upstream_ops *const *upstream, const tg_resolver_t *names,
                                tg_errors_t *errs)
{
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
    tg_snapshot_base_t *b = calloc(1, sizeof(*b));
    if (b == NULL || (regs == NULL && (b->own_regs = malloc(sizeof(*b->own_regs))) == NULL)) {
        free(b);
        tg_config_unref(cfg);
        tg_errors_add(errs, "%s: out of memory", path);
        return NULL;
    }
    if (regs == NULL) /* a scratch set, freed with the base (its leases point into it) */
        tg_registries_init(b->own_regs);
    b->regs = regs ? regs : b->own_regs;
    atomic_init(&b->refs, 1);
    if (regs != NULL) {
        b->counted = &regs->snapshots;
        atomic_fetch_add_explicit(b->counted, 1, memory_order_relaxed);
    }
    b->cfg = cfg;
    int ok = build_tls(b, errs) == 0 && assign_slots(b, errs) == 0 && tg_trust_build(&b->trust, cfg) == 0 &&
             (b->router = tg_router_build(cfg)) != NULL;
    tg_snapshot_t *s = snapshot_new(b);
    if (s == NULL) {
        ok = 0;
    } else {
        /* names are looked up for a config that is otherwise good; the
         * clusters' own errors (their TLS files) are reported either way */
        int named = ok && names != NULL && names->prepare(names->arg, cfg, errs) == 0;
        ok = build_clusters(s, named ? names : NULL, upstream, NULL, errs) == 0 && ok && (named || names == NULL);
    }
    if (!ok) {
        if (errs->n == 0)
            tg_errors_add(errs, "%s: out of memory", path);
        if (s != NULL)
            snapshot_free(s);
        tg_errors_sort(errs);
        return NULL;
    }
    return s;
}

tg_snapshot_t *tg_snapshot_derive(const tg_snapshot_t *from, const tg_resolver_t *names, tg_errors_t *errs)
{
    atomic_fetch_add_explicit(&from->base->refs, 1, memory_order_relaxed);
    tg_snapshot_t *s = snapshot_new(from->base);
    const struct tg_upstream_ops *ops[TG_PROTO_H2 + 1] = { 0 };
    for (size_t i = 0; i < from->clusters->n_clusters; i++)
        ops[from->clusters->clusters[i].conf->protocol] = from->clusters->clusters[i].up_ops;
    if (s == NULL || build_clusters(s, names, ops, from->clusters, errs) < 0) {
        if (errs->n == 0)
            tg_errors_add(errs, "%s: out of memory", from->cfg->path);
        if (s != NULL)
            snapshot_free(s);
        return NULL;
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
