/*
 * filters/openapi.c — see openapi.h.
 */
#include "filters/openapi.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/json.h"

typedef struct entry {
    char *path, *method, *json; /* schemas: path is the name, method NULL, json NULL until written */
} entry_t;

typedef struct list {
    entry_t *v;
    size_t n, cap;
} list_t;

struct tg_openapi {
    list_t ops, schemas;
};

static char *dup_n(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c != NULL) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

static entry_t *push(list_t *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        entry_t *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    entry_t *e = &l->v[l->n];
    memset(e, 0, sizeof(*e));
    return e;
}

static void list_free(list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].method);
        free(l->v[i].json);
    }
    free(l->v);
}

tg_openapi_t *tg_openapi_new(void)
{
    return calloc(1, sizeof(tg_openapi_t));
}

void tg_openapi_free(tg_openapi_t *d)
{
    if (d == NULL)
        return;
    list_free(&d->ops);
    list_free(&d->schemas);
    free(d);
}

int tg_openapi_op(tg_openapi_t *d, const char *path, const char *method, const char *json, size_t len)
{
    for (size_t i = 0; i < d->ops.n; i++)
        if (strcmp(d->ops.v[i].path, path) == 0 && strcmp(d->ops.v[i].method, method) == 0)
            return 0;
    entry_t *e = push(&d->ops);
    if (e == NULL || (e->path = strdup(path)) == NULL || (e->method = strdup(method)) == NULL ||
        (e->json = dup_n(json, len)) == NULL) {
        if (e != NULL) {
            free(e->path);
            free(e->method);
        }
        return -1;
    }
    d->ops.n++;
    return 1;
}

static entry_t *schema_named(const tg_openapi_t *d, const char *name)
{
    for (size_t i = 0; i < d->schemas.n; i++)
        if (strcmp(d->schemas.v[i].path, name) == 0)
            return &d->schemas.v[i];
    return NULL;
}

int tg_openapi_claim(tg_openapi_t *d, const char *name)
{
    if (schema_named(d, name) != NULL)
        return 0;
    entry_t *e = push(&d->schemas);
    if (e == NULL || (e->path = strdup(name)) == NULL)
        return -1;
    d->schemas.n++;
    return 1;
}

int tg_openapi_schema(tg_openapi_t *d, const char *name, const char *json, size_t len)
{
    entry_t *e = schema_named(d, name);
    if (e == NULL || e->json != NULL)
        return e == NULL ? -1 : 0;
    return (e->json = dup_n(json, len)) != NULL ? 0 : -1;
}

static void put(void *arg, const char *p, size_t n)
{
    evbuffer_add(arg, p, n);
}

void tg_openapi_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    tg_json_write(s, strlen(s), put, out);
    evbuffer_add(out, "\"", 1);
}

void tg_openapi_render(const tg_openapi_t *d, struct evbuffer *out, const char *title)
{
    evbuffer_add_printf(out, "{\"openapi\": \"3.0.3\", \"info\": {\"title\": ");
    tg_openapi_str(out, title);
    evbuffer_add_printf(out, ", \"version\": \"1\"}, \"paths\": {");
    int first_path = 1;
    for (size_t i = 0; i < d->ops.n; i++) {
        int seen = 0; /* a path's operations go out together, where it first came */
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(d->ops.v[k].path, d->ops.v[i].path) == 0;
        if (seen)
            continue;
        evbuffer_add_printf(out, "%s\n  ", first_path ? "" : ",");
        first_path = 0;
        tg_openapi_str(out, d->ops.v[i].path);
        evbuffer_add(out, ": {", 3);
        int first_op = 1;
        for (size_t k = i; k < d->ops.n; k++) {
            if (strcmp(d->ops.v[k].path, d->ops.v[i].path) != 0)
                continue;
            evbuffer_add_printf(out, "%s\"%s\": %s", first_op ? "" : ", ", d->ops.v[k].method, d->ops.v[k].json);
            first_op = 0;
        }
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add_printf(out, "}, \"components\": {\"schemas\": {");
    int first = 1;
    for (size_t i = 0; i < d->schemas.n; i++) {
        if (d->schemas.v[i].json == NULL)
            continue;
        evbuffer_add_printf(out, "%s\n  ", first ? "" : ",");
        first = 0;
        tg_openapi_str(out, d->schemas.v[i].path);
        evbuffer_add_printf(out, ": %s", d->schemas.v[i].json);
    }
    evbuffer_add_printf(out, "}}}\n");
}
