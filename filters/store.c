/*
 * filters/store.c — the script digest and the "denied until" cache. See
 * store.h.
 */
#include "filters/store.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

int tg_store_script_init(tg_store_script_t *s, const char *text)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    s->text = text;
    if (!EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL) || n != 20)
        return -1;
    for (unsigned i = 0; i < n; i++)
        snprintf(s->sha1 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int tg_store_ints(tg_store_status_t st, const tg_resp_value_t *v, size_t n)
{
    if (st != TG_STORE_OK || v == NULL || v->type != TG_RESP_ARRAY || v->n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v->items[i].type != TG_RESP_INTEGER)
            return 0;
    return 1;
}

int tg_deny_cache_init(tg_deny_cache_t *c)
{
    memset(c->slot, 0, sizeof(c->slot));
    return tg_siphash_random_key(&c->key);
}

uint64_t tg_deny_cache_hash(const tg_deny_cache_t *c, uint64_t set_id, const char *key, size_t len)
{
    /* the set's id, then the key: (id, key) pairs cannot collide by concatenation */
    char buf[8 + 512];
    if (len > sizeof(buf) - 8)
        len = sizeof(buf) - 8;
    memcpy(buf, &set_id, 8);
    memcpy(buf + 8, key, len);
    uint64_t h = tg_siphash(&c->key, buf, 8 + len);
    return h ? h : 1;
}

const tg_deny_entry_t *tg_deny_cache_get(const tg_deny_cache_t *c, uint64_t hash, uint64_t now_ms, uint64_t cost)
{
    const tg_deny_entry_t *e = &c->slot[hash % TG_DENY_CACHE_SLOTS];
    return e->hash == hash && now_ms < e->until_ms && cost >= e->cost ? e : NULL;
}

void tg_deny_cache_put(tg_deny_cache_t *c, uint64_t hash, uint64_t until_ms, uint64_t cost, unsigned decisive)
{
    tg_deny_entry_t *e = &c->slot[hash % TG_DENY_CACHE_SLOTS];
    *e = (tg_deny_entry_t){ .hash = hash, .until_ms = until_ms, .cost = cost > UINT32_MAX ? UINT32_MAX : (uint32_t)cost,
                            .decisive = (uint16_t)decisive };
}
