/*
 * proxy/worker.c — worker threads. See worker.h.
 */
#include "proxy/worker.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "proxy/exchange.h"
#include "proxy/h1_server.h"
#include "proxy/log.h"
#include "proxy/sock.h"
#include "proxy/upstream.h"

typedef struct accept_ctx {
    tg_worker_t *w;
    size_t listener;
} accept_ctx_t;

/* Worker-private allocation behind tg_worker_t: the accept contexts. */
typedef struct worker_impl {
    tg_worker_t pub;
    accept_ctx_t *accept_ctx;
} worker_impl_t;

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    accept_ctx_t *ctx = arg;
    if (ctx->w->draining) {
        close(fd);
        return;
    }
    tg_h1_server_accept(ctx->w, fd, sa, ctx->listener);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    tg_warn("accept: %s", evutil_socket_error_to_string(err));
}

static void close_listeners(tg_worker_t *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i] != NULL) {
            evconnlistener_free(w->listeners[i]);
            w->listeners[i] = NULL;
        }
}

static void start_drain(tg_worker_t *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    close_listeners(w);
    tg_conn_node_t *n, *next;
    for (n = TAILQ_FIRST(&w->conns); n != NULL; n = next) {
        next = TAILQ_NEXT(n, link);
        n->on_drain(n);
    }
    if (w->n_conns == 0)
        event_base_loopexit(w->base, NULL);
}

/* Commands from other threads arrive as bytes on the worker's pipe. */
static void on_command(evutil_socket_t fd, short what, void *arg)
{
    tg_worker_t *w = arg;
    char cmds[16];
    ssize_t n;
    while ((n = read(fd, cmds, sizeof(cmds))) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (cmds[i] == 'd')
                start_drain(w);
            else if (cmds[i] == 's')
                event_base_loopbreak(w->base);
        }
}

static void send_command(tg_worker_t *w, char c)
{
    ssize_t r;
    do
        r = write(w->cmd_fd[1], &c, 1);
    while (r < 0 && errno == EINTR);
}

tg_worker_t *tg_worker_new(unsigned id, tg_snapshot_t *snap, const int *listen_fds, size_t n)
{
    worker_impl_t *impl = calloc(1, sizeof(*impl));
    if (impl == NULL)
        return NULL;
    tg_worker_t *w = &impl->pub;
    w->id = id;
    TAILQ_INIT(&w->conns);
    w->snap = tg_snapshot_ref(snap);
    w->cmd_fd[0] = w->cmd_fd[1] = -1;
    struct event_config *ec = event_config_new();
    if (ec != NULL) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        w->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    if (w->base == NULL || (w->sockloop = tg_sock_loop_new(w->base)) == NULL ||
        pipe2(w->cmd_fd, O_NONBLOCK | O_CLOEXEC) < 0)
        goto fail;
    impl->accept_ctx = calloc(n ? n : 1, sizeof(*impl->accept_ctx));
    w->listeners = calloc(n ? n : 1, sizeof(*w->listeners));
    if (w->base == NULL || impl->accept_ctx == NULL || w->listeners == NULL)
        goto fail;
    w->n_listeners = n;
    for (size_t i = 0; i < n; i++) {
        impl->accept_ctx[i] = (accept_ctx_t){ w, i };
        w->listeners[i] = evconnlistener_new(w->base, on_accept, &impl->accept_ctx[i], LEV_OPT_CLOSE_ON_FREE, -1,
                                             listen_fds[i]);
        if (w->listeners[i] == NULL)
            goto fail;
        evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
    }
    if (tg_upstream_pools_ensure(w, snap->clusters->n_slots) < 0)
        goto fail;
    w->cmd_ev = event_new(w->base, w->cmd_fd[0], EV_READ | EV_PERSIST, on_command, w);
    if (w->cmd_ev == NULL || event_add(w->cmd_ev, NULL) < 0)
        goto fail;
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (w->rng[0] | w->rng[1]) == 0) {
        w->rng[0] = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        w->rng[1] = 0xbf58476d1ce4e5b9ULL + id;
    }
    return w;
fail:
    tg_error("worker %u: cannot initialise", id);
    tg_worker_join_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    tg_worker_t *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the main thread */
    tg_debug("worker %u: running", w->id);
    event_base_dispatch(w->base);
    tg_debug("worker %u: stopped", w->id);
    return NULL;
}

int tg_worker_start(tg_worker_t *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    return 0;
}

void tg_worker_drain(tg_worker_t *w)
{
    send_command(w, 'd');
}

void tg_worker_stop(tg_worker_t *w)
{
    send_command(w, 's');
}

void tg_worker_join_free(tg_worker_t *w)
{
    worker_impl_t *impl = (worker_impl_t *)w;
    if (w->thread)
        pthread_join(w->thread, NULL);
    tg_conn_node_t *n;
    while ((n = TAILQ_FIRST(&w->conns)) != NULL)
        n->on_shutdown(n);
    close_listeners(w);
    tg_upstream_pools_free(w);
    tg_exchange_free_cache(w);
    if (w->cmd_ev)
        event_free(w->cmd_ev);
    for (int i = 0; i < 2; i++)
        if (w->cmd_fd[i] >= 0)
            close(w->cmd_fd[i]);
    tg_sock_loop_free(w->sockloop);
    if (w->base)
        event_base_free(w->base);
    tg_snapshot_unref(w->snap);
    free(w->listeners);
    free(impl->accept_ctx);
    free(impl);
}

void tg_worker_conn_add(tg_worker_t *w, tg_conn_node_t *n)
{
    TAILQ_INSERT_TAIL(&w->conns, n, link);
    w->n_conns++;
}

void tg_worker_conn_remove(tg_worker_t *w, tg_conn_node_t *n)
{
    TAILQ_REMOVE(&w->conns, n, link);
    w->n_conns--;
    if (w->draining && w->n_conns == 0)
        event_base_loopexit(w->base, NULL);
}

uint64_t tg_worker_random(tg_worker_t *w)
{
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}
