/*
 * filters/filter.h — interceptor-style filters: the interface every filter
 * implements and the view of an exchange it works on.
 *
 * A filter type is a small vtable (create from its YAML node, destroy, and
 * one hook per phase); an instance is the config it created, owned by the
 * config snapshot and shared read-only by all workers. A route's chain is
 * the global `filters:` list followed by the route's own, in file order;
 * request hooks run in that order, response and completion hooks in
 * reverse. Adding a filter = one new file + one line in filters/builtin.def
 * (docs/filters.md, "Writing a filter"; tests/filters/stamp.c is one).
 *
 * Hook return values (request phase):
 *   TG_FILTER_CONTINUE  go on to the next filter, then upstream;
 *   TG_FILTER_REPLY     stop: answer locally with fx->reply_status and
 *                       fx->reply_message (+ fx->reply_headers); response
 *                       and completion hooks still run.
 *   TG_FILTER_PAUSE     the filter started async work (a timer, a lookup)
 *                       on fx->loop and will call tg_filter_resume(fx, gen,
 *                       status) from that work's callback, with gen = the
 *                       fx->gen it saw; the chain then goes on (status
 *                       CONTINUE) or replies (REPLY). If the exchange ends
 *                       meanwhile (client gone), the filter's on_cancel
 *                       hook runs first (stop the timer, let the lookup
 *                       go) and a late resume is ignored. Work finished on
 *                       another thread (a slot another worker freed) comes
 *                       home with tg_filter_wake.
 * All hooks run on the exchange's worker thread; per-exchange memory comes
 * from fx->arena and dies with the exchange.
 */
#ifndef TG_FILTERS_FILTER_H
#define TG_FILTERS_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "config/node.h"
#include "filters/host.h"
#include "filters/store.h"
#include "proxy/base/loop.h"
#include "proxy/base/http.h"

struct evbuffer;
struct tg_openapi;

typedef enum {
    TG_FILTER_CONTINUE = 0,
    TG_FILTER_REPLY = 1,
    TG_FILTER_PAUSE = 2,
} tg_filter_status_t;


/* ---- what a chain asks of the exchange ---- */

/* Counters: each filter type declares its own (tg_filter_type_t.counters),
 * one row per Prometheus series beside `route`; /metrics renders them
 * without knowing the filter. The registry gives the types' rows
 * consecutive bits, in table order (tg_filter_counter_base); a hook
 * counts a decision on its exchange with tg_filter_count, at most once
 * per exchange and row, and the exchange adds them to its route's
 * counters when it ends. Rows of different types that name the same
 * family and value are one series (their sum): how a filter keeps an old
 * name as an alias. */
#define TG_FILTER_COUNTERS_MAX 64
typedef struct tg_filter_counter {
    const char *family;         /* "tollgate_quota_decisions_total" (a counter) */
    const char *help;           /* the family's HELP (its first row's is used) */
    const char *label;          /* a label beside route ("decision"), or NULL */
    const char *value;          /* its value ("limited"); NULL with no label */
} tg_filter_counter_t;

/* Retries: a policy a filter (`retry`) hands to the exchange through its
 * retry_policy hook; the exchange consults it when an upstream attempt
 * fails or answers with a retriable status before anything reached the
 * client. */
enum {
    TG_RETRY_CONNECT_FAILURE = 1 << 0,
    TG_RETRY_RESET = 1 << 1,
    TG_RETRY_502 = 1 << 2,
    TG_RETRY_503 = 1 << 3,
    TG_RETRY_504 = 1 << 4,
    TG_RETRY_TIMEOUT = 1 << 5,            /* per-try or response timeout */
    TG_RETRY_GRPC_UNAVAILABLE = 1 << 6,   /* grpc-status 14 in a trailers-only answer */
    TG_RETRY_GRPC_DEADLINE = 1 << 7,      /* grpc-status 4 */
    TG_RETRY_GRPC_EXHAUSTED = 1 << 8,     /* grpc-status 8 */
};

typedef struct tg_retry_policy {
    unsigned attempts;          /* total tries, the first included */
    unsigned on;                /* TG_RETRY_* conditions */
    uint64_t per_try_timeout_ms;/* 0: the route's timeout */
    uint64_t base_ms, max_ms;   /* backoff: full jitter in [0, min(max, base * 2^n)] */
    char **methods;             /* methods that may be retried */
    size_t n_methods;
    unsigned budget_percent;    /* retries in flight <= this share of requests in flight... */
    unsigned budget_min;        /* ...or this many, whichever is larger (per worker) */
} tg_retry_policy_t;

/* The policy for a route: its own chain's, else the global chain's, else NULL. */
const tg_retry_policy_t *tg_filters_retry_policy(const tg_filter_list_t *global, const tg_filter_list_t *route);

int tg_retry_method_allowed(const tg_retry_policy_t *p, const char *method);

/* The backoff before retry number n (1 = first retry), given 64 random bits. */
uint64_t tg_retry_backoff_ms(const tg_retry_policy_t *p, unsigned n, uint64_t random);

/* Does this upstream answer call for a retry under the policy? */
int tg_retry_on_status(const tg_retry_policy_t *p, int status, const char *grpc_status);


typedef struct tg_filter_exchange tg_filter_exchange_t;

/* What the exchange does for its filters (set by the exchange, so that
 * filters link without it). */
typedef struct tg_filter_exchange_ops {
    /* tg_filter_resume */
    void (*resume)(tg_filter_exchange_t *fx, uint64_t gen, tg_filter_status_t status);
    /* Runs fn(fx, gen) on the worker `home` stands for, from any thread;
     * 0, or -1 (out of memory: nothing will run). */
    int (*post)(void *home, void (*fn)(tg_filter_exchange_t *fx, uint64_t gen), tg_filter_exchange_t *fx,
                uint64_t gen);
    /* An HTTP call through a cluster of the exchange's config (host.h),
     * on the exchange's worker: cb(arg, result) runs later on it, once,
     * unless call_cancel comes first. NULL: out of memory. */
    void *(*call)(tg_filter_exchange_t *fx, const struct tg_filter_call *c,
                  void (*cb)(void *arg, const struct tg_filter_call_result *r), void *arg);
    void (*call_cancel)(tg_filter_exchange_t *fx, void *call);
} tg_filter_exchange_ops_t;

/* What a filter sees of an exchange. */
struct tg_filter_exchange {
    tg_request_t *req;          /* headers may be edited (they go upstream) */
    tg_arena_t *arena;
    const char *client_addr;
    const char *scheme;         /* "http" or "https": how the client came */
    const char *route;          /* route name */
    unsigned grpc;              /* tg_grpc_kind_t of the request as it arrived (proxy/base/grpc_frames.h) */
    size_t listener;
    unsigned worker;            /* the worker's index, for per-worker state */
    tg_loop_t *loop;            /* the worker's timers and deferred calls (proxy/base/loop.h), for async work */
    tg_store_t *store;          /* the worker's shared store (redis:), NULL if none is configured */
    uint64_t gen;               /* identifies this exchange across recycling */
    size_t paused_at;           /* chain index of the filter that paused */
    /* The client's identity: set by an auth filter (token name, API key
     * name, JWT sub); later filters (rate_limit key: identity) read it. */
    const char *identity;
    /* The verified client certificate's subject on a TLS connection with
     * client auth (NULL otherwise): the identity when no filter set one. */
    const char *peer_identity;
    /* The verified claims of the client's token (an auth filter that
     * accepted a JWT): its top-level string, number and boolean claims as
     * text. Empty otherwise. Later filters match on them (rate_limit
     * plans: `claim: { plan: pro }`). */
    tg_headers_t claims;
    /* The start of the request body, when a filter of the chain asked
     * for it (tg_filter_type_t.body_prefix): at most the largest ask, read
     * before the first request hook runs, valid until the chain is done;
     * body_whole: that is the whole body (also when there is none). */
    const unsigned char *body_prefix;
    size_t body_prefix_len;
    unsigned body_whole;
    /* Decisions, counted by the exchange in its route's metrics. */
    uint64_t counted;           /* 1 << counter bit (tg_filter_count) */
    /* Local reply, when a hook returns TG_FILTER_REPLY. */
    int reply_status;
    const char *reply_message;
    tg_headers_t reply_headers;
    /* A whole response of the filter's making instead (a cache hit): with
     * reply_response set, the exchange sends that head, then reply_body
     * (reply_body_len bytes, by reference: reply_release(reply_body,
     * reply_body_len, reply_release_arg) runs on the worker once they are
     * written or dropped, exactly once). The response hooks of the filters
     * before the one that replied see it as they see an upstream answer
     * (compress compresses a cache hit); fx->reply_headers are not used. */
    tg_response_t *reply_response;
    const void *reply_body;
    size_t reply_body_len;
    void (*reply_release)(const void *data, size_t len, void *arg);
    void *reply_release_arg;
    /* Whose response it is: 0 the upstream's (every filter's response
     * hooks run), else 1 + the chain index of the filter that made it
     * (the hooks of the filters before it run). Set by the exchange. */
    size_t reply_by;
    /* The cluster the request goes to (a split route: the one chosen),
     * for a filter's own calls on its behalf (ops->call). */
    const char *cluster;
    /* Headers added to the response the client gets (any status). */
    tg_headers_t response_headers;
    /* A request body of the filter's making for a request that came
     * without one (a REST GET mapped onto a gRPC call): sent upstream as
     * the body, and again on a retry (arena memory). Set by a request
     * hook. */
    const void *req_body;
    size_t req_body_len;
    /* The request now asks the upstream for trailers (te: trailers): a
     * filter that made it a gRPC call. */
    unsigned want_trailers;
    /* The upstream response's trailers, once its head arrived (NULL
     * before): complete when a response body hook sees fin, which may
     * move them into the body (gRPC-Web) and empty the list. */
    tg_headers_t *resp_trailers;
    void *state[TG_FILTER_MAX_PER_CHAIN]; /* one slot per filter of the chain */
    const tg_filter_list_t *chain[2];    /* the global chain, the route's: what index counts */
    const tg_filter_exchange_ops_t *ops;
    void *home;                 /* the exchange's worker, for ops->post */
};

/* Resumes a paused exchange. Worker thread. */
static inline void tg_filter_resume(tg_filter_exchange_t *fx, uint64_t gen, tg_filter_status_t status)
{
    fx->ops->resume(fx, gen, status);
}

/* A paused exchange's address, taken on its worker when it pauses, for
 * work that ends on another thread: tg_filter_wake(&waker, fn) runs
 * fn(fx, gen) back on the exchange's worker, where fn finds its state
 * with tg_filter_paused_state (NULL if the exchange ended meanwhile).
 * The waker is plain data: copy it out from under a lock, wake after. */
typedef struct tg_filter_waker {
    const tg_filter_exchange_ops_t *ops;
    void *home;
    tg_filter_exchange_t *fx;
    uint64_t gen;
} tg_filter_waker_t;

static inline tg_filter_waker_t tg_filter_waker(tg_filter_exchange_t *fx)
{
    return (tg_filter_waker_t){ fx->ops, fx->home, fx, fx->gen };
}

/* Any thread. 0, or -1 (out of memory: fn will not run). */
static inline int tg_filter_wake(const tg_filter_waker_t *w, void (*fn)(tg_filter_exchange_t *fx, uint64_t gen))
{
    return w->ops->post(w->home, fn, w->fx, w->gen);
}

/* The final record of an exchange, for completion hooks (access logs). */
typedef struct tg_filter_record {
    int64_t start_unix_us;      /* wall clock at the request head */
    const char *request_id;
    const char *listener;
    const char *route;          /* "" if no route matched */
    const char *method, *path, *protocol;
    int status;                 /* 0: no response was sent */
    const char *grpc_status;    /* gRPC: from the trailers (or a trailers-only head); NULL otherwise */
    uint64_t bytes_in, bytes_out; /* body bytes from / to the client */
    const char *client_addr;
    const char *identity;       /* NULL if none */
    const char *upstream;       /* endpoint of the last attempt, NULL if none */
    unsigned attempts;
    uint64_t total_us;          /* request head complete -> exchange end */
    uint64_t connect_us;        /* last attempt's upstream connect (0: pooled) */
    uint64_t ttfb_us;           /* request sent -> upstream response head */
    uint64_t upstream_us;       /* request sent -> upstream response end */
    uint64_t counted;           /* what the filters decided (1 << counter bit) */
    const char *trace_id, *span_id; /* W3C trace context (tracing:), hex; NULL without */
    /* The response the client got (NULL if none was sent): its head and
     * its trailers (HTTP/2, chunked HTTP/1.1, gRPC). */
    const tg_headers_t *response_headers, *response_trailers;
} tg_filter_record_t;

/* The route a filter instance sits on, for its prepare hook. */
typedef struct tg_filter_place {
    const char *route;          /* its name */
    const char *cluster;        /* its cluster; NULL when it splits its traffic (`clusters:`) */
    uint64_t timeout_ms;        /* its `timeout` */
} tg_filter_place_t;

typedef struct tg_filter_type {
    const char *name;           /* the YAML key: `- name: {...}` */
    const char *doc;            /* one line, for the schema and the man page */
    const tg_keyset_t *keys;    /* its keys: create() reads its node with them (tg_node_keys) */
    /* Parses the filter's node; returns the instance config, or NULL after
     * reporting errors through the node. The config path is for relative
     * file names. No side effects: it also runs under `tollgate -t` and
     * for configs that are never used (a reload that fails later): it may
     * read files the config names, never create or hold any, nor start a
     * thread. */
    void *(*create)(tg_node_t *node, const char *config_path);
    /* The config is about to be used (start-up, or a reload once inherit
     * ran): open what it writes to, start its threads, take the shared
     * objects it uses from host (host.h: key sets fetched by URL). 0, or
     * -1 with the reason in errs (the start-up or reload fails; destroy
     * cleans up). Main thread. May be NULL. */
    int (*start)(void *conf, const tg_filter_host_t *host, tg_errors_t *errs);
    /* What the filter must have from an upstream before it can serve
     * (grpc_json's descriptors by gRPC server reflection), fetched through
     * p's calls: at start-up and on a reload (after inherit, before
     * start) and under `tollgate -t`. at: the route whose chain holds it
     * (NULL in the global chain). 0, or -1 with the reason in errs (the
     * start-up, reload or check fails). Main thread; blocks for the
     * calls' time. May be NULL. */
    int (*prepare)(void *conf, const tg_filter_prep_t *p, const struct tg_filter_place *at, tg_errors_t *errs);
    void (*destroy)(void *conf);
    /* How many bytes of request body this filter wants to see in its
     * request hook (fx->body_prefix): the exchange reads that much (or the
     * whole body, if shorter) before the chain runs, within the route's
     * timeout. 0 or NULL: none. */
    size_t (*body_prefix)(const void *conf);
    /* Request head complete, route chosen. */
    tg_filter_status_t (*on_request)(void *conf, tg_filter_exchange_t *fx, size_t index);
    /* Before the response head goes to the client (may add headers). */
    void (*on_response)(void *conf, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp);
    /* Each piece of request body as it flows (decoded; fin at the end):
     * CONTINUE, or REPLY to stop the request (e.g. 413) with
     * reply_status/reply_message or, while no response has started, a
     * whole reply_response of its own. Only run when some filter of the
     * chain has the hook. */
    tg_filter_status_t (*on_request_body)(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece,
                                          int fin);
    /* Each piece of response body on its way to the client (may inspect or
     * edit it in place). */
    void (*on_response_body)(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece, int fin);
    /* The exchange ended while this filter had it paused (PAUSE, no
     * resume yet): stop what it started for it (timers, waits). Runs
     * before the completion hooks. May be NULL. Worker thread. */
    void (*on_cancel)(void *conf, tg_filter_exchange_t *fx, size_t index);
    /* No upstream answer came (connect failure, every endpoint down,
     * timeout, reset before the head; retries spent): status is the error
     * the client would get (502, 503, 504). REPLY with reply_response to
     * answer instead (a stale cache entry, RFC 9111 stale-if-error), else
     * CONTINUE. Reverse chain order, the first REPLY wins. May be NULL. */
    tg_filter_status_t (*on_no_answer)(void *conf, tg_filter_exchange_t *fx, size_t index, int status);
    /* The exchange is over (whatever happened). On the worker thread. */
    void (*on_complete)(void *conf, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec);
    /* Per-worker state (may be NULL): made by each worker on its own
     * thread when it takes the config up (tg_filters_worker_init; NULL
     * means out of memory and the worker keeps its previous config),
     * found by hooks with tg_filter_worker_state, freed with the config
     * (any thread, after its last exchange: plain memory, never events on
     * the worker's loop). For what one worker reuses across requests
     * without a lock: a digest context, a scratch buffer. */
    void *(*worker_init)(void *conf, unsigned worker);
    void (*worker_free)(void *conf, void *state);
    /* SIGUSR1: reopen files (log rotation). Main thread. */
    void (*reopen)(void *conf);
    /* Reload: new_conf replaces old_conf (same type, same place in the
     * chains of the same route); take over state worth keeping, e.g.
     * rate-limit counters. Main thread, before the new config is used. */
    void (*inherit)(void *new_conf, void *old_conf);
    /* The i-th request header (from 0) through which this filter tells
     * the upstream something trusted (auth: identity_header; ext_auth:
     * what the auth service answers), NULL past the last. A client-sent
     * copy of each is removed from every request on every listener before
     * any filter runs. Main thread, at config load. */
    const char *(*trust_header)(const void *conf, size_t i);
    /* What the status page and `/status.json` show of it (the limiting
     * filters: who was refused in the last minute, each plan's use against
     * its limits): members of one JSON object, `"name": value, ...`,
     * written to out. Main thread, while workers run the config (what it
     * reads is theirs under their locks). May be NULL. */
    void (*status)(void *conf, struct evbuffer *out);
    /* Its part of the admin listener's /-/openapi.json (grpc_json: the
     * REST mappings of its methods, with their messages' schemas), for
     * the route whose chain holds it (at; NULL in the global chain). Main
     * thread. May be NULL. */
    void (*openapi)(void *conf, struct tg_openapi *doc, const tg_filter_place_t *at);
    /* The retry policy this filter stands for, or NULL (retry). */
    const tg_retry_policy_t *(*retry_policy)(const void *conf);
    /* The counters it declares (see tg_filter_counter_t). */
    const tg_filter_counter_t *counters;
    size_t n_counters;
} tg_filter_type_t;

/* The first bit of a type's counters. Call once (at create) and keep it. */
unsigned tg_filter_counter_base(const tg_filter_type_t *type);
/* The row a bit stands for; NULL past the last. */
const tg_filter_counter_t *tg_filter_counter_at(unsigned bit);
/* The bits of every row with this family and value (NULL: any value). */
uint64_t tg_filter_counter_mask(const char *family, const char *value);

/* Counts row `id` of the filter's own (base: tg_filter_counter_base). */
static inline void tg_filter_count(tg_filter_exchange_t *fx, unsigned base, unsigned id)
{
    fx->counted |= 1ull << (base + id);
}

/* Adds a header whose value is formatted (at most 127 bytes), in arena
 * memory: RateLimit fields and the like. */
void tg_filter_header_printf(tg_headers_t *h, tg_arena_t *a, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));


/* In a store callback: the state the paused filter left in fx->state,
 * or NULL if the exchange is over (gen no longer its). */
static inline void *tg_filter_paused_state(tg_filter_exchange_t *fx, uint64_t gen)
{
    return fx->gen == gen ? fx->state[fx->paused_at] : NULL;
}

/* Reads a counting filter's `store: local | redis` and `on_store_error:
 * allow | deny` (either node may be absent). store: redis needs the
 * config's redis: section. 0, or -1 after reporting the error. */
int tg_filter_parse_store(tg_node_t *store, tg_node_t *on_error, int *redis, int *deny);

/* A filter counting in the shared store got no answer (timeout, error,
 * store down): its on_store_error decides. deny: 503 with Retry-After
 * (unless shadow: it passes); else the request passes uncounted. The
 * decision is counted either way: the bits of allowed or denied. */
tg_filter_status_t tg_filter_store_failed(tg_filter_exchange_t *fx, int deny, int shadow, uint64_t allowed,
                                          uint64_t denied);

/* ---- the registry (filters/registry.c: filters/builtin.def) ---- */

/* The filter types, by name; NULL if unknown. */
const tg_filter_type_t *tg_filter_find(const char *name);
/* The i-th type of the table; NULL past the last. */
const tg_filter_type_t *tg_filter_type_at(size_t i);
/* "auth, rate_limit, ..." for error messages. */
const char *tg_filter_names(void);
/* The built-in filters as the config loader takes them (immutable). */
const tg_filter_registry_t *tg_filters_registry(void);
/* The built-in filters as the schema shows them: fills out (room for cap)
 * and returns how many there are. */
size_t tg_filters_schema(tg_schema_filter_t *out, size_t cap);

/* Runs the request hooks of the global chain then the route's, from chain
 * index `from` (0 at first). Returns at the first REPLY or PAUSE (then
 * fx->paused_at is that filter's index). */
tg_filter_status_t tg_filters_on_request(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                         tg_filter_exchange_t *fx, size_t from);

/* The largest body_prefix a filter of the chain asks for (0: none). */
size_t tg_filters_body_prefix(const tg_filter_list_t *global, const tg_filter_list_t *route);

/* Body hooks of the chain, in order (request) and reverse (response). */
int tg_filters_have_body_hooks(const tg_filter_list_t *global, const tg_filter_list_t *route);
/* Would a response-body hook see this exchange's response (for a filter's
 * own reply, only the filters before the one that made it)? */
int tg_filters_see_response_body(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                 const tg_filter_exchange_t *fx);
tg_filter_status_t tg_filters_on_request_body(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                              tg_filter_exchange_t *fx, struct evbuffer *piece, int fin);
void tg_filters_on_response_body(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                 tg_filter_exchange_t *fx, struct evbuffer *piece, int fin);

/* No upstream answer (on_no_answer, reverse order): REPLY (fx->reply_by
 * set, fx->reply_response filled) or CONTINUE. */
tg_filter_status_t tg_filters_on_no_answer(const tg_filter_list_t *global, const tg_filter_list_t *route,
                                           tg_filter_exchange_t *fx, int status);

/* The exchange ended while paused at fx->paused_at: that filter's on_cancel. */
void tg_filters_on_cancel(const tg_filter_list_t *global, const tg_filter_list_t *route, tg_filter_exchange_t *fx);
/* Runs the completion hooks in reverse order. */
void tg_filters_on_complete(const tg_filter_list_t *global, const tg_filter_list_t *route, tg_filter_exchange_t *fx,
                            const tg_filter_record_t *rec);
/* Lets each filter of new_cfg take over the state of its counterpart in
 * old_cfg: same route name (or the global chain), same position, same type. */
void tg_filters_inherit(const tg_config_t *new_cfg, const tg_config_t *old_cfg);

/* Calls every filter's start hook in a config about to be used by
 * n_workers workers (host: what the process offers them, host.h), and
 * makes room for the per-worker states; 0, or -1 with the reasons in
 * errs. Main thread. */
/* Every filter's openapi hook, the routes' chains in file order (the
 * first route's operation wins, as routing does) then the global one. */
void tg_filters_openapi(const tg_config_t *cfg, struct tg_openapi *doc);

/* Every filter's prepare hook (filter.h), the global chain's then each
 * route's. 0, or -1 with the reasons in errs. */
int tg_filters_prepare(const tg_config_t *cfg, const tg_filter_prep_t *p, tg_errors_t *errs);
int tg_filters_start(const tg_config_t *cfg, unsigned n_workers, const tg_filter_host_t *host, tg_errors_t *errs);

/* Worker `worker` takes cfg up: its per-worker states (worker_init). 0,
 * or -1 (out of memory). That worker's thread (or before it runs). */
int tg_filters_worker_init(const tg_config_t *cfg, unsigned worker);

/* The per-worker state of chain index `index` on the exchange's worker;
 * NULL if the type has none or the config was not started (tests). */
static inline void *tg_filter_worker_state(const tg_filter_exchange_t *fx, size_t index)
{
    const tg_filter_list_t *l = fx->chain[0];
    if (index >= l->n) {
        index -= l->n;
        l = fx->chain[1];
    }
    const tg_filter_instance_t *f = &l->v[index];
    return f->per_worker != NULL && fx->worker < f->n_workers ? f->per_worker[fx->worker] : NULL;
}

/* Calls every filter's reopen hook in a config (SIGUSR1). */
void tg_filters_reopen(const tg_config_t *cfg);

/* Runs the response hooks in reverse order. */
void tg_filters_on_response(const tg_filter_list_t *global, const tg_filter_list_t *route, tg_filter_exchange_t *fx,
                            tg_response_t *resp);

#endif
