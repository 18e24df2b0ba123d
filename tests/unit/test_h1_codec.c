/* Unit tests: HTTP/1 framing — request/response heads, the RFC 9112
 * rejections, and body decoding across arbitrary splits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/h1_codec.h"

typedef struct fx {
    tg_arena_t arena;
    struct evbuffer *in, *out;
    tg_h1_reader_t r;
    tg_request_t req;
    tg_response_t resp;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    tg_arena_init(&f->arena);
    f->in = evbuffer_new();
    f->out = evbuffer_new();
    tg_h1_reader_init(&f->r, TG_H1_REQUEST);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    evbuffer_free(f->in);
    evbuffer_free(f->out);
    tg_arena_free(&f->arena);
    free(f);
    return 0;
}

static tg_h1_result_t parse_req(fx_t *f, const char *raw, size_t max_header)
{
    evbuffer_add(f->in, raw, strlen(raw));
    return tg_h1_read_request_head(&f->r, f->in, max_header, &f->arena, &f->req);
}

static void expect_reject(const char *raw, int status)
{
    void *st;
    setup(&st);
    fx_t *f = st;
    tg_h1_result_t r = parse_req(f, raw, 65536);
    if (r != TG_H1_ERROR || f->r.error_status != status)
        fprintf(stderr, "request %s: result %d status %d (%s), wanted %d\n", raw, r, f->r.error_status,
                f->r.error_msg ? f->r.error_msg : "", status);
    assert_int_equal(r, TG_H1_ERROR);
    assert_int_equal(f->r.error_status, status);
    teardown(&st);
}

static void test_simple_get(void **state)
{
    fx_t *f = *state;
    assert_int_equal(parse_req(f, "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Thing:  v a l  \r\n\r\nNEXT", 65536),
                     TG_H1_OK);
    assert_string_equal(f->req.method, "GET");
    assert_string_equal(f->req.target, "/a/b?x=1");
    assert_int_equal(f->req.path_len, 4);
    assert_string_equal(f->req.authority, "example.com");
    assert_int_equal(f->req.version, 11);
    assert_true(f->req.keep_alive);
    assert_int_equal(f->req.body, TG_BODY_NONE);
    assert_int_equal(f->req.headers.n, 2);
    assert_string_equal(tg_headers_get(&f->req.headers, "x-thing")->value, "v a l");
    /* the next pipelined request stays in the buffer */
    assert_int_equal(evbuffer_get_length(f->in), 4);
}

static void test_incremental_head(void **state)
{
    fx_t *f = *state;
    const char *raw = "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    for (size_t i = 0; i < strlen(raw) - 5; i++) {
        evbuffer_add(f->in, raw + i, 1);
        tg_h1_result_t r = tg_h1_read_request_head(&f->r, f->in, 65536, &f->arena, &f->req);
        if (i + 1 < strlen(raw) - 5)
            assert_int_equal(r, TG_H1_AGAIN);
        else
            assert_int_equal(r, TG_H1_OK);
    }
    assert_int_equal(f->req.body, TG_BODY_LENGTH);
    assert_int_equal(f->req.content_length, 5);
    evbuffer_add(f->in, "helloGET", 8);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 0, &fin), 5);
    assert_true(fin);
    assert_int_equal(evbuffer_get_length(f->in), 3);
}

static void test_chunked_body_split(void **state)
{
    const char *body = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET";
    for (size_t split = 1; split < strlen(body); split++) {
        void *st;
        setup(&st);
        fx_t *f = st;
        assert_int_equal(parse_req(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 65536), TG_H1_OK);
        assert_int_equal(f->req.body, TG_BODY_CHUNKED);
        int fin = 0;
        evbuffer_add(f->in, body, split);
        assert_true(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 0, &fin) >= 0);
        evbuffer_add(f->in, body + split, strlen(body) - split);
        if (!fin)
            assert_true(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 0, &fin) >= 0);
        assert_true(fin);
        char got[32] = { 0 };
        evbuffer_remove(f->out, got, sizeof(got) - 1);
        assert_string_equal(got, "hello world");
        assert_int_equal(evbuffer_get_length(f->in), 3); /* "GET" of the next request */
        teardown(&st);
    }
}

/* Regression: an evbuffer may hold empty chains (a reservation committed
 * with a zero-length second vector); they must not reach http-parser,
 * for which a zero length means EOF. */
static void test_chunked_empty_chain(void **state)
{
    fx_t *f = *state;
    assert_int_equal(parse_req(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 65536), TG_H1_OK);
    const char *part1 = "5\r\nhel", *part2 = "lo\r\n0\r\n\r\n";
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(f->in, 8192, v, 2);
    assert_true(n >= 1);
    memcpy(v[0].iov_base, part1, strlen(part1));
    v[0].iov_len = strlen(part1);
    if (n > 1)
        v[1].iov_len = 0;
    assert_int_equal(evbuffer_commit_space(f->in, v, n), 0);
    evbuffer_add_reference(f->in, "", 0, NULL, NULL);
    evbuffer_add(f->in, part2, strlen(part2));
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 0, &fin), 5);
    assert_true(fin);
}

static void test_chunked_bad_size(void **state)
{
    fx_t *f = *state;
    assert_int_equal(parse_req(f, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 65536), TG_H1_OK);
    evbuffer_add(f->in, "zz\r\nhello\r\n", 11);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 0, &fin), -1);
    assert_int_equal(f->r.error_status, 400);
}

static void test_body_limits(void **state)
{
    fx_t *f = *state;
    f->r.max_body = 10;
    assert_int_equal(parse_req(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 65536), TG_H1_ERROR);
    assert_int_equal(f->r.error_status, 413);
    void *st;
    setup(&st);
    fx_t *g = st;
    g->r.max_body = 10;
    assert_int_equal(parse_req(g, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 65536), TG_H1_OK);
    evbuffer_add(g->in, "8\r\n12345678\r\n8\r\n12345678\r\n", 26);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&g->r, g->in, g->out, 1 << 20, 0, &fin), -1);
    assert_int_equal(g->r.error_status, 413);
    teardown(&st);
}

static void test_truncated_body(void **state)
{
    fx_t *f = *state;
    assert_int_equal(parse_req(f, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc", 65536), TG_H1_OK);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 1, &fin), -1);
}

static void test_rejections(void **state)
{
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n  folded\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\rX-A: a\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\nHost: h\n\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nBad Name: a\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nBad@Name: a\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\n\r\n", 400);                             /* no Host */
    expect_reject("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);        /* two Hosts */
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
    expect_reject("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    expect_reject("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
    expect_reject("GET nothing HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_reject("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 405);
    expect_reject("GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n", 417);
    expect_reject(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_reject("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_nul_in_head(void **state)
{
    fx_t *f = *state;
    static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    evbuffer_add(f->in, raw, sizeof(raw) - 1);
    assert_int_equal(tg_h1_read_request_head(&f->r, f->in, 65536, &f->arena, &f->req), TG_H1_ERROR);
    assert_int_equal(f->r.error_status, 400);
}

static void test_header_too_large(void **state)
{
    fx_t *f = *state;
    char big[3000];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\nX-Big: %02000d\r\n\r\n", 0);
    assert_int_equal(parse_req(f, big, 1024), TG_H1_ERROR);
    assert_int_equal(f->r.error_status, 431);
}

static void test_absolute_form_and_http10(void **state)
{
    fx_t *f = *state;
    assert_int_equal(parse_req(f, "GET http://example.org:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n", 65536), TG_H1_OK);
    assert_string_equal(f->req.target, "/p?q");
    assert_string_equal(f->req.authority, "example.org:8080");
    assert_string_equal(tg_headers_get(&f->req.headers, "host")->value, "example.org:8080");
    void *st;
    setup(&st);
    fx_t *g = st;
    assert_int_equal(parse_req(g, "\r\nGET / HTTP/1.0\r\n\r\n", 65536), TG_H1_OK); /* leading CRLF tolerated */
    assert_int_equal(g->req.version, 10);
    assert_false(g->req.keep_alive);
    assert_null(g->req.authority);
    teardown(&st);
}

static void test_expect_and_upgrade(void **state)
{
    fx_t *f = *state;
    assert_int_equal(parse_req(f, "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", 65536), TG_H1_OK);
    assert_true(f->req.expect_continue);
    void *st;
    setup(&st);
    fx_t *g = st;
    assert_int_equal(parse_req(g, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 65536), TG_H1_OK);
    assert_true(g->req.upgrade);
    teardown(&st);
}

static void test_response_heads(void **state)
{
    fx_t *f = *state;
    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    evbuffer_add_printf(f->in, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 0), TG_H1_OK);
    assert_int_equal(f->resp.status, 200);
    assert_int_equal(f->resp.body, TG_BODY_LENGTH);
    assert_true(f->resp.keep_alive);

    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    evbuffer_drain(f->in, evbuffer_get_length(f->in));
    memset(&f->resp, 0, sizeof(f->resp));
    evbuffer_add_printf(f->in, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close");
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 0), TG_H1_OK);
    assert_int_equal(f->resp.body, TG_BODY_EOF);
    assert_false(f->resp.keep_alive);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 0, &fin), 11);
    assert_false(fin);
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 1, &fin), 0);
    assert_true(fin);

    /* HEAD: Content-Length describes a body that is not there */
    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    memset(&f->resp, 0, sizeof(f->resp));
    evbuffer_add_printf(f->in, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 1), TG_H1_OK);
    assert_int_equal(f->resp.body, TG_BODY_NONE);
    assert_int_equal(f->resp.content_length, 1234);

    /* 101 switches to a tunnel; 204 has no body */
    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    memset(&f->resp, 0, sizeof(f->resp));
    evbuffer_add_printf(f->in, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 0), TG_H1_OK);
    assert_int_equal(f->resp.body, TG_BODY_TUNNEL);

    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    memset(&f->resp, 0, sizeof(f->resp));
    evbuffer_add_printf(f->in, "HTTP/1.1 garbage\r\n\r\n");
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 0), TG_H1_ERROR);
}

static void test_write_head_and_chunks(void **state)
{
    fx_t *f = *state;
    tg_headers_t h = { 0 };
    tg_headers_add(&h, &f->arena, "a", 1, "1", 1);
    tg_headers_add(&h, &f->arena, "bb", 2, "two", 3);
    assert_int_equal(tg_h1_write_head(f->out, "HTTP/1.1 200 OK", &h, "content-length: 0\r\n"), 0);
    char buf[128] = { 0 };
    evbuffer_remove(f->out, buf, sizeof(buf) - 1);
    assert_string_equal(buf, "HTTP/1.1 200 OK\r\na: 1\r\nbb: two\r\ncontent-length: 0\r\n\r\n");
    struct evbuffer *data = evbuffer_new();
    evbuffer_add(data, "0123456789abcdefX", 17);
    tg_h1_write_body(f->out, TG_BODY_CHUNKED, data);
    tg_h1_write_end(f->out, TG_BODY_CHUNKED, NULL);
    memset(buf, 0, sizeof(buf));
    evbuffer_remove(f->out, buf, sizeof(buf) - 1);
    assert_string_equal(buf, "11\r\n0123456789abcdefX\r\n0\r\n\r\n");
    assert_int_equal(evbuffer_get_length(data), 0);
    evbuffer_free(data);
}

/* Reads a chunked response with a trailer section into f->resp.trailers. */
static int read_trailers(fx_t *f, const char *raw)
{
    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    memset(&f->resp, 0, sizeof(f->resp));
    evbuffer_drain(f->in, evbuffer_get_length(f->in));
    evbuffer_add(f->in, raw, strlen(raw));
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 0), TG_H1_OK);
    f->r.trailers = &f->resp.trailers;
    int fin = 0;
    for (int i = 0; i < 8 && !fin; i++) { /* the reader stops at chunk boundaries */
        if (tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 1, &fin) < 0)
            return -1;
    }
    evbuffer_drain(f->out, evbuffer_get_length(f->out));
    return fin;
}

static void test_chunked_trailers(void **state)
{
    fx_t *f = *state;
    /* kept (names and values copied), framing fields dropped */
    assert_int_equal(read_trailers(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "3\r\nabc\r\n0\r\nX-Sum: 42\r\nContent-Length: 9\r\nGrpc-Status: 0\r\n\r\n"),
                     1);
    assert_int_equal(f->resp.trailers.n, 2);
    assert_string_equal(f->resp.trailers.v[0].name, "X-Sum");
    assert_string_equal(f->resp.trailers.v[0].value, "42");
    assert_string_equal(f->resp.trailers.v[1].name, "Grpc-Status");
    assert_string_equal(f->resp.trailers.v[1].value, "0");
    /* a control character in a trailer value is refused, as in a head */
    assert_int_equal(read_trailers(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      "0\r\nX-Bad: a\x01b\r\n\r\n"),
                     -1);
    /* without somewhere to keep them, trailers are read and dropped */
    tg_h1_reader_init(&f->r, TG_H1_RESPONSE);
    memset(&f->resp, 0, sizeof(f->resp));
    evbuffer_drain(f->in, evbuffer_get_length(f->in));
    evbuffer_add_printf(f->in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n\r\n");
    assert_int_equal(tg_h1_read_response_head(&f->r, f->in, 65536, &f->arena, &f->resp, 0), TG_H1_OK);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&f->r, f->in, f->out, 1 << 20, 1, &fin), 0);
    assert_true(fin);
    assert_int_equal(f->resp.trailers.n, 0);
}

static void test_write_end_with_trailers(void **state)
{
    fx_t *f = *state;
    tg_headers_t t = { 0 };
    tg_headers_add(&t, &f->arena, "grpc-status", 11, "0", 1);
    tg_headers_add(&t, &f->arena, "x-why", 5, "done", 4);
    assert_int_equal(tg_h1_write_end(f->out, TG_BODY_CHUNKED, &t), 0);
    char buf[128] = { 0 };
    evbuffer_remove(f->out, buf, sizeof(buf) - 1);
    assert_string_equal(buf, "0\r\ngrpc-status: 0\r\nx-why: done\r\n\r\n");
    /* a length-delimited body has no place for them */
    assert_int_equal(tg_h1_write_end(f->out, TG_BODY_LENGTH, &t), 0);
    assert_int_equal(evbuffer_get_length(f->out), 0);
}

/* The fields the parser read are known safe (the checked prefix) and are
 * not checked again; whatever changes the list later is. Each way of
 * changing it puts an unsafe field where the prefix was, and the writer
 * still refuses it. */
static int write_ok(fx_t *f, const tg_headers_t *h)
{
    int r = tg_h1_write_head(f->out, "HTTP/1.1 200 OK", h, NULL);
    evbuffer_drain(f->out, evbuffer_get_length(f->out));
    return r;
}

static void test_checked_prefix(void **state)
{
    fx_t *f = *state;
    const char *raw = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nA: 3\r\n\r\n";
    assert_int_equal(parse_req(f, raw, 65536), TG_H1_OK);
    tg_headers_t *h = &f->req.headers, saved = *h;
    tg_header_t fields[4]; /* the changes below compact the array in place */
    memcpy(fields, h->v, sizeof(fields));
#define RESTORE() (*h = saved, memcpy(h->v, fields, sizeof(fields)))
    assert_int_equal(h->n, 4);
    assert_int_equal(h->checked, 4);
    assert_int_equal(write_ok(f, h), 0);
    const char *bad = "x\r\nInjected: 1";
    /* set: the old field goes, the new one is after the prefix */
    assert_int_equal(tg_headers_set(h, &f->arena, "b", bad), 0);
    assert_int_equal(h->checked, 3);
    assert_int_equal(write_ok(f, h), TG_HTTP_UNSAFE_FIELD);
    /* removal moves a later, unchecked field into the prefix's old place */
    RESTORE();
    assert_int_equal(tg_headers_add(h, &f->arena, "c", 1, bad, strlen(bad)), 0);
    tg_headers_remove(h, "a");
    assert_int_equal(h->n, 3);
    assert_int_equal(h->checked, 2);
    assert_int_equal(write_ok(f, h), TG_HTTP_UNSAFE_FIELD);
    /* a join takes an unchecked line into a checked one's value */
    RESTORE();
    assert_int_equal(tg_headers_add(h, &f->arena, "a", 1, bad, strlen(bad)), 0);
    assert_int_equal(tg_headers_join(h, &f->arena, "a"), 0);
    assert_int_equal(h->n, 3);
    assert_true(h->checked <= 1); /* the joined "a" is field 1 */
    assert_int_equal(write_ok(f, h), TG_HTTP_UNSAFE_FIELD);
    /* hop-by-hop stripping compacts the same way */
    RESTORE();
    assert_int_equal(tg_headers_add(h, &f->arena, "d", 1, bad, strlen(bad)), 0);
    h->v[1] = (tg_header_t){ "te", 2, "trailers", 8 }; /* stands in for a parsed TE */
    tg_headers_strip_hop_by_hop(h);
    assert_int_equal(h->n, 4);
    assert_int_equal(h->checked, 3);
    assert_int_equal(write_ok(f, h), TG_HTTP_UNSAFE_FIELD);
    /* a list cut short by hand, then added to */
    RESTORE();
    h->n = 1;
    assert_int_equal(tg_headers_add(h, &f->arena, "e", 1, bad, strlen(bad)), 0);
    assert_int_equal(h->checked, 1);
    assert_int_equal(write_ok(f, h), TG_HTTP_UNSAFE_FIELD);
    /* a field safe as made joins the prefix only when all before it are in it */
    RESTORE();
    assert_int_equal(tg_headers_set_checked(h, &f->arena, "b", "ours"), 0);
    assert_int_equal(h->n, 4);
    assert_int_equal(h->checked, 4);
    assert_true(tg_headers_in_checked(h, &h->v[3]));
    assert_int_equal(tg_headers_add(h, &f->arena, "g", 1, bad, strlen(bad)), 0);
    assert_int_equal(tg_headers_add_checked(h, &f->arena, "age", 3, "1", 1), 0);
    assert_int_equal(h->checked, 4);
    assert_false(tg_headers_in_checked(h, &h->v[5]));
    assert_int_equal(write_ok(f, h), TG_HTTP_UNSAFE_FIELD);
    /* unchanged, the prefix holds and the head is written */
    RESTORE();
    assert_int_equal(write_ok(f, h), 0);
#undef RESTORE
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chunked_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_end_with_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_simple_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incremental_head, setup, teardown),
        cmocka_unit_test(test_chunked_body_split),
        cmocka_unit_test_setup_teardown(test_chunked_empty_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_bad_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_body, setup, teardown),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test_setup_teardown(test_nul_in_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute_form_and_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_and_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_heads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_head_and_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checked_prefix, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
