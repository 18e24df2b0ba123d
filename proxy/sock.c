/*
 * proxy/sock.c — see sock.h.
 *
 * Every entry into a socket (I/O readiness, its timer, the loop's deferred
 * queue) goes through dispatch_begin/dispatch_end, which keep the memory
 * alive while user callbacks run; tg_sock_free() during a dispatch only
 * closes the fd and marks the socket dead.
 */
#include "proxy/sock.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/uio.h>
#include <unistd.h>

/* Reads start at 16 KiB (a request or a small response fits) and grow to
 * 64 KiB while reads keep filling the space (bulk bodies). */
#define READ_SMALL (16 * 1024)
#define READ_BIG (64 * 1024)

struct tg_sock {
    tg_sock_loop_t *loop;
    int fd;
    struct event ev;
    struct event timer;
    struct evbuffer *in, *out;
    tg_sock_cb cb;
    void *arg;
    size_t read_limit, write_lowat;
    uint64_t timeout_ms;
    int err;
    int busy;
    TAILQ_ENTRY(tg_sock) qlink;
    unsigned readable : 1, writable : 1, connecting : 1, eof : 1, dead : 1, paused : 1, at_limit : 1,
        shut_wr : 1, queued : 1, q_read : 1, q_write : 1, timer_on : 1, bulk : 1, rdhup : 1;
};

struct tg_sock_loop {
    struct event_base *base;
    struct event run_ev;
    TAILQ_HEAD(, tg_sock) queue;
    int run_pending;
};

static void release(tg_sock_t *s)
{
    evbuffer_free(s->in);
    evbuffer_free(s->out);
    free(s);
}

static void dispatch_begin(tg_sock_t *s)
{
    s->busy++;
}

/* Returns 1 if s is gone. */
static int dispatch_end(tg_sock_t *s)
{
    if (--s->busy == 0 && s->dead) {
        release(s);
        return 1;
    }
    return s->dead;
}

static void deliver(tg_sock_t *s, int events)
{
    if (events && !s->dead && s->cb)
        s->cb(s, events, s->arg);
}

static void touch_timer(tg_sock_t *s)
{
    if (s->timeout_ms) {
        struct timeval tv = { (time_t)(s->timeout_ms / 1000), (suseconds_t)(s->timeout_ms % 1000) * 1000 };
        evtimer_add(&s->timer, &tv);
        s->timer_on = 1;
    }
}

static void enqueue(tg_sock_t *s)
{
    tg_sock_loop_t *l = s->loop;
    if (!s->queued) {
        s->queued = 1;
        TAILQ_INSERT_TAIL(&l->queue, s, qlink);
    }
    if (!l->run_pending) {
        l->run_pending = 1;
        event_active(&l->run_ev, EV_TIMEOUT, 0);
    }
}

static void dequeue(tg_sock_t *s)
{
    if (s->queued) {
        TAILQ_REMOVE(&s->loop->queue, s, qlink);
        s->queued = s->q_read = s->q_write = 0;
    }
}

/* Reads until EAGAIN, a short read, EOF, or the read limit. */
static int do_read(tg_sock_t *s)
{
    int events = 0;
    while (s->readable && !s->paused && !s->eof && !s->dead) {
        size_t have = evbuffer_get_length(s->in), want = s->bulk ? READ_BIG : READ_SMALL;
        if (s->read_limit) {
            if (have >= s->read_limit) {
                s->at_limit = 1;
                break;
            }
            if (s->read_limit - have < want)
                want = s->read_limit - have;
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
            if ((size_t)r < space && !s->rdhup)
                s->readable = 0;
        } else {
            evbuffer_commit_space(s->in, v, 0);
            if (r == 0) {
                s->eof = 1;
                s->readable = 0;
                events |= TG_SOCK_EOF;
            } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                s->readable = 0;
            } else if (errno != EINTR) {
                s->err = errno;
                s->readable = 0;
                events |= TG_SOCK_ERROR;
            }
        }
    }
    if (events & TG_SOCK_READ)
        touch_timer(s);
    return events;
}

static int do_write(tg_sock_t *s)
{
    int events = 0, progress = 0;
    while (s->writable && !s->dead && evbuffer_get_length(s->out) > 0) {
        int r = evbuffer_write(s->out, s->fd);
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
        if (evbuffer_get_length(s->out) > 0)
            s->writable = 0; /* partial write: the socket buffer is full */
    }
    if (progress) {
        touch_timer(s);
        if (evbuffer_get_length(s->out) <= s->write_lowat)
            events |= TG_SOCK_WRITE;
    }
    if (s->shut_wr && evbuffer_get_length(s->out) == 0)
        shutdown(s->fd, SHUT_WR);
    return events;
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    tg_sock_t *s = arg;
    int events = 0;
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
                deliver(s, TG_SOCK_CONNECTED);
            } else {
                s->writable = 0;
            }
        }
        if (!s->connecting)
            events |= do_write(s);
    }
    if (what & EV_CLOSED)
        s->rdhup = 1;
    if ((what & (EV_READ | EV_CLOSED)) && !s->connecting) {
        s->readable = 1;
        events |= do_read(s);
    }
    deliver(s, events);
    dispatch_end(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    tg_sock_t *s = arg;
    s->timer_on = 0;
    dispatch_begin(s);
    deliver(s, TG_SOCK_TIMEOUT);
    dispatch_end(s);
}

static void on_run(evutil_socket_t fd, short what, void *arg)
{
    tg_sock_loop_t *l = arg;
    tg_sock_t *s;
    l->run_pending = 0;
    while ((s = TAILQ_FIRST(&l->queue)) != NULL) {
        int rd = s->q_read, wr = s->q_write, events = 0;
        dequeue(s);
        dispatch_begin(s);
        if (wr && !s->connecting)
            events |= do_write(s);
        if (rd && !s->connecting)
            events |= do_read(s);
        deliver(s, events);
        dispatch_end(s);
    }
}

tg_sock_loop_t *tg_sock_loop_new(struct event_base *base)
{
    tg_sock_loop_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->base = base;
    TAILQ_INIT(&l->queue);
    if (event_assign(&l->run_ev, base, -1, 0, on_run, l) < 0) {
        free(l);
        return NULL;
    }
    return l;
}

void tg_sock_loop_free(tg_sock_loop_t *l)
{
    if (l == NULL)
        return;
    event_del(&l->run_ev);
    free(l);
}

static tg_sock_t *sock_create(tg_sock_loop_t *l, int fd)
{
    tg_sock_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->loop = l;
    s->fd = fd;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    if (s->in == NULL || s->out == NULL ||
        event_assign(&s->ev, l->base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, on_io, s) < 0 ||
        evtimer_assign(&s->timer, l->base, on_timer, s) < 0 || event_add(&s->ev, NULL) < 0) {
        if (s->in)
            evbuffer_free(s->in);
        if (s->out)
            evbuffer_free(s->out);
        free(s);
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
    event_del(&s->ev);
    event_del(&s->timer);
    close(s->fd);
    s->fd = -1;
    s->dead = 1;
    if (s->busy == 0)
        release(s);
}

void tg_sock_set_cb(tg_sock_t *s, tg_sock_cb cb, void *arg)
{
    s->cb = cb;
    s->arg = arg;
}

struct evbuffer *tg_sock_in(tg_sock_t *s)
{
    return s->in;
}

struct evbuffer *tg_sock_out(tg_sock_t *s)
{
    return s->out;
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
    s->read_limit = limit;
    tg_sock_consumed(s);
}

void tg_sock_set_write_lowat(tg_sock_t *s, size_t lowat)
{
    s->write_lowat = lowat;
}

void tg_sock_set_timeout(tg_sock_t *s, uint64_t ms)
{
    s->timeout_ms = ms;
    if (ms)
        touch_timer(s);
    else if (s->timer_on) {
        event_del(&s->timer);
        s->timer_on = 0;
    }
}

static void queue_read(tg_sock_t *s)
{
    if (s->readable && !s->paused && !s->eof && !s->dead) {
        s->q_read = 1;
        enqueue(s);
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
    if (s->at_limit && (s->read_limit == 0 || evbuffer_get_length(s->in) < s->read_limit)) {
        s->at_limit = 0;
        queue_read(s);
    }
}

void tg_sock_flush(tg_sock_t *s)
{
    if (!s->dead && s->writable && !s->connecting && evbuffer_get_length(s->out) > 0) {
        s->q_write = 1;
        enqueue(s);
    }
}

int tg_sock_peer_closed(const tg_sock_t *s)
{
    return s->eof || s->rdhup;
}

void tg_sock_flush_now(tg_sock_t *s)
{
    if (s->dead || !s->writable || s->connecting || evbuffer_get_length(s->out) == 0)
        return;
    int r = evbuffer_write(s->out, s->fd);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            s->writable = 0; /* the write edge will resume it */
        else
            tg_sock_flush(s); /* let the loop see the error and report it */
        return;
    }
    touch_timer(s);
    if (evbuffer_get_length(s->out) > 0)
        s->writable = 0;
    else if (s->shut_wr)
        shutdown(s->fd, SHUT_WR);
}

void tg_sock_shutdown_write(tg_sock_t *s)
{
    s->shut_wr = 1;
    if (evbuffer_get_length(s->out) == 0 && !s->dead)
        shutdown(s->fd, SHUT_WR);
    else
        tg_sock_flush(s);
}
