/*
 * proxy/h1_codec.c — HTTP/1.x framing. See h1_codec.h.
 */
#include "proxy/h1_codec.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct tg_h1_field_spans {
    tg_h1_span_t name, value;
    uint8_t id;
};

/* Any fault in an upstream's response makes it unusable: 502. */
static int fail(tg_h1_reader_t *r, int status, const char *msg)
{
    r->error_status = r->p.kind == TG_H1_RESPONSE ? 502 : status;
    r->error_msg = msg;
    return TG_H1_ERROR;
}

void tg_h1_reader_init(tg_h1_reader_t *r, tg_h1_kind_t kind)
{
    memset(r, 0, sizeof(*r));
    tg_h1_parser_init(&r->p, kind);
}

/* The first non-empty segment of in (an evbuffer may hold empty chains,
 * e.g. a reservation committed with a zero-length second vector). */
static int first_segment(struct evbuffer *in, const char **buf, size_t *len)
{
    struct evbuffer_iovec v[4];
    int n = evbuffer_peek(in, 1, NULL, v, 4);
    for (int i = 0; i < n && i < 4; i++) {
        if (v[i].iov_len) {
            *buf = v[i].iov_base;
            *len = v[i].iov_len;
            return 1;
        }
    }
    if (evbuffer_get_length(in) == 0)
        return 0;
    *buf = (const char *)evbuffer_pullup(in, 1); /* more than 4 empty chains first */
    *len = 1;
    return *buf != NULL;
}

/* Feeds buf[0..len) to the parser, recording each field. */
static tg_h1p_result_t parse_fields(tg_h1_reader_t *r, tg_arena_t *a, const char *buf, size_t len)
{
    for (;;) {
        tg_h1p_result_t res = tg_h1_parse_head(&r->p, buf, len);
        if (res != TG_H1P_FIELD)
            return res;
        if (r->nfields >= TG_H1_MAX_FIELDS) {
            r->p.error_status = 431;
            r->p.error = "too many header fields";
            return TG_H1P_ERROR;
        }
        if (r->nfields == r->capfields) {
            uint32_t ncap = r->capfields ? r->capfields * 2 : 32;
            struct tg_h1_field_spans *nf = tg_arena_alloc(a, ncap * sizeof(*nf));
            if (nf == NULL) {
                r->p.error_status = 500;
                r->p.error = "out of memory";
                return TG_H1P_ERROR;
            }
            if (r->nfields)
                memcpy(nf, r->fields, r->nfields * sizeof(*nf));
            r->fields = nf;
            r->capfields = ncap;
        }
        r->fields[r->nfields++] = (struct tg_h1_field_spans){ r->p.field_name, r->p.field_value, r->p.field_id };
    }
}

/* Runs the parser over the head (or trailer section) at the start of in,
 * at most limit bytes. Parses in place in the first segment when the
 * head fits there; otherwise linearizes the prefix. On TG_H1P_DONE *base
 * points at the r->p.pos bytes that make it up (still in `in`). */
static tg_h1p_result_t parse_prefix(tg_h1_reader_t *r, struct evbuffer *in, size_t limit, tg_arena_t *a,
                                    const char **base)
{
    size_t avail = evbuffer_get_length(in), want = avail < limit ? avail : limit, len = 0;
    const char *buf = NULL;
    if (want == 0 || !first_segment(in, &buf, &len))
        return TG_H1P_AGAIN;
    if (len > want)
        len = want;
    tg_h1p_result_t res = parse_fields(r, a, buf, len);
    if (res == TG_H1P_AGAIN && len < want) {
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)want);
        if (buf == NULL) {
            r->p.error_status = 500;
            r->p.error = "out of memory";
            return TG_H1P_ERROR;
        }
        res = parse_fields(r, a, buf, want);
    }
    *base = buf;
    return res;
}

/* Copies the head's bytes into the arena, NUL-terminates each name and
 * value in the copy (the byte after each is a delimiter the parse no
 * longer needs) and fills h. Returns the copy. */
static char *keep_fields(tg_h1_reader_t *r, tg_arena_t *a, const char *base, tg_headers_t *h, int drop_framing)
{
    size_t len = r->p.pos;
    char *copy = tg_arena_alloc(a, len + 1);
    size_t cap = r->nfields + 8; /* room for what the proxy adds */
    tg_header_t *v = tg_arena_alloc(a, cap * sizeof(*v));
    if (copy == NULL || v == NULL)
        return NULL;
    memcpy(copy, base, len);
    copy[len] = '\0';
    size_t n = 0;
    for (uint32_t i = 0; i < r->nfields; i++) {
        const struct tg_h1_field_spans *f = &r->fields[i];
        /* framing and connection-specific fields have no place in trailers */
        if (drop_framing && f->id != TG_H1F_OTHER && f->id != TG_H1F_EXPECT)
            continue;
        copy[f->name.off + f->name.len] = '\0';
        copy[f->value.off + f->value.len] = '\0';
        v[n++] = (tg_header_t){ copy + f->name.off, f->name.len, copy + f->value.off, f->value.len };
    }
    h->v = v;
    h->n = n;
    h->cap = cap;
    h->checked = n; /* the parser took names as tokens and values as field-content */
    return copy;
}

/* Reads the head; on TG_H1_OK it is copied to the arena (returned in
 * *copy); the caller drains it from in once it accepts the message. */
static tg_h1_result_t read_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header, tg_arena_t *a,
                                tg_headers_t *headers, char **copy)
{
    const char *base = NULL;
    tg_h1p_result_t res = parse_prefix(r, in, max_header, a, &base);
    if (res == TG_H1P_ERROR)
        return fail(r, r->p.error_status, r->p.error);
    if (res == TG_H1P_AGAIN)
        return evbuffer_get_length(in) >= max_header ? fail(r, 431, "header section too large") : TG_H1_AGAIN;
    r->arena = a;
    *copy = keep_fields(r, a, base, headers, 0);
    return *copy == NULL ? fail(r, 500, "out of memory") : TG_H1_OK;
}

static tg_body_kind_t body_kind(const tg_h1_parser_t *p)
{
    switch (p->framing) {
    case TG_H1_FRAME_LENGTH:
        return TG_BODY_LENGTH;
    case TG_H1_FRAME_CHUNKED:
        return TG_BODY_CHUNKED;
    case TG_H1_FRAME_CLOSE:
        return TG_BODY_EOF;
    case TG_H1_FRAME_TUNNEL:
        return TG_BODY_TUNNEL;
    default:
        return TG_BODY_NONE;
    }
}

static int keep_alive(const tg_h1_parser_t *p)
{
    return !p->conn_close && (p->version == 11 || p->conn_keep_alive);
}

/* absolute-form (RFC 9112 3.2.2): "http" or "https" "://" authority, then
 * an optional path and query. The authority replaces Host; userinfo is
 * refused (RFC 9110 4.2.4). */
static int absolute_form(tg_h1_reader_t *r, tg_arena_t *a, const char *url, size_t len, tg_request_t *req)
{
    size_t i;
    if (len > 7 && strncasecmp(url, "http://", 7) == 0)
        i = 7;
    else if (len > 8 && strncasecmp(url, "https://", 8) == 0)
        i = 8;
    else
        return fail(r, 400, "invalid request target");
    size_t as = i;
    while (i < len && url[i] != '/' && url[i] != '?') {
        if (url[i] == '@')
            return fail(r, 400, "userinfo in the request target");
        i++;
    }
    if (i == as)
        return fail(r, 400, "invalid request target");
    req->authority = tg_arena_strndup(a, url + as, i - as);
    if (req->authority == NULL)
        return fail(r, 500, "out of memory");
    if (i < len && url[i] == '/') {
        req->target = url + i;
    } else { /* "http://h" or "http://h?q": the path is "/" */
        char *t = tg_arena_alloc(a, len - i + 2);
        if (t == NULL)
            return fail(r, 500, "out of memory");
        t[0] = '/';
        memcpy(t + 1, url + i, len - i);
        t[len - i + 1] = '\0';
        req->target = t;
    }
    return tg_headers_set(&req->headers, a, "host", req->authority) < 0 ? fail(r, 500, "out of memory") : 0;
}

tg_h1_result_t tg_h1_read_request_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header,
                                       tg_arena_t *a, tg_request_t *req)
{
    char *copy = NULL;
    tg_h1_result_t res = read_head(r, in, max_header, a, &req->headers, &copy);
    if (res != TG_H1_OK)
        return res;
    const tg_h1_parser_t *p = &r->p;
    req->version = p->version;
    ((char *)copy)[p->method.off + p->method.len] = '\0';
    req->method = copy + p->method.off;
    req->is_head = p->method.len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    req->keep_alive = keep_alive(p);
    if (p->method.len == 7 && memcmp(req->method, "CONNECT", 7) == 0)
        return fail(r, 405, "CONNECT is not supported");

    const char *host = NULL, *expect = NULL;
    size_t nhost = 0;
    for (uint32_t i = 0; i < r->nfields; i++) {
        if (r->fields[i].id == TG_H1F_HOST) {
            nhost++;
            host = copy + r->fields[i].value.off;
        } else if (r->fields[i].id == TG_H1F_EXPECT) {
            expect = copy + r->fields[i].value.off;
        }
    }
    if (nhost > 1 || (nhost == 0 && req->version == 11))
        return fail(r, 400, nhost ? "more than one Host header" : "missing Host header");
    req->authority = host;

    char *url = copy + p->target.off;
    url[p->target.len] = '\0';
    if (url[0] == '/') {
        req->target = url;
    } else if (p->target.len == 1 && url[0] == '*' && strcmp(req->method, "OPTIONS") == 0) {
        req->target = url;
    } else if (absolute_form(r, a, url, p->target.len, req) < 0) {
        return TG_H1_ERROR;
    }
    const char *q = strchr(req->target, '?');
    req->path_len = q ? (size_t)(q - req->target) : strlen(req->target);

    if (expect != NULL) {
        if (strcasecmp(expect, "100-continue") != 0)
            return fail(r, 417, "unsupported expectation");
        req->expect_continue = req->version == 11;
    }
    req->upgrade = p->has_upgrade && p->conn_upgrade;
    req->body = body_kind(p);
    req->content_length = req->body == TG_BODY_LENGTH ? p->content_length : 0;
    if (r->max_body && req->body == TG_BODY_LENGTH && req->content_length > r->max_body)
        return fail(r, 413, "request body too large");
    r->body = req->body;
    r->remaining = req->content_length;
    evbuffer_drain(in, r->p.pos);
    return TG_H1_OK;
}

tg_h1_result_t tg_h1_read_response_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header,
                                        tg_arena_t *a, tg_response_t *resp, int request_is_head)
{
    r->p.no_body = request_is_head != 0;
    char *copy = NULL;
    tg_h1_result_t res = read_head(r, in, max_header, a, &resp->headers, &copy);
    if (res != TG_H1_OK)
        return res;
    const tg_h1_parser_t *p = &r->p;
    resp->status = p->status;
    resp->version = p->version;
    resp->body = body_kind(p);
    /* a HEAD response's Content-Length describes the body it did not send */
    resp->content_length = p->has_content_length && (resp->body == TG_BODY_LENGTH || request_is_head)
                               ? p->content_length
                               : 0;
    resp->keep_alive = resp->body != TG_BODY_EOF && keep_alive(p);
    r->body = resp->body;
    r->remaining = resp->body == TG_BODY_LENGTH ? resp->content_length : 0;
    evbuffer_drain(in, r->p.pos);
    return TG_H1_OK;
}

/* ---- bodies ---- */

/* Reads the trailer section after the last chunk, keeping its fields in
 * r->trailers when the reader has one. */
static int read_trailers(tg_h1_reader_t *r, struct evbuffer *in)
{
    const char *base = NULL;
    tg_arena_t *a = r->arena;
    tg_h1p_result_t res = parse_prefix(r, in, TG_H1_MAX_TRAILER_BYTES, a, &base);
    if (res == TG_H1P_ERROR)
        return fail(r, r->p.error_status == 431 ? 400 : r->p.error_status,
                    r->p.error_status == 431 ? "trailer section too large" : r->p.error);
    if (res == TG_H1P_AGAIN)
        return evbuffer_get_length(in) >= TG_H1_MAX_TRAILER_BYTES ? fail(r, 400, "trailer section too large")
                                                                   : TG_H1_AGAIN;
    if (r->trailers != NULL && r->nfields && keep_fields(r, a, base, r->trailers, 1) == NULL)
        return fail(r, 500, "out of memory");
    evbuffer_drain(in, r->p.pos);
    r->done = 1;
    return TG_H1_OK;
}

static ssize_t read_chunked(tg_h1_reader_t *r, struct evbuffer *in, struct evbuffer *out, size_t max, int eof,
                            int *fin)
{
    size_t moved = 0;
    while (!r->done) {
        if (r->in_data) {
            size_t avail = evbuffer_get_length(in), n = max - moved;
            if (avail == 0 || n == 0)
                break;
            if (n > avail)
                n = avail;
            if (n > r->p.chunk_left)
                n = (size_t)r->p.chunk_left;
            if (evbuffer_remove_buffer(in, out, n) != (int)n)
                return fail(r, 500, "out of memory"), -1;
            moved += n;
            r->body_bytes += n;
            r->p.chunk_left -= n;
            r->in_data = r->p.chunk_left != 0;
            continue;
        }
        if (r->in_trailers) {
            int t = read_trailers(r, in);
            if (t == TG_H1_ERROR)
                return -1;
            break;
        }
        const char *buf;
        size_t len, used = 0;
        if (!first_segment(in, &buf, &len))
            break;
        tg_h1p_result_t res = tg_h1_parse_chunk(&r->p, buf, len, &used);
        evbuffer_drain(in, used);
        if (res == TG_H1P_ERROR)
            return fail(r, r->p.error_status, r->p.error), -1;
        if (res == TG_H1P_DATA) {
            if (r->max_body && r->p.chunk_left > r->max_body - r->body_bytes)
                return fail(r, 413, "request body too large"), -1;
            r->in_data = 1;
        } else if (res == TG_H1P_TRAILERS) {
            tg_h1_parse_trailers_begin(&r->p);
            r->nfields = 0;
            r->in_trailers = 1;
        }
    }
    if (r->done)
        *fin = 1;
    else if (eof && evbuffer_get_length(in) == 0)
        return fail(r, 400, "body truncated"), -1;
    return (ssize_t)moved;
}

int tg_h1_body_complete(const tg_h1_reader_t *r)
{
    switch (r->body) {
    case TG_BODY_NONE:
        return 1;
    case TG_BODY_LENGTH:
        return r->remaining == 0;
    case TG_BODY_CHUNKED:
        return r->done;
    default:
        return 0;
    }
}

ssize_t tg_h1_read_body(tg_h1_reader_t *r, struct evbuffer *in, struct evbuffer *out, size_t max, int eof,
                        int *fin)
{
    size_t avail = evbuffer_get_length(in), n;
    *fin = 0;
    switch (r->body) {
    case TG_BODY_NONE:
        *fin = 1;
        return 0;
    case TG_BODY_LENGTH:
        n = avail < max ? avail : max;
        if (n > r->remaining)
            n = (size_t)r->remaining;
        if (n && evbuffer_remove_buffer(in, out, n) != (int)n)
            return -1;
        r->remaining -= n;
        r->body_bytes += n;
        if (r->remaining == 0)
            *fin = 1;
        else if (eof && evbuffer_get_length(in) == 0)
            return fail(r, 400, "body truncated"), -1;
        return (ssize_t)n;
    case TG_BODY_CHUNKED:
        return read_chunked(r, in, out, max, eof, fin);
    case TG_BODY_EOF:
    case TG_BODY_TUNNEL:
        n = avail < max ? avail : max;
        if (n && evbuffer_remove_buffer(in, out, n) != (int)n)
            return -1;
        r->body_bytes += n;
        if (eof && evbuffer_get_length(in) == 0)
            *fin = 1;
        return (ssize_t)n;
    }
    return -1;
}

/* ---- writing ---- */

/* A head's parts and its size; TG_HTTP_UNSAFE_FIELD when a field may
 * not be written. */
typedef struct head_parts {
    const char *start, *extra;
    size_t sl, el, total;
} head_parts_t;

static int head_measure(head_parts_t *hp, const char *start_line, const tg_headers_t *h, const char *extra)
{
    hp->start = start_line;
    hp->extra = extra;
    hp->sl = strlen(start_line);
    hp->el = extra ? strlen(extra) : 0;
    hp->total = hp->sl + 2 + hp->el + 2;
    for (size_t i = 0; i < h->n; i++) {
        if (!tg_headers_field_safe(h, i))
            return TG_HTTP_UNSAFE_FIELD;
        hp->total += h->v[i].name_len + 2 + h->v[i].value_len + 2;
    }
    return 0;
}

/* Writes the head into p (hp->total bytes). */
static void head_put(const head_parts_t *hp, const tg_headers_t *h, char *p)
{
    size_t sl = hp->sl, el = hp->el;
    const char *start_line = hp->start, *extra = hp->extra;
    memcpy(p, start_line, sl);
    p += sl;
    *p++ = '\r';
    *p++ = '\n';
    for (size_t i = 0; i < h->n; i++) {
        memcpy(p, h->v[i].name, h->v[i].name_len);
        p += h->v[i].name_len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, h->v[i].value, h->v[i].value_len);
        p += h->v[i].value_len;
        *p++ = '\r';
        *p++ = '\n';
    }
    if (el) {
        memcpy(p, extra, el);
        p += el;
    }
    *p++ = '\r';
    *p = '\n';
}

int tg_h1_write_head(struct evbuffer *out, const char *start_line, const tg_headers_t *h, const char *extra)
{
    head_parts_t hp;
    int r = head_measure(&hp, start_line, h, extra);
    if (r != 0)
        return r;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)hp.total, &v, 1) < 1 || v.iov_len < hp.total)
        return -1;
    head_put(&hp, h, v.iov_base);
    v.iov_len = hp.total;
    return evbuffer_commit_space(out, &v, 1);
}

int tg_h1_format_head(tg_arena_t *a, const char *start_line, const tg_headers_t *h, const char *extra,
                      char **head, size_t *len)
{
    head_parts_t hp;
    int r = head_measure(&hp, start_line, h, extra);
    if (r != 0)
        return r;
    if ((*head = tg_arena_alloc(a, hp.total)) == NULL)
        return -1;
    head_put(&hp, h, *head);
    *len = hp.total;
    return 0;
}

int tg_h1_write_body(struct evbuffer *out, tg_body_kind_t kind, struct evbuffer *data)
{
    size_t len = evbuffer_get_length(data);
    if (len == 0)
        return 0;
    if (kind == TG_BODY_CHUNKED) {
        char hdr[24];
        int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        if (evbuffer_add(out, hdr, (size_t)n) < 0 || evbuffer_add_buffer(out, data) < 0 ||
            evbuffer_add(out, "\r\n", 2) < 0)
            return -1;
        return 0;
    }
    return evbuffer_add_buffer(out, data);
}

int tg_h1_write_end(struct evbuffer *out, tg_body_kind_t kind, const tg_headers_t *trailers)
{
    if (kind != TG_BODY_CHUNKED)
        return 0;
    if (trailers == NULL || trailers->n == 0)
        return evbuffer_add(out, "0\r\n\r\n", 5);
    for (size_t i = 0; i < trailers->n; i++)
        if (!tg_headers_field_safe(trailers, i))
            return TG_HTTP_UNSAFE_FIELD;
    if (evbuffer_add(out, "0\r\n", 3) < 0)
        return -1;
    for (size_t i = 0; i < trailers->n; i++) {
        const tg_header_t *h = &trailers->v[i];
        if (evbuffer_add(out, h->name, h->name_len) < 0 || evbuffer_add(out, ": ", 2) < 0 ||
            evbuffer_add(out, h->value, h->value_len) < 0 || evbuffer_add(out, "\r\n", 2) < 0)
            return -1;
    }
    return evbuffer_add(out, "\r\n", 2);
}
