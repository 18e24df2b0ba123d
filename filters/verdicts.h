/*
 * filters/verdicts.h — a worker's memory of token verdicts, keyed by a
 * token's SHA-256 (the token itself is never kept): introspection
 * answers (introspect.c) and verified JWTs (jwt.c), so that a client's
 * next request with the same token costs a digest instead of a call or
 * a signature check.
 *
 * Direct-mapped: a fixed number of slots, a key on its slot (two keys on
 * one slot: the newer stays), bounded memory, no lock (one per worker).
 * An entry carries a tag (what it was decided against: the key sets'
 * generations) and an end (in the caller's clock); either mismatching is
 * a miss.
 */
#ifndef TG_FILTERS_VERDICTS_H
#define TG_FILTERS_VERDICTS_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/arena.h"
#include "proxy/base/http.h"

typedef struct tg_verdicts tg_verdicts_t;

/* Room for about `entries` (0: a cache that keeps nothing). NULL: out of memory. */
tg_verdicts_t *tg_verdicts_new(size_t entries);
void tg_verdicts_free(tg_verdicts_t *v);

/* 1 and *reason (NULL: accepted; then *identity and, if claims, the kept
 * claims in arena memory), or 0: none for this key and tag before until. */
int tg_verdicts_get(tg_verdicts_t *v, const unsigned char key[32], uint64_t tag, uint64_t now, tg_arena_t *a,
                    const char **identity, tg_headers_t *claims, const char **reason);
/* Remembers a verdict until `until` (reason: a static string, or NULL
 * with identity and claims, which are copied). */
void tg_verdicts_put(tg_verdicts_t *v, const unsigned char key[32], uint64_t tag, uint64_t until, const char *reason,
                     const char *identity, const tg_headers_t *claims);

#endif
