/*
 * proxy/base/http.h — the protocol-neutral HTTP message model shared by the
 * downstream and upstream codecs and the exchange: request and response
 * heads, an ordered header list, and the header rules a proxy applies
 * (hop-by-hop removal, forwarding headers, route header edits).
 *
 * Strings in a message point into the owning exchange's arena and are
 * NUL-terminated; a message lives exactly as long as its exchange.
 */
#ifndef TG_BASE_HTTP_H
#define TG_BASE_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "proxy/base/arena.h"
#include "proxy/base/json.h" /* tg_json_escape, once declared here */

typedef struct tg_kv {
    char *name;
    char *value;
} tg_kv_t;

/* request_headers / response_headers (routes, the headers filter): applied
 * in the order remove, set, add. Owned by the config that holds them. */
typedef struct tg_header_rules {
    tg_kv_t *add;
    size_t n_add;
    tg_kv_t *set;
    size_t n_set;
    char **remove;
    size_t n_remove;
} tg_header_rules_t;

typedef struct tg_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} tg_header_t;

/* checked: the first `checked` fields are known to pass
 * tg_http_field_safe() — set by whoever validated them by the same rules
 * (the HTTP/1.1 parser, a cache entry checked when stored), so the
 * writers check only the fields after them. The functions below keep it
 * true: compaction counts what stays of the prefix, a joined value leaves
 * it, and an add after the list was cut short (n set lower by hand) lowers
 * it. Zero (any initializer that leaves it out) means "check them all". */
typedef struct tg_headers {
    tg_header_t *v;
    size_t n, cap;
    size_t checked;
} tg_headers_t;

/* How a message body is delimited on the wire it arrived on. */
typedef enum {
    TG_BODY_NONE = 0,
    TG_BODY_LENGTH,   /* Content-Length */
    TG_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
    TG_BODY_EOF,      /* until the connection closes (responses only) */
    TG_BODY_TUNNEL,   /* raw bytes after a 101 Switching Protocols */
} tg_body_kind_t;

typedef struct tg_request {
    const char *method;
    const char *target;     /* origin-form: path and query (the path normalized once the exchange starts) */
    size_t path_len;        /* length of the path part of target (before '?') */
    const char *raw_target; /* the target as received (set when the exchange starts) */
    const char *authority;  /* Host header value, NULL if absent */
    int version;            /* 10 or 11 */
    tg_headers_t headers;
    tg_body_kind_t body;
    uint64_t content_length;
    unsigned keep_alive : 1;
    unsigned expect_continue : 1;
    unsigned upgrade : 1;
    unsigned is_head : 1;
} tg_request_t;

typedef struct tg_response {
    int status;
    int version;
    tg_headers_t headers;
    tg_body_kind_t body;
    uint64_t content_length;
    tg_headers_t trailers;  /* after the body (HTTP/2 upstreams, chunked trailers) */
    unsigned keep_alive : 1;
} tg_response_t;

/* Appends a header; name and value must outlive the list (arena memory).
 * The new field is not in the checked prefix. */
int tg_headers_add(tg_headers_t *h, tg_arena_t *a, const char *name, size_t nlen, const char *value, size_t vlen);
/* The same for a field the caller made safe by construction (literals,
 * digits, a name the config checked as a token): when every field before
 * it is checked, it joins the checked prefix. Debug builds verify it. */
int tg_headers_add_checked(tg_headers_t *h, tg_arena_t *a, const char *name, size_t nlen, const char *value,
                           size_t vlen);
/* First header with this name (len bytes, lowercase; matched in any
 * case), or NULL. */
const tg_header_t *tg_headers_find(const tg_headers_t *h, const char *name, size_t len);
/* The same for a NUL-terminated name (a literal's length is known at
 * compile time: no strlen per lookup). */
static inline const tg_header_t *tg_headers_get(const tg_headers_t *h, const char *name)
{
    return tg_headers_find(h, name, strlen(name));
}
/* Number of headers with this name. */
size_t tg_headers_count(const tg_headers_t *h, const char *name);
/* Removes every header with this name. */
void tg_headers_remove(tg_headers_t *h, const char *name);
/* Removes all headers with this name, then adds one. */
int tg_headers_set(tg_headers_t *h, tg_arena_t *a, const char *name, const char *value);
/* The same with tg_headers_add_checked: a value safe by construction. */
int tg_headers_set_checked(tg_headers_t *h, tg_arena_t *a, const char *name, const char *value);
/* Is f (a field of h) in its checked prefix? */
static inline int tg_headers_in_checked(const tg_headers_t *h, const tg_header_t *f)
{
    return f >= h->v && (size_t)(f - h->v) < h->checked;
}
/* Makes the field lines of a list header one line, where the first was,
 * values joined by ", " in order (RFC 9110 5.3: several lines of a list
 * header are one list). Nothing to do for one line or none. -1 when out of
 * memory (the list is then unchanged). */
int tg_headers_join_len(tg_headers_t *h, tg_arena_t *a, const char *name, size_t len);
static inline int tg_headers_join(tg_headers_t *h, tg_arena_t *a, const char *name)
{
    return tg_headers_join_len(h, a, name, strlen(name));
}
/* A name and its length, for lists of literal names (TG_NAME("via")). */
typedef struct tg_name {
    const char *s;
    size_t len;
} tg_name_t;
#define TG_NAME(lit) { lit, sizeof(lit) - 1 }
/* The same for each of n (at most 8) names, the list walked once to find
 * which have several lines. */
int tg_headers_join_each(tg_headers_t *h, tg_arena_t *a, const tg_name_t *names, size_t n);

/* Does a comma-separated header list (e.g. Connection) contain token? */
int tg_header_has_token(const char *value, size_t len, const char *token);

/* Removes hop-by-hop headers (RFC 9110 7.6.1): Connection and every header
 * it names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding,
 * Upgrade; also Content-Length and Expect, which the proxy regenerates. */
void tg_headers_strip_hop_by_hop(tg_headers_t *h);

/* The one list of hop-by-hop names (RFC 9110 7.6.1, plus the framing the
 * proxy regenerates and Expect). */
int tg_http_is_hop_by_hop(const char *name, size_t len);
/* Calls fn with each option of every Connection header; stops at, and
 * returns, the first nonzero result. */
int tg_headers_each_connection_option(const tg_headers_t *h, int (*fn)(const char *opt, size_t len, void *arg),
                                      void *arg);
/* Removes hop-by-hop headers, every header a Connection option names
 * (from the first 16 Connection headers), and those also() accepts. */
void tg_headers_strip_connection(tg_headers_t *h, int (*also)(const char *name, size_t len, void *arg), void *arg);

/* Applies a route's request_headers/response_headers rules. */
int tg_headers_apply_rules(tg_headers_t *h, tg_arena_t *a, const tg_header_rules_t *r);

/* The value of a hex digit (either case), or -1. */
static inline int tg_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Case-insensitive equality of n bytes, where lower is lowercase; the
 * first byte is compared before calling into libc. */
static inline int tg_http_ieq(const char *s, const char *lower, size_t n)
{
    return n == 0 || ((((unsigned char)s[0] ^ (unsigned char)lower[0]) & ~0x20) == 0 &&
                      (memcmp(s, lower, n) == 0 || strncasecmp(s, lower, n) == 0));
}

/* Is the field's name one of names (lower-case), in any case? */
static inline int tg_header_named(const tg_header_t *h, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) == h->name_len && tg_http_ieq(h->name, names[i], h->name_len))
            return 1;
    return 0;
}
#define TG_HEADER_NAMED(h, names) tg_header_named((h), (names), sizeof(names) / sizeof((names)[0]))

/* The name in lowercase (HTTP/2 field names must be): the name itself when
 * it already is (always, for names from HTTP/2), else a copy in the
 * arena. NULL when the copy cannot be made. */
const char *tg_http_lower_name(tg_arena_t *a, const char *name, size_t len);
/* Copies n bytes of src to dst with ASCII A-Z lowered (other bytes as
 * they are), eight at a time. */
void tg_ascii_lower(char *dst, const char *src, size_t n);

/* RFC 9110 token characters. */
int tg_http_is_tchar(unsigned char c);

/* The one egress check, made wherever a field is written (HTTP/1 heads
 * and trailers, HTTP/2 header lists, both directions): the name is a
 * non-empty token and the value is field-content, so CR, LF, NUL and the
 * other control bytes but HTAB never leave, whoever produced them (a
 * client, a filter, a JWT claim, the config). */
int tg_http_field_safe(const char *name, size_t nlen, const char *value, size_t vlen);
/* The same for field i of h: known for the checked prefix, else checked. */
static inline int tg_headers_field_safe(const tg_headers_t *h, size_t i)
{
    const tg_header_t *f = &h->v[i];
    return i < h->checked || tg_http_field_safe(f->name, f->name_len, f->value, f->value_len);
}
/* What a writer returns when a field fails that check. */
#define TG_HTTP_UNSAFE_FIELD (-2)

/* Bytes an exchange lets queue toward a peer before it stops reading from
 * the other side: the per-direction memory bound of one exchange, which
 * the codecs of both sides size their buffers and watermarks from. */
#define TG_EXCHANGE_HWM (128 * 1024)

/* Sends all n bytes on a blocking socket (no SIGPIPE); 0 or -1. For the
 * helpers that run apart from the event loops (tollgate ctl, the span
 * exporter). */
int tg_send_all(int fd, const void *p, size_t n);

/* Writes v in decimal at p (no NUL); returns the number of digits. */
size_t tg_fmt_u64(char *p, uint64_t v);
/* Writes v as 16 lowercase hex digits at p, most significant first (no
 * NUL). */
void tg_fmt_hex64(char *p, uint64_t v);

/* A client address kept in binary (family AF_INET or AF_INET6, ip its 4
 * or 16 bytes) as text into buf (at least 46 bytes); "unknown" for any
 * other family. IPv4 without printf: HTTP/1.1 connections format their
 * client's address per request rather than keep it as text. */
const char *tg_addr_text(int family, const uint8_t *ip, char *buf, size_t cap);

/* The standard reason phrase for a status code ("Unknown" if none). */
const char *tg_http_reason(int status);

#endif
