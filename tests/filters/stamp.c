/*
 * tests/filters/stamp.c — an example filter, whole in one file: what a
 * new filter takes. Registered by one line (stamp.def, which the test
 * binary tollgate_stamp compiles into its registry; a built-in filter's
 * line goes in filters/builtin.def), it uses every surface a filter has:
 *
 *   - its keys, as rows that parse themselves (tg_node_read_into);
 *   - its own counters, on /metrics without an edit elsewhere;
 *   - per-worker state (a count of the requests each worker stamped);
 *   - a pause (delay) on a timer of the worker's loop, with a cancel hook
 *     that stops the timer when the client leaves first.
 *
 *   filters: [{ stamp: { value: v1, header: x-stamp, delay: 50ms } }]
 *
 * stamps each request (and its response) with `header: VALUE; n=COUNT`,
 * COUNT being how many requests this worker stamped for the filter.
 */
#include <stdlib.h>
#include <string.h>

#include "filters/filter.h"

typedef struct stamp_conf {
    char *header;               /* absent: "x-stamp" */
    char *value;
    uint64_t delay_ms;
    unsigned counters;          /* the first bit of its counters */
} stamp_conf_t;

static const tg_key_t stamp_keys[] = {
    { "value", TG_KEY_STRING, "string (required)", "—", "what the stamp says", .flags = TG_KEY_REQUIRED,
      TG_FIELD(stamp_conf_t, value, TG_FIELD_STR) },
    { "header", TG_KEY_STRING, "header name", "`x-stamp`", "the header it goes in",
      TG_FIELD(stamp_conf_t, header, TG_FIELD_STR) },
    { "delay", TG_KEY_DURATION, "duration 0–10s", "`0`", "how long each request waits before it goes on",
      .min = 0, .max = 10000, TG_FIELD(stamp_conf_t, delay_ms, TG_FIELD_U64) },
};
static const tg_keyset_t stamp_keyset = TG_KEYSET("filter.stamp", "stamp", stamp_keys);

enum { STAMPED, CANCELLED };
static const tg_filter_counter_t stamp_counters[] = {
    [STAMPED] = { "tollgate_stamp_requests_total", "Requests the stamp filter stamped, by route." },
    [CANCELLED] = { "tollgate_stamp_cancelled_total", "Requests whose client left while stamp delayed them, by route." },
};

extern const tg_filter_type_t tg_filter_stamp;

static void stamp_destroy(void *p)
{
    stamp_conf_t *c = p;
    if (c == NULL)
        return;
    free(c->header);
    free(c->value);
    free(c);
}

static void *stamp_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[3];
    stamp_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->counters = tg_filter_counter_base(&tg_filter_stamp);
    int rc = tg_node_read_into(node, "stamp", &stamp_keyset, c, v);
    if (rc == 0 && c->header != NULL && !tg_node_header_name_ok(c->header)) {
        tg_node_error(&v[1], "stamp: header: '%s' is not a header name", c->header);
        rc = -1;
    }
    if (rc == 0 && c->header == NULL && (c->header = strdup("x-stamp")) == NULL)
        rc = -1;
    if (rc < 0) {
        stamp_destroy(c);
        return NULL;
    }
    return c;
}

/* ---- per worker ---- */

typedef struct stamp_worker {
    uint64_t stamped;           /* only its worker touches it: no lock, no atomic */
} stamp_worker_t;

static void *stamp_worker_init(void *conf, unsigned worker)
{
    return calloc(1, sizeof(stamp_worker_t));
}

static void stamp_worker_free(void *conf, void *state)
{
    free(state);
}

/* ---- the hooks ---- */

static void stamp(stamp_conf_t *c, tg_filter_exchange_t *fx, size_t index)
{
    stamp_worker_t *w = tg_filter_worker_state(fx, index);
    uint64_t n = w != NULL ? ++w->stamped : 0;
    tg_filter_header_printf(&fx->req->headers, fx->arena, c->header, "%s; n=%llu", c->value, (unsigned long long)n);
    tg_filter_header_printf(&fx->response_headers, fx->arena, c->header, "%s; n=%llu", c->value,
                            (unsigned long long)n);
    tg_filter_count(fx, c->counters, STAMPED);
}

typedef struct stamp_wait {
    tg_timer_t timer;
    stamp_conf_t *c;
    tg_filter_exchange_t *fx;
    uint64_t gen;
    size_t index;
} stamp_wait_t;

static void on_delay(tg_timer_t *t)
{
    stamp_wait_t *sw = TG_CONTAINER_OF(t, stamp_wait_t, timer);
    stamp(sw->c, sw->fx, sw->index);
    tg_filter_resume(sw->fx, sw->gen, TG_FILTER_CONTINUE);
}

static tg_filter_status_t stamp_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    stamp_conf_t *c = p;
    if (c->delay_ms == 0) {
        stamp(c, fx, index);
        return TG_FILTER_CONTINUE;
    }
    stamp_wait_t *sw = tg_arena_alloc(fx->arena, sizeof(*sw)); /* dies with the exchange */
    if (sw == NULL) {
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    *sw = (stamp_wait_t){ .timer.fn = on_delay, .c = c, .fx = fx, .gen = fx->gen, .index = index };
    if (tg_timer_set(fx->loop, &sw->timer, c->delay_ms) < 0) {
        stamp(c, fx, index); /* no timer: no delay */
        return TG_FILTER_CONTINUE;
    }
    fx->state[index] = sw;
    return TG_FILTER_PAUSE;
}

/* The client left during the delay: the timer (in the exchange's arena)
 * must not fire after the exchange is gone. */
static void stamp_on_cancel(void *p, tg_filter_exchange_t *fx, size_t index)
{
    stamp_conf_t *c = p;
    stamp_wait_t *sw = fx->state[index];
    if (sw == NULL)
        return;
    tg_timer_cancel(&sw->timer);
    fx->state[index] = NULL;
    tg_filter_count(fx, c->counters, CANCELLED);
}

const tg_filter_type_t tg_filter_stamp = {
    .name = "stamp",
    .doc = "stamps requests and responses with a header (an example filter, in the test binary only)",
    .keys = &stamp_keyset,
    .create = stamp_create,
    .destroy = stamp_destroy,
    .on_request = stamp_on_request,
    .on_cancel = stamp_on_cancel,
    .worker_init = stamp_worker_init,
    .worker_free = stamp_worker_free,
    .counters = stamp_counters,
    .n_counters = sizeof(stamp_counters) / sizeof(stamp_counters[0]),
};
