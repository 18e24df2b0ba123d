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

/* Allocations never overlap, whatever mix of sizes makes new blocks: a
 * block made for one large request is full, the next small one goes to a
 * fresh block; a reset starts over at the first block's start; an arena
 * freed or never used starts from nothing. */
static void test_no_overlap(void **state)
{
    (void)state;
    static const size_t sizes[] = { 1, 7, 8, 9, 4000, 4096, 5000, 3, 100000, 16, 0, 4080 };
    tg_arena_t a;
    tg_arena_init(&a);
    assert_non_null(tg_arena_alloc(&a, 0)); /* 0 bytes from a new arena: a pointer, not "out of memory" */
    tg_arena_free(&a);
    for (int round = 0; round < 3; round++) {
        unsigned char *p[sizeof(sizes) / sizeof(sizes[0])];
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            p[i] = tg_arena_alloc(&a, sizes[i]);
            assert_non_null(p[i]);
            assert_int_equal((uintptr_t)p[i] % 8, 0);
            memset(p[i], (int)i + 1, sizes[i]);
        }
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
            for (size_t k = 0; k < sizes[i]; k++)
                assert_int_equal(p[i][k], (unsigned char)(i + 1)); /* nothing written over it */
        unsigned char *first = p[0];
        tg_arena_reset(&a);
        assert_ptr_equal(tg_arena_alloc(&a, 8), first);
        if (round == 1)
            tg_arena_free(&a); /* the last round starts from nothing */
        else
            tg_arena_reset(&a);
    }
    tg_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(test_alloc_reset), cmocka_unit_test(test_no_overlap) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
