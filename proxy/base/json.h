/*
 * proxy/base/json.h — the one JSON string writer: every JSON tollgate
 * writes (the process log, access logs, local replies, /config and the
 * schema, status pages, trace export) escapes strings here, alike: '"' and
 * '\' with a backslash, every control byte and DEL (0x7f) as \u00XX, all
 * else (UTF-8 included) as it is. DEL is valid JSON unescaped, but a log
 * line read on a terminal should hold no control byte at all.
 *
 * And the one JSON reader: strict RFC 8259 (no trailing commas, no
 * comments, no NUL escapes, nesting at most 32 deep), into arena memory
 * that dies with the arena — tokens' claims, key sets, OIDC documents.
 */
#ifndef TG_BASE_JSON_H
#define TG_BASE_JSON_H

#include <stddef.h>

#include "proxy/base/arena.h"

/* Receives the escaped text in runs (no quotes around it). */
typedef void (*tg_json_put_fn)(void *arg, const char *p, size_t n);

/* Writes s[0..len) escaped through put, in as few calls as runs allow. */
void tg_json_write(const char *s, size_t len, tg_json_put_fn put, void *arg);

/* s escaped into out (cap bytes, NUL-terminated; a string that does not
 * fit is cut before the escape that would not). Returns the length. */
size_t tg_json_escape(char *out, size_t cap, const char *s);

/* Is p[0..n) well-formed UTF-8 (no surrogates, no overlongs, nothing
 * past U+10FFFF)? */
int tg_utf8_ok(const void *p, size_t n);

/* ---- reading ---- */

typedef enum { TG_JSON_NULL, TG_JSON_BOOL, TG_JSON_NUM, TG_JSON_STR, TG_JSON_ARR, TG_JSON_OBJ } tg_json_type_t;

typedef struct tg_json {
    tg_json_type_t t;
    double num;                /* TG_JSON_NUM; TG_JSON_BOOL: 0 or 1 */
    char *str;                 /* TG_JSON_STR: UTF-8, NUL-terminated (no NUL inside: refused,
                                * unless TG_JSON_NUL_OK);
                                * TG_JSON_NUM: the literal as written (integers past 2^53 stay exact) */
    size_t len;                /* TG_JSON_STR, TG_JSON_NUM: str's length */
    struct tg_json *items;     /* TG_JSON_ARR, TG_JSON_OBJ (the values) */
    char **keys;               /* TG_JSON_OBJ */
    size_t n;
} tg_json_t;

/* Parses s[0..len) (one value, whitespace around it) into a. 0, or -1:
 * not JSON (or nested deeper than 32, or out of memory). */
int tg_json_parse(const char *s, size_t len, tg_arena_t *a, tg_json_t *out);
/* The same, with TG_JSON_NUL_OK: string values may hold NUL (\u0000;
 * their len says where they end; keys never). For data that is bytes to
 * the reader (protobuf strings), never for names compared as C strings. */
#define TG_JSON_NUL_OK 1u
int tg_json_parse_flags(const char *s, size_t len, tg_arena_t *a, tg_json_t *out, unsigned flags);
/* The member `key` of an object (the first, if repeated); NULL if o is
 * not an object or has none. */
const tg_json_t *tg_json_get(const tg_json_t *o, const char *key);
/* The same, when it is a string; NULL otherwise. */
const char *tg_json_get_str(const tg_json_t *o, const char *key);

#endif
