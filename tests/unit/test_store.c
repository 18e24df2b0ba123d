/* Unit tests: the pieces of the Redis store that need no server — Redis
 * Cluster hash slots (CRC16/XMODEM, hash tags as Redis reads them), the
 * script digest EVALSHA names, and the per-worker "denied until" cache
 * (hits only for the same set and key, before the deadline, for a cost at
 * least the refused one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "filters/store.h"
#include "proxy/redis.h"

static unsigned slot(const char *k)
{
    return tg_redis_key_slot(k, strlen(k));
}

static void test_key_slots(void **state)
{
    (void)state;
    /* the CRC16 check value of the Redis Cluster spec: "123456789" -> 0x31C3 */
    assert_int_equal(slot("123456789"), 0x31C3 % 16384);
    assert_int_equal(slot("foo"), 12182); /* CLUSTER KEYSLOT foo */
    /* a hash tag: only what is between the first { and the next } counts */
    assert_int_equal(slot("{user1000}.following"), slot("{user1000}.followers"));
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("foo{}{bar}"), slot("foo{}{bar}")); /* empty tag: the whole key */
    assert_int_not_equal(slot("foo{}{bar}"), slot("bar"));
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    assert_int_equal(slot("tollgate:rl:{default:50/10000:alice}"), slot("default:50/10000:alice"));
    assert_true(slot("no-close{brace") < 16384);
}

static void test_script_digest(void **state)
{
    (void)state;
    tg_store_script_t s;
    assert_int_equal(tg_store_script_init(&s, "return 1"), 0);
    /* redis-cli SCRIPT LOAD "return 1" */
    assert_string_equal(s.sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

static void test_deny_cache(void **state)
{
    (void)state;
    static tg_deny_cache_t c;
    assert_int_equal(tg_deny_cache_init(&c), 0);
    uint64_t a = tg_deny_cache_hash(&c, 1, "alice", 5), b = tg_deny_cache_hash(&c, 2, "alice", 5);
    assert_int_not_equal(a, 0);
    assert_int_not_equal(a, b); /* another set (plan), another entry */
    assert_null(tg_deny_cache_get(&c, a, 1000, 1));
    tg_deny_cache_put(&c, a, 5000, 3, 1);
    const tg_deny_entry_t *e = tg_deny_cache_get(&c, a, 1000, 3);
    assert_non_null(e);
    assert_int_equal(e->decisive, 1);
    assert_non_null(tg_deny_cache_get(&c, a, 4999, 10));
    assert_null(tg_deny_cache_get(&c, a, 1000, 2));  /* a cheaper request may fit: ask the store */
    assert_null(tg_deny_cache_get(&c, a, 5000, 3));  /* the deadline passed */
    assert_null(tg_deny_cache_get(&c, b, 1000, 3));
    /* a later key in the same slot replaces the entry: never a wrong hit */
    uint64_t other = a + TG_DENY_CACHE_SLOTS;
    tg_deny_cache_put(&c, other, 9000, 1, 0);
    assert_null(tg_deny_cache_get(&c, a, 1000, 3));
    assert_non_null(tg_deny_cache_get(&c, other, 1000, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_slots),
        cmocka_unit_test(test_script_digest),
        cmocka_unit_test(test_deny_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
