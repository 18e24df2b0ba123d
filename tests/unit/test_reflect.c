/*
 * Unit tests of the gRPC server reflection client (filters/reflect.h):
 * the rounds it asks (list, symbols, imports by name), what it gathers
 * into a FileDescriptorSet, and every malformed or hostile answer
 * refused with a reason (cut frames, compressed frames, error
 * responses, names that are not text, a file asked for and not sent).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/reflect.h"
#include "proxy/base/pb.h"

/* A FileDescriptorProto with a name and imports. */
static void file_proto(tg_pb_writer_t *w, const char *name, const char *const *deps, size_t n)
{
    tg_pb_str(w, 1, name);
    tg_pb_str(w, 2, "pkg");
    for (size_t i = 0; i < n; i++)
        tg_pb_str(w, 3, deps[i]);
}

/* One framed ServerReflectionResponse carrying these files. */
static void files_answer(tg_pb_writer_t *out, const char *const *names, const char *const (*deps)[2], size_t n)
{
    size_t frame = tg_pb_frame_begin(out);
    size_t fdr = tg_pb_begin(out, 4);
    for (size_t i = 0; i < n; i++) {
        size_t f = tg_pb_begin(out, 1);
        file_proto(out, names[i], deps[i], deps[i][0] ? (deps[i][1] ? 2 : 1) : 0);
        tg_pb_end(out, f);
    }
    tg_pb_end(out, fdr);
    assert_int_equal(tg_pb_frame_end(out, frame), 0);
}

static void list_answer(tg_pb_writer_t *out, const char *const *services, size_t n)
{
    size_t frame = tg_pb_frame_begin(out);
    size_t l = tg_pb_begin(out, 6);
    for (size_t i = 0; i < n; i++) {
        size_t sv = tg_pb_begin(out, 1);
        tg_pb_str(out, 1, services[i]);
        tg_pb_end(out, sv);
    }
    tg_pb_end(out, l);
    assert_int_equal(tg_pb_frame_end(out, frame), 0);
}

/* The string fields (by number) of a round's requests, joined by ','. */
static void requests_of(const uint8_t *body, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    size_t at = 0;
    while (at < len) {
        assert_true(len - at >= 5);
        size_t n = (size_t)body[at + 1] << 24 | (size_t)body[at + 2] << 16 | (size_t)body[at + 3] << 8 | body[at + 4];
        tg_pb_reader_t r = tg_pb_reader(body + at + 5, n);
        tg_pb_field_t f;
        while (tg_pb_next(&r, &f) > 0) {
            size_t o = strlen(out);
            snprintf(out + o, cap - o, "%s%u=%.*s", o ? "," : "", f.num, (int)f.len, (const char *)f.data);
        }
        at += 5 + n;
    }
}

static void test_rounds_list_symbols_imports(void **state)
{
    (void)state;
    tg_reflect_t r;
    char why[256], reqs[512];
    uint8_t *body;
    size_t len;
    assert_int_equal(tg_reflect_init(&r, NULL, 0), 0);
    /* round 1: the list */
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 1);
    requests_of(body, len, reqs, sizeof(reqs));
    assert_string_equal(reqs, "7=*");
    free(body);
    tg_pb_writer_t a = { 0 };
    const char *svcs[] = { "pkg.A", "grpc.reflection.v1alpha.ServerReflection", "pkg.B" };
    list_answer(&a, svcs, 3);
    assert_int_equal(tg_reflect_answer(&r, a.p, a.len, why, sizeof(why)), 0);
    tg_pb_writer_free(&a);
    /* round 2: each service but reflection itself */
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 1);
    requests_of(body, len, reqs, sizeof(reqs));
    assert_string_equal(reqs, "4=pkg.A,4=pkg.B");
    free(body);
    a = (tg_pb_writer_t){ 0 };
    const char *n1[] = { "a.proto" }, *n2[] = { "b.proto" };
    const char *const d1[][2] = { { "common.proto", "google/api/http.proto" } }, *const d2[][2] = { { "a.proto", NULL } };
    files_answer(&a, n1, d1, 1);
    files_answer(&a, n2, d2, 1);
    assert_int_equal(tg_reflect_answer(&r, a.p, a.len, why, sizeof(why)), 0);
    tg_pb_writer_free(&a);
    /* round 3: the imports not yet seen, each once */
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 1);
    requests_of(body, len, reqs, sizeof(reqs));
    assert_string_equal(reqs, "3=common.proto,3=google/api/http.proto");
    free(body);
    a = (tg_pb_writer_t){ 0 };
    const char *n3[] = { "common.proto", "google/api/http.proto" };
    const char *const d3[][2] = { { NULL, NULL }, { NULL, NULL } };
    files_answer(&a, n3, d3, 2);
    files_answer(&a, n1, d1, 1); /* a file sent again: kept once */
    assert_int_equal(tg_reflect_answer(&r, a.p, a.len, why, sizeof(why)), 0);
    tg_pb_writer_free(&a);
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 0);
    assert_int_equal(r.n_files, 4);
    /* the set: four files, field 1 each */
    uint8_t *set;
    size_t set_len;
    assert_int_equal(tg_reflect_set(&r, &set, &set_len), 0);
    tg_pb_reader_t rd = tg_pb_reader(set, set_len);
    tg_pb_field_t f;
    int files = 0;
    while (tg_pb_next(&rd, &f) > 0) {
        assert_int_equal(f.num, 1);
        files++;
    }
    assert_int_equal(files, 4);
    free(set);
    tg_reflect_free(&r);
}

static void test_given_services_skip_the_list(void **state)
{
    (void)state;
    const char *svcs[] = { "pkg.Only" };
    tg_reflect_t r;
    char why[256], reqs[256];
    uint8_t *body;
    size_t len;
    assert_int_equal(tg_reflect_init(&r, svcs, 1), 0);
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 1);
    requests_of(body, len, reqs, sizeof(reqs));
    assert_string_equal(reqs, "4=pkg.Only");
    free(body);
    /* a list nobody asked for is refused */
    tg_pb_writer_t a = { 0 };
    list_answer(&a, svcs, 1);
    assert_int_equal(tg_reflect_answer(&r, a.p, a.len, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "nobody asked"));
    tg_pb_writer_free(&a);
    tg_reflect_free(&r);
}

/* An answer to round 2 of a reflect started with one given service. */
static int answer_round2(const uint8_t *bytes, size_t len, char *why, size_t cap)
{
    const char *svcs[] = { "pkg.S" };
    tg_reflect_t r;
    uint8_t *body;
    size_t blen;
    assert_int_equal(tg_reflect_init(&r, svcs, 1), 0);
    assert_int_equal(tg_reflect_next(&r, &body, &blen, why, cap), 1);
    free(body);
    int rc = tg_reflect_answer(&r, bytes, len, why, cap);
    tg_reflect_free(&r);
    return rc;
}

static void test_malformed_answers(void **state)
{
    (void)state;
    char why[256];
    static const struct {
        const char *bytes;
        size_t len;
        const char *why;
    } cases[] = {
        { "", 0, "no answer" },
        { "\0\0\0", 3, "cut" },
        { "\0\0\0\0\x09\x22", 6, "cut" },
        { "\1\0\0\0\0", 5, "compressed" },
        { "\0\0\0\0\2\x22\x05", 7, "malformed" },
        /* file_descriptor_response with a file that has no name */
        { "\0\0\0\0\4\x22\x02\x0a\x00", 9, "no name" },
        /* a file whose name is not text */
        { "\0\0\0\0\x08\x22\x06\x0a\x04\x0a\x02\x01\x02", 13, "not text" },
        /* error_response: code 5, message "gone" */
        { "\0\0\0\0\x0a\x3a\x08\x08\x05\x12\x04gone", 15, "error 5: gone" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why[0] = '\0';
        assert_int_equal(answer_round2((const uint8_t *)cases[i].bytes, cases[i].len, why, sizeof(why)), -1);
        if (strstr(why, cases[i].why) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].why);
    }
}

static void test_a_file_asked_for_and_not_sent_ends_it(void **state)
{
    (void)state;
    const char *svcs[] = { "pkg.S" };
    tg_reflect_t r;
    char why[256];
    uint8_t *body;
    size_t len;
    assert_int_equal(tg_reflect_init(&r, svcs, 1), 0);
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 1);
    free(body);
    tg_pb_writer_t a = { 0 };
    const char *n1[] = { "s.proto" };
    const char *const d1[][2] = { { "missing.proto", NULL } };
    files_answer(&a, n1, d1, 1);
    assert_int_equal(tg_reflect_answer(&r, a.p, a.len, why, sizeof(why)), 0);
    assert_int_equal(tg_reflect_next(&r, &body, &len, why, sizeof(why)), 1);
    free(body);
    /* the server answers the import round with the same file again */
    assert_int_equal(tg_reflect_answer(&r, a.p, a.len, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "missing.proto: asked for, not sent"));
    tg_pb_writer_free(&a);
    tg_reflect_free(&r);
}

static void test_rounds_are_bounded(void **state)
{
    (void)state;
    /* each answer brings a file importing the next: a chain longer than the bound */
    const char *svcs[] = { "pkg.S" };
    tg_reflect_t r;
    char why[256], name[32], dep[32];
    uint8_t *body;
    size_t len;
    assert_int_equal(tg_reflect_init(&r, svcs, 1), 0);
    int rc = 0;
    for (int i = 0; i < TG_REFLECT_MAX_ROUNDS + 2 && rc == 0; i++) {
        if ((rc = tg_reflect_next(&r, &body, &len, why, sizeof(why))) < 0)
            break;
        assert_int_equal(rc, 1);
        free(body);
        snprintf(name, sizeof(name), "f%d.proto", i);
        snprintf(dep, sizeof(dep), "f%d.proto", i + 1);
        const char *n1[] = { name };
        const char *const d1[][2] = { { dep, NULL } };
        tg_pb_writer_t a = { 0 };
        files_answer(&a, n1, d1, 1);
        rc = tg_reflect_answer(&r, a.p, a.len, why, sizeof(why));
        tg_pb_writer_free(&a);
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(why, "rounds"));
    tg_reflect_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounds_list_symbols_imports),
        cmocka_unit_test(test_given_services_skip_the_list),
        cmocka_unit_test(test_malformed_answers),
        cmocka_unit_test(test_a_file_asked_for_and_not_sent_ends_it),
        cmocka_unit_test(test_rounds_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
