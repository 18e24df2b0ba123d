/*
 * proxy/proxy_proto.h — the PROXY protocol (HAProxy's spec, v1 text and v2
 * binary) on listeners with `proxy_protocol: true`: an L4 balancer in
 * front of tollgate (a cloud NLB, HAProxy in TCP mode) says who the client
 * is before the connection's own bytes begin.
 *
 * Only a peer in the listener's trusted_proxies may send one; any other is
 * disconnected at once. The header is read with MSG_PEEK and then consumed
 * to its exact length, so whatever follows it (a TLS ClientHello, the
 * HTTP/2 preface, an HTTP/1 request) is left in the kernel for the server
 * that takes the socket next. A header that is malformed, too long, or not
 * complete within limits.header_timeout closes the connection.
 */
#ifndef TG_PROXY_PROXY_PROTO_H
#define TG_PROXY_PROXY_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

#include "proxy/worker.h"

/* Longest header taken: v2's 16 bytes plus addresses and TLVs (AWS and
 * GCP balancers send well under this); v1 is at most 107 bytes. */
#define TG_PROXY_MAX_HEADER (16 + 2048)

typedef struct tg_proxy_header {
    int local;                   /* LOCAL (v2) or UNKNOWN (v1): no client named (it is then "unknown") */
    struct sockaddr_storage src; /* the client, unless local */
    socklen_t src_len;
} tg_proxy_header_t;

/* Parses the start of a connection. Returns the header's length (> 0),
 * 0 if more bytes are needed to decide, or -1 if these bytes are not a
 * valid PROXY header. Pure. */
long tg_proxy_parse(const unsigned char *p, size_t n, tg_proxy_header_t *out);

/* Takes an accepted socket of a proxy_protocol listener: checks the peer,
 * reads the header, then hands the socket to the HTTP/1 server (which does
 * TLS and HTTP/2 detection) with the client address the header names. */
void tg_proxy_accept(tg_worker_t *w, int fd, const struct sockaddr *peer, const tg_listener_slot_t *slot);

#endif
