/*
 * proxy/h1_server.h — the downstream HTTP/1.x codec: one object per
 * accepted connection, reading requests one at a time (pipelined requests
 * wait in the input buffer and are answered in order), each through a
 * tg_exchange_t, and writing the responses with the framing the client
 * understands (Content-Length, chunked, or close-delimited for HTTP/1.0).
 * Implements tg_downstream_ops_t for the exchange.
 *
 * negotiate.c hands it the connection once the TLS handshake and the
 * choice of protocol are done.
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
#include <stdint.h>

#include "proxy/sock.h"

#include "proxy/worker.h"

extern const tg_worker_module_t tg_h1_server_module; /* per-worker state (proxy/stack.c) */

struct tg_tls_peer;

/* Takes a connection negotiate.c found to speak HTTP/1.x: the socket (with
 * what was read of it), under snap and its listener; the client's address
 * (family AF_INET or AF_INET6, 16 bytes of ip; 0: unknown); its
 * certificate identity (owned from now on; NULL in cleartext or without
 * one); and the listener's active-connection count, which it takes over.
 * On failure everything is let go. */
void tg_h1_server_take(tg_worker_t *w, tg_sock_t *sock, const tg_listener_slot_t *slot, struct tg_snapshot *snap,
                       size_t listener, size_t stats_slot, int family, const uint8_t *ip, struct tg_tls_peer *peer,
                       int tls);

#endif
