/*
 * proxy/redis.c — the Redis store of a worker. See redis.h.
 *
 * Memory: a client, its nodes and their connections belong to the
 * worker's module state and live until a reload replaces the `redis:`
 * section (then until the old client's calls are over) or the worker
 * ends. A call (rd_call_t) is taken from the client's free list when a
 * filter asks, holds its encoded command (inline up to RD_INLINE_CMD
 * bytes), and goes back to the list when its reply has been read or its
 * connection is gone — never earlier, even if its caller was answered at
 * the deadline, since the reply still has to be matched in order.
 */
#include "proxy/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "proxy/base/arena.h"
#include "proxy/base/clock.h"
#include "proxy/base/log.h"
#include "proxy/base/loop.h"
#include "proxy/sock.h"
#include "proxy/stats.h"
#include "tls/context.h"

#define RD_MAX_NODES 64          /* Redis nodes one client talks to (Cluster primaries and seeds) */
#define RD_MAX_PENDING 4096      /* calls waiting on one connection before new ones fail at once */
#define RD_INLINE_CMD 512        /* a command this small lives in its call */
#define RD_MAX_REDIRECTS 5       /* MOVED / ASK / NOSCRIPT rounds for one call */
#define RD_BACKOFF_MIN_MS 50     /* reconnect backoff: doubles from this... */
#define RD_BACKOFF_MAX_MS 5000   /* ...up to this, with full jitter in its upper half */
#define RD_STUCK_MIN_MS 1000     /* no reply for max(this, 20 x timeout) on a call: the connection is dead */
#define RD_REFRESH_MIN_MS 100    /* CLUSTER SLOTS at most this often */
#define RD_SLOTS 16384

typedef enum { CALL_USER = 0, CALL_AUTH, CALL_LOAD, CALL_SLOTS, CALL_ASKING } call_kind_t;

typedef struct rd_call {
    TAILQ_ENTRY(rd_call) link;
    call_kind_t kind;
    tg_store_cb cb;
    void *arg;
    uint64_t gen;
    int answered;                /* the caller has its answer (a timeout): the reply is dropped */
    const char *script_text;     /* for SCRIPT LOAD on NOSCRIPT (static) */
    unsigned slot;
    unsigned rounds;             /* redirects and reloads so far */
    int asking;                  /* sent after ASKING (an ASK redirect): so is a retry after NOSCRIPT */
    uint64_t start_us, deadline_us;
    char *cmd;
    size_t len;
    struct rd_call *next_free;
    char inline_cmd[RD_INLINE_CMD];
} rd_call_t;

TAILQ_HEAD(rd_call_list, rd_call);

typedef enum { RC_DOWN = 0, RC_CONNECTING, RC_READY } conn_state_t;

struct rd_client;
struct rd_node;

typedef struct rd_conn {
    struct rd_client *cl;
    struct rd_node *node;
    tg_sock_t *sock;
    conn_state_t state;
    struct rd_call_list sent;    /* written (or queued in the output), in reply order */
    size_t n_sent;
    tg_timer_t deadline;         /* the oldest unanswered call's deadline */
    tg_timer_t retry;            /* reconnect after backoff */
    int retry_pending;
    unsigned backoff_ms;
    tg_arena_t arena;            /* one decoded reply at a time */
    tg_resp_scan_t scan;         /* how far the reply being received has been scanned */
} rd_conn_t;

typedef struct rd_node {
    char addr[64];               /* host:port, as Redis names it */
    char host[48];
    struct sockaddr_storage sa;
    socklen_t salen;
    rd_conn_t *conns;            /* pool of them */
    unsigned next;               /* round robin */
} rd_node_t;

typedef struct rd_client {
    tg_store_t store;            /* first: what filters see */
    tg_worker_t *w;
    tg_config_t *cfg;            /* a reference: conf points into it */
    const tg_redis_conf_t *conf;
    tg_tls_client_t *tls;        /* NULL: cleartext */
    tg_redis_stats_t *stats;
    rd_node_t *nodes[RD_MAX_NODES];
    size_t n_nodes;
    unsigned char *slots;        /* Cluster: node index + 1 for each slot, 0 unknown */
    int refresh_pending;
    uint64_t last_refresh_ms;
    uint64_t last_log_ms;
    unsigned long held_back;     /* log lines suppressed since the last one */
    rd_call_t *free_calls;
    int retiring;
    int closed;                  /* retired and its connections closed: freed when users reaches 0 */
    unsigned long users;         /* exchanges holding it (tg_redis_store_acquire) */
    tg_timer_t retire;           /* closes it once its calls are answered or timed out */
    struct rd_client *next_retired;
} rd_client_t;

typedef struct rd_module {
    rd_client_t *current;
    rd_client_t *retired;
} rd_module_t;

/* ---- slots ---- */

static uint16_t crc16(const char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned tg_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);
        if (close != NULL && close > open + 1)
            return crc16(open + 1, (size_t)(close - open - 1)) % RD_SLOTS;
    }
    return crc16(key, len) % RD_SLOTS;
}

/* ---- logging, at most once a second per worker ---- */

static void rd_log(rd_client_t *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rd_log(rd_client_t *cl, const char *fmt, ...)
{
    uint64_t now = tg_clock_us() / 1000;
    if (cl->last_log_ms != 0 && now - cl->last_log_ms < 1000) {
        cl->held_back++;
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (cl->held_back)
        tg_log(TG_LOG_WARN, "redis: %s (and %lu more problems in the last second)", msg, cl->held_back);
    else
        tg_log(TG_LOG_WARN, "redis: %s", msg);
    cl->last_log_ms = now;
    cl->held_back = 0;
}

static void count_error(rd_client_t *cl, tg_redis_err_t kind)
{
    tg_counter_add(&cl->stats->errors[kind], 1);
}

/* ---- calls ---- */

static rd_call_t *call_new(rd_client_t *cl, size_t cmd_len)
{
    rd_call_t *c = cl->free_calls;
    if (c != NULL)
        cl->free_calls = c->next_free;
    else if ((c = malloc(sizeof(*c))) == NULL)
        return NULL;
    memset(c, 0, offsetof(rd_call_t, inline_cmd));
    c->cmd = cmd_len <= RD_INLINE_CMD ? c->inline_cmd : malloc(cmd_len);
    if (c->cmd == NULL) {
        c->next_free = cl->free_calls;
        cl->free_calls = c;
        return NULL;
    }
    return c;
}

static void call_free(rd_client_t *cl, rd_call_t *c)
{
    if (c->cmd != c->inline_cmd)
        free(c->cmd);
    c->next_free = cl->free_calls;
    cl->free_calls = c;
}

/* Answers the caller (once). */
static void call_answer(rd_call_t *c, tg_store_status_t st, const tg_resp_value_t *v)
{
    if (c->answered)
        return;
    c->answered = 1;
    if (c->kind == CALL_USER && c->cb != NULL)
        c->cb(c->arg, c->gen, st, v);
}

static rd_call_t *internal_call(rd_client_t *cl, call_kind_t kind, int argc, const char *const *argv,
                                const size_t *lens)
{
    size_t need = tg_resp_command_size(argc, lens);
    rd_call_t *c = call_new(cl, need);
    if (c == NULL)
        return NULL;
    c->kind = kind;
    c->answered = 1; /* nobody waits on it */
    c->len = tg_resp_command(c->cmd, need, argc, argv, lens);
    c->start_us = tg_clock_us();
    c->deadline_us = c->start_us + cl->conf->connect_timeout_ms * 1000;
    return c;
}

/* ---- connections ---- */

static void conn_connect(rd_conn_t *cn);
static void conn_on_sock(tg_sock_t *s, int events, void *arg);

/* Makes the deadline timer fire at the earliest of: the deadline of the first
 * call nobody has answered yet, or (all answered) the moment the oldest
 * call's reply is so late that the connection is taken for dead. */
static void arm_deadline(rd_conn_t *cn)
{
    rd_call_t *c;
    TAILQ_FOREACH(c, &cn->sent, link)
        if (!c->answered)
            break;
    uint64_t at;
    if (c != NULL) {
        at = c->deadline_us;
    } else {
        rd_call_t *head = TAILQ_FIRST(&cn->sent);
        if (head == NULL)
            return;
        uint64_t stuck = cn->cl->conf->timeout_ms * 20 * 1000;
        at = head->start_us + (stuck < RD_STUCK_MIN_MS * 1000 ? RD_STUCK_MIN_MS * 1000 : stuck);
    }
    if (tg_timer_pending(&cn->deadline) && cn->deadline.deadline_us <= at)
        return;
    uint64_t now = tg_clock_us();
    tg_timer_after(tg_worker_loop(cn->cl->w), &cn->deadline, at > now ? at - now : 0);
}

/* Writes a call on the connection (connected or still connecting: the
 * socket holds output until the handshake is done). */
static void conn_send(rd_conn_t *cn, rd_call_t *c)
{
    evbuffer_add(tg_sock_out(cn->sock), c->cmd, c->len);
    TAILQ_INSERT_TAIL(&cn->sent, c, link);
    cn->n_sent++;
    tg_sock_flush(cn->sock);
    arm_deadline(cn);
}

static void schedule_reconnect(rd_conn_t *cn)
{
    rd_client_t *cl = cn->cl;
    if (cl->retiring || cn->retry_pending)
        return;
    cn->backoff_ms = cn->backoff_ms ? cn->backoff_ms * 2 : RD_BACKOFF_MIN_MS;
    if (cn->backoff_ms > RD_BACKOFF_MAX_MS)
        cn->backoff_ms = RD_BACKOFF_MAX_MS;
    uint64_t half = cn->backoff_ms / 2, delay = half + tg_worker_random(cl->w) % (half + 1);
    cn->retry_pending = 1;
    tg_timer_after(tg_worker_loop(cl->w), &cn->retry, delay * 1000);
}

static void request_refresh(rd_client_t *cl);

/* The connection is gone: every call on it fails (those not answered
 * yet get TG_STORE_ERROR), and it reconnects after a backoff. */
static void conn_fail(rd_conn_t *cn, tg_redis_err_t kind, const char *why)
{
    rd_client_t *cl = cn->cl;
    if (cn->sock != NULL) {
        tg_sock_free(cn->sock);
        cn->sock = NULL;
        if (cn->state == RC_READY)
            tg_counter_sub(&cl->stats->connections, 1);
    }
    int had_calls = !TAILQ_EMPTY(&cn->sent);
    memset(&cn->scan, 0, sizeof(cn->scan));
    cn->state = RC_DOWN;
    tg_timer_cancel(&cn->deadline);
    struct rd_call_list calls = TAILQ_HEAD_INITIALIZER(calls);
    TAILQ_CONCAT(&calls, &cn->sent, link);
    cn->n_sent = 0;
    if (kind != TG_REDIS_ERR_CLOSED || had_calls)
        count_error(cl, kind);
    rd_log(cl, "%s: %s", cn->node->addr, why);
    schedule_reconnect(cn);
    rd_call_t *c;
    while ((c = TAILQ_FIRST(&calls)) != NULL) {
        TAILQ_REMOVE(&calls, c, link);
        call_answer(c, TG_STORE_ERROR, NULL);
        call_free(cl, c);
    }
    if (cl->slots != NULL)
        request_refresh(cl); /* a failover may have moved its slots */
}

static void on_retry(tg_timer_t *t)
{
    rd_conn_t *cn = TG_CONTAINER_OF(t, rd_conn_t, retry);
    cn->retry_pending = 0;
    if (cn->state == RC_DOWN && !cn->cl->retiring)
        conn_connect(cn);
}

/* The deadline of the oldest unanswered call passed: answer every call
 * whose deadline is over; a connection whose oldest call has waited far
 * longer than any deadline is taken for dead. */
static void on_deadline(tg_timer_t *t)
{
    rd_conn_t *cn = TG_CONTAINER_OF(t, rd_conn_t, deadline);
    rd_client_t *cl = cn->cl;
    uint64_t now = tg_clock_us(), stuck = cl->conf->timeout_ms * 20 * 1000;
    if (stuck < RD_STUCK_MIN_MS * 1000)
        stuck = RD_STUCK_MIN_MS * 1000;
    rd_call_t *head = TAILQ_FIRST(&cn->sent);
    if (head != NULL && now - head->start_us >= stuck) {
        conn_fail(cn, TG_REDIS_ERR_TIMEOUT, "no reply for a long time: connection closed");
        return;
    }
    size_t late = 0;
    rd_call_t *c;
    TAILQ_FOREACH(c, &cn->sent, link) {
        if (c->deadline_us > now)
            continue;
        if (!c->answered) {
            if (c->kind == CALL_USER)
                late++;
            call_answer(c, TG_STORE_TIMEOUT, NULL);
        }
    }
    if (late) {
        tg_counter_add(&cl->stats->errors[TG_REDIS_ERR_TIMEOUT], late);
        rd_log(cl, "%s: %zu calls got no reply within %llums", cn->node->addr, late,
               (unsigned long long)cl->conf->timeout_ms);
    }
    if (cn->state != RC_DOWN)
        arm_deadline(cn);
}

static void conn_connect(rd_conn_t *cn)
{
    rd_client_t *cl = cn->cl;
    rd_node_t *nd = cn->node;
    cn->sock = tg_sock_connect(tg_worker_sockloop(cl->w), (struct sockaddr *)&nd->sa, nd->salen);
    if (cn->sock == NULL) {
        char why[128];
        snprintf(why, sizeof(why), "connect failed: %s", strerror(errno));
        cn->state = RC_CONNECTING; /* so that conn_fail counts it as a connect failure */
        conn_fail(cn, TG_REDIS_ERR_CONNECT, why);
        return;
    }
    tg_sock_set_cb(cn->sock, conn_on_sock, cn);
    tg_sock_set_timeout(cn->sock, cl->conf->connect_timeout_ms);
    if (cl->tls != NULL) {
        SSL *ssl = tg_tls_client_ssl(cl->tls, nd->host);
        if (ssl == NULL || tg_sock_start_tls(cn->sock, ssl) < 0) {
            if (ssl != NULL)
                SSL_free(ssl);
            cn->state = RC_CONNECTING;
            conn_fail(cn, TG_REDIS_ERR_CONNECT, "cannot start TLS");
            return;
        }
    }
    cn->state = RC_CONNECTING;
    if (cl->conf->password != NULL) { /* first on the wire */
        const char *argv[3] = { "AUTH", cl->conf->username, cl->conf->password };
        size_t lens[3] = { 4, cl->conf->username ? strlen(cl->conf->username) : 0, strlen(cl->conf->password) };
        int argc = 3;
        if (cl->conf->username == NULL) {
            argv[1] = argv[2];
            lens[1] = lens[2];
            argc = 2;
        }
        rd_call_t *c = internal_call(cl, CALL_AUTH, argc, argv, lens);
        if (c == NULL) {
            conn_fail(cn, TG_REDIS_ERR_CONNECT, "out of memory");
            return;
        }
        conn_send(cn, c);
    }
}

/* A node's name, as Redis writes it: "host:port", "[v6]:port". */
static void node_addr(char *out, size_t cap, const char *host, unsigned port)
{
    snprintf(out, cap, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, port);
}

static rd_node_t *node_find(rd_client_t *cl, const char *addr)
{
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (strcmp(cl->nodes[i]->addr, addr) == 0)
            return cl->nodes[i];
    return NULL;
}

/* A node by "host:port"; made if new. A seed from the config may be a
 * name (resolved once, as the client is made); what the Cluster says — a
 * slot map entry — must be an address: a name would need a lookup on the
 * worker's loop, and a hijacked server could name any host to be sent
 * the credentials. NULL: a bad address, a name from the Cluster, or too
 * many nodes. */
static rd_node_t *node_get(rd_client_t *cl, const char *host, unsigned port, int from_cluster)
{
    char addr[64];
    node_addr(addr, sizeof(addr), host, port);
    rd_node_t *nd = node_find(cl, addr);
    if (nd != NULL || cl->n_nodes == RD_MAX_NODES || strlen(host) >= sizeof(nd->host))
        return nd;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = from_cluster ? AI_NUMERICHOST | AI_NUMERICSERV : 0 }, *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    if (getaddrinfo(host, ps, &hints, &ai) != 0 || ai == NULL) {
        if (from_cluster)
            count_error(cl, TG_REDIS_ERR_REDIRECT);
        rd_log(cl, "%s: %s", addr, from_cluster ? "the Cluster names a host, not an address: not followed"
                                                : "cannot resolve the address");
        return NULL;
    }
    nd = calloc(1, sizeof(*nd));
    if (nd != NULL)
        nd->conns = calloc(cl->conf->pool, sizeof(rd_conn_t));
    if (nd == NULL || nd->conns == NULL) {
        free(nd);
        freeaddrinfo(ai);
        return NULL;
    }
    snprintf(nd->addr, sizeof(nd->addr), "%s", addr);
    snprintf(nd->host, sizeof(nd->host), "%s", host);
    memcpy(&nd->sa, ai->ai_addr, ai->ai_addrlen);
    nd->salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    for (unsigned i = 0; i < cl->conf->pool; i++) {
        rd_conn_t *cn = &nd->conns[i];
        cn->cl = cl;
        cn->node = nd;
        TAILQ_INIT(&cn->sent);
        tg_arena_init(&cn->arena);
        cn->deadline.fn = on_deadline;
        cn->retry.fn = on_retry;
    }
    cl->nodes[cl->n_nodes++] = nd;
    return nd;
}

/* A connection of the node to send on: a connected one in turn, else one
 * that is connecting, else a closed one not in backoff (connected now).
 * NULL: all are waiting out a backoff. */
static rd_conn_t *node_conn(rd_node_t *nd, unsigned pool)
{
    rd_conn_t *connecting = NULL, *idle = NULL;
    for (unsigned k = 0; k < pool; k++) {
        rd_conn_t *cn = &nd->conns[(nd->next + k) % pool];
        if (cn->state == RC_READY && cn->n_sent < RD_MAX_PENDING) {
            nd->next = (nd->next + k + 1) % pool;
            return cn;
        }
        if (cn->state == RC_CONNECTING && cn->n_sent < RD_MAX_PENDING && connecting == NULL)
            connecting = cn;
        if (cn->state == RC_DOWN && !cn->retry_pending && idle == NULL)
            idle = cn;
    }
    if (connecting != NULL)
        return connecting;
    if (idle != NULL) {
        conn_connect(idle);
        if (idle->state == RC_CONNECTING)
            return idle;
    }
    return NULL;
}

static rd_node_t *node_for_slot(rd_client_t *cl, unsigned slot)
{
    if (cl->slots != NULL && cl->slots[slot] != 0 && cl->slots[slot] <= cl->n_nodes)
        return cl->nodes[cl->slots[slot] - 1];
    return cl->nodes[0]; /* before the map is known: a seed answers, or says MOVED */
}

/* ---- Cluster slot map ---- */

static void request_refresh(rd_client_t *cl)
{
    uint64_t now = tg_clock_us() / 1000;
    if (cl->slots == NULL || cl->refresh_pending || cl->retiring || now - cl->last_refresh_ms < RD_REFRESH_MIN_MS)
        return;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        rd_node_t *nd = cl->nodes[i];
        for (unsigned k = 0; k < cl->conf->pool; k++) {
            rd_conn_t *cn = &nd->conns[k];
            if (cn->state != RC_READY)
                continue;
            const char *argv[2] = { "CLUSTER", "SLOTS" };
            size_t lens[2] = { 7, 5 };
            rd_call_t *c = internal_call(cl, CALL_SLOTS, 2, argv, lens);
            if (c == NULL)
                return;
            cl->refresh_pending = 1;
            cl->last_refresh_ms = now;
            conn_send(cn, c);
            return;
        }
    }
}

/* CLUSTER SLOTS: [[start, end, [ip, port, id], replicas...], ...] */
static void apply_slots(rd_client_t *cl, rd_node_t *asked, const tg_resp_value_t *v)
{
    if (v->type != TG_RESP_ARRAY) {
        rd_log(cl, "CLUSTER SLOTS: unexpected reply%s%s", v->type == TG_RESP_ERROR ? ": " : "",
               v->type == TG_RESP_ERROR ? v->str : "");
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const tg_resp_value_t *r = &v->items[i];
        if (r->type != TG_RESP_ARRAY || r->n < 3 || r->items[0].type != TG_RESP_INTEGER ||
            r->items[1].type != TG_RESP_INTEGER || r->items[2].type != TG_RESP_ARRAY || r->items[2].n < 2 ||
            r->items[2].items[0].type != TG_RESP_BULK || r->items[2].items[1].type != TG_RESP_INTEGER)
            continue;
        int64_t from = r->items[0].integer, to = r->items[1].integer, port = r->items[2].items[1].integer;
        const char *ip = r->items[2].items[0].str;
        if (from < 0 || to >= RD_SLOTS || from > to || port <= 0 || port > 65535)
            continue;
        if (ip[0] == '\0' || strcmp(ip, "?") == 0)
            ip = asked->host; /* the node we asked */
        rd_node_t *nd = node_get(cl, ip, (unsigned)port, 1);
        if (nd == NULL)
            continue;
        size_t idx = 0;
        while (cl->nodes[idx] != nd)
            idx++;
        for (int64_t s = from; s <= to; s++)
            cl->slots[s] = (unsigned char)(idx + 1);
    }
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and the node — one
 * the seeds or a slot map already named, never a new one: the server that
 * redirects may be hijacked, and the credentials go to every node on
 * connect. A redirect elsewhere asks for a fresh slot map (which names
 * new primaries) and fails the call (counted). */
static rd_node_t *redirect_target(rd_client_t *cl, const char *msg, unsigned *slot)
{
    const char *sp = strchr(msg, ' ');
    if (sp == NULL)
        return NULL;
    char *end;
    unsigned long s = strtoul(sp + 1, &end, 10);
    if (*end != ' ' || s >= RD_SLOTS)
        return NULL;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= 48)
        return NULL;
    char host[48];
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (host[0] == '[') { /* [v6] */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port == 0 || port > 65535)
        return NULL;
    *slot = (unsigned)s;
    char key[64];
    node_addr(key, sizeof(key), host, (unsigned)port);
    rd_node_t *nd = node_find(cl, key);
    if (nd == NULL) {
        count_error(cl, TG_REDIS_ERR_REDIRECT);
        rd_log(cl, "a redirect to %s, which no slot map names: not followed (the slot map is asked again)", key);
        request_refresh(cl);
    }
    return nd;
}

/* Sends a call again (after NOSCRIPT, MOVED or ASK) to nd; fails it if
 * there is no way. */
static void resend(rd_client_t *cl, rd_node_t *nd, rd_call_t *c, int asking)
{
    rd_conn_t *cn = nd ? node_conn(nd, cl->conf->pool) : NULL;
    if (cn == NULL || ++c->rounds > RD_MAX_REDIRECTS) {
        count_error(cl, TG_REDIS_ERR_UNAVAILABLE);
        call_answer(c, TG_STORE_ERROR, NULL);
        call_free(cl, c);
        return;
    }
    c->asking = asking;
    if (asking) {
        const char *argv[1] = { "ASKING" };
        size_t lens[1] = { 6 };
        rd_call_t *a = internal_call(cl, CALL_ASKING, 1, argv, lens);
        if (a != NULL)
            conn_send(cn, a);
    }
    conn_send(cn, c);
}

/* ---- replies ---- */

static void on_reply(rd_conn_t *cn, const tg_resp_value_t *v)
{
    rd_client_t *cl = cn->cl;
    rd_call_t *c = TAILQ_FIRST(&cn->sent);
    if (c == NULL) {
        conn_fail(cn, TG_REDIS_ERR_PROTOCOL, "a reply nobody asked for");
        return;
    }
    TAILQ_REMOVE(&cn->sent, c, link);
    cn->n_sent--;
    int is_err = v->type == TG_RESP_ERROR;
    switch (c->kind) {
    case CALL_AUTH:
        call_free(cl, c);
        if (is_err) {
            char why[256];
            snprintf(why, sizeof(why), "AUTH refused: %.200s", v->str);
            conn_fail(cn, TG_REDIS_ERR_AUTH, why);
        }
        return;
    case CALL_LOAD:
        if (is_err)
            rd_log(cl, "%s: SCRIPT LOAD failed: %.200s", cn->node->addr, v->str);
        call_free(cl, c);
        return;
    case CALL_SLOTS:
        cl->refresh_pending = 0;
        apply_slots(cl, cn->node, v);
        call_free(cl, c);
        return;
    case CALL_ASKING:
        call_free(cl, c);
        return;
    case CALL_USER:
        break;
    }
    int wanted = !c->answered || c->cb == NULL; /* someone waits, or it is fire and forget */
    if (is_err && strncmp(v->str, "NOSCRIPT", 8) == 0 && wanted && c->script_text != NULL) {
        const char *argv[3] = { "SCRIPT", "LOAD", c->script_text };
        size_t lens[3] = { 6, 4, strlen(c->script_text) };
        rd_call_t *load = internal_call(cl, CALL_LOAD, 3, argv, lens);
        if (load != NULL)
            conn_send(cn, load);
        resend(cl, cn->node, c, c->asking);
        return;
    }
    if (is_err && cl->conf->cluster && wanted &&
        (strncmp(v->str, "MOVED ", 6) == 0 || strncmp(v->str, "ASK ", 4) == 0)) {
        int ask = v->str[0] == 'A';
        unsigned slot = 0;
        rd_node_t *nd = redirect_target(cl, v->str, &slot);
        tg_counter_add(ask ? &cl->stats->ask : &cl->stats->moved, 1);
        if (!ask && nd != NULL && cl->slots != NULL) {
            size_t idx = 0;
            while (cl->nodes[idx] != nd)
                idx++;
            cl->slots[slot] = (unsigned char)(idx + 1);
            request_refresh(cl);
        }
        resend(cl, nd, c, ask);
        return;
    }
    if (is_err) {
        count_error(cl, TG_REDIS_ERR_SERVER);
        rd_log(cl, "%s: %.200s", cn->node->addr, v->str);
        call_answer(c, TG_STORE_ERROR, NULL);
    } else {
        uint64_t us = tg_clock_us() - c->start_us;
        size_t b = 0;
        while (b < TG_REDIS_BUCKETS && us > tg_redis_bucket_us[b])
            b++;
        if (b < TG_REDIS_BUCKETS)
            tg_counter_add(&cl->stats->buckets[b], 1);
        tg_counter_add(&cl->stats->count, 1);
        tg_counter_add(&cl->stats->sum_us, us);
        call_answer(c, TG_STORE_OK, v);
    }
    call_free(cl, c);
}

/* Replies are scanned as they arrive (linear in their size, bounded by
 * max_reply_bytes) and decoded once each is whole. */
static void conn_read(rd_conn_t *cn)
{
    struct evbuffer *in = tg_sock_in(cn->sock);
    tg_sock_t *s = cn->sock;
    size_t max = cn->cl->conf->max_reply_bytes ? cn->cl->conf->max_reply_bytes : TG_DEFAULT_REDIS_MAX_REPLY;
    while (cn->sock == s && evbuffer_get_length(in) > cn->scan.pos) {
        struct evbuffer_ptr at;
        struct evbuffer_iovec v[16];
        tg_resp_seg_t segs[16];
        if (evbuffer_ptr_set(in, &at, cn->scan.pos, EVBUFFER_PTR_SET) < 0)
            break;
        int n = evbuffer_peek(in, -1, &at, v, 16);
        if (n > 16)
            n = 16; /* the rest on the next round */
        for (int i = 0; i < n; i++)
            segs[i] = (tg_resp_seg_t){ v[i].iov_base, v[i].iov_len };
        size_t before = cn->scan.pos;
        long end = tg_resp_scan(&cn->scan, segs, (size_t)n, max);
        if (end < 0) {
            int big = end == -2;
            memset(&cn->scan, 0, sizeof(cn->scan));
            conn_fail(cn, big ? TG_REDIS_ERR_REPLY_SIZE : TG_REDIS_ERR_PROTOCOL,
                      big ? "a reply past max_reply_bytes: connection closed" : "the server's reply is not RESP");
            return;
        }
        if (end == 0) {
            if (cn->scan.pos == before || evbuffer_get_length(in) <= cn->scan.pos)
                break; /* all that has come is scanned: wait for more */
            continue;
        }
        const char *buf = (const char *)evbuffer_pullup(in, end);
        tg_resp_value_t val;
        size_t used = 0;
        tg_arena_reset(&cn->arena);
        if (buf == NULL || tg_resp_parse(buf, (size_t)end, &cn->arena, &val, &used) != TG_RESP_OK ||
            used != (size_t)end) {
            conn_fail(cn, TG_REDIS_ERR_PROTOCOL, "the server's reply is not RESP");
            return;
        }
        on_reply(cn, &val);
        if (cn->sock == s)
            evbuffer_drain(in, used);
    }
    if (cn->sock == s)
        tg_sock_consumed(s); /* the timer, armed for an earlier moment, re-arms itself when it fires */
}

static void conn_on_sock(tg_sock_t *s, int events, void *arg)
{
    rd_conn_t *cn = arg;
    rd_client_t *cl = cn->cl;
    if (events & TG_SOCK_CONNECTED) {
        cn->state = RC_READY;
        cn->backoff_ms = 0;
        tg_sock_set_timeout(s, 0);
        tg_counter_add(&cl->stats->connections, 1);
        if (cl->slots != NULL && cl->last_refresh_ms == 0)
            request_refresh(cl);
    }
    if (events & TG_SOCK_READ)
        conn_read(cn);
    if (cn->sock != s)
        return;
    if (events & (TG_SOCK_ERROR | TG_SOCK_TIMEOUT)) {
        char why[160], tls[96];
        const char *what = cn->state == RC_READY ? "connection lost" : "connect failed";
        if (events & TG_SOCK_TIMEOUT)
            snprintf(why, sizeof(why), "connect timed out");
        else
            snprintf(why, sizeof(why), "%s: %s", what, tg_sock_tls_error(s, tls, sizeof(tls)));
        conn_fail(cn, cn->state == RC_READY ? TG_REDIS_ERR_CLOSED : TG_REDIS_ERR_CONNECT, why);
        return;
    }
    if (events & TG_SOCK_EOF)
        conn_fail(cn, TG_REDIS_ERR_CLOSED, "the server closed the connection");
}

/* ---- the store ---- */

static int rd_eval(tg_store_t *st, const tg_store_call_t *call)
{
    rd_client_t *cl = (rd_client_t *)st;
    unsigned slot = cl->conf->cluster ? tg_redis_key_slot(call->key, call->key_len) : 0;
    rd_conn_t *cn = cl->retiring || cl->n_nodes == 0 ? NULL : node_conn(node_for_slot(cl, slot), cl->conf->pool);
    if (cn == NULL) {
        count_error(cl, TG_REDIS_ERR_UNAVAILABLE);
        return -1;
    }
    int argc = 4 + call->argc;
    const char *argv[4 + 32];
    size_t lens[4 + 32];
    if (call->argc > 32)
        return -1;
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = call->script->sha1;
    lens[1] = 40;
    argv[2] = "1";
    lens[2] = 1;
    argv[3] = call->key;
    lens[3] = call->key_len;
    for (int i = 0; i < call->argc; i++) {
        argv[4 + i] = call->argv[i];
        lens[4 + i] = call->lens[i];
    }
    size_t need = tg_resp_command_size(argc, lens);
    rd_call_t *c = call_new(cl, need);
    if (c == NULL) {
        count_error(cl, TG_REDIS_ERR_UNAVAILABLE);
        return -1;
    }
    c->kind = CALL_USER;
    c->cb = call->cb;
    c->arg = call->arg;
    c->gen = call->gen;
    c->answered = call->cb == NULL;
    c->script_text = call->script->text;
    c->slot = slot;
    c->len = tg_resp_command(c->cmd, need, argc, argv, lens);
    c->start_us = tg_clock_us();
    c->deadline_us = c->start_us + cl->conf->timeout_ms * 1000;
    conn_send(cn, c);
    return 0;
}

static const tg_store_ops_t rd_ops = { .eval = rd_eval };

static int same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Can a client made for a serve b unchanged? */
static int same_conf(const tg_redis_conf_t *a, const tg_redis_conf_t *b)
{
    if (a->cluster != b->cluster || a->n_nodes != b->n_nodes || a->timeout_ms != b->timeout_ms ||
        a->connect_timeout_ms != b->connect_timeout_ms || a->pool != b->pool || !same_str(a->username, b->username) ||
        !same_str(a->password, b->password) || !same_str(a->key_prefix, b->key_prefix) ||
        a->tls.enabled != b->tls.enabled || !same_str(a->tls.ca, b->tls.ca) ||
        !same_str(a->tls.server_name, b->tls.server_name) || a->tls.verify != b->tls.verify ||
        !same_str(a->tls.client_cert.cert, b->tls.client_cert.cert) ||
        !same_str(a->tls.client_cert.key, b->tls.client_cert.key) || a->tls.min_version != b->tls.min_version)
        return 0;
    for (size_t i = 0; i < a->n_nodes; i++)
        if (strcmp(a->nodes[i].address, b->nodes[i].address) != 0)
            return 0;
    return 1;
}

static void client_free(rd_client_t *cl)
{
    if (cl == NULL)
        return;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        rd_node_t *nd = cl->nodes[i];
        for (unsigned k = 0; k < cl->conf->pool; k++) {
            rd_conn_t *cn = &nd->conns[k];
            if (cn->sock != NULL) {
                tg_sock_free(cn->sock);
                if (cn->state == RC_READY)
                    tg_counter_sub(&cl->stats->connections, 1);
            }
            rd_call_t *c;
            while ((c = TAILQ_FIRST(&cn->sent)) != NULL) { /* callers are gone with the worker or answered */
                TAILQ_REMOVE(&cn->sent, c, link);
                call_free(cl, c);
            }
            tg_timer_cancel(&cn->deadline);
            tg_timer_cancel(&cn->retry);
            tg_arena_free(&cn->arena);
        }
        free(nd->conns);
        free(nd);
    }
    rd_call_t *c;
    while ((c = cl->free_calls) != NULL) {
        cl->free_calls = c->next_free;
        free(c);
    }
    tg_timer_cancel(&cl->retire);
    tg_tls_client_free(cl->tls);
    free(cl->slots);
    tg_config_unref(cl->cfg);
    free(cl);
}

static rd_client_t *client_new(tg_worker_t *w, tg_config_t *cfg)
{
    rd_client_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL)
        return NULL;
    cl->w = w;
    cl->cfg = tg_config_ref(cfg);
    cl->conf = &cfg->redis;
    cl->stats = &tg_worker_stats(w)->redis;
    cl->store.ops = &rd_ops;
    cl->store.key_prefix = cl->conf->key_prefix ? cl->conf->key_prefix : "";
    cl->store.key_prefix_len = strlen(cl->store.key_prefix);
    if (tg_deny_cache_init(&cl->store.deny) < 0)
        goto fail;
    if (cl->conf->cluster && (cl->slots = calloc(RD_SLOTS, 1)) == NULL)
        goto fail;
    if (cl->conf->tls.enabled) {
        tg_errors_t errs = { 0 };
        cl->tls = tg_tls_client_new(&cl->conf->tls, "redis", 0, &errs);
        for (size_t i = 0; i < errs.n; i++)
            tg_log(TG_LOG_ERROR, "redis tls: %s", errs.msgs[i]);
        tg_errors_free(&errs);
        if (cl->tls == NULL)
            goto fail;
    }
    for (size_t i = 0; i < cl->conf->n_nodes; i++)
        node_get(cl, cl->conf->nodes[i].host, cl->conf->nodes[i].port, 0);
    if (cl->n_nodes == 0)
        tg_log(TG_LOG_ERROR, "redis: no usable address: every call fails (on_store_error decides)");
    /* connect now, so that the first requests find a connection */
    for (size_t i = 0; i < (cl->conf->cluster ? cl->n_nodes : 1) && i < cl->n_nodes; i++)
        for (unsigned k = 0; k < cl->conf->pool; k++)
            conn_connect(&cl->nodes[i]->conns[k]);
    return cl;
fail:
    client_free(cl);
    return NULL;
}

static void unlist_retired(rd_client_t *cl)
{
    rd_module_t *m = tg_worker_state(cl->w, TG_WMOD_REDIS);
    for (rd_client_t **p = &m->retired; *p != NULL; p = &(*p)->next_retired)
        if (*p == cl) {
            *p = cl->next_retired;
            break;
        }
}

/* An old client closes once its calls are answered or timed out: its last
 * deadline (plus a margin) after the reload; it is freed when no exchange
 * holds it any more. */
static void on_retire(tg_timer_t *t)
{
    rd_client_t *cl = TG_CONTAINER_OF(t, rd_client_t, retire);
    for (size_t i = 0; i < cl->n_nodes; i++) /* whatever is left gets its answer */
        for (unsigned k = 0; k < cl->conf->pool; k++) {
            rd_conn_t *cn = &cl->nodes[i]->conns[k];
            rd_call_t *c;
            TAILQ_FOREACH(c, &cn->sent, link)
                call_answer(c, TG_STORE_TIMEOUT, NULL);
            if (cn->sock != NULL) {
                tg_sock_free(cn->sock);
                cn->sock = NULL;
                if (cn->state == RC_READY)
                    tg_counter_sub(&cl->stats->connections, 1);
                cn->state = RC_DOWN;
            }
            tg_timer_cancel(&cn->deadline);
            tg_timer_cancel(&cn->retry);
        }
    cl->closed = 1;
    if (cl->users == 0) {
        unlist_retired(cl);
        client_free(cl);
    }
}

tg_store_t *tg_redis_store_acquire(tg_worker_t *w)
{
    rd_module_t *m = tg_worker_state(w, TG_WMOD_REDIS);
    if (m == NULL || m->current == NULL)
        return NULL;
    m->current->users++;
    return &m->current->store;
}

void tg_redis_store_release(tg_store_t *s)
{
    rd_client_t *cl = (rd_client_t *)s;
    if (cl == NULL || --cl->users > 0 || !cl->closed)
        return;
    unlist_retired(cl);
    client_free(cl);
}

static void retire(rd_module_t *m, rd_client_t *cl)
{
    cl->retiring = 1;
    cl->retire.fn = on_retire;
    cl->next_retired = m->retired;
    m->retired = cl;
    if (tg_timer_set(tg_worker_loop(cl->w), &cl->retire, cl->conf->timeout_ms + 100) < 0)
        on_retire(&cl->retire);
}

static int rd_init(tg_worker_t *w)
{
    rd_module_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -1;
    tg_worker_set_state(w, TG_WMOD_REDIS, m);
    return 0;
}

static int rd_apply(tg_worker_t *w, const tg_snapshot_t *snap)
{
    rd_module_t *m = tg_worker_state(w, TG_WMOD_REDIS);
    const tg_redis_conf_t *rc = &snap->cfg->redis;
    if (m->current != NULL && rc->enabled && same_conf(m->current->conf, rc))
        return 0;
    rd_client_t *next = NULL;
    if (rc->enabled && (next = client_new(w, snap->cfg)) == NULL)
        tg_log(TG_LOG_ERROR, "redis: cannot set up the client: every call fails (on_store_error decides)");
    if (m->current != NULL)
        retire(m, m->current);
    m->current = next;
    return 0;
}

static void rd_free(tg_worker_t *w)
{
    rd_module_t *m = tg_worker_state(w, TG_WMOD_REDIS);
    if (m == NULL)
        return;
    client_free(m->current);
    rd_client_t *cl;
    while ((cl = m->retired) != NULL) {
        m->retired = cl->next_retired;
        client_free(cl);
    }
    free(m);
    tg_worker_set_state(w, TG_WMOD_REDIS, NULL);
}

const tg_worker_module_t tg_redis_module = {
    .id = TG_WMOD_REDIS,
    .init = rd_init,
    .apply = rd_apply,
    .free = rd_free,
};

