/*
 * proxy/base/resp.h — RESP2, the Redis serialization protocol: commands
 * encoded as arrays of bulk strings, and replies decoded incrementally
 * from whatever part of the stream has arrived (the first piece of the
 * Redis store for rate limits, issue "Scale-out"). Replies come from a
 * server we connect to, but are still bounded: bulk strings and arrays
 * have size limits, nesting a depth limit, and every malformed byte is an
 * error, never a guess.
 *
 * Decoded values live in the caller's arena until it is reset.
 */
#ifndef TG_BASE_RESP_H
#define TG_BASE_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/arena.h"

#define TG_RESP_MAX_BULK (1024 * 1024) /* largest bulk string accepted */
#define TG_RESP_MAX_ITEMS 4096         /* largest array */
#define TG_RESP_MAX_DEPTH 8            /* arrays within arrays */
#define TG_RESP_MAX_LINE 1024          /* a simple string, error or length line */

typedef enum {
    TG_RESP_STRING = 0, /* +OK */
    TG_RESP_ERROR,      /* -ERR ... (the server's error, a valid reply) */
    TG_RESP_INTEGER,    /* :42 */
    TG_RESP_BULK,       /* $3 abc */
    TG_RESP_ARRAY,      /* *2 ... */
    TG_RESP_NIL,        /* $-1 or *-1 */
} tg_resp_type_t;

typedef struct tg_resp_value {
    tg_resp_type_t type;
    int64_t integer;               /* TG_RESP_INTEGER */
    const char *str;               /* STRING, ERROR, BULK: NUL-terminated (bulk may hold NULs: use len) */
    size_t len;
    struct tg_resp_value *items;   /* ARRAY */
    size_t n;
} tg_resp_value_t;

typedef enum { TG_RESP_AGAIN = 0, TG_RESP_OK = 1, TG_RESP_BAD = -1 } tg_resp_result_t;

/* Decodes one reply from the start of buf. TG_RESP_OK: *out is filled
 * and *used says how many bytes it took; TG_RESP_AGAIN: the reply is not
 * all here yet (nothing is kept: call again with more); TG_RESP_BAD: the
 * stream is not RESP (or breaks a limit) and cannot be resynchronized. */
tg_resp_result_t tg_resp_parse(const char *buf, size_t len, tg_arena_t *a, tg_resp_value_t *out, size_t *used);

/* Where a reply ends, found as its bytes arrive — each byte looked at
 * once (a length line split across arrivals is read again, at most
 * TG_RESP_MAX_LINE bytes), bulk payloads skipped by their length — so
 * that a large reply arriving in small pieces costs linear time, and one
 * that grows past a bound is refused before it is buffered. Once the end
 * is known, tg_resp_parse decodes the reply once. */
typedef struct tg_resp_scan {
    size_t pos;                             /* bytes of the reply scanned (relative to its start) */
    uint64_t skip;                          /* bulk payload (and CRLF) still to pass */
    uint32_t need[TG_RESP_MAX_DEPTH + 1];   /* items still to come in each open array */
    unsigned depth;
} tg_resp_scan_t;

typedef struct tg_resp_seg {
    const char *p;
    size_t n;
} tg_resp_seg_t;

/* Scans on: segs are the bytes from the reply's start + s->pos onward (in
 * order, as an evbuffer peeks them). Returns the reply's total length
 * once it is complete (then reset *s for the next), 0 if more bytes are
 * needed, -1 if they are not RESP, -2 if the reply would pass max bytes. */
long tg_resp_scan(tg_resp_scan_t *s, const tg_resp_seg_t *segs, size_t nsegs, size_t max);

/* Encodes a command (an array of bulk strings) into out, which holds
 * cap bytes; returns the length, or 0 if it does not fit. */
size_t tg_resp_command(char *out, size_t cap, int argc, const char *const *argv, const size_t *lens);

/* Bytes tg_resp_command needs for this command. */
size_t tg_resp_command_size(int argc, const size_t *lens);

#endif
