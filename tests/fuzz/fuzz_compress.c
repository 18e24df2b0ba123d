/*
 * fuzz_compress: a client's Accept-Encoding (and a Content-Type) through
 * the compress filter's negotiation. The answer must be one of the offered
 * encodings or -1, whatever the bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filters/compress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    static const char *const offer[] = { "zstd", "br", "gzip" };
    for (size_t n = 1; n <= 3; n++) {
        int r = tg_compress_negotiate(s, offer + 3 - n, n);
        if (r < -1 || r >= (int)n)
            abort();
    }
    char *patterns[] = { "text/*", "application/*+json", "application/json", "*" };
    tg_compress_type_allowed(s, patterns, 4);
    free(s);
    return 0;
}
