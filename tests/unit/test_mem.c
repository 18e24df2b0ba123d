/* Unit tests: the worker's block cache (mem.h), slabs (slab.h) and
 * chunked tables (chunks.h: slots far apart, chunk edges, the last slot,
 * memory counted, elements that never move). The
 * reuse checks hold in the release build, whose unit tests run too;
 * sanitizer builds do not cache, and there the same calls must still be
 * correct memory. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/base/chunks.h"
#include "proxy/base/mem.h"
#include "proxy/base/pages.h"
#include "proxy/base/slab.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHES 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CACHES 0
#endif
#endif
#ifndef CACHES
#define CACHES 1
#endif

static void test_alloc_free_reuse(void **state)
{
    (void)state;
    tg_mem_t *m = tg_mem_new(1 << 20);
    assert_non_null(m);
    unsigned char *a = tg_mem_alloc(m, 1000);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % 16, 0);
    memset(a, 0xab, 1000);
    tg_mem_free(m, a);
    unsigned char *b = tg_mem_alloc(m, 1024); /* the same class (513..1024) */
    memset(b, 1, 1024);
    tg_mem_stats_t st;
    tg_mem_stats(m, &st);
    assert_int_equal(st.allocs, 2);
    if (CACHES) {
        assert_ptr_equal(a, b);
        assert_int_equal(st.misses, 1);
    }
    tg_mem_free(m, b);
    /* every size class and beyond */
    void *p[40];
    for (int i = 0; i < 40; i++) {
        size_t n = (size_t)1 << (i % 20);
        p[i] = tg_mem_alloc(m, n + (size_t)i);
        assert_non_null(p[i]);
        memset(p[i], i, n + (size_t)i);
    }
    for (int i = 0; i < 40; i++)
        tg_mem_free(m, p[i]);
    tg_mem_free(m, NULL);
    tg_mem_destroy(m);
}

static void test_calloc_realloc(void **state)
{
    (void)state;
    tg_mem_t *m = tg_mem_new(1 << 20);
    unsigned char *z = tg_mem_calloc(m, 10, 10);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    memset(z, 7, 100);
    tg_mem_free(m, z);
    z = tg_mem_calloc(m, 10, 10); /* the reused block is zeroed again */
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    assert_null(tg_mem_calloc(m, SIZE_MAX / 2, 4)); /* overflow */
    unsigned char *r = tg_mem_realloc(m, NULL, 40);
    for (int i = 0; i < 40; i++)
        r[i] = (unsigned char)i;
    r = tg_mem_realloc(m, r, 100000); /* into the large blocks */
    for (int i = 0; i < 40; i++)
        assert_int_equal(r[i], i);
    memset(r + 40, 9, 100000 - 40);
    r = tg_mem_realloc(m, r, 200000);
    assert_int_equal(r[39], 39);
    assert_int_equal(r[99999], 9);
    r = tg_mem_realloc(m, r, 10);
    assert_int_equal(r[5], 5);
    tg_mem_free(m, r);
    tg_mem_free(m, z);
    tg_mem_destroy(m);
}

static void test_budget_and_trim(void **state)
{
    (void)state;
    tg_mem_t *m = tg_mem_new(4096); /* four 1 KiB blocks at most */
    void *p[8];
    for (int i = 0; i < 8; i++)
        p[i] = tg_mem_alloc(m, 1024);
    for (int i = 0; i < 8; i++)
        tg_mem_free(m, p[i]);
    tg_mem_stats_t st;
    tg_mem_stats(m, &st);
    assert_true(st.cached_bytes <= 4096);
    if (CACHES)
        assert_int_equal(st.cached_bytes, 4096);
    /* blocks used between two trims stay; blocks nobody used go */
    tg_mem_trim(m);
    tg_mem_stats(m, &st);
    if (CACHES)
        assert_int_equal(st.cached_bytes, 4096); /* first trim: nothing known unused yet */
    void *x = tg_mem_alloc(m, 1000), *y = tg_mem_alloc(m, 1000);
    tg_mem_free(m, x);
    tg_mem_free(m, y);
    tg_mem_trim(m); /* the list never went below 2 of 4: two go */
    tg_mem_stats(m, &st);
    if (CACHES)
        assert_int_equal(st.cached_bytes, 2048);
    tg_mem_trim(m); /* nothing used at all since: all go */
    tg_mem_stats(m, &st);
    assert_int_equal(st.cached_bytes, 0);
    tg_mem_destroy(m);
}

/* Four classes to a doubling from 64 (32 and 48 below): a request takes a block at most a fifth
 * larger than itself (a 2,928-byte one takes 3 KiB, not 4), and a block
 * comes back to the class it was made for. */
static void test_classes(void **state)
{
    (void)state;
    static const size_t sizes[][2] = { /* a request, the largest request its block serves */
        { 1, 32 },       { 33, 48 },       { 49, 64 },       { 65, 80 },       { 81, 96 },
        { 100, 112 },    { 2928, 3072 },   { 3073, 3584 },   { 4096, 4096 },   { 4097, 5120 },
        { 40000, 40960 }, { 65536, 65536 },
    };
    tg_mem_t *m = tg_mem_new(1 << 20);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *a = tg_mem_alloc(m, sizes[i][0]);
        assert_non_null(a);
        if (CACHES) { /* sanitizer builds: exact sizes */
            assert_true(malloc_usable_size(a) >= sizes[i][1]);
            assert_true(malloc_usable_size(a) < sizes[i][1] + sizes[i][1] / 4 + 16);
        }
        memset(a, 0x5a, sizes[i][0]);
        tg_mem_free(m, a);
        unsigned char *b = tg_mem_alloc(m, sizes[i][1]); /* the same class */
        if (CACHES)
            assert_ptr_equal(a, b);
        memset(b, 0x5a, sizes[i][1]);
        tg_mem_free(m, b);
        unsigned char *c = tg_mem_alloc(m, sizes[i][1] + 1); /* the next one */
        if (CACHES && sizes[i][1] < 65536)
            assert_ptr_not_equal(b, c);
        memset(c, 0x5b, sizes[i][1] + 1);
        tg_mem_free(m, c);
    }
    tg_mem_destroy(m);
}

static void test_no_cache_and_cross_cache(void **state)
{
    (void)state;
    /* a block from one cache freed to another, or to none (another thread) */
    tg_mem_t *a = tg_mem_new(1 << 20), *b = tg_mem_new(1 << 20);
    void *p = tg_mem_alloc(a, 300), *q = tg_mem_alloc(NULL, 300);
    memset(p, 1, 300);
    memset(q, 2, 300);
    tg_mem_free(b, p);
    tg_mem_free(NULL, q);
    void *r = tg_mem_alloc(b, 256 + 1);
    if (CACHES)
        assert_ptr_equal(r, p);
    tg_mem_free(b, r);
    tg_mem_destroy(a);
    tg_mem_destroy(b);
}

/* The page arena: whole, aligned pages; a freed block comes back to its
 * size's list; trim gives back the pages of blocks nobody took since the
 * last trim (they read as zeros after); a block in use gives its pages
 * back when told (only while it reads as zeros, if asked); pointers that
 * are not its blocks are told apart; blocks keep coming past a chunk. */
static void test_pages(void **state)
{
    (void)state;
    tg_pages_t *a = tg_pages_new();
    assert_non_null(a);
    assert_null(tg_pages_alloc(a, 0));
    assert_null(tg_pages_alloc(a, TG_PAGES_MAX_PAGES * TG_PAGES_SIZE + 1));
    unsigned char *p[TG_PAGES_MAX_PAGES + 1];
    for (unsigned k = 1; k <= TG_PAGES_MAX_PAGES; k++) {
        p[k] = tg_pages_alloc(a, (size_t)k * TG_PAGES_SIZE - 100);
        assert_non_null(p[k]);
        assert_int_equal((uintptr_t)p[k] % TG_PAGES_SIZE, 0);
        assert_int_equal(tg_pages_size(a, p[k]), (size_t)k * TG_PAGES_SIZE);
        memset(p[k], (int)k, (size_t)k * TG_PAGES_SIZE);
    }
    for (unsigned k = 1; k <= TG_PAGES_MAX_PAGES; k++) /* nothing overlaps */
        for (size_t i = 0; i < (size_t)k * TG_PAGES_SIZE; i += 512)
            assert_int_equal(p[k][i], k);
    tg_pages_stats_t st;
    tg_pages_stats(a, &st);
    assert_int_equal(st.in_use, 36 * TG_PAGES_SIZE);
    assert_int_equal(st.free_hot, 0);
    /* not blocks: an interior pointer, a C-library block, NULL */
    void *heap = malloc(64);
    assert_int_equal(tg_pages_size(a, p[3] + TG_PAGES_SIZE), 0);
    assert_int_equal(tg_pages_size(a, p[3] + 1), 0);
    assert_int_equal(tg_pages_size(a, heap), 0);
    assert_int_equal(tg_pages_size(a, NULL), 0);
    assert_int_equal(tg_pages_release(a, heap, 0), 0);
    free(heap);
    /* release of a block in use */
    assert_int_equal(tg_pages_release(a, p[2], 1), 0); /* holds bytes: stays */
    assert_int_equal(p[2][5], 2);
    assert_int_equal(tg_pages_release(a, p[2], 0), 2 * TG_PAGES_SIZE);
    assert_int_equal(p[2][5] + p[2][TG_PAGES_SIZE + 5], 0);
    memset(p[1], 0, TG_PAGES_SIZE);
    assert_int_equal(tg_pages_release(a, p[1], 1), TG_PAGES_SIZE);
    p[1][7] = 9;
    assert_int_equal(p[1][7], 9);
    /* reuse: a freed block of the same size comes back */
    unsigned char *old = p[4];
    tg_pages_free(a, p[4]);
    tg_pages_stats(a, &st);
    assert_int_equal(st.free_hot, 4 * TG_PAGES_SIZE);
    p[4] = tg_pages_alloc(a, 3 * TG_PAGES_SIZE + 1);
    assert_ptr_equal(p[4], old);
    assert_int_equal(p[4][0], 4); /* not given back: still what it held */
    /* trim: a free block untouched between two trims gives its pages back */
    tg_pages_free(a, p[4]);
    tg_pages_trim(a); /* first: nothing known unused yet */
    tg_pages_stats(a, &st);
    assert_int_equal(st.free_hot, 4 * TG_PAGES_SIZE);
    tg_pages_trim(a);
    tg_pages_stats(a, &st);
    assert_int_equal(st.free_hot, 0);
    p[4] = tg_pages_alloc(a, 4 * TG_PAGES_SIZE);
    assert_ptr_equal(p[4], old);
    assert_int_equal(p[4][0] + p[4][3 * TG_PAGES_SIZE], 0); /* reads as zeros */
    /* a cold block freed below warm ones, taken in order */
    unsigned char *x = tg_pages_alloc(a, TG_PAGES_SIZE), *y = tg_pages_alloc(a, TG_PAGES_SIZE);
    tg_pages_free(a, x);
    tg_pages_trim(a);
    tg_pages_trim(a); /* x cold */
    tg_pages_free(a, y);
    tg_pages_stats(a, &st);
    assert_int_equal(st.free_hot, TG_PAGES_SIZE);
    assert_ptr_equal(tg_pages_alloc(a, 1), y); /* the warm one first */
    assert_ptr_equal(tg_pages_alloc(a, 1), x);
    tg_pages_stats(a, &st);
    assert_int_equal(st.free_hot, 0);
    tg_pages_free(a, x);
    tg_pages_free(a, y);
    /* past a chunk: blocks keep coming, all distinct and usable; the old
     * chunk's end becomes a free block */
    enum { N = 300 };
    unsigned char *many[N];
    for (int i = 0; i < N; i++) {
        many[i] = tg_pages_alloc(a, 3 * TG_PAGES_SIZE);
        assert_non_null(many[i]);
        many[i][0] = (unsigned char)i;
        many[i][3 * TG_PAGES_SIZE - 1] = (unsigned char)i;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(many[i][0] + many[i][3 * TG_PAGES_SIZE - 1], 2 * (i & 0xff));
    tg_pages_stats(a, &st);
    assert_true(st.mapped >= (size_t)N * 3 * TG_PAGES_SIZE);
    for (int i = 0; i < N; i++)
        tg_pages_free(a, many[i]);
    for (unsigned k = 1; k <= TG_PAGES_MAX_PAGES; k++)
        tg_pages_free(a, p[k]);
    tg_pages_stats(a, &st);
    assert_int_equal(st.in_use, 0);
    tg_pages_destroy(a);
    tg_pages_destroy(NULL);
}

typedef struct obj {
    char bytes[200];
} obj_t;

static void test_slab(void **state)
{
    (void)state;
    assert_null(tg_slab_new(0));
    assert_null(tg_slab_new(100000));
    tg_slab_t *s = tg_slab_new(sizeof(obj_t));
    assert_non_null(s);
    enum { N = 1000 };
    obj_t **o = calloc(N, sizeof(*o));
    for (int i = 0; i < N; i++) {
        o[i] = tg_slab_alloc(s);
        assert_non_null(o[i]);
        assert_int_equal((uintptr_t)o[i] % 16, 0);
        for (size_t k = 0; k < sizeof(obj_t); k++)
            assert_int_equal(o[i]->bytes[k], 0);
        memset(o[i], i & 0xff, sizeof(obj_t));
    }
    for (int i = 0; i < N; i++) /* nothing overlaps */
        for (size_t k = 0; k < sizeof(obj_t); k += 50)
            assert_int_equal((unsigned char)o[i]->bytes[k], i & 0xff);
    if (CACHES)
        assert_true(tg_slab_chunks(s) >= (N * 208 + 65535) / 65536);
    /* free every other one, then all: at most one empty chunk stays */
    for (int i = 0; i < N; i += 2)
        tg_slab_free(s, o[i]);
    for (int i = 0; i < N; i += 2) { /* the freed ones are reused, zeroed */
        o[i] = tg_slab_alloc(s);
        assert_int_equal(o[i]->bytes[10], 0);
    }
    for (int i = 0; i < N; i++)
        tg_slab_free(s, o[i]);
    if (CACHES)
        assert_int_equal(tg_slab_chunks(s), 1);
    obj_t *again = tg_slab_alloc(s);
    assert_non_null(again);
    tg_slab_free(s, again);
    tg_slab_free(s, NULL);
    tg_slab_destroy(s);
    free(o);
}

static void test_slab_destroyed_with_objects_out(void **state)
{
    (void)state;
    /* a teardown may free objects after their slab: they stay valid, and
     * the last one's free releases what is left (no leak, no use after free) */
    tg_slab_t *s = tg_slab_new(64);
    void *a = tg_slab_alloc(s), *b = tg_slab_alloc(s);
    tg_slab_destroy(s);
    memset(a, 1, 64);
    tg_slab_free(s, a);
    memset(b, 2, 64);
    tg_slab_free(s, b);
}

typedef struct {
    uint64_t a, b, c;
} elem_t;

static void test_chunks(void **state)
{
    (void)state;
    tg_chunks_t t;
    tg_chunks_init(&t, sizeof(elem_t));
    assert_int_equal(tg_chunks_bytes(&t), 0);
    assert_null(tg_chunks_peek(&t, 0));
    elem_t *first = tg_chunks_get(&t, 0);
    assert_non_null(first);
    assert_true(first->a == 0 && first->b == 0 && first->c == 0); /* zeroed */
    first->a = 7;
    size_t one = tg_chunks_bytes(&t);
    assert_true(one >= 256 * sizeof(elem_t));
    /* the same chunk: no memory more, neighbours there and zero */
    elem_t *last_in_chunk = tg_chunks_get(&t, 255);
    assert_ptr_equal(last_in_chunk, first + 255);
    assert_int_equal(tg_chunks_bytes(&t), one);
    assert_null(tg_chunks_peek(&t, 256)); /* the next chunk was never made */
    elem_t *next = tg_chunks_get(&t, 256);
    assert_non_null(next);
    assert_ptr_equal(tg_chunks_peek(&t, 256), next);
    /* far slots: another middle table, the last slot there is */
    elem_t *far = tg_chunks_get(&t, 1000000);
    elem_t *end = tg_chunks_get(&t, TG_CHUNKS_MAX - 1);
    assert_non_null(far);
    assert_non_null(end);
    end->c = 9;
    assert_null(tg_chunks_get(&t, TG_CHUNKS_MAX)); /* past what the directory indexes */
    assert_null(tg_chunks_peek(&t, TG_CHUNKS_MAX));
    assert_null(tg_chunks_peek(&t, 999999 - 256)); /* between made chunks: nothing */
    /* what was made never moved */
    assert_ptr_equal(tg_chunks_peek(&t, 0), first);
    assert_true(((elem_t *)tg_chunks_peek(&t, 0))->a == 7);
    assert_true(((elem_t *)tg_chunks_peek(&t, TG_CHUNKS_MAX - 1))->c == 9);
    assert_true(tg_chunks_bytes(&t) < 64 * 1024 + 4 * 256 * sizeof(elem_t) + 4 * 1024 * sizeof(void *));
    tg_chunks_free(&t);
    assert_int_equal(tg_chunks_bytes(&t), 0);
    assert_null(tg_chunks_peek(&t, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_free_reuse),
        cmocka_unit_test(test_calloc_realloc),
        cmocka_unit_test(test_budget_and_trim),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_no_cache_and_cross_cache),
        cmocka_unit_test(test_slab),
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_slab_destroyed_with_objects_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
