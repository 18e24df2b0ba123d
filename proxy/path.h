/*
 * proxy/path.h — request paths as routes see them.
 *
 * Routes match on a normalized path, and by default the upstream receives
 * that same path, so it serves what was authorized: "/x/../admin",
 * "//admin" and "/%61dmin" are all "/admin". The steps, in order:
 *   1. the path ends at '?' (query, kept as is) or '#' (a fragment, which
 *      has no place in a request and is dropped);
 *   2. percent-escapes: an encoded unreserved character (ALPHA DIGIT - . _
 *      ~) is decoded (RFC 3986 6.2.2.2); other escapes keep their
 *      encoding with upper-case hex; a malformed escape is refused;
 *      %2F and %5C (encoded '/' and '\') follow `escaped_slashes`:
 *      refused (default), kept encoded, or decoded to '/' and '\';
 *      `semicolons: reject` refuses ';' and %3B alike;
 *   3. a backslash (raw, or decoded from %5C) follows `backslashes`:
 *      refused (default), kept, or read as '/';
 *   4. runs of '/' become one (`merge_slashes`, default on);
 *   5. `semicolons: strip` removes each segment's parameters (";..."
 *      up to the next '/'), as Tomcat and Spring do before routing;
 *   6. dot-segments are removed (RFC 3986 5.2.4) — a segment whose name
 *      (before its first ';') is "." or ".." is one, so "/a/..;x/b" is
 *      "/b" whatever the setting and never reaches a Java upstream as is.
 * Pure functions; the result lives in the caller's arena.
 */
#ifndef TG_PROXY_PATH_H
#define TG_PROXY_PATH_H

#include <stddef.h>

#include "config/config.h"
#include "proxy/base/arena.h"

/* Normalizes the path of an origin-form target (path and query). On 0,
 * *out is the normalized target (NUL-terminated, in a) and *path_len the
 * length of its path part. On -1, *why says what was refused (400). */
int tg_path_normalize(tg_arena_t *a, const char *target, const tg_path_conf_t *conf, const char **out,
                      size_t *path_len, const char **why);

#endif
