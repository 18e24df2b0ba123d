/*
 * proxy/activation.c — see activation.h. The protocol is systemd's
 * sd_listen_fds(3), read directly (no libsystemd): LISTEN_PID must be our
 * pid, LISTEN_FDS the count, descriptors 3 .. 3+count-1, LISTEN_FDNAMES
 * colon-separated names in the same order.
 */
#include "proxy/activation.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/base/log.h"

#define SD_LISTEN_FDS_START 3
#define MAX_INHERITED 256

static int parse_count(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int is_listening_stream(int fd)
{
    int type = 0, acc = 0;
    socklen_t l1 = sizeof(type), l2 = sizeof(acc);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l1) == 0 && type == SOCK_STREAM &&
           getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l2) == 0 && acc;
}

int tg_activation_open(tg_activation_t *a)
{
    memset(a, 0, sizeof(*a));
    const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS"), *names_s = getenv("LISTEN_FDNAMES");
    if (fds_s == NULL)
        return 0;
    int rc = 0;
    long pid, count;
    char *names = names_s ? strdup(names_s) : NULL;
    if (pid_s == NULL || parse_count(pid_s, 1, 0x7fffffffL, &pid) < 0 || parse_count(fds_s, 0, MAX_INHERITED, &count) < 0) {
        tg_error("socket activation: LISTEN_PID='%s' LISTEN_FDS='%s' are not valid: ignored", pid_s ? pid_s : "",
                 fds_s);
        rc = -1;
        goto out;
    }
    if ((pid_t)pid != getpid()) {
        tg_info("socket activation: LISTEN_FDS is meant for process %ld, not this one: ignored", pid);
        goto out;
    }
    a->fds = calloc((size_t)count + 1, sizeof(int));
    a->names = calloc((size_t)count + 1, sizeof(char *));
    a->used = calloc((size_t)count + 1, 1);
    if (a->fds == NULL || a->names == NULL || a->used == NULL) {
        tg_error("socket activation: out of memory");
        rc = -1;
        goto out;
    }
    char *save = NULL, *name = names ? strtok_r(names, ":", &save) : NULL;
    for (long i = 0; i < count; i++, name = name ? strtok_r(NULL, ":", &save) : NULL) {
        int fd = SD_LISTEN_FDS_START + (int)i;
        if (!is_listening_stream(fd)) {
            tg_error("socket activation: descriptor %d is not a listening stream socket: skipped", fd);
            rc = -1;
            continue;
        }
        int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) {
            tg_error("socket activation: descriptor %d: %s: skipped", fd, strerror(errno));
            rc = -1;
            continue;
        }
        a->fds[a->n] = fd;
        a->names[a->n] = strdup(name ? name : "");
        if (a->names[a->n] == NULL) {
            close(fd);
            continue;
        }
        a->n++;
    }
out:
    free(names);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return rc;
}

/* Is the socket bound to one of the addresses the listener's host:port
 * resolves to ("*": any wildcard)? */
static int bound_to(int fd, const tg_listener_conf_t *l)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", l->port);
    if (getaddrinfo(strcmp(l->host, "*") == 0 ? NULL : l->host, port, &hints, &res) != 0)
        return 0;
    int match = 0;
    for (struct addrinfo *ai = res; ai != NULL && !match; ai = ai->ai_next) {
        if (ai->ai_family != ss.ss_family)
            continue;
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *x = (const void *)ai->ai_addr, *y = (const void *)&ss;
            match = x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        } else if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *x = (const void *)ai->ai_addr, *y = (const void *)&ss;
            match = x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
        }
    }
    freeaddrinfo(res);
    return match;
}

long tg_activation_find(const tg_activation_t *a, const tg_listener_conf_t *l, const char **how)
{
    for (size_t i = 0; i < a->n; i++)
        if (l->name != NULL && strcmp(a->names[i], l->name) == 0) {
            *how = "name";
            return (long)i;
        }
    for (size_t i = 0; i < a->n; i++)
        if (bound_to(a->fds[i], l)) {
            *how = "address";
            return (long)i;
        }
    return -1;
}

int tg_activation_take(tg_activation_t *a, const tg_listener_conf_t *l)
{
    const char *how;
    long hit = tg_activation_find(a, l, &how);
    if (hit < 0)
        return -1;
    int fd = fcntl(a->fds[hit], F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        tg_error("listener '%s': cannot duplicate the inherited socket: %s", l->name, strerror(errno));
        return -1;
    }
    a->used[hit] = 1;
    return fd;
}

void tg_activation_report_unused(const tg_activation_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (!a->used[i])
            tg_warn("socket activation: descriptor %d%s%s%s matches no listener (by name or address); it stays "
                    "open, unused",
                    a->fds[i], a->names[i][0] ? " ('" : "", a->names[i], a->names[i][0] ? "')" : "");
}

void tg_activation_close(tg_activation_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        close(a->fds[i]);
        free(a->names[i]);
    }
    free(a->fds);
    free(a->names);
    free(a->used);
    memset(a, 0, sizeof(*a));
}
