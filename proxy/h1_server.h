/*
 * proxy/h1_server.h — the downstream HTTP/1.x codec: one object per
 * accepted connection, reading requests one at a time (pipelined requests
 * wait in the input buffer and are answered in order), each through a
 * tg_exchange_t, and writing the responses with the framing the client
 * understands (Content-Length, chunked, or close-delimited for HTTP/1.0).
 * Implements tg_downstream_ops_t for the exchange.
 *
 * Connection states: READ_HEAD (waiting for a request: idle timeout, then
 * the header timeout once its first byte arrives) -> EXCHANGE -> back to
 * READ_HEAD on keep-alive, or FLUSH (output draining) -> LINGER (write
 * side shut, reading and discarding until the client closes, bounded)
 * -> freed.
 */
#ifndef TG_PROXY_H1_SERVER_H
#define TG_PROXY_H1_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include "proxy/worker.h"

extern const tg_worker_module_t tg_h1_server_module; /* per-worker state (proxy/stack.c) */

/* Takes ownership of an accepted socket. Closes it on failure. */
void tg_h1_server_accept(tg_worker_t *w, int fd, const struct sockaddr *sa, const tg_listener_slot_t *slot);

#endif
