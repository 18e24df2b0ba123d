/*
 * proxy/cluster.h — runtime state of the clusters of one config snapshot:
 * resolved endpoint addresses and the round-robin cursor. Built in the main
 * thread when a snapshot is loaded (name resolution happens there, never on
 * a worker), shared read-only by the workers except for the cursor, which
 * is one atomic counter per cluster so that N requests from any mix of
 * workers spread evenly.
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
    const tg_endpoint_conf_t *conf;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    size_t slot;             /* index into each worker's pool table */
} tg_endpoint_t;

typedef struct tg_cluster {
    const tg_cluster_conf_t *conf;
    tg_endpoint_t *endpoints;
    size_t n_endpoints;
    atomic_uint rr_cursor;
    tg_tls_client_t *tls;    /* NULL: cleartext to the endpoints */
} tg_cluster_t;

typedef struct tg_cluster_set {
    tg_cluster_t *clusters;  /* same order as config->clusters */
    size_t n_clusters;
    size_t n_slots;          /* pool slots needed: highest slot used + 1 */
} tg_cluster_set_t;

/* Resolves every endpoint of cfg and gives each the registry slot of its
 * "cluster/address" (reg NULL: slots numbered in order). Returns NULL with messages in errs. */
tg_cluster_set_t *tg_cluster_set_build(const tg_config_t *cfg, tg_registry_t *reg, tg_errors_t *errs);
void tg_cluster_set_free(tg_cluster_set_t *s);

/* Starts a connection to one of the cluster's endpoints on loop, with TLS
 * when the cluster has it (TG_SOCK_CONNECTED then means the handshake is
 * done). NULL (errno set) if it failed at once. */
tg_sock_t *tg_cluster_connect(const tg_cluster_t *c, const tg_endpoint_t *ep, tg_sock_loop_t *loop);

/* The cluster's round-robin counter, incremented (thread-safe, lock-free).
 * Callers take it modulo the number of endpoints they choose among. */
unsigned tg_cluster_rr_next(tg_cluster_t *c);


#endif
