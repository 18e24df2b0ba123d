/*
 * proxy/base/json.c — see json.h.
 */
#include "proxy/base/json.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
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

int tg_utf8_ok(const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || (len == 2 && b < 0xc2) || i + len > n)
            return 0;
        uint32_t cp = len == 1 ? b : (uint32_t)(b & (0xff >> (len + 1)));
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += len;
    }
    return 1;
}

/* ---- reading ---- */

typedef struct jp {
    const char *p, *end;
    tg_arena_t *a;
    int depth;
    unsigned flags; /* TG_JSON_* */
} jp_t;

static void ws(jp_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int parse_value(jp_t *j, tg_json_t *v);

/* A string's bytes (UTF-8: \u escapes of surrogate pairs joined, a lone
 * surrogate refused) into *out, NUL-terminated, its length in *len (NUL
 * inside only with TG_JSON_NUL_OK, and never in keys: len NULL). */
static int parse_string(jp_t *j, char **out, size_t *len)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    j->p++;
    const char *s = j->p;
    size_t cap = 0;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\')
            j->p++;
        j->p++;
        cap++;
    }
    if (j->p >= j->end)
        return -1;
    char *o = tg_arena_alloc(j->a, cap * 3 + 1), *w = o;
    if (o == NULL)
        return -1;
    for (const char *p = s; p < j->p; p++) {
        if (*p != '\\') {
            if ((unsigned char)*p < 0x20)
                return -1;
            *w++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int k = 1; k <= 4; k++) {
                if (p + k >= j->p || !isxdigit((unsigned char)p[k]))
                    return -1;
                cp = cp * 16 + (unsigned)(isdigit((unsigned char)p[k]) ? p[k] - '0' : (tolower(p[k]) - 'a' + 10));
            }
            p += 4;
            if (cp == 0 && (len == NULL || !(j->flags & TG_JSON_NUL_OK)))
                return -1; /* a NUL would cut the string short: refused, not truncated */
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return -1; /* a low surrogate alone */
            if (cp >= 0xd800 && cp <= 0xdbff) { /* a high surrogate: its low half must follow */
                unsigned lo = 0;
                if (j->p - p < 7 || p[1] != '\\' || p[2] != 'u')
                    return -1;
                for (int k = 3; k <= 6; k++) {
                    if (!isxdigit((unsigned char)p[k]))
                        return -1;
                    lo = lo * 16 + (unsigned)(isdigit((unsigned char)p[k]) ? p[k] - '0' : (tolower(p[k]) - 'a' + 10));
                }
                if (lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                *w++ = (char)(0xf0 | (cp >> 18));
                *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x80) {
                *w++ = (char)cp;
            } else if (cp < 0x800) {
                *w++ = (char)(0xc0 | (cp >> 6));
                *w++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *w++ = (char)(0xe0 | (cp >> 12));
                *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *w++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            return -1;
        }
    }
    *w = '\0';
    j->p++;
    *out = o;
    if (len != NULL)
        *len = (size_t)(w - o);
    return 0;
}

static int parse_list(jp_t *j, tg_json_t *v, int obj)
{
    char close = obj ? '}' : ']';
    size_t cap = 8;
    v->items = tg_arena_alloc(j->a, cap * sizeof(tg_json_t));
    v->keys = obj ? tg_arena_alloc(j->a, cap * sizeof(char *)) : NULL;
    if (v->items == NULL || (obj && v->keys == NULL))
        return -1;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (;;) {
        if (v->n == cap) {
            tg_json_t *ni = tg_arena_alloc(j->a, cap * 2 * sizeof(tg_json_t));
            char **nk = obj ? tg_arena_alloc(j->a, cap * 2 * sizeof(char *)) : NULL;
            if (ni == NULL || (obj && nk == NULL))
                return -1;
            memcpy(ni, v->items, cap * sizeof(tg_json_t));
            if (obj)
                memcpy(nk, v->keys, cap * sizeof(char *));
            v->items = ni;
            v->keys = nk;
            cap *= 2;
        }
        ws(j);
        if (obj) {
            if (parse_string(j, &v->keys[v->n], NULL) < 0)
                return -1;
            ws(j);
            if (j->p >= j->end || *j->p++ != ':')
                return -1;
        }
        if (parse_value(j, &v->items[v->n]) < 0)
            return -1;
        v->n++;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        return -1;
    }
}

static int parse_value(jp_t *j, tg_json_t *v)
{
    memset(v, 0, sizeof(*v));
    ws(j);
    if (j->p >= j->end || ++j->depth > 32)
        return -1;
    int rc = 0;
    char c = *j->p;
    if (c == '"') {
        v->t = TG_JSON_STR;
        rc = parse_string(j, &v->str, &v->len);
    } else if (c == '{' || c == '[') {
        v->t = c == '{' ? TG_JSON_OBJ : TG_JSON_ARR;
        rc = parse_list(j, v, c == '{');
    } else if (c == '-' || isdigit((unsigned char)c)) {
        char buf[64], *e;
        size_t n = 0;
        while (j->p < j->end && n < sizeof(buf) - 1 && strchr("+-.eE0123456789", *j->p))
            buf[n++] = *j->p++;
        buf[n] = '\0';
        v->t = TG_JSON_NUM;
        v->num = strtod(buf, &e);
        rc = *e == '\0' && isfinite(v->num) ? 0 : -1; /* 1e999 is no number JSON can say back */
        if (rc == 0 && (v->str = tg_arena_strndup(j->a, buf, n)) == NULL) /* the literal: exact integers */
            rc = -1;
        v->len = n;
    } else if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        v->t = TG_JSON_BOOL, v->num = 1, j->p += 4;
    } else if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        v->t = TG_JSON_BOOL, j->p += 5;
    } else if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        v->t = TG_JSON_NULL, j->p += 4;
    } else {
        rc = -1;
    }
    j->depth--;
    return rc;
}

int tg_json_parse(const char *s, size_t len, tg_arena_t *a, tg_json_t *out)
{
    return tg_json_parse_flags(s, len, a, out, 0);
}

int tg_json_parse_flags(const char *s, size_t len, tg_arena_t *a, tg_json_t *out, unsigned flags)
{
    jp_t j = { s, s + len, a, 0, flags };
    if (parse_value(&j, out) < 0)
        return -1;
    ws(&j);
    return j.p == j.end ? 0 : -1;
}

const tg_json_t *tg_json_get(const tg_json_t *o, const char *key)
{
    if (o->t != TG_JSON_OBJ)
        return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->items[i];
    return NULL;
}

const char *tg_json_get_str(const tg_json_t *o, const char *key)
{
    const tg_json_t *v = tg_json_get(o, key);
    return v && v->t == TG_JSON_STR ? v->str : NULL;
}
