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

/* Base64url without padding (exposed for unit tests). Returns the decoded
 * length or -1. out must hold len * 3 / 4 + 3 bytes. */
long tg_b64url_decode(const char *in, size_t len, unsigned char *out);

#endif
