/* Unit tests: the gRPC pieces the exchange relies on — the message-length
 * walker over a body arriving in arbitrary pieces (prefixes split across
 * pieces, several messages in one), content-type recognition, and the
 * grpc-timeout header (every unit, the limits, and garbage), and the
 * protobuf wire format (writing nested messages, reading back, and
 * every malformed shape the reader refuses). */
#include <ctype.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/base/grpc_frames.h"
#include "proxy/base/pb.h"
#include <stdlib.h>

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

/* A reference for tg_grpc_classify, written from its comment: a lowered
 * copy of the content-type, tried against each base type. */
static tg_grpc_kind_t ref_classify(int version, const char *method, const char *ct)
{
    if (strcmp(method, "POST") != 0 || ct == NULL)
        return TG_GRPC_NONE;
    char low[128];
    size_t n = 0;
    for (; ct[n] && n + 1 < sizeof(low); n++)
        low[n] = (char)tolower((unsigned char)ct[n]);
    low[n] = '\0';
    static const char *const bases[] = { "application/grpc", "application/grpc-web", "application/grpc-web-text" };
    for (size_t b = 0; b < 3; b++) {
        size_t bl = strlen(bases[b]);
        if (strncmp(low, bases[b], bl) != 0)
            continue;
        const char *rest = low + bl;
        int ok = rest[0] == '+' || rest[strspn(rest, " \t")] == '\0' || rest[strspn(rest, " \t")] == ';';
        if (ok)
            return b == 0 ? (version == 20 ? TG_GRPC_CALL : TG_GRPC_NONE) : TG_GRPC_WEB;
    }
    return TG_GRPC_NONE;
}

static tg_grpc_kind_t classify(int version, const char *method, const char *ct)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_request_t req = { .method = method, .version = version };
    if (ct != NULL)
        assert_int_equal(tg_headers_add(&req.headers, &a, "Content-Type", 12, ct, strlen(ct)), 0);
    tg_grpc_kind_t k = tg_grpc_classify(&req);
    tg_arena_free(&a);
    return k;
}

/* One rule decides "gRPC call": a table of the cases that used to be
 * decided differently in four places, then random content-types built
 * from the pieces that matter, each checked against the reference. */
static void test_classify(void **state)
{
    static const struct { int v; const char *m, *ct; tg_grpc_kind_t want; } t[] = {
        { 20, "POST", "application/grpc", TG_GRPC_CALL },
        { 20, "POST", "application/grpc+proto", TG_GRPC_CALL },
        { 20, "POST", "Application/GRPC;charset=utf-8", TG_GRPC_CALL },
        { 20, "POST", "application/grpc ; x=1", TG_GRPC_CALL },
        { 20, "POST", "application/grpc-not-really", TG_GRPC_NONE },
        { 20, "POST", "application/grpcx", TG_GRPC_NONE },
        { 20, "GET", "application/grpc", TG_GRPC_NONE },
        { 11, "POST", "application/grpc", TG_GRPC_NONE }, /* gRPC needs HTTP/2 */
        { 20, "POST", "application/grpc-web", TG_GRPC_WEB },
        { 11, "POST", "application/grpc-web-text+proto", TG_GRPC_WEB },
        { 11, "POST", "application/grpc-web;x=1", TG_GRPC_WEB },
        { 11, "POST", "application/grpc-webx", TG_GRPC_NONE },
        { 11, "OPTIONS", "application/grpc-web", TG_GRPC_NONE },
        { 20, "POST", "application/json", TG_GRPC_NONE },
        { 20, "POST", "", TG_GRPC_NONE },
        { 20, "POST", NULL, TG_GRPC_NONE },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        tg_grpc_kind_t k = classify(t[i].v, t[i].m, t[i].ct);
        if (k != t[i].want)
            fprintf(stderr, "%d %s '%s': %d, wanted %d\n", t[i].v, t[i].m, t[i].ct, k, t[i].want);
        assert_int_equal(k, t[i].want);
        assert_int_equal(ref_classify(t[i].v, t[i].m, t[i].ct), t[i].want);
    }
    static const char *const pieces[] = { "application/", "grpc", "-web", "-text", "+proto", ";", " ", "\t", "x",
                                          "GRPC", "-", "=", "APPLICATION/", "web" };
    uint32_t seed = 12345;
    for (int i = 0; i < 200000; i++) {
        char ct[96] = "";
        size_t np = 1 + (seed >> 7) % 6;
        for (size_t j = 0; j < np; j++) {
            seed = seed * 1103515245u + 12345u;
            size_t pick = (seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]));
            if (j == 0 && (seed & 3) != 0)
                pick = (seed & 4) ? 0 : 12; /* mostly a plausible start */
            strncat(ct, pieces[pick], sizeof(ct) - strlen(ct) - 1);
        }
        seed = seed * 1103515245u + 12345u;
        int version = (seed & 0x100) ? 20 : 11;
        const char *method = (seed & 0x200) ? "POST" : "PUT";
        tg_grpc_kind_t k = classify(version, method, ct), r = ref_classify(version, method, ct);
        if (k != r)
            fprintf(stderr, "%d %s '%s': %d, the reference says %d\n", version, method, ct, k, r);
        assert_int_equal(k, r);
    }
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

/* A message with a nested one longer than one length byte, read back. */
static void test_pb_round_trip(void **state)
{
    (void)state;
    tg_pb_writer_t w = { 0 };
    tg_pb_reserve_grpc_prefix(&w);
    tg_pb_uint(&w, 1, 300);
    tg_pb_uint(&w, 2, UINT64_MAX);
    size_t m = tg_pb_begin(&w, 3);
    char big[200];
    memset(big, 'x', sizeof(big));
    tg_pb_bytes(&w, 1, big, sizeof(big));
    size_t inner = tg_pb_begin(&w, 2);
    tg_pb_str(&w, 1, "key");
    tg_pb_end(&w, inner);
    tg_pb_str(&w, 9, NULL); /* omitted */
    tg_pb_end(&w, m);
    tg_pb_str(&w, 536870911, ""); /* the largest field number, empty */
    assert_int_equal(tg_pb_grpc_frame(&w), 0);
    assert_false(w.failed);

    const uint8_t *msg;
    size_t n;
    assert_int_equal(tg_pb_grpc_unframe(w.p, w.len, &msg, &n), 0);
    assert_int_equal(n, w.len - 5);
    tg_pb_reader_t r = tg_pb_reader(msg, n);
    tg_pb_field_t f;
    assert_int_equal(tg_pb_next(&r, &f), 1);
    assert_int_equal(f.num, 1);
    assert_int_equal(f.wire, TG_PB_VARINT);
    assert_true(f.v == 300);
    assert_int_equal(tg_pb_next(&r, &f), 1);
    assert_true(f.num == 2 && f.v == UINT64_MAX);
    assert_int_equal(tg_pb_next(&r, &f), 1);
    assert_true(f.num == 3 && f.wire == TG_PB_LEN);
    tg_pb_reader_t in = tg_pb_reader(f.data, f.len);
    assert_int_equal(tg_pb_next(&in, &f), 1);
    assert_true(f.num == 1 && f.len == sizeof(big) && memcmp(f.data, big, sizeof(big)) == 0);
    assert_int_equal(tg_pb_next(&in, &f), 1);
    assert_true(f.num == 2 && f.len == 5); /* tag + length + "key" */
    tg_pb_reader_t in2 = tg_pb_reader(f.data, f.len);
    assert_int_equal(tg_pb_next(&in2, &f), 1);
    assert_true(f.num == 1 && f.len == 3 && memcmp(f.data, "key", 3) == 0);
    assert_int_equal(tg_pb_next(&in2, &f), 0);
    assert_int_equal(tg_pb_next(&in, &f), 0);
    assert_int_equal(tg_pb_next(&r, &f), 1);
    assert_true(f.num == 536870911 && f.len == 0);
    assert_int_equal(tg_pb_next(&r, &f), 0);
    tg_pb_writer_free(&w);
}

static void test_pb_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        { "\x08", 1 },                                           /* a varint cut off */
        { "\x08\x80", 2 },                                       /* ... inside */
        { "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11 }, /* past 64 bits */
        { "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12 }, /* 11 bytes */
        { "\x00\x01", 2 },                                       /* field number 0 */
        { "\x0a\x05" "abc", 5 },                                    /* a length past the end */
        { "\x0a\xff\xff\xff\xff\x0f", 6 },                       /* ... a huge one */
        { "\x0b", 1 },                                           /* start group */
        { "\x0c", 1 },                                           /* end group */
        { "\x0e", 1 },                                           /* wire type 6 */
        { "\x09\x01\x02\x03", 4 },                               /* a fixed64 cut */
        { "\x0d\x01\x02", 3 },                                   /* a fixed32 cut */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tg_pb_reader_t r = tg_pb_reader(bad[i].bytes, bad[i].len);
        tg_pb_field_t f;
        int rc;
        while ((rc = tg_pb_next(&r, &f)) > 0)
            ;
        assert_int_equal(rc, -1);
    }
    /* the largest 10-byte varint is fine; fixed fields read little-endian */
    tg_pb_reader_t r = tg_pb_reader("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x0d\x01\x02\x03\x04", 16);
    tg_pb_field_t f;
    assert_int_equal(tg_pb_next(&r, &f), 1);
    assert_true(f.v == UINT64_MAX);
    assert_int_equal(tg_pb_next(&r, &f), 1);
    assert_true(f.wire == TG_PB_I32 && f.v == 0x04030201);
    assert_int_equal(tg_pb_next(&r, &f), 0);
    /* frames: compressed, cut, or followed by more are refused */
    const uint8_t *msg;
    size_t n;
    assert_int_equal(tg_pb_grpc_unframe("\x01\x00\x00\x00\x00", 5, &msg, &n), -1);
    assert_int_equal(tg_pb_grpc_unframe("\x00\x00\x00\x00\x02\x08", 6, &msg, &n), -1);
    assert_int_equal(tg_pb_grpc_unframe("\x00\x00\x00\x00\x00\x00", 6, &msg, &n), -1);
    assert_int_equal(tg_pb_grpc_unframe("\x00\x00\x00", 3, &msg, &n), -1);
    assert_int_equal(tg_pb_grpc_unframe("\x00\x00\x00\x00\x00", 5, &msg, &n), 0);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_any_split),
        cmocka_unit_test(test_frames_huge_declared_length),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_grpc_timeout),
        cmocka_unit_test(test_pb_round_trip),
        cmocka_unit_test(test_pb_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
