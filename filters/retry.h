/*
 * filters/retry.h — the `retry` filter: it parses a retry policy
 * (tg_retry_policy_t, filters/filter.h) and hands it to the exchange
 * through the filter interface's retry_policy hook. See docs/filters.md.
 */
#ifndef TG_FILTERS_RETRY_H
#define TG_FILTERS_RETRY_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_retry;

#endif
