/*
 * proxy/base/pb.c — the protobuf wire format. See pb.h.
 */
#include "proxy/base/pb.h"

#include <stdlib.h>
#include <string.h>

#define NEST_ROOM 5 /* a nested message's length, up to 2^35: what tg_pb_begin reserves */

void tg_pb_writer_free(tg_pb_writer_t *w)
{
    free(w->p);
    *w = (tg_pb_writer_t){ 0 };
}

static uint8_t *room(tg_pb_writer_t *w, size_t n)
{
    if (w->failed)
        return NULL;
    if (w->cap - w->len < n) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len < n) {
            if (cap > SIZE_MAX / 2) {
                w->failed = 1;
                return NULL;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(w->p, cap);
        if (p == NULL) {
            w->failed = 1;
            return NULL;
        }
        w->p = p;
        w->cap = cap;
    }
    return w->p + w->len;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

static void varint(tg_pb_writer_t *w, uint64_t v)
{
    uint8_t *o = room(w, 10);
    if (o != NULL)
        w->len += put_varint(o, v);
}

static void tag(tg_pb_writer_t *w, uint32_t field, int wire)
{
    varint(w, (uint64_t)field << 3 | (uint64_t)wire);
}

size_t tg_pb_frame_begin(tg_pb_writer_t *w)
{
    size_t mark = w->len;
    if (room(w, 5) != NULL)
        w->len += 5;
    return mark;
}

int tg_pb_frame_end(tg_pb_writer_t *w, size_t mark)
{
    if (w->failed || w->len < mark + 5 || w->len - mark - 5 > UINT32_MAX)
        return -1;
    uint32_t n = (uint32_t)(w->len - mark - 5);
    uint8_t *p = w->p + mark;
    p[0] = 0;
    p[1] = (uint8_t)(n >> 24);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 8);
    p[4] = (uint8_t)n;
    return 0;
}

void tg_pb_reserve_grpc_prefix(tg_pb_writer_t *w)
{
    (void)tg_pb_frame_begin(w);
}

int tg_pb_grpc_frame(tg_pb_writer_t *w)
{
    return tg_pb_frame_end(w, 0);
}

void tg_pb_uint(tg_pb_writer_t *w, uint32_t field, uint64_t v)
{
    tag(w, field, TG_PB_VARINT);
    varint(w, v);
}

static void fixed(tg_pb_writer_t *w, uint32_t field, int wire, uint64_t v, size_t n)
{
    tag(w, field, wire);
    uint8_t *o = room(w, n);
    if (o == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    w->len += n;
}

void tg_pb_fixed32(tg_pb_writer_t *w, uint32_t field, uint32_t v)
{
    fixed(w, field, TG_PB_I32, v, 4);
}

void tg_pb_fixed64(tg_pb_writer_t *w, uint32_t field, uint64_t v)
{
    fixed(w, field, TG_PB_I64, v, 8);
}

void tg_pb_bytes(tg_pb_writer_t *w, uint32_t field, const void *p, size_t n)
{
    tag(w, field, TG_PB_LEN);
    varint(w, n);
    uint8_t *o = room(w, n);
    if (o != NULL && n > 0) {
        memcpy(o, p, n);
        w->len += n;
    }
}

void tg_pb_str(tg_pb_writer_t *w, uint32_t field, const char *s)
{
    if (s != NULL)
        tg_pb_bytes(w, field, s, strlen(s));
}

size_t tg_pb_begin(tg_pb_writer_t *w, uint32_t field)
{
    tag(w, field, TG_PB_LEN);
    if (room(w, NEST_ROOM) == NULL)
        return 0;
    w->len += NEST_ROOM;
    return w->len;
}

/* The body was written after NEST_ROOM bytes: its length goes there and
 * the body moves up to meet it. */
void tg_pb_end(tg_pb_writer_t *w, size_t mark)
{
    if (w->failed || mark < NEST_ROOM || mark > w->len)
        return;
    size_t body = w->len - mark;
    if (body >> 35) {
        w->failed = 1;
        return;
    }
    uint8_t len[10];
    size_t n = put_varint(len, body);
    uint8_t *at = w->p + mark - NEST_ROOM;
    memcpy(at, len, n);
    memmove(at + n, w->p + mark, body);
    w->len -= NEST_ROOM - n;
}

static int get_varint(tg_pb_reader_t *r, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1)
            return -1; /* past 64 bits */
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

int tg_pb_next(tg_pb_reader_t *r, tg_pb_field_t *f)
{
    if (r->p >= r->end)
        return 0;
    uint64_t key;
    if (get_varint(r, &key) < 0 || key >> 3 == 0 || key >> 3 > 0x1fffffff)
        return -1;
    *f = (tg_pb_field_t){ .num = (uint32_t)(key >> 3), .wire = (int)(key & 7) };
    size_t left;
    switch (f->wire) {
    case TG_PB_VARINT:
        return get_varint(r, &f->v) < 0 ? -1 : 1;
    case TG_PB_I64:
    case TG_PB_I32: {
        size_t n = f->wire == TG_PB_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return -1;
        for (size_t i = 0; i < n; i++)
            f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    case TG_PB_LEN:
        if (get_varint(r, &f->v) < 0)
            return -1;
        left = (size_t)(r->end - r->p);
        if (f->v > left)
            return -1;
        f->data = r->p;
        f->len = (size_t)f->v;
        r->p += f->len;
        return 1;
    default:
        return -1; /* groups (3, 4) and 6, 7 */
    }
}

int tg_pb_grpc_unframe(const void *body, size_t len, const uint8_t **msg, size_t *msg_len)
{
    const uint8_t *b = body;
    if (len < 5 || b[0] != 0)
        return -1;
    uint32_t n = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
    if (n != len - 5)
        return -1;
    *msg = b + 5;
    *msg_len = n;
    return 0;
}
