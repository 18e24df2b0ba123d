/*
 * proxy/base/grpc_frames.h — the gRPC length-prefixed message framing of a
 * request body, walked as the body streams (RFC-less: the gRPC over HTTP/2
 * spec: 1 byte compressed flag, 4 bytes big-endian length, the message).
 * Nothing is copied but the 5-byte prefixes, which may straddle pieces.
 * State per exchange; pure functions.
 */
#ifndef TG_BASE_GRPC_FRAMES_H
#define TG_BASE_GRPC_FRAMES_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

typedef struct tg_grpc_frames {
    unsigned char prefix[5];
    uint8_t have;          /* prefix bytes collected */
    uint64_t remaining;    /* message bytes still to skip */
} tg_grpc_frames_t;

/* gRPC's own default limit on a received message (4 MiB). */
#define TG_GRPC_DEFAULT_MAX_MESSAGE (4u * 1024 * 1024)

/* Walks the next piece of a request body. Returns 0, or -1 as soon as a
 * message prefix declares more than max bytes. */
int tg_grpc_frames_check(tg_grpc_frames_t *st, struct evbuffer *piece, uint64_t max);

/* A grpc-timeout header value (the gRPC over HTTP/2 spec: 1 to 8 ASCII
 * digits, then a unit: H M S m u n) in microseconds; a timeout shorter
 * than 1 us (0 of any unit, or under 1000n) is 1 us: already due.
 * Returns 0, or -1 if the value is malformed. */
int tg_grpc_parse_timeout(const char *v, size_t len, uint64_t *us);

/* Is this content-type gRPC proper ("application/grpc", "+proto" and the
 * like, or with parameters), not gRPC-Web or anything else that merely
 * begins the same way? */
int tg_grpc_content_type(const char *ct);

#endif
