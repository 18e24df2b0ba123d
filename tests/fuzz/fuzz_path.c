/* Fuzz target: path normalization (proxy/path.c), the step that decides
 * which route a client's path takes. The first input byte picks the
 * settings (merge_slashes, escaped_slashes, semicolons, backslashes); the
 * rest, up to a NUL, is the request target. Oracles beyond "no crash", for every accepted target:
 *   - the result equals a slow reference written separately from RFC 3986
 *     (percent-decoding of unreserved characters 6.2.2.2, then the
 *     remove_dot_segments algorithm of 5.2.4 as the RFC states it, with
 *     its input and output buffers);
 *   - it has no "." or ".." segment, and no "//" when merging;
 *   - normalizing it again gives it back (idempotent);
 *   - the query is passed on unchanged.
 * And the reference refuses exactly what the normalizer refuses. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/path.h"

/* --- the reference, written from the RFC, not from proxy/path.c ------ */

static int ref_hex(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decoding: unreserved characters decoded (RFC 3986 2.3, 6.2.2.2),
 * other escapes upper-cased; '/' and '\' as the setting says, then every
 * backslash as `backslashes` says; ';' and %3B refused under
 * `semicolons: reject`. -1 when refused. Then runs of '/' merged when
 * asked; then, under `strip`, each ";..." up to a '/' removed (and runs
 * of '/' merged again). */
static long ref_decode(const char *in, size_t n, const tg_path_conf_t *conf, char *out)
{
    static const char unres[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            if (i + 2 >= n || ref_hex(in[i + 1]) < 0 || ref_hex(in[i + 2]) < 0)
                return -1;
            int d = ref_hex(in[i + 1]) * 16 + ref_hex(in[i + 2]);
            i += 2;
            if (d == ';' && conf->semicolons == TG_SEMICOLONS_REJECT)
                return -1;
            if (d == '/' || d == '\\') {
                if (conf->escaped_slashes == TG_ESCAPED_SLASH_REJECT)
                    return -1;
                if (conf->escaped_slashes == TG_ESCAPED_SLASH_KEEP) {
                    w += (size_t)sprintf(out + w, "%%%02X", d);
                    continue;
                }
            } else if (d == 0 || strchr(unres, d) == NULL) {
                w += (size_t)sprintf(out + w, "%%%02X", d);
                continue;
            }
            c = d;
        } else if (c == ';' && conf->semicolons == TG_SEMICOLONS_REJECT) {
            return -1;
        }
        if (c == '\\' && conf->backslashes == TG_BACKSLASH_REJECT)
            return -1;
        if (c == '\\' && conf->backslashes == TG_BACKSLASH_DECODE)
            c = '/';
        out[w++] = (char)c;
    }
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && conf->semicolons == TG_SEMICOLONS_STRIP) {
            size_t r = 0, m = 0;
            for (int in_param = 0; r < w; r++) {
                in_param = out[r] == ';' || (in_param && out[r] != '/');
                if (!in_param)
                    out[m++] = out[r];
            }
            w = m;
        }
        if (conf->merge_slashes) {
            size_t r = 0, m = 0;
            for (; r < w; r++)
                if (!(out[r] == '/' && m > 0 && out[m - 1] == '/'))
                    out[m++] = out[r];
            w = m;
        }
    }
    return (long)w;
}

/* A segment named "." or ".." before its first ';' is a dot-segment with
 * parameters: it loses them, so that 5.2.4 removes it. */
static size_t ref_dot_params(char *p, size_t n)
{
    size_t r = 0, w = 0;
    while (r < n) {
        size_t e = r + 1;
        while (e < n && p[e] != '/')
            e++;
        size_t nl = 0;
        while (r + 1 + nl < e && p[r + 1 + nl] != ';')
            nl++;
        int dot = (nl == 1 && p[r + 1] == '.') || (nl == 2 && p[r + 1] == '.' && p[r + 2] == '.');
        size_t keep = dot ? 1 + nl : e - r;
        memmove(p + w, p + r, keep);
        w += keep;
        r = e;
    }
    return w;
}

static int starts(const char *s, size_t n, const char *p)
{
    size_t l = strlen(p);
    return n >= l && memcmp(s, p, l) == 0;
}

static int is(const char *s, size_t n, const char *p)
{
    return n == strlen(p) && memcmp(s, p, n) == 0;
}

/* RFC 3986 5.2.4, step by step on two buffers. */
static size_t ref_remove_dots(const char *path, size_t n, char *out)
{
    char *in = malloc(n + 1);
    memcpy(in, path, n);
    size_t il = n, ol = 0;
    while (il > 0) {
        if (starts(in, il, "../") || starts(in, il, "./")) { /* A */
            size_t k = in[0] == '.' && in[1] == '.' ? 3 : 2;
            memmove(in, in + k, il - k);
            il -= k;
        } else if (starts(in, il, "/./") || is(in, il, "/.")) { /* B */
            size_t k = is(in, il, "/.") ? 2 : 3;
            memmove(in + 1, in + k, il - k);
            in[0] = '/';
            il -= k - 1;
        } else if (starts(in, il, "/../") || is(in, il, "/..")) { /* C */
            size_t k = is(in, il, "/..") ? 3 : 4;
            memmove(in + 1, in + k, il - k);
            in[0] = '/';
            il -= k - 1;
            while (ol > 0 && out[ol - 1] != '/')
                ol--;
            if (ol > 0)
                ol--;
        } else if (is(in, il, ".") || is(in, il, "..")) { /* D */
            il = 0;
        } else { /* E: the first segment, with its leading '/' if any */
            size_t k = in[0] == '/' ? 1 : 0;
            while (k < il && in[k] != '/')
                k++;
            memcpy(out + ol, in, k);
            ol += k;
            memmove(in, in + k, il - k);
            il -= k;
        }
    }
    free(in);
    if (ol == 0) /* an origin-form path is never empty */
        out[ol++] = '/';
    return ol;
}

/* --- the target --------------------------------------------------------- */

static void check_result(const char *norm, size_t plen, const tg_path_conf_t *conf)
{
    for (size_t s = 0; s < plen;) { /* segments: no "." or "..", no empty one inside when merging */
        size_t e = s + 1;
        while (e < plen && norm[e] != '/')
            e++;
        size_t l = 0; /* the segment's name: up to its first ';' */
        while (s + 1 + l < e && norm[s + 1 + l] != ';')
            l++;
        if ((l == 1 && norm[s + 1] == '.') || (l == 2 && norm[s + 1] == '.' && norm[s + 2] == '.') ||
            (conf->merge_slashes && e - s == 1 && e < plen) ||
            (conf->semicolons != TG_SEMICOLONS_KEEP && memchr(norm + s, ';', e - s) != NULL)) {
            fprintf(stderr, "fuzz_path: dot-segment or '//' left in %.*s\n", (int)plen, norm);
            abort();
        }
        s = e;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    tg_path_conf_t conf = { .merge_slashes = data[0] & 1,
                            .escaped_slashes = (tg_escaped_slash_t)((data[0] >> 1) % 3),
                            .semicolons = (tg_semicolons_t)((data[0] >> 3) % 3),
                            .backslashes = (tg_backslashes_t)((data[0] >> 5) % 3) };
    char *target = malloc(size + 1);
    target[0] = '/'; /* an origin-form target */
    memcpy(target + 1, data + 1, size - 1);
    target[size] = '\0';
    tg_arena_t a;
    tg_arena_init(&a);
    const char *out = NULL, *why = NULL;
    size_t plen = 0;
    int rc = tg_path_normalize(&a, target, &conf, &out, &plen, &why);

    size_t tlen = strlen(target), raw_plen = strcspn(target, "?#");
    char *dec = malloc(3 * tlen + 2), *ref = malloc(3 * tlen + 2);
    long dl = ref_decode(target, raw_plen, &conf, dec);
    if ((dl < 0) != (rc < 0)) {
        fprintf(stderr, "fuzz_path: %s refused by %s only\n", target, rc < 0 ? "the normalizer" : "the reference");
        abort();
    }
    if (rc == 0) {
        size_t rl = ref_remove_dots(dec, ref_dot_params(dec, (size_t)dl), ref);
        if (rl != plen || memcmp(ref, out, rl) != 0) {
            fprintf(stderr, "fuzz_path: %s -> %.*s, the RFC gives %.*s\n", target, (int)plen, out, (int)rl, ref);
            abort();
        }
        const char *q = target[raw_plen] == '?' ? target + raw_plen : "";
        size_t ql = strcspn(q, "#");
        if (strlen(out + plen) != ql || memcmp(out + plen, q, ql) != 0) {
            fprintf(stderr, "fuzz_path: %s: query %s changed to %s\n", target, q, out + plen);
            abort();
        }
        check_result(out, plen, &conf);
        const char *again = NULL;
        size_t plen2 = 0;
        if (tg_path_normalize(&a, out, &conf, &again, &plen2, &why) != 0 || strcmp(again, out) != 0) {
            fprintf(stderr, "fuzz_path: not idempotent: %s -> %s -> %s\n", target, out, again ? again : why);
            abort();
        }
    }
    free(dec);
    free(ref);
    tg_arena_free(&a);
    free(target);
    return 0;
}
