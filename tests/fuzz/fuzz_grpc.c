/* Fuzz target: the gRPC pieces a client controls before any upstream sees
 * the call — the grpc-timeout value (checked against a plain reference
 * reading of the spec), the content-type test, and the message-length
 * walker, which must reach the same verdict whether the body comes whole
 * or split at every byte. Input: first byte picks the message limit, the
 * rest is the value / body. */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/grpc_frames.h"

static int reference_timeout(const uint8_t *v, size_t len, uint64_t *us)
{
    static const struct { char unit; uint64_t num, den; } units[] = {
        { 'H', 3600000000ULL, 1 }, { 'M', 60000000ULL, 1 }, { 'S', 1000000ULL, 1 },
        { 'm', 1000ULL, 1 }, { 'u', 1, 1 }, { 'n', 1, 1000 },
    };
    if (len < 2 || len > 9)
        return -1;
    char digits[9];
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        digits[i] = (char)v[i];
    }
    digits[len - 1] = '\0';
    uint64_t n = strtoull(digits, NULL, 10);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (v[len - 1] == (uint8_t)units[i].unit) {
            uint64_t x = n * units[i].num / units[i].den;
            *us = x ? x : 1;
            return 0;
        }
    return -1;
}

static int walk(const uint8_t *body, size_t len, size_t step, uint64_t max)
{
    tg_grpc_frames_t st = { 0 };
    int r = 0;
    for (size_t off = 0; off < len && r == 0; off += step) {
        struct evbuffer *piece = evbuffer_new();
        evbuffer_add(piece, body + off, len - off < step ? len - off : step);
        r = tg_grpc_frames_check(&st, piece, max);
        evbuffer_free(piece);
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint64_t max = (uint64_t)data[0] * 7;
    const uint8_t *v = data + 1;
    size_t len = size - 1;
    uint64_t a = 0, b = 0;
    int ra = tg_grpc_parse_timeout((const char *)v, len, &a), rb = reference_timeout(v, len, &b);
    if (ra != rb || (ra == 0 && a != b))
        abort();
    char ct[64];
    size_t n = len < sizeof(ct) - 1 ? len : sizeof(ct) - 1;
    memcpy(ct, v, n);
    ct[n] = '\0';
    tg_arena_t arena; /* the one "is this gRPC" rule on whatever content-type: no crash, no read past it */
    tg_arena_init(&arena);
    tg_request_t req = { .method = (data[0] & 1) ? "POST" : "GET", .version = (data[0] & 2) ? 20 : 11 };
    if (tg_headers_add(&req.headers, &arena, "content-type", 12, ct, n) == 0)
        (void)tg_grpc_classify(&req);
    tg_arena_free(&arena);
    if (len <= 4096 && walk(v, len, len ? len : 1, max) != walk(v, len, 1, max))
        abort();
    return 0;
}
