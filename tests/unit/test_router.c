/* Unit tests: route matching in file order on listener, host, path,
 * methods and headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/router.h"
#include "filters/filter.h"

static const char *YAML =
    "listeners:\n"
    "  - { name: public, listen: '127.0.0.1:1' }\n"
    "  - { name: internal, listen: '127.0.0.1:2' }\n"
    "routes:\n"
    "  - { name: internal-only, listeners: [internal], match: { path_prefix: /admin }, cluster: c }\n"
    "  - { name: exact, match: { path: /healthz }, cluster: c }\n"
    "  - { name: host, match: { host: api.example.com, path_prefix: /users }, cluster: c }\n"
    "  - { name: wild, match: { host: '*.example.com' }, cluster: c }\n"
    "  - { name: posts, match: { path_prefix: /posts, methods: [POST, PUT] }, cluster: c }\n"
    "  - { name: hdr, match: { path_prefix: /h, headers: [{ name: x-env, value: prod }, { name: x-flag }] }, cluster: c }\n"
    "  - { name: regex, match: { path_regex: '^/v[0-9]+/items$' }, cluster: c }\n"
    "  - { name: icase, match: { path_separated_prefix: /Secret, ignore_case: true }, cluster: c }\n"
    "  - { name: icase-re, match: { path_regex: '^/docs/[a-z]+$', ignore_case: true }, cluster: c }\n"
    "  - { name: sep, match: { path_separated_prefix: /api }, cluster: c }\n"
    "  - { name: grpc-method, match: { grpc_service: users.v1.Users, grpc_method: Get }, cluster: c }\n"
    "  - { name: grpc-service, match: { grpc_service: users.v1.Users }, cluster: c }\n"
    "clusters:\n"
    "  - { name: c, endpoints: ['127.0.0.1:9'] }\n";

static tg_config_t *cfg;
static int req_version = 20; /* the requests below are HTTP/2 unless a test says otherwise */

static int setup(void **state)
{
    tg_errors_t errs = { 0 };
    cfg = tg_config_load_string("r.yaml", YAML, strlen(YAML), tg_filters_registry(), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    tg_errors_free(&errs);
    return cfg ? 0 : -1;
}

static int teardown(void **state)
{
    tg_config_unref(cfg);
    return 0;
}

static const char *route_for(size_t listener, const char *method, const char *host, const char *target,
                             const char *h1, const char *v1, const char *h2, const char *v2)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_request_t req = { 0 };
    req.method = method;
    req.version = req_version;
    req.authority = host;
    req.target = target;
    const char *q = strchr(target, '?');
    req.path_len = q ? (size_t)(q - target) : strlen(target);
    if (h1)
        tg_headers_add(&req.headers, &a, h1, strlen(h1), v1, strlen(v1));
    if (h2)
        tg_headers_add(&req.headers, &a, h2, strlen(h2), v2, strlen(v2));
    const tg_route_conf_t *r = tg_router_match(cfg, listener, &req, &a);
    tg_arena_free(&a);
    return r ? r->name : "(none)";
}

#define R(l, m, h, t) route_for(l, m, h, t, NULL, NULL, NULL, NULL)

static void test_matching(void **state)
{
    assert_string_equal(R(1, "GET", "x", "/admin/users"), "internal-only");
    assert_string_equal(R(0, "GET", "x", "/admin/users"), "(none)");
    assert_string_equal(R(0, "GET", "x", "/healthz"), "exact");
    assert_string_equal(R(0, "GET", "x", "/healthz?full=1"), "exact");
    assert_string_equal(R(0, "GET", "x", "/healthz/more"), "(none)");
    assert_string_equal(R(0, "GET", "api.example.com", "/users/1"), "host");
    assert_string_equal(R(0, "GET", "API.Example.COM:8443", "/users/1"), "host");
    assert_string_equal(R(0, "GET", "api.example.com.", "/users"), "host");
    assert_string_equal(R(0, "GET", "api.example.com", "/other"), "wild");
    assert_string_equal(R(0, "GET", "a.b.example.com", "/"), "wild");
    assert_string_equal(R(0, "GET", "example.com", "/"), "(none)");
    assert_string_equal(R(0, "GET", "badexample.com", "/"), "(none)");
    assert_string_equal(R(0, "POST", "x", "/posts/1"), "posts");
    assert_string_equal(R(0, "GET", "x", "/posts/1"), "(none)");
    assert_string_equal(route_for(0, "GET", "x", "/h", "X-Env", "prod", "x-flag", ""), "hdr");
    assert_string_equal(route_for(0, "GET", "x", "/h", "X-Env", "dev", "x-flag", ""), "(none)");
    assert_string_equal(route_for(0, "GET", "x", "/h", "X-Env", "prod", NULL, NULL), "(none)");
    assert_string_equal(R(0, "GET", "x", "/v2/items"), "regex");
    assert_string_equal(R(0, "GET", "x", "/v2/items?x=1"), "regex");
    assert_string_equal(R(0, "GET", "x", "/v2/items/3"), "(none)");
    assert_string_equal(R(0, "GET", NULL, "/healthz"), "exact");
    /* ignore_case: every spelling of the path; not a prefix of a longer segment */
    assert_string_equal(R(0, "GET", "x", "/secret/a"), "icase");
    assert_string_equal(R(0, "GET", "x", "/SECRET"), "icase");
    assert_string_equal(R(0, "GET", "x", "/sEcReT;jsessionid=1/a"), "icase");
    assert_string_equal(R(0, "GET", "x", "/secrets"), "(none)");
    assert_string_equal(R(0, "GET", "x", "/DOCS/Intro"), "icase-re");
    assert_string_equal(R(0, "GET", "x", "/healthZ"), "(none)"); /* without ignore_case, case counts */
    /* a separated prefix ends at '/' or at ';' (path parameters) */
    assert_string_equal(R(0, "GET", "x", "/api;v=1/x"), "sep");
    assert_string_equal(R(0, "GET", "x", "/apix"), "(none)");
    assert_string_equal(R(0, "GET", NULL, "/users"), "(none)");
}

static void test_grpc_matching(void **state)
{
    const char *ct = "content-type";
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.Users/Get", ct, "application/grpc", NULL, NULL),
                        "grpc-method");
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.Users/List", ct, "application/grpc+proto", NULL, NULL),
                        "grpc-service");
    /* a prefix of the method or of the service is not a match */
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.Users/GetAll", ct, "application/grpc", NULL, NULL),
                        "grpc-service");
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.UsersX/Get", ct, "application/grpc", NULL, NULL),
                        "(none)");
    /* not gRPC (no gRPC content type): no gRPC route */
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.Users/Get", ct, "application/json", NULL, NULL),
                        "(none)");
    assert_string_equal(R(0, "POST", "x", "/users.v1.Users/Get"), "(none)");
    /* gRPC needs HTTP/2 (tg_grpc_classify): the content-type over HTTP/1.1 is no gRPC call */
    req_version = 11;
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.Users/Get", ct, "application/grpc", NULL, NULL),
                        "(none)");
    /* ... but gRPC-Web is, on any version */
    assert_string_equal(route_for(0, "POST", "x", "/users.v1.Users/Get", ct, "application/grpc-web+proto", NULL, NULL),
                        "grpc-method");
    req_version = 20;
}

static void test_host_matches(void **state)
{
    tg_route_match_t m = { .host = "[::1]" };
    assert_true(tg_router_host_matches(&m, "[::1]:8080"));
    assert_true(tg_router_host_matches(&m, "[::1]"));
    tg_route_match_t any = { 0 };
    assert_true(tg_router_host_matches(&any, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_host_matches),
        cmocka_unit_test(test_grpc_matching),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
