/* Shared by the HTTP/1 fuzz targets: drives the codec over a message fed
 * in pieces, as a connection would (head, then body), and sums up what
 * came out so that two runs can be compared; checks on the way that
 * whatever the reader accepts is safe to write on (names are tokens,
 * values and the target hold no control byte but HTAB). */
#ifndef TG_FUZZ_H1_DRIVE_H
#define TG_FUZZ_H1_DRIVE_H

#include <event2/buffer.h>
#include <stdint.h>
#include <string.h>

#include "proxy/h1_codec.h"

typedef struct h1_outcome {
    int status;            /* 0 complete, -1 incomplete, else the error status */
    size_t consumed;       /* bytes drained from the input */
    uint64_t body_len;
    uint64_t digest;       /* FNV-1a over the body, the head's fields and the trailers */
    size_t nfields, ntrailers;
} h1_outcome_t;

static inline uint64_t h1_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* The writers skip the egress check for the checked prefix: every field
 * in it must pass that check. */
static inline void h1_check_prefix(const tg_headers_t *h)
{
    for (size_t i = 0; i < h->checked && i < h->n; i++)
        if (!tg_http_field_safe(h->v[i].name, h->v[i].name_len, h->v[i].value, h->v[i].value_len))
            __builtin_trap();
}

/* Changes the list the ways the proxy does — removals, joins, hop-by-hop
 * stripping, sets and adds of values taken from ops (control bytes
 * included) — checking the prefix after each. */
static inline void h1_churn_fields(tg_headers_t *h, tg_arena_t *a, const uint8_t *ops, size_t n)
{
    static const char *const names[] = { "x-a", "via", "connection", "te", "x-forwarded-for" };
    for (size_t k = 0; k + 3 < n && k < 64; k += 4) {
        const char *name = names[ops[k + 1] % 5];
        if (h->n > 0 && ops[k + 1] & 0x80) { /* a name the list holds (copied: compaction moves it) */
            const tg_header_t *f = &h->v[ops[k + 1] % h->n];
            name = tg_arena_strndup(a, f->name, f->name_len);
            if (name == NULL)
                return;
        }
        char *v = tg_arena_strndup(a, (const char *)ops + k + 2, 2); /* may hold CR, LF, NUL */
        if (v == NULL)
            return;
        switch (ops[k] % 6) {
        case 0:
            tg_headers_remove(h, name);
            break;
        case 1:
            tg_headers_join(h, a, name);
            break;
        case 2:
            tg_headers_strip_hop_by_hop(h);
            break;
        case 3:
            tg_headers_set(h, a, name, v);
            break;
        case 4:
            tg_headers_add(h, a, name, strlen(name), v, strlen(v));
            break;
        default:
            if (h->n > 0)
                h->n = ops[k + 2] % h->n; /* cut short by hand */
            break;
        }
        h1_check_prefix(h);
    }
}

static inline void h1_check_fields(const tg_headers_t *h)
{
    h1_check_prefix(h);
    for (size_t i = 0; i < h->n; i++) {
        const tg_header_t *f = &h->v[i];
        if (f->name_len == 0 || strlen(f->name) != f->name_len || strlen(f->value) != f->value_len)
            __builtin_trap();
        for (size_t k = 0; k < f->name_len; k++)
            if (!tg_h1_is_tchar((unsigned char)f->name[k]))
                __builtin_trap();
        for (size_t k = 0; k < f->value_len; k++) {
            unsigned char c = (unsigned char)f->value[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                __builtin_trap();
        }
        if (f->value_len && (f->value[0] == ' ' || f->value[0] == '\t' || f->value[f->value_len - 1] == ' ' ||
                             f->value[f->value_len - 1] == '\t'))
            __builtin_trap();
    }
}

static inline uint64_t h1_digest_fields(uint64_t d, const tg_headers_t *h)
{
    for (size_t i = 0; i < h->n; i++) {
        d = h1_fnv(d, h->v[i].name, h->v[i].name_len + 1);
        d = h1_fnv(d, h->v[i].value, h->v[i].value_len + 1);
    }
    return d;
}

/* Feeds data[0..len) in pieces ending at cuts[0..ncuts) (the last cut is
 * len); eof: the peer closes after the last piece. */
static inline void h1_drive(tg_h1_kind_t kind, int head_req, int eof_at_end, const uint8_t *data, size_t len,
                     const size_t *cuts, size_t ncuts, h1_outcome_t *o)
{
    tg_arena_t a;
    tg_arena_init(&a);
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    tg_h1_reader_t r;
    tg_h1_reader_init(&r, kind);
    r.max_body = 1 << 20;
    tg_request_t req;
    tg_response_t resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    memset(o, 0, sizeof(*o));
    o->status = -1;
    o->digest = 14695981039346656037ULL;
    int head_done = 0;
    size_t fed = 0;
    for (size_t k = 0; k < ncuts && o->status == -1; k++) {
        evbuffer_add(in, data + fed, cuts[k] - fed);
        fed = cuts[k];
        int eof = eof_at_end && fed == len;
        if (!head_done) {
            tg_h1_result_t res = kind == TG_H1_REQUEST ? tg_h1_read_request_head(&r, in, 8192, &a, &req)
                                                       : tg_h1_read_response_head(&r, in, 8192, &a, &resp, head_req);
            if (res == TG_H1_ERROR) {
                o->status = r.error_status;
                break;
            }
            if (res == TG_H1_AGAIN)
                continue;
            head_done = 1;
            const tg_headers_t *h = kind == TG_H1_REQUEST ? &req.headers : &resp.headers;
            h1_check_fields(h);
            if (kind == TG_H1_REQUEST) {
                for (const char *t = req.target; *t; t++)
                    if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
                        __builtin_trap();
                o->digest = h1_fnv(o->digest, req.method, strlen(req.method));
                o->digest = h1_fnv(o->digest, req.target, strlen(req.target) + 1);
            } else {
                o->digest = h1_fnv(o->digest, &resp.status, sizeof(resp.status));
            }
            o->nfields = h->n;
            o->digest = h1_digest_fields(o->digest, h);
            r.trailers = &resp.trailers; /* kept for either kind, to be checked */
        }
        int fin = 0;
        ssize_t n = tg_h1_read_body(&r, in, out, 1 << 20, eof, &fin);
        if (n < 0)
            o->status = r.error_status;
        else if (fin)
            o->status = 0;
        size_t got = evbuffer_get_length(out);
        if (got) {
            const unsigned char *b = evbuffer_pullup(out, -1);
            o->digest = h1_fnv(o->digest, b, got);
            o->body_len += got;
            evbuffer_drain(out, got);
        }
    }
    if (o->status == 0) {
        h1_check_fields(&resp.trailers);
        o->ntrailers = resp.trailers.n;
        o->digest = h1_digest_fields(o->digest, &resp.trailers);
    }
    if (o->body_len != r.body_bytes && r.body != TG_BODY_NONE)
        __builtin_trap();
    o->consumed = fed - evbuffer_get_length(in);
    evbuffer_free(in);
    evbuffer_free(out);
    tg_arena_free(&a);
}

#endif
