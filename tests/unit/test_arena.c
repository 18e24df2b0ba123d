/* Unit tests: the per-exchange arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/base/arena.h"

static void test_alloc_reset(void **state)
{
    tg_arena_t a;
    tg_arena_init(&a);
    char *s = tg_arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    void *first = s;
    for (int i = 0; i < 1000; i++) { /* spills into more blocks */
        unsigned char *p = tg_arena_alloc(&a, 100);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 8, 0);
        memset(p, i, 100);
    }
    unsigned char *big = tg_arena_alloc(&a, 100000);
    assert_non_null(big);
    memset(big, 1, 100000);
    tg_arena_reset(&a);
    /* the first block is reused after a reset */
    assert_ptr_equal(tg_arena_alloc(&a, 8), first);
    tg_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_alloc_reset) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
