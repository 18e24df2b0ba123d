/*
 * proxy/base/resp.c — see resp.h.
 */
#include "proxy/base/resp.h"

#include <stdio.h>
#include <string.h>

typedef struct parser {
    const char *p, *end;
    tg_arena_t *a;
} parser_t;

/* The line at p (without its CRLF): AGAIN if the CRLF has not arrived. */
static tg_resp_result_t line(parser_t *ps, const char **s, size_t *n)
{
    size_t avail = (size_t)(ps->end - ps->p);
    size_t scan = avail < TG_RESP_MAX_LINE + 2 ? avail : TG_RESP_MAX_LINE + 2;
    const char *cr = memchr(ps->p, '\r', scan);
    if (cr == NULL)
        return avail >= TG_RESP_MAX_LINE + 2 ? TG_RESP_BAD : TG_RESP_AGAIN;
    if (cr + 1 >= ps->end)
        return TG_RESP_AGAIN;
    if (cr[1] != '\n')
        return TG_RESP_BAD;
    *s = ps->p;
    *n = (size_t)(cr - ps->p);
    ps->p = cr + 2;
    return TG_RESP_OK;
}

/* A signed decimal, the whole of s[0..n): at most 18 digits. */
static int number(const char *s, size_t n, int64_t *out)
{
    int neg = n > 0 && s[0] == '-';
    size_t i = (size_t)neg;
    if (i == n || n - i > 18)
        return -1;
    int64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

static char *copy(parser_t *ps, const char *s, size_t n)
{
    return tg_arena_strndup(ps->a, s, n);
}

static tg_resp_result_t value(parser_t *ps, tg_resp_value_t *v, int depth)
{
    if (ps->p >= ps->end)
        return TG_RESP_AGAIN;
    char type = *ps->p++;
    const char *s;
    size_t n;
    tg_resp_result_t r = line(ps, &s, &n);
    if (r != TG_RESP_OK)
        return r;
    memset(v, 0, sizeof(*v));
    int64_t num;
    switch (type) {
    case '+':
    case '-':
        for (size_t i = 0; i < n; i++)
            if (s[i] == '\n')
                return TG_RESP_BAD;
        v->type = type == '+' ? TG_RESP_STRING : TG_RESP_ERROR;
        v->len = n;
        return (v->str = copy(ps, s, n)) != NULL ? TG_RESP_OK : TG_RESP_BAD;
    case ':':
        if (number(s, n, &num) < 0)
            return TG_RESP_BAD;
        v->type = TG_RESP_INTEGER;
        v->integer = num;
        return TG_RESP_OK;
    case '$':
        if (number(s, n, &num) < 0 || num < -1 || num > TG_RESP_MAX_BULK)
            return TG_RESP_BAD;
        if (num == -1) {
            v->type = TG_RESP_NIL;
            return TG_RESP_OK;
        }
        if ((size_t)(ps->end - ps->p) < (size_t)num + 2)
            return TG_RESP_AGAIN;
        if (ps->p[num] != '\r' || ps->p[num + 1] != '\n')
            return TG_RESP_BAD;
        v->type = TG_RESP_BULK;
        v->len = (size_t)num;
        if ((v->str = copy(ps, ps->p, (size_t)num)) == NULL)
            return TG_RESP_BAD;
        ps->p += num + 2;
        return TG_RESP_OK;
    case '*':
        if (number(s, n, &num) < 0 || num < -1 || num > TG_RESP_MAX_ITEMS)
            return TG_RESP_BAD;
        if (num == -1) {
            v->type = TG_RESP_NIL;
            return TG_RESP_OK;
        }
        if (depth >= TG_RESP_MAX_DEPTH)
            return TG_RESP_BAD;
        v->type = TG_RESP_ARRAY;
        v->n = (size_t)num;
        if (num > 0 && (v->items = tg_arena_alloc(ps->a, (size_t)num * sizeof(*v->items))) == NULL)
            return TG_RESP_BAD;
        for (int64_t i = 0; i < num; i++)
            if ((r = value(ps, &v->items[i], depth + 1)) != TG_RESP_OK)
                return r;
        return TG_RESP_OK;
    default:
        return TG_RESP_BAD;
    }
}

tg_resp_result_t tg_resp_parse(const char *buf, size_t len, tg_arena_t *a, tg_resp_value_t *out, size_t *used)
{
    parser_t ps = { buf, buf + len, a };
    tg_resp_result_t r = value(&ps, out, 0);
    if (r == TG_RESP_OK)
        *used = (size_t)(ps.p - buf);
    return r;
}

static size_t digits(size_t v)
{
    size_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

size_t tg_resp_command_size(int argc, const size_t *lens)
{
    size_t n = 1 + digits((size_t)argc) + 2;
    for (int i = 0; i < argc; i++)
        n += 1 + digits(lens[i]) + 2 + lens[i] + 2;
    return n;
}

size_t tg_resp_command(char *out, size_t cap, int argc, const char *const *argv, const size_t *lens)
{
    size_t need = tg_resp_command_size(argc, lens);
    if (argc < 1 || need > cap)
        return 0;
    char *p = out;
    p += sprintf(p, "*%d\r\n", argc);
    for (int i = 0; i < argc; i++) {
        p += sprintf(p, "$%zu\r\n", lens[i]);
        memcpy(p, argv[i], lens[i]);
        p += lens[i];
        *p++ = '\r';
        *p++ = '\n';
    }
    return (size_t)(p - out);
}

/* ---- the scanner ---- */

/* Copies the line at offset off of the segments (its CRLF excluded) into
 * buf; returns its length, -2 if its CRLF has not arrived, -1 if it is
 * too long or ends in a bare CR. *adv = its length with the CRLF. */
static long seg_line(const tg_resp_seg_t *segs, size_t nsegs, size_t off, char *buf, size_t *adv)
{
    size_t n = 0, i = 0;
    while (i < nsegs && off >= segs[i].n)
        off -= segs[i++].n;
    int cr = 0;
    for (; i < nsegs; i++, off = 0) {
        for (size_t k = off; k < segs[i].n; k++) {
            char c = segs[i].p[k];
            if (cr) {
                if (c != '\n')
                    return -1;
                *adv = n + 2;
                return (long)n;
            }
            if (c == '\r') {
                cr = 1;
                continue;
            }
            if (n >= TG_RESP_MAX_LINE)
                return -1;
            buf[n++] = c;
        }
    }
    return -2;
}

static size_t seg_total(const tg_resp_seg_t *segs, size_t nsegs)
{
    size_t t = 0;
    for (size_t i = 0; i < nsegs; i++)
        t += segs[i].n;
    return t;
}

long tg_resp_scan(tg_resp_scan_t *s, const tg_resp_seg_t *segs, size_t nsegs, size_t max)
{
    size_t avail = seg_total(segs, nsegs), off = 0; /* off: into segs, which start at s->pos */
    for (;;) {
        if (s->skip > 0) {
            size_t k = avail - off < s->skip ? avail - off : (size_t)s->skip;
            off += k;
            s->skip -= k;
            if (s->skip > 0) {
                s->pos += off;
                return 0;
            }
        } else {
            char line[TG_RESP_MAX_LINE];
            size_t adv = 0;
            long ln = seg_line(segs, nsegs, off, line, &adv);
            if (ln == -2) {
                s->pos += off;
                return 0;
            }
            if (ln < 1)
                return -1;
            int64_t v = 0;
            int counted = line[0] == '$' || line[0] == '*';
            if (counted && number(line + 1, (size_t)ln - 1, &v) < 0)
                return -1;
            off += adv;
            if (line[0] == '$' && v >= 0) {
                if (v > TG_RESP_MAX_BULK)
                    return -1;
                s->skip = (uint64_t)v + 2;
            } else if (line[0] == '*' && v > 0) {
                if (v > TG_RESP_MAX_ITEMS || s->depth >= TG_RESP_MAX_DEPTH)
                    return -1;
                s->need[s->depth++] = (uint32_t)v;
            } else if (!counted && line[0] != '+' && line[0] != '-' && line[0] != ':') {
                return -1;
            } else if (counted && v < -1) {
                return -1;
            }
            if (s->pos + off + s->skip > max)
                return -2;
            if (s->skip > 0 || (line[0] == '*' && v > 0))
                continue; /* the element goes on */
        }
        /* an element is complete: it counts toward its array */
        while (s->depth > 0 && --s->need[s->depth - 1] == 0)
            s->depth--;
        if (s->depth == 0) {
            size_t total = s->pos + off;
            memset(s, 0, sizeof(*s));
            return (long)total;
        }
    }
}
