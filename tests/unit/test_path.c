/* Unit tests: path normalization for routing (proxy/path.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/path.h"

typedef struct {
    const char *in;
    const char *out;      /* NULL: refused */
    int merge;            /* merge_slashes */
    tg_escaped_slash_t esc;
    tg_semicolons_t semi;  /* default keep */
    tg_backslashes_t bs;   /* default reject */
} pcase_t;

#define R TG_ESCAPED_SLASH_REJECT
#define K TG_ESCAPED_SLASH_KEEP
#define D TG_ESCAPED_SLASH_DECODE

static const pcase_t cases[] = {
    { "/", "/", 1, R },
    { "/a/b?x=1", "/a/b?x=1", 1, R },
    { "/a/./b", "/a/b", 1, R },
    { "/a/../b", "/b", 1, R },
    { "/x/../admin", "/admin", 1, R },
    { "/../admin", "/admin", 1, R },
    { "/../../..", "/", 1, R },
    { "/a/b/..", "/a/", 1, R },
    { "/a/b/.", "/a/b/", 1, R },
    { "/a/.b/..c/...", "/a/.b/..c/...", 1, R },     /* only "." and ".." are special */
    { "/%2e%2e/admin", "/admin", 1, R },            /* encoded dots are dots */
    { "/a/%2E/b", "/a/b", 1, R },
    { "/%61dmin", "/admin", 1, R },                  /* unreserved characters decoded */
    { "/%7euser/%5f%2D", "/~user/_-", 1, R },
    { "/a%20b", "/a%20b", 1, R },                    /* others stay encoded */
    { "/a%3cb%3E", "/a%3Cb%3E", 1, R },              /* ... in one spelling */
    { "/a%zz", NULL, 1, R },                         /* malformed */
    { "/a%2", NULL, 1, R },
    { "/a%", NULL, 1, R },
    { "//admin", "/admin", 1, R },
    { "/a///b//", "/a/b/", 1, R },
    { "//admin", "//admin", 0, R },                  /* merge_slashes: false */
    { "/a//../b", "/a/b", 0, R },                    /* ".." drops the empty segment */
    { "/a%2Fb", NULL, 1, R },                         /* escaped slash: reject (default) */
    { "/a%5cb", NULL, 1, R },
    { "/a%2fb", "/a%2Fb", 1, K },
    { "/a%2f..%2fadmin", "/a%2F..%2Fadmin", 1, K },
    { "/a%2f..%2fadmin", "/admin", 1, D },
    { "/a%2F%2Fb", "/a/b", 1, D },
    { "/a%5Cb", NULL, 1, D },                          /* a decoded '\' is a backslash: refused by default */
    { "/a%5Cb", "/a\\b", 1, D, 0, TG_BACKSLASH_KEEP },
    { "/a%5C..%5Cadmin", "/admin", 1, D, 0, TG_BACKSLASH_DECODE },
    { "/a\\..\\admin", NULL, 1, R },                   /* raw backslash: refused by default */
    { "/a\\..\\admin", "/a\\..\\admin", 1, R, 0, TG_BACKSLASH_KEEP },
    { "/a\\..\\admin", "/admin", 1, R, 0, TG_BACKSLASH_DECODE },
    { "/a\\\\b", "/a/b", 1, R, 0, TG_BACKSLASH_DECODE }, /* then merged */
    /* path parameters: a dot-segment with parameters is a dot-segment */
    { "/public/..;/admin/secret", "/admin/secret", 1, R },
    { "/public/..;x=1/admin", "/admin", 1, R },
    { "/a/.;x/b", "/a/b", 1, R },
    { "/a/b/..;", "/a/", 1, R },
    { "/a;x=1/b;c", "/a;x=1/b;c", 1, R },             /* keep (default) */
    { "/a/%2e%2e;x/b", "/b", 1, R },
    { "/a;x=1/b;c?q=;", "/a/b?q=;", 1, R, TG_SEMICOLONS_STRIP },
    { "/a/;x/b", "/a/b", 1, R, TG_SEMICOLONS_STRIP },
    { "/a/;x/b", "/a//b", 0, R, TG_SEMICOLONS_STRIP },
    { "/;x", "/", 1, R, TG_SEMICOLONS_STRIP },
    { "/a/%3B/b", "/a/%3B/b", 1, R, TG_SEMICOLONS_STRIP }, /* an escaped ';' is data */
    { "/a;x/../b", "/b", 1, R, TG_SEMICOLONS_STRIP },
    { "/a;x", NULL, 1, R, TG_SEMICOLONS_REJECT },
    { "/a%3bx", NULL, 1, R, TG_SEMICOLONS_REJECT },
    { "/a?x=;", "/a?x=;", 1, R, TG_SEMICOLONS_REJECT },
    { "/p#frag", "/p", 1, R },                        /* a fragment is dropped */
    { "/p?q=1#frag", "/p?q=1", 1, R },
    { "/p?q=/../x", "/p?q=/../x", 1, R },             /* the query is not a path */
    { "/p?%zz", "/p?%zz", 1, R },
    { "/users/42/", "/users/42/", 1, R },
    { "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Check", 1, R },
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const pcase_t *c = &cases[i];
        tg_path_conf_t conf = { .merge_slashes = c->merge, .escaped_slashes = c->esc, .semicolons = c->semi,
                                .backslashes = c->bs };
        tg_arena_t a;
        tg_arena_init(&a);
        const char *out = NULL, *why = NULL;
        size_t plen = 0;
        int r = tg_path_normalize(&a, c->in, &conf, &out, &plen, &why);
        if (c->out == NULL) {
            if (r != -1)
                fprintf(stderr, "'%s' gave '%s', wanted a refusal\n", c->in, out);
            assert_int_equal(r, -1);
            assert_non_null(why);
        } else {
            if (r != 0 || strcmp(out, c->out) != 0)
                fprintf(stderr, "'%s' gave '%s' (%s), wanted '%s'\n", c->in, r == 0 ? out : "-", why ? why : "",
                        c->out);
            assert_int_equal(r, 0);
            assert_string_equal(out, c->out);
            assert_int_equal(plen, strcspn(c->out, "?"));
        }
        tg_arena_free(&a);
    }
}

/* A path already in normal form is the target itself (no copy); one
 * character that could change it takes the full walk. */
static void test_no_copy(void **state)
{
    (void)state;
    static const char *const same[] = { "/", "/a/b?x=1", "/users/42/", "/grpc.health.v1.Health/Check",
                                        "/a.b/c.?q=/../x;%zz", "/a/b." };
    static const char *const walked[] = { "//a", "/a/.b", "/a%41", "/a;b", "/a\\b", "/a#f", "/a?q#f", "/." };
    tg_path_conf_t conf = { .merge_slashes = 1, .backslashes = TG_BACKSLASH_KEEP };
    tg_arena_t a;
    tg_arena_init(&a);
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        const char *out = NULL, *why = NULL;
        size_t plen = 0;
        assert_int_equal(tg_path_normalize(&a, same[i], &conf, &out, &plen, &why), 0);
        assert_ptr_equal(out, same[i]);
        assert_int_equal(plen, strcspn(same[i], "?"));
    }
    for (size_t i = 0; i < sizeof(walked) / sizeof(walked[0]); i++) {
        const char *out = NULL, *why = NULL;
        size_t plen = 0;
        assert_int_equal(tg_path_normalize(&a, walked[i], &conf, &out, &plen, &why), 0);
        assert_ptr_not_equal(out, walked[i]);
    }
    tg_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_no_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
