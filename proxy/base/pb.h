/*
 * proxy/base/pb.h — the protobuf wire format, by hand: a writer that
 * builds a message (nested messages included) into one growing buffer,
 * and a reader that walks a message's fields without copying. For the
 * few messages tollgate speaks itself (grpc.health.v1, Envoy's
 * envoy.service.auth.v3 for ext_auth) and for the descriptor-driven
 * JSON codec (filters/pbjson.h), which brings the descriptors.
 *
 * The reader trusts nothing: every length is checked against the bytes
 * there, varints stop at 10 bytes, groups (wire types 3 and 4) are
 * refused, and the caller bounds nesting by how it recurses.
 */
#ifndef TG_BASE_PB_H
#define TG_BASE_PB_H

#include <stddef.h>
#include <stdint.h>

enum { TG_PB_VARINT = 0, TG_PB_I64 = 1, TG_PB_LEN = 2, TG_PB_I32 = 5 };

/* ---- writing ---- */

/* A message being written: malloc'ed bytes the writer owns (free with
 * tg_pb_writer_free); any allocation failure sets failed and later
 * writes do nothing. */
typedef struct tg_pb_writer {
    uint8_t *p;
    size_t len, cap;
    int failed;
} tg_pb_writer_t;

void tg_pb_writer_free(tg_pb_writer_t *w);
/* Room at the front for a gRPC message prefix (5 bytes), filled in by
 * tg_pb_grpc_frame once the message is complete. */
void tg_pb_reserve_grpc_prefix(tg_pb_writer_t *w);
/* Writes the prefix reserved above (uncompressed, the message's length).
 * 0, or -1 if the writer failed. */
int tg_pb_grpc_frame(tg_pb_writer_t *w);

/* A gRPC message framed in place anywhere in the buffer (the messages of
 * one stream, one after another): begin reserves its prefix and returns
 * a mark, end writes the prefix for what was written since. end: 0, or
 * -1 if the writer failed. */
size_t tg_pb_frame_begin(tg_pb_writer_t *w);
int tg_pb_frame_end(tg_pb_writer_t *w, size_t mark);
void tg_pb_uint(tg_pb_writer_t *w, uint32_t field, uint64_t v);
/* Fixed-width fields (fixed32, sfixed32, float; fixed64, sfixed64,
 * double), little-endian. */
void tg_pb_fixed32(tg_pb_writer_t *w, uint32_t field, uint32_t v);
void tg_pb_fixed64(tg_pb_writer_t *w, uint32_t field, uint64_t v);
void tg_pb_bytes(tg_pb_writer_t *w, uint32_t field, const void *p, size_t n);
/* A string field (omitted when s is NULL). */
void tg_pb_str(tg_pb_writer_t *w, uint32_t field, const char *s);
/* A nested message: tg_pb_begin writes its tag and returns a mark, the
 * fields follow, tg_pb_end(mark) writes the length before them. */
size_t tg_pb_begin(tg_pb_writer_t *w, uint32_t field);
void tg_pb_end(tg_pb_writer_t *w, size_t mark);

/* ---- reading ---- */

typedef struct tg_pb_reader {
    const uint8_t *p, *end;
} tg_pb_reader_t;

typedef struct tg_pb_field {
    uint32_t num;
    int wire;                   /* TG_PB_* */
    uint64_t v;                 /* VARINT, I64, I32 */
    const uint8_t *data;        /* LEN: the bytes (a string, bytes or a nested message) */
    size_t len;
} tg_pb_field_t;

static inline tg_pb_reader_t tg_pb_reader(const void *p, size_t n)
{
    const uint8_t *b = p;
    return (tg_pb_reader_t){ b, b != NULL ? b + n : b }; /* NULL: an absent message, read as empty */
}

/* The next field: 1, 0 at the end, -1 if malformed (cut short, a bad
 * varint, field number 0, a group or an unknown wire type). */
int tg_pb_next(tg_pb_reader_t *r, tg_pb_field_t *f);

/* One uncompressed gRPC message that is the whole body: its bytes.
 * 0, or -1 (cut, compressed, or more than one message). */
int tg_pb_grpc_unframe(const void *body, size_t len, const uint8_t **msg, size_t *msg_len);

#endif
