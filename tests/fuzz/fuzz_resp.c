/* Fuzz target: RESP replies (what a Redis server, or something posing as
 * one, sends the gateway). The whole input is parsed as a stream of
 * pipelined replies; every prefix of it must either ask for more or reach
 * the same verdict as the whole, and a reply, once decoded, must be
 * decoded identically from the input cut right after it. The scanner
 * (tg_resp_scan), fed the same bytes in pieces of growing size across two
 * segments, finds exactly where each decoded reply ends, refuses it with
 * a bound one byte short, and never ends a reply where the decoder would
 * need more. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/base/resp.h"

static int same(const tg_resp_value_t *x, const tg_resp_value_t *y)
{
    if (x->type != y->type || x->len != y->len || x->n != y->n || x->integer != y->integer)
        return 0;
    if ((x->type == TG_RESP_BULK || x->type == TG_RESP_STRING || x->type == TG_RESP_ERROR) &&
        memcmp(x->str, y->str, x->len) != 0)
        return 0;
    for (size_t i = 0; i < x->n; i++)
        if (!same(&x->items[i], &y->items[i]))
            return 0;
    return 1;
}

/* The scanner over p[0..n) arriving in pieces of 1, 2, 3, ... bytes, each
 * time presented as two segments: the reply's length, 0, or -1. */
static long scan_in_pieces(const char *p, size_t n, size_t max)
{
    tg_resp_scan_t s = { 0 };
    size_t have = 0;
    for (size_t piece = 1; have < n; piece++) {
        have = have + piece < n ? have + piece : n;
        size_t from = s.pos, len = have - from, cut = len / 2;
        tg_resp_seg_t segs[2] = { { p + from, cut }, { p + from + cut, len - cut } };
        long r = tg_resp_scan(&s, segs, 2, max);
        if (r != 0)
            return r;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_arena_t a, b;
    tg_arena_init(&a);
    tg_arena_init(&b);
    const char *p = (const char *)data;
    size_t off = 0;
    for (int replies = 0; off < size && replies < 64; replies++) {
        tg_resp_value_t v, w;
        size_t used = 0, used2 = 0;
        tg_resp_result_t r = tg_resp_parse(p + off, size - off, &a, &v, &used);
        if (r != TG_RESP_OK) {
            long end = scan_in_pieces(p + off, size - off, size);
            if (end > 0 && r == TG_RESP_AGAIN && tg_resp_parse(p + off, (size_t)end, &b, &w, &used2) == TG_RESP_AGAIN)
                abort(); /* the scanner ended a reply the decoder still waits on */
            break;
        }
        if (used == 0 || used > size - off)
            abort();
        /* exactly its bytes suffice, and one less does not */
        if (tg_resp_parse(p + off, used, &b, &w, &used2) != TG_RESP_OK || used2 != used || !same(&v, &w))
            abort();
        if (tg_resp_parse(p + off, used - 1, &b, &w, &used2) != TG_RESP_AGAIN)
            abort();
        if (scan_in_pieces(p + off, size - off, size) != (long)used || scan_in_pieces(p + off, used, used - 1) != -2)
            abort();
        off += used;
        tg_arena_reset(&a);
        tg_arena_reset(&b);
    }
    tg_arena_free(&a);
    tg_arena_free(&b);
    return 0;
}
