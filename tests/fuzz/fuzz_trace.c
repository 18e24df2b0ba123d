/*
 * fuzz_trace: a client's traceparent header. Whatever parses must format
 * back to a valid version-00 value with the same trace id and flags.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    tg_trace_ctx_t t, back;
    if (tg_traceparent_parse(s, &t) == 0) {
        memcpy(t.span_id, t.parent_id, 8);
        char out[56];
        tg_traceparent_format(&t, out);
        if (strlen(out) != 55 || tg_traceparent_parse(out, &back) < 0 ||
            memcmp(back.trace_id, t.trace_id, 16) != 0 || back.flags != t.flags ||
            memcmp(back.parent_id, t.span_id, 8) != 0)
            abort();
    }
    free(s);
    return 0;
}
