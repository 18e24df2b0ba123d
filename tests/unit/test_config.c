/* Unit tests: the YAML config loader — a full valid file, and each kind of
 * error reported with its line:column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/schema.h"
#include "filters/filter.h"

static tg_config_t *load(const char *yaml, tg_errors_t *errs)
{
    return tg_config_load_string("t.yaml", yaml, strlen(yaml), tg_filters_registry(), errs);
}

/* Loading must fail, and some error must contain `want`. */
static void expect_error(const char *yaml, const char *want)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = load(yaml, &errs);
    int found = 0;
    for (size_t i = 0; i < errs.n; i++)
        if (strstr(errs.msgs[i], want) != NULL)
            found = 1;
    if (!found || c != NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "  got: %s\n", errs.msgs[i]);
        fprintf(stderr, "  wanted: %s\n", want);
    }
    assert_null(c);
    assert_true(found);
    tg_errors_free(&errs);
}

#define BASE_LISTENERS "listeners:\n  - name: main\n    listen: 127.0.0.1:8080\n"
#define BASE_CLUSTERS "clusters:\n  - name: app\n    endpoints: [127.0.0.1:8001]\n"

static void test_full_config(void **state)
{
    setenv("TG_TEST_HOST", "api.example.com", 1);
    const char *yaml =
        "workers: 4\n"
        "drain_timeout: 5s\n"
        "limits: { max_header_bytes: 16KiB, max_body_bytes: 10MiB, header_timeout: 2s, idle_timeout: 30s }\n"
        "listeners:\n"
        "  - name: public\n"
        "    listen: 0.0.0.0:8443\n"
        "  - name: plain\n"
        "    listen: '[::1]:8080'\n"
        "routes:\n"
        "  - name: users\n"
        "    listeners: [plain]\n"
        "    match:\n"
        "      host: ${TG_TEST_HOST}\n"
        "      path_prefix: /users\n"
        "      methods: [GET, POST]\n"
        "      headers: [{ name: x-env, value: prod }, { name: x-debug }]\n"
        "    cluster: users-api\n"
        "    timeout: 250ms\n"
        "    idle_timeout: 1m\n"
        "    request_headers: { add: { x-a: '1' }, set: { x-b: '2' }, remove: [x-c] }\n"
        "    response_headers: { remove: [server] }\n"
        "  - name: wild\n"
        "    match: { host: '*.example.com', path_regex: '^/v[0-9]+/' }\n"
        "    cluster: users-api\n"
        "  - name: exact\n"
        "    match: { path: /healthz }\n"
        "    cluster: other\n"
        "clusters:\n"
        "  - name: users-api\n"
        "    protocol: http1\n"
        "    endpoints: [127.0.0.1:8001, 'localhost:8002']\n"
        "    lb: round_robin\n"
        "    connect_timeout: 2s\n"
        "    idle_timeout: 90s\n"
        "    pool_size: 8\n"
        "  - name: other\n"
        "    endpoints: ['[::1]:9000']\n"
        "    health_check: { path: /healthz, interval: 2s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 4 }\n"
        "    outlier_detection: { consecutive_failures: 7, base_ejection_time: 10s, max_ejection_time: 1m }\n"
        "    when_all_unhealthy: try_all\n"
        "admin: { listen: 127.0.0.1:9901 }\n";
    tg_errors_t errs = { 0 };
    tg_config_t *c = load(yaml, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    assert_non_null(c);
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->drain_timeout_ms, 5000);
    assert_int_equal(c->limits.max_header_bytes, 16384);
    assert_int_equal(c->limits.max_body_bytes, 10 * 1024 * 1024);
    assert_int_equal(c->limits.header_timeout_ms, 2000);
    assert_int_equal(c->limits.idle_timeout_ms, 30000);
    assert_int_equal(c->n_listeners, 2);
    assert_string_equal(c->listeners[1].host, "::1");
    assert_int_equal(c->listeners[1].port, 8080);
    assert_int_equal(c->n_routes, 3);
    const tg_route_conf_t *r = &c->routes[0];
    assert_string_equal(r->name, "users");
    assert_int_equal(r->n_listeners, 1);
    assert_int_equal(r->listeners[0], 1);
    assert_string_equal(r->match.host, "api.example.com");
    assert_int_equal(r->match.path_kind, TG_PATH_PREFIX);
    assert_int_equal(r->match.n_methods, 2);
    assert_int_equal(r->match.n_headers, 2);
    assert_null(r->match.headers[1].value);
    assert_int_equal(r->cluster, 0);
    assert_int_equal(r->timeout_ms, 250);
    assert_int_equal(r->idle_timeout_ms, 60000);
    assert_int_equal(r->request_headers.n_add, 1);
    assert_int_equal(r->request_headers.n_set, 1);
    assert_int_equal(r->request_headers.n_remove, 1);
    assert_true(c->routes[1].match.host_wildcard);
    assert_string_equal(c->routes[1].match.host, ".example.com");
    assert_int_equal(c->routes[1].match.path_kind, TG_PATH_REGEX);
    assert_int_equal(c->routes[1].timeout_ms, TG_DEFAULT_ROUTE_TIMEOUT_MS);
    assert_int_equal(c->routes[2].cluster, 1);
    assert_int_equal(c->clusters[0].n_endpoints, 2);
    assert_int_equal(c->clusters[0].pool_size, 8);
    assert_int_equal(c->clusters[0].connect_timeout_ms, 2000);
    assert_int_equal(c->clusters[1].pool_size, TG_DEFAULT_POOL_SIZE);
    assert_string_equal(c->clusters[1].endpoints[0].host, "::1");
    assert_true(c->clusters[1].health_check.enabled);
    assert_string_equal(c->clusters[1].health_check.path, "/healthz");
    assert_int_equal(c->clusters[1].health_check.interval_ms, 2000);
    assert_int_equal(c->clusters[1].health_check.timeout_ms, 500);
    assert_int_equal(c->clusters[1].health_check.healthy_threshold, 1);
    assert_int_equal(c->clusters[1].health_check.unhealthy_threshold, 4);
    assert_int_equal(c->clusters[1].outlier.consecutive_failures, 7);
    assert_int_equal(c->clusters[1].outlier.max_ejection_ms, 60000);
    assert_true(c->clusters[1].all_unhealthy_try_all);
    assert_false(c->clusters[0].health_check.enabled);
    assert_int_equal(c->clusters[0].outlier.consecutive_failures, 0);
    assert_string_equal(c->admin.listen, "127.0.0.1:9901");
    assert_int_equal(c->admin.port, 9901);
    tg_config_t *again = tg_config_ref(c);
    tg_config_unref(c);
    tg_config_unref(again);
}

static void test_defaults(void **state)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = load(BASE_LISTENERS, &errs);
    assert_non_null(c);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->limits.max_header_bytes, TG_DEFAULT_MAX_HEADER_BYTES);
    assert_int_equal(c->limits.max_body_bytes, 0);
    assert_int_equal(c->drain_timeout_ms, TG_DEFAULT_DRAIN_TIMEOUT_MS);
    tg_config_unref(c);
}

static void test_errors(void **state)
{
    expect_error("workers: [1\n", "t.yaml:2:1: YAML syntax error");
    expect_error("", "t.yaml:1:1: the file is empty");
    expect_error("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping");
    expect_error("workers: 2\n", "t.yaml:1:1: config: missing required key 'listeners'");
    expect_error(BASE_LISTENERS "bogus: 1\n", "t.yaml:4:1: unknown key 'bogus' in the top level");
    /* a misspelt key names the one it probably is; a far-off one does not guess */
    expect_error(BASE_LISTENERS "routes: [{ name: r, cluster: c, match: { path_prefx: /a } }]\n"
                                "clusters: [{ name: c, endpoints: ['127.0.0.1:1'] }]\n",
                 "unknown key 'path_prefx' in match; did you mean 'path_prefix'?");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, windwo: 1s } }]\n",
                 "unknown key 'windwo' in rate_limit; did you mean 'window'?");
    expect_error(BASE_LISTENERS "workres: 2\n", "unknown key 'workres' in the top level; did you mean 'workers'?");
    {
        tg_errors_t errs = { 0 };
        assert_null(load(BASE_LISTENERS "bogus: 1\n", &errs));
        assert_int_equal(errs.n, 1);
        assert_null(strstr(errs.msgs[0], "did you mean"));
        tg_errors_free(&errs);
    }
    expect_error("workers: 0\n" BASE_LISTENERS, "t.yaml:1:10: workers: '0' is not an integer in [1, 256]");
    expect_error("workers: many\n" BASE_LISTENERS, "t.yaml:1:10: workers: 'many' is not an integer");
    expect_error("drain_timeout: 5\n" BASE_LISTENERS, "t.yaml:1:16: drain_timeout: '5' is not a duration");
    expect_error("limits: { max_body_bytes: 10 MiB }\n" BASE_LISTENERS, "t.yaml:1:27: max_body_bytes: '10 MiB' is not a size");
    expect_error("limits: { max_header_bytes: 100 }\n" BASE_LISTENERS, "t.yaml:1:29: max_header_bytes: must be between");
    expect_error("listeners:\n  - name: a\n    listen: nowhere\n", "t.yaml:3:13: listen: 'nowhere' is not HOST:PORT");
    expect_error("listeners:\n  - name: a\n    listen: 1.2.3.4:1\n    port: 3\n", "t.yaml:4:5: unknown key 'port' in listener");
    expect_error("listeners:\n  - listen: 1.2.3.4:1\n", "t.yaml:2:5: listener: missing required key 'name'");
    expect_error("listeners:\n  - { name: a, listen: 'h:1' }\n  - { name: a, listen: 'h:2' }\n",
                 "t.yaml:3:5: duplicate listener name 'a'");
    expect_error("listeners: []\n", "t.yaml:1:12: listeners: at least one listener is required");
    expect_error("admin: { token: short }\n" BASE_LISTENERS, "t.yaml:1:17: admin token: use at least 16 characters");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, on_full: drop } }]\n",
                 "t.yaml:4:58: on_full: 'drop' is not one of deny, allow");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, max_keys: 0 } }]\n",
                 "t.yaml:4:59: max_keys: '0' is not an integer in [1, 100000000]");
    expect_error("max_connections: lots\n" BASE_LISTENERS, "t.yaml:1:18: max_connections: 'lots' is not an integer");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', max_connections: -1 }\n",
                 "t.yaml:2:48: max_connections: '-1' is not an integer");
    expect_error("admin: { token: 0123456789abcdef0, token_file: /x }\n" BASE_LISTENERS,
                 "t.yaml:1:48: admin: give token or token_file, not both");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', http1: { enabled: false }, http2: { enabled: false } }\n",
                 "t.yaml:2:38: http1: a listener must serve HTTP/1.1 or HTTP/2");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', http1: { enabled: maybe } }\n",
                 "t.yaml:2:49: enabled: 'maybe' is not true or false");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', http1: { enabled: false }, tls: { certificates: "
                 "[{ cert: /c, key: /k }], alpn: [http/1.1] } }\n",
                 "t.yaml:2:38: http1: an HTTP/2-only TLS listener needs h2 in tls.alpn");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', proxy_protocol: true }\n",
                 "t.yaml:2:47: proxy_protocol: needs trusted_proxies");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', proxy_protocol: yes-please }\n",
                 "proxy_protocol: 'yes-please' is not true or false");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, mode: dry } }]\n",
                 "mode: 'dry' is not one of enforce, shadow");
    /* a misspelt value names the choice it probably is; a far-off one does not guess */
    {
        tg_errors_t errs = { 0 };
        assert_null(load(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, mode: dry } }]\n", &errs));
        assert_int_equal(errs.n, 1);
        assert_null(strstr(errs.msgs[0], "did you mean"));
        tg_errors_free(&errs);
    }
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, mode: enforc } }]\n",
                 "mode: 'enforc' is not one of enforce, shadow; did you mean 'enforce'?");
    expect_error("log_format: jsno\n" BASE_LISTENERS,
                 "t.yaml:1:13: log_format: 'jsno' is not one of text, json; did you mean 'json'?");
    expect_error(BASE_LISTENERS "clusters: [{ name: c, endpoints: ['127.0.0.1:1'], protocol: h2x }]\n",
                 "protocol: 'h2x' is not one of http1, h2c, h2; did you mean 'h2c'?");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, on_limit: queue } }]\n",
                 "on_limit: 'queue' is not one of reject, tag");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, overrides: [{ name: pro, limit: 2, "
                                "window: 1s }] } }]\n",
                 "rate_limit override: give 'name' and whom it is for: 'identities', 'claim' or both");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, overrides: [{ name: pro, "
                                "claim: [plan, pro], limit: 2, window: 1s }] } }]\n",
                 "claim must be a mapping of claim names to values, e.g. { plan: pro }");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, overrides: [{ name: pro, "
                                "claim: {}, limit: 2, window: 1s }] } }]\n",
                 "claim: name at least one claim");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, cost: 11 } }]\n", "cost");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, cost: 'header:bad name' } }]\n",
                 "cost: 'header:bad name' is not header:NAME with a valid header name");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, cost: 'header:x-cost', "
                                "min_cost: 5, max_cost: 2 } }]\n",
                 "min_cost: more than max_cost");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, min_cost: 2 } }]\n",
                 "min_cost and max_cost bound cost: header:NAME");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, reconcile: x-used } }]\n",
                 "reconcile: 'x-used' is not header:NAME with a valid header name");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, route_costs: [a, 2] } }]\n",
                 "route_costs must be a mapping of route names to costs");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 10, window: 1s, route_costs: { a: 20 } } }]\n",
                 "route cost");
    expect_error(BASE_LISTENERS "filters: [{ concurrency_limit: { key: identity } }]\n",
                 "concurrency_limit: give 'limit' (requests in flight per key)");
    expect_error(BASE_LISTENERS "filters: [{ concurrency_limit: { limit: 2, queue_timeout: 1s } }]\n",
                 "queue_timeout: only with a queue (queue: N)");
    expect_error(BASE_LISTENERS "filters: [{ concurrency_limit: { limit: 2, key: cookie } }]\n",
                 "concurrency_limit key: 'cookie' is not one of client_address, identity, route, header:NAME");
    expect_error(BASE_LISTENERS "filters: [{ concurrency_limit: { limit: 0 } }]\n", "limit");
    expect_error(BASE_LISTENERS "filters: [{ rate_limit: { limit: 1, window: 1s, overrides: [{ name: pro, "
                                "identities: [a] }] } }]\n",
                 "rate_limit override: give 'limit' and 'window', or 'limits'");
    expect_error("admin: { token_file: /nonexistent/tollgate-token }\n" BASE_LISTENERS,
                 "t.yaml:1:22: admin token_file: cannot read '/nonexistent/tollgate-token'");
    expect_error("trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]\n" BASE_LISTENERS,
                 "t.yaml:1:31: trusted_proxies: '10.0.0.1/8' is not an address or CIDR block");
    expect_error("trusted_proxies: 10.0.0.0/8\n" BASE_LISTENERS, "t.yaml:1:18: trusted_proxies");
    expect_error("listeners:\n  - { name: a, listen: 'h:1', trusted_proxies: [lb.example] }\n",
                 "t.yaml:2:49: trusted_proxies: 'lb.example' is not an address or CIDR block");
    expect_error(BASE_LISTENERS "filters: [{ auth: { jwt: { secret: 0123456789abcdef0123, require_exp: maybe } } }]\n",
                 "t.yaml:4:71: require_exp: 'maybe' is not true or false");
    expect_error("listeners: { name: a }\n", "t.yaml:1:12: listener must be a list, not a mapping");
    expect_error(BASE_LISTENERS "routes:\n  - name: r\n    cluster: missing\n",
                 "t.yaml:6:14: route 'r': unknown cluster 'missing'");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    listeners: [nope]\n",
                 "t.yaml:10:17: route 'r': unknown listener 'nope'");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n", "t.yaml:8:5: route: missing required key 'cluster'");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    match: { path: /a, path_prefix: /b }\n",
                 "t.yaml:10:37: match: only one of path, path_prefix, path_separated_prefix, path_regex");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    match: { path_separated_prefix: api }\n",
                 "t.yaml:10:37: path_separated_prefix: 'api' must start with '/'");
    expect_error("path_normalization: { escaped_slashes: allow }\n" BASE_LISTENERS,
                 "t.yaml:1:40: escaped_slashes: 'allow' is not one of reject, keep, decode");
    expect_error("path_normalization: { forward: raw, merge_slashes: 2 }\n" BASE_LISTENERS,
                 "t.yaml:1:32: forward: 'raw' is not one of normalized, original");
    expect_error("path_normalization: { semicolons: drop }\n" BASE_LISTENERS,
                 "t.yaml:1:35: semicolons: 'drop' is not one of keep, strip, reject");
    expect_error("path_normalization: { backslashes: slash }\n" BASE_LISTENERS,
                 "t.yaml:1:36: backslashes: 'slash' is not one of reject, keep, decode");
    expect_error("forwarded_header: x-real-ip\n" BASE_LISTENERS,
                 "t.yaml:1:19: forwarded_header: 'x-real-ip' is not one of x-forwarded-for, forwarded, both");
    expect_error("headers_with_underscores: ignore\n" BASE_LISTENERS,
                 "t.yaml:1:27: headers_with_underscores: 'ignore' is not one of drop, allow, reject");
    expect_error("set_x_real_ip: maybe\n" BASE_LISTENERS, "t.yaml:1:16: set_x_real_ip: 'maybe' is not true or false");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    match: { path: /a, ignore_case: 1 }\n",
                 "t.yaml:10:37: ignore_case: '1' is not true or false");
    expect_error("path_normalization: { forward: raw, merge_slashes: 2 }\n" BASE_LISTENERS,
                 "t.yaml:1:52: merge_slashes: '2' is not true or false");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    match: { path_regex: '([a-z' }\n",
                 "t.yaml:10:26: path_regex: '([a-z'");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    match: { path_prefix: users }\n",
                 "t.yaml:10:27: path_prefix: 'users' must start with '/'");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    match: { host: 'a*b' }\n",
                 "t.yaml:10:20: host: 'a*b' must be a name or '*.suffix'");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    timeout: soon\n",
                 "t.yaml:10:14: timeout: 'soon' is not a duration");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    request_headers: { set: { 'bad name': x } }\n",
                 "t.yaml:10:31: request_headers: 'bad name' is not a valid header name");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    request_headers: { append: {} }\n",
                 "t.yaml:10:24: unknown key 'append' in request_headers");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: []\n",
                 "t.yaml:6:16: endpoints: a cluster needs at least one endpoint");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: [localhost]\n",
                 "t.yaml:6:17: endpoint: 'localhost' is not HOST:PORT");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    protocol: spdy\n",
                 "t.yaml:7:15: protocol: 'spdy' is not one of http1, h2c, h2");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    lb: fastest\n",
                 "t.yaml:7:9: lb: 'fastest' is not one of round_robin, least_request, random");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    pool_size: -1\n",
                 "t.yaml:7:16: pool_size: '-1' is not an integer");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n  - name: c\n    endpoints: ['h:2']\n",
                 "t.yaml:7:5: duplicate cluster name 'c'");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    endpoints: ['h:2']\n",
                 "t.yaml:7:5: duplicate key 'endpoints' in cluster");
    expect_error("admin: { listen: nowhere }\n" BASE_LISTENERS, "t.yaml:1:18: admin listen: 'nowhere' is not HOST:PORT");
    expect_error("admin: { port: 1 }\n" BASE_LISTENERS, "t.yaml:1:10: unknown key 'port' in admin");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { interval: 1s }\n",
                 "t.yaml:7:19: health_check: missing required key 'path'");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { path: /h, interval: 5ms }\n",
                 "t.yaml:7:41: interval: must be at least 10ms");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { path: /h, type: tcp }\n",
                 "t.yaml:7:37: type: 'tcp' is not one of http, grpc");
    expect_error("limits: { max_header_bytes: 2MiB }\n" BASE_LISTENERS,
                 "t.yaml:1:29: max_header_bytes: must be between 1KiB and 1MiB");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { path: /h, type: grpc }\n",
                 "health_check path: a grpc check asks grpc.health.v1.Health/Check");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { type: grpc }\n",
                 "t.yaml:7:19: health_check: type grpc needs an HTTP/2 cluster");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    protocol: h2\n    endpoints: ['h:1']\n",
                 "t.yaml:6:15: protocol: 'h2' is HTTP/2 over TLS and needs a tls block");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    protocol: h2c\n    endpoints: ['h:1']\n    tls: {}\n",
                 "t.yaml:8:10: tls: protocol 'h2c' is cleartext HTTP/2");
    expect_error(BASE_LISTENERS "routes:\n  - name: r\n    match: { grpc_method: M }\n    cluster: c\n"
                 "clusters:\n  - name: c\n    endpoints: ['h:1']\n",
                 "grpc_method needs grpc_service");
    expect_error(BASE_LISTENERS "routes:\n  - name: r\n    match: { path_regex: '^/a++++' }\n    cluster: c\n"
                 "clusters:\n  - name: c\n    endpoints: ['h:1']\n",
                 "path_regex: '^/a++++': a repetition of a repetition");
    expect_error(BASE_LISTENERS "routes:\n  - name: r\n    match: { path_regex: '^/(a{100}){100}' }\n    cluster: c\n"
                 "clusters:\n  - name: c\n    endpoints: ['h:1']\n",
                 "repetition counts that multiply past 1000");
    expect_error(BASE_LISTENERS "routes:\n  - name: r\n    match: { path_regex: '((((((((((a+)+)+)+)+)+)+)+)+)+)+' }\n"
                 "    cluster: c\nclusters:\n  - name: c\n    endpoints: ['h:1']\n",
                 "repetition counts that multiply past 1000");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    tls: { cert: a.pem }\n",
                 "cluster tls: cert and key go together");
    expect_error("listeners:\n  - name: l\n    listen: 127.0.0.1:1\n    http2: { max_concurrent_streams: 0 }\n",
                 "t.yaml:4:38: max_concurrent_streams: '0' is not an integer in [1, 100000]");
    expect_error("listeners:\n  - name: l\n    listen: 127.0.0.1:1\n    tls: { certificates: [], alpn: [h3] }\n",
                 "certificates: list at least one { cert, key }");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { path: h }\n",
                 "t.yaml:7:27: health_check path: 'h' must start with '/'");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    health_check: { path: /h, unhealthy_threshold: 0 }\n",
                 "t.yaml:7:52: unhealthy_threshold: '0' is not an integer in [1, 100]");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    outlier_detection: { base_ejection_time: soon }\n",
                 "t.yaml:7:46: base_ejection_time: 'soon' is not a duration");
    expect_error(BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: ['h:1']\n    when_all_unhealthy: panic\n",
                 "t.yaml:7:25: when_all_unhealthy: 'panic' is not one of fail, try_all");
    expect_error(BASE_LISTENERS "filters:\n  - magic: {}\n", "t.yaml:5:5: unknown filter 'magic' (known: auth, ext_auth, rate_limit, concurrency_limit, quota, access_log, retry, headers, cors, fault, body_limit, grpc_message_limit, compress, grpc_web, cache, mirror, grpc_json)");
    expect_error(BASE_LISTENERS "filters:\n  - access_log: { format: \"{method} {nope}\" }\n",
                 "t.yaml:5:27: access_log format: unknown or unclosed placeholder at '{nope}'");
    expect_error(BASE_LISTENERS "filters:\n  - access_log: { path: /nonexistent/dir/a.log }\n",
                 "t.yaml:5:25: access_log path: cannot open /nonexistent/dir/a.log");
    expect_error(BASE_LISTENERS "filters:\n  - auth: {}\n    rate_limit: {}\n", "t.yaml:5:5: filters: each filter is a mapping with one key");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { bearer_tokens: [a], foo: 1 }\n", "t.yaml:5:33: unknown key 'foo' in auth");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { realm: x }\n", "t.yaml:5:11: auth: configure bearer_tokens, bearer_tokens_file, api_keys, jwt, client_cert or allow");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { bearer_tokens_file: /nonexistent/tokens }\n",
                 "t.yaml:5:33: bearer_tokens_file: cannot open /nonexistent/tokens");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { bearer_tokens: [''] }\n", "t.yaml:5:29: bearer_tokens: empty secret");
    expect_error(BASE_LISTENERS "filters:\n  - rate_limit: { limit: 10 }\n",
                 "t.yaml:5:26: rate_limit: a limit needs both 'limit' and 'window'");
    expect_error(BASE_LISTENERS "filters:\n  - rate_limit: { key: ip, limit: 1, window: 1s }\n",
                 "t.yaml:5:24: rate_limit key: 'ip' is not one of client_address, identity, route, header:NAME");
    expect_error(BASE_LISTENERS "filters:\n  - rate_limit: { limits: [{ limit: 0, window: 1s }] }\n",
                 "t.yaml:5:37: limit: '0' is not an integer in [1, 1000000000]");
    expect_error(BASE_LISTENERS "filters:\n  - rate_limit: { limit: 5, window: 1s, header_style: old }\n",
                 "t.yaml:5:55: header_style: 'old' is not one of draft, legacy");
    expect_error(BASE_LISTENERS BASE_CLUSTERS "routes:\n  - name: r\n    cluster: app\n    filters: [{ rate_limit: {} }]\n",
                 "t.yaml:10:29: rate_limit: give 'limit' and 'window', or 'limits'");
    expect_error(BASE_LISTENERS "filters:\n  - retry: { on: [500] }\n",
                 "t.yaml:5:18: retry on: '500' is not one of connect-failure");
    expect_error(BASE_LISTENERS "filters:\n  - retry: { backoff: { base: 1s, max: 10ms } }\n",
                 "t.yaml:5:23: backoff: max must not be below base");
    expect_error(BASE_LISTENERS "filters:\n  - retry: { attempts: 11 }\n",
                 "t.yaml:5:24: attempts: '11' is not an integer in [1, 10]");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { jwt: { issuer: x } }\n", "t.yaml:5:18: jwt: configure secret, keys, jwks_file, jwks_uri, an http(s) issuer, introspection or providers");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { jwt: { secret: short } }\n", "t.yaml:5:28: jwt secret: use at least 16 bytes");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { jwt: { keys: [{ file: /nonexistent.pem }] } }\n",
                 "t.yaml:5:35: jwt key file: /nonexistent.pem");
    expect_error(BASE_LISTENERS "filters:\n  - auth: { jwt: { jwks_file: /nonexistent.json } }\n",
                 "t.yaml:5:31: jwks_file: cannot open /nonexistent.json");
    expect_error(BASE_LISTENERS "filters:\n  - fault: {}\n", "t.yaml:5:12: fault: configure delay");
    expect_error(BASE_LISTENERS "filters:\n  - fault: { abort: { status: 99 } }\n",
                 "t.yaml:5:31: status: '99' is not an integer in [200, 599]");
    expect_error(BASE_LISTENERS "filters:\n  - body_limit: { max: lots }\n", "t.yaml:5:24: max: 'lots' is not a size");
    unsetenv("TG_TEST_UNSET");
    expect_error("listeners:\n  - name: a\n    listen: ${TG_TEST_UNSET}\n",
                 "t.yaml:3:13: listen: environment variable 'TG_TEST_UNSET' is not set");
}

static void test_several_errors_reported(void **state)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = load("workers: x\nbogus: 1\n" BASE_LISTENERS "clusters:\n  - name: c\n    endpoints: []\n", &errs);
    assert_null(c);
    assert_true(errs.n >= 3);
    tg_errors_free(&errs);
}

static void test_errors_sorted_by_place(void **state)
{
    tg_errors_t errs = { 0 };
    tg_errors_add(&errs, "a.yaml:12:3: third");
    tg_errors_add(&errs, "no place: last");
    tg_errors_add(&errs, "a.yaml:2:9: second");
    tg_errors_add(&errs, "a.yaml:2:1: first");
    tg_errors_add(&errs, "/x:y/a.yaml:40:1: fourth (a colon in the path)");
    tg_errors_sort(&errs);
    assert_int_equal(errs.n, 5);
    assert_string_equal(errs.msgs[0], "a.yaml:2:1: first");
    assert_string_equal(errs.msgs[1], "a.yaml:2:9: second");
    assert_string_equal(errs.msgs[2], "a.yaml:12:3: third");
    assert_string_equal(errs.msgs[3], "/x:y/a.yaml:40:1: fourth (a colon in the path)");
    assert_string_equal(errs.msgs[4], "no place: last");
    tg_errors_free(&errs);
}

static void test_missing_file(void **state)
{
    tg_errors_t errs = { 0 };
    assert_null(tg_config_load("/nonexistent/tollgate.yaml", tg_filters_registry(), &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "/nonexistent/tollgate.yaml: cannot open"));
    tg_errors_free(&errs);
}

static void test_admin_defaults(void **state)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = load("admin: {}\n" BASE_LISTENERS, &errs);
    assert_non_null(c);
    assert_string_equal(c->admin.listen, TG_DEFAULT_ADMIN_LISTEN); /* loopback by default */
    assert_null(c->admin.token);
    tg_config_unref(c);
    tg_errors_free(&errs);
}

/* Rows that parse themselves (config/schema.h): each field row's typed
 * default lies within its bounds, its kind is one the generic reader
 * stores in that field type, and the default people read in the docs is
 * the typed one (a 0 may stand for "see another key", said in words). */
static void check_rows(const tg_keyset_t *ks, int depth)
{
    if (ks == NULL || depth > 6)
        return;
    assert_true(ks->n <= TG_KEYSET_MAX); /* the loader's value arrays hold that many */
    for (size_t i = 0; i < ks->n; i++) {
        const tg_key_t *k = &ks->keys[i];
        check_rows(k->sub, depth + 1);
        if (k->field == TG_FIELD_NONE)
            continue;
        if (k->field == TG_FIELD_STR) { /* a string, NULL when absent */
            if (k->kind != TG_KEY_STRING) {
                fprintf(stderr, "%s.%s: a string field for a key that is no string\n", ks->id, k->name);
                fail();
            }
            continue;
        }
        int int_field = k->field == TG_FIELD_INT;
        if ((k->kind == TG_KEY_BOOL || k->kind == TG_KEY_ENUM) != int_field ||
            (k->kind != TG_KEY_BOOL && k->kind != TG_KEY_ENUM && k->kind != TG_KEY_INT && k->kind != TG_KEY_SIZE &&
             k->kind != TG_KEY_DURATION)) {
            fprintf(stderr, "%s.%s: kind and field type do not go together\n", ks->id, k->name);
            fail();
        }
        if ((k->min || k->max) && (k->def < k->min || k->def > k->max) && k->def != 0) {
            fprintf(stderr, "%s.%s: default %lld outside [%lld, %lld]\n", ks->id, k->name, (long long)k->def,
                    (long long)k->min, (long long)k->max);
            fail();
        }
        char text[64], want[80];
        tg_key_default_text(k, text, sizeof(text));
        snprintf(want, sizeof(want), "`%s`", text);
        /* a 0 default may be said in words ("none", "the top-level setting", "`limits.max_header_bytes`"),
         * never as another number */
        int words = k->def == 0 && !(k->dflt[0] == '`' && k->dflt[1] >= '1' && k->dflt[1] <= '9');
        if (strncmp(k->dflt, want, strlen(want)) != 0 && !words) {
            fprintf(stderr, "%s.%s: the docs say %s, the row %s\n", ks->id, k->name, k->dflt, want);
            fail();
        }
    }
}

static void test_rows_agree(void **state)
{
    const tg_keyset_t *own[] = { &tg_keys_top, &tg_keys_limits, &tg_keys_http2, &tg_keys_outlier,
                                 &tg_keys_health_check, &tg_keys_paths, &tg_keys_tracing, &tg_keys_listener,
                                 &tg_keys_cluster, &tg_keys_route, &tg_keys_match,
                                 &tg_keys_server_tls, &tg_keys_client_tls, &tg_keys_admin,
                                 &tg_keys_redis };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        check_rows(own[i], 0);
    tg_schema_filter_t fs[64];
    size_t n = tg_filters_schema(fs, 64);
    for (size_t i = 0; i < n; i++)
        check_rows(fs[i].keys, 0);
    /* and the defaults land where the rows say, with no section at all */
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("t.yaml", BASE_LISTENERS, strlen(BASE_LISTENERS), tg_filters_registry(), &errs);
    assert_non_null(c);
    assert_int_equal(c->limits.max_header_bytes, TG_DEFAULT_MAX_HEADER_BYTES);
    assert_int_equal(c->limits.idle_timeout_ms, TG_DEFAULT_IDLE_TIMEOUT_MS);
    assert_int_equal(c->listeners[0].http2.max_resets_per_10s, TG_DEFAULT_H2_MAX_RESETS);
    assert_int_equal(c->listeners[0].http2.enabled, 1);
    tg_config_unref(c);
    tg_errors_free(&errs);
    char buf[32];
    tg_key_t size = { .kind = TG_KEY_SIZE, .field = TG_FIELD_U64 }, dur = { .kind = TG_KEY_DURATION, .field = TG_FIELD_U64 };
    assert_string_equal(tg_key_value_text(&size, 65536, buf, sizeof(buf)), "64KiB");
    assert_string_equal(tg_key_value_text(&size, 1000, buf, sizeof(buf)), "1000");
    assert_string_equal(tg_key_value_text(&dur, 300000, buf, sizeof(buf)), "5m");
    assert_string_equal(tg_key_value_text(&dur, 1500, buf, sizeof(buf)), "1500ms");
}

/* The document is composed by config/yaml_doc.c: anchors and aliases,
 * tags, several documents, and the errors libyaml's loader gave. */
static void test_yaml_document(void **state)
{
    (void)state;
    tg_errors_t errs = { 0 };
    tg_config_t *c = load(BASE_LISTENERS "clusters:\n"
                                         "  - { name: a, endpoints: &eps ['127.0.0.1:8001', '127.0.0.1:8002'] }\n"
                                         "  - { name: b, endpoints: *eps, lb: !!str random }\n"
                                         "routes:\n"
                                         "  - &r { name: r1, cluster: a }\n"
                                         "---\n"
                                         "ignored: the second document\n",
                          &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "  got: %s\n", errs.msgs[i]);
    assert_non_null(c);
    assert_int_equal(c->n_clusters, 2);
    assert_int_equal(c->clusters[1].n_endpoints, 2);
    assert_string_equal(c->clusters[1].endpoints[1].address, "127.0.0.1:8002");
    assert_int_equal(c->clusters[1].lb, TG_LB_RANDOM);
    assert_int_equal(c->n_routes, 1);
    tg_config_unref(c);
    tg_errors_free(&errs);
    expect_error(BASE_LISTENERS "clusters: [{ name: a, endpoints: *nope }]\n",
                 "t.yaml:4:34: YAML syntax error: found undefined alias");
    expect_error(BASE_LISTENERS "clusters: [&x { name: a, endpoints: &x ['127.0.0.1:1'] }]\n",
                 "YAML syntax error: found duplicate anchor");
    expect_error(BASE_LISTENERS "clusters: [{ name: a, endpoints: [\n", "t.yaml:5:1: YAML syntax error");
    expect_error("", "t.yaml:1:1: the file is empty");
    expect_error("# only a comment\n", "the file is empty");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admin_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_several_errors_reported),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_errors_sorted_by_place),
        cmocka_unit_test(test_rows_agree),
        cmocka_unit_test(test_yaml_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
