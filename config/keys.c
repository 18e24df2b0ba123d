/*
 * config/keys.c — the keys of every section the loader reads itself (see
 * schema.h). The order of each table is the order of the loader's value
 * array for that section (config/loader.c indexes it by position). The
 * texts are the reference: docs/configuration.md's tables and the man page
 * are generated from them (scripts/gen_docs.py), and a test checks both.
 */
#include "config/schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"

static const tg_key_t certificate_keys[] = {
    { "cert", TG_KEY_STRING, "file (required)", "—",
      "PEM certificate chain, leaf first", .flags = TG_KEY_REQUIRED },
    { "key", TG_KEY_STRING, "file (required)", "—",
      "its private key (PEM); one that does not match the certificate is an error", .flags = TG_KEY_REQUIRED },
};

static const tg_key_t http1_keys[] = {
    { "enabled", TG_KEY_BOOL, "boolean", "`true`",
      "serve HTTP/1.1 on this listener; `false` makes an HTTP/2-only listener" },
};

static const tg_key_t endpoint_keys[] = {
    { "address", TG_KEY_ADDRESS, "address (required)", "—", "the endpoint", .flags = TG_KEY_REQUIRED },
    { "weight", TG_KEY_INT, "integer 1–10000", "`1`",
      "its share of the cluster's requests: smooth weighted round-robin (as nginx does), so an endpoint of weight 3 "
      "beside one of weight 1 gets 3 of every 4 requests, interleaved",
      .min = 1, .max = 10000 },
};

static const tg_key_t header_match_keys[] = {
    { "name", TG_KEY_STRING, "header name (required)", "—",
      "the header that must be present", .flags = TG_KEY_REQUIRED },
    { "value", TG_KEY_STRING, "string", "any value",
      "the value it must equal (exactly); read as a secret, so `/config` shows `<redacted>`" },
};

/* enum fields are stored as int (TG_FIELD_INT) */
_Static_assert(sizeof(tg_escaped_slash_t) == sizeof(int) && sizeof(tg_semicolons_t) == sizeof(int) &&
                   sizeof(tg_backslashes_t) == sizeof(int) && sizeof(tg_underscores_t) == sizeof(int) &&
                   sizeof(tg_forwarded_mode_t) == sizeof(int) && sizeof(tg_cluster_proto_t) == sizeof(int) &&
                   sizeof(tg_lb_t) == sizeof(int) && sizeof(tg_client_auth_t) == sizeof(int) &&
                   sizeof(tg_dns_family_t) == sizeof(int) && sizeof(tg_dns_on_failure_t) == sizeof(int),
               "enum fields are ints");

static const tg_key_t paths_keys[] = {
    { "merge_slashes", TG_KEY_BOOL, "bool", "`true`",
      "`//a///b` becomes `/a/b`", TG_FIELD(tg_path_conf_t, merge_slashes, TG_FIELD_INT), .def = 1 },
    { "escaped_slashes", TG_KEY_ENUM, "`reject`, `keep` or `decode`", "`reject`",
      "`%2F` / `%5C` in a path: refused with 400; kept encoded (never a separator); or decoded to `/` and `\\` before dot-segments are removed (a decoded `\\` then follows `backslashes`)", .choices = "reject|keep|decode",
      TG_FIELD(tg_path_conf_t, escaped_slashes, TG_FIELD_INT) },
    { "forward", TG_KEY_ENUM, "`normalized` or `original`", "`normalized`",
      "what the upstream receives: the normalized path, or the path exactly as the client sent it (with the query as filters left it). Routing uses the normalized path either way.", .choices = "normalized|original",
      TG_FIELD(tg_path_conf_t, forward_original, TG_FIELD_INT) },
    { "semicolons", TG_KEY_ENUM, "`keep`, `strip` or `reject`", "`keep`",
      "path parameters (`/a;jsessionid=1/b`), which Java servers (Tomcat, Spring) remove before they route: kept as sent (routes then see `;` in the segment); removed from every segment before routing and forwarding (routes see what such an upstream serves); or a path with `;` or `%3B` refused with `400` (as Spring's StrictHttpFirewall does). Whatever the setting, a dot-segment with parameters (`..;x`, `.;`) is a dot-segment: resolved (keep and strip) or refused (reject), never forwarded.", .choices = "keep|strip|reject",
      TG_FIELD(tg_path_conf_t, semicolons, TG_FIELD_INT) },
    { "backslashes", TG_KEY_ENUM, "`reject`, `keep` or `decode`", "`reject`",
      "a raw `\\` in the path, which IIS and some frameworks read as `/`: refused with `400` (as `%5C` is by default); kept as it came (routes see an ordinary byte: only for upstreams that never read it as `/`); or read as `/` before slashes are merged and dot-segments removed", .choices = "reject|keep|decode",
      TG_FIELD(tg_path_conf_t, backslashes, TG_FIELD_INT) },
};

static const tg_key_t limits_keys[] = {
    { "max_header_bytes", TG_KEY_SIZE, "size, 1KiB–1MiB", "`64KiB`",
      "largest request line + header section; larger gets `431`",
      .min = 1024, .max = 1024 * 1024, TG_FIELD(tg_limits_t, max_header_bytes, TG_FIELD_U64),
      .def = TG_DEFAULT_MAX_HEADER_BYTES },
    { "max_body_bytes", TG_KEY_SIZE, "size", "`0` (unlimited)",
      "largest request body; a larger `Content-Length` gets `413` before anything is read; a chunked body that grows past it gets `413` (or, if the response has already started, the connection is cut)",
      TG_FIELD(tg_limits_t, max_body_bytes, TG_FIELD_U64) },
    { "header_timeout", TG_KEY_DURATION, "duration", "`10s`",
      "from the first byte of a request until its header section is complete; a client that dribbles its headers gets `408` and is disconnected",
      TG_FIELD(tg_limits_t, header_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_HEADER_TIMEOUT_MS },
    { "idle_timeout", TG_KEY_DURATION, "duration", "`1m`",
      "how long a client keep-alive connection may sit idle between requests",
      TG_FIELD(tg_limits_t, idle_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_IDLE_TIMEOUT_MS },
};

static const tg_key_t admin_keys[] = {
    { "listen", TG_KEY_ADDRESS, "address", "`127.0.0.1:9901`",
      "where `/metrics`, `/healthz`, `/ready`, `/config` and `POST /-/reload` are served (see [operations.md](operations.md)). Loopback unless you say otherwise; beyond loopback without a `token`, a warning is logged. A change takes effect on restart." },
    { "token", TG_KEY_STRING, "string, at least 16 characters", "none",
      "a secret every endpoint but `/healthz` and `/ready` then requires as `Authorization: Bearer <token>` (401 without it). Use `${ENV_VAR}` to take it from the environment; `/config` shows it as `<redacted>`." },
    { "token_file", TG_KEY_STRING, "path", "none",
      "the same, read from a file (relative to the config file; trailing newline ignored); re-read on reload. Not together with `token`." },
    { "allowed_hosts", TG_KEY_STRINGS, "list of names", "none",
      "`Host` values the listener answers to besides its own address, `localhost`, `127.0.0.1` and `[::1]` (each with or without the port); any other gets `421` (a DNS-rebinding page sends its own name)" },
    { "max_connections", TG_KEY_INT, "integer 1–10000", "`64`",
      "open admin connections; past it a new one is closed at once and counted in `tollgate_admin_connections_rejected_total`, so that a flood of idle connections cannot take the memory or the file descriptors the proxy needs (each is also dropped after 10 s without progress). A reload applies a change.", .min = 1, .max = 10000,
      TG_FIELD(tg_admin_conf_t, max_connections, TG_FIELD_U32), .def = TG_DEFAULT_ADMIN_MAX_CONNECTIONS },
    { "history_routes", TG_KEY_INT, "integer 0–1000000", "`1000`",
      "routes and clusters given a 15-minute history on the status page and in `/status.json?history=15m` (the first to see traffic take them): 5,760 bytes a route and 2,160 a cluster, fixed. `0` keeps none (endpoint state changes and reloads are still listed). A reload applies a change.",
      .max = 1000000, TG_FIELD(tg_admin_conf_t, history_routes, TG_FIELD_U32), .def = TG_DEFAULT_ADMIN_HISTORY_ROUTES },
};

static const tg_key_t redis_keys[] = {
    { "address", TG_KEY_ADDRESS, "address", "—",
      "one Redis. Give this or `cluster`" },
    { "cluster", TG_KEY_STRINGS, "list of addresses (1–64)", "—",
      "seed nodes of a Redis Cluster: the slot map is read with `CLUSTER SLOTS` at start, `MOVED` redirects update it (and ask for a fresh map), `ASK` is followed with `ASKING`; nodes learnt from the cluster are connected on first use" },
    { "username", TG_KEY_STRING, "string", "none",
      "`AUTH username password` (Redis 6 ACL); needs a password" },
    { "username_file", TG_KEY_STRING, "path", "none",
      "the username, read from a file (relative to the config file; trailing newline ignored). Not together with `username`" },
    { "password", TG_KEY_STRING, "string", "none",
      "`AUTH` on every new connection, before anything else; `${ENV}` works here. Shown as `<redacted>` by `/config`, never logged. A refused AUTH closes the connection, is counted (`kind=\"auth\"`) and logged" },
    { "password_file", TG_KEY_STRING, "path", "none",
      "the password, read from a file (relative to the config file; trailing newline ignored). Not together with `password`" },
    { "tls", TG_KEY_MAP, "mapping", "none (cleartext)",
      "TLS toward Redis, as a cluster's `tls` (`ca`, `server_name`, `verify`, `cert` + `key` for a client certificate, `min_version`); files are read and checked at load and by `tollgate -t`", .sub = &tg_keys_client_tls },
    { "timeout", TG_KEY_DURATION, "duration, 1ms–1m", "`25ms`",
      "a call's answer must come within this; past it the request is decided by the filter's `on_store_error`, and the late reply is read and dropped. A connection with a call unanswered for 20 × `timeout` (at least 1 s) is closed and reconnected",
      .min = 1, .max = 60000, TG_FIELD(tg_redis_conf_t, timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_REDIS_TIMEOUT_MS },
    { "connect_timeout", TG_KEY_DURATION, "duration, 1ms–1m", "`1s`",
      "TCP connect plus TLS handshake", .min = 1, .max = 60000, TG_FIELD(tg_redis_conf_t, connect_timeout_ms, TG_FIELD_U64),
      .def = TG_DEFAULT_REDIS_CONNECT_TIMEOUT_MS },
    { "pool", TG_KEY_INT, "integer 1–64", "`1`",
      "connections per worker and Redis node; one pipelined connection per worker is usually enough", .min = 1, .max = 64,
      TG_FIELD(tg_redis_conf_t, pool, TG_FIELD_U32), .def = TG_DEFAULT_REDIS_POOL },
    { "key_prefix", TG_KEY_STRING, "string, ≤128 bytes, no `{` `}`", "`tollgate:`",
      "every key tollgate writes starts with it (a shared Redis can hold several deployments)" },
    { "max_reply_bytes", TG_KEY_SIZE, "size, 1KiB–256MiB", "`4MiB`",
      "the largest reply taken from Redis; past it the connection is closed and counted (`kind=\"reply_size\"`), whatever the server (or something posing as it) sends. Rate-limit replies are a few bytes; `CLUSTER SLOTS` of a 1000-shard cluster is about 200 KiB",
      .min = 1024, .max = 256 << 20, TG_FIELD(tg_redis_conf_t, max_reply_bytes, TG_FIELD_U64), .def = TG_DEFAULT_REDIS_MAX_REPLY },
};

static const tg_key_t listener_keys[] = {
    { "name", TG_KEY_STRING, "name (required, unique)", "—",
      "used by `routes[].listeners` and in logs", .flags = TG_KEY_REQUIRED },
    { "listen", TG_KEY_ADDRESS, "address (required)", "—",
      "`HOST:PORT` to bind; a port in use is a start-up error", .flags = TG_KEY_REQUIRED },
    { "tls", TG_KEY_MAP, "mapping", "none (cleartext)",
      "terminate TLS on this listener, see below", .sub = &tg_keys_server_tls },
    { "http2", TG_KEY_MAP, "mapping", "enabled",
      "HTTP/2 settings, see below", .sub = &tg_keys_http2 },
    { "trusted_proxies", TG_KEY_STRINGS, "list of addresses or CIDR blocks", "the top-level list",
      "this listener's own list (an empty list trusts no one)" },
    { "max_connections", TG_KEY_INT, "integer", "none",
      "open client connections on this listener; past it a new connection is closed at once (counted). Each worker takes an equal share (rounded up).", .min = 1, .max = 100000000,
      TG_FIELD(tg_listener_conf_t, max_connections, TG_FIELD_U64) },
    { "http1", TG_KEY_MAP, "mapping", "`{ enabled: true }`",
      "`enabled: false` makes an HTTP/2-only listener (below)", .sub = &tg_keys_http1 },
    { "proxy_protocol", TG_KEY_BOOL, "boolean", "`false`",
      "every connection starts with a PROXY protocol header (v1 or v2) from an L4 balancer in `trusted_proxies` (the listener's or the top-level list, which must not be empty); see below",
      TG_FIELD(tg_listener_conf_t, proxy_protocol, TG_FIELD_INT) },
    { "listen_backlog", TG_KEY_INT, "integer 1–65535", "`4096`",
      "connections the kernel queues for accepting (the `listen(2)` backlog of each worker's socket; the kernel caps it at `net.core.somaxconn`). A burst larger than it waits for SYN retransmits. A reload applies a new value to the sockets it keeps.", .min = 1, .max = 65535,
      TG_FIELD(tg_listener_conf_t, listen_backlog, TG_FIELD_U32), .def = TG_DEFAULT_LISTEN_BACKLOG },
    { "headers_with_underscores", TG_KEY_ENUM, "`allow`, `drop` or `reject`", "the top-level setting",
      "this listener's own `headers_with_underscores`", .choices = "drop|allow|reject",
      TG_FIELD(tg_listener_conf_t, underscores, TG_FIELD_INT) },
};

static const tg_key_t server_tls_keys[] = {
    { "certificates", TG_KEY_LIST, "list of `{ cert, key }` (required, non-empty)", "—",
      "PEM certificate chain (leaf first) and its private key. The first is the default; each one also serves the names in its DNS subjectAltNames (or its CN when it has none), chosen by the client's SNI: exact names first, then wildcards (`*.example.com` covers exactly one label). A key that does not match its certificate is an error; an expired or not-yet-valid certificate is a warning.", .sub = &tg_keys_certificate, .flags = TG_KEY_REQUIRED },
    { "alpn", TG_KEY_STRINGS, "list of `h2`, `http/1.1`", "`[h2, http/1.1]`",
      "protocols offered, in tollgate's order of preference; `h2` is left out when `http2.enabled` is false. A client with nothing in common gets HTTP/1.1." },
    { "min_version", TG_KEY_ENUM, "`1.2` or `1.3`", "`1.2`",
      "oldest TLS version accepted", .choices = "1.2|1.3" },
    { "ciphers", TG_KEY_STRING, "OpenSSL cipher list", "OpenSSL's default",
      "TLS 1.2 ciphers (server order is preferred)", TG_FIELD(tg_tls_server_conf_t, ciphers, TG_FIELD_STR) },
    { "ciphersuites", TG_KEY_STRING, "OpenSSL suite list", "OpenSSL's default",
      "TLS 1.3 suites", TG_FIELD(tg_tls_server_conf_t, ciphersuites, TG_FIELD_STR) },
    { "groups", TG_KEY_STRING, "OpenSSL group list", "OpenSSL's default",
      "key-exchange groups, e.g. `X25519:P-256`", TG_FIELD(tg_tls_server_conf_t, groups, TG_FIELD_STR) },
    { "session_tickets", TG_KEY_BOOL, "boolean", "`true`",
      "stateless resumption. Ticket keys live in the process and change on reload and restart (a client then does a full handshake).",
      TG_FIELD(tg_tls_server_conf_t, session_tickets, TG_FIELD_INT), .def = 1 },
    { "session_cache_size", TG_KEY_INT, "integer 0–10000000", "`20480`",
      "server-side session cache entries (shared by all workers); `0` turns it off", .min = 0, .max = 10000000,
      TG_FIELD(tg_tls_server_conf_t, session_cache_size, TG_FIELD_U32), .def = TG_DEFAULT_TLS_SESSION_CACHE },
    { "session_timeout", TG_KEY_DURATION, "duration", "`5m`",
      "lifetime of a resumable session", TG_FIELD(tg_tls_server_conf_t, session_timeout_ms, TG_FIELD_U64),
      .def = TG_DEFAULT_TLS_SESSION_TIMEOUT_MS },
    { "client_auth", TG_KEY_ENUM, "`none`, `optional`, `require`", "`none`",
      "mutual TLS. `require`: a client without a certificate that verifies against `client_ca` fails the handshake. `optional`: a client may send none (its requests carry no identity), but a certificate it does send must verify.", .choices = "none|optional|require",
      TG_FIELD(tg_tls_server_conf_t, client_auth, TG_FIELD_INT) },
    { "client_ca", TG_KEY_STRING, "file (required with client auth)", "—",
      "PEM bundle of the CAs client certificates are checked against; also sent to clients as the acceptable CA list" },
    { "verify_depth", TG_KEY_INT, "integer 1–100", "`3`",
      "longest client certificate chain accepted", .min = 1, .max = 100,
      TG_FIELD(tg_tls_server_conf_t, verify_depth, TG_FIELD_U32), .def = TG_DEFAULT_TLS_VERIFY_DEPTH },
    { "client_cert_header", TG_KEY_STRING, "header name", "`x-forwarded-client-cert`",
      "the verified client identity forwarded upstream, in the spirit of Envoy's XFCC: `Hash=<sha256 of the DER cert>;Subject=\"<RFC 2253 DN>\";URI=<each URI SAN>;DNS=<each DNS SAN>`. Whatever a client sends under this name (on every listener, whichever listener configures it) is removed on arrival, as are `x-forwarded-client-cert` and every auth filter's `identity_header`, so none can be spoofed." },
    { "handshake_timeout", TG_KEY_DURATION, "duration", "`10s`",
      "a client that has not finished its handshake by then is disconnected (counted as a handshake failure)",
      TG_FIELD(tg_tls_server_conf_t, handshake_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS },
};

static const tg_key_t http2_keys[] = {
    { "enabled", TG_KEY_BOOL, "boolean", "`true`",
      "accept HTTP/2 (h2c preface on cleartext, `h2` in ALPN on TLS)",
      TG_FIELD(tg_http2_conf_t, enabled, TG_FIELD_INT), .def = 1 },
    { "max_concurrent_streams", TG_KEY_INT, "integer 1–100000", "`128`",
      "SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once", .min = 1, .max = 100000,
      TG_FIELD(tg_http2_conf_t, max_concurrent_streams, TG_FIELD_U32), .def = TG_DEFAULT_H2_MAX_STREAMS },
    { "initial_window_size", TG_KEY_SIZE, "size, 16KiB–2GiB", "`256KiB`",
      "per-stream window for request bodies: the most request body the gateway holds for one stream before the upstream takes it",
      .min = 16384, .max = 0x7fffffff, TG_FIELD(tg_http2_conf_t, initial_window_size, TG_FIELD_U32),
      .def = TG_DEFAULT_H2_STREAM_WINDOW },
    { "connection_window_size", TG_KEY_SIZE, "size, 64KiB–2GiB", "`1MiB`",
      "the same for all streams of a connection together",
      .min = 65535, .max = 0x7fffffff, TG_FIELD(tg_http2_conf_t, connection_window_size, TG_FIELD_U32),
      .def = TG_DEFAULT_H2_CONN_WINDOW },
    { "max_header_list_size", TG_KEY_SIZE, "size", "`limits.max_header_bytes`",
      "SETTINGS_MAX_HEADER_LIST_SIZE; a request whose decoded header list is larger gets `431` (this also bounds HPACK \"bombs\")",
      TG_FIELD(tg_http2_conf_t, max_header_list_size, TG_FIELD_U64) },
    { "ping_interval", TG_KEY_DURATION, "duration", "`0` (off)",
      "while streams are open, send a PING after this much silence",
      TG_FIELD(tg_http2_conf_t, ping_interval_ms, TG_FIELD_U64) },
    { "ping_timeout", TG_KEY_DURATION, "duration", "`20s`",
      "a PING unanswered this long closes the connection",
      TG_FIELD(tg_http2_conf_t, ping_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_H2_PING_TIMEOUT_MS },
    { "max_resets_per_10s", TG_KEY_INT, "integer 1–1000000", "`400`",
      "rapid-reset guard (CVE-2023-44487): a client that resets more streams than this in 10 s, and more than half of the streams it opened in that time, gets GOAWAY `ENHANCE_YOUR_CALM` (a busy client whose calls often hit their deadlines cancels many streams, but not most); past 4× this the connection goes whatever the ratio, so completed streams cannot dilute a flood. Resets the gateway sends because of an invalid frame on a stream count too (CVE-2025-8671).",
      .min = 1, .max = 1000000, TG_FIELD(tg_http2_conf_t, max_resets_per_10s, TG_FIELD_U32),
      .def = TG_DEFAULT_H2_MAX_RESETS },
};

static const tg_key_t route_keys[] = {
    { "name", TG_KEY_STRING, "name (required, unique)", "—",
      "unique; names the route in metrics, logs and `route_costs`", .flags = TG_KEY_REQUIRED },
    { "listeners", TG_KEY_STRINGS, "list of listener names", "every listener",
      "the route only applies to requests on these listeners" },
    { "match", TG_KEY_MAP, "mapping", "match everything",
      "see below; every given condition must hold", .sub = &tg_keys_match },
    { "cluster", TG_KEY_STRING, "cluster name (required, or `clusters`)", "—",
      "where matching requests go" },
    { "timeout", TG_KEY_DURATION, "duration", "`15s`",
      "the upstream must start answering within this (from the request being sent; any progress in either direction resets it); else `504`",
      TG_FIELD(tg_route_conf_t, timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_ROUTE_TIMEOUT_MS },
    { "idle_timeout", TG_KEY_DURATION, "duration", "`5m`",
      "once the response streams (or a WebSocket tunnel is open), the exchange is closed after this long without a byte in either direction. Long-lived streams (SSE) are bounded by this, not by `timeout`",
      TG_FIELD(tg_route_conf_t, idle_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_ROUTE_IDLE_TIMEOUT_MS },
    { "request_headers", TG_KEY_MAP, "header rules", "none",
      "edits of the request headers sent upstream", .sub = &tg_keys_header_rules },
    { "response_headers", TG_KEY_MAP, "header rules", "none",
      "edits of the response headers sent to the client", .sub = &tg_keys_header_rules },
    { "filters", TG_KEY_FILTERS, "list", "none",
      "the route's own filter chain, run after the global one: `- auth: {...}`, `- rate_limit: {...}`, `- concurrency_limit: {...}`, `- quota: {...}`, `- access_log: {...}`, `- retry: {...}`, `- headers: {...}`, `- cors: {...}`, `- fault: {...}`, `- body_limit: {...}` (see [filters.md](filters.md))" },
    { "max_grpc_request_message", TG_KEY_SIZE, "size, at most 4GiB", "`4MiB` (gRPC's own default)",
      "a gRPC call (HTTP/2 `POST`, content-type `application/grpc` or `application/grpc+...`) is exempt from `limits.max_body_bytes` — a client stream may run for hours — and bounded instead message by message: a message whose length prefix says more than this is refused with `RESOURCE_EXHAUSTED` before it is forwarded. `0` = unlimited. A request that only claims a gRPC-like content-type (gRPC-Web, a `GET`, HTTP/1.1) keeps the body limit.",
      .min = 0, .max = 4ll << 30, TG_FIELD(tg_route_conf_t, max_grpc_request_message, TG_FIELD_U64),
      .def = TG_DEFAULT_MAX_GRPC_REQUEST_MESSAGE },
    { "grpc_health", TG_KEY_BOOL, "boolean", "`false`",
      "answer `grpc.health.v1.Health/Check` and `/Watch` calls this route matches in tollgate, from the endpoints' "
      "health: a service is `SERVING` while the cluster its calls are routed to has a usable endpoint, "
      "`NOT_SERVING` when it has none or tollgate is draining; the empty service is this route's own cluster; "
      "an unknown one `NOT_FOUND` (Check) or `SERVICE_UNKNOWN` (Watch). Other calls go to the cluster as usual. "
      "For Kubernetes gRPC probes and gRPC clients' health checking; see [grpc.md](grpc.md)",
      TG_FIELD(tg_route_conf_t, grpc_health, TG_FIELD_INT) },
    { "clusters", TG_KEY_LIST, "list of `{ name, weight, headers }` (instead of `cluster`)", "—",
      "traffic splitting (canaries, blue/green): requests go to these clusters in proportion to their weights, "
      "interleaved, or to the first whose `headers` a request has",
      .sub = &tg_keys_backend },
};

static const tg_key_t match_keys[] = {
    { "host", TG_KEY_STRING, "name or `*.suffix`", "none",
      "the request's host (Host header or absolute-form target), compared case-insensitively and without the port; `*.example.com` matches `a.example.com` and `a.b.example.com` but not `example.com`" },
    { "path", TG_KEY_STRING, "string starting with `/`", "none",
      "the path (query string excluded) equals this" },
    { "path_prefix", TG_KEY_STRING, "string starting with `/`", "none",
      "the path starts with this (byte-wise: `/api` also matches `/apix`)" },
    { "path_separated_prefix", TG_KEY_STRING, "string starting with `/`", "none",
      "**recommended**: the path is this or continues with `/` (or `;`, path parameters): `/api` matches `/api`, `/api/x` and `/api;v=1/x`, never `/apix`" },
    { "path_regex", TG_KEY_STRING, "POSIX extended regex", "none",
      "the path matches; invalid regexes are config errors, and so are patterns that would make the regex compiler exhaust memory: longer than 1024 characters, a repetition of a repetition (`a++`, `a{2}{3}`), or repetition counts (with repeated groups counting 2) that multiply past 1000" },
    { "methods", TG_KEY_STRINGS, "list of methods", "none",
      "the method is one of these (exact, case-sensitive)" },
    { "headers", TG_KEY_LIST, "list of `{ name, value }`", "none",
      "each named header is present, and equals `value` when given", .sub = &tg_keys_header_match },
    { "grpc_service", TG_KEY_STRING, "service name, e.g. `users.v1.UserService`", "none",
      "a gRPC call (HTTP/2 `POST` with content-type `application/grpc`, `application/grpc+...` or with parameters) or a gRPC-Web request (`POST`, `application/grpc-web[-text]...`) whose path is `/<service>/<any method>`; anything else — gRPC's content-type over HTTP/1.1, `application/grpc-foo` — is an ordinary HTTP request" },
    { "grpc_method", TG_KEY_STRING, "method name (needs `grpc_service`)", "none",
      "... and exactly `/<service>/<method>`" },
    { "ignore_case", TG_KEY_BOOL, "boolean", "`false`",
      "the path (`path`, `path_prefix`, `path_separated_prefix`, `path_regex`) is compared without regard to ASCII case, for upstreams that serve `/ADMIN` as `/admin` (IIS, Windows file systems, some Java setups): a policy on `/admin` then covers every spelling",
      TG_FIELD(tg_route_match_t, ignore_case, TG_FIELD_INT) },
};

static const tg_key_t header_rules_keys[] = {
    { "add", TG_KEY_DICT, "mapping name → value", "none",
      "appended (existing ones stay)" },
    { "set", TG_KEY_DICT, "mapping name → value", "none",
      "replaces every occurrence with one header" },
    { "remove", TG_KEY_STRINGS, "list of header names", "none",
      "removed (every occurrence)" },
};

static const tg_key_t cluster_keys[] = {
    { "name", TG_KEY_STRING, "name (required, unique)", "—",
      "unique; routes name it in `cluster`", .flags = TG_KEY_REQUIRED },
    { "protocol", TG_KEY_ENUM, "`http1`, `h2c`, `h2`", "`http1`",
      "upstream protocol: HTTP/1.1 (over TLS when `tls` is given); HTTP/2 cleartext with prior knowledge; HTTP/2 over TLS (needs `tls`; ALPN `h2`). gRPC needs `h2c` or `h2`. See [tls-http2.md](tls-http2.md)", .choices = "http1|h2c|h2",
      TG_FIELD(tg_cluster_conf_t, protocol, TG_FIELD_INT) },
    { "endpoints", TG_KEY_LIST, "list of addresses or `{ address, weight }` (required, non-empty)", "—",
      "an IP address, or a name that DNS follows: each address of its answer is an endpoint, re-resolved as its "
      "TTL runs out (see `dns` below)", .sub = &tg_keys_endpoint,
      .flags = TG_KEY_REQUIRED | TG_KEY_ITEMS_OR_STRING },
    { "lb", TG_KEY_ENUM, "`round_robin`, `least_request`, `random`, `peak_ewma`, `ring_hash` or `maglev`",
      "`round_robin`",
      "`round_robin`: one cursor per cluster shared by all workers, N requests spread evenly whatever the worker. "
      "`least_request`: the endpoint with the fewest requests in flight (all workers counted; divided by "
      "`weight`) — of all of them up to four, else of two drawn at random: a slow endpoint — a uvicorn worker busy "
      "with a slow call or a pause — gets less while it is slow, with no tuning. `random`: an endpoint drawn at random (by `weight`). `peak_ewma`: as "
      "`least_request`, each endpoint weighed by its response-head latency too (a moving average that jumps to a "
      "slower answer at once and forgets it over about 2 s) times its requests in flight plus one: a slow "
      "endpoint loses traffic on its first slow answer and wins it back as it recovers. `ring_hash` and `maglev`: "
      "consistent hashing on `hash_on`, the same key to the same endpoint (session affinity, cache locality) on "
      "every worker and every tollgate with the same endpoints; see below",
      .choices = "round_robin|least_request|random|peak_ewma|ring_hash|maglev",
      TG_FIELD(tg_cluster_conf_t, lb, TG_FIELD_INT) },
    { "hash_on", TG_KEY_STRING, "`client_address`, `header:NAME`, `cookie:NAME` or `path`", "`client_address`",
      "`ring_hash` and `maglev` only: a request's key — the client address (after `trusted_proxies`), a request "
      "header's value, a cookie's value, or the path without the query. A request without the header or cookie "
      "goes round-robin" },
    { "slow_start", TG_KEY_DURATION, "duration, 0–1h", "`0` (off)",
      "a new endpoint (a reload or a DNS answer added it) or one back from unhealthy or ejected gets a share that "
      "grows linearly from a tenth to all of its weight over this long, so a cold uvicorn worker (imports, "
      "caches, JIT-less first calls) is not handed its full share at once. Not with `ring_hash`/`maglev`",
      .min = 0, .max = 3600000, TG_FIELD(tg_cluster_conf_t, slow_start_ms, TG_FIELD_U64) },
    { "connect_timeout", TG_KEY_DURATION, "duration", "`1s`",
      "a connect that takes longer fails over to the next endpoint (`504` if it was the last)",
      TG_FIELD(tg_cluster_conf_t, connect_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_CONNECT_TIMEOUT_MS },
    { "idle_timeout", TG_KEY_DURATION, "duration", "`1m`",
      "pooled idle upstream connections are closed after this",
      TG_FIELD(tg_cluster_conf_t, idle_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_POOL_IDLE_TIMEOUT_MS },
    { "pool_size", TG_KEY_INT, "integer 0–100000", "adaptive",
      "idle keep-alive connections kept per worker and endpoint; `0` disables reuse. Not given: the pool adapts — it keeps as many idle connections as the most requests that were in flight to the endpoint at once in the last 10–20 s (at most 4096), so load that comes back finds its connections instead of opening one per request, and connections beyond what is used idle out after `idle_timeout`. Watch `tollgate_upstream_connections_opened_total`: many per request means a pool that churns", .min = 0, .max = 100000 },
    { "health_check", TG_KEY_MAP, "mapping", "none (no active checks)",
      "see below", .sub = &tg_keys_health_check },
    { "outlier_detection", TG_KEY_MAP, "mapping", "none (no passive ejection)",
      "see below", .sub = &tg_keys_outlier },
    { "when_all_unhealthy", TG_KEY_ENUM, "`fail` or `try_all`", "`fail`",
      "when no endpoint is usable: `fail` answers `503` (`no healthy upstream endpoint`); `try_all` tries every endpoint anyway", .choices = "fail|try_all",
      TG_FIELD(tg_cluster_conf_t, all_unhealthy_try_all, TG_FIELD_INT) },
    { "tls", TG_KEY_MAP, "mapping", "none (cleartext)",
      "TLS to the endpoints, see below", .sub = &tg_keys_client_tls },
    { "keepalive_interval", TG_KEY_DURATION, "duration", "`30s`",
      "HTTP/2: a connection with open streams and no traffic for this long gets a PING (`0`: never)",
      TG_FIELD(tg_cluster_conf_t, keepalive_interval_ms, TG_FIELD_U64), .def = TG_DEFAULT_H2_KEEPALIVE_MS },
    { "keepalive_timeout", TG_KEY_DURATION, "duration", "`10s`",
      "HTTP/2: an unanswered PING closes the connection and fails its streams",
      TG_FIELD(tg_cluster_conf_t, keepalive_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_H2_KEEPALIVE_TIMEOUT_MS },
    { "max_concurrent_streams", TG_KEY_INT, "integer 1–100000", "the upstream's setting",
      "HTTP/2: at most this many streams per connection (more open another connection)", .min = 1, .max = 100000,
      TG_FIELD(tg_cluster_conf_t, max_concurrent_streams, TG_FIELD_U32) },
    { "max_connections", TG_KEY_INT, "integer 1–10^6", "none",
      "circuit breaker: open connections to all endpoints of the cluster, all workers together; a request that would "
      "need another gets `503` at once (gRPC `UNAVAILABLE`) with `x-tollgate-overloaded: true`",
      .min = 1, .max = 1000000, TG_FIELD(tg_cluster_conf_t, max_connections, TG_FIELD_U32) },
    { "max_pending", TG_KEY_INT, "integer 1–10^6", "none",
      "circuit breaker: requests waiting for a new connection to open; past it, `503` at once as above",
      .min = 1, .max = 1000000, TG_FIELD(tg_cluster_conf_t, max_pending, TG_FIELD_U32) },
    { "max_requests", TG_KEY_INT, "integer 1–10^6", "none",
      "circuit breaker: requests in flight to the cluster; past it, `503` at once as above", .min = 1,
      .max = 1000000, TG_FIELD(tg_cluster_conf_t, max_requests, TG_FIELD_U32) },
    { "dns", TG_KEY_MAP, "mapping", "the top level's `dns`",
      "how this cluster's endpoint names are followed: `min_ttl`, `max_ttl`, `lookup_family`, `on_failure` as at the "
      "top level, each key given here overriding the top level's", .sub = &tg_keys_cluster_dns },
};

static const tg_key_t client_tls_keys[] = {
    { "ca", TG_KEY_STRING, "file", "the system's trust store",
      "PEM bundle the endpoints' certificates are verified against" },
    { "server_name", TG_KEY_STRING, "string", "the endpoint's host",
      "SNI sent, and the name the certificate must match; for an IP address endpoint without `server_name`, no SNI is sent and the certificate must cover the IP",
      TG_FIELD(tg_tls_client_conf_t, server_name, TG_FIELD_STR) },
    { "verify", TG_KEY_BOOL, "boolean", "`true`",
      "verify the certificate chain and host name; `false` accepts any certificate (testing only)",
      TG_FIELD(tg_tls_client_conf_t, verify, TG_FIELD_INT), .def = 1 },
    { "cert", TG_KEY_STRING, "file (with `key`)", "none",
      "a client certificate (PEM chain) for upstream mutual TLS" },
    { "key", TG_KEY_STRING, "file (with `cert`)", "none",
      "the client certificate's private key (PEM)" },
    { "min_version", TG_KEY_ENUM, "`1.2` or `1.3`", "`1.2`",
      "oldest TLS version accepted from the endpoints", .choices = "1.2|1.3" },
};

static const tg_key_t health_check_keys[] = {
    { "type", TG_KEY_ENUM, "`http` or `grpc`", "`http`",
      "`grpc` needs `protocol: h2c` or `h2`", .choices = "http|grpc",
      TG_FIELD(tg_health_check_conf_t, grpc, TG_FIELD_INT) },
    { "path", TG_KEY_STRING, "string starting with `/` (required for `http`)", "—",
      "the path to GET", TG_FIELD(tg_health_check_conf_t, path, TG_FIELD_STR) },
    { "host", TG_KEY_STRING, "string", "the endpoint's `host:port`",
      "the Host header (`:authority` for gRPC) of the check", TG_FIELD(tg_health_check_conf_t, host, TG_FIELD_STR) },
    { "interval", TG_KEY_DURATION, "duration, ≥ 10ms", "`5s`",
      "time between checks of one endpoint", .min = 10, .max = INT64_MAX,
      TG_FIELD(tg_health_check_conf_t, interval_ms, TG_FIELD_U64), .def = TG_DEFAULT_HC_INTERVAL_MS },
    { "timeout", TG_KEY_DURATION, "duration, ≥ 1ms", "`1s`",
      "connect + answer must fit in this", .min = 1, .max = INT64_MAX,
      TG_FIELD(tg_health_check_conf_t, timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_HC_TIMEOUT_MS },
    { "healthy_threshold", TG_KEY_INT, "integer 1–100", "`2`",
      "consecutive successes that bring an unhealthy endpoint back", .min = 1, .max = 100,
      TG_FIELD(tg_health_check_conf_t, healthy_threshold, TG_FIELD_U32), .def = TG_DEFAULT_HC_HEALTHY },
    { "unhealthy_threshold", TG_KEY_INT, "integer 1–100", "`3`",
      "consecutive failures that take it out of rotation", .min = 1, .max = 100,
      TG_FIELD(tg_health_check_conf_t, unhealthy_threshold, TG_FIELD_U32), .def = TG_DEFAULT_HC_UNHEALTHY },
    { "service", TG_KEY_STRING, "string (`grpc` only)", "`\"\"`",
      "the service asked about; empty = the server as a whole",
      TG_FIELD(tg_health_check_conf_t, service, TG_FIELD_STR) },
};

static const tg_key_t outlier_keys[] = {
    { "consecutive_failures", TG_KEY_INT, "integer 0–1000000", "`5`",
      "failures in a row that eject the endpoint; `0` turns detection off", .min = 0, .max = 1000000,
      TG_FIELD(tg_outlier_conf_t, consecutive_failures, TG_FIELD_U32), .def = 5 },
    { "base_ejection_time", TG_KEY_DURATION, "duration", "`30s`",
      "the first ejection's length; each further consecutive ejection doubles it",
      TG_FIELD(tg_outlier_conf_t, base_ejection_ms, TG_FIELD_U64), .def = TG_DEFAULT_EJECTION_MS },
    { "max_ejection_time", TG_KEY_DURATION, "duration", "`5m`",
      "cap on the ejection length", TG_FIELD(tg_outlier_conf_t, max_ejection_ms, TG_FIELD_U64),
      .def = TG_DEFAULT_MAX_EJECTION_MS },
};

/* The rows dns: and a cluster's dns: share, with their defaults. */
#define DNS_ROWS(MIN_TEXT, MIN_DEF, MAX_TEXT, MAX_DEF, FAMILY_TEXT, FAILURE_TEXT, ADDRS_TEXT, ADDRS_DEF)              \
    { "min_ttl", TG_KEY_DURATION, "duration, 100ms–1d", MIN_TEXT,                                                     \
      "an answer is kept at least this long, whatever its TTL (a name is never asked for more often)",                 \
      .min = 100, .max = 86400000, TG_FIELD(tg_dns_conf_t, min_ttl_ms, TG_FIELD_U64), .def = MIN_DEF },               \
    { "max_ttl", TG_KEY_DURATION, "duration, 100ms–1d", MAX_TEXT,                                                     \
      "an answer is kept at most this long, whatever its TTL: how soon a moved container is followed when its DNS "    \
      "answers with long TTLs (Docker's embedded DNS says 600 s)",                                                     \
      .min = 100, .max = 86400000, TG_FIELD(tg_dns_conf_t, max_ttl_ms, TG_FIELD_U64), .def = MAX_DEF },               \
    { "lookup_family", TG_KEY_ENUM, "`auto`, `v4`, `v6` or `all`", FAMILY_TEXT,                                      \
      "which addresses of an answer become endpoints: `auto` the IPv4 ones, or the IPv6 ones when there is no IPv4 "   \
      "address; `v4` or `v6` only that family (only that record type is asked for); `all` both",                      \
      .choices = "auto|v4|v6|all", TG_FIELD(tg_dns_conf_t, family, TG_FIELD_INT) },                                   \
    { "on_failure", TG_KEY_ENUM, "`keep` or `fail`", FAILURE_TEXT,                                                    \
      "a lookup that fails (timeout, SERVFAIL, NXDOMAIN) or answers no address: `keep` the last good addresses and "   \
      "try again (after `min_ttl`, doubling up to `max_ttl`); `fail` drops the name's endpoints until it resolves "    \
      "again. Either way it is counted (`tollgate_dns_failures_total`) and logged. At start and on reload, a name "    \
      "that does not resolve within `timeout` makes the config fail with `fail`; with `keep` the cluster starts "      \
      "without that name's endpoints (`503` until its first answer)",                                                  \
      .choices = "keep|fail", TG_FIELD(tg_dns_conf_t, on_failure, TG_FIELD_INT) },                                    \
    { "max_addresses", TG_KEY_INT, "integer 1–65536", ADDRS_TEXT,                                                     \
      "addresses of one answer that become endpoints: past it, the lowest addresses are kept (the same ones "         \
      "whatever order the server rotates them in) and the answer is logged as a warning. An answer of more than a "    \
      "few dozen addresses comes over TCP, which the resolver switches to when the server says the UDP one was cut",   \
      .min = 1, .max = 65536, TG_FIELD(tg_dns_conf_t, max_addresses, TG_FIELD_U32), .def = ADDRS_DEF },

static const tg_key_t dns_keys[] = {
    { "resolvers", TG_KEY_STRINGS, "list of `IP` or `IP:PORT` (1–8)", "the servers of /etc/resolv.conf",
      "the DNS servers asked, in order (IPv6 as `[::1]:53`; port 53 when not given); `/etc/hosts` is read first "
      "either way. A change takes effect on reload" },
    { "timeout", TG_KEY_DURATION, "duration, 100ms–1m", "`5s`",
      "a lookup, all tries against all servers together; also how long start-up and a reload wait for a new "
      "name's first answer",
      .min = 100, .max = 60000, TG_FIELD(tg_dns_conf_t, timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_DNS_TIMEOUT_MS },
    DNS_ROWS("`1s`", TG_DEFAULT_DNS_MIN_TTL_MS, "`30s`", TG_DEFAULT_DNS_MAX_TTL_MS, "`auto`", "`keep`", "`1024`",
             TG_DEFAULT_DNS_MAX_ADDRESSES)
};
const tg_keyset_t tg_keys_dns = TG_KEYSET("dns", "dns", dns_keys);

/* A cluster's own: no defaults (a key not given is the top level's). */
static const tg_key_t cluster_dns_keys[] = {
    DNS_ROWS("the top level's", 0, "the top level's", 0, "the top level's", "the top level's", "the top level's", 0)
};
const tg_keyset_t tg_keys_cluster_dns = TG_KEYSET("cluster.dns", "clusters[].dns", cluster_dns_keys);

static const tg_key_t top_keys[] = {
    { "workers", TG_KEY_INT, "integer 1–256 or `auto`", "`auto`",
      "worker threads; `auto` = one per online CPU. Each worker has its own event loop, its own SO_REUSEPORT listening socket per listener and its own upstream connection pools. A change takes effect on restart, not on reload.", .min = 1, .max = 256, .choices = "auto" },
    { "io_uring", TG_KEY_ENUM, "`auto` or `off`", "`auto`",
      "how a worker's sockets reach the kernel: `auto` batches them through an io_uring where the kernel allows it "
      "(the first reads of the sockets one wake-up found ready go in one system call, and so do the writes their "
      "answers made, instead of one call each; a system call's fixed cost is what most of a small request's CPU "
      "time goes to), else (kernels before 5.19, a seccomp profile that refuses it) one call per read and write, as with `off`. The start-up log says which. TLS sockets "
      "always make their own calls. A change takes effect on restart, not on reload.",
      .choices = "auto|off", TG_FIELD(tg_config_t, io_uring_off, TG_FIELD_INT) },
    { "drain_timeout", TG_KEY_DURATION, "duration", "`30s`",
      "on SIGTERM/SIGINT, how long in-flight requests may take to finish before the remaining connections are closed",
      TG_FIELD(tg_config_t, drain_timeout_ms, TG_FIELD_U64), .def = TG_DEFAULT_DRAIN_TIMEOUT_MS },
    { "limits", TG_KEY_MAP, "mapping", "see below",
      "request limits and client timeouts", .sub = &tg_keys_limits },
    { "listeners", TG_KEY_LIST, "list of listeners (required, non-empty)", "—",
      "where tollgate accepts connections", .sub = &tg_keys_listener, .flags = TG_KEY_REQUIRED },
    { "routes", TG_KEY_LIST, "list of routes", "none",
      "request routing, first match wins, in file order", .sub = &tg_keys_route },
    { "clusters", TG_KEY_LIST, "list of clusters", "none",
      "upstream endpoint groups", .sub = &tg_keys_cluster },
    { "admin", TG_KEY_MAP, "mapping", "none",
      "the admin listener, see below", .sub = &tg_keys_admin },
    { "filters", TG_KEY_FILTERS, "list", "none",
      "the global filter chain, run before every route's own (see [filters.md](filters.md))" },
    { "trusted_proxies", TG_KEY_STRINGS, "list of addresses or CIDR blocks", "none",
      "peers (load balancers, CDNs) whose `X-Forwarded-For` is believed: from them the list is extended and the client address that filters and logs use is the rightmost address in it that is not itself trusted; from anyone else the list is replaced by the peer's address. `10.0.0.1/8` (host bits set) is refused as a likely typo. See [security.md](security.md)." },
    { "path_normalization", TG_KEY_MAP, "mapping", "see below",
      "how request paths are normalized before routing", .sub = &tg_keys_paths },
    { "max_connections", TG_KEY_INT, "integer", "none",
      "open client connections across all listeners; past it a new connection is closed at once and counted in `tollgate_downstream_connections_rejected_total`. Each worker takes an equal share (rounded up).", .min = 1, .max = 100000000,
      TG_FIELD(tg_config_t, max_connections, TG_FIELD_U64) },
    { "dns", TG_KEY_MAP, "mapping", "see below",
      "how endpoint names are resolved and followed (c-ares, asynchronously, never on a worker)", .sub = &tg_keys_dns },
    { "redis", TG_KEY_MAP, "mapping", "none",
      "the shared store that `rate_limit` and `quota` with `store: redis` count in, so that several gateways enforce one limit (below; [deployment.md](deployment.md))", .sub = &tg_keys_redis },
    { "log_format", TG_KEY_ENUM, "`text` or `json`", "`text`",
      "the process log on stderr: `TIME LEVEL message` lines, or one JSON object a line, `{\"time\": \"2026-11-30T10:00:00.123Z\", \"level\": \"warn\", \"message\": \"...\"}` (quotes, backslashes and control characters escaped), for log shippers. A reload applies a change; lines written before the config is read (its own errors) are text", .choices = "text|json",
      TG_FIELD(tg_config_t, log_json, TG_FIELD_INT) },
    { "tracing", TG_KEY_MAP, "mapping", "none",
      "W3C trace context: `traceparent`/`tracestate` propagated, generated when absent, trace and span ids in the "
      "access log, spans exported as OTLP/HTTP JSON (below)",
      .sub = &tg_keys_tracing },
    { "forwarded_header", TG_KEY_ENUM, "`x-forwarded-for`, `forwarded` or `both`", "`x-forwarded-for`",
      "which list the trusted proxies in front extend, and so which one the client-address walk reads: "
      "`X-Forwarded-For`, RFC 7239 `Forwarded` (its `for=` parameters), or both (then an address is believed only "
      "where the two lists agree, hop by hop from the right). tollgate extends the same list(s) toward the "
      "upstream; `X-Forwarded-For` is always sent. See [security.md](security.md).",
      .choices = "x-forwarded-for|forwarded|both", TG_FIELD(tg_config_t, forwarded_header, TG_FIELD_INT) },
    { "set_x_real_ip", TG_KEY_BOOL, "boolean", "`false`",
      "send the upstream `X-Real-IP` with the client address tollgate established (after the trusted-proxy walk). "
      "Otherwise a trusted proxy's `X-Real-IP` passes and anyone else's is removed.",
      TG_FIELD(tg_config_t, set_x_real_ip, TG_FIELD_INT) },
    { "headers_with_underscores", TG_KEY_ENUM, "`allow`, `drop` or `reject`", "`drop`",
      "a request header whose name has a `_`, which CGI/WSGI upstreams read as the same variable as the name with "
      "`-` (`X_User` and `X-User` are both `HTTP_X_USER`): passed, removed (as nginx ignores them), or refused with "
      "`400`. Whatever the setting, a name that equals a trust header or a forwarding header once `_` is read as "
      "`-` is treated as that header. A listener may override it.",
      .choices = "drop|allow|reject", TG_FIELD(tg_config_t, underscores, TG_FIELD_INT) },
};

const tg_keyset_t tg_keys_certificate = TG_KEYSET("certificate", "listeners[].tls.certificates[]", certificate_keys);
const tg_keyset_t tg_keys_http1 = TG_KEYSET("listener.http1", "listeners[].http1", http1_keys);
const tg_keyset_t tg_keys_endpoint = TG_KEYSET("cluster.endpoint", "clusters[].endpoints[]", endpoint_keys);
static const tg_key_t backend_keys[] = {
    { "name", TG_KEY_STRING, "cluster name (required)", "—", "a cluster", .flags = TG_KEY_REQUIRED },
    { "weight", TG_KEY_INT, "integer 0–10000", "`1`",
      "its share of the route's requests; the split is exact over every run of requests as long as the sum of the "
      "weights (all workers share one sequence). `0`: only requests pinned to it by `headers`",
      .min = 0, .max = 10000 },
    { "headers", TG_KEY_LIST, "list of `{ name, value }`", "none",
      "pin: a request that has all of these headers (with these values, when given) goes to this cluster whatever "
      "the weights, e.g. `x-canary: 1`; entries are tried in order",
      .sub = &tg_keys_header_match },
};
const tg_keyset_t tg_keys_backend = TG_KEYSET("route.backend", "routes[].clusters[]", backend_keys);
const tg_keyset_t tg_keys_header_match = TG_KEYSET("route.match.header", "routes[].match.headers[]", header_match_keys);
const tg_keyset_t tg_keys_paths = TG_KEYSET("path_normalization", "path_normalization", paths_keys);
const tg_keyset_t tg_keys_limits = TG_KEYSET("limits", "limits", limits_keys);
const tg_keyset_t tg_keys_admin = TG_KEYSET("admin", "admin", admin_keys);
const tg_keyset_t tg_keys_redis = TG_KEYSET("redis", "redis", redis_keys);
const tg_keyset_t tg_keys_listener = TG_KEYSET("listener", "listeners[]", listener_keys);
const tg_keyset_t tg_keys_server_tls = TG_KEYSET("listener.tls", "listeners[].tls", server_tls_keys);
const tg_keyset_t tg_keys_http2 = TG_KEYSET("listener.http2", "listeners[].http2", http2_keys);
const tg_keyset_t tg_keys_route = TG_KEYSET("route", "routes[]", route_keys);
const tg_keyset_t tg_keys_match = TG_KEYSET("route.match", "routes[].match", match_keys);
const tg_keyset_t tg_keys_header_rules = TG_KEYSET("header_rules", "request_headers, response_headers", header_rules_keys);
const tg_keyset_t tg_keys_cluster = TG_KEYSET("cluster", "clusters[]", cluster_keys);
const tg_keyset_t tg_keys_client_tls = TG_KEYSET("cluster.tls", "clusters[].tls, redis.tls", client_tls_keys);
const tg_keyset_t tg_keys_health_check = TG_KEYSET("cluster.health_check", "clusters[].health_check", health_check_keys);
const tg_keyset_t tg_keys_outlier = TG_KEYSET("cluster.outlier_detection", "clusters[].outlier_detection", outlier_keys);
static const tg_key_t otlp_keys[] = {
    { "endpoint", TG_KEY_STRING, "`http://HOST:PORT/PATH` (required)", "—",
      "the collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces` (JSON encoding; plain HTTP: "
      "put TLS to a remote collector in a local agent)",
      .flags = TG_KEY_REQUIRED, TG_FIELD(tg_tracing_conf_t, otlp_endpoint, TG_FIELD_STR) },
    { "batch_size", TG_KEY_INT, "integer 1–10000", "`512`", "spans per POST at most", .min = 1, .max = 10000,
      TG_FIELD(tg_tracing_conf_t, batch_size, TG_FIELD_U32), .def = 512 },
    { "flush_interval", TG_KEY_DURATION, "duration", "`1s`", "a partial batch is sent after this long",
      TG_FIELD(tg_tracing_conf_t, flush_interval_ms, TG_FIELD_U64), .def = 1000 },
    { "queue_size", TG_KEY_INT, "integer 16–1048576", "`1024`",
      "spans each worker may have waiting for the exporter (rounded up to a power of two); past it spans are "
      "dropped and counted, never waited for",
      .min = 16, .max = 1048576, TG_FIELD(tg_tracing_conf_t, queue_size, TG_FIELD_U32), .def = 1024 },
    { "timeout", TG_KEY_DURATION, "duration", "`2s`", "one POST, from connect to the answer; a batch that fails is "
                                                      "dropped and counted",
      TG_FIELD(tg_tracing_conf_t, timeout_ms, TG_FIELD_U64), .def = 2000 },
};
const tg_keyset_t tg_keys_otlp = TG_KEYSET("tracing.otlp", "tracing.otlp", otlp_keys);

static const tg_key_t tracing_keys[] = {
    { "sample_ratio", TG_KEY_STRING, "number 0–1", "`1`",
      "the share of traces that start at tollgate (no valid `traceparent` came in) that are sampled; a request that "
      "brings one keeps its sampled flag" },
    { "service_name", TG_KEY_STRING, "string", "`tollgate`", "`service.name` of the exported spans" },
    { "otlp", TG_KEY_MAP, "mapping", "none (no export)", "export one span per sampled request to a collector",
      .sub = &tg_keys_otlp },
};
const tg_keyset_t tg_keys_tracing = TG_KEYSET("tracing", "tracing", tracing_keys);

const tg_keyset_t tg_keys_top = TG_KEYSET("top", "the top level", top_keys);

void tg_keyset_names(const tg_keyset_t *ks, const char **names)
{
    for (size_t i = 0; i < ks->n; i++)
        names[i] = ks->keys[i].name;
}

void tg_key_store(const tg_key_t *k, void *base, uint64_t v)
{
    char *at = (char *)base + k->offset;
    switch (k->field) {
    case TG_FIELD_INT: {
        int x = (int)v;
        memcpy(at, &x, sizeof(x));
        break;
    }
    case TG_FIELD_U32: {
        uint32_t x = (uint32_t)v;
        memcpy(at, &x, sizeof(x));
        break;
    }
    case TG_FIELD_U64:
        memcpy(at, &v, sizeof(v));
        break;
    case TG_FIELD_STR: /* strings are stored by the loader (tg_key_store_str); absent: NULL */
    case TG_FIELD_NONE:
        break;
    }
}

void tg_key_store_str(const tg_key_t *k, void *base, char *s)
{
    memcpy((char *)base + k->offset, &s, sizeof(s));
}

void tg_keyset_defaults(const tg_keyset_t *ks, void *base)
{
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].field != TG_FIELD_NONE)
            tg_key_store(&ks->keys[i], base, (uint64_t)ks->keys[i].def);
}

/* v in the largest unit that divides it: sizes in KiB/MiB/GiB, durations
 * in ms/s/m/h. */
static void with_unit(char *buf, size_t cap, uint64_t v, int duration)
{
    static const char *const sizes[] = { "", "KiB", "MiB", "GiB" }, *const times[] = { "ms", "s", "m", "h" };
    static const uint64_t size_div[] = { 1024, 1024, 1024 }, time_div[] = { 1000, 60, 60 };
    size_t u = 0;
    while (v != 0 && u < 3 && v % (duration ? time_div[u] : size_div[u]) == 0) {
        v /= duration ? time_div[u] : size_div[u];
        u++;
    }
    if (v == 0)
        snprintf(buf, cap, "0");
    else
        snprintf(buf, cap, "%" PRIu64 "%s", v, duration ? times[u] : sizes[u]);
}

const char *tg_key_default_text(const tg_key_t *k, char *buf, size_t cap)
{
    return k->field == TG_FIELD_NONE ? NULL : tg_key_value_text(k, (uint64_t)k->def, buf, cap);
}

const char *tg_key_value_text(const tg_key_t *k, uint64_t v, char *buf, size_t cap)
{
    switch (k->kind) {
    case TG_KEY_BOOL:
        snprintf(buf, cap, "%s", v ? "true" : "false");
        break;
    case TG_KEY_SIZE:
        with_unit(buf, cap, v, 0);
        break;
    case TG_KEY_DURATION:
        with_unit(buf, cap, v, 1);
        break;
    case TG_KEY_ENUM: {
        const char *c = k->choices;
        for (uint64_t i = 0; c != NULL && i < v && strchr(c, '|') != NULL; i++)
            c = strchr(c, '|') + 1;
        snprintf(buf, cap, "%.*s", c ? (int)strcspn(c, "|") : 0, c ? c : "");
        break;
    }
    default:
        snprintf(buf, cap, "%" PRIu64, v);
        break;
    }
    return buf;
}
