/*
 * proxy/proxy_proto.c — see proxy_proto.h.
 */
#include "proxy/proxy_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/base/log.h"
#include "proxy/base/loop.h"

/* ---- parsing ---- */

static const unsigned char v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
#define V1_MAX 107 /* "PROXY TCP6 " + two addresses + two ports + CRLF, at most */

/* Could p[0..n) still become a valid header? (for "need more bytes") */
static int prefix_of(const unsigned char *p, size_t n, const void *whole, size_t len)
{
    return memcmp(p, whole, n < len ? n : len) == 0;
}

/* A decimal port: 1 to 5 digits, no leading zero (but "0"), at most 65535. */
static int parse_port(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static long parse_v1(const unsigned char *p, size_t n, tg_proxy_header_t *out)
{
    const unsigned char *crlf = NULL;
    for (size_t i = 0; i + 1 < n && i + 1 < V1_MAX; i++)
        if (p[i] == '\r' && p[i + 1] == '\n') {
            crlf = p + i;
            break;
        }
    if (crlf == NULL)
        return n >= V1_MAX ? -1 : 0;
    size_t len = (size_t)(crlf - p);
    char line[V1_MAX + 1];
    memcpy(line, p, len);
    line[len] = '\0';
    if (strncmp(line, "PROXY UNKNOWN", 13) == 0 && (line[13] == '\0' || line[13] == ' ')) {
        out->local = 1;
        return (long)len + 2;
    }
    /* PROXY TCP4|TCP6 SRC DST SPORT DPORT, single spaces, nothing else */
    char *f[6];
    int nf = 0;
    for (char *s = line; nf < 6;) {
        f[nf++] = s;
        char *sp = strchr(s, ' ');
        if (sp == NULL)
            break;
        *sp = '\0';
        s = sp + 1;
    }
    if (nf != 6 || strchr(f[5], ' ') != NULL || strcmp(f[0], "PROXY") != 0)
        return -1;
    int v6 = strcmp(f[1], "TCP6") == 0;
    if (!v6 && strcmp(f[1], "TCP4") != 0)
        return -1;
    uint16_t sport, dport;
    if (parse_port(f[4], strlen(f[4]), &sport) < 0 || parse_port(f[5], strlen(f[5]), &dport) < 0)
        return -1;
    memset(&out->src, 0, sizeof(out->src));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out->src;
        struct in6_addr dst;
        if (inet_pton(AF_INET6, f[2], &a->sin6_addr) != 1 || inet_pton(AF_INET6, f[3], &dst) != 1)
            return -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(sport);
        out->src_len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&out->src;
        struct in_addr dst;
        if (inet_pton(AF_INET, f[2], &a->sin_addr) != 1 || inet_pton(AF_INET, f[3], &dst) != 1)
            return -1;
        a->sin_family = AF_INET;
        a->sin_port = htons(sport);
        out->src_len = sizeof(*a);
    }
    out->local = 0;
    return (long)len + 2;
}

static long parse_v2(const unsigned char *p, size_t n, tg_proxy_header_t *out)
{
    if (n < 16)
        return 0;
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0F, fam = p[13] >> 4, proto = p[13] & 0x0F;
    size_t len = (size_t)p[14] << 8 | p[15];
    if (ver != 2 || cmd > 1 || 16 + len > TG_PROXY_MAX_HEADER)
        return -1;
    if (n < 16 + len)
        return 0;
    memset(&out->src, 0, sizeof(out->src));
    if (cmd == 0) { /* LOCAL: the balancer's own connection (health checks) */
        out->local = 1;
        return (long)(16 + len);
    }
    const unsigned char *a = p + 16;
    if (fam == 1 && proto == 1 && len >= 12) { /* TCP over IPv4 */
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
        s->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&s->sin_port, a + 8, 2);
        out->src_len = sizeof(*s);
    } else if (fam == 2 && proto == 1 && len >= 36) { /* TCP over IPv6 */
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
        s->sin6_family = AF_INET6;
        memcpy(&s->sin6_addr, a, 16);
        memcpy(&s->sin6_port, a + 32, 2);
        out->src_len = sizeof(*s);
    } else if (fam == 0) { /* UNSPEC: the balancer does not know; keep its address */
        out->local = 1;
        return (long)(16 + len);
    } else {
        return -1; /* UDP, unix sockets, or addresses shorter than their family */
    }
    out->local = 0;
    return (long)(16 + len); /* TLVs, if any, are skipped */
}

long tg_proxy_parse(const unsigned char *p, size_t n, tg_proxy_header_t *out)
{
    if (n == 0)
        return 0;
    if (p[0] == 'P')
        return prefix_of(p, n, "PROXY ", 6) ? (n < 6 ? 0 : parse_v1(p, n, out)) : -1;
    if (!prefix_of(p, n, v2_sig, sizeof(v2_sig)))
        return -1;
    return n < sizeof(v2_sig) ? 0 : parse_v2(p, n, out);
}

/* ---- the accept stage ---- */

typedef struct pending {
    tg_conn_node_t node; /* first: drain and shutdown reach it like any connection */
    tg_worker_t *w;
    const tg_listener_slot_t *slot;
    int fd;
    struct sockaddr_storage peer;
    char addr[64];
    struct event *ev;
    tg_timer_t timer;    /* header_timeout */
} pending_t;

static void pending_free(pending_t *p, int close_fd)
{
    tg_worker_conn_remove(p->w, &p->node);
    if (p->ev)
        event_free(p->ev);
    tg_timer_cancel(&p->timer);
    if (close_fd)
        close(p->fd);
    free(p);
}

static void refuse(pending_t *p, const char *why)
{
    tg_debug("proxy protocol %s: %s: closing", p->addr, why);
    pending_free(p, 1);
}

static void on_timeout(tg_timer_t *t)
{
    refuse(TG_CONTAINER_OF(t, pending_t, timer), "no complete PROXY header within the header timeout");
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pending_t *p = arg;
    unsigned char buf[TG_PROXY_MAX_HEADER];
    ssize_t n = recv(p->fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        refuse(p, n == 0 ? "closed before its PROXY header" : strerror(errno));
        return;
    }
    tg_proxy_header_t h;
    long len = tg_proxy_parse(buf, (size_t)n, &h);
    if (len == 0 && (size_t)n < sizeof(buf))
        return; /* the rest of the header is still to come (edge-triggered: the next bytes wake us) */
    if (len <= 0) {
        refuse(p, "not a valid PROXY header");
        return;
    }
    if (recv(p->fd, buf, (size_t)len, 0) != len) { /* consume the header alone */
        refuse(p, "could not read its PROXY header");
        return;
    }
    tg_worker_t *w = p->w;
    const tg_listener_slot_t *slot = p->slot;
    /* LOCAL (v2) and UNKNOWN (v1) say who the client is not: the balancer's
     * own connection, or one it relays for a client it cannot name. Either
     * way the client is "unknown" (RFC 7239 6.1) — never the balancer,
     * whose trusted address would make the connection's X-Forwarded-For,
     * written by whoever is behind it, believed. */
    struct sockaddr_storage client = h.src;
    if (h.local) {
        memset(&client, 0, sizeof(client));
        client.ss_family = AF_UNSPEC;
    }
    int sock = p->fd;
    pending_free(p, 0);
    tg_worker_accept(w, sock, (const struct sockaddr *)&client, slot);
}

static void on_drain(tg_conn_node_t *n)
{
    pending_free((pending_t *)n, 1); /* it has not said who it is yet: nothing to finish */
}

static int close_if_idle(tg_conn_node_t *n)
{
    pending_free((pending_t *)n, 1);
    return 1;
}

static void addr_string(const struct sockaddr *sa, char *out, size_t cap)
{
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
    else
        snprintf(out, cap, "unknown");
}

void tg_proxy_accept(tg_worker_t *w, int fd, const struct sockaddr *peer, const tg_listener_slot_t *slot)
{
    const tg_config_t *cfg = tg_worker_snapshot(w)->cfg;
    const tg_listener_conf_t *l = &cfg->listeners[slot->index];
    char addr[64];
    addr_string(peer, addr, sizeof(addr));
    const tg_cidr_t *trusted = l->has_trusted_proxies ? l->trusted_proxies : cfg->trusted_proxies;
    size_t n_trusted = l->has_trusted_proxies ? l->n_trusted_proxies : cfg->n_trusted_proxies;
    if (!tg_cidr_list_match(trusted, n_trusted, addr)) {
        tg_warn("listener %s: %s is not in trusted_proxies and may not send a PROXY header: closing", l->name, addr);
        close(fd);
        return;
    }
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        close(fd);
        return;
    }
    p->w = w;
    p->slot = slot;
    p->fd = fd;
    memcpy(&p->peer, peer, peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    static const tg_conn_node_ops_t node_ops = { .on_drain = on_drain, .on_shutdown = on_drain,
                                                 .close_if_idle = close_if_idle };
    p->node.ops = &node_ops;
    tg_worker_conn_add(w, &p->node);
    p->ev = event_new(tg_worker_base(w), fd, EV_READ | EV_PERSIST | EV_ET, on_event, p);
    p->timer.fn = on_timeout;
    if (p->ev == NULL || event_add(p->ev, NULL) < 0 ||
        tg_timer_set(tg_worker_loop(w), &p->timer, cfg->limits.header_timeout_ms) < 0) {
        pending_free(p, 1);
        return;
    }
    on_event(fd, EV_READ, p); /* the header may be here already */
}
