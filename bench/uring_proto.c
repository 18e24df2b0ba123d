/*
 * bench/uring_proto.c — the io_uring question, measured before it is
 * built: a minimal HTTP/1.1 keep-alive forwarder with two interchangeable
 * I/O layers and the same forwarding logic, so that the only difference
 * between the two runs is how bytes reach and leave the kernel.
 *
 *   uring_proto epoll LISTEN_PORT UPSTREAM_PORT
 *   uring_proto uring LISTEN_PORT UPSTREAM_PORT
 *
 * One thread. Each client connection gets its own upstream keep-alive
 * connection (opened at accept, so no pool logic on the path). A request
 * is read until its blank line (GET without a body, as wrk sends), written
 * upstream as is; the response head is read until its blank line, its
 * Content-Length body after it, and all of it written to the client.
 *
 * epoll: edge-triggered, non-blocking read()/write() — four syscalls per
 * request plus a share of epoll_wait, as tollgate's sock.c does today.
 * uring: multishot accept, multishot receive into a provided-buffer ring
 * (no read buffer held by an idle connection), sends queued in the
 * submission ring and submitted with the wait for completions: one
 * io_uring_enter per loop iteration for everything.
 *
 * Not part of tollgate: bench/run_uring_proto.sh builds and runs it
 * beside tollgate (bench/RESULTS.md, "io_uring: measured first").
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
#define BUF 16384
#define RING_BUFS 1024 /* provided buffers (power of two) */
#define BGID 1

typedef struct side {
    char in[BUF];
    size_t in_len;
} side_t;

typedef struct pair {
    int client, upstream;
    side_t req, resp;        /* bytes read from the client / the upstream */
    size_t resp_need;        /* whole response length once the head is parsed (0: unknown) */
} pair_t;

static pair_t *by_fd[MAX_FDS];
static struct sockaddr_in upstream_addr;

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
        perror("listen");
        exit(1);
    }
    return fd;
}

static int connect_upstream(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (connect(fd, (struct sockaddr *)&upstream_addr, sizeof(upstream_addr)) < 0) {
        perror("connect upstream");
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static pair_t *pair_new(int client)
{
    int up = connect_upstream();
    if (up < 0 || client >= MAX_FDS || up >= MAX_FDS) {
        close(client);
        if (up >= 0)
            close(up);
        return NULL;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    pair_t *p = calloc(1, sizeof(*p));
    p->client = client;
    p->upstream = up;
    by_fd[client] = by_fd[up] = p;
    return p;
}

static void pair_free(pair_t *p)
{
    by_fd[p->client] = by_fd[p->upstream] = NULL;
    close(p->client);
    close(p->upstream);
    free(p);
}

/* The end of a head ("\r\n\r\n") in buf, or 0. */
static size_t head_end(const char *buf, size_t len)
{
    const char *e = memmem(buf, len, "\r\n\r\n", 4);
    return e ? (size_t)(e - buf) + 4 : 0;
}

/* A response's whole length once its head is here (Content-Length), or 0. */
static size_t response_length(const char *buf, size_t len)
{
    size_t h = head_end(buf, len);
    if (h == 0)
        return 0;
    const char *cl = memmem(buf, h, "ontent-Length:", 14);
    if (cl == NULL)
        cl = memmem(buf, h, "ontent-length:", 14);
    return h + (cl ? strtoul(cl + 14, NULL, 10) : 0);
}

/* Bytes arrived on fd: returns what to write and where (*to, *len), or 0
 * if nothing is complete yet. The forwarding logic both layers share. */
static int on_bytes(pair_t *p, int fd, const char *data, size_t n, int *to, const char **out, size_t *len)
{
    side_t *s = fd == p->client ? &p->req : &p->resp;
    if (s->in_len + n > BUF)
        return -1;
    memcpy(s->in + s->in_len, data, n);
    s->in_len += n;
    if (fd == p->client) {
        size_t h = head_end(s->in, s->in_len);
        if (h == 0)
            return 0;
        *to = p->upstream;
        *out = s->in;
        *len = h;
        return 1;
    }
    if (p->resp_need == 0)
        p->resp_need = response_length(s->in, s->in_len);
    if (p->resp_need == 0 || s->in_len < p->resp_need)
        return 0;
    *to = p->client;
    *out = s->in;
    *len = p->resp_need;
    return 1;
}

/* After the write of a complete message: forget it. */
static void consumed(pair_t *p, int to)
{
    side_t *s = to == p->upstream ? &p->req : &p->resp;
    size_t used = to == p->upstream ? head_end(s->in, s->in_len) : p->resp_need;
    memmove(s->in, s->in + used, s->in_len - used);
    s->in_len -= used;
    if (to == p->client)
        p->resp_need = 0;
}

/* ---- epoll ---- */

static void run_epoll(int lfd)
{
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    char buf[BUF];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    pair_t *p = pair_new(c);
                    if (p == NULL)
                        continue;
                    int nb = 1;
                    ioctl(p->upstream, FIONBIO, &nb);
                    struct epoll_event e1 = { .events = EPOLLIN | EPOLLET, .data.fd = p->client };
                    struct epoll_event e2 = { .events = EPOLLIN | EPOLLET, .data.fd = p->upstream };
                    epoll_ctl(ep, EPOLL_CTL_ADD, p->client, &e1);
                    epoll_ctl(ep, EPOLL_CTL_ADD, p->upstream, &e2);
                }
                continue;
            }
            pair_t *p = by_fd[fd];
            if (p == NULL)
                continue;
            for (;;) {
                ssize_t r = read(fd, buf, sizeof(buf));
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    pair_free(p);
                    break;
                }
                if (r < 0)
                    break;
                int to;
                const char *out;
                size_t len;
                int k = on_bytes(p, fd, buf, (size_t)r, &to, &out, &len);
                if (k < 0) {
                    pair_free(p);
                    break;
                }
                if (k == 1) {
                    if (write(to, out, len) != (ssize_t)len) { /* small messages: a short write is a failure here */
                        pair_free(p);
                        break;
                    }
                    consumed(p, to);
                }
                if ((size_t)r < sizeof(buf))
                    break; /* drained (edge-triggered: as sock.c assumes) */
            }
        }
    }
}

/* ---- io_uring ---- */

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND };

static uint64_t tag(int op, int fd)
{
    return (uint64_t)op << 32 | (uint32_t)fd;
}

static void arm_recv(struct io_uring *ring, int fd)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, tag(OP_RECV, fd));
}

static void run_uring(int lfd)
{
    struct io_uring ring;
    /* URING_PLAIN=1 in the environment: no SINGLE_ISSUER / DEFER_TASKRUN (completions run as task work
     * at any kernel entry instead of only in io_uring_enter) */
    struct io_uring_params params = { .flags = getenv("URING_PLAIN") ? 0u
                                                                       : IORING_SETUP_SINGLE_ISSUER |
                                                                             IORING_SETUP_DEFER_TASKRUN };
    if (io_uring_queue_init_params(4096, &ring, &params) < 0) {
        params.flags = 0;
        if (io_uring_queue_init_params(4096, &ring, &params) < 0) {
            perror("io_uring_queue_init");
            exit(1);
        }
    }
    /* liburing 2.3 (Debian 12) has no io_uring_setup_buf_ring: register the ring by hand */
    struct io_uring_buf_ring *br = NULL;
    if (posix_memalign((void **)&br, 4096, RING_BUFS * sizeof(struct io_uring_buf)) != 0)
        exit(1);
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = RING_BUFS, .bgid = BGID };
    int err = io_uring_register_buf_ring(&ring, &reg, 0);
    if (err < 0) {
        fprintf(stderr, "provided buffer ring: %s\n", strerror(-err));
        exit(1);
    }
    char *bufs = malloc((size_t)RING_BUFS * 2048);
    for (int i = 0; i < RING_BUFS; i++)
        io_uring_buf_ring_add(br, bufs + (size_t)i * 2048, 2048, (unsigned short)i, io_uring_buf_ring_mask(RING_BUFS),
                              i);
    io_uring_buf_ring_advance(br, RING_BUFS);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, lfd));
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            int op = (int)(cqe->user_data >> 32), fd = (int)(uint32_t)cqe->user_data;
            if (op == OP_ACCEPT) {
                if (cqe->res >= 0) {
                    pair_t *p = pair_new(cqe->res);
                    if (p != NULL) {
                        arm_recv(&ring, p->client);
                        arm_recv(&ring, p->upstream);
                    }
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) {
                    sqe = io_uring_get_sqe(&ring);
                    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
                    io_uring_sqe_set_data64(sqe, tag(OP_ACCEPT, lfd));
                }
                continue;
            }
            if (op == OP_SEND) {
                pair_t *p = by_fd[fd];
                if (p != NULL && cqe->res < 0)
                    pair_free(p);
                else if (p != NULL)
                    consumed(p, fd); /* the message left: its bytes may go */
                continue;
            }
            pair_t *p = by_fd[fd];
            if (cqe->res <= 0 || !(cqe->flags & IORING_CQE_F_BUFFER)) {
                if (cqe->res == -ENOBUFS && p != NULL) {
                    arm_recv(&ring, fd);
                    continue;
                }
                if (p != NULL && !(cqe->flags & IORING_CQE_F_MORE))
                    pair_free(p);
                continue;
            }
            unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
            char *data = bufs + (size_t)bid * 2048;
            if (p != NULL) {
                int to;
                const char *out;
                size_t len;
                int k = on_bytes(p, fd, data, (size_t)cqe->res, &to, &out, &len);
                if (k < 0) {
                    pair_free(p);
                } else if (k == 1) {
                    /* sent from the pair's own buffer, consumed when the send completes (the peer
                     * answers only after it has the message, so nothing else lands there meanwhile);
                     * submitted with everything else of this iteration */
                    sqe = io_uring_get_sqe(&ring);
                    io_uring_prep_send(sqe, to, out, len, MSG_NOSIGNAL);
                    io_uring_sqe_set_data64(sqe, tag(OP_SEND, to));
                }
                if (p != NULL && by_fd[fd] == p && !(cqe->flags & IORING_CQE_F_MORE))
                    arm_recv(&ring, fd);
            }
            io_uring_buf_ring_add(br, data, 2048, (unsigned short)bid, io_uring_buf_ring_mask(RING_BUFS), 0);
            io_uring_buf_ring_advance(br, 1);
        }
        io_uring_cq_advance(&ring, seen);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s epoll|uring LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    upstream_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
    upstream_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = listen_on(atoi(argv[2]));
    if (strcmp(argv[1], "uring") == 0)
        run_uring(lfd);
    else {
        int fl = 1;
        ioctl(lfd, FIONBIO, &fl);
        run_epoll(lfd);
    }
    return 0;
}
