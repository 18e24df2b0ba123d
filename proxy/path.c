/*
 * proxy/path.c — path normalization for routing. See path.h.
 */
#include "proxy/path.h"

#include <string.h>

#include "proxy/base/http.h"

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

/* Steps 2 to 4: decodes in[0..len) into out (room for len bytes);
 * returns the length written, or -1 with *why. */
static long decode(const char *in, size_t len, const tg_path_conf_t *conf, char *out, const char **why)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            int hi = i + 2 < len ? tg_hex_value((unsigned char)in[i + 1]) : -1;
            int lo = i + 2 < len ? tg_hex_value((unsigned char)in[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *why = "malformed percent-encoding in the path";
                return -1;
            }
            unsigned char d = (unsigned char)(hi * 16 + lo);
            i += 2;
            int slash = d == '/' || d == '\\';
            if (slash && conf->escaped_slashes == TG_ESCAPED_SLASH_REJECT) {
                *why = "encoded slash or backslash in the path";
                return -1;
            }
            if (d == ';' && conf->semicolons == TG_SEMICOLONS_REJECT) {
                *why = "semicolon in the path";
                return -1;
            }
            if (!unreserved(d) && !(slash && conf->escaped_slashes == TG_ESCAPED_SLASH_DECODE)) {
                out[w++] = '%'; /* stays encoded, in one spelling */
                out[w++] = hex[d >> 4];
                out[w++] = hex[d & 15];
                continue;
            }
            c = (char)d; /* a decoded '\' is a backslash like a raw one */
        } else if (c == ';' && conf->semicolons == TG_SEMICOLONS_REJECT) {
            *why = "semicolon in the path";
            return -1;
        }
        if (c == '\\') {
            if (conf->backslashes == TG_BACKSLASH_REJECT) {
                *why = "backslash in the path";
                return -1;
            }
            if (conf->backslashes == TG_BACKSLASH_DECODE)
                c = '/';
        }
        if (c == '/' && conf->merge_slashes && w > 0 && out[w - 1] == '/')
            continue;
        out[w++] = c;
    }
    return (long)w;
}

/* Steps 5 and 6, in place on p[0..len), which starts with '/': the output
 * is a run of "/segment" units. A segment's name ends at its first ';'
 * (path parameters); `strip` drops the parameters (and, when merging, a
 * segment left empty inside the path). A name "." is dropped, ".." drops
 * the last unit — parameters and all: "..;x" is a dot-segment whatever
 * the setting — and either one at the end leaves a trailing '/'. Returns
 * the new length. */
static size_t remove_dot_segments(char *p, size_t len, const tg_path_conf_t *conf)
{
    size_t r = 0, w = 0;
    while (r < len) {
        size_t s = r + 1, e = s;
        while (e < len && p[e] != '/')
            e++;
        size_t nl = 0; /* the name: up to the first ';' */
        while (s + nl < e && p[s + nl] != ';')
            nl++;
        int last = e == len;
        if (nl == 2 && p[s] == '.' && p[s + 1] == '.') {
            while (w > 0 && p[--w] != '/')
                ;
            if (last)
                p[w++] = '/';
        } else if (nl == 1 && p[s] == '.') {
            if (last)
                p[w++] = '/';
        } else if (conf->semicolons == TG_SEMICOLONS_STRIP && nl < e - s) {
            if (nl > 0 || last || !conf->merge_slashes) {
                memmove(p + w, p + r, 1 + nl);
                w += 1 + nl;
            }
        } else {
            memmove(p + w, p + r, e - r);
            w += e - r;
        }
        r = e;
    }
    if (w == 0)
        p[w++] = '/';
    return w;
}

/* The common case: a path with nothing to decode, merge or remove (no
 * '%', '\\', ';', "//" or "/." in it) and no fragment is its own normal
 * form, whatever the settings. *plen: the path's length. */
static int already_normal(const char *t, size_t *plen)
{
    size_t i = 0;
    for (;; i++) {
        char c = t[i];
        if (c == '\0' || c == '?')
            break;
        if (c == '%' || c == '\\' || c == ';' || c == '#' || (c == '/' && (t[i + 1] == '/' || t[i + 1] == '.')))
            return 0;
    }
    *plen = i;
    return strchr(t + i, '#') == NULL;
}

int tg_path_normalize(tg_arena_t *a, const char *target, const tg_path_conf_t *conf, const char **out,
                      size_t *path_len, const char **why)
{
    if (target[0] == '/' && already_normal(target, path_len)) {
        *out = target; /* no copy */
        return 0;
    }
    size_t plen = strcspn(target, "?#");
    const char *query = target[plen] == '?' ? target + plen : "";
    size_t qlen = strcspn(query, "#"); /* a fragment has no place in a request: dropped */
    if (target[0] != '/') { /* "*" (OPTIONS): nothing to normalize */
        *out = target;
        *path_len = plen;
        return 0;
    }
    char *n = tg_arena_alloc(a, plen + qlen + 2);
    if (n == NULL) {
        *why = "out of memory";
        return -1;
    }
    long dl = decode(target, plen, conf, n, why);
    if (dl < 0)
        return -1;
    size_t nl = remove_dot_segments(n, (size_t)dl, conf);
    memcpy(n + nl, query, qlen);
    n[nl + qlen] = '\0';
    *out = n;
    *path_len = nl;
    return 0;
}
