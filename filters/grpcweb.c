/*
 * filters/grpcweb.c — see grpcweb.h. The per-exchange state lives in the
 * exchange arena; body pieces are rewritten in place (the text form's
 * base64 through a scratch buffer of the piece's size).
 */
#include "filters/grpcweb.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct gw_state {
    unsigned text : 1;       /* application/grpc-web-text: base64 both ways */
    unsigned active : 1;     /* the response is translated */
    char carry[4];           /* request: base64 characters of an unfinished quad */
    unsigned ncarry;
    char suffix[48];         /* "+proto", "+json" or "" */
} gw_state_t;

static const tg_keyset_t gw_keyset = { "filter.grpc_web", "grpc_web", NULL, 0 };

static void *gw_create(tg_node_t *node, const char *config_path)
{
    tg_node_t none[1];
    if (tg_node_present(node) && tg_node_keys(node, "grpc_web", &gw_keyset, none) < 0)
        return NULL;
    return calloc(1, 1); /* no settings */
}

static void gw_destroy(void *p)
{
    free(p);
}

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : c == '=' ? 64 : -1;
}

long tg_grpcweb_b64_decode(const char *src, size_t len, uint8_t *dst, char carry[4], unsigned *ncarry)
{
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (c == '\r' || c == '\n' || c == ' ')
            continue;
        if (b64val(c) < 0)
            return -1;
        carry[(*ncarry)++] = c;
        if (*ncarry < 4)
            continue;
        *ncarry = 0;
        int a = b64val(carry[0]), b = b64val(carry[1]), x = b64val(carry[2]), y = b64val(carry[3]);
        if (a == 64 || b == 64 || (x == 64 && y != 64))
            return -1; /* padding only at the end of a quad */
        dst[n++] = (uint8_t)(a << 2 | b >> 4);
        if (x != 64)
            dst[n++] = (uint8_t)((b & 15) << 4 | x >> 2);
        if (y != 64)
            dst[n++] = (uint8_t)((x & 3) << 6 | y);
    }
    return n;
}

size_t tg_grpcweb_b64_encode(const uint8_t *src, size_t len, char *dst)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[o++] = b64[v >> 18];
        dst[o++] = b64[v >> 12 & 63];
        dst[o++] = b64[v >> 6 & 63];
        dst[o++] = b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < len ? (uint32_t)src[i + 1] << 8 : 0);
        dst[o++] = b64[v >> 18];
        dst[o++] = b64[v >> 12 & 63];
        dst[o++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
        dst[o++] = '=';
    }
    return o;
}

/* ---- the hooks ---- */

static tg_filter_status_t gw_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    const tg_header_t *ct = tg_headers_get(&fx->req->headers, "content-type");
    if (ct == NULL || strncasecmp(ct->value, "application/grpc-web", 20) != 0)
        return TG_FILTER_CONTINUE; /* not gRPC-Web: untouched */
    const char *rest = ct->value + 20;
    int text = strncasecmp(rest, "-text", 5) == 0;
    if (text)
        rest += 5;
    if (*rest != '\0' && *rest != '+' && *rest != ';')
        return TG_FILTER_CONTINUE; /* application/grpc-webfoo */
    gw_state_t *st = tg_arena_alloc(fx->arena, sizeof(*st));
    if (st == NULL) {
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    memset(st, 0, sizeof(*st));
    st->text = text != 0;
    size_t sl = *rest == '+' ? strcspn(rest, ";") : 0;
    if (sl >= sizeof(st->suffix))
        sl = 0;
    memcpy(st->suffix, rest, sl);
    st->suffix[sl] = '\0';
    char *up = tg_arena_alloc(fx->arena, 17 + sl + 1);
    if (up == NULL)
        return TG_FILTER_CONTINUE;
    memcpy(up, "application/grpc", 16);
    memcpy(up + 16, st->suffix, sl + 1);
    tg_headers_set(&fx->req->headers, fx->arena, "content-type", up);
    tg_headers_set(&fx->req->headers, fx->arena, "te", "trailers");
    tg_headers_remove(&fx->req->headers, "x-grpc-web");
    if (st->text && fx->req->body != TG_BODY_NONE) { /* decoded, the body is shorter */
        tg_headers_remove(&fx->req->headers, "content-length");
        fx->req->body = TG_BODY_CHUNKED;
        fx->req->content_length = 0;
    }
    fx->state[index] = st;
    return TG_FILTER_CONTINUE;
}

static tg_filter_status_t gw_on_request_body(void *conf, tg_filter_exchange_t *fx, size_t index,
                                             struct evbuffer *piece, int fin)
{
    gw_state_t *st = fx->state[index];
    size_t len = evbuffer_get_length(piece);
    if (st == NULL || !st->text || (len == 0 && !fin))
        return TG_FILTER_CONTINUE;
    char *in = len ? (char *)evbuffer_pullup(piece, -1) : NULL;
    uint8_t *out = malloc(len * 3 / 4 + 4);
    long n = out == NULL ? -1 : tg_grpcweb_b64_decode(in ? in : "", len, out, st->carry, &st->ncarry);
    if (n < 0 || (fin && st->ncarry != 0)) {
        free(out);
        fx->reply_status = 400;
        fx->reply_message = "grpc-web-text body is not base64";
        return TG_FILTER_REPLY;
    }
    evbuffer_drain(piece, len);
    evbuffer_add(piece, out, (size_t)n);
    free(out);
    return TG_FILTER_CONTINUE;
}

static void gw_on_response(void *conf, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp)
{
    gw_state_t *st = fx->state[index];
    if (st == NULL)
        return;
    const tg_header_t *ct = tg_headers_get(&resp->headers, "content-type");
    if (ct != NULL && strncasecmp(ct->value, "application/grpc", 16) != 0)
        return; /* not a gRPC answer (an HTTP error page from a misconfigured upstream): as it is */
    char *web = tg_arena_alloc(fx->arena, 32 + sizeof(st->suffix));
    if (web == NULL)
        return;
    snprintf(web, 32 + sizeof(st->suffix), "application/grpc-web%s%s", st->text ? "-text" : "", st->suffix);
    tg_headers_set(&resp->headers, fx->arena, "content-type", web);
    if (resp->body == TG_BODY_NONE)
        return; /* trailers-only: grpc-status stays in the headers */
    tg_headers_remove(&resp->headers, "content-length");
    resp->body = TG_BODY_CHUNKED;
    st->active = 1;
}

/* The gRPC trailers as gRPC-Web's last frame: 0x80, a 4-byte length, then
 * "name:value\r\n" lines. */
static void trailer_frame(struct evbuffer *out, const tg_headers_t *tr)
{
    size_t len = 0;
    for (size_t i = 0; i < tr->n; i++)
        len += tr->v[i].name_len + 1 + tr->v[i].value_len + 2;
    uint8_t head[5] = { 0x80, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
    evbuffer_add(out, head, 5);
    for (size_t i = 0; i < tr->n; i++) {
        char lower[256];
        size_t nl = tr->v[i].name_len < sizeof(lower) ? tr->v[i].name_len : sizeof(lower);
        for (size_t k = 0; k < nl; k++) {
            char c = tr->v[i].name[k];
            lower[k] = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        evbuffer_add(out, lower, nl);
        evbuffer_add(out, ":", 1);
        evbuffer_add(out, tr->v[i].value, tr->v[i].value_len);
        evbuffer_add(out, "\r\n", 2);
    }
}

static void gw_on_response_body(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece, int fin)
{
    gw_state_t *st = fx->state[index];
    if (st == NULL || !st->active)
        return;
    if (fin && fx->resp_trailers != NULL) {
        trailer_frame(piece, fx->resp_trailers);
        fx->resp_trailers->n = 0; /* sent in the body: no HTTP trailers */
    }
    size_t len = evbuffer_get_length(piece);
    if (!st->text || len == 0)
        return;
    /* each piece on its own, padded: a streamed message is never held back */
    const uint8_t *in = evbuffer_pullup(piece, -1);
    char *out = malloc((len + 2) / 3 * 4);
    if (out == NULL) {
        evbuffer_drain(piece, len);
        return;
    }
    size_t n = tg_grpcweb_b64_encode(in, len, out);
    evbuffer_drain(piece, len);
    evbuffer_add(piece, out, n);
    free(out);
}

const tg_filter_type_t tg_filter_grpc_web = {
    .name = "grpc_web",
    .doc = "lets browsers call gRPC services: gRPC-Web and gRPC-Web-text to and from gRPC",
    .keys = &gw_keyset,
    .create = gw_create,
    .destroy = gw_destroy,
    .on_request = gw_on_request,
    .on_request_body = gw_on_request_body,
    .on_response = gw_on_response,
    .on_response_body = gw_on_response_body,
};
