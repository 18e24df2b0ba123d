/*
 * filters/fault.h — the `fault` filter: injects delays and aborts into a
 * share of requests, to test how clients and services cope (like Envoy's
 * fault filter). Its delay is the built-in user of TG_FILTER_PAUSE.
 */
#ifndef TG_FILTERS_FAULT_H
#define TG_FILTERS_FAULT_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_fault;

#endif
