/* Fuzz target: the grpc.health.v1 HealthCheckRequest a client sends to a
 * route with grpc_health (proxy/grpc_health.c reads it before anything
 * else does). Whatever the bytes: no read past them, a service name that
 * fits and is NUL-terminated, and a name read back from a request built
 * the standard way (one framed message, field 1) is the name that went
 * in. Input: the body as the client sent it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/grpc_health.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[64];
    uint8_t *copy = malloc(size ? size : 1); /* exactly size bytes: ASan sees any read past them */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    if (tg_grpc_health_parse(copy, size, out, sizeof(out)) == 0 && strlen(out) >= sizeof(out))
        abort();
    free(copy);
    /* the input's first bytes as a service name, framed and read back */
    size_t n = size < 40 ? size : 40;
    uint8_t msg[5 + 2 + 40];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (data[i] != 0)
            msg[7 + k++] = data[i];
    msg[0] = 0;
    msg[1] = msg[2] = msg[3] = 0;
    msg[4] = (uint8_t)(k ? k + 2 : 0);
    msg[5] = 0x0a;
    msg[6] = (uint8_t)k;
    if (tg_grpc_health_parse(msg, k ? 7 + k : 5, out, sizeof(out)) != 0 || strlen(out) != k ||
        memcmp(out, msg + 7, k) != 0)
        abort();
    uint8_t resp[7];
    if (tg_grpc_health_message(size ? data[0] & 3 : 0, resp) != 7 || resp[4] != 2)
        abort();
    return 0;
}
