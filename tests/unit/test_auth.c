/* Unit tests: credential matching in the auth filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/sha.h>
#include <string.h>
#include <cmocka.h>

#include "filters/auth.h"
#include "filters/jwt.h"

static void set(tg_auth_secret_t *s, const char *name, const char *secret)
{
    s->name = (char *)name;
    SHA256((const unsigned char *)secret, strlen(secret), s->digest);
}

static void test_match(void **state)
{
    tg_auth_secret_t s[3];
    set(&s[0], "alice", "t-alice");
    set(&s[1], "bob", "t-bob");
    set(&s[2], "bob-again", "t-bob"); /* the first match wins */
    assert_int_equal(tg_auth_match(s, 3, "t-alice", 7), 0);
    assert_int_equal(tg_auth_match(s, 3, "t-bob", 5), 1);
    assert_int_equal(tg_auth_match(s, 3, "t-bo", 4), -1);       /* a prefix is not a match */
    assert_int_equal(tg_auth_match(s, 3, "t-alice ", 8), -1);
    assert_int_equal(tg_auth_match(s, 3, "", 0), -1);
    assert_int_equal(tg_auth_match(s, 0, "t-alice", 7), -1);
}

static void test_b64url(void **state)
{
    unsigned char out[64];
    assert_int_equal(tg_b64url_decode("aGVsbG8", 7, out), 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(tg_b64url_decode("aGVsbG8=", 8, out), 5);   /* padding tolerated */
    assert_int_equal(tg_b64url_decode("-_8", 3, out), 2);         /* url alphabet */
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(tg_b64url_decode("a+b", 3, out), -1);        /* standard alphabet refused */
    assert_int_equal(tg_b64url_decode("a", 1, out), -1);          /* impossible length */
    assert_int_equal(tg_b64url_decode("", 0, out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_match), cmocka_unit_test(test_b64url) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
