/*
 * proxy/h1_codec.h — HTTP/1.x message framing on evbuffers, for both the
 * downstream server and the upstream client.
 *
 * Reading a head: our parser (proxy/base/h1_parse.h) runs over the input as it
 * arrives, in place: over the first buffer segment when the head fits in
 * it (the usual case: no copy at all while parsing), else over a
 * linearized prefix, resuming where the last read stopped. Once the head
 * is complete its bytes are copied once into the exchange arena, because
 * the exchange outlives the read buffer; header names and values then
 * point into that copy, NUL-terminated in place. RFC 9112 request checks
 * (Host, target form, Expect) follow.
 *
 * Reading a body moves bytes: Content-Length, close-delimited and chunk
 * data go from the input evbuffer to the output with
 * evbuffer_remove_buffer (no copy); only chunk framing bytes are parsed.
 */
#ifndef TG_PROXY_H1_CODEC_H
#define TG_PROXY_H1_CODEC_H

#include <sys/types.h>

#include "proxy/base/h1_parse.h"
#include "proxy/base/http.h"

struct evbuffer;

typedef enum { TG_H1_AGAIN = 0, TG_H1_OK = 1, TG_H1_ERROR = -1 } tg_h1_result_t;

/* Most header (or trailer) fields in one message; more is 431 (a
 * request) or a malformed message (a response, trailers). */
#define TG_H1_MAX_FIELDS 200
/* Largest trailer section kept or skipped. */
#define TG_H1_MAX_TRAILER_BYTES (16 * 1024)

struct tg_h1_field_spans;

typedef struct tg_h1_reader {
    tg_h1_parser_t p;
    tg_body_kind_t body;
    uint64_t remaining;     /* TG_BODY_LENGTH: bytes still to come */
    uint64_t body_bytes;    /* decoded body bytes read so far */
    uint64_t max_body;      /* 0 = unlimited */
    int error_status;       /* HTTP status to answer with on TG_H1_ERROR */
    const char *error_msg;  /* static string */
    /* Chunked trailers go here (copied into arena) when set; else dropped. */
    tg_headers_t *trailers;
    tg_arena_t *arena;      /* where the trailers are copied */
    /* private: fields of the head (or trailer section) read so far */
    struct tg_h1_field_spans *fields;
    uint32_t nfields, capfields;
    unsigned in_data : 1, in_trailers : 1, done : 1;
} tg_h1_reader_t;

/* Prepares r for a new message on a connection. */
void tg_h1_reader_init(tg_h1_reader_t *r, tg_h1_kind_t kind);

/* Reads a request head from in. TG_H1_OK: req is filled, the head is
 * drained from in, r is ready for tg_h1_read_body. TG_H1_AGAIN: need more
 * bytes. TG_H1_ERROR: r->error_status (400, 431, 501, 505, 417) and
 * r->error_msg say why; the connection must close after the reply. */
tg_h1_result_t tg_h1_read_request_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header,
                                       tg_arena_t *a, tg_request_t *req);

/* Reads a response head. request_is_head: the request was HEAD (no body).
 * On TG_H1_ERROR the upstream response is unusable (502). */
tg_h1_result_t tg_h1_read_response_head(tg_h1_reader_t *r, struct evbuffer *in, size_t max_header,
                                        tg_arena_t *a, tg_response_t *resp, int request_is_head);

/* Has a request's whole body been read (none, all of its Content-Length,
 * or the last chunk and trailers)? Never for a tunnel. */
int tg_h1_body_complete(const tg_h1_reader_t *r);

/* Moves up to max decoded body bytes from in to out. eof: the peer closed
 * its side (ends TG_BODY_EOF/TUNNEL bodies, truncates the others). Sets
 * *fin when the body is complete. Returns the bytes moved, or -1 on a
 * framing error, a truncated body or a body over r->max_body (then
 * r->error_status is 400 or 413). */
ssize_t tg_h1_read_body(tg_h1_reader_t *r, struct evbuffer *in, struct evbuffer *out, size_t max, int eof,
                        int *fin);

/* Serialises "start-line\r\n" + headers + extra (preformatted header lines,
 * may be NULL) + "\r\n" into out with a single reservation. Returns 0,
 * -1 (out of memory) or TG_HTTP_UNSAFE_FIELD (nothing written). */
int tg_h1_write_head(struct evbuffer *out, const char *start_line, const tg_headers_t *h, const char *extra);
/* The same head serialised into the arena instead: *head and *len on 0;
 * -1 (out of memory) or TG_HTTP_UNSAFE_FIELD. */
int tg_h1_format_head(tg_arena_t *a, const char *start_line, const tg_headers_t *h, const char *extra,
                      char **head, size_t *len);

/* Frames data (moved, not copied) for the given body kind into out. */
int tg_h1_write_body(struct evbuffer *out, tg_body_kind_t kind, struct evbuffer *data);
/* Writes the end of a body (the last chunk for chunked, with trailers if
 * any; nothing otherwise). TG_HTTP_UNSAFE_FIELD as for heads. */
int tg_h1_write_end(struct evbuffer *out, tg_body_kind_t kind, const tg_headers_t *trailers);

#endif
