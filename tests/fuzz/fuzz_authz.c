/* Fuzz target: the CheckResponse an ext_auth `api: grpc` service sends
 * (filters/authz_proto.c reads it; nothing else does before the allow-
 * lists). Whatever the bytes: no read past them; an answer taken has
 * header names that are lower-case tokens and values without control
 * bytes (what could split a header upstream); and a CheckResponse written
 * the standard way from the input's bytes reads back as written.
 * Input: the message (no gRPC prefix). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/authz_proto.h"
#include "proxy/base/arena.h"
#include "proxy/base/pb.h"

static void check_pairs(const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = v[2 * i], *val = v[2 * i + 1];
        if (*name == '\0')
            abort();
        for (const char *p = name; *p; p++)
            if (!tg_http_is_tchar((unsigned char)*p) || (*p >= 'A' && *p <= 'Z'))
                abort();
        for (const unsigned char *p = (const unsigned char *)val; *p; p++)
            if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_arena_t a;
    tg_arena_init(&a);
    uint8_t *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any read past them */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    tg_authz_answer_t *ans = malloc(sizeof(*ans));
    if (ans != NULL && tg_authz_read_check_response(&a, copy, size, ans) == 0) {
        check_pairs(ans->headers, ans->n_headers);
        check_pairs(ans->client, ans->n_client);
        if (ans->http_status != 0 && (ans->http_status < 100 || ans->http_status > 599))
            abort();
    }
    free(copy);

    /* OK with one header: key = the input's first tchar run, value = the
     * rest without control bytes; it reads back lower-cased */
    char key[32], val[64];
    size_t k = 0, v = 0, i = 0;
    for (; i < size && k < sizeof(key) - 1 && tg_http_is_tchar(data[i]); i++)
        key[k++] = (char)data[i];
    for (; i < size && v < sizeof(val) - 1; i++)
        if (data[i] >= 0x20 && data[i] != 0x7f)
            val[v++] = (char)data[i];
    key[k] = val[v] = '\0';
    if (k > 0 && ans != NULL) {
        tg_pb_writer_t w = { 0 };
        size_t st = tg_pb_begin(&w, 1);
        tg_pb_uint(&w, 1, 0);
        tg_pb_end(&w, st);
        size_t ok = tg_pb_begin(&w, 3), hvo = tg_pb_begin(&w, 2), hv = tg_pb_begin(&w, 1);
        tg_pb_str(&w, 1, key);
        tg_pb_str(&w, 2, val);
        tg_pb_end(&w, hv);
        tg_pb_end(&w, hvo);
        tg_pb_str(&w, 5, key);
        tg_pb_end(&w, ok);
        if (w.failed || tg_authz_read_check_response(&a, w.p, w.len, ans) != 0 || ans->code != 0 ||
            ans->n_headers != 1 || strlen(ans->headers[0]) != k || strcmp(ans->headers[1], val) != 0 ||
            ans->n_remove != 1 || strcmp(ans->remove[0], ans->headers[0]) != 0)
            abort();
        for (size_t j = 0; j < k; j++)
            if (ans->headers[0][j] != (key[j] >= 'A' && key[j] <= 'Z' ? (key[j] | 0x20) : key[j]))
                abort();
        tg_pb_writer_free(&w);
    }
    free(ans);
    tg_arena_free(&a);
    return 0;
}
