/*
 * filters/limited.c — see limited.h.
 */
#include "filters/limited.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/node.h"
#include "proxy/base/json.h"
#include "proxy/base/siphash.h"

#define SLOTS 6         /* 10-second slots: the last minute */
#define SLOT_MS 10000
#define SHOWN 72        /* bytes of a key as shown, with its NUL */
#define PLAN 40

typedef struct lim_key {
    char key[SHOWN];
    char plan[PLAN];
    uint32_t n[SLOTS];       /* refusals in each slot ... */
    int64_t at[SLOTS];       /* ... whose number is this (now / SLOT_MS) */
    uint64_t last_ms;
    int estimated;           /* took a busier key's place: its count includes that key's */
} lim_key_t;

typedef struct lim_stripe {
    pthread_mutex_t lock;
    lim_key_t *k;            /* TG_LIMITED_KEYS, made at the stripe's first refusal */
    size_t used;
} lim_stripe_t;

struct tg_limited {
    atomic_int refs;
    tg_show_keys_t show;
    tg_siphash_key_t hkey;
    lim_stripe_t s[TG_LIMITED_STRIPES];
};

int tg_show_keys_parse(tg_node_t *n, const tg_filter_key_t *k, tg_show_keys_t *out)
{
    static const char *const names[] = { "plain", "truncate", "hash" };
    if (!tg_node_present(n)) {
        *out = TG_SHOW_KEYS_PLAIN;
        for (size_t i = 0; i < k->n; i++)
            if (k->parts[i].kind == TG_KEY_HEADER)
                *out = TG_SHOW_KEYS_HASH;
        return 0;
    }
    char *s = tg_node_str(n, "show_keys");
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (tg_show_keys_t)i;
            free(s);
            return 0;
        }
    tg_node_error(n, "show_keys: '%s' is not one of plain, truncate, hash", s);
    free(s);
    return -1;
}

tg_limited_t *tg_limited_new(tg_show_keys_t show)
{
    tg_limited_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    if (tg_siphash_random_key(&l->hkey) < 0) {
        free(l);
        return NULL;
    }
    atomic_init(&l->refs, 1);
    l->show = show;
    for (size_t i = 0; i < TG_LIMITED_STRIPES; i++)
        pthread_mutex_init(&l->s[i].lock, NULL);
    return l;
}

void tg_limited_inherit(tg_limited_t **l, tg_show_keys_t show, tg_limited_t *old, tg_show_keys_t old_show)
{
    if (*l == NULL && show == old_show) /* who was refused stays listed */
        *l = tg_limited_ref(old);
}

int tg_limited_start(tg_limited_t **l, tg_show_keys_t show, const char *filter, tg_errors_t *errs)
{
    if (*l == NULL && (*l = tg_limited_new(show)) == NULL) {
        tg_errors_add(errs, "%s: out of memory", filter);
        return -1;
    }
    return 0;
}

tg_limited_t *tg_limited_ref(tg_limited_t *l)
{
    if (l != NULL)
        atomic_fetch_add(&l->refs, 1);
    return l;
}

void tg_limited_unref(tg_limited_t *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    for (size_t i = 0; i < TG_LIMITED_STRIPES; i++) {
        pthread_mutex_destroy(&l->s[i].lock);
        free(l->s[i].k);
    }
    free(l);
}

tg_show_keys_t tg_limited_show(const tg_limited_t *l)
{
    return l->show;
}

/* Appends one byte as shown: printable ASCII as is, others as %XX (the
 * key builder escaped controls already; bytes past ASCII are written so
 * that what is shown is always valid UTF-8). */
static size_t put_shown(char *out, size_t n, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    if (c >= 0x20 && c < 0x7f) {
        out[n++] = (char)c;
    } else {
        out[n++] = '%';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 15];
    }
    return n;
}

/* The key as `show` has it shown, into out (SHOWN bytes). */
static void shown(const tg_limited_t *l, const char *key, size_t len, char *out)
{
    if (l->show == TG_SHOW_KEYS_HASH) {
        snprintf(out, SHOWN, "hash:%012llx",
                 (unsigned long long)(tg_siphash(&l->hkey, key, len) >> 16));
        return;
    }
    size_t n = 0, part = 0;
    const size_t room = SHOWN - 8; /* a separator, an escape and the mark of a cut still fit */
    for (size_t i = 0; i < len; i++) {
        if (key[i] == 0x1f) { /* the parts' separator (key.h) */
            memcpy(out + n, " | ", 3);
            n += 3;
            part = 0;
        } else if (l->show == TG_SHOW_KEYS_TRUNCATE && part >= 4) {
            if (part++ == 4) {
                memcpy(out + n, "...", 3);
                n += 3;
            }
        } else {
            n = put_shown(out, n, (unsigned char)key[i]);
            part++;
        }
        if (n >= room) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
    }
    out[n] = '\0';
}

static uint32_t recent(const lim_key_t *k, int64_t slot)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < SLOTS; i++)
        if (k->at[i] > slot - SLOTS && k->at[i] <= slot)
            sum += k->n[i];
    return sum;
}

static void count(lim_key_t *k, int64_t slot, uint32_t add)
{
    size_t i = (size_t)(slot % SLOTS);
    if (k->at[i] != slot) {
        k->at[i] = slot;
        k->n[i] = 0;
    }
    k->n[i] = k->n[i] > UINT32_MAX - add ? UINT32_MAX : k->n[i] + add;
}

void tg_limited_note(tg_limited_t *l, unsigned worker, const char *key, size_t len, const char *plan,
                     uint64_t now_ms)
{
    if (l == NULL)
        return;
    char show[SHOWN];
    shown(l, key, len, show);
    if (plan == NULL)
        plan = "";
    int64_t slot = (int64_t)(now_ms / SLOT_MS);
    lim_stripe_t *s = &l->s[worker % TG_LIMITED_STRIPES];
    pthread_mutex_lock(&s->lock);
    if (s->k == NULL && (s->k = calloc(TG_LIMITED_KEYS, sizeof(*s->k))) == NULL) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    lim_key_t *k = NULL, *least = NULL;
    uint32_t least_n = UINT32_MAX;
    for (size_t i = 0; i < s->used; i++) {
        lim_key_t *e = &s->k[i];
        if (strcmp(e->key, show) == 0 && strncmp(e->plan, plan, PLAN - 1) == 0) {
            k = e;
            break;
        }
        uint32_t r = recent(e, slot);
        if (least == NULL || r < least_n || (r == least_n && e->last_ms < least->last_ms)) {
            least = e;
            least_n = r;
        }
    }
    uint32_t add = 1;
    if (k == NULL) {
        if (s->used < TG_LIMITED_KEYS) {
            k = &s->k[s->used++];
            memset(k, 0, sizeof(*k));
        } else { /* the space-saving rule: the newcomer inherits the least count */
            k = least;
            memset(k, 0, sizeof(*k));
            k->estimated = least_n > 0;
            add += least_n;
        }
        snprintf(k->key, sizeof(k->key), "%s", show);
        snprintf(k->plan, sizeof(k->plan), "%s", plan);
    }
    count(k, slot, add);
    k->last_ms = now_ms;
    pthread_mutex_unlock(&s->lock);
}

typedef struct listed {
    char key[SHOWN], plan[PLAN];
    uint32_t n;
    uint64_t last_ms;
    int estimated;
} listed_t;

static int by_refusals(const void *a, const void *b)
{
    const listed_t *x = a, *y = b;
    if (x->n != y->n)
        return x->n < y->n ? 1 : -1;
    return strcmp(x->key, y->key);
}

void tg_limited_json(tg_limited_t *l, struct evbuffer *out, uint64_t now_ms)
{
    evbuffer_add_printf(out, "\"limited\": [");
    listed_t *all = l != NULL ? calloc(TG_LIMITED_STRIPES * TG_LIMITED_KEYS, sizeof(*all)) : NULL;
    size_t n = 0;
    int64_t slot = (int64_t)(now_ms / SLOT_MS);
    for (size_t i = 0; all != NULL && i < TG_LIMITED_STRIPES; i++) {
        lim_stripe_t *s = &l->s[i];
        pthread_mutex_lock(&s->lock);
        for (size_t j = 0; j < s->used; j++) {
            const lim_key_t *k = &s->k[j];
            uint32_t r = recent(k, slot);
            if (r == 0)
                continue;
            listed_t *m = NULL; /* the same key refused on another worker: one row */
            for (size_t x = 0; x < n && m == NULL; x++)
                if (strcmp(all[x].key, k->key) == 0 && strcmp(all[x].plan, k->plan) == 0)
                    m = &all[x];
            if (m == NULL) {
                m = &all[n++];
                memcpy(m->key, k->key, sizeof(m->key));
                memcpy(m->plan, k->plan, sizeof(m->plan));
            }
            m->n += r;
            m->estimated |= k->estimated;
            if (k->last_ms > m->last_ms)
                m->last_ms = k->last_ms;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (n > 0)
        qsort(all, n, sizeof(*all), by_refusals);
    for (size_t i = 0; i < n && i < TG_LIMITED_TOP; i++) {
        char key[3 * SHOWN], plan[3 * PLAN];
        tg_json_escape(key, sizeof(key), all[i].key);
        tg_json_escape(plan, sizeof(plan), all[i].plan);
        evbuffer_add_printf(out, "%s{\"key\": \"%s\", \"plan\": \"%s\", \"refusals\": %u, \"last_ms_ago\": %llu, "
                                 "\"estimated\": %s}",
                            i ? ", " : "", key, plan, all[i].n,
                            (unsigned long long)(now_ms > all[i].last_ms ? now_ms - all[i].last_ms : 0),
                            all[i].estimated ? "true" : "false");
    }
    free(all);
    evbuffer_add_printf(out, "]");
}

void tg_limited_key_json(const tg_filter_key_t *k, tg_show_keys_t show, struct evbuffer *out)
{
    static const char *const shows[] = { "plain", "truncate", "hash" };
    static const char *const kinds[] = { "client_address", "identity", "route", "header:" };
    evbuffer_add_printf(out, "\"show_keys\": \"%s\", \"key\": \"", shows[show]);
    for (size_t i = 0; i < k->n; i++) {
        char esc[256];
        tg_json_escape(esc, sizeof(esc), k->parts[i].kind == TG_KEY_HEADER ? k->parts[i].header : "");
        evbuffer_add_printf(out, "%s%s%s", i ? " | " : "", kinds[k->parts[i].kind], esc);
    }
    if (k->n == 0)
        evbuffer_add_printf(out, "client_address");
    evbuffer_add_printf(out, "\"");
}
