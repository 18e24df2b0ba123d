/*
 * proxy/sock.c — see sock.h.
 *
 * Every entry into a socket (I/O readiness, its timer, the loop's turn)
 * goes through dispatch_begin/dispatch_end, which keep the memory
 * alive while user callbacks run; tg_sock_free() during a dispatch only
 * closes the fd and marks the socket dead.
 *
 * TLS (tg_sock_start_tls) sits between the fd and the two evbuffers: the
 * input holds decrypted bytes and the output plaintext, so codecs do not
 * know TLS is there. OpenSSL reads and writes the fd through a small BIO
 * of ours that keeps the same edge-triggered bookkeeping as plain reads
 * (a short read means the socket is drained: no EAGAIN round trip), and
 * each SSL_write is given up to one full record of plaintext, coalesced
 * from the output's chains, so a small response is one record and one
 * write(). The handshake runs first; TG_SOCK_CONNECTED reports its end.
 */
#include "proxy/sock.h"
#include "proxy/base/clock.h"
#include "proxy/base/log.h"
#include "proxy/base/loop.h"
#include "proxy/base/slab.h"

#include <errno.h>
#include <liburing.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Reads start at 16 KiB (a request or a small response fits) and grow to
 * 64 KiB while reads keep filling the space (bulk bodies). */
#define READ_SMALL (16 * 1024)
#define READ_BIG (64 * 1024)
#define FIRST_READ 4096 /* into an empty input buffer: through the stack (do_read) */
#define WRITE_IOVEC 64  /* pieces of the output buffer one write takes at most */
#define TLS_RECORD_SPACE (16 * 1024 + 256) /* one TLS record's plaintext, and a little */

struct tg_sock {
    tg_sock_loop_t *loop;
    struct tg_sock *next_dead; /* freed during an epoll batch: released after it */
    struct sock_timer *timer;  /* made on first use: most sockets never set a timeout */
    struct evbuffer *in, *out; /* both NULL while parked (tg_sock_park) */
    tg_sock_cb cb;
    void *arg;
    TAILQ_ENTRY(tg_sock) qlink;
    SSL *ssl;                  /* NULL: plain TCP */
    unsigned long tls_err;     /* the OpenSSL error that failed the connection */
    uint32_t read_limit, write_lowat, timeout_ms;
    int fd;
    int err;
    int busy;
    unsigned handshaking : 1, read_wants_write : 1, write_wants_read : 1, eof_unclean : 1;
    unsigned readable : 1, writable : 1, connecting : 1, eof : 1, dead : 1, paused : 1, at_limit : 1,
        shut_wr : 1, wr_closed : 1, short_read : 1, queued : 1, q_read : 1, q_write : 1, timer_on : 1, bulk : 1, rdhup : 1,
        want_park : 1, pre_wrote : 1;
    uint8_t pre_events; /* what batched I/O (ring) found, for the next dispatch */
    uint8_t pend;       /* 1 + its whole message's slot in the ring (struct pend), or 0 */
};

/* Empty buffers of parked sockets, kept for the next socket that needs
 * them (so that parking costs no allocation per request), up to this many
 * per loop; past it they are freed. */
#define SPARE_BUFFERS 256

struct tg_sock_loop {
    tg_loop_t *loop;           /* the thread's timers and turns (base/loop.h) */
    struct event_base *base;
    tg_slab_t *socks;          /* where the loop's sockets live */
    TAILQ_HEAD(, tg_sock) queue;
    struct evbuffer *spare[SPARE_BUFFERS];
    unsigned n_spare;
    struct evbuffer *scratch;  /* stands in for a buffer that could not be had */
    /* Sockets are registered (edge-triggered) in the loop's own epoll set,
     * whose descriptor the libevent base watches: a socket needs no
     * libevent event (128 bytes, plus libevent's per-descriptor map entry),
     * and a wake-up dispatches straight to the socket. */
    int epfd;
    struct event ep_ev;
    int in_batch;                    /* dispatching a batch: frees wait for its end */
    tg_sock_t *dead;                 /* freed during the batch */
    struct ring *ring;               /* NULL: one syscall per read and write */
    /* read by other threads (metrics), written by the loop's */
    _Atomic int batched;             /* ring != NULL */
    _Atomic int ring_err;            /* why there is no ring (an errno; 0: not asked for) */
    _Atomic uint64_t ring_batches, ring_ops; /* submissions and the operations they carried */
};

#define RING_BATCH 64
#define RING_IOV 16
#define RING_STAGE (32 * 1024) /* heads (and bodies to copy) of the turn's whole messages */

/* A whole message (tg_sock_write_ref) waiting for the turn's writes: its
 * head (and a body the caller keeps no longer) copied into the ring's
 * stage, its body otherwise by reference. It precedes anything in the
 * socket's output, which is empty while it waits: whatever would add to
 * the output, or write it, first moves it there (spill). None is left
 * once the turn is over, so the stage is reused turn by turn. */
struct pend {
    tg_sock_t *s;                 /* NULL: the slot is free */
    const char *head, *body;
    size_t hlen, blen;
    void (*done)(const void *data, size_t len, void *arg);
    void *arg;
};

struct ring {
    struct io_uring u;
    tg_sock_t *who[RING_BATCH];
    uint32_t want[RING_BATCH];
    struct msghdr m[RING_BATCH];
    struct iovec v[RING_BATCH][RING_IOV];
    struct pend pend[RING_BATCH];
    unsigned n_pend;              /* slots used this turn (freed ones are not reused before the turn ends) */
    size_t staged;                /* bytes of stage used */
    char stage[RING_STAGE];
    char rbuf[RING_BATCH][FIRST_READ];
};

/* A socket's timeout (a timer of the loop's, base/loop.h), armed lazily:
 * progress only moves due_us, and a timer that fires before it is set
 * again for what is left. A request's several reads and writes cost one
 * arming per timeout period, not a cancel and a set each (the set, when it
 * took the head of its FIFO, also re-armed the libevent timer). */
struct sock_timer {
    tg_timer_t t;
    tg_sock_t *s;
    uint64_t due_us; /* monotonic: when no progress since means a timeout */
};

static size_t in_len(const tg_sock_t *s)
{
    return s->in ? evbuffer_get_length(s->in) : 0;
}

static size_t pend_len(const tg_sock_t *s);

static size_t out_len(const tg_sock_t *s)
{
    return (s->out ? evbuffer_get_length(s->out) : 0) + (s->pend ? pend_len(s) : 0);
}

static void buf_give(tg_sock_loop_t *l, struct evbuffer *b)
{
    if (l->n_spare < SPARE_BUFFERS)
        l->spare[l->n_spare++] = b;
    else
        evbuffer_free(b);
}

/* Gives a parked socket its buffers back. 0, or -1 (out of memory). */
static int unpark(tg_sock_t *s)
{
    if (s->in != NULL)
        return 0;
    tg_sock_loop_t *l = s->loop;
    s->in = l->n_spare ? l->spare[--l->n_spare] : evbuffer_new();
    s->out = l->n_spare ? l->spare[--l->n_spare] : evbuffer_new();
    if (s->in == NULL || s->out == NULL) {
        if (s->in)
            buf_give(l, s->in);
        if (s->out)
            buf_give(l, s->out);
        s->in = s->out = NULL;
        return -1;
    }
    return 0;
}

/* Parks the socket if its owner asked for it and both buffers are empty. */
static void try_park(tg_sock_t *s)
{
    if (!s->want_park || s->in == NULL || s->pend || evbuffer_get_length(s->in) || evbuffer_get_length(s->out))
        return;
    buf_give(s->loop, s->in);
    buf_give(s->loop, s->out);
    s->in = s->out = NULL;
}

static void pend_end(tg_sock_t *s);

static void release(tg_sock_t *s)
{
    if (s->pend) /* a message that never went: its body released */
        pend_end(s);
    if (s->ssl != NULL) {
        /* OpenSSL drops the session of a connection freed without a TLS
         * shutdown from the server's cache (as if it had been cut by an
         * attack), so session-ID resumption never worked: a connection whose
         * handshake completed and that met no TLS error ended normally,
         * however its TCP close came (nginx does the same). */
        if (!s->handshaking && s->tls_err == 0)
            SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(s->ssl);
    }
    if (s->in != NULL) { /* emptied, they serve the next connection */
        evbuffer_drain(s->in, evbuffer_get_length(s->in));
        evbuffer_drain(s->out, evbuffer_get_length(s->out));
        buf_give(s->loop, s->in);
        buf_give(s->loop, s->out);
    }
    if (s->timer != NULL) {
        tg_timer_cancel(&s->timer->t);
        free(s->timer);
    }
    tg_slab_free(s->loop->socks, s);
}

static void dispatch_begin(tg_sock_t *s)
{
    s->busy++;
}

/* Releases s now, or at the end of the epoll batch being dispatched
 * (a later entry of the batch may still name it). */
static void release_soon(tg_sock_t *s)
{
    tg_sock_loop_t *l = s->loop;
    if (l->in_batch) {
        s->next_dead = l->dead;
        l->dead = s;
    } else {
        release(s);
    }
}

/* Returns 1 if s is gone. */
static int dispatch_end(tg_sock_t *s)
{
    if (--s->busy == 0 && s->dead) {
        release_soon(s);
        return 1;
    }
    return s->dead;
}

static void deliver(tg_sock_t *s, int events)
{
    if (events && !s->dead && s->cb)
        s->cb(s, events, s->arg);
}

static void on_timer(tg_timer_t *t);

static void touch_timer(tg_sock_t *s)
{
    if (s->timeout_ms == 0)
        return;
    if (s->timer == NULL) {
        if ((s->timer = calloc(1, sizeof(*s->timer))) == NULL) {
            s->timer_on = 0; /* out of memory: no timeout rather than none that fires wrongly */
            return;
        }
        s->timer->t.fn = on_timer;
        s->timer->s = s;
    }
    uint64_t due = tg_loop_now_us(s->loop->loop) + (uint64_t)s->timeout_ms * 1000;
    s->timer->due_us = due;
    if (s->timer_on && s->timer->t.deadline_us <= due)
        return; /* it fires no later than due, and then waits out the rest */
    s->timer_on = tg_timer_set(s->loop->loop, &s->timer->t, s->timeout_ms) == 0;
}

static void wake(tg_sock_loop_t *l)
{
    tg_loop_wake(l->loop);
}

static void enqueue(tg_sock_t *s)
{
    tg_sock_loop_t *l = s->loop;
    if (!s->queued) {
        s->queued = 1;
        TAILQ_INSERT_TAIL(&l->queue, s, qlink);
    }
    wake(l);
}

static void dequeue(tg_sock_t *s)
{
    if (s->queued) {
        TAILQ_REMOVE(&s->loop->queue, s, qlink);
        s->queued = s->q_read = s->q_write = 0;
    }
}

/* ---- TLS ---- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *b, char *buf, int len)
{
    tg_sock_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!s->readable) {
        BIO_set_retry_read(b);
        return -1;
    }
    for (;;) {
        ssize_t r = read(s->fd, buf, (size_t)len);
        if (r > 0) {
            if (r < len && !s->rdhup) {
                s->readable = 0; /* drained: the next edge brings more (or see tg_sock_need_more) */
                s->short_read = 1;
            }
            return (int)r;
        }
        if (r == 0) {
            s->readable = 0;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->readable = 0;
            s->short_read = 0;
            BIO_set_retry_read(b);
        } else {
            s->err = errno;
        }
        return -1;
    }
}

static int bio_write(BIO *b, const char *buf, int len)
{
    tg_sock_t *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!s->writable) {
        BIO_set_retry_write(b);
        return -1;
    }
    for (;;) {
        ssize_t r = send(s->fd, buf, (size_t)len, MSG_NOSIGNAL);
        if (r >= 0) {
            if (r < len)
                s->writable = 0;
            return (int)r;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            s->writable = 0;
            BIO_set_retry_write(b);
        } else {
            s->err = errno;
        }
        return -1;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tollgate socket");
    if (m == NULL || BIO_meth_set_read(m, bio_read) != 1 || BIO_meth_set_write(m, bio_write) != 1 ||
        BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    bio_method = m;
}

/* Records why TLS failed; returns TG_SOCK_ERROR. */
static int tls_fail(tg_sock_t *s, int ssl_err)
{
    unsigned long e = ERR_peek_error();
    s->tls_err = e ? e : 1;
    ERR_clear_error();
    if (s->err == 0)
        s->err = ssl_err == SSL_ERROR_SYSCALL ? ECONNRESET : EPROTO;
    return TG_SOCK_ERROR;
}

/* Advances the handshake: TG_SOCK_CONNECTED when done, TG_SOCK_ERROR on
 * failure, 0 while waiting for the peer. */
static int do_handshake(tg_sock_t *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->handshaking = 0;
        touch_timer(s);
        return TG_SOCK_CONNECTED;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return tls_fail(s, e);
}

/* TLS reads: decrypt into the input until OpenSSL needs more bytes. */
static int tls_read(tg_sock_t *s)
{
    int events = 0;
    if (s->handshaking)
        return 0;
    if (s->tls_err || s->err)
        return TG_SOCK_ERROR;
    s->read_wants_write = 0;
    /* Nothing to read (the socket drained, no record half-processed):
     * SSL_read would only say WANT_READ, and the space reserved for it
     * would stay behind as an empty chain in the buffer. */
    while (!s->paused && !s->eof && !s->dead && (s->readable || SSL_has_pending(s->ssl))) {
        if (unpark(s) < 0) {
            s->err = ENOMEM;
            return events | TG_SOCK_ERROR;
        }
        /* one record at most per SSL_read: a record's worth of space (a
         * 64 KiB reservation would make libevent allocate 128 KiB) */
        size_t have = in_len(s), want = TLS_RECORD_SPACE;
        if (s->read_limit) {
            if (have >= s->read_limit) {
                s->at_limit = 1;
                break;
            }
            if (s->read_limit - have < want)
                want = s->read_limit - have;
        }
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(s->in, (ev_ssize_t)want, &v, 1) != 1) {
            s->err = ENOMEM;
            return events | TG_SOCK_ERROR;
        }
        if (v.iov_len > want)
            v.iov_len = want;
        ERR_clear_error();
        int r = SSL_read(s->ssl, v.iov_base, (int)(v.iov_len > INT_MAX ? INT_MAX : v.iov_len));
        if (r > 0) {
            v.iov_len = (size_t)r;
            evbuffer_commit_space(s->in, &v, 1);
            events |= TG_SOCK_READ;
            continue;
        }
        evbuffer_commit_space(s->in, &v, 0);
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_WANT_WRITE) {
            s->read_wants_write = 1;
            break;
        }
        int unexpected = (e == SSL_ERROR_SYSCALL && s->err == 0) ||
                         (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
        if (e == SSL_ERROR_ZERO_RETURN || unexpected) {
            /* close_notify, or a TCP close without one: common, and
             * harmless where HTTP framing tells truncation apart; where it
             * cannot (a close-delimited body), tg_sock_eof_clean says */
            ERR_clear_error();
            s->eof_unclean = unexpected;
            s->eof = 1;
            s->readable = 0;
            events |= TG_SOCK_EOF;
            break;
        }
        events |= tls_fail(s, e);
        break;
    }
    if (events & TG_SOCK_READ)
        touch_timer(s);
    return events;
}

/* TLS writes: one SSL_write per record's worth of plaintext. Returns 1 on
 * progress, 0 when blocked, -1 on error (s->err set). */
static int tls_write_some(tg_sock_t *s)
{
    if (s->tls_err || s->err)
        return -1;
    size_t len = out_len(s), n = len < 16384 ? len : 16384;
    unsigned char *p = evbuffer_pullup(s->out, (ev_ssize_t)n);
    if (p == NULL) {
        s->err = ENOMEM;
        return -1;
    }
    ERR_clear_error();
    int r = SSL_write(s->ssl, p, (int)n);
    if (r > 0) {
        evbuffer_drain(s->out, (size_t)r);
        return 1;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE) {
        s->writable = 0;
        return 0;
    }
    if (e == SSL_ERROR_WANT_READ) {
        s->write_wants_read = 1;
        return 0;
    }
    tls_fail(s, e);
    return -1;
}

static int tls_readable(const tg_sock_t *s)
{
    return s->readable || SSL_has_pending(s->ssl);
}

/* A read returned r <= 0 (err its errno when -1; not EINTR): EOF,
 * drained, or an error. */
static int read_ended(tg_sock_t *s, ssize_t r, int err)
{
    s->readable = 0;
    if (r == 0) {
        s->eof = 1;
        return TG_SOCK_EOF;
    }
    if (err == EAGAIN || err == EWOULDBLOCK) {
        s->short_read = 0;
        return 0;
    }
    s->err = err;
    return TG_SOCK_ERROR;
}

/* A first read of up to n bytes into buf came back r (-1: err): its
 * bytes into the input, the socket's state moved. The events, or -1 to
 * read again (EINTR). */
static int first_read_done(tg_sock_t *s, const char *buf, size_t n, ssize_t r, int err)
{
    if (r > 0) {
        if (evbuffer_add(s->in, buf, (size_t)r) < 0) {
            s->err = ENOMEM;
            return TG_SOCK_ERROR;
        }
        s->bulk = 0;
        if ((size_t)r < n && !s->rdhup) {
            s->readable = 0;
            s->short_read = 1;
        }
        return TG_SOCK_READ;
    }
    if (r < 0 && err == EINTR)
        return -1;
    return read_ended(s, r, err);
}

/* Reads until EAGAIN, a short read, EOF, or the read limit. */
static int do_read(tg_sock_t *s)
{
    if (s->ssl != NULL)
        return tls_read(s);
    int events = 0;
    if (s->readable && !s->paused && !s->eof && !s->dead && unpark(s) < 0) {
        s->err = ENOMEM;
        return TG_SOCK_ERROR;
    }
    while (s->readable && !s->paused && !s->eof && !s->dead) {
        size_t have = in_len(s), want = s->bulk ? READ_BIG : READ_SMALL;
        if (s->read_limit) {
            if (have >= s->read_limit) {
                s->at_limit = 1;
                break;
            }
            if (s->read_limit - have < want)
                want = s->read_limit - have;
        }
        if (have == 0) {
            /* An empty buffer: read into the stack first, so that a read
             * that finds nothing (a probe, a spurious wake-up) leaves no
             * reserved chain behind, and a small message takes a chain of
             * its own size; what follows a full first read goes straight
             * into reserved space. */
            char first[FIRST_READ];
            size_t n = want < sizeof(first) ? want : sizeof(first);
            ssize_t r = recv(s->fd, first, n, 0); /* a socket: recv skips read()'s file layer */
            int got = first_read_done(s, first, n, r, r < 0 ? errno : 0);
            if (got < 0)
                continue;
            events |= got;
            if (got != TG_SOCK_READ)
                break;
            continue;
        }
        struct evbuffer_iovec v[2];
        int nv = evbuffer_reserve_space(s->in, (ev_ssize_t)want, v, 2);
        if (nv <= 0) {
            s->err = ENOMEM;
            events |= TG_SOCK_ERROR;
            break;
        }
        size_t space = 0;
        for (int i = 0; i < nv; i++) {
            if (space + v[i].iov_len > want)
                v[i].iov_len = want - space;
            space += v[i].iov_len;
        }
        ssize_t r = readv(s->fd, (struct iovec *)v, nv);
        if (r > 0) {
            size_t left = (size_t)r;
            int used = 0;
            for (int i = 0; i < nv && left > 0; i++, used++) {
                if (v[i].iov_len > left)
                    v[i].iov_len = left;
                left -= v[i].iov_len;
            }
            evbuffer_commit_space(s->in, v, used); /* no empty chains */
            events |= TG_SOCK_READ;
            s->bulk = (size_t)r == space;
            /* A short read means the socket buffer is empty, unless the
             * peer's FIN is pending (EPOLLRDHUP): then read on to the EOF,
             * which no further edge would announce. */
            if ((size_t)r < space && !s->rdhup) {
                s->readable = 0;
                s->short_read = 1; /* drained, unless a reset came with the data: see tg_sock_need_more */
            }
        } else {
            evbuffer_commit_space(s->in, v, 0);
            if (r == 0 || errno != EINTR)
                events |= read_ended(s, r, errno);
        }
    }
    if (events & TG_SOCK_READ)
        touch_timer(s);
    return events;
}

/* Once: each shutdown() makes the kernel signal the socket writable
 * again, so calling it on every write event would wake the loop forever
 * (edge-triggered, an edge each time) until the peer closed. */
static void shut_write(tg_sock_t *s)
{
    if (s->wr_closed)
        return;
    s->wr_closed = 1;
    if (s->ssl != NULL && !s->handshaking) {
        ERR_clear_error();
        SSL_shutdown(s->ssl); /* close_notify; the peer's is not awaited */
        ERR_clear_error();
    }
    shutdown(s->fd, SHUT_WR);
}

static ssize_t drained(tg_sock_t *s, ssize_t r)
{
    if (r > 0)
        evbuffer_drain(s->out, (size_t)r);
    return r;
}

/* One write of what s->out holds (at most WRITE_IOVEC pieces), drained
 * by what went: send() for a single piece, sendmsg() for more — as
 * evbuffer_write, without its buffer lock, and without writev's file
 * layer (its position lock and VFS dispatch cost a hit ~0.4 µs of
 * kernel time on this path). */
static ssize_t write_out(tg_sock_t *s)
{
    struct evbuffer_iovec v[WRITE_IOVEC];
    int n = evbuffer_peek(s->out, -1, NULL, v, WRITE_IOVEC);
    if (n <= 0)
        return 0;
    if (n > WRITE_IOVEC)
        n = WRITE_IOVEC;
    if (n == 1)
        return drained(s, send(s->fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL));
    struct msghdr m = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)n};
    return drained(s, sendmsg(s->fd, &m, MSG_NOSIGNAL));
}

static void spill(tg_sock_t *s, size_t sent);

static int do_write(tg_sock_t *s)
{
    int events = 0, progress = s->pre_wrote;
    s->pre_wrote = 0;
    if (s->pend)
        spill(s, 0);
    s->write_wants_read = 0;
    while (s->ssl != NULL && s->writable && !s->handshaking && !s->dead && out_len(s) > 0) {
        int r = tls_write_some(s);
        if (r < 0) {
            events |= TG_SOCK_ERROR;
            break;
        }
        if (r == 0)
            break;
        progress = 1;
    }
    while (s->ssl == NULL && s->writable && !s->dead && out_len(s) > 0) {
        ssize_t r = write_out(s);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->writable = 0;
            } else if (errno != EINTR) {
                s->err = errno;
                s->writable = 0;
                events |= TG_SOCK_ERROR;
            }
            break;
        }
        progress = 1;
        /* Output left over does not mean the socket is full: one writev
         * takes at most WRITE_IOVEC of the buffer's chunks. Only EAGAIN
         * says so; before, a body of many small chunks stalled here until
         * the peer sent something. */
    }
    if (progress) {
        touch_timer(s);
        if (out_len(s) <= s->write_lowat)
            events |= TG_SOCK_WRITE;
    }
    if (s->shut_wr && out_len(s) == 0 && !s->dead)
        shut_write(s);
    if (progress && out_len(s) == 0)
        try_park(s);
    return events;
}

/* Runs the I/O an event calls for: the TLS handshake first, then writes
 * and reads (each also when TLS made it wait on the other direction). */
static int advance(tg_sock_t *s, int wr, int rd)
{
    int events = 0;
    if (s->handshaking) {
        int h = do_handshake(s);
        if (h != TG_SOCK_CONNECTED)
            return h;
        deliver(s, TG_SOCK_CONNECTED);
        if (s->dead)
            return 0;
        wr = rd = 1; /* output queued meanwhile; input that came with the last flight */
    }
    int do_w = wr || (rd && s->write_wants_read), do_r = rd || (wr && s->read_wants_write);
    if (do_w)
        events |= do_write(s);
    if (do_r && !(events & TG_SOCK_ERROR))
        events |= do_read(s);
    return events;
}

/* pre: what the batch's read found (ring_reads), or -1 if it did not read */
static void on_io(tg_sock_t *s, short what, int pre)
{
    dispatch_begin(s);
    if (what & EV_WRITE) {
        s->writable = 1;
        if (s->connecting) {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
            if (err != 0 && err != EINPROGRESS) {
                s->err = err;
                s->writable = 0;
                deliver(s, TG_SOCK_ERROR);
                dispatch_end(s);
                return;
            }
            if (err == 0) {
                s->connecting = 0;
                touch_timer(s);
                if (s->ssl == NULL)
                    deliver(s, TG_SOCK_CONNECTED);
            } else {
                s->writable = 0;
            }
        }
    }
    if (what & EV_CLOSED)
        s->rdhup = 1;
    if ((what & (EV_READ | EV_CLOSED)) && pre < 0)
        s->readable = 1;
    int events = pre > 0 ? pre : 0;
    if (!s->connecting && !s->dead)
        events |= advance(s, what & EV_WRITE, what & (EV_READ | EV_CLOSED));
    deliver(s, events);
    dispatch_end(s);
}

/* ---- batched I/O (io_uring) ----
 *
 * A syscall costs the same whatever it does, and a batch of ready sockets
 * makes one read each and, once their callbacks ran, one write each. With
 * a ring, the batch's first reads (into an empty input) go to the kernel
 * as one submission, and so do the loop's turn's writes: two syscalls a
 * batch instead of two a request. Every operation is MSG_DONTWAIT, so the
 * kernel completes it during the submission (a full or empty socket
 * answers EAGAIN, as the syscall would): nothing is in flight once the
 * submission returns, and the results are applied before any callback
 * runs, exactly as the syscalls' would be. */

/* Queues in out what a write of sent bytes left of head + body: the
 * head's rest copied, the body's by reference (copied when there is no
 * done); done(body, blen, arg) runs once the body has gone — now, if it
 * all went — or at once on failure. 0, or -1 when out of memory. */
static int queue_rest(struct evbuffer *out, const void *head, size_t hlen, const void *body, size_t blen, size_t sent,
                      void (*done)(const void *data, size_t len, void *arg), void *arg)
{
    size_t hsent = sent < hlen ? sent : hlen, bsent = sent - hsent;
    if ((hsent < hlen && evbuffer_add(out, (const char *)head + hsent, hlen - hsent) < 0) ||
        (bsent < blen && (done == NULL ? evbuffer_add(out, (const char *)body + bsent, blen - bsent)
                                       : evbuffer_add_reference(out, (const char *)body + bsent, blen - bsent, done,
                                                                arg)) < 0)) {
        if (done != NULL)
            done(body, blen, arg);
        return -1;
    }
    if (bsent == blen && done != NULL) /* all of the body went */
        done(body, blen, arg);
    return 0;
}

static struct pend *pend_of(const tg_sock_t *s)
{
    return &s->loop->ring->pend[s->pend - 1];
}

static size_t pend_len(const tg_sock_t *s)
{
    const struct pend *p = pend_of(s);
    return p->hlen + p->blen;
}

/* Takes a whole message for the turn's writes, if the stage has room. */
static int pend_take(tg_sock_t *s, const void *head, size_t hlen, const void *body, size_t blen,
                     void (*done)(const void *data, size_t len, void *arg), void *arg)
{
    struct ring *g = s->loop->ring;
    size_t need = hlen + (done == NULL ? blen : 0); /* no done: the caller's body may go, so it is copied */
    if (g->n_pend == RING_BATCH || need > RING_STAGE - g->staged)
        return -1;
    char *at = g->stage + g->staged;
    memcpy(at, head, hlen);
    if (done == NULL && blen > 0) {
        memcpy(at + hlen, body, blen);
        body = at + hlen;
    }
    g->staged += need;
    g->pend[g->n_pend++] = (struct pend){ s, at, body, hlen, blen, done, arg };
    s->pend = (uint8_t)g->n_pend;
    return 0;
}

/* The socket's waiting message, its slot freed. */
static struct pend pend_detach(tg_sock_t *s)
{
    struct pend p = *pend_of(s);
    pend_of(s)->s = NULL;
    s->pend = 0;
    return p;
}

/* The pending message is done with (all of it went, or the socket goes):
 * its slot freed, the caller's done run. */
static void pend_end(tg_sock_t *s)
{
    struct pend p = pend_detach(s);
    if (p.done != NULL)
        p.done(p.body, p.blen, p.arg);
}

/* Moves what is left of the pending message after sent bytes into the
 * output (the order kept: the output is empty while it waits). */
static void spill(tg_sock_t *s, size_t sent)
{
    struct pend p = pend_detach(s);
    if (queue_rest(s->out, p.head, p.hlen, p.body, p.blen, sent, p.done, p.arg) < 0 && !s->err) {
        s->err = ENOMEM; /* reported from the loop, as a failed write would be */
        s->pre_events |= TG_SOCK_ERROR;
        s->q_write = 1;
        enqueue(s);
    }
}

/* No message waits past the turn: the stage is free again. */
static void spill_all(tg_sock_loop_t *l)
{
    struct ring *g = l->ring;
    for (unsigned i = 0; i < g->n_pend; i++)
        if (g->pend[i].s != NULL)
            spill(g->pend[i].s, 0);
    g->n_pend = 0;
    g->staged = 0;
}

/* The loop goes on without its ring (nothing may wait in it). */
static void ring_free(tg_sock_loop_t *l)
{
    if (l->ring == NULL)
        return;
    io_uring_queue_exit(&l->ring->u);
    free(l->ring);
    l->ring = NULL;
    atomic_store_explicit(&l->batched, 0, memory_order_relaxed);
}

/* Submits the k prepared operations and waits for their k completions;
 * fn(l, index, result) for each. -1 if the ring failed: it is dropped
 * (what it did not run never runs), the loop goes on with syscalls. */
static int ring_run(tg_sock_loop_t *l, unsigned k, void (*fn)(tg_sock_loop_t *l, unsigned i, int res, void *arg),
                    void *arg)
{
    struct ring *g = l->ring;
    int r;
    do
        r = io_uring_submit_and_wait(&g->u, k);
    while (r == -EINTR);
    atomic_fetch_add_explicit(&l->ring_batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&l->ring_ops, k, memory_order_relaxed);
    unsigned want = r > 0 ? (unsigned)r : 0, got = 0;
    while (got < want) {
        struct io_uring_cqe *c;
        int w = io_uring_wait_cqe(&g->u, &c);
        if (w == -EINTR)
            continue;
        if (w < 0)
            break;
        fn(l, (unsigned)io_uring_cqe_get_data64(c), c->res, arg);
        io_uring_cqe_seen(&g->u, c);
        got++;
    }
    if (r == (int)k && got == want)
        return 0;
    tg_log(TG_LOG_WARN, "io_uring submission failed (%s): reads and writes go one syscall each from now on",
           strerror(r < 0 ? -r : EIO));
    spill_all(l);
    ring_free(l);
    atomic_store_explicit(&l->ring_err, r < 0 ? -r : EIO, memory_order_relaxed);
    return -1;
}

struct read_batch {
    struct epoll_event *evs;
    int *pre;
};

static void read_done(tg_sock_loop_t *l, unsigned i, int res, void *arg)
{
    struct read_batch *b = arg;
    tg_sock_t *s = b->evs[i].data.ptr;
    int ev;
    if (res > 0 && unpark(s) < 0) {
        s->err = ENOMEM;
        ev = TG_SOCK_ERROR;
    } else {
        if (b->evs[i].events & EPOLLRDHUP)
            s->rdhup = 1;
        s->readable = 1;
        ev = first_read_done(s, l->ring->rbuf[i], l->ring->want[i], res >= 0 ? res : -1, res >= 0 ? 0 : -res);
        if (ev < 0) /* EINTR: the socket stays readable, and do_read reads */
            ev = 0;
        if (ev & TG_SOCK_READ)
            touch_timer(s);
    }
    b->pre[i] = ev;
}

/* The first reads of the batch's readable sockets whose input is empty. */
static void ring_reads(tg_sock_loop_t *l, struct epoll_event *evs, int n, int *pre)
{
    struct ring *g = l->ring;
    unsigned k = 0;
    for (int i = 0; i < n; i++) {
        tg_sock_t *s = evs[i].data.ptr;
        if (!(evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) || s->dead || s->ssl != NULL ||
            s->connecting || s->paused || s->eof || in_len(s) > 0)
            continue;
        size_t want = FIRST_READ;
        if (s->read_limit && s->read_limit < want)
            want = s->read_limit;
        struct io_uring_sqe *q = io_uring_get_sqe(&g->u);
        if (q == NULL)
            break;
        io_uring_prep_recv(q, s->fd, g->rbuf[i], want, MSG_DONTWAIT);
        io_uring_sqe_set_data64(q, (uint64_t)i);
        g->want[i] = (uint32_t)want;
        k++;
    }
    struct read_batch b = { evs, pre };
    if (k > 0)
        ring_run(l, k, read_done, &b);
}

static void write_done(tg_sock_loop_t *l, unsigned i, int res, void *arg)
{
    tg_sock_t *s = l->ring->who[i];
    size_t sent = res > 0 ? (size_t)res : 0;
    if (s->pend) {
        if (sent == pend_len(s))
            pend_end(s);
        else
            spill(s, sent);
    } else if (sent > 0) {
        evbuffer_drain(s->out, sent);
    }
    if (sent > 0) {
        s->pre_wrote = 1;
    } else if (res == -EAGAIN || res == -EWOULDBLOCK) {
        s->writable = 0; /* the write edge will resume it */
    } else if (res < 0 && res != -EINTR) {
        s->err = -res;
        s->writable = 0;
        s->pre_events |= TG_SOCK_ERROR;
    }
}

/* The queued sockets' writes. */
static void ring_writes(tg_sock_loop_t *l)
{
    struct ring *g = l->ring;
    unsigned k = 0;
    tg_sock_t *s;
    TAILQ_FOREACH(s, &l->queue, qlink) {
        if (k == RING_BATCH)
            break;
        if (!s->q_write || s->ssl != NULL || !s->writable || s->connecting || s->dead || out_len(s) == 0)
            continue;
        int n;
        if (s->pend) {
            const struct pend *p = pend_of(s);
            g->v[k][0] = (struct iovec){ (void *)p->head, p->hlen };
            g->v[k][1] = (struct iovec){ (void *)p->body, p->blen };
            n = p->blen ? 2 : 1;
        } else {
            n = evbuffer_peek(s->out, -1, NULL, (struct evbuffer_iovec *)g->v[k], RING_IOV);
            if (n <= 0)
                continue;
            if (n > RING_IOV)
                n = RING_IOV;
        }
        struct io_uring_sqe *q = io_uring_get_sqe(&g->u);
        if (q == NULL)
            break;
        if (n == 1) {
            io_uring_prep_send(q, s->fd, g->v[k][0].iov_base, g->v[k][0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            g->m[k] = (struct msghdr){ .msg_iov = g->v[k], .msg_iovlen = (size_t)n };
            io_uring_prep_sendmsg(q, s->fd, &g->m[k], MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        io_uring_sqe_set_data64(q, k);
        g->who[k++] = s;
    }
    if (k > 0 && ring_run(l, k, write_done, NULL) < 0)
        return; /* the ring is gone, its messages spilled */
    spill_all(l);
}

/* The loop's ring, or NULL with *err why (an errno). */
static struct ring *ring_new(int *err)
{
    struct ring *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        *err = ENOMEM;
        return NULL;
    }
    /* COOP_TASKRUN: no interrupt to run completion work, the submission
     * does it (everything here completes inside it anyway). Kernels before
     * 5.19 refuse the flag, and they are not used: a send or receive with
     * MSG_DONTWAIT must answer EAGAIN inside the submission, never wait
     * for the socket (the loop would block on it), and older kernels are
     * not relied on for that. */
    struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };
    int r = io_uring_queue_init_params(RING_BATCH, &g->u, &p);
    if (r < 0) {
        *err = r == -EINVAL ? EOPNOTSUPP : -r;
        free(g);
        return NULL;
    }
    return g;
}

/* The loop's epoll set has ready sockets: dispatch each, as libevent
 * would (EV_READ / EV_WRITE / EV_CLOSED; an error or hang-up reads and
 * writes, to find out). */
static void on_epoll(evutil_socket_t fd, short what, void *arg)
{
    tg_sock_loop_t *l = arg;
    struct epoll_event evs[RING_BATCH];
    int pre[RING_BATCH];
    int n;
    l->in_batch = 1;
    do {
        n = epoll_wait(l->epfd, evs, RING_BATCH, 0);
        for (int i = 0; i < n; i++)
            pre[i] = -1;
        if (l->ring != NULL && n > 0)
            ring_reads(l, evs, n, pre);
        for (int i = 0; i < n; i++) {
            tg_sock_t *s = evs[i].data.ptr;
            if (s->dead)
                continue;
            uint32_t e = evs[i].events;
            short w = 0;
            if (e & (EPOLLHUP | EPOLLERR))
                w |= EV_READ | EV_WRITE;
            if (e & EPOLLIN)
                w |= EV_READ;
            if (e & EPOLLOUT)
                w |= EV_WRITE;
            if (e & EPOLLRDHUP)
                w |= EV_CLOSED;
            on_io(s, w, pre[i]);
        }
    } while (n == RING_BATCH);
    l->in_batch = 0;
    tg_sock_t *s;
    while ((s = l->dead) != NULL) {
        l->dead = s->next_dead;
        release(s);
    }
}

static void on_timer(tg_timer_t *t)
{
    struct sock_timer *st = TG_CONTAINER_OF(t, struct sock_timer, t);
    tg_sock_t *s = st->s;
    s->timer_on = 0;
    uint64_t now = tg_loop_now_us(s->loop->loop);
    if (st->due_us > now) { /* progress since it was armed: wait out the rest */
        s->timer_on = tg_timer_after(s->loop->loop, t, st->due_us - now) == 0;
        if (s->timer_on)
            return;
    }
    dispatch_begin(s);
    deliver(s, TG_SOCK_TIMEOUT);
    dispatch_end(s);
}

/* The loop's turn: the queued sockets' reads and batched writes. */
static void on_turn(void *arg)
{
    tg_sock_loop_t *l = arg;
    tg_sock_t *s;
    if (l->ring != NULL)
        ring_writes(l);
    while ((s = TAILQ_FIRST(&l->queue)) != NULL) {
        int rd = s->q_read, wr = s->q_write, events = s->pre_events;
        s->pre_events = 0;
        dequeue(s);
        dispatch_begin(s);
        if (!s->connecting && !s->dead)
            events |= advance(s, wr, rd);
        deliver(s, events);
        dispatch_end(s);
    }
    if (l->ring != NULL)
        spill_all(l);
}

tg_sock_loop_t *tg_sock_loop_new(tg_loop_t *loop, int batched)
{
    tg_sock_loop_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->loop = loop;
    l->base = tg_loop_base(loop);
    TAILQ_INIT(&l->queue);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0 || (l->socks = tg_slab_new(sizeof(tg_sock_t))) == NULL || (l->scratch = evbuffer_new()) == NULL ||
        event_assign(&l->ep_ev, l->base, l->epfd, EV_READ | EV_PERSIST, on_epoll, l) < 0 ||
        event_add(&l->ep_ev, NULL) < 0) {
        if (l->scratch)
            evbuffer_free(l->scratch);
        if (l->epfd >= 0)
            close(l->epfd);
        tg_slab_destroy(l->socks);
        free(l);
        return NULL;
    }
    tg_loop_set_turn(loop, on_turn, l);
    if (batched) {
        int err = 0;
        l->ring = ring_new(&err);
        atomic_store_explicit(&l->ring_err, err, memory_order_relaxed);
        atomic_store_explicit(&l->batched, l->ring != NULL, memory_order_relaxed);
    }
    return l;
}

int tg_sock_loop_batched(tg_sock_loop_t *l, int *why)
{
    if (why != NULL)
        *why = atomic_load_explicit(&l->ring_err, memory_order_relaxed);
    return atomic_load_explicit(&l->batched, memory_order_relaxed);
}

void tg_sock_loop_ring_counts(tg_sock_loop_t *l, uint64_t *batches, uint64_t *ops)
{
    *batches = atomic_load_explicit(&l->ring_batches, memory_order_relaxed);
    *ops = atomic_load_explicit(&l->ring_ops, memory_order_relaxed);
}

void tg_sock_loop_free(tg_sock_loop_t *l)
{
    if (l == NULL)
        return;
    tg_loop_set_turn(l->loop, NULL, NULL);
    event_del(&l->ep_ev);
    close(l->epfd);
    ring_free(l);
    while (l->n_spare > 0)
        evbuffer_free(l->spare[--l->n_spare]);
    evbuffer_free(l->scratch);
    tg_slab_destroy(l->socks); /* every socket is gone */
    free(l);
}

static tg_sock_t *sock_create(tg_sock_loop_t *l, int fd)
{
    tg_sock_t *s = tg_slab_alloc(l->socks);
    if (s == NULL)
        return NULL;
    s->loop = l;
    s->fd = fd;
    /* born parked: the buffers come (from the loop's spares) with the first bytes */
    struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = s };
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        tg_slab_free(l->socks, s);
        return NULL;
    }
    return s;
}

tg_sock_t *tg_sock_new(tg_sock_loop_t *l, int fd)
{
    tg_sock_t *s = sock_create(l, fd);
    if (s != NULL) {
        s->writable = 1;
        s->readable = 1; /* data may have arrived before registration */
    }
    return s;
}

tg_sock_t *tg_sock_connect(tg_sock_loop_t *l, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return NULL;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    tg_sock_t *s = sock_create(l, fd);
    if (s == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    s->connecting = 1;
    return s;
}

void tg_sock_free(tg_sock_t *s)
{
    if (s == NULL || s->dead)
        return;
    dequeue(s);
    if (s->timer != NULL)
        tg_timer_cancel(&s->timer->t);
    close(s->fd); /* and out of the epoll set with it */
    s->fd = -1;
    s->dead = 1;
    if (s->busy == 0)
        release_soon(s);
}

void tg_sock_set_cb(tg_sock_t *s, tg_sock_cb cb, void *arg)
{
    s->cb = cb;
    s->arg = arg;
}

/* A parked socket's buffers, back for its owner; out of memory, the
 * socket fails (from the loop) and the loop's scratch buffer stands in. */
static struct evbuffer *owned_buffer(tg_sock_t *s, int out)
{
    s->want_park = 0; /* the owner is at work on it again: no parking until it asks */
    if (unpark(s) == 0) {
        if (out && s->pend) /* what is added goes after the waiting message */
            spill(s, 0);
        return out ? s->out : s->in;
    }
    if (!s->err)
        s->err = ENOMEM;
    s->q_read = 1;
    enqueue(s);
    evbuffer_drain(s->loop->scratch, evbuffer_get_length(s->loop->scratch));
    return s->loop->scratch;
}

struct evbuffer *tg_sock_in(tg_sock_t *s)
{
    return owned_buffer(s, 0);
}

struct evbuffer *tg_sock_out(tg_sock_t *s)
{
    return owned_buffer(s, 1);
}

size_t tg_sock_in_len(const tg_sock_t *s)
{
    return in_len(s);
}

size_t tg_sock_out_len(const tg_sock_t *s)
{
    return out_len(s);
}

void tg_sock_park(tg_sock_t *s)
{
    s->want_park = 1;
    try_park(s);
}

int tg_sock_fd(const tg_sock_t *s)
{
    return s->fd;
}

int tg_sock_error(const tg_sock_t *s)
{
    return s->err;
}

void tg_sock_set_read_limit(tg_sock_t *s, size_t limit)
{
    s->read_limit = limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit;
    tg_sock_consumed(s);
}

void tg_sock_set_write_lowat(tg_sock_t *s, size_t lowat)
{
    s->write_lowat = lowat > UINT32_MAX ? UINT32_MAX : (uint32_t)lowat;
}

void tg_sock_set_timeout(tg_sock_t *s, uint64_t ms)
{
    s->timeout_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (ms)
        touch_timer(s);
    else if (s->timer_on) {
        tg_timer_cancel(&s->timer->t);
        s->timer_on = 0;
    }
}

static void queue_read(tg_sock_t *s)
{
    if ((s->ssl ? tls_readable(s) : s->readable) && !s->paused && !s->eof && !s->dead) {
        s->q_read = 1;
        enqueue(s);
    }
}

void tg_sock_need_more(tg_sock_t *s)
{
    if (s->short_read) {
        s->short_read = 0;
        s->readable = 1;
        queue_read(s);
    }
}

void tg_sock_pause_read(tg_sock_t *s, int paused)
{
    s->paused = paused != 0;
    if (!paused)
        queue_read(s);
}

void tg_sock_consumed(tg_sock_t *s)
{
    if (s->at_limit && (s->read_limit == 0 || in_len(s) < s->read_limit)) {
        s->at_limit = 0;
        queue_read(s);
    }
}

void tg_sock_flush(tg_sock_t *s)
{
    if (!s->dead && s->writable && !s->connecting && out_len(s) > 0) {
        s->q_write = 1;
        enqueue(s);
    }
}

int tg_sock_eof_clean(const tg_sock_t *s)
{
    return !s->eof_unclean;
}

int tg_sock_peer_closed(const tg_sock_t *s)
{
    return s->eof || s->rdhup;
}

void tg_sock_flush_now(tg_sock_t *s)
{
    if (s->dead || !s->writable || s->connecting || out_len(s) == 0)
        return;
    if (s->loop->ring != NULL && s->ssl == NULL) { /* the loop's turn writes it, with the batch's others */
        tg_sock_flush(s);
        return;
    }
    if (s->ssl != NULL) {
        if (s->handshaking || (do_write(s) & TG_SOCK_ERROR)) {
            s->q_write = 1; /* the loop writes after the handshake, or reports the error */
            enqueue(s);
        }
        return;
    }
    /* Until the output is gone or the kernel says the socket is full
     * (EAGAIN): output left after a write is not proof of a full socket,
     * since one write takes at most WRITE_IOVEC pieces, and the write edge
     * only comes after EAGAIN. */
    ssize_t r;
    int progress = 0;
    while ((r = write_out(s)) > 0) {
        progress = 1;
        if (out_len(s) == 0)
            break;
    }
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            s->writable = 0; /* the write edge will resume it */
        else
            tg_sock_flush(s); /* an error the loop reports, or EINTR: the loop writes the rest */
    }
    if (progress)
        touch_timer(s);
    if (out_len(s) == 0 && s->shut_wr)
        shut_write(s);
}

int tg_sock_write_ref(tg_sock_t *s, const void *head, size_t hlen, const void *body, size_t blen,
                      void (*done)(const void *data, size_t len, void *arg), void *arg)
{
    struct evbuffer *out = owned_buffer(s, 1);
    size_t sent = 0;
    if (s->ssl == NULL && out == s->out && !s->dead && s->writable && !s->connecting && !s->shut_wr &&
        evbuffer_get_length(out) == 0) {
        if (s->loop->ring != NULL) { /* for the turn's writes, without the output buffer if the stage has room */
            if (pend_take(s, head, hlen, body, blen, done, arg) == 0) {
                s->q_write = 1;
                enqueue(s);
                return 0;
            }
        } else {
            struct iovec v[2] = { { (void *)head, hlen }, { (void *)body, blen } };
            struct msghdr m = { .msg_iov = v, .msg_iovlen = blen ? 2 : 1 };
            ssize_t r = sendmsg(s->fd, &m, MSG_NOSIGNAL);
            if (r > 0) {
                sent = (size_t)r;
                touch_timer(s);
            } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                s->writable = 0; /* the write edge will resume it */
            } /* another error: the loop's write meets it again and reports it */
        }
    }
    if (queue_rest(out, head, hlen, body, blen, sent, done, arg) < 0)
        return -1;
    if (sent < hlen + blen) /* something waits: the loop writes it */
        tg_sock_flush(s);
    return 0;
}

void tg_sock_shutdown_write(tg_sock_t *s)
{
    s->shut_wr = 1;
    if (out_len(s) == 0 && !s->dead)
        shut_write(s);
    else
        tg_sock_flush(s);
}

int tg_sock_start_tls(tg_sock_t *s, SSL *ssl)
{
    pthread_once(&bio_once, make_bio_method);
    if (bio_method == NULL)
        return -1;
    BIO *b = BIO_new(bio_method);
    if (b == NULL)
        return -1;
    BIO_set_data(b, s);
    SSL_set_bio(ssl, b, b);
    s->ssl = ssl;
    s->handshaking = 1;
    if (!s->connecting) { /* an accepted socket: the ClientHello may be here already */
        s->q_read = 1;
        enqueue(s);
    }
    return 0;
}

SSL *tg_sock_ssl(const tg_sock_t *s)
{
    return s->ssl;
}

const char *tg_sock_tls_error(const tg_sock_t *s, char *buf, size_t len)
{
    if (s->tls_err > 1) {
        ERR_error_string_n(s->tls_err, buf, len);
        /* "certificate verify failed" alone does not say why: add it */
        long v = s->ssl != NULL ? SSL_get_verify_result(s->ssl) : X509_V_OK;
        size_t used = strlen(buf);
        if (v != X509_V_OK && used + 4 < len)
            snprintf(buf + used, len - used, " (%s)", X509_verify_cert_error_string(v));
    } else
        snprintf(buf, len, "%s", s->err ? strerror(s->err) : "connection closed");
    return buf;
}
