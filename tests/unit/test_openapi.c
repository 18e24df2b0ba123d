/*
 * Unit tests of the OpenAPI document builder (filters/openapi.h): the
 * first operation added for a path and method wins (as the first route
 * that matches does), a path's operations are grouped whatever order
 * they came in, schemas are claimed once and written once, and names
 * are escaped as JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <string.h>

#include "filters/openapi.h"
#include "proxy/base/json.h"

static void test_first_wins_and_paths_group(void **state)
{
    (void)state;
    tg_openapi_t *d = tg_openapi_new();
    assert_non_null(d);
    assert_int_equal(tg_openapi_op(d, "/p1", "get", "{\"x\": 1}", 8), 1);
    assert_int_equal(tg_openapi_op(d, "/p2", "post", "{\"x\": 2}", 8), 1);
    assert_int_equal(tg_openapi_op(d, "/p1", "get", "{\"x\": 3}", 8), 1); /* a later route: left out */
    assert_int_equal(tg_openapi_op(d, "/p1", "post", "{\"x\": 4}", 8), 1);
    assert_int_equal(tg_openapi_claim(d, "pkg.B"), 1);
    assert_int_equal(tg_openapi_claim(d, "pkg.A\"quoted"), 1);
    assert_int_equal(tg_openapi_claim(d, "pkg.B"), 0);
    assert_int_equal(tg_openapi_schema(d, "pkg.B", "{\"type\": \"object\"}", 18), 0);
    assert_int_equal(tg_openapi_schema(d, "pkg.B", "{\"type\": \"string\"}", 18), 0); /* written once */
    assert_int_equal(tg_openapi_schema(d, "pkg.A\"quoted", "{}", 2), 0);
    assert_int_equal(tg_openapi_schema(d, "pkg.none", "{}", 2), -1);
    struct evbuffer *out = evbuffer_new();
    tg_openapi_render(d, out, "t");
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t doc;
    size_t len = evbuffer_get_length(out);
    assert_int_equal(tg_json_parse((const char *)evbuffer_pullup(out, -1), len, &a, &doc), 0);
    const tg_json_t *paths = tg_json_get(&doc, "paths");
    assert_non_null(paths);
    assert_int_equal(paths->n, 2);
    const tg_json_t *p1 = tg_json_get(paths, "/p1");
    assert_non_null(p1);
    assert_int_equal(p1->n, 2);
    assert_string_equal(tg_json_get(tg_json_get(p1, "get"), "x")->str, "1");
    assert_string_equal(tg_json_get(tg_json_get(p1, "post"), "x")->str, "4");
    const tg_json_t *schemas = tg_json_get(tg_json_get(&doc, "components"), "schemas");
    assert_int_equal(schemas->n, 2);
    assert_string_equal(tg_json_get_str(tg_json_get(schemas, "pkg.B"), "type"), "object");
    assert_non_null(tg_json_get(schemas, "pkg.A\"quoted"));
    tg_arena_free(&a);
    evbuffer_free(out);
    tg_openapi_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_wins_and_paths_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
