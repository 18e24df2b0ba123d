/*
 * filters/limited.h — who a limiting filter (rate_limit, quota,
 * concurrency_limit) refused in the last minute, for the status page and
 * `tollgate ctl top`: the keys with the most refusals (or, in shadow mode,
 * would-be refusals), never a metric (keys are unbounded).
 *
 * A refusal is noted by the worker that made it, in that worker's stripe
 * (a mutex no other worker takes; the main thread takes it only to read),
 * so the path of an allowed request is untouched and a flood of refusals
 * contends with nothing. Each stripe keeps TG_LIMITED_KEYS keys, each with
 * its refusals in six 10-second slots; when a stripe is full a new key
 * takes the place of the one with the fewest recent refusals and starts
 * from that count plus one (the space-saving rule: a key refused often
 * stays listed however many others pass through; such counts are marked
 * as estimates).
 *
 * Keys are kept only as they are shown (`show_keys`): plain (percent-
 * escaped, parts joined by " | ", at most 64 bytes), truncated (the first
 * four bytes of each part), or hashed (a keyed SipHash, random per
 * filter: the same client shows the same hash while the gateway runs, and
 * the hash cannot be turned back into the key). The raw key is never
 * stored.
 *
 * Refcounted: a reload that keeps the filter passes its recorder on.
 */
#ifndef TG_FILTERS_LIMITED_H
#define TG_FILTERS_LIMITED_H

#include <stddef.h>
#include <stdint.h>

#include "filters/key.h"

struct evbuffer;

#define TG_LIMITED_TOP 20     /* keys listed */
#define TG_LIMITED_KEYS 64    /* keys a stripe keeps */
#define TG_LIMITED_STRIPES 8  /* workers beyond share stripes (worker % 8) */

typedef enum { TG_SHOW_KEYS_PLAIN = 0, TG_SHOW_KEYS_TRUNCATE, TG_SHOW_KEYS_HASH } tg_show_keys_t;

/* The `show_keys` row every limiting filter has, and its reader: absent,
 * hash when the key holds a request header (API keys, tokens), else plain
 * (client addresses, identities, routes). 0, or -1 after reporting. */
#define TG_SHOW_KEYS_ROW                                                                                               \
    { "show_keys", TG_KEY_ENUM, "`plain`, `truncate` or `hash`", "`hash` when `key` has a `header:` part, else `plain`", \
      "how the status page and `/status.json` show the keys this filter refused in the last minute: as built, their " \
      "first four bytes a part, or a keyed hash (see operations.md)",                                                \
      .choices = "plain|truncate|hash" }
int tg_show_keys_parse(tg_node_t *n, const tg_filter_key_t *k, tg_show_keys_t *out);

typedef struct tg_limited tg_limited_t;

/* NULL when out of memory or randomness. */
tg_limited_t *tg_limited_new(tg_show_keys_t show);
/* A limiting filter's two steps for its recorder: inherit (reload) takes
 * the old config's when both show keys alike; start makes one if it has
 * none yet (0, or -1 with "FILTER: out of memory" in errs). */
void tg_limited_inherit(tg_limited_t **l, tg_show_keys_t show, tg_limited_t *old, tg_show_keys_t old_show);
int tg_limited_start(tg_limited_t **l, tg_show_keys_t show, const char *filter, tg_errors_t *errs);
tg_limited_t *tg_limited_ref(tg_limited_t *l);
void tg_limited_unref(tg_limited_t *l);
tg_show_keys_t tg_limited_show(const tg_limited_t *l);

/* A refusal of key (as tg_filter_key_build made it) under plan (NULL:
 * the filter's only one) on this worker, now (monotonic ms). l may be
 * NULL (a config never started). Worker thread. */
void tg_limited_note(tg_limited_t *l, unsigned worker, const char *key, size_t len, const char *plan,
                     uint64_t now_ms);

/* "\"limited\": [{\"key\", \"plan\", \"refusals\", \"last_ms_ago\",
 * \"estimated\"}, ...]": the TG_LIMITED_TOP keys with the most refusals
 * in the last minute, most first. Any thread. */
void tg_limited_json(tg_limited_t *l, struct evbuffer *out, uint64_t now_ms);

/* "\"show_keys\": \"...\"" and a filter key's parts as configured:
 * "\"key\": \"client_address | header:x-api-key\"". */
void tg_limited_key_json(const tg_filter_key_t *k, tg_show_keys_t show, struct evbuffer *out);

#endif
