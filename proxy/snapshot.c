/*
 * proxy/snapshot.c — see snapshot.h.
 */
#include "proxy/snapshot.h"

#include <stdlib.h>

#include "filters/filter.h"
#include "proxy/stats.h"

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
    free(s);
}

/* Gives routes and listeners their stats slots; checks the fixed capacity
 * of the per-worker stats tables. */
static int assign_slots(tg_snapshot_t *s, tg_registries_t *regs, tg_errors_t *errs)
{
    const tg_config_t *c = s->cfg;
    s->route_slot = calloc(c->n_routes + 1, sizeof(size_t));
    s->listener_slot = calloc(c->n_listeners + 1, sizeof(size_t));
    if (s->route_slot == NULL || s->listener_slot == NULL)
        return -1;
    s->unrouted_slot = tg_registry_slot(&regs->routes, "");
    for (size_t i = 0; i < c->n_routes; i++)
        s->route_slot[i] = tg_registry_slot(&regs->routes, c->routes[i].name);
    for (size_t i = 0; i < c->n_listeners; i++)
        s->listener_slot[i] = tg_registry_slot(&regs->listeners, c->listeners[i].name);
    if (regs->routes.n > TG_STATS_MAX_ROUTES || regs->listeners.n > TG_STATS_MAX_LISTENERS ||
        s->clusters->n_slots > TG_STATS_MAX_ENDPOINTS) {
        tg_errors_add(errs, "%s: more distinct routes (%d), listeners (%d) or endpoints (%d) than this process "
                            "can track since it started; restart it", c->path, TG_STATS_MAX_ROUTES,
                      TG_STATS_MAX_LISTENERS, TG_STATS_MAX_ENDPOINTS);
        return -1;
    }
    for (size_t i = 0; i < c->n_routes; i++)
        if (s->route_slot[i] == (size_t)-1)
            return -1;
    return s->unrouted_slot == (size_t)-1 ? -1 : 0;
}

/* Reads every listener's certificates, keys and CA bundles. */
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
    return rc;
}

tg_snapshot_t *tg_snapshot_load(const char *path, tg_registries_t *regs, tg_errors_t *errs)
{
    tg_registries_t scratch = { 0 };
    tg_registries_t *r = regs ? regs : &scratch;
    tg_snapshot_t *s = NULL;
    tg_config_t *cfg = tg_config_load(path, tg_filters_registry(), errs);
    if (cfg == NULL)
        goto out;
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        tg_config_unref(cfg);
        tg_errors_add(errs, "%s: out of memory", path);
        goto out;
    }
    atomic_init(&s->refs, 1);
    s->cfg = cfg;
    s->clusters = tg_cluster_set_build(cfg, &r->endpoints, errs);
    if (s->clusters == NULL || build_tls(s, errs) < 0 || assign_slots(s, r, errs) < 0 ||
        tg_trust_build(&s->trust, cfg) < 0) {
        if (errs->n == 0)
            tg_errors_add(errs, "%s: out of memory", path);
        snapshot_free(s);
        s = NULL;
    }
out:
    tg_registries_free(&scratch);
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
