/* Fuzz target: chunked bodies (chunk lines, extensions, data CRLF, the
 * trailer section) after a fixed request head, compared with a
 * reference decoder written separately, the plain way: straight from
 * the RFC 9112 grammar over the whole input. The codec's verdict
 * (complete, incomplete, refused) must match the reference's and, when
 * complete, so must the bytes consumed, the body and the trailer count.
 * Input: [split][body bytes]; the body is fed in two pieces. */
#include <ctype.h>
#include <stdlib.h>

#include "h1_drive.h"

enum { REF_DONE, REF_MORE, REF_BAD, REF_SKIP };

static int ref_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int ref_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int ref_vchar_or_ws(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ), then CRLF */
static int ref_ext_line(const uint8_t *p, size_t n, size_t *i)
{
    size_t k = *i;
#define NEED()                                                                                                     \
    do {                                                                                                           \
        if (k >= n)                                                                                                \
            return k - *i > 4000 ? REF_SKIP : REF_MORE;                                                            \
    } while (0)
    for (;;) {
        NEED();
        if (p[k] == '\r')
            break;
        while (k < n && ref_ws(p[k]))
            k++;
        NEED();
        if (p[k] != ';')
            return REF_BAD;
        k++;
        while (k < n && ref_ws(p[k]))
            k++;
        NEED();
        if (!ref_tchar(p[k]))
            return REF_BAD;
        while (k < n && ref_tchar(p[k]))
            k++;
        NEED();
        size_t save = k;
        while (k < n && ref_ws(p[k]))
            k++;
        NEED();
        if (p[k] != '=') {
            if (p[k] == '\r' && k != save)
                return REF_BAD; /* BWS only before ';' or '=' */
            if (p[k] == '\r')
                break;
            if (p[k] == ';' || k != save)
                continue;
            return REF_BAD;
        }
        k++;
        while (k < n && ref_ws(p[k]))
            k++;
        NEED();
        if (p[k] == '"') {
            k++;
            for (;;) {
                NEED();
                if (p[k] == '"')
                    break;
                if (p[k] == '\\') {
                    k++;
                    NEED();
                    if (!ref_vchar_or_ws(p[k]))
                        return REF_BAD;
                } else if (!ref_vchar_or_ws(p[k])) {
                    return REF_BAD;
                }
                k++;
            }
            k++;
        } else {
            if (!ref_tchar(p[k]))
                return REF_BAD;
            while (k < n && ref_tchar(p[k]))
                k++;
        }
    }
    k++; /* CR */
    if (k >= n)
        return REF_MORE;
    if (p[k] != '\n')
        return REF_BAD;
    if (k - *i > 4000)
        return REF_SKIP; /* near the extension byte limit: not compared */
    *i = k + 1;
    return REF_DONE;
#undef NEED
}

static int ref_decode(const uint8_t *p, size_t n, size_t *consumed, uint64_t *body_len, size_t *ntrailers)
{
    size_t i = 0;
    *body_len = 0;
    *ntrailers = 0;
    for (;;) {
        size_t s = i;
        uint64_t size = 0;
        while (i < n && isxdigit(p[i])) {
            if (i - s == 16)
                return REF_BAD;
            size = size * 16 + (uint64_t)(isdigit(p[i]) ? p[i] - '0' : (tolower(p[i]) - 'a' + 10));
            i++;
        }
        if (i >= n)
            return REF_MORE;
        if (i == s)
            return REF_BAD;
        int r = ref_ext_line(p, n, &i);
        if (r != REF_DONE)
            return r;
        if (size == 0)
            break;
        if (size > (1u << 20) - *body_len) /* the reader's body limit in h1_drive */
            return REF_BAD;
        if (n - i < size)
            return REF_MORE;
        i += size;
        *body_len += size;
        if (i >= n)
            return REF_MORE;
        if (p[i] != '\r')
            return REF_BAD;
        if (++i >= n)
            return REF_MORE;
        if (p[i] != '\n')
            return REF_BAD;
        i++;
    }
    for (;;) { /* trailer section: field lines, then CRLF */
        if (i >= n)
            return REF_MORE;
        if (p[i] == '\r') {
            if (++i >= n)
                return REF_MORE;
            if (p[i] != '\n')
                return REF_BAD;
            *consumed = i + 1;
            return REF_DONE;
        }
        if (!ref_tchar(p[i]))
            return REF_BAD;
        while (i < n && ref_tchar(p[i]))
            i++;
        if (i >= n)
            return REF_MORE;
        if (p[i++] != ':')
            return REF_BAD;
        while (i < n && ref_vchar_or_ws(p[i]))
            i++;
        if (i >= n)
            return REF_MORE;
        if (p[i] != '\r')
            return REF_BAD;
        if (++i >= n)
            return REF_MORE;
        if (p[i++] != '\n')
            return REF_BAD;
        if (++*ntrailers > TG_H1_MAX_FIELDS)
            return REF_BAD;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char head[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (size < 1 || size > 8192)
        return 0;
    size_t hl = sizeof(head) - 1, n = size - 1;
    uint8_t *msg = malloc(hl + n);
    if (msg == NULL)
        return 0;
    memcpy(msg, head, hl);
    memcpy(msg + hl, data + 1, n);
    size_t cuts[2] = { hl + (n ? data[0] % (n + 1) : 0), hl + n };
    h1_outcome_t o;
    h1_drive(TG_H1_REQUEST, 0, 0, msg, hl + n, cuts, 2, &o);

    size_t consumed = 0, ntrailers = 0;
    uint64_t body_len = 0;
    int ref = ref_decode(data + 1, n, &consumed, &body_len, &ntrailers);
    if (ref != REF_SKIP) {
        int verdict = o.status == 0 ? REF_DONE : o.status == -1 ? REF_MORE : REF_BAD;
        if (verdict != ref)
            __builtin_trap();
        if (ref == REF_DONE && (o.consumed != hl + consumed || o.body_len != body_len || o.ntrailers > ntrailers))
            __builtin_trap();
    }
    free(msg);
    return 0;
}
