/* Fuzz target: the downstream HTTP/2 server session and the exchange behind
 * it, with an HTTP/1 upstream the driver plays (gw_drive.h). Input: two
 * bytes giving the length of the upstream's answer, that answer (an
 * HTTP/1.1 response, sent on every upstream connection once the gateway
 * wrote its request), then the client's frames; the client preface is
 * added in front of them. Two clients send the same frames. */
#include "gw_drive.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    static uint8_t down[65536 + 24];
    if (!ready) {
        gw_init("    protocol: http1\n    pool_size: 4\n");
        ready = 1;
    }
    if (size < 2)
        return 0;
    size_t up_len = (size_t)data[0] << 8 | data[1];
    if (up_len > size - 2)
        up_len = size - 2;
    const uint8_t *up = data + 2;
    size_t down_len = size - 2 - up_len;
    if (down_len > sizeof(down) - 24)
        down_len = sizeof(down) - 24;
    memcpy(down, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    memcpy(down + 24, up + up_len, down_len);
    gw_run(down, down_len + 24, 2, up, up_len);
    return 0;
}
