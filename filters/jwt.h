/*
 * filters/jwt.h — JSON Web Token verification for the auth filter:
 * HS256, RS256 and ES256 (never "none"), keys from a secret, PEM files or
 * a JWKS file, exp/nbf (with leeway), iss, aud and scope checks.
 */
#ifndef TG_FILTERS_JWT_H
#define TG_FILTERS_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "config/node.h"
#include "filters/claims.h"
#include "filters/introspect.h"
#include "filters/jwks.h"
#include "proxy/base/arena.h"
#include "proxy/base/http.h"

typedef struct tg_jwt_conf tg_jwt_conf_t;

/* The keys of the `jwt:` node (schema.h). */
extern const tg_keyset_t tg_jwt_keys;

/* Parses the `jwt:` node of an auth filter; NULL after reporting errors. */
tg_jwt_conf_t *tg_jwt_create(tg_node_t *node, const char *config_path);
void tg_jwt_destroy(tg_jwt_conf_t *c);

/* Verifies a compact JWS token at now (Unix seconds). On success returns
 * NULL and sets *identity (arena string: the identity claim, "sub" by
 * default); otherwise returns a short static reason. */
const char *tg_jwt_verify(const tg_jwt_conf_t *c, const char *token, int64_t now, tg_arena_t *a,
                          const char **identity);
/* The same, also keeping the verified token's top-level string, number
 * and boolean claims as text in claims (arena memory), for later filters
 * (rate_limit plans by claim). */
const char *tg_jwt_verify_claims(const tg_jwt_conf_t *c, const char *token, int64_t now, tg_arena_t *a,
                                 const char **identity, tg_headers_t *claims);

/* The config is about to be used: its remote key sets (jwks_uri,
 * discovery) are taken from the process's shared ones. Main thread. 0 or
 * -1 with the reason in errs. */
int tg_jwt_start(tg_jwt_conf_t *c, const tg_filter_host_t *h, tg_errors_t *errs);
/* A worker's state for a section: its views of the remote key sets
 * (jwks.h) and its memory of verified tokens (verdicts.h). Made on the
 * worker (the auth filter's worker_init); freed with the config. */
typedef struct tg_jwt_worker tg_jwt_worker_t;
tg_jwt_worker_t *tg_jwt_worker_new(const tg_jwt_conf_t *c);
void tg_jwt_worker_free(tg_jwt_worker_t *w);

/* The provider that checks opaque tokens by introspection (the section
 * itself, else its first provider with `introspection:`) and its rules;
 * NULL if none. */
const tg_introspect_conf_t *tg_jwt_introspection(const tg_jwt_conf_t *c, const tg_claim_rules_t **rules);

/* What a refused token may wait for: a fetch of its provider's set. */
typedef struct tg_jwt_wait {
    tg_jwks_remote_t *remote;   /* NULL: nothing to wait for */
    tg_jwks_want_t why;
    int status;                 /* the answer when waiting is not possible: 401, or 503 (no_keys_status) */
    uint64_t seen_gen;          /* the remote set's generation the token was checked against
                                 * (TG_JWKS_GEN_UNSEEN: none looked at) */
} tg_jwt_wait_t;

/* tg_jwt_verify_claims with remote sets and the worker's memory (w NULL:
 * remote sets count as empty, nothing remembered). A token accepted
 * before, against the same key sets, is accepted again without its
 * signature checked (until its exp, at most a minute later). A token
 * refused for want of a key (its kid unknown, or no set yet) sets *wait
 * (wait may be NULL). */
const char *tg_jwt_check(const tg_jwt_conf_t *c, tg_jwt_worker_t *w, const char *token, int64_t now,
                         tg_arena_t *a, const char **identity, tg_headers_t *claims, tg_jwt_wait_t *wait);

#endif
