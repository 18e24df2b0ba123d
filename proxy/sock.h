/*
 * proxy/sock.h — a non-blocking TCP socket with an input and an output
 * evbuffer, built for the proxy's hot path instead of libevent's
 * bufferevent:
 *
 *  - registered once with edge-triggered epoll for read and write, so
 *    keep-alive traffic costs no epoll_ctl at all;
 *  - reads go straight into reserved evbuffer space with one readv (no
 *    FIONREAD ioctl), until the input holds read_limit bytes (backpressure:
 *    the kernel keeps the rest until tg_sock_consumed());
 *  - writes are batched: tg_sock_flush() queues the socket on its loop and
 *    all queued sockets are written once per event-loop iteration, with
 *    one writev each; write interest is only "waited for" after EAGAIN;
 *  - with an io_uring (tg_sock_loop_new's batched), a batch's first reads
 *    and the turn's writes each go to the kernel in one submission.
 *
 * One callback per socket receives a mask of events. The callback may call
 * tg_sock_free() on any socket, its own included: memory is released when
 * the socket's current dispatch returns. Single-threaded: a socket belongs
 * to one worker's loop.
 */
#ifndef TG_PROXY_SOCK_H
#define TG_PROXY_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct tg_loop;
struct evbuffer;
typedef struct ssl_st SSL;

typedef struct tg_sock tg_sock_t;
typedef struct tg_sock_loop tg_sock_loop_t;

enum {
    TG_SOCK_READ = 1,       /* new bytes in the input buffer */
    TG_SOCK_EOF = 2,        /* the peer closed its side (after all its bytes) */
    TG_SOCK_WRITE = 4,      /* output drained to write_lowat or below */
    TG_SOCK_CONNECTED = 8,  /* an outgoing connect completed */
    TG_SOCK_ERROR = 16,     /* connect or I/O failed: tg_sock_error() says why */
    TG_SOCK_TIMEOUT = 32,   /* no progress for the configured timeout */
};

typedef void (*tg_sock_cb)(tg_sock_t *s, int events, void *arg);

/* The sockets of one thread's loop: their batched work runs as the
 * loop's turn (base/loop.h; one socket loop per loop). batched: reads and
 * writes go to the kernel through an io_uring, a batch of sockets' in one
 * syscall (see sock.c), where the kernel allows it; if it does not, and
 * with batched 0, one syscall each. */
tg_sock_loop_t *tg_sock_loop_new(struct tg_loop *loop, int batched);
void tg_sock_loop_free(tg_sock_loop_t *l);
/* 1 if reads and writes are batched; else 0, and *why (if not NULL) says
 * why: the errno that refused the ring (ENOSYS, EPERM under a seccomp
 * profile, ...), or 0 when batching was not asked for. */
int tg_sock_loop_batched(tg_sock_loop_t *l, int *why);
/* Submissions made and the reads and writes they carried. This and
 * tg_sock_loop_batched may be called from any thread (metrics). */
void tg_sock_loop_ring_counts(tg_sock_loop_t *l, uint64_t *batches, uint64_t *ops);

/* Wraps a connected (accepted) non-blocking socket; takes the fd. */
tg_sock_t *tg_sock_new(tg_sock_loop_t *l, int fd);
/* Starts a non-blocking connect; expect TG_SOCK_CONNECTED or
 * TG_SOCK_ERROR. NULL (errno set) if it failed at once. */
tg_sock_t *tg_sock_connect(tg_sock_loop_t *l, const struct sockaddr *sa, socklen_t len);
/* Closes the fd now; frees the memory once no dispatch is running on it. */
void tg_sock_free(tg_sock_t *s);

void tg_sock_set_cb(tg_sock_t *s, tg_sock_cb cb, void *arg);
/* The input and output buffers (a parked socket gets them back: the
 * caller is at work on it). Use them at once; do not keep the pointers
 * past the callback or call that got them (parking hands them on). */
struct evbuffer *tg_sock_in(tg_sock_t *s);
struct evbuffer *tg_sock_out(tg_sock_t *s);
/* Bytes waiting in the input / output, without unparking. */
size_t tg_sock_in_len(const tg_sock_t *s);
size_t tg_sock_out_len(const tg_sock_t *s);
/* The owner expects nothing for a while (an idle keep-alive connection):
 * the socket lets go of its buffers once both are empty — now, or when
 * the output has drained — to the loop's spares, and takes them back with
 * the next bytes that arrive or the next tg_sock_in/out. An idle
 * connection then holds no buffer; no allocation happens per request. */
void tg_sock_park(tg_sock_t *s);
int tg_sock_fd(const tg_sock_t *s);
int tg_sock_error(const tg_sock_t *s);

/* Stop reading while the input holds this many bytes (0: no limit). */
void tg_sock_set_read_limit(tg_sock_t *s, size_t limit);
/* Report TG_SOCK_WRITE when the output drains to this many bytes. */
void tg_sock_set_write_lowat(tg_sock_t *s, size_t lowat);
/* Fire TG_SOCK_TIMEOUT after ms without a successful read or write (0: off). */
void tg_sock_set_timeout(tg_sock_t *s, uint64_t ms);
/* Stop (1) or resume (0) reading. */
void tg_sock_pause_read(tg_sock_t *s, int paused);
/* The caller removed bytes from the input: resume reading if the read
 * limit had stopped it. */
void tg_sock_consumed(tg_sock_t *s);
/* The caller waits for more input. A read that came back short is taken
 * to have drained the socket, to save a syscall; but a reset that arrived
 * with the data is reported in the same wake-up, which libevent reduces to
 * READ|WRITE, and no later edge announces it. So a caller that is left
 * waiting after a short read calls this: one more read (from the loop)
 * finds EAGAIN, or the reset (TG_SOCK_ERROR). */
void tg_sock_need_more(tg_sock_t *s);
/* Queue the output for writing at the end of this loop iteration (for
 * pieces of a message still being produced). */
void tg_sock_flush(tg_sock_t *s);
/* Write the output now, for a complete message: one writev, no callback
 * from inside (an error or a remainder is handled from the loop). On a
 * batched loop: at the loop's turn, with the other sockets' writes. */
void tg_sock_flush_now(tg_sock_t *s);
/* A complete message, its head copied and its body by reference: written
 * now in one write when nothing is queued before it (plain TCP), else, and
 * for what that write left, queued for the loop (on a batched loop: always
 * queued, the head copied, and written at the loop's turn). done(body, blen, arg)
 * runs once the body's bytes are gone (before returning, when they went
 * at once) and on failure; with no done, what is left of the body is
 * copied like the head's. 0, or -1 when out of memory (the socket is then
 * unusable for this message). */
int tg_sock_write_ref(tg_sock_t *s, const void *head, size_t hlen, const void *body, size_t blen,
                      void (*done)(const void *data, size_t len, void *arg), void *arg);
/* Has the peer closed its side (EOF read, or a FIN announced)? */
int tg_sock_peer_closed(const tg_sock_t *s);
/* After TG_SOCK_EOF: did the peer end cleanly? Always for TCP; for TLS
 * only when it sent close_notify first. */
int tg_sock_eof_clean(const tg_sock_t *s);
/* Half-close: no more output (after what is queued is written; with TLS,
 * a close_notify first). */
void tg_sock_shutdown_write(tg_sock_t *s);

/* Runs TLS over the socket from now on; the socket owns ssl (made in
 * accept or connect state) on success. The handshake runs first (for an
 * outgoing socket, once the TCP connect is done); TG_SOCK_CONNECTED
 * reports its end, TG_SOCK_ERROR its failure. Returns 0, or -1 (out of
 * memory; ssl still the caller's). */
int tg_sock_start_tls(tg_sock_t *s, SSL *ssl);
/* The socket's TLS session, or NULL. */
SSL *tg_sock_ssl(const tg_sock_t *s);
/* Why the connection failed, for logs (a TLS alert or the OS error). */
const char *tg_sock_tls_error(const tg_sock_t *s, char *buf, size_t len);

#endif
