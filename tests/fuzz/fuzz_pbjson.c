/*
 * fuzz_pbjson: what an upstream (protobuf) and a client (JSON) send
 * through the JSON <-> protobuf codec (filters/pbjson.h), driven by the
 * descriptors of tests/pbjson/transcode.proto (compiled at build time).
 * Byte 0: which way, and the message type. Oracles beyond "no crash, no
 * hang": whatever becomes JSON is JSON that reads back, and its canonical
 * form is a fixed point — JSON -> protobuf -> JSON gives the same text
 * (the round trip the issue asks of the codec); whatever JSON becomes
 * protobuf becomes JSON again, and that JSON round-trips the same way.
 */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/pbjson.h"

static tg_pbd_pool_t *pool;

static tg_pbd_pool_t *load(void)
{
    FILE *f = fopen(TG_PBJSON_SET, "rb");
    if (f == NULL)
        abort();
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    char why[256];
    tg_pbd_pool_t *p = tg_pbd_pool_new(buf, n, why, sizeof(why));
    if (p == NULL) {
        fprintf(stderr, "fuzz_pbjson: %s: %s\n", TG_PBJSON_SET, why);
        abort();
    }
    return p;
}

/* JSON text of msg, or NULL (refused). */
static char *to_json(const tg_pbd_message_t *m, const uint8_t *msg, size_t len, size_t *out_len)
{
    struct evbuffer *b = evbuffer_new();
    char why[256];
    char *s = NULL;
    if (tg_pbj_to_json(pool, m, msg, len, NULL, b, why, sizeof(why)) == 0) {
        *out_len = evbuffer_get_length(b);
        s = malloc(*out_len + 1);
        evbuffer_copyout(b, s, *out_len);
        s[*out_len] = '\0';
    }
    evbuffer_free(b);
    return s;
}

/* JSON the codec wrote must read back and write the same again. */
static void fixed_point(const tg_pbd_message_t *m, const char *json, size_t len)
{
    tg_pb_writer_t w = { 0 };
    char why[256];
    if (tg_pbj_from_json(pool, m, json, len, NULL, &w, why, sizeof(why)) < 0) {
        /* the one form written that is not read: a map key holding NUL */
        if (strstr(json, "\\u0000") == NULL) {
            fprintf(stderr, "fuzz_pbjson: its own JSON refused: %s\n%.*s\n", why, (int)len, json);
            abort();
        }
        tg_pb_writer_free(&w);
        return;
    }
    size_t len2;
    char *again = to_json(m, w.p, w.len, &len2);
    if (again == NULL || len2 != len || memcmp(again, json, len) != 0) {
        fprintf(stderr, "fuzz_pbjson: not a fixed point:\n%.*s\n%s\n", (int)len, json, again ? again : "(refused)");
        abort();
    }
    free(again);
    tg_pb_writer_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = { "tg.test.Everything", "tg.test.WellKnown", "tg.test.Maps",
                                         "google.protobuf.Value", "google.protobuf.Any", "tg.test.Scalars" };
    if (pool == NULL)
        pool = load();
    if (size < 1)
        return 0;
    const tg_pbd_message_t *m = tg_pbd_message(pool, types[(data[0] >> 1) % 6]);
    if (m == NULL)
        abort();
    if (data[0] & 1) { /* protobuf from an upstream */
        size_t len;
        char *json = to_json(m, data + 1, size - 1, &len);
        if (json != NULL)
            fixed_point(m, json, len);
        free(json);
    } else { /* JSON from a client */
        tg_pb_writer_t w = { 0 };
        char why[256];
        if (tg_pbj_from_json(pool, m, (const char *)data + 1, size - 1, NULL, &w, why, sizeof(why)) == 0) {
            size_t len;
            char *json = to_json(m, w.p, w.len, &len);
            if (json == NULL) {
                fprintf(stderr, "fuzz_pbjson: JSON taken, its protobuf refused\n");
                abort();
            }
            fixed_point(m, json, len);
            free(json);
        }
        tg_pb_writer_free(&w);
    }
    return 0;
}
