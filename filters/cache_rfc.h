/*
 * filters/cache_rfc.h — the rules of HTTP caching a shared cache follows
 * (RFC 9111, with the conditional and range requests of RFC 9110), as
 * pure functions of header values and times: what Cache-Control says,
 * when a response may be stored, how long it stays fresh, how old it is,
 * which range and which validators a request names. The cache filter
 * (filters/cache.c) asks; nothing here allocates or keeps state.
 *
 * Every input is a header value a client or an upstream chose: the
 * parsers accept any bytes, bounded by the length given (fuzz_cache).
 * Times are Unix seconds.
 */
#ifndef TG_FILTERS_CACHE_RFC_H
#define TG_FILTERS_CACHE_RFC_H

#include <stddef.h>
#include <stdint.h>

#define TG_CC_ABSENT (-1)
#define TG_CC_DELTA_MAX 2147483648LL /* RFC 9111 1.2.2: larger values, and overflows, are this */

/* Cache-Control directives, of a request or of a response. Integer
 * directives are TG_CC_ABSENT when absent; a malformed value is 0 (the
 * response is then stale at once: the safe reading). The first of
 * several copies of a directive counts (4.2.1). */
typedef struct tg_cc {
    unsigned no_store : 1, no_cache : 1, private_ : 1, public_ : 1, must_revalidate : 1, proxy_revalidate : 1,
        must_understand : 1, only_if_cached : 1;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error;
    int64_t max_stale;   /* request: "max-stale" without a value is TG_CC_DELTA_MAX */
    int64_t min_fresh;
} tg_cc_t;

/* An empty directive set (every integer absent). */
void tg_cc_init(tg_cc_t *cc);
/* Adds the directives of one Cache-Control field value (call once per
 * field line). */
void tg_cc_parse(tg_cc_t *cc, const char *v, size_t len);

/* An HTTP-date (RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850
 * and asctime forms) as Unix seconds; -1 if it is none of them. */
int64_t tg_http_date_parse(const char *v, size_t len);
/* Writes an IMF-fixdate (29 bytes and a NUL: out has room for 30). */
void tg_http_date_format(int64_t t, char out[30]);
/* A delta-seconds value (Age): the number, TG_CC_DELTA_MAX past it, -1
 * if malformed. */
int64_t tg_http_delta_parse(const char *v, size_t len);

/* May a shared cache store this final response to a GET (RFC 9111 3,
 * 3.5)? must-understand lets no-store pass only for a status code whose
 * caching this cache knows (the heuristically cacheable ones, 302, 307);
 * has_expires: the response has an Expires field (valid or not);
 * authorization: the request carried credentials. */
int tg_cache_may_store(int status, const tg_cc_t *resp, int has_expires, int authorization);

/* Is the status heuristically cacheable (RFC 9110 15.1)? */
int tg_cache_status_heuristic(int status);

/* The freshness lifetime, in seconds (RFC 9111 4.2.1): s-maxage, else
 * max-age, else Expires minus Date, else (a heuristically cacheable
 * status with Last-Modified) a tenth of the time since then, at most
 * heuristic_max; else 0. date, expires, last_modified: -1 when absent
 * (an invalid Expires is a time in the past: pass 0). */
int64_t tg_cache_lifetime(const tg_cc_t *resp, int status, int64_t date, int64_t expires, int64_t last_modified,
                          int64_t heuristic_max);

/* The response's age when it arrived (corrected_initial_age, 4.2.3):
 * from its Age (-1: none) and Date (-1: none), and when the request went
 * and the response came. */
int64_t tg_cache_initial_age(int64_t age_value, int64_t date, int64_t request_time, int64_t response_time);

/* A single byte range of a representation of `size` bytes (RFC 9110 14):
 * 1 with *first..*last (inclusive) when the Range value names one
 * satisfiable range; 0 when the field is to be ignored (not bytes, not
 * well-formed, or several ranges: the whole representation is sent); -1
 * when it names no byte inside (416). */
int tg_range_parse(const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last);

/* Does an If-None-Match value match the entity tag (weak comparison,
 * "*" matches any)? etag NULL: only "*" matches. */
int tg_etag_match_weak(const char *list, size_t len, const char *etag, size_t etag_len);
/* Is the entity tag strong and equal to the one given (If-Range)? */
int tg_etag_equal_strong(const char *a, size_t alen, const char *b, size_t blen);

#endif
