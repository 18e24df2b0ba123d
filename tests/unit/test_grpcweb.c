/*
 * Unit tests of gRPC-Web's streaming base64: a body cut at every byte
 * boundary (and as two padded segments cut anywhere) decodes to the same
 * bytes; bad characters and misplaced padding are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "filters/grpcweb.h"

static void test_roundtrip_every_cut(void **state)
{
    (void)state;
    uint8_t msg[100];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 37 + 11);
    for (size_t seg = 0; seg <= sizeof(msg); seg++) {
        /* two segments, each encoded (and padded) on its own */
        char enc[200];
        size_t el = tg_grpcweb_b64_encode(msg, seg, enc);
        el += tg_grpcweb_b64_encode(msg + seg, sizeof(msg) - seg, enc + el);
        for (size_t cut = 0; cut <= el; cut++) {
            uint8_t out[200];
            char carry[4];
            unsigned nc = 0;
            long a = tg_grpcweb_b64_decode(enc, cut, out, carry, &nc);
            assert_true(a >= 0);
            long b = tg_grpcweb_b64_decode(enc + cut, el - cut, out + a, carry, &nc);
            assert_true(b >= 0);
            assert_int_equal(nc, 0);
            assert_int_equal(a + b, sizeof(msg));
            assert_memory_equal(out, msg, sizeof(msg));
        }
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    uint8_t out[16];
    char carry[4];
    unsigned nc = 0;
    assert_int_equal(tg_grpcweb_b64_decode("ab!d", 4, out, carry, &nc), -1);
    nc = 0;
    assert_int_equal(tg_grpcweb_b64_decode("a=bc", 4, out, carry, &nc), -1); /* padding mid-quad */
    nc = 0;
    assert_int_equal(tg_grpcweb_b64_decode("ab=c", 4, out, carry, &nc), -1);
    nc = 0;
    assert_int_equal(tg_grpcweb_b64_decode("QQ==", 4, out, carry, &nc), 1);
    assert_int_equal(out[0], 'A');
    nc = 0;
    assert_int_equal(tg_grpcweb_b64_decode("QUI", 3, out, carry, &nc), 0); /* incomplete: carried */
    assert_int_equal(nc, 3);
    char enc[8];
    assert_int_equal(tg_grpcweb_b64_encode((const uint8_t *)"AB", 2, enc), 4);
    assert_memory_equal(enc, "QUI=", 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_cut),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
