/*
 * config/config.c — lifetime of a config snapshot (refcount, free) and the
 * error list the loader fills. See config.h.
 */
#include "config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tg_errors_add(tg_errors_t *e, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 8;
        char **n = realloc(e->msgs, ncap * sizeof(*n));
        if (n == NULL) {
            free(msg);
            return;
        }
        e->msgs = n;
        e->cap = ncap;
    }
    e->msgs[e->n++] = msg;
}

void tg_errors_free(tg_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    memset(e, 0, sizeof(*e));
}

typedef struct placed {
    int placed;
    unsigned long line, col;
    size_t index;
    char *msg;
} placed_t;

/* "...:LINE:COL: " at the first place such a pattern appears. */
static int place_of(const char *m, unsigned long *line, unsigned long *col)
{
    for (const char *p = strchr(m, ':'); p != NULL; p = strchr(p + 1, ':')) {
        char *end;
        unsigned long l = strtoul(p + 1, &end, 10);
        if (end == p + 1 || *end != ':')
            continue;
        char *end2;
        unsigned long c = strtoul(end + 1, &end2, 10);
        if (end2 == end + 1 || end2[0] != ':' || end2[1] != ' ')
            continue;
        *line = l;
        *col = c;
        return 1;
    }
    return 0;
}

static int cmp_placed(const void *a, const void *b)
{
    const placed_t *x = a, *y = b;
    if (x->placed != y->placed)
        return x->placed ? -1 : 1;
    if (x->placed && x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->placed && x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

void tg_errors_sort(tg_errors_t *e)
{
    placed_t *v = e->n > 1 ? calloc(e->n, sizeof(*v)) : NULL;
    if (v == NULL)
        return;
    for (size_t i = 0; i < e->n; i++) {
        v[i].placed = place_of(e->msgs[i], &v[i].line, &v[i].col);
        v[i].index = i;
        v[i].msg = e->msgs[i];
    }
    qsort(v, e->n, sizeof(*v), cmp_placed);
    for (size_t i = 0; i < e->n; i++)
        e->msgs[i] = v[i].msg;
    free(v);
}

static void free_kvs(tg_kv_t *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].name);
        free(kv[i].value);
    }
    free(kv);
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

static void free_rules(tg_header_rules_t *r)
{
    free_kvs(r->add, r->n_add);
    free_kvs(r->set, r->n_set);
    free_strs(r->remove, r->n_remove);
}

static void free_filters(const tg_config_t *c, tg_filter_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        c->filter_registry->destroy(&l->v[i]);
    free(l->v);
}

static void free_route(const tg_config_t *c, tg_route_conf_t *r)
{
    for (size_t i = 0; i < r->n_backends; i++) {
        for (size_t k = 0; k < r->backends[i].n_headers; k++) {
            free(r->backends[i].headers[k].name);
            free(r->backends[i].headers[k].value);
        }
        free(r->backends[i].headers);
    }
    free(r->backends);
    free_filters(c, &r->filters);
    free(r->name);
    free(r->listeners);
    free(r->match.host);
    free(r->match.path);
    if (r->match.path_kind == TG_PATH_REGEX)
        regfree(&r->match.path_re);
    free_strs(r->match.methods, r->match.n_methods);
    for (size_t i = 0; i < r->match.n_headers; i++) {
        free(r->match.headers[i].name);
        free(r->match.headers[i].value);
    }
    free(r->match.headers);
    free(r->match.grpc_service);
    free(r->match.grpc_method);
    free_rules(&r->request_headers);
    free_rules(&r->response_headers);
}

static void free_cert(tg_tls_cert_conf_t *c)
{
    free(c->cert);
    free(c->key);
    free(c->where);
}

static void free_tls_server(tg_tls_server_conf_t *t)
{
    for (size_t i = 0; i < t->n_certs; i++)
        free_cert(&t->certs[i]);
    free(t->certs);
    free(t->where);
    free_strs(t->alpn, t->n_alpn);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t->groups);
    free(t->client_ca);
    free(t->client_ca_where);
    free(t->client_cert_header);
}

static void free_tls_client(tg_tls_client_conf_t *t)
{
    free(t->where);
    free(t->ca);
    free(t->ca_where);
    free(t->server_name);
    free_cert(&t->client_cert);
}

static void free_secret(char *s)
{
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static void free_redis(tg_redis_conf_t *r)
{
    free(r->where);
    for (size_t i = 0; i < r->n_nodes; i++) {
        free(r->nodes[i].address);
        free(r->nodes[i].host);
    }
    free(r->nodes);
    free_secret(r->username);
    free_secret(r->password);
    free_tls_client(&r->tls);
    free(r->key_prefix);
}

static void config_free(tg_config_t *c)
{
    for (size_t i = 0; i < c->n_listeners; i++) {
        free(c->listeners[i].name);
        free(c->listeners[i].listen);
        free(c->listeners[i].host);
        free(c->listeners[i].trusted_proxies);
        free_tls_server(&c->listeners[i].tls);
    }
    free(c->listeners);
    for (size_t i = 0; i < c->n_routes; i++)
        free_route(c, &c->routes[i]);
    free(c->routes);
    for (size_t i = 0; i < c->n_clusters; i++) {
        tg_cluster_conf_t *cl = &c->clusters[i];
        free(cl->name);
        free(cl->hash_name);
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            free(cl->endpoints[j].address);
            free(cl->endpoints[j].host);
        }
        free(cl->endpoints);
        free(cl->health_check.path);
        free(cl->health_check.host);
        free(cl->health_check.service);
        free_tls_client(&cl->tls);
    }
    free(c->clusters);
    free_filters(c, &c->filters);
    free(c->trusted_proxies);
    free(c->tracing.service_name);
    free(c->tracing.otlp_endpoint);
    free(c->tracing.otlp_host);
    free(c->tracing.otlp_path);
    free(c->admin.listen);
    free(c->admin.host);
    free_secret(c->admin.token);
    free_redis(&c->redis);
    free_strs(c->dns.resolvers, c->dns.n_resolvers);
    for (size_t i = 0; i < c->admin.n_allowed_hosts; i++)
        free(c->admin.allowed_hosts[i]);
    free(c->admin.allowed_hosts);
    free(c->path);
    free(c->document);
    free(c);
}

tg_config_t *tg_config_ref(tg_config_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void tg_config_unref(tg_config_t *c)
{
    if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        config_free(c);
}

int tg_listener_same_address(const tg_listener_conf_t *a, const tg_listener_conf_t *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

const char *tg_route_cluster_label(const tg_config_t *c, const tg_route_conf_t *r, char *buf, size_t cap)
{
    if (r->n_backends == 0)
        return c->clusters[r->cluster].name;
    size_t len = 0;
    buf[0] = '\0';
    for (size_t b = 0; b < r->n_backends && len < cap; b++) {
        int k = snprintf(buf + len, cap - len, "%s%s", b ? "," : "", c->clusters[r->backends[b].cluster].name);
        if (k < 0)
            break;
        len += (size_t)k;
    }
    return buf;
}

long tg_config_find_listener(const tg_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_listeners; i++)
        if (c->listeners[i].name && strcmp(c->listeners[i].name, name) == 0)
            return (long)i;
    return -1;
}

long tg_config_find_cluster(const tg_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_clusters; i++)
        if (c->clusters[i].name && strcmp(c->clusters[i].name, name) == 0)
            return (long)i;
    return -1;
}
