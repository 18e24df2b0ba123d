/*
 * proxy/trust.c — see trust.h.
 */
#include "proxy/trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/filter.h"

static int add_name(tg_trust_t *t, const char *name)
{
    size_t len = strlen(name);
    if (tg_trust_is_header(t, name, len))
        return 0;
    char **v = realloc(t->headers, (t->n_headers + 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    t->headers = v;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    for (size_t i = 0; i <= len; i++)
        copy[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] | 0x20 : name[i]);
    t->headers[t->n_headers++] = copy;
    return 0;
}

static int add_filters(tg_trust_t *t, const tg_filter_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const tg_filter_type_t *type = l->v[i].type;
        const char *name;
        for (size_t k = 0; type->trust_header != NULL && (name = type->trust_header(l->v[i].conf, k)) != NULL; k++)
            if (add_name(t, name) < 0)
                return -1;
    }
    return 0;
}

int tg_trust_build(tg_trust_t *t, const tg_config_t *cfg)
{
    memset(t, 0, sizeof(*t));
    if (add_name(t, TG_DEFAULT_CLIENT_CERT_HEADER) < 0 || add_filters(t, &cfg->filters) < 0)
        return -1;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const char *h = cfg->listeners[i].tls.client_cert_header;
        if (h != NULL && add_name(t, h) < 0)
            return -1;
    }
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (add_filters(t, &cfg->routes[i].filters) < 0)
            return -1;
    return 0;
}

void tg_trust_free(tg_trust_t *t)
{
    for (size_t i = 0; i < t->n_headers; i++)
        free(t->headers[i]);
    free(t->headers);
    memset(t, 0, sizeof(*t));
}

/* Header names compared as CGI and WSGI read them: case-insensitive, and
 * '_' the same as '-' (X_Auth_Identity and X-Auth-Identity are both
 * HTTP_X_AUTH_IDENTITY upstream). lower is lowercase, with '-'. */
static int name_eq(const char *name, size_t len, const char *lower)
{
    size_t i = 0;
    for (; i < len && lower[i] != '\0'; i++) {
        char c = name[i];
        c = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c == '_' ? '-' : c);
        if (c != lower[i])
            return 0;
    }
    return i == len && lower[i] == '\0';
}

int tg_trust_is_header(const tg_trust_t *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n_headers; i++)
        if (name_eq(name, len, t->headers[i]))
            return 1;
    return 0;
}

/* What a proxy in front says about the client and the original request;
 * believed from trusted peers only. */
static const char *const forwarding_headers[] = {
    "forwarded",        "x-forwarded-for", "x-real-ip",     "x-forwarded-host",
    "x-forwarded-proto", "x-forwarded-port", "x-original-url", "x-rewrite-url",
};

int tg_trust_is_forwarding_header(const char *name, size_t len)
{
    char first = (char)(name[0] | 0x20);
    if (len < 9 || (first != 'f' && first != 'x'))
        return 0; /* every name above is 9+ bytes and starts with f or x */
    for (size_t i = 0; i < sizeof(forwarding_headers) / sizeof(forwarding_headers[0]); i++)
        if (name_eq(name, len, forwarding_headers[i]))
            return 1;
    return 0;
}

/* A Connection option may name any hop-by-hop extension header, but never
 * what frames or routes the message, nor what tollgate vouches for. */
static int protected_option(const char *name, size_t len, void *arg)
{
    const tg_trust_t *t = arg;
    return (len == 4 && tg_http_ieq(name, "host", 4)) || (len == 14 && tg_http_ieq(name, "content-length", 14)) ||
           (len == 17 && tg_http_ieq(name, "transfer-encoding", 17)) || tg_trust_is_header(t, name, len);
}

typedef struct strip_ctx {
    const tg_trust_t *t;
    const tg_trust_peer_t *p;
} strip_ctx_t;

static int must_go(const char *name, size_t len, void *arg)
{
    const strip_ctx_t *c = arg;
    if (tg_trust_is_header(c->t, name, len))
        return 1;
    int underscore = memchr(name, '_', len) != NULL;
    /* a forwarding header is believed from a trusted peer, and only in its
     * own spelling (a balancer passes a client's X_Real_IP unchanged) */
    if ((!c->p->trusted || underscore) && tg_trust_is_forwarding_header(name, len))
        return 1;
    return underscore && c->p->underscores == TG_UNDERSCORES_DROP;
}

int tg_trust_sanitize_request(const tg_trust_t *t, tg_headers_t *h, const tg_trust_peer_t *p, const char **why)
{
    if (tg_headers_each_connection_option(h, protected_option, (void *)t)) {
        *why = "Connection names a header the proxy must keep";
        return -1;
    }
    if (p->underscores == TG_UNDERSCORES_REJECT)
        for (size_t i = 0; i < h->n; i++)
            if (memchr(h->v[i].name, '_', h->v[i].name_len) != NULL) {
                *why = "header name with an underscore";
                return -1;
            }
    strip_ctx_t c = { t, p };
    tg_headers_strip_connection(h, must_go, &c);
    return 0;
}

/* ---- the client address behind trusted proxies ---- */

#define CHAIN_MAX 32 /* hops read from the right; a walk that would go deeper stops there */

typedef struct span {
    const char *s;
    size_t len;
} span_t;

/* The last CHAIN_MAX elements of a list, in a ring. */
typedef struct chain {
    span_t hop[CHAIN_MAX];
    size_t total;
} chain_t;

/* Splits a list at the commas outside quoted strings (RFC 9110 5.6). */
static void split_list(const char *v, chain_t *c)
{
    size_t start = 0;
    int quoted = 0;
    c->total = 0;
    for (size_t i = 0;; i++) {
        char ch = v[i];
        if (ch != '\0' && quoted) {
            if (ch == '\\' && v[i + 1] != '\0')
                i++;
            else if (ch == '"')
                quoted = 0;
            continue;
        }
        if (ch == '"') {
            quoted = 1;
        } else if (ch == ',' || ch == '\0') {
            c->hop[c->total % CHAIN_MAX] = (span_t){ v + start, i - start };
            c->total++;
            if (ch == '\0')
                return;
            start = i + 1;
        }
    }
}

/* The i-th element from the right (0: the nearest hop), or NULL. */
static const span_t *chain_at(const chain_t *c, size_t i)
{
    return i < c->total && i < CHAIN_MAX ? &c->hop[(c->total - 1 - i) % CHAIN_MAX] : NULL;
}

static span_t trim(span_t x)
{
    while (x.len > 0 && (x.s[0] == ' ' || x.s[0] == '\t'))
        x.s++, x.len--;
    while (x.len > 0 && (x.s[x.len - 1] == ' ' || x.s[x.len - 1] == '\t'))
        x.len--;
    return x;
}

/* The address an element names, as text in buf and parsed in *ip; -1 when
 * it names none (garbage, "unknown", an obfuscated node, a CIDR block).
 * An X-Forwarded-For element is the address; a Forwarded element's is its
 * for= parameter: "192.0.2.1", "192.0.2.1:80" (quoted), "[2001:db8::1]"
 * or "[2001:db8::1]:80" (quoted, RFC 7239 6). */
static int hop_addr(int forwarded, span_t e, char *buf, size_t cap, tg_cidr_t *ip)
{
    char val[64];
    size_t vl = 0;
    e = trim(e);
    if (!forwarded) {
        if (e.len >= sizeof(val))
            return -1;
        memcpy(val, e.s, e.len);
        vl = e.len;
    } else {
        span_t v = { NULL, 0 };
        size_t i = 0;
        while (i < e.len && v.s == NULL) { /* pairs split at ';' outside quotes */
            size_t ps = i;
            int quoted = 0;
            for (; i < e.len && (quoted || e.s[i] != ';'); i++) {
                if (quoted && e.s[i] == '\\')
                    i++;
                else if (e.s[i] == '"')
                    quoted = !quoted;
            }
            span_t pair = trim((span_t){ e.s + ps, (i < e.len ? i : e.len) - ps });
            i++;
            if (pair.len > 4 && strncasecmp(pair.s, "for=", 4) == 0)
                v = (span_t){ pair.s + 4, pair.len - 4 };
        }
        if (v.s == NULL)
            return -1;
        if (v.len >= 2 && v.s[0] == '"' && v.s[v.len - 1] == '"') { /* a quoted-string */
            for (size_t k = 1; k + 1 < v.len; k++) {
                if (v.s[k] == '\\' && k + 2 < v.len)
                    k++;
                if (vl + 1 >= sizeof(val))
                    return -1;
                val[vl++] = v.s[k];
            }
        } else {
            if (v.len >= sizeof(val))
                return -1;
            memcpy(val, v.s, v.len);
            vl = v.len;
        }
        val[vl] = '\0';
        char *colon = strchr(val, ':');
        if (val[0] == '[') { /* [IPv6] or [IPv6]:port */
            char *close = strchr(val, ']');
            if (close == NULL || (close[1] != '\0' && close[1] != ':'))
                return -1;
            vl = (size_t)(close - val - 1);
            memmove(val, val + 1, vl);
        } else if (colon != NULL) { /* IPv4:port; a bare IPv6 address is not RFC 7239 */
            if (strchr(colon + 1, ':') != NULL)
                return -1;
            vl = (size_t)(colon - val);
        }
    }
    val[vl] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (vl == 0 || vl >= cap || memchr(val, '/', vl) != NULL || tg_parse_cidr(val, ip) < 0)
        return -1;
    memcpy(buf, val, vl + 1);
    return 0;
}

void tg_trust_client_addr(const tg_cidr_t *trusted, size_t n, const char *peer, const char *xff, const char *fwd,
                          tg_forwarded_mode_t mode, char *out, size_t cap)
{
    snprintf(out, cap, "%s", peer);
    if (!tg_cidr_list_match(trusted, n, peer))
        return;
    int use_x = mode != TG_FORWARDED_RFC7239, use_f = mode != TG_FORWARDED_XFF;
    if ((use_x && xff == NULL) || (use_f && fwd == NULL))
        return;
    chain_t cx, cf;
    if (use_x)
        split_list(xff, &cx);
    if (use_f)
        split_list(fwd, &cf);
    /* walk from the right, the nearest hop first: each address a trusted
     * proxy added is believed; the first one no trusted proxy vouches
     * beyond is the client. An element that names no address ends the walk
     * (the last hop we could read stands), and so, in `both`, does a hop
     * where the two lists disagree. */
    for (size_t i = 0;; i++) {
        const span_t *sx = use_x ? chain_at(&cx, i) : NULL, *sf = use_f ? chain_at(&cf, i) : NULL;
        char ax[64], af[64];
        tg_cidr_t ix, ixf;
        if (use_x && (sx == NULL || hop_addr(0, *sx, ax, sizeof(ax), &ix) < 0))
            return;
        if (use_f && (sf == NULL || hop_addr(1, *sf, af, sizeof(af), &ixf) < 0))
            return;
        if (use_x && use_f && (ix.family != ixf.family || memcmp(ix.addr, ixf.addr, sizeof(ix.addr)) != 0))
            return;
        const char *addr = use_x ? ax : af;
        snprintf(out, cap, "%s", addr);
        if (!tg_cidr_list_match(trusted, n, addr))
            return;
    }
}
