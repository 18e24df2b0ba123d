/*
 * proxy/admin.c — see admin.h.
 */
#include "proxy/admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "proxy/base/arena.h"
#include "proxy/h1_codec.h"
#include "proxy/base/log.h"
#include "proxy/base/loop.h"
#include "proxy/sock.h"

#define ADMIN_MAX_HEADER (16 * 1024)
#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_IO_TIMEOUT_MS 10000 /* a scrape or a reload call that stalls this long is dropped */
#define ADMIN_BACKLOG 128

typedef struct admin_conn {
    LIST_ENTRY(admin_conn) link;
    tg_admin_t *admin;
    tg_sock_t *sock;
    tg_h1_reader_t reader;
    tg_arena_t arena;
    tg_request_t req;
    struct evbuffer *discard;
    int state; /* 0 head, 1 body, 2 answered */
} admin_conn_t;

struct tg_admin {
    struct evconnlistener *lev;
    tg_sock_loop_t *loop;
    tg_admin_handler_fn fn;
    void *ctx;
    LIST_HEAD(, admin_conn) conns;
    uint32_t n_conns, max_conns;
    uint64_t rejected;
};

static void conn_free(admin_conn_t *c)
{
    c->admin->n_conns--;
    LIST_REMOVE(c, link);
    tg_sock_free(c->sock);
    tg_arena_free(&c->arena);
    evbuffer_free(c->discard);
    free(c);
}

static void respond(admin_conn_t *c, int status, const char *ctype, const char *extra, struct evbuffer *body)
{
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\nx-content-type-options: "
                     "nosniff\r\ncache-control: no-store\r\n%sconnection: close\r\n\r\n",
                     status, tg_http_reason(status), ctype, evbuffer_get_length(body), extra);
    if (n < 0 || (size_t)n >= sizeof(head)) {
        evbuffer_drain(body, evbuffer_get_length(body));
        n = snprintf(head, sizeof(head), "HTTP/1.1 500 %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                     tg_http_reason(500));
    }
    struct evbuffer *out = tg_sock_out(c->sock);
    evbuffer_add(out, head, (size_t)n);
    if (!c->req.is_head)
        evbuffer_add_buffer(out, body);
    c->state = 2;
    tg_sock_set_write_lowat(c->sock, 0);
    tg_sock_pause_read(c->sock, 1);
    tg_sock_flush(c->sock);
}

static void answer(admin_conn_t *c)
{
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        conn_free(c);
        return;
    }
    tg_admin_reply_t reply = { .ctype = "application/json" };
    char path[1024];
    snprintf(path, sizeof(path), "%.*s", (int)c->req.path_len, c->req.target);
    int status = c->admin->fn(c->admin->ctx, &c->req, path, body, &reply);
    respond(c, status, reply.ctype, reply.headers, body);
    evbuffer_free(body);
}

static void on_conn(tg_sock_t *s, int events, void *arg)
{
    admin_conn_t *c = arg;
    if (events & (TG_SOCK_ERROR | TG_SOCK_TIMEOUT)) {
        conn_free(c);
        return;
    }
    if (c->state == 2) {
        if (tg_sock_out_len(s) == 0)
            conn_free(c);
        return;
    }
    struct evbuffer *in = tg_sock_in(s);
    if (c->state == 0) {
        tg_h1_result_t r = tg_h1_read_request_head(&c->reader, in, ADMIN_MAX_HEADER, &c->arena, &c->req);
        tg_sock_consumed(s);
        if (r == TG_H1_ERROR) {
            struct evbuffer *b = evbuffer_new();
            evbuffer_add_printf(b, "{\"error\": \"%s\", \"status\": %d}\n", c->reader.error_msg, c->reader.error_status);
            respond(c, c->reader.error_status, "application/json", "", b);
            evbuffer_free(b);
            return;
        }
        if (r == TG_H1_AGAIN) {
            if (events & TG_SOCK_EOF)
                conn_free(c);
            return;
        }
        c->state = 1;
    }
    int fin = 0;
    if (tg_h1_read_body(&c->reader, in, c->discard, ADMIN_MAX_BODY, (events & TG_SOCK_EOF) != 0, &fin) < 0) {
        conn_free(c);
        return;
    }
    tg_sock_consumed(s);
    evbuffer_drain(c->discard, evbuffer_get_length(c->discard));
    if (fin)
        answer(c);
    else if (events & TG_SOCK_EOF)
        conn_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    tg_admin_t *a = arg;
    if (a->n_conns >= a->max_conns) {
        a->rejected++;
        close(fd);
        return;
    }
    admin_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->discard = evbuffer_new()) == NULL || (c->sock = tg_sock_new(a->loop, fd)) == NULL) {
        if (c && c->discard)
            evbuffer_free(c->discard);
        free(c);
        close(fd);
        return;
    }
    c->admin = a;
    tg_arena_init(&c->arena);
    tg_h1_reader_init(&c->reader, TG_H1_REQUEST);
    c->reader.max_body = ADMIN_MAX_BODY;
    LIST_INSERT_HEAD(&a->conns, c, link);
    a->n_conns++;
    tg_sock_set_cb(c->sock, on_conn, c);
    tg_sock_set_timeout(c->sock, ADMIN_IO_TIMEOUT_MS);
    tg_sock_set_read_limit(c->sock, ADMIN_MAX_HEADER + ADMIN_MAX_BODY);
}

tg_admin_t *tg_admin_start(tg_loop_t *loop, const char *host, uint16_t port, tg_admin_handler_fn fn,
                           void *ctx, tg_errors_t *errs)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        tg_errors_add(errs, "admin: cannot resolve %s: %s", host, gai_strerror(rc));
        return NULL;
    }
    tg_admin_t *a = calloc(1, sizeof(*a));
    struct event_base *base = tg_loop_base(loop);
    if (a == NULL || (a->loop = tg_sock_loop_new(loop, 0)) == NULL) {
        free(a);
        freeaddrinfo(res);
        tg_errors_add(errs, "admin: out of memory");
        return NULL;
    }
    a->fn = fn;
    a->ctx = ctx;
    LIST_INIT(&a->conns);
    a->max_conns = TG_DEFAULT_ADMIN_MAX_CONNECTIONS;
    a->lev = evconnlistener_new_bind(base, on_accept, a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, ADMIN_BACKLOG,
                                     res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (a->lev == NULL) {
        tg_errors_add(errs, "admin: cannot listen on %s:%u: %s", host, port, strerror(errno));
        tg_sock_loop_free(a->loop);
        free(a);
        return NULL;
    }
    return a;
}

void tg_admin_free(tg_admin_t *a)
{
    if (a == NULL)
        return;
    evconnlistener_free(a->lev);
    while (!LIST_EMPTY(&a->conns))
        conn_free(LIST_FIRST(&a->conns));
    tg_sock_loop_free(a->loop);
    free(a);
}

void tg_admin_set_max_connections(tg_admin_t *a, uint32_t max)
{
    if (a != NULL)
        a->max_conns = max ? max : TG_DEFAULT_ADMIN_MAX_CONNECTIONS;
}

uint64_t tg_admin_rejected(const tg_admin_t *a)
{
    return a != NULL ? a->rejected : 0;
}
