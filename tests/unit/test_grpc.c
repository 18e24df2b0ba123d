/* Unit tests: the gRPC pieces the exchange relies on — the message-length
 * walker over a body arriving in arbitrary pieces (prefixes split across
 * pieces, several messages in one), content-type recognition, and the
 * grpc-timeout header (every unit, the limits, and garbage). */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_any_split),
        cmocka_unit_test(test_frames_huge_declared_length),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_grpc_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
