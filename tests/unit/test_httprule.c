/*
 * Unit tests of google.api.http path templates (filters/httprule.h):
 * what parses and what is refused, matching with literals, `*`, `**`,
 * variables over one or many segments, verbs, percent-decoding (a
 * multi-segment capture keeps %2F), and query strings as bindings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "filters/httprule.h"

static int match(const char *tmpl, const char *path, tg_http_binding_t *b, size_t max)
{
    char why[128];
    tg_http_template_t *t = tg_http_template_parse(tmpl, why, sizeof(why));
    assert_non_null(t);
    tg_arena_t a;
    tg_arena_init(&a);
    int n = tg_http_template_match(t, path, strlen(path), &a, b, max);
    /* the bindings outlive the arena and the template for the test: copied */
    static char keep[8][256], keep_field[8][64];
    for (int i = 0; i < n && i < 8; i++) {
        memcpy(keep[i], b[i].value, b[i].len + 1);
        b[i].value = keep[i];
        snprintf(keep_field[i], sizeof(keep_field[i]), "%s", b[i].field);
        b[i].field = keep_field[i];
    }
    tg_arena_free(&a);
    tg_http_template_free(t);
    return n;
}

static void test_parse(void **state)
{
    (void)state;
    static const char *const good[] = {
        "/", "/v1/echo", "/v1/{name}", "/v1/{name=shelves/*}", "/v1/{a.b.c=**}", "/v1/*/x:verb",
        "/v1/{name=shelves/*/books/*}:publish", "/v1/**", "/v1/a%20b/{x}",
    };
    static const char *const badt[] = {
        "", "v1/echo", "/v1/{}", "/v1/{na-me}", "/v1/{a..b}", "/v1/{a", "/v1/**/x", "/v1//x", "/v1/{a={b}}",
        "/v1/x:", "/v1/{a}/{a}", "/v1/x y",
    };
    char why[128];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        tg_http_template_t *t = tg_http_template_parse(good[i], why, sizeof(why));
        if (t == NULL)
            fail_msg("%s: %s", good[i], why);
        tg_http_template_free(t);
    }
    for (size_t i = 0; i < sizeof(badt) / sizeof(badt[0]); i++) {
        tg_http_template_t *t = tg_http_template_parse(badt[i], why, sizeof(why));
        if (t != NULL)
            fail_msg("%s parsed", badt[i]);
    }
    tg_http_template_t *t = tg_http_template_parse("/v1/{shelf.id}/{book=books/*}", why, sizeof(why));
    assert_string_equal(tg_http_template_var(t, 0), "shelf.id");
    assert_string_equal(tg_http_template_var(t, 1), "book");
    assert_null(tg_http_template_var(t, 2));
    tg_http_template_free(t);
}

static void test_match(void **state)
{
    (void)state;
    tg_http_binding_t b[8];
    assert_int_equal(match("/v1/echo", "/v1/echo", b, 8), 0);
    assert_int_equal(match("/v1/echo", "/v1/echo/", b, 8), -1);
    assert_int_equal(match("/v1/echo", "/v1/echoes", b, 8), -1);
    assert_int_equal(match("/", "/", b, 8), 0);
    assert_int_equal(match("/", "/x", b, 8), -1);

    assert_int_equal(match("/v1/echo/{name}", "/v1/echo/al%20ice", b, 8), 1);
    assert_string_equal(b[0].field, "name");
    assert_string_equal(b[0].value, "al ice");
    assert_int_equal(match("/v1/echo/{name}", "/v1/echo/", b, 8), -1); /* `*` is one segment, not none */
    assert_int_equal(match("/v1/echo/{name}", "/v1/echo/a/b", b, 8), -1);

    assert_int_equal(match("/v1/{name=shelves/*/books/*}", "/v1/shelves/s1/books/b%2F2", b, 8), 1);
    assert_string_equal(b[0].value, "shelves/s1/books/b%2F2"); /* many segments: %2F kept */
    assert_int_equal(match("/v1/{name=shelves/*}/x", "/v1/shelves/s%2F1/x", b, 8), 1);
    assert_string_equal(b[0].value, "shelves/s%2F1");
    assert_int_equal(match("/v1/{id}", "/v1/a%2Fb", b, 8), 1);
    assert_string_equal(b[0].value, "a/b"); /* one segment: decoded whole */

    assert_int_equal(match("/v1/{path=**}", "/v1/a/b/c", b, 8), 1);
    assert_string_equal(b[0].value, "a/b/c");
    assert_int_equal(match("/v1/{path=**}", "/v1", b, 8), 1);
    assert_string_equal(b[0].value, "");
    assert_int_equal(match("/v1/files/**", "/v1/files/x/y", b, 8), 0);

    assert_int_equal(match("/v1/{name}:publish", "/v1/b1:publish", b, 8), 1);
    assert_string_equal(b[0].value, "b1");
    assert_int_equal(match("/v1/{name}:publish", "/v1/b1:unpublish", b, 8), -1);
    assert_int_equal(match("/v1/{name}:publish", "/v1/b1", b, 8), -1);

    assert_int_equal(match("/v1/{a}/{b.c}", "/v1/x/y", b, 8), 2);
    assert_string_equal(b[1].field, "b.c");
    assert_string_equal(b[1].value, "y");

    /* bad escapes and bytes that are not UTF-8 do not match */
    assert_int_equal(match("/v1/{id}", "/v1/a%2", b, 8), -1);
    assert_int_equal(match("/v1/{id}", "/v1/a%zz", b, 8), -1);
    assert_int_equal(match("/v1/{id}", "/v1/%ff", b, 8), -1);
    assert_int_equal(match("/v1/{id}", "/v1/%00x", b, 8), 1); /* NUL is UTF-8: its length says so */
    assert_int_equal(b[0].len, 2);
    /* longer than any template */
    char longpath[600];
    for (size_t i = 0; i < 100; i++)
        memcpy(longpath + i * 4, "/abc", 4);
    longpath[400] = '\0';
    assert_int_equal(match("/v1/**", longpath, b, 8), -1);
    assert_int_equal(match("/abc/**", longpath, b, 8), -1); /* past 64 segments: refused, not partly read */
}

static void test_query(void **state)
{
    (void)state;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_http_binding_t b[8];
    static const char q[] = "a=1&b.c=x%20y+z&&d&=skip&e=&tags=1&tags=2";
    int n = tg_http_query_bindings(q, sizeof(q) - 1, &a, b, 8);
    assert_int_equal(n, 6);
    assert_string_equal(b[0].field, "a");
    assert_string_equal(b[0].value, "1");
    assert_string_equal(b[1].field, "b.c");
    assert_string_equal(b[1].value, "x y z");
    assert_string_equal(b[2].field, "d");
    assert_string_equal(b[2].value, "");
    assert_string_equal(b[3].field, "e");
    assert_string_equal(b[5].value, "2");
    static const char bad[] = "a=%ff", badkey[] = "a%00b=1";
    assert_int_equal(tg_http_query_bindings(bad, sizeof(bad) - 1, &a, b, 8), -1);
    assert_int_equal(tg_http_query_bindings(badkey, sizeof(badkey) - 1, &a, b, 8), -1);
    assert_int_equal(tg_http_query_bindings("", 0, &a, b, 8), 0);
    tg_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
