/*
 * config/value.c — scalar value parsing for the config loader. See value.h.
 */
#include "config/value.h"

#include <arpa/inet.h>
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

/* The address as a block of family 4 or 6; IPv4-mapped IPv6 becomes 4. */
static int parse_ip(const char *s, tg_cidr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, out->addr) == 1) {
        out->family = 4;
        out->bits = 32;
        return 0;
    }
    if (inet_pton(AF_INET6, s, out->addr) != 1)
        return -1;
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(out->addr, mapped, 12) == 0) {
        memmove(out->addr, out->addr + 12, 4);
        memset(out->addr + 4, 0, 12);
        out->family = 4;
        out->bits = 32;
        return 0;
    }
    out->family = 6;
    out->bits = 128;
    return 0;
}

static int in_block(const tg_cidr_t *net, const uint8_t *addr, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(net->addr, addr, whole) != 0)
        return 0;
    return rest == 0 || ((net->addr[whole] ^ addr[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

int tg_parse_cidr(const char *s, tg_cidr_t *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    if (parse_ip(buf, out) < 0)
        return -1;
    if (slash != NULL) {
        const char *p = slash + 1;
        uint64_t bits;
        if (parse_number(&p, &bits) < 0 || *p != '\0' || bits > (out->family == 4 ? 32u : 128u))
            return -1;
        out->bits = (uint8_t)bits;
        /* host bits set ("10.0.0.1/8") is almost always a typo: refuse it */
        for (unsigned i = out->bits; i < 128; i++)
            if (out->addr[i / 8] & (0x80 >> (i % 8)))
                return -1;
    }
    return 0;
}

int tg_cidr_list_match(const tg_cidr_t *v, size_t n, const char *addr)
{
    if (n == 0)
        return 0;
    tg_cidr_t a;
    if (parse_ip(addr, &a) < 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].family == a.family && in_block(&v[i], a.addr, v[i].bits))
            return 1;
    return 0;
}
