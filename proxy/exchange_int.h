/*
 * proxy/exchange_int.h — the exchange's internals, shared by its two
 * parts and by nothing else: exchange.c (lifetime, the request side,
 * filters, the pumps, the response head, gRPC deadlines, local replies)
 * and the upstream attempt it drives, exchange_upstream.c (protocol-
 * neutral: endpoint order, circuit breaking, attempts through the
 * cluster's tg_upstream_ops_t, the body kept for replay, failover,
 * retries), which reports back only through ex->on_attempt (the
 * tg_att_event_t events): calls go one way, exchange.c -> attempt.
 * Other modules use proxy/exchange.h.
 */
#ifndef TG_PROXY_EXCHANGE_INT_H
#define TG_PROXY_EXCHANGE_INT_H

#include <arpa/inet.h>
#include <stdint.h>
#include <sys/types.h>

#include "filters/filter.h"
#include "proxy/cluster.h"
#include "proxy/exchange.h"
#include "proxy/trace.h"
#include "proxy/base/grpc_frames.h"
#include "proxy/base/loop.h"
#include "proxy/upstream.h"
#include "tls/context.h"



typedef enum {
    EX_ROUTING = 0,
    EX_CONNECTING,
    EX_WAIT_HEAD,
    EX_STREAMING,
    EX_TUNNEL,
} ex_state_t;

/* What moves an exchange from one state to another (advance() in exchange.c). */
typedef enum {
    EXEV_CONNECTING = 0, /* an attempt on a new connection (or a failover to one) */
    EXEV_SENT,           /* the request is on its way (a ready connection or stream) */
    EXEV_HEAD,           /* the upstream's response head went to the client */
    EXEV_UPGRADED,       /* ... and it was a 101: bytes flow both ways */
    EXEV_LOCAL_REPLY,    /* the gateway answered itself */
    EXEV_BACKOFF,        /* between attempts (a retry waits), or none is left */
    EXEV_N
} ex_event_t;

typedef enum {
    UP_OK = 0,
    UP_CONNECT_FAILED,
    UP_CONNECT_TIMEOUT,
    UP_RESET,
    UP_TIMEOUT,
} up_error_t;

/* What the upstream attempt (exchange_upstream.c) tells the exchange,
 * through ex->on_attempt: the only way it reaches exchange.c. */
typedef enum {
    ATT_CONNECTING = 0, /* an attempt waits for a new connection */
    ATT_SENT,           /* the request head is on its way: the body may follow (the exchange pumps it) */
    ATT_HEAD,           /* the final response head is in ex->resp */
    ATT_DATA,           /* response body (or its end) can be read */
    ATT_WRITABLE,       /* the attempt takes more request body */
    ATT_BACKOFF,        /* no attempt in hand: between tries, or none is left */
    ATT_FAILED,         /* given up: answer `status` (why), or cut off a response already started */
} tg_att_event_t;

static inline const char *tg_ex_state_name(ex_state_t s)
{
    static const char *const names[] = { "ROUTING", "CONNECTING", "WAIT_HEAD", "STREAMING", "TUNNEL" };
    return names[s];
}

/* The exchange module's per-worker state (TG_WMOD_EXCHANGE). */
typedef struct tg_ex_worker {
    tg_exchange_t *free;        /* recycled exchanges */
    unsigned active;            /* exchanges in flight, for the retry budget */
    unsigned retrying;          /* ... of which have retried */
    uint64_t gen;               /* numbers exchanges, for paused-filter resumes */
} tg_ex_worker_t;

/* The upstream attempt's state, owned by exchange_upstream.c: the
 * endpoints to try in order, the attempt in hand, failover and retries,
 * circuit-breaking counts, the body kept for replay and the phases' times.
 * exchange.c sets the retry policy and the round-robin draw before the
 * first attempt, pumps bodies through up/up_ops, reads the rest for its
 * logs and traces, and clears it with the exchange. */
typedef struct tg_attempt {
    const tg_retry_policy_t *retry; /* NULL: no retries beyond failover */
    unsigned rr;                /* this exchange's round-robin draw */
    unsigned retries;           /* retry rounds started */
    tg_timer_t retry_timer;     /* backoff between retries */
    size_t *order, n_order;     /* endpoints to try, in order (arena) */
    size_t attempts, tried;
    const tg_endpoint_t *ep;
    const tg_endpoint_t *last_ep; /* for the log: ep is cleared when attempts run out */
    const tg_endpoint_t *inflight_ep; /* lb: least_request — counted in its in-flight requests until released */
    up_error_t last_error;
    void *up;                   /* the attempt in hand (NULL: none) ... */
    const tg_upstream_ops_t *up_ops; /* ... and its protocol (upstream.h) */
    long reset_code;            /* the upstream's RST_STREAM code, or -1 */
    unsigned refusals;          /* attempts the upstream refused unprocessed (retried) */
    uint64_t t_connect, t_sent, t_head; /* monotonic us of the last attempt's phases */
    uint64_t connect_us;        /* last attempt's connect time (0: pooled) */
    unsigned ignore_health : 1; /* when_all_unhealthy: try_all */
    unsigned cb_request : 1;    /* counted in ex->cluster->requests (max_requests) */
    unsigned cb_pending : 1;    /* counted in ex->cluster->pending: waiting for a new connection */
    unsigned req_sent_any : 1;  /* some request body went upstream: no retry */
    unsigned body_kept : 1;     /* the whole body went by reference: replayable */
    unsigned in_retry : 1;      /* counted in the worker's retry budget */
    unsigned body_started : 1;  /* this attempt already sent body_buf */
    unsigned up_fresh : 1;      /* this attempt opened a new upstream connection */
    unsigned up_refused : 1;    /* the upstream refused the stream: never processed */
} tg_attempt_t;

struct tg_exchange {
    tg_exchange_t *next_free;
    tg_worker_t *w;
    tg_ex_worker_t *wx;         /* w's exchange state */
    tg_snapshot_t *snap;
    tg_arena_t arena;
    struct evbuffer *scratch;
    struct evbuffer *body_buf;  /* request body read before an upstream was ready */
    struct evbuffer *pre_body;  /* request body read before the filters ran (body_prefix; made on first use, kept) */
    tg_timer_t gather_timer;    /* ... and the bound on waiting for it */
    size_t prefix_want;         /* the bytes of body the chain asked to see first */
    const tg_downstream_ops_t *ops;
    void *ds;
    ex_state_t state;           /* changed only by advance() (exchange.c) */

    tg_request_t req;
    tg_response_t resp;
    const tg_route_conf_t *route;
    tg_cluster_t *cluster;
    tg_attempt_t att;           /* the upstream attempt (exchange_upstream.c) */
    unsigned traced : 1;        /* tracing: trace holds this request's trace context */

    /* What the attempt reports (set by exchange.c); returns -1 once the
     * exchange is over (nothing may touch ex then). */
    int (*on_attempt)(struct tg_exchange *ex, tg_att_event_t ev, int status, const char *why);
    tg_timer_t deadline_timer;  /* gRPC deadline */
    tg_timer_t health_timer;    /* grpc_health Watch: the next look at the status */
    const char *health_service; /* grpc_health: the service asked about (arena) */
    int health_call;            /* grpc_health: 1 Check, 2 Watch, answered here; 0: none */
    int health_last;            /* Watch: the status last sent */
    uint64_t deadline_us;       /* monotonic; 0: none */

    size_t listener;
    tg_filter_exchange_t fx;    /* the filters' view of this exchange */
    int64_t start_unix_us;      /* wall clock, for logs */
    uint64_t bytes_in, bytes_out;
    uint64_t start_us;          /* monotonic, when the request head was complete */
    const char *scheme;
    const tg_tls_peer_t *peer;  /* TLS connections: the client certificate's identity */
    char client_addr[INET6_ADDRSTRLEN]; /* the client, for filters and logs (trusted_proxies applied) */
    char peer_addr[INET6_ADDRSTRLEN];   /* the connection's peer */
    const char *upgrade;        /* the Upgrade value of an upgrade request (read before sanitizing) */
    uint64_t grpc_msg_max;      /* gRPC calls: the route's message limit (0: none, or not gRPC) */
    tg_grpc_frames_t grpc_frames; /* where the walk of the request's gRPC framing is */

    unsigned req_done : 1;      /* request body fully read from the client */
    unsigned req_sent : 1;      /* request fully written toward the upstream */
    unsigned paused : 1;        /* a filter paused the request chain */
    unsigned body_hooks : 1;    /* some filter of the chain watches bodies */
    unsigned gathering : 1;     /* reading body_prefix before the chain runs */
    unsigned pre_fin : 1;       /* pre_body holds the end of the body */
    unsigned resp_started : 1;  /* response head sent to the client */
    unsigned resp_done : 1;
    unsigned close_ds : 1;
    unsigned grpc : 1;          /* content-type application/grpc*: gRPC replies and deadlines */
    unsigned te_trailers : 1;   /* the client accepts trailers (te: trailers) */
    unsigned recorded : 1;      /* counted and logged (record() in exchange.c) */
    unsigned peer_trusted : 1;  /* the peer is one of the listener's trusted proxies */
    int reply_status;           /* HTTP status of a gRPC local reply, for stats (200 on the wire) */
    tg_trace_ctx_t trace;       /* W3C trace context (traced) */
    const char *trace_hex, *span_hex; /* the ids as the access log shows them (arena) */
};

/* exchange_upstream.c: the attempt, called by exchange.c only */
void tg_ex_release_upstream(tg_exchange_t *ex, int clean);
/* The start of an attempt's body: what is kept for replay goes first.
 * 0, or -1 (out of memory). */
int tg_ex_up_begin_body(tg_exchange_t *ex);
/* One piece of request body to the attempt (moved, or kept for replay
 * while it fits). 0 or -1. */
int tg_ex_up_send(tg_exchange_t *ex, struct evbuffer *piece);
/* The response body could not be read: the attempt failed. */
void tg_ex_up_failed(tg_exchange_t *ex);
void tg_ex_on_retry_timer(tg_timer_t *t);
int tg_ex_build_order(tg_exchange_t *ex);
/* Circuit breaking (cluster max_requests): counts the exchange in its
 * cluster's requests in flight, or refuses it (503, replied: -1). */
int tg_ex_admit(tg_exchange_t *ex);
/* ... and uncounts it (once; at the end of the exchange). */
void tg_ex_leave(tg_exchange_t *ex);
void tg_ex_try_next_endpoint(tg_exchange_t *ex);


#endif
