/*
 * filters/httprule.c — see httprule.h.
 */
#include "filters/httprule.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/http.h" /* tg_hex_value */
#include "proxy/base/json.h" /* tg_utf8_ok */

typedef enum { SEG_LITERAL, SEG_STAR, SEG_DSTAR } seg_kind_t;

typedef struct seg {
    seg_kind_t kind;
    char *text; /* SEG_LITERAL */
} seg_t;

typedef struct var {
    char *field;
    size_t start, end; /* the segments it captures: [start, end); a `**` in it runs to the path's end */
} var_t;

struct tg_http_template {
    seg_t segs[TG_HTTP_TEMPLATE_MAX_SEGMENTS];
    size_t n;
    var_t vars[TG_HTTP_TEMPLATE_MAX_VARS];
    size_t nv;
    char *verb; /* NULL: none */
};

typedef struct parser {
    const char *p;
    tg_http_template_t *t;
    char *why;
    size_t cap;
} parser_t;

static int bad(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(parser_t *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->why, ps->cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* A literal's characters: RFC 3986 pchar less ':' (the verb's mark) and
 * the template's own '{', '}', '*', '='. */
static int literal_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~!$&'()+,;@%", c) != NULL); /* strchr finds the terminator too */
}

static int add_seg(parser_t *ps, seg_kind_t kind, const char *text, size_t len)
{
    tg_http_template_t *t = ps->t;
    if (t->n == TG_HTTP_TEMPLATE_MAX_SEGMENTS)
        return bad(ps, "more than %d segments", TG_HTTP_TEMPLATE_MAX_SEGMENTS);
    if (t->n > 0 && t->segs[t->n - 1].kind == SEG_DSTAR)
        return bad(ps, "'**' must be the last segment");
    seg_t *s = &t->segs[t->n];
    s->kind = kind;
    s->text = NULL;
    if (kind == SEG_LITERAL && (s->text = strndup(text, len)) == NULL)
        return bad(ps, "out of memory");
    t->n++;
    return 0;
}

/* Segment { "/" Segment } up to what stops it ('}', ':' or the end). */
static int segments(parser_t *ps, int in_var)
{
    for (;;) {
        const char *p = ps->p;
        if (p[0] == '*' && p[1] == '*') {
            if (add_seg(ps, SEG_DSTAR, NULL, 0) < 0)
                return -1;
            ps->p += 2;
        } else if (p[0] == '*') {
            if (add_seg(ps, SEG_STAR, NULL, 0) < 0)
                return -1;
            ps->p += 1;
        } else if (p[0] == '{') {
            if (in_var)
                return bad(ps, "a variable inside a variable");
            tg_http_template_t *t = ps->t;
            if (t->nv == TG_HTTP_TEMPLATE_MAX_VARS)
                return bad(ps, "more than %d variables", TG_HTTP_TEMPLATE_MAX_VARS);
            const char *f = ++ps->p;
            while (*ps->p && *ps->p != '=' && *ps->p != '}') {
                char c = *ps->p;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '.'))
                    return bad(ps, "'%c' in a field path", c);
                ps->p++;
            }
            size_t fl = (size_t)(ps->p - f);
            if (fl == 0 || f[0] == '.' || f[fl - 1] == '.' || memmem(f, fl, "..", 2) != NULL)
                return bad(ps, "a variable needs a field path (a.b)");
            var_t *v = &t->vars[t->nv];
            if ((v->field = strndup(f, fl)) == NULL)
                return bad(ps, "out of memory");
            t->nv++;
            v->start = t->n;
            if (*ps->p == '=') {
                ps->p++;
                if (segments(ps, 1) < 0)
                    return -1;
            } else if (add_seg(ps, SEG_STAR, NULL, 0) < 0) {
                return -1;
            }
            if (*ps->p != '}')
                return bad(ps, "a variable is not closed");
            ps->p++;
            v->end = t->n;
        } else {
            const char *s = p;
            while (literal_char(*ps->p))
                ps->p++;
            if (ps->p == s)
                return bad(ps, "an empty or invalid segment at '%.20s'", s);
            if (add_seg(ps, SEG_LITERAL, s, (size_t)(ps->p - s)) < 0)
                return -1;
        }
        if (*ps->p != '/')
            return 0;
        ps->p++;
    }
}

void tg_http_template_free(tg_http_template_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->segs[i].text);
    for (size_t i = 0; i < t->nv; i++)
        free(t->vars[i].field);
    free(t->verb);
    free(t);
}

tg_http_template_t *tg_http_template_parse(const char *tmpl, char *why, size_t cap)
{
    tg_http_template_t *t = calloc(1, sizeof(*t));
    parser_t ps = { tmpl, t, why, cap };
    int rc = t == NULL ? bad(&ps, "out of memory") : tmpl[0] != '/' ? bad(&ps, "a template starts with '/'") : 0;
    if (rc == 0 && tmpl[1] == '\0') {
        ps.p++; /* "/": no segment */
    } else if (rc == 0) {
        ps.p++;
        rc = segments(&ps, 0);
    }
    if (rc == 0 && *ps.p == ':') {
        const char *v = ++ps.p;
        while (literal_char(*ps.p))
            ps.p++;
        if (ps.p == v || (t->verb = strndup(v, (size_t)(ps.p - v))) == NULL)
            rc = bad(&ps, "an empty verb");
    }
    if (rc == 0 && *ps.p != '\0')
        rc = bad(&ps, "'%.20s' is not part of a template", ps.p);
    for (size_t i = 0; rc == 0 && i < t->nv; i++)
        for (size_t j = i + 1; j < t->nv; j++)
            if (strcmp(t->vars[i].field, t->vars[j].field) == 0)
                rc = bad(&ps, "field %s is bound twice", t->vars[i].field);
    if (rc < 0) {
        tg_http_template_free(t);
        return NULL;
    }
    return t;
}

const char *tg_http_template_var(const tg_http_template_t *t, size_t i)
{
    return i < t->nv ? t->vars[i].field : NULL;
}

/* Percent-decodes s[0..n) into the arena (keep_slash: %2F stays as it
 * came). NULL if a '%' is not followed by two hex digits, or the result
 * is not UTF-8. */
static char *decode(tg_arena_t *a, const char *s, size_t n, int plus_space, int keep_slash, size_t *out_len)
{
    char *o = tg_arena_alloc(a, n + 1);
    size_t k = 0;
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? tg_hex_value(s[i + 1]) : -1, lo = hi >= 0 ? tg_hex_value(s[i + 2]) : -1;
            if (lo < 0)
                return NULL;
            char c = (char)(hi * 16 + lo);
            if (keep_slash && c == '/') {
                memcpy(o + k, s + i, 3);
                k += 3;
            } else {
                o[k++] = c;
            }
            i += 2;
        } else {
            o[k++] = plus_space && s[i] == '+' ? ' ' : s[i];
        }
    }
    o[k] = '\0';
    if (!tg_utf8_ok(o, k))
        return NULL;
    *out_len = k;
    return o;
}

int tg_http_template_match(const tg_http_template_t *t, const char *path, size_t len, tg_arena_t *a,
                           tg_http_binding_t *out, size_t max)
{
    if (len == 0 || path[0] != '/')
        return -1;
    /* the verb ends the last segment */
    if (t->verb != NULL) {
        size_t vl = strlen(t->verb);
        if (len < vl + 2 || path[len - vl - 1] != ':' || memcmp(path + len - vl, t->verb, vl) != 0)
            return -1;
        len -= vl + 1;
    }
    /* where each path segment starts and ends */
    size_t starts[TG_HTTP_TEMPLATE_MAX_SEGMENTS + 1], ends[TG_HTTP_TEMPLATE_MAX_SEGMENTS + 1], np = 0;
    if (len > 1 || t->n > 0) {
        size_t at = 1;
        for (;;) {
            if (np == TG_HTTP_TEMPLATE_MAX_SEGMENTS + 1)
                return -1; /* longer than any template: no match */
            const char *slash = memchr(path + at, '/', len - at);
            size_t end = slash ? (size_t)(slash - path) : len;
            starts[np] = at;
            ends[np++] = end;
            if (slash == NULL)
                break;
            at = end + 1;
        }
    }
    int dstar = t->n > 0 && t->segs[t->n - 1].kind == SEG_DSTAR;
    if (dstar ? np < t->n - 1 : np != t->n)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        const seg_t *s = &t->segs[i];
        if (s->kind == SEG_DSTAR)
            break;
        size_t sl = ends[i] - starts[i];
        if (s->kind == SEG_STAR ? sl == 0
                                : (strlen(s->text) != sl || memcmp(s->text, path + starts[i], sl) != 0))
            return -1;
    }
    size_t nb = 0;
    for (size_t v = 0; v < t->nv; v++) {
        const var_t *var = &t->vars[v];
        size_t last = var->end; /* exclusive, in template segments */
        int to_end = last == t->n && dstar;
        size_t from = starts[var->start < np ? var->start : np - 1];
        size_t until = to_end ? len : ends[last - 1];
        if (var->start >= np) /* `{x=**}` matching nothing */
            from = until = len;
        int single = last - var->start == 1 && !to_end;
        size_t vl;
        char *val = decode(a, path + from, until - from, 0, !single, &vl);
        if (val == NULL)
            return -1;
        if (nb < max)
            out[nb++] = (tg_http_binding_t){ var->field, val, vl };
    }
    return (int)nb;
}

int tg_http_query_bindings(const char *query, size_t len, tg_arena_t *a, tg_http_binding_t *out, size_t max)
{
    size_t nb = 0, at = 0;
    while (at < len) {
        const char *amp = memchr(query + at, '&', len - at);
        size_t end = amp ? (size_t)(amp - query) : len;
        const char *eq = memchr(query + at, '=', end - at);
        size_t kend = eq ? (size_t)(eq - query) : end;
        if (kend > at) { /* "&&" and "=x" name nothing */
            size_t kl, vl;
            char *k = decode(a, query + at, kend - at, 1, 0, &kl);
            char *v = eq ? decode(a, eq + 1, end - kend - 1, 1, 0, &vl) : decode(a, "", 0, 1, 0, &vl);
            if (k == NULL || v == NULL || strlen(k) != kl)
                return -1;
            if (nb < max)
                out[nb++] = (tg_http_binding_t){ k, v, vl };
        }
        at = end + 1;
    }
    return (int)nb;
}
