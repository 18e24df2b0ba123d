/*
 * config/config.h — the config model: one immutable snapshot of the YAML
 * file, as plain structs that map one-to-one to the documented keys
 * (docs/configuration.md). Built by config/loader.c, never mutated after
 * load, shared read-only by every worker thread and freed when its last
 * reference is dropped (tg_config_unref). Knows nothing of sockets.
 */
#ifndef TG_CONFIG_CONFIG_H
#define TG_CONFIG_CONFIG_H

#include <regex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "config/value.h"
#include "proxy/base/http.h"

/* A list of "file:line:col: message" strings. */
typedef struct tg_errors {
    char **msgs;
    size_t n, cap;
} tg_errors_t;

void tg_errors_add(tg_errors_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_errors_free(tg_errors_t *e);
/* Orders the messages by where they point ("FILE:LINE:COL: ..."), so a
 * file's errors read top to bottom whichever check found them; messages
 * without a place keep their order, after the others. */
void tg_errors_sort(tg_errors_t *e);

/* Most filters in one chain: the global list plus the route's own. */
#define TG_FILTER_MAX_PER_CHAIN 32

struct tg_node;
struct tg_filter_instance;

/* The filter kinds a config may use. The loader knows none itself: whoever
 * loads a config hands it a registry (filters/filter.c has the built-in
 * one, tg_filters_registry()), through which each `- name: {...}` entry is
 * found by name, parsed and, with its config, freed. So config/ never
 * includes a filter header. */
typedef struct tg_filter_registry {
    const struct tg_filter_type *(*find)(const char *name);
    const char *(*names)(void); /* "auth, rate_limit, ..." for error messages */
    void *(*create)(const struct tg_filter_type *type, struct tg_node *node, const char *config_path);
    void (*destroy)(struct tg_filter_instance *f); /* its conf and per-worker states */
} tg_filter_registry_t;

/* A configured filter: its type (filters/filter.h), the config its
 * create() returned and, for a type with per-worker state, one state per
 * worker: the array made when the config is put to use
 * (tg_filters_start), each slot filled and read by its own worker only,
 * all freed with the config. */
typedef struct tg_filter_instance {
    const struct tg_filter_type *type;
    void *conf;
    void **per_worker;          /* NULL: no per-worker state (or not started) */
    unsigned n_workers;
} tg_filter_instance_t;

typedef struct tg_filter_list {
    tg_filter_instance_t *v;
    size_t n;
} tg_filter_list_t;

typedef enum {
    TG_PATH_ANY = 0,
    TG_PATH_EXACT,
    TG_PATH_PREFIX,
    TG_PATH_SEPARATED_PREFIX, /* the prefix, then the end of the path or '/' */
    TG_PATH_REGEX,
} tg_path_kind_t;

typedef struct tg_header_match {
    char *name;
    char *value; /* NULL: the header only has to be present */
} tg_header_match_t;

typedef struct tg_route_match {
    char *host;           /* NULL: any; "*.example.com" matches by suffix */
    int host_wildcard;    /* 1 when host starts with "*." (host then holds ".example.com") */
    tg_path_kind_t path_kind;
    char *path;
    regex_t path_re;      /* compiled when path_kind == TG_PATH_REGEX */
    int ignore_case;      /* the path compares without regard to ASCII case */
    char **methods;       /* NULL: any */
    size_t n_methods;
    tg_header_match_t *headers;
    size_t n_headers;
    char *grpc_service;   /* "pkg.Service": gRPC requests to /pkg.Service/... */
    char *grpc_method;    /* with grpc_service: exactly /pkg.Service/Method */
} tg_route_match_t;

/* Most clusters a route splits its traffic over. */
#define TG_MAX_BACKENDS 16

/* One entry of a route's `clusters:` (traffic splitting). */
typedef struct tg_route_backend {
    size_t cluster;               /* index into tg_config_t.clusters */
    uint32_t weight;              /* its share of the split; 0: only requests pinned to it */
    tg_header_match_t *headers;   /* pin: a request with all of these goes here, whatever the weights */
    size_t n_headers;
} tg_route_backend_t;

typedef struct tg_route_conf {
    char *name;
    size_t *listeners;    /* indexes into tg_config_t.listeners; none = every listener */
    size_t n_listeners;
    tg_route_match_t match;
    size_t cluster;       /* index into tg_config_t.clusters (with `clusters:`, the first's) */
    tg_route_backend_t *backends; /* `clusters:`: weighted clusters; NULL: `cluster` alone */
    size_t n_backends;
    uint64_t timeout_ms;      /* upstream response headers must arrive within this */
    uint64_t idle_timeout_ms; /* max silence on an exchange once streaming */
    tg_header_rules_t request_headers;
    tg_header_rules_t response_headers;
    tg_filter_list_t filters; /* the route's own chain (after the global one) */
    uint64_t max_grpc_request_message; /* gRPC requests: largest message (0: unlimited) */
    int grpc_health;          /* grpc.health.v1.Health calls it matches are answered by tollgate */
} tg_route_conf_t;

/* One certificate and its key; `where` is "file:line:col" of the entry,
 * for errors found when the files are read (tls/context.c). */
typedef struct tg_tls_cert_conf {
    char *cert;
    char *key;
    char *where;
} tg_tls_cert_conf_t;

typedef enum { TG_CLIENT_AUTH_NONE = 0, TG_CLIENT_AUTH_OPTIONAL, TG_CLIENT_AUTH_REQUIRE } tg_client_auth_t;

/* A listener's `tls:` block (docs/configuration.md). */
typedef struct tg_tls_server_conf {
    int enabled;
    char *where;                 /* "file:line:col" of the block */
    tg_tls_cert_conf_t *certs;   /* the first is the default; the others by SNI */
    size_t n_certs;
    char **alpn;                 /* protocols offered, in preference order */
    size_t n_alpn;
    int min_version;             /* 12 or 13 */
    char *ciphers;               /* TLS 1.2 cipher list; NULL: OpenSSL's default */
    char *ciphersuites;          /* TLS 1.3 suites; NULL: default */
    char *groups;                /* key exchange groups; NULL: default */
    int session_tickets;
    uint32_t session_cache_size; /* 0: no server-side cache */
    uint64_t session_timeout_ms;
    tg_client_auth_t client_auth;
    char *client_ca;
    char *client_ca_where;
    uint32_t verify_depth;
    char *client_cert_header;    /* forwards the client identity upstream */
    uint64_t handshake_timeout_ms;
} tg_tls_server_conf_t;

/* A listener's `http2:` block: HTTP/2 over TLS (ALPN h2) and in cleartext
 * with prior knowledge (h2c). */
typedef struct tg_http2_conf {
    int enabled;
    uint32_t max_concurrent_streams;
    uint32_t initial_window_size;     /* per stream, for request bodies */
    uint32_t connection_window_size;
    uint64_t max_header_list_size;    /* 0: limits.max_header_bytes */
    uint64_t ping_interval_ms;        /* 0: no keepalive pings */
    uint64_t ping_timeout_ms;
    uint32_t max_resets_per_10s;      /* rapid-reset guard (CVE-2023-44487) */
} tg_http2_conf_t;

/* headers_with_underscores: what happens to a request header whose name
 * has a '_' (CGI/WSGI upstreams read it as the name with '-'). */
typedef enum { TG_UNDERSCORES_DROP = 0, TG_UNDERSCORES_ALLOW, TG_UNDERSCORES_REJECT } tg_underscores_t;

/* forwarded_header: the list the client-address walk reads, and the one
 * tollgate extends toward the upstream (X-Forwarded-For is always sent). */
typedef enum { TG_FORWARDED_XFF = 0, TG_FORWARDED_RFC7239, TG_FORWARDED_BOTH } tg_forwarded_mode_t;

typedef struct tg_listener_conf {
    char *name;
    char *listen;         /* as written */
    char *host;
    uint16_t port;
    tg_tls_server_conf_t tls;
    tg_http2_conf_t http2;
    int http1_enabled;                /* http1.enabled: serve HTTP/1.1 (0: an HTTP/2-only listener) */
    int proxy_protocol;               /* connections start with a PROXY header (v1 or v2) from a trusted proxy */
    /* Peers whose X-Forwarded-For is believed; overrides the top-level
     * list when has_trusted_proxies. */
    tg_cidr_t *trusted_proxies;
    size_t n_trusted_proxies;
    int has_trusted_proxies;
    uint64_t max_connections; /* open client connections on this listener (0: no limit) */
    tg_underscores_t underscores; /* headers_with_underscores: its own, else the top level's */
    uint32_t listen_backlog;  /* listen(2) backlog: connections the kernel queues before accept */
} tg_listener_conf_t;

/* A cluster's `tls:` block: TLS toward its endpoints. */
typedef struct tg_tls_client_conf {
    int enabled;
    char *where;
    char *ca;             /* NULL: the system's trust store */
    char *ca_where;
    char *server_name;    /* SNI and the name verified; NULL: the endpoint's host */
    int verify;           /* verify the certificate and host name (default on) */
    tg_tls_cert_conf_t client_cert; /* cert NULL: none */
    int min_version;
} tg_tls_client_conf_t;

typedef enum { TG_PROTO_HTTP1 = 0, TG_PROTO_H2C, TG_PROTO_H2 } tg_cluster_proto_t;
typedef enum { TG_LB_ROUND_ROBIN = 0, TG_LB_LEAST_REQUEST, TG_LB_RANDOM, TG_LB_PEAK_EWMA, TG_LB_RING_HASH, TG_LB_MAGLEV } tg_lb_t;
/* hash_on: what a request's key is, for lb: ring_hash and maglev */
typedef enum { TG_HASH_CLIENT_ADDRESS = 0, TG_HASH_HEADER, TG_HASH_COOKIE, TG_HASH_PATH } tg_hash_on_t;

typedef struct tg_endpoint_conf {
    char *address;        /* "host:port" as written */
    char *host;
    uint16_t port;
    uint32_t weight;      /* share of the cluster's requests (smooth weighted round-robin); default 1 */
    int named;            /* host is a name, not an IP address: resolved and followed by DNS (proxy/dns.h) */
} tg_endpoint_conf_t;

/* `dns:` — how endpoint names are resolved and followed (proxy/dns.h).
 * The top level's applies to every cluster; a cluster's own `dns:`
 * overrides the TTL bounds, the family and the failure mode. */
typedef enum { TG_DNS_AUTO = 0, TG_DNS_V4, TG_DNS_V6, TG_DNS_ALL } tg_dns_family_t;
typedef enum { TG_DNS_KEEP = 0, TG_DNS_FAIL } tg_dns_on_failure_t;
typedef struct tg_dns_conf {
    uint64_t min_ttl_ms;      /* an answer's TTL is clamped to [min_ttl, max_ttl] */
    uint64_t max_ttl_ms;
    tg_dns_family_t family;   /* lookup_family */
    tg_dns_on_failure_t on_failure;
    uint32_t max_addresses;   /* addresses taken from one answer (the rest are left out, logged) */
    uint64_t timeout_ms;      /* a lookup, all tries together (top level only) */
    char **resolvers;         /* "IP" or "IP:PORT" / "[IPv6]:PORT"; none: /etc/resolv.conf (top level only) */
    size_t n_resolvers;
} tg_dns_conf_t;

#define TG_DEFAULT_DNS_MIN_TTL_MS 1000
#define TG_DEFAULT_DNS_MAX_TTL_MS 30000
#define TG_DEFAULT_DNS_TIMEOUT_MS 5000
#define TG_DEFAULT_DNS_MAX_ADDRESSES 1024

typedef struct tg_health_check_conf {
    int enabled;
    int grpc;                 /* type grpc: grpc.health.v1.Health/Check over HTTP/2 */
    char *service;            /* grpc: the service asked about ("" = the server) */
    char *path;               /* GET this; a 2xx answer is healthy */
    char *host;               /* Host header; NULL: the endpoint's address */
    uint64_t interval_ms;
    uint64_t timeout_ms;
    uint32_t healthy_threshold;
    uint32_t unhealthy_threshold;
} tg_health_check_conf_t;

typedef struct tg_outlier_conf {
    uint32_t consecutive_failures; /* 0: passive ejection off */
    uint64_t base_ejection_ms;     /* doubles with each ejection of the endpoint */
    uint64_t max_ejection_ms;
} tg_outlier_conf_t;

typedef struct tg_cluster_conf {
    char *name;
    tg_cluster_proto_t protocol;
    tg_endpoint_conf_t *endpoints;
    size_t n_endpoints;
    tg_lb_t lb;
    tg_hash_on_t hash_on;     /* lb: ring_hash, maglev */
    char *hash_name;          /* hash_on header:NAME (lower case) or cookie:NAME */
    uint64_t slow_start_ms;   /* a new or recovered endpoint's share ramps up over this; 0: at once */
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms; /* pooled idle upstream connections are closed after this */
    uint32_t pool_size;       /* max idle connections per worker and endpoint; 0 = no reuse */
    int pool_adaptive;        /* pool_size not given: keep as many as the recent peak of requests in flight */
    tg_health_check_conf_t health_check;
    tg_outlier_conf_t outlier;
    int all_unhealthy_try_all;  /* when_all_unhealthy: try_all (else fail with 503) */
    tg_tls_client_conf_t tls;
    /* HTTP/2 upstreams (protocol h2c / h2) */
    uint64_t keepalive_interval_ms;   /* PING a busy connection after this silence; 0: never */
    uint64_t keepalive_timeout_ms;    /* an unanswered PING closes the connection */
    uint32_t max_concurrent_streams;  /* our cap per connection; 0: the upstream's setting */
    /* circuit breaking (0: no limit): past one, a request gets 503 at once */
    uint32_t max_connections;  /* open connections to all endpoints, all workers */
    uint32_t max_pending;      /* requests waiting for a new connection to open */
    uint32_t max_requests;     /* requests in flight to the cluster */
    int weighted;              /* some endpoint has a weight other than 1 */
    int named;                 /* some endpoint is a name (DNS follows it) */
    tg_dns_conf_t dns;         /* the top level's, with the cluster's own `dns:` over it */
    /* Made by the loader for the origin of a URL a filter fetches from
     * (tg_node_origin: "origin:https://host:port"), not written in the
     * file: /config and -T leave it out. */
    int implicit;
} tg_cluster_conf_t;

/* `path_normalization:` (proxy/path.h says what each step does). */
typedef enum { TG_ESCAPED_SLASH_REJECT = 0, TG_ESCAPED_SLASH_KEEP, TG_ESCAPED_SLASH_DECODE } tg_escaped_slash_t;
typedef enum { TG_SEMICOLONS_KEEP = 0, TG_SEMICOLONS_STRIP, TG_SEMICOLONS_REJECT } tg_semicolons_t;
typedef enum { TG_BACKSLASH_REJECT = 0, TG_BACKSLASH_KEEP, TG_BACKSLASH_DECODE } tg_backslashes_t;
typedef struct tg_path_conf {
    int merge_slashes;            /* default on */
    tg_escaped_slash_t escaped_slashes; /* default reject */
    tg_semicolons_t semicolons;   /* path parameters (";jsessionid=..."): default keep */
    tg_backslashes_t backslashes; /* a raw '\' in the path: default reject */
    int forward_original;         /* the upstream gets the path as received (default: normalized) */
} tg_path_conf_t;

typedef struct tg_limits {
    uint64_t max_header_bytes;
    uint64_t max_body_bytes;  /* 0 = unlimited */
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
} tg_limits_t;

typedef struct tg_admin_conf {
    char *listen;             /* NULL: no admin listener */
    char *host;
    uint16_t port;
    char *token;              /* a bearer token every endpoint but /healthz and /ready requires (secret) */
    char **allowed_hosts;     /* Host values accepted (besides the listen address and localhost) */
    size_t n_allowed_hosts;
    uint32_t max_connections; /* open admin connections (TG_DEFAULT_ADMIN_MAX_CONNECTIONS) */
    uint32_t history_routes;  /* series with a 15-minute history (proxy/history.h) */
} tg_admin_conf_t;

#define TG_DEFAULT_ADMIN_LISTEN "127.0.0.1:9901"
#define TG_DEFAULT_ADMIN_MAX_CONNECTIONS 64
#define TG_DEFAULT_ADMIN_HISTORY_ROUTES 1000
#define TG_DEFAULT_REDIS_MAX_REPLY (4u * 1024 * 1024)

/* The top-level `redis:` section: the shared store that rate_limit with
 * `store: redis` counts in (docs/configuration.md, docs/deployment.md). */
typedef struct tg_redis_conf {
    int enabled;
    char *where;              /* "file:line:col" of the section, for errors */
    int cluster;              /* Redis Cluster: nodes are the seeds, the slot map is asked for */
    tg_endpoint_conf_t *nodes;/* address: one node; cluster: the seeds */
    size_t n_nodes;
    char *username;           /* AUTH username password (ACL), or AUTH password; secrets */
    char *password;
    tg_tls_client_conf_t tls; /* TLS toward Redis */
    uint64_t timeout_ms;      /* a command's answer must come within this */
    uint64_t connect_timeout_ms;
    uint32_t pool;            /* connections per worker and node */
    char *key_prefix;         /* every key tollgate writes starts with this */
    uint64_t max_reply_bytes; /* a reply past this closes its connection (TG_DEFAULT_REDIS_MAX_REPLY) */
} tg_redis_conf_t;

#define TG_DEFAULT_REDIS_TIMEOUT_MS 25
#define TG_DEFAULT_REDIS_CONNECT_TIMEOUT_MS 1000
#define TG_DEFAULT_REDIS_POOL 1
#define TG_DEFAULT_REDIS_KEY_PREFIX "tollgate:"

/* `tracing:` — W3C trace context, and spans exported as OTLP/HTTP JSON. */
typedef struct tg_tracing_conf {
    int enabled;
    double sample_ratio;        /* traces that start here: the share sampled (0..1) */
    char *service_name;         /* service.name of the exported spans */
    char *otlp_endpoint;        /* as written; NULL: no export */
    char *otlp_host;
    uint16_t otlp_port;
    char *otlp_path;            /* "/v1/traces" */
    uint32_t batch_size;        /* spans per POST at most */
    uint32_t queue_size;        /* spans each worker may have waiting (a power of two) */
    uint64_t flush_interval_ms; /* a partial batch goes after this long */
    uint64_t timeout_ms;        /* one POST, connect to answer */
} tg_tracing_conf_t;

typedef struct tg_config {
    atomic_int refs;
    char *path;
    const tg_filter_registry_t *filter_registry; /* what made (and frees) the filter configs; NULL: none */
    char *document;           /* the file as loaded, as JSON: ${VAR}s expanded, secrets "<redacted>" (/config) */
    tg_admin_conf_t admin;
    unsigned workers;         /* 0 = auto (one per CPU) */
    int io_uring_off;         /* io_uring: off (1) or auto (0); read at start */
    uint64_t drain_timeout_ms;
    tg_limits_t limits;
    tg_listener_conf_t *listeners;
    size_t n_listeners;
    tg_route_conf_t *routes;
    size_t n_routes;
    tg_cluster_conf_t *clusters;
    size_t n_clusters;
    tg_filter_list_t filters; /* the global chain */
    tg_cidr_t *trusted_proxies; /* top level; a listener may override */
    size_t n_trusted_proxies;
    tg_forwarded_mode_t forwarded_header;
    int set_x_real_ip;          /* X-Real-IP: the client address tollgate established */
    tg_underscores_t underscores; /* headers_with_underscores (a listener may override) */
    tg_path_conf_t paths;       /* path_normalization */
    uint64_t max_connections;   /* open client connections, all listeners (0: no limit) */
    tg_redis_conf_t redis;      /* enabled 0: no `redis:` section */
    tg_tracing_conf_t tracing;  /* enabled 0: no `tracing:` section (trace headers pass as they came) */
    int log_json;               /* log_format: json (the process log as JSON lines) */
    tg_dns_conf_t dns;          /* `dns:` (defaults when absent) */
} tg_config_t;

/* Defaults, also documented in docs/configuration.md. */
#define TG_DEFAULT_MAX_GRPC_REQUEST_MESSAGE (4u * 1024 * 1024) /* gRPC's own default */
#define TG_DEFAULT_MAX_HEADER_BYTES (64 * 1024)
#define TG_DEFAULT_LISTEN_BACKLOG 4096
#define TG_DEFAULT_HEADER_TIMEOUT_MS 10000
#define TG_DEFAULT_IDLE_TIMEOUT_MS 60000
#define TG_DEFAULT_DRAIN_TIMEOUT_MS 30000
#define TG_DEFAULT_ROUTE_TIMEOUT_MS 15000
#define TG_DEFAULT_ROUTE_IDLE_TIMEOUT_MS 300000
#define TG_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define TG_DEFAULT_POOL_IDLE_TIMEOUT_MS 60000
#define TG_DEFAULT_POOL_SIZE 64
#define TG_POOL_ADAPTIVE_MAX 4096      /* an adaptive pool keeps at most this many idle connections */
#define TG_POOL_PEAK_WINDOW_MS 10000   /* the recent peak: the most in flight in this window or the one before */
#define TG_DEFAULT_HC_INTERVAL_MS 5000
#define TG_DEFAULT_HC_TIMEOUT_MS 1000
#define TG_DEFAULT_HC_HEALTHY 2
#define TG_DEFAULT_HC_UNHEALTHY 3
#define TG_DEFAULT_EJECTION_MS 30000
#define TG_DEFAULT_MAX_EJECTION_MS 300000
#define TG_DEFAULT_TLS_SESSION_CACHE 20480
#define TG_DEFAULT_TLS_SESSION_TIMEOUT_MS 300000
#define TG_DEFAULT_TLS_VERIFY_DEPTH 3
#define TG_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS 10000
#define TG_DEFAULT_CLIENT_CERT_HEADER "x-forwarded-client-cert"
#define TG_DEFAULT_H2_MAX_STREAMS 128
#define TG_DEFAULT_H2_STREAM_WINDOW (256 * 1024)
#define TG_DEFAULT_H2_CONN_WINDOW (1024 * 1024)
#define TG_DEFAULT_H2_PING_TIMEOUT_MS 20000
#define TG_DEFAULT_H2_MAX_RESETS 400
#define TG_DEFAULT_H2_KEEPALIVE_MS 30000
#define TG_DEFAULT_H2_KEEPALIVE_TIMEOUT_MS 10000

/* Loads and validates path. Returns a snapshot with one reference, or NULL
 * with every problem appended to errs as "file:line:col: message".
 * filters: the filter kinds `filters:` entries may name (NULL: none). */
tg_config_t *tg_config_load(const char *path, const tg_filter_registry_t *filters, tg_errors_t *errs);
/* tg_config_load, and on failure, when partial is not NULL, the config
 * as far as it loaded (*partial; caller unrefs), so that more of the
 * file can be checked (certificate files) in the same run. */
tg_config_t *tg_config_load_partial(const char *path, const tg_filter_registry_t *filters, tg_errors_t *errs,
                                    tg_config_t **partial);
/* Only the admin section (for tollgate ctl): the rest of the file is not
 * checked; admin.listen is NULL when there is no admin listener. */
tg_config_t *tg_config_load_admin(const char *path, tg_errors_t *errs);

/* Same, from a string (used by unit tests); name is used in messages. */
tg_config_t *tg_config_load_string(const char *name, const char *yaml, size_t len, const tg_filter_registry_t *filters,
                                   tg_errors_t *errs);

tg_config_t *tg_config_ref(tg_config_t *c);
/* Drops a reference; the last one frees the snapshot. Thread-safe. */
void tg_config_unref(tg_config_t *c);

/* The effective configuration as JSON, secrets redacted (malloc'ed; NULL
 * on OOM). */
char *tg_config_to_json(const tg_config_t *c);

/* Do two listeners bind the same address (host and port as written)? */
int tg_listener_same_address(const tg_listener_conf_t *a, const tg_listener_conf_t *b);

/* Index of the named listener/cluster, or -1. */
/* s as a JSON string, quoted and escaped (NULL: ""). */
void tg_config_json_str(FILE *f, const char *s);

/* The route's cluster as people read it: its name, or for a split route
 * the names of its clusters joined by "," (into buf). */
const char *tg_route_cluster_label(const tg_config_t *c, const tg_route_conf_t *r, char *buf, size_t cap);
long tg_config_find_listener(const tg_config_t *c, const char *name);
long tg_config_find_cluster(const tg_config_t *c, const char *name);

#endif
