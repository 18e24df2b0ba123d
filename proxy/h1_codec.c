/*
 * proxy/h1_codec.c — HTTP/1.x framing. See h1_codec.h.
 */
#include "proxy/h1_codec.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 200

static int fail(tg_h1_reader_t *r, int status, const char *msg)
{
    r->error_status = status;
    r->error_msg = msg;
    return TG_H1_ERROR;
}

/* ---- http-parser callbacks ---- */

static int on_url(http_parser *p, const char *at, size_t len)
{
    tg_h1_reader_t *r = p->data;
    if (r->url == NULL)
        r->url = at;
    r->url_len = (size_t)(at + len - r->url);
    return 0;
}

/* Appends a piece (http-parser may split a field across reads) to *s in
 * the arena. */
static int append_piece(tg_arena_t *a, const char **s, size_t *slen, const char *at, size_t len)
{
    char *n = tg_arena_alloc(a, *slen + len + 1);
    if (n == NULL)
        return -1;
    if (*slen)
        memcpy(n, *s, *slen);
    memcpy(n + *slen, at, len);
    n[*slen + len] = '\0';
    *s = n;
    *slen += len;
    return 0;
}

/* Trailer fields a proxy must not pass on (framing, connection-specific). */
static int trailer_forbidden(const tg_header_t *h)
{
    static const char *const names[] = { "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                                         "trailer", "upgrade", "host", "proxy-connection" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (h->name_len == strlen(names[i]) && strncasecmp(h->name, names[i], h->name_len) == 0)
            return 1;
    return 0;
}

#define MAX_TRAILER_BYTES (16 * 1024)

/* Chunked trailer fields, kept when the reader has somewhere to put them
 * (responses relayed to clients that can take trailers). State: 0 before
 * a field, 1 in a name, 2 in a value. */
static int on_trailer(tg_h1_reader_t *r, const char *at, size_t len, int is_value)
{
    if (r->trailers == NULL)
        return 0;
    for (size_t i = 0; i < len; i++) { /* the same rules as head fields: nothing to smuggle */
        unsigned char c = (unsigned char)at[i];
        if (is_value ? ((c < 0x20 && c != '\t') || c == 0x7f) : !tg_http_is_tchar(c))
            return fail(r, 400, "invalid character in a trailer field"), -1;
    }
    r->trailer_bytes += len;
    if (r->trailer_bytes > MAX_TRAILER_BYTES || r->trailers->n >= MAX_HEADERS)
        return fail(r, 400, "trailer section too large"), -1;
    if (!is_value && r->trailer_state != 1) { /* a new field */
        if (r->trailer_state == 2 && r->trailers->n && trailer_forbidden(&r->trailers->v[r->trailers->n - 1]))
            r->trailers->n--;
        if (tg_headers_add(r->trailers, r->arena, "", 0, "", 0) < 0)
            return fail(r, 500, "out of memory"), -1;
    }
    if (r->trailers->n == 0)
        return 0;
    tg_header_t *h = &r->trailers->v[r->trailers->n - 1];
    r->trailer_state = is_value ? 2 : 1;
    int rc = is_value ? append_piece(r->arena, &h->value, &h->value_len, at, len)
                      : append_piece(r->arena, &h->name, &h->name_len, at, len);
    return rc < 0 ? (fail(r, 500, "out of memory"), -1) : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    tg_h1_reader_t *r = p->data;
    if (!r->in_head)
        return on_trailer(r, at, len, 0);
    for (size_t i = 0; i < len; i++)
        if (!tg_http_is_tchar((unsigned char)at[i]))
            return fail(r, 400, "invalid character in a header name"), -1;
    if (r->headers->n >= MAX_HEADERS)
        return fail(r, 431, "too many header fields"), -1;
    r->value_pending = 1;
    return tg_headers_add(r->headers, r->arena, at, len, "", 0) < 0 ? (fail(r, 500, "out of memory"), -1) : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    tg_h1_reader_t *r = p->data;
    if (!r->in_head)
        return on_trailer(r, at, len, 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)at[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(r, 400, "invalid character in a header value"), -1;
    }
    tg_header_t *h = &r->headers->v[r->headers->n - 1];
    if (r->value_pending) {
        h->value = at;
        h->value_len = len;
        r->value_pending = 0;
    } else {
        h->value_len = (size_t)(at + len - h->value);
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    tg_h1_reader_t *r = p->data;
    r->in_head = 0;
    return r->skip_body ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    tg_h1_reader_t *r = p->data;
    r->body_bytes += len;
    if (r->max_body && r->body_bytes > r->max_body)
        return fail(r, 413, "request body too large"), -1;
    return evbuffer_add(r->sink, at, len) < 0 ? -1 : 0;
}

static int on_message_complete(http_parser *p)
{
    tg_h1_reader_t *r = p->data;
    if (!r->in_head && r->body == TG_BODY_CHUNKED) {
        if (r->trailers && r->trailers->n && trailer_forbidden(&r->trailers->v[r->trailers->n - 1]))
            r->trailers->n--;
        r->done = 1;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void tg_h1_reader_init(tg_h1_reader_t *r, enum http_parser_type type)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, type);
    r->parser.data = r;
}

/* ---- head scanning ---- */

/* Incrementally finds the end of the head in p[0..len), rejecting bare CR,
 * bare LF, NUL and obs-fold. Returns TG_H1_OK with *head_len set. */
static tg_h1_result_t scan_head(tg_h1_reader_t *r, const unsigned char *p, size_t len, size_t *head_len)
{
    size_t i;
    for (i = r->scan_pos; i < len; i++) {
        unsigned char c = p[i];
        if (c == '\r') {
            if (i + 1 == len)
                break;
            if (p[i + 1] != '\n')
                return fail(r, 400, "bare CR in the message head");
            if (i == r->line_start && i != 0) {
                *head_len = i + 2;
                return TG_H1_OK;
            }
            i++;
            r->line_start = i + 1;
        } else if (c == '\n') {
            return fail(r, 400, "bare LF in the message head");
        } else if (c == '\0') {
            return fail(r, 400, "NUL in the message head");
        } else if ((c == ' ' || c == '\t') && i == r->line_start) {
            return fail(r, 400, i == 0 ? "whitespace before the start line" : "obsolete line folding");
        }
    }
    r->scan_pos = i;
    return TG_H1_AGAIN;
}

/* Finds, copies and parses the head. On TG_H1_OK the head is drained. */
static tg_h1_result_t parse_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header, tg_arena_t *a,
                                 tg_headers_t *headers)
{
    /* Tolerate empty lines before a request line (RFC 9112 2.2). */
    if (r->scan_pos == 0) {
        unsigned char two[2];
        while (evbuffer_copyout(in, two, 2) == 2 && two[0] == '\r' && two[1] == '\n')
            evbuffer_drain(in, 2);
    }
    size_t avail = evbuffer_get_length(in);
    size_t want = avail < max_header ? avail : max_header;
    if (want == 0)
        return TG_H1_AGAIN;
    const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)want);
    if (p == NULL)
        return fail(r, 500, "out of memory");
    size_t head_len = 0;
    tg_h1_result_t res = scan_head(r, p, want, &head_len);
    if (res == TG_H1_ERROR)
        return res;
    if (res == TG_H1_AGAIN)
        return want >= max_header ? fail(r, 431, "request header section too large") : TG_H1_AGAIN;

    char *copy = tg_arena_alloc(a, head_len + 1);
    if (copy == NULL)
        return fail(r, 500, "out of memory");
    memcpy(copy, p, head_len);
    copy[head_len] = '\0';
    evbuffer_drain(in, head_len);

    r->arena = a;
    r->headers = headers;
    r->in_head = 1;
    size_t n = http_parser_execute(&r->parser, &parser_settings, copy, head_len);
    enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
    if (r->error_status)
        return TG_H1_ERROR;
    if (err != HPE_OK || (n != head_len && !r->parser.upgrade) || r->in_head)
        return fail(r, 400, http_errno_description(err != HPE_OK ? err : HPE_INVALID_EOF_STATE));

    /* NUL-terminate in place: the byte after each token is a delimiter the
     * parser no longer needs. Trailing whitespace is not part of a value. */
    for (size_t i = 0; i < headers->n; i++) {
        tg_header_t *h = &headers->v[i];
        while (h->value_len && (h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t'))
            h->value_len--;
        ((char *)h->name)[h->name_len] = '\0';
        if (h->value_len)
            ((char *)h->value)[h->value_len] = '\0';
        else
            h->value = "";
    }
    if (r->url)
        ((char *)r->url)[r->url_len] = '\0';
    return TG_H1_OK;
}

static int check_transfer_encoding(tg_h1_reader_t *r, const tg_headers_t *h, int version)
{
    size_t te = tg_headers_count(h, "transfer-encoding");
    if (te == 0)
        return 0;
    if (tg_headers_get(h, "content-length") != NULL)
        return fail(r, 400, "both Content-Length and Transfer-Encoding");
    if (version < 11)
        return fail(r, 400, "Transfer-Encoding in an HTTP/1.0 message");
    const tg_header_t *t = tg_headers_get(h, "transfer-encoding");
    if (te > 1 || strcasecmp(t->value, "chunked") != 0)
        return fail(r, 501, "unsupported transfer coding");
    return 0;
}

tg_h1_result_t tg_h1_read_request_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header,
                                       tg_arena_t *a, tg_request_t *req)
{
    tg_h1_result_t res = parse_head(r, in, max_header, a, &req->headers);
    if (res != TG_H1_OK)
        return res;
    http_parser *p = &r->parser;
    if (p->http_major != 1 || p->http_minor > 1)
        return fail(r, 505, "HTTP version not supported");
    req->version = p->http_major * 10 + p->http_minor;
    req->method = http_method_str((enum http_method)p->method);
    req->is_head = p->method == HTTP_HEAD;
    req->keep_alive = http_should_keep_alive(p) != 0;
    if (p->method == HTTP_CONNECT)
        return fail(r, 405, "CONNECT is not supported");
    if (check_transfer_encoding(r, &req->headers, req->version) < 0)
        return TG_H1_ERROR;

    size_t nhost = tg_headers_count(&req->headers, "host");
    if (nhost > 1 || (nhost == 0 && req->version == 11))
        return fail(r, 400, nhost ? "more than one Host header" : "missing Host header");
    req->authority = nhost ? tg_headers_get(&req->headers, "host")->value : NULL;

    const char *url = r->url ? r->url : "";
    if (url[0] == '/') {
        req->target = url;
    } else if (strcmp(url, "*") == 0 && p->method == HTTP_OPTIONS) {
        req->target = url;
    } else {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, r->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)))
            return fail(r, 400, "invalid request target");
        /* absolute-form: the target's authority replaces Host (RFC 9112 3.2.2) */
        size_t hs = u.field_data[UF_HOST].off;
        size_t he = u.field_set & (1 << UF_PORT) ? u.field_data[UF_PORT].off + u.field_data[UF_PORT].len
                                                 : hs + u.field_data[UF_HOST].len;
        req->authority = tg_arena_strndup(a, url + hs, he - hs);
        size_t ps = u.field_set & (1 << UF_PATH) ? u.field_data[UF_PATH].off : he;
        req->target = ps < r->url_len && url[ps] == '/' ? url + ps : "/";
        if (req->authority == NULL || tg_headers_set(&req->headers, a, "host", req->authority) < 0)
            return fail(r, 500, "out of memory");
    }
    const char *q = strchr(req->target, '?');
    req->path_len = q ? (size_t)(q - req->target) : strlen(req->target);

    const tg_header_t *expect = tg_headers_get(&req->headers, "expect");
    if (expect != NULL) {
        if (strcasecmp(expect->value, "100-continue") != 0)
            return fail(r, 417, "unsupported expectation");
        req->expect_continue = req->version == 11;
    }
    req->upgrade = p->upgrade;
    if (p->flags & F_CHUNKED) {
        req->body = TG_BODY_CHUNKED;
    } else if ((p->flags & F_CONTENTLENGTH) && p->content_length > 0) {
        req->body = TG_BODY_LENGTH;
        req->content_length = p->content_length;
    } else {
        req->body = TG_BODY_NONE;
    }
    if (r->max_body && req->body == TG_BODY_LENGTH && req->content_length > r->max_body)
        return fail(r, 413, "request body too large");
    r->body = req->body;
    r->remaining = req->content_length;
    return TG_H1_OK;
}

tg_h1_result_t tg_h1_read_response_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header,
                                        tg_arena_t *a, tg_response_t *resp, int request_is_head)
{
    r->skip_body = request_is_head != 0;
    tg_h1_result_t res = parse_head(r, in, max_header, a, &resp->headers);
    if (res != TG_H1_OK)
        return res;
    http_parser *p = &r->parser;
    int status = (int)p->status_code;
    if (p->http_major != 1 || status < 100 || status > 999)
        return fail(r, 502, "malformed upstream response");
    resp->status = status;
    resp->version = p->http_major * 10 + p->http_minor;
    if (check_transfer_encoding(r, &resp->headers, 11) < 0)
        return fail(r, 502, "upstream response has unsupported framing");
    if (request_is_head || status < 200 || status == 204 || status == 304) {
        resp->body = status == 101 ? TG_BODY_TUNNEL : TG_BODY_NONE;
    } else if (p->flags & F_CHUNKED) {
        resp->body = TG_BODY_CHUNKED;
    } else if (p->flags & F_CONTENTLENGTH) {
        resp->body = p->content_length ? TG_BODY_LENGTH : TG_BODY_NONE;
        resp->content_length = p->content_length;
    } else {
        resp->body = TG_BODY_EOF;
    }
    if (resp->body == TG_BODY_NONE && (p->flags & F_CONTENTLENGTH) && !request_is_head)
        resp->content_length = 0;
    else if (request_is_head && (p->flags & F_CONTENTLENGTH))
        resp->content_length = p->content_length;
    resp->keep_alive = resp->body != TG_BODY_EOF && http_should_keep_alive(p) != 0;
    r->body = resp->body;
    r->remaining = resp->content_length;
    return TG_H1_OK;
}

/* ---- bodies ---- */

static ssize_t read_chunked(tg_h1_reader_t *r, struct evbuffer *in, struct evbuffer *out, size_t max, int eof,
                            int *fin)
{
    struct evbuffer_iovec vec[8];
    size_t before = evbuffer_get_length(out), consumed = 0;
    int nvec = evbuffer_peek(in, (ev_ssize_t)max, NULL, vec, 8);
    if (nvec > 8)
        nvec = 8;
    r->sink = out;
    for (int i = 0; i < nvec && !r->done; i++) {
        size_t len = vec[i].iov_len;
        if (consumed + len > max)
            len = max - consumed;
        if (len == 0)
            continue; /* an empty chain; a zero length would mean EOF to http-parser */
        size_t n = http_parser_execute(&r->parser, &parser_settings, vec[i].iov_base, len);
        consumed += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&r->parser, 0);
            break;
        }
        if (err != HPE_OK) {
            evbuffer_drain(in, consumed);
            if (!r->error_status)
                fail(r, 400, http_errno_description(err));
            return -1;
        }
        if (n < len)
            break;
    }
    evbuffer_drain(in, consumed);
    if (r->done) {
        *fin = 1;
    } else if (eof && evbuffer_get_length(in) == 0) {
        fail(r, 400, "body truncated");
        return -1;
    }
    return (ssize_t)(evbuffer_get_length(out) - before);
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

int tg_h1_write_head(struct evbuffer *out, const char *start_line, const tg_headers_t *h, const char *extra)
{
    size_t sl = strlen(start_line), el = extra ? strlen(extra) : 0;
    size_t total = sl + 2 + el + 2;
    for (size_t i = 0; i < h->n; i++)
        total += h->v[i].name_len + 2 + h->v[i].value_len + 2;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total)
        return -1;
    char *p = v.iov_base;
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
    *p++ = '\n';
    v.iov_len = total;
    return evbuffer_commit_space(out, &v, 1);
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
