/*
 * proxy/base/json.h — the one JSON string writer: every JSON tollgate
 * writes (the process log, access logs, local replies, /config and the
 * schema, status pages, trace export) escapes strings here, alike: '"' and
 * '\' with a backslash, every control byte and DEL (0x7f) as \u00XX, all
 * else (UTF-8 included) as it is. DEL is valid JSON unescaped, but a log
 * line read on a terminal should hold no control byte at all.
 */
#ifndef TG_BASE_JSON_H
#define TG_BASE_JSON_H

#include <stddef.h>

/* Receives the escaped text in runs (no quotes around it). */
typedef void (*tg_json_put_fn)(void *arg, const char *p, size_t n);

/* Writes s[0..len) escaped through put, in as few calls as runs allow. */
void tg_json_write(const char *s, size_t len, tg_json_put_fn put, void *arg);

/* s escaped into out (cap bytes, NUL-terminated; a string that does not
 * fit is cut before the escape that would not). Returns the length. */
size_t tg_json_escape(char *out, size_t cap, const char *s);

#endif
