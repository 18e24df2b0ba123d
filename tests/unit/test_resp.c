/* Unit tests: the RESP2 codec — every reply type, each reply cut at every
 * byte (AGAIN until whole, then the same value), pipelined replies, the
 * limits (bulk size, array size, depth, line length), malformed bytes,
 * and command encoding (binary-safe, sized exactly). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/base/resp.h"

static tg_resp_result_t parse(const char *s, size_t len, tg_arena_t *a, tg_resp_value_t *v, size_t *used)
{
    return tg_resp_parse(s, len, a, v, used);
}

/* Every proper prefix asks for more; the whole parses and uses all of it. */
static void whole_and_cut(const char *s, size_t len, tg_resp_value_t *v, tg_arena_t *a)
{
    size_t used = 0;
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(parse(s, cut, a, v, &used), TG_RESP_AGAIN);
    assert_int_equal(parse(s, len, a, v, &used), TG_RESP_OK);
    assert_int_equal(used, len);
}

static void test_types(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_resp_value_t v;
    whole_and_cut("+OK\r\n", 5, &v, &a);
    assert_int_equal(v.type, TG_RESP_STRING);
    assert_string_equal(v.str, "OK");
    whole_and_cut("-NOSCRIPT No matching script\r\n", 30, &v, &a);
    assert_int_equal(v.type, TG_RESP_ERROR);
    assert_string_equal(v.str, "NOSCRIPT No matching script");
    whole_and_cut(":-42\r\n", 6, &v, &a);
    assert_int_equal(v.type, TG_RESP_INTEGER);
    assert_int_equal(v.integer, -42);
    whole_and_cut("$5\r\na\0b\r\n\r\n", 11, &v, &a); /* binary-safe, CRLF inside */
    assert_int_equal(v.type, TG_RESP_BULK);
    assert_int_equal(v.len, 5);
    assert_memory_equal(v.str, "a\0b\r\n", 5);
    whole_and_cut("$0\r\n\r\n", 6, &v, &a);
    assert_int_equal(v.len, 0);
    whole_and_cut("$-1\r\n", 5, &v, &a);
    assert_int_equal(v.type, TG_RESP_NIL);
    whole_and_cut("*-1\r\n", 5, &v, &a);
    assert_int_equal(v.type, TG_RESP_NIL);
    const char *arr = "*3\r\n:1\r\n*2\r\n$1\r\nx\r\n$-1\r\n+ok\r\n";
    whole_and_cut(arr, strlen(arr), &v, &a);
    assert_int_equal(v.type, TG_RESP_ARRAY);
    assert_int_equal(v.n, 3);
    assert_int_equal(v.items[0].integer, 1);
    assert_int_equal(v.items[1].n, 2);
    assert_string_equal(v.items[1].items[0].str, "x");
    assert_int_equal(v.items[1].items[1].type, TG_RESP_NIL);
    assert_string_equal(v.items[2].str, "ok");
    whole_and_cut("*0\r\n", 4, &v, &a);
    assert_int_equal(v.n, 0);
    tg_arena_free(&a);
}

/* Pipelined replies: one at a time, each using exactly its bytes. */
static void test_pipelined(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    const char *s = ":1\r\n$2\r\nhi\r\n-ERR x\r\n:";
    size_t len = strlen(s), off = 0, used;
    tg_resp_value_t v;
    assert_int_equal(parse(s + off, len - off, &a, &v, &used), TG_RESP_OK);
    off += used;
    assert_int_equal(parse(s + off, len - off, &a, &v, &used), TG_RESP_OK);
    assert_string_equal(v.str, "hi");
    off += used;
    assert_int_equal(parse(s + off, len - off, &a, &v, &used), TG_RESP_OK);
    assert_int_equal(v.type, TG_RESP_ERROR);
    off += used;
    assert_int_equal(parse(s + off, len - off, &a, &v, &used), TG_RESP_AGAIN);
    tg_arena_free(&a);
}

static void test_malformed_and_limits(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_resp_value_t v;
    size_t used;
    static const char *const bad[] = {
        "?x\r\n",          /* unknown type */
        "+OK\rX",          /* CR without LF */
        ":12a\r\n",        /* not a number */
        ":\r\n",           /* no digits */
        ":1234567890123456789\r\n", /* 19 digits */
        "$-2\r\n",         /* a negative length other than -1 */
        "$3\r\nabcX\r\n",  /* bulk not followed by CRLF */
        "*-5\r\n",
        "$1048577\r\n",    /* over TG_RESP_MAX_BULK */
        "*4097\r\n",       /* over TG_RESP_MAX_ITEMS */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], strlen(bad[i]), &a, &v, &used), TG_RESP_BAD);
    /* nesting deeper than TG_RESP_MAX_DEPTH */
    char deep[64] = "";
    for (int i = 0; i <= TG_RESP_MAX_DEPTH; i++)
        strcat(deep, "*1\r\n");
    strcat(deep, ":1\r\n");
    assert_int_equal(parse(deep, strlen(deep), &a, &v, &used), TG_RESP_BAD);
    deep[strlen(deep) - 8] = '\0'; /* one level less, and the leaf: fine */
    strcat(deep, ":1\r\n");
    assert_int_equal(parse(deep, strlen(deep), &a, &v, &used), TG_RESP_OK);
    /* a line that never ends, past TG_RESP_MAX_LINE: not waited for */
    char *longline = malloc(TG_RESP_MAX_LINE + 8);
    longline[0] = '+';
    memset(longline + 1, 'x', TG_RESP_MAX_LINE + 6);
    assert_int_equal(parse(longline, TG_RESP_MAX_LINE + 7, &a, &v, &used), TG_RESP_BAD);
    free(longline);
    tg_arena_free(&a);
}

static void test_command(void **state)
{
    const char *argv[] = { "EVALSHA", "abc", "1", "k\0\r\n" };
    size_t lens[] = { 7, 3, 1, 4 };
    char out[128];
    size_t n = tg_resp_command(out, sizeof(out), 4, argv, lens);
    const char want[] = "*4\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n1\r\n$4\r\nk\0\r\n\r\n";
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(tg_resp_command_size(4, lens), n);
    assert_int_equal(tg_resp_command(out, n - 1, 4, argv, lens), 0); /* does not fit: nothing */
    /* what we encode, the decoder reads back */
    tg_arena_t a;
    tg_arena_init(&a);
    tg_resp_value_t v;
    size_t used;
    assert_int_equal(tg_resp_parse(out, n, &a, &v, &used), TG_RESP_OK);
    assert_int_equal(v.n, 4);
    assert_memory_equal(v.items[3].str, "k\0\r\n", 4);
    tg_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_malformed_and_limits),
        cmocka_unit_test(test_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
