/*
 * filters/introspect.c — see introspect.h.
 */
#include "filters/introspect.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/clock.h"
#include "proxy/base/json.h"
#include "filters/verdicts.h"

#define MAX_ANSWER (64 * 1024)

static const tg_key_t rows[] = {
    { "endpoint", TG_KEY_STRING, "URL (required)", "—", "the provider's introspection endpoint (RFC 7662)",
      .flags = TG_KEY_REQUIRED, TG_FIELD(tg_introspect_conf_t, endpoint, TG_FIELD_STR) },
    { "client_id", TG_KEY_STRING, "string (required)", "—", "tollgate's client id at the provider (HTTP Basic)",
      .flags = TG_KEY_REQUIRED, TG_FIELD(tg_introspect_conf_t, client_id, TG_FIELD_STR) },
    { "client_secret", TG_KEY_STRING, "string", "none", "its secret (`${VAR}` works; shown as `<redacted>`)" },
    { "client_secret_file", TG_KEY_STRING, "path", "none",
      "the secret, read from a file (trailing newline ignored); one of the two is required" },
    { "ca_file", TG_KEY_STRING, "path", "the system's CAs", "the CAs an `https://` endpoint is verified against",
      TG_FIELD(tg_introspect_conf_t, ca_file, TG_FIELD_STR) },
    { "cache_ttl", TG_KEY_DURATION, "duration", "`5m`",
      "an active token's verdict is kept this long at most (never past its `exp`)",
      TG_FIELD(tg_introspect_conf_t, cache_ttl_ms, TG_FIELD_U64), .def = 300000 },
    { "negative_ttl", TG_KEY_DURATION, "duration", "`10s`", "a refused token's verdict is kept this long",
      TG_FIELD(tg_introspect_conf_t, negative_ttl_ms, TG_FIELD_U64), .def = 10000 },
    { "cache_entries", TG_KEY_INT, "integer 0–1000000", "`10000`", "verdicts kept per worker (0: none)",
      TG_FIELD(tg_introspect_conf_t, cache_entries, TG_FIELD_U32), .def = 10000, .min = 0, .max = 1000000 },
    { "timeout", TG_KEY_DURATION, "duration", "`1s`", "one call: connect, answer and body",
      TG_FIELD(tg_introspect_conf_t, timeout_ms, TG_FIELD_U64), .def = 1000, .min = 1, .max = 60000 },
    { "max_concurrent", TG_KEY_INT, "integer 1–10000", "`64`",
      "calls in flight per worker; past it a token that needs a call is an error (`on_error`)",
      TG_FIELD(tg_introspect_conf_t, max_concurrent, TG_FIELD_U32), .def = 64, .min = 1, .max = 10000 },
    { "on_error", TG_KEY_ENUM, "`deny` or `allow`", "`deny`",
      "no usable answer (connect failure, timeout, not 200, not JSON) or too many calls: `deny` answers `503` "
      "with `Retry-After: 1`; `allow` lets the request on with no identity",
      .choices = "deny|allow", TG_FIELD(tg_introspect_conf_t, on_error, TG_FIELD_INT) },
};
const tg_keyset_t tg_introspect_keys = TG_KEYSET("filter.auth.jwt.introspection", "auth jwt introspection", rows);

void tg_introspect_destroy(tg_introspect_conf_t *c)
{
    if (c == NULL)
        return;
    free(c->endpoint);
    free(c->client_id);
    free(c->ca_file);
    free(c->cluster);
    free(c->authority);
    free(c->path);
    if (c->basic != NULL)
        OPENSSL_cleanse(c->basic, strlen(c->basic));
    free(c->basic);
    free(c);
}

/* application/x-www-form-urlencoded (RFC 6749 2.3.1 wants it for Basic's
 * id and secret too). */
static char *form_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *o = malloc(strlen(s) * 3 + 1), *w = o;
    if (o == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            *w++ = (char)*p;
        } else if (*p == ' ') {
            *w++ = '+';
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 15];
        }
    }
    *w = '\0';
    return o;
}

static char *read_secret(tg_node_t *n, const char *config_path)
{
    char *path = tg_node_str(n, "client_secret_file"), *full = NULL;
    if (path == NULL)
        return NULL;
    const char *slash = strrchr(config_path, '/');
    if (path[0] != '/' && slash != NULL) {
        if (asprintf(&full, "%.*s/%s", (int)(slash - config_path), config_path, path) < 0)
            full = NULL;
    } else {
        full = strdup(path);
    }
    free(path);
    FILE *f = full ? fopen(full, "r") : NULL;
    char buf[1024], *s = NULL;
    size_t got = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f == NULL) {
        tg_node_error(n, "client_secret_file: cannot open %s: %s", full ? full : "?", strerror(errno));
    } else {
        fclose(f);
        buf[got] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        s = strdup(buf);
        OPENSSL_cleanse(buf, sizeof(buf));
    }
    free(full);
    return s;
}

tg_introspect_conf_t *tg_introspect_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[TG_KEYSET_MAX];
    tg_introspect_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read(node, "introspection", &tg_introspect_keys, c, v, TG_KEYSET_MAX);
    tg_node_t sn = tg_node_get(v, &tg_introspect_keys, "client_secret");
    tg_node_t sf = tg_node_get(v, &tg_introspect_keys, "client_secret_file");
    tg_node_t ep = tg_node_get(v, &tg_introspect_keys, "endpoint");
    char *secret = NULL;
    if (tg_node_present(&sn) == tg_node_present(&sf)) {
        if (rc == 0)
            tg_node_error(node, "introspection: give client_secret or client_secret_file (one of them)");
        rc = -1;
    } else if (tg_node_present(&sn)) {
        secret = tg_node_secret(&sn, "client_secret");
    } else {
        secret = read_secret(&sf, config_path);
    }
    if (secret == NULL)
        rc = -1;
    if (rc == 0 && tg_node_origin(&ep, c->endpoint, c->ca_file, &c->cluster, &c->authority, &c->path) < 0)
        rc = -1;
    if (rc == 0) {
        char *id = form_encode(c->client_id), *sec = form_encode(secret), *pair = NULL;
        unsigned char *b64 = NULL;
        if (id && sec && asprintf(&pair, "%s:%s", id, sec) >= 0 &&
            (b64 = malloc(4 * ((strlen(pair) + 2) / 3) + 1)) != NULL) {
            EVP_EncodeBlock(b64, (const unsigned char *)pair, (int)strlen(pair));
            if (asprintf(&c->basic, "Basic %s", (char *)b64) < 0)
                c->basic = NULL;
        }
        if (c->basic == NULL)
            rc = -1;
        if (sec)
            OPENSSL_cleanse(sec, strlen(sec));
        if (pair)
            OPENSSL_cleanse(pair, strlen(pair));
        if (b64)
            OPENSSL_cleanse(b64, strlen((char *)b64));
        free(id);
        free(sec);
        free(pair);
        free(b64);
    }
    if (secret != NULL)
        OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
    if (rc < 0) {
        tg_introspect_destroy(c);
        return NULL;
    }
    return c;
}

/* ---- the worker's cache ---- */

struct tg_introspect_worker {
    unsigned inflight;
    tg_verdicts_t *verdicts;   /* in the monotonic clock, tag 0 */
};

tg_introspect_worker_t *tg_introspect_worker_new(const tg_introspect_conf_t *c)
{
    tg_introspect_worker_t *w = calloc(1, sizeof(*w));
    if (w != NULL && (w->verdicts = tg_verdicts_new(c->cache_entries)) == NULL) {
        free(w);
        w = NULL;
    }
    return w;
}

void tg_introspect_worker_free(tg_introspect_worker_t *w)
{
    if (w == NULL)
        return;
    tg_verdicts_free(w->verdicts);
    free(w);
}

void tg_introspect_key(const char *token, unsigned char key[32])
{
    SHA256((const unsigned char *)token, strlen(token), key);
}

int tg_introspect_cached(tg_introspect_worker_t *w, const unsigned char key[32], tg_arena_t *a, const char **identity,
                         tg_headers_t *claims, const char **reason)
{
    return tg_verdicts_get(w->verdicts, key, 0, tg_clock_ms(), a, identity, claims, reason);
}

/* ---- the call ---- */

void *tg_introspect_start(const tg_introspect_conf_t *c, tg_introspect_worker_t *w, tg_filter_exchange_t *fx,
                          const char *token, tg_filter_call_cb cb, void *arg)
{
    if (w->inflight >= c->max_concurrent)
        return NULL;
    char *enc = form_encode(token);
    if (enc == NULL)
        return NULL;
    size_t bl = strlen(enc) + 40;
    char *body = tg_arena_alloc(fx->arena, bl);
    if (body == NULL) {
        free(enc);
        return NULL;
    }
    snprintf(body, bl, "token=%s&token_type_hint=access_token", enc);
    free(enc);
    const char *headers[] = { "authorization", c->basic, "content-type", "application/x-www-form-urlencoded",
                              "accept", "application/json" };
    tg_filter_call_t call = {
        .cluster = c->cluster,
        .method = "POST",
        .path = c->path,
        .authority = c->authority,
        .headers = headers,
        .n_headers = 3,
        .body = body,
        .body_len = strlen(body),
        .timeout_ms = c->timeout_ms,
        .max_body = MAX_ANSWER,
    };
    void *h = fx->ops->call(fx, &call, cb, arg);
    if (h != NULL)
        w->inflight++;
    return h;
}

void tg_introspect_cancel(tg_introspect_worker_t *w, tg_filter_exchange_t *fx, void *call)
{
    fx->ops->call_cancel(fx, call);
    w->inflight--;
}

const char *tg_introspect_answer(const tg_introspect_conf_t *c, const tg_claim_rules_t *rules,
                                 tg_introspect_worker_t *w, const unsigned char key[32],
                                 const tg_filter_call_result_t *r, int64_t now, tg_arena_t *a, const char **identity,
                                 tg_headers_t *claims, int *error)
{
    w->inflight--;
    *error = 0;
    *identity = NULL;
    tg_json_t doc;
    if (r->status != 200 || tg_json_parse(r->body, r->body_len, a, &doc) < 0 || doc.t != TG_JSON_OBJ) {
        *error = 1;
        return r->status == 0 ? "no answer from the introspection endpoint" : "a bad answer from the introspection endpoint";
    }
    const tg_json_t *active = tg_json_get(&doc, "active");
    const char *reason = NULL;
    tg_claim_rules_t ru = *rules;
    ru.require_exp = 0;                        /* RFC 7662: exp is optional */
    if (tg_json_get(&doc, "iss") == NULL)
        ru.issuer = NULL;                      /* ... and so is iss */
    tg_headers_t kept = { 0 };
    if (active == NULL || active->t != TG_JSON_BOOL || active->num == 0)
        reason = "token not active";
    else
        reason = tg_claims_check(&ru, &doc, now, a, identity, &kept);
    uint64_t ttl = c->negative_ttl_ms;
    if (reason == NULL) {
        ttl = c->cache_ttl_ms;
        const tg_json_t *exp = tg_json_get(&doc, "exp");
        if (exp != NULL && exp->t == TG_JSON_NUM) {
            int64_t left_ms = ((int64_t)exp->num - now) * 1000;
            ttl = left_ms <= 0 ? 0 : (uint64_t)left_ms < ttl ? (uint64_t)left_ms : ttl;
        }
        for (size_t i = 0; claims != NULL && i < kept.n; i++)
            tg_headers_add(claims, a, kept.v[i].name, kept.v[i].name_len, kept.v[i].value, kept.v[i].value_len);
    }
    if (ttl > 0)
        tg_verdicts_put(w->verdicts, key, 0, tg_clock_ms() + ttl, reason, *identity, &kept);
    return reason;
}
