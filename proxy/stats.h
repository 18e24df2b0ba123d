/*
 * proxy/stats.h — request counters. Each worker owns one tg_stats_t and is
 * the only writer of it: an increment is a relaxed atomic load and store
 * (a plain add in the generated code, no locked instruction). The main
 * thread sums all workers' tables when /metrics is scraped. Tables are
 * indexed by registry slots (see registry.h), so counters carry over across
 * reloads for routes, endpoints and listeners that stay configured. The
 * tables grow with the slots in use, 256 entries at a time, made by the
 * worker the first time it counts for one of them (proxy/base/chunks.h):
 * no capacity fixed at build time, and nothing ever moves under a
 * reader.
 */
#ifndef TG_PROXY_STATS_H
#define TG_PROXY_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/base/chunks.h"

#define TG_STATS_BUCKETS 12
#define TG_STATS_FILTER_COUNTERS 64 /* = TG_FILTER_COUNTERS_MAX (filters/filter.h; checked there) */

/* Upper bounds of the duration histogram buckets, in microseconds. */
extern const uint64_t tg_stats_bucket_us[TG_STATS_BUCKETS];

typedef _Atomic uint64_t tg_counter_t;

static inline void tg_counter_add(tg_counter_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

static inline void tg_counter_sub(tg_counter_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - v, memory_order_relaxed);
}

static inline uint64_t tg_counter_get(tg_counter_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Why a circuit breaker refused a request (cluster max_*). */
typedef enum { TG_CB_MAX_CONNECTIONS = 0, TG_CB_MAX_PENDING, TG_CB_MAX_REQUESTS, TG_CB_N } tg_cb_cause_t;

typedef struct tg_route_stats {
    tg_counter_t by_class[5];            /* responses 1xx..5xx */
    tg_counter_t aborted;                /* ended before any response was sent */
    tg_counter_t buckets[TG_STATS_BUCKETS]; /* non-cumulative; +Inf = count */
    tg_counter_t count;
    tg_counter_t sum_us;
    tg_counter_t filters[TG_STATS_FILTER_COUNTERS]; /* the filters' own, by counter bit (filters/filter.h) */
    tg_counter_t retries;                /* retry rounds started */
    tg_counter_t retries_skipped;        /* retriable, but body too large or budget spent */
    tg_counter_t grpc[17];               /* gRPC calls by final grpc-status (0 OK .. 16 UNAUTHENTICATED) */
    tg_counter_t overloaded[TG_CB_N];    /* refused by a circuit breaker of the cluster, by cause */
} tg_route_stats_t;

typedef struct tg_endpoint_stats {
    tg_counter_t requests;               /* requests sent */
    tg_counter_t connect_failures;       /* refused, unreachable or timed out */
    tg_counter_t timeouts;               /* response or idle timeouts */
    tg_counter_t resets;                 /* connection lost mid-exchange */
    tg_counter_t active;                 /* gauge: open connections (leased or pooled) */
    tg_counter_t connects;               /* connections opened (a pool that churns shows here) */
} tg_endpoint_stats_t;

typedef struct tg_listener_stats {
    tg_counter_t accepted;
    tg_counter_t active;                 /* gauge */
    tg_counter_t tls_handshakes;         /* completed */
    tg_counter_t tls_resumed;            /* of which resumed sessions */
    tg_counter_t tls_handshake_failures; /* failed or timed out */
    tg_counter_t h2_connections;         /* connections that spoke HTTP/2 */
    tg_counter_t h2_streams;             /* HTTP/2 streams (requests) opened */
    tg_counter_t h2_protocol_errors;     /* connections closed for abuse or errors */
    tg_counter_t accept_pauses;          /* times accepting paused: out of descriptors */
    tg_counter_t conn_limit_rejected;    /* connections closed at once: max_connections reached */
} tg_listener_stats_t;

/* The worker's Redis store (proxy/redis.c). */
#define TG_REDIS_BUCKETS 12
extern const uint64_t tg_redis_bucket_us[TG_REDIS_BUCKETS];
typedef enum {
    TG_REDIS_ERR_CONNECT = 0, /* a connection (or its TLS handshake) failed */
    TG_REDIS_ERR_TIMEOUT,     /* a call got no reply within timeout */
    TG_REDIS_ERR_CLOSED,      /* a connection was lost with calls on it */
    TG_REDIS_ERR_SERVER,      /* an error reply (script error, CLUSTERDOWN, ...) */
    TG_REDIS_ERR_PROTOCOL,    /* a reply that is not RESP, or not expected */
    TG_REDIS_ERR_AUTH,        /* AUTH refused */
    TG_REDIS_ERR_UNAVAILABLE, /* a call not sent: no connection, or too many waiting */
    TG_REDIS_ERR_REPLY_SIZE,  /* a reply past redis.max_reply_bytes: its connection closed */
    TG_REDIS_ERR_REDIRECT,    /* a MOVED/ASK to a node no slot map named, or a slot map naming a host name */
    TG_REDIS_ERR_N
} tg_redis_err_t;
typedef struct tg_redis_stats {
    tg_counter_t buckets[TG_REDIS_BUCKETS]; /* round trips of answered calls; non-cumulative */
    tg_counter_t count, sum_us;
    tg_counter_t errors[TG_REDIS_ERR_N];
    tg_counter_t moved, ask;                /* Cluster redirects followed */
    tg_counter_t connections;               /* gauge: connected */
} tg_redis_stats_t;

typedef enum { TG_STATS_ENDPOINT = 0, TG_STATS_ROUTE, TG_STATS_LISTENER, TG_STATS_TABLES } tg_stats_table_t;

typedef struct tg_stats {
    tg_redis_stats_t redis;
    tg_chunks_t tables[TG_STATS_TABLES]; /* tg_endpoint_stats_t, tg_route_stats_t, tg_listener_stats_t by slot */
    union {                              /* where counts go when memory for a table ran out */
        tg_route_stats_t route;
        tg_endpoint_stats_t endpoint;
        tg_listener_stats_t listener;
    } sink;
} tg_stats_t;

tg_stats_t *tg_stats_new(void);
void tg_stats_free(tg_stats_t *s);

/* Slow path of tg_stats_slot: makes the slot's chunk (or gives the sink). */
void *tg_stats_make(tg_stats_t *s, tg_stats_table_t table, size_t slot);

/* A slot's counters, for the worker that owns s (the only writer). */
static inline void *tg_stats_slot(tg_stats_t *s, tg_stats_table_t table, size_t slot)
{
    void *e = tg_chunks_peek(&s->tables[table], slot);
    return e != NULL ? e : tg_stats_make(s, table, slot);
}

static inline tg_route_stats_t *tg_stats_route(tg_stats_t *s, size_t slot)
{
    return tg_stats_slot(s, TG_STATS_ROUTE, slot);
}

static inline tg_endpoint_stats_t *tg_stats_endpoint(tg_stats_t *s, size_t slot)
{
    return tg_stats_slot(s, TG_STATS_ENDPOINT, slot);
}

static inline tg_listener_stats_t *tg_stats_listener(tg_stats_t *s, size_t slot)
{
    return tg_stats_slot(s, TG_STATS_LISTENER, slot);
}

/* For readers on other threads (/metrics): the slot's counters, or NULL
 * if the worker never counted anything there. */
static inline const void *tg_stats_peek(const tg_stats_t *s, tg_stats_table_t table, size_t slot)
{
    return tg_chunks_peek(&s->tables[table], slot);
}

/* Bytes the tables hold (for memory reports). */
size_t tg_stats_bytes(const tg_stats_t *s);

/* A slot passes to a new name (registry.h): its counters restart at zero.
 * Only while nothing can write them (no live snapshot names the slot). */
void tg_stats_reset(tg_stats_t *s, tg_stats_table_t table, size_t slot);

/* A finished exchange: status 0 = no response was sent. */
void tg_stats_request_done(tg_route_stats_t *r, int status, uint64_t duration_us);

/* A finished gRPC call's grpc-status (codes outside 0..16 count as 2,
 * UNKNOWN; a call that ended without one is not counted). */
void tg_stats_grpc_done(tg_route_stats_t *r, int grpc_status);

/* Adds what an exchange's filters counted (1 << counter bit, see
 * filters/filter.h) to its route's counters. */
void tg_stats_filter_counted(tg_route_stats_t *r, uint64_t counted);

#endif
