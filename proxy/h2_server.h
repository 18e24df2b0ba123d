/*
 * proxy/h2_server.h — the downstream HTTP/2 codec (RFC 9113) on an nghttp2
 * server session. Each stream becomes one tg_exchange_t, exactly as an
 * HTTP/1 request does, so routing, filters and upstreams are shared.
 *
 * A connection arrives here from h1_server.c, which accepts every
 * connection: after a TLS handshake that selected "h2" by ALPN, or when a
 * cleartext connection opens with the HTTP/2 preface (h2c with prior
 * knowledge; the preface is still in the socket's input).
 *
 * Flow control follows the other side: automatic WINDOW_UPDATEs are off,
 * and request-body bytes are acknowledged only when the exchange has moved
 * them toward the upstream; response bytes are queued per stream up to
 * the exchange's high-water mark and sent as the client's windows allow.
 * Abuse guards: rapid resets (CVE-2023-44487), SETTINGS/PING floods
 * (nghttp2's outbound-ACK limit), header lists past max_header_list_size
 * (431, also the HPACK-bomb bound), idle and ping timeouts; GOAWAY on
 * drain.
 */
#ifndef TG_PROXY_H2_SERVER_H
#define TG_PROXY_H2_SERVER_H

#include <stddef.h>

#include "proxy/sock.h"
#include "proxy/worker.h"

struct tg_tls_peer;
struct tg_snapshot;

/* Frees the worker's recycled streams (worker teardown). */
extern const tg_worker_module_t tg_h2_server_module; /* per-worker state (proxy/stack.c) */

/* Takes over an accepted connection: the socket, the client's TLS
 * identity (moved: *peer is left empty) and its place in the listener's
 * active-connection gauge. snap and listener are the config the
 * connection was accepted with (a reference is taken: its HTTP/2 settings
 * stay valid even if a reload removes the listener). Closes the socket on
 * failure. */
void tg_h2_server_take(tg_worker_t *w, tg_sock_t *sock, const tg_listener_slot_t *slot, struct tg_snapshot *snap,
                       size_t listener, size_t stats_slot, const char *addr, struct tg_tls_peer *peer, int tls);
/* peer: the client's certificate identity, owned from the call on (NULL in cleartext). */

#endif
