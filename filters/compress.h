/*
 * filters/compress.h — response compression: gzip (zlib), brotli and
 * zstd, chosen by the client's Accept-Encoding (q-values, then the
 * configured preference), for allowed content types above a minimum
 * size. Streaming: every piece of body the upstream gives is compressed
 * and flushed at once, so SSE and chunked responses are never held back
 * or buffered whole. Never touches gRPC, an encoded body or
 * `Cache-Control: no-transform`; adds `Vary: Accept-Encoding`, weakens a
 * strong ETag, drops Content-Length.
 */
#ifndef TG_FILTERS_COMPRESS_H
#define TG_FILTERS_COMPRESS_H

#include "filters/filter.h"

extern const tg_filter_type_t tg_filter_compress;

/* The encoding Accept-Encoding asks for among the ones offered (`offer`,
 * most preferred first; a q-value decides before the order): its index in
 * offer, or -1 (none acceptable: identity). Exposed for the unit tests. */
int tg_compress_negotiate(const char *accept_encoding, const char *const *offer, size_t n);

/* Does the Content-Type value (parameters ignored) match one of the
 * patterns: a media type, or one with a star for the subtype or its stem
 * ("text/" then a star; "application/" star "+json")? */
int tg_compress_type_allowed(const char *content_type, char *const *patterns, size_t n);

#endif
