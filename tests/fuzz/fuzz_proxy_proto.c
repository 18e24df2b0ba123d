/* Fuzz target: the PROXY protocol header parser (v1 text, v2 binary), the
 * first bytes an L4 balancer — or anyone it lets through — sends. Checks
 * that a verdict never reads past what it was given and never changes as
 * more bytes arrive: every prefix of the input must either ask for more or
 * reach the same verdict (the accept stage peeks at growing prefixes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TG_PROXY_MAX_HEADER + 64)
        size = TG_PROXY_MAX_HEADER + 64;
    tg_proxy_header_t whole;
    memset(&whole, 0, sizeof(whole));
    long verdict = tg_proxy_parse(data, size, &whole);
    if (verdict > (long)size)
        abort();
    for (size_t n = 0; n < size; n++) {
        tg_proxy_header_t part;
        memset(&part, 0, sizeof(part));
        long r = tg_proxy_parse(data, n, &part);
        if (r == 0)
            continue;
        if (r != verdict) /* decided early, then differently */
            abort();
        if (r > 0 && (part.local != whole.local || (!part.local && memcmp(&part.src, &whole.src, sizeof(part.src)) != 0)))
            abort();
    }
    return 0;
}
