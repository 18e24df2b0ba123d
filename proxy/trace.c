/*
 * proxy/trace.c — see trace.h.
 */
#include "proxy/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/base/http.h"
#include "proxy/base/log.h"

/* ---- trace context ---- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* n bytes from 2n lower-case hex digits; 0 or -1. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
        if (lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

int tg_traceparent_parse(const char *v, tg_trace_ctx_t *t)
{
    uint8_t version;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t len = strlen(v);
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len < 55 || unhex(v, &version, 1) < 0 || version == 0xff || v[2] != '-' || v[35] != '-' || v[52] != '-' ||
        unhex(v + 3, t->trace_id, 16) < 0 || unhex(v + 36, t->parent_id, 8) < 0 || unhex(v + 53, &t->flags, 1) < 0)
        return -1;
    if (version == 0 && len != 55)
        return -1; /* version 00 is exactly this long */
    if (len > 55 && v[55] != '-')
        return -1; /* a later version: more fields after a dash */
    if (all_zero(t->trace_id, 16) || all_zero(t->parent_id, 8))
        return -1;
    return 0;
}

void tg_trace_hex(const uint8_t *b, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void tg_traceparent_format(const tg_trace_ctx_t *t, char out[56])
{
    memcpy(out, "00-", 3);
    tg_trace_hex(t->trace_id, 16, out + 3);
    out[35] = '-';
    tg_trace_hex(t->span_id, 8, out + 36);
    out[52] = '-';
    tg_trace_hex(&t->flags, 1, out + 53);
}

/* ---- the exporter ---- */

typedef struct ring {
    _Atomic uint64_t head;   /* written by the worker */
    char pad1[56];
    _Atomic uint64_t tail;   /* written by the exporter */
    char pad2[56];
    _Atomic uint64_t dropped;
    tg_span_t *slots;
} ring_t;

struct tg_tracer {
    tg_tracing_conf_t conf;      /* copies of the strings below */
    char *service, *host, *path;
    ring_t *rings;
    unsigned n_rings;
    uint32_t mask;
    pthread_t thread;
    pthread_mutex_t lock;        /* only for the stop signal */
    pthread_cond_t cond;
    int stop, started;
    _Atomic uint64_t exported, failed, batches;
    tg_span_t *batch;
    char *json;
    size_t json_cap;
};

void tg_tracer_submit(tg_tracer_t *t, unsigned worker, const tg_span_t *s)
{
    ring_t *r = &t->rings[worker % t->n_rings];
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (head - atomic_load_explicit(&r->tail, memory_order_acquire) > t->mask) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        return;
    }
    r->slots[head & t->mask] = *s;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

void tg_tracer_stats(const tg_tracer_t *t, tg_tracer_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (t == NULL)
        return;
    for (unsigned i = 0; i < t->n_rings; i++)
        out->dropped_full += atomic_load_explicit(&t->rings[i].dropped, memory_order_relaxed);
    out->exported = atomic_load_explicit(&t->exported, memory_order_relaxed);
    out->dropped_failed = atomic_load_explicit(&t->failed, memory_order_relaxed);
    out->batches = atomic_load_explicit(&t->batches, memory_order_relaxed);
}

/* Takes up to max spans from the rings into t->batch. */
static size_t drain(tg_tracer_t *t, size_t max)
{
    size_t n = 0;
    for (unsigned i = 0; i < t->n_rings && n < max; i++) {
        ring_t *r = &t->rings[i];
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail != head && n < max)
            t->batch[n++] = r->slots[tail++ & t->mask];
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    return n;
}

static size_t queued(tg_tracer_t *t)
{
    size_t n = 0;
    for (unsigned i = 0; i < t->n_rings; i++)
        n += atomic_load_explicit(&t->rings[i].head, memory_order_acquire) -
             atomic_load_explicit(&t->rings[i].tail, memory_order_relaxed);
    return n;
}

/* A growable text buffer for the JSON body. */
typedef struct out {
    char *p;
    size_t len, cap;
    int failed;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 65536;
        while (o->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->failed = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putj(out_t *o, const char *s)
{
    char esc[1024];
    tg_json_escape(esc, sizeof(esc), s);
    put(o, "\"", 1);
    puts_(o, esc);
    put(o, "\"", 1);
}

static void attr_str(out_t *o, const char *key, const char *v, int *first)
{
    if (v == NULL || v[0] == '\0')
        return;
    puts_(o, *first ? "{\"key\":" : ",{\"key\":");
    *first = 0;
    putj(o, key);
    puts_(o, ",\"value\":{\"stringValue\":");
    putj(o, v);
    puts_(o, "}}");
}

static void attr_int(out_t *o, const char *key, long long v, int *first)
{
    char b[64];
    puts_(o, *first ? "{\"key\":" : ",{\"key\":");
    *first = 0;
    putj(o, key);
    snprintf(b, sizeof(b), ",\"value\":{\"intValue\":\"%lld\"}}", v);
    puts_(o, b);
}

/* OTLP/HTTP JSON (opentelemetry-proto's ExportTraceServiceRequest; ids as
 * hex, 64-bit numbers as strings). */
static void to_json(tg_tracer_t *t, size_t n, out_t *o)
{
    char b[128], hex[40];
    puts_(o, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
    putj(o, t->service);
    puts_(o, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"tollgate\",\"version\":\"" TOLLGATE_VERSION "\"},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        const tg_span_t *s = &t->batch[i];
        puts_(o, i ? ",{\"traceId\":\"" : "{\"traceId\":\"");
        tg_trace_hex(s->ctx.trace_id, 16, hex);
        puts_(o, hex);
        puts_(o, "\",\"spanId\":\"");
        tg_trace_hex(s->ctx.span_id, 8, hex);
        puts_(o, hex);
        puts_(o, "\"");
        if (!all_zero(s->ctx.parent_id, 8)) {
            puts_(o, ",\"parentSpanId\":\"");
            tg_trace_hex(s->ctx.parent_id, 8, hex);
            puts_(o, hex);
            puts_(o, "\"");
        }
        char name[96];
        snprintf(name, sizeof(name), "%s %s", s->method, s->route[0] ? s->route : "(no route)");
        puts_(o, ",\"name\":");
        putj(o, name);
        snprintf(b, sizeof(b), ",\"kind\":2,\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\",\"attributes\":[",
                 (long long)s->start_unix_ns, (long long)s->end_unix_ns);
        puts_(o, b);
        int first = 1;
        attr_str(o, "http.request.method", s->method, &first);
        attr_str(o, "url.path", s->path, &first);
        attr_str(o, "http.route", s->route, &first);
        if (s->status)
            attr_int(o, "http.response.status_code", s->status, &first);
        if (s->grpc_status >= 0)
            attr_int(o, "rpc.grpc.status_code", s->grpc_status, &first);
        attr_str(o, "client.address", s->client, &first);
        attr_str(o, "server.upstream", s->upstream, &first);
        attr_str(o, "http.request.header.x-request-id", s->request_id, &first);
        /* a server span is an error when the server failed (5xx), or none was sent */
        snprintf(b, sizeof(b), "],\"status\":{\"code\":%d}}", s->status >= 500 || s->status == 0 ? 2 : 0);
        puts_(o, b);
    }
    puts_(o, "]}]}]}");
}


/* One POST of body; the status code, or -1. Blocking, bounded by the timeout. */
static int post(tg_tracer_t *t, const char *body, size_t len)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", t->conf.otlp_port);
    if (getaddrinfo(t->host, port, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), status = -1;
    int ms = (int)(t->conf.timeout_ms > 60000 ? 60000 : t->conf.timeout_ms);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0 && errno == EINPROGRESS) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int err = 0;
        socklen_t sl = sizeof(err);
        if (poll(&pfd, 1, ms) <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0 || err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nhost: %s:%u\r\ncontent-type: application/json\r\ncontent-length: %zu\r\n"
                      "user-agent: tollgate/%s\r\nconnection: close\r\n\r\n",
                      t->path, t->host, t->conf.otlp_port, len, TOLLGATE_VERSION);
    char reply[64];
    ssize_t got;
    if (hl > 0 && (size_t)hl < sizeof(head) && tg_send_all(fd, head, (size_t)hl) == 0 && tg_send_all(fd, body, len) == 0 &&
        (got = recv(fd, reply, sizeof(reply) - 1, 0)) > 12) {
        reply[got] = '\0';
        if (sscanf(reply, "HTTP/1.%*d %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

static void export_batch(tg_tracer_t *t, size_t n)
{
    out_t o = { .p = t->json, .cap = t->json_cap };
    to_json(t, n, &o);
    t->json = o.p;
    t->json_cap = o.cap;
    int status = o.failed ? -1 : post(t, o.p, o.len);
    atomic_fetch_add_explicit(&t->batches, 1, memory_order_relaxed);
    if (status >= 200 && status < 300) {
        atomic_fetch_add_explicit(&t->exported, n, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(&t->failed, n, memory_order_relaxed);
    tg_warn("tracing: %zu span(s) dropped: the collector at %s %s", n, t->conf.otlp_endpoint,
            status < 0 ? "could not be reached" : "refused them");
}

static void *exporter(void *arg)
{
    tg_tracer_t *t = arg;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        if (!t->stop && queued(t) < t->conf.batch_size) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + t->conf.flush_interval_ms % 1000 * 1000000;
            ts.tv_sec += (time_t)(t->conf.flush_interval_ms / 1000 + ns / 1000000000);
            ts.tv_nsec = (long)(ns % 1000000000);
            pthread_cond_timedwait(&t->cond, &t->lock, &ts);
        }
        int stop = t->stop;
        pthread_mutex_unlock(&t->lock);
        size_t n;
        while ((n = drain(t, t->conf.batch_size)) > 0) {
            export_batch(t, n);
            if (n < t->conf.batch_size)
                break;
        }
        if (stop)
            return NULL;
    }
}

tg_tracer_t *tg_tracer_start(const tg_tracing_conf_t *conf, unsigned n_workers)
{
    tg_tracer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->conf = *conf;
    t->service = strdup(conf->service_name ? conf->service_name : "tollgate");
    t->host = strdup(conf->otlp_host);
    t->path = strdup(conf->otlp_path);
    t->conf.otlp_endpoint = strdup(conf->otlp_endpoint);
    t->conf.service_name = t->conf.otlp_host = t->conf.otlp_path = NULL;
    t->n_rings = n_workers ? n_workers : 1;
    t->mask = conf->queue_size - 1;
    t->rings = calloc(t->n_rings, sizeof(*t->rings));
    t->batch = calloc(conf->batch_size, sizeof(*t->batch));
    int ok = t->service && t->host && t->path && t->conf.otlp_endpoint && t->rings && t->batch;
    for (unsigned i = 0; ok && i < t->n_rings; i++)
        ok = (t->rings[i].slots = calloc(conf->queue_size, sizeof(tg_span_t))) != NULL;
    if (ok) {
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->cond, NULL);
        ok = pthread_create(&t->thread, NULL, exporter, t) == 0;
        t->started = ok;
    }
    if (!ok) {
        tg_error("tracing: cannot start the span exporter (out of memory)");
        tg_tracer_stop(t);
        return NULL;
    }
    tg_info("tracing: exporting spans to %s", t->conf.otlp_endpoint);
    return t;
}

void tg_tracer_stop(tg_tracer_t *t)
{
    if (t == NULL)
        return;
    if (t->started) {
        pthread_mutex_lock(&t->lock);
        t->stop = 1;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
        pthread_join(t->thread, NULL);
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
    }
    for (unsigned i = 0; t->rings && i < t->n_rings; i++)
        free(t->rings[i].slots);
    free(t->rings);
    free(t->batch);
    free(t->json);
    free(t->service);
    free(t->host);
    free(t->path);
    free(t->conf.otlp_endpoint);
    free(t);
}
