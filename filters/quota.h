/*
 * filters/quota.h — the `quota` filter: at most `limit` requests (or
 * units, with `cost`) per key per calendar day or month, the periods
 * aligned to midnight in a time zone (`tz`: an IANA name read from the
 * system's zoneinfo, or UTC). Local store: counts live in the process
 * (exact across its workers, kept across reloads, lost at restart — see
 * docs/filters.md). Also the small time-zone reader it needs (exposed for
 * unit tests).
 */
#ifndef TG_FILTERS_QUOTA_H
#define TG_FILTERS_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_quota;

/* Tests only: the path of a file holding the Unix time (whole seconds)
 * the quota filter reads as "now", read again at each decision, so a test
 * sets the clock on both sides of a period boundary at will, whatever the
 * real time and the machine's speed. Named at config load. */
#define TG_QUOTA_CLOCK_ENV "TOLLGATE_QUOTA_CLOCK_FILE"

typedef struct tg_tz {
    int64_t *at;        /* transition instants (Unix seconds), ascending */
    uint8_t *type;      /* the offset index in force from each */
    size_t n;
    int32_t *offset;    /* UTC offsets (seconds east) */
    size_t n_offsets;
} tg_tz_t;

/* Loads a zone: "UTC" (or "Etc/UTC"), or an IANA name from
 * /usr/share/zoneinfo (TZif, version 1 or later). 0, or -1 with a reason
 * in *why. */
int tg_tz_load(const char *name, tg_tz_t *tz, const char **why);
void tg_tz_free(tg_tz_t *tz);
/* The UTC offset in force at t. */
int32_t tg_tz_offset(const tg_tz_t *tz, int64_t t);

typedef enum { TG_QUOTA_DAY = 0, TG_QUOTA_MONTH } tg_quota_period_t;

/* The calendar period containing t in tz: its number (days or months
 * since 1970 in local time) and the instant it ends. */
int64_t tg_quota_period(const tg_tz_t *tz, tg_quota_period_t p, int64_t t, int64_t *end);

#endif
