/*
 * filters/jwt.c — see jwt.h.
 *
 * The token's header and claims are parsed by a small strict JSON parser
 * into the exchange arena (no allocation that outlives the request). The
 * algorithm comes from the token but must be one we accept and must match
 * the key chosen (by "kid" when the token has one), so an RSA public key
 * can never be used as an HMAC secret and "none" is never accepted.
 */
#include "filters/jwt.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ALG_HS256 = 1, ALG_RS256, ALG_ES256 };

typedef struct jwt_key {
    char *kid;                 /* NULL: matches any token without a kid, and any kid */
    int alg;
    EVP_PKEY *pkey;            /* RS256 / ES256 */
    unsigned char *secret;     /* HS256 */
    size_t secret_len;
} jwt_key_t;

struct tg_jwt_conf {
    jwt_key_t *keys;
    size_t n_keys;
    char *issuer;
    char **audiences;
    size_t n_aud;
    char **scopes;             /* all required */
    size_t n_scopes;
    int64_t leeway_s;
    uint64_t leeway_ms;        /* as configured */
    char *identity_claim;
    int require_exp;           /* a token without exp is refused (default) */
};

/* ---- base64url ---- */

long tg_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '-') v = 62;
        else if (c == '_') v = 63;
        else if (c == '=' && i + 2 >= len) break; /* tolerate padding at the end */
        else return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return bits >= 6 ? -1 : n;
}

/* ---- a small strict JSON parser ---- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype_t;

typedef struct jval {
    jtype_t t;
    double num;
    char *str;                 /* J_STR */
    struct jval *items;        /* J_ARR, J_OBJ (values) */
    char **keys;               /* J_OBJ */
    size_t n;
} jval_t;

typedef struct jp {
    const char *p, *end;
    tg_arena_t *a;
    int depth;
} jp_t;

static void ws(jp_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int parse_value(jp_t *j, jval_t *v);

static int parse_string(jp_t *j, char **out)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    const char *s = j->p;
    size_t cap = 0;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\')
            j->p++;
        j->p++;
        cap++;
    }
    if (j->p >= j->end)
        return -1;
    char *o = tg_arena_alloc(j->a, cap * 3 + 1), *w = o;
    if (o == NULL)
        return -1;
    for (const char *p = s; p < j->p; p++) {
        if (*p != '\\') {
            if ((unsigned char)*p < 0x20)
                return -1;
            *w++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int k = 1; k <= 4; k++) {
                if (p + k >= j->p || !isxdigit((unsigned char)p[k]))
                    return -1;
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)p[k]) ? p[k] - '0' : (tolower(p[k]) - 'a' + 10));
            }
            p += 4;
            if (cp == 0)
                return -1; /* a NUL would cut the string short: refused, not truncated */
            if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xc0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *w++ = (char)(0xe0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            return -1;
        }
    }
    *w = '\0';
    j->p++;
    *out = o;
    return 0;
}

static int parse_list(jp_t *j, jval_t *v, int obj)
{
    char close = obj ? '}' : ']';
    size_t cap = 8;
    v->items = tg_arena_alloc(j->a, cap * sizeof(jval_t));
    v->keys = obj ? tg_arena_alloc(j->a, cap * sizeof(char *)) : NULL;
    if (v->items == NULL || (obj && v->keys == NULL))
        return -1;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        if (v->n == cap) {
            jval_t *ni = tg_arena_alloc(j->a, cap * 2 * sizeof(jval_t));
            char **nk = obj ? tg_arena_alloc(j->a, cap * 2 * sizeof(char *)) : NULL;
            if (ni == NULL || (obj && nk == NULL))
                return -1;
            memcpy(ni, v->items, cap * sizeof(jval_t));
            if (obj)
                memcpy(nk, v->keys, cap * sizeof(char *));
            v->items = ni;
            v->keys = nk;
            cap *= 2;
        }
        ws(j);
        if (obj) {
            if (parse_string(j, &v->keys[v->n]) < 0)
                return -1;
            ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return -1;
        }
        if (parse_value(j, &v->items[v->n]) < 0)
            return -1;
        v->n++;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        return -1;
    }
}

static int parse_value(jp_t *j, jval_t *v)
{
    memset(v, 0, sizeof(*v));
    ws(j);
    if (j->p >= j->end || ++j->depth > 32)
        return -1;
    int rc = 0;
    char c = *j->p;
    if (c == '"') {
        v->t = J_STR;
        rc = parse_string(j, &v->str);
    } else if (c == '{' || c == '[') {
        v->t = c == '{' ? J_OBJ : J_ARR;
        rc = parse_list(j, v, c == '{');
    } else if (c == '-' || isdigit((unsigned char)c)) {
        char buf[64], *e;
        size_t n = 0;
        while (j->p < j->end && n < sizeof(buf) - 1 && strchr("+-.eE0123456789", *j->p))
            buf[n++] = *j->p++;
        buf[n] = '\0';
        v->t = J_NUM;
        v->num = strtod(buf, &e);
        rc = *e == '\0' ? 0 : -1;
    } else if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        v->t = J_BOOL, v->num = 1, j->p += 4;
    } else if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        v->t = J_BOOL, j->p += 5;
    } else if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        v->t = J_NULL, j->p += 4;
    } else {
        rc = -1;
    }
    j->depth--;
    return rc;
}

static int parse_json(const char *s, size_t len, tg_arena_t *a, jval_t *out)
{
    jp_t j = { s, s + len, a, 0 };
    if (parse_value(&j, out) < 0)
        return -1;
    ws(&j);
    return j.p == j.end ? 0 : -1;
}

static const jval_t *get(const jval_t *o, const char *key)
{
    if (o->t != J_OBJ)
        return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->items[i];
    return NULL;
}

static const char *get_str(const jval_t *o, const char *key)
{
    const jval_t *v = get(o, key);
    return v && v->t == J_STR ? v->str : NULL;
}

/* ---- keys ---- */

static int alg_of(const char *s)
{
    return !s ? 0 : !strcmp(s, "HS256") ? ALG_HS256 : !strcmp(s, "RS256") ? ALG_RS256 : !strcmp(s, "ES256") ? ALG_ES256 : 0;
}

static int pkey_alg(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "RSA"))
        return ALG_RS256;
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[64];
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &gl) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
            return ALG_ES256;
    }
    return 0;
}

static int add_key(tg_jwt_conf_t *c, jwt_key_t k)
{
    jwt_key_t *n = realloc(c->keys, (c->n_keys + 1) * sizeof(*n));
    if (n == NULL)
        return -1;
    c->keys = n;
    c->keys[c->n_keys++] = k;
    return 0;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *k = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return k;
}

static BIGNUM *b64_bn(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t len = strlen(s);
    unsigned char *buf = malloc(len * 3 / 4 + 3);
    long n = buf ? tg_b64url_decode(s, len, buf) : -1;
    BIGNUM *bn = n > 0 ? BN_bin2bn(buf, (int)n, NULL) : NULL;
    free(buf);
    return bn;
}

/* One JWK: RSA (n, e), EC P-256 (x, y) or oct (k). */
static int jwk_key(tg_node_t *node, tg_jwt_conf_t *c, const jval_t *jwk)
{
    const char *kty = get_str(jwk, "kty"), *kid = get_str(jwk, "kid");
    jwt_key_t k = { .kid = kid ? strdup(kid) : NULL };
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int rc = -1;
    if (bld == NULL)
        goto out;
    if (kty && strcmp(kty, "RSA") == 0) {
        BIGNUM *n = b64_bn(get_str(jwk, "n")), *e = b64_bn(get_str(jwk, "e"));
        if (n && e && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            k.pkey = pkey_from_params("RSA", bld);
        BN_free(n);
        BN_free(e);
        k.alg = ALG_RS256;
    } else if (kty && strcmp(kty, "EC") == 0) {
        const char *crv = get_str(jwk, "crv"), *x = get_str(jwk, "x"), *y = get_str(jwk, "y");
        unsigned char pub[1 + 64 + 6], xb[48], yb[48];
        long xl = x && strlen(x) <= 60 ? tg_b64url_decode(x, strlen(x), xb) : -1;
        long yl = y && strlen(y) <= 60 ? tg_b64url_decode(y, strlen(y), yb) : -1;
        if (crv && strcmp(crv, "P-256") == 0 && xl == 32 && yl == 32) {
            pub[0] = 4;
            memcpy(pub + 1, xb, 32);
            memcpy(pub + 33, yb, 32);
            if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
                OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65))
                k.pkey = pkey_from_params("EC", bld);
        }
        k.alg = ALG_ES256;
    } else if (kty && strcmp(kty, "oct") == 0 && get_str(jwk, "k")) {
        const char *s = get_str(jwk, "k");
        k.secret = malloc(strlen(s) * 3 / 4 + 3);
        long n = k.secret ? tg_b64url_decode(s, strlen(s), k.secret) : -1;
        if (n > 0) {
            k.secret_len = (size_t)n;
            k.alg = ALG_HS256;
            rc = add_key(c, k);
            goto out;
        }
    }
    if (k.pkey != NULL && pkey_alg(k.pkey) == k.alg) {
        rc = add_key(c, k);
    } else {
        tg_node_error(node, "jwt jwks: key %s is not a usable RSA, EC P-256 or oct key", kid ? kid : "(no kid)");
    }
out:
    OSSL_PARAM_BLD_free(bld);
    if (rc < 0) {
        EVP_PKEY_free(k.pkey);
        free(k.secret);
        free(k.kid);
    }
    return rc;
}

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
    char *buf = malloc(1 << 20);
    size_t len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    tg_arena_t a;
    tg_arena_init(&a);
    jval_t doc;
    const jval_t *keys;
    if (buf == NULL || parse_json(buf, len, &a, &doc) < 0 || (keys = get(&doc, "keys")) == NULL || keys->t != J_ARR) {
        tg_node_error(n, "jwks_file: %s is not a JWKS document ({\"keys\": [...]})", full);
    } else {
        rc = 0;
        for (size_t i = 0; i < keys->n; i++)
            if (jwk_key(n, c, &keys->items[i]) < 0)
                rc = -1;
    }
    tg_arena_free(&a);
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

static const tg_key_t jwt_keys[] = {
    { "secret", TG_KEY_STRING, "string, at least 16 bytes", "none", "an HS256 secret (`${VAR}` works; shown as "
                                                                   "`<redacted>`)" },
    { "keys", TG_KEY_LIST, "list of `{ file, kid }`", "none", "RS256 / ES256 public keys in PEM files",
      .sub = &jwt_key_item },
    { "jwks_file", TG_KEY_STRING, "path", "none", "a JWKS file: RSA, EC P-256 and oct keys, selected by `kid`" },
    { "issuer", TG_KEY_STRING, "string", "none", "`iss` must equal this", TG_FIELD(tg_jwt_conf_t, issuer, TG_FIELD_STR) },
    { "audiences", TG_KEY_STRINGS, "list", "none", "`aud` (a string or a list) must contain one of these" },
    { "scopes", TG_KEY_STRINGS, "list", "none",
      "all required, from `scope` (space-separated) or `scp` (a list)" },
    { "leeway", TG_KEY_DURATION, "duration", "`30s`", "clock skew allowed on `exp` and `nbf`",
      TG_FIELD(tg_jwt_conf_t, leeway_ms, TG_FIELD_U64), .def = 30000 },
    { "identity_claim", TG_KEY_STRING, "claim name", "`sub`", "the claim that is the identity",
      TG_FIELD(tg_jwt_conf_t, identity_claim, TG_FIELD_STR) },
    { "require_exp", TG_KEY_BOOL, "bool", "`true`", "a token without `exp` is refused",
      TG_FIELD(tg_jwt_conf_t, require_exp, TG_FIELD_INT), .def = 1 },
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
        jwt_key_t key = { .pkey = k, .alg = k ? pkey_alg(k) : 0 };
        if (k == NULL || key.alg == 0) {
            tg_node_error(&file, "jwt key file: %s: %s", full ? full : "?",
                          fp == NULL ? strerror(errno) : "not an RSA or EC P-256 public key in PEM");
            EVP_PKEY_free(k);
            rc = -1;
        } else {
            if (tg_node_present(&kid))
                key.kid = tg_node_str(&kid, "jwt key kid");
            if (add_key(c, key) < 0)
                rc = -1;
        }
        free(path);
        free(full);
    }
    return rc;
}

tg_jwt_conf_t *tg_jwt_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[9];
    tg_jwt_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "jwt", &tg_jwt_keys, c, v);
    tg_node_t secret = tg_node_get(v, &tg_jwt_keys, "secret"), keys = tg_node_get(v, &tg_jwt_keys, "keys");
    tg_node_t jwks = tg_node_get(v, &tg_jwt_keys, "jwks_file"), aud = tg_node_get(v, &tg_jwt_keys, "audiences");
    tg_node_t scopes = tg_node_get(v, &tg_jwt_keys, "scopes");
    c->leeway_s = (int64_t)(c->leeway_ms / 1000);
    if (tg_node_present(&secret)) {
        char *s = tg_node_secret(&secret, "jwt secret");
        if (s == NULL || strlen(s) < 16) {
            if (s)
                tg_node_error(&secret, "jwt secret: use at least 16 bytes for HS256");
            rc = -1;
            free(s);
        } else {
            jwt_key_t k = { .alg = ALG_HS256, .secret = (unsigned char *)s, .secret_len = strlen(s) };
            if (add_key(c, k) < 0)
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
    if (rc == 0 && c->n_keys == 0) {
        tg_node_error(node, "jwt: configure secret, keys or jwks_file");
        rc = -1;
    }
    if (rc < 0) {
        tg_jwt_destroy(c);
        return NULL;
    }
    return c;
}

void tg_jwt_destroy(tg_jwt_conf_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_keys; i++) {
        EVP_PKEY_free(c->keys[i].pkey);
        if (c->keys[i].secret)
            OPENSSL_cleanse(c->keys[i].secret, c->keys[i].secret_len);
        free(c->keys[i].secret);
        free(c->keys[i].kid);
    }
    free(c->keys);
    free(c->issuer);
    for (size_t i = 0; i < c->n_aud; i++)
        free(c->audiences[i]);
    free(c->audiences);
    for (size_t i = 0; i < c->n_scopes; i++)
        free(c->scopes[i]);
    free(c->scopes);
    free(c->identity_claim);
    free(c);
}

/* ---- verification ---- */

static int verify_sig(const jwt_key_t *k, const char *signed_part, size_t slen, const unsigned char *sig,
                      size_t siglen)
{
    if (k->alg == ALG_HS256) {
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
    if (k->alg == ALG_ES256) { /* JOSE: raw r || s; OpenSSL: DER */
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

static int has_scope(const jval_t *claims, const char *want)
{
    const jval_t *v = get(claims, "scope");
    if (v && v->t == J_STR) { /* space-separated (RFC 8693) */
        size_t wl = strlen(want);
        for (const char *p = v->str; *p;) {
            while (*p == ' ')
                p++;
            const char *e = p;
            while (*e && *e != ' ')
                e++;
            if ((size_t)(e - p) == wl && strncmp(p, want, wl) == 0)
                return 1;
            p = e;
        }
    }
    const jval_t *arr = get(claims, "scp");
    for (size_t i = 0; arr && arr->t == J_ARR && i < arr->n; i++)
        if (arr->items[i].t == J_STR && strcmp(arr->items[i].str, want) == 0)
            return 1;
    return 0;
}

/* The token's top-level scalar claims as text, for later filters. */
static void keep_claims(const jval_t *claims, tg_arena_t *a, tg_headers_t *out)
{
    for (size_t i = 0; i < claims->n; i++) {
        const jval_t *v = &claims->items[i];
        char num[32];
        const char *text = NULL;
        if (v->t == J_STR)
            text = v->str;
        else if (v->t == J_BOOL)
            text = v->num != 0 ? "true" : "false";
        else if (v->t == J_NUM) {
            if (v->num == (double)(int64_t)v->num && v->num > -9.0e15 && v->num < 9.0e15)
                snprintf(num, sizeof(num), "%lld", (long long)v->num);
            else
                snprintf(num, sizeof(num), "%.17g", v->num);
            text = tg_arena_strndup(a, num, strlen(num));
        }
        if (text != NULL)
            tg_headers_add(out, a, claims->keys[i], strlen(claims->keys[i]), text, strlen(text));
    }
}

const char *tg_jwt_verify(const tg_jwt_conf_t *c, const char *token, int64_t now, tg_arena_t *a,
                          const char **identity)
{
    return tg_jwt_verify_claims(c, token, now, a, identity, NULL);
}

const char *tg_jwt_verify_claims(const tg_jwt_conf_t *c, const char *token, int64_t now, tg_arena_t *a,
                                 const char **identity, tg_headers_t *claims_out)
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
    jval_t header, claims;
    if (hn < 0 || pn < 0 || sn < 0 || parse_json((char *)hb, (size_t)hn, a, &header) < 0 ||
        parse_json((char *)pb, (size_t)pn, a, &claims) < 0 || header.t != J_OBJ || claims.t != J_OBJ)
        return "malformed token";
    int alg = alg_of(get_str(&header, "alg"));
    if (alg == 0)
        return "unsupported algorithm";
    const char *kid = get_str(&header, "kid");
    int verified = 0, candidates = 0;
    for (size_t i = 0; i < c->n_keys && !verified; i++) {
        const jwt_key_t *k = &c->keys[i];
        if (k->alg != alg || (kid && k->kid && strcmp(kid, k->kid) != 0))
            continue;
        candidates++;
        verified = verify_sig(k, token, (size_t)(d2 - token), sb, (size_t)sn);
    }
    if (!candidates)
        return "no key for this token";
    if (!verified)
        return "bad signature";
    const jval_t *exp = get(&claims, "exp"), *nbf = get(&claims, "nbf");
    if (exp == NULL && c->require_exp)
        return "token has no exp";
    if (exp && (exp->t != J_NUM || (int64_t)exp->num + c->leeway_s < now))
        return "token expired";
    if (nbf && (nbf->t != J_NUM || (int64_t)nbf->num - c->leeway_s > now))
        return "token not yet valid";
    if (c->issuer) {
        const char *iss = get_str(&claims, "iss");
        if (iss == NULL || strcmp(iss, c->issuer) != 0)
            return "wrong issuer";
    }
    if (c->n_aud) {
        const jval_t *aud = get(&claims, "aud");
        int ok = 0;
        for (size_t i = 0; aud && i < c->n_aud && !ok; i++) {
            if (aud->t == J_STR)
                ok = strcmp(aud->str, c->audiences[i]) == 0;
            for (size_t j = 0; aud->t == J_ARR && j < aud->n && !ok; j++)
                ok = aud->items[j].t == J_STR && strcmp(aud->items[j].str, c->audiences[i]) == 0;
        }
        if (!ok)
            return "wrong audience";
    }
    for (size_t i = 0; i < c->n_scopes; i++)
        if (!has_scope(&claims, c->scopes[i]))
            return "missing scope";
    const char *id = get_str(&claims, c->identity_claim);
    if (id == NULL || *id == '\0')
        return "token has no identity claim";
    for (const char *p = id; *p; p++) /* the identity goes into headers and logs */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "identity claim holds control characters";
    *identity = id;
    if (claims_out != NULL)
        keep_claims(&claims, a, claims_out);
    return NULL;
}
