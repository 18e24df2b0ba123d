/* Fuzz target: the upstream HTTP/1 response reader (head, then body to
 * EOF), as if for a GET and for a HEAD request; chunked trailers are kept
 * (as for a client that takes them) and checked to be well-formed. */
#include "h1_drive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int head_req = 0; head_req < 2; head_req++) {
        struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
        tg_arena_t a;
        tg_arena_init(&a);
        evbuffer_add(in, data, size);
        tg_h1_reader_t r;
        tg_response_t resp;
        memset(&resp, 0, sizeof(resp));
        tg_h1_reader_init(&r, TG_H1_RESPONSE);
        if (tg_h1_read_response_head(&r, in, 8192, &a, &resp, head_req) == TG_H1_OK) {
            int fin = 0;
            h1_check_fields(&resp.headers);
            r.trailers = &resp.trailers;
            for (int i = 0; i < 64 && !fin; i++) {
                if (tg_h1_read_body(&r, in, out, 1000, 1, &fin) < 0)
                    break;
                evbuffer_drain(out, evbuffer_get_length(out));
            }
            h1_check_fields(&resp.trailers); /* every kept trailer is a usable field */
        }
        tg_arena_free(&a);
        evbuffer_free(in);
        evbuffer_free(out);
    }
    return 0;
}
