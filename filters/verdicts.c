/*
 * filters/verdicts.c — see verdicts.h.
 */
#include "filters/verdicts.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    unsigned char key[32];
    uint64_t tag;
    uint64_t until;            /* 0: empty */
    const char *reason;        /* NULL: accepted */
    char *blob;                /* identity \0, then claims as name \0 value \0 ... */
    size_t n_claims;
} entry_t;

struct tg_verdicts {
    size_t n;                  /* a power of two, or 0 */
    entry_t e[];
};

tg_verdicts_t *tg_verdicts_new(size_t entries)
{
    size_t n = entries ? 1 : 0;
    while (n && n < entries)
        n <<= 1;
    tg_verdicts_t *v = calloc(1, sizeof(*v) + n * sizeof(entry_t));
    if (v != NULL)
        v->n = n;
    return v;
}

void tg_verdicts_free(tg_verdicts_t *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++)
        free(v->e[i].blob);
    free(v);
}

static entry_t *slot_of(tg_verdicts_t *v, const unsigned char key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof(h));
    return v != NULL && v->n ? &v->e[h & (v->n - 1)] : NULL;
}

int tg_verdicts_get(tg_verdicts_t *v, const unsigned char key[32], uint64_t tag, uint64_t now, tg_arena_t *a,
                    const char **identity, tg_headers_t *claims, const char **reason)
{
    entry_t *e = slot_of(v, key);
    if (e == NULL || e->until <= now || e->tag != tag || CRYPTO_memcmp(e->key, key, 32) != 0)
        return 0;
    if (e->reason == NULL) {
        const char *p = e->blob;
        const char *id = tg_arena_strndup(a, p, strlen(p));
        if (id == NULL)
            return 0;
        p += strlen(p) + 1;
        for (size_t i = 0; claims != NULL && i < e->n_claims; i++) {
            const char *name = p, *val = p + strlen(p) + 1;
            p = val + strlen(val) + 1;
            tg_headers_add(claims, a, tg_arena_strndup(a, name, strlen(name)), strlen(name),
                           tg_arena_strndup(a, val, strlen(val)), strlen(val));
        }
        *identity = id;
    }
    *reason = e->reason;
    return 1;
}

void tg_verdicts_put(tg_verdicts_t *v, const unsigned char key[32], uint64_t tag, uint64_t until, const char *reason,
                     const char *identity, const tg_headers_t *claims)
{
    entry_t *e = slot_of(v, key);
    if (e == NULL || (reason == NULL && identity == NULL))
        return;
    size_t len = 1, n = reason == NULL && claims != NULL ? claims->n : 0;
    if (reason == NULL)
        len += strlen(identity);
    for (size_t i = 0; i < n; i++)
        len += claims->v[i].name_len + claims->v[i].value_len + 2;
    char *blob = malloc(len), *p = blob;
    if (blob == NULL)
        return;
    *p = '\0';
    if (reason == NULL) {
        size_t il = strlen(identity);
        memcpy(p, identity, il + 1);
        p += il + 1;
        for (size_t i = 0; i < n; i++) {
            memcpy(p, claims->v[i].name, claims->v[i].name_len);
            p[claims->v[i].name_len] = '\0';
            p += claims->v[i].name_len + 1;
            memcpy(p, claims->v[i].value, claims->v[i].value_len);
            p[claims->v[i].value_len] = '\0';
            p += claims->v[i].value_len + 1;
        }
    }
    free(e->blob);
    memcpy(e->key, key, 32);
    e->tag = tag;
    e->until = until;
    e->reason = reason;
    e->blob = blob;
    e->n_claims = n;
}
