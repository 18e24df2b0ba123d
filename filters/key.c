/*
 * filters/key.c — see key.h.
 */
#include "filters/key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

static int parse_part(tg_node_t *n, const char *what, const char *s, tg_key_part_t *kp)
{
    if (strcmp(s, "client_address") == 0)
        kp->kind = TG_KEY_CLIENT;
    else if (strcmp(s, "identity") == 0)
        kp->kind = TG_KEY_IDENTITY;
    else if (strcmp(s, "route") == 0)
        kp->kind = TG_KEY_ROUTE;
    else if (strncmp(s, "header:", 7) == 0 && s[7] != '\0') {
        kp->kind = TG_KEY_HEADER;
        if ((kp->header = strdup(s + 7)) == NULL)
            return -1;
    } else {
        tg_node_error(n, "%s key: '%s' is not one of client_address, identity, route, header:NAME", what, s);
        return -1;
    }
    return 0;
}

int tg_filter_key_parse(tg_node_t *n, const char *what, tg_filter_key_t *k)
{
    memset(k, 0, sizeof(*k));
    if (!tg_node_present(n)) {
        k->parts[k->n++].kind = TG_KEY_CLIENT;
        return 0;
    }
    int rc = 0;
    if (tg_node_is_seq(n)) {
        char **list = NULL;
        size_t count = 0;
        if (tg_node_str_list(n, "key", &list, &count) < 0 || count == 0 || count > TG_KEY_MAX_PARTS) {
            if (count > TG_KEY_MAX_PARTS || count == 0)
                tg_node_error(n, "%s key: give 1 to %d parts", what, TG_KEY_MAX_PARTS);
            rc = -1;
        }
        for (size_t i = 0; i < count; i++) {
            if (rc == 0 && parse_part(n, what, list[i], &k->parts[k->n]) == 0)
                k->n++;
            else
                rc = -1;
            free(list[i]);
        }
        free(list);
        return rc;
    }
    char *s = tg_node_str(n, "key");
    if (s == NULL || parse_part(n, what, s, &k->parts[k->n]) < 0)
        rc = -1;
    else
        k->n++;
    free(s);
    return rc;
}

void tg_filter_key_free(tg_filter_key_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->parts[i].header);
    k->n = 0;
}

int tg_filter_key_equal(const tg_filter_key_t *a, const tg_filter_key_t *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->parts[i].kind != b->parts[i].kind ||
            (a->parts[i].header && strcasecmp(a->parts[i].header, b->parts[i].header) != 0))
            return 0;
    return 1;
}

static const char *part_value(const tg_key_part_t *p, const tg_filter_exchange_t *fx)
{
    const tg_header_t *h;
    switch (p->kind) {
    case TG_KEY_CLIENT:
        return fx->client_addr;
    case TG_KEY_IDENTITY:
        return fx->identity ? fx->identity : fx->peer_identity ? fx->peer_identity : fx->client_addr;
    case TG_KEY_ROUTE:
        return fx->route;
    case TG_KEY_HEADER:
        h = tg_headers_get(&fx->req->headers, p->header);
        return h ? h->value : "";
    }
    return "";
}

static int escaped(unsigned char c)
{
    return c == '%' || c == '{' || c == '}' || c < 0x20 || c == 0x7f;
}

/* Writes the escaped key into out while it fits in cap bytes; returns its
 * whole length either way. */
static size_t write_key(const tg_filter_key_t *k, const tg_filter_exchange_t *fx, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (i) {
            if (n < cap)
                out[n] = '\x1f';
            n++;
        }
        for (const unsigned char *v = (const unsigned char *)part_value(&k->parts[i], fx); v && *v; v++) {
            if (!escaped(*v)) {
                if (n < cap)
                    out[n] = (char)*v;
                n++;
                continue;
            }
            if (n + 3 <= cap) {
                out[n] = '%';
                out[n + 1] = hex[*v >> 4];
                out[n + 2] = hex[*v & 15];
            }
            n += 3;
        }
    }
    return n;
}

size_t tg_filter_key_build(const tg_filter_key_t *k, const tg_filter_exchange_t *fx, char *buf, size_t cap)
{
    size_t n = write_key(k, fx, buf, TG_KEY_MAX_LEN < cap ? TG_KEY_MAX_LEN : cap - 1);
    if (n <= TG_KEY_MAX_LEN && n < cap) {
        buf[n] = '\0';
        return n;
    }
    /* too long: the hash of all of it, never a prefix */
    memcpy(buf, "%H", 3);
    char *all = fx->arena ? tg_arena_alloc(fx->arena, n) : NULL;
    if (all == NULL)
        return 2;
    write_key(k, fx, all, n);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)all, n, md);
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(md); i++) {
        buf[2 + 2 * i] = hex[md[i] >> 4];
        buf[3 + 2 * i] = hex[md[i] & 15];
    }
    buf[2 + 2 * sizeof(md)] = '\0';
    return 2 + 2 * sizeof(md);
}
