/* Unit tests: the filter chain (order, short-circuit, reverse response
 * order) and JWT verification with tokens built here (HS256 via HMAC). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "filters/filter.h"
#include "filters/auth.h"
#include "filters/jwt.h"
#include "filters/key.h"
#include "filters/verdicts.h"

/* ---- chain ---- */

static char trace[64];

static tg_filter_status_t rec_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    const char *name = conf;
    strncat(trace, name, sizeof(trace) - strlen(trace) - 1);
    if (strcmp(name, "X") == 0) {
        fx->reply_status = 403;
        return TG_FILTER_REPLY;
    }
    return TG_FILTER_CONTINUE;
}

static void rec_response(void *conf, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp)
{
    const char *name = conf;
    char lower[2] = { (char)(name[0] - 'A' + 'a'), 0 };
    strncat(trace, lower, sizeof(trace) - strlen(trace) - 1);
}

static tg_filter_status_t rec_req_body(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece,
                                       int fin)
{
    strncat(trace, (const char *)conf, sizeof(trace) - strlen(trace) - 1);
    return strcmp(conf, "B") == 0 && fin ? TG_FILTER_REPLY : TG_FILTER_CONTINUE;
}

static void rec_resp_body(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece, int fin)
{
    rec_response(conf, fx, index, NULL);
}

static const tg_filter_type_t recorder = { .name = "rec", .on_request = rec_request, .on_response = rec_response,
                                           .on_request_body = rec_req_body, .on_response_body = rec_resp_body };
static const tg_filter_type_t plain = { .name = "plain", .on_request = rec_request };

static void test_chain_order_and_short_circuit(void **state)
{
    tg_filter_instance_t g[2] = { { &recorder, "A" }, { &recorder, "B" } };
    tg_filter_instance_t r[2] = { { &recorder, "C" }, { &recorder, "D" } };
    tg_filter_list_t global = { g, 2 }, route = { r, 2 };
    tg_filter_exchange_t fx = { 0 };
    tg_response_t resp = { 0 };
    trace[0] = '\0';
    assert_int_equal(tg_filters_on_request(&global, &route, &fx, 0), TG_FILTER_CONTINUE);
    tg_filters_on_response(&global, &route, &fx, &resp);
    assert_string_equal(trace, "ABCDdcba"); /* requests in order, responses in reverse */

    tg_filter_instance_t r2[2] = { { &recorder, "X" }, { &recorder, "D" } };
    tg_filter_list_t route2 = { r2, 2 };
    trace[0] = '\0';
    assert_int_equal(tg_filters_on_request(&global, &route2, &fx, 0), TG_FILTER_REPLY);
    assert_string_equal(trace, "ABX"); /* D never runs */
    assert_int_equal(fx.reply_status, 403);
    assert_int_equal(fx.paused_at, 2);
    trace[0] = '\0';
    assert_int_equal(tg_filters_on_request(&global, &route, &fx, 2), TG_FILTER_CONTINUE); /* resume after B */
    assert_string_equal(trace, "CD");
}

static void test_body_hooks(void **state)
{
    tg_filter_instance_t g[1] = { { &recorder, "A" } }, r[2] = { { &recorder, "B" }, { &plain, "C" } };
    tg_filter_list_t global = { g, 1 }, route = { r, 2 }, none = { NULL, 0 }, plain_only = { &r[1], 1 };
    tg_filter_exchange_t fx = { 0 };
    assert_true(tg_filters_have_body_hooks(&global, &route));
    assert_false(tg_filters_have_body_hooks(&none, &plain_only));
    trace[0] = '\0';
    assert_int_equal(tg_filters_on_request_body(&global, &route, &fx, NULL, 0), TG_FILTER_CONTINUE);
    assert_int_equal(tg_filters_on_request_body(&global, &route, &fx, NULL, 1), TG_FILTER_REPLY);
    tg_filters_on_response_body(&global, &route, &fx, NULL, 0);
    assert_string_equal(trace, "ABABba"); /* request pieces in order, response pieces in reverse */
}

static void test_registry(void **state)
{
    assert_non_null(tg_filter_find("auth"));
    assert_non_null(tg_filter_find("rate_limit"));
    assert_non_null(tg_filter_find("access_log"));
    assert_non_null(tg_filter_find("retry"));
    assert_non_null(tg_filter_find("headers"));
    assert_non_null(tg_filter_find("cors"));
    assert_null(tg_filter_find("magic"));
}

/* ---- JWT ---- */

static const char *SECRET = "unit-test-secret-0123456789";

static void b64url(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < len)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < len)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
}

/* header.payload signed with HS256 and key (NULL: empty signature). */
static void make_token(char *out, const char *header, const char *payload, const char *key)
{
    char h[512], p[1024];
    b64url((const unsigned char *)header, strlen(header), h);
    b64url((const unsigned char *)payload, strlen(payload), p);
    int n = sprintf(out, "%s.%s.", h, p);
    if (key != NULL) {
        unsigned char mac[32];
        unsigned int ml = 0;
        HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)out, (size_t)n - 1, mac, &ml);
        b64url(mac, ml, out + n);
    }
}

/* Loads a config whose global chain is one auth filter with this jwt
 * block, through the real loader, and returns its JWT verifier. */
static tg_config_t *load_jwt(const char *jwt_block, const tg_jwt_conf_t **jc)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml), "listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                                 "filters: [{ auth: { jwt: %s } }]\n", jwt_block);
    tg_errors_t errs = { 0 };
    tg_config_t *cfg = tg_config_load_string("j.yaml", yaml, strlen(yaml), tg_filters_registry(), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    tg_errors_free(&errs);
    assert_non_null(cfg);
    *jc = tg_auth_jwt(cfg->filters.v[0].conf);
    assert_non_null(*jc);
    return cfg;
}

static void test_jwt_hs256(void **state)
{
    char block[256], tok[2048];
    snprintf(block, sizeof(block), "{ secret: \"%s\", issuer: idp, audiences: [api], leeway: 5s }", SECRET);
    const tg_jwt_conf_t *jc;
    tg_config_t *cfg = load_jwt(block, &jc);
    const char *id = NULL;
    tg_arena_t a;
    tg_arena_init(&a);
    int64_t now = 1700000000;
    make_token(tok, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
               "{\"sub\":\"alice\",\"iss\":\"idp\",\"aud\":\"api\",\"exp\":1700000100}", SECRET);
    assert_null(tg_jwt_verify(jc, tok, now, &a, &id));
    assert_string_equal(id, "alice");
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\",\"iss\":\"idp\",\"aud\":\"api\",\"exp\":1699999000}",
               SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "token expired");
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\",\"iss\":\"idp\",\"aud\":\"api\"}",
               "another-secret-0123456789");
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "bad signature");
    make_token(tok, "{\"alg\":\"none\"}", "{\"sub\":\"root\"}", NULL);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "unsupported algorithm");
    make_token(tok, "{\"alg\":\"RS256\"}", "{\"sub\":\"root\"}", SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "no key for this token");
    make_token(tok, "{\"alg\":\"HS256\"", "{\"sub\":\"x\"}", SECRET); /* broken JSON */
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "malformed token");
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"x\",\"iss\":\"other\",\"aud\":\"api\",\"exp\":1700000100}",
               SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "wrong issuer");
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"x\",\"iss\":\"idp\",\"aud\":[\"web\"],\"exp\":1700000100}",
               SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "wrong audience");
    /* a token without exp never expires: refused unless require_exp: false */
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\",\"iss\":\"idp\",\"aud\":\"api\"}", SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "token has no exp");
    /* nbf 3 s ahead is within the 5 s leeway; escapes decode */
    make_token(tok, "{\"alg\":\"HS256\"}",
               "{\"sub\":\"a\\u00e9\",\"iss\":\"idp\",\"aud\":[\"x\",\"api\"],\"nbf\":1700000003,"
               "\"exp\":1700000100}",
               SECRET);
    assert_null(tg_jwt_verify(jc, tok, now, &a, &id));
    assert_string_equal(id, "a\xc3\xa9");
    /* an identity with control characters would be written into headers
     * and logs: refused (a signed "bob\r\nContent-Length: 0..." smuggles) */
    make_token(tok, "{\"alg\":\"HS256\"}",
               "{\"sub\":\"bob\\r\\nX-Admin: 1\",\"iss\":\"idp\",\"aud\":\"api\",\"exp\":1700000100}", SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "identity claim holds control characters");
    make_token(tok, "{\"alg\":\"HS256\"}",
               "{\"sub\":\"bob\\u007f\",\"iss\":\"idp\",\"aud\":\"api\",\"exp\":1700000100}", SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "identity claim holds control characters");
    /* a NUL would truncate the claim ("admin\0x" read as "admin"): the token is refused */
    make_token(tok, "{\"alg\":\"HS256\"}",
               "{\"sub\":\"admin\\u0000x\",\"iss\":\"idp\",\"aud\":\"api\",\"exp\":1700000100}", SECRET);
    assert_string_equal(tg_jwt_verify(jc, tok, now, &a, &id), "malformed token");
    tg_config_unref(cfg);
    /* require_exp: false lets a token without exp through */
    snprintf(block, sizeof(block), "{ secret: \"%s\", require_exp: false }", SECRET);
    cfg = load_jwt(block, &jc);
    make_token(tok, "{\"alg\":\"HS256\"}", "{\"sub\":\"alice\"}", SECRET);
    assert_null(tg_jwt_verify(jc, tok, now, &a, &id));
    assert_string_equal(id, "alice");
    tg_arena_free(&a);
    tg_config_unref(cfg);
}

/* One rule for keys: '{', '}', '%' and control bytes escaped (no part ends
 * a Cluster hash tag), long keys hashed whole (never cut to a shared
 * prefix), and the result injective over what the parts can hold. */
static void test_key_build(void **state)
{
    (void)state;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_request_t req = { 0 };
    tg_filter_exchange_t fx = { .req = &req, .arena = &a, .client_addr = "10.0.0.1", .route = "r" };
    tg_filter_key_t k = { .n = 2, .parts = { { TG_KEY_HEADER, "x-user" }, { TG_KEY_CLIENT, NULL } } };
    char buf[TG_KEY_BUF], other[TG_KEY_BUF];
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-user", 6, "a}b{c%d", 7), 0);
    size_t n = tg_filter_key_build(&k, &fx, buf, sizeof(buf));
    assert_int_equal(n, strlen("a%7Db%7Bc%25d\x1f" "10.0.0.1"));
    assert_string_equal(buf, "a%7Db%7Bc%25d\x1f" "10.0.0.1");
    /* long keys sharing a 600-byte prefix: different, bounded, hashed */
    char v[700];
    memset(v, 'P', 600);
    strcpy(v + 600, "-alice");
    req.headers.n = 0;
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-user", 6, v, strlen(v)), 0);
    n = tg_filter_key_build(&k, &fx, buf, sizeof(buf));
    assert_int_equal(n, 66);
    assert_memory_equal(buf, "%H", 2);
    strcpy(v + 600, "-bob");
    req.headers.n = 0;
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-user", 6, v, strlen(v)), 0);
    assert_int_equal(tg_filter_key_build(&k, &fx, other, sizeof(other)), 66);
    assert_string_not_equal(buf, other);
    assert_int_equal(tg_filter_key_build(&k, &fx, buf, sizeof(buf)), 66);
    assert_string_equal(buf, other); /* the same key, the same hash */
    /* exactly at the bound: as it is; one escape more: hashed */
    memset(v, 'q', TG_KEY_MAX_LEN - 9);
    v[TG_KEY_MAX_LEN - 9] = '\0';
    req.headers.n = 0;
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-user", 6, v, strlen(v)), 0);
    assert_int_equal(tg_filter_key_build(&k, &fx, buf, sizeof(buf)), TG_KEY_MAX_LEN);
    v[0] = '}';
    req.headers.n = 0;
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-user", 6, v, strlen(v)), 0);
    assert_int_equal(tg_filter_key_build(&k, &fx, buf, sizeof(buf)), 66);
    /* a value holding the separator cannot forge a part boundary */
    tg_filter_key_t k2 = { .n = 2, .parts = { { TG_KEY_HEADER, "x-a" }, { TG_KEY_HEADER, "x-b" } } };
    req.headers.n = 0;
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-a", 3, "p\x1fq", 3), 0);
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-b", 3, "r", 1), 0);
    tg_filter_key_build(&k2, &fx, buf, sizeof(buf));
    req.headers.n = 0;
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-a", 3, "p", 1), 0);
    assert_int_equal(tg_headers_add(&req.headers, &a, "x-b", 3, "q\x1fr", 3), 0);
    tg_filter_key_build(&k2, &fx, other, sizeof(other));
    assert_string_not_equal(buf, other);
    tg_arena_free(&a);
}

/* The verdict memory: a hit only for the same key, tag and before its
 * end; claims come back as they went in; a key on a taken slot replaces
 * it; a cache of no entries keeps nothing. */
static void test_verdicts(void **state)
{
    (void)state;
    tg_verdicts_t *v = tg_verdicts_new(4);
    assert_non_null(v);
    tg_arena_t a;
    tg_arena_init(&a);
    unsigned char k1[32] = { 1 }, k2[32] = { 1 }, k5[32] = { 2 };
    k2[31] = 9; /* same slot as k1 (the first 8 bytes pick it), another key */
    tg_headers_t claims = { 0 }, got = { 0 };
    tg_headers_add(&claims, &a, "plan", 4, "pro", 3);
    tg_headers_add(&claims, &a, "exp", 3, "99", 2);
    tg_verdicts_put(v, k1, 7, 1000, NULL, "alice", &claims);
    tg_verdicts_put(v, k5, 7, 1000, "token not active", NULL, NULL);
    const char *id = NULL, *why = "x";
    assert_int_equal(tg_verdicts_get(v, k1, 7, 999, &a, &id, &got, &why), 1);
    assert_null(why);
    assert_string_equal(id, "alice");
    assert_int_equal(got.n, 2);
    assert_string_equal(tg_headers_get(&got, "plan")->value, "pro");
    assert_int_equal(tg_verdicts_get(v, k1, 8, 999, &a, &id, NULL, &why), 0);   /* another tag */
    assert_int_equal(tg_verdicts_get(v, k1, 7, 1000, &a, &id, NULL, &why), 0);  /* its end */
    assert_int_equal(tg_verdicts_get(v, k2, 7, 999, &a, &id, NULL, &why), 0);   /* another key, same slot */
    assert_int_equal(tg_verdicts_get(v, k5, 7, 999, &a, &id, NULL, &why), 1);
    assert_string_equal(why, "token not active");
    tg_verdicts_put(v, k2, 7, 1000, NULL, "bob", NULL);
    assert_int_equal(tg_verdicts_get(v, k1, 7, 999, &a, &id, NULL, &why), 0);   /* replaced */
    assert_int_equal(tg_verdicts_get(v, k2, 7, 999, &a, &id, NULL, &why), 1);
    assert_string_equal(id, "bob");
    tg_verdicts_free(v);
    tg_verdicts_t *none = tg_verdicts_new(0);
    tg_verdicts_put(none, k1, 7, 1000, NULL, "alice", NULL);
    assert_int_equal(tg_verdicts_get(none, k1, 7, 999, &a, &id, NULL, &why), 0);
    tg_verdicts_free(none);
    tg_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_order_and_short_circuit),
        cmocka_unit_test(test_body_hooks),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_jwt_hs256),
        cmocka_unit_test(test_key_build),
        cmocka_unit_test(test_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
