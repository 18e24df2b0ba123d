/*
 * proxy/syncall.c — see syncall.h.
 *
 * One connection per endpoint tried, one stream: nghttp2's client
 * session in memory mode (mem_send / mem_recv) over a non-blocking
 * socket that poll() waits on against the call's deadline; TLS through
 * the cluster's client context. Nothing here runs on a worker's path.
 */
#include "proxy/syncall.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/base/clock.h"
#include "proxy/cluster.h"
#include "tls/context.h"

#define WINDOW (16u << 20) /* the answer flows without window updates up to this */

typedef struct call {
    const tg_filter_call_t *c;
    uint64_t deadline;
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    int32_t stream;
    size_t body_off;            /* request body sent so far */
    /* the answer */
    int status;
    int closed;                 /* the stream ended (error: its code) */
    uint32_t close_error;
    tg_arena_t arena;
    tg_headers_t headers, trailers;
    int in_trailers;
    char *body;
    size_t body_len, body_cap;
    int too_long;
    char why[200];
} call_t;

static int remaining_ms(const call_t *k)
{
    uint64_t now = tg_clock_ms();
    return now >= k->deadline ? 0 : (int)(k->deadline - now > 60000 ? 60000 : k->deadline - now);
}

/* Waits for the socket (events); 0, or -1 at the deadline. */
static int wait_fd(call_t *k, short events)
{
    for (;;) {
        int ms = remaining_ms(k);
        if (ms == 0)
            return -1;
        struct pollfd p = { .fd = k->fd, .events = events };
        int rc = poll(&p, 1, ms);
        if (rc > 0)
            return 0;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

/* Writes all of buf; -1 on error or timeout. */
static int write_all(call_t *k, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n;
        short want = POLLOUT;
        if (k->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_write(k->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
            n = r > 0 ? r : -1;
            if (r <= 0) {
                int e = SSL_get_error(k->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    return -1;
                want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            }
        } else {
            n = send(k->fd, buf, len, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
        }
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (wait_fd(k, want) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Reads what is there (waiting for some): >0 bytes, 0 at EOF, -1. */
static ssize_t read_some(call_t *k, uint8_t *buf, size_t cap)
{
    for (;;) {
        short want = POLLIN;
        if (k->ssl != NULL) {
            ERR_clear_error();
            int r = SSL_read(k->ssl, buf, (int)cap);
            if (r > 0)
                return r;
            int e = SSL_get_error(k->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                return -1;
            want = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        } else {
            ssize_t n = recv(k->fd, buf, cap, 0);
            if (n >= 0)
                return n;
            if (errno != EAGAIN && errno != EINTR)
                return -1;
        }
        if (wait_fd(k, want) < 0)
            return -1;
    }
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *arg)
{
    (void)s, (void)flags;
    call_t *k = arg;
    if (f->hd.stream_id != k->stream)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] - '0');
        if (k->status == 0 || (k->status >= 100 && k->status < 200))
            k->status = valuelen == 3 ? st : 0;
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return 0;
    tg_headers_t *h = k->in_trailers ? &k->trailers : &k->headers;
    char *n = tg_arena_alloc(&k->arena, namelen + 1), *v = tg_arena_alloc(&k->arena, valuelen + 1);
    if (n == NULL || v == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(n, name, namelen);
    n[namelen] = '\0';
    memcpy(v, value, valuelen);
    v[valuelen] = '\0';
    return tg_headers_add(h, &k->arena, n, namelen, v, valuelen) < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)s;
    call_t *k = arg;
    /* a second HEADERS on the stream after a final status: the trailers */
    if (f->hd.stream_id == k->stream && k->status >= 200)
        k->in_trailers = 1;
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data, size_t len, void *arg)
{
    (void)s, (void)flags;
    call_t *k = arg;
    if (stream != k->stream || k->too_long)
        return 0;
    if (len > k->c->max_body - k->body_len) {
        k->too_long = 1;
        return 0;
    }
    if (k->body_len + len > k->body_cap) {
        size_t cap = k->body_cap ? k->body_cap : 4096;
        while (cap < k->body_len + len)
            cap *= 2;
        char *nb = realloc(k->body, cap);
        if (nb == NULL)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        k->body = nb;
        k->body_cap = cap;
    }
    memcpy(k->body + k->body_len, data, len);
    k->body_len += len;
    return 0;
}

static int on_close(nghttp2_session *s, int32_t stream, uint32_t error, void *arg)
{
    (void)s;
    call_t *k = arg;
    if (stream == k->stream) {
        k->closed = 1;
        k->close_error = error;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *arg)
{
    (void)s, (void)stream, (void)src;
    call_t *k = arg;
    size_t left = k->c->body_len - k->body_off, n = left < len ? left : len;
    if (n > 0)
        memcpy(buf, k->c->body + k->body_off, n);
    k->body_off += n;
    if (k->body_off == k->c->body_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- one endpoint ---- */

static int connect_to(call_t *k, const struct sockaddr *sa, socklen_t len)
{
    k->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0)
        return -1;
    if (connect(k->fd, sa, len) == 0)
        return 0;
    if (errno != EINPROGRESS || wait_fd(k, POLLOUT) < 0)
        return -1;
    int err = 0;
    socklen_t el = sizeof(err);
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

static int handshake(call_t *k, const tg_cluster_t *cl, const char *host)
{
    if ((k->ssl = tg_tls_client_ssl(cl->tls, host)) == NULL || SSL_set_fd(k->ssl, k->fd) != 1)
        return -1;
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(k->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(k->ssl, r);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
            wait_fd(k, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT) < 0) {
            char buf[160];
            snprintf(k->why, sizeof(k->why), "TLS handshake failed: %s", tg_tls_last_error(buf, sizeof(buf)));
            return -1;
        }
    }
    if (!tg_tls_alpn_is_h2(k->ssl)) {
        snprintf(k->why, sizeof(k->why), "the endpoint did not choose h2 in ALPN");
        return -1;
    }
    return 0;
}

static int exchange(call_t *k, const tg_cluster_t *cl, const char *authority)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    int rc = nghttp2_session_client_new(&k->h2, cbs, k);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return -1;
    nghttp2_settings_entry set[] = { { NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
                                     { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW } };
    if (nghttp2_submit_settings(k->h2, NGHTTP2_FLAG_NONE, set, 2) != 0 ||
        nghttp2_session_set_local_window_size(k->h2, NGHTTP2_FLAG_NONE, 0, WINDOW) != 0)
        return -1;
    const tg_filter_call_t *c = k->c;
    size_t n = 0, cap = 6 + c->n_headers;
    nghttp2_nv *nv = calloc(cap, sizeof(*nv));
    if (nv == NULL)
        return -1;
#define NV(nm, val)                                                                                                    \
    nv[n++] = (nghttp2_nv){ (uint8_t *)(nm), (uint8_t *)(val), strlen(nm), strlen(val), NGHTTP2_NV_FLAG_NONE }
    NV(":method", c->method);
    NV(":scheme", cl->tls ? "https" : "http");
    NV(":path", c->path);
    NV(":authority", c->authority ? c->authority : authority);
    if (c->grpc)
        NV("te", "trailers");
    for (size_t i = 0; i < c->n_headers; i++)
        NV(c->headers[2 * i], c->headers[2 * i + 1]);
#undef NV
    nghttp2_data_provider dp = { .read_callback = read_body };
    k->stream = nghttp2_submit_request(k->h2, NULL, nv, n, c->body ? &dp : NULL, k);
    free(nv);
    if (k->stream < 0)
        return -1;
    uint8_t buf[16384];
    while (!k->closed) {
        const uint8_t *out;
        ssize_t w;
        while ((w = nghttp2_session_mem_send(k->h2, &out)) > 0)
            if (write_all(k, out, (size_t)w) < 0) {
                snprintf(k->why, sizeof(k->why), remaining_ms(k) == 0 ? "timed out" : "write failed: %s",
                         strerror(errno));
                return -1;
            }
        if (w < 0) {
            snprintf(k->why, sizeof(k->why), "HTTP/2: %s", nghttp2_strerror((int)w));
            return -1;
        }
        if (k->closed)
            break;
        if (remaining_ms(k) == 0) { /* an upstream that never stops sending does not hold the load */
            snprintf(k->why, sizeof(k->why), "timed out");
            return -1;
        }
        ssize_t r = read_some(k, buf, sizeof(buf));
        if (r <= 0) {
            snprintf(k->why, sizeof(k->why), r == 0 ? "the connection closed before the answer ended"
                                                      : remaining_ms(k) == 0 ? "timed out" : "read failed");
            return -1;
        }
        if (nghttp2_session_mem_recv(k->h2, buf, (size_t)r) < 0) {
            snprintf(k->why, sizeof(k->why), "a malformed HTTP/2 answer");
            return -1;
        }
    }
    if (!k->closed)
        return -1;
    if (k->close_error != 0 || k->status == 0) {
        snprintf(k->why, sizeof(k->why), "the stream was reset (HTTP/2 error %u)", k->close_error);
        return -1;
    }
    if (k->too_long) {
        snprintf(k->why, sizeof(k->why), "the answer is longer than %zu bytes", c->max_body);
        return -1;
    }
    return 0;
}

static void reset(call_t *k)
{
    nghttp2_session_del(k->h2);
    k->h2 = NULL;
    if (k->ssl != NULL)
        SSL_free(k->ssl);
    k->ssl = NULL;
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    tg_arena_free(&k->arena);
    tg_arena_init(&k->arena);
    memset(&k->headers, 0, sizeof(k->headers));
    memset(&k->trailers, 0, sizeof(k->trailers));
    free(k->body);
    k->body = NULL;
    k->body_len = k->body_cap = k->body_off = 0;
    k->status = k->closed = k->in_trailers = k->too_long = 0;
    k->close_error = 0;
    k->stream = 0;
}

/* One try at one address: 0 answered, -1 with k->why. */
static int try_address(call_t *k, const tg_cluster_t *cl, const struct sockaddr *sa, socklen_t len, const char *host,
                       const char *authority)
{
    reset(k);
    if (connect_to(k, sa, len) < 0) {
        snprintf(k->why, sizeof(k->why), "connect to %s: %s", authority,
                 remaining_ms(k) == 0 ? "timed out" : strerror(errno));
        return -1;
    }
    if (cl->tls != NULL && handshake(k, cl, host) < 0)
        return -1;
    k->why[0] = '\0';
    if (exchange(k, cl, authority) < 0) {
        if (k->why[0] == '\0')
            snprintf(k->why, sizeof(k->why), "out of memory");
        char tmp[sizeof(k->why)];
        snprintf(tmp, sizeof(tmp), "%.60s: %.130s", authority, k->why);
        memcpy(k->why, tmp, sizeof(tmp));
        return -1;
    }
    return 0;
}

void tg_syncall(const tg_snapshot_t *snap, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg)
{
    call_t k = { .c = c, .deadline = tg_clock_ms() + c->timeout_ms, .fd = -1 };
    tg_arena_init(&k.arena);
    const tg_cluster_t *cl = NULL;
    for (size_t i = 0; snap->clusters != NULL && i < snap->clusters->n_clusters && cl == NULL; i++)
        if (strcmp(snap->clusters->clusters[i].conf->name, c->cluster) == 0)
            cl = &snap->clusters->clusters[i];
    int ok = 0;
    if (cl == NULL) {
        snprintf(k.why, sizeof(k.why), "no cluster '%s'", c->cluster);
    } else if (cl->conf->protocol == TG_PROTO_HTTP1) {
        snprintf(k.why, sizeof(k.why), "cluster '%s' speaks HTTP/1.1 (protocol: h2c or h2 is needed)", c->cluster);
    } else {
        snprintf(k.why, sizeof(k.why), "cluster '%s' has no endpoint", c->cluster);
        for (size_t i = 0; i < cl->n_endpoints && !ok && remaining_ms(&k) > 0; i++) {
            const tg_endpoint_t *ep = &cl->endpoints[i];
            ok = try_address(&k, cl, (const struct sockaddr *)&ep->addr, ep->addr_len, ep->conf->host,
                             ep->conf->address) == 0;
        }
        /* a check (-t) resolves no names: look them up here */
        const tg_cluster_conf_t *cc = cl->conf;
        for (size_t j = 0; cl->n_endpoints == 0 && j < cc->n_endpoints && !ok && remaining_ms(&k) > 0; j++) {
            const tg_endpoint_conf_t *ec = &cc->endpoints[j];
            struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
            char port[8];
            snprintf(port, sizeof(port), "%u", ec->port);
            if (getaddrinfo(ec->host, port, &hints, &res) != 0) {
                snprintf(k.why, sizeof(k.why), "%s: the name does not resolve", ec->address);
                continue;
            }
            for (struct addrinfo *a = res; a != NULL && !ok; a = a->ai_next)
                ok = try_address(&k, cl, a->ai_addr, a->ai_addrlen, ec->host, ec->address) == 0;
            freeaddrinfo(res);
        }
    }
    tg_filter_call_result_t r = { .status = ok ? k.status : 0,
                                  .error = ok ? NULL : k.why,
                                  .headers = &k.headers,
                                  .trailers = &k.trailers,
                                  .body = k.body ? k.body : "",
                                  .body_len = k.body_len };
    cb(arg, &r);
    reset(&k);
    tg_arena_free(&k.arena);
}

static int prep_call(const tg_filter_prep_t *p, const tg_filter_call_t *c, tg_filter_call_cb cb, void *arg)
{
    tg_syncall(p->impl, c, cb, arg);
    return 0;
}

tg_filter_prep_t tg_syncall_prep(const tg_snapshot_t *snap)
{
    return (tg_filter_prep_t){ .call = prep_call, .impl = (void *)snap };
}
