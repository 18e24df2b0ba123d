/*
 * filters/keytab.c — see keytab.h.
 */
#include "filters/keytab.h"

#include <stdlib.h>
#include <string.h>

tg_kt_node_t *tg_keytab_find(const tg_keytab_t *t, uint64_t hash, const char *key, size_t len)
{
    if (t->nbuckets == 0)
        return NULL;
    for (tg_kt_node_t *n = t->buckets[hash & (t->nbuckets - 1)]; n != NULL; n = n->hnext)
        if (n->hash == hash && n->keylen == len && memcmp(n->key, key, len) == 0)
            return n;
    return NULL;
}

static int grow(tg_keytab_t *t)
{
    size_t nb = t->nbuckets ? t->nbuckets * 2 : 16;
    tg_kt_node_t **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return -1;
    for (size_t i = 0; i < t->nbuckets; i++)
        for (tg_kt_node_t *n = t->buckets[i], *next; n != NULL; n = next) {
            next = n->hnext;
            n->hnext = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = nb;
    return 0;
}

int tg_keytab_insert(tg_keytab_t *t, tg_kt_node_t *n)
{
    if (t->count + 1 > 2 * t->nbuckets && grow(t) < 0)
        return -1;
    tg_kt_node_t **head = &t->buckets[n->hash & (t->nbuckets - 1)];
    n->hnext = *head;
    *head = n;
    t->count++;
    return 0;
}

void tg_keytab_remove(tg_keytab_t *t, tg_kt_node_t *n)
{
    tg_kt_node_t **pp = &t->buckets[n->hash & (t->nbuckets - 1)];
    while (*pp != n)
        pp = &(*pp)->hnext;
    *pp = n->hnext;
    t->count--;
}

void tg_keytab_clear(tg_keytab_t *t, void (*fn)(tg_kt_node_t *n))
{
    for (size_t i = 0; fn != NULL && i < t->nbuckets; i++)
        for (tg_kt_node_t *n = t->buckets[i], *next; n != NULL; n = next) {
            next = n->hnext;
            fn(n);
        }
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = t->count = 0;
}

tg_keyshards_t *tg_keyshards_new(void (*free_node)(tg_kt_node_t *n))
{
    tg_keyshards_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (tg_siphash_random_key(&s->hkey) < 0) {
        free(s);
        return NULL;
    }
    atomic_init(&s->refs, 1);
    atomic_init(&s->keys, 0);
    s->free_node = free_node;
    for (size_t i = 0; i < TG_KT_SHARDS; i++)
        pthread_mutex_init(&s->shard[i].lock, NULL);
    return s;
}

tg_keyshards_t *tg_keyshards_ref(tg_keyshards_t *s)
{
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void tg_keyshards_unref(tg_keyshards_t *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < TG_KT_SHARDS; i++) {
        tg_keytab_clear(&s->shard[i].kt, s->free_node);
        pthread_mutex_destroy(&s->shard[i].lock);
    }
    free(s);
}

/* The top bits choose the shard, the low bits the bucket within it. */
#define SHARD_OF(h) ((size_t)((h) >> 58) % TG_KT_SHARDS)

tg_kt_shard_t *tg_keyshards_pick(tg_keyshards_t *s, const char *key, size_t len, uint64_t *hash)
{
    *hash = tg_siphash(&s->hkey, key, len);
    return &s->shard[SHARD_OF(*hash)];
}

tg_kt_shard_t *tg_keyshards_of(tg_keyshards_t *s, const tg_kt_node_t *n)
{
    return &s->shard[SHARD_OF(n->hash)];
}

void tg_keyshards_each(tg_keyshards_t *s, void (*fn)(const tg_kt_node_t *n, void *arg), void *arg)
{
    for (size_t i = 0; i < TG_KT_SHARDS; i++) {
        tg_kt_shard_t *sh = &s->shard[i];
        pthread_mutex_lock(&sh->lock);
        for (size_t b = 0; b < sh->kt.nbuckets; b++)
            for (const tg_kt_node_t *n = sh->kt.buckets[b]; n != NULL; n = n->hnext)
                fn(n, arg);
        pthread_mutex_unlock(&sh->lock);
    }
}
