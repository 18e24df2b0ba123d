/* Unit tests: the gRPC pieces the exchange relies on — the message-length
 * walker over a body arriving in arbitrary pieces (prefixes split across
 * pieces, several messages in one), content-type recognition, and the
 * grpc-timeout header (every unit, the limits, and garbage). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/base/grpc_frames.h"

static void put_message(unsigned char *out, uint32_t len)
{
    out[0] = 0;
    out[1] = (unsigned char)(len >> 24);
    out[2] = (unsigned char)(len >> 16);
    out[3] = (unsigned char)(len >> 8);
    out[4] = (unsigned char)len;
}

/* Feeds body in pieces of `step` bytes; returns the first check result < 0
 * or 0. */
static int walk(const unsigned char *body, size_t len, size_t step, uint64_t max)
{
    tg_grpc_frames_t st = { 0 };
    for (size_t off = 0; off < len; off += step) {
        struct evbuffer *piece = evbuffer_new();
        size_t n = len - off < step ? len - off : step;
        evbuffer_add(piece, body + off, n);
        int r = tg_grpc_frames_check(&st, piece, max);
        assert_int_equal(evbuffer_get_length(piece), n); /* the walker only looks */
        evbuffer_free(piece);
        if (r < 0)
            return r;
    }
    return 0;
}

static void test_frames_any_split(void **state)
{
    /* three messages: 10 bytes, 0 bytes, 100 bytes; then one of 101 */
    unsigned char body[5 + 10 + 5 + 5 + 100 + 5];
    size_t off = 0;
    put_message(body + off, 10), off += 5 + 10;
    put_message(body + off, 0), off += 5;
    put_message(body + off, 100), off += 5 + 100;
    put_message(body + off, 101), off += 5;
    for (size_t step = 1; step <= sizeof(body); step++) {
        assert_int_equal(walk(body, off - 5, step, 100), 0);  /* all within 100 */
        assert_int_equal(walk(body, off, step, 100), -1);     /* the fourth declares 101 */
        assert_int_equal(walk(body, off, step, 101), 0);
    }
}

static void test_frames_huge_declared_length(void **state)
{
    unsigned char p[5];
    put_message(p, 0xffffffffu);
    assert_int_equal(walk(p, 5, 1, TG_GRPC_DEFAULT_MAX_MESSAGE), -1);
    assert_int_equal(walk(p, 4, 1, 1), 0); /* a prefix not yet whole decides nothing */
}

static void test_content_type(void **state)
{
    assert_true(tg_grpc_content_type("application/grpc"));
    assert_true(tg_grpc_content_type("application/grpc+proto"));
    assert_true(tg_grpc_content_type("application/grpc;charset=utf-8"));
    assert_false(tg_grpc_content_type("application/grpc-web"));
    assert_false(tg_grpc_content_type("application/grpc-web-text"));
    assert_false(tg_grpc_content_type("application/grpcx"));
    assert_false(tg_grpc_content_type("application/json"));
    assert_false(tg_grpc_content_type(""));
}

static int timeout_of(const char *v, uint64_t *us)
{
    return tg_grpc_parse_timeout(v, strlen(v), us);
}

static void test_grpc_timeout(void **state)
{
    static const struct { const char *v; uint64_t us; } ok[] = {
        { "1H", 3600000000ULL }, { "2M", 120000000ULL }, { "3S", 3000000ULL }, { "250m", 250000ULL },
        { "7u", 7 }, { "5000n", 5 }, { "999n", 1 }, { "0S", 1 }, { "0n", 1 },
        { "99999999H", 99999999ULL * 3600000000ULL }, { "00000001S", 1000000ULL },
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t us = 0;
        assert_int_equal(timeout_of(ok[i].v, &us), 0);
        assert_true(us == ok[i].us);
    }
    static const char *const bad[] = {
        "", "S", "1", "10", "1s", "1h", "1X", "-1S", "+1S", " 1S", "1 S", "1.5S", "123456789S", "0x10S", "1SS",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t us = 42;
        assert_int_equal(timeout_of(bad[i], &us), -1);
        assert_true(us == 42); /* untouched */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_any_split),
        cmocka_unit_test(test_frames_huge_declared_length),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_grpc_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
