/*
 * proxy/activation.h — systemd socket activation ($LISTEN_FDS): listening
 * sockets a `.socket` unit bound and passed in, from descriptor 3 on, for
 * this process ($LISTEN_PID) only. A listener takes the inherited socket
 * named like itself ($LISTEN_FDNAMES, FileDescriptorName= in the unit),
 * else the one bound to its address; listeners that match none bind their
 * own. Each worker gets a dup() of the socket, so workers close their
 * copies freely (reload, drain) while the inherited one stays open for the
 * process's life: a listener removed by a reload and added back by another
 * finds it again. Main thread.
 */
#ifndef TG_PROXY_ACTIVATION_H
#define TG_PROXY_ACTIVATION_H

#include <stddef.h>

#include "config/config.h"

typedef struct tg_activation {
    int *fds;        /* inherited listening sockets (owned; CLOEXEC, non-blocking) */
    char **names;    /* their $LISTEN_FDNAMES ("" when none given) */
    unsigned char *used;
    size_t n;
} tg_activation_t;

/* Takes over the sockets systemd passed (none: n = 0) and unsets the
 * variables, so no child process sees them. Returns 0, or -1 with a
 * message logged for a malformed set ($LISTEN_FDS not a number, a
 * descriptor that is not a listening stream socket is skipped). */
int tg_activation_open(tg_activation_t *a);

/* The inherited socket listener l would take (index), or -1; *how says
 * which rule matched ("name" or "address"). */
long tg_activation_find(const tg_activation_t *a, const tg_listener_conf_t *l, const char **how);

/* A new descriptor for listener l (a dup of the inherited socket it
 * finds), or -1 when none matches. */
int tg_activation_take(tg_activation_t *a, const tg_listener_conf_t *l);

/* Logs each inherited socket no listener took (once, after start). */
void tg_activation_report_unused(const tg_activation_t *a);

void tg_activation_close(tg_activation_t *a);

#endif
