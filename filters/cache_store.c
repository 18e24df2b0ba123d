/*
 * filters/cache_store.c — see cache_store.h.
 */
#include "filters/cache_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/keytab.h"
#include "proxy/base/log.h"
#include "proxy/base/siphash.h"

#define SHARDS_MAX 16

struct tg_cache_fill {
    struct tg_cache_fill *next;  /* in its node */
    struct cache_node *node;
    tg_cache_waiter_t *waiters;
    size_t variant_len;
    char variant[];
};

typedef struct cache_node {
    tg_kt_node_t kt;             /* first: the shard's table (kt.key is key below) */
    struct cache_node *prev, *next; /* the shard's LRU, most recent first */
    char *vary;                  /* the newest response's Vary ("a\nb"), NULL: none */
    tg_cache_fill_t *fills;
    unsigned pass : 1;           /* hit-for-pass */
    unsigned n_variants;
    size_t mem;                  /* the node, its key, its Vary, its entries */
    tg_cache_entry_t **variants; /* oldest first */
    char key[];
} cache_node_t;

typedef struct cache_shard {
    pthread_mutex_t lock;
    tg_keytab_t kt;
    cache_node_t *head, *tail;   /* LRU */
    size_t bytes, cap;
} cache_shard_t;

struct tg_cache_store {
    tg_siphash_key_t hkey;
    size_t max_object;
    unsigned max_variants, n_shards;
    void (*wake)(tg_filter_exchange_t *fx, uint64_t gen);
    atomic_uint_fast64_t entries, bytes, evictions, purged, waiting;
    cache_shard_t shard[SHARDS_MAX];
};

/* ---- bodies and entries ---- */

tg_cache_body_t *tg_cache_body_new(size_t cap)
{
    tg_cache_body_t *b = malloc(sizeof(*b) + (cap ? cap : 1));
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = 0;
    b->cap = cap;
    return b;
}

void tg_cache_body_put(tg_cache_body_t *b)
{
    if (b != NULL && atomic_fetch_sub(&b->refs, 1) == 1)
        free(b);
}

tg_cache_entry_t *tg_cache_entry_new(int status, const tg_headers_t *headers, const char *variant, size_t vlen,
                                     tg_cache_body_t *body)
{
    size_t strings = vlen + 1;
    for (size_t i = 0; i < headers->n; i++)
        strings += headers->v[i].name_len + headers->v[i].value_len + 2;
    size_t head = sizeof(tg_cache_entry_t) + headers->n * sizeof(tg_header_t);
    tg_cache_entry_t *e = malloc(head + strings);
    if (e == NULL) {
        tg_cache_body_put(body);
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    atomic_init(&e->refs, 1);
    e->status = status;
    e->swr = e->sie = -1;
    e->last_modified = -1;
    e->headers = (tg_header_t *)(e + 1);
    e->n_headers = headers->n;
    e->fields_safe = 1;
    char *p = (char *)e + head;
    for (size_t i = 0; i < headers->n; i++) {
        const tg_header_t *h = &headers->v[i];
        tg_header_t *d = &e->headers[i];
        e->fields_safe &= tg_headers_field_safe(headers, i);
        for (size_t k = 0; k < h->name_len; k++) /* stored lower-case: HTTP/2 wants it, lookups are simpler */
            p[k] = (char)(h->name[k] >= 'A' && h->name[k] <= 'Z' ? h->name[k] + 32 : h->name[k]);
        p[h->name_len] = '\0';
        d->name = p;
        d->name_len = h->name_len;
        p += h->name_len + 1;
        memcpy(p, h->value, h->value_len);
        p[h->value_len] = '\0';
        d->value = p;
        d->value_len = h->value_len;
        p += h->value_len + 1;
    }
    memcpy(p, variant, vlen);
    p[vlen] = '\0';
    e->variant = p;
    e->variant_len = vlen;
    e->body = body;
    e->mem = head + strings + sizeof(*body) + (body ? body->cap : 0);
    const tg_header_t *et = tg_cache_entry_header(e, "etag");
    if (et != NULL) {
        e->etag = et->value;
        e->etag_len = et->value_len;
    }
    return e;
}

void tg_cache_entry_ref(tg_cache_entry_t *e)
{
    atomic_fetch_add(&e->refs, 1);
}

void tg_cache_entry_put(tg_cache_entry_t *e)
{
    if (e != NULL && atomic_fetch_sub(&e->refs, 1) == 1) {
        tg_cache_body_put(e->body);
        free(e);
    }
}

const tg_header_t *tg_cache_entry_header(const tg_cache_entry_t *e, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < e->n_headers; i++)
        if (e->headers[i].name_len == n && memcmp(e->headers[i].name, name, n) == 0)
            return &e->headers[i];
    return NULL;
}

/* ---- the store ---- */

tg_cache_store_t *tg_cache_store_new(size_t max_size, size_t max_object, unsigned max_variants,
                                     void (*wake)(tg_filter_exchange_t *fx, uint64_t gen))
{
    tg_cache_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (tg_siphash_random_key(&s->hkey) < 0) {
        free(s);
        return NULL;
    }
    /* as many shards as keep an object of max_object within one shard's share */
    size_t n = max_object ? max_size / max_object : SHARDS_MAX;
    s->n_shards = n < 1 ? 1 : n > SHARDS_MAX ? SHARDS_MAX : (unsigned)n;
    s->max_object = max_object;
    s->max_variants = max_variants ? max_variants : 1;
    s->wake = wake;
    for (unsigned i = 0; i < s->n_shards; i++) {
        pthread_mutex_init(&s->shard[i].lock, NULL);
        s->shard[i].cap = max_size / s->n_shards;
    }
    return s;
}

static void node_free(cache_node_t *n)
{
    for (unsigned i = 0; i < n->n_variants; i++)
        tg_cache_entry_put(n->variants[i]);
    free(n->variants);
    free(n->vary);
    free(n);
}

static void kt_node_free(tg_kt_node_t *k)
{
    node_free((cache_node_t *)k);
}

void tg_cache_store_free(tg_cache_store_t *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->n_shards; i++) {
        tg_keytab_clear(&s->shard[i].kt, kt_node_free); /* fills are gone: their exchanges ended first */
        pthread_mutex_destroy(&s->shard[i].lock);
    }
    free(s);
}

static cache_shard_t *shard_for(tg_cache_store_t *s, const char *key, size_t klen, uint64_t *hash)
{
    *hash = tg_siphash(&s->hkey, key, klen);
    return &s->shard[(*hash >> 32) % s->n_shards];
}

static void lru_unlink(cache_shard_t *sh, cache_node_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        sh->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        sh->tail = n->prev;
    n->prev = n->next = NULL;
}

static void lru_front(cache_shard_t *sh, cache_node_t *n)
{
    if (sh->head == n)
        return;
    if (n->prev || n->next || sh->tail == n)
        lru_unlink(sh, n);
    n->next = sh->head;
    if (sh->head)
        sh->head->prev = n;
    sh->head = n;
    if (sh->tail == NULL)
        sh->tail = n;
}

static void account(tg_cache_store_t *s, cache_shard_t *sh, cache_node_t *n, ssize_t delta, long entries)
{
    n->mem += (size_t)delta;
    sh->bytes += (size_t)delta;
    atomic_fetch_add(&s->bytes, (uint64_t)delta);
    atomic_fetch_add(&s->entries, (uint64_t)entries);
}

/* Drops variant i of n (under the lock). */
static void drop_variant(tg_cache_store_t *s, cache_shard_t *sh, cache_node_t *n, unsigned i)
{
    tg_cache_entry_t *e = n->variants[i];
    account(s, sh, n, -(ssize_t)e->mem, -1);
    memmove(&n->variants[i], &n->variants[i + 1], (n->n_variants - i - 1) * sizeof(*n->variants));
    n->n_variants--;
    tg_cache_entry_put(e);
}

/* Unlinks and frees a node nobody waits on (under the lock). */
static void node_remove(tg_cache_store_t *s, cache_shard_t *sh, cache_node_t *n)
{
    while (n->n_variants > 0)
        drop_variant(s, sh, n, n->n_variants - 1);
    account(s, sh, n, -(ssize_t)n->mem, 0);
    tg_keytab_remove(&sh->kt, &n->kt);
    lru_unlink(sh, n);
    node_free(n);
}

/* Drops a node's entries; the node goes too unless a fill runs on it.
 * Returns the entries dropped. */
static size_t node_clear(tg_cache_store_t *s, cache_shard_t *sh, cache_node_t *n)
{
    size_t dropped = n->n_variants;
    if (n->fills != NULL) {
        while (n->n_variants > 0)
            drop_variant(s, sh, n, n->n_variants - 1);
    } else {
        node_remove(s, sh, n);
    }
    return dropped;
}

static cache_node_t *find(cache_shard_t *sh, uint64_t hash, const char *key, size_t klen)
{
    return (cache_node_t *)tg_keytab_find(&sh->kt, hash, key, klen);
}

static cache_node_t *node_new(tg_cache_store_t *s, cache_shard_t *sh, uint64_t hash, const char *key, size_t klen)
{
    cache_node_t *n = calloc(1, sizeof(*n) + klen + 1);
    if (n == NULL)
        return NULL;
    if ((n->variants = calloc(s->max_variants, sizeof(*n->variants))) == NULL) {
        free(n);
        return NULL;
    }
    memcpy(n->key, key, klen);
    n->kt.hash = hash;
    n->kt.key = n->key;
    n->kt.keylen = klen;
    if (tg_keytab_insert(&sh->kt, &n->kt) < 0) {
        free(n->variants);
        free(n);
        return NULL;
    }
    lru_front(sh, n);
    account(s, sh, n, (ssize_t)(sizeof(*n) + klen + 1 + s->max_variants * sizeof(*n->variants)), 0);
    return n;
}

int tg_cache_variant(const char *vary, const tg_headers_t *req, char *out)
{
    size_t len = 0;
    if (vary == NULL)
        return 0;
    const char *p = vary;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t nl = end ? (size_t)(end - p) : strlen(p);
        if (nl == 1 && *p == '*')
            return -1;
        for (size_t i = 0; i < req->n; i++) { /* every line of the field, in order */
            const tg_header_t *h = &req->v[i];
            if (h->name_len != nl || strncasecmp(h->name, p, nl) != 0)
                continue;
            const char *v = h->value;
            size_t vl = h->value_len;
            while (vl > 0 && (*v == ' ' || *v == '\t'))
                v++, vl--;
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (len + vl + 2 > TG_CACHE_VARIANT_MAX)
                return -1;
            memcpy(out + len, v, vl);
            len += vl;
            out[len++] = ',';
        }
        if (len + 1 > TG_CACHE_VARIANT_MAX)
            return -1;
        out[len++] = '\n'; /* a field absent and a field empty differ from the next name on */
        p += nl + (end != NULL);
    }
    return (int)len;
}

/* The variant of n that answers this request (under the lock). */
static tg_cache_entry_t *match(const cache_node_t *n, const tg_headers_t *req)
{
    char v[TG_CACHE_VARIANT_MAX];
    int vl = tg_cache_variant(n->vary, req, v);
    if (vl < 0)
        return NULL;
    for (unsigned i = n->n_variants; i-- > 0;) {
        tg_cache_entry_t *e = n->variants[i];
        if (e->variant_len == (size_t)vl && memcmp(e->variant, v, (size_t)vl) == 0)
            return e;
    }
    return NULL;
}

tg_cache_entry_t *tg_cache_lookup(tg_cache_store_t *s, const char *key, size_t klen, const tg_headers_t *req)
{
    uint64_t hash;
    cache_shard_t *sh = shard_for(s, key, klen, &hash);
    pthread_mutex_lock(&sh->lock);
    cache_node_t *n = find(sh, hash, key, klen);
    tg_cache_entry_t *e = n ? match(n, req) : NULL;
    if (e != NULL) {
        tg_cache_entry_ref(e);
        lru_front(sh, n);
    }
    pthread_mutex_unlock(&sh->lock);
    return e;
}

tg_cache_begin_t tg_cache_begin(tg_cache_store_t *s, const char *key, size_t klen, const tg_headers_t *req,
                                tg_cache_fill_t **fill, tg_cache_waiter_t *w)
{
    uint64_t hash;
    char v[TG_CACHE_VARIANT_MAX];
    cache_shard_t *sh = shard_for(s, key, klen, &hash);
    pthread_mutex_lock(&sh->lock);
    cache_node_t *n = find(sh, hash, key, klen);
    if (n != NULL && n->pass) {
        pthread_mutex_unlock(&sh->lock);
        return TG_CACHE_PASS;
    }
    /* the variant as far as the key's Vary is known ("" before its first response) */
    int vl = n ? tg_cache_variant(n->vary, req, v) : 0;
    if (vl < 0) {
        pthread_mutex_unlock(&sh->lock);
        return TG_CACHE_PASS;
    }
    for (tg_cache_fill_t *f = n ? n->fills : NULL; f != NULL; f = f->next) {
        if (f->variant_len != (size_t)vl || memcmp(f->variant, v, (size_t)vl) != 0)
            continue;
        if (w == NULL) {
            pthread_mutex_unlock(&sh->lock);
            return TG_CACHE_BUSY;
        }
        w->next = f->waiters;
        w->fill = f;
        w->shard = (unsigned)(sh - s->shard);
        w->orphan = 0;
        atomic_fetch_add(&s->waiting, 1);
        w->queued = 1;
        f->waiters = w;
        pthread_mutex_unlock(&sh->lock);
        return TG_CACHE_WAIT;
    }
    if (n == NULL && (n = node_new(s, sh, hash, key, klen)) == NULL) {
        pthread_mutex_unlock(&sh->lock);
        return TG_CACHE_PASS;
    }
    tg_cache_fill_t *f = malloc(sizeof(*f) + (size_t)vl);
    if (f == NULL) {
        if (n->n_variants == 0 && n->fills == NULL && !n->pass)
            node_remove(s, sh, n);
        pthread_mutex_unlock(&sh->lock);
        return TG_CACHE_PASS;
    }
    f->node = n;
    f->waiters = NULL;
    f->variant_len = (size_t)vl;
    memcpy(f->variant, v, (size_t)vl);
    f->next = n->fills;
    n->fills = f;
    pthread_mutex_unlock(&sh->lock);
    *fill = f;
    return TG_CACHE_FILL;
}

/* Evicts least recently used keys until the shard is in budget (under
 * the lock); keep: the node just stored into. Keys being filled stay. */
static void evict(tg_cache_store_t *s, cache_shard_t *sh, cache_node_t *keep)
{
    cache_node_t *n = sh->tail;
    while (sh->bytes > sh->cap && n != NULL) {
        cache_node_t *prev = n->prev;
        if (n != keep && n->fills == NULL) {
            atomic_fetch_add(&s->evictions, n->n_variants);
            node_remove(s, sh, n);
        }
        n = prev;
    }
    /* still over: the key stored into gives up its older variants */
    while (sh->bytes > sh->cap && keep->n_variants > 1) {
        atomic_fetch_add(&s->evictions, 1);
        drop_variant(s, sh, keep, 0);
    }
}

/* "a\nb" from a newline list, compared to the node's. */
static int same_vary(const char *a, const char *b)
{
    if (a == NULL || *a == '\0')
        return b == NULL || *b == '\0';
    return b != NULL && strcmp(a, b) == 0;
}

int tg_cache_insert(tg_cache_store_t *s, const char *key, size_t klen, const char *vary, tg_cache_entry_t *e)
{
    uint64_t hash;
    if (e->mem > s->shard[0].cap) {
        tg_cache_entry_put(e);
        return -1;
    }
    cache_shard_t *sh = shard_for(s, key, klen, &hash);
    pthread_mutex_lock(&sh->lock);
    cache_node_t *n = find(sh, hash, key, klen);
    if (n == NULL && (n = node_new(s, sh, hash, key, klen)) == NULL)
        goto fail;
    if (!same_vary(vary, n->vary)) { /* a new Vary: the variants made under the old one no longer match */
        char *nv = vary && *vary ? strdup(vary) : NULL;
        if (vary && *vary && nv == NULL)
            goto fail;
        while (n->n_variants > 0)
            drop_variant(s, sh, n, n->n_variants - 1);
        size_t old = n->vary ? strlen(n->vary) + 1 : 0, now = nv ? strlen(nv) + 1 : 0;
        account(s, sh, n, (ssize_t)now - (ssize_t)old, 0);
        free(n->vary);
        n->vary = nv;
    }
    for (unsigned i = 0; i < n->n_variants; i++)
        if (n->variants[i]->variant_len == e->variant_len &&
            memcmp(n->variants[i]->variant, e->variant, e->variant_len) == 0) {
            drop_variant(s, sh, n, i);
            break;
        }
    if (n->n_variants == s->max_variants) {
        atomic_fetch_add(&s->evictions, 1);
        drop_variant(s, sh, n, 0);
    }
    n->variants[n->n_variants++] = e;
    n->pass = 0;
    account(s, sh, n, (ssize_t)e->mem, 1);
    lru_front(sh, n);
    evict(s, sh, n);
    pthread_mutex_unlock(&sh->lock);
    return 0;
fail:
    pthread_mutex_unlock(&sh->lock);
    tg_cache_entry_put(e);
    return -1;
}

void tg_cache_fill_end(tg_cache_store_t *s, tg_cache_fill_t *f, int pass)
{
    cache_node_t *n = f->node;
    cache_shard_t *sh = shard_for(s, n->key, n->kt.keylen, &(uint64_t){ 0 });
    tg_filter_waker_t local[16], *wake = local;
    size_t nw = 0, cap = 16;
    pthread_mutex_lock(&sh->lock);
    for (tg_cache_fill_t **pp = &n->fills; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    /* the wakers are copied out under the lock: a waiter's exchange may
     * end (and its arena go) as soon as it is no longer queued */
    size_t left = 0;
    for (tg_cache_waiter_t *w = f->waiters; w != NULL; w = w->next) {
        w->queued = 0;
        w->fill = NULL;
        left++;
        if (nw == cap) {
            tg_filter_waker_t *bigger = malloc(cap * 2 * sizeof(*bigger));
            if (bigger == NULL) {
                w->orphan = 1; /* no wake: it goes on by itself at its collapse_timeout */
                continue;
            }
            memcpy(bigger, wake, nw * sizeof(*wake));
            if (wake != local)
                free(wake);
            wake = bigger;
            cap *= 2;
        }
        wake[nw++] = w->waker;
    }
    atomic_fetch_sub(&s->waiting, left);
    if (pass)
        n->pass = 1;
    else if (n->n_variants == 0 && n->fills == NULL && !n->pass)
        node_remove(s, sh, n);
    pthread_mutex_unlock(&sh->lock);
    free(f);
    for (size_t i = 0; i < nw; i++)
        if (tg_filter_wake(&wake[i], s->wake) < 0)
            tg_warn("cache: out of memory waking a collapsed request; it goes upstream at its collapse_timeout");
    if (wake != local)
        free(wake);
}

int tg_cache_wait_cancel(tg_cache_store_t *s, tg_cache_waiter_t *w)
{
    cache_shard_t *sh = &s->shard[w->shard];
    pthread_mutex_lock(&sh->lock);
    int own = w->queued || w->orphan;
    if (w->queued) {
        for (tg_cache_waiter_t **pp = &w->fill->waiters; *pp != NULL; pp = &(*pp)->next)
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        w->queued = 0;
        w->fill = NULL;
        atomic_fetch_sub(&s->waiting, 1);
    }
    w->orphan = 0;
    pthread_mutex_unlock(&sh->lock);
    return own;
}

size_t tg_cache_purge_key(tg_cache_store_t *s, const char *key, size_t klen)
{
    uint64_t hash;
    cache_shard_t *sh = shard_for(s, key, klen, &hash);
    pthread_mutex_lock(&sh->lock);
    cache_node_t *n = find(sh, hash, key, klen);
    size_t dropped = 0;
    if (n != NULL) {
        n->pass = 0;
        dropped = node_clear(s, sh, n);
    }
    pthread_mutex_unlock(&sh->lock);
    atomic_fetch_add(&s->purged, dropped);
    return dropped;
}

size_t tg_cache_purge_prefix(tg_cache_store_t *s, const char *host, const char *prefix)
{
    size_t dropped = 0, hl = host ? strlen(host) : 0, pl = strlen(prefix);
    for (unsigned i = 0; i < s->n_shards; i++) {
        cache_shard_t *sh = &s->shard[i];
        pthread_mutex_lock(&sh->lock);
        for (cache_node_t *n = sh->head, *next; n != NULL; n = next) {
            next = n->next;
            const char *path = strchr(n->key, '/'); /* keys are AUTHORITY/PATH?QUERY */
            if (path == NULL || strncmp(path, prefix, pl) != 0)
                continue;
            if (host != NULL && ((size_t)(path - n->key) != hl || strncasecmp(n->key, host, hl) != 0))
                continue;
            n->pass = 0;
            dropped += node_clear(s, sh, n);
        }
        pthread_mutex_unlock(&sh->lock);
    }
    atomic_fetch_add(&s->purged, dropped);
    return dropped;
}

void tg_cache_store_stats(tg_cache_store_t *s, tg_cache_stats_t *out)
{
    out->entries = atomic_load(&s->entries);
    out->bytes = atomic_load(&s->bytes);
    out->evictions = atomic_load(&s->evictions);
    out->purged = atomic_load(&s->purged);
    out->waiting = atomic_load(&s->waiting);
}
