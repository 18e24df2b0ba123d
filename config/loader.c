/*
 * config/loader.c — YAML file -> tg_config_t.
 *
 * libyaml's document API gives us the whole tree with a start mark on every
 * node, so each error can name FILE:LINE:COL. Every mapping is read through
 * one table-driven helper (take_fields) that rejects unknown and duplicate
 * keys; every scalar goes through ${VAR} expansion before it is typed. The
 * loader keeps going after an error so that one `tollgate -t` run reports
 * as many problems as it can, and returns NULL if there was any.
 */
#include "config/config.h"
#include "config/yaml_doc.h"
#include "config/node.h"
#include "config/schema.h"
#include "config/value.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include <arpa/inet.h>

typedef struct loader {
    tg_yaml_doc_t y;            /* the document (config/yaml_doc.h) */
    const tg_filter_registry_t *filters; /* the filter kinds entries may name; NULL: none */
    const char *file;
    tg_errors_t *errs;
    tg_config_t *cfg;
    int failed;
    /* One flag per document node: read as a secret (get_secret,
     * tg_node_secret). /config renders the document with these as
     * "<redacted>": redaction follows where a value is read as a secret,
     * never a list of key names. */
    unsigned char *secret;
    /* clusters made for filters' URLs (tg_node_origin), appended to the
     * file's once it is read */
    tg_cluster_conf_t *origins;
    size_t n_origins;
    /* clusters filters name (tg_node_cluster_ref), checked at the end */
    struct cluster_ref { yaml_node_t *at; char *name; const char *needs_h2; } *refs;
    size_t n_refs;
    const char *route;          /* the route whose filters are being read; NULL: the global chain */
} loader_t;

static void err_at(loader_t *ld, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static const char *nearest_key(const char *key, const char *const *keys, size_t nkeys);

/* For "...'VALUE' is not one of A, B, C": the choice VALUE is probably a
 * misspelling of, as "; did you mean 'B'?" (empty when none is near), so
 * that a misspelt value gets the help a misspelt key does. */
static void value_hint(const char *msg, char *hint, size_t cap)
{
    static const char marker[] = "' is not one of ";
    hint[0] = '\0';
    const char *p = strstr(msg, marker), *q = p;
    while (q != NULL && q > msg && q[-1] != '\'')
        q--;
    if (p == NULL || q == msg)
        return;
    char value[128], list[512];
    snprintf(value, sizeof(value), "%.*s", (int)(p - q), q);
    snprintf(list, sizeof(list), "%s", p + sizeof(marker) - 1);
    const char *choices[32];
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(list, ", ", &save); t != NULL && n < 32; t = strtok_r(NULL, ", ", &save))
        choices[n++] = t;
    const char *near = nearest_key(value, choices, n);
    if (near != NULL && strcmp(near, value) != 0)
        snprintf(hint, cap, "; did you mean '%s'?", near);
}

static void err_at(loader_t *ld, const yaml_node_t *n, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    ld->failed = 1;
    if (r < 0)
        return;
    char hint[160];
    value_hint(msg, hint, sizeof(hint));
    if (n != NULL)
        tg_errors_add(ld->errs, "%s:%zu:%zu: %s%s", ld->file, n->start_mark.line + 1,
                      n->start_mark.column + 1, msg, hint);
    else
        tg_errors_add(ld->errs, "%s: %s%s", ld->file, msg, hint);
    free(msg);
}

static yaml_node_t *node_at(loader_t *ld, int id)
{
    return yaml_document_get_node(&ld->y.doc, id);
}

static const char *type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "empty";
    }
}

static int expect_type(loader_t *ld, yaml_node_t *n, yaml_node_type_t t, const char *what)
{
    if (n->type == t)
        return 0;
    const char *want = t == YAML_SCALAR_NODE ? "a scalar" : t == YAML_SEQUENCE_NODE ? "a list" : "a mapping";
    err_at(ld, n, "%s must be %s, not %s", what, want, type_name(n));
    return -1;
}

/* Returns a malloc'ed, env-expanded copy of a scalar. */
static char *get_str(loader_t *ld, yaml_node_t *n, const char *what)
{
    if (expect_type(ld, n, YAML_SCALAR_NODE, what) < 0)
        return NULL;
    char *var = NULL;
    char *s = tg_expand_env((const char *)n->data.scalar.value, &var);
    if (s == NULL) {
        if (var != NULL)
            err_at(ld, n, "%s: environment variable '%s' is not set", what, var);
        else
            err_at(ld, n, "%s: malformed ${...} reference", what);
        free(var);
    }
    return s;
}

/* get_str for a secret (a token, a key, a password): the node is marked
 * so that /config never shows it. */
static char *get_secret(loader_t *ld, yaml_node_t *n, const char *what)
{
    ptrdiff_t i = n - ld->y.doc.nodes.start;
    if (ld->secret != NULL && i >= 0 && i < ld->y.doc.nodes.top - ld->y.doc.nodes.start)
        ld->secret[i] = 1;
    return get_str(ld, n, what);
}

static int get_duration(loader_t *ld, yaml_node_t *n, const char *what, uint64_t *out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    int r = tg_parse_duration_ms(s, out);
    if (r < 0)
        err_at(ld, n, "%s: '%s' is not a duration (use e.g. 250ms, 5s, 1m, 1h)", what, s);
    free(s);
    return r;
}

static int get_size(loader_t *ld, yaml_node_t *n, const char *what, uint64_t *out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    int r = tg_parse_size(s, out);
    if (r < 0)
        err_at(ld, n, "%s: '%s' is not a size (use e.g. 512, 64KiB, 10MiB)", what, s);
    free(s);
    return r;
}

static int get_uint(loader_t *ld, yaml_node_t *n, const char *what, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    int ok = s[0] != '\0' && isdigit((unsigned char)s[0]) && *end == '\0' && errno == 0 && v >= lo && v <= hi;
    if (!ok)
        err_at(ld, n, "%s: '%s' is not an integer in [%llu, %llu]", what, s,
               (unsigned long long)lo, (unsigned long long)hi);
    else
        *out = v;
    free(s);
    return ok ? 0 : -1;
}

/* Edit distance between a and b (insertions, deletions, substitutions and
 * swaps of neighbours), for names up to 63 bytes; larger otherwise. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1], best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1; /* a swap */
            d[i][j] = best;
        }
    return d[la][lb];
}

/* The known key nearest to a misspelt one, if it is near enough to be
 * what was meant (at most a third of its length, and 3, edits away). */
static const char *nearest_key(const char *key, const char *const *keys, size_t nkeys)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX, limit = strlen(key) / 3;
    if (limit > 3)
        limit = 3;
    if (limit < 1)
        limit = 1;
    size_t kl = strlen(key);
    for (size_t i = 0; i < nkeys; i++) {
        size_t ol = strlen(keys[i]);
        if ((kl > ol ? kl - ol : ol - kl) > limit)
            continue; /* lengths alone are too far apart */
        size_t d = distance(key, keys[i]);
        if (d < bestd) {
            bestd = d;
            best = keys[i];
        }
    }
    return bestd <= limit ? best : NULL;
}

/* Fills vals[i] with the value node of keys[i] (or NULL). Unknown keys,
 * duplicate keys and non-scalar keys are errors; a misspelt key names the
 * one it probably is. */
static int take_fields(loader_t *ld, yaml_node_t *map, const char *what,
                       const char *const *keys, size_t nkeys, yaml_node_t **vals)
{
    memset(vals, 0, nkeys * sizeof(*vals));
    if (expect_type(ld, map, YAML_MAPPING_NODE, what) < 0)
        return -1;
    int rc = 0;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        if (k->type != YAML_SCALAR_NODE) {
            err_at(ld, k, "%s: keys must be scalars", what);
            rc = -1;
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t i;
        for (i = 0; i < nkeys; i++)
            if (strcmp(key, keys[i]) == 0)
                break;
        if (i == nkeys) {
            const char *near = nearest_key(key, keys, nkeys);
            if (near != NULL)
                err_at(ld, k, "unknown key '%s' in %s; did you mean '%s'?", key, what, near);
            else
                err_at(ld, k, "unknown key '%s' in %s", key, what);
            rc = -1;
        } else if (vals[i] != NULL) {
            err_at(ld, k, "duplicate key '%s' in %s", key, what);
            rc = -1;
        } else {
            vals[i] = v;
        }
    }
    return rc;
}

/* take_fields over one of the loader's own sections (config/keys.c): the
 * tables the schema is written from are the ones that reject keys here. */
/* vals must hold TG_KEYSET_MAX nodes (every caller's array is that size;
 * a keyset is never larger: test_config's row walk checks it). */
static int take_keys(loader_t *ld, yaml_node_t *map, const char *what, const tg_keyset_t *ks, yaml_node_t **vals)
{
    const char *names[TG_KEYSET_MAX];
    if (ks->n > TG_KEYSET_MAX) {
        err_at(ld, map, "%s: %zu keys, more than a section may have (%d)", what, ks->n, TG_KEYSET_MAX);
        return -1;
    }
    tg_keyset_names(ks, names);
    return take_fields(ld, map, what, names, ks->n, vals);
}

/* The value node of the key named name (NULL: absent), for the checks a
 * section makes across its keys: by name, never by position. */
static yaml_node_t *val_of(const tg_keyset_t *ks, yaml_node_t **vals, const char *name)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].name, name) == 0)
            return vals[i];
    return NULL;
}

static int require(loader_t *ld, yaml_node_t *map, yaml_node_t *v, const char *key, const char *what)
{
    if (v != NULL)
        return 0;
    err_at(ld, map, "%s: missing required key '%s'", what, key);
    return -1;
}

static size_t seq_len(yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static int get_str_list(loader_t *ld, yaml_node_t *n, const char *what, char ***out, size_t *nout)
{
    if (expect_type(ld, n, YAML_SEQUENCE_NODE, what) < 0)
        return -1;
    size_t len = seq_len(n);
    char **v = calloc(len ? len : 1, sizeof(*v));
    if (v == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        v[i] = get_str(ld, node_at(ld, n->data.sequence.items.start[i]), what);
        if (v[i] == NULL)
            rc = -1;
    }
    if (rc < 0) { /* errors are reported; the caller gets nothing to free */
        for (size_t i = 0; i < len; i++)
            free(v[i]);
        free(v);
        *out = NULL;
        *nout = 0;
        return -1;
    }
    *out = v;
    *nout = len;
    return 0;
}

/* RFC 9110 token characters, for header names and methods. */
static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

static int is_field_value(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 0;
    return 1;
}

static int get_header_name(loader_t *ld, yaml_node_t *n, const char *what, char **out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    if (!is_token(s)) {
        err_at(ld, n, "%s: '%s' is not a valid header name", what, s);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static int get_kv_map(loader_t *ld, yaml_node_t *n, const char *what, tg_kv_t **out, size_t *nout)
{
    if (expect_type(ld, n, YAML_MAPPING_NODE, what) < 0)
        return -1;
    size_t len = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    tg_kv_t *kv = calloc(len ? len : 1, sizeof(*kv));
    if (kv == NULL)
        return -1;
    *out = kv;
    *nout = len;
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *vn = node_at(ld, p->value);
        if (get_header_name(ld, node_at(ld, p->key), what, &kv[i].name) < 0) {
            rc = -1;
            continue;
        }
        kv[i].value = get_secret(ld, vn, what); /* may carry a credential for the upstream */
        if (kv[i].value == NULL) {
            rc = -1;
        } else if (!is_field_value(kv[i].value)) {
            err_at(ld, vn, "%s: value of '%s' contains control characters", what, kv[i].name);
            rc = -1;
        }
    }
    return rc;
}

static int load_header_rules(loader_t *ld, yaml_node_t *n, const char *what, tg_header_rules_t *r)
{
    const tg_keyset_t *ks = &tg_keys_header_rules;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = take_keys(ld, n, what, ks, v);
    yaml_node_t *add = val_of(ks, v, "add"), *set = val_of(ks, v, "set"), *remove = val_of(ks, v, "remove");
    if (add && get_kv_map(ld, add, what, &r->add, &r->n_add) < 0)
        rc = -1;
    if (set && get_kv_map(ld, set, what, &r->set, &r->n_set) < 0)
        rc = -1;
    if (remove) {
        if (get_str_list(ld, remove, what, &r->remove, &r->n_remove) < 0)
            rc = -1;
        for (size_t i = 0; i < r->n_remove && rc == 0; i++)
            if (!is_token(r->remove[i])) {
                err_at(ld, remove, "%s: '%s' is not a valid header name", what, r->remove[i]);
                rc = -1;
            }
    }
    return rc;
}

static int check_name(loader_t *ld, yaml_node_t *n, const char *what, char **out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    if (*s == '\0' || !is_token(s)) {
        err_at(ld, n, "%s: '%s' is not a valid name (letters, digits, - _ .)", what, s);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* ---- the node API for filters (config/node.h) ---- */

static char *where_of(loader_t *ld, const yaml_node_t *n);
static int is_ip_literal(const char *host);

void tg_node_cluster_ref(tg_node_t *n, const char *name, const char *needs)
{
    loader_t *ld = n->ld;
    struct cluster_ref *r = realloc(ld->refs, (ld->n_refs + 1) * sizeof(*r));
    char *copy = strdup(name);
    if (r != NULL)
        ld->refs = r;
    if (r == NULL || copy == NULL) {
        free(copy);
        ld->failed = 1;
        return;
    }
    ld->refs[ld->n_refs++] = (struct cluster_ref){ n->yn, copy, needs };
}

/* Filters' cluster names: each must be a cluster of the file. */
static void check_cluster_refs(loader_t *ld)
{
    const tg_config_t *c = ld->cfg;
    for (size_t i = 0; i < ld->n_refs; i++) {
        size_t j = 0;
        while (j < c->n_clusters && !(c->clusters[j].name && !c->clusters[j].implicit &&
                                      strcmp(c->clusters[j].name, ld->refs[i].name) == 0))
            j++;
        if (j == c->n_clusters)
            err_at(ld, ld->refs[i].at, "unknown cluster '%s'", ld->refs[i].name);
        else if (ld->refs[i].needs_h2 && c->clusters[j].protocol == TG_PROTO_HTTP1)
            err_at(ld, ld->refs[i].at, "cluster '%s' speaks HTTP/1.1, and %s needs HTTP/2 (protocol: h2c or h2)",
                   ld->refs[i].name, ld->refs[i].needs_h2);
        free(ld->refs[i].name);
    }
    free(ld->refs);
    ld->refs = NULL;
    ld->n_refs = 0;
}

int tg_node_origin(tg_node_t *n, const char *url, const char *ca_file, char **cluster, char **authority, char **path)
{
    loader_t *ld = n->ld;
    *cluster = *authority = *path = NULL;
    int tls = strncmp(url, "https://", 8) == 0;
    const char *a = url + (tls ? 8 : 7);
    if (!tls && strncmp(url, "http://", 7) != 0) {
        err_at(ld, n->yn, "'%s' is not an http:// or https:// URL", url);
        return -1;
    }
    size_t al = strcspn(a, "/?#");
    const char *rest = a + al;
    char auth[300], host[256];
    uint16_t port = tls ? 443 : 80;
    if (al == 0 || al >= sizeof(auth) || memchr(a, '@', al) != NULL || strchr(url, '#') != NULL ||
        strpbrk(url, " \t\r\n") != NULL) {
        err_at(ld, n->yn, "'%s': a URL needs a host, and no user info, fragment or spaces", url);
        return -1;
    }
    memcpy(auth, a, al);
    auth[al] = '\0';
    const char *colon = auth[0] == '[' ? strstr(auth, "]:") : strrchr(auth, ':');
    if (colon != NULL && (auth[0] != '[' || colon[1] == ':')) {
        if (tg_parse_hostport(auth, host, sizeof(host), &port) < 0 || port == 0) {
            err_at(ld, n->yn, "'%s': '%s' is not HOST or HOST:PORT", url, auth);
            return -1;
        }
    } else {
        size_t hl = strlen(auth);
        if (auth[0] == '[' && (hl < 3 || auth[hl - 1] != ']')) {
            err_at(ld, n->yn, "'%s': '%s' is not HOST or HOST:PORT", url, auth);
            return -1;
        }
        snprintf(host, sizeof(host), "%.*s", auth[0] == '[' ? (int)hl - 2 : (int)hl, auth[0] == '[' ? auth + 1 : auth);
    }
    char *ca = NULL;
    if (ca_file != NULL) {
        const char *slash = strrchr(ld->file, '/');
        if (ca_file[0] != '/' && slash != NULL) {
            if (asprintf(&ca, "%.*s/%s", (int)(slash - ld->file), ld->file, ca_file) < 0)
                ca = NULL;
        } else {
            ca = strdup(ca_file);
        }
        if (ca == NULL) {
            ld->failed = 1;
            return -1;
        }
    }
    char *name = NULL;
    int v6 = strchr(host, ':') != NULL;
    if (asprintf(&name, "origin:%s://%s%s%s:%u%s%s", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
                 port, ca ? " ca=" : "", ca ? ca : "") < 0) {
        free(ca);
        ld->failed = 1;
        return -1;
    }
    *cluster = name;
    *authority = strdup(auth);
    *path = rest[0] == '/' ? strdup(rest) : rest[0] == '?' ? (asprintf(path, "/%s", rest) < 0 ? NULL : *path) : strdup("/");
    if (*authority == NULL || *path == NULL)
        goto oom;
    for (size_t i = 0; i < ld->n_origins; i++)
        if (strcmp(ld->origins[i].name, name) == 0) {
            free(ca);
            return 0;
        }
    tg_cluster_conf_t *o = realloc(ld->origins, (ld->n_origins + 1) * sizeof(*o));
    if (o == NULL)
        goto oom;
    ld->origins = o;
    tg_cluster_conf_t *c = &o[ld->n_origins];
    memset(c, 0, sizeof(*c));
    tg_keyset_defaults(&tg_keys_cluster, c);
    c->implicit = 1;
    c->protocol = TG_PROTO_HTTP1;
    c->pool_size = TG_DEFAULT_POOL_SIZE;
    c->pool_adaptive = 1;
    c->dns = ld->cfg->dns;
    c->dns.resolvers = NULL;
    c->dns.n_resolvers = 0;
    c->name = strdup(name);
    c->endpoints = calloc(1, sizeof(*c->endpoints));
    ld->n_origins++; /* freed with the config from here on, whatever is missing */
    if (c->name == NULL || c->endpoints == NULL)
        goto oom;
    c->n_endpoints = 1;
    c->endpoints[0].weight = 1;
    c->endpoints[0].port = port;
    c->endpoints[0].host = strdup(host);
    c->endpoints[0].named = c->named = !is_ip_literal(host);
    if (c->endpoints[0].host == NULL ||
        asprintf(&c->endpoints[0].address, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", port) < 0)
        goto oom;
    if (tls) {
        c->tls.enabled = 1;
        c->tls.verify = 1;
        c->tls.min_version = 12;
        c->tls.ca = ca;
        ca = NULL;
        if ((c->tls.where = where_of(ld, n->yn)) == NULL ||
            (c->tls.ca != NULL && (c->tls.ca_where = where_of(ld, n->yn)) == NULL))
            goto oom;
    }
    free(ca);
    return 0;
oom:
    free(ca);
    ld->failed = 1;
    return -1;
}

const struct tg_config *tg_node_config(const tg_node_t *n)
{
    return n->ld->cfg;
}

const char *tg_node_route(const tg_node_t *n)
{
    return n->ld->route;
}

int tg_node_present(const tg_node_t *n)
{
    return n->yn != NULL;
}

int tg_node_is_seq(const tg_node_t *n)
{
    return n->yn != NULL && ((yaml_node_t *)n->yn)->type == YAML_SEQUENCE_NODE;
}

int tg_node_is_map(const tg_node_t *n)
{
    return n->yn != NULL && ((yaml_node_t *)n->yn)->type == YAML_MAPPING_NODE;
}

static int tg_node_fields(tg_node_t *map, const char *what, const char *const *keys, size_t nkeys, tg_node_t *out)
{
    yaml_node_t *vals[32];
    if (nkeys > 32)
        return -1;
    int rc = take_fields(map->ld, map->yn, what, keys, nkeys, vals);
    for (size_t i = 0; i < nkeys; i++)
        out[i] = (tg_node_t){ map->ld, vals[i] };
    return rc;
}

int tg_node_keys_cap(tg_node_t *map, const char *what, const tg_keyset_t *ks, tg_node_t *out, size_t cap)
{
    const char *names[TG_KEYSET_MAX];
    if (ks->n > cap || ks->n > TG_KEYSET_MAX) {
        err_at(map->ld, map->yn, "%s: the table has %zu keys, the reader room for %zu (a tollgate bug)", what, ks->n,
               cap);
        return -1;
    }
    tg_keyset_names(ks, names);
    return tg_node_fields(map, what, names, ks->n, out);
}

static int read_fields(loader_t *ld, const tg_keyset_t *ks, yaml_node_t **vals, void *base);

int tg_node_read(tg_node_t *map, const char *what, const tg_keyset_t *ks, void *conf, tg_node_t *out, size_t cap)
{
    int rc = 0;
    if (map->yn == NULL && ks->n <= cap) { /* an absent section: its rows' defaults */
        for (size_t i = 0; i < ks->n; i++)
            out[i] = (tg_node_t){ map->ld, NULL };
    } else {
        rc = tg_node_keys_cap(map, what, ks, out, cap);
    }
    if (rc < 0 && ks->n > cap)
        return -1; /* out was not filled */
    yaml_node_t *vals[TG_KEYSET_MAX];
    for (size_t i = 0; i < ks->n; i++) {
        vals[i] = out[i].yn;
        if (vals[i] == NULL && (ks->keys[i].flags & TG_KEY_REQUIRED) && map->yn != NULL) {
            err_at(map->ld, map->yn, "%s: missing required key '%s'", what, ks->keys[i].name);
            rc = -1;
        }
    }
    return read_fields(map->ld, ks, vals, conf) < 0 ? -1 : rc;
}

tg_node_t tg_node_get(const tg_node_t *out, const tg_keyset_t *ks, const char *name)
{
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].name, name) == 0)
            return out[i];
    assert(!"tg_node_get: a key its table does not have");
    return (tg_node_t){ NULL, NULL };
}

char *tg_node_str(tg_node_t *n, const char *what)
{
    return get_str(n->ld, n->yn, what);
}

char *tg_node_secret(tg_node_t *n, const char *what)
{
    return get_secret(n->ld, n->yn, what);
}

int tg_node_duration(tg_node_t *n, const char *what, uint64_t *ms)
{
    return get_duration(n->ld, n->yn, what, ms);
}

int tg_node_size(tg_node_t *n, const char *what, uint64_t *bytes)
{
    return get_size(n->ld, n->yn, what, bytes);
}

int tg_node_uint(tg_node_t *n, const char *what, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return get_uint(n->ld, n->yn, what, lo, hi, out);
}

int tg_node_bool(tg_node_t *n, const char *what, int *out)
{
    char *s = get_str(n->ld, n->yn, what);
    if (s == NULL)
        return -1;
    int rc = 0;
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)
        *out = 1;
    else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)
        *out = 0;
    else {
        err_at(n->ld, n->yn, "%s: '%s' is not true or false", what, s);
        rc = -1;
    }
    free(s);
    return rc;
}

int tg_node_str_list(tg_node_t *n, const char *what, char ***out, size_t *count)
{
    return get_str_list(n->ld, n->yn, what, out, count);
}

int tg_node_map_keys(tg_node_t *n, char ***keys, size_t *count)
{
    yaml_node_t *m = n->yn;
    if (expect_type(n->ld, m, YAML_MAPPING_NODE, "value") < 0)
        return -1;
    size_t len = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    char **v = calloc(len ? len : 1, sizeof(*v));
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *k = node_at(n->ld, m->data.mapping.pairs.start[i].key);
        if (k->type != YAML_SCALAR_NODE || (v[i] = strdup((const char *)k->data.scalar.value)) == NULL) {
            err_at(n->ld, k, "keys must be scalars");
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return -1;
        }
    }
    *keys = v;
    *count = len;
    return 0;
}

tg_node_t tg_node_map_get(tg_node_t *n, const char *key)
{
    yaml_node_t *m = n->yn;
    if (m != NULL && m->type == YAML_MAPPING_NODE)
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node_at(n->ld, p->key);
            if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
                return (tg_node_t){ n->ld, node_at(n->ld, p->value) };
        }
    return (tg_node_t){ n->ld, NULL };
}

int tg_node_header_name_ok(const char *s)
{
    return is_token(s);
}

size_t tg_node_seq_len(const tg_node_t *n)
{
    return tg_node_is_seq(n) ? seq_len(n->yn) : 0;
}

tg_node_t tg_node_seq_item(const tg_node_t *n, size_t i)
{
    yaml_node_t *yn = n->yn;
    return (tg_node_t){ n->ld, node_at(n->ld, yn->data.sequence.items.start[i]) };
}

void tg_node_error(tg_node_t *n, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (r >= 0)
        err_at(n->ld, n->yn, "%s", msg);
    else
        n->ld->failed = 1;
    free(msg);
}

/* ---- filters ---- */

/* `filters:` is a list of one-key mappings, `- name: { its config }`. */
static const char *filter_names(const loader_t *ld)
{
    return ld->filters != NULL ? ld->filters->names() : "none";
}

static int load_filters(loader_t *ld, yaml_node_t *n, const char *what, tg_filter_list_t *out)
{
    if (expect_type(ld, n, YAML_SEQUENCE_NODE, what) < 0)
        return -1;
    size_t len = seq_len(n);
    if (len > TG_FILTER_MAX_PER_CHAIN / 2) {
        err_at(ld, n, "%s: at most %d filters", what, TG_FILTER_MAX_PER_CHAIN / 2);
        return -1;
    }
    out->v = calloc(len ? len : 1, sizeof(*out->v));
    if (out->v == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = node_at(ld, n->data.sequence.items.start[i]);
        if (item->type != YAML_MAPPING_NODE || item->data.mapping.pairs.top - item->data.mapping.pairs.start != 1) {
            err_at(ld, item, "%s: each filter is a mapping with one key, its name (%s)", what, filter_names(ld));
            rc = -1;
            continue;
        }
        yaml_node_pair_t *p = item->data.mapping.pairs.start;
        yaml_node_t *k = node_at(ld, p->key);
        const struct tg_filter_type *type = k->type == YAML_SCALAR_NODE && ld->filters != NULL
                                                ? ld->filters->find((const char *)k->data.scalar.value)
                                                : NULL;
        if (type == NULL) {
            err_at(ld, k, "unknown filter '%s' (known: %s)",
                   k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?", filter_names(ld));
            rc = -1;
            continue;
        }
        tg_node_t node = { ld, node_at(ld, p->value) };
        void *conf = ld->filters->create(type, &node, ld->file);
        if (conf == NULL) {
            ld->failed = 1;
            rc = -1;
            continue;
        }
        out->v[out->n++] = (tg_filter_instance_t){ type, conf };
    }
    return rc;
}

/* ---- listeners ---- */

/* "file:line:col" of a node, malloc'ed (for errors found later, when the
 * files a node names are read). */
static char *where_of(loader_t *ld, const yaml_node_t *n)
{
    char *w = NULL;
    if (asprintf(&w, "%s:%zu:%zu", ld->file, n->start_mark.line + 1, n->start_mark.column + 1) < 0)
        return NULL;
    return w;
}

static int get_bool(loader_t *ld, yaml_node_t *n, const char *what, int *out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    int rc = 0;
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
        *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
        *out = 0;
    else {
        err_at(ld, n, "%s: '%s' is not true or false", what, s);
        rc = -1;
    }
    free(s);
    return rc;
}

/* One of the words of choices ("a|b|c"): *out is its index. */
static int get_choice(loader_t *ld, yaml_node_t *n, const char *what, const char *choices, int *out)
{
    char *s = get_str(ld, n, what);
    if (s == NULL)
        return -1;
    size_t sl = strlen(s);
    int i = 0;
    for (const char *c = choices;; i++) {
        size_t cl = strcspn(c, "|");
        if (cl == sl && memcmp(c, s, sl) == 0) {
            *out = i;
            free(s);
            return 0;
        }
        if (c[cl] == '\0')
            break;
        c += cl + 1;
    }
    char list[256];
    size_t w = 0;
    for (const char *c = choices; *c && w + 3 < sizeof(list); c++)
        w += (size_t)snprintf(list + w, sizeof(list) - w, *c == '|' ? ", " : "%c", *c);
    err_at(ld, n, "%s: '%s' is not one of %s", what, s, list);
    free(s);
    return -1;
}

/* ---- rows that parse themselves ---- */

/* Reads the field rows of ks (config/schema.h) into base: a key that is
 * there is parsed as its row says — type, bounds, choices — and stored at
 * its offset; one that is not gets the row's default. vals are the
 * section's values from take_keys, in row order. Rows without a field are
 * left to the section. 0, or -1 after reporting each error. */
static int read_fields(loader_t *ld, const tg_keyset_t *ks, yaml_node_t **vals, void *base)
{
    int rc = 0;
    for (size_t i = 0; i < ks->n; i++) {
        const tg_key_t *k = &ks->keys[i];
        if (k->field == TG_FIELD_NONE)
            continue;
        uint64_t v = (uint64_t)k->def;
        int ok = 1;
        if (k->field == TG_FIELD_STR) { /* absent: NULL */
            char *str = vals[i] != NULL ? get_str(ld, vals[i], k->name) : NULL;
            if (vals[i] != NULL && str == NULL)
                rc = -1;
            else
                tg_key_store_str(k, base, str);
            continue;
        }
        if (vals[i] != NULL) {
            int x = 0;
            int bounded = k->min != 0 || k->max != 0;
            switch (k->kind) {
            case TG_KEY_BOOL:
                ok = get_bool(ld, vals[i], k->name, &x) == 0;
                v = (uint64_t)x;
                break;
            case TG_KEY_ENUM:
                ok = get_choice(ld, vals[i], k->name, k->choices, &x) == 0;
                v = (uint64_t)x;
                break;
            case TG_KEY_INT:
                ok = get_uint(ld, vals[i], k->name, (uint64_t)k->min, bounded ? (uint64_t)k->max : UINT64_MAX, &v) == 0;
                break;
            case TG_KEY_SIZE:
            case TG_KEY_DURATION:
                ok = (k->kind == TG_KEY_SIZE ? get_size(ld, vals[i], k->name, &v)
                                             : get_duration(ld, vals[i], k->name, &v)) == 0;
                if (ok && bounded && (v < (uint64_t)k->min || v > (uint64_t)k->max)) {
                    char lo[32], hi[32];
                    tg_key_value_text(k, (uint64_t)k->min, lo, sizeof(lo));
                    if (k->max == INT64_MAX)
                        err_at(ld, vals[i], "%s: must be at least %s", k->name, lo);
                    else
                        err_at(ld, vals[i], "%s: must be between %s and %s", k->name, lo,
                               tg_key_value_text(k, (uint64_t)k->max, hi, sizeof(hi)));
                    ok = 0;
                }
                break;
            default:
                ok = 0; /* a field row of a kind the reader does not store: a table bug */
                err_at(ld, vals[i], "%s: cannot be read here", k->name);
                break;
            }
        }
        if (ok)
            tg_key_store(k, base, v);
        else
            rc = -1;
    }
    return rc;
}

/* take_keys, then read_fields: a section made only of field rows. */
static int read_section(loader_t *ld, yaml_node_t *n, const char *what, const tg_keyset_t *ks, void *base,
                        yaml_node_t **vals)
{
    int rc = take_keys(ld, n, what, ks, vals);
    return read_fields(ld, ks, vals, base) < 0 ? -1 : rc;
}

static int get_tls_version(loader_t *ld, yaml_node_t *n, int *out)
{
    char *s = get_str(ld, n, "min_version");
    if (s == NULL)
        return -1;
    int rc = 0;
    if (!strcmp(s, "1.2") || !strcasecmp(s, "TLSv1.2"))
        *out = 12;
    else if (!strcmp(s, "1.3") || !strcasecmp(s, "TLSv1.3"))
        *out = 13;
    else {
        err_at(ld, n, "min_version: '%s' is not one of 1.2, 1.3", s);
        rc = -1;
    }
    free(s);
    return rc;
}

/* A file named in the config: relative paths are relative to the config
 * file's directory (as for the filters' files). */
static int get_path(loader_t *ld, yaml_node_t *n, const char *what, char **out, char **where)
{
    if ((*out = get_str(ld, n, what)) == NULL)
        return -1;
    if (**out == '\0') {
        err_at(ld, n, "%s: empty file name", what);
        return -1;
    }
    const char *slash = strrchr(ld->file, '/');
    if (**out != '/' && slash != NULL) {
        char *full = NULL;
        if (asprintf(&full, "%.*s/%s", (int)(slash - ld->file), ld->file, *out) < 0)
            return -1;
        free(*out);
        *out = full;
    }
    if (where != NULL && (*where = where_of(ld, n)) == NULL)
        return -1;
    return 0;
}

static int load_cert(loader_t *ld, yaml_node_t *n, tg_tls_cert_conf_t *c)
{
    const tg_keyset_t *ks = &tg_keys_certificate;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = take_keys(ld, n, "certificate", ks, v);
    if (n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *cert = val_of(ks, v, "cert"), *key = val_of(ks, v, "key");
    if (require(ld, n, cert, "cert", "certificate") < 0 || require(ld, n, key, "key", "certificate") < 0)
        return -1;
    if (get_path(ld, cert, "cert", &c->cert, &c->where) < 0 || get_path(ld, key, "key", &c->key, NULL) < 0)
        rc = -1;
    return rc;
}

static int load_alpn(loader_t *ld, yaml_node_t *n, tg_tls_server_conf_t *t)
{
    if (get_str_list(ld, n, "alpn", &t->alpn, &t->n_alpn) < 0)
        return -1;
    if (t->n_alpn == 0) {
        err_at(ld, n, "alpn: list at least one of h2, http/1.1");
        return -1;
    }
    for (size_t i = 0; i < t->n_alpn; i++)
        if (strcmp(t->alpn[i], "h2") != 0 && strcmp(t->alpn[i], "http/1.1") != 0) {
            err_at(ld, n, "alpn: '%s' is not one of h2, http/1.1", t->alpn[i]);
            return -1;
        }
    return 0;
}

static int load_listener_tls(loader_t *ld, yaml_node_t *n, tg_tls_server_conf_t *t)
{
    const tg_keyset_t *ks = &tg_keys_server_tls;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "tls", ks, t, v);
    if (n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *certs = val_of(ks, v, "certificates"), *alpn = val_of(ks, v, "alpn"),
                *minv = val_of(ks, v, "min_version"), *cauth = val_of(ks, v, "client_auth"),
                *cca = val_of(ks, v, "client_ca"), *cch = val_of(ks, v, "client_cert_header");
    t->enabled = 1;
    t->min_version = 12;
    if ((t->where = where_of(ld, n)) == NULL)
        return -1;
    if (require(ld, n, certs, "certificates", "tls") < 0 || expect_type(ld, certs, YAML_SEQUENCE_NODE, "certificates") < 0)
        return -1;
    size_t len = seq_len(certs);
    if (len == 0) {
        err_at(ld, certs, "certificates: list at least one { cert, key }");
        return -1;
    }
    if ((t->certs = calloc(len, sizeof(*t->certs))) == NULL)
        return -1;
    t->n_certs = len;
    for (size_t i = 0; i < len; i++)
        if (load_cert(ld, node_at(ld, certs->data.sequence.items.start[i]), &t->certs[i]) < 0)
            rc = -1;
    if (alpn ? load_alpn(ld, alpn, t) < 0 : 0)
        rc = -1;
    if (minv && get_tls_version(ld, minv, &t->min_version) < 0)
        rc = -1;
    if (cca && get_path(ld, cca, "client_ca", &t->client_ca, &t->client_ca_where) < 0)
        rc = -1;
    if (t->client_auth != TG_CLIENT_AUTH_NONE && t->client_ca == NULL && cca == NULL) {
        err_at(ld, cauth, "client_auth: '%s' needs client_ca (the CA bundle client certificates are checked "
                          "against)", t->client_auth == TG_CLIENT_AUTH_REQUIRE ? "require" : "optional");
        rc = -1;
    }
    if (cch) {
        if (get_header_name(ld, cch, "client_cert_header", &t->client_cert_header) < 0)
            rc = -1;
    } else if ((t->client_cert_header = strdup(TG_DEFAULT_CLIENT_CERT_HEADER)) == NULL) {
        rc = -1;
    }
    if (t->alpn == NULL && rc == 0) {
        t->alpn = calloc(2, sizeof(char *));
        if (t->alpn == NULL || (t->alpn[0] = strdup("h2")) == NULL || (t->alpn[1] = strdup("http/1.1")) == NULL)
            return -1;
        t->n_alpn = 2;
    }
    return rc;
}

static void http2_defaults(tg_http2_conf_t *h)
{
    tg_keyset_defaults(&tg_keys_http2, h);
}

static int load_http2(loader_t *ld, yaml_node_t *n, tg_http2_conf_t *h)
{
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "http2", &tg_keys_http2, h, v);
    return n->type != YAML_MAPPING_NODE ? -1 : rc;
}

/* trusted_proxies: a list of CIDR blocks (or single addresses). */
static int load_cidrs(loader_t *ld, yaml_node_t *n, const char *what, tg_cidr_t **out, size_t *nout)
{
    char **items = NULL;
    size_t cnt = 0;
    if (get_str_list(ld, n, what, &items, &cnt) < 0)
        return -1;
    int rc = 0;
    *out = calloc(cnt + 1, sizeof(**out));
    if (*out == NULL)
        rc = -1;
    for (size_t i = 0; i < cnt; i++) {
        if (rc == 0 && tg_parse_cidr(items[i], &(*out)[i]) < 0) {
            err_at(ld, node_at(ld, n->data.sequence.items.start[i]),
                   "%s: '%s' is not an address or CIDR block (e.g. 10.0.0.0/8, 2001:db8::/32)", what, items[i]);
            rc = -1;
        }
        free(items[i]);
    }
    free(items);
    *nout = rc == 0 ? cnt : 0;
    return rc;
}

/* http1: { enabled } — a listener may serve HTTP/2 only. */
static int load_http1(loader_t *ld, yaml_node_t *n, int *enabled)
{
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = take_keys(ld, n, "http1", &tg_keys_http1, v);
    if (n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *en = val_of(&tg_keys_http1, v, "enabled");
    if (en && get_bool(ld, en, "enabled", enabled) < 0)
        rc = -1;
    return rc;
}

static int load_listener(loader_t *ld, yaml_node_t *n, tg_listener_conf_t *l)
{
    const tg_keyset_t *ks = &tg_keys_listener;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "listener", ks, l, v);
    if (rc < 0 && n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *name = val_of(ks, v, "name"), *listen = val_of(ks, v, "listen"), *tls = val_of(ks, v, "tls"),
                *http2 = val_of(ks, v, "http2"), *http1 = val_of(ks, v, "http1"),
                *trusted = val_of(ks, v, "trusted_proxies"), *pp = val_of(ks, v, "proxy_protocol");
    http2_defaults(&l->http2);
    l->http1_enabled = 1;
    if (val_of(ks, v, "headers_with_underscores") == NULL)
        l->underscores = ld->cfg->underscores; /* the top level's (read before the listeners) */
    if (http1 != NULL && load_http1(ld, http1, &l->http1_enabled) < 0)
        rc = -1;
    if (require(ld, n, name, "name", "listener") < 0 || check_name(ld, name, "listener name", &l->name) < 0)
        rc = -1;
    if (tls != NULL && load_listener_tls(ld, tls, &l->tls) < 0)
        rc = -1;
    if (http2 != NULL && load_http2(ld, http2, &l->http2) < 0)
        rc = -1;
    if (!l->http1_enabled && !l->http2.enabled) {
        err_at(ld, http1, "http1: a listener must serve HTTP/1.1 or HTTP/2 (http2.enabled is false too)");
        rc = -1;
    } else if (!l->http1_enabled && l->tls.enabled) {
        size_t i = 0;
        while (i < l->tls.n_alpn && strcmp(l->tls.alpn[i], "h2") != 0)
            i++;
        if (i == l->tls.n_alpn) {
            err_at(ld, http1, "http1: an HTTP/2-only TLS listener needs h2 in tls.alpn");
            rc = -1;
        }
    }
    if (trusted != NULL) {
        l->has_trusted_proxies = 1;
        if (load_cidrs(ld, trusted, "trusted_proxies", &l->trusted_proxies, &l->n_trusted_proxies) < 0)
            rc = -1;
    }
    /* the top-level trusted_proxies are loaded before the listeners */
    if (l->proxy_protocol && (l->has_trusted_proxies ? l->n_trusted_proxies : ld->cfg->n_trusted_proxies) == 0) {
        err_at(ld, pp, "proxy_protocol: needs trusted_proxies (the balancers allowed to send it), on the listener "
                       "or at the top level");
        rc = -1;
    }
    if (require(ld, n, listen, "listen", "listener") < 0)
        return -1;
    l->listen = get_str(ld, listen, "listen");
    if (l->listen == NULL)
        return -1;
    char host[256];
    if (tg_parse_hostport(l->listen, host, sizeof(host), &l->port) < 0) {
        err_at(ld, listen, "listen: '%s' is not HOST:PORT", l->listen);
        return -1;
    }
    l->host = strdup(host);
    return rc;
}

/* ---- clusters ---- */

static int load_health_check(loader_t *ld, yaml_node_t *n, tg_health_check_conf_t *h)
{
    const tg_keyset_t *ks = &tg_keys_health_check;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "health_check", ks, h, v);
    if (n->type != YAML_MAPPING_NODE)
        return -1;
    h->enabled = 1;
    yaml_node_t *path = val_of(ks, v, "path"), *service = val_of(ks, v, "service");
    if (h->grpc) {
        if (path != NULL) {
            err_at(ld, path, "health_check path: a grpc check asks grpc.health.v1.Health/Check (use service)");
            rc = -1;
        }
        if (h->service == NULL && (h->service = strdup("")) == NULL)
            rc = -1;
    } else if (service != NULL) {
        err_at(ld, service, "health_check service: only for type grpc");
        rc = -1;
    } else if (require(ld, n, path, "path", "health_check") < 0) {
        rc = -1;
    } else if (h->path != NULL && (h->path[0] != '/' || strpbrk(h->path, " \r\n") != NULL)) {
        err_at(ld, path, "health_check path: '%s' must start with '/' and contain no spaces", h->path);
        rc = -1;
    }
    return rc;
}

static int load_outlier(loader_t *ld, yaml_node_t *n, tg_outlier_conf_t *o)
{
    yaml_node_t *v[TG_KEYSET_MAX];
    return read_section(ld, n, "outlier_detection", &tg_keys_outlier, o, v);
}

static int load_client_tls(loader_t *ld, yaml_node_t *n, const char *what, tg_tls_client_conf_t *t)
{
    const tg_keyset_t *ks = &tg_keys_client_tls;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, what, ks, t, v);
    if (n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *ca = val_of(ks, v, "ca"), *cert = val_of(ks, v, "cert"), *key = val_of(ks, v, "key"),
                *minv = val_of(ks, v, "min_version");
    t->enabled = 1;
    t->min_version = 12;
    if ((t->where = where_of(ld, n)) == NULL)
        return -1;
    if (ca && get_path(ld, ca, "ca", &t->ca, &t->ca_where) < 0)
        rc = -1;
    if ((cert == NULL) != (key == NULL)) {
        err_at(ld, n, "%s: cert and key go together (a client certificate for mutual TLS)", what);
        rc = -1;
    } else if (cert && (get_path(ld, cert, "cert", &t->client_cert.cert, &t->client_cert.where) < 0 ||
                        get_path(ld, key, "key", &t->client_cert.key, NULL) < 0)) {
        rc = -1;
    }
    if (minv && get_tls_version(ld, minv, &t->min_version) < 0)
        rc = -1;
    return rc;
}

static int is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int check_ttls(loader_t *ld, yaml_node_t *n, const char *what, const tg_dns_conf_t *d)
{
    if (d->min_ttl_ms <= d->max_ttl_ms)
        return 0;
    err_at(ld, n, "%s: min_ttl is more than max_ttl", what);
    return -1;
}

/* A cluster's `dns:` — only the keys it gives replace the top level's. */
static int load_cluster_dns(loader_t *ld, yaml_node_t *n, tg_dns_conf_t *d)
{
    const tg_keyset_t *ks = &tg_keys_cluster_dns;
    yaml_node_t *v[TG_KEYSET_MAX];
    tg_dns_conf_t own = { 0 };
    int rc = read_section(ld, n, "cluster dns", ks, &own, v);
    if (n->type != YAML_MAPPING_NODE)
        return -1;
    for (size_t i = 0; i < ks->n; i++)
        if (v[i] != NULL) /* the same field as the top level's row of that name */
            memcpy((char *)d + ks->keys[i].offset, (char *)&own + ks->keys[i].offset,
                   ks->keys[i].field == TG_FIELD_U64 ? sizeof(uint64_t) : sizeof(int));
    return check_ttls(ld, n, "cluster dns", d) < 0 ? -1 : rc;
}

/* The top level's `dns:`; absent, its defaults. Resolvers are kept as
 * c-ares reads them: "IP:PORT" or "[IPv6]:PORT". */
static void load_dns(loader_t *ld, yaml_node_t *n, tg_dns_conf_t *d)
{
    const tg_keyset_t *ks = &tg_keys_dns;
    yaml_node_t *v[TG_KEYSET_MAX] = { 0 };
    if (n == NULL) {
        read_fields(ld, ks, v, d);
        return;
    }
    if (read_section(ld, n, "dns", ks, d, v) < 0 && n->type != YAML_MAPPING_NODE)
        return;
    check_ttls(ld, n, "dns", d);
    yaml_node_t *res = val_of(ks, v, "resolvers");
    if (res == NULL || get_str_list(ld, res, "dns resolvers", &d->resolvers, &d->n_resolvers) < 0)
        return;
    if (d->n_resolvers == 0 || d->n_resolvers > 8)
        err_at(ld, res, "dns resolvers: give 1 to 8 servers (or leave resolvers out for /etc/resolv.conf's)");
    for (size_t i = 0; i < d->n_resolvers; i++) {
        char host[64], out[80];
        uint16_t port = 53;
        const char *r = d->resolvers[i];
        if (is_ip_literal(r))
            snprintf(host, sizeof(host), "%s", r);
        else if (tg_parse_hostport(r, host, sizeof(host), &port) < 0 || port == 0 || !is_ip_literal(host)) {
            err_at(ld, node_at(ld, res->data.sequence.items.start[i]),
                   "dns resolvers: '%s' is not an IP address or IP:PORT (a resolver is not looked up by name)", r);
            continue;
        }
        snprintf(out, sizeof(out), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
        char *copy = strdup(out);
        if (copy != NULL) {
            free(d->resolvers[i]);
            d->resolvers[i] = copy;
        }
    }
}

/* hash_on: only for the hashing lbs; client_address by default. */
static int load_hash_on(loader_t *ld, yaml_node_t *n, tg_cluster_conf_t *c)
{
    int hashing = c->lb == TG_LB_RING_HASH || c->lb == TG_LB_MAGLEV;
    if (n == NULL)
        return 0;
    if (!hashing) {
        err_at(ld, n, "hash_on: only for lb ring_hash or maglev");
        return -1;
    }
    char *s = get_str(ld, n, "hash_on");
    if (s == NULL)
        return -1;
    int rc = 0;
    const char *name = NULL;
    if (strcmp(s, "client_address") == 0)
        c->hash_on = TG_HASH_CLIENT_ADDRESS;
    else if (strcmp(s, "path") == 0)
        c->hash_on = TG_HASH_PATH;
    else if (strncmp(s, "header:", 7) == 0 && is_token(s + 7))
        c->hash_on = TG_HASH_HEADER, name = s + 7;
    else if (strncmp(s, "cookie:", 7) == 0 && is_token(s + 7))
        c->hash_on = TG_HASH_COOKIE, name = s + 7;
    else {
        err_at(ld, n, "hash_on: '%s' is not client_address, header:NAME, cookie:NAME or path", s);
        rc = -1;
    }
    if (name != NULL && (c->hash_name = strdup(name)) != NULL && c->hash_on == TG_HASH_HEADER)
        for (char *p = c->hash_name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    free(s);
    return rc;
}

static int load_cluster(loader_t *ld, yaml_node_t *n, tg_cluster_conf_t *c)
{
    const tg_keyset_t *ks = &tg_keys_cluster;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "cluster", ks, c, v);
    if (rc < 0 && n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *name = val_of(ks, v, "name"), *proto = val_of(ks, v, "protocol"), *pool = val_of(ks, v, "pool_size"),
                *hc = val_of(ks, v, "health_check"), *outlier = val_of(ks, v, "outlier_detection"),
                *tls = val_of(ks, v, "tls"), *eps = val_of(ks, v, "endpoints"), *dns = val_of(ks, v, "dns"),
                *hash_on = val_of(ks, v, "hash_on"), *slow = val_of(ks, v, "slow_start");
    if (load_hash_on(ld, hash_on, c) < 0)
        rc = -1;
    if (slow != NULL && c->slow_start_ms > 0 && (c->lb == TG_LB_RING_HASH || c->lb == TG_LB_MAGLEV)) {
        err_at(ld, slow, "slow_start: not with lb ring_hash or maglev (a key keeps its endpoint)");
        rc = -1;
    }
    c->dns = ld->cfg->dns; /* the top level's (read first), the cluster's own keys over it */
    c->dns.resolvers = NULL; /* process-wide: the cluster keeps no copy */
    c->dns.n_resolvers = 0;
    if (require(ld, n, name, "name", "cluster") < 0 || check_name(ld, name, "cluster name", &c->name) < 0)
        rc = -1;
    c->pool_size = TG_DEFAULT_POOL_SIZE;
    c->pool_adaptive = pool == NULL; /* not given: the pool adapts */
    if (pool != NULL) {
        uint64_t x;
        if (get_uint(ld, pool, "pool_size", 0, 100000, &x) < 0)
            rc = -1;
        else
            c->pool_size = (uint32_t)x;
    }
    if (hc && load_health_check(ld, hc, &c->health_check) < 0)
        rc = -1;
    if (c->health_check.grpc && c->protocol == TG_PROTO_HTTP1) {
        err_at(ld, hc, "health_check: type grpc needs an HTTP/2 cluster (protocol h2c or h2)");
        rc = -1;
    }
    if (outlier && load_outlier(ld, outlier, &c->outlier) < 0)
        rc = -1;
    if (tls && load_client_tls(ld, tls, "cluster tls", &c->tls) < 0)
        rc = -1;
    if (c->protocol == TG_PROTO_H2 && tls == NULL) {
        err_at(ld, proto, "protocol: 'h2' is HTTP/2 over TLS and needs a tls block (use h2c for cleartext)");
        rc = -1;
    } else if (c->protocol == TG_PROTO_H2C && tls != NULL) {
        err_at(ld, tls, "tls: protocol 'h2c' is cleartext HTTP/2 (use protocol h2 for HTTP/2 over TLS)");
        rc = -1;
    }
    if (require(ld, n, eps, "endpoints", "cluster") < 0)
        return -1;
    if (expect_type(ld, eps, YAML_SEQUENCE_NODE, "endpoints") < 0)
        return -1;
    size_t len = seq_len(eps);
    if (len == 0) {
        err_at(ld, eps, "endpoints: a cluster needs at least one endpoint");
        return -1;
    }
    c->endpoints = calloc(len, sizeof(*c->endpoints));
    if (c->endpoints == NULL)
        return -1;
    c->n_endpoints = len;
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *en = node_at(ld, eps->data.sequence.items.start[i]);
        tg_endpoint_conf_t *e = &c->endpoints[i];
        char host[256];
        e->weight = 1;
        if (en->type == YAML_MAPPING_NODE) { /* { address, weight } */
            yaml_node_t *ev[TG_KEYSET_MAX];
            int ok = take_keys(ld, en, "endpoint", &tg_keys_endpoint, ev) == 0;
            yaml_node_t *addr = val_of(&tg_keys_endpoint, ev, "address"), *weight = val_of(&tg_keys_endpoint, ev, "weight");
            if (!ok || require(ld, en, addr, "address", "endpoint") < 0) {
                rc = -1;
                continue;
            }
            uint64_t w;
            if (weight != NULL && get_uint(ld, weight, "endpoint weight", 1, 10000, &w) < 0)
                rc = -1;
            else if (weight != NULL)
                e->weight = (uint32_t)w;
            c->weighted |= e->weight != 1;
            en = addr;
        }
        e->address = get_str(ld, en, "endpoint");
        if (e->address == NULL) {
            rc = -1;
            continue;
        }
        if (tg_parse_hostport(e->address, host, sizeof(host), &e->port) < 0) {
            err_at(ld, en, "endpoint: '%s' is not HOST:PORT", e->address);
            rc = -1;
            continue;
        }
        e->host = strdup(host);
        e->named = !is_ip_literal(host);
        c->named |= e->named;
    }
    if (dns != NULL && load_cluster_dns(ld, dns, &c->dns) < 0)
        rc = -1;
    return rc;
}

/* ---- routes ---- */

/* glibc's regcomp expands repetitions into copies of the repeated tree:
 * stacked quantifiers (a++++...) or large nested counts ({255}{255}) make
 * it exhaust memory. Such patterns are refused, with the reason; a route
 * regex needs neither. Returns NULL if the pattern is acceptable. */
static const char *regex_too_complex(const char *re)
{
    if (strlen(re) > 1024)
        return "longer than 1024 characters";
    /* Every {n,m} multiplies the tree by m, and every repeated group at
     * least doubles it: keep the product small. */
    uint64_t product = 1;
    int prev_quant = 0, prev_group = 0;
    for (const char *p = re; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            prev_quant = prev_group = 0;
            continue;
        }
        if (*p == '[') { /* a bracket expression: ']' right after '[' or '[^' is literal */
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p && *p != ']')
                p++;
            if (!*p)
                break;
            prev_quant = prev_group = 0;
            continue;
        }
        if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (prev_quant)
                return "a repetition of a repetition (e.g. 'a++' or 'a{2}{3}')";
            uint64_t times = prev_group ? 2 : 1;
            if (*p == '{') {
                char *end;
                unsigned long lo = strtoul(p + 1, &end, 10), hi = lo;
                p = end;
                if (*p == ',' && p[1] == '}') {
                    hi = lo + 1; /* {n,}: unbounded, counted as one more */
                } else if (*p == ',') {
                    hi = strtoul(p + 1, &end, 10);
                    p = end;
                }
                while (*p && *p != '}')
                    p++;
                if (!*p)
                    return "an unterminated {...}";
                times = hi > 1 ? hi : 1;
            }
            product *= times;
            if (product > 1000)
                return "repetition counts that multiply past 1000";
            prev_quant = 1;
            prev_group = 0;
            continue;
        }
        prev_quant = 0;
        prev_group = *p == ')';
    }
    return NULL;
}

/* A list of { name, value } header conditions (route match, pins). */
static int load_header_matches(loader_t *ld, yaml_node_t *n, tg_header_match_t **out, size_t *count)
{
    if (expect_type(ld, n, YAML_SEQUENCE_NODE, "headers") < 0)
        return -1;
    size_t len = seq_len(n);
    tg_header_match_t *h = calloc(len ? len : 1, sizeof(*h));
    if (h == NULL)
        return -1;
    *out = h;
    *count = len;
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *hn = node_at(ld, n->data.sequence.items.start[i]), *hv[TG_KEYSET_MAX];
        if (take_keys(ld, hn, "header match", &tg_keys_header_match, hv) < 0) {
            rc = -1;
            continue;
        }
        yaml_node_t *name = val_of(&tg_keys_header_match, hv, "name"), *value = val_of(&tg_keys_header_match, hv, "value");
        if (require(ld, hn, name, "name", "header match") < 0 ||
            get_header_name(ld, name, "header match name", &h[i].name) < 0)
            rc = -1;
        if (value && (h[i].value = get_secret(ld, value, "header match value")) == NULL)
            rc = -1;
    }
    return rc;
}

static int load_match(loader_t *ld, yaml_node_t *n, tg_route_match_t *m)
{
    const tg_keyset_t *ks = &tg_keys_match;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "match", ks, m, v);
    yaml_node_t *host = val_of(ks, v, "host"), *methods = val_of(ks, v, "methods"), *headers = val_of(ks, v, "headers"),
                *gsvc = val_of(ks, v, "grpc_service"), *gmeth = val_of(ks, v, "grpc_method");
    /* the path keys, one at most: exact, prefix, separated prefix, regex */
    static const char *const path_keys[] = { "path", "path_prefix", "path_separated_prefix", "path_regex" };
    static const tg_path_kind_t path_kinds[] = { TG_PATH_EXACT, TG_PATH_PREFIX, TG_PATH_SEPARATED_PREFIX,
                                                 TG_PATH_REGEX };
    if (gsvc) {
        if ((m->grpc_service = get_str(ld, gsvc, "grpc_service")) == NULL)
            rc = -1;
        else if (*m->grpc_service == '\0' || strpbrk(m->grpc_service, "/ ") != NULL) {
            err_at(ld, gsvc, "grpc_service: '%s' must be a service name like pkg.v1.Service", m->grpc_service);
            rc = -1;
        }
    }
    if (gmeth) {
        if (gsvc == NULL) {
            err_at(ld, gmeth, "grpc_method needs grpc_service");
            rc = -1;
        } else if ((m->grpc_method = get_str(ld, gmeth, "grpc_method")) == NULL) {
            rc = -1;
        } else if (*m->grpc_method == '\0' || strpbrk(m->grpc_method, "/ ") != NULL) {
            err_at(ld, gmeth, "grpc_method: '%s' must be a method name", m->grpc_method);
            rc = -1;
        }
    }
    if (host) {
        char *h = get_str(ld, host, "host");
        if (h == NULL) {
            rc = -1;
        } else if (strncmp(h, "*.", 2) == 0) {
            m->host_wildcard = 1;
            m->host = strdup(h + 1);
            free(h);
        } else if (*h == '\0' || strchr(h, '*') != NULL) {
            err_at(ld, host, "host: '%s' must be a name or '*.suffix'", h);
            free(h);
            rc = -1;
        } else {
            m->host = h;
        }
    }
    int npath = 0;
    for (int k = 0; k < 4; k++) {
        yaml_node_t *pv = val_of(ks, v, path_keys[k]);
        if (pv == NULL)
            continue;
        if (++npath > 1) {
            err_at(ld, pv, "match: only one of path, path_prefix, path_separated_prefix, path_regex may be given");
            rc = -1;
            continue;
        }
        char *p = get_str(ld, pv, path_keys[k]);
        if (p == NULL) {
            rc = -1;
            continue;
        }
        m->path = p;
        m->path_kind = path_kinds[k];
        int regex = path_kinds[k] == TG_PATH_REGEX;
        if (!regex && p[0] != '/') {
            err_at(ld, pv, "%s: '%s' must start with '/'", path_keys[k], p);
            rc = -1;
        }
        const char *why = regex ? regex_too_complex(p) : NULL;
        if (why != NULL) {
            err_at(ld, pv, "path_regex: '%.80s': %s", p, why);
            m->path_kind = TG_PATH_PREFIX; /* nothing compiled to free */
            rc = -1;
        } else if (regex) {
            int e = regcomp(&m->path_re, p, REG_EXTENDED | REG_NOSUB | (m->ignore_case ? REG_ICASE : 0));
            if (e != 0) {
                char buf[256];
                regerror(e, &m->path_re, buf, sizeof(buf));
                err_at(ld, pv, "path_regex: '%s': %s", p, buf);
                m->path_kind = TG_PATH_PREFIX; /* nothing compiled to free */
                rc = -1;
            }
        }
    }
    if (methods) {
        if (get_str_list(ld, methods, "methods", &m->methods, &m->n_methods) < 0)
            rc = -1;
        for (size_t i = 0; i < m->n_methods; i++)
            if (m->methods[i] && !is_token(m->methods[i])) {
                err_at(ld, methods, "methods: '%s' is not a valid method", m->methods[i]);
                rc = -1;
            }
    }
    if (headers && load_header_matches(ld, headers, &m->headers, &m->n_headers) < 0)
        rc = -1;
    return rc;
}

/* `clusters: [{ name, weight, headers }]`: a route's weighted clusters. */
static int load_backends(loader_t *ld, yaml_node_t *n, tg_route_conf_t *r)
{
    if (expect_type(ld, n, YAML_SEQUENCE_NODE, "clusters") < 0)
        return -1;
    size_t len = seq_len(n);
    if (len == 0 || len > TG_MAX_BACKENDS) {
        err_at(ld, n, "clusters: give 1 to %d clusters", TG_MAX_BACKENDS);
        return -1;
    }
    if ((r->backends = calloc(len, sizeof(*r->backends))) == NULL)
        return -1;
    r->n_backends = len;
    int rc = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *bn = node_at(ld, n->data.sequence.items.start[i]), *bv[TG_KEYSET_MAX];
        int taken = take_keys(ld, bn, "clusters entry", &tg_keys_backend, bv);
        yaml_node_t *bname = val_of(&tg_keys_backend, bv, "name"), *bweight = val_of(&tg_keys_backend, bv, "weight"),
                    *bheaders = val_of(&tg_keys_backend, bv, "headers");
        tg_route_backend_t *b = &r->backends[i];
        b->weight = 1;
        if (taken < 0 || require(ld, bn, bname, "name", "clusters entry") < 0) {
            rc = -1;
            continue;
        }
        char *c = get_str(ld, bname, "cluster");
        long idx = c ? tg_config_find_cluster(ld->cfg, c) : -1;
        if (c && idx < 0)
            err_at(ld, bname, "route '%s': unknown cluster '%s'", r->name ? r->name : "?", c);
        free(c);
        if (idx < 0)
            rc = -1;
        else
            b->cluster = (size_t)idx;
        uint64_t w;
        if (bweight != NULL && get_uint(ld, bweight, "weight", 0, 10000, &w) < 0)
            rc = -1;
        else if (bweight != NULL)
            b->weight = (uint32_t)w;
        total += b->weight;
        if (bheaders != NULL && load_header_matches(ld, bheaders, &b->headers, &b->n_headers) < 0)
            rc = -1;
    }
    if (rc == 0 && total == 0) {
        err_at(ld, n, "clusters: at least one weight must be above 0");
        rc = -1;
    }
    if (rc == 0)
        r->cluster = r->backends[0].cluster;
    return rc;
}

static int load_route(loader_t *ld, yaml_node_t *n, tg_route_conf_t *r)
{
    const tg_keyset_t *ks = &tg_keys_route;
    yaml_node_t *v[TG_KEYSET_MAX];
    int rc = read_section(ld, n, "route", ks, r, v);
    if (rc < 0 && n->type != YAML_MAPPING_NODE)
        return -1;
    yaml_node_t *name = val_of(ks, v, "name"), *lis = val_of(ks, v, "listeners"), *match = val_of(ks, v, "match"),
                *cluster = val_of(ks, v, "cluster"), *backends = val_of(ks, v, "clusters"),
                *reqh = val_of(ks, v, "request_headers"), *resh = val_of(ks, v, "response_headers"),
                *filters = val_of(ks, v, "filters");
    if (require(ld, n, name, "name", "route") < 0 || check_name(ld, name, "route name", &r->name) < 0)
        rc = -1;
    if (lis) {
        char **names = NULL;
        size_t cnt = 0;
        if (get_str_list(ld, lis, "listeners", &names, &cnt) < 0) {
            rc = -1;
        } else {
            r->listeners = calloc(cnt ? cnt : 1, sizeof(*r->listeners));
            r->n_listeners = cnt;
            for (size_t i = 0; i < cnt; i++) {
                long idx = tg_config_find_listener(ld->cfg, names[i]);
                if (idx < 0) {
                    err_at(ld, node_at(ld, lis->data.sequence.items.start[i]),
                           "route '%s': unknown listener '%s'", r->name ? r->name : "?", names[i]);
                    rc = -1;
                } else if (r->listeners) {
                    r->listeners[i] = (size_t)idx;
                }
            }
        }
        for (size_t i = 0; i < cnt; i++)
            free(names[i]);
        free(names);
    }
    if (match && load_match(ld, match, &r->match) < 0)
        rc = -1;
    if (cluster && backends) {
        err_at(ld, backends, "route '%s': give cluster or clusters, not both", r->name ? r->name : "?");
        rc = -1;
    } else if (backends) {
        if (load_backends(ld, backends, r) < 0)
            rc = -1;
    } else if (require(ld, n, cluster, "cluster", "route") < 0) {
        rc = -1;
    } else {
        char *c = get_str(ld, cluster, "cluster");
        long idx = c ? tg_config_find_cluster(ld->cfg, c) : -1;
        if (c && idx < 0)
            err_at(ld, cluster, "route '%s': unknown cluster '%s'", r->name ? r->name : "?", c);
        if (idx < 0)
            rc = -1;
        else
            r->cluster = (size_t)idx;
        free(c);
    }
    if (reqh && load_header_rules(ld, reqh, "request_headers", &r->request_headers) < 0)
        rc = -1;
    if (resh && load_header_rules(ld, resh, "response_headers", &r->response_headers) < 0)
        rc = -1;
    ld->route = r->name;
    if (filters && load_filters(ld, filters, "route filters", &r->filters) < 0)
        rc = -1;
    ld->route = NULL;
    return rc;
}

/* ---- top level ---- */

static int load_limits(loader_t *ld, yaml_node_t *n, tg_limits_t *l)
{
    yaml_node_t *v[TG_KEYSET_MAX];
    return read_section(ld, n, "limits", &tg_keys_limits, l, v);
}

/* Allocates *arr for a sequence node and loads each item; checks names unique. */
typedef struct named {
    const char *name;
    size_t at;
} named_t;

static int named_cmp(const void *a, const void *b)
{
    const named_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->at > y->at) - (x->at < y->at);
}

/* Each name of a list once: every later holder of a name is an error at
 * its own item. Sorted, so 100,000 routes cost n log n, not n^2. -1: out
 * of memory. */
static int check_unique_names(loader_t *ld, yaml_node_t *seq, const char **names, size_t n, const char *what)
{
    named_t *v = malloc((n ? n : 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (names[i] != NULL)
            v[k++] = (named_t){ names[i], i };
    qsort(v, k, sizeof(*v), named_cmp);
    for (size_t i = 1; i < k; i++)
        if (strcmp(v[i].name, v[i - 1].name) == 0)
            err_at(ld, node_at(ld, seq->data.sequence.items.start[v[i].at]), "duplicate %s name '%s'", what,
                   v[i].name);
    free(v);
    return 0;
}

#define LOAD_LIST(ld, seqnode, what, arr, count, loadfn)                                     \
    do {                                                                                     \
        if (expect_type(ld, seqnode, YAML_SEQUENCE_NODE, what) < 0)                          \
            break;                                                                           \
        size_t len_ = seq_len(seqnode);                                                      \
        (arr) = calloc(len_ ? len_ : 1, sizeof(*(arr)));                                     \
        if ((arr) == NULL) {                                                                 \
            ld->failed = 1;                                                                  \
            break;                                                                           \
        }                                                                                    \
        (count) = len_;                                                                      \
        const char **names_ = calloc(len_ ? len_ : 1, sizeof(*names_));                     \
        for (size_t i_ = 0; i_ < len_; i_++) {                                               \
            yaml_node_t *it_ = node_at(ld, (seqnode)->data.sequence.items.start[i_]);        \
            if (loadfn(ld, it_, &(arr)[i_]) < 0)                                             \
                ld->failed = 1;                                                              \
            if (names_ != NULL)                                                              \
                names_[i_] = (arr)[i_].name;                                                 \
        }                                                                                    \
        if (names_ == NULL || check_unique_names(ld, (seqnode), names_, len_, (what)) < 0)   \
            ld->failed = 1;                                                                  \
        free(names_);                                                                        \
    } while (0)

/* Reads a whole small file (a secret); NULL with an error at n. */
static char *read_secret_file(loader_t *ld, yaml_node_t *n, const char *what, const char *path)
{
    char full[4096];
    if (path[0] != '/' && ld->file != NULL && strrchr(ld->file, '/') != NULL)
        snprintf(full, sizeof(full), "%.*s/%s", (int)(strrchr(ld->file, '/') - ld->file), ld->file, path);
    else
        snprintf(full, sizeof(full), "%s", path);
    FILE *f = fopen(full, "r");
    if (f == NULL) {
        err_at(ld, n, "%s: cannot read '%s': %s", what, full, strerror(errno));
        return NULL;
    }
    char buf[1024];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    buf[len] = '\0';
    char *s = len ? strdup(buf) : NULL;
    memset(buf, 0, sizeof(buf));
    if (len == 0)
        err_at(ld, n, "%s: '%s' is empty", what, full);
    return s;
}

static void load_admin(loader_t *ld, yaml_node_t *n, tg_admin_conf_t *a)
{
    const tg_keyset_t *ks = &tg_keys_admin;
    yaml_node_t *v[TG_KEYSET_MAX];
    read_section(ld, n, "admin", ks, a, v);
    if (n->type != YAML_MAPPING_NODE)
        return;
    yaml_node_t *listen = val_of(ks, v, "listen"), *token = val_of(ks, v, "token"),
                *token_file = val_of(ks, v, "token_file"), *hosts = val_of(ks, v, "allowed_hosts");
    a->listen = listen ? get_str(ld, listen, "admin listen") : strdup(TG_DEFAULT_ADMIN_LISTEN);
    if (a->listen == NULL)
        return;
    char host[256];
    if (tg_parse_hostport(a->listen, host, sizeof(host), &a->port) < 0)
        err_at(ld, listen, "admin listen: '%s' is not HOST:PORT", a->listen);
    else
        a->host = strdup(host);
    if (token && token_file)
        err_at(ld, token_file, "admin: give token or token_file, not both");
    else if (token && (a->token = get_secret(ld, token, "admin token")) != NULL && strlen(a->token) < 16)
        err_at(ld, token, "admin token: use at least 16 characters");
    else if (token_file) {
        char *path = get_str(ld, token_file, "admin token_file");
        if (path != NULL && (a->token = read_secret_file(ld, token_file, "admin token_file", path)) != NULL &&
            strlen(a->token) < 16)
            err_at(ld, token_file, "admin token_file: use at least 16 characters");
        free(path);
    }
    if (hosts)
        get_str_list(ld, hosts, "allowed_hosts", &a->allowed_hosts, &a->n_allowed_hosts);
}

/* One "host:port" node address into e. */
static int load_node_address(loader_t *ld, yaml_node_t *n, const char *what, tg_endpoint_conf_t *e)
{
    char host[256];
    if ((e->address = get_str(ld, n, what)) == NULL)
        return -1;
    if (tg_parse_hostport(e->address, host, sizeof(host), &e->port) < 0 || e->port == 0) {
        err_at(ld, n, "%s: '%s' is not HOST:PORT", what, e->address);
        return -1;
    }
    return (e->host = strdup(host)) ? 0 : -1;
}

/* A secret given inline (or as ${VAR}) or read from a file. */
static char *load_secret_pair(loader_t *ld, yaml_node_t *inl, yaml_node_t *file, const char *what)
{
    char file_what[64];
    snprintf(file_what, sizeof(file_what), "%s_file", what);
    if (inl && file) {
        err_at(ld, file, "redis: give %s or %s, not both", what, file_what);
        return NULL;
    }
    if (inl)
        return get_secret(ld, inl, what);
    char *path = file ? get_str(ld, file, file_what) : NULL;
    char *v = path ? read_secret_file(ld, file, file_what, path) : NULL;
    free(path);
    return v;
}

static void load_redis(loader_t *ld, yaml_node_t *n, tg_redis_conf_t *r)
{
    const tg_keyset_t *ks = &tg_keys_redis;
    yaml_node_t *v[TG_KEYSET_MAX];
    if (read_section(ld, n, "redis", ks, r, v) < 0 && n->type != YAML_MAPPING_NODE)
        return;
    yaml_node_t *addr = val_of(ks, v, "address"), *cluster = val_of(ks, v, "cluster"), *user = val_of(ks, v, "username"),
                *userf = val_of(ks, v, "username_file"), *pass = val_of(ks, v, "password"),
                *passf = val_of(ks, v, "password_file"), *tls = val_of(ks, v, "tls"), *prefix = val_of(ks, v, "key_prefix");
    r->enabled = 1;
    r->where = where_of(ld, n);
    if ((addr == NULL) == (cluster == NULL)) {
        err_at(ld, n, "redis: give address (one Redis) or cluster (seed addresses of a Redis Cluster)");
    } else if (addr) {
        if ((r->nodes = calloc(1, sizeof(*r->nodes))) != NULL) {
            r->n_nodes = 1;
            load_node_address(ld, addr, "redis address", &r->nodes[0]);
        }
    } else if (expect_type(ld, cluster, YAML_SEQUENCE_NODE, "redis cluster") == 0) {
        size_t len = seq_len(cluster);
        r->cluster = 1;
        if (len == 0 || len > 64)
            err_at(ld, cluster, "redis cluster: give 1 to 64 seed addresses");
        else if ((r->nodes = calloc(len, sizeof(*r->nodes))) != NULL) {
            r->n_nodes = len;
            for (size_t i = 0; i < len; i++)
                load_node_address(ld, node_at(ld, cluster->data.sequence.items.start[i]), "redis cluster seed",
                                  &r->nodes[i]);
        }
    }
    if (user || userf)
        r->username = load_secret_pair(ld, user, userf, "username");
    if (pass || passf)
        r->password = load_secret_pair(ld, pass, passf, "password");
    if (r->username != NULL && r->password == NULL)
        err_at(ld, n, "redis: a username needs a password (AUTH username password)");
    if (tls)
        load_client_tls(ld, tls, "redis tls", &r->tls);
    r->key_prefix = prefix ? get_str(ld, prefix, "redis key_prefix") : strdup(TG_DEFAULT_REDIS_KEY_PREFIX);
    if (r->key_prefix != NULL && (strlen(r->key_prefix) > 128 || strchr(r->key_prefix, '{') ||
                                  strchr(r->key_prefix, '}')))
        err_at(ld, prefix, "redis key_prefix: at most 128 bytes, without { or } (they would change the hash slot)");
}

static void load_paths(loader_t *ld, yaml_node_t *n, tg_path_conf_t *p)
{
    yaml_node_t *v[TG_KEYSET_MAX];
    read_section(ld, n, "path_normalization", &tg_keys_paths, p, v);
}

static void load_tracing(loader_t *ld, yaml_node_t *n, tg_tracing_conf_t *t)
{
    yaml_node_t *v[TG_KEYSET_MAX], *o[TG_KEYSET_MAX];
    const tg_keyset_t *ks = &tg_keys_tracing;
    if (take_keys(ld, n, "tracing", ks, v) < 0 && n->type != YAML_MAPPING_NODE)
        return;
    t->enabled = 1;
    t->sample_ratio = 1.0;
    tg_keyset_defaults(&tg_keys_otlp, t);
    yaml_node_t *ratio = val_of(ks, v, "sample_ratio"), *name = val_of(ks, v, "service_name"),
                *otlp = val_of(ks, v, "otlp");
    if (ratio != NULL) {
        char *s = get_str(ld, ratio, "sample_ratio"), *end = NULL;
        double r = s ? strtod(s, &end) : -1;
        if (s != NULL && (end == s || *end != '\0' || !(r >= 0 && r <= 1)))
            err_at(ld, ratio, "sample_ratio: '%s' is not a number from 0 to 1", s);
        else if (s != NULL)
            t->sample_ratio = r;
        free(s);
    }
    t->service_name = name ? get_str(ld, name, "service_name") : strdup("tollgate");
    if (otlp == NULL)
        return;
    read_section(ld, otlp, "otlp", &tg_keys_otlp, t, o);
    yaml_node_t *endpoint = val_of(&tg_keys_otlp, o, "endpoint");
    if (require(ld, otlp, endpoint, "endpoint", "otlp") < 0 || t->otlp_endpoint == NULL)
        return;
    char host[256];
    const char *rest = strncmp(t->otlp_endpoint, "http://", 7) == 0 ? t->otlp_endpoint + 7 : NULL;
    size_t hl = rest ? strcspn(rest, "/") : 0;
    char hostport[300];
    if (rest != NULL && hl < sizeof(hostport))
        snprintf(hostport, sizeof(hostport), "%.*s", (int)hl, rest);
    if (rest == NULL || hl == 0 || hl >= sizeof(hostport) ||
        tg_parse_hostport(hostport, host, sizeof(host), &t->otlp_port) < 0 || t->otlp_port == 0) {
        err_at(ld, endpoint, "otlp endpoint: '%s' is not http://HOST:PORT/PATH", t->otlp_endpoint);
    } else {
        t->otlp_host = strdup(host);
        t->otlp_path = strdup(rest[hl] ? rest + hl : "/v1/traces");
    }
    uint32_t q = 16; /* a power of two */
    while (q < t->queue_size)
        q <<= 1;
    t->queue_size = q;
}

/* The clusters filters' URLs asked for go after the file's (routes
 * refer to clusters by index: theirs stay). */
static void add_origins(loader_t *ld)
{
    tg_config_t *c = ld->cfg;
    if (ld->n_origins == 0)
        return;
    tg_cluster_conf_t *all = realloc(c->clusters, (c->n_clusters + ld->n_origins) * sizeof(*all));
    if (all == NULL) {
        ld->failed = 1;
        return; /* the origins are freed with the loader */
    }
    memcpy(all + c->n_clusters, ld->origins, ld->n_origins * sizeof(*all));
    c->clusters = all;
    c->n_clusters += ld->n_origins;
    free(ld->origins);
    ld->origins = NULL;
    ld->n_origins = 0;
}

static void load_root(loader_t *ld, yaml_node_t *root)
{
    const tg_keyset_t *ks = &tg_keys_top;
    yaml_node_t *v[TG_KEYSET_MAX];
    tg_config_t *c = ld->cfg;
    if (take_keys(ld, root, "the top level", ks, v) < 0 && root->type != YAML_MAPPING_NODE)
        return;
    read_fields(ld, ks, v, c);
    yaml_node_t *workers = val_of(ks, v, "workers"), *listeners = val_of(ks, v, "listeners"),
                *clusters = val_of(ks, v, "clusters"), *routes = val_of(ks, v, "routes");
    if (workers) {
        char *w = get_str(ld, workers, "workers");
        if (w != NULL && strcmp(w, "auto") == 0) {
            c->workers = 0;
        } else if (w != NULL) {
            uint64_t x;
            if (get_uint(ld, workers, "workers", 1, 256, &x) == 0)
                c->workers = (unsigned)x;
        }
        free(w);
    }
    yaml_node_t *n;
    if ((n = val_of(ks, v, "trusted_proxies")) != NULL)
        load_cidrs(ld, n, "trusted_proxies", &c->trusted_proxies, &c->n_trusted_proxies);
    if ((n = val_of(ks, v, "path_normalization")) != NULL)
        load_paths(ld, n, &c->paths);
    if ((n = val_of(ks, v, "limits")) != NULL)
        load_limits(ld, n, &c->limits);
    if ((n = val_of(ks, v, "admin")) != NULL)
        load_admin(ld, n, &c->admin);
    if ((n = val_of(ks, v, "tracing")) != NULL)
        load_tracing(ld, n, &c->tracing);
    load_dns(ld, val_of(ks, v, "dns"), &c->dns); /* before the clusters: theirs start from it */
    if ((n = val_of(ks, v, "redis")) != NULL) /* before the filters: store: redis needs it */
        load_redis(ld, n, &c->redis);
    if ((n = val_of(ks, v, "filters")) != NULL)
        load_filters(ld, n, "filters", &c->filters);
    if (require(ld, root, listeners, "listeners", "config") == 0) {
        LOAD_LIST(ld, listeners, "listener", c->listeners, c->n_listeners, load_listener);
        if (c->n_listeners == 0 && listeners->type == YAML_SEQUENCE_NODE)
            err_at(ld, listeners, "listeners: at least one listener is required");
    }
    /* clusters before routes: routes refer to them by name */
    if (clusters)
        LOAD_LIST(ld, clusters, "cluster", c->clusters, c->n_clusters, load_cluster);
    if (routes)
        LOAD_LIST(ld, routes, "route", c->routes, c->n_routes, load_route);
    check_cluster_refs(ld);
    add_origins(ld);
}

/* ---- the document as loaded, for /config ---- */


/* Every scalar as a JSON string, ${VAR}s expanded; a node read as a
 * secret (and everything under it) as "<redacted>". */
static void render(loader_t *ld, FILE *f, yaml_node_t *n, int depth)
{
    if (n == NULL || depth > 64) {
        fputs("null", f);
        return;
    }
    if (ld->secret[n - ld->y.doc.nodes.start]) {
        fputs("\"<redacted>\"", f);
        return;
    }
    switch (n->type) {
    case YAML_SCALAR_NODE: {
        char *var = NULL, *s = tg_expand_env((const char *)n->data.scalar.value, &var);
        tg_config_json_str(f, s != NULL ? s : (const char *)n->data.scalar.value);
        free(s);
        free(var);
        return;
    }
    case YAML_SEQUENCE_NODE:
        fputc('[', f);
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            fputs(it == n->data.sequence.items.start ? "" : ", ", f);
            render(ld, f, node_at(ld, *it), depth + 1);
        }
        fputc(']', f);
        return;
    case YAML_MAPPING_NODE:
        fputc('{', f);
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node_at(ld, p->key);
            fputs(p == n->data.mapping.pairs.start ? "" : ", ", f);
            tg_config_json_str(f, k != NULL && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?");
            fputs(": ", f);
            render(ld, f, node_at(ld, p->value), depth + 1);
        }
        fputc('}', f);
        return;
    default:
        fputs("null", f);
    }
}

static char *render_document(loader_t *ld)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        return NULL;
    __fsetlocking(f, FSETLOCKING_BYCALLER); /* one thread writes it: no lock per character */
    render(ld, f, yaml_document_get_root_node(&ld->y.doc), 0);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The admin section alone, the rest of the file unchecked: tollgate ctl
 * must reach a gateway even when the file was edited into a state the
 * gateway refuses (the reload then says what is wrong). */
static void load_admin_only(loader_t *ld, yaml_node_t *root)
{
    if (root->type != YAML_MAPPING_NODE)
        return;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(ld, p->key), *v = node_at(ld, p->value);
        if (k != NULL && v != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, "admin") == 0)
            load_admin(ld, v, &ld->cfg->admin);
    }
}

static tg_config_t *load_parser(yaml_parser_t *p, const char *name, const tg_filter_registry_t *filters,
                                int admin_only, tg_errors_t *errs, tg_config_t **partial)
{
    loader_t ld = { .file = name, .errs = errs, .filters = filters };
    if (!tg_yaml_load(p, &ld.y)) {
        tg_errors_add(errs, "%s:%zu:%zu: YAML syntax error: %s%s%s", name, ld.y.problem_mark.line + 1,
                      ld.y.problem_mark.column + 1, ld.y.problem, ld.y.context ? " " : "",
                      ld.y.context ? ld.y.context : "");
        tg_yaml_doc_free(&ld.y);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&ld.y.doc);
    if (root == NULL) {
        tg_errors_add(errs, "%s:1:1: the file is empty", name);
        tg_yaml_doc_free(&ld.y);
        return NULL;
    }
    ld.cfg = calloc(1, sizeof(*ld.cfg));
    ld.secret = calloc((size_t)(ld.y.doc.nodes.top - ld.y.doc.nodes.start) + 1, 1);
    if (ld.cfg == NULL || ld.secret == NULL) {
        free(ld.cfg);
        free(ld.secret);
        tg_yaml_doc_free(&ld.y);
        return NULL;
    }
    atomic_init(&ld.cfg->refs, 1);
    ld.cfg->filter_registry = filters;
    ld.cfg->path = strdup(name);
    tg_keyset_defaults(&tg_keys_paths, &ld.cfg->paths);
    tg_keyset_defaults(&tg_keys_limits, &ld.cfg->limits);
    if (admin_only)
        load_admin_only(&ld, root);
    else
        load_root(&ld, root);
    if (!admin_only && !ld.failed && errs->n == 0 && (ld.cfg->document = render_document(&ld)) == NULL)
        ld.failed = 1;
    free(ld.secret);
    tg_yaml_doc_free(&ld.y);
    if (ld.failed || errs->n > 0) {
        if (errs->n == 0)
            tg_errors_add(errs, "%s: out of memory", name);
        if (partial != NULL)
            *partial = ld.cfg;
        else
            tg_config_unref(ld.cfg);
        return NULL;
    }
    return ld.cfg;
}

tg_config_t *tg_config_load_string(const char *name, const char *yaml, size_t len, const tg_filter_registry_t *filters,
                                   tg_errors_t *errs)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        tg_errors_add(errs, "%s: cannot initialise the YAML parser", name);
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    tg_config_t *c = load_parser(&p, name, filters, 0, errs, NULL);
    yaml_parser_delete(&p);
    return c;
}

static tg_config_t *load_file(const char *path, const tg_filter_registry_t *filters, int admin_only,
                              tg_errors_t *errs, tg_config_t **partial)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        tg_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        tg_errors_add(errs, "%s: cannot initialise the YAML parser", path);
        return NULL;
    }
    yaml_parser_set_input_file(&p, f);
    tg_config_t *c = load_parser(&p, path, filters, admin_only, errs, partial);
    yaml_parser_delete(&p);
    fclose(f);
    return c;
}

tg_config_t *tg_config_load(const char *path, const tg_filter_registry_t *filters, tg_errors_t *errs)
{
    return load_file(path, filters, 0, errs, NULL);
}

tg_config_t *tg_config_load_partial(const char *path, const tg_filter_registry_t *filters, tg_errors_t *errs,
                                    tg_config_t **partial)
{
    return load_file(path, filters, 0, errs, partial);
}

tg_config_t *tg_config_load_admin(const char *path, tg_errors_t *errs)
{
    return load_file(path, NULL, 1, errs, NULL);
}
