/*
 * Unit tests of the compress filter's negotiation: Accept-Encoding with
 * q-values and wildcards against the offered encodings, and content-type
 * patterns; the request decompressor's verdict on zstd frames whose
 * declared size disagrees with what they make.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <string.h>
#include <zstd.h>

#include "filters/compress.h"
#include "filters/decompress.h"

static const char *const all[] = { "zstd", "br", "gzip" };

static void test_negotiate(void **state)
{
    (void)state;
    assert_int_equal(tg_compress_negotiate("gzip", all, 3), 2);
    assert_int_equal(tg_compress_negotiate("gzip, deflate, br", all, 3), 1);        /* our order among equals */
    assert_int_equal(tg_compress_negotiate("gzip, br, zstd", all, 3), 0);
    assert_int_equal(tg_compress_negotiate("br;q=0.5, gzip;q=0.8", all, 3), 2);   /* q decides first */
    assert_int_equal(tg_compress_negotiate("br; q=0.5 , gzip ;q=0.8", all, 3), 2); /* spaces around */
    assert_int_equal(tg_compress_negotiate("*", all, 3), 0);
    assert_int_equal(tg_compress_negotiate("*;q=0.1, zstd;q=0", all, 3), 1);       /* excluded by name */
    assert_int_equal(tg_compress_negotiate("X-GZIP", all, 3), 2);
    assert_int_equal(tg_compress_negotiate("identity", all, 3), -1);
    assert_int_equal(tg_compress_negotiate("gzip;q=0", all, 3), -1);
    assert_int_equal(tg_compress_negotiate("", all, 3), -1);
    assert_int_equal(tg_compress_negotiate(",,;q=1,", all, 3), -1);
    assert_int_equal(tg_compress_negotiate("gzip;q=abc", all, 3), -1);              /* a bad q counts as 0 */
    assert_int_equal(tg_compress_negotiate("gzip;q=7", all, 3), 2);                 /* clamped to 1 */
    static const char *const gz[] = { "gzip" };
    assert_int_equal(tg_compress_negotiate("br, zstd", gz, 1), -1);
    assert_int_equal(tg_compress_negotiate(NULL, all, 3), -1);
}

static void test_types(void **state)
{
    (void)state;
    char *pats[] = { "text/*", "application/json", "application/*+json" };
    assert_true(tg_compress_type_allowed("text/html; charset=utf-8", pats, 3));
    assert_true(tg_compress_type_allowed("TEXT/PLAIN", pats, 3));
    assert_true(tg_compress_type_allowed("application/json", pats, 3));
    assert_true(tg_compress_type_allowed("application/problem+json", pats, 3));
    assert_false(tg_compress_type_allowed("application/jsonx", pats, 3));
    assert_false(tg_compress_type_allowed("application/octet-stream", pats, 3));
    assert_false(tg_compress_type_allowed("image/png", pats, 3));
    assert_false(tg_compress_type_allowed("text", pats, 3));
    assert_false(tg_compress_type_allowed("application/x/y+json", pats, 3)); /* the star is one token */
    assert_false(tg_compress_type_allowed(NULL, pats, 3));
}

/* Feeds `n` bytes in pieces of `piece` bytes; the last result, and
 * whether the stream ended, and how much came out. */
static tg_decode_result_t feed(const unsigned char *in, size_t n, size_t piece, int *done, size_t *made)
{
    tg_decoder_t *d = tg_decoder_new(TG_DECODE_ZSTD, 1000, 4 << 20);
    struct evbuffer *p = evbuffer_new(), *out = evbuffer_new();
    assert_non_null(d);
    tg_decode_result_t rc = TG_DECODE_OK;
    for (size_t off = 0; off < n && rc == TG_DECODE_OK; off += piece) {
        evbuffer_add(p, in + off, n - off < piece ? n - off : piece);
        rc = tg_decoder_feed(d, p, out);
    }
    *done = tg_decoder_done(d);
    *made = evbuffer_get_length(out);
    evbuffer_free(p);
    evbuffer_free(out);
    tg_decoder_free(d);
    return rc;
}

/* The fuzz_decompress find (tests/fuzz/corpus/decompress/
 * regress-zstd-content-size, less its three control bytes): a frame
 * declaring 400,000 bytes that makes 33,282. zstd's streaming decoder
 * ends it without complaint; its one-shot decoder refuses it, as does
 * the gateway now, in any piece sizes. */
static void test_zstd_declared_size(void **state)
{
    (void)state;
    static const unsigned char lying[] = {
        0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x80, 0x1a, 0x06, 0x00, 0x54, 0x00, 0x00, 0x10,
        0x00, 0x00, 0x01, 0x00, 0xfb, 0x03, 0x3a, 0xc0, 0x02, 0x01, 0x00, 0x00,
    };
    int done;
    size_t made;
    for (size_t piece = 1; piece <= sizeof(lying); piece++)
        assert_int_equal(feed(lying, sizeof(lying), piece, &done, &made), TG_DECODE_BAD);

    /* an honest frame (ZSTD_compress writes the content size) passes whole and byte by byte */
    char text[5000];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 7) % 13);
    unsigned char z[6000];
    size_t zn = ZSTD_compress(z, sizeof(z), text, sizeof(text), 3);
    assert_false(ZSTD_isError(zn));
    assert_int_equal(ZSTD_getFrameContentSize(z, zn), sizeof(text));
    for (size_t piece = 1; piece <= zn; piece += piece < 20 ? 1 : 97) {
        assert_int_equal(feed(z, zn, piece, &done, &made), TG_DECODE_OK);
        assert_true(done);
        assert_int_equal(made, sizeof(text));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_zstd_declared_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
