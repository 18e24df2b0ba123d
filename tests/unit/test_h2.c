/* Unit tests: the HTTP/2 plumbing shared by both sides — the nghttp2
 * session allocator (size classes, large blocks, realloc, calloc), the
 * stream object cache, the send callbacks with their high-water mark (a
 * real nghttp2 session writing to a tg_sock over a socketpair), the data
 * provider, and the receive loop with its frame-header checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/base/loop.h"
#include "proxy/conn.h"
#include "proxy/h2mem.h"
#include "proxy/h2util.h"

static void test_allocator(void **state)
{
    tg_mem_t *m = tg_mem_new(1 << 20);
    assert_non_null(m);
    tg_pages_t *pages = tg_pages_new();
    assert_non_null(pages);
    tg_h2mem_t h2;
    tg_h2mem_init(&h2, m, pages);
    nghttp2_mem *mem = &h2.mem;
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

    /* page blocks: page-aligned, whole pages; captured ones are named in
     * their slots until freed (also through realloc); an idle session's
     * frame buffer (16 KiB and up) gives its pages back whole, a smaller
     * block only while it reads as zeros; either reads as zeros after,
     * still usable */
    void *slots[2] = { NULL, NULL }, *other = NULL;
    tg_h2mem_capture(&h2, slots, 2);
    void *small = mem->malloc(100, mem->mem_user_data); /* not captured: smaller than a page */
    assert_null(slots[0]);
    unsigned char *map = mem->calloc(256, 16, mem->mem_user_data);
    unsigned char *big = mem->malloc(16394, mem->mem_user_data);
    assert_ptr_equal(slots[0], map);
    assert_ptr_equal(slots[1], big);
    assert_int_equal((uintptr_t)big % 4096, 0);
    assert_int_equal((uintptr_t)map % 4096, 0);
    void *third = mem->malloc(5000, mem->mem_user_data); /* two slots only */
    tg_h2mem_capture(&h2, &other, 1);
    tg_h2mem_capture(&h2, NULL, 0); /* stopped before any page block: nothing captured */
    void *big2 = mem->malloc(20000, mem->mem_user_data);
    assert_null(other);
    memset(big, 0x5a, 16394);
    assert_int_equal(tg_h2mem_release_idle(&h2, big), 20480);
    for (size_t i = 0; i < 16394; i += 997)
        assert_int_equal(big[i], 0);
    big[100] = 7; /* written again: the page comes back */
    assert_int_equal(big[100], 7);
    map[4000] = 1; /* the map holds something: it stays */
    assert_int_equal(tg_h2mem_release_idle(&h2, map), 0);
    assert_int_equal(map[4000], 1);
    map[4000] = 0;
    assert_int_equal(tg_h2mem_release_idle(&h2, map), 4096);
    map[10] = 3;
    assert_int_equal(map[10] + map[11], 3);
    assert_int_equal(tg_h2mem_release_idle(&h2, small), 0); /* not a page block: left alone */
    big = mem->realloc(big, 30000, mem->mem_user_data); /* moved: the old block is freed */
    assert_non_null(big);
    assert_int_equal(big[100], 7);
    assert_null(slots[1]);
    assert_ptr_equal(slots[0], map);
    big = mem->realloc(big, 100000, mem->mem_user_data); /* beyond the arena's blocks */
    assert_int_equal(big[100], 7);
    assert_int_equal(tg_h2mem_release_idle(&h2, big), 0);
    mem->free(map, mem->mem_user_data);
    assert_null(slots[0]);
    mem->free(third, mem->mem_user_data);
    for (int i = 0; i < 200; i++) { /* many captured at once, freed in another order */
        void *s2[3] = { NULL, NULL, NULL }, *b2[3];
        for (int k = 0; k < 3; k++) {
            tg_h2mem_capture(&h2, &s2[k], 1);
            b2[k] = mem->malloc(16384 + (size_t)k, mem->mem_user_data);
            assert_ptr_equal(s2[k], b2[k]);
        }
        mem->free(b2[1], mem->mem_user_data);
        assert_null(s2[1]);
        assert_ptr_equal(s2[0], b2[0]);
        mem->free(b2[0], mem->mem_user_data);
        mem->free(b2[2], mem->mem_user_data);
        assert_null(s2[0]);
        assert_null(s2[2]);
    }
    mem->free(big, mem->mem_user_data);
    mem->free(big2, mem->mem_user_data);
    mem->free(small, mem->mem_user_data);
    tg_h2mem_free(&h2);
    tg_pages_destroy(pages);
    tg_mem_destroy(m); /* frees the cached blocks */
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

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static ssize_t read_thing(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                          nghttp2_data_source *source, void *user_data)
{
    return tg_h2_data_read(source->ptr, length, flags);
}

/* Frames go to the connection's socket output; DATA payloads move out of
 * the stream's buffer; past the high-water mark nghttp2 holds them. */
static void test_send_callbacks(void **state)
{
    struct event_base *base = event_base_new();
    tg_loop_t *tl = tg_loop_new(base);
    tg_sock_loop_t *loop = tg_sock_loop_new(tl, 1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    tg_conn_t conn = { .sock = tg_sock_new(loop, sv[0]) };
    assert_non_null(conn.sock);
    nghttp2_session_callbacks *cb;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    tg_h2_set_send_callbacks(cb);
    nghttp2_session *session;
    assert_int_equal(nghttp2_session_client_new(&session, cb, &conn), 0);
    nghttp2_session_callbacks_del(cb);
    struct evbuffer *out = tg_sock_out(conn.sock);

    assert_int_equal(nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    assert_int_equal(nghttp2_session_send(session), 0);
    size_t n = evbuffer_get_length(out);
    assert_int_equal(n, 24 + 9); /* preface + empty SETTINGS */
    assert_memory_equal(evbuffer_pullup(out, 24), preface, 24);

    thing_t *t = tg_h2_obj_alloc(&(tg_h2_obj_cache_t){ 0 }, sizeof(*t));
    evbuffer_add(t->obj.buf[TG_H2_OUT], "hello", 5);
    t->obj.out_end = 1;
    const nghttp2_nv nv[] = { { (uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0 },
                              { (uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0 },
                              { (uint8_t *)":path", (uint8_t *)"/", 5, 1, 0 },
                              { (uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0 } };
    nghttp2_data_provider prd = { .source.ptr = t, .read_callback = read_thing };
    assert_true(nghttp2_submit_request(session, NULL, nv, 4, &prd, NULL) > 0);
    assert_int_equal(nghttp2_session_send(session), 0);
    /* HEADERS, then DATA with the 5 bytes moved (not copied) and END_STREAM */
    assert_int_equal(evbuffer_get_length(t->obj.buf[TG_H2_OUT]), 0);
    size_t total = evbuffer_get_length(out);
    const unsigned char *all = evbuffer_pullup(out, -1);
    const unsigned char *data = all + total - 14;
    assert_int_equal(data[3], NGHTTP2_DATA);
    assert_int_equal(data[2], 5);
    assert_true(data[4] & NGHTTP2_FLAG_END_STREAM);
    assert_memory_equal(data + 9, "hello", 5);

    /* past the high-water mark: a PING waits in nghttp2 */
    char *big = calloc(1, TG_H2_OUT_HWM);
    evbuffer_add(out, big, TG_H2_OUT_HWM);
    free(big);
    size_t before = evbuffer_get_length(out);
    assert_int_equal(nghttp2_submit_ping(session, NGHTTP2_FLAG_NONE, NULL), 0);
    assert_int_equal(nghttp2_session_send(session), 0);
    assert_int_equal(evbuffer_get_length(out), before);
    assert_true(nghttp2_session_want_write(session));
    evbuffer_drain(out, before); /* drained: it goes */
    assert_int_equal(nghttp2_session_send(session), 0);
    assert_int_equal(evbuffer_get_length(out), 17);

    nghttp2_session_del(session);
    tg_h2_obj_release(&(tg_h2_obj_cache_t){ .n = 1000 }, &t->obj); /* cache full: freed */
    tg_sock_free(conn.sock);
    close(sv[1]);
    tg_sock_loop_free(loop);
    tg_loop_free(tl);
    event_base_free(base);
}

/* The data provider: deferred while empty, bytes as they come, EOF once
 * the end is marked and all is taken. */
static void test_data_read(void **state)
{
    thing_t *t = tg_h2_obj_alloc(&(tg_h2_obj_cache_t){ 0 }, sizeof(*t));
    uint32_t flags = 0;
    assert_int_equal(tg_h2_data_read(&t->obj, 100, &flags), NGHTTP2_ERR_DEFERRED);
    assert_true(t->obj.deferred);
    evbuffer_add(t->obj.buf[TG_H2_OUT], "0123456789", 10);
    flags = 0;
    assert_int_equal(tg_h2_data_read(&t->obj, 4, &flags), 4);
    assert_true(flags & NGHTTP2_DATA_FLAG_NO_COPY);
    assert_false(flags & NGHTTP2_DATA_FLAG_EOF);
    t->obj.out_end = 1;
    flags = 0;
    assert_int_equal(tg_h2_data_read(&t->obj, 4, &flags), 4); /* not all of it: no EOF yet */
    assert_false(flags & NGHTTP2_DATA_FLAG_EOF);
    flags = 0;
    assert_int_equal(tg_h2_data_read(&t->obj, 100, &flags), 10);
    assert_true(flags & NGHTTP2_DATA_FLAG_EOF);
    evbuffer_drain(t->obj.buf[TG_H2_OUT], 10);
    flags = 0;
    assert_int_equal(tg_h2_data_read(&t->obj, 100, &flags), 0); /* an empty last frame */
    assert_true(flags & NGHTTP2_DATA_FLAG_EOF);
    tg_h2_obj_release(&(tg_h2_obj_cache_t){ .n = 1000 }, &t->obj);
}

typedef struct seen {
    int types[8];
    int n;
    int stop_at; /* frame type that stops the feed */
} seen_t;

static int check_header(void *arg, const unsigned char *h, size_t len)
{
    seen_t *s = arg;
    if (s->n < 8)
        s->types[s->n++] = h[3];
    return h[3] == s->stop_at;
}

/* The receive loop shows each frame header before nghttp2 sees the frame
 * (the preface passes unseen), even when the input arrives byte by byte,
 * and stops before the frame the check refuses. */
static void test_feed_checks_headers(void **state)
{
    nghttp2_session_callbacks *cb;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session *session;
    assert_int_equal(nghttp2_session_server_new(&session, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    const unsigned char settings[9] = { 0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0 };
    const unsigned char ping[17] = { 0, 0, 8, NGHTTP2_PING, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8 };
    struct evbuffer *wire = evbuffer_new(), *in = evbuffer_new();
    evbuffer_add(wire, preface, 24);
    evbuffer_add(wire, settings, 9);
    evbuffer_add(wire, ping, 17);
    evbuffer_add(wire, settings, 9);
    seen_t seen = { .stop_at = -1 };
    tg_h2_feeder_t f = { .frame_left = 24, .check = check_header, .arg = &seen };
    unsigned char byte;
    while (evbuffer_remove(wire, &byte, 1) == 1) { /* one byte at a time */
        evbuffer_add(in, &byte, 1);
        assert_int_equal(tg_h2_feed(session, in, &f), 0);
    }
    assert_int_equal(evbuffer_get_length(in), 0);
    assert_int_equal(seen.n, 3);
    assert_int_equal(seen.types[0], NGHTTP2_SETTINGS);
    assert_int_equal(seen.types[1], NGHTTP2_PING);
    assert_int_equal(seen.types[2], NGHTTP2_SETTINGS);

    /* a refused frame stays in the input, unfed */
    seen = (seen_t){ .stop_at = NGHTTP2_PING };
    evbuffer_add(in, ping, 17);
    evbuffer_add(in, settings, 9);
    assert_int_equal(tg_h2_feed(session, in, &f), 0);
    assert_int_equal(seen.n, 1);
    assert_int_equal(evbuffer_get_length(in), 26);

    /* without a check: everything goes at once; what nghttp2 cannot take
     * (not a preface, for a fresh server session) is its error */
    nghttp2_session_del(session);
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    assert_int_equal(nghttp2_session_server_new(&session, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    tg_h2_feeder_t whole = { 0 };
    evbuffer_drain(in, evbuffer_get_length(in));
    evbuffer_add(in, preface, 24);
    evbuffer_add(in, settings, 9);
    assert_int_equal(tg_h2_feed(session, in, &whole), 0);
    assert_int_equal(evbuffer_get_length(in), 0);
    nghttp2_session_del(session);
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    assert_int_equal(nghttp2_session_server_new(&session, cb, NULL), 0);
    nghttp2_session_callbacks_del(cb);
    const char *http1 = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    evbuffer_add(in, http1, strlen(http1));
    assert_int_equal(tg_h2_feed(session, in, &whole), NGHTTP2_ERR_BAD_CLIENT_MAGIC);
    nghttp2_session_del(session);
    evbuffer_free(wire);
    evbuffer_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator),
        cmocka_unit_test(test_object_cache),
        cmocka_unit_test(test_send_callbacks),
        cmocka_unit_test(test_data_read),
        cmocka_unit_test(test_feed_checks_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
