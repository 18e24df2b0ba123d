/*
 * config/dump.c — the effective configuration as JSON, for the admin
 * /config endpoint: every value after defaults and ${VAR} expansion, then
 * under "document" the file as loaded (filters included). Secrets never
 * appear: the loader marks each value it reads as a secret (tg_node_secret,
 * get_secret) and renders those as "<redacted>"; the admin token and
 * header values, secrets by construction, are written as such here.
 */
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/json.h"

static void put_file(void *arg, const char *p, size_t n)
{
    fwrite(p, 1, n, arg);
}

void tg_config_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    if (s != NULL)
        tg_json_write(s, strlen(s), put_file, f);
    fputc('"', f);
}

#define jstr tg_config_json_str

static void kvs(FILE *f, const tg_kv_t *kv, size_t n)
{
    fputc('{', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        jstr(f, kv[i].name);
        fputs(": ", f);
        jstr(f, "<redacted>"); /* read as a secret (config/loader.c get_kv_map) */
    }
    fputc('}', f);
}

static void strs(FILE *f, char *const *v, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        jstr(f, v[i]);
    }
    fputc(']', f);
}

static void rules(FILE *f, const char *key, const tg_header_rules_t *r)
{
    fprintf(f, ", \"%s\": {\"add\": ", key);
    kvs(f, r->add, r->n_add);
    fputs(", \"set\": ", f);
    kvs(f, r->set, r->n_set);
    fputs(", \"remove\": ", f);
    strs(f, r->remove, r->n_remove);
    fputc('}', f);
}

static void route(FILE *f, const tg_config_t *c, const tg_route_conf_t *r)
{
    static const char *const path_keys[] = {
        [TG_PATH_EXACT] = "path", [TG_PATH_PREFIX] = "path_prefix",
        [TG_PATH_SEPARATED_PREFIX] = "path_separated_prefix", [TG_PATH_REGEX] = "path_regex",
    };
    fputs("{\"name\": ", f);
    jstr(f, r->name);
    fputs(", \"listeners\": [", f);
    for (size_t i = 0; i < r->n_listeners; i++) {
        fprintf(f, "%s", i ? ", " : "");
        jstr(f, c->listeners[r->listeners[i]].name);
    }
    fputs("], \"match\": {", f);
    const char *sep = "";
    if (r->match.host) {
        fputs("\"host\": ", f);
        if (r->match.host_wildcard) {
            fputc('"', f);
            fputc('*', f);
            fputs(r->match.host, f); /* names are tokens: nothing to escape */
            fputc('"', f);
        } else {
            jstr(f, r->match.host);
        }
        sep = ", ";
    }
    if (r->match.path_kind != TG_PATH_ANY) {
        fprintf(f, "%s\"%s\": ", sep, path_keys[r->match.path_kind]);
        jstr(f, r->match.path);
        sep = ", ";
        if (r->match.ignore_case)
            fputs(", \"ignore_case\": true", f);
    }
    if (r->match.n_methods) {
        fprintf(f, "%s\"methods\": ", sep);
        strs(f, r->match.methods, r->match.n_methods);
        sep = ", ";
    }
    if (r->match.n_headers) {
        fprintf(f, "%s\"headers\": [", sep);
        for (size_t i = 0; i < r->match.n_headers; i++) {
            fprintf(f, "%s{\"name\": ", i ? ", " : "");
            jstr(f, r->match.headers[i].name);
            if (r->match.headers[i].value) {
                fputs(", \"value\": ", f);
                jstr(f, "<redacted>"); /* read as a secret, like header-rule values */
            }
            fputc('}', f);
        }
        fputc(']', f);
        sep = ", ";
    }
    if (r->match.grpc_service) {
        fprintf(f, "%s\"grpc_service\": ", sep);
        jstr(f, r->match.grpc_service);
        if (r->match.grpc_method) {
            fputs(", \"grpc_method\": ", f);
            jstr(f, r->match.grpc_method);
        }
    }
    fputs("}, \"cluster\": ", f);
    char split[256];
    jstr(f, tg_route_cluster_label(c, r, split, sizeof(split)));
    if (r->n_backends > 0) {
        fputs(", \"clusters\": [", f);
        for (size_t b = 0; b < r->n_backends; b++) {
            fprintf(f, "%s{\"name\": ", b ? ", " : "");
            jstr(f, c->clusters[r->backends[b].cluster].name);
            fprintf(f, ", \"weight\": %u, \"pinned_by_headers\": %zu}", r->backends[b].weight, r->backends[b].n_headers);
        }
        fputc(']', f);
    }
    fprintf(f, ", \"timeout_ms\": %llu, \"idle_timeout_ms\": %llu", (unsigned long long)r->timeout_ms,
            (unsigned long long)r->idle_timeout_ms);
    rules(f, "request_headers", &r->request_headers);
    rules(f, "response_headers", &r->response_headers);
    fputc('}', f);
}

/* A listener's tls block: files by name (never their contents). */
static void listener_tls(FILE *f, const tg_tls_server_conf_t *t)
{
    fputs(", \"tls\": ", f);
    if (!t->enabled) {
        fputs("null", f);
        return;
    }
    static const char *const auth[] = { "none", "optional", "require" };
    fputs("{\"certificates\": [", f);
    for (size_t i = 0; i < t->n_certs; i++) {
        fprintf(f, "%s{\"cert\": ", i ? ", " : "");
        jstr(f, t->certs[i].cert);
        fputs(", \"key\": ", f);
        jstr(f, t->certs[i].key);
        fputc('}', f);
    }
    fputs("], \"alpn\": ", f);
    strs(f, t->alpn, t->n_alpn);
    fprintf(f, ", \"min_version\": \"1.%d\", \"client_auth\": \"%s\", \"client_ca\": ", t->min_version - 10,
            auth[t->client_auth]);
    jstr(f, t->client_ca);
    fputs(", \"client_cert_header\": ", f);
    jstr(f, t->client_cert_header);
    fprintf(f, ", \"session_tickets\": %s, \"session_cache_size\": %u}", t->session_tickets ? "true" : "false",
            t->session_cache_size);
}

static const char *const underscores[] = { "drop", "allow", "reject" };

/* `dns:` as it applies (a cluster's: its own keys over the top level's). */
static void dns(FILE *f, const tg_dns_conf_t *d, int top)
{
    static const char *const fam[] = { "auto", "v4", "v6", "all" };
    fprintf(f, ", \"dns\": {\"min_ttl_ms\": %llu, \"max_ttl_ms\": %llu, \"lookup_family\": \"%s\", "
               "\"on_failure\": \"%s\"",
            (unsigned long long)d->min_ttl_ms, (unsigned long long)d->max_ttl_ms, fam[d->family],
            d->on_failure == TG_DNS_FAIL ? "fail" : "keep");
    if (top) {
        fprintf(f, ", \"timeout_ms\": %llu, \"resolvers\": ", (unsigned long long)d->timeout_ms);
        if (d->n_resolvers)
            strs(f, d->resolvers, d->n_resolvers);
        else
            fputs("\"/etc/resolv.conf\"", f);
    }
    fputc('}', f);
}

char *tg_config_to_json(const tg_config_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    fputs("{\"path\": ", f);
    jstr(f, c->path);
    fprintf(f, ", \"workers\": %u, \"drain_timeout_ms\": %llu", c->workers, (unsigned long long)c->drain_timeout_ms);
    fprintf(f, ", \"limits\": {\"max_header_bytes\": %llu, \"max_body_bytes\": %llu, \"header_timeout_ms\": %llu, "
               "\"idle_timeout_ms\": %llu}",
            (unsigned long long)c->limits.max_header_bytes, (unsigned long long)c->limits.max_body_bytes,
            (unsigned long long)c->limits.header_timeout_ms, (unsigned long long)c->limits.idle_timeout_ms);
    static const char *const fwd[] = { "x-forwarded-for", "forwarded", "both" };
    static const char *const semis[] = { "keep", "strip", "reject" }, *const bslash[] = { "reject", "keep", "decode" };
    static const char *const eslash[] = { "reject", "keep", "decode" };
    fprintf(f, ", \"forwarded_header\": \"%s\", \"set_x_real_ip\": %s, \"headers_with_underscores\": \"%s\"",
            fwd[c->forwarded_header], c->set_x_real_ip ? "true" : "false", underscores[c->underscores]);
    fprintf(f, ", \"path_normalization\": {\"merge_slashes\": %s, \"escaped_slashes\": \"%s\", "
               "\"semicolons\": \"%s\", \"backslashes\": \"%s\", \"forward\": \"%s\"}",
            c->paths.merge_slashes ? "true" : "false", eslash[c->paths.escaped_slashes], semis[c->paths.semicolons],
            bslash[c->paths.backslashes], c->paths.forward_original ? "original" : "normalized");
    dns(f, &c->dns, 1);
    fputs(", \"admin\": ", f);
    if (c->admin.listen) {
        fputs("{\"listen\": ", f);
        jstr(f, c->admin.listen);
        fputs(", \"token\": ", f); /* a secret: only whether there is one */
        fputs(c->admin.token ? "\"<redacted>\"" : "null", f);
        fputs(", \"allowed_hosts\": [", f);
        for (size_t i = 0; i < c->admin.n_allowed_hosts; i++) {
            fputs(i ? ", " : "", f);
            jstr(f, c->admin.allowed_hosts[i]);
        }
        fprintf(f, "], \"max_connections\": %u}", c->admin.max_connections);
    } else {
        fputs("null", f);
    }
    fputs(", \"listeners\": [", f);
    for (size_t i = 0; i < c->n_listeners; i++) {
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        jstr(f, c->listeners[i].name);
        fputs(", \"listen\": ", f);
        jstr(f, c->listeners[i].listen);
        listener_tls(f, &c->listeners[i].tls);
        fprintf(f, ", \"http1\": {\"enabled\": %s}, \"proxy_protocol\": %s",
                c->listeners[i].http1_enabled ? "true" : "false", c->listeners[i].proxy_protocol ? "true" : "false");
        fprintf(f, ", \"headers_with_underscores\": \"%s\"",
                underscores[c->listeners[i].has_underscores ? c->listeners[i].underscores : c->underscores]);
        const tg_http2_conf_t *h = &c->listeners[i].http2;
        fprintf(f, ", \"http2\": {\"enabled\": %s, \"max_concurrent_streams\": %u, \"initial_window_size\": %u, "
                   "\"connection_window_size\": %u, \"max_header_list_size\": %llu, \"ping_interval_ms\": %llu, "
                   "\"ping_timeout_ms\": %llu, \"max_resets_per_10s\": %u}}",
                h->enabled ? "true" : "false", h->max_concurrent_streams, h->initial_window_size,
                h->connection_window_size, (unsigned long long)h->max_header_list_size,
                (unsigned long long)h->ping_interval_ms, (unsigned long long)h->ping_timeout_ms, h->max_resets_per_10s);
    }
    fputs("], \"routes\": [", f);
    for (size_t i = 0; i < c->n_routes; i++) {
        fprintf(f, "%s", i ? ", " : "");
        route(f, c, &c->routes[i]);
    }
    fputs("], \"clusters\": [", f);
    for (size_t i = 0; i < c->n_clusters; i++) {
        const tg_cluster_conf_t *cl = &c->clusters[i];
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        jstr(f, cl->name);
        static const char *const protos[] = { "http1", "h2c", "h2" };
        static const char *const lbs[] = { "round_robin", "least_request", "random", "peak_ewma", "ring_hash",
                                           "maglev" };
        fprintf(f, ", \"protocol\": \"%s\", \"lb\": \"%s\"", protos[cl->protocol], lbs[cl->lb]);
        if (cl->lb == TG_LB_RING_HASH || cl->lb == TG_LB_MAGLEV) {
            static const char *const on[] = { "client_address", "header:", "cookie:", "path" };
            fprintf(f, ", \"hash_on\": \"%s%s\"", on[cl->hash_on], cl->hash_name ? cl->hash_name : "");
        }
        fprintf(f, ", \"slow_start_ms\": %llu, \"endpoints\": [", (unsigned long long)cl->slow_start_ms);
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            fprintf(f, "%s", j ? ", " : "");
            jstr(f, cl->endpoints[j].address);
        }
        fputs("], \"endpoint_weights\": [", f);
        for (size_t j = 0; j < cl->n_endpoints; j++)
            fprintf(f, "%s%u", j ? ", " : "", cl->endpoints[j].weight);
        fprintf(f, "], \"connect_timeout_ms\": %llu, \"idle_timeout_ms\": %llu, \"pool_size\": %u",
                (unsigned long long)cl->connect_timeout_ms, (unsigned long long)cl->idle_timeout_ms, cl->pool_size);
        fprintf(f, ", \"max_connections\": %u, \"max_pending\": %u, \"max_requests\": %u", cl->max_connections,
                cl->max_pending, cl->max_requests);
        if (cl->protocol != TG_PROTO_HTTP1)
            fprintf(f, ", \"keepalive_interval_ms\": %llu, \"keepalive_timeout_ms\": %llu, "
                       "\"max_concurrent_streams\": %u",
                    (unsigned long long)cl->keepalive_interval_ms, (unsigned long long)cl->keepalive_timeout_ms,
                    cl->max_concurrent_streams);
        if (cl->named)
            dns(f, &cl->dns, 0);
        fputs(", \"tls\": ", f);
        if (cl->tls.enabled) {
            fputs("{\"ca\": ", f);
            jstr(f, cl->tls.ca);
            fputs(", \"server_name\": ", f);
            jstr(f, cl->tls.server_name);
            fprintf(f, ", \"verify\": %s, \"cert\": ", cl->tls.verify ? "true" : "false");
            jstr(f, cl->tls.client_cert.cert);
            fputc('}', f);
        } else {
            fputs("null", f);
        }
        fputc('}', f);
    }
    fputs("], \"document\": ", f);
    fputs(c->document != NULL ? c->document : "null", f);
    fputs("}\n", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
