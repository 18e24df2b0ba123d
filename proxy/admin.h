/*
 * proxy/admin.h — the admin HTTP listener (DESIGN.md: /metrics, /healthz,
 * /ready, /config, POST /-/reload). It runs on the main thread's event
 * base, apart from the proxy listeners, so it is never reachable through
 * them. This module is the HTTP plumbing only: one request per connection,
 * answered by a handler the process supplies, then the connection closes.
 */
#ifndef TG_PROXY_ADMIN_H
#define TG_PROXY_ADMIN_H

#include <stdint.h>

#include "config/config.h"
#include "proxy/base/http.h"

struct event_base;
struct evbuffer;

/* What a handler says besides the body. */
typedef struct tg_admin_reply {
    const char *ctype;  /* content type (static string; preset to application/json) */
    char headers[512];  /* extra header lines, each ending in CRLF (preset empty) */
} tg_admin_reply_t;

/* Fills body with the response and returns the HTTP status. req is the
 * parsed request (its headers, for the handler's access checks); path is
 * its path without the query. Every response also carries nosniff and
 * no-store. */
typedef int (*tg_admin_handler_fn)(void *ctx, const tg_request_t *req, const char *path, struct evbuffer *body,
                                   tg_admin_reply_t *reply);

typedef struct tg_admin tg_admin_t;
struct tg_loop;

/* Listens on host:port. NULL with a message in errs if it cannot. */
tg_admin_t *tg_admin_start(struct tg_loop *loop, const char *host, uint16_t port, tg_admin_handler_fn fn,
                           void *ctx, tg_errors_t *errs);
void tg_admin_free(tg_admin_t *a);

/* At most max connections open at once (admin.max_connections; a reload
 * may change it: connections over a lowered cap finish, none is cut);
 * past it a new connection is closed at once and counted. */
void tg_admin_set_max_connections(tg_admin_t *a, uint32_t max);
/* Connections closed at once because max were open. */
uint64_t tg_admin_rejected(const tg_admin_t *a);

#endif
