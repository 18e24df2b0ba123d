/*
 * filters/grpcweb.h — gRPC-Web (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md):
 * browsers call a gRPC backend through tollgate. A request of
 * application/grpc-web[+fmt] or application/grpc-web-text[+fmt] goes
 * upstream as application/grpc[+fmt] (the text form's base64 decoded as it
 * streams, whatever the chunk boundaries); the response goes back in the
 * request's form: its messages, then the gRPC trailers as the final
 * length-prefixed frame (flag 0x80) instead of HTTP trailers, base64
 * encoded for the text form. Trailers-only answers (errors, deadlines)
 * keep grpc-status in the response headers, where browsers read them.
 */
#ifndef TG_FILTERS_GRPCWEB_H
#define TG_FILTERS_GRPCWEB_H

#include <stddef.h>
#include <stdint.h>

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_grpc_web;

/* Streaming base64 decoding (RFC 4648, padding allowed between segments):
 * decodes src into dst (room for len * 3 / 4 + 3), carrying an incomplete
 * quad in carry/ncarry to the next call. Returns the bytes written, or -1
 * on a character that is not base64. Exposed for the unit tests. */
long tg_grpcweb_b64_decode(const char *src, size_t len, uint8_t *dst, char carry[4], unsigned *ncarry);

/* base64 of len bytes, padded, into dst (room for (len + 2) / 3 * 4). */
size_t tg_grpcweb_b64_encode(const uint8_t *src, size_t len, char *dst);

#endif
