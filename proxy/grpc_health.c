/*
 * proxy/grpc_health.c — see grpc_health.h.
 */
#include "proxy/grpc_health.h"

#include <string.h>

#include "proxy/base/clock.h"
#include "proxy/base/pb.h"
#include "proxy/router.h"

#define SERVICE "/grpc.health.v1.Health/"

int tg_grpc_health_call(const tg_request_t *req)
{
    size_t sl = sizeof(SERVICE) - 1;
    if (req->method == NULL || strcmp(req->method, "POST") != 0 || req->path_len <= sl ||
        memcmp(req->target, SERVICE, sl) != 0)
        return 0;
    size_t ml = req->path_len - sl;
    if (ml == 5 && memcmp(req->target + sl, "Check", 5) == 0)
        return 1;
    if (ml == 5 && memcmp(req->target + sl, "Watch", 5) == 0)
        return 2;
    return 0;
}

int tg_grpc_health_parse(const uint8_t *body, size_t len, char *out, size_t cap)
{
    out[0] = '\0';
    const uint8_t *msg;
    size_t n;
    if (tg_pb_grpc_unframe(body, len, &msg, &n) < 0) /* one uncompressed message */
        return -1;
    tg_pb_reader_t r = tg_pb_reader(msg, n);
    tg_pb_field_t f;
    int rc;
    while ((rc = tg_pb_next(&r, &f)) > 0) { /* field 1 (service, bytes) is read; others are skipped */
        if (f.num != 1 || f.wire != TG_PB_LEN)
            continue;
        if (f.len >= cap || memchr(f.data, '\0', f.len) != NULL)
            return -1;
        memcpy(out, f.data, f.len);
        out[f.len] = '\0';
    }
    return rc;
}

static int cluster_usable(const tg_snapshot_t *snap, tg_health_t *h, size_t i, uint64_t now)
{
    const tg_cluster_t *c = &snap->clusters->clusters[i];
    for (size_t j = 0; j < c->n_endpoints; j++)
        if (tg_health_usable(h, c->endpoints[j].slot, now))
            return 1;
    return 0;
}

/* Some cluster the route sends to has a usable endpoint. */
static int route_serving(const tg_snapshot_t *snap, tg_health_t *h, const tg_route_conf_t *r)
{
    uint64_t now = tg_clock_ms();
    if (r->n_backends == 0)
        return cluster_usable(snap, h, r->cluster, now);
    for (size_t b = 0; b < r->n_backends; b++)
        if (cluster_usable(snap, h, r->backends[b].cluster, now))
            return 1;
    return 0;
}

int tg_grpc_health_status(const tg_snapshot_t *snap, tg_health_t *h, size_t listener, const tg_route_conf_t *r,
                          const tg_request_t *req, const char *service, int draining, tg_arena_t *scratch)
{
    if (draining)
        return TG_HEALTH_NOT_SERVING;
    if (service[0] != '\0') { /* where a call of the service would go: "/service/", the asking call's headers */
        size_t sl = strlen(service);
        char *target = tg_arena_alloc(scratch, sl + 3);
        if (target == NULL)
            return TG_HEALTH_UNKNOWN;
        target[0] = '/';
        memcpy(target + 1, service, sl);
        target[sl + 1] = '/';
        target[sl + 2] = '\0';
        tg_request_t call = *req;
        call.target = target;
        call.path_len = sl + 2;
        if ((r = tg_router_find(snap->router, listener, &call, scratch)) == NULL)
            return TG_HEALTH_SERVICE_UNKNOWN;
    }
    return route_serving(snap, h, r) ? TG_HEALTH_SERVING : TG_HEALTH_NOT_SERVING;
}

size_t tg_grpc_health_message(int status, uint8_t out[7])
{
    out[0] = 0; /* not compressed */
    out[1] = out[2] = out[3] = 0;
    out[4] = 2; /* field 1, varint: the status */
    out[5] = 0x08;
    out[6] = (uint8_t)status;
    return 7;
}
