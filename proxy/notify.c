/*
 * proxy/notify.c — see notify.h.
 */
#include "proxy/notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy/base/log.h"

void tg_notify_open(tg_notify_t *n)
{
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
        tg_warn("NOTIFY_SOCKET '%s' is not a socket path: systemd will not hear from tollgate", path);
        return;
    }
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@')
        n->addr.sun_path[0] = '\0'; /* the abstract namespace */
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0)
        tg_warn("NOTIFY_SOCKET: cannot make a socket: systemd will not hear from tollgate");
    const char *wd = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
    if (wd != NULL && (wpid == NULL || strtol(wpid, NULL, 10) == (long)getpid()))
        n->watchdog_usec = strtoull(wd, NULL, 10);
}

void tg_notify(tg_notify_t *n, const char *fmt, ...)
{
    if (n->fd < 0)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(msg))
        len = (int)sizeof(msg) - 1;
    if (sendto(n->fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&n->addr, n->addr_len) < 0)
        tg_debug("NOTIFY_SOCKET: %s", "send failed");
}

void tg_notify_close(tg_notify_t *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}
