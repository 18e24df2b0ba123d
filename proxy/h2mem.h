/*
 * proxy/h2mem.h — the allocator a worker's nghttp2 sessions use. nghttp2
 * allocates per stream and per frame (stream objects, header buffers,
 * outbound items); with a hundred streams in flight those bursts overflow
 * the C library's small per-thread caches. This keeps freed blocks in
 * per-worker lists by power-of-two size class and hands them out again,
 * bounded in bytes, without locks: a worker's sessions are only ever used
 * on its thread.
 */
#ifndef TG_PROXY_H2MEM_H
#define TG_PROXY_H2MEM_H

#include <nghttp2/nghttp2.h>

typedef struct tg_h2mem tg_h2mem_t;

/* NULL on allocation failure. */
tg_h2mem_t *tg_h2mem_new(void);
/* Frees the cached blocks; every session using it must be gone. */
void tg_h2mem_free(tg_h2mem_t *m);
/* The nghttp2_mem to pass to nghttp2_session_*_new3 (lives as long as m). */
nghttp2_mem *tg_h2mem_nghttp2(tg_h2mem_t *m);

#endif
