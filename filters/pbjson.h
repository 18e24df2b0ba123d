/*
 * filters/pbjson.h — the proto3 JSON mapping, driven by descriptors
 * (pbdesc.h): a protobuf message to its canonical JSON, and JSON to the
 * protobuf message, as protobuf's own json_format does it:
 *
 *   - field names in lowerCamelCase (json_name) or, with
 *     preserve_proto_field_names, as declared; both accepted on input;
 *   - 64-bit integers as strings (numbers accepted), enums by name
 *     (numbers accepted; an unknown number is written as a number),
 *     bytes as base64 (URL-safe and unpadded accepted), NaN and
 *     ±Infinity as strings, floats in their shortest exact form;
 *   - fields at their default left out (proto3 fields without presence)
 *     unless always_print_primitive_fields; fields with presence written
 *     when present; repeated and map fields as arrays and objects;
 *   - the well-known types in their own forms: Timestamp (RFC 3339, UTC,
 *     0, 3, 6 or 9 fractional digits), Duration ("1.5s"), FieldMask
 *     ("a.b,cD"), Struct, Value, ListValue, the wrappers, Empty, and Any
 *     ("@type" with the message's fields, or "value" for a well-known
 *     type), its type looked up in the pool;
 *   - unknown JSON fields refused (or skipped with ignore_unknown_fields),
 *     a field given twice or two members of one oneof refused; unknown
 *     protobuf fields skipped.
 *
 * Both ways are bounded: nesting past max_depth is refused (never a
 * silent empty answer), wire bytes are never trusted (lengths checked,
 * strings must be UTF-8), and an error says where. Pure functions.
 */
#ifndef TG_FILTERS_PBJSON_H
#define TG_FILTERS_PBJSON_H

#include <stddef.h>
#include <stdint.h>

#include "filters/pbdesc.h"
#include "proxy/base/pb.h"

struct evbuffer;

#define TG_PBJ_DEFAULT_MAX_DEPTH 64

typedef struct tg_pbj_opts {
    unsigned always_print_primitive_fields : 1;
    unsigned preserve_proto_field_names : 1;
    unsigned ignore_unknown_fields : 1;
    unsigned max_depth;               /* messages within messages; 0: TG_PBJ_DEFAULT_MAX_DEPTH */
} tg_pbj_opts_t;

/* msg[0..len), a message of type m, as JSON appended to out. 0, or -1
 * with the reason in why (nothing sensible in out then). */
int tg_pbj_to_json(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const uint8_t *msg, size_t len,
                   const tg_pbj_opts_t *o, struct evbuffer *out, char *why, size_t cap);

/* json[0..len), one JSON value, as a message of type m appended to w. 0,
 * or -1 with the reason in why. */
int tg_pbj_from_json(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const char *json, size_t len,
                     const tg_pbj_opts_t *o, tg_pb_writer_t *w, char *why, size_t cap);

/* One field of msg (a message of type m), by declared or JSON name, as
 * JSON appended to out: a message's object, a repeated field's array, a
 * map's object, a scalar; absent, its default (`{}`, `[]`, 0, ""...). For
 * google.api.http's response_body. 0, or -1 with the reason in why. */
int tg_pbj_field_to_json(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const char *name, const uint8_t *msg,
                         size_t len, const tg_pbj_opts_t *o, struct evbuffer *out, char *why, size_t cap);

/* Appends to w the field at field_path ("shelf.name": declared or JSON
 * names, through singular message fields) of a message of type m, set
 * to text as a path variable or a query parameter gives it: a string as
 * it is; a number, bool or enum (by name or number) parsed; bytes as
 * base64; a well-known type (Timestamp, Duration, FieldMask, a wrapper)
 * in its JSON string form. A repeated leaf gets one value more. Appended
 * after a message's other fields it wins over them (protobuf merges
 * concatenated messages). 0, or -1 with the reason in why. */
int tg_pbj_set(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const char *field_path, const char *text,
               size_t len, const tg_pbj_opts_t *o, tg_pb_writer_t *w, char *why, size_t cap);

#endif
