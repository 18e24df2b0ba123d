/*
 * proxy/conn.c — the connection base. See conn.h.
 */
#include "proxy/conn.h"

#include <event2/buffer.h>
#include <stddef.h>

#include "proxy/base/log.h"
#include "proxy/base/slab.h"

#define CONN_OF(n) ((tg_conn_t *)((char *)(n) - offsetof(tg_conn_t, node)))

static void release(tg_conn_t *c)
{
    tg_snapshot_unref(c->snap);
    c->snap = NULL;
    c->kind->on_free(c);
}

static void on_sock(tg_sock_t *s, int events, void *arg)
{
    tg_conn_t *c = arg;
    if (c->lingering) {
        evbuffer_drain(tg_sock_in(s), tg_sock_in_len(s));
        if (events & (TG_SOCK_EOF | TG_SOCK_ERROR))
            tg_conn_close(c);
        return;
    }
    c->kind->on_sock(c, events);
}

static void on_timer(tg_timer_t *t)
{
    tg_conn_t *c = TG_CONTAINER_OF(t, tg_conn_t, timer);
    if (c->lingering) {
        tg_conn_close(c); /* the peer never closed: enough */
        return;
    }
    if (c->timer_due == 0)
        return; /* turned off since it was armed */
    uint64_t now = tg_loop_now_us(tg_worker_loop(c->w));
    if (c->timer_due > now && tg_timer_after(tg_worker_loop(c->w), t, c->timer_due - now) == 0)
        return; /* moved later since: the rest */
    c->timer_due = 0;
    c->kind->on_timer(c);
}

static void on_defer(tg_deferred_t *d)
{
    tg_conn_t *c = TG_CONTAINER_OF(d, tg_conn_t, defer);
    if (c->dead)
        release(c);
    else
        c->kind->on_defer(c);
}

static void node_drain(tg_conn_node_t *n)
{
    tg_conn_t *c = CONN_OF(n);
    tg_debug("%s: draining", c->kind->name);
    c->kind->on_drain(c);
}

static int node_close_if_idle(tg_conn_node_t *n)
{
    tg_conn_t *c = CONN_OF(n);
    return c->dead ? 0 : c->kind->close_if_idle(c);
}

static void node_trim(tg_conn_node_t *n)
{
    tg_conn_t *c = CONN_OF(n);
    if (!c->dead && c->kind->trim != NULL)
        c->kind->trim(c);
}

static void node_shutdown(tg_conn_node_t *n)
{
    tg_conn_free_now(CONN_OF(n));
}

void tg_conn_rebase(tg_conn_t *c, struct tg_snapshot *next)
{
    if (c->dead || c->snap == next || c->kind->rebase == NULL || c->kind->rebase(c, next) < 0)
        return;
    tg_snapshot_t *old = c->snap;
    c->snap = tg_snapshot_ref(next);
    tg_snapshot_unref(old);
}

static void node_reload(tg_conn_node_t *n, struct tg_snapshot *next)
{
    tg_conn_rebase(CONN_OF(n), next);
}

int tg_conn_init(tg_conn_t *c, const tg_conn_kind_t *kind, tg_worker_t *w, tg_sock_t *sock, tg_snapshot_t *snap,
                 int listed)
{
    c->kind = kind;
    c->w = w;
    c->timer = (tg_timer_t){ .fn = on_timer };
    c->timer_due = 0;
    c->defer = (tg_deferred_t){ .fn = on_defer };
    c->sock = sock;
    c->snap = tg_snapshot_ref(snap);
    tg_sock_set_cb(sock, on_sock, c);
    if (listed) {
        c->listed = 1;
        static const tg_conn_node_ops_t node_ops = {
            .on_drain = node_drain,
            .close_if_idle = node_close_if_idle,
            .on_shutdown = node_shutdown,
            .on_reload = node_reload,
            .on_trim = node_trim,
        };
        c->node.ops = &node_ops;
        tg_worker_conn_add(w, &c->node);
    }
    return 0;
}

static void unlist(tg_conn_t *c)
{
    if (c->listed) {
        c->listed = 0;
        tg_worker_conn_remove(c->w, &c->node);
    }
}

void tg_conn_close(tg_conn_t *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->kind->on_close)
        c->kind->on_close(c);
    unlist(c);
    tg_timer_cancel(&c->timer);
    if (c->sock != NULL) {
        tg_sock_free(c->sock);
        c->sock = NULL;
    }
    tg_defer(tg_worker_loop(c->w), &c->defer);
}

void tg_conn_kick(tg_conn_t *c)
{
    if (!c->dead)
        tg_defer(tg_worker_loop(c->w), &c->defer);
}

void tg_conn_set_timer(tg_conn_t *c, uint64_t ms)
{
    if (ms == 0) {
        c->timer_due = 0;
        return;
    }
    tg_loop_t *l = tg_worker_loop(c->w);
    c->timer_due = tg_loop_now_us(l) + ms * 1000;
    if (tg_timer_pending(&c->timer) && c->timer.deadline_us <= c->timer_due)
        return;
    if (tg_timer_set(l, &c->timer, ms) < 0)
        c->timer_due = 0; /* logged: no timer rather than one that fires wrongly */
}

void tg_conn_linger(tg_conn_t *c, uint64_t ms)
{
    if (c->dead || c->lingering)
        return;
    if (tg_sock_peer_closed(c->sock)) {
        tg_conn_close(c);
        return;
    }
    c->lingering = 1;
    tg_sock_shutdown_write(c->sock);
    evbuffer_drain(tg_sock_in(c->sock), tg_sock_in_len(c->sock));
    tg_sock_set_read_limit(c->sock, 0);
    tg_sock_pause_read(c->sock, 0);
    tg_timer_set(tg_worker_loop(c->w), &c->timer, ms ? ms : 1);
}

tg_sock_t *tg_conn_hand_over(tg_conn_t *c)
{
    tg_sock_t *s = c->sock;
    c->sock = NULL;
    c->dead = 1;
    unlist(c);
    tg_timer_cancel(&c->timer);
    tg_defer(tg_worker_loop(c->w), &c->defer);
    return s;
}

void tg_conn_free_now(tg_conn_t *c)
{
    tg_conn_close(c);
    tg_defer_cancel(&c->defer); /* the loop is gone: it would never run */
    release(c);
}

int tg_conn_slab_init(tg_worker_t *w, tg_worker_mod_t id, size_t size)
{
    tg_slab_t *s = tg_slab_new(size);
    if (s == NULL)
        return -1;
    tg_worker_set_state(w, id, s);
    return 0;
}

void tg_conn_slab_free(tg_worker_t *w, tg_worker_mod_t id)
{
    tg_slab_destroy(tg_worker_state(w, id));
    tg_worker_set_state(w, id, NULL);
}
