/*
 * filters/key.h — the per-client key filters count under (rate_limit,
 * concurrency_limit, quota): `key:` as one part or a list of up to four,
 * each client_address, identity, route or header:NAME, joined with 0x1f.
 *
 * One rule makes a key out of what a client controls, for the local
 * tables and the shared store alike: in each part '%', '{', '}' and
 * control bytes are percent-escaped (so no part can end a Redis Cluster
 * hash tag early and choose the slot, nor forge the separator), and a key
 * longer than TG_KEY_MAX_LEN is replaced by "%H" and the hex SHA-256 of
 * the whole escaped key — never cut, so two clients whose long keys share
 * a prefix never share a counter. Injective: an escaped key never holds
 * "%H", nor a bare '{' or '}'.
 */
#ifndef TG_FILTERS_KEY_H
#define TG_FILTERS_KEY_H

#include <stddef.h>

#include "filters/filter.h"

#define TG_KEY_MAX_PARTS 4
#define TG_KEY_MAX_LEN 256 /* longer keys are hashed (66 bytes) */
#define TG_KEY_BUF (TG_KEY_MAX_LEN + 1) /* what tg_filter_key_build needs */

typedef enum { TG_KEY_CLIENT, TG_KEY_IDENTITY, TG_KEY_ROUTE, TG_KEY_HEADER } tg_key_kind_t;

typedef struct tg_key_part {
    tg_key_kind_t kind;
    char *header;              /* TG_KEY_HEADER */
} tg_key_part_t;

typedef struct tg_filter_key {
    tg_key_part_t parts[TG_KEY_MAX_PARTS];
    size_t n;
} tg_filter_key_t;

/* Parses the `key:` node (absent: client_address); what names the filter
 * in errors. 0, or -1 after reporting through the node. */
int tg_filter_key_parse(tg_node_t *n, const char *what, tg_filter_key_t *k);
void tg_filter_key_free(tg_filter_key_t *k);
/* Do two keys count the same thing (reloads keep counters then)? */
int tg_filter_key_equal(const tg_filter_key_t *a, const tg_filter_key_t *b);
/* The exchange's key into buf (cap >= TG_KEY_BUF), by the rule above;
 * returns its length (NUL-terminated). The identity part is the auth
 * filter's identity, else the client certificate's subject, else the
 * client address. A long key is hashed from a copy in fx's arena; if that
 * cannot be had, the key is "%H" alone (all such requests share one
 * counter: they are refused together rather than escape the limit). */
size_t tg_filter_key_build(const tg_filter_key_t *k, const tg_filter_exchange_t *fx, char *buf, size_t cap);

#endif
