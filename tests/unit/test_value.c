/* Unit tests: durations, sizes, host:port, ${VAR} expansion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "config/value.h"

static void test_durations(void **state)
{
    uint64_t ms;
    assert_int_equal(tg_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(tg_parse_duration_ms("5s", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(tg_parse_duration_ms("1m", &ms), 0);
    assert_int_equal(ms, 60000);
    assert_int_equal(tg_parse_duration_ms("2h", &ms), 0);
    assert_int_equal(ms, 7200000);
    assert_int_equal(tg_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(tg_parse_duration_ms("5", &ms), -1);
    assert_int_equal(tg_parse_duration_ms("5sec", &ms), -1);
    assert_int_equal(tg_parse_duration_ms("-5s", &ms), -1);
    assert_int_equal(tg_parse_duration_ms("", &ms), -1);
    assert_int_equal(tg_parse_duration_ms("s", &ms), -1);
    assert_int_equal(tg_parse_duration_ms("99999999999999999999h", &ms), -1);
    assert_int_equal(tg_parse_duration_ms("9999999999999999h", &ms), -1);
}

static void test_sizes(void **state)
{
    uint64_t v;
    assert_int_equal(tg_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(tg_parse_size("64KiB", &v), 0);
    assert_int_equal(v, 65536);
    assert_int_equal(tg_parse_size("10MiB", &v), 0);
    assert_int_equal(v, 10485760);
    assert_int_equal(tg_parse_size("1GiB", &v), 0);
    assert_int_equal(v, 1073741824ULL);
    assert_int_equal(tg_parse_size("2KB", &v), 0);
    assert_int_equal(v, 2000);
    assert_int_equal(tg_parse_size("10 MiB", &v), -1);
    assert_int_equal(tg_parse_size("10mb", &v), -1);
    assert_int_equal(tg_parse_size("MiB", &v), -1);
}

static void test_hostport(void **state)
{
    char host[64];
    uint16_t port;
    assert_int_equal(tg_parse_hostport("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(tg_parse_hostport("[::1]:443", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 443);
    assert_int_equal(tg_parse_hostport("localhost:1", host, sizeof(host), &port), 0);
    assert_int_equal(tg_parse_hostport("localhost", host, sizeof(host), &port), -1);
    assert_int_equal(tg_parse_hostport("h:0", host, sizeof(host), &port), -1);
    assert_int_equal(tg_parse_hostport("h:65536", host, sizeof(host), &port), -1);
    assert_int_equal(tg_parse_hostport(":80", host, sizeof(host), &port), -1);
    assert_int_equal(tg_parse_hostport("::1:80", host, sizeof(host), &port), -1);
    assert_int_equal(tg_parse_hostport("h:80x", host, sizeof(host), &port), -1);
}

static void test_env(void **state)
{
    char *var = NULL;
    setenv("TG_UNIT_TOKEN", "s3cret", 1);
    char *s = tg_expand_env("Bearer ${TG_UNIT_TOKEN}!", &var);
    assert_non_null(s);
    assert_string_equal(s, "Bearer s3cret!");
    free(s);
    s = tg_expand_env("no vars $HOME {x}", &var);
    assert_string_equal(s, "no vars $HOME {x}");
    free(s);
    unsetenv("TG_UNIT_MISSING");
    assert_null(tg_expand_env("${TG_UNIT_MISSING}", &var));
    assert_string_equal(var, "TG_UNIT_MISSING");
    free(var);
    assert_null(tg_expand_env("${unterminated", &var));
    assert_null(var);
    assert_null(tg_expand_env("${}", &var));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
