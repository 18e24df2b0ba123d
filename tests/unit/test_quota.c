/* Unit tests: the quota filter's calendar — TZif zones read from the
 * system's zoneinfo, UTC offsets across DST changes, and day and month
 * periods aligned to local midnight (including a 23- and a 25-hour day and
 * a month boundary in another zone than UTC), and bad zone names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "filters/quota.h"

static void test_utc(void **state)
{
    tg_tz_t tz;
    const char *why = NULL;
    assert_int_equal(tg_tz_load("UTC", &tz, &why), 0);
    int64_t end;
    assert_int_equal(tg_quota_period(&tz, TG_QUOTA_DAY, 1796083199, &end), 20787); /* 2026-11-30T23:59:59Z */
    assert_int_equal(end, 1796083200);
    assert_int_equal(tg_quota_period(&tz, TG_QUOTA_DAY, 1796083200, &end), 20788); /* a second later */
    tg_tz_free(&tz);
}

static void test_berlin_across_dst(void **state)
{
    tg_tz_t tz;
    const char *why = NULL;
    assert_int_equal(tg_tz_load("Europe/Berlin", &tz, &why), 0);
    assert_int_equal(tg_tz_offset(&tz, 1769902200), 3600);  /* January: CET */
    assert_int_equal(tg_tz_offset(&tz, 1774785600), 7200);  /* 2026-03-29 noon: CEST */
    int64_t end;
    /* the day DST starts is 23 hours long: it ends at 22:00Z */
    assert_int_equal(tg_quota_period(&tz, TG_QUOTA_DAY, 1774785600, &end), 20541);
    assert_int_equal(end, 1774821600);
    /* the day it ends is 25 hours long: 00:30Z is 02:30 CEST, the day ends at 23:00Z */
    assert_int_equal(tg_quota_period(&tz, TG_QUOTA_DAY, 1792888200, &end), 20751);
    assert_int_equal(end, 1792969200);
    /* 2026-01-31T23:30Z is already February in Berlin; March starts at 23:00Z on the 28th */
    assert_int_equal(tg_quota_period(&tz, TG_QUOTA_MONTH, 1769902200, &end), 2026 * 12 + 1);
    assert_int_equal(end, 1772319600);
    tg_tz_free(&tz);
}

static void test_negative_offset(void **state)
{
    tg_tz_t tz;
    const char *why = NULL;
    assert_int_equal(tg_tz_load("America/New_York", &tz, &why), 0);
    int64_t end;
    /* 2026-11-30T03:00Z is still the 29th (22:00 EST); it ends at 05:00Z */
    assert_int_equal(tg_quota_period(&tz, TG_QUOTA_DAY, 1796007600, &end), 20786);
    assert_int_equal(end, 1796014800);
    tg_tz_free(&tz);
}

static void test_bad_names(void **state)
{
    tg_tz_t tz;
    const char *why = NULL;
    assert_int_equal(tg_tz_load("../../etc/passwd", &tz, &why), -1);
    assert_string_equal(why, "not a time zone name");
    assert_int_equal(tg_tz_load("/etc/localtime", &tz, &why), -1);
    assert_int_equal(tg_tz_load("Mars/Olympus_Mons", &tz, &why), -1);
    assert_non_null(why);
    assert_int_equal(tg_tz_load("zone.tab", &tz, &why), -1); /* a file, not a zone */
    assert_string_equal(why, "not a TZif file");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utc),
        cmocka_unit_test(test_berlin_across_dst),
        cmocka_unit_test(test_negative_offset),
        cmocka_unit_test(test_bad_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
