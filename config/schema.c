/*
 * config/schema.c — see schema.h. Writes the key tables as a JSON Schema
 * (draft 2020-12). Every scalar may also be a ${VAR} reference (expanded
 * at load), so typed keys accept an env reference beside their own form;
 * booleans also take yes/no/on/off as the loader does.
 */
#include "config/schema.h"

#include "config/config.h"

#include <stdlib.h>
#include <string.h>

typedef struct out {
    FILE *f;
    const tg_keyset_t *seen[128]; /* keysets already written under $defs */
    size_t n_seen;
} out_t;

#define jstr tg_config_json_str

static void ref(FILE *f, const char *def)
{
    fputs("{\"$ref\": \"#/$defs/", f);
    fputs(def, f);
    fputs("\"}", f);
}

static int numeric(const char *s)
{
    char *end;
    if (*s == '\0')
        return 0;
    strtod(s, &end);
    return *end == '\0';
}

/* "`30s`" or "`4096` (words)": the literal; NULL if the default is prose. */
static size_t literal_default(const char *dflt, const char **start)
{
    if (dflt == NULL || dflt[0] != '`')
        return 0;
    const char *e = strchr(dflt + 1, '`'), *comma = strchr(dflt + 1, ',');
    if (e == NULL || e == dflt + 1 || (e[1] != '\0' && e[1] != ' ') || dflt[1] == '[' || dflt[1] == '{' ||
        (comma != NULL && comma < e))
        return 0;
    *start = dflt + 1;
    return (size_t)(e - dflt - 1);
}

static void write_default(FILE *f, const tg_key_t *k)
{
    const char *v;
    size_t len = literal_default(k->dflt, &v);
    if (len == 0 || len > 127)
        return;
    char buf[128];
    memcpy(buf, v, len);
    buf[len] = '\0';
    fputs(", \"default\": ", f);
    if ((k->kind == TG_KEY_INT || k->kind == TG_KEY_SIZE) && strspn(buf, "0123456789") == len)
        fputs(buf, f);
    else if (k->kind == TG_KEY_BOOL && (strcmp(buf, "true") == 0 || strcmp(buf, "false") == 0))
        fputs(buf, f);
    else if (strcmp(buf, "\"\"") == 0) /* `""`: the empty string, as YAML reads it */
        fputs("\"\"", f);
    else
        jstr(f, buf);
}

/* Notes a keyset to write under $defs (once). */
static void remember(out_t *o, const tg_keyset_t *ks)
{
    size_t i;
    for (i = 0; i < o->n_seen && o->seen[i] != ks; i++)
        ;
    if (i == o->n_seen && o->n_seen < sizeof(o->seen) / sizeof(o->seen[0]))
        o->seen[o->n_seen++] = ks;
}

static void keyset_ref(out_t *o, const tg_keyset_t *ks)
{
    remember(o, ks);
    ref(o->f, ks->id);
}

/* The choices of an ENUM (or an INT's words) as JSON values; a numeric
 * word ("1.2") also as the number YAML makes of it. */
static void choices(FILE *f, const char *list)
{
    fputs("{\"enum\": [", f);
    const char *p = list;
    int first = 1;
    while (*p) {
        size_t n = strcspn(p, "|");
        char w[64];
        snprintf(w, sizeof(w), "%.*s", (int)n, p);
        fputs(first ? "" : ", ", f);
        jstr(f, w);
        if (numeric(w))
            fprintf(f, ", %s", w);
        first = 0;
        p += n + (p[n] == '|');
    }
    fputs("]}", f);
}

static void value_schema(out_t *o, const tg_key_t *k)
{
    FILE *f = o->f;
    switch (k->kind) {
    case TG_KEY_STRING:
        ref(f, "scalar");
        break;
    case TG_KEY_INT:
        fputs("{\"anyOf\": [{\"type\": \"integer\"", f);
        if (k->min || k->max)
            fprintf(f, ", \"minimum\": %lld, \"maximum\": %lld", (long long)k->min, (long long)k->max);
        fputs("}, ", f);
        if (k->choices) {
            choices(f, k->choices);
            fputs(", ", f);
        }
        if (k->flags & TG_KEY_OR_STRING)
            fputs("{\"type\": \"string\"}, ", f);
        ref(f, "env");
        fputs("]}", f);
        break;
    case TG_KEY_BOOL:
        ref(f, "bool");
        break;
    case TG_KEY_DURATION:
        ref(f, "duration");
        break;
    case TG_KEY_SIZE:
        ref(f, "size");
        break;
    case TG_KEY_ADDRESS:
        ref(f, "address");
        break;
    case TG_KEY_ENUM:
        fputs("{\"anyOf\": [", f);
        choices(f, k->choices);
        fputs(", ", f);
        ref(f, "env");
        fputs("]}", f);
        break;
    case TG_KEY_MAP:
        keyset_ref(o, k->sub);
        break;
    case TG_KEY_LIST:
        fputs("{\"type\": \"array\", \"items\": ", f);
        if (k->flags & TG_KEY_ITEMS_OR_STRING) {
            fputs("{\"anyOf\": [", f);
            keyset_ref(o, k->sub);
            fputs(", ", f);
            ref(f, "scalar");
            fputs("]}", f);
        } else {
            keyset_ref(o, k->sub);
        }
        fputs("}", f);
        break;
    case TG_KEY_STRINGS:
        fputs("{\"type\": \"array\", \"items\": ", f);
        ref(f, "scalar");
        fputs("}", f);
        break;
    case TG_KEY_DICT:
        fputs("{\"type\": \"object\", \"additionalProperties\": ", f);
        ref(f, "scalar");
        fputs("}", f);
        break;
    case TG_KEY_FILTERS:
        ref(f, "filters");
        break;
    }
}

static void key_schema(out_t *o, const tg_key_t *k)
{
    FILE *f = o->f;
    jstr(f, k->name);
    fputs(": {\"allOf\": [", f);
    if (k->flags & (TG_KEY_OR_LIST | TG_KEY_OR_MAP)) {
        fputs("{\"anyOf\": [", f);
        value_schema(o, k);
        fputs(", ", f);
        if (k->flags & TG_KEY_OR_LIST) {
            fputs("{\"type\": \"array\", \"items\": ", f);
            value_schema(o, k);
            fputs("}", f);
        } else {
            keyset_ref(o, k->sub);
        }
        fputs("]}", f);
    } else {
        value_schema(o, k);
    }
    fputs("], \"description\": ", f);
    jstr(f, k->doc);
    fputs(", \"x-tollgate-type\": ", f);
    jstr(f, k->type);
    fputs(", \"x-tollgate-default\": ", f);
    jstr(f, k->dflt);
    write_default(f, k);
    fputs("}", f);
}

static void keyset_schema(out_t *o, const tg_keyset_t *ks)
{
    FILE *f = o->f;
    jstr(f, ks->id);
    fputs(": {\"type\": \"object\", \"title\": ", f);
    jstr(f, ks->title);
    fputs(", \"additionalProperties\": false, \"properties\": {", f);
    for (size_t i = 0; i < ks->n; i++) {
        fputs(i ? ", " : "", f);
        key_schema(o, &ks->keys[i]);
    }
    fputs("}", f);
    int req = 0;
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].flags & TG_KEY_REQUIRED) {
            fputs(req++ ? ", " : ", \"required\": [", f);
            jstr(f, ks->keys[i].name);
        }
    fputs(req ? "]}" : "}", f);
}

static const char *const common_defs =
    "\"env\": {\"type\": \"string\", \"pattern\": \"\\\\$\\\\{[A-Za-z_][A-Za-z0-9_]*\\\\}\", "
    "\"description\": \"a ${VAR} reference, replaced by the environment variable's value when the config is "
    "loaded\"}, "
    "\"scalar\": {\"type\": [\"string\", \"number\", \"boolean\"]}, "
    "\"bool\": {\"anyOf\": [{\"type\": \"boolean\"}, {\"enum\": [\"true\", \"false\", \"yes\", \"no\", \"on\", "
    "\"off\"]}, {\"$ref\": \"#/$defs/env\"}]}, "
    "\"duration\": {\"description\": \"an integer and a unit: ms, s, m or h (250ms, 5s, 1m, 1h); a bare 0\", "
    "\"anyOf\": [{\"type\": \"string\", \"pattern\": \"^(0|[0-9]+(ms|s|m|h))$\"}, {\"const\": 0}, "
    "{\"$ref\": \"#/$defs/env\"}]}, "
    "\"size\": {\"description\": \"bytes: an integer, optionally with B, KiB, MiB, GiB (powers of 1024) or KB, MB, "
    "GB (powers of 1000)\", \"anyOf\": [{\"type\": \"integer\", \"minimum\": 0}, {\"type\": \"string\", "
    "\"pattern\": \"^[0-9]+(B|KiB|MiB|GiB|KB|MB|GB)?$\"}, {\"$ref\": \"#/$defs/env\"}]}, "
    "\"address\": {\"description\": \"HOST:PORT, an IPv6 address as [ADDR]:PORT\", \"anyOf\": [{\"type\": "
    "\"string\", \"pattern\": \"^(\\\\[[0-9A-Fa-f:.]+\\\\]|[^\\\\s:\\\\[\\\\]]+):[0-9]{1,5}$\"}, "
    "{\"$ref\": \"#/$defs/env\"}]}";

int tg_schema_write_json(FILE *f, const tg_schema_filter_t *filters, size_t n)
{
    out_t o = { .f = f };
    fprintf(f, "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\", "
               "\"$id\": \"urn:tollgate:config\", \"title\": \"tollgate configuration\", "
               "\"description\": \"The YAML file tollgate -c reads (docs/configuration.md, tollgate.yaml(5)).\", "
               "\"$ref\": \"#/$defs/top\", \"$defs\": {%s", common_defs);
    /* the filter chain: a list of one-key mappings, the key naming the filter */
    fputs(", \"filters\": {\"type\": \"array\", \"description\": \"a filter chain: - NAME: {...}, run in order\", "
          "\"items\": {\"oneOf\": [",
          f);
    for (size_t i = 0; i < n; i++) {
        fputs(i ? ", " : "", f);
        fputs("{\"type\": \"object\", \"additionalProperties\": false, \"required\": [", f);
        jstr(f, filters[i].name);
        fputs("], \"properties\": {", f);
        jstr(f, filters[i].name);
        fputs(": {\"description\": ", f);
        jstr(f, filters[i].doc);
        fputs(", \"allOf\": [", f);
        if (filters[i].keys != NULL)
            keyset_ref(&o, filters[i].keys);
        else
            fputs("{\"type\": [\"object\", \"null\"], \"maxProperties\": 0}", f);
        fputs("]}}}", f);
    }
    fputs("]}}", f);
    /* every keyset reached from the top and the filters, each once */
    remember(&o, &tg_keys_top);
    for (size_t i = 0; i < o.n_seen; i++) {
        fputs(", ", f);
        keyset_schema(&o, o.seen[i]); /* may add to seen: the loop reaches those too */
    }
    fputs("}}\n", f);
    return ferror(f) ? -1 : 0;
}
