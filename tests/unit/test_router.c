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

/* The compiled router against the linear scan: random route tables (hosts
 * exact and wildcard, every path kind, ignore_case, methods, headers,
 * listeners, gRPC services) and random requests, the same route (or none)
 * from both, every time. */
static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

#define PICK(arr) (arr)[rnd(&seed) % (sizeof(arr) / sizeof((arr)[0]))]

static void test_compiled_equals_linear(void **state)
{
    static const char *const hosts[] = { NULL, NULL, "a.example.com", "B.example.com", "'*.example.com'",
                                         "'*.a.example.com'", "other.test" };
    static const char *const paths[] = { "/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/api", "/api/v1", "/API", "/x;y" };
    static const char *const kinds[] = { "path", "path_prefix", "path_separated_prefix", "path_regex", NULL };
    static const char *const req_hosts[] = { NULL, "a.example.com", "A.EXAMPLE.COM:8443", "b.example.com.",
                                             "x.a.example.com", "example.com", "z.example.com", "other.test",
                                             "[::1]:80", "a.example.com:" };
    static const char *const req_paths[] = { "/", "/a", "/a/", "/a/b", "/a/bc", "/ab", "/a/b/c/d", "/api",
                                             "/api/v1/x", "/API/v1", "/apix", "/api;v=1", "/x;y", "/b", "",
                                             "/test.v1.Svc/Get", "/test.v1.Svc/Put" };
    unsigned seed = 20261204;
    size_t asked = 0, differed = 0, found = 0;
    for (int round = 0; round < 60; round++) {
        char yaml[32768];
        size_t at = (size_t)snprintf(yaml, sizeof(yaml), "listeners: [{ name: l0, listen: '127.0.0.1:1' }, "
                                                         "{ name: l1, listen: '127.0.0.1:2' }]\nroutes:\n");
        unsigned n = 1 + rnd(&seed) % 60;
        for (unsigned i = 0; i < n; i++) {
            at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "  - { name: r%u, cluster: c, match: {", i);
            const char *sep = " ";
            const char *h = PICK(hosts), *k = PICK(kinds);
            if (h != NULL)
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%shost: %s", sep, h), sep = ", ";
            if (rnd(&seed) % 8 == 0) {
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%sgrpc_service: test.v1.Svc%s", sep,
                                       rnd(&seed) % 2 ? ", grpc_method: Get" : "");
                sep = ", ";
            } else if (k != NULL && strcmp(k, "path_regex") == 0) {
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%spath_regex: '^%s'", sep, PICK(paths));
                sep = ", ";
            } else if (k != NULL) {
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%s%s: '%s'", sep, k, PICK(paths));
                sep = ", ";
            }
            if (k != NULL && rnd(&seed) % 5 == 0)
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%signore_case: true", sep), sep = ", ";
            if (rnd(&seed) % 6 == 0)
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%smethods: [POST]", sep), sep = ", ";
            if (rnd(&seed) % 6 == 0)
                at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "%sheaders: [{ name: x-a }]", sep), sep = ", ";
            at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, " }%s }\n",
                                   rnd(&seed) % 7 == 0 ? ", listeners: [l1]" : "");
        }
        at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, "clusters: [{ name: c, endpoints: ['127.0.0.1:9'] }]\n");
        assert_true(at < sizeof(yaml));
        tg_errors_t errs = { 0 };
        tg_config_t *c = tg_config_load_string("rand.yaml", yaml, at, tg_filters_registry(), &errs);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        tg_errors_free(&errs);
        assert_non_null(c);
        tg_router_t *rt = tg_router_build(c);
        assert_non_null(rt);
        tg_arena_t a;
        tg_arena_init(&a);
        for (int q = 0; q < 400; q++) {
            tg_request_t req = { 0 };
            req.method = rnd(&seed) % 3 ? "GET" : "POST";
            req.version = 20;
            req.authority = PICK(req_hosts);
            req.target = PICK(req_paths);
            req.path_len = strlen(req.target);
            if (rnd(&seed) % 2)
                tg_headers_add(&req.headers, &a, "x-a", 3, "1", 1);
            if (rnd(&seed) % 3 == 0)
                tg_headers_add(&req.headers, &a, "content-type", 12, "application/grpc", 16);
            size_t listener = rnd(&seed) % 2;
            const tg_route_conf_t *lin = tg_router_match(c, listener, &req, &a);
            const tg_route_conf_t *fast = tg_router_find(rt, listener, &req, &a);
            asked++;
            found += lin != NULL;
            if (lin != fast) {
                differed++;
                fprintf(stderr, "route table:\n%s\nrequest %s %s host %s listener %zu: linear %s, compiled %s\n", yaml,
                        req.method, req.target, req.authority ? req.authority : "(none)", listener,
                        lin ? lin->name : "(none)", fast ? fast->name : "(none)");
            }
            tg_arena_reset(&a);
        }
        tg_arena_free(&a);
        tg_router_free(rt);
        tg_config_unref(c);
        if (differed)
            break;
    }
    printf("compiled router: %zu requests, %zu routed, %zu differences\n", asked, found, differed);
    assert_int_equal(differed, 0);
    assert_true(found > asked / 4); /* the tables and requests overlap: the comparison means something */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compiled_equals_linear),
        cmocka_unit_test(test_matching),
        cmocka_unit_test(test_host_matches),
        cmocka_unit_test(test_grpc_matching),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
