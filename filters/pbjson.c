/*
 * filters/pbjson.c — see pbjson.h. Protobuf to JSON walks a message's
 * wire bytes once to list where each field occurs, then writes the fields
 * in number order (json_format's); singular message fields that occur
 * more than once are merged, scalars take the last occurrence, as the
 * wire format says. JSON to protobuf parses the JSON (proxy/base/json.h)
 * and writes each member as it comes.
 */
#include "filters/pbjson.h"

#include <event2/buffer.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/grpcweb.h" /* tg_grpcweb_b64_encode */
#include "proxy/base/arena.h"
#include "proxy/base/civil.h"
#include "proxy/base/fnv.h"
#include "proxy/base/json.h"

#define MAX_SPANS 4096 /* occurrences of one singular message field merged */

typedef struct ctx {
    const tg_pbd_pool_t *pool;
    const tg_pbj_opts_t *o;
    unsigned max_depth;
    char *why;
    size_t cap;
    int failed;
} ctx_t;

static int fail(ctx_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ctx_t *c, const char *fmt, ...)
{
    if (!c->failed++) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, c->cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- shared ---- */

static int is_packable(tg_pbt_t t)
{
    return t != TG_PBT_STRING && t != TG_PBT_BYTES && t != TG_PBT_MESSAGE && t != TG_PBT_GROUP;
}

/* The wire type a field of type t is written with. */
static int wire_of(tg_pbt_t t)
{
    switch (t) {
    case TG_PBT_DOUBLE: case TG_PBT_FIXED64: case TG_PBT_SFIXED64: return TG_PB_I64;
    case TG_PBT_FLOAT: case TG_PBT_FIXED32: case TG_PBT_SFIXED32: return TG_PB_I32;
    case TG_PBT_STRING: case TG_PBT_BYTES: case TG_PBT_MESSAGE: return TG_PB_LEN;
    default: return TG_PB_VARINT;
    }
}

#define TS_MIN (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TS_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */
#define DUR_MAX 315576000000LL  /* 10,000 years */

/* ".123", ".123456", ".123456789" or nothing, as json_format writes nanos. */
static void frac(char *out, size_t cap, int32_t nanos)
{
    if (nanos == 0)
        out[0] = '\0';
    else if (nanos % 1000000 == 0)
        snprintf(out, cap, ".%03d", nanos / 1000000);
    else if (nanos % 1000 == 0)
        snprintf(out, cap, ".%06d", nanos / 1000);
    else
        snprintf(out, cap, ".%09d", nanos);
}

/* ================= protobuf -> JSON ================= */

typedef struct span {
    const uint8_t *p;
    size_t n;
} span_t;

typedef struct occ {
    uint32_t field;  /* index in the message's fields */
    uint32_t span;
    size_t off;      /* where its tag starts in the span */
} occ_t;

static int emit_message(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out,
                        unsigned depth);

static void put_raw(void *out, const char *s, size_t n)
{
    evbuffer_add(out, s, n);
}

static void put_str(struct evbuffer *out, const char *s, size_t n)
{
    evbuffer_add(out, "\"", 1);
    tg_json_write(s, n, put_raw, out);
    evbuffer_add(out, "\"", 1);
}

static void put_double(struct evbuffer *out, double v, int single)
{
    if (isnan(v)) {
        evbuffer_add_printf(out, "\"NaN\"");
        return;
    }
    if (isinf(v)) {
        evbuffer_add_printf(out, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    char buf[40];
    for (int p = single ? 6 : 1; p <= 17; p++) { /* the shortest form that reads back the same (a float: 6 digits
                                                   * at least, as json_format writes them) */
        snprintf(buf, sizeof(buf), "%.*g", p, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    evbuffer_add(out, buf, strlen(buf));
}

static void put_b64(struct evbuffer *out, const uint8_t *p, size_t n)
{
    char *b = malloc((n + 2) / 3 * 4 + 1);
    if (b == NULL)
        return;
    size_t k = tg_grpcweb_b64_encode(p, n, b);
    evbuffer_add(out, "\"", 1);
    evbuffer_add(out, b, k);
    evbuffer_add(out, "\"", 1);
    free(b);
}

/* A scalar's value from its wire field (not a message, not a map). quoted:
 * as a map key (always a string). */
static int put_scalar(ctx_t *c, const tg_pbd_field_t *f, const tg_pb_field_t *x, struct evbuffer *out, int quoted)
{
    const char *q = quoted ? "\"" : "";
    uint64_t v = x->v;
    switch (f->type) {
    case TG_PBT_INT32: evbuffer_add_printf(out, "%s%d%s", q, (int32_t)v, q); break;
    case TG_PBT_SFIXED32: evbuffer_add_printf(out, "%s%d%s", q, (int32_t)(uint32_t)v, q); break;
    case TG_PBT_SINT32: evbuffer_add_printf(out, "%s%d%s", q, (int32_t)(((uint32_t)v >> 1) ^ -((uint32_t)v & 1)), q); break;
    case TG_PBT_UINT32: case TG_PBT_FIXED32: evbuffer_add_printf(out, "%s%u%s", q, (uint32_t)v, q); break;
    case TG_PBT_INT64: case TG_PBT_SFIXED64: evbuffer_add_printf(out, "\"%lld\"", (long long)(int64_t)v); break;
    case TG_PBT_SINT64: evbuffer_add_printf(out, "\"%lld\"", (long long)(int64_t)((v >> 1) ^ -(v & 1))); break;
    case TG_PBT_UINT64: case TG_PBT_FIXED64: evbuffer_add_printf(out, "\"%llu\"", (unsigned long long)v); break;
    case TG_PBT_BOOL: evbuffer_add_printf(out, "%s%s%s", q, v ? "true" : "false", q); break;
    case TG_PBT_FLOAT: {
        uint32_t bits = (uint32_t)v;
        float fv;
        memcpy(&fv, &bits, 4);
        put_double(out, fv, 1);
        break;
    }
    case TG_PBT_DOUBLE: {
        double dv;
        memcpy(&dv, &v, 8);
        put_double(out, dv, 0);
        break;
    }
    case TG_PBT_ENUM: {
        int32_t n = (int32_t)v;
        if (f->enumt->null_value) {
            evbuffer_add_printf(out, "null");
            break;
        }
        for (size_t i = 0; i < f->enumt->n_values; i++)
            if (f->enumt->values[i].number == n) {
                put_str(out, f->enumt->values[i].name, strlen(f->enumt->values[i].name));
                return 0;
            }
        evbuffer_add_printf(out, "%d", n); /* a value this side does not know: its number */
        break;
    }
    case TG_PBT_STRING:
        if (!tg_utf8_ok(x->data, x->len))
            return fail(c, "field %s: a string that is not UTF-8", f->name);
        put_str(out, (const char *)x->data, x->len);
        break;
    case TG_PBT_BYTES: put_b64(out, x->data, x->len); break;
    default: return fail(c, "field %s: groups are not supported", f->name);
    }
    return 0;
}

/* Does a singular scalar hold its type's default (proto3 leaves it out)? */
static int is_default(const tg_pbd_field_t *f, const tg_pb_field_t *x)
{
    if (f->type == TG_PBT_STRING || f->type == TG_PBT_BYTES)
        return x->len == 0;
    switch (f->type) { /* 32-bit types: what the varint says once cut to 32 bits (-0.0 is not 0: written) */
    case TG_PBT_INT32: case TG_PBT_UINT32: case TG_PBT_SINT32: case TG_PBT_FIXED32: case TG_PBT_SFIXED32:
    case TG_PBT_ENUM: case TG_PBT_FLOAT:
        return (uint32_t)x->v == 0;
    default:
        return x->v == 0;
    }
}

/* The values of one occurrence of a repeated scalar: one, or a packed run. */
static int put_repeated_scalar(ctx_t *c, const tg_pbd_field_t *f, const tg_pb_field_t *x, struct evbuffer *out,
                               int *first)
{
    if (x->wire != TG_PB_LEN || !is_packable(f->type)) {
        if (!*first)
            evbuffer_add(out, ",", 1);
        *first = 0;
        return put_scalar(c, f, x, out, 0);
    }
    /* packed: values of the field's wire type, back to back */
    int wire = wire_of(f->type);
    const uint8_t *p = x->data, *end = x->data + x->len;
    while (p < end) {
        tg_pb_field_t one = { .num = f->number, .wire = wire };
        if (wire == TG_PB_VARINT) {
            uint64_t v = 0;
            int shift = 0, done = 0;
            while (p < end && shift < 70 && !done) {
                v |= (uint64_t)(*p & 0x7f) << shift;
                done = !(*p++ & 0x80);
                shift += 7;
            }
            if (!done)
                return fail(c, "field %s: a packed varint is cut short", f->name);
            one.v = v;
        } else {
            size_t k = wire == TG_PB_I64 ? 8 : 4;
            if ((size_t)(end - p) < k)
                return fail(c, "field %s: a packed value is cut short", f->name);
            for (size_t i = 0; i < k; i++)
                one.v |= (uint64_t)p[i] << (8 * i);
            p += k;
        }
        if (!*first)
            evbuffer_add(out, ",", 1);
        *first = 0;
        if (put_scalar(c, f, &one, out, 0) < 0)
            return -1;
    }
    return 0;
}

/* The field at off in a span (its tag there). */
static void field_at(const span_t *s, size_t off, tg_pb_field_t *x)
{
    tg_pb_reader_t r = tg_pb_reader(s->p + off, s->n - off);
    tg_pb_next(&r, x); /* read once already: it parses */
}

/* A map key that is a number or a bool, as JSON writes it (x NULL: the
 * key's default). */
static void key_text(const tg_pbd_field_t *kf, const tg_pb_field_t *x, char out[24])
{
    uint64_t v = x ? x->v : 0;
    switch (kf->type) {
    case TG_PBT_INT32: snprintf(out, 24, "%d", (int32_t)v); break;
    case TG_PBT_SFIXED32: snprintf(out, 24, "%d", (int32_t)(uint32_t)v); break;
    case TG_PBT_SINT32: snprintf(out, 24, "%d", (int32_t)(((uint32_t)v >> 1) ^ -((uint32_t)v & 1))); break;
    case TG_PBT_UINT32: case TG_PBT_FIXED32: snprintf(out, 24, "%u", (uint32_t)v); break;
    case TG_PBT_INT64: case TG_PBT_SFIXED64: snprintf(out, 24, "%lld", (long long)(int64_t)v); break;
    case TG_PBT_SINT64: snprintf(out, 24, "%lld", (long long)(int64_t)((v >> 1) ^ -(v & 1))); break;
    case TG_PBT_BOOL: snprintf(out, 24, "%s", v ? "true" : "false"); break;
    default: snprintf(out, 24, "%llu", (unsigned long long)v); break;
    }
}

/* A map's entries: key = 1, value = 2, the last entry for a key wins,
 * keys in the order they first came. */
static int put_map(ctx_t *c, const tg_pbd_field_t *f, const span_t *spans, const occ_t *occs, size_t n,
                   struct evbuffer *out, unsigned depth)
{
    const tg_pbd_message_t *e = f->message;
    const tg_pbd_field_t *kf = tg_pbd_field(e, 1), *vf = tg_pbd_field(e, 2);
    if (kf == NULL || vf == NULL)
        return fail(c, "%s: a map entry without key or value", e->full_name);
    /* each entry's key and value (the last of each within the entry) */
    typedef struct entry {
        tg_pb_field_t k, v;
        int has_k, has_v;
        char num[24];      /* a number or bool key as written: varints 1 and 2 are both `true` */
        const uint8_t *kp; /* the key's text ... */
        size_t kn;
        uint64_t hash;
        size_t next_same; /* the later entry with the same key (SIZE_MAX: none) */
        int shadowed;
    } entry_t;
    entry_t *en = calloc(n ? n : 1, sizeof(*en));
    if (en == NULL)
        return fail(c, "out of memory");
    for (size_t i = 0; i < n; i++) {
        tg_pb_field_t x;
        field_at(&spans[occs[i].span], occs[i].off, &x);
        if (x.wire != TG_PB_LEN) {
            free(en);
            return fail(c, "field %s: a map entry that is not a message", f->name);
        }
        tg_pb_reader_t r = tg_pb_reader(x.data, x.len);
        tg_pb_field_t y;
        int rc;
        while ((rc = tg_pb_next(&r, &y)) > 0) {
            if (y.num == 1 && y.wire == wire_of(kf->type))
                en[i].k = y, en[i].has_k = 1;
            else if (y.num == 2 && (y.wire == wire_of(vf->type) || vf->type == TG_PBT_MESSAGE))
                en[i].v = y, en[i].has_v = 1;
        }
        if (rc < 0) {
            free(en);
            return fail(c, "field %s: a map entry is malformed", f->name);
        }
        if (kf->type == TG_PBT_STRING) {
            en[i].kp = en[i].has_k ? en[i].k.data : (const uint8_t *)"";
            en[i].kn = en[i].has_k ? en[i].k.len : 0;
        } else {
            key_text(kf, en[i].has_k ? &en[i].k : NULL, en[i].num);
            en[i].kp = (const uint8_t *)en[i].num;
            en[i].kn = strlen(en[i].num);
        }
        en[i].hash = tg_fnv1a64(TG_FNV1A64_INIT, en[i].kp, en[i].kn);
    }
    /* a later entry with the same key shadows an earlier one (hash table of indexes) */
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    size_t *tab = malloc(cap * sizeof(*tab));
    if (tab == NULL) {
        free(en);
        return fail(c, "out of memory");
    }
    memset(tab, 0xff, cap * sizeof(*tab));
    for (size_t i = 0; i < n; i++) {
        for (size_t h = en[i].hash & (cap - 1);; h = (h + 1) & (cap - 1)) {
            if (tab[h] == SIZE_MAX) {
                tab[h] = i;
                break;
            }
            entry_t *o = &en[tab[h]];
            int same = o->hash == en[i].hash && o->kn == en[i].kn && (o->kn == 0 || memcmp(o->kp, en[i].kp, o->kn) == 0);
            if (same) { /* the earlier place keeps the later value */
                o->v = en[i].v;
                o->has_v = en[i].has_v;
                en[i].shadowed = 1;
                break;
            }
        }
    }
    free(tab);
    evbuffer_add(out, "{", 1);
    int first = 1, rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (en[i].shadowed)
            continue;
        if (!first)
            evbuffer_add(out, ",", 1);
        first = 0;
        if (kf->type == TG_PBT_STRING) {
            if (!tg_utf8_ok(en[i].kp, en[i].kn))
                rc = fail(c, "field %s: a map key that is not UTF-8", f->name);
            else
                put_str(out, (const char *)en[i].kp, en[i].kn);
        } else {
            evbuffer_add_printf(out, "\"%s\"", en[i].num);
        }
        evbuffer_add(out, ":", 1);
        if (rc < 0)
            break;
        if (vf->type == TG_PBT_MESSAGE) {
            span_t s = { en[i].has_v ? en[i].v.data : NULL, en[i].has_v ? en[i].v.len : 0 };
            rc = emit_message(c, vf->message, &s, 1, out, depth + 1);
        } else if (en[i].has_v) {
            rc = put_scalar(c, vf, &en[i].v, out, 0);
        } else { /* the value's default */
            tg_pb_field_t zero = { .num = 2, .wire = wire_of(vf->type), .data = (const uint8_t *)"" };
            rc = put_scalar(c, vf, &zero, out, 0);
        }
    }
    free(en);
    if (rc == 0)
        evbuffer_add(out, "}", 1);
    return rc;
}

/* One field with its occurrences (n may be 0: a default written). */
static int put_field(ctx_t *c, const tg_pbd_field_t *f, const span_t *spans, const occ_t *occs, size_t n,
                     struct evbuffer *out, unsigned depth)
{
    if (f->type == TG_PBT_GROUP)
        return fail(c, "field %s: groups are not supported", f->name);
    if (f->repeated && f->message != NULL && f->message->map_entry)
        return put_map(c, f, spans, occs, n, out, depth);
    if (f->repeated) {
        evbuffer_add(out, "[", 1);
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            tg_pb_field_t x;
            field_at(&spans[occs[i].span], occs[i].off, &x);
            if (f->type == TG_PBT_MESSAGE) {
                if (!first)
                    evbuffer_add(out, ",", 1);
                first = 0;
                span_t s = { x.data, x.len };
                if (emit_message(c, f->message, &s, 1, out, depth + 1) < 0)
                    return -1;
            } else if (put_repeated_scalar(c, f, &x, out, &first) < 0) {
                return -1;
            }
        }
        evbuffer_add(out, "]", 1);
        return 0;
    }
    if (f->type == TG_PBT_MESSAGE) { /* every occurrence merged */
        if (n > MAX_SPANS)
            return fail(c, "field %s: more than %d parts to merge", f->name, MAX_SPANS);
        span_t *s = malloc((n ? n : 1) * sizeof(*s));
        if (s == NULL)
            return fail(c, "out of memory");
        for (size_t i = 0; i < n; i++) {
            tg_pb_field_t x;
            field_at(&spans[occs[i].span], occs[i].off, &x);
            s[i] = (span_t){ x.data, x.len };
        }
        int rc = emit_message(c, f->message, s, n, out, depth + 1);
        free(s);
        return rc;
    }
    if (n == 0) {
        tg_pb_field_t zero = { .num = f->number, .wire = wire_of(f->type), .data = (const uint8_t *)"" };
        return put_scalar(c, f, &zero, out, 0);
    }
    tg_pb_field_t x;
    field_at(&spans[occs[n - 1].span], occs[n - 1].off, &x);
    return put_scalar(c, f, &x, out, 0);
}

static int by_field(const void *a, const void *b)
{
    const occ_t *x = a, *y = b;
    if (x->field != y->field)
        return x->field < y->field ? -1 : 1;
    if (x->span != y->span)
        return x->span < y->span ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Does this occurrence's wire type fit the field (else it is unknown)? */
static int wire_fits(const tg_pbd_field_t *f, int wire)
{
    /* a packed run only for a repeated field: elsewhere, as protobuf's own
     * parsers do, a field of the wrong wire type is an unknown field */
    return wire == wire_of(f->type) || (f->repeated && wire == TG_PB_LEN && is_packable(f->type));
}

/* The fields of a message (the occurrences in its spans), written as
 * members after what *first says is before them. */
static int emit_fields(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out,
                       unsigned depth, int *first)
{
    size_t n = 0, cap = 0;
    occ_t *occs = NULL;
    for (size_t s = 0; s < ns; s++) {
        tg_pb_reader_t r = tg_pb_reader(spans[s].p, spans[s].n);
        tg_pb_field_t x;
        int rc;
        const uint8_t *at = r.p;
        while ((rc = tg_pb_next(&r, &x)) > 0) {
            const tg_pbd_field_t *f = tg_pbd_field(m, x.num);
            if (f != NULL && wire_fits(f, x.wire)) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    occ_t *no = realloc(occs, cap * sizeof(*occs));
                    if (no == NULL) {
                        free(occs);
                        return fail(c, "out of memory");
                    }
                    occs = no;
                }
                occs[n++] = (occ_t){ (uint32_t)(f - m->fields), (uint32_t)s, (size_t)(at - spans[s].p) };
            }
            at = r.p;
        }
        if (rc < 0) {
            free(occs);
            return fail(c, "%s: malformed protobuf", m->full_name);
        }
    }
    if (n > 1)
        qsort(occs, n, sizeof(*occs), by_field);
    /* of each oneof, the member set last is the one set (setting one clears the others) */
    occ_t *last_set = m->n_oneofs ? calloc(m->n_oneofs, sizeof(*last_set)) : NULL;
    if (m->n_oneofs && last_set == NULL) {
        free(occs);
        return fail(c, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        int o = m->fields[occs[i].field].oneof;
        if (o < 0 || (size_t)o >= m->n_oneofs || (i + 1 < n && occs[i + 1].field == occs[i].field))
            continue; /* not in a oneof, or not the field's last occurrence */
        occ_t *w = &last_set[o];
        if (w->field == 0 || occs[i].span > w->span || (occs[i].span == w->span && occs[i].off > w->off))
            *w = (occ_t){ occs[i].field + 1, occs[i].span, occs[i].off }; /* field + 1: 0 is "none yet" */
    }
    size_t i = 0;
    int rc = 0;
    for (size_t k = 0; k < m->n_fields && rc == 0; k++) {
        const tg_pbd_field_t *f = &m->fields[k];
        size_t from = i;
        while (i < n && occs[i].field == k)
            i++;
        size_t cnt = i - from;
        int present = cnt > 0;
        if (present && f->oneof >= 0 && (size_t)f->oneof < m->n_oneofs && last_set[f->oneof].field != k + 1)
            continue; /* another member of its oneof came later */
        if (present && f->repeated && is_packable(f->type)) { /* empty packed runs hold no value */
            present = 0;
            for (size_t j = from; j < i && !present; j++) {
                tg_pb_field_t x;
                field_at(&spans[occs[j].span], occs[j].off, &x);
                present = x.wire != TG_PB_LEN || x.len > 0;
            }
        }
        if (present && !f->repeated && !f->presence && f->type != TG_PBT_MESSAGE) {
            tg_pb_field_t x;
            field_at(&spans[occs[i - 1].span], occs[i - 1].off, &x);
            present = !is_default(f, &x); /* proto3: a default is as good as absent */
        }
        if (!present && !(c->o->always_print_primitive_fields && !f->in_oneof &&
                          (f->repeated || f->type != TG_PBT_MESSAGE)))
            continue;
        const char *key = c->o->preserve_proto_field_names ? f->name : f->json_name;
        if (!*first)
            evbuffer_add(out, ",", 1);
        *first = 0;
        put_str(out, key, strlen(key));
        evbuffer_add(out, ":", 1);
        rc = put_field(c, f, spans, occs + from, cnt, out, depth);
    }
    free(occs);
    free(last_set);
    return rc;
}

/* A well-known type's fields 1 and 2 as their last occurrences of the
 * right wire type say (another wire type: an unknown field). */
static int wkt_fields(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, tg_pb_field_t *f1,
                      tg_pb_field_t *f2, int wire)
{
    memset(f1, 0, sizeof(*f1));
    memset(f2, 0, sizeof(*f2));
    for (size_t s = 0; s < ns; s++) {
        tg_pb_reader_t r = tg_pb_reader(spans[s].p, spans[s].n);
        tg_pb_field_t x;
        int rc;
        while ((rc = tg_pb_next(&r, &x)) > 0) {
            if (x.num == 1 && x.wire == wire)
                *f1 = x;
            else if (x.num == 2 && x.wire == wire)
                *f2 = x;
        }
        if (rc < 0)
            return fail(c, "%s: malformed protobuf", m->full_name);
    }
    return 0;
}

/* Timestamp's and Duration's seconds = 1 and nanos = 2. */
static int secs_nanos(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, int64_t *secs,
                      int32_t *nanos)
{
    tg_pb_field_t s, n;
    if (wkt_fields(c, m, spans, ns, &s, &n, TG_PB_VARINT) < 0)
        return -1;
    *secs = (int64_t)s.v;
    *nanos = (int32_t)n.v;
    return 0;
}

static int emit_timestamp(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out)
{
    int64_t secs;
    int32_t nanos;
    if (secs_nanos(c, m, spans, ns, &secs, &nanos) < 0)
        return -1;
    if (secs < TS_MIN || secs > TS_MAX || nanos < 0 || nanos > 999999999)
        return fail(c, "Timestamp out of range (%lld s, %d ns)", (long long)secs, nanos);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400), rest = secs - days * 86400, y;
    unsigned mo, d;
    tg_civil_from_days(days, &y, &mo, &d);
    char f[16];
    frac(f, sizeof(f), nanos);
    evbuffer_add_printf(out, "\"%04lld-%02u-%02uT%02lld:%02lld:%02lld%sZ\"", (long long)y, mo, d,
                        (long long)(rest / 3600), (long long)(rest / 60 % 60), (long long)(rest % 60), f);
    return 0;
}

static int emit_duration(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out)
{
    int64_t secs;
    int32_t nanos;
    if (secs_nanos(c, m, spans, ns, &secs, &nanos) < 0)
        return -1;
    if (secs < -DUR_MAX || secs > DUR_MAX || nanos < -999999999 || nanos > 999999999 ||
        (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0))
        return fail(c, "Duration out of range (%lld s, %d ns)", (long long)secs, nanos);
    char f[16];
    frac(f, sizeof(f), nanos < 0 ? -nanos : nanos);
    evbuffer_add_printf(out, "\"%s%lld%ss\"", secs < 0 || nanos < 0 ? "-" : "", (long long)(secs < 0 ? -secs : secs),
                        f);
    return 0;
}

/* FieldMask: paths = 1, each snake_case path lowerCamelCased, joined by
 * ','. A path with an upper-case letter, a '_' not before a lower-case
 * one, a ',' or a NUL has no JSON form (json_format refuses the first
 * two too). */
static int emit_field_mask(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out)
{
    struct evbuffer *text = evbuffer_new();
    if (text == NULL)
        return fail(c, "out of memory");
    int first = 1, rc = 0;
    for (size_t s = 0; s < ns && rc == 0; s++) {
        tg_pb_reader_t r = tg_pb_reader(spans[s].p, spans[s].n);
        tg_pb_field_t x;
        int more;
        while (rc == 0 && (more = tg_pb_next(&r, &x)) > 0) {
            if (x.num != 1 || x.wire != TG_PB_LEN)
                continue;
            if (!tg_utf8_ok(x.data, x.len)) {
                rc = fail(c, "FieldMask: a path that is not UTF-8");
                break;
            }
            if (!first)
                evbuffer_add(text, ",", 1);
            first = 0;
            for (size_t i = 0; i < x.len && rc == 0; i++) {
                char ch = (char)x.data[i];
                if (ch == '_' && i + 1 < x.len && x.data[i + 1] >= 'a' && x.data[i + 1] <= 'z')
                    ch = (char)(x.data[++i] - 32);
                else if ((ch >= 'A' && ch <= 'Z') || ch == '_' || ch == ',' || ch == '\0')
                    rc = fail(c, "FieldMask path '%.*s' has no JSON form", (int)x.len, (const char *)x.data);
                evbuffer_add(text, &ch, 1);
            }
        }
        if (rc == 0 && more < 0)
            rc = fail(c, "%s: malformed protobuf", m->full_name);
    }
    if (rc == 0)
        put_str(out, (const char *)evbuffer_pullup(text, -1), evbuffer_get_length(text));
    evbuffer_free(text);
    return rc;
}

/* Any: type_url = 1, value = 2. */
static int emit_any(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out,
                    unsigned depth)
{
    tg_pb_field_t url, val;
    if (wkt_fields(c, m, spans, ns, &url, &val, TG_PB_LEN) < 0)
        return -1;
    if (url.wire != TG_PB_LEN || url.len == 0) {
        if (val.len != 0)
            return fail(c, "Any: a value without a type_url");
        evbuffer_add(out, "{}", 2);
        return 0;
    }
    const char *slash = memrchr(url.data, '/', url.len);
    const char *name = slash ? slash + 1 : (const char *)url.data;
    char full[512];
    size_t nl = url.len - (size_t)(name - (const char *)url.data);
    if (!tg_utf8_ok(url.data, url.len))
        return fail(c, "Any: a type_url that is not UTF-8");
    if (nl >= sizeof(full))
        return fail(c, "Any: type_url too long");
    memcpy(full, name, nl);
    full[nl] = '\0';
    const tg_pbd_message_t *t = tg_pbd_message(c->pool, full);
    if (t == NULL)
        return fail(c, "Any: no message %s in the descriptors", full);
    evbuffer_add_printf(out, "{\"@type\":");
    put_str(out, (const char *)url.data, url.len);
    span_t s = { val.data, val.wire == TG_PB_LEN ? val.len : 0 };
    if (t->wkt != TG_WKT_NONE) {
        evbuffer_add_printf(out, ",\"value\":");
        if (emit_message(c, t, &s, 1, out, depth + 1) < 0)
            return -1;
    } else {
        int first = 0;
        if (emit_fields(c, t, &s, 1, out, depth + 1, &first) < 0)
            return -1;
    }
    evbuffer_add(out, "}", 1);
    return 0;
}

/* Value: null_value = 1, number_value = 2, string_value = 3,
 * bool_value = 4, struct_value = 5, list_value = 6 (the last one set). */
static int emit_value(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out,
                      unsigned depth)
{
    tg_pb_field_t last = { 0 };
    int kinds = 0;
    span_t *merge = NULL;
    size_t n_merge = 0;
    for (size_t s = 0; s < ns; s++) {
        tg_pb_reader_t r = tg_pb_reader(spans[s].p, spans[s].n);
        tg_pb_field_t x;
        int rc;
        while ((rc = tg_pb_next(&r, &x)) > 0) {
            const tg_pbd_field_t *kind = x.num >= 1 && x.num <= 6 ? tg_pbd_field(m, x.num) : NULL;
            if (kind == NULL || !wire_fits(kind, x.wire))
                continue; /* unknown, or of the wrong wire type: not a kind */
            if (x.num != last.num)
                n_merge = 0; /* another kind: what was merged so far is gone */
            last = x;
            kinds = 1;
            if ((x.num == 5 || x.num == 6) && x.wire == TG_PB_LEN) { /* messages merge */
                span_t *nm = realloc(merge, (n_merge + 1) * sizeof(*merge));
                if (nm == NULL) {
                    free(merge);
                    return fail(c, "out of memory");
                }
                merge = nm;
                merge[n_merge++] = (span_t){ x.data, x.len };
            }
        }
        if (rc < 0) {
            free(merge);
            return fail(c, "Value: malformed protobuf");
        }
    }
    const tg_pbd_field_t *f = kinds ? tg_pbd_field(m, last.num) : NULL;
    int rc = 0;
    if (!kinds || last.num == 1 || f == NULL) {
        evbuffer_add_printf(out, "null");
    } else if (last.num == 2) {
        double d;
        memcpy(&d, &last.v, 8);
        if (!isfinite(d))
            rc = fail(c, "Value: %s has no JSON form", isnan(d) ? "NaN" : "Infinity");
        else
            put_double(out, d, 0);
    } else if (last.num == 5 || last.num == 6) {
        rc = emit_message(c, f->message, merge, n_merge, out, depth + 1);
    } else {
        rc = put_scalar(c, f, &last, out, 0);
    }
    free(merge);
    return rc;
}

static int emit_message(ctx_t *c, const tg_pbd_message_t *m, const span_t *spans, size_t ns, struct evbuffer *out,
                        unsigned depth)
{
    if (depth > c->max_depth)
        return fail(c, "messages nested deeper than %u", c->max_depth);
    switch (m->wkt) {
    case TG_WKT_TIMESTAMP: return emit_timestamp(c, m, spans, ns, out);
    case TG_WKT_DURATION: return emit_duration(c, m, spans, ns, out);
    case TG_WKT_FIELD_MASK: return emit_field_mask(c, m, spans, ns, out);
    case TG_WKT_ANY: return emit_any(c, m, spans, ns, out, depth);
    case TG_WKT_VALUE: return emit_value(c, m, spans, ns, out, depth);
    case TG_WKT_STRUCT:     /* fields = 1: map<string, Value> */
    case TG_WKT_LIST_VALUE: /* values = 1: repeated Value */
    case TG_WKT_WRAPPER: {  /* value = 1 */
        const tg_pbd_field_t *f = tg_pbd_field(m, 1);
        if (f == NULL)
            return fail(c, "%s: no field 1", m->full_name);
        occ_t *occs = NULL;
        size_t n = 0;
        for (size_t s = 0; s < ns; s++) {
            tg_pb_reader_t r = tg_pb_reader(spans[s].p, spans[s].n);
            tg_pb_field_t x;
            const uint8_t *at = r.p;
            int rc;
            while ((rc = tg_pb_next(&r, &x)) > 0) {
                if (x.num == 1 && wire_fits(f, x.wire)) {
                    occ_t *no = realloc(occs, (n + 1) * sizeof(*occs));
                    if (no == NULL) {
                        free(occs);
                        return fail(c, "out of memory");
                    }
                    occs = no;
                    occs[n++] = (occ_t){ 0, (uint32_t)s, (size_t)(at - spans[s].p) };
                }
                at = r.p;
            }
            if (rc < 0) {
                free(occs);
                return fail(c, "%s: malformed protobuf", m->full_name);
            }
        }
        int rc = put_field(c, f, spans, occs, n, out, depth);
        free(occs);
        return rc;
    }
    default: {
        evbuffer_add(out, "{", 1);
        int first = 1;
        if (emit_fields(c, m, spans, ns, out, depth, &first) < 0)
            return -1;
        evbuffer_add(out, "}", 1);
        return 0;
    }
    }
}

int tg_pbj_to_json(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const uint8_t *msg, size_t len,
                   const tg_pbj_opts_t *o, struct evbuffer *out, char *why, size_t cap)
{
    static const tg_pbj_opts_t none = { 0 };
    ctx_t c = { pool, o ? o : &none, 0, why, cap, 0 };
    c.max_depth = c.o->max_depth ? c.o->max_depth : TG_PBJ_DEFAULT_MAX_DEPTH;
    span_t s = { msg, len };
    return emit_message(&c, m, &s, 1, out, 0);
}

int tg_pbj_field_to_json(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const char *name, const uint8_t *msg,
                         size_t len, const tg_pbj_opts_t *o, struct evbuffer *out, char *why, size_t cap)
{
    static const tg_pbj_opts_t none = { 0 };
    ctx_t c = { pool, o ? o : &none, 0, why, cap, 0 };
    c.max_depth = c.o->max_depth ? c.o->max_depth : TG_PBJ_DEFAULT_MAX_DEPTH;
    const tg_pbd_field_t *f = tg_pbd_field_named(m, name);
    if (f == NULL)
        return fail(&c, "%s has no field named '%s'", m->full_name, name);
    span_t s = { msg, len };
    occ_t *occs = NULL;
    size_t n = 0;
    tg_pb_reader_t r = tg_pb_reader(msg, len);
    tg_pb_field_t x;
    const uint8_t *at = r.p;
    int rc;
    while ((rc = tg_pb_next(&r, &x)) > 0) {
        if (x.num == f->number && wire_fits(f, x.wire)) {
            occ_t *no = realloc(occs, (n + 1) * sizeof(*occs));
            if (no == NULL) {
                free(occs);
                return fail(&c, "out of memory");
            }
            occs = no;
            occs[n++] = (occ_t){ (uint32_t)(f - m->fields), 0, (size_t)(at - msg) };
        }
        at = r.p;
    }
    if (rc < 0) {
        free(occs);
        return fail(&c, "%s: malformed protobuf", m->full_name);
    }
    rc = put_field(&c, f, &s, occs, n, out, 1);
    free(occs);
    return rc;
}

/* ================= JSON -> protobuf ================= */

static int encode_message(ctx_t *c, const tg_pbd_message_t *m, const tg_json_t *v, tg_pb_writer_t *w, unsigned depth);

/* An integer from a JSON number or string: exact for the literal, in
 * [lo, hi] (signed) or [0, uhi] (unsigned). */
static int json_int(ctx_t *c, const tg_pbd_field_t *f, const tg_json_t *v, int sign, int64_t lo, int64_t hi,
                    uint64_t uhi, uint64_t *out)
{
    const char *s = v->t == TG_JSON_STR || v->t == TG_JSON_NUM ? v->str : NULL;
    if (s == NULL)
        return fail(c, "field %s: not an integer", f->name);
    const char *p = s + (*s == '-');
    int plain = *p >= '0' && *p <= '9' && p[strspn(p, "0123456789")] == '\0';
    if (plain) { /* exact, however large */
        char *e;
        errno = 0;
        if (sign) {
            long long x = strtoll(s, &e, 10);
            if (errno || *e || x < lo || x > hi)
                return fail(c, "field %s: %s is out of range", f->name, s);
            *out = (uint64_t)x;
        } else {
            if (*s == '-')
                return fail(c, "field %s: %s is out of range", f->name, s);
            unsigned long long x = strtoull(s, &e, 10);
            if (errno || *e || x > uhi)
                return fail(c, "field %s: %s is out of range", f->name, s);
            *out = x;
        }
        return 0;
    }
    if (v->t != TG_JSON_NUM) /* "1.0" in quotes, " 1", "0x10": not an integer */
        return fail(c, "field %s: '%s' is not an integer", f->name, s);
    double d = v->num; /* 1e3, 2.0: integral numbers in another spelling */
    if (d != floor(d))
        return fail(c, "field %s: %s is not an integer", f->name, s);
    if (sign ? (d < (double)lo || d > (double)hi || d >= 9223372036854775808.0)
             : (d < 0 || d > (double)uhi || d >= 18446744073709551616.0))
        return fail(c, "field %s: %s is out of range", f->name, s);
    *out = sign ? (uint64_t)(int64_t)d : (uint64_t)d;
    return 0;
}

static int json_float(ctx_t *c, const tg_pbd_field_t *f, const tg_json_t *v, int single, double *out)
{
    if (v->t == TG_JSON_STR) {
        if (strcmp(v->str, "NaN") == 0)
            *out = NAN;
        else if (strcmp(v->str, "Infinity") == 0)
            *out = INFINITY;
        else if (strcmp(v->str, "-Infinity") == 0)
            *out = -INFINITY;
        else {
            char *e;
            *out = strtod(v->str, &e);
            if (v->str[0] == '\0' || *e != '\0' || !isfinite(*out) || v->str[0] == ' ')
                return fail(c, "field %s: '%s' is not a number", f->name, v->str);
        }
    } else if (v->t == TG_JSON_NUM) {
        *out = v->num;
    } else {
        return fail(c, "field %s: not a number", f->name);
    }
    if (single && isfinite(*out) && isinf((float)*out)) /* 3.4028235e38 is FLT_MAX written short: taken */
        return fail(c, "field %s: %g is out of range for a float", f->name, *out);
    return 0;
}

/* Standard or URL-safe base64, padded or not. -1 if not base64. */
static long b64_decode(const char *s, size_t n, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long k = 0;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int v = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
              : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '+' || ch == '-' ? 62 : ch == '/' || ch == '_' ? 63
              : ch == '=' ? -2 : -1;
        if (v == -1 || (pad && v != -2))
            return -1;
        if (v == -2) {
            pad++;
            continue;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6 || pad > 2 || (pad && (n % 4) != 0))
        return -1;
    return k;
}

/* One scalar value of field f (or a map key from its string, key = 1). */
static int encode_scalar(ctx_t *c, const tg_pbd_field_t *f, uint32_t num, const tg_json_t *v, tg_pb_writer_t *w,
                         int key)
{
    tg_json_t kv = { 0 };
    if (key && f->type == TG_PBT_STRING) {
        kv = *v;
        kv.len = strlen(v->str);
        v = &kv;
    } else if (key) { /* map keys arrive as strings */
        if (f->type == TG_PBT_BOOL) {
            if (strcmp(v->str, "true") != 0 && strcmp(v->str, "false") != 0)
                return fail(c, "map key '%s' is not a bool", v->str);
            kv.t = TG_JSON_BOOL;
            kv.num = v->str[0] == 't';
            v = &kv;
        }
    }
    uint64_t u;
    double d;
    switch (f->type) {
    case TG_PBT_INT32: case TG_PBT_SINT32: case TG_PBT_SFIXED32:
        if (json_int(c, f, v, 1, INT32_MIN, INT32_MAX, 0, &u) < 0)
            return -1;
        if (f->type == TG_PBT_SFIXED32)
            tg_pb_fixed32(w, num, (uint32_t)(int32_t)(int64_t)u);
        else if (f->type == TG_PBT_SINT32)
            tg_pb_uint(w, num, ((uint32_t)u << 1) ^ (uint32_t)((int32_t)(int64_t)u >> 31)); /* zigzag */
        else
            tg_pb_uint(w, num, (uint64_t)(int64_t)(int32_t)(int64_t)u);
        return 0;
    case TG_PBT_UINT32: case TG_PBT_FIXED32:
        if (json_int(c, f, v, 0, 0, 0, UINT32_MAX, &u) < 0)
            return -1;
        if (f->type == TG_PBT_FIXED32)
            tg_pb_fixed32(w, num, (uint32_t)u);
        else
            tg_pb_uint(w, num, u);
        return 0;
    case TG_PBT_INT64: case TG_PBT_SINT64: case TG_PBT_SFIXED64:
        if (json_int(c, f, v, 1, INT64_MIN, INT64_MAX, 0, &u) < 0)
            return -1;
        if (f->type == TG_PBT_SFIXED64)
            tg_pb_fixed64(w, num, u);
        else if (f->type == TG_PBT_SINT64)
            tg_pb_uint(w, num, (u << 1) ^ (uint64_t)((int64_t)u >> 63));
        else
            tg_pb_uint(w, num, u);
        return 0;
    case TG_PBT_UINT64: case TG_PBT_FIXED64:
        if (json_int(c, f, v, 0, 0, 0, UINT64_MAX, &u) < 0)
            return -1;
        if (f->type == TG_PBT_FIXED64)
            tg_pb_fixed64(w, num, u);
        else
            tg_pb_uint(w, num, u);
        return 0;
    case TG_PBT_BOOL:
        if (v->t != TG_JSON_BOOL)
            return fail(c, "field %s: not true or false", f->name);
        tg_pb_uint(w, num, v->num != 0);
        return 0;
    case TG_PBT_FLOAT: {
        if (json_float(c, f, v, 1, &d) < 0)
            return -1;
        float fv = (float)d;
        uint32_t bits;
        memcpy(&bits, &fv, 4);
        tg_pb_fixed32(w, num, bits);
        return 0;
    }
    case TG_PBT_DOUBLE: {
        if (json_float(c, f, v, 0, &d) < 0)
            return -1;
        memcpy(&u, &d, 8);
        tg_pb_fixed64(w, num, u);
        return 0;
    }
    case TG_PBT_STRING:
        if (v->t != TG_JSON_STR)
            return fail(c, "field %s: not a string", f->name);
        if (!tg_utf8_ok((const uint8_t *)v->str, v->len))
            return fail(c, "field %s: a string that is not UTF-8", f->name);
        tg_pb_bytes(w, num, v->str, v->len);
        return 0;
    case TG_PBT_BYTES: {
        if (v->t != TG_JSON_STR)
            return fail(c, "field %s: not a base64 string", f->name);
        size_t n = v->len;
        uint8_t *b = malloc(n * 3 / 4 + 3);
        long k = b ? b64_decode(v->str, n, b) : -1;
        if (k < 0) {
            free(b);
            return fail(c, "field %s: not base64", f->name);
        }
        tg_pb_bytes(w, num, b, (size_t)k);
        free(b);
        return 0;
    }
    case TG_PBT_ENUM: {
        if (f->enumt->null_value && v->t == TG_JSON_NULL) {
            tg_pb_uint(w, num, 0);
            return 0;
        }
        if (v->t == TG_JSON_STR) {
            for (size_t i = 0; i < f->enumt->n_values; i++)
                if (strcmp(f->enumt->values[i].name, v->str) == 0) {
                    tg_pb_uint(w, num, (uint64_t)(int64_t)f->enumt->values[i].number);
                    return 0;
                }
            if (c->o->ignore_unknown_fields)
                return 1; /* left out */
            return fail(c, "field %s: '%s' is not a value of %s", f->name, v->str, f->enumt->full_name);
        }
        if (json_int(c, f, v, 1, INT32_MIN, INT32_MAX, 0, &u) < 0)
            return -1;
        tg_pb_uint(w, num, (uint64_t)(int64_t)(int32_t)(int64_t)u);
        return 0;
    }
    default:
        return fail(c, "field %s: groups are not supported", f->name);
    }
}

/* One value of field f: a message (nested) or a scalar. */
static int encode_value(ctx_t *c, const tg_pbd_field_t *f, const tg_json_t *v, tg_pb_writer_t *w, unsigned depth)
{
    if (f->type == TG_PBT_MESSAGE) {
        size_t mark = tg_pb_begin(w, f->number);
        int rc = encode_message(c, f->message, v, w, depth + 1);
        tg_pb_end(w, mark);
        return rc;
    }
    int rc = encode_scalar(c, f, f->number, v, w, 0);
    return rc > 0 ? 0 : rc;
}

static int encode_map(ctx_t *c, const tg_pbd_field_t *f, const tg_json_t *v, tg_pb_writer_t *w, unsigned depth)
{
    if (v->t != TG_JSON_OBJ)
        return fail(c, "field %s: not an object", f->name);
    const tg_pbd_field_t *kf = tg_pbd_field(f->message, 1), *vf = tg_pbd_field(f->message, 2);
    if (kf == NULL || vf == NULL)
        return fail(c, "%s: a map entry without key or value", f->message->full_name);
    for (size_t i = 0; i < v->n; i++) {
        if (v->items[i].t == TG_JSON_NULL && !(vf->type == TG_PBT_MESSAGE && vf->message->wkt == TG_WKT_VALUE))
            return fail(c, "field %s: map value null", f->name);
        tg_json_t key = { .t = TG_JSON_STR, .str = v->keys[i] };
        size_t mark = tg_pb_begin(w, f->number);
        int rc = encode_scalar(c, kf, 1, &key, w, 1);
        if (rc == 0)
            rc = encode_value(c, vf, &v->items[i], w, depth);
        tg_pb_end(w, mark);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
    }
    return 0;
}

/* An optional ".f{1,9}" at *p into nanoseconds; *p moves past it. -1 when
 * the dot has no digits or more than nine. */
static int read_nanos(const char **p, int32_t *nanos)
{
    *nanos = 0;
    if (**p != '.')
        return 0;
    int digits = 0;
    for ((*p)++; **p >= '0' && **p <= '9'; (*p)++, digits++)
        if (digits < 9)
            *nanos = *nanos * 10 + (**p - '0');
    if (digits == 0 || digits > 9)
        return -1;
    for (; digits < 9; digits++)
        *nanos *= 10;
    return 0;
}

/* Timestamp from RFC 3339: YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm). */
static int encode_timestamp(ctx_t *c, const tg_json_t *v, tg_pb_writer_t *w)
{
    const char *s = v->t == TG_JSON_STR ? v->str : NULL;
    int y, mo, d, h, mi, se, n = 0;
    if (s == NULL || strlen(s) < 20 || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 ||
        n != 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || mo < 1 || mo > 12 || d < 1 ||
        d > 31 || h > 23 || mi > 59 || se > 59)
        return fail(c, "Timestamp: '%s' is not RFC 3339", s ? s : "(not a string)");
    const char *p = s + 19;
    int32_t nanos;
    if (read_nanos(&p, &nanos) < 0)
        return fail(c, "Timestamp: '%s' has 1 to 9 fractional digits", s);
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59)
            return fail(c, "Timestamp: '%s' has a bad offset", s);
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return fail(c, "Timestamp: '%s' needs Z or an offset", s);
    }
    if (*p != '\0')
        return fail(c, "Timestamp: '%s' is not RFC 3339", s);
    int64_t secs = tg_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - offset;
    if (secs < TS_MIN || secs > TS_MAX)
        return fail(c, "Timestamp: '%s' is out of range", s);
    if (secs)
        tg_pb_uint(w, 1, (uint64_t)secs);
    if (nanos)
        tg_pb_uint(w, 2, (uint64_t)nanos);
    return 0;
}

static int encode_duration(ctx_t *c, const tg_json_t *v, tg_pb_writer_t *w)
{
    const char *s = v->t == TG_JSON_STR ? v->str : NULL;
    size_t n = s ? strlen(s) : 0;
    if (n < 2 || s[n - 1] != 's')
        return fail(c, "Duration: '%s' is not like 1.5s", s ? s : "(not a string)");
    const char *p = s;
    int neg = *p == '-';
    p += neg;
    int64_t secs = 0;
    int any = 0;
    for (; *p >= '0' && *p <= '9'; p++, any = 1) {
        if (secs > DUR_MAX)
            break;
        secs = secs * 10 + (*p - '0');
    }
    int32_t nanos;
    if (read_nanos(&p, &nanos) < 0)
        return fail(c, "Duration: '%s' has 1 to 9 fractional digits", s);
    if (!any || p != s + n - 1 || secs > DUR_MAX)
        return fail(c, "Duration: '%s' is not like 1.5s, or out of range", s);
    if (secs)
        tg_pb_uint(w, 1, (uint64_t)(neg ? -secs : secs));
    if (nanos)
        tg_pb_uint(w, 2, (uint64_t)(int64_t)(neg ? -nanos : nanos));
    return 0;
}

/* "fooBar.baz,qux" -> paths "foo_bar.baz", "qux". */
static int encode_field_mask(ctx_t *c, const tg_json_t *v, tg_pb_writer_t *w)
{
    if (v->t != TG_JSON_STR || !tg_utf8_ok((const uint8_t *)v->str, v->len) || strlen(v->str) != v->len)
        return fail(c, "FieldMask: not a string of UTF-8 without NUL");
    const char *s = v->str;
    while (*s) {
        size_t len = strcspn(s, ",");
        char *path = malloc(len * 2 + 1), *o = path;
        if (path == NULL)
            return fail(c, "out of memory");
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '_') {
                free(path);
                return fail(c, "FieldMask: '%s' is not lowerCamelCase", v->str);
            }
            if (s[i] >= 'A' && s[i] <= 'Z') {
                *o++ = '_';
                *o++ = (char)(s[i] + 32);
            } else {
                *o++ = s[i];
            }
        }
        *o = '\0';
        if (len > 0)
            tg_pb_str(w, 1, path);
        free(path);
        s += len + (s[len] == ',');
    }
    return 0;
}

/* Value from any JSON value. */
static int encode_json_value(ctx_t *c, const tg_pbd_message_t *m, const tg_json_t *v, tg_pb_writer_t *w,
                             unsigned depth)
{
    const tg_pbd_field_t *sf = tg_pbd_field(m, 5), *lf = tg_pbd_field(m, 6);
    double d;
    switch (v->t) {
    case TG_JSON_NULL: tg_pb_uint(w, 1, 0); return 0;
    case TG_JSON_NUM: {
        uint64_t bits;
        d = v->num;
        memcpy(&bits, &d, 8);
        tg_pb_fixed64(w, 2, bits);
        return 0;
    }
    case TG_JSON_STR:
        if (!tg_utf8_ok((const uint8_t *)v->str, v->len))
            return fail(c, "Value: a string that is not UTF-8");
        tg_pb_bytes(w, 3, v->str, v->len);
        return 0;
    case TG_JSON_BOOL: tg_pb_uint(w, 4, v->num != 0); return 0;
    case TG_JSON_OBJ:
    case TG_JSON_ARR: {
        const tg_pbd_field_t *f = v->t == TG_JSON_OBJ ? sf : lf;
        if (f == NULL || f->message == NULL)
            return fail(c, "%s: no struct or list field", m->full_name);
        size_t mark = tg_pb_begin(w, f->number);
        int rc = encode_message(c, f->message, v, w, depth + 1);
        tg_pb_end(w, mark);
        return rc;
    }
    }
    return fail(c, "Value: not JSON");
}

/* Any: {"@type": URL, fields...} or {"@type": URL, "value": WKT}. */
static int encode_any(ctx_t *c, const tg_json_t *v, tg_pb_writer_t *w, unsigned depth)
{
    if (v->t != TG_JSON_OBJ)
        return fail(c, "Any: not an object");
    if (v->n == 0)
        return 0;
    const char *url = tg_json_get_str(v, "@type");
    if (url == NULL)
        return fail(c, "Any: no @type");
    if (!tg_utf8_ok((const uint8_t *)url, strlen(url)) || strlen(url) > 500)
        return fail(c, "Any: @type is not UTF-8, or too long");
    const char *slash = strrchr(url, '/');
    const tg_pbd_message_t *t = tg_pbd_message(c->pool, slash ? slash + 1 : url);
    if (t == NULL)
        return fail(c, "Any: no message %s in the descriptors", slash ? slash + 1 : url);
    tg_pb_str(w, 1, url);
    size_t mark = tg_pb_begin(w, 2);
    int rc;
    if (t->wkt != TG_WKT_NONE) {
        const tg_json_t *val = tg_json_get(v, "value");
        if (val == NULL || v->n != 2)
            rc = fail(c, "Any of %s: give @type and value", t->full_name);
        else
            rc = encode_message(c, t, val, w, depth + 1);
    } else {
        rc = encode_message(c, t, v, w, depth + 1); /* @type is skipped there */
    }
    tg_pb_end(w, mark);
    return rc;
}

static int encode_message(ctx_t *c, const tg_pbd_message_t *m, const tg_json_t *v, tg_pb_writer_t *w, unsigned depth)
{
    if (depth > c->max_depth)
        return fail(c, "messages nested deeper than %u", c->max_depth);
    switch (m->wkt) {
    case TG_WKT_TIMESTAMP: return encode_timestamp(c, v, w);
    case TG_WKT_DURATION: return encode_duration(c, v, w);
    case TG_WKT_FIELD_MASK: return encode_field_mask(c, v, w);
    case TG_WKT_VALUE: return encode_json_value(c, m, v, w, depth);
    case TG_WKT_ANY: return encode_any(c, v, w, depth);
    case TG_WKT_WRAPPER: {
        const tg_pbd_field_t *f = tg_pbd_field(m, 1);
        if (f == NULL)
            return fail(c, "%s: no field 1", m->full_name);
        if (v->t == TG_JSON_NULL)
            return 0;
        return encode_value(c, f, v, w, depth);
    }
    case TG_WKT_LIST_VALUE: {
        const tg_pbd_field_t *f = tg_pbd_field(m, 1);
        if (v->t != TG_JSON_ARR || f == NULL)
            return fail(c, "ListValue: not an array");
        for (size_t i = 0; i < v->n; i++)
            if (encode_value(c, f, &v->items[i], w, depth) < 0)
                return -1;
        return 0;
    }
    case TG_WKT_STRUCT: {
        const tg_pbd_field_t *f = tg_pbd_field(m, 1);
        if (f == NULL || f->message == NULL)
            return fail(c, "Struct: no fields map");
        return encode_map(c, f, v, w, depth);
    }
    default: break;
    }
    if (v->t != TG_JSON_OBJ)
        return fail(c, "%s: not a JSON object", m->full_name);
    uint8_t seen_small[64] = { 0 }, *seen = m->n_fields <= sizeof(seen_small) ? seen_small : calloc(m->n_fields, 1);
    int *oneof_by = NULL;
    if (seen == NULL || (m->n_oneofs && (oneof_by = malloc(m->n_oneofs * sizeof(int))) == NULL)) {
        if (seen != seen_small)
            free(seen);
        return fail(c, "out of memory");
    }
    for (size_t i = 0; i < m->n_oneofs; i++)
        oneof_by[i] = -1;
    int rc = 0;
    for (size_t i = 0; i < v->n && rc == 0; i++) {
        const char *key = v->keys[i];
        const tg_json_t *val = &v->items[i];
        if (m->wkt == TG_WKT_ANY || (key[0] == '@' && strcmp(key, "@type") == 0))
            continue; /* an Any's type, read by encode_any */
        const tg_pbd_field_t *f = tg_pbd_field_named(m, key);
        if (f == NULL) {
            if (!c->o->ignore_unknown_fields)
                rc = fail(c, "%s has no field named '%s'", m->full_name, key);
            continue;
        }
        size_t idx = (size_t)(f - m->fields);
        if (seen[idx]) {
            rc = fail(c, "%s: field '%s' given twice", m->full_name, f->name);
            break;
        }
        seen[idx] = 1;
        if (val->t == TG_JSON_NULL && !(f->type == TG_PBT_MESSAGE && f->message->wkt == TG_WKT_VALUE && !f->repeated) &&
            !(f->type == TG_PBT_ENUM && f->enumt->null_value))
            continue; /* null: the field's default */
        if (f->oneof >= 0 && (size_t)f->oneof < m->n_oneofs) {
            if (oneof_by[f->oneof] >= 0) {
                rc = fail(c, "%s: two fields of one oneof ('%s' and '%s')", m->full_name,
                          m->fields[oneof_by[f->oneof]].name, f->name);
                break;
            }
            oneof_by[f->oneof] = (int)idx;
        }
        if (f->repeated && f->message != NULL && f->message->map_entry) {
            rc = encode_map(c, f, val, w, depth);
        } else if (f->repeated) {
            if (val->t != TG_JSON_ARR) {
                rc = fail(c, "field %s: not an array", f->name);
                break;
            }
            for (size_t k = 0; k < val->n && rc == 0; k++) {
                if (val->items[k].t == TG_JSON_NULL &&
                    !(f->type == TG_PBT_MESSAGE && f->message->wkt == TG_WKT_VALUE))
                    rc = fail(c, "field %s: null in a list", f->name);
                else
                    rc = encode_value(c, f, &val->items[k], w, depth);
            }
        } else {
            rc = encode_value(c, f, val, w, depth);
        }
    }
    if (seen != seen_small)
        free(seen);
    free(oneof_by);
    return rc < 0 ? -1 : 0;
}

int tg_pbj_from_json(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const char *json, size_t len,
                     const tg_pbj_opts_t *o, tg_pb_writer_t *w, char *why, size_t cap)
{
    static const tg_pbj_opts_t none = { 0 };
    ctx_t c = { pool, o ? o : &none, 0, why, cap, 0 };
    c.max_depth = c.o->max_depth ? c.o->max_depth : TG_PBJ_DEFAULT_MAX_DEPTH;
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t v;
    int rc;
    if (tg_json_parse_flags(json, len, &a, &v, TG_JSON_NUL_OK) < 0)
        rc = fail(&c, "not JSON (or nested deeper than 32)");
    else
        rc = encode_message(&c, m, &v, w, 0);
    tg_arena_free(&a);
    if (rc == 0 && w->failed)
        rc = fail(&c, "out of memory");
    return rc;
}

/* ================= a field from text ================= */

int tg_pbj_set(const tg_pbd_pool_t *pool, const tg_pbd_message_t *m, const char *field_path, const char *text,
               size_t len, const tg_pbj_opts_t *o, tg_pb_writer_t *w, char *why, size_t cap)
{
    static const tg_pbj_opts_t none = { 0 };
    ctx_t c = { pool, o ? o : &none, 0, why, cap, 0 };
    c.max_depth = c.o->max_depth ? c.o->max_depth : TG_PBJ_DEFAULT_MAX_DEPTH;
    size_t marks[TG_PBJ_DEFAULT_MAX_DEPTH], depth = 0;
    const char *p = field_path;
    const tg_pbd_field_t *f = NULL;
    for (;;) {
        char name[128];
        size_t nl = strcspn(p, ".");
        if (nl == 0 || nl >= sizeof(name))
            return fail(&c, "'%s' is not a field path", field_path);
        memcpy(name, p, nl);
        name[nl] = '\0';
        if ((f = tg_pbd_field_named(m, name)) == NULL)
            return fail(&c, "%s has no field named '%s'", m->full_name, name);
        if (p[nl] == '\0')
            break;
        if (f->type != TG_PBT_MESSAGE || f->repeated || f->message->wkt != TG_WKT_NONE || depth == c.max_depth)
            return fail(&c, "%s: '%s' is not a message field to go through", field_path, name);
        marks[depth++] = tg_pb_begin(w, f->number);
        m = f->message;
        p += nl + 1;
    }
    if (f->repeated && f->message != NULL && f->message->map_entry)
        return fail(&c, "%s: a map cannot be set from text", field_path);
    tg_json_t v = { .t = TG_JSON_STR, .str = (char *)text, .len = len };
    int rc;
    if (f->type == TG_PBT_MESSAGE) {
        if (f->message->wkt == TG_WKT_NONE || f->message->wkt == TG_WKT_STRUCT || f->message->wkt == TG_WKT_ANY)
            return fail(&c, "%s: a message cannot be set from text", field_path);
        const tg_pbd_field_t *inner = f->message->wkt == TG_WKT_WRAPPER ? tg_pbd_field(f->message, 1) : NULL;
        tg_json_t b = { .t = TG_JSON_BOOL, .num = strcmp(text, "true") == 0 };
        if (inner != NULL && inner->type == TG_PBT_BOOL) {
            if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
                return fail(&c, "%s: '%s' is not true or false", field_path, text);
            v = b;
        }
        size_t mark = tg_pb_begin(w, f->number);
        rc = encode_message(&c, f->message, &v, w, depth + 1);
        tg_pb_end(w, mark);
    } else {
        if (f->type == TG_PBT_BOOL) {
            if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
                return fail(&c, "%s: '%s' is not true or false", field_path, text);
            v = (tg_json_t){ .t = TG_JSON_BOOL, .num = text[0] == 't' };
        } else if (f->type == TG_PBT_ENUM && (text[0] == '-' || (text[0] >= '0' && text[0] <= '9'))) {
            v.t = TG_JSON_NUM; /* an enum by number: json_int reads the literal */
            v.num = strtod(text, NULL);
        }
        rc = encode_scalar(&c, f, f->number, &v, w, 0);
        if (rc > 0) /* an unknown enum name, ignore_unknown_fields: left out */
            rc = 0;
    }
    while (depth > 0)
        tg_pb_end(w, marks[--depth]);
    if (rc == 0 && w->failed)
        rc = fail(&c, "out of memory");
    return rc;
}
