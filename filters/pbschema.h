/*
 * filters/pbschema.h — the schema (OpenAPI 3.0's JSON Schema) of a
 * protobuf message as the proto3 JSON mapping writes it (pbjson.h):
 * 64-bit integers as strings, enums by name, bytes as base64, maps as
 * objects, the well-known types in their JSON forms. For the admin
 * listener's /-/openapi.json (openapi.h).
 */
#ifndef TG_FILTERS_PBSCHEMA_H
#define TG_FILTERS_PBSCHEMA_H

#include "filters/openapi.h"
#include "filters/pbdesc.h"

struct evbuffer;

/* The schema of a value of message m into out: a $ref to
 * #/components/schemas/FULL_NAME (written into d with every message it
 * refers to, once), or the inline form of a well-known type. preserve:
 * fields by their declared names, else by their JSON names. 0, or -1
 * out of memory. */
int tg_pbs_message(tg_openapi_t *d, struct evbuffer *out, const tg_pbd_message_t *m, int preserve);

/* The schema of one field's value (repeated and map fields included). */
int tg_pbs_field(tg_openapi_t *d, struct evbuffer *out, const tg_pbd_field_t *f, int preserve);

#endif
