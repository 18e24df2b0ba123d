/* Unit tests: the HTTP/2 plumbing shared by both sides — the nghttp2
 * session allocator (size classes, large blocks, realloc, calloc), the
 * stream object cache, and frame queueing with its high-water mark. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/h2mem.h"
#include "proxy/h2util.h"

static void test_allocator(void **state)
{
    tg_h2mem_t *m = tg_h2mem_new();
    assert_non_null(m);
    nghttp2_mem *mem = tg_h2mem_nghttp2(m);
    /* every size class and a large block: usable, 16-byte aligned */
    size_t sizes[] = { 0, 1, 31, 32, 33, 100, 1000, 4096, 4097, 100000 };
    void *p[10];
    for (size_t i = 0; i < 10; i++) {
        p[i] = mem->malloc(sizes[i], mem->mem_user_data);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], 0xab, sizes[i]);
    }
    for (size_t i = 0; i < 10; i++)
        mem->free(p[i], mem->mem_user_data);
    mem->free(NULL, mem->mem_user_data);
    /* calloc zeroes (also a recycled block) and refuses overflow */
    unsigned char *z = mem->calloc(10, 10, mem->mem_user_data);
    assert_non_null(z);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    assert_null(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data));
    /* realloc keeps the bytes across classes, up and down, and to a large block */
    for (size_t i = 0; i < 100; i++)
        z[i] = (unsigned char)i;
    z = mem->realloc(z, 3000, mem->mem_user_data);
    assert_non_null(z);
    z = mem->realloc(z, 50000, mem->mem_user_data);
    assert_non_null(z);
    z = mem->realloc(z, 64, mem->mem_user_data);
    assert_non_null(z);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(z[i], i);
    mem->free(z, mem->mem_user_data);
    void *last = mem->realloc(NULL, 10, mem->mem_user_data);
    assert_non_null(last);
    mem->free(last, mem->mem_user_data);
    tg_h2mem_free(m); /* frees the cached blocks */
}

typedef struct thing {
    tg_h2_obj_t obj;
    int value;
} thing_t;

static void test_object_cache(void **state)
{
    tg_h2_obj_cache_t c = { 0 };
    thing_t *a = tg_h2_obj_alloc(&c, sizeof(*a));
    assert_non_null(a);
    assert_non_null(a->obj.buf[0]);
    assert_non_null(a->obj.buf[1]);
    a->value = 7;
    evbuffer_add(a->obj.buf[0], "left over", 9);
    struct evbuffer *b0 = a->obj.buf[0];
    tg_h2_obj_release(&c, &a->obj);
    assert_int_equal(c.n, 1);
    thing_t *b = tg_h2_obj_alloc(&c, sizeof(*b));
    assert_ptr_equal(b, a);                        /* recycled ... */
    assert_ptr_equal(b->obj.buf[0], b0);           /* ... with its buffers ... */
    assert_int_equal(evbuffer_get_length(b->obj.buf[0]), 0); /* ... emptied */
    assert_int_equal(b->value, 0);                 /* and the rest zeroed */
    assert_int_equal(c.n, 0);
    tg_h2_obj_release(&c, &b->obj);
    tg_h2_obj_cache_clear(&c);
    assert_int_equal(c.n, 0);
    assert_null(c.head);
}

static void test_frame_queueing(void **state)
{
    struct evbuffer *out = evbuffer_new(), *src = evbuffer_new();
    const uint8_t frame[9] = { 0, 0, 4, 0, 0, 0, 0, 0, 1 };
    evbuffer_add(src, "data", 4);
    assert_int_equal(tg_h2_queue_data(out, frame, src, 4), 0);
    assert_int_equal(evbuffer_get_length(out), 13);
    assert_int_equal(evbuffer_get_length(src), 0);
    assert_int_equal(tg_h2_queue_frame(out, frame, 9), 9);
    /* past the high-water mark: nghttp2 is told to wait */
    char *big = calloc(1, TG_H2_OUT_HWM);
    evbuffer_add(out, big, TG_H2_OUT_HWM);
    free(big);
    assert_int_equal(tg_h2_queue_frame(out, frame, 9), NGHTTP2_ERR_WOULDBLOCK);
    assert_int_equal(tg_h2_queue_data(out, frame, src, 0), NGHTTP2_ERR_WOULDBLOCK);
    evbuffer_free(out);
    evbuffer_free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator),
        cmocka_unit_test(test_object_cache),
        cmocka_unit_test(test_frame_queueing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
