/*
 * filters/claims.h — what a verified token's claims must say: exp and nbf
 * (with leeway), iss, aud, scopes, and an identity claim fit for headers
 * and logs. The same rules for a JWT's claims (jwt.c) and an
 * introspection answer (introspect.c).
 */
#ifndef TG_FILTERS_CLAIMS_H
#define TG_FILTERS_CLAIMS_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/arena.h"
#include "proxy/base/http.h"
#include "proxy/base/json.h"

/* A view of a provider's rules (its config owns the strings). */
typedef struct tg_claim_rules {
    const char *issuer;         /* NULL: any */
    const char *const *audiences;
    size_t n_aud;
    const char *const *scopes;  /* all required */
    size_t n_scopes;
    int64_t leeway_s;
    const char *identity_claim;
    int require_exp;
} tg_claim_rules_t;

/* NULL, with *identity set (arena memory) and, if claims_out, the
 * top-level string, number and boolean claims kept as text; else a short
 * static reason ("token expired", "wrong audience", ...). */
const char *tg_claims_check(const tg_claim_rules_t *r, const tg_json_t *claims, int64_t now, tg_arena_t *a,
                            const char **identity, tg_headers_t *claims_out);

#endif
