/*
 * proxy/base/fnv.h — FNV-1a, 64 bits: a digest of bytes that come in
 * pieces (a response body as it streams), to tell two bodies apart
 * cheaply. Not keyed: never for tables whose keys a client chooses (that
 * is siphash.h's job). Pure functions.
 */
#ifndef TG_BASE_FNV_H
#define TG_BASE_FNV_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

#define TG_FNV1A64_INIT 0xcbf29ce484222325ULL

static inline uint64_t tg_fnv1a64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* The digest continued over every byte of an evbuffer (not drained). */
static inline uint64_t tg_fnv1a64_evbuffer(uint64_t h, struct evbuffer *b)
{
    size_t left = evbuffer_get_length(b);
    struct evbuffer_ptr at;
    if (left == 0 || evbuffer_ptr_set(b, &at, 0, EVBUFFER_PTR_SET) < 0)
        return h;
    while (left > 0) {
        struct evbuffer_iovec v[16];
        int nv = evbuffer_peek(b, (ssize_t)left, &at, v, 16);
        size_t moved = 0;
        for (int i = 0; i < nv && i < 16 && moved < left; i++) {
            size_t n = v[i].iov_len < left - moved ? v[i].iov_len : left - moved;
            h = tg_fnv1a64(h, v[i].iov_base, n);
            moved += n;
        }
        if (moved == 0 || evbuffer_ptr_set(b, &at, moved, EVBUFFER_PTR_ADD) < 0)
            break;
        left -= moved;
    }
    return h;
}

#endif
