/*
 * filters/pbdesc.c — see pbdesc.h. Field numbers are descriptor.proto's
 * (google/protobuf/descriptor.proto) and google/api/http.proto's.
 */
#include "filters/pbdesc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/pb.h"

#define MAX_NESTING 32               /* messages declared inside messages */
#define HTTP_RULE_EXTENSION 72295728 /* google.api.http, on MethodOptions */

typedef struct builder {
    tg_pbd_pool_t *p;
    size_t cap_messages, cap_enums, cap_services;
    char *why;
    size_t why_cap;
    int failed;
} builder_t;

static void fail(builder_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(builder_t *b, const char *fmt, ...)
{
    if (b->failed++)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, b->why_cap, fmt, ap);
    va_end(ap);
}

static char *str_of(builder_t *b, const tg_pb_field_t *f)
{
    char *s = f->wire == TG_PB_LEN ? tg_arena_strndup(&b->p->arena, (const char *)f->data, f->len) : NULL;
    if (s == NULL || strlen(s) != f->len) {
        fail(b, "a name is not a string");
        return NULL;
    }
    return s;
}

/* "pkg" + "." + "Name" (no dot for an empty scope). */
static char *join(builder_t *b, const char *scope, const char *name)
{
    size_t sl = strlen(scope), nl = strlen(name);
    char *s = tg_arena_alloc(&b->p->arena, sl + nl + 2);
    if (s == NULL) {
        fail(b, "out of memory");
        return NULL;
    }
    if (sl)
        memcpy(s, scope, sl), s[sl++] = '.';
    memcpy(s + sl, name, nl + 1);
    return s;
}

static int push(builder_t *b, void ***v, size_t *n, size_t *cap, void *item)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        void **nv = realloc(*v, nc * sizeof(**v));
        if (nv == NULL) {
            fail(b, "out of memory");
            return -1;
        }
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = item;
    return 0;
}

/* lowerCamelCase as protoc makes json_name: underscores dropped, the
 * letter after one upper-cased. */
static char *camel(builder_t *b, const char *name)
{
    char *s = tg_arena_alloc(&b->p->arena, strlen(name) + 1), *o = s;
    if (s == NULL)
        return NULL;
    int up = 0;
    for (const char *c = name; *c; c++) {
        if (*c == '_') {
            up = 1;
            continue;
        }
        *o++ = up && *c >= 'a' && *c <= 'z' ? (char)(*c - 32) : *c;
        up = 0;
    }
    *o = '\0';
    return s;
}

static tg_wkt_t wkt_of(const char *full)
{
    static const struct { const char *name; tg_wkt_t wkt; } known[] = {
        { "google.protobuf.Timestamp", TG_WKT_TIMESTAMP }, { "google.protobuf.Duration", TG_WKT_DURATION },
        { "google.protobuf.FieldMask", TG_WKT_FIELD_MASK }, { "google.protobuf.Struct", TG_WKT_STRUCT },
        { "google.protobuf.Value", TG_WKT_VALUE },          { "google.protobuf.ListValue", TG_WKT_LIST_VALUE },
        { "google.protobuf.Any", TG_WKT_ANY },              { "google.protobuf.Empty", TG_WKT_EMPTY },
        { "google.protobuf.DoubleValue", TG_WKT_WRAPPER },  { "google.protobuf.FloatValue", TG_WKT_WRAPPER },
        { "google.protobuf.Int64Value", TG_WKT_WRAPPER },   { "google.protobuf.UInt64Value", TG_WKT_WRAPPER },
        { "google.protobuf.Int32Value", TG_WKT_WRAPPER },   { "google.protobuf.UInt32Value", TG_WKT_WRAPPER },
        { "google.protobuf.BoolValue", TG_WKT_WRAPPER },    { "google.protobuf.StringValue", TG_WKT_WRAPPER },
        { "google.protobuf.BytesValue", TG_WKT_WRAPPER },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(full, known[i].name) == 0)
            return known[i].wkt;
    return TG_WKT_NONE;
}

static void read_enum(builder_t *b, const uint8_t *d, size_t n, const char *scope)
{
    tg_pbd_enum_t *e = tg_arena_alloc(&b->p->arena, sizeof(*e));
    if (e == NULL) {
        fail(b, "out of memory");
        return;
    }
    memset(e, 0, sizeof(*e));
    size_t count = 0;
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0)
        count += f.num == 2 && f.wire == TG_PB_LEN;
    e->values = tg_arena_alloc(&b->p->arena, (count ? count : 1) * sizeof(*e->values));
    if (rc < 0 || e->values == NULL) {
        fail(b, "an enum is malformed");
        return;
    }
    r = tg_pb_reader(d, n);
    while (tg_pb_next(&r, &f) > 0) {
        if (f.num == 1) {
            const char *name = str_of(b, &f);
            e->full_name = name ? join(b, scope, name) : NULL;
        } else if (f.num == 2 && f.wire == TG_PB_LEN) {
            tg_pbd_enum_value_t *v = &e->values[e->n_values++];
            v->name = "";
            v->number = 0;
            tg_pb_reader_t vr = tg_pb_reader(f.data, f.len);
            tg_pb_field_t vf;
            while ((rc = tg_pb_next(&vr, &vf)) > 0) {
                if (vf.num == 1)
                    v->name = str_of(b, &vf);
                else if (vf.num == 2 && vf.wire == TG_PB_VARINT)
                    v->number = (int32_t)vf.v;
            }
            if (rc < 0 || v->name == NULL)
                fail(b, "an enum value is malformed");
        }
    }
    if (e->full_name == NULL) {
        fail(b, "an enum has no name");
        return;
    }
    e->null_value = strcmp(e->full_name, "google.protobuf.NullValue") == 0;
    push(b, (void ***)&b->p->enums, &b->p->n_enums, &b->cap_enums, e);
}

static void read_message(builder_t *b, const uint8_t *d, size_t n, const char *scope, int proto3, int depth);

/* One FieldDescriptorProto into f (its type resolved later). */
static void read_field(builder_t *b, const uint8_t *d, size_t n, tg_pbd_field_t *f, int proto3)
{
    memset(f, 0, sizeof(*f));
    f->oneof = -1;
    const char **type_name = &f->type_name;
    int label = 1, oneof = -1, p3optional = 0;
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t x;
    int rc;
    while ((rc = tg_pb_next(&r, &x)) > 0) {
        switch (x.num) {
        case 1: f->name = str_of(b, &x); break;
        case 3: f->number = x.wire == TG_PB_VARINT ? (uint32_t)x.v : 0; break;
        case 4: label = (int)x.v; break;
        case 5: f->type = (tg_pbt_t)x.v; break;
        case 6: *type_name = str_of(b, &x); break;
        case 9: oneof = x.wire == TG_PB_VARINT ? (int)x.v : -1; break;
        case 10: f->json_name = str_of(b, &x); break;
        case 17: p3optional = x.v != 0; break;
        default: break;
        }
    }
    if (rc < 0 || f->name == NULL || f->number == 0 || f->number > 536870911 || f->type < TG_PBT_DOUBLE ||
        f->type > TG_PBT_SINT64) {
        fail(b, "field '%s' is malformed", f->name ? f->name : "?");
        return;
    }
    if (f->json_name == NULL)
        f->json_name = camel(b, f->name);
    f->repeated = label == 3;
    f->oneof = p3optional ? -1 : oneof;
    f->in_oneof = oneof >= 0;
    f->presence = !f->repeated && (!proto3 || p3optional || oneof >= 0 || f->type == TG_PBT_MESSAGE ||
                                   f->type == TG_PBT_GROUP);
    if ((f->type == TG_PBT_MESSAGE || f->type == TG_PBT_GROUP || f->type == TG_PBT_ENUM) &&
        (*type_name == NULL || (*type_name)[0] != '.'))
        fail(b, "field '%s': its type must be named in full (.pkg.Type)", f->name);
}

static int by_number(const void *a, const void *b)
{
    const tg_pbd_field_t *x = a, *y = b;
    return x->number < y->number ? -1 : x->number > y->number;
}

/* A descriptor's name (field 1) and how many field-2 entries it has (its
 * fields, values or methods): the sizes of what it holds. 0, or -1 if it
 * is malformed or has no name. */
static int scan_named(builder_t *b, const uint8_t *d, size_t n, const char **name, size_t *count)
{
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    int rc;
    *name = NULL;
    *count = 0;
    while ((rc = tg_pb_next(&r, &f)) > 0) {
        *count += f.num == 2 && f.wire == TG_PB_LEN;
        if (f.num == 1)
            *name = str_of(b, &f);
    }
    return rc < 0 || *name == NULL ? -1 : 0;
}

static void read_message(builder_t *b, const uint8_t *d, size_t n, const char *scope, int proto3, int depth)
{
    if (depth > MAX_NESTING) {
        fail(b, "messages nested more than %d deep", MAX_NESTING);
        return;
    }
    tg_pbd_message_t *m = tg_arena_alloc(&b->p->arena, sizeof(*m));
    if (m == NULL) {
        fail(b, "out of memory");
        return;
    }
    memset(m, 0, sizeof(*m));
    size_t count;
    const char *name;
    if (scan_named(b, d, n, &name, &count) < 0) {
        fail(b, "a message is malformed");
        return;
    }
    m->full_name = join(b, scope, name);
    m->wkt = m->full_name ? wkt_of(m->full_name) : TG_WKT_NONE;
    m->fields = tg_arena_alloc(&b->p->arena, (count ? count : 1) * sizeof(*m->fields));
    if (m->full_name == NULL || m->fields == NULL) {
        fail(b, "out of memory");
        return;
    }
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    while (tg_pb_next(&r, &f) > 0 && !b->failed) {
        if (f.wire != TG_PB_LEN)
            continue;
        if (f.num == 2) {
            read_field(b, f.data, f.len, &m->fields[m->n_fields], proto3);
            m->n_fields++;
        } else if (f.num == 3) {
            read_message(b, f.data, f.len, m->full_name, proto3, depth + 1);
        } else if (f.num == 4) {
            read_enum(b, f.data, f.len, m->full_name);
        } else if (f.num == 7) { /* MessageOptions: map_entry = 7 */
            tg_pb_reader_t o = tg_pb_reader(f.data, f.len);
            tg_pb_field_t of;
            while (tg_pb_next(&o, &of) > 0)
                if (of.num == 7 && of.wire == TG_PB_VARINT)
                    m->map_entry = of.v != 0;
        } else if (f.num == 8) {
            m->n_oneofs++;
        }
    }
    if (m->n_fields > 1)
        qsort(m->fields, m->n_fields, sizeof(*m->fields), by_number);
    for (size_t i = 1; i < m->n_fields; i++)
        if (m->fields[i].number == m->fields[i - 1].number)
            fail(b, "%s: field number %u used twice", m->full_name, m->fields[i].number);
    push(b, (void ***)&b->p->messages, &b->p->n_messages, &b->cap_messages, m);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(**(const char *const *const *)a, **(const char *const *const *)b);
}

static void *find_named(void **v, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(*(const char *const *)v[mid], name);
        if (c == 0)
            return v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

tg_pbd_message_t *tg_pbd_message(const tg_pbd_pool_t *p, const char *full_name)
{
    return find_named((void **)p->messages, p->n_messages, full_name);
}

tg_pbd_enum_t *tg_pbd_enum(const tg_pbd_pool_t *p, const char *full_name)
{
    return find_named((void **)p->enums, p->n_enums, full_name);
}

/* Each field's type name to its message or enum. */
static void resolve(builder_t *b, tg_pbd_message_t *m)
{
    for (size_t i = 0; i < m->n_fields; i++) {
        tg_pbd_field_t *f = &m->fields[i];
        const char *tn = f->type_name;
        if (f->type == TG_PBT_MESSAGE || f->type == TG_PBT_GROUP) {
            if (tn == NULL || (f->message = tg_pbd_message(b->p, tn + 1)) == NULL)
                fail(b, "%s.%s: no message %s in the descriptors", m->full_name, f->name, tn ? tn : "?");
        } else if (f->type == TG_PBT_ENUM) {
            if (tn == NULL || (f->enumt = tg_pbd_enum(b->p, tn + 1)) == NULL)
                fail(b, "%s.%s: no enum %s in the descriptors", m->full_name, f->name, tn ? tn : "?");
        }
    }
}

/* HttpRule: get = 2, put = 3, post = 4, delete = 5, patch = 6, body = 7,
 * custom = 8 { kind = 1, path = 2 }, additional_bindings = 11,
 * response_body = 12. Appends it (and its additional bindings) to md. */
static void read_rule(builder_t *b, const uint8_t *d, size_t n, tg_pbd_method_t *md, size_t cap, int depth)
{
    static const char *const verbs[] = { NULL, NULL, "GET", "PUT", "POST", "DELETE", "PATCH" };
    if (md->n_rules >= cap)
        return;
    tg_pbd_http_rule_t *rule = &md->rules[md->n_rules];
    *rule = (tg_pbd_http_rule_t){ NULL, NULL, "", "" };
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0) {
        if (f.wire != TG_PB_LEN)
            continue;
        if (f.num >= 2 && f.num <= 6) {
            rule->verb = verbs[f.num];
            rule->path = str_of(b, &f);
        } else if (f.num == 7) {
            rule->body = str_of(b, &f);
        } else if (f.num == 12) {
            rule->response_body = str_of(b, &f);
        } else if (f.num == 8) {
            tg_pb_reader_t c = tg_pb_reader(f.data, f.len);
            tg_pb_field_t cf;
            while (tg_pb_next(&c, &cf) > 0) {
                if (cf.num == 1)
                    rule->verb = str_of(b, &cf);
                else if (cf.num == 2)
                    rule->path = str_of(b, &cf);
            }
        }
    }
    if (rc < 0 || rule->body == NULL || rule->response_body == NULL) {
        fail(b, "%s: a google.api.http rule is malformed", md->path);
        return;
    }
    if (rule->verb != NULL && rule->path != NULL)
        md->n_rules++;
    if (depth > 0)
        return; /* additional bindings have none of their own */
    r = tg_pb_reader(d, n);
    while (tg_pb_next(&r, &f) > 0)
        if (f.num == 11 && f.wire == TG_PB_LEN)
            read_rule(b, f.data, f.len, md, cap, depth + 1);
}

/* Counts a rule and its additional bindings (cap for read_rule). */
static size_t count_rules(const uint8_t *d, size_t n)
{
    size_t count = 1;
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    while (tg_pb_next(&r, &f) > 0)
        count += f.num == 11 && f.wire == TG_PB_LEN;
    return count;
}

typedef struct pending_method {
    tg_pbd_method_t *m;
    const char *in, *out;
} pending_method_t;

static void read_service(builder_t *b, const uint8_t *d, size_t n, const char *scope, pending_method_t ***pend,
                         size_t *n_pend, size_t *cap_pend)
{
    tg_pbd_service_t *s = tg_arena_alloc(&b->p->arena, sizeof(*s));
    size_t count;
    const char *name;
    if (s == NULL || scan_named(b, d, n, &name, &count) < 0) {
        fail(b, "a service is malformed");
        return;
    }
    int rc;
    s->full_name = join(b, scope, name);
    s->methods = tg_arena_alloc(&b->p->arena, (count ? count : 1) * sizeof(*s->methods));
    s->n_methods = 0;
    if (s->full_name == NULL || s->methods == NULL) {
        fail(b, "out of memory");
        return;
    }
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    while (tg_pb_next(&r, &f) > 0 && !b->failed) {
        if (f.num != 2 || f.wire != TG_PB_LEN)
            continue;
        tg_pbd_method_t *md = &s->methods[s->n_methods++];
        memset(md, 0, sizeof(*md));
        const char *in = NULL, *out = NULL;
        tg_pb_reader_t mr = tg_pb_reader(f.data, f.len);
        tg_pb_field_t mf;
        while ((rc = tg_pb_next(&mr, &mf)) > 0) {
            if (mf.num == 1)
                md->name = str_of(b, &mf);
            else if (mf.num == 2)
                in = str_of(b, &mf);
            else if (mf.num == 3)
                out = str_of(b, &mf);
            else if (mf.num == 5)
                md->client_streaming = mf.v != 0;
            else if (mf.num == 6)
                md->server_streaming = mf.v != 0;
        }
        if (rc < 0 || md->name == NULL || in == NULL || out == NULL || in[0] != '.' || out[0] != '.') {
            fail(b, "%s: a method is malformed", s->full_name);
            return;
        }
        char *path = tg_arena_alloc(&b->p->arena, strlen(s->full_name) + strlen(md->name) + 3);
        if (path == NULL) {
            fail(b, "out of memory");
            return;
        }
        sprintf(path, "/%s/%s", s->full_name, md->name);
        md->path = path;
        mr = tg_pb_reader(f.data, f.len);
        while (tg_pb_next(&mr, &mf) > 0) { /* options = 4: MethodOptions, google.api.http */
            if (mf.num != 4 || mf.wire != TG_PB_LEN)
                continue;
            tg_pb_reader_t o = tg_pb_reader(mf.data, mf.len);
            tg_pb_field_t of;
            while (tg_pb_next(&o, &of) > 0) {
                if (of.num != HTTP_RULE_EXTENSION || of.wire != TG_PB_LEN)
                    continue;
                size_t cap = count_rules(of.data, of.len);
                if ((md->rules = tg_arena_alloc(&b->p->arena, cap * sizeof(*md->rules))) == NULL) {
                    fail(b, "out of memory");
                    return;
                }
                read_rule(b, of.data, of.len, md, cap, 0);
            }
        }
        pending_method_t pm = { md, in, out };
        pending_method_t *slot = tg_arena_alloc(&b->p->arena, sizeof(pm));
        if (slot == NULL || push(b, (void ***)pend, n_pend, cap_pend, slot) < 0)
            return;
        *slot = pm;
    }
    push(b, (void ***)&b->p->services, &b->p->n_services, &b->cap_services, s);
}

/* One FileDescriptorProto: package = 2, message_type = 4, enum_type = 5,
 * service = 6, syntax = 12. */
static void read_file(builder_t *b, const uint8_t *d, size_t n, pending_method_t ***pend, size_t *n_pend,
                      size_t *cap_pend)
{
    const char *package = "";
    int proto3 = 0;
    tg_pb_reader_t r = tg_pb_reader(d, n);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0) {
        if (f.num == 2)
            package = str_of(b, &f);
        else if (f.num == 12 && f.wire == TG_PB_LEN)
            proto3 = f.len == 6 && memcmp(f.data, "proto3", 6) == 0;
    }
    if (rc < 0 || package == NULL) {
        fail(b, "a file descriptor is malformed");
        return;
    }
    r = tg_pb_reader(d, n);
    while (tg_pb_next(&r, &f) > 0 && !b->failed) {
        if (f.wire != TG_PB_LEN)
            continue;
        if (f.num == 4)
            read_message(b, f.data, f.len, package, proto3, 0);
        else if (f.num == 5)
            read_enum(b, f.data, f.len, package);
        else if (f.num == 6)
            read_service(b, f.data, f.len, package, pend, n_pend, cap_pend);
    }
}

void tg_pbd_pool_free(tg_pbd_pool_t *p)
{
    if (p == NULL)
        return;
    free(p->messages);
    free(p->enums);
    free(p->services);
    tg_arena_free(&p->arena);
    free(p);
}

tg_pbd_pool_t *tg_pbd_pool_new(const void *set, size_t len, char *why, size_t cap)
{
    builder_t b = { .why = why, .why_cap = cap };
    if ((b.p = calloc(1, sizeof(*b.p))) == NULL) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    tg_arena_init(&b.p->arena);
    pending_method_t **pend = NULL;
    size_t n_pend = 0, cap_pend = 0;
    tg_pb_reader_t r = tg_pb_reader(set, len);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0 && !b.failed)
        if (f.num == 1 && f.wire == TG_PB_LEN) /* FileDescriptorSet.file */
            read_file(&b, f.data, f.len, &pend, &n_pend, &cap_pend);
    if (rc < 0)
        fail(&b, "not a FileDescriptorSet");
    if (!b.failed) {
        if (b.p->n_messages > 1) /* qsort must not see the NULL of an empty list */
            qsort(b.p->messages, b.p->n_messages, sizeof(*b.p->messages), by_name);
        if (b.p->n_enums > 1)
            qsort(b.p->enums, b.p->n_enums, sizeof(*b.p->enums), by_name);
        for (size_t i = 1; i < b.p->n_messages; i++)
            if (strcmp(b.p->messages[i]->full_name, b.p->messages[i - 1]->full_name) == 0)
                fail(&b, "message %s is defined twice", b.p->messages[i]->full_name);
        for (size_t i = 1; i < b.p->n_enums; i++)
            if (strcmp(b.p->enums[i]->full_name, b.p->enums[i - 1]->full_name) == 0)
                fail(&b, "enum %s is defined twice", b.p->enums[i]->full_name);
    }
    for (size_t i = 0; !b.failed && i < b.p->n_messages; i++)
        resolve(&b, b.p->messages[i]);
    for (size_t i = 0; !b.failed && i < n_pend; i++) {
        pending_method_t *pm = pend[i];
        if ((pm->m->input = tg_pbd_message(b.p, pm->in + 1)) == NULL ||
            (pm->m->output = tg_pbd_message(b.p, pm->out + 1)) == NULL)
            fail(&b, "%s: no message %s in the descriptors", pm->m->path, pm->m->input ? pm->out : pm->in);
    }
    free(pend);
    if (b.failed) {
        tg_pbd_pool_free(b.p);
        return NULL;
    }
    return b.p;
}

const tg_pbd_method_t *tg_pbd_method(const tg_pbd_pool_t *p, const char *service, const char *method)
{
    for (size_t i = 0; i < p->n_services; i++) {
        const tg_pbd_service_t *s = p->services[i];
        if (strcmp(s->full_name, service) != 0)
            continue;
        for (size_t j = 0; j < s->n_methods; j++)
            if (strcmp(s->methods[j].name, method) == 0)
                return &s->methods[j];
    }
    return NULL;
}

const tg_pbd_field_t *tg_pbd_field(const tg_pbd_message_t *m, uint32_t number)
{
    size_t lo = 0, hi = m->n_fields;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->fields[mid].number == number)
            return &m->fields[mid];
        if (m->fields[mid].number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const tg_pbd_field_t *tg_pbd_field_named(const tg_pbd_message_t *m, const char *name)
{
    for (size_t i = 0; i < m->n_fields; i++)
        if (strcmp(m->fields[i].json_name, name) == 0 || strcmp(m->fields[i].name, name) == 0)
            return &m->fields[i];
    return NULL;
}
