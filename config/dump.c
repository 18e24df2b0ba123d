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
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
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

/* Every row of ks that names its field, as the config holds it: `"key":
 * value`, each after ", " (the first only with lead) — durations as "key_ms" in milliseconds, sizes in bytes, a
 * choice by its word, a string or null. The rows that parse a section
 * also write it, so a key added to a table appears here with nothing to
 * edit (config/schema.h). */
static void rows(FILE *f, const tg_keyset_t *ks, const void *base, int lead)
{
    const char *sep = lead ? ", " : "";
    for (size_t i = 0; i < ks->n; i++) {
        const tg_key_t *k = &ks->keys[i];
        const char *at = (const char *)base + k->offset;
        uint64_t v = 0;
        switch (k->field) {
        case TG_FIELD_NONE:
            continue;
        case TG_FIELD_STR:
            fprintf(f, "%s\"%s\": ", sep, k->name);
            sep = ", ";
            if (*(char *const *)at != NULL)
                jstr(f, *(char *const *)at);
            else
                fputs("null", f);
            continue;
        case TG_FIELD_INT:
            v = (uint64_t)(int64_t) * (const int *)at;
            break;
        case TG_FIELD_U32:
            v = *(const uint32_t *)at;
            break;
        case TG_FIELD_U64:
            v = *(const uint64_t *)at;
            break;
        }
        fputs(sep, f);
        sep = ", ";
        if (k->kind == TG_KEY_BOOL) {
            fprintf(f, "\"%s\": %s", k->name, v ? "true" : "false");
        } else if (k->kind == TG_KEY_ENUM) { /* the v-th word of "a|b|c" */
            const char *c = k->choices;
            for (uint64_t j = 0; j < v && c != NULL; j++)
                if ((c = strchr(c, '|')) != NULL)
                    c++;
            size_t len = c ? strcspn(c, "|") : 1;
            fprintf(f, "\"%s\": \"%.*s\"", k->name, (int)len, c ? c : "?");
        } else {
            fprintf(f, "\"%s%s\": %llu", k->name, k->kind == TG_KEY_DURATION ? "_ms" : "",
                    (unsigned long long)v);
        }
    }
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
    rows(f, &tg_keys_route, r, 1); /* timeout, idle_timeout, max_grpc_request_message, grpc_health */
    rules(f, "request_headers", &r->request_headers);
    rules(f, "response_headers", &r->response_headers);
    fputc('}', f);
}

/* A listener's tls block: files by name (never their contents); the
 * lists and the version by hand, the rest from the rows. */
static void listener_tls(FILE *f, const tg_tls_server_conf_t *t)
{
    fputs(", \"tls\": ", f);
    if (!t->enabled) {
        fputs("null", f);
        return;
    }
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
    fprintf(f, ", \"min_version\": \"1.%d\", \"client_ca\": ", t->min_version - 10);
    jstr(f, t->client_ca);
    fputs(", \"client_cert_header\": ", f);
    jstr(f, t->client_cert_header);
    rows(f, &tg_keys_server_tls, t, 1); /* ciphers, sessions, client_auth, depth, handshake_timeout */
    fputc('}', f);
}


/* `dns:` as it applies (a cluster's: its own keys over the top level's). */
static void dns(FILE *f, const tg_dns_conf_t *d, int top)
{
    fputs(", \"dns\": {", f);
    rows(f, top ? &tg_keys_dns : &tg_keys_cluster_dns, d, 0);
    if (top) {
        fputs(", \"resolvers\": ", f);
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
    __fsetlocking(f, FSETLOCKING_BYCALLER); /* one thread writes it: no lock per character */
    fputs("{\"path\": ", f);
    jstr(f, c->path);
    fprintf(f, ", \"workers\": %u", c->workers);
    rows(f, &tg_keys_top, c, 1); /* drain_timeout, max_connections, log_format, forwarded_header, ... */
    fputs(", \"limits\": {", f);
    rows(f, &tg_keys_limits, &c->limits, 0);
    fputs("}, \"path_normalization\": {", f);
    rows(f, &tg_keys_paths, &c->paths, 0);
    fputc('}', f);
    dns(f, &c->dns, 1);
    fputs(", \"admin\": ", f);
    if (c->admin.listen) {
        fputs("{\"listen\": ", f);
        jstr(f, c->admin.listen);
        fputs(", \"token\": ", f); /* a secret: only whether there is one */
        fputs(c->admin.token ? "\"<redacted>\"" : "null", f);
        fputs(", \"allowed_hosts\": ", f);
        strs(f, c->admin.allowed_hosts, c->admin.n_allowed_hosts);
        rows(f, &tg_keys_admin, &c->admin, 1); /* max_connections, history_routes */
        fputc('}', f);
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
        fprintf(f, ", \"http1\": {\"enabled\": %s}", c->listeners[i].http1_enabled ? "true" : "false");
        rows(f, &tg_keys_listener, &c->listeners[i], 1); /* max_connections, proxy_protocol, backlog, underscores */
        fputs(", \"http2\": {", f);
        rows(f, &tg_keys_http2, &c->listeners[i].http2, 0);
        fputs("}}", f);
    }
    fputs("], \"routes\": [", f);
    for (size_t i = 0; i < c->n_routes; i++) {
        fprintf(f, "%s", i ? ", " : "");
        route(f, c, &c->routes[i]);
    }
    fputs("], \"clusters\": [", f);
    for (size_t i = 0; i < c->n_clusters; i++) {
        const tg_cluster_conf_t *cl = &c->clusters[i];
        if (cl->implicit)
            continue; /* not in the file: the filter's URL stands for it */
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        jstr(f, cl->name);
        rows(f, &tg_keys_cluster, cl, 1); /* protocol, lb, timeouts, slow_start, breakers, HTTP/2 keepalive */
        if (cl->lb == TG_LB_RING_HASH || cl->lb == TG_LB_MAGLEV) {
            static const char *const on[] = { "client_address", "header:", "cookie:", "path" };
            fprintf(f, ", \"hash_on\": \"%s%s\"", on[cl->hash_on], cl->hash_name ? cl->hash_name : "");
        }
        fputs(", \"endpoints\": [", f);
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            fprintf(f, "%s", j ? ", " : "");
            jstr(f, cl->endpoints[j].address);
        }
        fputs("], \"endpoint_weights\": [", f);
        for (size_t j = 0; j < cl->n_endpoints; j++)
            fprintf(f, "%s%u", j ? ", " : "", cl->endpoints[j].weight);
        fprintf(f, "], \"pool_size\": %u", cl->pool_size);
        if (cl->named)
            dns(f, &cl->dns, 0);
        fputs(", \"tls\": ", f);
        if (cl->tls.enabled) {
            fputs("{\"ca\": ", f); /* files by name; the rest from the rows */
            jstr(f, cl->tls.ca);
            fputs(", \"cert\": ", f);
            jstr(f, cl->tls.client_cert.cert);
            rows(f, &tg_keys_client_tls, &cl->tls, 1); /* server_name, verify */
            fputc('}', f);
        } else {
            fputs("null", f);
        }
        fputs(", \"health_check\": ", f);
        if (cl->health_check.enabled) {
            fputc('{', f);
            rows(f, &tg_keys_health_check, &cl->health_check, 0); /* type, path, host, interval, thresholds... */
            fputc('}', f);
        } else {
            fputs("null", f);
        }
        fputs(", \"outlier_detection\": ", f);
        if (cl->outlier.consecutive_failures != 0) {
            fputc('{', f);
            rows(f, &tg_keys_outlier, &cl->outlier, 0);
            fputc('}', f);
        } else {
            fputs("null", f); /* off */
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
