/*
 * filters/decompress.h — a request body's gzip, br or zstd stream inflated
 * as it arrives, under limits a hostile client cannot talk its way past
 * (the compress filter's `decompress_requests`).
 *
 * Three limits, each checked as output is produced (in steps of at most
 * TG_DECODE_STEP bytes), so that no call ever holds more than the limit
 * plus one step:
 *   - per piece: the output of one piece of input is at most its size
 *     times `ratio`, plus TG_DECODE_BURST (a decoder may hold output back
 *     and release it on a later byte: brotli at high quality releases
 *     100 KB on a 700-byte piece of an ordinary text at 60:1);
 *   - in total: all output is at most all input times `ratio`, plus
 *     TG_DECODE_SLACK (a small body may name a long match);
 *   together, no allowance builds up: 20 MB of incompressible bytes earn
 *   no licence for the next small piece to inflate to 2 GB — a piece (at
 *   most 128 KiB as the exchange reads) yields at most 128 KiB x ratio
 *   + 1 MiB, and is sent on before the next is read;
 *   - absolute: all output is at most `max_out` bytes.
 * zstd frames are refused if they need a window over 8 MiB (the decoder's
 * own memory), brotli's large-window extension is off (16 MiB at most).
 *
 * A decoder belongs to one exchange (the filter's per-exchange state) and
 * is freed with it. Pure but for its allocations.
 */
#ifndef TG_FILTERS_DECOMPRESS_H
#define TG_FILTERS_DECOMPRESS_H

#include <stdint.h>

struct evbuffer;

#define TG_DECODE_SLACK (64 * 1024)    /* what a whole body may add beyond its ratio */
#define TG_DECODE_BURST (1024 * 1024)  /* what one piece may add beyond its ratio */
#define TG_DECODE_STEP (16 * 1024)     /* output produced between two limit checks */
#define TG_DECODE_ZSTD_WINDOW_LOG 23   /* 8 MiB: zstd's levels up to 19 stay within it */

typedef enum { TG_DECODE_GZIP = 0, TG_DECODE_BR, TG_DECODE_ZSTD } tg_decode_alg_t;

typedef enum {
    TG_DECODE_OK = 0,     /* the piece was taken; its output is in out */
    TG_DECODE_OVER = 1,   /* past a limit: refuse the body (413) */
    TG_DECODE_BAD = -1,   /* not a valid stream, bytes after its end, or out of memory (400) */
} tg_decode_result_t;

typedef struct tg_decoder tg_decoder_t;

/* A decoder for one stream; NULL when out of memory. ratio >= 1;
 * max_out > 0. */
tg_decoder_t *tg_decoder_new(tg_decode_alg_t alg, uint64_t ratio, uint64_t max_out);
void tg_decoder_free(tg_decoder_t *d);

/* Takes the whole piece (drained) and appends what it inflates to out.
 * After OVER or BAD the decoder takes nothing more. */
tg_decode_result_t tg_decoder_feed(tg_decoder_t *d, struct evbuffer *piece, struct evbuffer *out);

/* Has the compressed stream ended (a body that ends before is truncated)? */
int tg_decoder_done(const tg_decoder_t *d);

/* Bytes taken and bytes produced so far. */
uint64_t tg_decoder_in(const tg_decoder_t *d);
uint64_t tg_decoder_out(const tg_decoder_t *d);

#endif
