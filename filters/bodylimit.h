/*
 * filters/bodylimit.h — the `body_limit` filter: a request body size limit
 * for one route (tighter or looser than limits.max_body_bytes), enforced
 * from Content-Length at once and on streamed bodies as they flow.
 */
#ifndef TG_FILTERS_BODYLIMIT_H
#define TG_FILTERS_BODYLIMIT_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_body_limit;

#endif
