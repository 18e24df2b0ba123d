/*
 * config/value.c — scalar value parsing for the config loader. See value.h.
 */
#include "config/value.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_number(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    while (isdigit((unsigned char)*s)) {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

static int mul_checked(uint64_t v, uint64_t m, uint64_t *out)
{
    if (m != 0 && v > UINT64_MAX / m)
        return -1;
    *out = v * m;
    return 0;
}

int tg_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
    };
    uint64_t v;
    if (s == NULL || parse_number(&s, &v) < 0)
        return -1;
    if (*s == '\0')
        return v == 0 ? (*out_ms = 0, 0) : -1; /* a unit is required */
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(s, units[i].unit) == 0)
            return mul_checked(v, units[i].ms, out_ms);
    return -1;
}

int tg_parse_size(const char *s, uint64_t *out)
{
    static const struct { const char *unit; uint64_t mul; } units[] = {
        { "", 1 }, { "B", 1 },
        { "KiB", 1024ULL }, { "MiB", 1024ULL * 1024 }, { "GiB", 1024ULL * 1024 * 1024 },
        { "KB", 1000ULL }, { "MB", 1000ULL * 1000 }, { "GB", 1000ULL * 1000 * 1000 },
    };
    uint64_t v;
    if (s == NULL || parse_number(&s, &v) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(s, units[i].unit) == 0)
            return mul_checked(v, units[i].mul, out);
    return -1;
}

int tg_parse_hostport(const char *s, char *host, size_t hostcap, uint16_t *port)
{
    const char *colon, *h = s;
    size_t hlen;
    if (s == NULL || *s == '\0')
        return -1;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -1;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= hostcap)
        return -1;
    const char *p = colon + 1;
    uint64_t v;
    if (parse_number(&p, &v) < 0 || *p != '\0' || v == 0 || v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

char *tg_expand_env(const char *s, char **err_var)
{
    size_t cap = strlen(s) + 1, len = 0;
    char *out = malloc(cap);
    *err_var = NULL;
    if (out == NULL)
        return NULL;
    while (*s) {
        const char *piece = s;
        size_t plen = 1;
        if (s[0] == '$' && s[1] == '{') {
            const char *end = strchr(s + 2, '}');
            if (end == NULL || end == s + 2) {
                free(out);
                return NULL;
            }
            size_t nlen = (size_t)(end - (s + 2));
            char name[256];
            if (nlen >= sizeof(name)) {
                free(out);
                return NULL;
            }
            memcpy(name, s + 2, nlen);
            name[nlen] = '\0';
            piece = getenv(name);
            if (piece == NULL) {
                free(out);
                *err_var = strdup(name);
                return NULL;
            }
            plen = strlen(piece);
            s = end + 1;
        } else {
            s++;
        }
        if (len + plen + 1 > cap) {
            size_t ncap = (len + plen + 1) * 2;
            char *n = realloc(out, ncap);
            if (n == NULL) {
                free(out);
                return NULL;
            }
            out = n;
            cap = ncap;
        }
        memcpy(out + len, piece, plen);
        len += plen;
    }
    out[len] = '\0';
    return out;
}
