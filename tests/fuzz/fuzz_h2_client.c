/* Fuzz target: the upstream HTTP/2 client session and the exchange in
 * front of it. The input is everything an h2c upstream sends (its SETTINGS,
 * HEADERS, DATA, trailers, resets, GOAWAY...) on every connection the
 * gateway opens to it (gw_drive.h); the requests are fixed: two HTTP/1.1
 * clients each send a GET, a gRPC call and a WebSocket handshake with a
 * frame after it (pipelined), so that streams of all three kinds share an
 * upstream connection — the WebSocket going as an extended CONNECT when
 * the upstream's SETTINGS allow it. */
#include "gw_drive.h"

static const char requests[] =
    "GET /rest HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    "POST /svc/Method HTTP/1.1\r\nHost: fuzz\r\ncontent-type: application/grpc\r\nte: trailers\r\n"
    "content-length: 10\r\n\r\n\x00\x00\x00\x00\x05hello"
    "GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    "\x81\x85\x01\x02\x03\x04\x69\x67\x6f\x68\x6e";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        gw_init("    protocol: h2c\n    max_concurrent_streams: 8\n");
        ready = 1;
    }
    if (size > 65536)
        return 0;
    gw_run((const uint8_t *)requests, sizeof(requests) - 1, 2, data, size);
    return 0;
}
