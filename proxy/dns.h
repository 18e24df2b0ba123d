/*
 * proxy/dns.h — endpoint names that DNS follows. An endpoint written as a
 * name (`api:8000`) is looked up with c-ares on the main thread's event
 * loop — never on a worker, never at request time — when a config that
 * has it is loaded, and again when its answer's TTL (clamped to the
 * cluster's dns.min_ttl..max_ttl) runs out. Every address of the answer
 * is an endpoint. When a name's addresses change, on_change runs (once
 * for a burst of changes); the process then derives a snapshot with the
 * new endpoint set from the current one and publishes it as a reload
 * does (snapshot.h), so in-flight requests finish where they started.
 *
 * A failed or empty lookup keeps the last good addresses (on_failure:
 * keep) or drops them (fail); either way it is counted and retried after
 * min_ttl, doubling up to max_ttl.
 *
 * Ownership: the process owns the tg_dns_t; names are kept while some
 * config that was prepared or committed has them, and forgotten by
 * tg_dns_commit once the config in force no longer does. Main thread only.
 */
#ifndef TG_PROXY_DNS_H
#define TG_PROXY_DNS_H

#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "proxy/cluster.h"

struct tg_loop;
typedef struct tg_dns tg_dns_t;

/* NULL if c-ares cannot be set up (logged). */
tg_dns_t *tg_dns_new(struct tg_loop *loop, void (*on_change)(void *arg), void *arg);
void tg_dns_free(tg_dns_t *d);

/* What snapshots read names through (tg_snapshot_load, _derive): its
 * prepare makes a config's names known — resolvers follow cfg->dns (a
 * change makes a new channel), names seen for the first time are looked
 * up and waited for, dns.timeout at most in all — and fails, with
 * messages in errs, when a name whose on_failure is fail has no address. */
const tg_resolver_t *tg_dns_resolver(tg_dns_t *d);

/* cfg is the config in force: names no other prepared config had are
 * forgotten (a refused reload's names too). */
void tg_dns_commit(tg_dns_t *d, const tg_config_t *cfg);

/* For /metrics and /status.json: one followed name. */
typedef struct tg_dns_info {
    const char *cluster, *host;
    const struct sockaddr_storage *addrs; /* sorted; port 0 */
    size_t n_addrs;
    uint64_t lookups, failures, changes;
    int resolved;           /* has had a good answer */
    const char *last_error; /* of the last lookup; "" if it succeeded */
    uint64_t ttl_ms;        /* of the last good answer, clamped */
    uint64_t next_in_ms;    /* until the next lookup (0: one is under way) */
} tg_dns_info_t;

size_t tg_dns_count(const tg_dns_t *d);
void tg_dns_info(const tg_dns_t *d, size_t i, tg_dns_info_t *out);

#endif
