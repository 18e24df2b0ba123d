/*
 * proxy/h2util.c — see h2util.h.
 */
#include "proxy/h2util.h"

#include "proxy/conn.h"

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

static ssize_t on_send(nghttp2_session *session, const uint8_t *data, size_t length, int flags, void *user_data)
{
    struct evbuffer *out = tg_sock_out(((tg_conn_t *)user_data)->sock);
    if (evbuffer_get_length(out) >= TG_H2_OUT_HWM)
        return NGHTTP2_ERR_WOULDBLOCK;
    return evbuffer_add(out, data, length) == 0 ? (ssize_t)length : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* DATA frames: the 9-byte header, then the stream's bytes moved (not
 * copied) from its outgoing buffer. */
static int on_send_data(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *user_data)
{
    struct evbuffer *out = tg_sock_out(((tg_conn_t *)user_data)->sock);
    struct evbuffer *src = ((tg_h2_obj_t *)source->ptr)->buf[TG_H2_OUT];
    if (evbuffer_get_length(out) >= TG_H2_OUT_HWM)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(out, framehd, 9) < 0 || (length > 0 && evbuffer_remove_buffer(src, out, length) != (int)length))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

nghttp2_session_callbacks *tg_h2_callbacks(const tg_h2_receive_t *r)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    tg_h2_set_send_callbacks(cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, r->begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, r->header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, r->frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, r->data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, r->stream_close);
    if (r->frame_send)
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, r->frame_send);
    if (r->invalid_frame_recv)
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, r->invalid_frame_recv);
    return cb;
}

void tg_h2_set_send_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
}

ssize_t tg_h2_data_read(tg_h2_obj_t *o, size_t length, uint32_t *data_flags)
{
    size_t have = evbuffer_get_length(o->buf[TG_H2_OUT]), n = have < length ? have : length;
    if (n == 0 && !o->out_end) {
        o->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY; /* on_send_data moves the bytes */
    if (o->out_end && n == have)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

int tg_h2_feed(nghttp2_session *session, struct evbuffer *in, tg_h2_feeder_t *f)
{
    while (!(f->stop && f->stop(f->arg)) && evbuffer_get_length(in) > 0) {
        if (f->check && f->frame_left == 0) { /* at a frame header: shown before nghttp2 sees the frame */
            size_t avail = evbuffer_get_length(in);
            const unsigned char *h = avail >= 9 ? evbuffer_pullup(in, 9) : NULL;
            if (h == NULL)
                break; /* the rest of the header is still to come */
            size_t len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
            if (h[3] == NGHTTP2_PRIORITY && len == 5 && (avail < 14 || (h = evbuffer_pullup(in, 14)) == NULL))
                break;
            if (f->check(f->arg, h, len))
                break;
            f->frame_left = 9 + len;
        }
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t feed = !f->check || v.iov_len < f->frame_left ? v.iov_len : (size_t)f->frame_left;
        ssize_t n = nghttp2_session_mem_recv(session, v.iov_base, feed);
        if (n < 0)
            return (int)n;
        if (f->check)
            f->frame_left -= (size_t)n;
        evbuffer_drain(in, (size_t)n);
    }
    return 0;
}
