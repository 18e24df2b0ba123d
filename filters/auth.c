/*
 * filters/auth.c — bearer tokens and API keys.
 *
 * Secrets are kept only as SHA-256 digests; a presented credential is
 * hashed once and compared with CRYPTO_memcmp against every configured
 * digest without stopping at a match, so timing reveals neither which
 * secret matched nor how much of one did. The resolved identity (the
 * secret's name) goes on the exchange for later filters and upstream in
 * identity_header; a client-sent copy of that header is always removed.
 */
#include "filters/auth.h"
#include "filters/jwt.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/base/clock.h"

/* its counters (tg_filter_count) */
enum { AUTH_FAILED };
static const tg_filter_counter_t auth_counters[] = {
    [AUTH_FAILED] = { "tollgate_auth_failures_total", "Requests refused by an auth filter (401/403), by route." },
};

typedef struct auth_conf {
    EVP_MD *sha256;             /* fetched once: OpenSSL 3 one-shot calls re-fetch each time */
    tg_auth_secret_t *bearer;
    size_t n_bearer;
    tg_auth_secret_t *keys;
    size_t n_keys;
    tg_jwt_conf_t *jwt;         /* bearer tokens that match no static one are verified as JWTs */
    char *key_header;           /* NULL: API keys not read from a header */
    char *key_query;            /* NULL: not from the query string */
    char **allow;               /* identities allowed here; none = any */
    size_t n_allow;
    char *identity_header;
    int client_cert;        /* a verified TLS client certificate counts as credentials */
    int strip;                  /* remove the credential before forwarding */
    char *challenge;            /* WWW-Authenticate value */
    unsigned counters;          /* the first bit of its counters */
} auth_conf_t;

static long match_digest(const tg_auth_secret_t *secrets, size_t n, const unsigned char d[32])
{
    long found = -1;
    for (size_t i = 0; i < n; i++) {
        int eq = CRYPTO_memcmp(d, secrets[i].digest, 32) == 0;
        found = eq && found < 0 ? (long)i : found; /* no early exit */
    }
    return found;
}

long tg_auth_match(const tg_auth_secret_t *secrets, size_t n, const char *presented, size_t len)
{
    unsigned char d[32];
    SHA256((const unsigned char *)presented, len, d);
    return match_digest(secrets, n, d);
}

/* Per-worker state: a digest context, made when the worker takes the
 * config up and reused by its requests (EVP_Digest would allocate and
 * free one per request), and the worker's view of each remote key set
 * its jwt section reads (jwks.h). */
typedef struct auth_worker {
    EVP_MD_CTX *md;
    tg_jwt_worker_t *jwt;           /* key set views, verified tokens (NULL: no jwt) */
    tg_introspect_worker_t *intro;  /* opaque tokens' verdicts (NULL: no introspection) */
} auth_worker_t;

static void auth_worker_free(void *p, void *state);

static void *auth_worker_init(void *p, unsigned worker)
{
    const auth_conf_t *c = p;
    auth_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    const tg_claim_rules_t *rules;
    const tg_introspect_conf_t *ic = c->jwt ? tg_jwt_introspection(c->jwt, &rules) : NULL;
    if ((w->md = EVP_MD_CTX_new()) == NULL || (ic != NULL && (w->intro = tg_introspect_worker_new(ic)) == NULL) ||
        (c->jwt != NULL && (w->jwt = tg_jwt_worker_new(c->jwt)) == NULL)) {
        auth_worker_free(p, w);
        return NULL;
    }
    return w;
}

static void auth_worker_free(void *p, void *state)
{
    auth_worker_t *w = state;
    tg_jwt_worker_free(w->jwt);
    tg_introspect_worker_free(w->intro);
    EVP_MD_CTX_free(w->md);
    free(w);
}

static int auth_start(void *p, const tg_filter_host_t *host, tg_errors_t *errs)
{
    auth_conf_t *c = p;
    return c->jwt ? tg_jwt_start(c->jwt, host, errs) : 0;
}

/* The hot-path variant: the digest implementation fetched at load, the
 * worker's context (a one-shot digest where there is none: a config not
 * started, in tests). */
static long conf_match(const auth_conf_t *c, EVP_MD_CTX *ctx, const tg_auth_secret_t *secrets, size_t n,
                       const char *presented)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    if (ctx == NULL)
        return tg_auth_match(secrets, n, presented, strlen(presented));
    if (EVP_DigestInit_ex2(ctx, c->sha256, NULL) != 1 || EVP_DigestUpdate(ctx, presented, strlen(presented)) != 1 ||
        EVP_DigestFinal_ex(ctx, d, &dl) != 1 || dl != 32)
        return -1;
    return match_digest(secrets, n, d);
}

static void free_secrets(tg_auth_secret_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        OPENSSL_cleanse(s[i].digest, sizeof(s[i].digest));
        free(s[i].name);
    }
    free(s);
}

static void auth_destroy(void *p)
{
    auth_conf_t *c = p;
    if (c == NULL)
        return;
    free_secrets(c->bearer, c->n_bearer);
    free_secrets(c->keys, c->n_keys);
    free(c->key_header);
    free(c->key_query);
    for (size_t i = 0; i < c->n_allow; i++)
        free(c->allow[i]);
    free(c->allow);
    free(c->identity_header);
    free(c->challenge);
    tg_jwt_destroy(c->jwt);
    EVP_MD_free(c->sha256);
    free(c);
}

static int add_secret(tg_auth_secret_t **v, size_t *n, const char *name, const char *secret)
{
    tg_auth_secret_t *nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (nv == NULL)
        return -1;
    *v = nv;
    nv[*n].name = strdup(name);
    if (nv[*n].name == NULL)
        return -1;
    SHA256((const unsigned char *)secret, strlen(secret), nv[*n].digest);
    (*n)++;
    return 0;
}

static const tg_key_t token_item_keys[] = {
    { "name", TG_KEY_STRING, "string (required)", "—", "the identity the token stands for", .flags = TG_KEY_REQUIRED },
    { "token", TG_KEY_STRING, "string (required)", "—", "the bearer token (a secret: kept as its SHA-256 only)",
      .flags = TG_KEY_REQUIRED },
};
static const tg_keyset_t token_item = TG_KEYSET("filter.auth.token", "auth bearer_tokens[]", token_item_keys);

static const tg_key_t key_item_keys[] = {
    { "name", TG_KEY_STRING, "string (required)", "—", "the identity the key stands for", .flags = TG_KEY_REQUIRED },
    { "key", TG_KEY_STRING, "string (required)", "—", "the API key (a secret: kept as its SHA-256 only)",
      .flags = TG_KEY_REQUIRED },
};
static const tg_keyset_t key_item = TG_KEYSET("filter.auth.key", "auth api_keys.keys[]", key_item_keys);

static const tg_key_t api_keys_keys[] = {
    { "header", TG_KEY_STRING, "header name", "`x-api-key` (when `query` is not given either)",
      "the request header that carries the key", TG_FIELD(auth_conf_t, key_header, TG_FIELD_STR) },
    { "query", TG_KEY_STRING, "query parameter name", "none", "the query parameter that carries the key, when the "
                                                               "header does not",
      TG_FIELD(auth_conf_t, key_query, TG_FIELD_STR) },
    { "keys", TG_KEY_LIST, "list of `{ name, key }` or plain keys (required)", "—",
      "the keys; a plain string is named `key-1`, `key-2`, ...; `${VAR}` works in each", .sub = &key_item,
      .flags = TG_KEY_REQUIRED | TG_KEY_ITEMS_OR_STRING },
};
static const tg_keyset_t api_keys = TG_KEYSET("filter.auth.api_keys", "auth api_keys", api_keys_keys);

static const tg_key_t auth_keys[] = {
    { "bearer_tokens", TG_KEY_LIST, "list", "none",
      "`Authorization: Bearer <token>` credentials: plain strings (named `token-1`, `token-2`, ...) or `{ name, "
      "token }` mappings; `${VAR}` works in each",
      .sub = &token_item, .flags = TG_KEY_ITEMS_OR_STRING },
    { "bearer_tokens_file", TG_KEY_STRING, "path", "none",
      "more tokens, one per line: `name token`, or a bare `token` (named `file-<line>`); `#` comments; relative to "
      "the config file" },
    { "api_keys", TG_KEY_MAP, "mapping", "none",
      "`{ header: x-api-key, query: api_key, keys: [{ name, key }] }`; the key is read from the header, else from the "
      "query parameter (header `x-api-key` if neither is given)",
      .sub = &api_keys },
    { "allow", TG_KEY_STRINGS, "list of identities", "any",
      "identities allowed on this chain; others get `403`. On its own (no credentials configured) it checks the "
      "identity an earlier filter established" },
    { "identity_header", TG_KEY_STRING, "header name", "`x-auth-identity`",
      "carries the identity upstream; a copy sent by the client is always removed, so it cannot be spoofed",
      TG_FIELD(auth_conf_t, identity_header, TG_FIELD_STR) },
    { "strip_credentials", TG_KEY_BOOL, "bool", "`true`",
      "remove the credential (Authorization header, API key header, or API key query parameter) before forwarding",
      TG_FIELD(auth_conf_t, strip, TG_FIELD_INT), .def = 1 },
    { "realm", TG_KEY_STRING, "string", "`tollgate`", "in `WWW-Authenticate: Bearer realm=\"...\"`" },
    { "jwt", TG_KEY_MAP, "mapping", "none", "verify bearer tokens that match no static token as JWTs (below)",
      .sub = &tg_jwt_keys },
    { "client_cert", TG_KEY_BOOL, "bool", "`false`",
      "on a TLS listener with client auth, a verified client certificate counts as credentials: the identity is its "
      "subject DN (`CN=client-a,O=Acme`), which `allow` can list (see [tls-http2.md](tls-http2.md))",
      TG_FIELD(auth_conf_t, client_cert, TG_FIELD_INT) },
};
static const tg_keyset_t auth_keyset = TG_KEYSET("filter.auth", "auth", auth_keys);

/* A list of secrets: plain strings (named "<prefix>-<n>") or mappings of
 * item's keys: { name, <prefix> } (prefix: "token" or "key"). */
static int load_secrets(tg_node_t *n, const char *what, const tg_keyset_t *item_keys, const char *prefix,
                        tg_auth_secret_t **v, size_t *count)
{
    const char *field = prefix;
    if (!tg_node_is_seq(n)) {
        tg_node_error(n, "%s must be a list", what);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < tg_node_seq_len(n); i++) {
        tg_node_t item = tg_node_seq_item(n, i), f[2];
        char *name = NULL, *secret = NULL;
        char autoname[64];
        snprintf(autoname, sizeof(autoname), "%s-%zu", prefix, i + 1);
        char *plain = NULL;
        if (tg_node_is_map(&item)) {
            if (tg_node_keys(&item, what, item_keys, f) < 0) {
                rc = -1;
                continue;
            }
            tg_node_t nn = tg_node_get(f, item_keys, "name"), sn = tg_node_get(f, item_keys, field);
            if (!tg_node_present(&nn) || !tg_node_present(&sn)) {
                tg_node_error(&item, "%s: each entry needs 'name' and '%s'", what, field);
                rc = -1;
                continue;
            }
            name = tg_node_str(&nn, what);
            secret = tg_node_secret(&sn, what);
        } else { /* a plain string */
            plain = tg_node_secret(&item, what);
            secret = plain;
            name = plain ? strdup(autoname) : NULL;
        }
        if (name == NULL || secret == NULL || secret[0] == '\0') {
            if (secret && secret[0] == '\0')
                tg_node_error(&item, "%s: empty secret", what);
            rc = -1;
        } else if (add_secret(v, count, name, secret) < 0) {
            rc = -1;
        }
        if (secret)
            OPENSSL_cleanse(secret, strlen(secret));
        free(name);
        free(secret);
    }
    return rc;
}

/* A file of "name token" lines (or bare tokens); # starts a comment. */
static int load_token_file(tg_node_t *n, const char *config_path, auth_conf_t *c)
{
    char *path = tg_node_str(n, "bearer_tokens_file");
    if (path == NULL)
        return -1;
    char full[4096];
    if (path[0] != '/' && strrchr(config_path, '/') != NULL)
        snprintf(full, sizeof(full), "%.*s/%s", (int)(strrchr(config_path, '/') - config_path), config_path, path);
    else
        snprintf(full, sizeof(full), "%s", path);
    FILE *f = fopen(full, "r");
    if (f == NULL) {
        tg_node_error(n, "bearer_tokens_file: cannot open %s: %s", full, strerror(errno));
        free(path);
        return -1;
    }
    char line[4096];
    size_t lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *s = line, *name, *tok;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        s[strcspn(s, "\r\n")] = '\0';
        char *sp = strpbrk(s, " \t");
        char autoname[64];
        if (sp != NULL) {
            *sp = '\0';
            name = s;
            tok = sp + 1;
            while (isspace((unsigned char)*tok))
                tok++;
        } else {
            snprintf(autoname, sizeof(autoname), "file-%zu", lineno);
            name = autoname;
            tok = s;
        }
        if (*tok == '\0' || add_secret(&c->bearer, &c->n_bearer, name, tok) < 0) {
            tg_node_error(n, "bearer_tokens_file: %s:%zu: expected 'name token' or 'token'", full, lineno);
            rc = -1;
        }
        OPENSSL_cleanse(line, sizeof(line));
    }
    fclose(f);
    free(path);
    return rc;
}

static void *auth_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[9];
    auth_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_auth);
    int rc = tg_node_read_into(node, "auth", &auth_keyset, c, v);
    tg_node_t bearer = tg_node_get(v, &auth_keyset, "bearer_tokens"), file = tg_node_get(v, &auth_keyset, "bearer_tokens_file");
    tg_node_t keys = tg_node_get(v, &auth_keyset, "api_keys"), allow = tg_node_get(v, &auth_keyset, "allow");
    tg_node_t jwt = tg_node_get(v, &auth_keyset, "jwt"), realm_n = tg_node_get(v, &auth_keyset, "realm");
    if ((c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
        tg_node_error(node, "auth: SHA-256 is not available from OpenSSL");
        rc = -1;
    }
    if (tg_node_present(&bearer) && load_secrets(&bearer, "bearer_tokens", &token_item, "token", &c->bearer, &c->n_bearer) < 0)
        rc = -1;
    if (tg_node_present(&file) && load_token_file(&file, config_path, c) < 0)
        rc = -1;
    if (tg_node_present(&keys)) {
        tg_node_t kv[3];
        if (tg_node_read_into(&keys, "api_keys", &api_keys, c, kv) < 0)
            rc = -1;
        tg_node_t list = tg_node_get(kv, &api_keys, "keys");
        if (tg_node_present(&list) && load_secrets(&list, "api_keys keys", &key_item, "key", &c->keys, &c->n_keys) < 0)
            rc = -1;
        if (c->key_header == NULL && c->key_query == NULL && rc == 0 && (c->key_header = strdup("x-api-key")) == NULL)
            rc = -1;
    }
    if (tg_node_present(&allow) && tg_node_str_list(&allow, "allow", &c->allow, &c->n_allow) < 0)
        rc = -1;
    if (tg_node_present(&jwt) && (c->jwt = tg_jwt_create(&jwt, config_path)) == NULL)
        rc = -1;
    if (c->identity_header == NULL && (c->identity_header = strdup("x-auth-identity")) == NULL)
        rc = -1;
    char *realm = tg_node_present(&realm_n) ? tg_node_str(&realm_n, "realm") : strdup("tollgate");
    if (realm == NULL || asprintf(&c->challenge, "Bearer realm=\"%s\"", realm) < 0)
        rc = -1;
    free(realm);
    if (rc == 0 && c->n_bearer == 0 && c->n_keys == 0 && c->n_allow == 0 && c->jwt == NULL && !c->client_cert) {
        tg_node_error(node, "auth: configure bearer_tokens, bearer_tokens_file, api_keys, jwt, client_cert or allow");
        rc = -1;
    }
    if (rc < 0) {
        auth_destroy(c);
        return NULL;
    }
    return c;
}

/* Removes name=value from the query string of the target (in the arena). */
static void strip_query_param(tg_filter_exchange_t *fx, const char *param)
{
    const char *t = fx->req->target, *q = strchr(t, '?');
    if (q == NULL)
        return;
    size_t plen = strlen(param), tl = strlen(t);
    char *out = tg_arena_alloc(fx->arena, tl + 1), *w = out;
    if (out == NULL)
        return;
    memcpy(w, t, (size_t)(q - t));
    w += q - t;
    const char *p = q + 1;
    int first = 1;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (!(len >= plen && strncmp(p, param, plen) == 0 && (len == plen || p[plen] == '='))) {
            *w++ = first ? '?' : '&';
            memcpy(w, p, len);
            w += len;
            first = 0;
        }
        p += len + (end ? 1 : 0);
    }
    *w = '\0';
    fx->req->target = out;
}

/* The value of param in the query string, into buf; NULL if absent. */
static const char *query_param(const char *target, const char *param, char *buf, size_t cap)
{
    const char *q = strchr(target, '?');
    size_t plen = strlen(param);
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > plen && strncmp(p, param, plen) == 0 && p[plen] == '=' && len - plen - 1 < cap) {
            memcpy(buf, p + plen + 1, len - plen - 1);
            buf[len - plen - 1] = '\0';
            return buf;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

static tg_filter_status_t deny(tg_filter_exchange_t *fx, auth_conf_t *c, int status, const char *msg)
{
    fx->reply_status = status;
    fx->reply_message = msg;
    tg_filter_count(fx, c->counters, AUTH_FAILED);
    if (status == 401)
        tg_headers_add(&fx->reply_headers, fx->arena, "www-authenticate", 16, c->challenge, strlen(c->challenge));
    else if (status == 503)
        tg_headers_add(&fx->reply_headers, fx->arena, "retry-after", 11, "1", 1);
    return TG_FILTER_REPLY;
}

static tg_filter_status_t check_allowed(auth_conf_t *c, tg_filter_exchange_t *fx, const char *name)
{
    for (size_t i = 0; i < c->n_allow; i++)
        if (strcmp(c->allow[i], name) == 0)
            return TG_FILTER_CONTINUE;
    return c->n_allow ? deny(fx, c, 403, "not allowed") : TG_FILTER_CONTINUE;
}

static tg_filter_status_t authenticate(auth_conf_t *c, tg_filter_exchange_t *fx, size_t index, int may_wait);

/* A paused request's state (fx->state[index], arena memory): waiting for
 * a key set fetch, or for an introspection answer. */
typedef struct auth_pending {
    auth_conf_t *c;
    tg_filter_exchange_t *fx;
    uint64_t gen;
    size_t index;
    void *call;                 /* introspection in flight */
    unsigned char key[32];      /* the token's digest */
    int answered, error;        /* the introspection's outcome ... */
    const char *reason, *identity;
} auth_pending_t;

/* A key set fetch this request waited for ended (on its worker): the
 * token is checked again, with no second wait. */
static void auth_resume(tg_filter_exchange_t *fx, uint64_t gen)
{
    auth_pending_t *p = tg_filter_paused_state(fx, gen);
    if (p == NULL)
        return; /* the exchange ended meanwhile */
    tg_filter_resume(fx, gen, authenticate(p->c, fx, fx->paused_at, 0));
}

/* The introspection endpoint answered (or the call failed). */
static void on_introspected(void *arg, const tg_filter_call_result_t *r)
{
    auth_pending_t *p = arg;
    tg_filter_exchange_t *fx = p->fx;
    p->call = NULL;
    if (tg_filter_paused_state(fx, p->gen) != p)
        return;
    const tg_claim_rules_t *rules;
    const tg_introspect_conf_t *ic = tg_jwt_introspection(p->c->jwt, &rules);
    auth_worker_t *ws = tg_filter_worker_state(fx, p->index);
    p->reason = tg_introspect_answer(ic, rules, ws->intro, p->key, r, (int64_t)time(NULL), fx->arena, &p->identity,
                                     &fx->claims, &p->error);
    p->answered = 1;
    tg_filter_resume(fx, p->gen, authenticate(p->c, fx, p->index, 0));
}

static void auth_on_cancel(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    (void)conf;
    auth_pending_t *p = fx->state[index];
    if (p != NULL && p->call != NULL) {
        auth_worker_t *ws = tg_filter_worker_state(fx, index);
        tg_introspect_cancel(ws->intro, fx, p->call);
        p->call = NULL;
    }
}

static auth_pending_t *pending(auth_conf_t *c, tg_filter_exchange_t *fx, size_t index)
{
    auth_pending_t *p = fx->state[index];
    if (p == NULL && (p = tg_arena_alloc(fx->arena, sizeof(*p))) != NULL) {
        *p = (auth_pending_t){ .c = c, .fx = fx, .gen = fx->gen, .index = index };
        fx->state[index] = p;
    }
    return p;
}

static int opaque(const char *tok)
{
    const char *d = strchr(tok, '.');
    return d == NULL || strchr(d + 1, '.') == NULL;
}

/* An opaque token: its cached verdict, the answer this request waited
 * for, or a call (PAUSE). Otherwise sets *name or *error (1: no usable
 * answer, on_error decides) and *reason. */
static tg_filter_status_t introspect(auth_conf_t *c, tg_filter_exchange_t *fx, size_t index, const char *tok,
                                     const char **name, const char **reason, int *error)
{
    const tg_claim_rules_t *rules;
    const tg_introspect_conf_t *ic = tg_jwt_introspection(c->jwt, &rules);
    auth_worker_t *ws = tg_filter_worker_state(fx, index);
    auth_pending_t *p = fx->state[index];
    *error = 0;
    if (p != NULL && p->answered) {
        *reason = p->reason;
        *error = p->error;
        *name = p->reason == NULL ? p->identity : NULL;
        return TG_FILTER_CONTINUE;
    }
    if (ws == NULL || ws->intro == NULL || (p = pending(c, fx, index)) == NULL) {
        *error = 1;
        *reason = "introspection is not running";
        return TG_FILTER_CONTINUE;
    }
    tg_introspect_key(tok, p->key);
    const char *id = NULL;
    if (tg_introspect_cached(ws->intro, p->key, fx->arena, &id, &fx->claims, reason)) {
        *name = *reason == NULL ? id : NULL;
        return TG_FILTER_CONTINUE;
    }
    if ((p->call = tg_introspect_start(ic, ws->intro, fx, tok, on_introspected, p)) == NULL) {
        *error = 1;
        *reason = "too many introspection calls in flight";
        return TG_FILTER_CONTINUE;
    }
    return TG_FILTER_PAUSE;
}

static tg_filter_status_t auth_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    return authenticate(p, fx, index, 1);
}

static tg_filter_status_t authenticate(auth_conf_t *c, tg_filter_exchange_t *fx, size_t index, int may_wait)
{
    tg_headers_t *h = &fx->req->headers;
    auth_worker_t *ws = tg_filter_worker_state(fx, index);
    tg_jwt_wait_t wait = { 0 };
    /* An identity established earlier in the chain (typically the global
     * auth filter) stands: this one checks its allow-list and forwards it
     * under its own header too. (A client-sent copy of any auth filter's
     * identity header never gets this far: see proxy/trust.h.) */
    if (fx->identity != NULL) {
        if (check_allowed(c, fx, fx->identity) == TG_FILTER_REPLY)
            return TG_FILTER_REPLY;
        if (tg_headers_get(h, c->identity_header) == NULL)
            tg_headers_add(h, fx->arena, c->identity_header, strlen(c->identity_header), fx->identity,
                           strlen(fx->identity));
        return TG_FILTER_CONTINUE;
    }
    tg_headers_remove(h, c->identity_header); /* never trust a client-sent identity */
    long match = -1;
    const char *name = NULL;
    int presented = 0;
    const char *jwt_error = NULL;
    const tg_header_t *az = tg_headers_get(h, "authorization");
    if ((c->n_bearer || c->jwt) && az && az->value_len > 7 && strncasecmp(az->value, "bearer ", 7) == 0) {
        const char *tok = az->value + 7;
        while (*tok == ' ')
            tok++;
        presented = 1;
        const tg_claim_rules_t *rules;
        if (c->n_bearer && (match = conf_match(c, ws ? ws->md : NULL, c->bearer, c->n_bearer, tok)) >= 0) {
            name = c->bearer[match].name;
        } else if (c->jwt && opaque(tok) && tg_jwt_introspection(c->jwt, &rules) != NULL) {
            int error;
            if (introspect(c, fx, index, tok, &name, &jwt_error, &error) == TG_FILTER_PAUSE)
                return TG_FILTER_PAUSE;
            if (error) {
                const tg_introspect_conf_t *ic = tg_jwt_introspection(c->jwt, &rules);
                if (ic->on_error)
                    return c->n_allow ? deny(fx, c, 403, "not allowed") : TG_FILTER_CONTINUE;
                return deny(fx, c, 503, "the introspection endpoint is unavailable");
            }
        } else if (c->jwt) {
            jwt_error = tg_jwt_check(c->jwt, ws ? ws->jwt : NULL, tok, (int64_t)time(NULL), fx->arena, &name,
                                     &fx->claims, &wait);
        }
        if (name != NULL && c->strip)
            tg_headers_remove(h, "authorization");
    }
    if (name == NULL && c->n_keys) {
        char buf[512];
        const tg_header_t *kh = c->key_header ? tg_headers_get(h, c->key_header) : NULL;
        const char *key = kh ? kh->value : c->key_query ? query_param(fx->req->target, c->key_query, buf, sizeof(buf)) : NULL;
        if (key != NULL) {
            presented = 1;
            if ((match = conf_match(c, ws ? ws->md : NULL, c->keys, c->n_keys, key)) >= 0) {
                name = c->keys[match].name;
                if (c->strip && kh)
                    tg_headers_remove(h, c->key_header);
                else if (c->strip && c->key_query)
                    strip_query_param(fx, c->key_query);
            }
        }
    }
    if (name == NULL && c->client_cert && fx->peer_identity != NULL)
        name = fx->peer_identity; /* a verified client certificate: its subject */
    if (name == NULL && wait.remote != NULL && may_wait && pending(c, fx, index) != NULL &&
        tg_jwks_remote_wait(wait.remote, wait.why, wait.seen_gen, fx, auth_resume, tg_clock_ms()))
        return TG_FILTER_PAUSE;
    if (name == NULL) {
        if (jwt_error != NULL && wait.remote != NULL && wait.why == TG_JWKS_NO_KEYS && wait.status == 503)
            return deny(fx, c, 503, "no keys from the identity provider yet");
        if (jwt_error != NULL) {
            char *msg = tg_arena_alloc(fx->arena, strlen(jwt_error) + 16);
            if (msg != NULL)
                sprintf(msg, "invalid token: %s", jwt_error);
            return deny(fx, c, 401, msg ? msg : "invalid credentials");
        }
        return deny(fx, c, 401, presented ? "invalid credentials" : "missing credentials");
    }
    if (check_allowed(c, fx, name) == TG_FILTER_REPLY)
        return TG_FILTER_REPLY;
    fx->identity = name;
    tg_headers_add(h, fx->arena, c->identity_header, strlen(c->identity_header), name, strlen(name));
    return TG_FILTER_CONTINUE;
}

const struct tg_jwt_conf *tg_auth_jwt(const void *auth_conf)
{
    return ((const auth_conf_t *)auth_conf)->jwt;
}

static const char *auth_trust_header(const void *p, size_t i)
{
    return i == 0 ? ((const auth_conf_t *)p)->identity_header : NULL;
}

const tg_filter_type_t tg_filter_auth = {
    .counters = auth_counters,
    .n_counters = sizeof(auth_counters) / sizeof(auth_counters[0]),
    .name = "auth",
    .doc = "authenticates requests (bearer tokens, API keys, JWTs, client certificates) and allows identities",
    .keys = &auth_keyset,
    .create = auth_create,
    .destroy = auth_destroy,
    .on_request = auth_on_request,
    .trust_header = auth_trust_header,
    .start = auth_start,
    .on_cancel = auth_on_cancel,
    .worker_init = auth_worker_init,
    .worker_free = auth_worker_free,
};
