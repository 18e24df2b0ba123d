/*
 * proxy/base/http.c — header list and the proxy's header rules. See http.h.
 */
#include "proxy/base/http.h"

#include "proxy/base/h1_parse.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <errno.h>
#include <strings.h>

int tg_http_is_tchar(unsigned char c)
{
    return tg_h1_is_tchar(c);
}

int tg_http_field_safe(const char *name, size_t nlen, const char *value, size_t vlen)
{
    return nlen != 0 && tg_h1_token_len(name, nlen) == nlen && tg_h1_field_content_len(value, vlen) == vlen;
}

int tg_headers_add(tg_headers_t *h, tg_arena_t *a, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 16;
        tg_header_t *nv = tg_arena_alloc(a, ncap * sizeof(*nv));
        if (nv == NULL)
            return -1;
        if (h->n)
            memcpy(nv, h->v, h->n * sizeof(*nv));
        h->v = nv;
        h->cap = ncap;
    }
    if (h->checked > h->n) /* the list was cut short by hand: its place is not checked */
        h->checked = h->n;
    h->v[h->n++] = (tg_header_t){ name, nlen, value, vlen };
    return 0;
}

int tg_headers_add_checked(tg_headers_t *h, tg_arena_t *a, const char *name, size_t nlen, const char *value,
                           size_t vlen)
{
    int all = h->checked >= h->n;
    if (tg_headers_add(h, a, name, nlen, value, vlen) < 0)
        return -1;
    assert(tg_http_field_safe(name, nlen, value, vlen));
    if (all)
        h->checked = h->n;
    return 0;
}

/* name is lowercase. Names from HTTP/2 always are, so memcmp decides most
 * lookups; the first-letter test keeps strncasecmp off the many
 * same-length misses (content-type / x-request-id / grpc-timeout). */
static int name_eq(const tg_header_t *hd, const char *name, size_t len)
{
    return hd->name_len == len && tg_http_ieq(hd->name, name, len);
}

const tg_header_t *tg_headers_find(const tg_headers_t *h, const char *name, size_t len)
{
    for (size_t i = 0; i < h->n; i++)
        if (name_eq(&h->v[i], name, len))
            return &h->v[i];
    return NULL;
}

size_t tg_headers_count(const tg_headers_t *h, const char *name)
{
    size_t len = strlen(name), cnt = 0;
    for (size_t i = 0; i < h->n; i++)
        cnt += name_eq(&h->v[i], name, len);
    return cnt;
}

/* Compaction keeps order, so the fields kept from the checked prefix
 * are the new list's first ones: kept_checked counts them. */
static inline void keep(tg_headers_t *h, size_t *w, size_t r, size_t *kept_checked)
{
    *kept_checked += r < h->checked;
    h->v[(*w)++] = h->v[r];
}

static void remove_len(tg_headers_t *h, const char *name, size_t len)
{
    size_t w = 0, c = 0;
    for (size_t r = 0; r < h->n; r++)
        if (!name_eq(&h->v[r], name, len))
            keep(h, &w, r, &c);
    h->n = w;
    h->checked = c;
}

void tg_headers_remove(tg_headers_t *h, const char *name)
{
    remove_len(h, name, strlen(name));
}

int tg_headers_set(tg_headers_t *h, tg_arena_t *a, const char *name, const char *value)
{
    tg_headers_remove(h, name);
    return tg_headers_add(h, a, name, strlen(name), value, strlen(value));
}

int tg_headers_set_checked(tg_headers_t *h, tg_arena_t *a, const char *name, const char *value)
{
    tg_headers_remove(h, name);
    return tg_headers_add_checked(h, a, name, strlen(name), value, strlen(value));
}

int tg_headers_join_len(tg_headers_t *h, tg_arena_t *a, const char *name, size_t len)
{
    size_t total = 0, lines = 0, first = 0;
    for (size_t i = 0; i < h->n; i++)
        if (name_eq(&h->v[i], name, len)) {
            if (lines++ == 0)
                first = i;
            total += h->v[i].value_len + 2;
        }
    if (lines < 2)
        return 0;
    char *v = tg_arena_alloc(a, total + 1);
    if (v == NULL)
        return -1;
    size_t o = 0, w = 0, c = 0;
    for (size_t r = 0; r < h->n; r++) {
        if (!name_eq(&h->v[r], name, len)) {
            keep(h, &w, r, &c);
            continue;
        }
        if (o > 0) {
            v[o++] = ',';
            v[o++] = ' ';
        }
        memcpy(v + o, h->v[r].value, h->v[r].value_len);
        o += h->v[r].value_len;
        if (r == first)
            keep(h, &w, r, &c); /* keeps its place; its value is set below */
    }
    v[o] = '\0';
    h->n = w;
    h->checked = c < first ? c : first; /* the joined value is new: checked again */
    h->v[first].value = v;
    h->v[first].value_len = o;
    return 0;
}

int tg_headers_join_each(tg_headers_t *h, tg_arena_t *a, const tg_name_t *names, size_t n)
{
    size_t lines[8] = { 0 };
    if (n > 8)
        return -1;
    for (size_t i = 0; i < h->n; i++)
        for (size_t k = 0; k < n; k++)
            lines[k] += name_eq(&h->v[i], names[k].s, names[k].len);
    for (size_t k = 0; k < n; k++)
        if (lines[k] > 1 && tg_headers_join_len(h, a, names[k].s, names[k].len) < 0)
            return -1;
    return 0;
}

int tg_header_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

int tg_http_is_hop_by_hop(const char *name, size_t len)
{
    switch (len) {
    case 2: return tg_http_ieq(name, "te", 2);
    case 6: return tg_http_ieq(name, "expect", 6);
    case 7: return tg_http_ieq(name, "trailer", 7) || tg_http_ieq(name, "upgrade", 7);
    case 10: return tg_http_ieq(name, "keep-alive", 10) || tg_http_ieq(name, "connection", 10);
    case 14: return tg_http_ieq(name, "content-length", 14);
    case 16: return tg_http_ieq(name, "proxy-connection", 16);
    case 17: return tg_http_ieq(name, "transfer-encoding", 17);
    default: return 0;
    }
}

int tg_headers_each_connection_option(const tg_headers_t *h, int (*fn)(const char *opt, size_t len, void *arg),
                                      void *arg)
{
    for (size_t i = 0; i < h->n; i++) {
        if (!name_eq(&h->v[i], "connection", 10))
            continue;
        const char *v = h->v[i].value;
        size_t len = h->v[i].value_len, p = 0;
        while (p < len) {
            while (p < len && (v[p] == ' ' || v[p] == '\t' || v[p] == ','))
                p++;
            size_t s = p;
            while (p < len && v[p] != ',' && v[p] != ' ' && v[p] != '\t')
                p++;
            int r = p > s ? fn(v + s, p - s, arg) : 0;
            if (r)
                return r;
        }
    }
    return 0;
}

static int option_names(const char *opt, size_t len, void *arg)
{
    const tg_header_t *hd = arg;
    return len == hd->name_len && tg_http_ieq(hd->name, opt, len);
}

/* The options of the Connection fields, read once (up to a bound; past it
 * each field's name is checked against the fields themselves). */
struct conn_opts {
    struct {
        const char *p;
        size_t len;
    } v[32];
    size_t n;
    int overflow;
};

static int collect_option(const char *opt, size_t len, void *arg)
{
    struct conn_opts *o = arg;
    if (o->n == sizeof(o->v) / sizeof(o->v[0])) {
        o->overflow = 1;
        return 1;
    }
    o->v[o->n].p = opt;
    o->v[o->n++].len = len;
    return 0;
}

static int named_by(const struct conn_opts *o, const tg_headers_t *conn, const tg_header_t *hd)
{
    if (o->overflow)
        return tg_headers_each_connection_option(conn, option_names, (void *)hd);
    for (size_t i = 0; i < o->n; i++)
        if (o->v[i].len == hd->name_len && tg_http_ieq(hd->name, o->v[i].p, hd->name_len))
            return 1;
    return 0;
}

void tg_headers_strip_connection(tg_headers_t *h, int (*also)(const char *name, size_t len, void *arg), void *arg)
{
    /* Compaction overwrites entries already passed, Connection headers
     * among them: read the options from a list of those first. */
    tg_header_t conn_v[16];
    tg_headers_t conn = { conn_v, 0, 16 };
    for (size_t i = 0; i < h->n; i++)
        if (name_eq(&h->v[i], "connection", 10) && conn.n < conn.cap)
            conn_v[conn.n++] = h->v[i];
    struct conn_opts opts;
    opts.n = 0;
    opts.overflow = 0;
    if (conn.n)
        tg_headers_each_connection_option(&conn, collect_option, &opts);
    size_t w = 0, c = 0;
    for (size_t r = 0; r < h->n; r++) {
        const tg_header_t *hd = &h->v[r];
        if (tg_http_is_hop_by_hop(hd->name, hd->name_len) || (also && also(hd->name, hd->name_len, arg)) ||
            (opts.n && named_by(&opts, &conn, hd)))
            continue;
        keep(h, &w, r, &c);
    }
    h->n = w;
    h->checked = c;
}

void tg_headers_strip_hop_by_hop(tg_headers_t *h)
{
    tg_headers_strip_connection(h, NULL, NULL);
}

/* Two digits per division, written from the end once the length is known. */
size_t tg_fmt_u64(char *p, uint64_t v)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                   "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                   "8081828384858687888990919293949596979899";
    size_t n = 1;
    for (uint64_t t = v; t >= 10; t /= 10)
        n++;
    char *q = p + n;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        *--q = pairs[d + 1];
        *--q = pairs[d];
    }
    if (v >= 10) {
        *--q = pairs[v * 2 + 1];
        *--q = pairs[v * 2];
    } else {
        *--q = (char)('0' + v);
    }
    return n;
}

/* Eight hex digits from 32 bits, all lanes at once: each nibble spread to
 * a byte of its own, then '0' or 'a' - 10 added by whether it is >= 10. */
static uint64_t hex8(uint32_t v)
{
    uint64_t x = v;
    x = ((x & 0xffff0000ULL) << 16) | (x & 0xffffULL);
    x = ((x & 0x0000ff000000ff00ULL) << 8) | (x & 0x000000ff000000ffULL);
    x = ((x & 0x00f000f000f000f0ULL) << 4) | (x & 0x000f000f000f000fULL);
    uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
    x += 0x3030303030303030ULL + letters * ('a' - '0' - 10);
    return __builtin_bswap64(x); /* the lowest nibble was in the first byte: the last digit */
}

void tg_fmt_hex64(char *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t hi = hex8((uint32_t)(v >> 32)), lo = hex8((uint32_t)v);
    memcpy(p, &hi, 8);
    memcpy(p + 8, &lo, 8);
#else
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++)
        p[i] = hex[(v >> (60 - 4 * i)) & 15];
#endif
}

int tg_headers_apply_rules(tg_headers_t *h, tg_arena_t *a, const tg_header_rules_t *r)
{
    for (size_t i = 0; i < r->n_remove; i++)
        tg_headers_remove(h, r->remove[i]);
    for (size_t i = 0; i < r->n_set; i++)
        if (tg_headers_set(h, a, r->set[i].name, r->set[i].value) < 0)
            return -1;
    for (size_t i = 0; i < r->n_add; i++)
        if (tg_headers_add(h, a, r->add[i].name, strlen(r->add[i].name), r->add[i].value,
                           strlen(r->add[i].value)) < 0)
            return -1;
    return 0;
}

const char *tg_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* A word's bytes in A-Z, flagged in their high bits: each byte's low
 * seven bits plus a constant cross 0x80 exactly at 'A' and past 'Z' (no
 * carry leaves a byte), and a byte with its own high bit set is no letter. */
static inline uint64_t upper_flags(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t h = w & ~highs;
    return (h + ones * (0x80 - 'A')) & ~(h + ones * (0x7f - 'Z')) & ~w & highs;
}

void tg_ascii_lower(char *dst, const char *src, size_t n)
{
    if (n < 8) {
        for (size_t i = 0; i < n; i++)
            dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] + 32 : src[i]);
        return;
    }
    uint64_t w;
    for (size_t i = 0; i + 8 < n; i += 8) {
        memcpy(&w, src + i, 8);
        w |= upper_flags(w) >> 2; /* 0x80 >> 2: the case bit */
        memcpy(dst + i, &w, 8);
    }
    memcpy(&w, src + n - 8, 8); /* the last word, overlapping: lowering twice is lowering once */
    w |= upper_flags(w) >> 2;
    memcpy(dst + n - 8, &w, 8);
}

const char *tg_http_lower_name(tg_arena_t *a, const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < len && !(name[i] >= 'A' && name[i] <= 'Z'); i++)
        ;
    if (i == len)
        return name;
    char *p = tg_arena_alloc(a, len + 1);
    if (p == NULL)
        return NULL;
    tg_ascii_lower(p, name, len);
    p[len] = '\0';
    return p;
}

int tg_send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

const char *tg_addr_text(int family, const uint8_t *ip, char *buf, size_t cap)
{
    if (family == AF_INET && cap >= 16) {
        char *p = buf;
        for (int i = 0; i < 4; i++) {
            if (i)
                *p++ = '.';
            p += tg_fmt_u64(p, ip[i]);
        }
        *p = '\0';
        return buf;
    }
    if (family == AF_INET6 && inet_ntop(AF_INET6, ip, buf, (socklen_t)cap) != NULL)
        return buf;
    snprintf(buf, cap, "unknown");
    return buf;
}
