/*
 * Unit tests of W3C traceparent parsing and formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/trace.h"

static void test_parse(void **state)
{
    (void)state;
    tg_trace_ctx_t t;
    char hex[33];
    assert_int_equal(tg_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t), 0);
    tg_trace_hex(t.trace_id, 16, hex);
    assert_string_equal(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
    tg_trace_hex(t.parent_id, 8, hex);
    assert_string_equal(hex, "00f067aa0ba902b7");
    assert_int_equal(t.flags, 1);
    /* surrounding whitespace (OWS) is allowed; a future version may add fields */
    assert_int_equal(tg_traceparent_parse(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ", &t), 0);
    assert_int_equal(t.flags, 0);
    assert_int_equal(tg_traceparent_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-xyz", &t), 0);
    static const char *const bad[] = {
        "", "00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",        /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",                /* 00 is exactly 55 */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",                  /* version ff */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",                  /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",                  /* zero parent id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",                  /* upper case */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",                  /* separator */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",                 /* no dash after flags */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tg_traceparent_parse(bad[i], &t), -1);
}

static void test_format(void **state)
{
    (void)state;
    tg_trace_ctx_t t;
    memset(&t, 0, sizeof(t));
    for (int i = 0; i < 16; i++)
        t.trace_id[i] = (uint8_t)(i * 17);
    for (int i = 0; i < 8; i++)
        t.span_id[i] = (uint8_t)(0xa0 + i);
    t.flags = 1;
    char out[56];
    tg_traceparent_format(&t, out);
    assert_string_equal(out, "00-00112233445566778899aabbccddeeff-a0a1a2a3a4a5a6a7-01");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
