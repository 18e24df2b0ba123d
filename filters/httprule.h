/*
 * filters/httprule.h — google.api.http path templates: parsed once, then
 * matched against request paths, each `{field.path}` variable bound to
 * what it captured; and a request's query string as bindings too. What
 * the JSON ↔ gRPC transcoder maps REST calls with (the bindings become
 * fields of the request message: pbjson.h's tg_pbj_set).
 *
 * The grammar (google/api/http.proto):
 *
 *   Template = "/" Segments [ Verb ] ;
 *   Segments = Segment { "/" Segment } ;
 *   Segment  = "*" | "**" | LITERAL | Variable ;
 *   Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *   FieldPath = IDENT { "." IDENT } ;
 *   Verb     = ":" LITERAL ;
 *
 * `{name}` is `{name=*}`; `**` matches any number of segments (none too)
 * and may only end the template. A single-segment capture is percent-
 * decoded whole; a multi-segment one keeps %2F (and '/' between its
 * segments) as it came, per the rule's "reserved expansion". A captured
 * value that decodes to bytes that are not UTF-8 does not match. Pure
 * functions; a template is immutable once parsed.
 */
#ifndef TG_FILTERS_HTTPRULE_H
#define TG_FILTERS_HTTPRULE_H

#include <stddef.h>

#include "proxy/base/arena.h"

#define TG_HTTP_TEMPLATE_MAX_SEGMENTS 64
#define TG_HTTP_TEMPLATE_MAX_VARS 16

typedef struct tg_http_template tg_http_template_t;

typedef struct tg_http_binding {
    const char *field;  /* "shelf.name" */
    const char *value;  /* decoded; NUL-terminated, and len ... */
    size_t len;         /* ... (a value may hold NUL) */
} tg_http_binding_t;

/* NULL with the reason in why when tmpl is not a template. */
tg_http_template_t *tg_http_template_parse(const char *tmpl, char *why, size_t cap);
void tg_http_template_free(tg_http_template_t *t);

/* Does path[0..len) (no query) match? Its bindings (at most max) into
 * out, from memory in a: their count, or -1 for no match. */
int tg_http_template_match(const tg_http_template_t *t, const char *path, size_t len, tg_arena_t *a,
                           tg_http_binding_t *out, size_t max);

/* The field paths a template binds ("name", "shelf.id"), for checking
 * them against the request message at load: the i-th, NULL past the last. */
const char *tg_http_template_var(const tg_http_template_t *t, size_t i);

/* A query string's parameters ("a=1&b.c=x%20y&d"): '+' is a space, %XX
 * decoded, a key without '=' has the empty value; a key or value that is
 * not UTF-8 once decoded makes it -1. Their count (at most max). */
int tg_http_query_bindings(const char *query, size_t len, tg_arena_t *a, tg_http_binding_t *out, size_t max);

#endif
