/*
 * proxy/negotiate.c — a connection's first step: TLS, then which codec.
 * See negotiate.h.
 */
#include "proxy/negotiate.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/base/log.h"
#include "proxy/base/slab.h"
#include "proxy/conn.h"
#include "proxy/h1_server.h"
#include "proxy/h2_server.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "tls/context.h"

/* The HTTP/2 connection preface (RFC 9113 3.4): a cleartext client with
 * prior knowledge starts with it. */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

typedef enum { N_HANDSHAKE = 0, N_SNIFF } neg_state_t;

typedef struct neg_conn {
    tg_conn_t base;                 /* first: the socket, timer, lifetime (conn.h) */
    const tg_listener_slot_t *slot;
    uint32_t listener;              /* in base.snap */
    uint32_t stats_slot;            /* listener stats slot at accept time */
    uint8_t state;                  /* neg_state_t */
    uint8_t family;                 /* the client's address (AF_INET, AF_INET6; 0: unknown) ... */
    uint8_t ip[16];                 /* ... in binary */
    unsigned tls : 1, handed : 1;
} neg_conn_t;

static const char *addr_str(const neg_conn_t *c, char *buf, size_t len)
{
    return tg_addr_text(c->family, c->ip, buf, len);
}

static const tg_listener_conf_t *listener_conf(const neg_conn_t *c)
{
    return &c->base.snap->cfg->listeners[c->listener];
}

static void on_close(tg_conn_t *b)
{
    neg_conn_t *c = (neg_conn_t *)b;
    if (!c->handed) /* a codec that took it counts it out itself */
        tg_counter_sub(&tg_stats_listener(tg_worker_stats(b->w), c->stats_slot)->active, 1);
}

static void on_free(tg_conn_t *b)
{
    tg_slab_free(tg_worker_state(b->w, TG_WMOD_NEGOTIATE), b);
}

static int module_init(tg_worker_t *w)
{
    return tg_conn_slab_init(w, TG_WMOD_NEGOTIATE, sizeof(neg_conn_t));
}

static void module_free(tg_worker_t *w)
{
    tg_conn_slab_free(w, TG_WMOD_NEGOTIATE);
}

const tg_worker_module_t tg_negotiate_module = {
    .id = TG_WMOD_NEGOTIATE,
    .init = module_init,
    .free = module_free,
};

/* The protocol is known: the socket, what was read of it and the client's
 * identity go to that codec; c is freed at the next safe point. */
static void hand_over(neg_conn_t *c, int h2, tg_tls_peer_t *peer)
{
    char addr[INET6_ADDRSTRLEN];
    tg_worker_t *w = c->base.w;
    tg_snapshot_t *snap = c->base.snap;
    addr_str(c, addr, sizeof(addr)); /* the HTTP/2 server keeps it as text */
    tg_debug("conn %s: %s", addr,
             h2 ? (c->tls ? "HTTP/2 (ALPN)" : "HTTP/2 (preface)") : c->tls ? "HTTP/1.1 (TLS)" : "HTTP/1.1");
    c->handed = 1;
    tg_sock_t *sock = tg_conn_hand_over(&c->base);
    if (h2)
        tg_h2_server_take(w, sock, c->slot, snap, c->listener, c->stats_slot, addr, peer, c->tls);
    else
        tg_h1_server_take(w, sock, c->slot, snap, c->listener, c->stats_slot, c->family, c->ip, peer, c->tls);
}

/* Cleartext on a listener with both protocols: the first bytes tell. */
static void sniff(neg_conn_t *c, int eof)
{
    struct evbuffer *in = tg_sock_in(c->base.sock);
    size_t have = evbuffer_get_length(in);
    if (have == 0) {
        if (eof)
            tg_conn_close(&c->base);
        return;
    }
    size_t n = have < H2_PREFACE_LEN ? have : H2_PREFACE_LEN;
    const unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)n);
    if (p == NULL) {
        tg_conn_close(&c->base);
        return;
    }
    if (memcmp(p, h2_preface, n) != 0) {
        hand_over(c, 0, NULL);
    } else if (n == H2_PREFACE_LEN) {
        hand_over(c, 1, NULL);
    } else if (eof) {
        tg_conn_close(&c->base); /* a prefix of the preface, then nothing */
    }
    /* else a prefix of the preface: wait for the rest */
}

/* The cleartext codec, or the wait for the first bytes. */
static void cleartext(neg_conn_t *c)
{
    const tg_listener_conf_t *l = listener_conf(c);
    if (!l->http1_enabled) {
        hand_over(c, 1, NULL); /* an HTTP/2-only listener: the h2 session checks the preface */
    } else if (!l->http2.enabled) {
        hand_over(c, 0, NULL);
    } else {
        c->state = N_SNIFF;
        tg_conn_set_timer(&c->base, tg_worker_snapshot(c->base.w)->cfg->limits.idle_timeout_ms);
    }
}

static void handshake_failed(neg_conn_t *c, const char *why)
{
    char buf[160], addr[INET6_ADDRSTRLEN];
    tg_counter_add(&tg_stats_listener(tg_worker_stats(c->base.w), c->stats_slot)->tls_handshake_failures, 1);
    tg_debug("tls %s: handshake failed: %s", addr_str(c, addr, sizeof(addr)),
             why ? why : tg_sock_tls_error(c->base.sock, buf, sizeof(buf)));
    tg_conn_close(&c->base);
}

static void handshake_done(neg_conn_t *c)
{
    tg_listener_stats_t *st = tg_stats_listener(tg_worker_stats(c->base.w), c->stats_slot);
    SSL *ssl = tg_sock_ssl(c->base.sock);
    tg_counter_add(&st->tls_handshakes, 1);
    if (SSL_session_reused(ssl))
        tg_counter_add(&st->tls_resumed, 1);
    tg_tls_peer_t *peer = calloc(1, sizeof(*peer));
    if (peer == NULL || tg_tls_peer_init(peer, ssl) < 0) {
        free(peer);
        tg_conn_close(&c->base);
        return;
    }
    if (peer->subject == NULL && peer->header == NULL) { /* no client certificate: nothing to keep */
        tg_tls_peer_free(peer);
        free(peer);
        peer = NULL;
    }
    c->state = N_SNIFF; /* the handshake's config need not stay: catch up with a reload */
    tg_conn_rebase(&c->base, tg_worker_snapshot(c->base.w));
    hand_over(c, tg_tls_alpn_is_h2(ssl) || !listener_conf(c)->http1_enabled, peer);
}

static void on_sock(tg_conn_t *b, int events)
{
    neg_conn_t *c = (neg_conn_t *)b;
    if (c->state == N_HANDSHAKE) {
        if (events & TG_SOCK_ERROR)
            handshake_failed(c, NULL);
        else if (events & TG_SOCK_CONNECTED)
            handshake_done(c);
        return;
    }
    if (events & TG_SOCK_ERROR)
        tg_conn_close(b);
    else if (events & (TG_SOCK_READ | TG_SOCK_EOF))
        sniff(c, (events & TG_SOCK_EOF) != 0);
}

static void on_timer(tg_conn_t *b)
{
    neg_conn_t *c = (neg_conn_t *)b;
    if (c->state == N_HANDSHAKE)
        handshake_failed(c, "timed out");
    else
        tg_conn_close(b); /* said nothing within the idle timeout */
}

static void on_defer(tg_conn_t *b)
{
    (void)b;
}

static void on_drain(tg_conn_t *b)
{
    tg_conn_close(b); /* nothing in flight yet */
}

static int close_if_idle(tg_conn_t *b)
{
    neg_conn_t *c = (neg_conn_t *)b;
    if (c->state != N_SNIFF || tg_sock_in_len(b->sock) != 0)
        return 0;
    tg_conn_close(b);
    return 1;
}

/* A reload: not during the TLS handshake, whose callbacks read the old
 * config's TLS context. */
static int rebase(tg_conn_t *b, const tg_snapshot_t *next)
{
    neg_conn_t *c = (neg_conn_t *)b;
    (void)next;
    if (c->state == N_HANDSHAKE || c->slot->index == TG_LISTENER_GONE)
        return -1;
    c->listener = (uint32_t)c->slot->index;
    return 0;
}

static const tg_conn_kind_t neg_kind = {
    .name = "negotiate",
    .on_sock = on_sock,
    .on_timer = on_timer,
    .on_defer = on_defer,
    .on_close = on_close,
    .on_free = on_free,
    .on_drain = on_drain,
    .close_if_idle = close_if_idle,
    .rebase = rebase,
};

void tg_negotiate_accept(tg_worker_t *w, int fd, const struct sockaddr *sa, const tg_listener_slot_t *slot)
{
    tg_slab_t *slab = tg_worker_state(w, TG_WMOD_NEGOTIATE);
    neg_conn_t *c = tg_slab_alloc(slab);
    if (c == NULL) {
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->slot = slot;
    if (sa->sa_family == AF_INET) {
        c->family = AF_INET;
        memcpy(c->ip, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        c->family = AF_INET6;
        memcpy(c->ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    tg_sock_t *sock = tg_sock_new(tg_worker_sockloop(w), fd);
    if (sock == NULL) {
        close(fd);
        tg_slab_free(slab, c);
        return;
    }
    if (tg_conn_init(&c->base, &neg_kind, w, sock, tg_worker_snapshot(w), 1) < 0) {
        tg_sock_free(sock);
        tg_slab_free(slab, c);
        return;
    }
    c->listener = (uint32_t)slot->index;
    c->stats_slot = (uint32_t)slot->stats_slot;
    tg_counter_add(&tg_stats_listener(tg_worker_stats(w), c->stats_slot)->accepted, 1);
    tg_counter_add(&tg_stats_listener(tg_worker_stats(w), c->stats_slot)->active, 1);
    tg_tls_server_t *tls = c->base.snap->listener_tls[c->listener];
    if (tls == NULL) {
        cleartext(c);
        return;
    }
    SSL *ssl = tg_tls_server_ssl(tls);
    if (ssl == NULL || tg_sock_start_tls(c->base.sock, ssl) < 0) {
        if (ssl)
            SSL_free(ssl);
        tg_conn_close(&c->base);
        return;
    }
    c->tls = 1;
    c->state = N_HANDSHAKE;
    tg_conn_set_timer(&c->base, listener_conf(c)->tls.handshake_timeout_ms);
}
