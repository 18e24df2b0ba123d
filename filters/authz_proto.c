/*
 * filters/authz_proto.c — Envoy's ext_authz messages. See authz_proto.h.
 */
#include "filters/authz_proto.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy/base/json.h"

/* ---- the request ---- */

/* A map<string, string> entry. */
static void map_entry(tg_pb_writer_t *w, uint32_t field, const char *k, const char *v, size_t vlen)
{
    size_t m = tg_pb_begin(w, field);
    tg_pb_str(w, 1, k);
    tg_pb_bytes(w, 2, v, vlen);
    tg_pb_end(w, m);
}

/* Header `name`'s values joined with ',' (a map has one per name), into
 * the map. 0, or -1 (out of memory). */
static int header_entry(tg_pb_writer_t *w, tg_arena_t *a, const tg_headers_t *h, const char *name)
{
    size_t len = 0, count = 0;
    for (size_t j = 0; j < h->n; j++)
        if (strcasecmp(h->v[j].name, name) == 0) {
            len += h->v[j].value_len + 1;
            count++;
        }
    if (count == 0)
        return 0;
    char *joined = tg_arena_alloc(a, len), *o = joined;
    if (joined == NULL)
        return -1;
    for (size_t j = 0; j < h->n; j++)
        if (strcasecmp(h->v[j].name, name) == 0) {
            if (o != joined)
                *o++ = ',';
            memcpy(o, h->v[j].value, h->v[j].value_len);
            o += h->v[j].value_len;
        }
    map_entry(w, 3, name, joined, (size_t)(o - joined));
    return 0;
}

int tg_authz_check_request(const tg_authz_request_t *in, tg_pb_writer_t *w)
{
    const tg_request_t *req = in->req;
    tg_pb_reserve_grpc_prefix(w);
    size_t attrs = tg_pb_begin(w, 1);
    size_t src = tg_pb_begin(w, 1), addr = tg_pb_begin(w, 1), sock = tg_pb_begin(w, 1);
    tg_pb_str(w, 2, in->client_addr);
    tg_pb_end(w, sock);
    tg_pb_end(w, addr);
    tg_pb_str(w, 4, in->principal);
    tg_pb_end(w, src);
    size_t rq = tg_pb_begin(w, 4);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    size_t t = tg_pb_begin(w, 1);
    tg_pb_uint(w, 1, (uint64_t)now.tv_sec);
    tg_pb_uint(w, 2, (uint64_t)now.tv_nsec);
    tg_pb_end(w, t);
    size_t http = tg_pb_begin(w, 2);
    const tg_header_t *id = tg_headers_get(&req->headers, "x-request-id");
    if (id != NULL)
        tg_pb_bytes(w, 1, id->value, id->value_len);
    tg_pb_str(w, 2, req->method);
    for (size_t i = 0; i < in->n_headers; i++)
        if (header_entry(w, in->arena, &req->headers, in->headers[i]) < 0)
            return -1;
    if (in->with_body) /* as Envoy marks a body cut to its limit */
        map_entry(w, 3, "x-envoy-auth-partial-body", in->body_whole ? "false" : "true", in->body_whole ? 5 : 4);
    tg_pb_str(w, 4, req->target);
    tg_pb_str(w, 5, req->authority);
    tg_pb_str(w, 6, in->scheme ? in->scheme : "http");
    const char *q = req->target ? strchr(req->target, '?') : NULL;
    if (q != NULL)
        tg_pb_str(w, 7, q + 1);
    /* int64: -1 (a varint of ten bytes) when the length is not known */
    tg_pb_uint(w, 9, req->body == TG_BODY_LENGTH ? req->content_length : req->body == TG_BODY_NONE ? 0 : UINT64_MAX);
    tg_pb_str(w, 10, req->version == 20 ? "HTTP/2" : req->version == 10 ? "HTTP/1.0" : "HTTP/1.1");
    if (in->with_body && in->body_len > 0)
        tg_pb_bytes(w, tg_utf8_ok(in->body, in->body_len) ? 11 : 12, in->body, in->body_len);
    tg_pb_end(w, http);
    tg_pb_end(w, rq);
    tg_pb_end(w, attrs);
    return tg_pb_grpc_frame(w);
}

/* ---- the answer ---- */

/* A header name the service sent: an RFC 9110 token, lower-cased into
 * the arena. NULL if it is not one (or no memory). */
static char *answer_name(tg_arena_t *a, const uint8_t *p, size_t n)
{
    if (n == 0 || n > 256)
        return NULL;
    char *s = tg_arena_alloc(a, n + 1);
    for (size_t i = 0; s != NULL && i < n; i++) {
        if (!tg_http_is_tchar(p[i]))
            return NULL;
        s[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] | 0x20 : p[i]);
    }
    if (s != NULL)
        s[n] = '\0';
    return s;
}

/* A HeaderValueOption { header(1) = HeaderValue { key(1), value(2),
 * raw_value(3) } } appended to pairs. 0, or -1 if malformed. */
static int answer_header(tg_arena_t *a, const tg_pb_field_t *opt, const char **pairs, size_t *n)
{
    tg_pb_reader_t r = tg_pb_reader(opt->data, opt->len);
    tg_pb_field_t f;
    int rc;
    const uint8_t *k = NULL, *v = NULL, *raw = NULL;
    size_t kl = 0, vl = 0, rl = 0;
    while ((rc = tg_pb_next(&r, &f)) > 0) {
        if (f.num != 1)
            continue; /* append, append_action, keep_empty_value: headers are added */
        if (f.wire != TG_PB_LEN)
            return -1;
        tg_pb_reader_t hr = tg_pb_reader(f.data, f.len);
        tg_pb_field_t h;
        while ((rc = tg_pb_next(&hr, &h)) > 0) {
            if (h.num > 3)
                continue;
            if (h.wire != TG_PB_LEN)
                return -1;
            if (h.num == 1)
                k = h.data, kl = h.len;
            else if (h.num == 2)
                v = h.data, vl = h.len;
            else
                raw = h.data, rl = h.len;
        }
        if (rc < 0)
            return -1;
    }
    if (rc < 0 || k == NULL || *n >= TG_AUTHZ_MAX_HEADERS)
        return -1;
    if (vl == 0 && raw != NULL)
        v = raw, vl = rl;
    for (size_t i = 0; i < vl; i++)
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return -1;
    char *name = answer_name(a, k, kl);
    char *val = tg_arena_strndup(a, vl ? (const char *)v : "", vl);
    if (name == NULL || val == NULL)
        return -1;
    pairs[2 * *n] = name;
    pairs[2 * *n + 1] = val;
    (*n)++;
    return 0;
}

/* The varint field 1 of a nested message (Status.code, HttpStatus.code). */
static int code_of(const tg_pb_field_t *m, uint64_t *code)
{
    tg_pb_reader_t r = tg_pb_reader(m->data, m->len);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0)
        if (f.num == 1) {
            if (f.wire != TG_PB_VARINT)
                return -1;
            *code = f.v;
        }
    return rc;
}

int tg_authz_read_check_response(tg_arena_t *a, const uint8_t *msg, size_t len, tg_authz_answer_t *out)
{
    memset(out, 0, sizeof(*out));
    tg_pb_reader_t r = tg_pb_reader(msg, len);
    tg_pb_field_t f, denied = { 0 }, ok = { 0 };
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0) {
        if (f.num > 3)
            continue; /* dynamic_metadata */
        if (f.wire != TG_PB_LEN)
            return -1;
        if (f.num == 1 && code_of(&f, &out->code) < 0)
            return -1;
        if (f.num == 2)
            denied = f;
        if (f.num == 3)
            ok = f;
    }
    if (rc < 0)
        return -1;
    int allowed = out->code == 0;
    const tg_pb_field_t *part = allowed ? &ok : &denied;
    tg_pb_reader_t pr = tg_pb_reader(part->data, part->len);
    while ((rc = tg_pb_next(&pr, &f)) > 0) {
        if (f.wire != TG_PB_LEN)
            continue;
        if (!allowed && f.num == 1) { /* HttpStatus */
            uint64_t code = 0;
            if (code_of(&f, &code) < 0)
                return -1;
            out->http_status = code >= 100 && code <= 599 ? (int)code : 0;
        } else if (f.num == 2) {
            if (answer_header(a, &f, out->headers, &out->n_headers) < 0)
                return -1;
        } else if (allowed && f.num == 6) {
            if (answer_header(a, &f, out->client, &out->n_client) < 0)
                return -1;
        } else if (allowed && f.num == 5) {
            char *name = answer_name(a, f.data, f.len);
            if (name == NULL || out->n_remove >= TG_AUTHZ_MAX_HEADERS)
                return -1;
            out->remove[out->n_remove++] = name;
        }
    }
    return rc < 0 ? -1 : 0;
}
