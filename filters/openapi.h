/*
 * filters/openapi.h — an OpenAPI 3.0 document gathered from the filters
 * that define HTTP APIs of their own (grpc_json: the REST mappings of a
 * gRPC service), served by the admin listener as /-/openapi.json.
 *
 * Filters add operations (a path in OpenAPI's form, a method, the
 * operation object as JSON text) and named schemas; the first of a path
 * and method wins, as the first route that matches does. Main thread,
 * per admin request; everything is copied in and freed with the doc.
 * O(n log n) in operations and schemas, whatever their number.
 */
#ifndef TG_FILTERS_OPENAPI_H
#define TG_FILTERS_OPENAPI_H

#include <stddef.h>

struct evbuffer;

typedef struct tg_openapi tg_openapi_t;

tg_openapi_t *tg_openapi_new(void);
void tg_openapi_free(tg_openapi_t *d);

/* One operation: method lower-case ("get"), json an object. 1, or -1
 * out of memory. A path and method added again is left out at render
 * (the first added wins). O(1): the document is sorted when rendered. */
int tg_openapi_op(tg_openapi_t *d, const char *path, const char *method, const char *json, size_t len);

/* Schemas by name (components/schemas): claim returns 1 when the name is
 * new (the caller writes it with tg_openapi_schema, so that a schema
 * that refers to itself is written once), 0 when it is known, -1 out of
 * memory. */
int tg_openapi_claim(tg_openapi_t *d, const char *name);
int tg_openapi_schema(tg_openapi_t *d, const char *name, const char *json, size_t len);

/* The document: {"openapi": "3.0.3", "info": ..., "paths": ...,
 * "components": {"schemas": ...}}. */
void tg_openapi_render(const tg_openapi_t *d, struct evbuffer *out, const char *title);

/* s as a JSON string, quotes included. */
void tg_openapi_str(struct evbuffer *out, const char *s);

#endif
