/*
 * proxy/base/grpc_frames.c — see grpc_frames.h.
 */
#include "proxy/base/grpc_frames.h"

#include <event2/buffer.h>
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

int tg_grpc_content_type(const char *ct)
{
    if (ct == NULL || strncasecmp(ct, "application/grpc", 16) != 0)
        return 0;
    char c = ct[16];
    return c == '\0' || c == '+' || c == ';';
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
