/*
 * filters/concurrency.c — the concurrency_limit filter. See concurrency.h.
 *
 * A table of entries, one per key with requests in flight or waiting,
 * sharded by a keyed hash (SipHash: keys are client-chosen), each shard
 * under its own mutex. An entry counts the slots in use and keeps its
 * waiters in FIFO order; it is freed when both are zero. An exchange's
 * part (a hold, in its arena) is in one state at a time:
 *
 *   NONE -> HOLDING                  a slot was free
 *   NONE -> QUEUED -> GRANTED -> HOLDING   it waited; a release handed it a slot
 *                  \-> NONE          queue_timeout, or the client went away
 *   HOLDING | GRANTED -> (released)  the exchange ended
 *
 * Every transition happens under the entry's shard lock, so a release on
 * one worker and a waiter's end on another never both own a slot. A
 * release that hands its slot to a waiter of another worker (or its own)
 * wakes that waiter on its worker (tg_filter_wake); the waiter's only
 * timer is its queue_timeout.
 */
#include "filters/concurrency.h"

#include <event2/buffer.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filters/key.h"
#include "filters/keytab.h"
#include "filters/limited.h"
#include "proxy/base/clock.h"
#include "proxy/base/log.h"

#define KEY_MAX 512

typedef enum { H_NONE = 0, H_HOLDING, H_QUEUED, H_GRANTED } hold_state_t;

typedef struct cl_entry cl_entry_t;

typedef struct cl_hold {
    struct cl_hold *next;        /* in the entry's queue */
    tg_keyshards_t *table;
    cl_entry_t *entry;
    hold_state_t state;
    tg_filter_exchange_t *fx;
    uint64_t gen;
    unsigned counters;           /* its filter's counters' base */
    tg_limited_t *limited;       /* its filter's, for a refusal after waiting */
    tg_filter_waker_t waker;     /* QUEUED: how a release wakes it */
    tg_timer_t timer;            /* QUEUED: queue_timeout, on the exchange's worker */
    unsigned timer_set : 1;
} cl_hold_t;

struct cl_entry {
    tg_kt_node_t node;           /* first: the shard's table (the key follows the entry) */
    uint32_t inflight;           /* slots in use (GRANTED holds included) */
    uint32_t queued;
    cl_hold_t *qhead, *qtail;
    char key[];
};

typedef tg_kt_shard_t cl_shard_t;

typedef tg_keyshards_t cl_table_t; /* the entries, sharded and refcounted (keytab.h) */

/* its counters (tg_filter_count) */
enum { CL_LIMITED, CL_QUEUED };
static const tg_filter_counter_t cl_counters[] = {
    [CL_LIMITED] = { "tollgate_concurrency_limited_total",
                     "Requests a concurrency_limit filter refused (at once, or after waiting queue_timeout), by route." },
    [CL_QUEUED] = { "tollgate_concurrency_queued_total", "Requests that waited for a concurrency_limit slot, by route." },
};

typedef struct cl_conf {
    tg_filter_key_t key;
    unsigned counters;
    uint64_t limit;
    uint64_t queue;              /* waiters per key (0: refuse at once) */
    uint64_t queue_timeout_ms;
    uint64_t max;                /* `max:`, another name for limit */
    cl_table_t *table;
    tg_show_keys_t show_keys;    /* the status page's */
    tg_limited_t *limited;       /* made by start, or passed on by inherit */
} cl_conf_t;

/* ---- the table ---- */

static void free_node(tg_kt_node_t *n)
{
    free(n);
}

/* The key's entry, created if needed (shard locked). NULL: out of memory. */
static cl_entry_t *lookup(cl_table_t *t, cl_shard_t *sh, uint64_t h, const char *key, size_t len)
{
    tg_kt_node_t *found = tg_keytab_find(&sh->kt, h, key, len);
    if (found != NULL)
        return (cl_entry_t *)found;
    cl_entry_t *e = calloc(1, sizeof(*e) + len);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, len);
    e->node = (tg_kt_node_t){ .hash = h, .key = e->key, .keylen = len };
    if (tg_keytab_insert(&sh->kt, &e->node) < 0) {
        free(e);
        return NULL;
    }
    atomic_fetch_add(&t->keys, 1);
    return e;
}

static cl_shard_t *shard_of(cl_table_t *t, const cl_entry_t *e)
{
    return tg_keyshards_of(t, &e->node);
}

/* An entry nobody holds or waits on goes (shard locked). */
static void maybe_remove(cl_table_t *t, cl_shard_t *sh, cl_entry_t *e)
{
    if (e->inflight != 0 || e->queued != 0)
        return;
    tg_keytab_remove(&sh->kt, &e->node);
    atomic_fetch_sub(&t->keys, 1);
    free(e);
}

static void unqueue(cl_entry_t *e, cl_hold_t *h)
{
    cl_hold_t **pp = &e->qhead, *prev = NULL;
    while (*pp != NULL && *pp != h) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = h->next;
    if (e->qtail == h)
        e->qtail = prev;
    h->next = NULL;
    e->queued--;
}

/* A slot comes free (shard locked): straight to the first waiter, whose
 * waker is copied to *wake (the caller wakes it once the lock is let go),
 * else back to the pool. Returns whether there is a waiter to wake. */
static int release_locked(cl_table_t *t, cl_shard_t *sh, cl_entry_t *e, tg_filter_waker_t *wake)
{
    cl_hold_t *w = e->qhead;
    if (w != NULL) {
        unqueue(e, w);
        w->state = H_GRANTED; /* the slot passes on: inflight unchanged */
        *wake = w->waker;
        return 1;
    }
    e->inflight--;
    maybe_remove(t, sh, e);
    return 0;
}

/* ---- the filter ---- */

static void cl_destroy(void *p)
{
    cl_conf_t *c = p;
    if (c == NULL)
        return;
    tg_filter_key_free(&c->key);
    tg_keyshards_unref(c->table);
    tg_limited_unref(c->limited);
    free(c);
}
static const tg_key_t cl_keys[] = {
    { "key", TG_KEY_STRING, "as `rate_limit`'s `key`", "`client_address`",
      "whose requests are counted together: `client_address`, `identity`, `route`, `header:NAME`, or a list of up to "
      "4",
      .flags = TG_KEY_OR_LIST },
    { "limit", TG_KEY_INT, "integer 1–10^6 (required, or `max`)", "—", "requests in flight per key", .min = 1,
      .max = 1000000, TG_FIELD(cl_conf_t, limit, TG_FIELD_U64) },
    { "queue", TG_KEY_INT, "integer 0–10^5", "`0`", "requests per key that may wait for a slot instead of being "
                                                   "refused",
      .min = 0, .max = 100000, TG_FIELD(cl_conf_t, queue, TG_FIELD_U64) },
    { "queue_timeout", TG_KEY_DURATION, "duration", "`1s`", "how long one waits at most (only with `queue`)",
      TG_FIELD(cl_conf_t, queue_timeout_ms, TG_FIELD_U64), .def = 1000 },
    { "max", TG_KEY_INT, "integer 1–10^6", "—", "another name for `limit` (not both)", .min = 1, .max = 1000000,
      TG_FIELD(cl_conf_t, max, TG_FIELD_U64) },
    TG_SHOW_KEYS_ROW,
};
static const tg_keyset_t cl_keyset = TG_KEYSET("filter.concurrency_limit", "concurrency_limit", cl_keys);

static void *cl_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[7];
    cl_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_concurrency_limit);
    int rc = tg_node_read_into(node, "concurrency_limit", &cl_keyset, c, v);
    tg_node_t key = tg_node_get(v, &cl_keyset, "key"), max = tg_node_get(v, &cl_keyset, "max");
    tg_node_t limit = tg_node_get(v, &cl_keyset, "limit"), timeout = tg_node_get(v, &cl_keyset, "queue_timeout");
    tg_node_t show_keys = tg_node_get(v, &cl_keyset, "show_keys");
    if (tg_filter_key_parse(&key, "concurrency_limit", &c->key) < 0 ||
        tg_show_keys_parse(&show_keys, &c->key, &c->show_keys) < 0)
        rc = -1;
    if (tg_node_present(&max) && tg_node_present(&limit)) { /* `max` is another name for limit */
        tg_node_error(&max, "concurrency_limit: give limit or max (the same thing), not both");
        rc = -1;
    } else if (tg_node_present(&max)) {
        c->limit = c->max;
    } else if (!tg_node_present(&limit)) {
        tg_node_error(node, "concurrency_limit: give 'limit' (requests in flight per key)");
        rc = -1;
    }
    if (rc == 0 && tg_node_present(&timeout) && c->queue == 0) {
        tg_node_error(&timeout, "queue_timeout: only with a queue (queue: N)");
        rc = -1;
    }
    if (rc == 0 && (c->table = tg_keyshards_new(free_node)) == NULL)
        rc = -1;
    if (rc < 0) {
        cl_destroy(c);
        return NULL;
    }
    return c;
}

static tg_filter_status_t refuse(tg_filter_exchange_t *fx, unsigned counters, const char *why)
{
    tg_filter_count(fx, counters, CL_LIMITED);
    fx->reply_status = 429;
    fx->reply_message = why;
    tg_headers_add(&fx->reply_headers, fx->arena, "retry-after", 11, "1", 1);
    return TG_FILTER_REPLY;
}

/* A waiter's turn on its own worker: granted (go on), timed out
 * (refused), or, woken by a grant its timeout raced, granted after all. */
static void finish_wait(cl_hold_t *h, int timed_out)
{
    cl_shard_t *sh = shard_of(h->table, h->entry);
    pthread_mutex_lock(&sh->lock);
    if (h->state == H_GRANTED) {
        h->state = H_HOLDING;
        pthread_mutex_unlock(&sh->lock);
        if (h->timer_set) {
            tg_timer_cancel(&h->timer);
            h->timer_set = 0;
        }
        tg_filter_resume(h->fx, h->gen, TG_FILTER_CONTINUE);
        return;
    }
    if (!timed_out || h->state != H_QUEUED) { /* a wake for a grant already taken */
        pthread_mutex_unlock(&sh->lock);
        return;
    }
    unqueue(h->entry, h);
    tg_limited_note(h->limited, h->fx->worker, h->entry->key, h->entry->node.keylen, NULL, tg_clock_ms());
    maybe_remove(h->table, sh, h->entry);
    h->entry = NULL;
    h->state = H_NONE;
    pthread_mutex_unlock(&sh->lock);
    refuse(h->fx, h->counters, "too many requests in flight (waited too long)");
    tg_filter_resume(h->fx, h->gen, TG_FILTER_REPLY);
}

static void on_queue_timeout(tg_timer_t *t)
{
    cl_hold_t *h = TG_CONTAINER_OF(t, cl_hold_t, timer);
    h->timer_set = 0;
    finish_wait(h, 1);
}

/* Posted by the release that granted the slot (tg_filter_wake). */
static void on_granted(tg_filter_exchange_t *fx, uint64_t gen)
{
    cl_hold_t *h = tg_filter_paused_state(fx, gen);
    if (h != NULL) /* else the exchange ended: its on_complete gave the slot back */
        finish_wait(h, 0);
}

/* Hands a freed slot's waiter its wake-up (out of memory: its timeout
 * finds the grant instead). */
static void wake(const tg_filter_waker_t *w)
{
    if (tg_filter_wake(w, on_granted) < 0)
        tg_warn("concurrency_limit: out of memory waking a waiter; it takes its slot at its timeout");
}

static tg_filter_status_t cl_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    cl_conf_t *c = p;
    char key[KEY_MAX];
    size_t len = tg_filter_key_build(&c->key, fx, key, sizeof(key));
    cl_hold_t *h = tg_arena_alloc(fx->arena, sizeof(*h));
    if (h == NULL)
        return refuse(fx, c->counters, "out of memory");
    memset(h, 0, sizeof(*h));
    h->table = c->table;
    h->counters = c->counters;
    h->limited = c->limited;
    h->fx = fx;
    h->gen = fx->gen;
    uint64_t hash;
    cl_shard_t *sh = tg_keyshards_pick(c->table, key, len, &hash);
    pthread_mutex_lock(&sh->lock);
    cl_entry_t *e = lookup(c->table, sh, hash, key, len);
    if (e == NULL) {
        pthread_mutex_unlock(&sh->lock);
        return refuse(fx, c->counters, "out of memory");
    }
    if (e->inflight < c->limit && e->qhead == NULL) {
        e->inflight++;
        h->entry = e;
        h->state = H_HOLDING;
        pthread_mutex_unlock(&sh->lock);
        fx->state[index] = h;
        return TG_FILTER_CONTINUE;
    }
    if (e->queued < c->queue) { /* wait in line: the next release hands us its slot */
        h->entry = e;
        h->state = H_QUEUED;
        h->waker = tg_filter_waker(fx);
        if (e->qtail)
            e->qtail->next = h;
        else
            e->qhead = h;
        e->qtail = h;
        e->queued++;
        uint32_t waiting = e->queued;
        pthread_mutex_unlock(&sh->lock);
        tg_debug("concurrency_limit: queued (%u waiting for %llu slots)", waiting, (unsigned long long)c->limit);
        fx->state[index] = h;
        tg_filter_count(fx, c->counters, CL_QUEUED);
        h->timer.fn = on_queue_timeout;
        h->timer_set = tg_timer_set(fx->loop, &h->timer, c->queue_timeout_ms) == 0;
        return TG_FILTER_PAUSE;
    }
    maybe_remove(c->table, sh, e);
    pthread_mutex_unlock(&sh->lock);
    tg_limited_note(c->limited, fx->worker, key, len, NULL, tg_clock_ms());
    return refuse(fx, c->counters, "too many requests in flight");
}

/* The exchange is over, however it ended: whatever it holds or waits for
 * is given back, once. */
static void cl_on_complete(void *p, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    cl_hold_t *h = fx->state[index];
    if (h == NULL)
        return;
    fx->state[index] = NULL;
    if (h->timer_set) {
        tg_timer_cancel(&h->timer);
        h->timer_set = 0;
    }
    if (h->entry == NULL)
        return;
    cl_shard_t *sh = shard_of(h->table, h->entry);
    tg_filter_waker_t next;
    int woken = 0;
    pthread_mutex_lock(&sh->lock);
    if (h->state == H_QUEUED) {
        unqueue(h->entry, h);
        maybe_remove(h->table, sh, h->entry);
    } else if (h->state == H_HOLDING || h->state == H_GRANTED) {
        woken = release_locked(h->table, sh, h->entry, &next);
    }
    h->state = H_NONE;
    h->entry = NULL;
    pthread_mutex_unlock(&sh->lock);
    if (woken)
        wake(&next);
}

/* The exchange ended while queued: its timer stops now (on_complete, run
 * next, leaves the queue). */
static void cl_on_cancel(void *p, tg_filter_exchange_t *fx, size_t index)
{
    cl_hold_t *h = fx->state[index];
    if (h != NULL && h->timer_set) {
        tg_timer_cancel(&h->timer);
        h->timer_set = 0;
    }
}

/* In-flight counts carry over a reload that keeps the key: requests
 * started before it still give their slots back to the same table. */
static void cl_inherit(void *new_conf, void *old_conf)
{
    cl_conf_t *n = new_conf, *o = old_conf;
    tg_limited_inherit(&n->limited, n->show_keys, o->limited, o->show_keys);
    if (!tg_filter_key_equal(&n->key, &o->key))
        return;
    tg_keyshards_unref(n->table);
    n->table = tg_keyshards_ref(o->table);
}

static int cl_start(void *p, const tg_filter_host_t *host, tg_errors_t *errs)
{
    (void)host;
    cl_conf_t *c = p;
    return tg_limited_start(&c->limited, c->show_keys, "concurrency_limit", errs);
}

typedef struct cl_usage {
    uint64_t limit, busiest, at_limit, inflight, queued;
} cl_usage_t;

static void cl_usage_of(const tg_kt_node_t *n, void *arg)
{
    const cl_entry_t *e = (const cl_entry_t *)n;
    cl_usage_t *u = arg;
    if (e->inflight > u->busiest)
        u->busiest = e->inflight;
    u->at_limit += e->inflight >= u->limit;
    u->inflight += e->inflight;
    u->queued += e->queued;
}

/* In flight now (the busiest key, keys at their limit, all keys), then
 * who was refused. */
static void cl_status(void *p, struct evbuffer *out)
{
    cl_conf_t *c = p;
    cl_usage_t u = { .limit = c->limit };
    tg_keyshards_each(c->table, cl_usage_of, &u);
    evbuffer_add_printf(out, "\"mode\": \"enforce\", \"store\": \"local\", ");
    tg_limited_key_json(&c->key, c->show_keys, out);
    evbuffer_add_printf(out,
                        ", \"plans\": [{\"name\": \"in_flight\", \"keys\": %zu, \"max_keys\": null, \"in_flight\": %llu, "
                        "\"queued\": %llu, \"queue\": %llu, \"limits\": [{\"limit\": %llu, \"busiest\": %llu, "
                        "\"at_limit\": %llu}]}], ",
                        atomic_load(&c->table->keys), (unsigned long long)u.inflight, (unsigned long long)u.queued,
                        (unsigned long long)c->queue, (unsigned long long)c->limit, (unsigned long long)u.busiest,
                        (unsigned long long)u.at_limit);
    tg_limited_json(c->limited, out, tg_clock_ms());
}

const tg_filter_type_t tg_filter_concurrency_limit = {
    .name = "concurrency_limit",
    .doc = "caps the requests in flight per client (or identity, route, header), with an optional queue",
    .keys = &cl_keyset,
    .create = cl_create,
    .destroy = cl_destroy,
    .on_request = cl_on_request,
    .on_cancel = cl_on_cancel,
    .on_complete = cl_on_complete,
    .inherit = cl_inherit,
    .start = cl_start,
    .status = cl_status,
    .counters = cl_counters,
    .n_counters = sizeof(cl_counters) / sizeof(cl_counters[0]),
};
