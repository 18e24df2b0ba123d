/*
 * proxy/h2mem.c — see h2mem.h.
 */
#include "proxy/h2mem.h"

static void *h2_malloc(size_t size, void *ud)
{
    return tg_mem_alloc(ud, size);
}

static void h2_free(void *ptr, void *ud)
{
    tg_mem_free(ud, ptr);
}

static void *h2_calloc(size_t n, size_t size, void *ud)
{
    return tg_mem_calloc(ud, n, size);
}

static void *h2_realloc(void *ptr, size_t size, void *ud)
{
    return tg_mem_realloc(ud, ptr, size);
}

void tg_h2mem_init(nghttp2_mem *mem, tg_mem_t *m)
{
    *mem = (nghttp2_mem){ m, h2_malloc, h2_free, h2_calloc, h2_realloc };
}
