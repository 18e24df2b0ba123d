/*
 * proxy/trust.c — see trust.h.
 */
#include "proxy/trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        const char *name = type->trust_header ? type->trust_header(l->v[i].conf) : NULL;
        if (name != NULL && add_name(t, name) < 0)
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

int tg_trust_is_header(const tg_trust_t *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n_headers; i++)
        if (strlen(t->headers[i]) == len && tg_http_ieq(name, t->headers[i], len))
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

static int is_trust_header(const char *name, size_t len, void *arg)
{
    return tg_trust_is_header(arg, name, len);
}

int tg_trust_sanitize_request(const tg_trust_t *t, tg_headers_t *h, const char **why)
{
    if (tg_headers_each_connection_option(h, protected_option, (void *)t)) {
        *why = "Connection names a header the proxy must keep";
        return -1;
    }
    tg_headers_strip_connection(h, is_trust_header, (void *)t);
    return 0;
}

void tg_trust_client_addr(const tg_cidr_t *trusted, size_t n, const char *peer, const char *xff, char *out,
                          size_t cap)
{
    snprintf(out, cap, "%s", peer);
    if (xff == NULL || !tg_cidr_list_match(trusted, n, peer))
        return;
    /* walk X-Forwarded-For from the right: the nearest hop first */
    size_t end = strlen(xff);
    while (end > 0) {
        size_t e = end;
        while (e > 0 && (xff[e - 1] == ' ' || xff[e - 1] == '\t'))
            e--;
        size_t s = e;
        while (s > 0 && xff[s - 1] != ',')
            s--;
        size_t b = s;
        while (b < e && (xff[b] == ' ' || xff[b] == '\t'))
            b++;
        char addr[64];
        tg_cidr_t ip;
        if (e - b >= sizeof(addr))
            return;
        memcpy(addr, xff + b, e - b);
        addr[e - b] = '\0';
        if (strchr(addr, '/') != NULL || tg_parse_cidr(addr, &ip) < 0)
            return; /* not an address: the last hop we could read stands */
        snprintf(out, cap, "%s", addr);
        if (!tg_cidr_list_match(trusted, n, addr))
            return; /* the first address no trusted proxy vouches beyond */
        end = s > 0 ? s - 1 : 0;
    }
}
