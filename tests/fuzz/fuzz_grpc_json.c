/*
 * fuzz_grpc_json: what a gRPC upstream answers to calls the grpc_json
 * filter made from JSON requests (filters/grpcjson.c), through the whole
 * gateway in-process (gw_drive.h): HTTP/2 frames from the upstream — heads,
 * gRPC messages cut anywhere, trailers, trailers-only errors with
 * grpc-status-details-bin, resets, GOAWAY — against a unary call with a
 * body, a server stream as NDJSON and as server-sent events, a client
 * stream from NDJSON, and a message of every field type
 * (tests/pbjson/transcode.proto). Oracles beyond "no crash, no leak":
 * every connection is gone once the peers are (gw_drive.h).
 */
#include "gw_drive.h"

#define BODY1 "{\"name\":\"xy\",\"count\":2}"
#define BODY2 "{\"name\":\"a\"}\n{\"name\":\"b\"}"
#define BODY3 "{\"scalars\":{\"fInt64\":\"5\",\"fBytes\":\"AQI=\"},\"optEnum\":\"RED\",\"wellKnown\":{\"timestamp\":\"1970-01-01T00:00:01Z\"}}"
#define LEN(s) (sizeof(s) - 1)
#define STR2(x) #x
#define STR(x) STR2(x)

static const char requests[] =
    "POST /v1/echo HTTP/1.1\r\nHost: fuzz\r\ncontent-type: application/json\r\ncontent-length: " STR(23) "\r\n\r\n" BODY1
    "GET /v1/echo/bob/stream?count=2 HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    "GET /v1/echo/ev/stream HTTP/1.1\r\nHost: fuzz\r\nAccept: text/event-stream\r\n\r\n"
    "POST /tg.test.Echo/Collect HTTP/1.1\r\nHost: fuzz\r\ncontent-length: " STR(25) "\r\n\r\n" BODY2
    "POST /v1/things HTTP/1.1\r\nHost: fuzz\r\ncontent-length: " STR(107) "\r\n\r\n" BODY3;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        _Static_assert(LEN(BODY1) == 23 && LEN(BODY2) == 25 && LEN(BODY3) == 107, "content-lengths");
        gw_init_routes("    protocol: h2c\n    max_concurrent_streams: 8\n",
                       "  - name: json\n"
                       "    match: { path_prefix: /v1 }\n"
                       "    cluster: up\n"
                       "    filters: [{ grpc_json: { descriptors: '" TG_PBJSON_SET "', max_message_bytes: 4KiB, max_depth: 16 } }]\n"
                       "  - name: json-auto\n"
                       "    match: { path_prefix: /tg.test.Echo }\n"
                       "    cluster: up\n"
                       "    filters: [{ grpc_json: { descriptors: '" TG_PBJSON_SET "' } }]\n");
        ready = 1;
    }
    if (size > 65536)
        return 0;
    gw_run((const uint8_t *)requests, sizeof(requests) - 1, 2, data, size);
    return 0;
}
