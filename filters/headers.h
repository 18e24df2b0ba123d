/*
 * filters/headers.h — the `headers` filter (request/response header edits
 * with per-request variables) and the `cors` filter. See docs/filters.md.
 */
#ifndef TG_FILTERS_HEADERS_H
#define TG_FILTERS_HEADERS_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_headers;
extern const tg_filter_type_t tg_filter_cors;

#endif
