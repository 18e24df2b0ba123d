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

#include "proxy/base/http.h"

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

/* What a request is, by the one rule every part of tollgate uses (routing
 * by grpc_service, the body limit and message bound, the reply form,
 * deadlines, the grpc_limit filter):
 *   CALL  gRPC proper: HTTP/2, POST, content-type "application/grpc",
 *         "application/grpc+<subtype>" or either with ";params";
 *   WEB   gRPC-Web: POST, "application/grpc-web" or "-web-text", with
 *         the same suffixes, on any HTTP version (the grpc_web filter
 *         turns it into a call);
 *   NONE  anything else — "application/grpc-not-really", a GET, gRPC's
 *         content-type over HTTP/1.1 — is an ordinary HTTP request. */
typedef enum { TG_GRPC_NONE = 0, TG_GRPC_CALL, TG_GRPC_WEB } tg_grpc_kind_t;
tg_grpc_kind_t tg_grpc_classify(const tg_request_t *req);

#endif
