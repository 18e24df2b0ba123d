/*
 * proxy/cluster.c — see cluster.h.
 */
#include "proxy/cluster.h"

#include "proxy/base/chunks.h"

#include "proxy/lbhash.h"

#include <errno.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An endpoint at address a (port 0) with the port of its config. */
static void set_addr(tg_endpoint_t *ep, const struct sockaddr_storage *a, uint16_t port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    memcpy(&ep->addr, a, sizeof(*a));
    if (a->ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ep->addr;
        in->sin_port = htons(port);
        ep->addr_len = sizeof(*in);
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(ep->addr_text, sizeof(ep->addr_text), "%s:%u", ip, (unsigned)port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ep->addr;
        in6->sin6_port = htons(port);
        ep->addr_len = sizeof(*in6);
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(ep->addr_text, sizeof(ep->addr_text), "[%s]:%u", ip, (unsigned)port);
    }
}

/* An IP literal endpoint's address (the loader checked it is one). */
static int literal_addr(const char *host, struct sockaddr_storage *a)
{
    memset(a, 0, sizeof(*a));
    struct sockaddr_in *in = (struct sockaddr_in *)a;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)a;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

/* Longest weighted round-robin period (requests) a cluster or route may
 * have: bounds the schedule's memory (4 bytes an entry). */
#define TG_SCHEDULE_MAX (1u << 18)

static uint32_t gcd(uint32_t a, uint32_t b)
{
    while (b != 0) {
        uint32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* One period of nginx's smooth weighted round-robin over weights w[0..n)
 * (0: never picked), after dividing them by their gcd: at each step every
 * entry gains its weight, the one with the most is picked (the first on a
 * tie) and pays the total. Entries are interleaved, not bunched: 5:1 gives
 * a a a b a a... rather than a a a a a b. NULL with *len 0 if the period
 * would exceed TG_SCHEDULE_MAX (or out of memory). */
static uint32_t *swrr_schedule(const uint32_t *w, size_t n, size_t *len)
{
    uint32_t g = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        g = gcd(g, w[i]);
    for (size_t i = 0; g && i < n; i++)
        total += w[i] / g;
    *len = 0;
    if (total == 0 || total > TG_SCHEDULE_MAX)
        return NULL;
    uint32_t *out = malloc(total * sizeof(*out));
    int64_t *cur = calloc(n, sizeof(*cur));
    if (out == NULL || cur == NULL) {
        free(out);
        free(cur);
        return NULL;
    }
    for (uint64_t step = 0; step < total; step++) {
        size_t best = 0;
        for (size_t i = 0; i < n; i++) {
            cur[i] += w[i] / g;
            if (cur[i] > cur[best])
                best = i;
        }
        cur[best] -= (int64_t)total;
        out[step] = (uint32_t)best;
    }
    free(cur);
    *len = total;
    return out;
}

static int build_schedules(tg_cluster_set_t *s, const tg_config_t *cfg, tg_errors_t *errs)
{
    uint32_t w[TG_MAX_BACKENDS];
    for (size_t i = 0; i < s->n_clusters; i++) {
        tg_cluster_t *c = &s->clusters[i];
        if (c->n_endpoints > TG_LB_VIEW_MIN && (c->views = calloc(TG_LB_VIEWS, sizeof(*c->views))) == NULL)
            return -1;
        if (!c->conf->weighted)
            continue;
        uint32_t *ew = malloc(c->n_endpoints * sizeof(*ew));
        if (ew == NULL)
            return -1;
        for (size_t j = 0; j < c->n_endpoints; j++)
            ew[j] = c->endpoints[j].conf->weight;
        c->schedule = swrr_schedule(ew, c->n_endpoints, &c->n_schedule);
        free(ew);
        if (c->schedule == NULL) {
            tg_errors_add(errs, "cluster '%s': endpoint weights whose round-robin period is over %u requests (use "
                                "smaller weights, or weights with a common divisor)",
                          c->conf->name, TG_SCHEDULE_MAX);
            return -1;
        }
    }
    s->splits = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*s->splits));
    if (s->splits == NULL)
        return -1;
    s->n_splits = cfg->n_routes;
    for (size_t r = 0; r < cfg->n_routes; r++) {
        const tg_route_conf_t *rc = &cfg->routes[r];
        atomic_init(&s->splits[r].cursor, 0);
        if (rc->n_backends == 0)
            continue;
        for (size_t b = 0; b < rc->n_backends; b++)
            w[b] = rc->backends[b].weight;
        if ((s->splits[r].schedule = swrr_schedule(w, rc->n_backends, &s->splits[r].len)) == NULL) {
            tg_errors_add(errs, "route '%s': cluster weights whose period is over %u requests", rc->name,
                          TG_SCHEDULE_MAX);
            return -1;
        }
    }
    return 0;
}

/* lb ring_hash / maglev: each such cluster's table, placed by address. */
static int build_hashes(tg_cluster_set_t *s)
{
    for (size_t i = 0; i < s->n_clusters; i++) {
        tg_cluster_t *c = &s->clusters[i];
        int lb = c->conf->lb;
        if ((lb != TG_LB_RING_HASH && lb != TG_LB_MAGLEV) || c->n_endpoints == 0)
            continue;
        tg_lbhash_member_t *m = malloc(c->n_endpoints * sizeof(*m));
        if (m == NULL)
            return -1;
        for (size_t j = 0; j < c->n_endpoints; j++)
            m[j] = (tg_lbhash_member_t){ c->endpoints[j].addr_text, c->endpoints[j].conf->weight };
        c->hash = tg_lbhash_build(m, c->n_endpoints, lb == TG_LB_MAGLEV);
        free(m);
        if (c->hash == NULL)
            return -1;
    }
    return 0;
}

size_t tg_cluster_split_next(tg_cluster_set_t *s, size_t route)
{
    tg_route_split_t *sp = &s->splits[route];
    unsigned long long n = atomic_fetch_add_explicit(&sp->cursor, 1, memory_order_relaxed);
    return sp->schedule[n % sp->len];
}

/* Leases the slot of the endpoint's registry key. */
static int lease(tg_endpoint_t *ep, const tg_cluster_conf_t *cc, tg_registry_t *reg, const tg_config_t *cfg,
                 tg_errors_t *errs)
{
    /* "cluster/address", whole: a cut key could give two endpoints one slot */
    size_t kl = strlen(cc->name) + strlen(ep->conf->address) + strlen(ep->addr_text) + 3;
    char *key = malloc(kl);
    if (key != NULL && ep->conf->named)
        snprintf(key, kl, "%s/%s=%s", cc->name, ep->conf->address, ep->addr_text);
    else if (key != NULL)
        snprintf(key, kl, "%s/%s", cc->name, ep->conf->address);
    ep->lease = key ? tg_registry_acquire(reg, key) : NULL;
    free(key);
    if (ep->lease == NULL) {
        size_t limit = reg->limit ? reg->limit : TG_CHUNKS_MAX;
        if (reg->n >= limit)
            tg_errors_add(errs, "%s: more than %zu upstream endpoints in use at once (by this config "
                                "and the ones still finishing requests)", cfg->path, limit);
        return -1;
    }
    ep->slot = ep->lease->slot;
    ep->gen = ep->lease->gen;
    ep->joined = atomic_load(&ep->lease->live) == 1;
    return 0;
}

/* The cluster's endpoints: one per IP endpoint, one per address a name
 * has now (a name without any adds none). */
static int build_endpoints(tg_cluster_t *c, const tg_cluster_conf_t *cc, const tg_resolver_t *names)
{
    size_t n = 0;
    for (size_t j = 0; j < cc->n_endpoints; j++) {
        const struct sockaddr_storage *a;
        n += !cc->endpoints[j].named ? 1 : names ? names->addrs(names->arg, cc, &cc->endpoints[j], &a) : 0;
    }
    c->endpoints = calloc(n ? n : 1, sizeof(*c->endpoints));
    if (c->endpoints == NULL)
        return -1;
    for (size_t j = 0; j < cc->n_endpoints; j++) {
        const tg_endpoint_conf_t *ec = &cc->endpoints[j];
        struct sockaddr_storage lit;
        const struct sockaddr_storage *a = &lit;
        size_t k = 1;
        if (ec->named)
            k = names ? names->addrs(names->arg, cc, ec, &a) : 0;
        else if (literal_addr(ec->host, &lit) < 0)
            continue; /* the loader refuses such a config */
        for (size_t i = 0; i < k && c->n_endpoints < n; i++) {
            tg_endpoint_t *ep = &c->endpoints[c->n_endpoints++];
            ep->conf = ec;
            set_addr(ep, &a[i], ec->port);
            ep->label = ec->address;
            if (ec->named) {
                size_t ll = strlen(ec->address) + strlen(ep->addr_text) + 4;
                char *l = malloc(ll);
                if (l == NULL)
                    return -1;
                snprintf(l, ll, "%s (%s)", ec->address, ep->addr_text);
                ep->label = l;
            }
        }
    }
    return 0;
}

/* The breaker counts of a set's clusters: one block, shared by refcount
 * between a set and those derived from it. */
struct tg_cluster_loads {
    atomic_int refs;
    tg_cluster_load_t v[];
};

static struct tg_cluster_loads *loads_new(size_t n)
{
    struct tg_cluster_loads *l = calloc(1, sizeof(*l) + (n ? n : 1) * sizeof(l->v[0]));
    if (l != NULL)
        atomic_init(&l->refs, 1);
    return l;
}

static void loads_unref(struct tg_cluster_loads *l)
{
    if (l != NULL && atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

tg_cluster_set_t *tg_cluster_set_build(const tg_config_t *cfg, tg_registry_t *reg, const tg_resolver_t *names,
                                       const tg_cluster_set_t *from, tg_errors_t *errs)
{
    tg_cluster_set_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->clusters = calloc(cfg->n_clusters ? cfg->n_clusters : 1, sizeof(*s->clusters));
    if (reg != NULL)
        tg_registry_begin(reg);
    if (from != NULL) {
        s->loads = from->loads;
        atomic_fetch_add_explicit(&s->loads->refs, 1, memory_order_relaxed);
    } else {
        s->loads = loads_new(cfg->n_clusters);
    }
    if (s->clusters == NULL || s->loads == NULL)
        goto fail;
    s->n_clusters = cfg->n_clusters;
    int bad = 0;
    size_t next_slot = 0;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const tg_cluster_conf_t *cc = &cfg->clusters[i];
        tg_cluster_t *c = &s->clusters[i];
        c->conf = cc;
        atomic_init(&c->rr_cursor, 0);
        c->load = &s->loads->v[i];
        if (build_endpoints(c, cc, names) < 0)
            goto fail;
        if (from != NULL)
            c->tls = tg_tls_client_ref(from->clusters[i].tls);
        else if (cc->tls.enabled &&
                 (c->tls = tg_tls_client_new(&cc->tls, cc->name, cc->protocol == TG_PROTO_H2, errs)) == NULL)
            bad = 1;
        for (size_t j = 0; j < c->n_endpoints; j++) {
            tg_endpoint_t *ep = &c->endpoints[j];
            if (reg != NULL && lease(ep, cc, reg, cfg, errs) < 0)
                goto fail;
            if (reg == NULL)
                ep->slot = next_slot++;
            if (ep->slot + 1 > s->n_slots)
                s->n_slots = ep->slot + 1;
        }
    }
    if (!bad && (build_schedules(s, cfg, errs) < 0 || build_hashes(s) < 0))
        goto fail;
    if (!bad && (s->slot_gen = calloc(s->n_slots ? s->n_slots : 1, sizeof(*s->slot_gen))) != NULL) {
        for (size_t i = 0; i < s->n_clusters; i++)
            for (size_t j = 0; j < s->clusters[i].n_endpoints; j++)
                s->slot_gen[s->clusters[i].endpoints[j].slot] = s->clusters[i].endpoints[j].gen + 1;
        return s;
    }
fail:
    tg_cluster_set_free(s);
    return NULL;
}

void tg_cluster_set_free(tg_cluster_set_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_clusters; i++) {
        for (size_t j = 0; s->clusters[i].endpoints && j < s->clusters[i].n_endpoints; j++) {
            tg_endpoint_t *ep = &s->clusters[i].endpoints[j];
            tg_registry_release(ep->lease);
            if (ep->label != NULL && ep->label != ep->conf->address)
                free((char *)ep->label);
        }
        free(s->clusters[i].endpoints);
        free(s->clusters[i].schedule);
        for (size_t v = 0; s->clusters[i].views != NULL && v < TG_LB_VIEWS; v++)
            free(s->clusters[i].views[v].usable);
        free(s->clusters[i].views);
        tg_lbhash_free(s->clusters[i].hash);
        tg_tls_client_free(s->clusters[i].tls);
    }
    for (size_t r = 0; s->splits != NULL && r < s->n_splits; r++)
        free(s->splits[r].schedule);
    free(s->splits);
    free(s->clusters);
    free(s->slot_gen);
    loads_unref(s->loads);
    free(s);
}

tg_sock_t *tg_cluster_connect(const tg_cluster_t *c, const tg_endpoint_t *ep, tg_sock_loop_t *loop)
{
    tg_sock_t *s = tg_sock_connect(loop, (const struct sockaddr *)&ep->addr, ep->addr_len);
    if (s == NULL || c->tls == NULL)
        return s;
    SSL *ssl = tg_tls_client_ssl(c->tls, ep->conf->host);
    if (ssl == NULL || tg_sock_start_tls(s, ssl) < 0) {
        if (ssl)
            SSL_free(ssl);
        tg_sock_free(s);
        errno = ENOMEM;
        return NULL;
    }
    return s;
}

unsigned tg_cluster_rr_next(tg_cluster_t *c)
{
    return atomic_fetch_add_explicit(&c->rr_cursor, 1, memory_order_relaxed);
}

