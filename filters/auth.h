/*
 * filters/auth.h — the `auth` filter: bearer tokens and API keys (JWT is
 * not built yet). See docs/filters.md.
 */
#ifndef TG_FILTERS_AUTH_H
#define TG_FILTERS_AUTH_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_auth;

/* Constant-time check of a presented secret against the configured ones:
 * returns the index of the match or -1. Exposed for unit tests. */
typedef struct tg_auth_secret {
    char *name;
    unsigned char digest[32];   /* SHA-256 of the secret */
} tg_auth_secret_t;

long tg_auth_match(const tg_auth_secret_t *secrets, size_t n, const char *presented, size_t len);

/* The JWT verifier of an auth filter's config, or NULL (for tests). */
struct tg_jwt_conf;
const struct tg_jwt_conf *tg_auth_jwt(const void *auth_conf);

#endif
