/* Unit tests: credential matching in the auth filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/sha.h>
#include <string.h>
#include <cmocka.h>

#include "filters/auth.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_match) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
