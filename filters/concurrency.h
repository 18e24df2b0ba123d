/*
 * filters/concurrency.h — the `concurrency_limit` filter: at most `limit`
 * requests in flight per key (client address, identity, header, route),
 * exact across the workers of one process. A request over the cap is
 * refused at once (429, gRPC RESOURCE_EXHAUSTED), or waits in a FIFO
 * queue of at most `queue` requests for at most `queue_timeout`. A slot is
 * held from the request head until the exchange ends — response complete,
 * client gone, upstream reset, tunnel closed — and given back exactly once
 * (the filter's completion hook), straight to the first waiter if there
 * is one. See docs/filters.md.
 */
#ifndef TG_FILTERS_CONCURRENCY_H
#define TG_FILTERS_CONCURRENCY_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_concurrency_limit;

#endif
