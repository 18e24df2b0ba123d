/* Unit tests: SipHash-2-4 against the reference vectors (key 00..0f,
 * message 00..n-1), at every tail length and across a whole word. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/base/siphash.h"

static void test_reference_vectors(void **state)
{
    (void)state;
    static const uint64_t want[] = {
        0x726fdb47dd0e0e31ULL, 0x74f839c593dc67fdULL, 0x0d6c8009d9a94f5aULL, 0x85676696d7fb7e2dULL,
        0xcf2794e0277187b7ULL, 0x18765564cd99a68dULL, 0xcbc9466e58fee3ceULL, 0xab0200f58b01d137ULL,
        0x93f5f5799a932462ULL, 0x9e0082df0ba9e4b0ULL,
    };
    const tg_siphash_key_t key = { 0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL };
    unsigned char msg[64];
    for (unsigned i = 0; i < sizeof(msg); i++)
        msg[i] = (unsigned char)i;
    for (size_t n = 0; n < sizeof(want) / sizeof(want[0]); n++)
        assert_int_equal(tg_siphash(&key, msg, n), want[n]);
    assert_int_equal(tg_siphash(&key, msg, 15), 0xa129ca6149be45e5ULL);
    /* an unaligned start reads the same bytes */
    unsigned char off[80];
    for (unsigned i = 0; i < 64; i++)
        off[i + 3] = (unsigned char)i;
    for (size_t n = 0; n <= 64; n++)
        assert_int_equal(tg_siphash(&key, off + 3, n), tg_siphash(&key, msg, n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
