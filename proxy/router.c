/*
 * proxy/router.c — see router.h. A linear scan in file order: route tables
 * are small and the checks are cheap (prefix compare first); a compiled
 * trie is the next step if routes ever number in the thousands.
 */
#include "proxy/router.h"

#include "proxy/base/grpc_frames.h"

#include <string.h>
#include <strings.h>

int tg_router_host_matches(const tg_route_match_t *m, const char *host)
{
    if (m->host == NULL)
        return 1;
    if (host == NULL)
        return 0;
    size_t len = strlen(host);
    /* strip ":port" (not inside an IPv6 literal) */
    const char *colon = strrchr(host, ':');
    if (colon != NULL && (host[0] != '[' || colon > strchr(host, ']')))
        len = (size_t)(colon - host);
    if (len && host[len - 1] == '.')
        len--; /* absolute form "example.com." */
    size_t mlen = strlen(m->host);
    if (m->host_wildcard) /* m->host is ".example.com": needs at least one more label */
        return len > mlen && strncasecmp(host + len - mlen, m->host, mlen) == 0;
    return len == mlen && strncasecmp(host, m->host, mlen) == 0;
}

/* n bytes of the path equal the route's, in the route's case rule */
static int path_eq(const tg_route_match_t *m, const char *path, size_t n)
{
    return m->ignore_case ? strncasecmp(path, m->path, n) == 0 : memcmp(path, m->path, n) == 0;
}

static int path_matches(const tg_route_match_t *m, const tg_request_t *req, tg_arena_t *scratch)
{
    size_t plen;
    switch (m->path_kind) {
    case TG_PATH_ANY:
        return 1;
    case TG_PATH_EXACT:
        return req->path_len == strlen(m->path) && path_eq(m, req->target, req->path_len);
    case TG_PATH_PREFIX:
        plen = strlen(m->path);
        return req->path_len >= plen && path_eq(m, req->target, plen);
    case TG_PATH_SEPARATED_PREFIX: /* "/api": "/api", "/api/..." and "/api;v=1/...", never "/apix" */
        plen = strlen(m->path);
        return req->path_len >= plen && path_eq(m, req->target, plen) &&
               (req->path_len == plen || req->target[plen] == '/' || req->target[plen] == ';' ||
                m->path[plen - 1] == '/');
    case TG_PATH_REGEX: {
        char *p = tg_arena_strndup(scratch, req->target, req->path_len);
        return p != NULL && regexec(&m->path_re, p, 0, NULL, 0) == 0;
    }
    }
    return 0;
}

static int headers_match(const tg_header_match_t *hm, size_t n, const tg_request_t *req)
{
    for (size_t i = 0; i < n; i++) {
        const tg_header_t *h = tg_headers_get(&req->headers, hm[i].name);
        if (h == NULL)
            return 0;
        if (hm[i].value && strcmp(h->value, hm[i].value) != 0)
            return 0;
    }
    return 1;
}

long tg_router_pinned_backend(const tg_route_conf_t *r, const tg_request_t *req)
{
    for (size_t b = 0; b < r->n_backends; b++)
        if (r->backends[b].n_headers > 0 && headers_match(r->backends[b].headers, r->backends[b].n_headers, req))
            return (long)b;
    return -1;
}

static int method_matches(const tg_route_match_t *m, const char *method)
{
    if (m->n_methods == 0)
        return 1;
    for (size_t i = 0; i < m->n_methods; i++)
        if (strcmp(m->methods[i], method) == 0)
            return 1;
    return 0;
}

/* gRPC matches: a gRPC or gRPC-Web request (tg_grpc_classify) to the
 * path /<service>/<method> (any method when only the service is given). */
static int grpc_matches(const tg_route_match_t *m, const tg_request_t *req)
{
    if (m->grpc_service == NULL)
        return 1;
    if (tg_grpc_classify(req) == TG_GRPC_NONE)
        return 0;
    size_t sl = strlen(m->grpc_service);
    const char *p = req->target;
    if (req->path_len < sl + 2 || p[0] != '/' || memcmp(p + 1, m->grpc_service, sl) != 0 || p[sl + 1] != '/')
        return 0;
    if (m->grpc_method == NULL)
        return 1;
    size_t ml = strlen(m->grpc_method);
    return req->path_len == sl + 2 + ml && memcmp(p + sl + 2, m->grpc_method, ml) == 0;
}

static int listener_matches(const tg_route_conf_t *r, size_t listener)
{
    if (r->n_listeners == 0)
        return 1;
    for (size_t i = 0; i < r->n_listeners; i++)
        if (r->listeners[i] == listener)
            return 1;
    return 0;
}

const tg_route_conf_t *tg_router_match(const tg_config_t *cfg, size_t listener, const tg_request_t *req,
                                       tg_arena_t *scratch)
{
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const tg_route_conf_t *r = &cfg->routes[i];
        if (listener_matches(r, listener) && tg_router_host_matches(&r->match, req->authority) &&
            path_matches(&r->match, req, scratch) && method_matches(&r->match, req->method) &&
            headers_match(r->match.headers, r->match.n_headers, req) && grpc_matches(&r->match, req))
            return r;
    }
    return NULL;
}
