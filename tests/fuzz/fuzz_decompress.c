/*
 * fuzz_decompress: a client's compressed request body through the
 * request decompressor (filters/decompress.c), cut into pieces as the
 * network might. Byte 0 picks the format (gzip, br, zstd) and the ratio;
 * byte 1 the absolute cap; byte 2 seeds the piece sizes; the rest is the
 * body. Oracles beyond "no crash":
 *   - after a piece is taken (OK), its output is at most its size times
 *     the ratio plus TG_DECODE_BURST, all output at most all input times
 *     the ratio plus TG_DECODE_SLACK, and at most the cap;
 *   - a piece is refused as OVER only past a limit, and at most one step
 *     (TG_DECODE_STEP) past it;
 *   - a stream taken whole equals what the format's own one-shot decoder
 *     makes of the same bytes (bounded by the cap).
 */
#include <brotli/decode.h>
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "filters/decompress.h"

/* The format's own decoder over the whole input at once, at most cap + 1
 * bytes of output. Returns the length, or -1 if the stream is not valid
 * and complete (or is followed by other bytes). */
static long reference(int alg, const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    if (alg == TG_DECODE_GZIP) {
        z_stream z = { 0 };
        if (inflateInit2(&z, 15 + 16) != Z_OK)
            return -1;
        z.next_in = (uint8_t *)in;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = (uInt)(cap + 1);
        int r = inflate(&z, Z_FINISH);
        long len = (long)(cap + 1 - z.avail_out);
        int ok = r == Z_STREAM_END && z.avail_in == 0;
        inflateEnd(&z);
        return ok ? len : -1;
    }
    if (alg == TG_DECODE_BR) {
        BrotliDecoderState *s = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        size_t ai = n, ao = cap + 1;
        const uint8_t *ni = in;
        uint8_t *no = out;
        BrotliDecoderResult r = BrotliDecoderDecompressStream(s, &ai, &ni, &ao, &no, NULL);
        BrotliDecoderDestroyInstance(s);
        return r == BROTLI_DECODER_RESULT_SUCCESS && ai == 0 ? (long)(cap + 1 - ao) : -1;
    }
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, TG_DECODE_ZSTD_WINDOW_LOG);
    ZSTD_inBuffer ib = { in, n, 0 };
    ZSTD_outBuffer ob = { out, cap + 1, 0 };
    size_t r = ZSTD_decompressStream(d, &ob, &ib);
    ZSTD_freeDCtx(d);
    return !ZSTD_isError(r) && r == 0 && ib.pos == n ? (long)ob.pos : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    int alg = data[0] % 3;
    static const uint64_t ratios[] = { 1, 2, 10, 100, 1000 };
    uint64_t ratio = ratios[(data[0] / 3) % 5];
    uint64_t cap = (uint64_t)(data[1] % 16 + 1) * 256 * 1024; /* 256 KiB to 4 MiB: past TG_DECODE_BURST */
    uint32_t seed = data[2];
    const uint8_t *body = data + 3;
    size_t n = size - 3;

    tg_decoder_t *d = tg_decoder_new((tg_decode_alg_t)alg, ratio, cap);
    struct evbuffer *piece = evbuffer_new(), *out = evbuffer_new(), *all = evbuffer_new();
    if (d == NULL || piece == NULL || out == NULL || all == NULL)
        abort();
    size_t off = 0;
    tg_decode_result_t rc = TG_DECODE_OK;
    while (off < n && rc == TG_DECODE_OK) {
        seed = seed * 1103515245u + 12345u;
        size_t len = 1 + (seed >> 8) % ((seed & 0x10000) ? 4096 : 512);
        if (len > n - off)
            len = n - off;
        uint64_t in_before = tg_decoder_in(d), out_before = tg_decoder_out(d);
        evbuffer_add(piece, body + off, len);
        off += len;
        rc = tg_decoder_feed(d, piece, out);
        uint64_t made = tg_decoder_out(d) - out_before, in_total = in_before + len;
        if (evbuffer_get_length(piece) != 0 || evbuffer_get_length(out) != made)
            abort(); /* the piece is taken whole; the output is what was counted */
        uint64_t limit = out_before + len * ratio + TG_DECODE_BURST; /* the least of the three */
        if (limit > in_total * ratio + TG_DECODE_SLACK)
            limit = in_total * ratio + TG_DECODE_SLACK;
        if (limit > cap)
            limit = cap;
        if ((rc == TG_DECODE_OK && tg_decoder_out(d) > limit) ||
            (rc == TG_DECODE_OVER && (tg_decoder_out(d) <= limit || tg_decoder_out(d) > limit + TG_DECODE_STEP))) {
            fprintf(stderr, "fuzz_decompress: %llu out (%llu from %zu in; ratio %llu, cap %llu): %d\n",
                    (unsigned long long)tg_decoder_out(d), (unsigned long long)made, len,
                    (unsigned long long)ratio, (unsigned long long)cap, rc);
            abort();
        }
        evbuffer_add_buffer(all, out);
    }
    if (rc == TG_DECODE_OK && off == n && tg_decoder_done(d)) {
        size_t got = evbuffer_get_length(all);
        uint8_t *want = malloc(cap + 1);
        long wl = reference(alg, body, n, want, cap);
        if (wl < 0 || (size_t)wl != got || (got > 0 && memcmp(evbuffer_pullup(all, -1), want, got) != 0)) {
            fprintf(stderr, "fuzz_decompress: %zu bytes taken, the reference says %ld\n", got, wl);
            abort();
        }
        free(want);
    }
    evbuffer_free(piece);
    evbuffer_free(out);
    evbuffer_free(all);
    tg_decoder_free(d);
    return 0;
}
