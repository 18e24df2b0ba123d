/*
 * proxy/trace.h — W3C trace context and the span exporter.
 *
 * Trace context (https://www.w3.org/TR/trace-context/): a request that
 * brings a valid `traceparent` keeps its trace id and sampled flag, and
 * tollgate's span (a new span id) becomes the parent the upstream sees; a
 * request without one (or with an invalid one, which is dropped with its
 * `tracestate`) starts a new trace, sampled by the configured ratio.
 *
 * The exporter: each worker puts the spans of its sampled requests into
 * its own single-producer ring (no lock; a full ring drops the span and
 * counts it), and one thread drains all rings and POSTs batches to an
 * OTLP/HTTP collector as JSON. Workers never wait for it.
 */
#ifndef TG_PROXY_TRACE_H
#define TG_PROXY_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct tg_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];       /* tollgate's span */
    uint8_t parent_id[8];     /* the caller's span; all zero: tollgate's span is the root */
    uint8_t flags;            /* bit 0: sampled */
} tg_trace_ctx_t;

/* Parses a traceparent value: "VV-<32 hex>-<16 hex>-<2 hex>" (lower-case
 * hex; version ff, an all-zero trace or parent id are invalid; a later
 * version may carry more after the flags). Fills trace_id, parent_id and
 * flags. 0, or -1 if it is not valid. */
int tg_traceparent_parse(const char *value, tg_trace_ctx_t *t);

/* "00-<trace id>-<span id>-<flags>": what the upstream gets (55 bytes and
 * a NUL). */
void tg_traceparent_format(const tg_trace_ctx_t *t, char out[56]);

/* Lower-case hex of n bytes into out (2n + 1 bytes with the NUL). */
void tg_trace_hex(const uint8_t *b, size_t n, char *out);

/* One finished request as a span. Fixed size (it travels through a ring):
 * strings are cut to fit. */
typedef struct tg_span {
    tg_trace_ctx_t ctx;
    int64_t start_unix_ns, end_unix_ns;
    int status;               /* HTTP status sent (0: none) */
    int grpc_status;          /* -1: not gRPC */
    char method[16];
    char route[64];
    char path[256];
    char client[64];
    char upstream[64];
    char request_id[40];
} tg_span_t;

typedef struct tg_tracer tg_tracer_t;

/* Starts the exporter thread for conf (otlp_endpoint set) with one ring
 * per worker. NULL (logged) if it cannot. */
tg_tracer_t *tg_tracer_start(const tg_tracing_conf_t *conf, unsigned n_workers);

/* A worker hands over a span (copied). Lock-free; drops it (counted) if
 * that worker's ring is full. */
void tg_tracer_submit(tg_tracer_t *t, unsigned worker, const tg_span_t *s);

typedef struct tg_tracer_stats {
    uint64_t exported;       /* spans a collector accepted (2xx) */
    uint64_t dropped_full;   /* spans dropped: the worker's ring was full */
    uint64_t dropped_failed; /* spans dropped: their POST failed */
    uint64_t batches;        /* POSTs made */
} tg_tracer_stats_t;

void tg_tracer_stats(const tg_tracer_t *t, tg_tracer_stats_t *out);

/* Sends what is queued (within the timeout), stops the thread, frees. */
void tg_tracer_stop(tg_tracer_t *t);

#endif
