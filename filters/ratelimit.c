/*
 * filters/ratelimit.c — sliding-window rate limiting.
 *
 * Algorithm: per key and limit, a weighted two-window counter. Time is cut
 * into fixed windows of length W; the count for "the last W" at time t is
 * estimated as curr + prev * (W - elapsed) / W (rounded up), where curr
 * and prev are the counts of the current and previous fixed windows and
 * elapsed is t's offset in the current one. A request passes when every
 * limit's estimate + 1 <= limit, and is then counted in all of them.
 *
 * Shared by all workers: the table is split into 256 shards by key hash,
 * each with its own mutex held only for the few arithmetic operations of
 * one decision, so a decision is atomic (no over-admission under any
 * concurrency) and workers contend only when they hit the same shard.
 * Each shard keeps its keys in LRU order and drops, on every decision,
 * the keys idle for more than twice the longest window.
 *
 * Memory is bounded: at most max_keys keys in all (a process-wide count).
 * A new key past that evicts the least recently used key of its shard
 * that is not over a limit (evicting a limited key would hand its owner a
 * fresh budget); when the first few in LRU order all are, the table is
 * full and the filter's on_full decides. Keys are hashed with SipHash
 * under a random per-table key, so a client cannot aim its keys at one
 * shard's lock or one bucket chain.
 */
#include "filters/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#include "filters/key.h"
#include "filters/keytab.h"
#include "filters/limited.h"
#include "proxy/base/clock.h"
#include "proxy/base/json.h"
#include "proxy/base/siphash.h"

#define SHARDS 256
#define EVICT_SCAN 16 /* LRU entries looked at for one that may be evicted */

typedef struct rl_window {
    uint64_t start;          /* start of the current fixed window (ms) */
    uint64_t curr, prev;
} rl_window_t;

typedef struct rl_entry {
    tg_kt_node_t node;       /* first: the shard's table (its key points behind the windows) */
    TAILQ_ENTRY(rl_entry) lru;
    uint64_t last_ms;
    rl_window_t w[];
} rl_entry_t;

typedef struct rl_shard {
    pthread_mutex_t lock;
    tg_keytab_t kt;
    TAILQ_HEAD(, rl_entry) lru;
} rl_shard_t;

struct tg_rl_table {
    atomic_int refs;
    tg_rl_limit_t limits[TG_RL_MAX_LIMITS];
    size_t n;
    uint64_t ttl_ms;
    tg_siphash_key_t hkey;
    atomic_size_t count;     /* keys held, all shards */
    atomic_size_t max_keys;
    rl_shard_t shards[SHARDS];
};

tg_rl_table_t *tg_rl_table_new(const tg_rl_limit_t *limits, size_t n, size_t max_keys)
{
    if (n == 0 || n > TG_RL_MAX_LIMITS || max_keys == 0)
        return NULL;
    tg_rl_table_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    if (tg_siphash_random_key(&t->hkey) < 0) {
        free(t);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    atomic_init(&t->count, 0);
    atomic_init(&t->max_keys, max_keys);
    memcpy(t->limits, limits, n * sizeof(*limits));
    t->n = n;
    for (size_t i = 0; i < n; i++)
        if (2 * limits[i].window_ms > t->ttl_ms)
            t->ttl_ms = 2 * limits[i].window_ms;
    for (size_t s = 0; s < SHARDS; s++) {
        pthread_mutex_init(&t->shards[s].lock, NULL);
        TAILQ_INIT(&t->shards[s].lru);
    }
    return t;
}

tg_rl_table_t *tg_rl_table_ref(tg_rl_table_t *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

void tg_rl_table_free(tg_rl_table_t *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    for (size_t s = 0; s < SHARDS; s++) {
        rl_entry_t *e;
        while ((e = TAILQ_FIRST(&t->shards[s].lru)) != NULL) {
            TAILQ_REMOVE(&t->shards[s].lru, e, lru);
            free(e);
        }
        tg_keytab_clear(&t->shards[s].kt, NULL); /* the entries went with the LRU list */
        pthread_mutex_destroy(&t->shards[s].lock);
    }
    free(t);
}

static void roll(rl_window_t *w, uint64_t now, uint64_t W);
static uint64_t estimate(const rl_window_t *w, uint64_t now, uint64_t W);

void tg_rl_table_usage(tg_rl_table_t *t, uint64_t now_ms, uint64_t *busiest, uint64_t *at_limit)
{
    for (size_t s = 0; s < SHARDS; s++) {
        rl_shard_t *sh = &t->shards[s];
        pthread_mutex_lock(&sh->lock);
        rl_entry_t *e;
        TAILQ_FOREACH(e, &sh->lru, lru)
            for (size_t i = 0; i < t->n; i++) {
                uint64_t W = t->limits[i].window_ms;
                rl_window_t w = e->w[i];
                roll(&w, now_ms, W);
                uint64_t est = estimate(&w, now_ms, W);
                if (est > busiest[i])
                    busiest[i] = est;
                at_limit[i] += est >= t->limits[i].limit;
            }
        pthread_mutex_unlock(&sh->lock);
    }
}

size_t tg_rl_table_size(tg_rl_table_t *t)
{
    return atomic_load(&t->count);
}

void tg_rl_table_set_max_keys(tg_rl_table_t *t, size_t max_keys)
{
    atomic_store(&t->max_keys, max_keys);
}

static void unlink_entry(tg_rl_table_t *t, rl_shard_t *sh, rl_entry_t *e)
{
    tg_keytab_remove(&sh->kt, &e->node);
    TAILQ_REMOVE(&sh->lru, e, lru);
    atomic_fetch_sub(&t->count, 1);
    free(e);
}


/* Would the key's next request be refused? Such a key is never evicted. */
static int over_limit(const tg_rl_table_t *t, const rl_entry_t *e, uint64_t now)
{
    for (size_t i = 0; i < t->n; i++) {
        rl_window_t w = e->w[i];
        roll(&w, now, t->limits[i].window_ms);
        if (estimate(&w, now, t->limits[i].window_ms) + 1 > t->limits[i].limit)
            return 1;
    }
    return 0;
}

/* Makes room for one key in a full table: evicts the least recently used
 * key of the shard that is not over a limit. Returns 0, or -1 if the
 * first EVICT_SCAN keys in LRU order all are. */
static int evict_one(tg_rl_table_t *t, rl_shard_t *sh, uint64_t now)
{
    int looked = 0;
    for (rl_entry_t *e = TAILQ_FIRST(&sh->lru); e != NULL && looked < EVICT_SCAN; e = TAILQ_NEXT(e, lru), looked++) {
        if (!over_limit(t, e, now)) {
            unlink_entry(t, sh, e);
            return 0;
        }
    }
    return -1;
}

/* The key's entry, created if needed. NULL: out of memory, or (*full set)
 * no room for a new key. */
static rl_entry_t *lookup(tg_rl_table_t *t, rl_shard_t *sh, uint64_t h, const char *key, size_t len, uint64_t now,
                          int *full)
{
    tg_kt_node_t *found = tg_keytab_find(&sh->kt, h, key, len);
    if (found != NULL)
        return (rl_entry_t *)found;
    if (atomic_load(&t->count) >= atomic_load(&t->max_keys) && evict_one(t, sh, now) < 0) {
        *full = 1;
        return NULL;
    }
    rl_entry_t *e = calloc(1, sizeof(*e) + t->n * sizeof(rl_window_t) + len);
    if (e == NULL)
        return NULL;
    char *copy = (char *)&e->w[t->n];
    memcpy(copy, key, len);
    e->node = (tg_kt_node_t){ .hash = h, .key = copy, .keylen = len };
    if (tg_keytab_insert(&sh->kt, &e->node) < 0) {
        free(e);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&sh->lru, e, lru);
    atomic_fetch_add(&t->count, 1);
    return e;
}

static void roll(rl_window_t *w, uint64_t now, uint64_t W)
{
    uint64_t start = now - now % W;
    if (w->start == start)
        return;
    w->prev = w->start + W == start ? w->curr : 0;
    w->curr = 0;
    w->start = start;
}

static uint64_t estimate(const rl_window_t *w, uint64_t now, uint64_t W)
{
    uint64_t left = W - (now - w->start); /* 1..W */
    return w->curr + (w->prev * left + W - 1) / W;
}

/* Milliseconds from now until c more units fit under limit L (c <= L). */
static uint64_t wait_ms(const rl_window_t *w, uint64_t now, uint64_t W, uint64_t L, uint64_t c)
{
    uint64_t elapsed = now - w->start;
    if (w->curr + c > L) {
        /* next window: prev' = curr; need curr * (W - e) / W + c <= L */
        uint64_t to_next = W - elapsed;
        if (w->curr == 0)
            return to_next;
        uint64_t need = L > c ? W - (W * (L - c)) / w->curr : W;
        return to_next + (need > W ? W : need);
    }
    /* this window: need prev * (W - e) / W <= L - c - curr */
    uint64_t room = L - c - w->curr;
    if (w->prev == 0)
        return 0;
    uint64_t e_needed = W - (W * room) / w->prev;
    return e_needed > elapsed ? e_needed - elapsed : 1;
}

void tg_rl_check(tg_rl_table_t *t, const char *key, size_t keylen, uint64_t now_ms, tg_rl_result_t *out)
{
    tg_rl_check_cost(t, key, keylen, now_ms, 1, out);
}

void tg_rl_check_cost(tg_rl_table_t *t, const char *key, size_t keylen, uint64_t now_ms, uint64_t cost,
                      tg_rl_result_t *out)
{
    uint64_t h = tg_siphash(&t->hkey, key, keylen);
    rl_shard_t *sh = &t->shards[h % SHARDS];
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&sh->lock);
    rl_entry_t *old;
    while ((old = TAILQ_FIRST(&sh->lru)) != NULL && old->last_ms + t->ttl_ms < now_ms)
        unlink_entry(t, sh, old);
    int full = 0;
    rl_entry_t *e = lookup(t, sh, h >> 8, key, keylen, now_ms, &full);
    if (e == NULL) { /* no room, or out of memory: not counted; the caller decides */
        pthread_mutex_unlock(&sh->lock);
        out->allowed = 1;
        out->table_full = 1;
        return;
    }
    e->last_ms = now_ms;
    TAILQ_REMOVE(&sh->lru, e, lru);
    TAILQ_INSERT_TAIL(&sh->lru, e, lru);
    int allowed = 1;
    uint64_t least = UINT64_MAX, retry = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint64_t W = t->limits[i].window_ms, L = t->limits[i].limit;
        roll(&e->w[i], now_ms, W);
        uint64_t est = estimate(&e->w[i], now_ms, W);
        if (est + cost > L) {
            allowed = 0;
            uint64_t wms = cost > L ? UINT64_MAX / 2 : wait_ms(&e->w[i], now_ms, W, L, cost);
            if (wms > retry)
                retry = wms;
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        uint64_t W = t->limits[i].window_ms, L = t->limits[i].limit;
        if (allowed)
            e->w[i].curr += cost;
        uint64_t est = estimate(&e->w[i], now_ms, W);
        uint64_t rem = est >= L ? 0 : L - est;
        if (rem < least || (rem == least && !allowed)) {
            least = rem;
            out->decisive = i;
            out->reset_s = (e->w[i].start + W - now_ms + 999) / 1000;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    out->allowed = allowed;
    out->remaining = least;
    if (!allowed) {
        out->retry_after_s = retry >= UINT64_MAX / 2 ? 0 : (retry + 999) / 1000;
        if (out->retry_after_s == 0)
            out->retry_after_s = 1;
        out->reset_s = out->retry_after_s; /* when quota is available again */
    }
}

void tg_rl_adjust(tg_rl_table_t *t, const char *key, size_t keylen, uint64_t charged_ms, int64_t delta)
{
    if (delta == 0)
        return;
    uint64_t h = tg_siphash(&t->hkey, key, keylen);
    rl_shard_t *sh = &t->shards[h % SHARDS];
    pthread_mutex_lock(&sh->lock);
    rl_entry_t *e = (rl_entry_t *)tg_keytab_find(&sh->kt, h >> 8, key, keylen);
    for (size_t i = 0; e != NULL && i < t->n; i++) {
        uint64_t W = t->limits[i].window_ms, start = charged_ms - charged_ms % W;
        /* the window the charge went into: still current, or just past */
        uint64_t *slot = e->w[i].start == start ? &e->w[i].curr : e->w[i].start == start + W ? &e->w[i].prev : NULL;
        if (slot == NULL)
            continue; /* long gone: nothing left to correct */
        if (delta > 0)
            *slot += (uint64_t)delta;
        else
            *slot = *slot > (uint64_t)-delta ? *slot - (uint64_t)-delta : 0;
    }
    pthread_mutex_unlock(&sh->lock);
}

/* ---- the filter ---- */

/* its counters (tg_filter_count); quota counts in the same series under
 * its own rows (the old names it keeps as aliases) */
enum { RL_ALLOWED, RL_LIMITED, RL_SHADOW_LIMITED, RL_TAGGED, RL_TABLE_FULL, RL_CACHED, RL_STORE_ALLOWED,
       RL_STORE_DENIED };
#define RL_DECISIONS "tollgate_ratelimit_decisions_total"
#define RL_DECISIONS_HELP "rate_limit filter decisions, by route."
#define RL_STORE_ERRORS "tollgate_ratelimit_store_error_decisions_total"
#define RL_STORE_ERRORS_HELP                                                                                           \
    "Requests a rate_limit with store: redis decided by on_store_error (Redis failed, timed out or was "               \
    "unreachable), by route and decision."
static const tg_filter_counter_t rl_counters[] = {
    [RL_ALLOWED] = { RL_DECISIONS, RL_DECISIONS_HELP, "decision", "allowed" },
    [RL_LIMITED] = { RL_DECISIONS, RL_DECISIONS_HELP, "decision", "limited" },
    [RL_SHADOW_LIMITED] = { RL_DECISIONS, RL_DECISIONS_HELP, "decision", "shadow_limited" },
    [RL_TAGGED] = { RL_DECISIONS, RL_DECISIONS_HELP, "decision", "tagged" },
    [RL_TABLE_FULL] = { "tollgate_ratelimit_table_full_total",
                        "New rate-limit keys a full table (max_keys) had no room for, by route; on_full decided them." },
    [RL_CACHED] = { "tollgate_ratelimit_deny_cache_hits_total",
                    "Requests a rate_limit with store: redis refused from the worker's denied-until cache, without a "
                    "round trip, by route." },
    [RL_STORE_ALLOWED] = { RL_STORE_ERRORS, RL_STORE_ERRORS_HELP, "decision", "allow" },
    [RL_STORE_DENIED] = { RL_STORE_ERRORS, RL_STORE_ERRORS_HELP, "decision", "deny" },
};

typedef struct rl_conf {
    tg_filter_key_t key;       /* the filter's; its overrides share it (a shallow copy) */
    unsigned counters;         /* the first bit of its counters (the overrides' too) */
    tg_rl_limit_t limits[TG_RL_MAX_LIMITS];
    size_t n_limits;
    int response_headers;      /* also on allowed responses */
    int legacy;                /* RateLimit-Limit/-Remaining/-Reset instead of the draft fields */
    uint64_t max_keys;
    int on_full_allow;         /* a new key that finds the table full passes (uncounted); default: 429 */
    int shadow;                /* mode: shadow — decide and count, never refuse (outcome shadow_limited) */
    int tag;                   /* on_limit: tag — forward what is over the limit, marked (TG_RL_TAG_HEADER) */
    tg_rl_table_t *table;
    /* Plans: limit sets picked by the client's identity (first match wins),
     * each with its own counters. An override is an rl_conf_t with its own
     * policy name, identities, limits and table; the rest is the filter's. */
    char *policy;              /* the name in RateLimit headers: "default", or the override's */
    char **identities;         /* an override's: whom it applies to ... */
    size_t n_identities;
    char **claim_names, **claim_values; /* ... or whose verified token has all these claims */
    size_t n_claims;
    struct rl_conf *overrides;
    size_t n_overrides;
    /* Cost (units a request takes; the filter's own, shared by its plans). */
    uint64_t cost;             /* fixed cost (default 1) ... */
    char *cost_header;         /* ... or read from this request header, clamped to [min_cost, max_cost] */
    uint64_t min_cost, max_cost;
    char **cost_routes;        /* route_costs: a fixed cost for these routes */
    uint64_t *route_cost;
    size_t n_route_costs;
    char *reconcile;           /* response header or trailer with what the request really cost */
    /* store: redis — the counters live in the shared store (filters/store.h) */
    int redis;
    int on_store_error_deny;   /* the store failed: refuse (503) instead of letting it pass */
    char *ns;                  /* the counters' name in the store: `name`, else the plan and its limits */
    uint64_t set_id;           /* this set's id in the worker's deny cache (random per load) */
    tg_store_script_t check_script, adjust_script; /* the filter's */
    /* The status page's (the filter's, for all its plans). */
    tg_show_keys_t show_keys;
    tg_limited_t *limited;     /* made by start, or passed on by inherit */
} rl_conf_t;

/* A charge kept for reconciling once the response ends (fx->state); with
 * store: redis, also what the paused request waits on. */
typedef struct rl_charge {
    const struct rl_conf *filter, *set;
    char *key;
    size_t len;
    const char *client_key;    /* store: redis — the key before the store's prefix (limited.h) */
    size_t client_len;
    uint64_t cost, at_ms;      /* at_ms: the store's clock with store: redis */
    uint64_t deny_hash;        /* store: redis, the deny-cache slot */
    int counted;               /* the store counted it (reconcile then applies) */
} rl_charge_t;

/* What a limit set owns (an override shares the filter's key parts). */
static void set_free(rl_conf_t *c)
{
    tg_rl_table_free(c->table);
    free(c->policy);
    free(c->ns);
    for (size_t i = 0; i < c->n_identities; i++)
        free(c->identities[i]);
    free(c->identities);
    for (size_t i = 0; i < c->n_claims; i++) {
        free(c->claim_names[i]);
        free(c->claim_values[i]);
    }
    free(c->claim_names);
    free(c->claim_values);
}

/* claim: { name: value, ... } — every claim must hold (values as text:
 * "pro", "42", "true"). */
static int parse_claims(tg_node_t *n, rl_conf_t *o)
{
    if (!tg_node_is_map(n)) {
        tg_node_error(n, "claim must be a mapping of claim names to values, e.g. { plan: pro }");
        return -1;
    }
    if (tg_node_map_keys(n, &o->claim_names, &o->n_claims) < 0)
        return -1;
    if (o->n_claims == 0) {
        tg_node_error(n, "claim: name at least one claim");
        return -1;
    }
    if ((o->claim_values = calloc(o->n_claims, sizeof(char *))) == NULL)
        return -1;
    for (size_t i = 0; i < o->n_claims; i++) {
        tg_node_t v = tg_node_map_get(n, o->claim_names[i]);
        if ((o->claim_values[i] = tg_node_str(&v, "claim value")) == NULL)
            return -1;
    }
    return 0;
}

static void rl_destroy(void *p)
{
    rl_conf_t *c = p;
    if (c == NULL)
        return;
    tg_filter_key_free(&c->key);
    tg_limited_unref(c->limited);
    for (size_t i = 0; i < c->n_overrides; i++)
        set_free(&c->overrides[i]);
    free(c->overrides);
    free(c->cost_header);
    for (size_t i = 0; i < c->n_route_costs; i++)
        free(c->cost_routes[i]);
    free(c->cost_routes);
    free(c->route_cost);
    free(c->reconcile);
    set_free(c);
    free(c);
}

/* cost: N | header:NAME, min_cost, max_cost, route_costs: { ROUTE: N },
 * reconcile: header:NAME. A cost never exceeds the smallest limit (it
 * could never pass). */
static int parse_cost(tg_node_t *cost, tg_node_t *min, tg_node_t *max, tg_node_t *routes, tg_node_t *rec, rl_conf_t *c)
{
    uint64_t smallest = UINT64_MAX;
    for (size_t i = 0; i < c->n_limits; i++)
        if (c->limits[i].limit < smallest)
            smallest = c->limits[i].limit;
    c->cost = 1;
    c->min_cost = 1;
    c->max_cost = smallest;
    int rc = 0;
    if (tg_node_present(cost)) {
        char *v = tg_node_str(cost, "cost");
        if (v != NULL && strncmp(v, "header:", 7) == 0 && tg_node_header_name_ok(v + 7)) {
            c->cost_header = strdup(v + 7);
        } else if (v == NULL || tg_node_uint(cost, "cost", 1, smallest, &c->cost) < 0) {
            if (v != NULL && strncmp(v, "header:", 7) == 0)
                tg_node_error(cost, "cost: '%s' is not header:NAME with a valid header name", v);
            rc = -1;
        }
        free(v);
    }
    if (tg_node_present(min) && tg_node_uint(min, "min_cost", 1, smallest, &c->min_cost) < 0)
        rc = -1;
    if (tg_node_present(max) && tg_node_uint(max, "max_cost", 1, smallest, &c->max_cost) < 0)
        rc = -1;
    if (rc == 0 && c->min_cost > c->max_cost) {
        tg_node_error(min, "min_cost: more than max_cost");
        rc = -1;
    }
    if (rc == 0 && (tg_node_present(min) || tg_node_present(max)) && c->cost_header == NULL) {
        tg_node_error(tg_node_present(min) ? min : max, "min_cost and max_cost bound cost: header:NAME");
        rc = -1;
    }
    if (tg_node_present(routes)) {
        if (!tg_node_is_map(routes) || tg_node_map_keys(routes, &c->cost_routes, &c->n_route_costs) < 0) {
            if (!tg_node_is_map(routes))
                tg_node_error(routes, "route_costs must be a mapping of route names to costs, e.g. { chat: 10 }");
            return -1;
        }
        if ((c->route_cost = calloc(c->n_route_costs ? c->n_route_costs : 1, sizeof(uint64_t))) == NULL)
            return -1;
        for (size_t i = 0; i < c->n_route_costs; i++) {
            tg_node_t v = tg_node_map_get(routes, c->cost_routes[i]);
            if (tg_node_uint(&v, "route cost", 1, smallest, &c->route_cost[i]) < 0)
                rc = -1;
        }
    }
    if (tg_node_present(rec)) {
        char *v = tg_node_str(rec, "reconcile");
        if (v != NULL && strncmp(v, "header:", 7) == 0 && tg_node_header_name_ok(v + 7))
            c->reconcile = strdup(v + 7);
        else {
            if (v != NULL)
                tg_node_error(rec, "reconcile: '%s' is not header:NAME with a valid header name", v);
            rc = -1;
        }
        free(v);
    }
    return rc;
}


static const tg_key_t limit_item_keys[] = {
    { "limit", TG_KEY_INT, "integer 1–10^9 (required)", "—", "requests (units) allowed per window", .min = 1,
      .max = 1000000000, .flags = TG_KEY_REQUIRED },
    { "window", TG_KEY_DURATION, "duration (required)", "—", "the sliding window", .flags = TG_KEY_REQUIRED },
};
static const tg_keyset_t limit_item = TG_KEYSET("filter.rate_limit.limit", "rate_limit limits[]", limit_item_keys);

static const tg_key_t override_keys[] = {
    { "name", TG_KEY_STRING, "token (required)", "—", "the plan's name, in RateLimit headers and metrics",
      .flags = TG_KEY_REQUIRED },
    { "identities", TG_KEY_STRINGS, "list of identities", "none", "whom the plan is for (the auth filter's "
                                                                  "identity)" },
    { "limit", TG_KEY_INT, "integer 1–10^9", "—", "one limit (shorthand, with `window`)", .min = 1,
      .max = 1000000000 },
    { "window", TG_KEY_DURATION, "duration", "—", "the window of `limit`" },
    { "limits", TG_KEY_LIST, "list of `{ limit, window }`", "—", "several limits, all must have room",
      .sub = &limit_item },
    { "claim", TG_KEY_DICT, "mapping claim → value", "none",
      "the plan is for verified JWTs whose top-level claims all have these values (as text)" },
};
static const tg_keyset_t override_item = TG_KEYSET("filter.rate_limit.override", "rate_limit overrides[]",
                                                   override_keys);

static const tg_key_t rl_keys[] = {
    { "key", TG_KEY_STRING,
      "one of `client_address`, `identity`, `route`, `header:NAME`, or a list of up to 4 of them (combined). "
      "`%`, `{`, `}` and control bytes of a value are percent-escaped and a key over 256 bytes is counted under "
      "its SHA-256, never cut ([security.md](security.md))",
      "`client_address`",
      "what is counted; `identity` is the auth filter's identity, else the verified mTLS client certificate's "
      "subject, else the client address",
      .flags = TG_KEY_OR_LIST },
    { "limit", TG_KEY_INT, "integer 1–10^9", "—", "one limit (shorthand, with `window`)", .min = 1,
      .max = 1000000000 },
    { "window", TG_KEY_DURATION, "duration", "—", "the window of `limit`" },
    { "limits", TG_KEY_LIST, "list of `{ limit, window }`", "—", "several limits, all must have room (up to 8)",
      .sub = &limit_item },
    { "response_headers", TG_KEY_BOOL, "bool", "`false`", "also send the RateLimit fields on allowed responses",
      TG_FIELD(rl_conf_t, response_headers, TG_FIELD_INT) },
    { "header_style", TG_KEY_ENUM, "`draft` or `legacy`", "`draft`",
      "`draft`: `RateLimit-Policy: \"default\";q=<limit>;w=<window s>` and `RateLimit: "
      "\"default\";r=<remaining>;t=<seconds>` (draft-ietf-httpapi-ratelimit-headers); `legacy`: `RateLimit-Limit`, "
      "`RateLimit-Remaining`, `RateLimit-Reset`",
      .choices = "draft|legacy", TG_FIELD(rl_conf_t, legacy, TG_FIELD_INT) },
    { "max_keys", TG_KEY_INT, "integer 1–10^8", "`100000`",
      "most keys the filter's table holds (all workers together); bounds its memory", .min = 1, .max = 100000000,
      TG_FIELD(rl_conf_t, max_keys, TG_FIELD_U64), .def = TG_RL_DEFAULT_MAX_KEYS },
    { "on_full", TG_KEY_ENUM, "`deny` or `allow`", "`deny`",
      "a new key that finds the table full of keys that are over their limits: refused (`429 {\"error\": \"rate "
      "limiter is full\"}`, `Retry-After: 1`), or let through uncounted",
      .choices = "deny|allow", TG_FIELD(rl_conf_t, on_full_allow, TG_FIELD_INT) },
    { "mode", TG_KEY_ENUM, "`enforce` or `shadow`", "`enforce`",
      "`shadow` tries a limit in production without refusing anyone", .choices = "enforce|shadow",
      TG_FIELD(rl_conf_t, shadow, TG_FIELD_INT) },
    { "on_limit", TG_KEY_ENUM, "`reject` or `tag`", "`reject`",
      "over the limit: `429`, or `tag`: forward the request with `x-ratelimit-exceeded: "
      "\"default\";q=LIMIT;w=WINDOW_S` (the limit it is over) for the upstream to decide. A tagged request is not "
      "counted, and a client-sent `x-ratelimit-exceeded` is removed on arrival. `mode: shadow` takes precedence",
      .choices = "reject|tag", TG_FIELD(rl_conf_t, tag, TG_FIELD_INT) },
    { "overrides", TG_KEY_LIST, "list of plans", "none",
      "plans: another limit set for the listed identities or the tokens carrying the claims",
      .sub = &override_item },
    { "cost", TG_KEY_INT, "integer, or `header:NAME`", "`1`",
      "units one request takes: an integer from 1 to the smallest limit; `header:NAME`: what the client declares in "
      "that request header, clamped to `[min_cost, max_cost]`",
      .flags = TG_KEY_OR_STRING },
    { "min_cost", TG_KEY_INT, "integer", "`1`",
      "the least a declared cost counts (only with `cost: header:NAME`); a missing or non-numeric declaration costs "
      "this" },
    { "max_cost", TG_KEY_INT, "integer", "the smallest limit", "the most a declared cost counts (only with `cost: "
                                                                 "header:NAME`)" },
    { "route_costs", TG_KEY_DICT, "mapping route → integer", "none",
      "a fixed cost per route name, over `cost` (one global limit, costed per route)" },
    { "reconcile", TG_KEY_STRING, "`header:NAME`", "none",
      "the response header or trailer (trailers win) that says what the request really cost; the charge is "
      "corrected by the difference when the response ends" },
    { "store", TG_KEY_ENUM, "`local` or `redis`", "`local`",
      "where the counters live: in this process (exact across its workers), or in the top-level `redis:`, shared by "
      "every gateway that uses it",
      .choices = "local|redis" },
    { "on_store_error", TG_KEY_ENUM, "`allow` or `deny`", "`allow`",
      "with `store: redis`, when Redis does not answer within its `timeout`, errs, or is unreachable: let the "
      "request pass uncounted, or refuse it with `503` and `Retry-After: 1` (gRPC `UNAVAILABLE`)",
      .choices = "allow|deny" },
    TG_SHOW_KEYS_ROW,
};
static const tg_keyset_t rl_keyset = TG_KEYSET("filter.rate_limit", "rate_limit", rl_keys);
static int parse_limit(tg_node_t *lim, tg_node_t *win, rl_conf_t *c)
{
    uint64_t l, w;
    if (!tg_node_present(lim) || !tg_node_present(win)) {
        tg_node_error(tg_node_present(lim) ? lim : win, "rate_limit: a limit needs both 'limit' and 'window'");
        return -1;
    }
    if (tg_node_uint(lim, "limit", 1, 1000000000, &l) < 0 || tg_node_duration(win, "window", &w) < 0)
        return -1;
    if (w < 1) {
        tg_node_error(win, "window: must be at least 1ms");
        return -1;
    }
    if (c->n_limits == TG_RL_MAX_LIMITS) {
        tg_node_error(lim, "rate_limit: at most %d limits", TG_RL_MAX_LIMITS);
        return -1;
    }
    c->limits[c->n_limits++] = (tg_rl_limit_t){ l, w };
    return 0;
}

/* Item i of a `limits:` list: { limit, window }. */
static int parse_limit_item(tg_node_t *list, size_t i, const char *what, rl_conf_t *c)
{
    tg_node_t item = tg_node_seq_item(list, i), f[2];
    tg_node_t limit = { 0 }, window = { 0 };
    int rc = tg_node_keys(&item, what, &limit_item, f);
    if (rc == 0) {
        limit = tg_node_get(f, &limit_item, "limit");
        window = tg_node_get(f, &limit_item, "window");
    }
    return rc < 0 || parse_limit(&limit, &window, c) < 0 ? -1 : 0;
}

/* overrides: [{ name, identities: [...] | claim: {...}, limit, window |
 * limits }] — each a limit set with its own counters, for the identities
 * it names or the tokens whose claims it names. */
static int parse_overrides(tg_node_t *n, rl_conf_t *c)
{
    if (!tg_node_is_seq(n)) {
        tg_node_error(n, "overrides must be a list of { name, identities, limit, window }");
        return -1;
    }
    size_t count = tg_node_seq_len(n);
    if ((c->overrides = calloc(count ? count : 1, sizeof(*c->overrides))) == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        tg_node_t item = tg_node_seq_item(n, i), f[6];
        rl_conf_t *o = &c->overrides[c->n_overrides++];
        if (tg_node_keys(&item, "rate_limit override", &override_item, f) < 0) {
            rc = -1;
            continue;
        }
        tg_node_t name = tg_node_get(f, &override_item, "name"), ids = tg_node_get(f, &override_item, "identities");
        tg_node_t claim = tg_node_get(f, &override_item, "claim"), lims = tg_node_get(f, &override_item, "limits");
        tg_node_t limit = tg_node_get(f, &override_item, "limit"), window = tg_node_get(f, &override_item, "window");
        if (!tg_node_present(&name) || (!tg_node_present(&ids) && !tg_node_present(&claim))) {
            tg_node_error(&item, "rate_limit override: give 'name' and whom it is for: 'identities', 'claim' or both");
            rc = -1;
            continue;
        }
        if ((o->policy = tg_node_str(&name, "override name")) == NULL ||
            (tg_node_present(&ids) && tg_node_str_list(&ids, "identities", &o->identities, &o->n_identities) < 0) ||
            (tg_node_present(&claim) && parse_claims(&claim, o) < 0)) {
            rc = -1;
            continue;
        }
        if (!tg_node_header_name_ok(o->policy)) { /* it goes into the RateLimit headers as a key */
            tg_node_error(&name, "override name: '%s' must be a token (letters, digits, - _ .)", o->policy);
            rc = -1;
        }
        if (tg_node_present(&limit) || tg_node_present(&window))
            if (parse_limit(&limit, &window, o) < 0)
                rc = -1;
        for (size_t k = 0; tg_node_present(&lims) && k < tg_node_seq_len(&lims); k++)
            if (parse_limit_item(&lims, k, "override limits", o) < 0)
                rc = -1;
        if (rc == 0 && o->n_limits == 0) {
            tg_node_error(&item, "rate_limit override: give 'limit' and 'window', or 'limits'");
            rc = -1;
        }
        /* the rest is the filter's */
        o->key = c->key;
        o->counters = c->counters;
        o->response_headers = c->response_headers;
        o->legacy = c->legacy;
        o->max_keys = c->max_keys;
        o->on_full_allow = c->on_full_allow;
        o->shadow = c->shadow;
        o->tag = c->tag;
        if (rc == 0 && (o->table = tg_rl_table_new(o->limits, o->n_limits, (size_t)o->max_keys)) == NULL)
            rc = -1;
    }
    return rc;
}

/* Does the override apply: its identities name the client's, or the
 * client's verified token carries every claim it names? */
static int override_applies(const rl_conf_t *o, const tg_filter_exchange_t *fx)
{
    for (size_t k = 0; fx->identity != NULL && k < o->n_identities; k++)
        if (strcmp(o->identities[k], fx->identity) == 0)
            return 1;
    if (o->n_claims == 0 || fx->claims.n == 0)
        return 0;
    for (size_t k = 0; k < o->n_claims; k++) { /* claim names are case-sensitive (RFC 7519) */
        size_t j = 0;
        while (j < fx->claims.n && strcmp(fx->claims.v[j].name, o->claim_names[k]) != 0)
            j++;
        if (j == fx->claims.n || strcmp(fx->claims.v[j].value, o->claim_values[k]) != 0)
            return 0;
    }
    return 1;
}

/* The limit set for this exchange: the first override that applies. */
static const rl_conf_t *pick_set(const rl_conf_t *c, const tg_filter_exchange_t *fx)
{
    if (fx->identity != NULL || fx->claims.n != 0)
        for (size_t i = 0; i < c->n_overrides; i++)
            if (override_applies(&c->overrides[i], fx))
                return &c->overrides[i];
    return c;
}


/* ---- store: redis ---- */

/* The same weighted two-window counter as above, run atomically in Redis
 * on the server's clock (so every gateway agrees on window boundaries).
 * One hash per key holds each limit's window start, current and previous
 * counts (s1 c1 p1 s2 ...), and expires two of its longest windows after
 * its last use. KEYS[1]: the hash; ARGV: cost, n, ttl_ms, then limit and
 * window_ms of each limit. Returns { allowed, decisive (0-based),
 * remaining, reset_ms, retry_ms (-1: never), now_ms }. */
static const char RL_CHECK_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local cost, n, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local f = {}\n"
    "for i = 1, n do f[#f+1] = 's'..i; f[#f+1] = 'c'..i; f[#f+1] = 'p'..i end\n"
    "local h = redis.call('HMGET', KEYS[1], unpack(f))\n"
    "local S, C, P, L, W = {}, {}, {}, {}, {}\n"
    "local allowed, retry = 1, 0\n"
    "for i = 1, n do\n"
    "  local l, w = tonumber(ARGV[2 + 2*i]), tonumber(ARGV[3 + 2*i])\n"
    "  local s, c, p = tonumber(h[3*i-2]) or 0, tonumber(h[3*i-1]) or 0, tonumber(h[3*i]) or 0\n"
    "  local start = now - now % w\n"
    "  if s ~= start then\n"
    "    if s + w == start then p = c else p = 0 end\n"
    "    c = 0; s = start\n"
    "  end\n"
    "  S[i], C[i], P[i], L[i], W[i] = s, c, p, l, w\n"
    "  local e = now - s\n"
    "  if c + math.floor((p * (w - e) + w - 1) / w) + cost > l then\n"
    "    allowed = 0\n"
    "    local wm\n"
    "    if cost > l then wm = -1\n"
    "    elseif c + cost > l then\n"
    "      if c == 0 then wm = w - e else\n"
    "        local need = w\n"
    "        if l > cost then need = w - math.floor(w * (l - cost) / c) end\n"
    "        if need > w then need = w end\n"
    "        wm = w - e + need\n"
    "      end\n"
    "    elseif p == 0 then wm = 0\n"
    "    else\n"
    "      local en = w - math.floor(w * (l - cost - c) / p)\n"
    "      if en > e then wm = en - e else wm = 1 end\n"
    "    end\n"
    "    if wm < 0 or retry < 0 then retry = -1 elseif wm > retry then retry = wm end\n"
    "  end\n"
    "end\n"
    "local least, decisive, reset, set = -1, 0, 0, {}\n"
    "for i = 1, n do\n"
    "  if allowed == 1 then C[i] = C[i] + cost end\n"
    "  local w = W[i]\n"
    "  local est = C[i] + math.floor((P[i] * (w - (now - S[i])) + w - 1) / w)\n"
    "  local rem = 0\n"
    "  if est < L[i] then rem = L[i] - est end\n"
    "  if least < 0 or rem < least or (rem == least and allowed == 0) then\n"
    "    least = rem; decisive = i - 1; reset = S[i] + w - now\n"
    "  end\n"
    "  set[#set+1] = 's'..i; set[#set+1] = S[i]; set[#set+1] = 'c'..i; set[#set+1] = C[i]\n"
    "  set[#set+1] = 'p'..i; set[#set+1] = P[i]\n"
    "end\n"
    "if allowed == 1 then redis.call('HSET', KEYS[1], unpack(set)) end\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return {allowed, decisive, least, reset, retry, now}\n";

/* reconcile on Redis: corrects a charge made at ARGV[2] (the server's
 * clock, as the check returned it) by ARGV[1] units in each limit's
 * window it went into, if that window is still current or just past.
 * ARGV: delta, charged_ms, n, then each limit's window_ms. */
static const char RL_ADJUST_LUA[] =
    "local delta, at, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "for i = 1, n do\n"
    "  local w = tonumber(ARGV[3 + i])\n"
    "  local start = at - at % w\n"
    "  local s = tonumber(redis.call('HGET', KEYS[1], 's'..i)) or 0\n"
    "  local field\n"
    "  if s == start then field = 'c'..i elseif s == start + w then field = 'p'..i end\n"
    "  if field then\n"
    "    local v = (tonumber(redis.call('HGET', KEYS[1], field)) or 0) + delta\n"
    "    if v < 0 then v = 0 end\n"
    "    redis.call('HSET', KEYS[1], field, v)\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* The counters' name in the store, the same on every gateway that has
 * the same plan: "<plan>:<limit>/<window_ms>,..." (two rate_limit filters
 * with the same plan, limits and key value share them, as one limit). */
static char *set_namespace(const rl_conf_t *c)
{
    char buf[512];
    int off = snprintf(buf, sizeof(buf), "%s:", c->policy);
    for (size_t i = 0; i < c->n_limits && off > 0 && (size_t)off < sizeof(buf); i++)
        off += snprintf(buf + off, sizeof(buf) - (size_t)off, "%s%llu/%llu", i ? "," : "",
                        (unsigned long long)c->limits[i].limit, (unsigned long long)c->limits[i].window_ms);
    return strdup(buf);
}

/* The hash holding a key's windows: PREFIX rl:{NS:KEY} — the braces make
 * the whole name its hash tag, so a key's windows sit on one Cluster slot. */
static size_t store_key(const tg_store_t *st, const rl_conf_t *set, const char *key, size_t len, char *out,
                        size_t cap)
{
    size_t ns = strlen(set->ns), need = st->key_prefix_len + 4 + ns + 1 + len + 1;
    if (need > cap)
        return 0;
    char *p = out;
    memcpy(p, st->key_prefix, st->key_prefix_len);
    p += st->key_prefix_len;
    memcpy(p, "rl:{", 4);
    p += 4;
    memcpy(p, set->ns, ns);
    p += ns;
    *p++ = ':';
    memcpy(p, key, len);
    p += len;
    *p++ = '}';
    return (size_t)(p - out);
}

static uint64_t reply_int(const tg_resp_value_t *v, size_t i)
{
    return v->items[i].integer < 0 ? UINT64_MAX : (uint64_t)v->items[i].integer;
}

static void *rl_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[20];
    rl_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_rate_limit);
    int rc = tg_node_read_into(node, "rate_limit", &rl_keyset, c, v);
#define ROW(name) tg_node_get(v, &rl_keyset, name)
    tg_node_t key = ROW("key"), limit = ROW("limit"), window = ROW("window"), limits = ROW("limits");
    tg_node_t overrides = ROW("overrides"), cost = ROW("cost"), min_cost = ROW("min_cost"), max_cost = ROW("max_cost");
    tg_node_t route_costs = ROW("route_costs"), reconcile = ROW("reconcile"), store = ROW("store");
    tg_node_t on_store_error = ROW("on_store_error"), show_keys = ROW("show_keys");
#undef ROW
    if (tg_filter_key_parse(&key, "rate_limit", &c->key) < 0 || tg_show_keys_parse(&show_keys, &c->key, &c->show_keys) < 0)
        rc = -1;
    if (tg_node_present(&limit) || tg_node_present(&window))
        if (parse_limit(&limit, &window, c) < 0)
            rc = -1;
    if (tg_node_present(&limits)) {
        for (size_t i = 0; i < tg_node_seq_len(&limits); i++) {
            if (parse_limit_item(&limits, i, "rate_limit limits", c) < 0)
                rc = -1;
        }
        if (!tg_node_is_seq(&limits)) {
            tg_node_error(&limits, "limits must be a list of { limit, window }");
            rc = -1;
        }
    }
    if (rc == 0 && c->n_limits == 0) {
        tg_node_error(node, "rate_limit: give 'limit' and 'window', or 'limits'");
        rc = -1;
    }
    if (tg_filter_parse_store(&store, &on_store_error, &c->redis, &c->on_store_error_deny) < 0)
        rc = -1;
    if ((c->policy = strdup("default")) == NULL)
        rc = -1;
    if (rc == 0 && parse_cost(&cost, &min_cost, &max_cost, &route_costs, &reconcile, c) < 0)
        rc = -1;
    if (rc == 0 && tg_node_present(&overrides) && parse_overrides(&overrides, c) < 0)
        rc = -1;
    if (rc == 0 && (c->table = tg_rl_table_new(c->limits, c->n_limits, (size_t)c->max_keys)) == NULL)
        rc = -1;
    if (rc == 0 && c->redis && (tg_store_script_init(&c->check_script, RL_CHECK_LUA) < 0 ||
                                tg_store_script_init(&c->adjust_script, RL_ADJUST_LUA) < 0))
        rc = -1;
    for (size_t i = 0; rc == 0 && i <= c->n_overrides; i++) { /* each plan's name in the store */
        rl_conf_t *set = i < c->n_overrides ? &c->overrides[i] : c;
        set->redis = c->redis;
        set->on_store_error_deny = c->on_store_error_deny;
        if ((set->ns = set_namespace(set)) == NULL || RAND_bytes((unsigned char *)&set->set_id, 8) != 1)
            rc = -1;
    }
    if (rc < 0) {
        rl_destroy(c);
        return NULL;
    }
    return c;
}

static void rate_headers(const rl_conf_t *c, const tg_rl_result_t *r, tg_headers_t *h, tg_arena_t *a)
{
    const tg_rl_limit_t *l = &c->limits[r->decisive];
    unsigned long long q = (unsigned long long)l->limit, w = (unsigned long long)(l->window_ms + 999) / 1000;
    if (c->legacy) {
        tg_filter_header_printf(h, a, "ratelimit-limit", "%llu", q);
        tg_filter_header_printf(h, a, "ratelimit-remaining", "%llu", (unsigned long long)r->remaining);
        tg_filter_header_printf(h, a, "ratelimit-reset", "%llu", (unsigned long long)r->reset_s);
    } else { /* draft-ietf-httpapi-ratelimit-headers, structured fields */
        tg_filter_header_printf(h, a, "ratelimit-policy", "\"%s\";q=%llu;w=%llu", c->policy, q, w);
        tg_filter_header_printf(h, a, "ratelimit", "\"%s\";r=%llu;t=%llu", c->policy, (unsigned long long)r->remaining,
                   (unsigned long long)r->reset_s);
    }
}

/* What this request costs: the route's fixed cost, else the filter's, or
 * the client's header clamped to [min_cost, max_cost] (missing or not a
 * number: min_cost). */
static uint64_t request_cost(const rl_conf_t *f, const tg_filter_exchange_t *fx)
{
    for (size_t i = 0; i < f->n_route_costs; i++)
        if (strcmp(f->cost_routes[i], fx->route) == 0)
            return f->route_cost[i];
    if (f->cost_header == NULL)
        return f->cost;
    const tg_header_t *h = tg_headers_get(&fx->req->headers, f->cost_header);
    uint64_t v = 0;
    size_t i = 0;
    for (; h != NULL && i < h->value_len && h->value[i] >= '0' && h->value[i] <= '9' && v < f->max_cost; i++)
        v = v * 10 + (uint64_t)(h->value[i] - '0');
    if (h == NULL || h->value_len == 0 || (i < h->value_len && v < f->max_cost))
        return f->min_cost; /* missing, or not a number */
    return v < f->min_cost ? f->min_cost : v > f->max_cost ? f->max_cost : v;
}

/* What a decision means for the request: pass (counted, shadowed or
 * tagged) or a 429; a refusal (or in shadow mode a would-be one) of the
 * key is noted for the status page. f: the filter, c: the plan. */
static tg_filter_status_t decide(const rl_conf_t *f, const rl_conf_t *c, tg_filter_exchange_t *fx,
                                 const tg_rl_result_t *r, const char *key, size_t len)
{
    if (!r->allowed || (r->table_full && !c->on_full_allow))
        tg_limited_note(f->limited, fx->worker, key, len, c->policy, tg_clock_ms());
    if (r->table_full) {
        tg_filter_count(fx, c->counters, RL_TABLE_FULL);
        if (c->on_full_allow)
            return TG_FILTER_CONTINUE; /* passes, uncounted (documented) */
        if (c->shadow) {
            tg_filter_count(fx, c->counters, RL_SHADOW_LIMITED);
            return TG_FILTER_CONTINUE;
        }
        tg_filter_count(fx, c->counters, RL_LIMITED);
        fx->reply_status = 429;
        fx->reply_message = "rate limiter is full";
        tg_filter_header_printf(&fx->reply_headers, fx->arena, "retry-after", "1");
        return TG_FILTER_REPLY;
    }
    if (!r->allowed && c->shadow) {
        /* what an enforced limit would refuse (and, like it, not count):
         * it passes, said in the metrics, the access log and, if asked
         * for, the RateLimit headers */
        tg_filter_count(fx, c->counters, RL_SHADOW_LIMITED);
        if (c->response_headers)
            rate_headers(c, r, &fx->response_headers, fx->arena);
        return TG_FILTER_CONTINUE;
    }
    if (!r->allowed && c->tag) {
        /* over the limit, forwarded for the upstream to decide (a cheaper
         * answer, a degraded one), marked with the limit it is over; not
         * counted, as a refusal would not be */
        const tg_rl_limit_t *l = &c->limits[r->decisive];
        tg_filter_count(fx, c->counters, RL_TAGGED);
        tg_filter_header_printf(&fx->req->headers, fx->arena, TG_RL_TAG_HEADER, "\"%s\";q=%llu;w=%llu", c->policy,
                   (unsigned long long)l->limit, (unsigned long long)(l->window_ms + 999) / 1000);
        if (c->response_headers)
            rate_headers(c, r, &fx->response_headers, fx->arena);
        return TG_FILTER_CONTINUE;
    }
    if (!r->allowed) {
        tg_filter_count(fx, c->counters, RL_LIMITED);
        fx->reply_status = 429;
        fx->reply_message = "rate limited";
        tg_filter_header_printf(&fx->reply_headers, fx->arena, "retry-after", "%llu", (unsigned long long)r->retry_after_s);
        rate_headers(c, r, &fx->reply_headers, fx->arena);
        return TG_FILTER_REPLY;
    }
    tg_filter_count(fx, c->counters, RL_ALLOWED);
    if (c->response_headers)
        rate_headers(c, r, &fx->response_headers, fx->arena);
    return TG_FILTER_CONTINUE;
}

/* The store did not answer (timeout, error, down): on_store_error. */
static tg_filter_status_t store_failed(const rl_conf_t *c, tg_filter_exchange_t *fx)
{
    return tg_filter_store_failed(fx, c->on_store_error_deny, c->shadow, 1ull << (c->counters + RL_STORE_ALLOWED),
                                  1ull << (c->counters + RL_STORE_DENIED));
}

/* The store's answer to a paused request. */
static void rl_store_done(void *arg, uint64_t gen, tg_store_status_t status, const tg_resp_value_t *v)
{
    tg_filter_exchange_t *fx = arg;
    rl_charge_t *ch = tg_filter_paused_state(fx, gen);
    if (ch == NULL)
        return; /* the exchange is over */
    const rl_conf_t *c = ch->set;
    if (!tg_store_ints(status, v, 6) || v->items[1].integer < 0 || (size_t)v->items[1].integer >= c->n_limits) {
        tg_filter_resume(fx, gen, store_failed(c, fx));
        return;
    }
    tg_rl_result_t r = { .allowed = v->items[0].integer == 1, .decisive = (size_t)v->items[1].integer };
    uint64_t reset_ms = reply_int(v, 3), retry_ms = reply_int(v, 4);
    r.remaining = reply_int(v, 2);
    r.reset_s = (reset_ms + 999) / 1000;
    if (r.allowed) {
        ch->counted = 1;
        ch->at_ms = reply_int(v, 5);
    } else {
        r.retry_after_s = retry_ms == UINT64_MAX ? 1 : (retry_ms + 999) / 1000;
        if (r.retry_after_s == 0)
            r.retry_after_s = 1;
        r.reset_s = r.retry_after_s;
        if (retry_ms != UINT64_MAX && fx->store != NULL) /* from when the question was asked: never too long */
            tg_deny_cache_put(&fx->store->deny, ch->deny_hash, ch->at_ms + retry_ms, ch->cost, (unsigned)r.decisive);
    }
    tg_filter_resume(fx, gen, decide(ch->filter, c, fx, &r, ch->client_key, ch->client_len));
}

/* store: redis — the deny cache, else one script call while the request
 * waits (PAUSE). */
static tg_filter_status_t store_request(const rl_conf_t *f, const rl_conf_t *c, tg_filter_exchange_t *fx,
                                        size_t index, const char *key, size_t len, uint64_t cost)
{
    tg_store_t *st = fx->store;
    if (st == NULL)
        return store_failed(c, fx);
    uint64_t now = tg_clock_ms(), h = tg_deny_cache_hash(&st->deny, c->set_id, key, len);
    const tg_deny_entry_t *d = tg_deny_cache_get(&st->deny, h, now, cost);
    if (d != NULL) {
        tg_rl_result_t r = { .allowed = 0, .decisive = d->decisive < c->n_limits ? d->decisive : 0 };
        r.retry_after_s = (d->until_ms - now + 999) / 1000;
        r.reset_s = r.retry_after_s;
        tg_filter_count(fx, c->counters, RL_CACHED);
        return decide(f, c, fx, &r, key, len);
    }
    char rkey[1024];
    size_t rlen = store_key(st, c, key, len, rkey, sizeof(rkey));
    rl_charge_t *ch = tg_arena_alloc(fx->arena, sizeof(*ch));
    char *k = rlen ? tg_arena_strndup(fx->arena, rkey, rlen) : NULL;
    char *ck = tg_arena_strndup(fx->arena, key, len);
    if (ch == NULL || k == NULL || ck == NULL)
        return store_failed(c, fx);
    *ch = (rl_charge_t){ .filter = f, .set = c, .key = k, .len = rlen, .client_key = ck, .client_len = len,
                         .cost = cost, .at_ms = now, .deny_hash = h };
    fx->state[index] = ch;
    char num[3 + 2 * TG_RL_MAX_LIMITS][24];
    const char *argv[3 + 2 * TG_RL_MAX_LIMITS];
    size_t lens[3 + 2 * TG_RL_MAX_LIMITS];
    uint64_t ttl = 0;
    for (size_t i = 0; i < c->n_limits; i++)
        if (2 * c->limits[i].window_ms > ttl)
            ttl = 2 * c->limits[i].window_ms;
    uint64_t vals[3 + 2 * TG_RL_MAX_LIMITS] = { cost, c->n_limits, ttl };
    for (size_t i = 0; i < c->n_limits; i++) {
        vals[3 + 2 * i] = c->limits[i].limit;
        vals[4 + 2 * i] = c->limits[i].window_ms;
    }
    int argc = 3 + 2 * (int)c->n_limits;
    for (int i = 0; i < argc; i++) {
        lens[i] = (size_t)snprintf(num[i], sizeof(num[i]), "%llu", (unsigned long long)vals[i]);
        argv[i] = num[i];
    }
    tg_store_call_t call = { .script = &f->check_script, .key = k, .key_len = rlen, .argc = argc, .argv = argv,
                             .lens = lens, .cb = rl_store_done, .arg = fx, .gen = fx->gen };
    if (st->ops->eval(st, &call) < 0)
        return store_failed(c, fx);
    return TG_FILTER_PAUSE;
}

static tg_filter_status_t rl_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    const rl_conf_t *f = p;
    const rl_conf_t *c = pick_set(f, fx); /* a key's counters belong to the set it is counted under */
    char key[512];
    size_t len = tg_filter_key_build(&c->key, fx, key, sizeof(key));
    uint64_t now = tg_clock_ms(), cost = request_cost(f, fx);
    if (f->redis)
        return store_request(f, c, fx, index, key, len, cost);
    tg_rl_result_t r;
    tg_rl_check_cost(c->table, key, len, now, cost, &r);
    if (r.allowed && !r.table_full && f->reconcile != NULL) { /* kept to correct the charge at the end */
        rl_charge_t *ch = tg_arena_alloc(fx->arena, sizeof(*ch));
        char *k = tg_arena_strndup(fx->arena, key, len);
        if (ch != NULL && k != NULL) {
            *ch = (rl_charge_t){ .filter = f, .set = c, .key = k, .len = len, .cost = cost, .at_ms = now,
                                 .counted = 1 };
            fx->state[index] = ch;
        }
    }
    return decide(f, c, fx, &r, key, len);
}

/* reconcile: the response (head, or trailers, which win) says what the
 * request really cost; the charge made up front is corrected by the
 * difference. A response without it keeps the estimate. */
static void rl_on_complete(void *p, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    const rl_conf_t *f = p;
    rl_charge_t *ch = fx->state[index];
    if (ch == NULL || f->reconcile == NULL || rec->response_headers == NULL)
        return;
    const tg_header_t *h = tg_headers_get(rec->response_trailers, f->reconcile);
    if (h == NULL)
        h = tg_headers_get(rec->response_headers, f->reconcile);
    if (h == NULL || h->value_len == 0 || h->value_len > 9)
        return;
    int64_t actual = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9')
            return; /* not a count: the estimate stands */
        actual = actual * 10 + (h->value[i] - '0');
    }
    int64_t delta = actual - (int64_t)ch->cost;
    if (!ch->counted || delta == 0)
        return;
    if (!f->redis) {
        tg_rl_adjust(ch->set->table, ch->key, ch->len, ch->at_ms, delta);
        return;
    }
    if (fx->store == NULL)
        return;
    char num[3 + TG_RL_MAX_LIMITS][24];
    const char *argv[3 + TG_RL_MAX_LIMITS];
    size_t lens[3 + TG_RL_MAX_LIMITS];
    int argc = 3 + (int)ch->set->n_limits;
    lens[0] = (size_t)snprintf(num[0], sizeof(num[0]), "%lld", (long long)delta);
    lens[1] = (size_t)snprintf(num[1], sizeof(num[1]), "%llu", (unsigned long long)ch->at_ms);
    lens[2] = (size_t)snprintf(num[2], sizeof(num[2]), "%zu", ch->set->n_limits);
    for (size_t i = 0; i < ch->set->n_limits; i++)
        lens[3 + i] = (size_t)snprintf(num[3 + i], sizeof(num[3 + i]), "%llu",
                                       (unsigned long long)ch->set->limits[i].window_ms);
    for (int i = 0; i < argc; i++)
        argv[i] = num[i];
    tg_store_call_t call = { .script = &f->adjust_script, .key = ch->key, .key_len = ch->len, .argc = argc,
                             .argv = argv, .lens = lens }; /* fire and forget: a lost correction leaves the estimate */
    fx->store->ops->eval(fx->store, &call);
}

/* Keep the counters across a reload when what they count is unchanged. */
static void rl_inherit(void *new_conf, void *old_conf)
{
    rl_conf_t *n = new_conf, *o = old_conf;
    tg_limited_inherit(&n->limited, n->show_keys, o->limited, o->show_keys);
    if (n->n_limits != o->n_limits || memcmp(n->limits, o->limits, n->n_limits * sizeof(n->limits[0])) != 0 ||
        !tg_filter_key_equal(&n->key, &o->key))
        return;
    tg_rl_table_free(n->table);
    n->table = tg_rl_table_ref(o->table);
    tg_rl_table_set_max_keys(n->table, (size_t)n->max_keys);
    for (size_t i = 0; i < n->n_overrides && i < o->n_overrides; i++) { /* the same plan, the same limits */
        rl_conf_t *no = &n->overrides[i], *oo = &o->overrides[i];
        if (strcmp(no->policy, oo->policy) != 0 || no->n_limits != oo->n_limits ||
            memcmp(no->limits, oo->limits, no->n_limits * sizeof(no->limits[0])) != 0)
            continue;
        tg_rl_table_free(no->table);
        no->table = tg_rl_table_ref(oo->table);
        tg_rl_table_set_max_keys(no->table, (size_t)no->max_keys);
    }
}

/* The status page's recorder: passed on by inherit, else new. */
static int rl_start(void *p, const tg_filter_host_t *host, tg_errors_t *errs)
{
    (void)host;
    rl_conf_t *c = p;
    return tg_limited_start(&c->limited, c->show_keys, "rate_limit", errs);
}

/* Each plan's limits and, counted here, the busiest key's use of each and
 * how many keys have no room left; then who was refused. */
static void rl_status(void *p, struct evbuffer *out)
{
    rl_conf_t *f = p;
    uint64_t now = tg_clock_ms();
    evbuffer_add_printf(out, "\"mode\": \"%s\", \"store\": \"%s\", ", f->shadow ? "shadow" : "enforce",
                        f->redis ? "redis" : "local");
    tg_limited_key_json(&f->key, f->show_keys, out);
    evbuffer_add_printf(out, ", \"plans\": [");
    for (size_t i = 0; i <= f->n_overrides; i++) {
        const rl_conf_t *c = i == 0 ? f : &f->overrides[i - 1];
        uint64_t busiest[TG_RL_MAX_LIMITS] = { 0 }, at_limit[TG_RL_MAX_LIMITS] = { 0 };
        if (!f->redis)
            tg_rl_table_usage(c->table, now, busiest, at_limit);
        char name[128];
        tg_json_escape(name, sizeof(name), c->policy);
        evbuffer_add_printf(out, "%s{\"name\": \"%s\", \"keys\": ", i ? ", " : "", name);
        if (f->redis)
            evbuffer_add_printf(out, "null, \"max_keys\": null, \"limits\": [");
        else
            evbuffer_add_printf(out, "%zu, \"max_keys\": %llu, \"limits\": [", tg_rl_table_size(c->table),
                                (unsigned long long)c->max_keys);
        for (size_t j = 0; j < c->n_limits; j++) {
            evbuffer_add_printf(out, "%s{\"limit\": %llu, \"window_ms\": %llu", j ? ", " : "",
                                (unsigned long long)c->limits[j].limit, (unsigned long long)c->limits[j].window_ms);
            if (f->redis) /* the counts are in Redis: not read for a page */
                evbuffer_add_printf(out, ", \"busiest\": null, \"at_limit\": null}");
            else
                evbuffer_add_printf(out, ", \"busiest\": %llu, \"at_limit\": %llu}", (unsigned long long)busiest[j],
                                    (unsigned long long)at_limit[j]);
        }
        evbuffer_add_printf(out, "]}");
    }
    evbuffer_add_printf(out, "], ");
    tg_limited_json(f->limited, out, now);
}

/* With on_limit: tag the upstream trusts TG_RL_TAG_HEADER to come from us:
 * a client-sent copy is removed on arrival. */
static const char *rl_trust_header(const void *p, size_t i)
{
    const rl_conf_t *c = p;
    return c->tag && i == 0 ? TG_RL_TAG_HEADER : NULL;
}

const tg_filter_type_t tg_filter_rate_limit = {
    .name = "rate_limit",
    .doc = "sliding-window rate limits per client, identity, route or header; plans, costs, shadow mode; local or "
           "in Redis",
    .keys = &rl_keyset,
    .create = rl_create,
    .destroy = rl_destroy,
    .on_request = rl_on_request,
    .on_complete = rl_on_complete,
    .inherit = rl_inherit,
    .start = rl_start,
    .status = rl_status,
    .trust_header = rl_trust_header,
    .counters = rl_counters,
    .n_counters = sizeof(rl_counters) / sizeof(rl_counters[0]),
};
