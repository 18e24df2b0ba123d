/*
 * proxy/ctl_top.h — `tollgate ctl top`: the status page's view in a
 * terminal, for hosts without a browser. One frame is drawn from one
 * /status.json?history=5m document: routes (sorted by requests/s or by
 * error ratio) with their rates, error ratios and latency over the last
 * 10–20 seconds (the last closed 10-second bucket and the current one)
 * and a sparkline of requests/s over 5 minutes; clusters with endpoints
 * up, upstream failures and their recent state changes; the limiting
 * filters with the keys they refused in the last minute. ctl.c fetches
 * and redraws every 2 seconds. Pure: text in, text out.
 */
#ifndef TG_PROXY_CTL_TOP_H
#define TG_PROXY_CTL_TOP_H

#include <stddef.h>
#include <stdio.h>

typedef enum { TG_TOP_BY_RPS = 0, TG_TOP_BY_ERRORS } tg_top_sort_t;

/* Writes one frame for the status document json[0..len) to f. 0, or -1
 * (not a status document with its history: nothing written). */
int tg_ctl_top_frame(FILE *f, const char *json, size_t len, tg_top_sort_t sort);

#endif
