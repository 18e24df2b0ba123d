/*
 * fuzz_grpcweb: a gRPC-Web-text request body (client bytes) through the
 * streaming base64 decoder, cut where the first byte says; and any bytes
 * encoded then decoded must come back unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/grpcweb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t cut = data[0] % size;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    uint8_t *out = malloc(len + 8); /* the round trip decodes len bytes back */
    char *enc = malloc((len + 2) / 3 * 4 + 4);
    if (out == NULL || enc == NULL)
        goto done;
    char carry[4];
    unsigned nc = 0;
    long a = tg_grpcweb_b64_decode(in, cut < len ? cut : len, out, carry, &nc);
    if (a >= 0 && cut < len)
        tg_grpcweb_b64_decode(in + cut, len - cut, out + a, carry, &nc);
    size_t el = tg_grpcweb_b64_encode((const uint8_t *)in, len, enc);
    nc = 0;
    long back = tg_grpcweb_b64_decode(enc, el, out, carry, &nc);
    if (back != (long)len || nc != 0 || memcmp(out, in, len) != 0)
        abort();
done:
    free(out);
    free(enc);
    return 0;
}
