/*
 * filters/jwks.h — JSON Web Key Sets: the keys JWTs are checked with,
 * read from a document (a file, or fetched), and remote sets kept fresh.
 *
 * A remote set (tg_jwks_remote_t) is one per URL per process, shared by
 * every filter, route and worker that names it and kept across reloads
 * while a config names it (filters/host.h: shared objects). Its life is
 * on the main loop: the first fetch as soon as a config using it is in
 * force, then a refresh at the answer's Cache-Control max-age clamped to
 * [min_refresh, max_refresh]; a failed fetch is retried after 1 s,
 * doubling up to min_refresh, and the last good set serves meanwhile, up
 * to max_stale after it was fetched. With an issuer and no jwks_uri the
 * first fetch is the issuer's OpenID discovery document, whose jwks_uri
 * (on the issuer's origin) is then fetched; a failed key fetch asks for
 * discovery again.
 *
 * Workers read the set in force through a view of their own (one atomic
 * load per request; a lock only when the set changed), and may wait for
 * a fetch: a token whose kid no key has asks for one refetch (single
 * flight: waiters of a fetch in flight share it; at most one per
 * refetch_interval per URL, else refused at once); a request that finds
 * no set yet waits for the first one up to startup_wait after the set
 * was first asked for.
 */
#ifndef TG_FILTERS_JWKS_H
#define TG_FILTERS_JWKS_H

#include <openssl/evp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"
#include "filters/host.h"

enum { TG_JWK_HS256 = 1, TG_JWK_RS256, TG_JWK_ES256 };

typedef struct tg_jwk {
    char *kid;                 /* NULL: matches any token */
    int alg;
    EVP_PKEY *pkey;            /* RS256 / ES256 */
    unsigned char *secret;     /* HS256 */
    size_t secret_len;
} tg_jwk_t;

/* Keys, immutable once made; shared by reference count (any thread). */
typedef struct tg_jwk_set {
    atomic_uint refs;
    tg_jwk_t *keys;
    size_t n;
    uint64_t fetched_ms;       /* remote: when it came (monotonic); 0 for static keys */
} tg_jwk_set_t;

tg_jwk_set_t *tg_jwk_set_new(void);
/* Takes k's memory (freed on failure too). 0 or -1. */
int tg_jwk_set_add(tg_jwk_set_t *s, tg_jwk_t k);
/* Adds the keys of a JWKS document ({"keys": [...]}): RSA, EC P-256 and
 * oct. A key it cannot use is skipped with its reason in why (the last
 * one; the others are kept). -1: not a JWKS document (why says so). */
int tg_jwk_set_parse(tg_jwk_set_t *s, const char *doc, size_t len, char *why, size_t cap);
tg_jwk_set_t *tg_jwk_set_ref(tg_jwk_set_t *s);
void tg_jwk_set_unref(tg_jwk_set_t *s);
/* TG_JWK_RS256 for an RSA key, TG_JWK_ES256 for EC P-256, else 0. */
int tg_jwk_alg_of(EVP_PKEY *k);

/* Base64url without padding (exposed for unit tests). Returns the decoded
 * length or -1. out must hold len * 3 / 4 + 3 bytes. */
long tg_b64url_decode(const char *in, size_t len, unsigned char *out);

/* ---- remote sets ---- */

typedef struct tg_jwks_remote tg_jwks_remote_t;

/* What a remote set is fetched with (the newest config's win). */
typedef struct tg_jwks_params {
    const char *cluster;       /* tg_node_origin's, for the key set's URL (or the issuer's) */
    const char *authority;
    const char *jwks_path;     /* NULL: discover it */
    const char *issuer;        /* discovery: the document must name this issuer */
    const char *discovery_path;/* the issuer's path + "/.well-known/openid-configuration" */
    uint64_t min_refresh_ms, max_refresh_ms, max_stale_ms, refetch_interval_ms, startup_wait_ms, timeout_ms;
} tg_jwks_params_t;

/* The set for a URL key ("https://idp/certs" or "discover https://idp"),
 * shared; NULL when out of memory. Main thread (a filter's start). */
tg_jwks_remote_t *tg_jwks_remote_get(const tg_filter_host_t *h, const char *key, const tg_jwks_params_t *p);
void tg_jwks_remote_put(const tg_filter_host_t *h, tg_jwks_remote_t *r);

/* A worker's view of one remote set: the set it holds and its generation. */
typedef struct tg_jwks_view {
    uint64_t gen;
    tg_jwk_set_t *set;
} tg_jwks_view_t;
void tg_jwks_view_release(tg_jwks_view_t *v);

/* Bumped each time a new set is in force; 0 while none may be used
 * (none yet, or older than max_stale). Any thread. */
uint64_t tg_jwks_remote_generation(tg_jwks_remote_t *r, uint64_t now_ms);

/* The set in force (NULL: none yet, or older than max_stale). */
const tg_jwk_set_t *tg_jwks_remote_keys(tg_jwks_remote_t *r, tg_jwks_view_t *v, uint64_t now_ms);

/* Why a worker would wait. */
typedef enum { TG_JWKS_UNKNOWN_KID, TG_JWKS_NO_KEYS } tg_jwks_want_t;
/* seen_gen when the caller did not look at the remote set. */
#define TG_JWKS_GEN_UNSEEN UINT64_MAX

/* Worker: wait for the next fetch's end (fn(fx, gen) runs then on the
 * exchange's worker)? 1: the waker is queued (the filter pauses); 0: no
 * fetch will come soon enough — refuse now. seen_gen: the generation of
 * the set the token was checked against (its view's); when a newer set
 * came meanwhile (a fetch ended between the check and this call), fn runs
 * at once, to check again — the token is never refused for a set it did
 * not see. */
int tg_jwks_remote_wait(tg_jwks_remote_t *r, tg_jwks_want_t why, uint64_t seen_gen, tg_filter_exchange_t *fx,
                        void (*fn)(tg_filter_exchange_t *fx, uint64_t gen), uint64_t now_ms);

#endif
