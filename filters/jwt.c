/*
 * filters/jwt.c — see jwt.h.
 *
 * The token's header and claims are parsed by the strict JSON reader
 * (proxy/base/json.h) into the exchange arena (no allocation that
 * outlives the request). The algorithm comes from the token but must be
 * one we accept and must match the key chosen (by "kid" when the token
 * has one), so an RSA public key can never be used as an HMAC secret and
 * "none" is never accepted. With `providers:` the token's (unverified)
 * `iss` picks the provider whose keys and rules then decide.
 */
#include "filters/jwt.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/clock.h"
#include "filters/claims.h"
#include "filters/introspect.h"
#include "filters/verdicts.h"
#include "proxy/base/json.h"

struct tg_jwt_conf {
    tg_jwk_set_t *keys;        /* secret, keys, jwks_file (NULL: none) */
    char *issuer;
    char **audiences;
    size_t n_aud;
    char **scopes;             /* all required */
    size_t n_scopes;
    int64_t leeway_s;
    uint64_t leeway_ms;        /* as configured */
    char *identity_claim;
    int require_exp;           /* a token without exp is refused (default) */
    /* a remote key set (jwks_uri, or an http(s) issuer alone: discovery) */
    char *jwks_uri, *ca_file;
    uint64_t min_refresh_ms, max_refresh_ms, max_stale_ms, refetch_interval_ms, startup_wait_ms, fetch_timeout_ms;
    uint32_t no_keys_status;
    char *remote_key;          /* "jwks URL" or "discover ISSUER": one shared set per key */
    char *cluster, *authority, *jwks_path, *discovery_path; /* tg_jwks_params_t's strings */
    tg_jwks_remote_t *remote;  /* from start; NULL before */
    const tg_filter_host_t *host;
    size_t view;               /* its index among the config's views (tg_jwt_views) */
    tg_introspect_conf_t *introspect; /* opaque tokens (NULL: none) */
    tg_jwt_conf_t **providers; /* `providers:` (each a conf of its own, without providers) */
    size_t n_providers;
    size_t n_views;            /* the top conf: remote sets in the tree ... */
    tg_jwks_remote_t **remotes;/* ... by view, once started */
    uint32_t cache_entries;    /* the top conf: verified tokens remembered per worker */
    tg_claim_rules_t rules;    /* a view of the rules above, for tg_claims_check */
};

/* ---- configuration ---- */

static char *resolve_path(const char *config_path, const char *path)
{
    char *full = NULL;
    const char *slash = strrchr(config_path, '/');
    if (path[0] != '/' && slash != NULL) {
        if (asprintf(&full, "%.*s/%s", (int)(slash - config_path), config_path, path) < 0)
            return NULL;
        return full;
    }
    return strdup(path);
}

static int load_jwks(tg_node_t *n, const char *config_path, tg_jwt_conf_t *c)
{
    char *path = tg_node_str(n, "jwks_file"), *full = path ? resolve_path(config_path, path) : NULL;
    int rc = -1;
    FILE *f = full ? fopen(full, "r") : NULL;
    if (f == NULL) {
        if (full)
            tg_node_error(n, "jwks_file: cannot open %s: %s", full, strerror(errno));
        goto out;
    }
    char *buf = malloc(1 << 20), why[160] = "";
    size_t len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    size_t before = c->keys->n;
    if (buf == NULL || tg_jwk_set_parse(c->keys, buf, len, why, sizeof(why)) < 0)
        tg_node_error(n, "jwks_file: %s: %s", full, why[0] ? why : "out of memory");
    else if (why[0] != '\0' || c->keys->n == before)
        tg_node_error(n, "jwt jwks: %s", why[0] ? why : "no usable key");
    else
        rc = 0;
    free(buf);
out:
    free(path);
    free(full);
    return rc;
}

static const tg_key_t jwt_key_item_keys[] = {
    { "file", TG_KEY_STRING, "path (required)", "—", "a PEM public key: RSA (RS256) or EC P-256 (ES256)",
      .flags = TG_KEY_REQUIRED },
    { "kid", TG_KEY_STRING, "string", "none", "the key id a token's `kid` must name to be checked with this key" },
};
static const tg_keyset_t jwt_key_item = TG_KEYSET("filter.auth.jwt.key", "auth jwt.keys[]", jwt_key_item_keys);

/* The rows of one provider: the `jwt:` section itself, and each item of
 * its `providers:` list. */
#define PROVIDER_ROWS                                                                                                \
    { "secret", TG_KEY_STRING, "string, at least 16 bytes", "none", "an HS256 secret (`${VAR}` works; shown as "       \
                                                                    "`<redacted>`)" },                                 \
    { "keys", TG_KEY_LIST, "list of `{ file, kid }`", "none", "RS256 / ES256 public keys in PEM files",                \
      .sub = &jwt_key_item },                                                                                         \
    { "jwks_file", TG_KEY_STRING, "path", "none", "a JWKS file: RSA, EC P-256 and oct keys, selected by `kid`" },      \
    { "jwks_uri", TG_KEY_STRING, "URL", "none",                                                                       \
      "a JWKS fetched over `https://` (or `http://`) and kept fresh (docs/filters.md, \"Keys from an identity "       \
      "provider\")",                                                                                                  \
      TG_FIELD(tg_jwt_conf_t, jwks_uri, TG_FIELD_STR) },                                                              \
    { "issuer", TG_KEY_STRING, "string", "none",                                                                      \
      "`iss` must equal this; an `http(s)://` issuer with no keys configured is discovered "                          \
      "(`/.well-known/openid-configuration`, then its `jwks_uri`)",                                                   \
      TG_FIELD(tg_jwt_conf_t, issuer, TG_FIELD_STR) },                                                                \
    { "audiences", TG_KEY_STRINGS, "list", "none", "`aud` (a string or a list) must contain one of these" },          \
    { "scopes", TG_KEY_STRINGS, "list", "none", "all required, from `scope` (space-separated) or `scp` (a list)" },   \
    { "leeway", TG_KEY_DURATION, "duration", "`30s`", "clock skew allowed on `exp` and `nbf`",                         \
      TG_FIELD(tg_jwt_conf_t, leeway_ms, TG_FIELD_U64), .def = 30000 },                                               \
    { "identity_claim", TG_KEY_STRING, "claim name", "`sub`", "the claim that is the identity",                      \
      TG_FIELD(tg_jwt_conf_t, identity_claim, TG_FIELD_STR) },                                                        \
    { "require_exp", TG_KEY_BOOL, "bool", "`true`", "a token without `exp` is refused",                               \
      TG_FIELD(tg_jwt_conf_t, require_exp, TG_FIELD_INT), .def = 1 },                                                 \
    { "ca_file", TG_KEY_STRING, "path", "the system's CAs", "the CAs an `https://` key set or issuer is verified "    \
                                                            "against",                                                \
      TG_FIELD(tg_jwt_conf_t, ca_file, TG_FIELD_STR) },                                                               \
    { "min_refresh", TG_KEY_DURATION, "duration", "`1m`", "a remote key set is fetched again after its "             \
                                                          "`Cache-Control: max-age`, at least this late...",          \
      TG_FIELD(tg_jwt_conf_t, min_refresh_ms, TG_FIELD_U64), .def = 60000, .min = 1000, .max = INT64_MAX },                             \
    { "max_refresh", TG_KEY_DURATION, "duration", "`1h`", "...and at most this late",                                 \
      TG_FIELD(tg_jwt_conf_t, max_refresh_ms, TG_FIELD_U64), .def = 3600000, .min = 1000, .max = INT64_MAX },                           \
    { "max_stale", TG_KEY_DURATION, "duration", "`24h`",                                                             \
      "while fetches fail, the last good set serves this long after it was fetched; then tokens are refused",        \
      TG_FIELD(tg_jwt_conf_t, max_stale_ms, TG_FIELD_U64), .def = 86400000, .min = 1000, .max = INT64_MAX },                            \
    { "refetch_interval", TG_KEY_DURATION, "duration", "`10s`",                                                      \
      "a token whose `kid` the set lacks fetches it again at once, at most once in this long per URL",               \
      TG_FIELD(tg_jwt_conf_t, refetch_interval_ms, TG_FIELD_U64), .def = 10000 },                                     \
    { "startup_wait", TG_KEY_DURATION, "duration", "`10s`",                                                          \
      "requests that come before the first set wait for it this long (from when the config starts)",                 \
      TG_FIELD(tg_jwt_conf_t, startup_wait_ms, TG_FIELD_U64), .def = 10000 },                                         \
    { "fetch_timeout", TG_KEY_DURATION, "duration", "`5s`", "one fetch of the key set or discovery document",         \
      TG_FIELD(tg_jwt_conf_t, fetch_timeout_ms, TG_FIELD_U64), .def = 5000, .min = 100, .max = INT64_MAX },                             \
    { "no_keys_status", TG_KEY_INT, "`401` or `503`", "`401`",                                                      \
      "the answer while a remote set has no keys (none fetched yet, or older than `max_stale`)",                     \
      TG_FIELD(tg_jwt_conf_t, no_keys_status, TG_FIELD_U32), .def = 401, .min = 401, .max = 503 },               \
    { "introspection", TG_KEY_MAP, "mapping", "none",                                                              \
      "opaque (non-JWT) bearer tokens are checked at the provider's RFC 7662 endpoint (below)",                     \
      .sub = &tg_introspect_keys }

static const tg_key_t jwt_provider_rows[] = { PROVIDER_ROWS };
static const tg_keyset_t jwt_provider = TG_KEYSET("filter.auth.jwt.provider", "auth jwt.providers[]",
                                                  jwt_provider_rows);

static const tg_key_t jwt_keys[] = {
    PROVIDER_ROWS,
    { "cache", TG_KEY_INT, "integer 0–1000000", "`10000`",
      "verified tokens remembered per worker, by SHA-256, until their `exp` and at most a minute, while the key sets "
      "stay the same (0: every request checks its signature)",
      TG_FIELD(tg_jwt_conf_t, cache_entries, TG_FIELD_U32), .def = 10000, .min = 0, .max = 1000000 },
    { "providers", TG_KEY_LIST, "list of provider sections", "none",
      "several identity providers on one route: each item takes the keys above (but `providers`); a token goes to "
      "the one whose `issuer` is its `iss` (one without `issuer` takes the rest)",
      .sub = &jwt_provider },
};
const tg_keyset_t tg_jwt_keys = TG_KEYSET("filter.auth.jwt", "auth jwt", jwt_keys);

static int load_pem_keys(tg_node_t *n, const char *config_path, tg_jwt_conf_t *c)
{
    if (!tg_node_is_seq(n)) {
        tg_node_error(n, "jwt keys must be a list of { file, kid }");
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < tg_node_seq_len(n); i++) {
        tg_node_t item = tg_node_seq_item(n, i), f[2];
        int bad = tg_node_keys(&item, "jwt key", &jwt_key_item, f) < 0;
        tg_node_t file = bad ? (tg_node_t){ 0 } : tg_node_get(f, &jwt_key_item, "file");
        tg_node_t kid = bad ? (tg_node_t){ 0 } : tg_node_get(f, &jwt_key_item, "kid");
        if (bad || !tg_node_present(&file)) {
            if (!bad)
                tg_node_error(&item, "jwt key: missing required key 'file'");
            rc = -1;
            continue;
        }
        char *path = tg_node_str(&file, "jwt key file"), *full = path ? resolve_path(config_path, path) : NULL;
        FILE *fp = full ? fopen(full, "r") : NULL;
        EVP_PKEY *k = fp ? PEM_read_PUBKEY(fp, NULL, NULL, NULL) : NULL;
        if (fp)
            fclose(fp);
        tg_jwk_t key = { .pkey = k, .alg = k ? tg_jwk_alg_of(k) : 0 };
        if (k == NULL || key.alg == 0) {
            tg_node_error(&file, "jwt key file: %s: %s", full ? full : "?",
                          fp == NULL ? strerror(errno) : "not an RSA or EC P-256 public key in PEM");
            EVP_PKEY_free(k);
            rc = -1;
        } else {
            if (tg_node_present(&kid))
                key.kid = tg_node_str(&kid, "jwt key kid");
            if (tg_jwk_set_add(c->keys, key) < 0)
                rc = -1;
        }
        free(path);
        free(full);
    }
    return rc;
}

static int is_url(const char *s)
{
    return s != NULL && (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0);
}

/* jwks_uri, or an http(s) issuer with no keys of its own: a remote set,
 * fetched through the cluster of its URL's origin. */
static int plan_remote(tg_node_t *node, tg_jwt_conf_t *c)
{
    const char *url = c->jwks_uri;
    int discover = url == NULL;
    char *disc = NULL;
    if (discover) {
        size_t il = strlen(c->issuer);
        if (asprintf(&disc, "%.*s/.well-known/openid-configuration", (int)(il && c->issuer[il - 1] == '/' ? il - 1 : il),
                     c->issuer) < 0)
            return -1;
        url = disc;
    }
    char *path = NULL;
    int rc = tg_node_origin(node, url, c->ca_file, &c->cluster, &c->authority, &path);
    if (rc == 0 && discover)
        c->discovery_path = path;
    else
        c->jwks_path = path;
    free(disc);
    if (rc == 0 && asprintf(&c->remote_key, "%s %s", discover ? "discover" : "jwks", discover ? c->issuer : c->jwks_uri) < 0)
        rc = -1;
    return rc;
}

static tg_jwt_conf_t *create(tg_node_t *node, const char *config_path, const tg_keyset_t *ks, size_t *n_views);

static int load_providers(tg_node_t *n, const char *config_path, tg_jwt_conf_t *c, size_t *n_views)
{
    if (!tg_node_is_seq(n) || tg_node_seq_len(n) == 0) {
        tg_node_error(n, "jwt providers: a list of one or more provider sections");
        return -1;
    }
    size_t len = tg_node_seq_len(n);
    if ((c->providers = calloc(len, sizeof(*c->providers))) == NULL)
        return -1;
    int rc = 0, catch_all = 0;
    for (size_t i = 0; i < len; i++) {
        tg_node_t item = tg_node_seq_item(n, i);
        tg_jwt_conf_t *p = create(&item, config_path, &jwt_provider, n_views);
        if (p == NULL) {
            rc = -1;
            continue;
        }
        c->providers[c->n_providers++] = p;
        for (size_t j = 0; j + 1 < c->n_providers; j++)
            if (p->issuer && c->providers[j]->issuer && strcmp(p->issuer, c->providers[j]->issuer) == 0) {
                tg_node_error(&item, "jwt providers: issuer '%s' twice", p->issuer);
                rc = -1;
            }
        if (p->issuer == NULL && catch_all++) {
            tg_node_error(&item, "jwt providers: only one provider may go without an issuer");
            rc = -1;
        }
    }
    return rc;
}

static tg_jwt_conf_t *create(tg_node_t *node, const char *config_path, const tg_keyset_t *ks, size_t *n_views)
{
    tg_node_t v[TG_KEYSET_MAX];
    tg_jwt_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->keys = tg_jwk_set_new()) == NULL) {
        free(c);
        return NULL;
    }
    const char *what = ks == &jwt_provider ? "jwt provider" : "jwt";
    int rc = tg_node_read(node, what, ks, c, v, TG_KEYSET_MAX);
    tg_node_t secret = tg_node_get(v, ks, "secret"), keys = tg_node_get(v, ks, "keys");
    tg_node_t jwks = tg_node_get(v, ks, "jwks_file"), aud = tg_node_get(v, ks, "audiences");
    tg_node_t scopes = tg_node_get(v, ks, "scopes"), issuer = tg_node_get(v, ks, "issuer");
    tg_node_t nks = tg_node_get(v, ks, "no_keys_status"), minr = tg_node_get(v, ks, "min_refresh");
    tg_node_t providers = ks == &tg_jwt_keys ? tg_node_get(v, ks, "providers") : (tg_node_t){ 0 };
    tg_node_t intro = tg_node_get(v, ks, "introspection");
    if (tg_node_present(&intro) && (c->introspect = tg_introspect_create(&intro, config_path)) == NULL)
        rc = -1;
    c->leeway_s = (int64_t)(c->leeway_ms / 1000);
    if (tg_node_present(&secret)) {
        char *s = tg_node_secret(&secret, "jwt secret");
        if (s == NULL || strlen(s) < 16) {
            if (s)
                tg_node_error(&secret, "jwt secret: use at least 16 bytes for HS256");
            rc = -1;
            free(s);
        } else {
            tg_jwk_t k = { .alg = TG_JWK_HS256, .secret = (unsigned char *)s, .secret_len = strlen(s) };
            if (tg_jwk_set_add(c->keys, k) < 0)
                rc = -1;
        }
    }
    if (tg_node_present(&keys) && load_pem_keys(&keys, config_path, c) < 0)
        rc = -1;
    if (tg_node_present(&jwks) && load_jwks(&jwks, config_path, c) < 0)
        rc = -1;
    if (tg_node_present(&aud) && tg_node_str_list(&aud, "audiences", &c->audiences, &c->n_aud) < 0)
        rc = -1;
    if (tg_node_present(&scopes) && tg_node_str_list(&scopes, "scopes", &c->scopes, &c->n_scopes) < 0)
        rc = -1;
    if (c->identity_claim == NULL && (c->identity_claim = strdup("sub")) == NULL)
        rc = -1;
    if (c->no_keys_status != 401 && c->no_keys_status != 503) {
        tg_node_error(&nks, "no_keys_status: 401 or 503");
        rc = -1;
    }
    if (c->min_refresh_ms > c->max_refresh_ms) {
        tg_node_error(&minr, "min_refresh is longer than max_refresh");
        rc = -1;
    }
    if (tg_node_present(&providers) && load_providers(&providers, config_path, c, n_views) < 0)
        rc = -1;
    int remote = c->jwks_uri != NULL || (c->keys->n == 0 && is_url(c->issuer));
    if (c->jwks_uri != NULL && !is_url(c->jwks_uri)) {
        tg_node_error(node, "jwt jwks_uri: '%s' is not an http:// or https:// URL", c->jwks_uri);
        rc = -1;
    } else if (remote && rc == 0) {
        if (plan_remote(tg_node_present(&issuer) && c->jwks_uri == NULL ? &issuer : node, c) < 0)
            rc = -1;
        c->view = (*n_views)++;
    }
    if (rc == 0 && c->keys->n == 0 && !remote && c->n_providers == 0 && c->introspect == NULL) {
        tg_node_error(node, "%s: configure secret, keys, jwks_file, jwks_uri, an http(s) issuer, introspection or "
                            "providers", what);
        rc = -1;
    }
    if (rc < 0) {
        tg_jwt_destroy(c);
        return NULL;
    }
    c->rules = (tg_claim_rules_t){ c->issuer, (const char *const *)c->audiences, c->n_aud,
                                   (const char *const *)c->scopes, c->n_scopes, c->leeway_s, c->identity_claim,
                                   c->require_exp };
    return c;
}

tg_jwt_conf_t *tg_jwt_create(tg_node_t *node, const char *config_path)
{
    size_t n_views = 0;
    tg_jwt_conf_t *c = create(node, config_path, &tg_jwt_keys, &n_views);
    if (c != NULL && (c->n_views = n_views) > 0 && (c->remotes = calloc(n_views, sizeof(*c->remotes))) == NULL) {
        tg_jwt_destroy(c);
        return NULL;
    }
    return c;
}

void tg_jwt_destroy(tg_jwt_conf_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_providers; i++)
        tg_jwt_destroy(c->providers[i]);
    free(c->providers);
    tg_jwks_remote_put(c->host, c->remote);
    tg_introspect_destroy(c->introspect);
    free(c->remotes);
    tg_jwk_set_unref(c->keys);
    free(c->issuer);
    for (size_t i = 0; i < c->n_aud; i++)
        free(c->audiences[i]);
    free(c->audiences);
    for (size_t i = 0; i < c->n_scopes; i++)
        free(c->scopes[i]);
    free(c->scopes);
    free(c->identity_claim);
    free(c->jwks_uri);
    free(c->ca_file);
    free(c->remote_key);
    free(c->cluster);
    free(c->authority);
    free(c->jwks_path);
    free(c->discovery_path);
    free(c);
}

static int start_tree(tg_jwt_conf_t *top, tg_jwt_conf_t *c, const tg_filter_host_t *h, tg_errors_t *errs)
{
    for (size_t i = 0; i < c->n_providers; i++)
        if (start_tree(top, c->providers[i], h, errs) < 0)
            return -1;
    if (c->remote_key == NULL || c->remote != NULL)
        return 0;
    tg_jwks_params_t p = {
        .cluster = c->cluster,
        .authority = c->authority,
        .jwks_path = c->jwks_path,
        .issuer = c->issuer,
        .discovery_path = c->discovery_path,
        .min_refresh_ms = c->min_refresh_ms,
        .max_refresh_ms = c->max_refresh_ms,
        .max_stale_ms = c->max_stale_ms,
        .refetch_interval_ms = c->refetch_interval_ms,
        .startup_wait_ms = c->startup_wait_ms,
        .timeout_ms = c->fetch_timeout_ms,
    };
    c->host = h;
    if ((c->remote = tg_jwks_remote_get(h, c->remote_key, &p)) == NULL) {
        tg_errors_add(errs, "jwt: cannot set up the key set %s: out of memory", c->remote_key);
        return -1;
    }
    top->remotes[c->view] = c->remote;
    return 0;
}

int tg_jwt_start(tg_jwt_conf_t *c, const tg_filter_host_t *h, tg_errors_t *errs)
{
    return start_tree(c, c, h, errs);
}

struct tg_jwt_worker {
    tg_verdicts_t *verified;   /* unix ms; tagged with the key sets' generations */
    size_t n_views;
    tg_jwks_view_t views[];
};

tg_jwt_worker_t *tg_jwt_worker_new(const tg_jwt_conf_t *c)
{
    tg_jwt_worker_t *w = calloc(1, sizeof(*w) + c->n_views * sizeof(w->views[0]));
    if (w == NULL)
        return NULL;
    w->n_views = c->n_views;
    if ((w->verified = tg_verdicts_new(c->cache_entries)) == NULL) {
        free(w);
        return NULL;
    }
    return w;
}

void tg_jwt_worker_free(tg_jwt_worker_t *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n_views; i++)
        tg_jwks_view_release(&w->views[i]);
    tg_verdicts_free(w->verified);
    free(w);
}

/* What a remembered verdict was decided against: the remote sets as they
 * are now (a new set, a key rotated out, a set past max_stale: every
 * token is checked again). */
static uint64_t sets_tag(const tg_jwt_conf_t *top)
{
    uint64_t tag = 0, now = top->n_views ? tg_clock_ms() : 0;
    for (size_t i = 0; i < top->n_views; i++)
        tag = tag * 1000003 + (top->remotes[i] ? tg_jwks_remote_generation(top->remotes[i], now) + 1 : 0);
    return tag;
}


const tg_introspect_conf_t *tg_jwt_introspection(const tg_jwt_conf_t *c, const tg_claim_rules_t **rules)
{
    if (c->introspect != NULL) {
        *rules = &c->rules;
        return c->introspect;
    }
    for (size_t i = 0; i < c->n_providers; i++)
        if (c->providers[i]->introspect != NULL) {
            *rules = &c->providers[i]->rules;
            return c->providers[i]->introspect;
        }
    return NULL;
}

/* ---- verification ---- */

static int verify_sig(const tg_jwk_t *k, const char *signed_part, size_t slen, const unsigned char *sig,
                      size_t siglen)
{
    if (k->alg == TG_JWK_HS256) {
        unsigned char mac[32];
        unsigned int ml = 0;
        if (HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)signed_part, slen, mac, &ml) ==
                NULL || ml != 32 || siglen != 32)
            return 0;
        return CRYPTO_memcmp(mac, sig, 32) == 0;
    }
    unsigned char der[80];
    const unsigned char *s = sig;
    size_t sl = siglen;
    if (k->alg == TG_JWK_ES256) { /* JOSE: raw r || s; OpenSSL: DER */
        if (siglen != 64)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
        if (es == NULL || r == NULL || ss == NULL || ECDSA_SIG_set0(es, r, ss) != 1) {
            ECDSA_SIG_free(es);
            BN_free(r);
            BN_free(ss);
            return 0;
        }
        unsigned char *p = der;
        int dl = i2d_ECDSA_SIG(es, NULL);
        if (dl <= 0 || dl > (int)sizeof(der) || i2d_ECDSA_SIG(es, &p) != dl) {
            ECDSA_SIG_free(es);
            return 0;
        }
        ECDSA_SIG_free(es);
        s = der;
        sl = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
             EVP_DigestVerify(ctx, s, sl, (const unsigned char *)signed_part, slen) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static int alg_of(const char *s)
{
    return !s                      ? 0
           : !strcmp(s, "HS256") ? TG_JWK_HS256
           : !strcmp(s, "RS256") ? TG_JWK_RS256
           : !strcmp(s, "ES256") ? TG_JWK_ES256
                                 : 0;
}

/* The provider a token goes to: the one whose issuer is its iss, else
 * the one without an issuer, else the section itself. */
static const tg_jwt_conf_t *provider_for(const tg_jwt_conf_t *c, const char *iss)
{
    const tg_jwt_conf_t *any = NULL;
    int own = c->keys->n > 0 || c->remote_key != NULL;
    if (own && (c->issuer == NULL || (iss && strcmp(iss, c->issuer) == 0)))
        return c;
    for (size_t i = 0; i < c->n_providers; i++) {
        const tg_jwt_conf_t *p = c->providers[i];
        if (p->issuer && iss && strcmp(p->issuer, iss) == 0)
            return p;
        if (p->issuer == NULL && any == NULL)
            any = p;
    }
    return any ? any : own ? c : NULL;
}

/* Checks the signature with the keys of set that fit alg and kid; counts
 * the candidates. */
static int verify_with(const tg_jwk_set_t *set, int alg, const char *kid, const char *token, size_t slen,
                       const unsigned char *sig, size_t siglen, int *candidates)
{
    for (size_t i = 0; set != NULL && i < set->n; i++) {
        const tg_jwk_t *k = &set->keys[i];
        if (k->alg != alg || (kid && k->kid && strcmp(kid, k->kid) != 0))
            continue;
        (*candidates)++;
        if (verify_sig(k, token, slen, sig, siglen))
            return 1;
    }
    return 0;
}

static const char *check(const tg_jwt_conf_t *top, tg_jwt_worker_t *w, const char *token, int64_t now,
                         tg_arena_t *a, const char **identity, tg_headers_t *claims_out, tg_jwt_wait_t *wait);

const char *tg_jwt_verify(const tg_jwt_conf_t *c, const char *token, int64_t now, tg_arena_t *a,
                          const char **identity)
{
    return tg_jwt_check(c, NULL, token, now, a, identity, NULL, NULL);
}

const char *tg_jwt_verify_claims(const tg_jwt_conf_t *c, const char *token, int64_t now, tg_arena_t *a,
                                 const char **identity, tg_headers_t *claims_out)
{
    return tg_jwt_check(c, NULL, token, now, a, identity, claims_out, NULL);
}

const char *tg_jwt_check(const tg_jwt_conf_t *top, tg_jwt_worker_t *w, const char *token, int64_t now,
                         tg_arena_t *a, const char **identity, tg_headers_t *claims_out, tg_jwt_wait_t *wait)
{
    if (wait != NULL)
        wait->remote = NULL;
    if (w == NULL || top->cache_entries == 0 || claims_out == NULL || strlen(token) > 16384)
        return check(top, w, token, now, a, identity, claims_out, wait);
    unsigned char key[32];
    const char *reason;
    uint64_t tag = sets_tag(top);
    SHA256((const unsigned char *)token, strlen(token), key);
    if (tg_verdicts_get(w->verified, key, tag, (uint64_t)now * 1000, a, identity, claims_out, &reason) && reason == NULL)
        return NULL;
    tg_headers_t kept = { 0 };
    int64_t exp = 0;
    if ((reason = check(top, w, token, now, a, identity, &kept, wait)) != NULL)
        return reason;
    const tg_header_t *e = tg_headers_get(&kept, "exp");
    if (e != NULL)
        exp = strtoll(e->value, NULL, 10);
    uint64_t until = (uint64_t)now * 1000 + 60000;
    if (e != NULL && (uint64_t)(exp + top->leeway_s) * 1000 < until)
        until = (uint64_t)(exp + top->leeway_s) * 1000;
    tg_verdicts_put(w->verified, key, tag, until, NULL, *identity, &kept);
    for (size_t i = 0; i < kept.n; i++)
        tg_headers_add(claims_out, a, kept.v[i].name, kept.v[i].name_len, kept.v[i].value, kept.v[i].value_len);
    return NULL;
}

/* The generation of c's remote set this worker checked tokens against. */
static uint64_t seen_gen(const tg_jwt_conf_t *c, const tg_jwt_worker_t *w)
{
    return w != NULL ? w->views[c->view].gen : TG_JWKS_GEN_UNSEEN;
}

/* tg_jwt_check without the memory. */
static const char *check(const tg_jwt_conf_t *top, tg_jwt_worker_t *w, const char *token, int64_t now,
                         tg_arena_t *a, const char **identity, tg_headers_t *claims_out, tg_jwt_wait_t *wait)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    size_t tl = strlen(token);
    if (d1 == NULL || d2 == NULL || strchr(d2 + 1, '.') != NULL || tl > 16384)
        return "malformed token";
    size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1), sl = tl - (size_t)(d2 + 1 - token);
    unsigned char *hb = tg_arena_alloc(a, hl + 4), *pb = tg_arena_alloc(a, pl + 4), *sb = tg_arena_alloc(a, sl + 4);
    if (hb == NULL || pb == NULL || sb == NULL)
        return "out of memory";
    long hn = tg_b64url_decode(token, hl, hb), pn = tg_b64url_decode(d1 + 1, pl, pb),
         sn = tg_b64url_decode(d2 + 1, sl, sb);
    tg_json_t header, claims;
    if (hn < 0 || pn < 0 || sn < 0 || tg_json_parse((char *)hb, (size_t)hn, a, &header) < 0 ||
        tg_json_parse((char *)pb, (size_t)pn, a, &claims) < 0 || header.t != TG_JSON_OBJ || claims.t != TG_JSON_OBJ)
        return "malformed token";
    int alg = alg_of(tg_json_get_str(&header, "alg"));
    if (alg == 0)
        return "unsupported algorithm";
    const tg_jwt_conf_t *c = provider_for(top, tg_json_get_str(&claims, "iss"));
    if (c == NULL)
        return "wrong issuer";
    const char *kid = tg_json_get_str(&header, "kid");
    int candidates = 0;
    size_t signed_len = (size_t)(d2 - token);
    int verified = verify_with(c->keys, alg, kid, token, signed_len, sb, (size_t)sn, &candidates);
    const tg_jwk_set_t *remote = NULL;
    if (!verified && c->remote != NULL && w != NULL) {
        remote = tg_jwks_remote_keys(c->remote, &w->views[c->view], tg_clock_ms());
        verified = verify_with(remote, alg, kid, token, signed_len, sb, (size_t)sn, &candidates);
    }
    if (!candidates && c->remote_key != NULL && remote == NULL) {
        if (wait != NULL && c->remote != NULL)
            *wait = (tg_jwt_wait_t){ c->remote, TG_JWKS_NO_KEYS, (int)c->no_keys_status, seen_gen(c, w) };
        return "no keys from the identity provider";
    }
    if (!candidates) {
        if (wait != NULL && c->remote != NULL && kid != NULL)
            *wait = (tg_jwt_wait_t){ c->remote, TG_JWKS_UNKNOWN_KID, 401, seen_gen(c, w) };
        return "no key for this token";
    }
    if (!verified)
        return "bad signature";
    return tg_claims_check(&c->rules, &claims, now, a, identity, claims_out);
}
