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
    { "base", TG_KEY_DURATION, "duration", "`25ms`", "the first wait's upper bound" },
    { "max", TG_KEY_DURATION, "duration", "`1s`", "the cap of the doubling" },
};
static const tg_keyset_t backoff_keyset = TG_KEYSET("filter.retry.backoff", "retry backoff", backoff_keys);

static const tg_key_t budget_keys[] = {
    { "percent", TG_KEY_INT, "integer 0–100", "`20`", "share of the exchanges in flight that may be retrying",
      .min = 0, .max = 100 },
    { "min_retries", TG_KEY_INT, "integer 0–10^5", "`3`", "retries allowed whatever the share", .min = 0,
      .max = 100000 },
};
static const tg_keyset_t budget_keyset = TG_KEYSET("filter.retry.budget", "retry budget", budget_keys);

static const tg_key_t retry_keys[] = {
    { "attempts", TG_KEY_INT, "integer 1–10", "`3`",
      "rounds of attempts, the first included; each new round starts on another endpoint where there is one",
      .min = 1, .max = 10 },
    { "on", TG_KEY_STRINGS, "list", "`[connect-failure, reset, 503, unavailable]`",
      "`connect-failure`, `reset`, `502`, `503`, `504`, `gateway-error` (all three), `timeout`, and gRPC statuses "
      "from a trailers-only answer: `unavailable`, `deadline-exceeded`, `resource-exhausted`" },
    { "per_try_timeout", TG_KEY_DURATION, "duration", "the route's `timeout`",
      "how long one attempt may wait for the response head" },
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
    enum { K_ATTEMPTS, K_ON, K_PTT, K_BACKOFF, K_METHODS, K_BUDGET, K_N };
    tg_node_t v[K_N];
    tg_retry_policy_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    int rc = tg_node_keys(node, "retry", &retry_keyset, v);
    r->attempts = 3;
    r->on = TG_RETRY_CONNECT_FAILURE | TG_RETRY_RESET | TG_RETRY_503 | TG_RETRY_GRPC_UNAVAILABLE;
    r->base_ms = 25;
    r->max_ms = 1000;
    r->budget_percent = 20;
    r->budget_min = 3;
    uint64_t x;
    if (tg_node_present(&v[K_ATTEMPTS])) {
        if (tg_node_uint(&v[K_ATTEMPTS], "attempts", 1, 10, &x) < 0)
            rc = -1;
        else
            r->attempts = (unsigned)x;
    }
    if (tg_node_present(&v[K_ON])) {
        char **list = NULL;
        size_t n = 0;
        r->on = 0;
        if (tg_node_str_list(&v[K_ON], "retry on", &list, &n) < 0)
            rc = -1;
        for (size_t i = 0; i < n; i++) {
            if (list[i] && parse_condition(&v[K_ON], list[i], &r->on) < 0)
                rc = -1;
            free(list[i]);
        }
        free(list);
    }
    if (tg_node_present(&v[K_PTT]) && tg_node_duration(&v[K_PTT], "per_try_timeout", &r->per_try_timeout_ms) < 0)
        rc = -1;
    if (tg_node_present(&v[K_BACKOFF])) {
        tg_node_t b[2];
        if (tg_node_keys(&v[K_BACKOFF], "backoff", &backoff_keyset, b) < 0)
            rc = -1;
        if (tg_node_present(&b[0]) && tg_node_duration(&b[0], "backoff base", &r->base_ms) < 0)
            rc = -1;
        if (tg_node_present(&b[1]) && tg_node_duration(&b[1], "backoff max", &r->max_ms) < 0)
            rc = -1;
        if (rc == 0 && r->max_ms < r->base_ms) {
            tg_node_error(&v[K_BACKOFF], "backoff: max must not be below base");
            rc = -1;
        }
    }
    if (tg_node_present(&v[K_METHODS])) {
        if (tg_node_str_list(&v[K_METHODS], "methods", &r->methods, &r->n_methods) < 0)
            rc = -1;
    } else {
        r->n_methods = sizeof(default_methods) / sizeof(default_methods[0]);
        r->methods = calloc(r->n_methods, sizeof(char *));
        for (size_t i = 0; r->methods && i < r->n_methods; i++)
            r->methods[i] = strdup(default_methods[i]);
        if (r->methods == NULL)
            rc = -1;
    }
    if (tg_node_present(&v[K_BUDGET])) {
        tg_node_t b[2];
        if (tg_node_keys(&v[K_BUDGET], "budget", &budget_keyset, b) < 0)
            rc = -1;
        if (tg_node_present(&b[0])) {
            if (tg_node_uint(&b[0], "budget percent", 0, 100, &x) < 0)
                rc = -1;
            else
                r->budget_percent = (unsigned)x;
        }
        if (tg_node_present(&b[1])) {
            if (tg_node_uint(&b[1], "budget min_retries", 0, 100000, &x) < 0)
                rc = -1;
            else
                r->budget_min = (unsigned)x;
        }
    }
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
