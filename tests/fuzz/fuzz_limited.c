/*
 * fuzz_limited: keys a client chooses (a header's bytes, in a rate_limit,
 * quota or concurrency_limit key) through the refusal recorder the status
 * page reads (filters/limited.h). Byte 0 picks how keys are shown; the
 * rest is keys separated by 0xff, each noted on the worker its first byte
 * names, at a clock that moves with the input. Oracles beyond "no crash":
 * the listing is JSON; each key shown is printable ASCII of at most 71
 * bytes; a hashed key is "hash:" and 12 hex digits; at most TG_LIMITED_TOP
 * rows, most refusals first.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/limited.h"
#include "proxy/base/arena.h"
#include "proxy/base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    tg_show_keys_t show = (tg_show_keys_t)(data[0] % 3);
    tg_limited_t *l = tg_limited_new(show);
    if (l == NULL)
        abort();
    uint64_t now = 1000000;
    size_t start = 1;
    for (size_t i = 1; i <= size; i++) {
        if (i < size && data[i] != 0xff)
            continue;
        const char *key = (const char *)data + start;
        size_t len = i - start;
        tg_limited_note(l, len ? data[start] : 0, key, len, len > 3 ? "plan" : NULL, now);
        now += len * 97; /* some keys fall out of the minute */
        start = i + 1;
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "{");
    tg_limited_json(l, b, now);
    evbuffer_add_printf(b, "}");
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t doc;
    size_t n = evbuffer_get_length(b);
    if (tg_json_parse((const char *)evbuffer_pullup(b, -1), n, &a, &doc) < 0)
        abort();
    const tg_json_t *rows = tg_json_get(&doc, "limited");
    if (rows == NULL || rows->t != TG_JSON_ARR || rows->n > TG_LIMITED_TOP)
        abort();
    for (size_t i = 0; i < rows->n; i++) {
        const char *k = tg_json_get_str(&rows->items[i], "key");
        const tg_json_t *r = tg_json_get(&rows->items[i], "refusals");
        if (k == NULL || strlen(k) > 71 || r == NULL || (i > 0 && r->num > tg_json_get(&rows->items[i - 1], "refusals")->num))
            abort();
        for (const char *c = k; *c; c++)
            if (*c < 0x20 || *c > 0x7e)
                abort();
        if (show == TG_SHOW_KEYS_HASH && (strlen(k) != 17 || strncmp(k, "hash:", 5) != 0 ||
                                          strspn(k + 5, "0123456789abcdef") != 12))
            abort();
    }
    tg_arena_free(&a);
    evbuffer_free(b);
    tg_limited_unref(l);
    return 0;
}
