/*
 * fuzz_reflect: what an upstream answers to gRPC server reflection
 * (filters/reflect.h), round after round, and the descriptors it makes
 * (filters/pbdesc.h) with the google.api.http templates they carry
 * (filters/httprule.h) and the schemas /-/openapi.json writes of them
 * (filters/pbschema.h): the path from a hostile upstream's bytes to the
 * routes grpc_json would serve and describe.
 *
 * Input: one byte of flags (bit 0: the services are given, so the list
 * round is skipped), then each round's answer as a 3-byte big-endian
 * length and that many bytes. Oracles beyond "no crash, no leak": the
 * rounds end (bounded), a set that is made holds exactly the files
 * gathered, and the OpenAPI document is JSON whatever the names hold.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "filters/httprule.h"
#include "filters/openapi.h"
#include "filters/pbdesc.h"
#include "filters/pbschema.h"
#include "filters/reflect.h"
#include "proxy/base/json.h"
#include "proxy/base/pb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const given[] = { "tg.test.Echo" };
    tg_reflect_t r;
    if (tg_reflect_init(&r, given, data[0] & 1) < 0)
        abort();
    size_t at = 1;
    char why[256];
    uint8_t *body;
    size_t len;
    int rc, rounds = 0;
    while ((rc = tg_reflect_next(&r, &body, &len, why, sizeof(why))) > 0) {
        free(body);
        if (++rounds > TG_REFLECT_MAX_ROUNDS)
            abort(); /* next() must have refused by now */
        if (size - at < 3)
            break;
        size_t n = (size_t)data[at] << 16 | (size_t)data[at + 1] << 8 | data[at + 2];
        at += 3;
        if (n > size - at)
            n = size - at;
        rc = tg_reflect_answer(&r, data + at, n, why, sizeof(why));
        at += n;
        if (rc < 0)
            break;
    }
    if (rc == 0) {
        uint8_t *set;
        size_t set_len;
        if (tg_reflect_set(&r, &set, &set_len) < 0)
            abort();
        tg_pb_reader_t rd = tg_pb_reader(set, set_len);
        tg_pb_field_t f;
        size_t files = 0;
        while (tg_pb_next(&rd, &f) > 0)
            files++;
        if (files != r.n_files)
            abort();
        tg_pbd_pool_t *pool = tg_pbd_pool_new(set, set_len, why, sizeof(why));
        tg_openapi_t *doc = tg_openapi_new();
        struct evbuffer *ref = evbuffer_new();
        if (doc == NULL || ref == NULL)
            abort();
        for (size_t i = 0; pool != NULL && i < pool->n_services; i++)
            for (size_t j = 0; j < pool->services[i]->n_methods; j++) {
                const tg_pbd_method_t *m = &pool->services[i]->methods[j];
                for (size_t k = 0; k < m->n_rules; k++)
                    tg_http_template_free(tg_http_template_parse(m->rules[k].path, why, sizeof(why)));
                /* the messages' schemas, as /-/openapi.json would write them */
                if (tg_pbs_message(doc, ref, m->input, j & 1) < 0 || tg_pbs_message(doc, ref, m->output, 0) < 0)
                    abort();
                if (tg_openapi_op(doc, m->path, "post", "{}", 2) < 0)
                    abort();
            }
        /* whatever the descriptors' names hold, the document is JSON */
        struct evbuffer *out = evbuffer_new();
        tg_openapi_render(doc, out, "fuzz");
        tg_arena_t a;
        tg_arena_init(&a);
        tg_json_t parsed;
        if (tg_json_parse((const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out), &a, &parsed) < 0)
            abort();
        tg_arena_free(&a);
        evbuffer_free(out);
        evbuffer_free(ref);
        tg_openapi_free(doc);
        tg_pbd_pool_free(pool);
        free(set);
    }
    tg_reflect_free(&r);
    return 0;
}
