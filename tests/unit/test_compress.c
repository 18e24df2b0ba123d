/*
 * Unit tests of the compress filter's negotiation: Accept-Encoding with
 * q-values and wildcards against the offered encodings, and content-type
 * patterns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "filters/compress.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
