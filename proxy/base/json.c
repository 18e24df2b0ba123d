/*
 * proxy/base/json.c — see json.h.
 */
#include "proxy/base/json.h"

#include <string.h>

static int plain(unsigned char c)
{
    return c >= 0x20 && c != 0x7f && c != '"' && c != '\\';
}

void tg_json_write(const char *s, size_t len, tg_json_put_fn put, void *arg)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (plain(c))
            continue;
        if (i > run)
            put(arg, s + run, i - run);
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            put(arg, e, 2);
        } else {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            put(arg, e, 6);
        }
        run = i + 1;
    }
    if (len > run)
        put(arg, s + run, len - run);
}

typedef struct bounded {
    char *out;
    size_t cap, n;
    int full;
} bounded_t;

static void put_bounded(void *arg, const char *p, size_t n)
{
    bounded_t *b = arg;
    if (b->full)
        return;
    if (n > 1 && (p[0] == '\\')) { /* an escape: whole or not at all */
        if (b->n + n >= b->cap) {
            b->full = 1;
            return;
        }
    } else if (b->n + n >= b->cap) {
        n = b->cap - 1 - b->n;
        b->full = 1;
    }
    memcpy(b->out + b->n, p, n);
    b->n += n;
}

size_t tg_json_escape(char *out, size_t cap, const char *s)
{
    if (cap == 0)
        return 0;
    bounded_t b = { out, cap, 0, 0 };
    tg_json_write(s, strlen(s), put_bounded, &b);
    out[b.n] = '\0';
    return b.n;
}
