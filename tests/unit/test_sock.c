/* Unit tests: a complete message written as one piece with its body by
 * reference (tg_sock_write_ref) over a real socketpair — all at once, a
 * remainder the loop writes when the peer reads, a head the socket does not
 * take whole, and order behind output already queued; each on a loop that
 * makes one syscall per read and write and on one that batches them through
 * an io_uring, and the batching itself: many sockets' reads and writes in
 * one submission each, a full socket's write left for its write edge, a
 * socket freed or paused by another's callback in the same batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/base/loop.h"
#include "proxy/sock.h"

typedef struct fx {
    int batched;
    struct event_base *base;
    tg_loop_t *loop;
    tg_sock_loop_t *socks;
    tg_sock_t *s;
    int peer;
} fx_t;

typedef struct released {
    int calls;
    const void *data;
} released_t;

static void on_done(const void *data, size_t len, void *arg)
{
    released_t *r = arg;
    (void)len;
    r->calls++;
    r->data = data;
}

static int timeouts; /* TG_SOCK_TIMEOUT deliveries seen */

static void on_sock(tg_sock_t *s, int events, void *arg)
{
    (void)s, (void)arg;
    if (events & TG_SOCK_TIMEOUT)
        timeouts++;
}

static int setup_mode(void **state, int batched)
{
    fx_t *f = calloc(1, sizeof(*f));
    f->batched = batched;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int small = 4096; /* the kernel doubles it; far below the bodies below */
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    f->base = event_base_new();
    f->loop = tg_loop_new(f->base);
    f->socks = tg_sock_loop_new(f->loop, batched);
    /* the machine's kernel must allow the ring: a skipped mode would pass unseen */
    assert_int_equal(tg_sock_loop_batched(f->socks, NULL), batched);
    f->s = tg_sock_new(f->socks, sv[0]);
    assert_non_null(f->s);
    tg_sock_set_cb(f->s, on_sock, f);
    f->peer = sv[1];
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_mode(state, 0);
}

static int setup_batched(void **state)
{
    return setup_mode(state, 1);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f->s != NULL)
        tg_sock_free(f->s);
    close(f->peer);
    tg_sock_loop_free(f->socks);
    tg_loop_free(f->loop);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Reads what the peer gets, running the loop between reads, until want
 * bytes came or the rounds are spent. */
static size_t drain_peer(fx_t *f, unsigned char *got, size_t want)
{
    size_t have = 0;
    for (int round = 0; round < 100000 && have < want; round++) {
        ssize_t r = read(f->peer, got + have, want - have);
        if (r > 0)
            have += (size_t)r;
        else if (r < 0 && errno != EAGAIN)
            break;
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
    }
    return have;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31 + seed + (i >> 8));
}

/* Small: one write took it all; released before returning; nothing
 * queued. Batched: queued (head copied, body by reference) and written,
 * then released, at the loop's turn. */
static void test_all_at_once(void **state)
{
    fx_t *f = *state;
    released_t rel = { 0 };
    static const char head[] = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n";
    assert_int_equal(tg_sock_write_ref(f->s, head, sizeof(head) - 1, "hello", 5, on_done, &rel), 0);
    if (f->batched) {
        assert_int_equal(rel.calls, 0);
        assert_int_equal(tg_sock_out_len(f->s), sizeof(head) - 1 + 5);
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
        uint64_t batches, ops;
        tg_sock_loop_ring_counts(f->socks, &batches, &ops);
        assert_int_equal(batches, 1);
        assert_int_equal(ops, 1);
    }
    assert_int_equal(rel.calls, 1);
    assert_int_equal(tg_sock_out_len(f->s), 0);
    char buf[128];
    ssize_t n = read(f->peer, buf, sizeof(buf));
    assert_int_equal(n, sizeof(head) - 1 + 5);
    assert_memory_equal(buf, head, sizeof(head) - 1);
    assert_memory_equal(buf + sizeof(head) - 1, "hello", 5);
    /* no body: the head alone, and done still runs once */
    assert_int_equal(tg_sock_write_ref(f->s, head, sizeof(head) - 1, NULL, 0, on_done, &rel), 0);
    if (f->batched)
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
    assert_int_equal(rel.calls, 2);
    assert_int_equal(read(f->peer, buf, sizeof(buf)), sizeof(head) - 1);
}

/* Larger than the socket takes: the rest waits by reference (not
 * released), the loop writes it as the peer reads, then it is released
 * once; the bytes arrive whole and in order. */
static void test_remainder_by_reference(void **state)
{
    fx_t *f = *state;
    size_t blen = 1 << 20;
    unsigned char *body = malloc(blen), *got = malloc(blen + 64);
    fill(body, blen, 7);
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, "HEAD", 4, body, blen, on_done, &rel), 0);
    assert_int_equal(rel.calls, 0);
    assert_true(tg_sock_out_len(f->s) > 0);
    if (f->batched) /* all of it waits for the turn */
        assert_int_equal(tg_sock_out_len(f->s), blen + 4);
    else
        assert_true(tg_sock_out_len(f->s) < blen + 4);
    assert_int_equal(drain_peer(f, got, blen + 4), blen + 4);
    assert_memory_equal(got, "HEAD", 4);
    assert_memory_equal(got + 4, body, blen);
    assert_int_equal(tg_sock_out_len(f->s), 0);
    assert_int_equal(rel.calls, 1);
    free(body);
    free(got);
}

/* A head the socket does not take whole: its rest is copied (the caller's
 * memory may go), the body follows it by reference. */
static void test_head_split(void **state)
{
    fx_t *f = *state;
    size_t hlen = 512 << 10, blen = 64 << 10;
    unsigned char *head = malloc(hlen), *body = malloc(blen), *got = malloc(hlen + blen);
    fill(head, hlen, 1);
    fill(body, blen, 2);
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, head, hlen, body, blen, on_done, &rel), 0);
    assert_int_equal(rel.calls, 0);
    unsigned char *copy = malloc(hlen);
    memcpy(copy, head, hlen);
    memset(head, 0, hlen); /* the caller's head is not read again */
    assert_int_equal(drain_peer(f, got, hlen + blen), hlen + blen);
    assert_memory_equal(got, copy, hlen);
    assert_memory_equal(got + hlen, body, blen);
    assert_int_equal(rel.calls, 1);
    assert_ptr_equal(rel.data, body);
    free(head), free(body), free(got), free(copy);
}

/* Output already queued goes first: the message waits behind it. */
static void test_behind_queued_output(void **state)
{
    fx_t *f = *state;
    evbuffer_add(tg_sock_out(f->s), "first-", 6);
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, "second-", 7, "third", 5, on_done, &rel), 0);
    assert_int_equal(rel.calls, 0); /* queued, not written */
    assert_int_equal(tg_sock_out_len(f->s), 18);
    unsigned char got[32];
    assert_int_equal(drain_peer(f, got, 18), 18);
    assert_memory_equal(got, "first-second-third", 18);
    assert_int_equal(rel.calls, 1);
}

/* A peer that has gone: the write fails, the bytes wait for the loop to
 * meet the error, and the body is still released exactly once. */
static void test_peer_gone(void **state)
{
    fx_t *f = *state;
    close(f->peer);
    f->peer = open("/dev/null", O_RDONLY); /* teardown closes something */
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, "h", 1, "b", 1, on_done, &rel), 0);
    for (int i = 0; i < 100 && rel.calls == 0; i++)
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
    tg_sock_free(f->s); /* frees what is queued */
    f->s = NULL;
    assert_int_equal(rel.calls, 1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop for about ms, writing a byte every step_ms if progress
 * (the peer drains it); returns at once when a timeout is seen. */
static void run_for(fx_t *f, uint64_t ms, uint64_t step_ms, int progress)
{
    uint64_t end = now_ms() + ms, next = 0;
    char sink[64];
    while (now_ms() < end && timeouts == 0) {
        if (progress && now_ms() >= next) {
            assert_int_equal(tg_sock_write_ref(f->s, "x", 1, NULL, 0, NULL, NULL), 0);
            next = now_ms() + step_ms;
        }
        while (read(f->peer, sink, sizeof(sink)) > 0)
            ;
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
        usleep(2000);
    }
}

/* A timeout measures time without progress: writes every 100 ms keep a
 * 1.5 s timeout from firing over 3 s (its timer, armed once, fires and
 * waits out the rest each time), and once they stop it fires. The
 * margins are wide (a step is a fifteenth of the timeout) so that a
 * loaded machine does not change the verdict. */
static void test_timeout_counts_from_progress(void **state)
{
    fx_t *f = *state;
    timeouts = 0;
    tg_sock_set_timeout(f->s, 1500);
    run_for(f, 3000, 100, 1);
    assert_int_equal(timeouts, 0);
    run_for(f, 30000, 0, 0);
    assert_int_equal(timeouts, 1);
    /* a shorter timeout takes effect at once, not after the longer one */
    timeouts = 0;
    tg_sock_set_timeout(f->s, 60000);
    tg_sock_set_timeout(f->s, 200);
    uint64_t t0 = now_ms();
    run_for(f, 30000, 0, 0);
    assert_int_equal(timeouts, 1);
    assert_true(now_ms() - t0 < 30000);
    tg_sock_set_timeout(f->s, 0);
}

/* Batched: whole messages wait for the turn in the ring's stage; a second
 * one on the socket, and output added by other means, go after the first,
 * in order. */
static void test_waiting_messages_keep_order(void **state)
{
    fx_t *f = *state;
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, "A-head.", 7, "A-body.", 7, on_done, &rel), 0);
    assert_int_equal(tg_sock_write_ref(f->s, "B-head.", 7, "B-body.", 7, on_done, &rel), 0);
    evbuffer_add(tg_sock_out(f->s), "C.", 2);
    assert_int_equal(rel.calls, 0);
    assert_int_equal(tg_sock_out_len(f->s), 30);
    unsigned char got[64] = { 0 };
    assert_int_equal(drain_peer(f, got, 30), 30);
    assert_memory_equal(got, "A-head.A-body.B-head.B-body.C.", 30);
    assert_int_equal(rel.calls, 2);
    assert_int_equal(tg_sock_out_len(f->s), 0);
}

/* Batched, no done: the caller's body may go once the call returns, so
 * it is copied; with done, it is read in place at the turn. */
static void test_waiting_body_without_done_is_copied(void **state)
{
    fx_t *f = *state;
    char body[32];
    memcpy(body, "original", 8);
    assert_int_equal(tg_sock_write_ref(f->s, "h:", 2, body, 8, NULL, NULL), 0);
    memcpy(body, "clobbers", 8);
    unsigned char got[16] = { 0 };
    assert_int_equal(drain_peer(f, got, 10), 10);
    assert_memory_equal(got, "h:original", 10);
}

/* A socket freed with a message still waiting: nothing is written, its
 * body is released once. */
static void test_waiting_message_of_freed_socket(void **state)
{
    fx_t *f = *state;
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, "h", 1, "b", 1, on_done, &rel), 0);
    tg_sock_free(f->s);
    f->s = NULL;
    assert_int_equal(rel.calls, 1);
    tg_loop_run(f->loop, EVLOOP_NONBLOCK);
    char c;
    assert_int_equal(read(f->peer, &c, 1), 0); /* closed, nothing sent */
    assert_int_equal(rel.calls, 1);
}

/* More messages in one turn than the ring has slots, and a head larger
 * than its stage: those go through the output buffer, all arrive. */
static void test_more_messages_than_slots(void **state)
{
    (void)state;
    enum { N = 80 };
    struct event_base *base = event_base_new();
    tg_loop_t *loop = tg_loop_new(base);
    tg_sock_loop_t *socks = tg_sock_loop_new(loop, 1);
    tg_sock_t *s[N];
    int peer[N];
    released_t rel = { 0 };
    static char big[40 * 1024];
    memset(big, 'h', sizeof(big));
    for (int i = 0; i < N; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        s[i] = tg_sock_new(socks, sv[0]);
        peer[i] = sv[1];
        char head[16];
        int len = snprintf(head, sizeof(head), "m%02d:", i);
        if (i == 3)
            assert_int_equal(tg_sock_write_ref(s[i], big, sizeof(big), "end", 3, on_done, &rel), 0);
        else
            assert_int_equal(tg_sock_write_ref(s[i], head, (size_t)len, "body", 4, on_done, &rel), 0);
    }
    for (int round = 0; round < 5; round++)
        tg_loop_run(loop, EVLOOP_NONBLOCK);
    assert_int_equal(rel.calls, N);
    for (int i = 0; i < N; i++) {
        static char got[sizeof(big) + 8];
        size_t want = i == 3 ? sizeof(big) + 3 : 8, have = 0;
        for (int tries = 0; tries < 1000 && have < want; tries++) {
            ssize_t r = read(peer[i], got + have, sizeof(got) - have);
            if (r > 0)
                have += (size_t)r;
            else
                tg_loop_run(loop, EVLOOP_NONBLOCK);
        }
        assert_int_equal(have, want);
        if (i == 3) {
            assert_memory_equal(got, big, sizeof(big));
            assert_memory_equal(got + sizeof(big), "end", 3);
        } else {
            char expect[16];
            snprintf(expect, sizeof(expect), "m%02d:body", i);
            assert_memory_equal(got, expect, 8);
        }
        tg_sock_free(s[i]);
        close(peer[i]);
    }
    tg_sock_loop_free(socks);
    tg_loop_free(loop);
    event_base_free(base);
}

/* A ring that stops working (its descriptor made /dev/null behind its
 * back: the next submission fails) is dropped for syscalls: the message
 * waiting for it still goes, reads still come, and the loop says why. */
static void test_ring_failure_falls_back(void **state)
{
    fx_t *f = *state;
    int ring_fd = -1;
    for (int fd = 3; fd < 1024 && ring_fd < 0; fd++) {
        char path[64], target[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = 0;
            if (strstr(target, "io_uring") != NULL)
                ring_fd = fd;
        }
    }
    assert_true(ring_fd >= 0);
    int null = open("/dev/null", O_RDWR);
    assert_true(dup2(null, ring_fd) == ring_fd);
    close(null);
    released_t rel = { 0 };
    assert_int_equal(tg_sock_write_ref(f->s, "h:", 2, "body", 4, on_done, &rel), 0);
    unsigned char got[16] = { 0 };
    assert_int_equal(drain_peer(f, got, 6), 6);
    assert_memory_equal(got, "h:body", 6);
    assert_int_equal(rel.calls, 1);
    int why = 0;
    assert_int_equal(tg_sock_loop_batched(f->socks, &why), 0);
    assert_true(why != 0);
    assert_int_equal(write(f->peer, "ping", 4), 4);
    for (int i = 0; i < 100 && tg_sock_in_len(f->s) < 4; i++)
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
    assert_int_equal(tg_sock_in_len(f->s), 4);
    assert_int_equal(tg_sock_write_ref(f->s, "again", 5, NULL, 0, NULL, NULL), 0);
    assert_int_equal(drain_peer(f, got, 5), 5);
    assert_memory_equal(got, "again", 5);
}

/* The read limit holds for the batch's reads too: no more than the
 * limit is taken from the kernel until the owner consumes; then the rest
 * comes, in order, and nothing is lost. */
static void test_read_limit(void **state)
{
    fx_t *f = *state;
    unsigned char sent[100], got[100];
    fill(sent, sizeof(sent), 3);
    tg_sock_set_read_limit(f->s, 10);
    assert_int_equal(write(f->peer, sent, sizeof(sent)), (ssize_t)sizeof(sent));
    size_t have = 0;
    for (int round = 0; round < 200 && have < sizeof(sent); round++) {
        tg_loop_run(f->loop, EVLOOP_NONBLOCK);
        size_t n = tg_sock_in_len(f->s);
        assert_true(n <= 10);
        if (n > 0) {
            evbuffer_remove(tg_sock_in(f->s), got + have, n);
            have += n;
            tg_sock_consumed(f->s);
        }
    }
    assert_int_equal(have, sizeof(sent));
    assert_memory_equal(got, sent, sizeof(sent));
}

/* ---- batching: many sockets of one loop ---- */

#define NPAIRS 8

typedef struct many {
    tg_sock_t *s[NPAIRS];
    int peer[NPAIRS];
    int reads[NPAIRS];      /* READ deliveries */
    char got[NPAIRS][64];   /* what each socket's input held */
    int first;              /* the first socket dispatched, or -1 */
    int mode;               /* 0: answer; 1: the first frees the rest; 2: the first pauses the rest */
} many_t;

static many_t *cur_many;

static void on_many(tg_sock_t *s, int events, void *arg)
{
    many_t *m = cur_many;
    int i = (int)(intptr_t)arg;
    if (!(events & TG_SOCK_READ))
        return;
    m->reads[i]++;
    struct evbuffer *in = tg_sock_in(s);
    size_t n = evbuffer_get_length(in);
    assert_true(n < sizeof(m->got[i]));
    evbuffer_remove(in, m->got[i], n);
    if (m->first < 0) {
        m->first = i;
        for (int j = 0; j < NPAIRS; j++) {
            if (j == i)
                continue;
            if (m->mode == 1) {
                tg_sock_free(m->s[j]);
                m->s[j] = NULL;
            } else if (m->mode == 2) {
                tg_sock_pause_read(m->s[j], 1);
            }
        }
    }
    char answer[32];
    int len = snprintf(answer, sizeof(answer), "pong-%d", i);
    assert_int_equal(tg_sock_write_ref(s, answer, (size_t)len, NULL, 0, NULL, NULL), 0);
}

static void many_run(int mode)
{
    struct event_base *base = event_base_new();
    tg_loop_t *loop = tg_loop_new(base);
    tg_sock_loop_t *socks = tg_sock_loop_new(loop, 1);
    assert_int_equal(tg_sock_loop_batched(socks, NULL), 1);
    many_t m = { .first = -1, .mode = mode };
    cur_many = &m;
    for (int i = 0; i < NPAIRS; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        char ping[16];
        int len = snprintf(ping, sizeof(ping), "ping-%d", i);
        assert_int_equal(write(sv[1], ping, (size_t)len), len);
        m.s[i] = tg_sock_new(socks, sv[0]);
        assert_non_null(m.s[i]);
        tg_sock_set_cb(m.s[i], on_many, (void *)(intptr_t)i);
        m.peer[i] = sv[1];
    }
    for (int round = 0; round < 3; round++)
        tg_loop_run(loop, EVLOOP_NONBLOCK);
    uint64_t batches, ops;
    tg_sock_loop_ring_counts(socks, &batches, &ops);
    for (int i = 0; i < NPAIRS; i++) {
        char want[16], answer[32] = { 0 };
        snprintf(want, sizeof(want), "ping-%d", i);
        ssize_t n = read(m.peer[i], answer, sizeof(answer) - 1);
        if (mode == 1 && i != m.first) { /* freed before its turn: nothing delivered, its peer sees the close */
            assert_int_equal(m.reads[i], 0);
            assert_int_equal(n, 0);
            continue;
        }
        /* every ping read once, whole, and answered (a paused socket's bytes, read
         * in the batch before the pause, are delivered: nothing is held back) */
        assert_int_equal(m.reads[i], 1);
        assert_string_equal(m.got[i], want);
        char pong[16];
        snprintf(pong, sizeof(pong), "pong-%d", i);
        assert_true(n > 0);
        assert_string_equal(answer, pong);
    }
    /* all the first reads in one submission; all the answers in another */
    assert_int_equal(batches, 2);
    assert_int_equal(ops, mode == 1 ? NPAIRS + 1 : 2 * NPAIRS);
    for (int i = 0; i < NPAIRS; i++) {
        if (m.s[i] != NULL)
            tg_sock_free(m.s[i]);
        close(m.peer[i]);
    }
    tg_sock_loop_free(socks);
    tg_loop_free(loop);
    event_base_free(base);
}

static void test_batch_reads_and_writes(void **state)
{
    (void)state;
    many_run(0);
}

static void test_batch_freed_by_another(void **state)
{
    (void)state;
    many_run(1);
}

static void test_batch_paused_by_another(void **state)
{
    (void)state;
    many_run(2);
}

/* Not asked for: no ring, and the reason says so. */
static void test_unbatched_loop(void **state)
{
    fx_t *f = *state;
    int why = -1;
    assert_int_equal(tg_sock_loop_batched(f->socks, &why), 0);
    assert_int_equal(why, 0);
}

/* The same test on a batched loop, under its own name. */
#define BATCHED(f) { #f "_batched", f, setup_batched, teardown, NULL }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_all_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remainder_by_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_behind_queued_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_counts_from_progress, setup, teardown),
        BATCHED(test_all_at_once),
        BATCHED(test_remainder_by_reference),
        BATCHED(test_head_split),
        BATCHED(test_behind_queued_output),
        BATCHED(test_peer_gone),
        BATCHED(test_timeout_counts_from_progress),
        BATCHED(test_waiting_messages_keep_order),
        BATCHED(test_waiting_body_without_done_is_copied),
        BATCHED(test_waiting_message_of_freed_socket),
        cmocka_unit_test(test_more_messages_than_slots),
        BATCHED(test_ring_failure_falls_back),
        cmocka_unit_test_setup_teardown(test_read_limit, setup, teardown),
        BATCHED(test_read_limit),
        cmocka_unit_test(test_batch_reads_and_writes),
        cmocka_unit_test(test_batch_freed_by_another),
        cmocka_unit_test(test_batch_paused_by_another),
        cmocka_unit_test_setup_teardown(test_unbatched_loop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
