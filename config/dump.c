/*
 * config/dump.c — the effective configuration as JSON, for the admin
 * /config endpoint: every value after defaults and ${VAR} expansion, with
 * secrets redacted (header rule values whose header name suggests a
 * credential).
 */
#include "config/config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void jstr(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int is_secret_header(const char *name)
{
    static const char *const words[] = { "authorization", "cookie", "token", "secret", "password", "key" };
    char low[128];
    size_t i;
    for (i = 0; name[i] && i + 1 < sizeof(low); i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    low[i] = '\0';
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(low, words[i]) != NULL)
            return 1;
    return 0;
}

static void kvs(FILE *f, const tg_kv_t *kv, size_t n)
{
    fputc('{', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s", i ? ", " : "");
        jstr(f, kv[i].name);
        fputs(": ", f);
        jstr(f, is_secret_header(kv[i].name) ? "<redacted>" : kv[i].value);
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
    static const char *const path_keys[] = { NULL, "path", "path_prefix", "path_regex" };
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
                jstr(f, is_secret_header(r->match.headers[i].name) ? "<redacted>" : r->match.headers[i].value);
            }
            fputc('}', f);
        }
        fputc(']', f);
    }
    fputs("}, \"cluster\": ", f);
    jstr(f, c->clusters[r->cluster].name);
    fprintf(f, ", \"timeout_ms\": %llu, \"idle_timeout_ms\": %llu", (unsigned long long)r->timeout_ms,
            (unsigned long long)r->idle_timeout_ms);
    rules(f, "request_headers", &r->request_headers);
    rules(f, "response_headers", &r->response_headers);
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
    fputs(", \"admin\": ", f);
    if (c->admin.listen) {
        fputs("{\"listen\": ", f);
        jstr(f, c->admin.listen);
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
        fputc('}', f);
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
        fputs(", \"protocol\": \"http1\", \"lb\": \"round_robin\", \"endpoints\": [", f);
        for (size_t j = 0; j < cl->n_endpoints; j++) {
            fprintf(f, "%s", j ? ", " : "");
            jstr(f, cl->endpoints[j].address);
        }
        fprintf(f, "], \"connect_timeout_ms\": %llu, \"idle_timeout_ms\": %llu, \"pool_size\": %u}",
                (unsigned long long)cl->connect_timeout_ms, (unsigned long long)cl->idle_timeout_ms, cl->pool_size);
    }
    fputs("]}\n", f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
