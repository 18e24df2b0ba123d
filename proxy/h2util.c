/*
 * proxy/h2util.c — see h2util.h.
 */
#include "proxy/h2util.h"

#include <event2/buffer.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX 256

void *tg_h2_obj_alloc(tg_h2_obj_cache_t *c, size_t size)
{
    tg_h2_obj_t *o = c->head;
    if (o != NULL) {
        c->head = o->next_free;
        c->n--;
        struct evbuffer *a = o->buf[0], *b = o->buf[1];
        memset(o, 0, size);
        o->buf[0] = a;
        o->buf[1] = b;
        return o;
    }
    if ((o = calloc(1, size)) == NULL)
        return NULL;
    o->buf[0] = evbuffer_new();
    o->buf[1] = evbuffer_new();
    if (o->buf[0] == NULL || o->buf[1] == NULL) {
        if (o->buf[0])
            evbuffer_free(o->buf[0]);
        if (o->buf[1])
            evbuffer_free(o->buf[1]);
        free(o);
        return NULL;
    }
    return o;
}

static void obj_destroy(tg_h2_obj_t *o)
{
    evbuffer_free(o->buf[0]);
    evbuffer_free(o->buf[1]);
    free(o);
}

void tg_h2_obj_release(tg_h2_obj_cache_t *c, tg_h2_obj_t *o)
{
    if (c->n >= CACHE_MAX) {
        obj_destroy(o);
        return;
    }
    for (int i = 0; i < 2; i++)
        evbuffer_drain(o->buf[i], evbuffer_get_length(o->buf[i]));
    o->next_free = c->head;
    c->head = o;
    c->n++;
}

void tg_h2_obj_cache_clear(tg_h2_obj_cache_t *c)
{
    tg_h2_obj_t *o;
    while ((o = c->head) != NULL) {
        c->head = o->next_free;
        obj_destroy(o);
    }
    c->n = 0;
}

ssize_t tg_h2_queue_frame(struct evbuffer *out, const uint8_t *data, size_t len)
{
    if (evbuffer_get_length(out) >= TG_H2_OUT_HWM)
        return NGHTTP2_ERR_WOULDBLOCK;
    return evbuffer_add(out, data, len) == 0 ? (ssize_t)len : NGHTTP2_ERR_CALLBACK_FAILURE;
}

int tg_h2_queue_data(struct evbuffer *out, const uint8_t *framehd, struct evbuffer *src, size_t len)
{
    if (evbuffer_get_length(out) >= TG_H2_OUT_HWM)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, framehd, 9) < 0 || (len > 0 && evbuffer_remove_buffer(src, out, len) != (int)len))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}
