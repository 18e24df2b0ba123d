/*
 * filters/fault.c — see fault.h.
 *
 * A delay pauses the chain: a one-shot timer on the worker's loop resumes
 * it (and frees itself), so the worker never sleeps. If the client goes
 * away meanwhile the resume is ignored (tg_filter_resume checks the
 * exchange generation). The coin flips come from a hash of the exchange's
 * generation: no shared random state, no lock.
 */
#include "filters/fault.h"

#include <stdlib.h>
#include <string.h>

typedef struct fault_conf {
    uint64_t delay_ms;          /* 0: no delays */
    uint32_t delay_percent;
    uint32_t abort_status;      /* 0: no aborts */
    uint32_t abort_percent;
} fault_conf_t;

typedef struct pending {
    tg_filter_exchange_t *fx;
    uint64_t gen;
    tg_timer_t timer;           /* the delay */
    int then_abort;
    int abort_status;
} pending_t;

static void fault_destroy(void *p)
{
    free(p);
}
static const tg_key_t delay_keys[] = {
    { "duration", TG_KEY_DURATION, "duration (required)", "—", "how long a delayed request is held",
      .flags = TG_KEY_REQUIRED, TG_FIELD(fault_conf_t, delay_ms, TG_FIELD_U64) },
    { "percent", TG_KEY_INT, "integer 0–100", "`100`", "share of requests delayed", .min = 0, .max = 100,
      TG_FIELD(fault_conf_t, delay_percent, TG_FIELD_U32), .def = 100 },
};
static const tg_keyset_t delay_keyset = TG_KEYSET("filter.fault.delay", "fault delay", delay_keys);

static const tg_key_t abort_keys[] = {
    { "status", TG_KEY_INT, "integer 200–599 (required)", "—", "the status of the answer",
      .min = 200, .max = 599, .flags = TG_KEY_REQUIRED, TG_FIELD(fault_conf_t, abort_status, TG_FIELD_U32) },
    { "percent", TG_KEY_INT, "integer 0–100", "`100`", "share of requests answered so", .min = 0, .max = 100,
      TG_FIELD(fault_conf_t, abort_percent, TG_FIELD_U32), .def = 100 },
};
static const tg_keyset_t abort_keyset = TG_KEYSET("filter.fault.abort", "fault abort", abort_keys);

static const tg_key_t fault_keys[] = {
    { "delay", TG_KEY_MAP, "`{ duration, percent }`", "none", "hold a share of requests before they go on",
      .sub = &delay_keyset },
    { "abort", TG_KEY_MAP, "`{ status, percent }`", "none",
      "answer a share of requests at once with `status` (`{\"error\": \"fault injected\"}`)", .sub = &abort_keyset },
};
static const tg_keyset_t fault_keyset = TG_KEYSET("filter.fault", "fault", fault_keys);


static void *fault_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[2], f[2];
    fault_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "fault", &fault_keyset, c, v);
    tg_node_t delay = tg_node_get(v, &fault_keyset, "delay"), abort_ = tg_node_get(v, &fault_keyset, "abort");
    /* each part's rows fill their own fields; an absent part leaves its duration or status 0: off */
    if (tg_node_read_into(&delay, "fault delay", &delay_keyset, c, f) < 0 ||
        tg_node_read_into(&abort_, "fault abort", &abort_keyset, c, f) < 0)
        rc = -1;
    if (rc == 0 && c->delay_ms == 0 && c->abort_status == 0) {
        tg_node_error(node, "fault: configure delay { duration, percent } and/or abort { status, percent }");
        rc = -1;
    }
    if (rc < 0) {
        free(c);
        return NULL;
    }
    return c;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static tg_filter_status_t abort_now(tg_filter_exchange_t *fx, int status)
{
    fx->reply_status = status;
    fx->reply_message = "fault injected";
    return TG_FILTER_REPLY;
}

static void on_delay_done(tg_timer_t *t)
{
    pending_t *p = TG_CONTAINER_OF(t, pending_t, timer);
    tg_filter_exchange_t *fx = p->fx;
    uint64_t gen = p->gen;
    int then_abort = p->then_abort, status = p->abort_status;
    free(p);
    if (then_abort && fx->gen == gen) {
        fx->reply_status = status;
        fx->reply_message = "fault injected";
        tg_filter_resume(fx, gen, TG_FILTER_REPLY);
    } else {
        tg_filter_resume(fx, gen, TG_FILTER_CONTINUE);
    }
}

static tg_filter_status_t fault_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    fault_conf_t *c = conf;
    uint64_t r = mix(fx->gen * 64 + index + (uint64_t)fx->worker * 0x100000000ULL);
    int do_abort = c->abort_status && (r % 100) < c->abort_percent;
    int do_delay = c->delay_ms && ((r >> 32) % 100) < c->delay_percent;
    if (!do_delay)
        return do_abort ? abort_now(fx, (int)c->abort_status) : TG_FILTER_CONTINUE;
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return do_abort ? abort_now(fx, (int)c->abort_status) : TG_FILTER_CONTINUE; /* no timer: skip the delay */
    p->timer.fn = on_delay_done;
    p->fx = fx;
    p->gen = fx->gen;
    p->then_abort = do_abort;
    p->abort_status = (int)c->abort_status;
    if (tg_timer_set(fx->loop, &p->timer, c->delay_ms) < 0) { /* no pause possible: the request goes on undelayed */
        free(p);
        return do_abort ? abort_now(fx, (int)c->abort_status) : TG_FILTER_CONTINUE;
    }
    return TG_FILTER_PAUSE;
}

const tg_filter_type_t tg_filter_fault = {
    .name = "fault",
    .doc = "injects delays and error answers into a share of requests (testing resilience)",
    .keys = &fault_keyset,
    .create = fault_create,
    .destroy = fault_destroy,
    .on_request = fault_on_request,
};
