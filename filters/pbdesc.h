/*
 * filters/pbdesc.h — protobuf descriptors, read from the bytes of a
 * FileDescriptorSet (`protoc --descriptor_set_out --include_imports`, or
 * the files gRPC server reflection sends): the messages, enums and
 * services with their methods and `google.api.http` rules, type names
 * resolved. What the JSON ↔ protobuf codec (pbjson.h) and the grpc_json
 * filter are driven by.
 *
 * The reader trusts nothing (a descriptor set may come from an upstream):
 * every field is read through proxy/base/pb.h's checked reader, a type
 * name that names nothing is an error (never a crash later), and the
 * pool's size is bounded by its input. Everything a pool holds lives in
 * its arena, freed at once by tg_pbd_pool_free. Immutable once built:
 * any thread may read it.
 */
#ifndef TG_FILTERS_PBDESC_H
#define TG_FILTERS_PBDESC_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/arena.h"

/* FieldDescriptorProto.Type, as descriptor.proto numbers them. */
typedef enum {
    TG_PBT_DOUBLE = 1, TG_PBT_FLOAT = 2, TG_PBT_INT64 = 3, TG_PBT_UINT64 = 4, TG_PBT_INT32 = 5,
    TG_PBT_FIXED64 = 6, TG_PBT_FIXED32 = 7, TG_PBT_BOOL = 8, TG_PBT_STRING = 9, TG_PBT_GROUP = 10,
    TG_PBT_MESSAGE = 11, TG_PBT_BYTES = 12, TG_PBT_UINT32 = 13, TG_PBT_ENUM = 14, TG_PBT_SFIXED32 = 15,
    TG_PBT_SFIXED64 = 16, TG_PBT_SINT32 = 17, TG_PBT_SINT64 = 18,
} tg_pbt_t;

/* The well-known types, which JSON writes in their own forms. */
typedef enum {
    TG_WKT_NONE = 0, TG_WKT_TIMESTAMP, TG_WKT_DURATION, TG_WKT_FIELD_MASK, TG_WKT_STRUCT, TG_WKT_VALUE,
    TG_WKT_LIST_VALUE, TG_WKT_WRAPPER, TG_WKT_ANY, TG_WKT_EMPTY,
} tg_wkt_t;

typedef struct tg_pbd_enum_value {
    const char *name;
    int32_t number;
} tg_pbd_enum_value_t;

typedef struct tg_pbd_enum {
    const char *full_name;            /* "pkg.Outer.Kind" (no leading dot) */
    tg_pbd_enum_value_t *values;      /* in declaration order (the first is the default) */
    size_t n_values;
    int null_value;                   /* google.protobuf.NullValue */
} tg_pbd_enum_t;

struct tg_pbd_message;

typedef struct tg_pbd_field {
    const char *name;                 /* as declared: "user_id" */
    const char *json_name;            /* lowerCamelCase, or the json_name option: "userId" */
    uint32_t number;
    tg_pbt_t type;
    unsigned repeated : 1;
    unsigned presence : 1;            /* has explicit presence: proto2, `optional`, a oneof member, a message */
    unsigned in_oneof : 1;            /* a member of a oneof, `optional`'s synthetic ones included */
    int oneof;                        /* index in the message's oneofs (real ones only), or -1 */
    const char *type_name;            /* as the descriptor names it: ".pkg.Type" (messages, enums) ... */
    struct tg_pbd_message *message;   /* ... resolved: TG_PBT_MESSAGE / GROUP */
    tg_pbd_enum_t *enumt;             /* TG_PBT_ENUM */
} tg_pbd_field_t;

typedef struct tg_pbd_message {
    const char *full_name;
    tg_pbd_field_t *fields;           /* sorted by number */
    size_t n_fields;
    size_t n_oneofs;
    unsigned map_entry : 1;           /* a map<K, V>'s entry: key = 1, value = 2 */
    tg_wkt_t wkt;
} tg_pbd_message_t;

/* A google.api.http binding. */
typedef struct tg_pbd_http_rule {
    const char *verb;                 /* "GET", "POST", ... or a custom verb */
    const char *path;                 /* the path template: "/v1/shelves/{shelf}/books" */
    const char *body;                 /* "", "*" or a field path */
    const char *response_body;        /* "" or a field path */
} tg_pbd_http_rule_t;

typedef struct tg_pbd_method {
    const char *name;                 /* "GetShelf" */
    const char *path;                 /* "/pkg.Service/GetShelf": the gRPC :path */
    tg_pbd_message_t *input, *output;
    unsigned client_streaming : 1, server_streaming : 1;
    tg_pbd_http_rule_t *rules;        /* the binding and its additional_bindings */
    size_t n_rules;
} tg_pbd_method_t;

typedef struct tg_pbd_service {
    const char *full_name;            /* "pkg.Service" */
    tg_pbd_method_t *methods;
    size_t n_methods;
} tg_pbd_service_t;

typedef struct tg_pbd_pool {
    tg_arena_t arena;
    tg_pbd_message_t **messages;      /* sorted by full name */
    size_t n_messages;
    tg_pbd_enum_t **enums;            /* sorted by full name */
    size_t n_enums;
    tg_pbd_service_t **services;      /* in file order */
    size_t n_services;
} tg_pbd_pool_t;

/* A pool from a serialized FileDescriptorSet. NULL with the reason in
 * why (at most cap bytes) when the bytes are not one, or a type is named
 * that no file defines, or a name is defined twice. */
tg_pbd_pool_t *tg_pbd_pool_new(const void *set, size_t len, char *why, size_t cap);
void tg_pbd_pool_free(tg_pbd_pool_t *p);

/* By full name, without the leading dot; NULL if absent. */
tg_pbd_message_t *tg_pbd_message(const tg_pbd_pool_t *p, const char *full_name);
tg_pbd_enum_t *tg_pbd_enum(const tg_pbd_pool_t *p, const char *full_name);
const tg_pbd_method_t *tg_pbd_method(const tg_pbd_pool_t *p, const char *service, const char *method);

/* A message's field by number, or by JSON or declared name; NULL if none. */
const tg_pbd_field_t *tg_pbd_field(const tg_pbd_message_t *m, uint32_t number);
const tg_pbd_field_t *tg_pbd_field_named(const tg_pbd_message_t *m, const char *name);

#endif
