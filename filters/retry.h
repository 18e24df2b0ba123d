/*
 * filters/retry.h — the `retry` filter: a retry policy the exchange
 * consults when an upstream attempt fails or answers with a retriable
 * status before anything was sent to the client. See docs/filters.md.
 */
#ifndef TG_FILTERS_RETRY_H
#define TG_FILTERS_RETRY_H

#include <stdint.h>

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_retry;

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

/* The policy for a route: its own retry filter, else a global one, else NULL. */
const tg_retry_policy_t *tg_retry_policy(const tg_filter_list_t *global, const tg_filter_list_t *route);

int tg_retry_method_allowed(const tg_retry_policy_t *p, const char *method);

/* The backoff before retry number n (1 = first retry), given 64 random bits. */
uint64_t tg_retry_backoff_ms(const tg_retry_policy_t *p, unsigned n, uint64_t random);

/* Does this upstream answer call for a retry under the policy? */
int tg_retry_on_status(const tg_retry_policy_t *p, int status, const char *grpc_status);

#endif
