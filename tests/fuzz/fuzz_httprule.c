/*
 * fuzz_httprule: google.api.http templates (from descriptors, which an
 * upstream's reflection may send) and the request paths and query strings
 * clients send against them (filters/httprule.h). Input: a template, a
 * newline, then a path with an optional "?query". Oracles beyond "no
 * crash": bindings are at most the template's variables, each names one
 * of them, and every value is UTF-8 of the length it says; a path the
 * template was made from (its literals) matches.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/httprule.h"
#include "proxy/base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    if (nl == NULL || (size_t)(nl - (const char *)data) > 512)
        return 0;
    char tmpl[513], why[128];
    size_t tl = (size_t)(nl - (const char *)data);
    memcpy(tmpl, data, tl);
    tmpl[tl] = '\0';
    if (strlen(tmpl) != tl)
        return 0;
    const char *path = nl + 1;
    size_t len = size - tl - 1;
    const char *q = memchr(path, '?', len);
    size_t plen = q ? (size_t)(q - path) : len;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_http_binding_t b[TG_HTTP_TEMPLATE_MAX_VARS];
    tg_http_template_t *t = tg_http_template_parse(tmpl, why, sizeof(why));
    if (t != NULL) {
        size_t nv = 0;
        while (tg_http_template_var(t, nv) != NULL)
            nv++;
        int n = tg_http_template_match(t, path, plen, &a, b, TG_HTTP_TEMPLATE_MAX_VARS);
        if (n > (int)nv)
            abort();
        for (int i = 0; i < n; i++) {
            int known = 0;
            for (size_t k = 0; k < nv; k++)
                known |= strcmp(b[i].field, tg_http_template_var(t, k)) == 0;
            if (!known || !tg_utf8_ok(b[i].value, b[i].len) || b[i].value[b[i].len] != '\0')
                abort();
        }
        /* the template with each `*` made "x", `**` nothing and a variable its pattern (or "x"): it matches */
        char lit[1100];
        size_t o = 0;
        for (const char *c = tmpl; *c && o < sizeof(lit) - 4; c++) {
            if (*c == '{') {
                const char *close = strchr(c, '}'), *eq = memchr(c, '=', close ? (size_t)(close - c) : 0);
                if (close == NULL)
                    break;
                if (eq == NULL) {
                    lit[o++] = 'x';
                    c = close;
                } else {
                    c = eq; /* the pattern follows; its '}' is skipped below */
                }
                continue;
            }
            if (*c == '}')
                continue;
            if (*c == '*' && c[1] == '*') {
                c++;
                if (o > 1 && lit[o - 1] == '/')
                    o--;
                continue;
            }
            lit[o++] = *c == '*' ? 'x' : *c;
        }
        if (o == 0)
            lit[o++] = '/'; /* a template of only a double star made nothing: the root */
        lit[o] = '\0';
        if (o < sizeof(lit) - 4 && strchr(lit, '%') == NULL &&
            tg_http_template_match(t, lit, o, &a, b, TG_HTTP_TEMPLATE_MAX_VARS) < 0) {
            fprintf(stderr, "fuzz_httprule: %s does not match %s\n", lit, tmpl);
            abort();
        }
        tg_http_template_free(t);
    }
    if (q != NULL) {
        int n = tg_http_query_bindings(q + 1, len - plen - 1, &a, b, TG_HTTP_TEMPLATE_MAX_VARS);
        for (int i = 0; i < n && i < TG_HTTP_TEMPLATE_MAX_VARS; i++)
            if (!tg_utf8_ok(b[i].value, b[i].len) || !tg_utf8_ok(b[i].field, strlen(b[i].field)))
                abort();
    }
    tg_arena_free(&a);
    return 0;
}
