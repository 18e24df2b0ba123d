/*
 * proxy/h2util.h — what the HTTP/2 server (h2_server.c) and client
 * (h2_client.c) sides share:
 *
 *  - a per-worker cache of stream objects: a stream a request is the hot
 *    path, so the objects and their two evbuffers are recycled rather than
 *    allocated each time. A stream type starts with tg_h2_obj_t;
 *  - serialising nghttp2's frames onto a socket's output, stopping
 *    (NGHTTP2_ERR_WOULDBLOCK) past a high-water mark, with DATA payloads
 *    moved from the stream's buffer instead of copied.
 *
 * Single-threaded: a cache belongs to one worker.
 */
#ifndef TG_PROXY_H2UTIL_H
#define TG_PROXY_H2UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct evbuffer;

/* Serialised frames stop queueing on a socket once this much output
 * waits (nghttp2 then holds them until the socket drains). */
#define TG_H2_OUT_HWM (64 * 1024)

typedef struct tg_h2_obj {
    struct tg_h2_obj *next_free;
    struct evbuffer *buf[2];
} tg_h2_obj_t;

typedef struct tg_h2_obj_cache {
    tg_h2_obj_t *head;
    unsigned n;
} tg_h2_obj_cache_t;

/* A zeroed object of `size` bytes (>= sizeof(tg_h2_obj_t)) whose buf[0]
 * and buf[1] are empty evbuffers; NULL on allocation failure. */
void *tg_h2_obj_alloc(tg_h2_obj_cache_t *c, size_t size);
/* Back to the cache (its buffers emptied), or freed when the cache is full. */
void tg_h2_obj_release(tg_h2_obj_cache_t *c, tg_h2_obj_t *o);
/* Frees every cached object (worker teardown). */
void tg_h2_obj_cache_clear(tg_h2_obj_cache_t *c);

/* nghttp2 send callback body: appends a serialised frame to out. */
ssize_t tg_h2_queue_frame(struct evbuffer *out, const uint8_t *data, size_t len);
/* nghttp2 send_data callback body: the 9-byte header, then len payload
 * bytes moved from src. 0, or an nghttp2 error code. */
int tg_h2_queue_data(struct evbuffer *out, const uint8_t *framehd, struct evbuffer *src, size_t len);

#endif
