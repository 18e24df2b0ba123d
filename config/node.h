/*
 * config/node.h — how a filter reads its own YAML node: the same typed,
 * ${VAR}-expanding, unknown-key-rejecting readers the loader uses for its
 * own keys, each reporting errors as FILE:LINE:COL. A tg_node_t is only
 * valid during tg_config_load (while the filter's create() runs).
 */
#ifndef TG_CONFIG_NODE_H
#define TG_CONFIG_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "config/schema.h"

typedef struct tg_node {
    struct loader *ld;
    void *yn;          /* yaml_node_t *, NULL: absent */
} tg_node_t;

int tg_node_present(const tg_node_t *n);
/* The config being loaded, as far as it is: the top-level sections a
 * filter may depend on (redis:) are loaded before any filter. */
const struct tg_config *tg_node_config(const tg_node_t *n);
/* The name of the route whose chain the filter is in (valid while the
 * config lives); NULL in the global chain. */
const char *tg_node_route(const tg_node_t *n);
int tg_node_is_seq(const tg_node_t *n);
int tg_node_is_map(const tg_node_t *n);

/* Splits a mapping into the keys of ks, in its order (absent ones:
 * !tg_node_present); unknown or duplicate keys are errors (a misspelt one
 * names its nearest). The keyset is the filter's schema (schema.h): the
 * table that checks the file is the one `tollgate --schema` writes.
 * Returns 0 or -1. */
int tg_node_keys_cap(tg_node_t *map, const char *what, const tg_keyset_t *ks, tg_node_t *out, size_t cap);
/* out is the caller's array: a keyset with more keys than it holds (a row
 * added to the table, the array not grown) is an error, never an overflow. */
#define tg_node_keys(map, what, ks, out) tg_node_keys_cap((map), (what), (ks), (out), sizeof(out) / sizeof((out)[0]))

/* tg_node_keys, then every row of ks that names a field (TG_FIELD in
 * config/schema.h) read into conf at its offset: its type, bounds or
 * choices checked, its default where the key is absent; a required row
 * (TG_KEY_REQUIRED) that is absent is an error. Rows without a field are
 * left in out for the caller. An absent map (an optional sub-section)
 * gives every field its default. The reader the loader uses for its own
 * sections. 0, or -1 after reporting every error. */
int tg_node_read(tg_node_t *map, const char *what, const tg_keyset_t *ks, void *conf, tg_node_t *out, size_t cap);
#define tg_node_read_into(map, what, ks, conf, out)                                                                   \
    tg_node_read((map), (what), (ks), (conf), (out), sizeof(out) / sizeof((out)[0]))

/* The node of key `name` of ks in out (as tg_node_keys or tg_node_read
 * filled it): a filter finds its rows by name, never by position. Absent
 * if the key is absent (a name ks does not have is a bug: an assertion). */
tg_node_t tg_node_get(const tg_node_t *out, const tg_keyset_t *ks, const char *name);

/* Typed scalars, env-expanded. Each reports its own error; -1/NULL then. */
char *tg_node_str(tg_node_t *n, const char *what); /* malloc'ed */
/* tg_node_str for a secret (a token, a key, a password): /config shows the
 * node as "<redacted>". Every secret a filter takes from the config is
 * read through this: redaction follows the read, not the key's name. */
char *tg_node_secret(tg_node_t *n, const char *what);
int tg_node_duration(tg_node_t *n, const char *what, uint64_t *ms);
int tg_node_size(tg_node_t *n, const char *what, uint64_t *bytes);
int tg_node_uint(tg_node_t *n, const char *what, uint64_t lo, uint64_t hi, uint64_t *out);
int tg_node_bool(tg_node_t *n, const char *what, int *out);
/* A list of scalars (malloc'ed array of malloc'ed strings). On error
 * nothing is allocated (*out = NULL, *count = 0). */
int tg_node_str_list(tg_node_t *n, const char *what, char ***out, size_t *count);

/* The keys of a mapping whose keys are free-form (e.g. header names):
 * malloc'ed array of malloc'ed strings. */
int tg_node_map_keys(tg_node_t *n, char ***keys, size_t *count);
/* The value under key in a mapping (absent: !tg_node_present). */
tg_node_t tg_node_map_get(tg_node_t *n, const char *key);
/* Is s a valid HTTP field name (RFC 9110 token)? */
int tg_node_header_name_ok(const char *s);

size_t tg_node_seq_len(const tg_node_t *n);
tg_node_t tg_node_seq_item(const tg_node_t *n, size_t i);

/* A URL the filter fetches from at run time (a key set, a discovery
 * document): http:// or https://, a host (name or IP literal), an
 * optional port, a path; no user info, no fragment. The config gets one
 * cluster per scheme, host, port and CA file — "origin:SCHEME://HOST:PORT"
 * (+ " ca=FILE") — made by the loader like any other: HTTP/1.1, DNS
 * following a name, TLS for https verified (host name included) against
 * ca_file or the system's trust store; the filter calls through it
 * (filters/host.h). Sets *cluster, *authority ("host[:port]" as the URL
 * has it) and *path (from the first '/', "/" when none), malloc'ed. 0,
 * or -1 after reporting the error at n. ca_file: NULL, or a path
 * relative to the config file. */
int tg_node_origin(tg_node_t *n, const char *url, const char *ca_file, char **cluster, char **authority, char **path);
/* The filter calls the cluster `name` (filters/host.h): the loader
 * checks, once the file's clusters are read, that there is one, and
 * reports "unknown cluster" at n otherwise; with `needs` naming what the
 * calls need of it ("gRPC", which needs HTTP/2), also that it speaks
 * HTTP/2. needs NULL: any cluster. */
void tg_node_cluster_ref(tg_node_t *n, const char *name, const char *needs);
/* Reports an error at the node. */
void tg_node_error(tg_node_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
