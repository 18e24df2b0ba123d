/*
 * proxy/base/grpc_frames.c — see grpc_frames.h.
 */
#include "proxy/base/grpc_frames.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

int tg_grpc_frames_check(tg_grpc_frames_t *st, struct evbuffer *piece, uint64_t max)
{
    size_t len = evbuffer_get_length(piece), pos = 0;
    while (pos < len) {
        if (st->remaining > 0) {
            uint64_t skip = st->remaining < len - pos ? st->remaining : len - pos;
            st->remaining -= skip;
            pos += (size_t)skip;
            continue;
        }
        struct evbuffer_ptr p;
        if (evbuffer_ptr_set(piece, &p, pos, EVBUFFER_PTR_SET) < 0)
            break;
        size_t take = 5u - st->have < len - pos ? 5u - st->have : len - pos;
        if (evbuffer_copyout_from(piece, &p, st->prefix + st->have, take) < 0)
            break;
        st->have = (uint8_t)(st->have + take);
        pos += take;
        if (st->have < 5)
            break;
        st->have = 0;
        uint64_t n = (uint64_t)st->prefix[1] << 24 | (uint64_t)st->prefix[2] << 16 | (uint64_t)st->prefix[3] << 8 |
                     st->prefix[4];
        if (n > max)
            return -1;
        st->remaining = n;
    }
    return 0;
}

/* Does ct begin with base (any case), then end or go on with '+' or ';'
 * (optional whitespace before a ';', RFC 9110 5.6.6)? */
static int media_type_is(const char *ct, const char *base, size_t len)
{
    if (strncasecmp(ct, base, len) != 0)
        return 0;
    const char *p = ct + len;
    if (*p == '+')
        return 1;
    while (*p == ' ' || *p == '\t')
        p++;
    return *p == '\0' || *p == ';';
}

tg_grpc_kind_t tg_grpc_classify(const tg_request_t *req)
{
    if (req->method == NULL || strcmp(req->method, "POST") != 0)
        return TG_GRPC_NONE;
    const tg_header_t *h = tg_headers_get(&req->headers, "content-type");
    if (h == NULL)
        return TG_GRPC_NONE;
    if (req->version == 20 && media_type_is(h->value, "application/grpc", 16))
        return TG_GRPC_CALL;
    if (media_type_is(h->value, "application/grpc-web", 20) || media_type_is(h->value, "application/grpc-web-text", 25))
        return TG_GRPC_WEB;
    return TG_GRPC_NONE;
}

int tg_grpc_parse_timeout(const char *v, size_t len, uint64_t *us)
{
    if (len < 2 || len > 9)
        return -1;
    uint64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v[i] - '0'); /* 8 digits: at most 99999999 */
    }
    switch (v[len - 1]) {
    case 'H': n *= 3600000000ULL; break; /* at most 3.6e17: no overflow */
    case 'M': n *= 60000000ULL; break;
    case 'S': n *= 1000000ULL; break;
    case 'm': n *= 1000ULL; break;
    case 'u': break;
    case 'n': n /= 1000; break;
    default: return -1;
    }
    *us = n ? n : 1;
    return 0;
}
