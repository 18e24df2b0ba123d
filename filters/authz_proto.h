/*
 * filters/authz_proto.h — Envoy's external authorization messages
 * (envoy.service.auth.v3), the part ext_auth's `api: grpc` speaks: a
 * CheckRequest written from a request, a CheckResponse read back. The
 * field numbers are Envoy's; no descriptors are needed.
 *
 * The reader takes the answer as untrusted: header names must be RFC
 * 9110 tokens, values free of control bytes (a CR LF would otherwise
 * reach the upstream as a header of the service's making), at most
 * TG_AUTHZ_MAX_HEADERS of each kind; anything else makes the whole answer
 * malformed. What the caller keeps of it is its allow-lists' business.
 */
#ifndef TG_FILTERS_AUTHZ_PROTO_H
#define TG_FILTERS_AUTHZ_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/arena.h"
#include "proxy/base/http.h"
#include "proxy/base/pb.h"

typedef struct tg_authz_request {
    const tg_request_t *req;
    tg_arena_t *arena;                /* scratch (joined header values) */
    const char *client_addr;          /* source.address.socket_address.address */
    const char *principal;            /* source.principal: the client certificate's subject, or NULL */
    const char *scheme;               /* "http" / "https" */
    const char *const *headers;       /* the request headers to send (lower-case names) */
    size_t n_headers;
    int with_body;                    /* body / raw_body and x-envoy-auth-partial-body */
    const unsigned char *body;
    size_t body_len;
    int body_whole;
} tg_authz_request_t;

/* A framed CheckRequest (gRPC prefix and message) into w:
 *   attributes(1) { source(1) { address(1) { socket_address(1) { address(2) } }, principal(4) },
 *                   request(4) { time(1), http(2) { id(1), method(2), headers(3) map, path(4),
 *                   host(5), scheme(6), query(7), size(9) (-1: unknown), protocol(10),
 *                   body(11) when UTF-8, else raw_body(12) } } }
 * Several values of one header are joined with ','. 0, or -1 (out of memory). */
int tg_authz_check_request(const tg_authz_request_t *in, tg_pb_writer_t *w);

#define TG_AUTHZ_MAX_HEADERS 64

/* A CheckResponse as read: strings in the arena, names lower-cased. */
typedef struct tg_authz_answer {
    uint64_t code;                    /* status(1).code(1): 0 OK, else denied */
    int http_status;                  /* denied_response(2).status(1).code(1), 100–599; 0: none */
    const char *headers[2 * TG_AUTHZ_MAX_HEADERS]; /* ok_response(3).headers(2), or denied_response(2).headers(2) */
    size_t n_headers;
    const char *client[2 * TG_AUTHZ_MAX_HEADERS];  /* ok_response.response_headers_to_add(6) */
    size_t n_client;
    const char *remove[TG_AUTHZ_MAX_HEADERS];      /* ok_response.headers_to_remove(5) */
    size_t n_remove;
} tg_authz_answer_t;

/* Reads the CheckResponse msg[0..len) into out (zeroed here). 0, or -1
 * if it is malformed or asks for what a header cannot carry. */
int tg_authz_read_check_response(tg_arena_t *a, const uint8_t *msg, size_t len, tg_authz_answer_t *out);

#endif
