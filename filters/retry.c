/*
 * filters/retry.c — retry policies (the retrying itself is done by the
 * exchange, which owns the upstream attempts). See retry.h.
 */
#include "filters/retry.h"

#include <stdlib.h>
#include <string.h>

static const char *const default_methods[] = { "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE" };

static void retry_destroy(void *p)
{
    tg_retry_policy_t *r = p;
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_methods; i++)
        free(r->methods[i]);
    free(r->methods);
    free(r);
}

static int parse_condition(tg_node_t *n, const char *s, unsigned *on)
{
    static const struct { const char *name; unsigned bits; } conds[] = {
        { "connect-failure", TG_RETRY_CONNECT_FAILURE },
        { "reset", TG_RETRY_RESET },
        { "502", TG_RETRY_502 },
        { "503", TG_RETRY_503 },
        { "504", TG_RETRY_504 },
        { "gateway-error", TG_RETRY_502 | TG_RETRY_503 | TG_RETRY_504 },
        { "timeout", TG_RETRY_TIMEOUT },
        { "unavailable", TG_RETRY_GRPC_UNAVAILABLE },
        { "deadline-exceeded", TG_RETRY_GRPC_DEADLINE },
        { "resource-exhausted", TG_RETRY_GRPC_EXHAUSTED },
    };
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        if (strcmp(s, conds[i].name) == 0) {
            *on |= conds[i].bits;
            return 0;
        }
    tg_node_error(n, "retry on: '%s' is not one of connect-failure, reset, 502, 503, 504, gateway-error, "
                     "timeout, unavailable, deadline-exceeded, resource-exhausted", s);
    return -1;
}
static const tg_key_t backoff_keys[] = {
    { "base", TG_KEY_DURATION, "duration", "`25ms`", "the first wait's upper bound",
      TG_FIELD(tg_retry_policy_t, base_ms, TG_FIELD_U64), .def = 25 },
    { "max", TG_KEY_DURATION, "duration", "`1s`", "the cap of the doubling",
      TG_FIELD(tg_retry_policy_t, max_ms, TG_FIELD_U64), .def = 1000 },
};
static const tg_keyset_t backoff_keyset = TG_KEYSET("filter.retry.backoff", "retry backoff", backoff_keys);

static const tg_key_t budget_keys[] = {
    { "percent", TG_KEY_INT, "integer 0–100", "`20`", "share of the exchanges in flight that may be retrying",
      .min = 0, .max = 100, TG_FIELD(tg_retry_policy_t, budget_percent, TG_FIELD_U32), .def = 20 },
    { "min_retries", TG_KEY_INT, "integer 0–10^5", "`3`", "retries allowed whatever the share", .min = 0,
      .max = 100000, TG_FIELD(tg_retry_policy_t, budget_min, TG_FIELD_U32), .def = 3 },
};
static const tg_keyset_t budget_keyset = TG_KEYSET("filter.retry.budget", "retry budget", budget_keys);

static const tg_key_t retry_keys[] = {
    { "attempts", TG_KEY_INT, "integer 1–10", "`3`",
      "rounds of attempts, the first included; each new round starts on another endpoint where there is one",
      .min = 1, .max = 10, TG_FIELD(tg_retry_policy_t, attempts, TG_FIELD_U32), .def = 3 },
    { "on", TG_KEY_STRINGS, "list", "`[connect-failure, reset, 503, unavailable]`",
      "`connect-failure`, `reset`, `502`, `503`, `504`, `gateway-error` (all three), `timeout`, and gRPC statuses "
      "from a trailers-only answer: `unavailable`, `deadline-exceeded`, `resource-exhausted`" },
    { "per_try_timeout", TG_KEY_DURATION, "duration", "the route's `timeout`",
      "how long one attempt may wait for the response head",
      TG_FIELD(tg_retry_policy_t, per_try_timeout_ms, TG_FIELD_U64) },
    { "backoff", TG_KEY_MAP, "`{ base, max }`", "`{ base: 25ms, max: 1s }`",
      "before retry n, wait a random time in [0, min(max, base × 2^(n−1))]", .sub = &backoff_keyset },
    { "methods", TG_KEY_STRINGS, "list", "`[GET, HEAD, OPTIONS, PUT, DELETE, TRACE]`",
      "only these are retried (idempotent by default; add `POST` knowingly)" },
    { "budget", TG_KEY_MAP, "`{ percent, min_retries }`", "`{ percent: 20, min_retries: 3 }`",
      "per worker, exchanges that are retrying may not exceed `percent`% of the exchanges in flight, or "
      "`min_retries`, whichever is larger",
      .sub = &budget_keyset },
};
static const tg_keyset_t retry_keyset = TG_KEYSET("filter.retry", "retry", retry_keys);


static void *retry_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[6];
    tg_retry_policy_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "retry", &retry_keyset, r, v);
    tg_node_t on = tg_node_get(v, &retry_keyset, "on"), methods = tg_node_get(v, &retry_keyset, "methods");
    tg_node_t backoff = tg_node_get(v, &retry_keyset, "backoff"), budget = tg_node_get(v, &retry_keyset, "budget");
    r->on = TG_RETRY_CONNECT_FAILURE | TG_RETRY_RESET | TG_RETRY_503 | TG_RETRY_GRPC_UNAVAILABLE;
    if (tg_node_present(&on)) {
        char **list = NULL;
        size_t n = 0;
        r->on = 0;
        if (tg_node_str_list(&on, "retry on", &list, &n) < 0)
            rc = -1;
        for (size_t i = 0; i < n; i++) {
            if (list[i] && parse_condition(&on, list[i], &r->on) < 0)
                rc = -1;
            free(list[i]);
        }
        free(list);
    }
    tg_node_t b[2];
    if (tg_node_read_into(&backoff, "backoff", &backoff_keyset, r, b) < 0) /* absent: the defaults */
        rc = -1;
    if (rc == 0 && r->max_ms < r->base_ms) {
        tg_node_error(&backoff, "backoff: max must not be below base");
        rc = -1;
    }
    if (tg_node_present(&methods)) {
        if (tg_node_str_list(&methods, "methods", &r->methods, &r->n_methods) < 0)
            rc = -1;
    } else {
        r->n_methods = sizeof(default_methods) / sizeof(default_methods[0]);
        r->methods = calloc(r->n_methods, sizeof(char *));
        for (size_t i = 0; r->methods && i < r->n_methods; i++)
            r->methods[i] = strdup(default_methods[i]);
        if (r->methods == NULL)
            rc = -1;
    }
    if (tg_node_read_into(&budget, "budget", &budget_keyset, r, b) < 0) /* absent: the defaults */
        rc = -1;
    if (rc < 0) {
        retry_destroy(r);
        return NULL;
    }
    return r;
}

static const tg_retry_policy_t *retry_policy(const void *conf)
{
    return conf;
}

const tg_filter_type_t tg_filter_retry = {
    .name = "retry",
    .doc = "retries transient failures (connect failure, reset, 503, gRPC UNAVAILABLE) with backoff and a budget",
    .keys = &retry_keyset,
    .create = retry_create,
    .destroy = retry_destroy,
    .retry_policy = retry_policy,
};
