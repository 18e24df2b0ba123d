/*
 * proxy/worker.c — worker threads. See worker.h.
 */
#include "proxy/worker.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/base/clock.h"
#include "proxy/base/mem.h"
#include "proxy/base/loop.h"
#include "proxy/base/pages.h"
#include "proxy/base/log.h"
#include "proxy/sock.h"
#include "proxy/stats.h"

static void send_command(tg_worker_t *w, char c);
static void take_posts(tg_worker_t *w, int cancelled);

struct tg_worker {
    unsigned id;
    unsigned n_workers;              /* workers in the process (for each one's share of max_connections) */
    pthread_t thread;
    int joined;
    const tg_worker_setup_t *setup;  /* the protocol stack: modules and entry points */
    void *mods[TG_WMOD_N];           /* the modules' per-worker state */
    struct event_base *base;         /* lock-free: only this thread touches it */
    tg_loop_t *loop;                 /* its timers and deferred calls (base/loop.h) */
    tg_sock_loop_t *sockloop;
    tg_snapshot_t *snap;             /* current snapshot (one reference) */
    tg_listener_slot_t **listeners;  /* one per config listener, same order */
    size_t n_listeners;
    tg_listener_slot_t *retired;     /* slots of listeners removed by reloads */
    pthread_mutex_t mbox_lock;       /* guards mbox: the only cross-thread data */
    tg_reload_msg_t *mbox;           /* snapshots published by the main thread */
    TAILQ_HEAD(, tg_conn_node) conns;
    size_t n_conns;
    int cmd_fd[2];                   /* pipe: other threads send 'd' (drain), 'r' (reload), 'p' (posts) or 's' (stop) */
    _Atomic(tg_post_t *) posts;      /* tg_worker_post: pushed by any thread, newest first */
    struct event *cmd_ev;
    int draining;
    uint64_t rng[2];                 /* xorshift128+ state */
    tg_mem_t *mem;                   /* this thread's block cache: libevent's and nghttp2's allocations */
    tg_pages_t *pages;               /* ... and its page blocks (nghttp2's that go back while idle) */
    tg_timer_t trim;                 /* gives back what the caches have not used for a while */
    tg_stats_t *stats;               /* written by this worker only; summed by /metrics */
    tg_health_t *health;             /* the process's endpoint health table (shared) */
    struct tg_tracer *tracer;        /* the process's span exporter (shared; NULL: none) */
    size_t n_inited;                 /* modules initialised (torn down in reverse) */
};

struct tg_reload_msg {
    tg_reload_msg_t *next;
    tg_snapshot_t *snap;
    size_t n;
    int fds[];
};

#define ACCEPT_PAUSE_MIN_MS 25     /* first pause when descriptors run out */
#define ACCEPT_PAUSE_MAX_MS 1000   /* the backoff doubles up to this */
#define IDLE_CLOSE_BATCH 32        /* idle connections closed per pause, oldest first */
#define MEM_CACHE_MAX (8u << 20)   /* free blocks a worker keeps for reuse, at most */
#define MEM_TRIM_S 5               /* blocks unused for this long go back to the C library */

static const char *slot_name(const tg_listener_slot_t *slot)
{
    const tg_config_t *c = slot->w->snap->cfg;
    return slot->index < c->n_listeners ? c->listeners[slot->index].name : "(removed)";
}

/* Closes up to max idle connections, oldest first, to free descriptors. */
static size_t close_idle_connections(tg_worker_t *w, size_t max)
{
    size_t closed = 0;
    tg_conn_node_t *n = TAILQ_FIRST(&w->conns), *next;
    for (; n != NULL && closed < max; n = next) {
        next = TAILQ_NEXT(n, link);
        if (n->ops->close_if_idle != NULL && n->ops->close_if_idle(n))
            closed++;
    }
    return closed;
}

static void on_resume_accept(tg_timer_t *t)
{
    tg_listener_slot_t *slot = TG_CONTAINER_OF(t, tg_listener_slot_t, resume);
    if (slot->lev != NULL && !slot->w->draining)
        evconnlistener_enable(slot->lev);
}

/* accept() failed for want of descriptors or kernel memory: the socket
 * stays readable, so retrying at once would spin. Pause this listener,
 * make room by closing idle connections, try again after a backoff. */
static void pause_accepting(tg_listener_slot_t *slot, int err)
{
    tg_worker_t *w = slot->w;
    slot->accept_failures++;
    if (slot->pause_ms == 0) {
        slot->pause_ms = ACCEPT_PAUSE_MIN_MS;
        slot->episode_start_ms = tg_clock_coarse_ms();
        tg_counter_add(&tg_stats_listener(w->stats, slot->stats_slot)->accept_pauses, 1);
        tg_error("listener %s (worker %u): accept: %s; pausing accepts and closing idle connections until "
                 "descriptors free up", slot_name(slot), w->id, strerror(err));
    } else if (slot->pause_ms < ACCEPT_PAUSE_MAX_MS) {
        slot->pause_ms *= 2;
    }
    evconnlistener_disable(slot->lev);
    close_idle_connections(w, IDLE_CLOSE_BATCH);
    if (tg_timer_after(w->loop, &slot->resume, (uint64_t)slot->pause_ms * 1000) < 0)
        evconnlistener_enable(slot->lev); /* no timer: better to retry than to stop for good */
}

/* Is the worker's share of a connection limit used up? */
static int over_connection_limit(tg_listener_slot_t *slot)
{
    tg_worker_t *w = slot->w;
    const tg_config_t *c = w->snap->cfg;
    unsigned nw = w->n_workers ? w->n_workers : 1;
    if (c->max_connections && w->n_conns >= (c->max_connections + nw - 1) / nw)
        return 1;
    if (slot->index >= c->n_listeners)
        return 0;
    uint64_t lmax = c->listeners[slot->index].max_connections;
    return lmax && tg_counter_get(&tg_stats_listener(w->stats, slot->stats_slot)->active) >= (lmax + nw - 1) / nw;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    tg_listener_slot_t *slot = arg;
    if (slot->pause_ms) {
        tg_warn("listener %s (worker %u): accepting again after %llu ms (%lu failed accepts)", slot_name(slot),
                slot->w->id, (unsigned long long)(tg_clock_coarse_ms() - slot->episode_start_ms), slot->accept_failures);
        slot->pause_ms = 0;
        slot->accept_failures = 0;
    }
    if (slot->w->draining) {
        close(fd);
        return;
    }
    if (over_connection_limit(slot)) {
        tg_counter_add(&tg_stats_listener(slot->w->stats, slot->stats_slot)->conn_limit_rejected, 1);
        close(fd);
        return;
    }
    const tg_worker_setup_t *st = slot->w->setup;
    if (slot->w->snap->cfg->listeners[slot->index].proxy_protocol)
        st->accept_proxy(slot->w, fd, sa, slot); /* the PROXY header first, then accept */
    else
        st->accept(slot->w, fd, sa, slot);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    tg_listener_slot_t *slot = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        pause_accepting(slot, err);
        return;
    }
    tg_warn("listener %s: accept: %s", slot_name(slot), evutil_socket_error_to_string(err));
}

static tg_listener_slot_t *slot_new(tg_worker_t *w, size_t index, int fd)
{
    tg_listener_slot_t *slot = calloc(1, sizeof(*slot));
    if (slot == NULL)
        return NULL;
    slot->w = w;
    slot->index = index;
    slot->stats_slot = w->snap->listener_slot[index];
    /* backlog 0: the socket already listens with the backlog the process
     * chose (-1 would make libevent call listen(fd, 128) again) */
    /* on failure the caller still owns fd */
    slot->resume.fn = on_resume_accept;
    if ((slot->lev = evconnlistener_new(w->base, on_accept, slot, LEV_OPT_CLOSE_ON_FREE, 0, fd)) == NULL) {
        free(slot);
        return NULL;
    }
    evconnlistener_set_error_cb(slot->lev, on_accept_error);
    return slot;
}

/* Closes a slot's socket; the slot itself stays (connections point to it). */
static void slot_retire(tg_worker_t *w, tg_listener_slot_t *slot)
{
    if (slot->lev != NULL) {
        evconnlistener_free(slot->lev);
        slot->lev = NULL;
    }
    tg_timer_cancel(&slot->resume);
    slot->index = TG_LISTENER_GONE;
    slot->next_retired = w->retired;
    w->retired = slot;
}

static void close_listeners(tg_worker_t *w)
{
    for (size_t i = 0; i < w->n_listeners; i++)
        if (w->listeners[i] != NULL) {
            slot_retire(w, w->listeners[i]);
            w->listeners[i] = NULL;
        }
}

/* Applies a published snapshot: listeners whose address stays keep their
 * socket (no connection is refused or reset), new ones start from the fds
 * the main thread bound, removed ones close. */
static void apply_reload(tg_worker_t *w, tg_reload_msg_t *m)
{
    const tg_config_t *oc = w->snap->cfg, *nc = m->snap->cfg;
    tg_listener_slot_t **next = calloc(m->n ? m->n : 1, sizeof(*next));
    int ok = next != NULL;
    for (size_t i = 0; ok && i < w->setup->n_modules; i++) {
        const tg_worker_module_t *mod = w->setup->modules[i];
        ok = mod->apply == NULL || mod->apply(w, m->snap) == 0;
    }
    if (!ok) {
        tg_error("worker %u: out of memory applying a reload; keeping the old config", w->id);
        free(next);
        for (size_t j = 0; j < m->n; j++)
            if (m->fds[j] >= 0)
                close(m->fds[j]);
        tg_snapshot_unref(m->snap);
        return;
    }
    for (size_t j = 0; j < m->n; j++) {
        if (m->fds[j] >= 0) {
            if ((next[j] = slot_new(w, j, m->fds[j])) == NULL) {
                tg_error("worker %u: cannot listen on %s", w->id, nc->listeners[j].listen);
                close(m->fds[j]);
            } else {
                next[j]->stats_slot = m->snap->listener_slot[j];
            }
            continue;
        }
        for (size_t i = 0; i < w->n_listeners; i++) {
            tg_listener_slot_t *slot = w->listeners[i];
            if (slot != NULL && tg_listener_same_address(&oc->listeners[i], &nc->listeners[j])) {
                if (oc->listeners[i].listen_backlog != nc->listeners[j].listen_backlog &&
                    listen(evconnlistener_get_fd(slot->lev), (int)nc->listeners[j].listen_backlog) < 0)
                    tg_warn("worker %u: listener '%s': cannot change listen_backlog: %s", w->id,
                            nc->listeners[j].name, strerror(errno));
                slot->index = j;
                slot->stats_slot = m->snap->listener_slot[j];
                next[j] = slot;
                w->listeners[i] = NULL;
                break;
            }
        }
    }
    close_listeners(w); /* what was not carried over */
    free(w->listeners);
    w->listeners = next;
    w->n_listeners = m->n;
    tg_snapshot_t *old = w->snap;
    w->snap = m->snap; /* the message's reference becomes the worker's */
    /* connections move onto it, so that the old one goes with its last exchange */
    tg_conn_node_t *n;
    TAILQ_FOREACH(n, &w->conns, link)
        if (n->ops->on_reload != NULL)
            n->ops->on_reload(n, w->snap);
    tg_snapshot_unref(old);
    tg_debug("worker %u: configuration applied", w->id);
}

static void take_reloads(tg_worker_t *w)
{
    pthread_mutex_lock(&w->mbox_lock);
    tg_reload_msg_t *m = w->mbox;
    w->mbox = NULL;
    pthread_mutex_unlock(&w->mbox_lock);
    /* the list is newest first: apply in publication order */
    tg_reload_msg_t *rev = NULL;
    while (m != NULL) {
        tg_reload_msg_t *next = m->next;
        m->next = rev;
        rev = m;
        m = next;
    }
    while (rev != NULL) {
        tg_reload_msg_t *next = rev->next;
        if (w->draining) {
            for (size_t j = 0; j < rev->n; j++)
                if (rev->fds[j] >= 0)
                    close(rev->fds[j]);
            tg_snapshot_unref(rev->snap);
        } else {
            apply_reload(w, rev);
        }
        free(rev);
        rev = next;
    }
}

/* Worker teardown: unapplied reloads are dropped. */
static void take_reloads_discard(tg_worker_t *w)
{
    w->draining = 1;
    take_reloads(w);
}

int tg_worker_reload(tg_worker_t *w, tg_snapshot_t *snap, const int *fds, size_t n)
{
    tg_reload_msg_t *m = malloc(sizeof(*m) + n * sizeof(int));
    if (m == NULL)
        return -1;
    m->snap = tg_snapshot_ref(snap);
    m->n = n;
    memcpy(m->fds, fds, n * sizeof(int));
    pthread_mutex_lock(&w->mbox_lock);
    m->next = w->mbox;
    w->mbox = m;
    pthread_mutex_unlock(&w->mbox_lock);
    send_command(w, 'r');
    return 0;
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
        n->ops->on_drain(n);
    }
    if (w->n_conns == 0)
        event_base_loopexit(w->base, NULL);
}

/* Commands from other threads arrive as bytes on the worker's pipe. */
static void on_trim(tg_timer_t *t)
{
    tg_worker_t *w = TG_CONTAINER_OF(t, tg_worker_t, trim);
    tg_timer_set(w->loop, &w->trim, MEM_TRIM_S * 1000);
    tg_mem_trim(w->mem);
    tg_pages_trim(w->pages);
    tg_conn_node_t *n;
    TAILQ_FOREACH(n, &w->conns, link) /* idle connections give back what they hold */
        if (n->ops->on_trim != NULL)
            n->ops->on_trim(n);
}

static void on_command(evutil_socket_t fd, short what, void *arg)
{
    tg_worker_t *w = arg;
    char cmds[16];
    ssize_t n;
    while ((n = read(fd, cmds, sizeof(cmds))) > 0)
        for (ssize_t i = 0; i < n; i++) {
            if (cmds[i] == 'd')
                start_drain(w);
            else if (cmds[i] == 'r')
                take_reloads(w);
            else if (cmds[i] == 'p')
                take_posts(w, 0);
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

/* Runs (or, cancelled, drops) every post queued so far, oldest first. */
static void take_posts(tg_worker_t *w, int cancelled)
{
    tg_post_t *p = atomic_exchange(&w->posts, NULL), *fifo = NULL;
    while (p != NULL) {
        tg_post_t *next = p->next;
        p->next = fifo;
        fifo = p;
        p = next;
    }
    while (fifo != NULL) {
        tg_post_t *next = fifo->next;
        fifo->run(fifo, cancelled);
        fifo = next;
    }
}

void tg_worker_post(tg_worker_t *w, tg_post_t *p)
{
    tg_post_t *head = atomic_load(&w->posts);
    do
        p->next = head;
    while (!atomic_compare_exchange_weak(&w->posts, &head, p));
    if (head == NULL) /* the first since the worker last looked: wake it */
        send_command(w, 'p');
}

tg_worker_t *tg_worker_new(unsigned id, unsigned n_workers, tg_snapshot_t *snap, const int *listen_fds, size_t n,
                           tg_health_t *health, const tg_worker_setup_t *setup)
{
    tg_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->id = id;
    w->n_workers = n_workers ? n_workers : 1;
    w->setup = setup;
    w->health = health;
    TAILQ_INIT(&w->conns);
    pthread_mutex_init(&w->mbox_lock, NULL);
    w->snap = tg_snapshot_ref(snap);
    w->cmd_fd[0] = w->cmd_fd[1] = -1;
    if ((w->stats = tg_stats_new()) == NULL || (w->mem = tg_mem_new(MEM_CACHE_MAX)) == NULL ||
        (w->pages = tg_pages_new()) == NULL)
        goto fail;
    struct event_config *ec = event_config_new();
    if (ec != NULL) {
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        w->base = event_base_new_with_config(ec);
        event_config_free(ec);
    }
    if (w->base == NULL || (w->loop = tg_loop_new(w->base)) == NULL ||
        (w->sockloop = tg_sock_loop_new(w->loop, !snap->cfg->io_uring_off)) == NULL ||
        pipe2(w->cmd_fd, O_NONBLOCK | O_CLOEXEC) < 0)
        goto fail;
    w->listeners = calloc(n ? n : 1, sizeof(*w->listeners));
    if (w->listeners == NULL)
        goto fail;
    w->n_listeners = n;
    for (size_t i = 0; i < n; i++)
        if ((w->listeners[i] = slot_new(w, i, listen_fds[i])) == NULL)
            goto fail;
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (w->rng[0] | w->rng[1]) == 0) {
        w->rng[0] = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        w->rng[1] = 0xbf58476d1ce4e5b9ULL + id;
    }
    for (; w->n_inited < setup->n_modules; w->n_inited++) {
        const tg_worker_module_t *mod = setup->modules[w->n_inited];
        if (mod->init(w) < 0 || (mod->apply != NULL && mod->apply(w, snap) < 0)) {
            w->n_inited++; /* its free() cleans up what init made */
            goto fail;
        }
    }
    w->cmd_ev = event_new(w->base, w->cmd_fd[0], EV_READ | EV_PERSIST, on_command, w);
    if (w->cmd_ev == NULL || event_add(w->cmd_ev, NULL) < 0)
        goto fail;
    w->trim.fn = on_trim;
    if (tg_timer_set(w->loop, &w->trim, MEM_TRIM_S * 1000) < 0)
        goto fail;
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
    tg_mem_bind(w->mem);
    tg_loop_run(w->loop, 0);
    tg_mem_bind(NULL);
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

void tg_worker_join(tg_worker_t *w)
{
    if (w->thread && !w->joined) {
        pthread_join(w->thread, NULL);
        w->joined = 1;
    }
}

void tg_worker_join_free(tg_worker_t *w)
{
    tg_worker_join(w);
    tg_conn_node_t *n;
    while ((n = TAILQ_FIRST(&w->conns)) != NULL)
        n->ops->on_shutdown(n);
    close_listeners(w);
    while (w->retired != NULL) {
        tg_listener_slot_t *next = w->retired->next_retired;
        tg_timer_cancel(&w->retired->resume);
        free(w->retired);
        w->retired = next;
    }
    take_reloads_discard(w);
    take_posts(w, 1);
    while (w->n_inited > 0) /* upstream connections, then the caches */
        w->setup->modules[--w->n_inited]->free(w);
    if (w->cmd_ev)
        event_free(w->cmd_ev);
    tg_timer_cancel(&w->trim);
    for (int i = 0; i < 2; i++)
        if (w->cmd_fd[i] >= 0)
            close(w->cmd_fd[i]);
    tg_sock_loop_free(w->sockloop);
    tg_loop_free(w->loop);
    if (w->base)
        event_base_free(w->base);
    tg_snapshot_unref(w->snap);
    free(w->listeners);
    tg_stats_free(w->stats);
    tg_mem_destroy(w->mem); /* every session is gone; blocks freed later go to the C library */
    tg_pages_destroy(w->pages);
    pthread_mutex_destroy(&w->mbox_lock);
    free(w);
}

void tg_worker_accept(tg_worker_t *w, int fd, const struct sockaddr *sa, const tg_listener_slot_t *slot)
{
    w->setup->accept(w, fd, sa, slot);
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

tg_stats_t *tg_worker_stats(tg_worker_t *w)
{
    return w->stats;
}

unsigned tg_worker_id(const tg_worker_t *w)
{
    return w->id;
}

unsigned tg_worker_count(const tg_worker_t *w)
{
    return w->n_workers;
}

struct event_base *tg_worker_base(tg_worker_t *w)
{
    return w->base;
}

tg_loop_t *tg_worker_loop(tg_worker_t *w)
{
    return w->loop;
}

tg_sock_loop_t *tg_worker_sockloop(tg_worker_t *w)
{
    return w->sockloop;
}

tg_snapshot_t *tg_worker_snapshot(tg_worker_t *w)
{
    return w->snap;
}

tg_health_t *tg_worker_health(tg_worker_t *w)
{
    return w->health;
}

void tg_worker_set_tracer(tg_worker_t *w, struct tg_tracer *t)
{
    w->tracer = t;
}

struct tg_tracer *tg_worker_tracer(tg_worker_t *w)
{
    return w->tracer;
}

tg_mem_t *tg_worker_mem(tg_worker_t *w)
{
    return w->mem;
}

tg_pages_t *tg_worker_pages(tg_worker_t *w)
{
    return w->pages;
}

int tg_worker_draining(const tg_worker_t *w)
{
    return w->draining;
}

size_t tg_worker_conn_count(const tg_worker_t *w)
{
    return w->n_conns;
}

void *tg_worker_state(tg_worker_t *w, tg_worker_mod_t m)
{
    return w->mods[m];
}

void tg_worker_set_state(tg_worker_t *w, tg_worker_mod_t m, void *state)
{
    w->mods[m] = state;
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
