/*
 * proxy/h2mem.h — the nghttp2_mem a worker's nghttp2 sessions use: their
 * allocations (stream objects, header buffers, outbound items, bursts of
 * them with a hundred streams in flight) go through the worker's block
 * cache (proxy/base/mem.h), without locks: a worker's sessions are only
 * ever used on its thread.
 */
#ifndef TG_PROXY_H2MEM_H
#define TG_PROXY_H2MEM_H

#include <nghttp2/nghttp2.h>

#include "proxy/base/mem.h"

/* Fills mem so that it allocates from m (both live as long as the sessions). */
void tg_h2mem_init(nghttp2_mem *mem, tg_mem_t *m);

#endif
