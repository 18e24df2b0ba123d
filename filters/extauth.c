/*
 * filters/extauth.c — ext_auth: asks an auth service (a cluster) about
 * each request, as nginx's auth_request, Traefik's forwardAuth and
 * Envoy's ext_authz (HTTP) do.
 *
 * One call per request: the chain runs once per exchange, before any
 * upstream attempt, so retries upstream never ask again. The call goes
 * through the cluster like any request (balancer, health, pools, TLS,
 * its circuit breakers' connection counts) on the exchange's worker
 * while the exchange is paused; a client that leaves cancels it. The
 * service sees the original method, URI, host, scheme and client
 * address as X-Forwarded-* headers and the allow-listed request headers;
 * a 2xx lets the request on with the allow-listed answer headers added
 * (client-sent copies of those are removed on arrival: trust headers),
 * any other status goes back to the client with the allow-listed answer
 * headers (WWW-Authenticate, Set-Cookie, Location for a login redirect).
 * No answer, a timeout or a 5xx is an error: on_error decides, counted.
 *
 * api: grpc speaks Envoy's envoy.service.auth.v3.Authorization/Check
 * instead (OPA-Envoy, Authorino): the same request attributes in a
 * CheckRequest, the same allow-lists applied to what the CheckResponse
 * asks for; a gRPC status other than OK, or a message that does not
 * parse, is an error like no answer.
 *
 * Decisions may be cached per worker when the service says so
 * (Cache-Control: max-age), keyed by SHA-256 of the route, the method
 * and the listed request headers' values: a small direct-mapped table
 * per worker (no lock, bounded memory; two keys on one slot: the newer
 * stays).
 */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/filter.h"
#include "proxy/base/clock.h"
#include "filters/authz_proto.h"
#include "proxy/base/pb.h"

extern const tg_filter_type_t tg_filter_ext_auth;

typedef struct extauth_conf {
    char *cluster;
    char *path;
    int api;                    /* API_HTTP, API_GRPC */
    int method;                 /* 0 GET, 1 POST */
    char **req_headers;         /* lower case */
    size_t n_req;
    char **up_headers;
    size_t n_up;
    char **client_headers;
    size_t n_client;
    char *identity_header;      /* its value in a 2xx answer is the identity (also sent upstream) */
    uint64_t timeout_ms;
    uint32_t body_bytes;        /* the start of the request body sent to the service (POST); 0: none */
    int on_error;               /* 0 deny, 1 allow */
    uint32_t cache_entries;     /* per worker; 0: no cache */
    uint64_t cache_max_ttl_ms;
    unsigned counters;
} extauth_conf_t;

enum { API_HTTP, API_GRPC };
#define CHECK_PATH "/envoy.service.auth.v3.Authorization/Check"

enum { EA_ALLOWED, EA_DENIED, EA_ERROR_ALLOWED, EA_ERROR_DENIED, EA_CACHE_HIT };
static const tg_filter_counter_t ea_counters[] = {
    [EA_ALLOWED] = { "tollgate_ext_auth_decisions_total",
                     "ext_auth decisions, by route: the service allowed or denied, or gave no usable answer and "
                     "on_error decided (error_allowed, error_denied).",
                     "decision", "allowed" },
    [EA_DENIED] = { "tollgate_ext_auth_decisions_total", NULL, "decision", "denied" },
    [EA_ERROR_ALLOWED] = { "tollgate_ext_auth_decisions_total", NULL, "decision", "error_allowed" },
    [EA_ERROR_DENIED] = { "tollgate_ext_auth_decisions_total", NULL, "decision", "error_denied" },
    [EA_CACHE_HIT] = { "tollgate_ext_auth_cache_hits_total",
                       "ext_auth decisions taken from the cache (no call to the service), by route." },
};

/* ---- the per-worker decision cache ---- */

typedef struct entry {
    unsigned char key[32];
    uint64_t expires_ms;        /* 0: empty */
    int status;
    char *headers;              /* "name\0value\0" pairs, n of them (malloc'ed) */
    size_t n_headers, len;
} entry_t;

typedef struct cache {
    size_t n;                   /* a power of two */
    entry_t e[];
} cache_t;

static void *ea_worker_init(void *p, unsigned worker)
{
    (void)worker;
    const extauth_conf_t *c = p;
    size_t n = 1;
    while (n < c->cache_entries)
        n <<= 1;
    cache_t *k = calloc(1, sizeof(*k) + (c->cache_entries ? n : 0) * sizeof(entry_t));
    if (k != NULL)
        k->n = c->cache_entries ? n : 0;
    return k;
}

static void ea_worker_free(void *p, void *state)
{
    (void)p;
    cache_t *k = state;
    for (size_t i = 0; i < k->n; i++)
        free(k->e[i].headers);
    free(k);
}

static entry_t *slot_of(cache_t *k, const unsigned char key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return &k->e[h & (k->n - 1)];
}

/* ---- configuration ---- */

static const tg_key_t cache_rows[] = {
    { "max_entries", TG_KEY_INT, "integer 1–1000000", "`10000`", "decisions kept per worker",
      TG_FIELD(extauth_conf_t, cache_entries, TG_FIELD_U32), .def = 10000, .min = 1, .max = 1000000 },
    { "max_ttl", TG_KEY_DURATION, "duration", "`5m`",
      "a decision is kept for its answer's `Cache-Control: max-age`, at most this long",
      TG_FIELD(extauth_conf_t, cache_max_ttl_ms, TG_FIELD_U64), .def = 300000, .min = 1000, .max = INT64_MAX },
};
static const tg_keyset_t cache_keys = TG_KEYSET("filter.ext_auth.cache", "ext_auth cache", cache_rows);

static const tg_key_t ea_rows[] = {
    { "cluster", TG_KEY_STRING, "cluster name (required)", "—", "the auth service", .flags = TG_KEY_REQUIRED,
      TG_FIELD(extauth_conf_t, cluster, TG_FIELD_STR) },
    { "api", TG_KEY_ENUM, "`http` or `grpc`", "`http`",
      "`http`: an HTTP request to `path` per request; `grpc`: Envoy's `envoy.service.auth.v3.Authorization/Check` "
      "(OPA-Envoy, Authorino), over a cluster that speaks HTTP/2",
      .choices = "http|grpc", TG_FIELD(extauth_conf_t, api, TG_FIELD_INT) },
    { "path", TG_KEY_STRING, "path", "`/`", "what is asked for on the auth service (the original path and query go "
                                            "in `X-Forwarded-Uri`)",
      TG_FIELD(extauth_conf_t, path, TG_FIELD_STR) },
    { "method", TG_KEY_ENUM, "`GET` or `POST`", "`GET`",
      "the call's method (POST sends the start of the request body, `body_bytes`, or an empty body)",
      .choices = "GET|POST", TG_FIELD(extauth_conf_t, method, TG_FIELD_INT) },
    { "body_bytes", TG_KEY_INT, "integer 0–1048576", "`0`",
      "with `method: POST`, the first this many bytes of the request body are the call's body (`X-Forwarded-Body: "
      "partial` when the body was longer, `whole` otherwise); the request waits for them (at most the route's "
      "`timeout`, then `408`)",
      TG_FIELD(extauth_conf_t, body_bytes, TG_FIELD_U32), .def = 0, .min = 0, .max = 1048576 },
    { "request_headers", TG_KEY_STRINGS, "list of header names", "`[authorization, cookie]`",
      "the client's headers the service sees (besides `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto`, `-For`)" },
    { "upstream_headers", TG_KEY_STRINGS, "list of header names", "none",
      "headers of a 2xx answer added to the request upstream (identity, tenant, scopes); a client-sent copy of "
      "each is removed on arrival" },
    { "client_headers", TG_KEY_STRINGS, "list of header names", "`[www-authenticate, set-cookie, location]`",
      "headers of a refusal passed on to the client (login redirects, challenges)" },
    { "identity_header", TG_KEY_STRING, "header name", "none",
      "a 2xx answer's header whose value is the client's identity (`rate_limit key: identity`, logs); also sent "
      "upstream" },
    { "timeout", TG_KEY_DURATION, "duration", "`1s`", "the whole call: connect, answer and body",
      TG_FIELD(extauth_conf_t, timeout_ms, TG_FIELD_U64), .def = 1000, .min = 1, .max = 60000 },
    { "on_error", TG_KEY_ENUM, "`deny` or `allow`", "`deny`",
      "no answer (connect failure, the cluster's breakers, timeout) or a 5xx: `deny` answers `503` with "
      "`Retry-After: 1`; `allow` lets the request on with no identity",
      .choices = "deny|allow", TG_FIELD(extauth_conf_t, on_error, TG_FIELD_INT) },
    { "cache", TG_KEY_MAP, "mapping", "none (no cache)",
      "keep decisions the service marks `Cache-Control: max-age=N`, per worker, keyed by the route, the method and "
      "the `request_headers`' values (and the body's start with `body_bytes`)",
      .sub = &cache_keys },
};
static const tg_keyset_t ea_keys = TG_KEYSET("filter.ext_auth", "ext_auth", ea_rows);

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void ea_destroy(void *p)
{
    extauth_conf_t *c = p;
    if (c == NULL)
        return;
    free(c->cluster);
    free(c->path);
    free_list(c->req_headers, c->n_req);
    free_list(c->up_headers, c->n_up);
    free_list(c->client_headers, c->n_client);
    free(c->identity_header);
    free(c);
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)(*s >= 'A' && *s <= 'Z' ? *s | 0x20 : *s);
}

/* A list of header names (lower-cased), or the default. */
static int header_list(tg_node_t *n, const char *what, const char *const *dflt, char ***out, size_t *count)
{
    if (!tg_node_present(n)) {
        size_t k = 0;
        while (dflt != NULL && dflt[k] != NULL)
            k++;
        if ((*out = calloc(k ? k : 1, sizeof(char *))) == NULL)
            return -1;
        for (*count = 0; *count < k; (*count)++)
            if (((*out)[*count] = strdup(dflt[*count])) == NULL)
                return -1;
        return 0;
    }
    if (tg_node_str_list(n, what, out, count) < 0)
        return -1;
    for (size_t i = 0; i < *count; i++) {
        if (!tg_node_header_name_ok((*out)[i])) {
            tg_node_error(n, "%s: '%s' is not a header name", what, (*out)[i]);
            return -1;
        }
        lower((*out)[i]);
    }
    return 0;
}

static void *ea_create(tg_node_t *node, const char *config_path)
{
    (void)config_path;
    static const char *const req_default[] = { "authorization", "cookie", NULL };
    static const char *const client_default[] = { "www-authenticate", "set-cookie", "location", NULL };
    tg_node_t v[12];
    extauth_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_ext_auth);
    int rc = tg_node_read_into(node, "ext_auth", &ea_keys, c, v);
    tg_node_t req = tg_node_get(v, &ea_keys, "request_headers"), up = tg_node_get(v, &ea_keys, "upstream_headers");
    tg_node_t cl = tg_node_get(v, &ea_keys, "client_headers"), cache = tg_node_get(v, &ea_keys, "cache");
    tg_node_t cluster = tg_node_get(v, &ea_keys, "cluster"), path = tg_node_get(v, &ea_keys, "path");
    tg_node_t idh = tg_node_get(v, &ea_keys, "identity_header");
    if (header_list(&req, "request_headers", req_default, &c->req_headers, &c->n_req) < 0 ||
        header_list(&up, "upstream_headers", NULL, &c->up_headers, &c->n_up) < 0 ||
        header_list(&cl, "client_headers", client_default, &c->client_headers, &c->n_client) < 0)
        rc = -1;
    if (tg_node_present(&idh)) {
        char *h = tg_node_str(&idh, "identity_header");
        if (h == NULL || !tg_node_header_name_ok(h)) {
            if (h != NULL)
                tg_node_error(&idh, "identity_header: '%s' is not a header name", h);
            rc = -1;
        } else {
            lower(h);
        }
        c->identity_header = h;
    }
    if (tg_node_present(&cache)) {
        tg_node_t cv[2];
        if (tg_node_read_into(&cache, "ext_auth cache", &cache_keys, c, cv) < 0)
            rc = -1;
    } else {
        c->cache_entries = 0;
    }
    if (c->path == NULL && (c->path = strdup("/")) == NULL)
        rc = -1;
    else if (c->path[0] != '/' || strpbrk(c->path, " \t\r\n#") != NULL) {
        tg_node_error(&path, "path: '%s' is not a path (it starts with '/')", c->path);
        rc = -1;
    }
    if (c->cluster != NULL)
        tg_node_cluster_ref(&cluster, c->cluster, c->api == API_GRPC ? "ext_auth api: grpc" : NULL);
    tg_node_t method = tg_node_get(v, &ea_keys, "method");
    if (c->api == API_GRPC) { /* what only the HTTP API has */
        if (tg_node_present(&cache)) {
            tg_node_error(&cache, "cache: a CheckResponse says nothing of how long it holds (api: http has a cache)");
            rc = -1;
        }
        if (tg_node_present(&path) || tg_node_present(&method)) {
            tg_node_t *at = tg_node_present(&path) ? &path : &method;
            tg_node_error(at, "%s: api: grpc always POSTs to " CHECK_PATH, tg_node_present(&path) ? "path" : "method");
            rc = -1;
        }
    } else if (c->body_bytes > 0 && c->method == 0) {
        tg_node_t bb = tg_node_get(v, &ea_keys, "body_bytes");
        tg_node_error(&bb, "body_bytes: the body goes with method: POST (a GET call carries none)");
        rc = -1;
    }
    if (rc < 0) {
        ea_destroy(c);
        return NULL;
    }
    return c;
}

static size_t ea_body_prefix(const void *p)
{
    return ((const extauth_conf_t *)p)->body_bytes;
}

/* upstream_headers, then identity_header: what only the service may say. */
static const char *ea_trust_header(const void *p, size_t i)
{
    const extauth_conf_t *c = p;
    return i < c->n_up ? c->up_headers[i] : i == c->n_up ? c->identity_header : NULL;
}

/* ---- a request ---- */

typedef struct pending {
    extauth_conf_t *c;
    tg_filter_exchange_t *fx;
    uint64_t gen;
    size_t index;
    void *call;
    unsigned char key[32];
} pending_t;

static int cache_key(const extauth_conf_t *c, tg_filter_exchange_t *fx, unsigned char key[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, fx->route, strlen(fx->route) + 1) == 1 &&
             EVP_DigestUpdate(md, fx->req->method, strlen(fx->req->method) + 1) == 1;
    for (size_t i = 0; ok && i < c->n_req; i++) {
        const tg_header_t *h = tg_headers_get(&fx->req->headers, c->req_headers[i]);
        ok = EVP_DigestUpdate(md, h ? "1" : "0", 1) == 1 && (h == NULL || EVP_DigestUpdate(md, h->value, h->value_len + 1) == 1);
    }
    if (ok && c->body_bytes > 0) /* the body is part of what was asked */
        ok = EVP_DigestUpdate(md, fx->body_whole ? "w" : "p", 1) == 1 &&
             EVP_DigestUpdate(md, fx->body_prefix, fx->body_prefix_len) == 1;
    ok = ok && EVP_DigestFinal_ex(md, key, &len) == 1 && len == 32;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

/* The identity the service named: no control bytes (it goes into
 * headers and logs). */
static int identity_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            return 0;
    return n > 0;
}

/* A decision (fresh or cached) applied to the exchange: headers upstream
 * and the identity on a 2xx, else the refusal with its headers. */
static tg_filter_status_t apply(const extauth_conf_t *c, tg_filter_exchange_t *fx, int status,
                                const char *const *hv, size_t nh)
{
    if (status >= 200 && status < 300) {
        for (size_t i = 0; i < nh; i++) {
            const char *n = hv[2 * i], *val = hv[2 * i + 1];
            if (c->identity_header != NULL && strcmp(n, c->identity_header) == 0 && identity_ok(val, strlen(val)))
                fx->identity = val;
            tg_headers_add(&fx->req->headers, fx->arena, n, strlen(n), val, strlen(val));
        }
        tg_filter_count(fx, c->counters, EA_ALLOWED);
        return TG_FILTER_CONTINUE;
    }
    for (size_t i = 0; i < nh; i++)
        tg_headers_add(&fx->reply_headers, fx->arena, hv[2 * i], strlen(hv[2 * i]), hv[2 * i + 1],
                       strlen(hv[2 * i + 1]));
    fx->reply_status = status >= 300 && status < 600 ? status : 403;
    fx->reply_message = "denied by the auth service";
    tg_filter_count(fx, c->counters, EA_DENIED);
    return TG_FILTER_REPLY;
}

/* The allow-list's own spelling of an answer's header name (lower case,
 * living as long as the config), or NULL if the list does not have it. */
static const char *wanted(const extauth_conf_t *c, int allowed, const char *name, size_t len)
{
    char *const *v = allowed ? c->up_headers : c->client_headers;
    size_t n = allowed ? c->n_up : c->n_client;
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i]) == len && strncasecmp(v[i], name, len) == 0)
            return v[i];
    if (allowed && c->identity_header != NULL && strlen(c->identity_header) == len &&
        strncasecmp(c->identity_header, name, len) == 0)
        return c->identity_header;
    return NULL;
}

/* Cache-Control: max-age=N of the answer, in ms (0: not to be kept). */
static uint64_t keep_ms(const extauth_conf_t *c, const tg_headers_t *h)
{
    const tg_header_t *cc = tg_headers_get(h, "cache-control");
    const char *p = cc ? strcasestr(cc->value, "max-age=") : NULL;
    if (p == NULL || strcasestr(cc->value, "no-store") || strcasestr(cc->value, "no-cache"))
        return 0;
    uint64_t ms = strtoull(p + 8, NULL, 10) * 1000;
    return ms > c->cache_max_ttl_ms ? c->cache_max_ttl_ms : ms;
}

static void remember(cache_t *k, const unsigned char key[32], int status, const char *const *hv, size_t nh,
                     uint64_t ttl_ms)
{
    size_t len = 0;
    for (size_t i = 0; i < 2 * nh; i++)
        len += strlen(hv[i]) + 1;
    char *blob = malloc(len ? len : 1), *w = blob;
    if (blob == NULL)
        return;
    for (size_t i = 0; i < 2 * nh; i++) {
        size_t l = strlen(hv[i]) + 1;
        memcpy(w, hv[i], l);
        w += l;
    }
    entry_t *e = slot_of(k, key);
    free(e->headers);
    memcpy(e->key, key, 32);
    e->expires_ms = tg_clock_ms() + ttl_ms;
    e->status = status;
    e->headers = blob;
    e->n_headers = nh;
    e->len = len;
}

/* No usable answer: on_error decides. */
static tg_filter_status_t failed(const extauth_conf_t *c, tg_filter_exchange_t *fx)
{
    if (c->on_error) {
        tg_filter_count(fx, c->counters, EA_ERROR_ALLOWED);
        return TG_FILTER_CONTINUE;
    }
    fx->reply_status = 503;
    fx->reply_message = "the auth service is unavailable";
    tg_headers_add(&fx->reply_headers, fx->arena, "retry-after", 11, "1", 1);
    tg_filter_count(fx, c->counters, EA_ERROR_DENIED);
    return TG_FILTER_REPLY;
}

static tg_filter_status_t http_answer(const extauth_conf_t *c, tg_filter_exchange_t *fx, const pending_t *p,
                                      const tg_filter_call_result_t *r)
{
    if (r->status == 0 || r->status >= 500)
        return failed(c, fx);
    int allowed = r->status >= 200 && r->status < 300;
    size_t nh = 0;
    const char **hv = tg_arena_alloc(fx->arena, (2 * r->headers->n + 1) * sizeof(char *));
    for (size_t i = 0; hv != NULL && i < r->headers->n; i++) {
        const tg_header_t *h = &r->headers->v[i];
        if ((hv[2 * nh] = wanted(c, allowed, h->name, h->name_len)) == NULL)
            continue;
        hv[2 * nh + 1] = tg_arena_strndup(fx->arena, h->value, h->value_len); /* the answer dies with the call */
        if (hv[2 * nh + 1] != NULL)
            nh++;
    }
    cache_t *k = tg_filter_worker_state(fx, p->index);
    uint64_t ttl = k != NULL && k->n ? keep_ms(c, r->headers) : 0;
    if (ttl > 0 && hv != NULL)
        remember(k, p->key, r->status, hv, nh, ttl);
    return apply(c, fx, r->status, hv, hv ? nh : 0);
}

/* ---- api: grpc (envoy.service.auth.v3, filters/authz_proto.h) ---- */

/* The answer's headers the allow-list wants, as pairs in out (room for n). */
static size_t keep_wanted(const extauth_conf_t *c, int allowed, const char *const *in, size_t n, const char **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if ((out[2 * k] = wanted(c, allowed, in[2 * i], strlen(in[2 * i]))) != NULL)
            out[2 * k++ + 1] = in[2 * i + 1];
    return k;
}

static tg_filter_status_t grpc_answer(const extauth_conf_t *c, tg_filter_exchange_t *fx,
                                      const tg_filter_call_result_t *r)
{
    const tg_header_t *gs = r->status == 200 ? tg_headers_get(r->trailers, "grpc-status") : NULL;
    if (gs == NULL && r->status == 200)
        gs = tg_headers_get(r->headers, "grpc-status"); /* trailers-only */
    const uint8_t *msg;
    size_t len;
    tg_authz_answer_t *ans = tg_arena_alloc(fx->arena, sizeof(*ans));
    if (gs == NULL || gs->value_len != 1 || gs->value[0] != '0' || ans == NULL ||
        tg_pb_grpc_unframe(r->body, r->body_len, &msg, &len) < 0 ||
        tg_authz_read_check_response(fx->arena, msg, len, ans) < 0)
        return failed(c, fx); /* no answer, or one that decides nothing */
    const char *hv[2 * TG_AUTHZ_MAX_HEADERS];
    if (ans->code != 0) { /* denied: the HTTP status it names, else 403 */
        int st = ans->http_status >= 300 ? ans->http_status : 403;
        return apply(c, fx, st, hv, keep_wanted(c, 0, ans->headers, ans->n_headers, hv));
    }
    for (size_t i = 0; i < ans->n_remove; i++)
        if (strcmp(ans->remove[i], "host") != 0) /* the route's host stays */
            tg_headers_remove(&fx->req->headers, ans->remove[i]);
    size_t nc = keep_wanted(c, 0, ans->client, ans->n_client, hv);
    for (size_t i = 0; i < nc; i++)
        tg_headers_add(&fx->response_headers, fx->arena, hv[2 * i], strlen(hv[2 * i]), hv[2 * i + 1],
                       strlen(hv[2 * i + 1]));
    return apply(c, fx, 200, hv, keep_wanted(c, 1, ans->headers, ans->n_headers, hv));
}

static void on_answer(void *arg, const tg_filter_call_result_t *r)
{
    pending_t *p = arg;
    p->call = NULL;
    tg_filter_exchange_t *fx = p->fx;
    if (tg_filter_paused_state(fx, p->gen) != p)
        return;
    const extauth_conf_t *c = p->c;
    tg_filter_resume(fx, p->gen, c->api == API_GRPC ? grpc_answer(c, fx, r) : http_answer(c, fx, p, r));
}

/* The HTTP API's call: the listed request headers and where the
 * request goes, as X-Forwarded-*. 0, or -1 (out of memory). */
static int http_call(const extauth_conf_t *c, tg_filter_exchange_t *fx, tg_filter_call_t *call)
{
    const tg_request_t *req = fx->req;
    size_t cap = 6 + req->headers.n, n = 0;
    const char **hv = tg_arena_alloc(fx->arena, 2 * cap * sizeof(char *));
    if (hv == NULL)
        return -1;
    for (size_t i = 0; i < req->headers.n; i++) {
        const tg_header_t *h = &req->headers.v[i];
        for (size_t j = 0; j < c->n_req; j++)
            if (strlen(c->req_headers[j]) == h->name_len && strncasecmp(c->req_headers[j], h->name, h->name_len) == 0) {
                hv[2 * n] = c->req_headers[j];
                hv[2 * n++ + 1] = h->value;
                break;
            }
    }
    const char *fwd[] = { "x-forwarded-method", req->method, "x-forwarded-uri", req->target,
                          "x-forwarded-host", req->authority ? req->authority : "",
                          "x-forwarded-proto", fx->scheme ? fx->scheme : "http", "x-forwarded-for", fx->client_addr };
    for (size_t i = 0; i < 5; i++) {
        hv[2 * n] = fwd[2 * i];
        hv[2 * n++ + 1] = fwd[2 * i + 1];
    }
    if (c->body_bytes > 0) {
        hv[2 * n] = "x-forwarded-body";
        hv[2 * n++ + 1] = fx->body_whole ? "whole" : "partial";
    }
    call->method = c->method ? "POST" : "GET";
    call->path = c->path;
    call->headers = hv;
    call->n_headers = n;
    call->body = !c->method ? NULL : c->body_bytes ? (const char *)fx->body_prefix : "";
    call->body_len = c->body_bytes ? fx->body_prefix_len : 0;
    return 0;
}

/* The gRPC API's call: a CheckRequest written into w (the caller frees
 * it once the call has copied it). 0, or -1. */
static int grpc_call(const extauth_conf_t *c, tg_filter_exchange_t *fx, tg_filter_call_t *call, tg_pb_writer_t *w)
{
    const char **hv = tg_arena_alloc(fx->arena, 4 * sizeof(char *));
    char *timeout = tg_arena_alloc(fx->arena, 24);
    tg_authz_request_t in = {
        .req = fx->req,
        .arena = fx->arena,
        .client_addr = fx->client_addr,
        .principal = fx->peer_identity,
        .scheme = fx->scheme,
        .headers = (const char *const *)c->req_headers,
        .n_headers = c->n_req,
        .with_body = c->body_bytes > 0,
        .body = fx->body_prefix,
        .body_len = fx->body_prefix_len,
        .body_whole = fx->body_whole,
    };
    if (hv == NULL || timeout == NULL || tg_authz_check_request(&in, w) < 0)
        return -1;
    snprintf(timeout, 24, "%llum", (unsigned long long)c->timeout_ms); /* the service may give up when we do */
    hv[0] = "content-type", hv[1] = "application/grpc", hv[2] = "grpc-timeout", hv[3] = timeout;
    call->method = "POST";
    call->path = CHECK_PATH;
    call->headers = hv;
    call->n_headers = 2;
    call->body = (const char *)w->p;
    call->body_len = w->len;
    call->grpc = 1;
    return 0;
}

static tg_filter_status_t ea_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    extauth_conf_t *c = conf;
    pending_t *p = tg_arena_alloc(fx->arena, sizeof(*p));
    if (p == NULL) {
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    *p = (pending_t){ .c = c, .fx = fx, .gen = fx->gen, .index = index };
    cache_t *k = tg_filter_worker_state(fx, index);
    int cached = k != NULL && k->n && cache_key(c, fx, p->key) == 0;
    if (cached) {
        entry_t *e = slot_of(k, p->key);
        if (e->expires_ms > tg_clock_ms() && memcmp(e->key, p->key, 32) == 0) {
            const char **hv = tg_arena_alloc(fx->arena, (2 * e->n_headers + 1) * sizeof(char *));
            const char *s = e->headers;
            for (size_t i = 0; hv != NULL && i < 2 * e->n_headers; i++) {
                hv[i] = s;
                s += strlen(s) + 1;
            }
            if (hv != NULL) {
                tg_filter_count(fx, c->counters, EA_CACHE_HIT);
                return apply(c, fx, e->status, hv, e->n_headers);
            }
        }
    }
    tg_filter_call_t call = {
        .cluster = c->cluster,
        .timeout_ms = c->timeout_ms,
        .max_body = 64 * 1024,
    };
    tg_pb_writer_t w = { 0 };
    if ((c->api == API_GRPC ? grpc_call(c, fx, &call, &w) : http_call(c, fx, &call)) < 0) {
        tg_pb_writer_free(&w);
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    fx->state[index] = p;
    p->call = fx->ops->call(fx, &call, on_answer, p); /* the call keeps its own copy of the body */
    tg_pb_writer_free(&w);
    if (p->call == NULL) {
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    return TG_FILTER_PAUSE;
}

/* The client left while the service was being asked: the call goes. */
static void ea_on_cancel(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    (void)conf;
    pending_t *p = fx->state[index];
    if (p != NULL && p->call != NULL) {
        fx->ops->call_cancel(fx, p->call);
        p->call = NULL;
    }
}

const tg_filter_type_t tg_filter_ext_auth = {
    .name = "ext_auth",
    .doc = "asks an auth service (a cluster) about each request: 2xx lets it on with the service's headers, any "
           "other answer goes back to the client",
    .keys = &ea_keys,
    .create = ea_create,
    .destroy = ea_destroy,
    .body_prefix = ea_body_prefix,
    .on_request = ea_on_request,
    .on_cancel = ea_on_cancel,
    .worker_init = ea_worker_init,
    .worker_free = ea_worker_free,
    .trust_header = ea_trust_header,
    .counters = ea_counters,
    .n_counters = sizeof(ea_counters) / sizeof(ea_counters[0]),
};
