/*
 * fuzz_cache: the header values the cache filter reads (filters/cache_rfc.h)
 * — Cache-Control from a client or an upstream, HTTP-dates, Age, Range,
 * If-None-Match and If-Range — and the Vary'd values of a request. The
 * first byte picks the reader; the rest is the value. Whatever parses
 * must hold its invariants: directives within their bounds, a date that
 * formats back to itself, a range inside the representation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/cache_rfc.h"
#include "filters/cache_store.h"

static void check_delta(int64_t v)
{
    if (v != TG_CC_ABSENT && (v < 0 || v > TG_CC_DELTA_MAX))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned which = data[0] % 6;
    const char *v = (const char *)data + 1;
    size_t len = size - 1;
    switch (which) {
    case 0: {
        tg_cc_t cc;
        tg_cc_init(&cc);
        tg_cc_parse(&cc, v, len);
        tg_cc_parse(&cc, v, len / 2); /* a second field line */
        check_delta(cc.max_age);
        check_delta(cc.s_maxage);
        check_delta(cc.stale_while_revalidate);
        check_delta(cc.stale_if_error);
        check_delta(cc.max_stale);
        check_delta(cc.min_fresh);
        int64_t life = tg_cache_lifetime(&cc, 200, 1000, -1, 0, 3600);
        if (life < 0 || life > TG_CC_DELTA_MAX)
            abort();
        (void)tg_cache_may_store(200, &cc, 0, 1);
        break;
    }
    case 1: {
        int64_t t = tg_http_date_parse(v, len);
        if (t < -1)
            abort();
        if (t >= 0) {
            char out[30];
            tg_http_date_format(t, out);
            if (strlen(out) != 29 || tg_http_date_parse(out, 29) != t)
                abort();
        }
        break;
    }
    case 2: {
        int64_t d = tg_http_delta_parse(v, len);
        if (d < -1 || d > TG_CC_DELTA_MAX)
            abort();
        break;
    }
    case 3: {
        uint64_t first = 0, last = 0, sz = len ? (uint64_t)(unsigned char)v[0] * 977 : 0;
        int r = tg_range_parse(v, len, sz, &first, &last);
        if (r < -1 || r > 1 || (r == 1 && (first > last || last >= sz)))
            abort();
        break;
    }
    case 4: {
        size_t half = len / 2;
        (void)tg_etag_match_weak(v, len, v + half, len - half);
        (void)tg_etag_match_weak(v, len, NULL, 0);
        if (tg_etag_equal_strong(v, half, v + half, len - half) != tg_etag_equal_strong(v + half, len - half, v, half))
            abort();
        break;
    }
    case 5: { /* the Vary'd values of a request: names from the first half, one header from the rest */
        size_t half = len / 2;
        char *vary = malloc(half + 1), *hv = malloc(len - half + 1);
        if (vary == NULL || hv == NULL) {
            free(vary);
            free(hv);
            return 0;
        }
        memcpy(vary, v, half);
        vary[half] = '\0';
        memcpy(hv, v + half, len - half);
        hv[len - half] = '\0';
        tg_header_t h = { "accept", 6, hv, strlen(hv) };
        tg_headers_t req = { &h, 1, 1 };
        char out[TG_CACHE_VARIANT_MAX];
        int n = tg_cache_variant(vary, &req, out);
        if (n < -1 || n > TG_CACHE_VARIANT_MAX)
            abort();
        free(vary);
        free(hv);
        break;
    }
    }
    return 0;
}
