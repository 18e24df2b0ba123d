/*
 * filters/key.c — see key.h.
 */
#include "filters/key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

size_t tg_filter_key_build(const tg_filter_key_t *k, const tg_filter_exchange_t *fx, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < k->n; i++) {
        const char *v = "";
        const tg_header_t *h;
        switch (k->parts[i].kind) {
        case TG_KEY_CLIENT:
            v = fx->client_addr;
            break;
        case TG_KEY_IDENTITY:
            v = fx->identity ? fx->identity : fx->peer_identity ? fx->peer_identity : fx->client_addr;
            break;
        case TG_KEY_ROUTE:
            v = fx->route;
            break;
        case TG_KEY_HEADER:
            h = tg_headers_get(&fx->req->headers, k->parts[i].header);
            v = h ? h->value : "";
            break;
        }
        int w = snprintf(buf + n, cap - n, "%s%s", i ? "\x1f" : "", v);
        if (w < 0 || (size_t)w >= cap - n)
            return cap - 1;
        n += (size_t)w;
    }
    return n;
}
