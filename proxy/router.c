/*
 * proxy/router.c — see router.h. One predicate says whether a route takes
 * a request (route_takes); the linear scan asks it of every route in file
 * order, the compiled router only of the few candidates its tables give:
 *
 *   host   an exact host by hash; a wildcard by hashing each suffix of the
 *          request's host at a dot; routes without a host in their own
 *          bucket — each bucket holding a radix tree of paths;
 *   path   the tree's nodes on the request path's way down carry the
 *          routes whose exact, prefix or separated-prefix path ends there;
 *          regexes, paths compared without case, and routes without a path
 *          are in the bucket's `always` list;
 *
 * and the candidates, merged in file order, are asked the full predicate
 * until one takes the request — so first-match semantics are the linear
 * scan's exactly (tests/unit/test_router.c compares both on random tables).
 */
#include "proxy/router.h"

#include "proxy/base/grpc_frames.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/base/siphash.h"

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

/* Does route r take req on listener? The one predicate both routers ask. */
static int route_takes(const tg_route_conf_t *r, size_t listener, const tg_request_t *req, tg_arena_t *scratch)
{
    return listener_matches(r, listener) && tg_router_host_matches(&r->match, req->authority) &&
           path_matches(&r->match, req, scratch) && method_matches(&r->match, req->method) &&
           headers_match(r->match.headers, r->match.n_headers, req) && grpc_matches(&r->match, req);
}

const tg_route_conf_t *tg_router_match(const tg_config_t *cfg, size_t listener, const tg_request_t *req,
                                       tg_arena_t *scratch)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (route_takes(&cfg->routes[i], listener, req, scratch))
            return &cfg->routes[i];
    return NULL;
}

/* ---- the compiled router ---- */

typedef struct rnode {
    const char *label;        /* the edge from the parent (into a route's path; not owned) */
    size_t len;
    struct rnode **kids;      /* sorted by their label's first byte */
    size_t n_kids;
    uint32_t *here;           /* routes whose path ends at this node, in file order */
    size_t n_here;
} rnode_t;

typedef struct bucket {
    rnode_t root;             /* label "" */
    uint32_t *always;         /* routes the tree cannot place (regex, ignore_case, no path), in file order */
    size_t n_always;
} bucket_t;

#define HOST_KEY_MAX 300 /* a DNS name is at most 253 bytes */

typedef struct hslot {
    char *key;                /* lower case; a wildcard's with its leading dot */
    bucket_t *b;
} hslot_t;

struct tg_router {
    const tg_config_t *cfg;
    bucket_t any;             /* routes without a host */
    hslot_t *hosts;           /* open addressing, power of two; exact hosts and wildcard suffixes */
    size_t cap, n;
    size_t max_host;          /* longest key (a longer request host matches none) */
    tg_siphash_key_t seed;
};

static int push(uint32_t **v, size_t *n, uint32_t x)
{
    if ((*n & (*n - 1)) == 0 || *n == 0) { /* grow at powers of two */
        uint32_t *nv = realloc(*v, (*n ? *n * 2 : 1) * sizeof(**v));
        if (nv == NULL)
            return -1;
        *v = nv;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static void node_free(rnode_t *n)
{
    for (size_t i = 0; i < n->n_kids; i++) {
        node_free(n->kids[i]);
        free(n->kids[i]);
    }
    free(n->kids);
    free(n->here);
}

/* Adds route i under path p (len bytes) from node n. */
static int insert(rnode_t *n, const char *p, size_t len, uint32_t i)
{
    while (len > 0) {
        size_t lo = 0, hi = n->n_kids;
        while (lo < hi) { /* the kid whose label starts with p[0] */
            size_t mid = (lo + hi) / 2;
            if ((unsigned char)n->kids[mid]->label[0] < (unsigned char)p[0])
                lo = mid + 1;
            else
                hi = mid;
        }
        rnode_t *k = lo < n->n_kids && n->kids[lo]->label[0] == p[0] ? n->kids[lo] : NULL;
        if (k == NULL) { /* a new leaf with the rest of the path */
            rnode_t **kids = realloc(n->kids, (n->n_kids + 1) * sizeof(*kids));
            rnode_t *leaf = calloc(1, sizeof(*leaf));
            if (kids == NULL || leaf == NULL) {
                free(leaf);
                if (kids != NULL)
                    n->kids = kids;
                return -1;
            }
            n->kids = kids;
            memmove(&kids[lo + 1], &kids[lo], (n->n_kids - lo) * sizeof(*kids));
            kids[lo] = leaf;
            n->n_kids++;
            leaf->label = p;
            leaf->len = len;
            return push(&leaf->here, &leaf->n_here, i);
        }
        size_t common = 0;
        while (common < k->len && common < len && k->label[common] == p[common])
            common++;
        if (common < k->len) { /* split k: a node for the common part, k below it */
            rnode_t *mid = calloc(1, sizeof(*mid));
            rnode_t **kids = malloc(sizeof(*kids));
            if (mid == NULL || kids == NULL) {
                free(mid);
                free(kids);
                return -1;
            }
            mid->label = k->label;
            mid->len = common;
            mid->kids = kids;
            mid->kids[0] = k;
            mid->n_kids = 1;
            k->label += common;
            k->len -= common;
            n->kids[lo] = mid;
            k = mid;
        }
        n = k;
        p += common;
        len -= common;
    }
    return push(&n->here, &n->n_here, i);
}

static uint64_t host_hash(const tg_router_t *rt, const char *key, size_t len)
{
    return tg_siphash(&rt->seed, key, len);
}

static bucket_t *host_find(const tg_router_t *rt, const char *key, size_t len)
{
    if (rt->cap == 0)
        return NULL;
    for (size_t i = host_hash(rt, key, len) & (rt->cap - 1);; i = (i + 1) & (rt->cap - 1)) {
        const hslot_t *h = &rt->hosts[i];
        if (h->key == NULL)
            return NULL;
        if (strlen(h->key) == len && memcmp(h->key, key, len) == 0)
            return h->b;
    }
}

static int host_grow(tg_router_t *rt)
{
    size_t cap = rt->cap ? rt->cap * 2 : 16;
    hslot_t *v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < rt->cap; i++) {
        if (rt->hosts[i].key == NULL)
            continue;
        size_t j = host_hash(rt, rt->hosts[i].key, strlen(rt->hosts[i].key)) & (cap - 1);
        while (v[j].key != NULL)
            j = (j + 1) & (cap - 1);
        v[j] = rt->hosts[i];
    }
    free(rt->hosts);
    rt->hosts = v;
    rt->cap = cap;
    return 0;
}

/* The bucket of a host key (lower case), made if new. */
static bucket_t *host_bucket(tg_router_t *rt, const char *host)
{
    size_t len = strlen(host);
    char lower[HOST_KEY_MAX];
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)host[i]);
    bucket_t *b = host_find(rt, lower, len);
    if (b != NULL)
        return b;
    if ((rt->n + 1) * 2 > rt->cap && host_grow(rt) < 0)
        return NULL;
    char *key = strndup(lower, len);
    if (key == NULL || (b = calloc(1, sizeof(*b))) == NULL) {
        free(key);
        return NULL;
    }
    size_t j = host_hash(rt, key, len) & (rt->cap - 1);
    while (rt->hosts[j].key != NULL)
        j = (j + 1) & (rt->cap - 1);
    rt->hosts[j] = (hslot_t){ key, b };
    rt->n++;
    if (len > rt->max_host)
        rt->max_host = len;
    return b;
}

static void bucket_free(bucket_t *b)
{
    node_free(&b->root);
    free(b->always);
}

void tg_router_free(tg_router_t *rt)
{
    if (rt == NULL)
        return;
    bucket_free(&rt->any);
    for (size_t i = 0; i < rt->cap; i++)
        if (rt->hosts[i].key != NULL) {
            free(rt->hosts[i].key);
            bucket_free(rt->hosts[i].b);
            free(rt->hosts[i].b);
        }
    free(rt->hosts);
    free(rt);
}

tg_router_t *tg_router_build(const tg_config_t *cfg)
{
    tg_router_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL)
        return NULL;
    rt->cfg = cfg;
    rt->seed = (tg_siphash_key_t){ 0x726f757465723031ull, 0x686f737473ull }; /* config keys: no client chooses them */
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const tg_route_match_t *m = &cfg->routes[i].match;
        bucket_t *b = &rt->any;
        if (m->host != NULL && strlen(m->host) < HOST_KEY_MAX && (b = host_bucket(rt, m->host)) == NULL)
            goto fail; /* (a longer host, which no request can carry, stays with the routes every request asks) */
        int tree = !m->ignore_case && (m->path_kind == TG_PATH_EXACT || m->path_kind == TG_PATH_PREFIX ||
                                       m->path_kind == TG_PATH_SEPARATED_PREFIX);
        if (tree ? insert(&b->root, m->path, strlen(m->path), (uint32_t)i) < 0
                 : push(&b->always, &b->n_always, (uint32_t)i) < 0)
            goto fail;
    }
    return rt;
fail:
    tg_router_free(rt);
    return NULL;
}

/* Candidates from one bucket: the routes on the path's way down the tree,
 * and the always list. -1 when more than cap. */
static int gather(const bucket_t *b, const char *path, size_t len, uint32_t *out, size_t *n, size_t cap)
{
    for (size_t i = 0; i < b->n_always; i++) {
        if (*n == cap)
            return -1;
        out[(*n)++] = b->always[i];
    }
    const rnode_t *node = &b->root;
    for (;;) {
        for (size_t i = 0; i < node->n_here; i++) {
            if (*n == cap)
                return -1;
            out[(*n)++] = node->here[i];
        }
        if (len == 0 || node->n_kids == 0)
            return 0;
        size_t lo = 0, hi = node->n_kids;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if ((unsigned char)node->kids[mid]->label[0] < (unsigned char)path[0])
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == node->n_kids || node->kids[lo]->label[0] != path[0])
            return 0;
        const rnode_t *k = node->kids[lo];
        if (k->len > len || memcmp(k->label, path, k->len) != 0)
            return 0;
        path += k->len;
        len -= k->len;
        node = k;
    }
}

#define CANDIDATES_MAX 512 /* past this the linear scan answers (still exact) */

const tg_route_conf_t *tg_router_find(const tg_router_t *rt, size_t listener, const tg_request_t *req,
                                      tg_arena_t *scratch)
{
    uint32_t cand[CANDIDATES_MAX];
    size_t n = 0;
    int over = gather(&rt->any, req->target, req->path_len, cand, &n, CANDIDATES_MAX) < 0;
    if (!over && rt->n > 0 && req->authority != NULL) {
        /* the request's host as the keys are: lower case, no port, no final dot */
        const char *h = req->authority;
        size_t len = strlen(h);
        const char *colon = strrchr(h, ':');
        if (colon != NULL && (h[0] != '[' || colon > strchr(h, ']')))
            len = (size_t)(colon - h);
        if (len && h[len - 1] == '.')
            len--;
        char key[HOST_KEY_MAX];
        key[0] = '\0';
        if (len > 0 && len < sizeof(key)) {
            for (size_t i = 0; i < len; i++)
                key[i] = (char)tolower((unsigned char)h[i]);
            const bucket_t *b = len <= rt->max_host ? host_find(rt, key, len) : NULL;
            if (b != NULL)
                over = gather(b, req->target, req->path_len, cand, &n, CANDIDATES_MAX) < 0;
            /* wildcards: ".example.com" for "a.example.com" (no key is longer than max_host) */
            for (size_t i = len > rt->max_host ? len - rt->max_host : 1; i < len && !over; i++)
                if (key[i] == '.' && (b = host_find(rt, key + i, len - i)) != NULL)
                    over = gather(b, req->target, req->path_len, cand, &n, CANDIDATES_MAX) < 0;
        }
    }
    if (over)
        return tg_router_match(rt->cfg, listener, req, scratch);
    for (size_t i = 1; i < n; i++) { /* file order (insertion sort: a handful) */
        uint32_t v = cand[i];
        size_t j = i;
        for (; j > 0 && cand[j - 1] > v; j--)
            cand[j] = cand[j - 1];
        cand[j] = v;
    }
    for (size_t i = 0; i < n; i++)
        if (route_takes(&rt->cfg->routes[cand[i]], listener, req, scratch))
            return &rt->cfg->routes[cand[i]];
    return NULL;
}
