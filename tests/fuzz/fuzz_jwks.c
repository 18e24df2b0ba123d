/* Fuzz target: what an identity provider (or whoever answers in its
 * place) sends: a JWKS document (filters/jwks.c) and the JSON reader
 * under it (proxy/base/json.c). Whatever the bytes: no read past them, no
 * leak, a set whose keys all have an algorithm; and every document the
 * reader accepts is read again, after being written back out with the
 * one JSON writer, into the same tree. Input: the document. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/jwks.h"
#include "proxy/base/json.h"

typedef struct out {
    char *p;
    size_t n, cap;
} out_t;

static void put(void *arg, const char *p, size_t n)
{
    out_t *o = arg;
    if (o->n + n + 1 > o->cap) {
        o->cap = (o->n + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        if (o->p == NULL)
            abort();
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static void write_value(out_t *o, const tg_json_t *v)
{
    char num[40];
    switch (v->t) {
    case TG_JSON_NULL: put(o, "null", 4); break;
    case TG_JSON_BOOL: v->num != 0 ? put(o, "true", 4) : put(o, "false", 5); break;
    case TG_JSON_NUM: snprintf(num, sizeof(num), "%.17g", v->num); put(o, num, strlen(num)); break;
    case TG_JSON_STR: put(o, "\"", 1); tg_json_write(v->str, strlen(v->str), put, o); put(o, "\"", 1); break;
    case TG_JSON_ARR:
    case TG_JSON_OBJ:
        put(o, v->t == TG_JSON_ARR ? "[" : "{", 1);
        for (size_t i = 0; i < v->n; i++) {
            if (i)
                put(o, ",", 1);
            if (v->t == TG_JSON_OBJ) {
                put(o, "\"", 1);
                tg_json_write(v->keys[i], strlen(v->keys[i]), put, o);
                put(o, "\":", 2);
            }
            write_value(o, &v->items[i]);
        }
        put(o, v->t == TG_JSON_ARR ? "]" : "}", 1);
        break;
    }
}

static int same(const tg_json_t *a, const tg_json_t *b)
{
    if (a->t != b->t || a->n != b->n)
        return 0;
    if (a->t == TG_JSON_STR)
        return strcmp(a->str, b->str) == 0;
    if (a->t == TG_JSON_NUM || a->t == TG_JSON_BOOL)
        return a->num == b->num || (a->num != a->num && b->num != b->num);
    for (size_t i = 0; i < a->n; i++)
        if ((a->t == TG_JSON_OBJ && strcmp(a->keys[i], b->keys[i]) != 0) || !same(&a->items[i], &b->items[i]))
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any read past them */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    char why[200];
    tg_jwk_set_t *s = tg_jwk_set_new();
    if (s != NULL && tg_jwk_set_parse(s, copy, size, why, sizeof(why)) == 0)
        for (size_t i = 0; i < s->n; i++)
            if (s->keys[i].alg == 0 || (s->keys[i].pkey == NULL && s->keys[i].secret == NULL))
                abort();
    tg_jwk_set_unref(s);
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t v, w;
    if (tg_json_parse(copy, size, &a, &v) == 0) {
        out_t o = { 0 };
        write_value(&o, &v);
        if (tg_json_parse(o.p ? o.p : "", o.n, &a, &w) != 0 || !same(&v, &w))
            abort();
        free(o.p);
    }
    tg_arena_free(&a);
    free(copy);
    return 0;
}
