/*
 * proxy/grpc_health.h — grpc.health.v1.Health answered by tollgate for the
 * services behind it (a route with `grpc_health: true`), so Kubernetes
 * gRPC probes and gRPC clients' health checking work through the gateway:
 * a service's status is SERVING while the cluster its calls would be
 * routed to has a usable endpoint (health checks, outlier ejection),
 * NOT_SERVING when it has none or the gateway is draining; the empty
 * service ("the server") is the asking route's own cluster(s). An unknown
 * service is NOT_FOUND for Check and SERVICE_UNKNOWN for Watch, as the
 * protocol says. The messages are built and read here; the exchange
 * (exchange.c) drives the call. Pure functions of a snapshot and the
 * health table; any worker.
 */
#ifndef TG_PROXY_GRPC_HEALTH_H
#define TG_PROXY_GRPC_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "proxy/base/arena.h"
#include "proxy/base/http.h"
#include "proxy/health.h"
#include "proxy/snapshot.h"

/* HealthCheckResponse.ServingStatus */
enum { TG_HEALTH_UNKNOWN = 0, TG_HEALTH_SERVING = 1, TG_HEALTH_NOT_SERVING = 2, TG_HEALTH_SERVICE_UNKNOWN = 3 };

/* Is req a call of the health service? 1: Check, 2: Watch, 0: no. */
int tg_grpc_health_call(const tg_request_t *req);

/* The service a gRPC-framed HealthCheckRequest asks about (into out,
 * NUL-terminated, "" when absent). -1 if the body is not one message of
 * that type or the name is longer than cap - 1. */
int tg_grpc_health_parse(const uint8_t *body, size_t len, char *out, size_t cap);

/* The status of service asked by req through route r on listener: the
 * clusters of the route a call of that service would take (routed as
 * req, its path "/service/"), or of r itself for ""; SERVICE_UNKNOWN when
 * no route takes it; NOT_SERVING while draining. */
int tg_grpc_health_status(const tg_snapshot_t *snap, tg_health_t *h, size_t listener, const tg_route_conf_t *r,
                          const tg_request_t *req, const char *service, int draining, tg_arena_t *scratch);

/* A gRPC-framed HealthCheckResponse { status }: 7 bytes into out. */
size_t tg_grpc_health_message(int status, uint8_t out[7]);

#endif
