/*
 * filters/accesslog.c — access logging.
 *
 * Each worker formats its line into its own buffer slot (a mutex per slot,
 * shared only with the writer thread, never between workers). A writer
 * thread wakes every 100 ms (or when a slot passes 64 KiB), swaps each
 * slot's buffer for an empty one, and writes it out with one write() per
 * slot. A slot that reaches 4 MiB (the disk cannot keep up) drops further
 * lines and counts them, and the writer reports the count: the worker is
 * never blocked and never silently loses a line unreported. SIGUSR1 sets a
 * flag the writer acts on by reopening the file (for logrotate).
 *
 * Or the lines go to syslog (`syslog: udp:HOST:PORT | unix:PATH`): the
 * writer sends each as one RFC 5424 datagram (PRI, version, timestamp,
 * host, app name, pid, msgid "access", no structured data, the line as
 * the message); a datagram the socket refuses is counted as dropped.
 */
#include "filters/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/base/json.h"
#include "proxy/base/log.h"

#define SLOTS 256
#define WAKE_BYTES (64 * 1024)
#define MAX_BYTES (4 * 1024 * 1024)
#define LINE_MAX_BYTES 8192

/* rl_decision: the counter bits of each rate-limit decision, strongest
 * first (a quota's are among them: it counts under rate_limit's names) */
static const char *const rl_values[] = { "limited", "tagged", "shadow_limited", "allowed" };
#define RL_VALUES (sizeof(rl_values) / sizeof(rl_values[0]))

typedef struct slot {
    pthread_mutex_t lock;
    char *buf;
    size_t len, cap;
    /* Used only by the slot's worker while formatting (no lock): the
     * "YYYY-MM-DDTHH:MM:SS" of the last second formatted. */
    int64_t cached_sec;
    char cached_date[24];
} slot_t;

typedef struct access_log {
    char *path;                 /* NULL: stdout (or syslog) */
    char *syslog;               /* "udp:HOST:PORT" or "unix:PATH"; NULL: a file or stdout */
    struct sockaddr_storage sa; /* syslog's address */
    socklen_t salen;
    int facility;               /* syslog facility number (local0 = 16) */
    char app[49];               /* APP-NAME */
    char host[256];             /* HOSTNAME */
    char *template;             /* NULL: JSON */
    int fd;
    pthread_t thread;
    int started;                /* the writer runs (al_start) */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    atomic_int stop, reopen;
    atomic_ullong dropped;
    slot_t slots[SLOTS];
    uint64_t rl[RL_VALUES];     /* see rl_values */
} access_log_t;

/* ---- formatting ---- */

typedef struct out {
    char *p;
    size_t len, cap;
    const uint64_t *rl;         /* RL_VALUES masks, or NULL */
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->len + n < o->cap) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    } else {
        o->len = o->cap; /* mark overflow: the line is truncated */
    }
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_run(void *arg, const char *p, size_t n)
{
    put(arg, p, n);
}

/* A JSON string, escaped directly into the output (proxy/base/json.h). */
static void put_json_str(out_t *o, const char *s)
{
    if (s == NULL) {
        puts_(o, "null");
        return;
    }
    puts_(o, "\"");
    tg_json_write(s, strlen(s), put_run, o);
    puts_(o, "\"");
}

/* A text-format field: what a client controls cannot forge a line or a
 * field. Like nginx, '"', '\\', control bytes and bytes >= 0x7f are
 * written as \xHH; NULL is "-". */
static void put_text_str(out_t *o, const char *s)
{
    if (s == NULL) {
        puts_(o, "-");
        return;
    }
    for (const char *run = s;; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != 0 && c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            continue;
        put(o, run, (size_t)(s - run));
        if (c == 0)
            break;
        static const char hex[] = "0123456789ABCDEF";
        char e[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
        put(o, e, 4);
        run = s + 1;
    }
}

static void put_u64(out_t *o, uint64_t v)
{
    char b[24];
    put(o, b, tg_fmt_u64(b, v));
}

/* Milliseconds with three decimals, from microseconds. */
static void put_ms(out_t *o, uint64_t us)
{
    char b[32];
    size_t n = tg_fmt_u64(b, us / 1000);
    unsigned frac = (unsigned)(us % 1000);
    b[n++] = '.';
    b[n++] = (char)('0' + frac / 100);
    b[n++] = (char)('0' + frac / 10 % 10);
    b[n++] = (char)('0' + frac % 10);
    put(o, b, n);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ"; the part up to the second is formatted once
 * per second and kept in the worker's slot (cache may be NULL). */
static void put_time(out_t *o, int64_t unix_us, slot_t *cache)
{
    int64_t sec = unix_us / 1000000;
    char date[64]; /* room for any int year, to satisfy the compiler */
    if (cache != NULL && cache->cached_sec == sec) {
        memcpy(date, cache->cached_date, 19);
    } else {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(date, sizeof(date), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (cache != NULL) {
            memcpy(cache->cached_date, date, 19);
            cache->cached_sec = sec;
        }
    }
    put(o, date, 19);
    unsigned ms = (unsigned)(unix_us / 1000 % 1000);
    char b[5] = { '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z' };
    put(o, b, 5);
}

/* What rate_limit filters decided: "limited" (refused), "tagged" (over,
 * forwarded marked), "shadow_limited" (a shadow-mode filter would have
 * refused), "allowed", or NULL (none ran). */
static const char *rl_decision(const uint64_t *rl, uint64_t counted)
{
    for (size_t i = 0; rl != NULL && i < RL_VALUES; i++)
        if (counted & rl[i])
            return rl_values[i];
    return NULL;
}

/* One field, by name, as JSON (quoted where a string). Returns 0 if the
 * name is unknown. */
static int put_field(out_t *o, const char *name, size_t nlen, const tg_filter_record_t *r, int json, slot_t *cache)
{
#define IS(s) (nlen == sizeof(s) - 1 && memcmp(name, s, nlen) == 0)
#define STR(v) (json ? put_json_str(o, v) : put_text_str(o, v))
    if (IS("time"))
        json ? (puts_(o, "\""), put_time(o, r->start_unix_us, cache), puts_(o, "\"")) : put_time(o, r->start_unix_us, cache);
    else if (IS("request_id"))
        STR(r->request_id);
    else if (IS("listener"))
        STR(r->listener);
    else if (IS("route"))
        STR(r->route);
    else if (IS("method"))
        STR(r->method);
    else if (IS("path"))
        STR(r->path);
    else if (IS("protocol"))
        STR(r->protocol);
    else if (IS("status"))
        put_u64(o, (uint64_t)r->status);
    else if (IS("grpc_status"))
        STR(r->grpc_status);
    else if (IS("bytes_in"))
        put_u64(o, r->bytes_in);
    else if (IS("bytes_out"))
        put_u64(o, r->bytes_out);
    else if (IS("client"))
        STR(r->client_addr);
    else if (IS("identity"))
        STR(r->identity);
    else if (IS("upstream"))
        STR(r->upstream);
    else if (IS("attempts"))
        put_u64(o, r->attempts);
    else if (IS("duration_ms"))
        put_ms(o, r->total_us);
    else if (IS("upstream_connect_ms"))
        put_ms(o, r->connect_us);
    else if (IS("upstream_ttfb_ms"))
        put_ms(o, r->ttfb_us);
    else if (IS("upstream_ms"))
        put_ms(o, r->upstream_us);
    else if (IS("rl_decision"))
        STR(rl_decision(o->rl, r->counted));
    else if (IS("trace_id"))
        STR(r->trace_id);
    else if (IS("span_id"))
        STR(r->span_id);
    else
        return 0;
    return 1;
#undef IS
#undef STR
}

static const char *const json_fields[] = {
    "time", "request_id", "listener", "route", "method", "path", "protocol", "status", "grpc_status",
    "bytes_in", "bytes_out", "client", "identity", "upstream", "attempts", "duration_ms",
    "upstream_connect_ms", "upstream_ttfb_ms", "upstream_ms", "rl_decision", "trace_id", "span_id",
};

static size_t format_json(char *buf, size_t cap, const tg_filter_record_t *r, slot_t *cache, const uint64_t *rl)
{
    out_t o = { buf, 0, cap, rl };
    puts_(&o, "{");
    for (size_t i = 0; i < sizeof(json_fields) / sizeof(json_fields[0]); i++) {
        puts_(&o, i ? ", \"" : "\"");
        puts_(&o, json_fields[i]);
        puts_(&o, "\": ");
        put_field(&o, json_fields[i], strlen(json_fields[i]), r, 1, cache);
    }
    puts_(&o, "}\n");
    if (o.len >= cap) { /* truncated: never emit half a JSON object */
        o.len = 0;
        snprintf(buf, cap, "{\"error\": \"access log line too long\"}\n");
        return strlen(buf);
    }
    return o.len;
}

/* The rate-limit decisions' counter bits (rl_values' order). */
static void rl_masks(uint64_t *rl)
{
    for (size_t i = 0; i < RL_VALUES; i++)
        rl[i] = tg_filter_counter_mask("tollgate_ratelimit_decisions_total", rl_values[i]);
}

size_t tg_access_log_json(char *buf, size_t cap, const tg_filter_record_t *r)
{
    uint64_t rl[RL_VALUES];
    rl_masks(rl);
    return format_json(buf, cap, r, NULL, rl);
}

/* "{name}" placeholders replaced by field values; other text kept. */
static size_t format_template(char *buf, size_t cap, const char *t, const tg_filter_record_t *r, slot_t *cache,
                              const uint64_t *rl)
{
    out_t o = { buf, 0, cap - 1, rl };
    while (*t) {
        const char *open = strchr(t, '{'), *close = open ? strchr(open, '}') : NULL;
        if (open == NULL || close == NULL) {
            puts_(&o, t);
            break;
        }
        put(&o, t, (size_t)(open - t));
        put_field(&o, open + 1, (size_t)(close - open - 1), r, 0, cache);
        t = close + 1;
    }
    if (o.len >= cap - 1)
        o.len = cap - 2;
    buf[o.len++] = '\n';
    return o.len;
}

/* ---- the writer ---- */

static int open_log(access_log_t *l)
{
    if (l->syslog != NULL) {
        int fd = socket(l->sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&l->sa, l->salen) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        return fd;
    }
    if (l->path == NULL)
        return STDOUT_FILENO;
    return open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* What create() can say without opening anything (it also runs under
 * `tollgate -t`): the file is writable, or its directory is; a unix
 * syslog socket exists. 0, or -1 with errno. */
static int check_log(const access_log_t *l)
{
    if (l->syslog != NULL)
        return l->sa.ss_family == AF_UNIX ? access(((const struct sockaddr_un *)&l->sa)->sun_path, W_OK) : 0;
    if (l->path == NULL || access(l->path, W_OK) == 0)
        return 0;
    if (errno != ENOENT)
        return -1;
    char dir[4096];
    const char *slash = strrchr(l->path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash == l->path ? 1 : slash - l->path) : 1, slash ? l->path : ".");
    if (access(dir, W_OK | X_OK) == 0)
        return 0;
    if (errno == ENOENT || errno == ENOTDIR)
        errno = ENOENT; /* said of the file: its directory is missing */
    return -1;
}

static void *writer_main(void *arg);

/* Opens the log and starts its writer: when the config is put to use,
 * never under -t. */
static int al_start(void *p, const tg_filter_host_t *host, tg_errors_t *errs)
{
    access_log_t *l = p;
    if ((l->fd = open_log(l)) < 0) {
        if (l->syslog != NULL)
            tg_errors_add(errs, "access_log syslog: cannot reach %s: %s", l->syslog, strerror(errno));
        else
            tg_errors_add(errs, "access_log path: cannot open %s: %s", l->path, strerror(errno));
        return -1;
    }
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        tg_errors_add(errs, "access_log: cannot start the writer thread");
        return -1;
    }
    l->started = 1;
    return 0;
}

/* One RFC 5424 datagram per line: <PRI>1 TIMESTAMP HOST APP PID access - LINE */
static void send_syslog(access_log_t *l, const char *p, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char head[400];
    int hl = snprintf(head, sizeof(head), "<%d>1 %04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s %ld access - ",
                      l->facility * 8 + 6, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                      tm.tm_sec, ts.tv_nsec / 1000000, l->host, l->app, (long)getpid());
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        struct iovec iov[2] = { { head, (size_t)hl }, { (void *)p, len } };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
        if (len > 0 && sendmsg(l->fd, &mh, MSG_NOSIGNAL) < 0)
            atomic_fetch_add(&l->dropped, 1); /* refused (no reader, buffer full): counted, never waited for */
        len += nl ? 1 : 0;
        p += len;
        n -= len;
    }
}

static void write_all(access_log_t *l, const char *p, size_t n)
{
    if (l->syslog != NULL) {
        send_syslog(l, p, n);
        return;
    }
    while (n > 0) {
        ssize_t w = write(l->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            atomic_fetch_add(&l->dropped, 1);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void flush_slots(access_log_t *l, char **spare, size_t *spare_cap)
{
    for (size_t i = 0; i < SLOTS; i++) {
        slot_t *s = &l->slots[i];
        pthread_mutex_lock(&s->lock);
        if (s->len == 0) {
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        char *full = s->buf;
        size_t len = s->len, cap = s->cap;
        s->buf = *spare;
        s->cap = *spare_cap;
        s->len = 0;
        pthread_mutex_unlock(&s->lock);
        if (s->buf == NULL) { /* no spare yet: keep the old buffer, written below */
            pthread_mutex_lock(&s->lock);
            s->buf = full;
            s->cap = cap;
            write_all(l, full, len);
            s->len = 0;
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        write_all(l, full, len);
        *spare = full;
        *spare_cap = cap;
    }
}

static void *writer_main(void *arg)
{
    access_log_t *l = arg;
    char *spare = malloc(WAKE_BYTES * 2);
    size_t spare_cap = spare ? WAKE_BYTES * 2 : 0;
    for (;;) {
        pthread_mutex_lock(&l->wake_lock);
        if (!atomic_load(&l->stop)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&l->wake, &l->wake_lock, &ts);
        }
        pthread_mutex_unlock(&l->wake_lock);
        flush_slots(l, &spare, &spare_cap);
        unsigned long long d = atomic_exchange(&l->dropped, 0);
        if (d)
            tg_warn("access_log %s: %llu line(s) dropped (output too slow or failing)",
                    l->syslog ? l->syslog : l->path ? l->path : "stdout", d);
        if (atomic_exchange(&l->reopen, 0) && (l->path != NULL || l->syslog != NULL)) {
            int fd = open_log(l); /* a new file after logrotate; syslog: a new socket (the daemon restarted) */
            if (fd < 0) {
                tg_error("access_log: cannot reopen %s: %s", l->syslog ? l->syslog : l->path, strerror(errno));
            } else {
                close(l->fd);
                l->fd = fd;
            }
        }
        if (atomic_load(&l->stop)) {
            flush_slots(l, &spare, &spare_cap);
            break;
        }
    }
    free(spare);
    return NULL;
}

/* ---- the filter ---- */

static void al_destroy(void *p)
{
    access_log_t *l = p;
    if (l == NULL)
        return;
    if (l->started) {
        pthread_mutex_lock(&l->wake_lock);
        atomic_store(&l->stop, 1);
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->wake_lock);
        pthread_join(l->thread, NULL); /* the writer flushes what is left */
    }
    if (l->fd > STDOUT_FILENO)
        close(l->fd);
    for (size_t i = 0; i < SLOTS; i++) {
        free(l->slots[i].buf);
        pthread_mutex_destroy(&l->slots[i].lock);
    }
    pthread_mutex_destroy(&l->wake_lock);
    pthread_cond_destroy(&l->wake);
    free(l->path);
    free(l->syslog);
    free(l->template);
    free(l);
}

/* syslog: "udp:HOST:PORT" or "unix:PATH" into l->sa. 0, or -1 with why. */
static int syslog_address(access_log_t *l, const char *a, const char **why)
{
    if (strncmp(a, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&l->sa;
        if (a[5] == '\0' || strlen(a + 5) >= sizeof(un->sun_path)) {
            *why = "the socket path is empty or too long";
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, a + 5);
        l->salen = sizeof(*un);
        return 0;
    }
    if (strncmp(a, "udp:", 4) != 0) {
        *why = "give udp:HOST:PORT or unix:PATH";
        return -1;
    }
    char host[256];
    uint16_t port;
    if (tg_parse_hostport(a + 4, host, sizeof(host), &port) < 0 || port == 0) {
        *why = "not udp:HOST:PORT";
        return -1;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM }, *res = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL) {
        *why = "cannot resolve the host";
        return -1;
    }
    memcpy(&l->sa, res->ai_addr, res->ai_addrlen);
    l->salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int facility_number(const char *f)
{
    static const char *const names[] = { "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
                                         "uucp", "cron", "authpriv", "ftp" };
    for (int i = 0; i < 12; i++)
        if (strcmp(f, names[i]) == 0)
            return i;
    if (strncmp(f, "local", 5) == 0 && f[5] >= '0' && f[5] <= '7' && f[6] == '\0')
        return 16 + (f[5] - '0');
    return -1;
}

const char *tg_access_log_template_check(const char *t)
{
    while ((t = strchr(t, '{')) != NULL) {
        const char *close = strchr(t, '}');
        char scratch[64];
        out_t o = { scratch, 0, sizeof(scratch) };
        tg_filter_record_t dummy = { 0 };
        if (close == NULL || !put_field(&o, t + 1, (size_t)(close - t - 1), &dummy, 0, NULL))
            return t;
        t = close + 1;
    }
    return NULL;
}
static const tg_key_t al_keys[] = {
    { "path", TG_KEY_STRING, "`stdout` or a file path", "`stdout`",
      "files are opened for appending (created 0644); an unopenable path is a config error" },
    { "format", TG_KEY_STRING, "`json` or a template", "`json`",
      "a template is text with `{field}` placeholders, e.g. `\"{time} {method} {path} {status} {duration_ms}\"`; "
      "unknown placeholders are config errors" },
    { "syslog", TG_KEY_STRING, "`udp:HOST:PORT` or `unix:PATH`", "none",
      "instead of `path`: each line goes to syslog as one RFC 5424 datagram (severity informational), e.g. "
      "`unix:/dev/log` or `udp:10.0.0.9:514`; sent by the log's writer thread, never by a worker; refused datagrams "
      "are counted as dropped" },
    { "facility", TG_KEY_ENUM, "`local0`…`local7`, `daemon`, `user`, …", "`local0`", "with `syslog`",
      .choices = "local0|local1|local2|local3|local4|local5|local6|local7|kern|user|mail|daemon|auth|syslog|lpr|news|"
                 "uucp|cron|authpriv|ftp" },
    { "app_name", TG_KEY_STRING, "1–48 printable characters", "`tollgate`", "with `syslog`: APP-NAME" },
};
static const tg_keyset_t al_keyset = TG_KEYSET("filter.access_log", "access_log", al_keys);

static void *al_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[5];
    access_log_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->fd = -1;
    rl_masks(l->rl);
    pthread_mutex_init(&l->wake_lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    for (size_t i = 0; i < SLOTS; i++)
        pthread_mutex_init(&l->slots[i].lock, NULL);
    int rc = tg_node_keys(node, "access_log", &al_keyset, v);
    tg_node_t path = tg_node_get(v, &al_keyset, "path"), format = tg_node_get(v, &al_keyset, "format");
    tg_node_t syslog = tg_node_get(v, &al_keyset, "syslog"), facility = tg_node_get(v, &al_keyset, "facility");
    tg_node_t app = tg_node_get(v, &al_keyset, "app_name");
    l->facility = 16; /* local0 */
    snprintf(l->app, sizeof(l->app), "tollgate");
    if (tg_node_present(&syslog)) {
        const char *why = NULL;
        if (tg_node_present(&path)) {
            tg_node_error(&syslog, "access_log: give path or syslog, not both");
            rc = -1;
        } else if ((l->syslog = tg_node_str(&syslog, "access_log syslog")) == NULL) {
            rc = -1;
        } else if (syslog_address(l, l->syslog, &why) < 0) {
            tg_node_error(&syslog, "access_log syslog: '%s': %s", l->syslog, why);
            rc = -1;
        }
        if (gethostname(l->host, sizeof(l->host)) != 0 || l->host[0] == '\0')
            snprintf(l->host, sizeof(l->host), "-");
        l->host[sizeof(l->host) - 1] = '\0';
    }
    if (tg_node_present(&facility)) {
        char *f = tg_node_str(&facility, "access_log facility");
        if (f != NULL && (l->facility = facility_number(f)) < 0) {
            tg_node_error(&facility, "access_log facility: '%s' is not a syslog facility (local0..local7, daemon, user, ...)", f);
            rc = -1;
        }
        if (f == NULL)
            rc = -1;
        free(f);
    }
    if (tg_node_present(&app)) {
        char *a = tg_node_str(&app, "access_log app_name");
        size_t len = a ? strlen(a) : 0;
        int ok = a != NULL && len > 0 && len < sizeof(l->app);
        for (size_t i = 0; ok && i < len; i++)
            ok = a[i] > 32 && a[i] < 127; /* RFC 5424: PRINTUSASCII, at most 48 */
        if (ok)
            memcpy(l->app, a, len + 1);
        else {
            if (a != NULL)
                tg_node_error(&app, "access_log app_name: 1 to 48 printable characters without spaces");
            rc = -1;
        }
        free(a);
    }
    if (rc == 0 && l->syslog == NULL && (tg_node_present(&facility) || tg_node_present(&app))) {
        tg_node_error(tg_node_present(&facility) ? &facility : &app, "access_log: facility and app_name go with syslog");
        rc = -1;
    }
    if (tg_node_present(&path)) {
        char *p = tg_node_str(&path, "access_log path");
        if (p == NULL) {
            rc = -1;
        } else if (strcmp(p, "stdout") != 0) {
            l->path = p;
            p = NULL;
        }
        free(p);
    }
    if (tg_node_present(&format)) {
        char *f = tg_node_str(&format, "access_log format");
        if (f == NULL) {
            rc = -1;
        } else if (strcmp(f, "json") != 0) {
            const char *bad = tg_access_log_template_check(f); /* a template: its placeholders, now */
            if (bad != NULL) {
                tg_node_error(&format, "access_log format: unknown or unclosed placeholder at '%.20s'", bad);
                rc = -1;
            }
            l->template = f;
            f = NULL;
        }
        free(f);
    }
    if (rc == 0 && check_log(l) < 0) {
        if (l->syslog != NULL)
            tg_node_error(&syslog, "access_log syslog: cannot reach %s: %s", l->syslog, strerror(errno));
        else
            tg_node_error(&path, "access_log path: cannot open %s: %s", l->path, strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        al_destroy(l);
        return NULL;
    }
    return l;
}

static void al_on_complete(void *p, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    access_log_t *l = p;
    char line[LINE_MAX_BYTES];
    slot_t *s = &l->slots[fx->worker % SLOTS];
    size_t n = l->template ? format_template(line, sizeof(line), l->template, rec, s, l->rl)
                           : format_json(line, sizeof(line), rec, s, l->rl);
    int wake = 0;
    pthread_mutex_lock(&s->lock);
    if (s->len + n > MAX_BYTES) {
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add(&l->dropped, 1);
        return;
    }
    if (s->len + n > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : WAKE_BYTES * 2;
        while (ncap < s->len + n)
            ncap *= 2;
        char *nb = realloc(s->buf, ncap);
        if (nb == NULL) {
            pthread_mutex_unlock(&s->lock);
            atomic_fetch_add(&l->dropped, 1);
            return;
        }
        s->buf = nb;
        s->cap = ncap;
    }
    memcpy(s->buf + s->len, line, n);
    s->len += n;
    wake = s->len > WAKE_BYTES;
    pthread_mutex_unlock(&s->lock);
    if (wake)
        pthread_cond_signal(&l->wake);
}

static void al_reopen(void *p)
{
    access_log_t *l = p;
    atomic_store(&l->reopen, 1);
    pthread_cond_signal(&l->wake);
}

const tg_filter_type_t tg_filter_access_log = {
    .name = "access_log",
    .doc = "one line per exchange (JSON or a template) to stdout, a file or syslog, written off the workers",
    .keys = &al_keyset,
    .create = al_create,
    .destroy = al_destroy,
    .on_complete = al_on_complete,
    .reopen = al_reopen,
    .start = al_start,
};
