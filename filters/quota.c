/*
 * filters/quota.c — the quota filter and its time-zone reader. See
 * quota.h and docs/filters.md.
 *
 * Counts per key live in a sharded table (keyed SipHash, a mutex per
 * shard): an entry holds the period it counts and the requests used in
 * it; a request in a later period starts the count again. The table holds
 * at most max_keys entries; a new key that finds it full takes the place
 * of one whose period is over, else passes uncounted (said in the
 * metrics as the rate limiter's table-full outcome).
 */
#include "filters/quota.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <openssl/rand.h>

#include "filters/key.h"
#include "filters/keytab.h"
#include "filters/limited.h"
#include "proxy/base/civil.h"
#include "proxy/base/clock.h"
#include "proxy/base/json.h"

#define KEY_MAX 512
#define ZONEINFO "/usr/share/zoneinfo/"

/* ---- time zones (TZif, RFC 8536) ---- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

void tg_tz_free(tg_tz_t *tz)
{
    free(tz->at);
    free(tz->type);
    free(tz->offset);
    memset(tz, 0, sizeof(*tz));
}

/* Parses one data block (v1: 4-byte times; v2+: 8-byte) at p; returns its
 * length, or 0 if malformed. */
static size_t parse_block(const unsigned char *p, size_t len, int wide, tg_tz_t *tz)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return 0;
    uint32_t isut = be32(p + 20), isstd = be32(p + 24), leap = be32(p + 28), timecnt = be32(p + 32),
             typecnt = be32(p + 36), charcnt = be32(p + 40);
    size_t tsz = wide ? 8 : 4;
    if (typecnt == 0 || typecnt > 256 || timecnt > 100000 || charcnt > 100000 || leap > 100000)
        return 0;
    size_t need = 44 + timecnt * tsz + timecnt + typecnt * 6 + charcnt + leap * (tsz + 4) + isstd + isut;
    if (need > len)
        return 0;
    tz->at = calloc(timecnt ? timecnt : 1, sizeof(*tz->at));
    tz->type = calloc(timecnt ? timecnt : 1, 1);
    tz->offset = calloc(typecnt, sizeof(*tz->offset));
    if (tz->at == NULL || tz->type == NULL || tz->offset == NULL)
        return 0;
    const unsigned char *q = p + 44;
    for (uint32_t i = 0; i < timecnt; i++, q += tsz)
        tz->at[i] = wide ? be64(q) : (int64_t)(int32_t)be32(q);
    for (uint32_t i = 0; i < timecnt; i++, q++) {
        if (*q >= typecnt)
            return 0;
        tz->type[i] = *q;
    }
    for (uint32_t i = 0; i < typecnt; i++, q += 6)
        tz->offset[i] = (int32_t)be32(q);
    tz->n = timecnt;
    tz->n_offsets = typecnt;
    return need;
}

int tg_tz_load(const char *name, tg_tz_t *tz, const char **why)
{
    memset(tz, 0, sizeof(*tz));
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
        if ((tz->offset = calloc(1, sizeof(*tz->offset))) == NULL)
            return *why = "out of memory", -1;
        tz->n_offsets = 1;
        return 0;
    }
    if (name[0] == '\0' || name[0] == '/' || strstr(name, "..") != NULL || strlen(name) > 128)
        return *why = "not a time zone name", -1;
    char path[256];
    snprintf(path, sizeof(path), ZONEINFO "%s", name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return *why = "unknown time zone (no " ZONEINFO " entry: is tzdata installed?)", -1;
    unsigned char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    tg_tz_t v1 = { 0 };
    size_t first = parse_block(buf, len, 0, &v1);
    if (first == 0) {
        tg_tz_free(&v1);
        return *why = "not a TZif file", -1;
    }
    if (buf[4] >= '2' && parse_block(buf + first, len - first, 1, tz) != 0) { /* 64-bit times */
        tg_tz_free(&v1);
        return 0;
    }
    tg_tz_free(tz);
    *tz = v1;
    return 0;
}

int32_t tg_tz_offset(const tg_tz_t *tz, int64_t t)
{
    if (tz->n == 0 || t < tz->at[0])
        return tz->offset[0]; /* before the first transition: the first type (RFC 8536 3.2) */
    size_t lo = 0, hi = tz->n; /* the last transition at or before t */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return tz->offset[tz->type[lo]];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The instant local midnight starts day `day` (offsets change at most
 * once around it: settle in two steps). */
static int64_t local_midnight(const tg_tz_t *tz, int64_t day)
{
    int64_t local = day * 86400, guess = local - tg_tz_offset(tz, local);
    return local - tg_tz_offset(tz, guess);
}

int64_t tg_quota_period(const tg_tz_t *tz, tg_quota_period_t p, int64_t t, int64_t *end)
{
    int64_t day = floor_div(t + tg_tz_offset(tz, t), 86400);
    if (p == TG_QUOTA_DAY) {
        *end = local_midnight(tz, day + 1);
        return day;
    }
    int64_t y;
    unsigned m, d;
    tg_civil_from_days(day, &y, &m, &d);
    *end = local_midnight(tz, m == 12 ? tg_days_from_civil(y + 1, 1, 1) : tg_days_from_civil(y, m + 1, 1));
    return y * 12 + (m - 1);
}

/* ---- the table ---- */

typedef struct q_entry {
    tg_kt_node_t node;         /* first: the shard's table (the key follows the entry) */
    int64_t period;
    uint64_t used;
    char key[];
} q_entry_t;

typedef tg_kt_shard_t q_shard_t;

typedef tg_keyshards_t q_table_t; /* the entries, sharded and refcounted (keytab.h) */

static void free_node(tg_kt_node_t *n)
{
    free(n);
}

/* Frees one entry of the shard whose period is over; 0 if one went. */
static int evict_stale(q_table_t *t, q_shard_t *sh, int64_t period)
{
    for (size_t b = 0; b < sh->kt.nbuckets; b++)
        for (tg_kt_node_t *n = sh->kt.buckets[b]; n != NULL; n = n->hnext)
            if (((q_entry_t *)n)->period < period) {
                tg_keytab_remove(&sh->kt, n);
                atomic_fetch_sub(&t->keys, 1);
                free(n);
                return 0;
            }
    return -1;
}

/* ---- the filter ---- */

/* Its counters (tg_filter_count): its own families, and each decision
 * also under the rate_limit family it was counted in before quota had
 * its own (the *_OLD rows: an alias kept for one release, documented in
 * docs/monitoring.md). */
enum { Q_ALLOWED, Q_LIMITED, Q_TABLE_FULL, Q_CACHED, Q_STORE_ALLOWED, Q_STORE_DENIED, Q_OLD };
#define Q_DECISIONS "tollgate_quota_decisions_total"
#define Q_DECISIONS_HELP "quota filter decisions, by route."
#define Q_STORE_ERRORS "tollgate_quota_store_error_decisions_total"
#define Q_STORE_ERRORS_HELP                                                                                            \
    "Requests a quota with store: redis decided by on_store_error (Redis failed, timed out or was unreachable), by "   \
    "route and decision."
static const tg_filter_counter_t q_counters[] = {
    [Q_ALLOWED] = { Q_DECISIONS, Q_DECISIONS_HELP, "decision", "allowed" },
    [Q_LIMITED] = { Q_DECISIONS, Q_DECISIONS_HELP, "decision", "limited" },
    [Q_TABLE_FULL] = { "tollgate_quota_table_full_total",
                       "New quota keys a full table (max_keys) had no room for (they passed uncounted), by route." },
    [Q_CACHED] = { "tollgate_quota_deny_cache_hits_total",
                   "Requests a quota with store: redis refused from the worker's denied-until cache, by route." },
    [Q_STORE_ALLOWED] = { Q_STORE_ERRORS, Q_STORE_ERRORS_HELP, "decision", "allow" },
    [Q_STORE_DENIED] = { Q_STORE_ERRORS, Q_STORE_ERRORS_HELP, "decision", "deny" },
    /* the aliases: rate_limit's rows come first and give these families their help */
    [Q_OLD + Q_ALLOWED] = { "tollgate_ratelimit_decisions_total", "", "decision", "allowed" },
    [Q_OLD + Q_LIMITED] = { "tollgate_ratelimit_decisions_total", "", "decision", "limited" },
    [Q_OLD + Q_TABLE_FULL] = { "tollgate_ratelimit_table_full_total", "" },
    [Q_OLD + Q_CACHED] = { "tollgate_ratelimit_deny_cache_hits_total", "" },
    [Q_OLD + Q_STORE_ALLOWED] = { "tollgate_ratelimit_store_error_decisions_total", "", "decision", "allow" },
    [Q_OLD + Q_STORE_DENIED] = { "tollgate_ratelimit_store_error_decisions_total", "", "decision", "deny" },
};

/* a decision's bits: its own row and its alias */
#define Q_BITS(c, id) ((1ull << ((c)->counters + (id))) | (1ull << ((c)->counters + Q_OLD + (id))))

typedef struct q_conf {
    tg_filter_key_t key;
    unsigned counters;         /* the first bit of its counters */
    uint64_t limit;
    tg_quota_period_t period;
    char *tz_name;
    tg_tz_t tz;
    int response_headers;
    uint64_t max_keys;
    char *clock_file;          /* TG_QUOTA_CLOCK_ENV, for tests; owned */
    q_table_t *table;
    int redis;                 /* store: redis — counts in the shared store */
    int on_store_error_deny;
    uint64_t set_id;           /* in the worker's deny cache (random per load) */
    tg_store_script_t script;
    tg_show_keys_t show_keys;  /* the status page's */
    tg_limited_t *limited;     /* made by start, or passed on by inherit */
} q_conf_t;

/* store: redis — one counter per key and period, KEYS[1] =
 * PREFIX quota:{day|month:TZ:KEY}:PERIOD, expiring a day after its
 * period ends. ARGV: cost (1), limit, expire_at (unix seconds).
 * Returns { allowed, used }. */
static const char QUOTA_LUA[] =
    "local used = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, used} end\n"
    "used = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
    "redis.call('EXPIREAT', KEYS[1], ARGV[3])\n"
    "return {1, used}\n";

/* What a paused request waits with (fx->state). */
typedef struct q_wait {
    const struct q_conf *c;
    const char *key;           /* the client's key (limited.h) */
    size_t len;
    int64_t left;              /* seconds to the end of the period */
    uint64_t deny_hash, at_ms; /* deny cache slot; monotonic ms when asked */
} q_wait_t;

static void q_destroy(void *p)
{
    q_conf_t *c = p;
    if (c == NULL)
        return;
    tg_filter_key_free(&c->key);
    tg_limited_unref(c->limited);
    free(c->tz_name);
    free(c->clock_file);
    tg_tz_free(&c->tz);
    tg_keyshards_unref(c->table);
    free(c);
}
_Static_assert(sizeof(tg_quota_period_t) == sizeof(int), "period is read as an int field (the choice's index)");
static const tg_key_t quota_keys[] = {
    { "key", TG_KEY_STRING, "as `rate_limit`'s `key`", "`client_address`", "whose requests share the budget",
      .flags = TG_KEY_OR_LIST },
    { "limit", TG_KEY_INT, "integer 1–10^12 (required)", "—", "requests per period", .min = 1,
      .max = 1000000000000LL, .flags = TG_KEY_REQUIRED, TG_FIELD(q_conf_t, limit, TG_FIELD_U64) },
    { "period", TG_KEY_ENUM, "`day` or `month` (required)", "—", "the calendar period", .choices = "day|month",
      .flags = TG_KEY_REQUIRED, TG_FIELD(q_conf_t, period, TG_FIELD_INT) }, /* tg_quota_period_t: the choices' order */
    { "tz", TG_KEY_STRING, "IANA zone name, or `UTC`", "`UTC`",
      "where midnight is: read from `/usr/share/zoneinfo` at load, so `Europe/Berlin` days are 23 or 25 hours long "
      "across DST changes; an unknown zone is a config error",
      TG_FIELD(q_conf_t, tz_name, TG_FIELD_STR) },
    { "response_headers", TG_KEY_BOOL, "bool", "`false`", "RateLimit headers on allowed responses too",
      TG_FIELD(q_conf_t, response_headers, TG_FIELD_INT) },
    { "max_keys", TG_KEY_INT, "integer 1–10^8", "`100000`",
      "keys held; a new key that finds the table full replaces one whose period is over, else passes uncounted",
      .min = 1, .max = 100000000, TG_FIELD(q_conf_t, max_keys, TG_FIELD_U64), .def = 100000 },
    { "store", TG_KEY_ENUM, "`local` or `redis`", "`local`",
      "`redis`: one counter per key and period in the top-level `redis:`, shared by every gateway and kept across "
      "restarts",
      .choices = "local|redis" },
    { "on_store_error", TG_KEY_ENUM, "`allow` or `deny`", "`allow`", "as `rate_limit`'s",
      .choices = "allow|deny" },
    TG_SHOW_KEYS_ROW,
};
static const tg_keyset_t quota_keyset = TG_KEYSET("filter.quota", "quota", quota_keys);


static void *q_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[10];
    q_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_quota);
    int rc = tg_node_read_into(node, "quota", &quota_keyset, c, v);
    tg_node_t store = tg_node_get(v, &quota_keyset, "store"), on_error = tg_node_get(v, &quota_keyset, "on_store_error");
    tg_node_t key = tg_node_get(v, &quota_keyset, "key"), tz = tg_node_get(v, &quota_keyset, "tz");
    if (tg_filter_parse_store(&store, &on_error, &c->redis, &c->on_store_error_deny) < 0)
        rc = -1;
    if (c->redis && (tg_store_script_init(&c->script, QUOTA_LUA) < 0 || RAND_bytes((unsigned char *)&c->set_id, 8) != 1))
        rc = -1;
    tg_node_t show_keys = tg_node_get(v, &quota_keyset, "show_keys");
    if (tg_filter_key_parse(&key, "quota", &c->key) < 0 || tg_show_keys_parse(&show_keys, &c->key, &c->show_keys) < 0)
        rc = -1;
    if (c->tz_name == NULL && !tg_node_present(&tz) && (c->tz_name = strdup("UTC")) == NULL)
        rc = -1;
    const char *why = NULL;
    if (c->tz_name != NULL && tg_tz_load(c->tz_name, &c->tz, &why) < 0) {
        tg_node_error(tg_node_present(&tz) ? &tz : node, "tz: '%s': %s", c->tz_name, why);
        rc = -1;
    }
    const char *clock = getenv(TG_QUOTA_CLOCK_ENV);
    if (clock != NULL && (c->clock_file = strdup(clock)) == NULL)
        rc = -1;
    if (rc == 0 && (c->table = tg_keyshards_new(free_node)) == NULL)
        rc = -1;
    if (rc < 0) {
        q_destroy(c);
        return NULL;
    }
    return c;
}

/* The RateLimit draft's fields, with the period as the window. */
static void quota_headers(const q_conf_t *c, uint64_t remaining, int64_t left_s, tg_headers_t *h, tg_arena_t *a)
{
    tg_filter_header_printf(h, a, "ratelimit-policy", "\"quota\";q=%llu;w=%u", (unsigned long long)c->limit,
               c->period == TG_QUOTA_DAY ? 86400u : 2592000u);
    tg_filter_header_printf(h, a, "ratelimit", "\"quota\";r=%llu;t=%lld", (unsigned long long)remaining, (long long)left_s);
}

/* The store did not answer: on_store_error. */
static tg_filter_status_t q_store_failed(const q_conf_t *c, tg_filter_exchange_t *fx)
{
    return tg_filter_store_failed(fx, c->on_store_error_deny, 0, Q_BITS(c, Q_STORE_ALLOWED), Q_BITS(c, Q_STORE_DENIED));
}

/* A decision: pass (with headers if asked for) or 429 until the period ends. */
static tg_filter_status_t q_decide(const q_conf_t *c, tg_filter_exchange_t *fx, int allowed, uint64_t remaining,
                                   int64_t left, const char *key, size_t len)
{
    if (!allowed) {
        tg_limited_note(c->limited, fx->worker, key, len, NULL, tg_clock_ms());
        fx->counted |= Q_BITS(c, Q_LIMITED);
        fx->reply_status = 429;
        fx->reply_message = "quota exceeded";
        tg_filter_header_printf(&fx->reply_headers, fx->arena, "retry-after", "%lld", (long long)left);
        quota_headers(c, 0, left, &fx->reply_headers, fx->arena);
        return TG_FILTER_REPLY;
    }
    fx->counted |= Q_BITS(c, Q_ALLOWED);
    if (c->response_headers)
        quota_headers(c, remaining, left, &fx->response_headers, fx->arena);
    return TG_FILTER_CONTINUE;
}

static void q_store_done(void *arg, uint64_t gen, tg_store_status_t status, const tg_resp_value_t *v)
{
    tg_filter_exchange_t *fx = arg;
    q_wait_t *qw = tg_filter_paused_state(fx, gen);
    if (qw == NULL)
        return; /* the exchange is over */
    const q_conf_t *c = qw->c;
    if (!tg_store_ints(status, v, 2) || v->items[1].integer < 0) {
        tg_filter_resume(fx, gen, q_store_failed(c, fx));
        return;
    }
    int allowed = v->items[0].integer == 1;
    uint64_t used = (uint64_t)v->items[1].integer;
    if (!allowed && fx->store != NULL) /* over until the period ends (or a reload changes the limit) */
        tg_deny_cache_put(&fx->store->deny, qw->deny_hash, qw->at_ms + (uint64_t)qw->left * 1000, 1, 0);
    tg_filter_resume(fx, gen, q_decide(c, fx, allowed, used >= c->limit ? 0 : c->limit - used, qw->left, qw->key,
                                       qw->len));
}

/* The wall clock, or in tests the time written in TG_QUOTA_CLOCK_ENV's
 * file (an unreadable file reads as the wall clock). */
static int64_t q_now(const q_conf_t *c)
{
    if (c->clock_file != NULL) {
        FILE *f = fopen(c->clock_file, "r");
        long long t;
        int ok = f != NULL && fscanf(f, "%lld", &t) == 1;
        if (f != NULL)
            fclose(f);
        if (ok)
            return (int64_t)t;
    }
    return (int64_t)time(NULL);
}

/* store: redis — the deny cache, else one script call (PAUSE). */
static tg_filter_status_t q_store_request(const q_conf_t *c, tg_filter_exchange_t *fx, size_t index, const char *key,
                                          size_t len, int64_t period, int64_t end, int64_t left, int64_t now_at)
{
    tg_store_t *st = fx->store;
    if (st == NULL)
        return q_store_failed(c, fx);
    uint64_t now = tg_clock_ms(), h = tg_deny_cache_hash(&st->deny, c->set_id, key, len);
    if (tg_deny_cache_get(&st->deny, h, now, 1) != NULL) {
        fx->counted |= Q_BITS(c, Q_CACHED);
        return q_decide(c, fx, 0, 0, left, key, len);
    }
    char rkey[KEY_MAX + 256];
    int n = snprintf(rkey, sizeof(rkey), "%squota:{%s:%s:", st->key_prefix, c->period == TG_QUOTA_DAY ? "day" : "month",
                     c->tz_name);
    if (n < 0 || (size_t)n + len + 24 > sizeof(rkey))
        return q_store_failed(c, fx);
    memcpy(rkey + n, key, len);
    n += (int)len;
    n += snprintf(rkey + n, sizeof(rkey) - (size_t)n, "}:%lld", (long long)period);
    q_wait_t *qw = tg_arena_alloc(fx->arena, sizeof(*qw));
    char *ck = tg_arena_strndup(fx->arena, key, len);
    if (qw == NULL || ck == NULL)
        return q_store_failed(c, fx);
    *qw = (q_wait_t){ .c = c, .key = ck, .len = len, .left = left, .deny_hash = h, .at_ms = now };
    fx->state[index] = qw;
    char limit[24], expire[24];
    const char *argv[3] = { "1", limit, expire };
    size_t lens[3] = { 1, (size_t)snprintf(limit, sizeof(limit), "%llu", (unsigned long long)c->limit),
                       (size_t)snprintf(expire, sizeof(expire), "%lld", (long long)(end + 86400 - (now_at - (int64_t)time(NULL)))) };
    tg_store_call_t call = { .script = &c->script, .key = rkey, .key_len = (size_t)n, .argc = 3, .argv = argv,
                             .lens = lens, .cb = q_store_done, .arg = fx, .gen = fx->gen };
    if (st->ops->eval(st, &call) < 0)
        return q_store_failed(c, fx);
    return TG_FILTER_PAUSE;
}

static tg_filter_status_t q_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    q_conf_t *c = p;
    char key[KEY_MAX];
    size_t len = tg_filter_key_build(&c->key, fx, key, sizeof(key));
    int64_t now = q_now(c), end;
    int64_t period = tg_quota_period(&c->tz, c->period, now, &end);
    if (c->redis)
        return q_store_request(c, fx, index, key, len, period, end, end - now > 0 ? end - now : 1, now);
    uint64_t h;
    q_shard_t *sh = tg_keyshards_pick(c->table, key, len, &h);
    pthread_mutex_lock(&sh->lock);
    q_entry_t *e = (q_entry_t *)tg_keytab_find(&sh->kt, h, key, len);
    if (e == NULL) {
        int room = atomic_load(&c->table->keys) < c->max_keys || evict_stale(c->table, sh, period) == 0;
        if (room && (e = calloc(1, sizeof(*e) + len)) != NULL) {
            memcpy(e->key, key, len);
            e->node = (tg_kt_node_t){ .hash = h, .key = e->key, .keylen = len };
            e->period = period;
            if (tg_keytab_insert(&sh->kt, &e->node) < 0) {
                free(e);
                e = NULL;
            } else {
                atomic_fetch_add(&c->table->keys, 1);
            }
        }
    }
    if (e == NULL) { /* full of this period's keys: passes uncounted */
        pthread_mutex_unlock(&sh->lock);
        fx->counted |= Q_BITS(c, Q_TABLE_FULL);
        return TG_FILTER_CONTINUE;
    }
    if (e->period != period) { /* a new day (or month): the count starts again */
        e->period = period;
        e->used = 0;
    }
    int allowed = e->used < c->limit;
    if (allowed)
        e->used++;
    uint64_t remaining = c->limit - e->used;
    pthread_mutex_unlock(&sh->lock);
    return q_decide(c, fx, allowed, remaining, end - now > 0 ? end - now : 1, key, len);
}

/* A reload that keeps what is counted keeps the counts (a new limit
 * applies to them at once). */
static void q_inherit(void *new_conf, void *old_conf)
{
    q_conf_t *n = new_conf, *o = old_conf;
    tg_limited_inherit(&n->limited, n->show_keys, o->limited, o->show_keys);
    if (!tg_filter_key_equal(&n->key, &o->key) || n->period != o->period || strcmp(n->tz_name, o->tz_name) != 0)
        return;
    tg_keyshards_unref(n->table);
    n->table = tg_keyshards_ref(o->table);
}

static int q_start(void *p, const tg_filter_host_t *host, tg_errors_t *errs)
{
    (void)host;
    q_conf_t *c = p;
    return tg_limited_start(&c->limited, c->show_keys, "quota", errs);
}

typedef struct q_usage {
    int64_t period;
    uint64_t limit, busiest, at_limit;
} q_usage_t;

static void q_usage_of(const tg_kt_node_t *n, void *arg)
{
    const q_entry_t *e = (const q_entry_t *)n;
    q_usage_t *u = arg;
    if (e->period != u->period)
        return; /* a past period's count: starts again at its next request */
    if (e->used > u->busiest)
        u->busiest = e->used;
    u->at_limit += e->used >= u->limit;
}

/* The plan's use this period (the busiest key, keys with nothing left),
 * then who was refused. */
static void q_status(void *p, struct evbuffer *out)
{
    q_conf_t *c = p;
    int64_t end;
    q_usage_t u = { .period = tg_quota_period(&c->tz, c->period, q_now(c), &end), .limit = c->limit };
    evbuffer_add_printf(out, "\"mode\": \"enforce\", \"store\": \"%s\", ", c->redis ? "redis" : "local");
    tg_limited_key_json(&c->key, c->show_keys, out);
    char tz[128];
    tg_json_escape(tz, sizeof(tz), c->tz_name);
    evbuffer_add_printf(out, ", \"plans\": [{\"name\": \"quota\", \"period\": \"%s\", \"tz\": \"%s\", \"ends_at\": %lld",
                        c->period == TG_QUOTA_DAY ? "day" : "month", tz, (long long)end);
    if (c->redis) {
        evbuffer_add_printf(out, ", \"keys\": null, \"max_keys\": null, \"limits\": [{\"limit\": %llu, "
                                 "\"busiest\": null, \"at_limit\": null}]}], ",
                            (unsigned long long)c->limit);
    } else {
        tg_keyshards_each(c->table, q_usage_of, &u);
        evbuffer_add_printf(out, ", \"keys\": %zu, \"max_keys\": %llu, \"limits\": [{\"limit\": %llu, "
                                 "\"busiest\": %llu, \"at_limit\": %llu}]}], ",
                            atomic_load(&c->table->keys), (unsigned long long)c->max_keys,
                            (unsigned long long)c->limit, (unsigned long long)u.busiest,
                            (unsigned long long)u.at_limit);
    }
    tg_limited_json(c->limited, out, tg_clock_ms());
}

const tg_filter_type_t tg_filter_quota = {
    .name = "quota",
    .doc = "a request budget per client per calendar day or month, in a time zone",
    .keys = &quota_keyset,
    .create = q_create,
    .destroy = q_destroy,
    .on_request = q_on_request,
    .inherit = q_inherit,
    .start = q_start,
    .status = q_status,
    .counters = q_counters,
    .n_counters = sizeof(q_counters) / sizeof(q_counters[0]),
};
