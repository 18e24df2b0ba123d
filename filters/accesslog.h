/*
 * filters/accesslog.h — the `access_log` filter: one line per exchange
 * after completion, JSON or a template, to stdout or a file, written by a
 * background thread so a worker never waits on a disk. See docs/filters.md.
 */
#ifndef TG_FILTERS_ACCESSLOG_H
#define TG_FILTERS_ACCESSLOG_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_access_log;

/* Formats one record as a JSON line into out (capacity cap); returns the
 * length (exposed for unit tests). */
size_t tg_access_log_json(char *out, size_t cap, const tg_filter_record_t *r);

/* Checks a text template's {placeholders}: NULL if all are known and
 * closed, else where the first bad one starts. */
const char *tg_access_log_template_check(const char *tmpl);

#endif
