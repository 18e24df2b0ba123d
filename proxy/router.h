/*
 * proxy/router.h — picks the route for a request: the first route, in
 * file order, whose listeners include the one the request came in on and
 * whose match holds (host exact or *.suffix, path exact/prefix/regex,
 * methods, headers). A compiled router (hosts by hash, paths in a radix
 * tree) asks only the candidates its tables give, so the cost stays flat
 * as routes number in the thousands; the linear scan is its reference.
 * Both are pure functions of an immutable config; thread-safe.
 */
#ifndef TG_PROXY_ROUTER_H
#define TG_PROXY_ROUTER_H

#include "config/config.h"
#include "proxy/base/http.h"

/* Returns the matching route or NULL (404). path is req->target's path
 * part; regexes see it NUL-terminated through scratch (arena). */
const tg_route_conf_t *tg_router_match(const tg_config_t *cfg, size_t listener, const tg_request_t *req,
                                       tg_arena_t *scratch);

/* The compiled router of cfg (built with the snapshot; it points into cfg,
 * which must outlive it). NULL: out of memory. */
typedef struct tg_router tg_router_t;
tg_router_t *tg_router_build(const tg_config_t *cfg);
void tg_router_free(tg_router_t *rt);

/* The same answer as tg_router_match, from the compiled tables. */
const tg_route_conf_t *tg_router_find(const tg_router_t *rt, size_t listener, const tg_request_t *req,
                                      tg_arena_t *scratch);

/* A split route (`clusters:`): the first backend whose pin headers the
 * request has, or -1 (then the weights decide). */
long tg_router_pinned_backend(const tg_route_conf_t *r, const tg_request_t *req);

/* Host match on its own (exposed for unit tests): host may carry ":port". */
int tg_router_host_matches(const tg_route_match_t *m, const char *host);

#endif
