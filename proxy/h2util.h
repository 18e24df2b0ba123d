/*
 * proxy/h2util.h — what the HTTP/2 server (h2_server.c) and client
 * (h2_client.c) sides share:
 *
 *  - a per-worker cache of stream objects: a stream a request is the hot
 *    path, so the objects and their two evbuffers are recycled rather than
 *    allocated each time. A stream type starts with tg_h2_obj_t;
 *  - the nghttp2 callbacks both sides send with: frames serialised onto
 *    the connection's socket, stopping (NGHTTP2_ERR_WOULDBLOCK) past a
 *    high-water mark, DATA payloads moved from the stream's outgoing
 *    buffer instead of copied, and the data provider that feeds them;
 *  - the receive loop: input fed to the session, frame by frame when the
 *    owner checks frame headers before nghttp2 sees them.
 *
 * Single-threaded: a cache belongs to one worker.
 */
#ifndef TG_PROXY_H2UTIL_H
#define TG_PROXY_H2UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>

struct evbuffer;

/* Serialised frames stop queueing on a socket once this much output
 * waits (nghttp2 then holds them until the socket drains). */
#define TG_H2_OUT_HWM (64 * 1024)
/* Input read from an HTTP/2 connection's socket before nghttp2 has taken
 * it: the kernel keeps the rest (backpressure on a flooding peer). */
#define TG_H2_READ_LIMIT (256 * 1024)

/* The start of a stream object of either side. buf[0] is what the stream
 * sends (DATA moved out by the shared send_data callback), buf[1] what it
 * received. */
typedef struct tg_h2_obj {
    struct tg_h2_obj *next_free;
    struct evbuffer *buf[2];
    unsigned out_end : 1;  /* nothing will be added to buf[0]: END_STREAM after it */
    unsigned deferred : 1; /* the data provider waits for buf[0] (resume_data) */
} tg_h2_obj_t;

#define TG_H2_OUT 0
#define TG_H2_IN 1

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


/* What a side receives with: the nghttp2 receive callbacks (the last two
 * may be NULL). */
typedef struct tg_h2_receive {
    nghttp2_on_begin_headers_callback begin_headers;
    nghttp2_on_header_callback header;
    nghttp2_on_frame_recv_callback frame_recv;
    nghttp2_on_data_chunk_recv_callback data_chunk_recv;
    nghttp2_on_stream_close_callback stream_close;
    nghttp2_on_frame_send_callback frame_send;
    nghttp2_on_invalid_frame_recv_callback invalid_frame_recv;
} tg_h2_receive_t;

/* A callback set: the shared send side (below) and r's receive side.
 * NULL when out of memory; the caller deletes it once the session has
 * been made. */
nghttp2_session_callbacks *tg_h2_callbacks(const tg_h2_receive_t *r);

/* Sets the send and send_data callbacks on cb. The session's user_data
 * must be a connection starting with a tg_conn_t (conn.h); a data
 * provider's source.ptr a stream starting with a tg_h2_obj_t. */
void tg_h2_set_send_callbacks(nghttp2_session_callbacks *cb);

/* The read_callback of a data provider over o->buf[0]: how many bytes the
 * next DATA frame takes (moved by send_data), NGHTTP2_ERR_DEFERRED while
 * the buffer is empty and more will come (o->deferred set: call
 * nghttp2_session_resume_data when it comes), EOF flagged at the end. */
ssize_t tg_h2_data_read(tg_h2_obj_t *o, size_t length, uint32_t *data_flags);

/* The receive loop. With check set, input goes to nghttp2 one frame at a
 * time and check sees each frame header first (9 bytes; 14 for a
 * PRIORITY frame), returning nonzero to stop before that frame;
 * frame_left keeps the position in the current frame across calls (set it
 * to the preface length for a server). stop (may be NULL) is asked
 * between pieces. Bytes fed are drained from in. Returns 0 or nghttp2's
 * error. */
typedef struct tg_h2_feeder {
    uint64_t frame_left;
    int (*check)(void *arg, const unsigned char *header, size_t payload_len);
    int (*stop)(void *arg);
    void *arg;
} tg_h2_feeder_t;

int tg_h2_feed(nghttp2_session *session, struct evbuffer *in, tg_h2_feeder_t *f);

#endif
