/* Fuzz target: the downstream HTTP/1 request reader — head parsing, then
 * the body (Content-Length or chunked), fed in two pieces at a split point taken from the input, repeated for pipelined requests. */
#include "h1_drive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t split = data[0] % size;
    data++;
    size--;
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    tg_arena_t a;
    tg_arena_init(&a);
    evbuffer_add(in, data, split < size ? split : size);
    int fed_rest = 0;
    for (int msg = 0; msg < 8; msg++) {
        tg_h1_reader_t r;
        tg_request_t req;
        memset(&req, 0, sizeof(req));
        tg_h1_reader_init(&r, TG_H1_REQUEST);
        r.max_body = 1 << 20;
        tg_h1_result_t res = tg_h1_read_request_head(&r, in, 8192, &a, &req);
        if (res == TG_H1_AGAIN && !fed_rest) {
            evbuffer_add(in, data + split, size - split);
            fed_rest = 1;
            res = tg_h1_read_request_head(&r, in, 8192, &a, &req);
        }
        if (res != TG_H1_OK)
            break;
        h1_check_fields(&req.headers); /* what was accepted is safe to write on */
        if (msg == 0)
            h1_churn_fields(&req.headers, &a, data, size); /* and stays so as the proxy changes it */
        int fin = 0;
        for (int round = 0; round < 4 && !fin; round++) {
            if (tg_h1_read_body(&r, in, out, 4096, fed_rest && round == 3, &fin) < 0)
                goto done;
            evbuffer_drain(out, evbuffer_get_length(out));
            if (!fin && !fed_rest) {
                evbuffer_add(in, data + split, size - split);
                fed_rest = 1;
            }
        }
        if (!fin)
            break;
        tg_arena_reset(&a);
    }
done:
    tg_arena_free(&a);
    evbuffer_free(in);
    evbuffer_free(out);
    return 0;
}
