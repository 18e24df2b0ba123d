/*
 * proxy/notify.h — the sd_notify protocol, spoken directly (no libsystemd):
 * under a `Type=notify` unit, systemd sets $NOTIFY_SOCKET and tollgate
 * sends one datagram per state change — READY=1 once every listener is
 * bound, RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a reload,
 * STOPPING=1 when a drain starts, STATUS= with a one-line summary — and,
 * when the unit sets WatchdogSec ($WATCHDOG_USEC), WATCHDOG=1 at half that
 * period. Without $NOTIFY_SOCKET every call is a no-op. Main thread.
 */
#ifndef TG_PROXY_NOTIFY_H
#define TG_PROXY_NOTIFY_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef struct tg_notify {
    int fd;                    /* -1: not under systemd */
    struct sockaddr_un addr;
    socklen_t addr_len;
    uint64_t watchdog_usec;    /* 0: no watchdog */
} tg_notify_t;

/* Reads $NOTIFY_SOCKET and $WATCHDOG_USEC (honouring $WATCHDOG_PID). */
void tg_notify_open(tg_notify_t *n);
/* Sends one message ("READY=1\nSTATUS=..."); printf-style. */
void tg_notify(tg_notify_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tg_notify_close(tg_notify_t *n);

#endif
