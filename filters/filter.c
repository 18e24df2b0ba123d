/*
 * filters/filter.c — the registry of built-in filters and the chain
 * runner. See filter.h.
 */
#include "filters/filter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

size_t tg_filters_schema(tg_schema_filter_t *out, size_t cap)
{
    size_t n = 0;
    for (const tg_filter_type_t *t; (t = tg_filter_type_at(n)) != NULL; n++)
        if (n < cap)
            out[n] = (tg_schema_filter_t){ t->name, t->doc, t->keys };
    return n;
}

/* ---- counters ---- */

unsigned tg_filter_counter_base(const tg_filter_type_t *type)
{
    unsigned base = 0;
    for (size_t i = 0; tg_filter_type_at(i) != NULL && tg_filter_type_at(i) != type; i++)
        base += (unsigned)tg_filter_type_at(i)->n_counters;
    return base;
}

const tg_filter_counter_t *tg_filter_counter_at(unsigned bit)
{
    const tg_filter_type_t *t;
    for (size_t i = 0; (t = tg_filter_type_at(i)) != NULL; i++) {
        if (bit < t->n_counters)
            return &t->counters[bit];
        bit -= (unsigned)t->n_counters;
    }
    return NULL;
}

uint64_t tg_filter_counter_mask(const char *family, const char *value)
{
    uint64_t mask = 0;
    const tg_filter_counter_t *r;
    for (unsigned b = 0; b < TG_FILTER_COUNTERS_MAX && (r = tg_filter_counter_at(b)) != NULL; b++)
        if (strcmp(r->family, family) == 0 && (value == NULL || (r->value && strcmp(r->value, value) == 0)))
            mask |= 1ull << b;
    return mask;
}

tg_filter_status_t tg_filters_on_request(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                         tg_filter_exchange_t *fx, size_t from)
{
    const tg_filter_list_t *chains[2] = { global, route };
    size_t index = 0;
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < chains[c]->n; i++, index++) {
            const tg_filter_instance_t *f = &chains[c]->v[i];
            if (index < from || f->type->on_request == NULL)
                continue;
            tg_filter_status_t st = f->type->on_request(f->conf, fx, index);
            if (st != TG_FILTER_CONTINUE) {
                fx->paused_at = index;
                return st;
            }
        }
    return TG_FILTER_CONTINUE;
}

/* Is index's response hook for this response (fx->reply_by)? */
static int sees_response(const tg_filter_exchange_t *fx, size_t index)
{
    return fx->reply_by == 0 || index + 1 < fx->reply_by;
}

void tg_filters_on_response(const tg_filter_list_t *global, const tg_filter_list_t *route, tg_filter_exchange_t *fx,
                            tg_response_t *resp)
{
    size_t index = global->n + route->n;
    for (size_t i = route->n; i-- > 0;) {
        const tg_filter_instance_t *f = &route->v[i];
        --index;
        if (f->type->on_response && sees_response(fx, index))
            f->type->on_response(f->conf, fx, index, resp);
    }
    for (size_t i = global->n; i-- > 0;) {
        const tg_filter_instance_t *f = &global->v[i];
        --index;
        if (f->type->on_response && sees_response(fx, index))
            f->type->on_response(f->conf, fx, index, resp);
    }
}

tg_filter_status_t tg_filters_on_no_answer(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                           tg_filter_exchange_t *fx, int status)
{
    const tg_filter_list_t *chains[2] = { route, global };
    for (int c = 0; c < 2; c++)
        for (size_t i = chains[c]->n; i-- > 0;) {
            const tg_filter_instance_t *f = &chains[c]->v[i];
            size_t index = c == 0 ? global->n + i : i;
            if (f->type->on_no_answer == NULL || f->type->on_no_answer(f->conf, fx, index, status) != TG_FILTER_REPLY)
                continue;
            if (fx->reply_response == NULL)
                continue; /* only a whole response answers for the upstream */
            fx->reply_by = index + 1;
            return TG_FILTER_REPLY;
        }
    return TG_FILTER_CONTINUE;
}

void tg_filters_on_complete(const tg_filter_list_t *global, const tg_filter_list_t *route, tg_filter_exchange_t *fx,
                            const tg_filter_record_t *rec)
{
    for (size_t i = route->n; i-- > 0;)
        if (route->v[i].type->on_complete)
            route->v[i].type->on_complete(route->v[i].conf, fx, global->n + i, rec);
    for (size_t i = global->n; i-- > 0;)
        if (global->v[i].type->on_complete)
            global->v[i].type->on_complete(global->v[i].conf, fx, i, rec);
}

void tg_filters_on_cancel(const tg_filter_list_t *global, const tg_filter_list_t *route, tg_filter_exchange_t *fx)
{
    size_t i = fx->paused_at;
    const tg_filter_instance_t *f = i < global->n ? &global->v[i] : i - global->n < route->n ? &route->v[i - global->n]
                                                                                           : NULL;
    if (f != NULL && f->type->on_cancel != NULL)
        f->type->on_cancel(f->conf, fx, i);
}

static int start_list(const tg_filter_list_t *l, unsigned n_workers, const tg_filter_host_t *host, tg_errors_t *errs)
{
    for (size_t i = 0; i < l->n; i++) {
        tg_filter_instance_t *f = &l->v[i];
        if (f->type->worker_init != NULL && f->per_worker == NULL) {
            if ((f->per_worker = calloc(n_workers ? n_workers : 1, sizeof(void *))) == NULL) {
                tg_errors_add(errs, "%s: out of memory", f->type->name);
                return -1;
            }
            f->n_workers = n_workers;
        }
        if (f->type->start && f->type->start(f->conf, host, errs) < 0)
            return -1;
    }
    return 0;
}

/* Where a route's filters sit, for their prepare and openapi hooks. */
static tg_filter_place_t place_of(const tg_config_t *cfg, const tg_route_conf_t *r)
{
    return (tg_filter_place_t){ .route = r->name,
                                .cluster = r->backends == NULL ? cfg->clusters[r->cluster].name : NULL,
                                .timeout_ms = r->timeout_ms };
}

static int prepare_list(const tg_filter_list_t *l, const tg_filter_prep_t *p, const tg_filter_place_t *at,
                        tg_errors_t *errs)
{
    int rc = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type->prepare != NULL && l->v[i].type->prepare(l->v[i].conf, p, at, errs) < 0)
            rc = -1;
    return rc;
}

int tg_filters_prepare(const tg_config_t *cfg, const tg_filter_prep_t *p, tg_errors_t *errs)
{
    int rc = prepare_list(&cfg->filters, p, NULL, errs);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        tg_filter_place_t at = place_of(cfg, &cfg->routes[i]);
        if (prepare_list(&cfg->routes[i].filters, p, &at, errs) < 0)
            rc = -1;
    }
    return rc;
}

void tg_filters_openapi(const tg_config_t *cfg, struct tg_openapi *doc)
{
    for (size_t i = 0; i <= cfg->n_routes; i++) {
        const tg_route_conf_t *r = i < cfg->n_routes ? &cfg->routes[i] : NULL;
        const tg_filter_list_t *l = r ? &r->filters : &cfg->filters;
        tg_filter_place_t at = r ? place_of(cfg, r) : (tg_filter_place_t){ 0 };
        for (size_t k = 0; k < l->n; k++)
            if (l->v[k].type->openapi != NULL)
                l->v[k].type->openapi(l->v[k].conf, doc, r ? &at : NULL);
    }
}

int tg_filters_start(const tg_config_t *cfg, unsigned n_workers, const tg_filter_host_t *host, tg_errors_t *errs)
{
    if (start_list(&cfg->filters, n_workers, host, errs) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (start_list(&cfg->routes[i].filters, n_workers, host, errs) < 0)
            return -1;
    return 0;
}

static int worker_init_list(const tg_filter_list_t *l, unsigned worker)
{
    for (size_t i = 0; i < l->n; i++) {
        tg_filter_instance_t *f = &l->v[i];
        if (f->per_worker != NULL && worker < f->n_workers && f->per_worker[worker] == NULL &&
            (f->per_worker[worker] = f->type->worker_init(f->conf, worker)) == NULL)
            return -1;
    }
    return 0;
}

int tg_filters_worker_init(const tg_config_t *cfg, unsigned worker)
{
    if (worker_init_list(&cfg->filters, worker) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (worker_init_list(&cfg->routes[i].filters, worker) < 0)
            return -1;
    return 0;
}

static void reopen_list(const tg_filter_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type->reopen)
            l->v[i].type->reopen(l->v[i].conf);
}

void tg_filters_reopen(const tg_config_t *cfg)
{
    reopen_list(&cfg->filters);
    for (size_t i = 0; i < cfg->n_routes; i++)
        reopen_list(&cfg->routes[i].filters);
}

size_t tg_filters_body_prefix(const tg_filter_list_t *global, const tg_filter_list_t *route)
{
    const tg_filter_list_t *chains[2] = { global, route };
    size_t most = 0;
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < chains[c]->n; i++) {
            const tg_filter_instance_t *f = &chains[c]->v[i];
            size_t n = f->type->body_prefix ? f->type->body_prefix(f->conf) : 0;
            if (n > most)
                most = n;
        }
    return most;
}

int tg_filters_have_body_hooks(const tg_filter_list_t *global, const tg_filter_list_t *route)
{
    const tg_filter_list_t *chains[2] = { global, route };
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < chains[c]->n; i++)
            if (chains[c]->v[i].type->on_request_body || chains[c]->v[i].type->on_response_body)
                return 1;
    return 0;
}

int tg_filters_see_response_body(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                 const tg_filter_exchange_t *fx)
{
    const tg_filter_list_t *chains[2] = { global, route };
    size_t index = 0;
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < chains[c]->n; i++, index++)
            if (chains[c]->v[i].type->on_response_body && sees_response(fx, index))
                return 1;
    return 0;
}

tg_filter_status_t tg_filters_on_request_body(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                              tg_filter_exchange_t *fx, struct evbuffer *piece, int fin)
{
    const tg_filter_list_t *chains[2] = { global, route };
    size_t index = 0;
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < chains[c]->n; i++, index++) {
            const tg_filter_instance_t *f = &chains[c]->v[i];
            if (f->type->on_request_body && f->type->on_request_body(f->conf, fx, index, piece, fin) == TG_FILTER_REPLY) {
                fx->paused_at = index; /* who replied, as the request hooks say it */
                return TG_FILTER_REPLY;
            }
        }
    return TG_FILTER_CONTINUE;
}

void tg_filters_on_response_body(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                 tg_filter_exchange_t *fx, struct evbuffer *piece, int fin)
{
    size_t index = global->n + route->n;
    for (size_t i = route->n; i-- > 0;) {
        --index;
        if (route->v[i].type->on_response_body && sees_response(fx, index))
            route->v[i].type->on_response_body(route->v[i].conf, fx, index, piece, fin);
    }
    for (size_t i = global->n; i-- > 0;) {
        --index;
        if (global->v[i].type->on_response_body && sees_response(fx, index))
            global->v[i].type->on_response_body(global->v[i].conf, fx, index, piece, fin);
    }
}

static void inherit_list(const tg_filter_list_t *n, const tg_filter_list_t *o)
{
    for (size_t i = 0; i < n->n && i < o->n; i++)
        if (n->v[i].type == o->v[i].type && n->v[i].type->inherit)
            n->v[i].type->inherit(n->v[i].conf, o->v[i].conf);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const tg_route_conf_t *const *)a)->name, (*(const tg_route_conf_t *const *)b)->name);
}

/* Routes are paired by name through a sorted copy of the old ones: a
 * reload of n routes costs n log n, not n² (100,000 routes: 30 s). */
void tg_filters_inherit(const tg_config_t *new_cfg, const tg_config_t *old_cfg)
{
    inherit_list(&new_cfg->filters, &old_cfg->filters);
    const tg_route_conf_t **old = malloc((old_cfg->n_routes ? old_cfg->n_routes : 1) * sizeof(*old));
    size_t n = 0;
    for (size_t j = 0; old != NULL && j < old_cfg->n_routes; j++)
        if (old_cfg->routes[j].filters.n > 0)
            old[n++] = &old_cfg->routes[j];
    if (old == NULL) { /* no memory for the index: pair them the slow way */
        for (size_t i = 0; i < new_cfg->n_routes; i++)
            for (size_t j = 0; j < old_cfg->n_routes; j++)
                if (strcmp(new_cfg->routes[i].name, old_cfg->routes[j].name) == 0)
                    inherit_list(&new_cfg->routes[i].filters, &old_cfg->routes[j].filters);
        return;
    }
    qsort(old, n, sizeof(*old), by_name);
    for (size_t i = 0; i < new_cfg->n_routes; i++) {
        const tg_route_conf_t *key = &new_cfg->routes[i], **hit;
        if (key->filters.n > 0 && n > 0 && (hit = bsearch(&key, old, n, sizeof(*old), by_name)) != NULL)
            inherit_list(&new_cfg->routes[i].filters, &(*hit)->filters);
    }
    free(old);
}

/* ---- retry policies ---- */

static const tg_retry_policy_t *chain_policy(const tg_filter_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type->retry_policy != NULL)
            return l->v[i].type->retry_policy(l->v[i].conf);
    return NULL;
}

const tg_retry_policy_t *tg_filters_retry_policy(const tg_filter_list_t *global, const tg_filter_list_t *route)
{
    const tg_retry_policy_t *p = chain_policy(route);
    return p ? p : chain_policy(global);
}

int tg_retry_method_allowed(const tg_retry_policy_t *p, const char *method)
{
    for (size_t i = 0; i < p->n_methods; i++)
        if (strcmp(p->methods[i], method) == 0)
            return 1;
    return 0;
}

uint64_t tg_retry_backoff_ms(const tg_retry_policy_t *p, unsigned n, uint64_t random)
{
    uint64_t cap = p->base_ms;
    for (unsigned i = 1; i < n && cap < p->max_ms; i++)
        cap *= 2;
    if (cap > p->max_ms)
        cap = p->max_ms;
    return cap ? random % (cap + 1) : 0; /* full jitter */
}

int tg_retry_on_status(const tg_retry_policy_t *p, int status, const char *grpc_status)
{
    if ((status == 502 && (p->on & TG_RETRY_502)) || (status == 503 && (p->on & TG_RETRY_503)) ||
        (status == 504 && (p->on & TG_RETRY_504)))
        return 1;
    if (grpc_status == NULL)
        return 0;
    int g = atoi(grpc_status);
    return (g == 14 && (p->on & TG_RETRY_GRPC_UNAVAILABLE)) || (g == 4 && (p->on & TG_RETRY_GRPC_DEADLINE)) ||
           (g == 8 && (p->on & TG_RETRY_GRPC_EXHAUSTED));
}

void tg_filter_header_printf(tg_headers_t *h, tg_arena_t *a, const char *name, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
    char *v = tg_arena_strndup(a, buf, len);
    if (v != NULL)
        tg_headers_add(h, a, name, strlen(name), v, len);
}

tg_filter_status_t tg_filter_store_failed(tg_filter_exchange_t *fx, int deny, int shadow, uint64_t allowed,
                                          uint64_t denied)
{
    if (!deny) {
        fx->counted |= allowed;
        return TG_FILTER_CONTINUE;
    }
    fx->counted |= denied;
    if (shadow)
        return TG_FILTER_CONTINUE; /* shadow mode never refuses */
    fx->reply_status = 503;
    fx->reply_message = "rate limit store unavailable";
    tg_filter_header_printf(&fx->reply_headers, fx->arena, "retry-after", "1");
    return TG_FILTER_REPLY;
}

int tg_filter_parse_store(tg_node_t *store, tg_node_t *on_error, int *redis, int *deny)
{
    int rc = 0;
    *redis = *deny = 0;
    if (tg_node_present(store)) {
        char *m = tg_node_str(store, "store");
        if (m && strcmp(m, "redis") == 0) {
            *redis = 1;
            const tg_config_t *cfg = tg_node_config(store);
            if (cfg == NULL || !cfg->redis.enabled) {
                tg_node_error(store, "store: redis needs a top-level 'redis:' section (address or cluster)");
                rc = -1;
            }
        } else if (m == NULL || strcmp(m, "local") != 0) {
            if (m)
                tg_node_error(store, "store: '%s' is not one of local, redis", m);
            rc = -1;
        }
        free(m);
    }
    if (tg_node_present(on_error)) {
        char *m = tg_node_str(on_error, "on_store_error");
        if (m && strcmp(m, "deny") == 0)
            *deny = 1;
        else if (m == NULL || strcmp(m, "allow") != 0) {
            if (m)
                tg_node_error(on_error, "on_store_error: '%s' is not one of allow, deny", m);
            rc = -1;
        }
        free(m);
        if (rc == 0 && !*redis) {
            tg_node_error(on_error, "on_store_error applies to store: redis");
            rc = -1;
        }
    }
    return rc;
}
