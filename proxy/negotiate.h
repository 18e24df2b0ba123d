/*
 * proxy/negotiate.h — the first step of every downstream connection, before
 * any codec: the TLS handshake on a TLS listener, then the choice of
 * protocol — ALPN's answer over TLS; in cleartext, HTTP/2 on an
 * HTTP/2-only listener, else the first bytes (the HTTP/2 connection
 * preface means h2c with prior knowledge, anything else HTTP/1.x) — and
 * the hand-off of the socket, with what was read of it, the client's
 * address and its certificate identity, to the HTTP/1 server
 * (h1_server.h) or the HTTP/2 server (h2_server.h). Neither codec knows
 * the other.
 *
 * States: HANDSHAKE (TLS, bounded by the listener's handshake_timeout) ->
 * SNIFF (cleartext with both protocols: waiting for enough bytes to tell,
 * bounded by the idle timeout) -> handed over. A connection in either
 * state is counted as accepted and active on its listener; the codec it
 * goes to keeps the active count.
 */
#ifndef TG_PROXY_NEGOTIATE_H
#define TG_PROXY_NEGOTIATE_H

#include <sys/socket.h>

#include "proxy/worker.h"

extern const tg_worker_module_t tg_negotiate_module; /* per-worker state (proxy/stack.c) */

/* Takes ownership of an accepted socket (whose PROXY header, if any, was
 * read: sa is the client). Closes it on failure. */
void tg_negotiate_accept(tg_worker_t *w, int fd, const struct sockaddr *sa, const tg_listener_slot_t *slot);

#endif
