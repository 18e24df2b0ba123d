/*
 * proxy/base/h1_parse.c — strict, incremental, zero-copy HTTP/1.1 parsing.
 * See h1_parse.h for the contract.
 *
 * Each state of the head machine owns a tight loop over the bytes it
 * accepts (a table lookup per byte), so a token is scanned once; a state
 * that runs out of input saves its position and the next call goes on
 * from there. Framing (Content-Length, Transfer-Encoding, Connection) is
 * decided from the fields as each one completes, while its bytes are
 * still in cache.
 */
#include "proxy/base/h1_parse.h"

#include <string.h>

#include "proxy/base/http.h"

/* ---- character classes (RFC 9110 5.6.2, 5.5; RFC 9112 3.2) ---- */

/* One table per class, each written as disjoint ranges. */
static const unsigned char tchar_tab[256] = {
    ['!'] = 1, ['#' ... '\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['0' ... '9'] = 1,
    ['A' ... 'Z'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['a' ... 'z'] = 1, ['|'] = 1, ['~'] = 1,
};
/* field-content: HTAB, SP, VCHAR, obs-text */
static const unsigned char value_tab[256] = { ['\t'] = 1, [' ' ... 0x7e] = 1, [0x80 ... 0xff] = 1 };
/* request-target: visible ASCII */
static const unsigned char target_tab[256] = { [0x21 ... 0x7e] = 1 };
/* quoted-string text: HTAB, SP, VCHAR but '"' and '\\', obs-text */
static const unsigned char qdtext_tab[256] = {
    ['\t'] = 1, [' '] = 1, ['!'] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7e] = 1, [0x80 ... 0xff] = 1,
};

#define IS(c, tab) (tab[(unsigned char)(c)])
#define C_TCHAR tchar_tab
#define C_VALUE value_tab
#define C_TARGET target_tab
#define C_QDTEXT qdtext_tab
#define IS_WS(c) ((c) == ' ' || (c) == '\t')

/* Word-at-a-time scans for the two long runs of a head, values and
 * targets: eight bytes are checked together (the classic has-less-than
 * bit trick; exact as a yes/no), and the table loop finishes the run and
 * decides the byte that stopped it. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
#define HAS_LESS(w, n) (((w) - ONES * (n)) & ~(w) & HIGHS)
#define HAS_BYTE(w, n) HAS_LESS((w) ^ (ONES * (n)), 1)

/* The word's first byte below 0x20 or equal to 0x7f, by its flag: the
 * lowest flag of the has-less/has-byte trick is exact (a borrow can only
 * raise false flags above a true one), and the byte order is little-endian
 * on the machines tollgate builds for; elsewhere the byte loop decides. */
static inline size_t scan_value(const unsigned char *b, size_t i, size_t len)
{
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        uint64_t m = HAS_LESS(w, 0x20) | HAS_BYTE(w, 0x7f); /* a control byte, HTAB included */
        if (m == 0) {
            i += 8;
            continue;
        }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        i += (size_t)__builtin_ctzll(m) >> 3;
        if (b[i] != '\t')
            return i;
        i++; /* HTAB belongs to a value: on past it */
#else
        break;
#endif
    }
    while (i < len && value_tab[b[i]])
        i++;
    return i;
}

/* The run of token characters from b[i], four at a time. */
static inline size_t scan_token(const unsigned char *b, size_t i, size_t len)
{
    while (i + 4 <= len && (tchar_tab[b[i]] & tchar_tab[b[i + 1]] & tchar_tab[b[i + 2]] & tchar_tab[b[i + 3]]))
        i += 4;
    while (i < len && tchar_tab[b[i]])
        i++;
    return i;
}

static inline size_t scan_target(const unsigned char *b, size_t i, size_t len)
{
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        if (HAS_LESS(w, 0x21) | HAS_BYTE(w, 0x7f) | (w & HIGHS))
            break;
    }
    while (i < len && target_tab[b[i]])
        i++;
    return i;
}

size_t tg_h1_field_content_len(const char *v, size_t len)
{
    const unsigned char *b = (const unsigned char *)v;
    if (len < 8)
        return scan_value(b, 0, len);
    /* whole words, then the last eight bytes (overlapping): a clean value
     * takes no byte loop; anything flagged is decided byte by byte */
    size_t i = 0;
    uint64_t w;
    for (; i + 8 < len; i += 8) {
        memcpy(&w, b + i, 8);
        if (HAS_LESS(w, 0x20) | HAS_BYTE(w, 0x7f))
            return scan_value(b, i, len);
    }
    memcpy(&w, b + len - 8, 8);
    if (!(HAS_LESS(w, 0x20) | HAS_BYTE(w, 0x7f)))
        return len;
    return scan_value(b, i, len);
}

size_t tg_h1_token_len(const char *s, size_t len)
{
    return scan_token((const unsigned char *)s, 0, len);
}

int tg_h1_is_tchar(unsigned char c)
{
    return IS(c, C_TCHAR) != 0;
}

/* name holds token characters only, so OR-ing 0x20 folds letters and
 * can alias nothing else that a lowercase literal holds. */
static int ieq(const unsigned char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != (unsigned char)lower[i])
            return 0;
    return 1;
}

int tg_h1_span_ieq(const char *buf, tg_h1_span_t s, const char *lower, size_t n)
{
    if (s.len != n)
        return 0;
    const unsigned char *b = (const unsigned char *)buf + s.off;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = b[i];
        if (c >= 'A' && c <= 'Z')
            c |= 0x20;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* ---- head ---- */

enum {
    S_START = 0,
    S_START_LF,
    S_METHOD,
    S_TARGET,
    S_VERSION,
    S_STATUS,
    S_REASON,
    S_LINE_LF,
    S_FIELD_START,
    S_NAME,
    S_OWS,
    S_VALUE,
    S_FIELD_LF,
    S_END_LF,
    S_DONE,
};

static tg_h1p_result_t fail(tg_h1_parser_t *p, uint16_t status, const char *msg)
{
    p->error_status = status;
    p->error = msg;
    return TG_H1P_ERROR;
}

void tg_h1_parser_init(tg_h1_parser_t *p, tg_h1_kind_t kind)
{
    memset(p, 0, sizeof(*p));
    p->kind = (uint8_t)kind;
}

void tg_h1_parse_trailers_begin(tg_h1_parser_t *p)
{
    p->in_trailers = 1;
    p->state = S_FIELD_START;
    p->pos = 0;
    p->mark = 0;
}

static uint8_t classify(const unsigned char *n, uint32_t len)
{
    switch (len) {
    case 2:
        return ieq(n, "te", 2) ? TG_H1F_TE : TG_H1F_OTHER;
    case 4:
        return ieq(n, "host", 4) ? TG_H1F_HOST : TG_H1F_OTHER;
    case 6:
        return ieq(n, "expect", 6) ? TG_H1F_EXPECT : TG_H1F_OTHER;
    case 7:
        return ieq(n, "upgrade", 7) ? TG_H1F_UPGRADE : ieq(n, "trailer", 7) ? TG_H1F_TRAILER : TG_H1F_OTHER;
    case 10:
        return ieq(n, "connection", 10)   ? TG_H1F_CONNECTION
               : ieq(n, "keep-alive", 10) ? TG_H1F_KEEP_ALIVE
                                          : TG_H1F_OTHER;
    case 14:
        return ieq(n, "content-length", 14) ? TG_H1F_CONTENT_LENGTH : TG_H1F_OTHER;
    case 16:
        return ieq(n, "proxy-connection", 16) ? TG_H1F_PROXY_CONNECTION : TG_H1F_OTHER;
    case 17:
        return ieq(n, "transfer-encoding", 17) ? TG_H1F_TRANSFER_ENCODING : TG_H1F_OTHER;
    default:
        return TG_H1F_OTHER;
    }
}

/* Content-Length = 1*DIGIT; a list of identical values (from a sender
 * that merged repeated fields) is accepted as one (RFC 9110 8.6). */
static tg_h1p_result_t on_content_length(tg_h1_parser_t *p, const unsigned char *v, uint32_t len)
{
    uint32_t i = 0;
    for (;;) {
        uint64_t x = 0;
        uint32_t start = i;
        for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
            unsigned d = v[i] - '0';
            if (x > (UINT64_MAX - d) / 10 || i - start >= 19)
                return fail(p, 400, "Content-Length too large");
            x = x * 10 + d;
        }
        if (i == start)
            return fail(p, 400, "invalid Content-Length");
        if (p->has_content_length && x != p->content_length)
            return fail(p, 400, "conflicting Content-Length values");
        p->has_content_length = 1;
        p->content_length = x;
        while (i < len && IS_WS(v[i]))
            i++;
        if (i == len)
            return TG_H1P_FIELD;
        if (v[i++] != ',')
            return fail(p, 400, "invalid Content-Length");
        while (i < len && IS_WS(v[i]))
            i++;
    }
}

/* Transfer-Encoding: a list of codings, read across repeated fields in
 * order. Only a single, final `chunked` can be framed; codings before it
 * are not supported (501); anything after it, a repeated `chunked`, an
 * empty element or a parameter is an error. */
static tg_h1p_result_t on_transfer_encoding(tg_h1_parser_t *p, const unsigned char *v, uint32_t len)
{
    uint32_t i = 0;
    p->has_transfer_encoding = 1;
    for (;;) {
        uint32_t start = i;
        while (i < len && IS(v[i], C_TCHAR))
            i++;
        if (i == start)
            return fail(p, 400, "invalid Transfer-Encoding");
        if (p->te_chunked_last)
            return fail(p, 400, "chunked is not the final transfer coding");
        if (i - start == 7 && ieq(v + start, "chunked", 7))
            p->te_chunked_last = 1;
        else
            p->te_other = 1;
        while (i < len && IS_WS(v[i]))
            i++;
        if (i == len)
            return TG_H1P_FIELD;
        if (v[i++] != ',')
            return fail(p, 400, "invalid Transfer-Encoding");
        while (i < len && IS_WS(v[i]))
            i++;
    }
}

/* Connection: the options that change framing or keep-alive. Other
 * tokens name hop-by-hop fields, which the proxy removes later. */
static void on_connection(tg_h1_parser_t *p, const unsigned char *v, uint32_t len)
{
    uint32_t i = 0;
    while (i < len) {
        while (i < len && (IS_WS(v[i]) || v[i] == ','))
            i++;
        uint32_t start = i;
        while (i < len && v[i] != ',' && !IS_WS(v[i]))
            i++;
        uint32_t n = i - start;
        if (n == 5 && tg_h1_span_ieq((const char *)v, (tg_h1_span_t){ start, n }, "close", 5))
            p->conn_close = 1;
        else if (n == 10 && tg_h1_span_ieq((const char *)v, (tg_h1_span_t){ start, n }, "keep-alive", 10))
            p->conn_keep_alive = 1;
        else if (n == 7 && tg_h1_span_ieq((const char *)v, (tg_h1_span_t){ start, n }, "upgrade", 7))
            p->conn_upgrade = 1;
    }
}

/* A field is complete: classify it and, in a head, apply its framing. */
static tg_h1p_result_t on_field(tg_h1_parser_t *p, const unsigned char *b)
{
    p->field_id = classify(b + p->field_name.off, p->field_name.len);
    if (p->in_trailers)
        return TG_H1P_FIELD;
    const unsigned char *v = b + p->field_value.off;
    switch (p->field_id) {
    case TG_H1F_CONTENT_LENGTH:
        return on_content_length(p, v, p->field_value.len);
    case TG_H1F_TRANSFER_ENCODING:
        return on_transfer_encoding(p, v, p->field_value.len);
    case TG_H1F_CONNECTION:
        on_connection(p, v, p->field_value.len);
        break;
    case TG_H1F_UPGRADE:
        p->has_upgrade = 1;
        break;
    default:
        break;
    }
    return TG_H1P_FIELD;
}

/* The head is complete: how is the body delimited (RFC 9112 6.3)? */
static tg_h1p_result_t decide_framing(tg_h1_parser_t *p)
{
    if (p->has_transfer_encoding) {
        if (p->has_content_length)
            return fail(p, 400, "both Content-Length and Transfer-Encoding");
        if (p->version == 10)
            return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 message");
        if (!p->te_chunked_last)
            return fail(p, 400, "Transfer-Encoding does not end in chunked");
        if (p->te_other)
            return fail(p, 501, "unsupported transfer coding");
    }
    if (p->kind == TG_H1_RESPONSE &&
        (p->no_body || p->status < 200 || p->status == 204 || p->status == 304)) {
        p->framing = p->status == 101 ? TG_H1_FRAME_TUNNEL : TG_H1_FRAME_NONE;
    } else if (p->has_transfer_encoding) {
        p->framing = TG_H1_FRAME_CHUNKED;
    } else if (p->has_content_length) {
        p->framing = p->content_length ? TG_H1_FRAME_LENGTH : TG_H1_FRAME_NONE;
    } else {
        p->framing = p->kind == TG_H1_RESPONSE ? TG_H1_FRAME_CLOSE : TG_H1_FRAME_NONE;
    }
    return TG_H1P_DONE;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT, checked a byte at a time so
 * garbage is refused as soon as it arrives. k is the byte's index. */
static int version_byte_ok(unsigned char c, uint32_t k)
{
    static const char proto[] = "HTTP/";
    if (k < 5)
        return c == (unsigned char)proto[k];
    if (k == 6)
        return c == '.';
    return c >= '0' && c <= '9';
}

static tg_h1p_result_t bad_line_end(tg_h1_parser_t *p, unsigned char c)
{
    return fail(p, 400, c == '\n' ? "bare LF in the message head" : "bare CR in the message head");
}

tg_h1p_result_t tg_h1_parse_head(tg_h1_parser_t *p, const char *buf, size_t len)
{
    const unsigned char *b = (const unsigned char *)buf;
    if (len > UINT32_MAX)
        len = UINT32_MAX; /* spans are 32-bit; heads are far smaller */
    size_t i = p->pos;
    while (i < len) {
        unsigned char c = b[i];
        switch (p->state) {
        case S_START:
            if (p->kind == TG_H1_RESPONSE) {
                p->mark = (uint32_t)i;
                p->state = S_VERSION;
            } else if (c == '\r') { /* empty lines before a request line (RFC 9112 2.2) */
                p->state = S_START_LF;
                i++;
            } else if (IS(c, C_TCHAR)) {
                p->mark = (uint32_t)i;
                p->state = S_METHOD;
            } else {
                return fail(p, 400, c == '\n'           ? "bare LF in the message head"
                                    : IS_WS(c)          ? "whitespace before the request line"
                                                        : "invalid character in the method");
            }
            break;
        case S_START_LF:
            if (c != '\n')
                return bad_line_end(p, c);
            p->state = S_START;
            i++;
            break;
        case S_METHOD:
            while (i < len && IS(b[i], C_TCHAR))
                i++;
            if (i == len)
                goto again;
            if (b[i] != ' ')
                return fail(p, 400, "invalid character in the method");
            p->method = (tg_h1_span_t){ p->mark, (uint32_t)i - p->mark };
            p->mark = (uint32_t)++i;
            p->state = S_TARGET;
            break;
        case S_TARGET:
            i = scan_target(b, i, len);
            if (i == len)
                goto again;
            if (b[i] != ' ' || i == p->mark)
                return fail(p, 400, "invalid request target");
            p->target = (tg_h1_span_t){ p->mark, (uint32_t)i - p->mark };
            p->mark = (uint32_t)++i;
            p->state = S_VERSION;
            break;
        case S_VERSION: {
            uint32_t k = (uint32_t)i - p->mark;
            if (k == 0 && len - i > 8 && (memcmp(b + i, "HTTP/1.1", 8) == 0 || memcmp(b + i, "HTTP/1.0", 8) == 0)) {
                i += 8; /* the whole version at once: the common case */
                k = 8;
                c = b[i];
            }
            if (k < 8) {
                if (!version_byte_ok(c, k))
                    return fail(p, 400, "invalid HTTP version");
                i++;
                break;
            }
            unsigned major = b[p->mark + 5] - '0', minor = b[p->mark + 7] - '0';
            if (major != 1 || minor > 1)
                return fail(p, 505, "HTTP version not supported");
            p->version = (uint8_t)(10 + minor);
            if (p->kind == TG_H1_REQUEST) {
                if (c != '\r')
                    return fail(p, 400, c == '\n' ? "bare LF in the message head" : "invalid request line");
                p->state = S_LINE_LF;
            } else {
                if (c != ' ')
                    return fail(p, 400, "invalid status line");
                p->mark = (uint32_t)i + 1;
                p->state = S_STATUS;
            }
            i++;
            break;
        }
        case S_STATUS: {
            uint32_t k = (uint32_t)i - p->mark;
            if (k < 3) {
                if (c < '0' || c > '9')
                    return fail(p, 400, "invalid status code");
                p->status = (uint16_t)(p->status * 10 + (c - '0'));
                i++;
                break;
            }
            if (p->status < 100)
                return fail(p, 400, "invalid status code");
            if (c == ' ') /* reason-phrase follows; a line without one is accepted */
                p->state = S_REASON;
            else if (c == '\r')
                p->state = S_LINE_LF;
            else
                return fail(p, 400, "invalid status line");
            i++;
            break;
        }
        case S_REASON:
            i = scan_value(b, i, len);
            if (i == len)
                goto again;
            if (b[i] != '\r')
                return b[i] == '\n' ? bad_line_end(p, b[i]) : fail(p, 400, "invalid character in the reason phrase");
            p->state = S_LINE_LF;
            i++;
            break;
        case S_LINE_LF:
            if (c != '\n')
                return bad_line_end(p, c);
            p->state = S_FIELD_START;
            i++;
            break;
        case S_FIELD_START:
            if (c == '\r') {
                p->state = S_END_LF;
                i++;
                break;
            }
            if (!IS(c, C_TCHAR))
                return IS_WS(c)    ? fail(p, 400, "obsolete line folding")
                       : c == '\n' ? bad_line_end(p, c)
                                   : fail(p, 400, "invalid character in a header name");
            p->mark = (uint32_t)i++;
            p->state = S_NAME;
            break;
        case S_NAME:
            i = scan_token(b, i, len);
            if (i == len)
                goto again;
            if (b[i] != ':') /* whitespace before the colon included (RFC 9112 5.1) */
                return fail(p, 400, "invalid character in a header name");
            p->field_name = (tg_h1_span_t){ p->mark, (uint32_t)i - p->mark };
            p->state = S_OWS;
            i++;
            break;
        case S_OWS:
            while (i < len && IS_WS(b[i]))
                i++;
            if (i == len)
                goto again;
            p->mark = (uint32_t)i;
            p->state = S_VALUE;
            break;
        case S_VALUE: {
            i = scan_value(b, i, len);
            if (i == len)
                goto again;
            if (b[i] != '\r')
                return b[i] == '\n' ? bad_line_end(p, b[i]) : fail(p, 400, "invalid character in a header value");
            size_t e = i;
            while (e > p->mark && IS_WS(b[e - 1]))
                e--;
            p->field_value = (tg_h1_span_t){ p->mark, (uint32_t)e - p->mark };
            p->state = S_FIELD_LF;
            i++;
            break;
        }
        case S_FIELD_LF:
            if (c != '\n')
                return bad_line_end(p, c);
            p->pos = (uint32_t)i + 1;
            p->state = S_FIELD_START;
            return on_field(p, b);
        case S_END_LF:
            if (c != '\n')
                return bad_line_end(p, c);
            p->pos = (uint32_t)i + 1;
            p->state = S_DONE;
            return p->in_trailers ? TG_H1P_DONE : decide_framing(p);
        default: /* S_DONE */
            return TG_H1P_DONE;
        }
    }
again:
    p->pos = (uint32_t)i;
    return TG_H1P_AGAIN;
}

/* ---- chunked framing (RFC 9112 7.1) ----
 * chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 * chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 * ext-val    = token / quoted-string
 * last-chunk = 1*("0") [ chunk-ext ] CRLF */

enum {
    C_SIZE0 = 0, /* first hex digit */
    C_SIZE,      /* more hex digits */
    C_SEMI_WS,   /* BWS: only ';' may follow */
    C_NAME0,     /* after ';': BWS, then a name */
    C_NAME,
    C_NAME_WS,   /* BWS after a name: '=' or ';' */
    C_VAL0,      /* after '=': BWS, then a token or a quoted string */
    C_TOKEN,
    C_QUOTED,
    C_QESC,
    C_EXT_END,   /* after a quoted string */
    C_LINE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILERS,
};

/* The byte that ends an extension element: another ';', BWS, or CR. */
static int ext_next(tg_h1_parser_t *p, unsigned char c)
{
    if (c == ';')
        p->cstate = C_NAME0;
    else if (IS_WS(c))
        p->cstate = C_SEMI_WS;
    else if (c == '\r')
        p->cstate = C_LINE_LF;
    else
        return -1;
    return 0;
}

tg_h1p_result_t tg_h1_parse_chunk(tg_h1_parser_t *p, const char *buf, size_t len, size_t *used)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t i = 0;
    unsigned char c = 0;
    tg_h1p_result_t res = TG_H1P_AGAIN;
    for (; i < len; i++) {
        c = b[i];
        int h;
        if (p->cstate > C_SIZE && p->cstate < C_LINE_LF && ++p->cext_bytes > TG_H1_MAX_CHUNK_EXT_BYTES) {
            res = fail(p, 400, "chunk extension too long");
            goto out;
        }
        switch (p->cstate) {
        case C_SIZE0:
        case C_SIZE:
            if ((h = tg_hex_value((unsigned char)c)) >= 0) {
                if (++p->cdigits > TG_H1_MAX_CHUNK_SIZE_DIGITS) {
                    res = fail(p, 400, "chunk size too large");
                    goto out;
                }
                p->chunk_left = (p->chunk_left << 4) | (uint64_t)h;
                p->cstate = C_SIZE;
            } else if (p->cstate == C_SIZE0 || ext_next(p, c) < 0) {
                res = fail(p, 400, c == '\n' ? "bare LF in a chunk line" : "invalid chunk size");
                goto out;
            }
            break;
        case C_SEMI_WS:
            if (c == ';')
                p->cstate = C_NAME0;
            else if (!IS_WS(c))
                goto bad_ext;
            break;
        case C_NAME0:
            if (IS(c, C_TCHAR))
                p->cstate = C_NAME;
            else if (!IS_WS(c))
                goto bad_ext;
            break;
        case C_NAME:
            if (c == '=')
                p->cstate = C_VAL0;
            else if (IS_WS(c))
                p->cstate = C_NAME_WS;
            else if (!IS(c, C_TCHAR) && ext_next(p, c) < 0)
                goto bad_ext;
            break;
        case C_NAME_WS:
            if (c == '=')
                p->cstate = C_VAL0;
            else if (c == ';')
                p->cstate = C_NAME0;
            else if (!IS_WS(c))
                goto bad_ext;
            break;
        case C_VAL0:
            if (c == '"')
                p->cstate = C_QUOTED;
            else if (IS(c, C_TCHAR))
                p->cstate = C_TOKEN;
            else if (!IS_WS(c))
                goto bad_ext;
            break;
        case C_TOKEN:
            if (!IS(c, C_TCHAR) && ext_next(p, c) < 0)
                goto bad_ext;
            break;
        case C_QUOTED:
            if (c == '"')
                p->cstate = C_EXT_END;
            else if (c == '\\')
                p->cstate = C_QESC;
            else if (!IS(c, C_QDTEXT))
                goto bad_ext;
            break;
        case C_QESC:
            if (!IS(c, C_VALUE))
                goto bad_ext;
            p->cstate = C_QUOTED;
            break;
        case C_EXT_END:
            if (ext_next(p, c) < 0)
                goto bad_ext;
            break;
        case C_LINE_LF:
            if (c != '\n') {
                res = fail(p, 400, "bare CR in a chunk line");
                goto out;
            }
            i++;
            p->cdigits = 0;
            p->cext_bytes = 0;
            if (p->chunk_left == 0) {
                p->cstate = C_TRAILERS;
                res = TG_H1P_TRAILERS;
            } else {
                p->cstate = C_DATA;
                res = TG_H1P_DATA;
            }
            goto out;
        case C_DATA:
            if (p->chunk_left) {
                res = TG_H1P_DATA;
                goto out;
            }
            p->cstate = C_DATA_CR;
            /* fall through */
        case C_DATA_CR:
            if (c != '\r') {
                res = fail(p, 400, "chunk data not followed by CRLF");
                goto out;
            }
            p->cstate = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (c != '\n') {
                res = fail(p, 400, "chunk data not followed by CRLF");
                goto out;
            }
            p->cstate = C_SIZE0;
            break;
        default: /* C_TRAILERS: the caller reads them with tg_h1_parse_head */
            res = TG_H1P_TRAILERS;
            goto out;
        }
    }
    if (p->cstate == C_DATA && p->chunk_left)
        res = TG_H1P_DATA;
out:
    *used = i;
    return res;
bad_ext:
    *used = i;
    return fail(p, 400, c == '\n' ? "bare LF in a chunk line" : "invalid chunk extension");
}
