/*
 * proxy/cluster.h — runtime state of the clusters of one config snapshot:
 * endpoint addresses and the round-robin cursor. Built in the main thread
 * when a snapshot is loaded or derived from new DNS answers (names are
 * resolved there, never on a worker: dns.h), shared read-only by the
 * workers except for the cursor, which is one atomic counter per cluster
 * so that N requests from any mix of workers spread evenly.
 */
#ifndef TG_PROXY_CLUSTER_H
#define TG_PROXY_CLUSTER_H

#include <stdatomic.h>
#include <sys/socket.h>

#include "config/config.h"
#include "proxy/registry.h"
#include "proxy/sock.h"
#include "tls/context.h"

typedef struct tg_endpoint {
    const tg_endpoint_conf_t *conf; /* a name's endpoints (one per address of its answer) share theirs */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char addr_text[56];      /* "10.0.0.7:8000", "[::1]:8000" */
    const char *label;       /* for people: conf->address, or "name:port (address)" for a name's (owned then) */
    int joined;              /* no live snapshot had its slot before this set: a new endpoint */
    size_t slot;             /* index into each worker's pool table (registry.h) */
    unsigned gen;            /* the slot's generation: pooled connections of a former occupant do not match */
    struct tg_registry_entry *lease; /* the slot's lease, given back with the set (NULL: unnumbered) */
} tg_endpoint_t;

typedef struct tg_cluster_load {
    atomic_uint requests, pending;
} tg_cluster_load_t;

/* One worker's view of a large cluster's usable endpoints, so that a
 * request's pick costs O(log n), not a pass over every endpoint
 * (tg_health_order_window). Rebuilt by its worker when health changed
 * (tg_health_t.gen) or an ejection it left out ends. */
typedef struct tg_lb_view {
    uint64_t gen;            /* the health generation it was built at; 0: never */
    uint64_t until_ms;       /* rebuild from then on (an ejection ends) */
    uint32_t *usable;        /* endpoint indexes, ascending */
    size_t k, cap;
} tg_lb_view_t;

#define TG_LB_VIEW_MIN 64    /* clusters with more endpoints than this get views */
#define TG_LB_VIEWS 256      /* one per worker (workers: at most 256) */

typedef struct tg_cluster {
    const tg_cluster_conf_t *conf;
    tg_endpoint_t *endpoints;
    size_t n_endpoints;
    atomic_uint rr_cursor;
    uint32_t *schedule;      /* weighted endpoints: one period of smooth WRR (endpoint indexes); NULL: plain RR */
    struct tg_lbhash *hash;  /* lb: ring_hash, maglev: the key -> endpoint table (NULL: no endpoint) */
    size_t n_schedule;
    /* circuit breaking (conf->max_*): requests in flight to the cluster,
     * and those waiting for a new connection — counted across the sets DNS
     * derives from one load of the config (a reload starts afresh) */
    struct tg_cluster_load *load;
    tg_tls_client_t *tls;    /* NULL: cleartext to the endpoints */
    /* How its endpoints are spoken to (upstream.h), chosen by its
     * protocol when the snapshot is built (the stack's table); NULL in a
     * snapshot made only to check a config. */
    const struct tg_upstream_ops *up_ops;
    tg_lb_view_t *views;     /* TG_LB_VIEWS, worker i's at i; NULL: a small cluster (a pass is cheap) */
} tg_cluster_t;

/* A route's traffic split (`clusters:`): one period of the smooth
 * weighted round-robin over its backends, walked by one cursor that all
 * workers share, so the split is exact over every period. */
typedef struct tg_route_split {
    uint32_t *schedule;      /* backend indexes; NULL: the route has a single cluster */
    size_t len;
    atomic_ullong cursor;
} tg_route_split_t;

typedef struct tg_cluster_set {
    tg_cluster_t *clusters;  /* same order as config->clusters */
    size_t n_clusters;
    tg_route_split_t *splits; /* per config route */
    size_t n_splits;
    size_t n_slots;          /* pool slots needed: highest slot used + 1 */
    struct tg_cluster_loads *loads; /* the clusters' breaker counts, shared with the sets derived alike (refcounted) */
    unsigned *slot_gen;      /* per slot < n_slots: its generation + 1 if an endpoint here uses it, else 0 */
} tg_cluster_set_t;

/* Does an endpoint of the set use this slot in this generation? (Pooled
 * connections of endpoints that are gone are closed, not kept.) */
static inline int tg_cluster_set_uses(const tg_cluster_set_t *s, size_t slot, unsigned gen)
{
    return slot < s->n_slots && s->slot_gen[slot] == gen + 1;
}

/* Where name endpoints' addresses come from (dns.h makes one). */
typedef struct tg_resolver {
    /* cfg's names are known, looked up if new (may wait); -1 with errs. */
    int (*prepare)(void *arg, const tg_config_t *cfg, tg_errors_t *errs);
    /* The addresses (port 0) the name endpoint ec of cluster cc has now. */
    size_t (*addrs)(void *arg, const tg_cluster_conf_t *cc, const tg_endpoint_conf_t *ec,
                    const struct sockaddr_storage **out);
    /* Bumped whenever some name's addresses change. */
    unsigned (*generation)(void *arg);
    void *arg;
} tg_resolver_t;

/* Gives every endpoint of cfg its address — a name one per address that
 * names (NULL: none, for a check) has for it — and the registry slot of
 * its "cluster/address" ("cluster/name:port=address" for a name's),
 * holding a lease on it until the set is freed (reg NULL: slots numbered
 * in order). from: a set of the same config this one replaces (new DNS
 * answers) — its TLS client contexts and circuit-breaking counts are
 * shared; NULL: both made anew. Returns NULL with messages in errs. */
tg_cluster_set_t *tg_cluster_set_build(const tg_config_t *cfg, tg_registry_t *reg, const tg_resolver_t *names,
                                       const tg_cluster_set_t *from, tg_errors_t *errs);
void tg_cluster_set_free(tg_cluster_set_t *s);

/* Starts a connection to one of the cluster's endpoints on loop, with TLS
 * when the cluster has it (TG_SOCK_CONNECTED then means the handshake is
 * done). NULL (errno set) if it failed at once. */
tg_sock_t *tg_cluster_connect(const tg_cluster_t *c, const tg_endpoint_t *ep, tg_sock_loop_t *loop);

/* The backend (index into route->backends) the next request of a split
 * route goes to by weight. Thread-safe, lock-free. */
size_t tg_cluster_split_next(tg_cluster_set_t *s, size_t route);

/* The cluster's round-robin counter, incremented (thread-safe, lock-free).
 * Callers take it modulo the number of endpoints they choose among. */
unsigned tg_cluster_rr_next(tg_cluster_t *c);


#endif
