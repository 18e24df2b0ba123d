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
    /* appended in order; duplicates go at render (sorted: no pass per call) */
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

/* Schemas are kept sorted by name: found by binary search. Returns the
 * index of name, or where it would go (*found 0). */
static size_t schema_at(const tg_openapi_t *d, const char *name, int *found)
{
    size_t lo = 0, hi = d->schemas.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->schemas.v[mid].path, name);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

int tg_openapi_claim(tg_openapi_t *d, const char *name)
{
    int found;
    size_t at = schema_at(d, name, &found);
    if (found)
        return 0;
    char *copy = strdup(name);
    if (copy == NULL || push(&d->schemas) == NULL) {
        free(copy);
        return -1;
    }
    memmove(&d->schemas.v[at + 1], &d->schemas.v[at], (d->schemas.n - at) * sizeof(entry_t));
    d->schemas.v[at] = (entry_t){ .path = copy };
    d->schemas.n++;
    return 1;
}

int tg_openapi_schema(tg_openapi_t *d, const char *name, const char *json, size_t len)
{
    int found;
    size_t at = schema_at(d, name, &found);
    if (!found)
        return -1;
    entry_t *e = &d->schemas.v[at];
    if (e->json != NULL)
        return 0;
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

/* Operations by path, then method, then the order they came in. */
static int op_cmp(const void *a, const void *b)
{
    const entry_t *x = *(entry_t *const *)a, *y = *(entry_t *const *)b;
    int c = strcmp(x->path, y->path);
    if (c == 0)
        c = strcmp(x->method, y->method);
    return c != 0 ? c : (x < y ? -1 : x > y);
}

void tg_openapi_render(const tg_openapi_t *d, struct evbuffer *out, const char *title)
{
    evbuffer_add_printf(out, "{\"openapi\": \"3.0.3\", \"info\": {\"title\": ");
    tg_openapi_str(out, title);
    evbuffer_add_printf(out, ", \"version\": \"1\"}, \"paths\": {");
    entry_t **ops = malloc((d->ops.n ? d->ops.n : 1) * sizeof(*ops));
    size_t n = ops != NULL ? d->ops.n : 0;
    for (size_t i = 0; i < n; i++)
        ops[i] = &d->ops.v[i];
    qsort(ops, n, sizeof(*ops), op_cmp);
    for (size_t i = 0; i < n; i++) {
        int new_path = i == 0 || strcmp(ops[i - 1]->path, ops[i]->path) != 0;
        if (!new_path && strcmp(ops[i - 1]->method, ops[i]->method) == 0)
            continue; /* the same path and method again: the first (the first route's) wins */
        if (new_path) {
            evbuffer_add_printf(out, "%s\n  ", i ? "}," : "");
            tg_openapi_str(out, ops[i]->path);
            evbuffer_add(out, ": {", 3);
        } else {
            evbuffer_add(out, ", ", 2);
        }
        evbuffer_add_printf(out, "\"%s\": %s", ops[i]->method, ops[i]->json);
    }
    if (n > 0)
        evbuffer_add(out, "}", 1);
    free(ops);
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
