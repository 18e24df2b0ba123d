/*
 * config/schema.h — the config's keys as data: for every mapping the
 * loader reads, the keys it accepts, each with its kind, its type and
 * default as people read them, and what it does. The loader rejects
 * unknown keys with these very tables (config/keys.c for its own
 * sections, each filter's for its own), and `tollgate --schema` writes
 * them out as a JSON Schema (draft 2020-12), from which docs/ tables and
 * the tollgate.yaml(5) man page are generated: one source, no drift.
 * Immutable data; no state.
 */
#ifndef TG_CONFIG_SCHEMA_H
#define TG_CONFIG_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    TG_KEY_STRING,    /* a scalar */
    TG_KEY_INT,       /* an integer in [min, max] (both 0: any); `choices`: words allowed instead */
    TG_KEY_BOOL,      /* true or false */
    TG_KEY_DURATION,  /* "250ms", "5s", "1m", "1h", 0 */
    TG_KEY_SIZE,      /* 512, "64KiB", "10MiB" */
    TG_KEY_ADDRESS,   /* HOST:PORT */
    TG_KEY_ENUM,      /* one of `choices` ("a|b|c") */
    TG_KEY_MAP,       /* a mapping of the keys of `sub` */
    TG_KEY_LIST,      /* a list of mappings of `sub` */
    TG_KEY_STRINGS,   /* a list of scalars */
    TG_KEY_DICT,      /* a mapping of free-form names to scalars */
    TG_KEY_FILTERS,   /* a filter chain: a list of { FILTER_NAME: {...} } */
} tg_schema_kind_t;

/* flags */
#define TG_KEY_REQUIRED 1u        /* the mapping must have it */
#define TG_KEY_OR_LIST 2u         /* a scalar, or a list of them */
#define TG_KEY_OR_STRING 4u       /* besides its kind, any string (e.g. "header:NAME") */
#define TG_KEY_ITEMS_OR_STRING 8u /* LIST: an item may also be a plain string */
#define TG_KEY_OR_MAP 16u         /* a scalar, or a mapping of `sub` */

typedef struct tg_keyset tg_keyset_t;

/* Where the generic reader (config/loader.c) stores a row's value: the
 * row names the field's type and its offset in the section's struct, and
 * its typed default, bounds (min, max: INT in units, SIZE in bytes,
 * DURATION in ms; both 0: any) and choices come from the row too — one
 * place for what a key is. TG_FIELD_NONE: the section reads it itself. */
typedef enum {
    TG_FIELD_NONE = 0,
    TG_FIELD_INT,   /* int: BOOL 0/1, ENUM the index of the choice */
    TG_FIELD_U32,   /* uint32_t: INT, SIZE */
    TG_FIELD_U64,   /* uint64_t: INT, SIZE, DURATION (ms) */
    TG_FIELD_STR,   /* char *, owned by the config: STRING (absent: NULL) */
} tg_field_t;

#define TG_FIELD(type, member, ftype) .field = (ftype), .offset = offsetof(type, member)

typedef struct tg_key {
    const char *name;
    tg_schema_kind_t kind;
    const char *type;    /* as people read it: "duration", "integer 1–256 or `auto`" */
    const char *dflt;    /* as people read it: "`30s`", "none", "—" (required) */
    const char *doc;     /* what it does (Markdown) */
    const tg_keyset_t *sub;  /* MAP, LIST, OR_MAP */
    const char *choices;     /* ENUM: "a|b|c"; INT: words allowed instead of a number */
    int64_t min, max;        /* INT (and, for field rows, SIZE and DURATION) */
    unsigned flags;
    tg_field_t field;        /* stored by the generic reader (see above) */
    size_t offset;
    int64_t def;             /* field rows: the value when the key is absent */
} tg_key_t;

struct tg_keyset {
    const char *id;      /* "listener", "cluster.tls", "filter.rate_limit" */
    const char *title;   /* for people: "listeners[]" */
    const tg_key_t *keys;
    size_t n;
};

#define TG_KEYSET(id, title, keys) { id, title, keys, sizeof(keys) / sizeof(keys[0]) }
#define TG_KEYSET_MAX 32 /* most keys in one mapping */

/* The loader's own sections (config/keys.c). */
extern const tg_keyset_t tg_keys_top, tg_keys_paths, tg_keys_limits, tg_keys_admin, tg_keys_redis,
    tg_keys_listener, tg_keys_server_tls, tg_keys_certificate, tg_keys_http1, tg_keys_http2, tg_keys_route,
    tg_keys_match, tg_keys_header_match, tg_keys_header_rules, tg_keys_cluster, tg_keys_dns, tg_keys_cluster_dns, tg_keys_client_tls,
    tg_keys_health_check, tg_keys_outlier, tg_keys_endpoint, tg_keys_backend, tg_keys_tracing, tg_keys_otlp;

/* Stores v into base at k's field (k->field must not be NONE). */
void tg_key_store(const tg_key_t *k, void *base, uint64_t v);

/* Stores s (owned by the config from now on) into base at k's STR field. */
void tg_key_store_str(const tg_key_t *k, void *base, char *s);

/* Stores every field row's default into base (the section's struct). */
void tg_keyset_defaults(const tg_keyset_t *ks, void *base);

/* A field row's typed default as people read it ("64KiB", "30s", "true",
 * "128"), into buf; NULL for rows without a field. */
const char *tg_key_default_text(const tg_key_t *k, char *buf, size_t cap);
/* Any value of k's kind as people read it, the same way. */
const char *tg_key_value_text(const tg_key_t *k, uint64_t v, char *buf, size_t cap);

/* The names of a keyset's keys in order (what the loader's value arrays
 * are indexed by), into names (room for ks->n). */
void tg_keyset_names(const tg_keyset_t *ks, const char **names);

/* A filter kind as the schema shows it. */
typedef struct tg_schema_filter {
    const char *name;
    const char *doc;
    const tg_keyset_t *keys;   /* NULL: the filter takes no keys */
} tg_schema_filter_t;

/* Writes the JSON Schema of the whole config (draft 2020-12), with the
 * filters given (n of them). Returns 0 or -1 (write error). */
int tg_schema_write_json(FILE *f, const tg_schema_filter_t *filters, size_t n);

#endif
