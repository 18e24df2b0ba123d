/* Shared by the fuzz targets that drive a whole gateway in-process: one
 * worker (its event loop run from the fuzzing thread, never its own
 * thread), a listener that clients reach over loopback TCP, and a fake
 * upstream the driver plays itself. Each input opens client connections,
 * plays both peers (the clients send their bytes at once; each upstream
 * connection answers with its bytes, step by step, each step once the
 * gateway has sent something more; every peer ends with a reset),
 * turns the loop until nothing moves, then closes every peer and turns the
 * loop until the worker holds no connection. So the HTTP/2 sessions, the
 * exchange, the filters and the upstream codecs all run on attacker bytes,
 * with the sanitizers watching. Everything is loopback and bounded. */
#ifndef TG_FUZZ_GW_DRIVE_H
#define TG_FUZZ_GW_DRIVE_H

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/health.h"
#include "proxy/base/log.h"
#include "proxy/snapshot.h"
#include "proxy/stack.h"
#include "proxy/worker.h"

#define GW_MAX_PEERS 16
#define GW_MAX_TURNS 400  /* loop turns per input while anything moves */
#define GW_IDLE_TURNS 6   /* turns without progress that end the exchange phase */
#define GW_STEP "STEP"    /* splits an upstream's bytes into steps (see gw_pump) */

typedef struct gw_peer {
    int fd;
    const uint8_t *out;
    size_t out_len, off;
    int answer;    /* send only after something arrived (an upstream) */
    int got;
    size_t received;
} gw_peer_t;

typedef struct gw {
    tg_worker_t *w;
    tg_snapshot_t *snap;
    tg_health_t *health;
    int up_fd;
    uint16_t port, up_port;
} gw_t;

static gw_t gw_state;

static int gw_listen(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 512) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("gw_listen");
        abort();
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Builds the gateway once per process. cluster_yaml is the body of the
 * one cluster `up` (its endpoint is added: the fake upstream); the routes
 * cover plain requests and a gRPC service with a small message limit,
 * after routes_yaml (routes of the target's own, in the list's form). */
static void gw_init_routes(const char *cluster_yaml, const char *routes_yaml)
{
    gw_t *g = &gw_state;
    signal(SIGPIPE, SIG_IGN);
    /* TG_FUZZ_VERBOSE=1: the gateway's debug log and what each peer got,
     * to check that a corpus file reaches what it is meant to. */
    tg_log_set_level(getenv("TG_FUZZ_VERBOSE") ? TG_LOG_DEBUG : TG_LOG_ERROR);
    g->up_fd = gw_listen(&g->up_port);
    int lfd = gw_listen(&g->port);
    char dir[] = "/tmp/tg-fuzz-XXXXXX", path[64];
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/gw.yaml", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        abort();
    fprintf(f,
            "workers: 1\n"
            "limits: { max_body_bytes: 64KiB, max_header_bytes: 16KiB }\n"
            "listeners: [{ name: fuzz, listen: '127.0.0.1:%u', http2: { max_concurrent_streams: 16 } }]\n"
            "filters:\n"
            "  - headers: { request: { set: { x-fuzz: '1' } }, response: { remove: [server] } }\n"
            "routes:\n"
            "%s"
            "  - name: grpc\n"
            "    match: { path_separated_prefix: /svc }\n"
            "    cluster: up\n"
            "    max_grpc_request_message: 1KiB\n"
            "    filters: [{ retry: { attempts: 2, on: [connect-failure, 503, unavailable], backoff: { base: 1ms, max: 2ms } } }]\n"
            "  - name: rest\n"
            "    cluster: up\n"
            "    filters: [{ body_limit: { max: 2KiB } }]\n"
            "clusters:\n"
            "  - name: up\n"
            "    endpoints: ['127.0.0.1:%u']\n"
            "%s",
            g->port, routes_yaml, g->up_port, cluster_yaml);
    fclose(f);
    tg_errors_t errs = { 0 };
    g->snap = tg_snapshot_load(path, NULL, tg_gateway_stack.upstream, NULL, &errs);
    unlink(path);
    rmdir(dir);
    if (g->snap == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "gw_init: %s\n", errs.msgs[i]);
        abort();
    }
    tg_errors_free(&errs);
    if ((g->health = tg_health_new()) == NULL)
        abort();
    for (size_t i = 0; i < g->snap->clusters->n_slots; i++) /* as the process does for each new endpoint slot */
        if (tg_health_reserve(g->health, i) < 0)
            abort();
    if ((g->w = tg_worker_new(0, 1, g->snap, &lfd, 1, g->health, &tg_gateway_stack)) == NULL)
        abort();
}

static inline void gw_init(const char *cluster_yaml)
{
    gw_init_routes(cluster_yaml, "");
}

static int gw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(gw_state.port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int rc = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&sa, sizeof(sa)); /* loopback: at once */
    if (rc < 0 && errno == EINTR) {
        /* libFuzzer's timeout alarm interrupted it; the connect goes on:
         * wait for it to finish and take its outcome */
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int err = 0;
        socklen_t elen = sizeof(err);
        while (poll(&pfd, 1, 5000) < 0 && errno == EINTR)
            ;
        rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0 ? 0 : -1;
    }
    if (rc < 0) {
        perror("gw_connect");
        abort();
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* A reset, not a FIN: a FIN would leave each connection in TIME_WAIT,
 * and hundreds of runs a second would use up the loopback's ports. (Clean
 * closes are the integration tests' business.) */
static void gw_reset_close(int fd)
{
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Reads and discards what the gateway sent; sends what is due. Returns 1
 * if anything moved. */
static int gw_pump(gw_peer_t *p)
{
    char buf[16384];
    int moved = 0;
    for (;;) {
        ssize_t n = recv(p->fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        p->got = 1;
        p->received += (size_t)n;
        moved = 1;
    }
    if (p->off < p->out_len && (!p->answer || p->got)) {
        /* An upstream answers step by step: its bytes up to the next
         * GW_STEP marker, then the next step once the gateway wrote again
         * (its SETTINGS first, the responses once the requests came). */
        size_t end = p->out_len;
        const uint8_t *m = NULL;
        if (p->answer && (m = memmem(p->out + p->off, p->out_len - p->off, GW_STEP, sizeof(GW_STEP) - 1)) != NULL)
            end = (size_t)(m - p->out);
        ssize_t n = end > p->off ? send(p->fd, p->out + p->off, end - p->off, MSG_NOSIGNAL) : 0;
        if (n > 0) {
            p->off += (size_t)n;
            moved = 1;
        }
        if (m != NULL && p->off == end) { /* step done: the next one waits for the gateway */
            p->off += sizeof(GW_STEP) - 1;
            p->got = 0;
            moved = 1;
        }
    }
    return moved;
}

/* Upstream connections the worker holds open, to any endpoint. */
static unsigned gw_upstream_conns(gw_t *g)
{
    unsigned n = 0;
    for (size_t i = 0; i < g->snap->clusters->n_slots; i++)
        n += tg_health_connections(g->health, i);
    return n;
}

/* One input: n_clients connections each sending `down` (the same bytes),
 * every upstream connection answering `up`. */
static void gw_run(const uint8_t *down, size_t down_len, int n_clients, const uint8_t *up, size_t up_len)
{
    gw_t *g = &gw_state;
    gw_peer_t peers[GW_MAX_PEERS];
    int n = 0;
    for (; n < n_clients && n < GW_MAX_PEERS; n++)
        peers[n] = (gw_peer_t){ .fd = gw_connect(), .out = down, .out_len = down_len };
    for (int turn = 0, idle = 0; turn < GW_MAX_TURNS && idle < GW_IDLE_TURNS; turn++) {
        event_base_loop(tg_worker_base(g->w), EVLOOP_NONBLOCK);
        int moved = 0, fd;
        while ((fd = accept4(g->up_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            if (n == GW_MAX_PEERS) {
                gw_reset_close(fd);
                continue;
            }
            peers[n++] = (gw_peer_t){ .fd = fd, .out = up, .out_len = up_len, .answer = 1 };
            moved = 1;
        }
        for (int i = 0; i < n; i++)
            moved |= gw_pump(&peers[i]);
        idle = moved ? 0 : idle + 1;
    }
    for (int i = 0; i < n; i++) {
        if (getenv("TG_FUZZ_VERBOSE"))
            fprintf(stderr, "gw: %s %d sent %zu of %zu, received %zu\n", peers[i].answer ? "upstream" : "client", i,
                    peers[i].off, peers[i].out_len, peers[i].received);
        gw_reset_close(peers[i].fd);
    }
    /* Every peer gone: the gateway's connections see EOF and close (bounded);
     * then nothing may be left: no client connection (with its streams and
     * exchanges) and no upstream connection, which is the oracle beyond
     * "no crash": a connection the input could strand is a resource a
     * client could pile up. */
    for (int turn = 0; turn < GW_MAX_TURNS; turn++) {
        event_base_loop(tg_worker_base(g->w), EVLOOP_NONBLOCK);
        int fd;
        while ((fd = accept4(g->up_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            gw_reset_close(fd); /* a retry that connected late */
        }
        if (turn >= GW_IDLE_TURNS && tg_worker_conn_count(g->w) == 0 && gw_upstream_conns(g) == 0)
            break;
    }
    if (tg_worker_conn_count(g->w) != 0 || gw_upstream_conns(g) != 0) {
        fprintf(stderr, "gw: %zu client and %u upstream connection(s) left after every peer closed\n",
                tg_worker_conn_count(g->w), gw_upstream_conns(g));
        abort();
    }
}

#endif
