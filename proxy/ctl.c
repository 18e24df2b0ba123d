/*
 * proxy/ctl.c — see ctl.h. A blocking client: it runs alone in its own
 * process, never inside the gateway.
 */
#include "proxy/ctl.h"
#include "proxy/ctl_top.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/base/http.h"

#define CTL_CONNECT_TIMEOUT_MS 5000
#define CTL_IO_TIMEOUT_S 60       /* a reload of a large config takes its time */
#define CTL_MAX_REPLY (64u << 20) /* /metrics of a large config stays far below */

enum { CTL_OK = 0, CTL_FAILED = 1, CTL_USAGE = 2, CTL_UNREACHABLE = 3 };

typedef struct reply {
    int status;
    char *buf;  /* the whole response, NUL-terminated */
    size_t len;
    const char *body;
} reply_t;

void tg_ctl_print_json(FILE *f, const char *s)
{
    int depth = 0, in_str = 0, esc = 0;
    for (; *s; s++) {
        char c = *s;
        if (in_str) {
            fputc(c, f);
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            fputc(c, f);
            break;
        case '{':
        case '[': {
            /* an empty {} or [] stays on one line */
            const char *n = s + 1;
            while (*n == ' ' || *n == '\n')
                n++;
            if (*n == (c == '{' ? '}' : ']')) {
                fprintf(f, "%c%c", c, *n);
                s = n;
                break;
            }
            fprintf(f, "%c\n%*s", c, 2 * ++depth, "");
            break;
        }
        case '}':
        case ']':
            depth = depth > 0 ? depth - 1 : 0;
            fprintf(f, "\n%*s%c", 2 * depth, "", c);
            break;
        case ',':
            fprintf(f, ",\n%*s", 2 * depth, "");
            break;
        case ':':
            fputs(": ", f);
            break;
        case ' ':
        case '\n':
        case '\r':
        case '\t':
            break;
        default:
            fputc(c, f);
        }
    }
    fputc('\n', f);
}

/* A wildcard listen address is reached over loopback. */
static const char *connect_host(const char *host)
{
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 || host[0] == '\0')
        return "127.0.0.1";
    if (strcmp(host, "::") == 0)
        return "::1";
    return host;
}

static int connect_to(const char *host, uint16_t port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tollgate ctl: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            struct pollfd pfd = { .fd = fd, .events = POLLOUT };
            socklen_t sl = sizeof(err);
            if (errno != EINPROGRESS)
                err = errno;
            else if (poll(&pfd, 1, CTL_CONNECT_TIMEOUT_MS) <= 0)
                err = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) < 0)
                err = errno;
        }
        if (err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "tollgate ctl: cannot reach the admin listener at %s:%u: %s\n", host, port, strerror(err));
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = { .tv_sec = CTL_IO_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}


/* One request; the admin listener answers and closes. */
static int call(const tg_admin_conf_t *a, const char *method, const char *path, reply_t *r)
{
    const char *host = connect_host(a->host);
    int fd = connect_to(host, a->port);
    if (fd < 0)
        return CTL_UNREACHABLE;
    int v6 = strchr(host, ':') != NULL;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nhost: %s%s%s:%u\r\nuser-agent: tollgate-ctl/%s\r\naccept: */*\r\n"
                     "x-tollgate-admin: ctl\r\ncontent-length: 0\r\nconnection: close\r\n%s%s%s\r\n",
                     method, path, v6 ? "[" : "", host, v6 ? "]" : "", a->port, TOLLGATE_VERSION,
                     a->token ? "authorization: Bearer " : "", a->token ? a->token : "", a->token ? "\r\n" : "");
    int rc = n > 0 && (size_t)n < sizeof(req) && tg_send_all(fd, req, (size_t)n) == 0 ? 0 : -1;
    explicit_bzero(req, sizeof(req));
    size_t cap = 0;
    r->buf = NULL;
    r->len = 0;
    while (rc == 0) {
        if (cap - r->len < 4096) {
            cap = cap ? cap * 2 : 65536;
            char *nb = cap <= CTL_MAX_REPLY ? realloc(r->buf, cap + 1) : NULL;
            if (nb == NULL) {
                rc = -1;
                break;
            }
            r->buf = nb;
        }
        ssize_t k = recv(fd, r->buf + r->len, cap - r->len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            rc = -1;
        if (k <= 0)
            break;
        r->len += (size_t)k;
    }
    close(fd);
    const char *sep = rc == 0 && r->buf ? (r->buf[r->len] = '\0', strstr(r->buf, "\r\n\r\n")) : NULL;
    if (sep == NULL || sscanf(r->buf, "HTTP/1.%*d %d", &r->status) != 1) {
        fprintf(stderr, "tollgate ctl: no valid answer from the admin listener at %s:%u%s%s\n", host, a->port,
                rc < 0 ? ": " : "", rc < 0 ? strerror(errno) : "");
        free(r->buf);
        r->buf = NULL;
        return CTL_UNREACHABLE;
    }
    r->body = sep + 4;
    return CTL_OK;
}

static void usage(void)
{
    fprintf(stderr, "usage: tollgate [-c FILE] ctl reload|config|health|endpoints|status|top\n"
                    "       tollgate [-c FILE] ctl purge /PATH-PREFIX [HOST] | HOST/PATH?QUERY\n"
                    "\n"
                    "  reload     reload the configuration file (POST /-/reload)\n"
                    "  purge      drop cache entries: every key under a path prefix (on one host, or\n"
                    "             any), or one key (POST /-/cache/purge)\n"
                    "  config     print the configuration in force, secrets redacted\n"
                    "  health     liveness and readiness (exit 0 only when ready)\n"
                    "  endpoints  every upstream endpoint with its state and counters\n"
                    "  status     listeners, routes and endpoints with counters (JSON)\n"
                    "  top [rps|errors] [-n COUNT]\n"
                    "             the status page in the terminal, every 2 s: routes sorted by\n"
                    "             requests/s (or error ratio), clusters, who is rate limited;\n"
                    "             -n: COUNT frames, then exit (default: until interrupted)\n");
}

/* `ctl top`: a frame every TOP_INTERVAL_S, count frames (0: forever). */
#define TOP_INTERVAL_S 2
static int top(const tg_admin_conf_t *a, tg_top_sort_t sort, long count)
{
    int tty = isatty(STDOUT_FILENO);
    for (long i = 0; count == 0 || i < count; i++) {
        if (i > 0)
            sleep(TOP_INTERVAL_S);
        reply_t r = { 0 };
        int rc = call(a, "GET", "/status.json?history=5m", &r);
        if (rc != CTL_OK)
            return rc;
        if (r.status != 200) {
            fputs(r.body, stderr);
            free(r.buf);
            return CTL_FAILED;
        }
        fputs(tty ? "\033[H\033[J" : (i > 0 ? "\n" : ""), stdout);
        rc = tg_ctl_top_frame(stdout, r.body, strlen(r.body), sort);
        free(r.buf);
        if (rc < 0) {
            fprintf(stderr, "tollgate ctl: the admin listener's /status.json has no history (an older tollgate?)\n");
            return CTL_FAILED;
        }
        fflush(stdout);
    }
    return CTL_OK;
}

/* top [rps|errors] [-n COUNT] */
static int top_args(int argc, char **argv, tg_top_sort_t *sort, long *count)
{
    *sort = TG_TOP_BY_RPS;
    *count = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "rps") == 0) {
            *sort = TG_TOP_BY_RPS;
        } else if (strcmp(argv[i], "errors") == 0) {
            *sort = TG_TOP_BY_ERRORS;
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc &&
                   ((*count = strtol(argv[i + 1], &end, 10)) > 0 && *end == '\0')) {
            i++;
        } else {
            return -1;
        }
    }
    return 0;
}

static int print_reply(const reply_t *r, int json)
{
    if (json && r->body[0] == '{')
        tg_ctl_print_json(r->status / 100 == 2 ? stdout : stderr, r->body);
    else
        fputs(r->body, r->status / 100 == 2 ? stdout : stderr);
    return r->status / 100 == 2 ? CTL_OK : CTL_FAILED;
}

/* s percent-encoded (all but unreserved characters) after out[n]; -1 if it does not fit. */
static int put_encoded(char *out, size_t cap, size_t *n, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c);
        if (*n + (plain ? 1 : 3) >= cap)
            return -1;
        if (plain) {
            out[(*n)++] = (char)c;
        } else {
            out[(*n)++] = '%';
            out[(*n)++] = hex[c >> 4];
            out[(*n)++] = hex[c & 15];
        }
    }
    out[*n] = '\0';
    return 0;
}

/* POST /-/cache/purge?prefix=...[&host=...] or ?key=... */
static int purge_path(char *out, size_t cap, int argc, char **argv)
{
    const char *what = argv[1];
    int prefix = what[0] == '/';
    if (argc > 3 || (!prefix && argc == 3))
        return -1;
    size_t n = (size_t)snprintf(out, cap, "/-/cache/purge?%s=", prefix ? "prefix" : "key");
    if (put_encoded(out, cap, &n, what) < 0)
        return -1;
    if (argc == 3) {
        if (n + 6 >= cap)
            return -1;
        memcpy(out + n, "&host=", 6);
        n += 6;
        if (put_encoded(out, cap, &n, argv[2]) < 0)
            return -1;
    }
    return 0;
}

int tg_ctl_main(const char *config_path, int argc, char **argv)
{
    char purge[8192];
    int is_purge = argc >= 2 && strcmp(argv[0], "purge") == 0, is_top = argc >= 1 && strcmp(argv[0], "top") == 0;
    tg_top_sort_t sort = TG_TOP_BY_RPS;
    long count = 0;
    if ((is_purge && purge_path(purge, sizeof(purge), argc, argv) < 0) ||
        (is_top && top_args(argc, argv, &sort, &count) < 0)) {
        usage();
        return CTL_USAGE;
    }
    if (argc != 1 && !is_purge && !is_top) {
        usage();
        return CTL_USAGE;
    }
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_admin(config_path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    tg_errors_free(&errs);
    if (c == NULL)
        return CTL_USAGE;
    int rc = CTL_USAGE;
    const char *cmd = argv[0];
    reply_t r = { 0 };
    if (c->admin.listen == NULL || c->admin.host == NULL) {
        fprintf(stderr, "tollgate ctl: %s has no admin listener (admin: { listen: HOST:PORT })\n", config_path);
    } else if (strcmp(cmd, "reload") == 0) {
        if ((rc = call(&c->admin, "POST", "/-/reload", &r)) == CTL_OK)
            rc = print_reply(&r, 1);
    } else if (is_top) {
        rc = top(&c->admin, sort, count);
    } else if (is_purge) {
        if ((rc = call(&c->admin, "POST", purge, &r)) == CTL_OK)
            rc = print_reply(&r, 1);
    } else if (strcmp(cmd, "config") == 0 || strcmp(cmd, "status") == 0) {
        if ((rc = call(&c->admin, "GET", cmd[0] == 'c' ? "/config" : "/status.json", &r)) == CTL_OK)
            rc = print_reply(&r, 1);
    } else if (strcmp(cmd, "endpoints") == 0) {
        if ((rc = call(&c->admin, "GET", "/endpoints", &r)) == CTL_OK)
            rc = print_reply(&r, 1);
    } else if (strcmp(cmd, "health") == 0) {
        if ((rc = call(&c->admin, "GET", "/healthz", &r)) == CTL_OK) {
            printf("live: %s\n", r.status == 200 ? "yes" : "no");
            free(r.buf);
            r.buf = NULL;
            if ((rc = call(&c->admin, "GET", "/ready", &r)) == CTL_OK) {
                printf("ready: %s\n", r.status == 200 ? "yes" : "no");
                rc = r.status == 200 ? CTL_OK : CTL_FAILED;
            }
        }
    } else {
        fprintf(stderr, "tollgate ctl: unknown command '%s'\n", cmd);
        usage();
    }
    free(r.buf);
    tg_config_unref(c);
    return rc;
}
