/*
 * filters/introspect.h — opaque access tokens checked by OAuth 2.0 token
 * introspection (RFC 7662) at the provider's endpoint, for the auth
 * filter's jwt providers (`introspection:`).
 *
 * The call is a POST of the token (form-encoded) with the client's
 * credentials (HTTP Basic), through the cluster of the endpoint's origin
 * (tg_node_origin), on the exchange's worker while it is paused. The
 * answer must say `"active": true`; its top-level fields are claims,
 * checked by the provider's rules (claims.h: exp if present, iss if
 * present, aud, scopes, the identity claim) and kept for later filters.
 * Verdicts are cached per worker by SHA-256 of the token: a good one
 * until min(exp, cache_ttl), a refusal for negative_ttl. No usable
 * answer (connect failure, timeout, not 200, not JSON) is an error:
 * on_error decides; so does a worker already waiting on max_concurrent
 * calls.
 */
#ifndef TG_FILTERS_INTROSPECT_H
#define TG_FILTERS_INTROSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "config/node.h"
#include "filters/claims.h"
#include "filters/filter.h"

typedef struct tg_introspect_conf {
    char *endpoint;
    char *client_id;
    char *ca_file;
    uint64_t cache_ttl_ms, negative_ttl_ms, timeout_ms;
    uint32_t max_concurrent;    /* calls in flight per worker */
    uint32_t cache_entries;     /* per worker */
    int on_error;               /* 0 deny (503), 1 allow (no identity) */
    /* made at load */
    char *cluster, *authority, *path;
    char *basic;                /* "Basic base64(urlenc(id):urlenc(secret))" (a secret) */
} tg_introspect_conf_t;

extern const tg_keyset_t tg_introspect_keys;

tg_introspect_conf_t *tg_introspect_create(tg_node_t *node, const char *config_path);
void tg_introspect_destroy(tg_introspect_conf_t *c);

/* A worker's cache and count of calls in flight. */
typedef struct tg_introspect_worker tg_introspect_worker_t;
tg_introspect_worker_t *tg_introspect_worker_new(const tg_introspect_conf_t *c);
void tg_introspect_worker_free(tg_introspect_worker_t *w);

/* The token's cache key. */
void tg_introspect_key(const char *token, unsigned char key[32]);

/* A cached verdict: 1 and *reason (NULL: good, *identity and claims set
 * in arena memory), or 0 (none, or expired). */
int tg_introspect_cached(tg_introspect_worker_t *w, const unsigned char key[32], tg_arena_t *a, const char **identity,
                         tg_headers_t *claims, const char **reason);

/* Starts the call for fx (its worker's count goes up); NULL when the
 * worker has max_concurrent in flight or memory runs out. cb runs on the
 * worker unless the caller cancels first (tg_introspect_cancel). */
void *tg_introspect_start(const tg_introspect_conf_t *c, tg_introspect_worker_t *w, tg_filter_exchange_t *fx,
                          const char *token, tg_filter_call_cb cb, void *arg);
void tg_introspect_cancel(tg_introspect_worker_t *w, tg_filter_exchange_t *fx, void *call);

/* The answer to a call (its worker's count goes down): NULL (good:
 * *identity, claims), a refusal's reason, or with *error = 1 no usable
 * answer. Good answers and refusals are cached. */
const char *tg_introspect_answer(const tg_introspect_conf_t *c, const tg_claim_rules_t *rules,
                                 tg_introspect_worker_t *w, const unsigned char key[32],
                                 const tg_filter_call_result_t *r, int64_t now, tg_arena_t *a, const char **identity,
                                 tg_headers_t *claims, int *error);

#endif
