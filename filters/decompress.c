/*
 * filters/decompress.c — see decompress.h.
 */
#include "filters/decompress.h"

#include <brotli/decode.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <zlib.h>
#include <zstd.h>

struct tg_decoder {
    tg_decode_alg_t alg;
    z_stream z;
    int z_open;
    BrotliDecoderState *br;
    ZSTD_DCtx *zs;
    unsigned char zhead[18]; /* a zstd frame's first bytes: its header, for the size it declares */
    size_t zhead_n;
    uint64_t ratio, max_out;
    uint64_t in, out;  /* bytes taken, bytes produced */
    unsigned done : 1; /* the compressed stream ended */
    unsigned dead : 1; /* a limit or an error ended it: nothing more is taken */
};

tg_decoder_t *tg_decoder_new(tg_decode_alg_t alg, uint64_t ratio, uint64_t max_out)
{
    tg_decoder_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->alg = alg;
    d->ratio = ratio ? ratio : 1;
    d->max_out = max_out;
    int ok;
    if (alg == TG_DECODE_GZIP) {
        ok = d->z_open = inflateInit2(&d->z, 15 + 16) == Z_OK; /* gzip framing only */
    } else if (alg == TG_DECODE_BR) {
        ok = (d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL)) != NULL;
    } else {
        ok = (d->zs = ZSTD_createDCtx()) != NULL &&
             !ZSTD_isError(ZSTD_DCtx_setParameter(d->zs, ZSTD_d_windowLogMax, TG_DECODE_ZSTD_WINDOW_LOG));
    }
    if (!ok) {
        tg_decoder_free(d);
        return NULL;
    }
    return d;
}

void tg_decoder_free(tg_decoder_t *d)
{
    if (d == NULL)
        return;
    if (d->z_open)
        inflateEnd(&d->z);
    BrotliDecoderDestroyInstance(d->br);
    ZSTD_freeDCtx(d->zs);
    free(d);
}

int tg_decoder_done(const tg_decoder_t *d)
{
    return d->done;
}

uint64_t tg_decoder_in(const tg_decoder_t *d)
{
    return d->in;
}

uint64_t tg_decoder_out(const tg_decoder_t *d)
{
    return d->out;
}

/* a * b + c, saturating */
static uint64_t mul_add(uint64_t a, uint64_t b, uint64_t c)
{
    if (a != 0 && b > (UINT64_MAX - c) / a)
        return UINT64_MAX;
    return a * b + c;
}

/* zstd's streaming decoder (1.5.4) ends a frame without checking the
 * content size its header declares, where its one-shot decoder refuses
 * the frame: a frame that makes more or fewer bytes than it declares is
 * corrupt here whichever way it arrives. `last` = bytes this step made,
 * not yet counted in d->out. */
static int zstd_size_kept(const tg_decoder_t *d, size_t last)
{
    unsigned long long want = ZSTD_getFrameContentSize(d->zhead, d->zhead_n);
    if (want == ZSTD_CONTENTSIZE_UNKNOWN || want == ZSTD_CONTENTSIZE_ERROR)
        return 1;
    return want == d->out + last;
}

/* One step: inflates from in[0..len) into at most TG_DECODE_STEP bytes of
 * out. *took = input consumed, *more = the decoder may have more output
 * without more input. -1 on a corrupt stream. */
static int step(tg_decoder_t *d, const unsigned char *in, size_t len, struct evbuffer *out, size_t *took, int *more)
{
    struct evbuffer_iovec iov;
    if (evbuffer_reserve_space(out, TG_DECODE_STEP, &iov, 1) < 1)
        return -1;
    size_t avail = iov.iov_len < TG_DECODE_STEP ? iov.iov_len : TG_DECODE_STEP;
    size_t room = avail;
    if (d->alg == TG_DECODE_GZIP) {
        d->z.next_in = (unsigned char *)in;
        d->z.avail_in = (uInt)len;
        d->z.next_out = iov.iov_base;
        d->z.avail_out = (uInt)avail;
        int zr = inflate(&d->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return -1;
        *took = len - d->z.avail_in;
        avail = d->z.avail_out;
        d->done = zr == Z_STREAM_END;
        *more = avail == 0;
    } else if (d->alg == TG_DECODE_BR) {
        const uint8_t *ni = in;
        uint8_t *no = iov.iov_base;
        size_t ai = len;
        BrotliDecoderResult r = BrotliDecoderDecompressStream(d->br, &ai, &ni, &avail, &no, NULL);
        if (r == BROTLI_DECODER_RESULT_ERROR)
            return -1;
        *took = len - ai;
        d->done = r == BROTLI_DECODER_RESULT_SUCCESS;
        *more = r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT;
    } else {
        ZSTD_inBuffer ib = { in, len, 0 };
        ZSTD_outBuffer ob = { iov.iov_base, avail, 0 };
        size_t r = ZSTD_decompressStream(d->zs, &ob, &ib);
        if (ZSTD_isError(r))
            return -1;
        *took = ib.pos;
        avail = ob.size - ob.pos;
        for (size_t i = 0; i < ib.pos && d->zhead_n < sizeof(d->zhead); i++)
            d->zhead[d->zhead_n++] = in[i];
        d->done = r == 0;
        *more = avail == 0;
        if (d->done && !zstd_size_kept(d, room - avail))
            return -1;
    }
    iov.iov_len = room - avail;
    d->out += iov.iov_len;
    return evbuffer_commit_space(out, &iov, 1) < 0 ? -1 : 0;
}

tg_decode_result_t tg_decoder_feed(tg_decoder_t *d, struct evbuffer *piece, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(piece);
    if (d->dead) {
        evbuffer_drain(piece, len);
        return TG_DECODE_BAD;
    }
    /* the least of the three limits, fixed for this piece */
    uint64_t limit = mul_add(len, d->ratio, d->out + TG_DECODE_BURST);
    uint64_t total = mul_add(d->in + len, d->ratio, TG_DECODE_SLACK);
    if (total < limit)
        limit = total;
    if (d->max_out < limit)
        limit = d->max_out;
    d->in += len;
    tg_decode_result_t rc = TG_DECODE_OK;
    while (rc == TG_DECODE_OK && evbuffer_get_length(piece) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(piece, -1, NULL, &v, 1) < 1)
            break;
        const unsigned char *in = v.iov_base;
        size_t n = v.iov_len;
        for (;;) {
            if (d->done && n > 0) {
                rc = TG_DECODE_BAD; /* bytes after the end of the stream */
                break;
            }
            size_t took = 0;
            int more = 0;
            if (step(d, in, n, out, &took, &more) < 0) {
                rc = TG_DECODE_BAD;
                break;
            }
            in += took;
            n -= took;
            if (d->out > limit) {
                rc = TG_DECODE_OVER;
                break;
            }
            if (n == 0 && !more)
                break;
            if (took == 0 && !more && !d->done) {
                rc = TG_DECODE_BAD; /* no progress: a decoder that wants what it cannot get */
                break;
            }
        }
        evbuffer_drain(piece, v.iov_len);
    }
    evbuffer_drain(piece, evbuffer_get_length(piece));
    if (rc != TG_DECODE_OK)
        d->dead = 1;
    return rc;
}
