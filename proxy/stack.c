/*
 * proxy/stack.c — the gateway's protocol stack. See stack.h.
 */
#include "proxy/stack.h"

#include "proxy/exchange.h"
#include "proxy/fetch.h"
#include "proxy/h1_server.h"
#include "proxy/h2_client.h"
#include "proxy/h2_server.h"
#include "proxy/negotiate.h"
#include "proxy/probe.h"
#include "proxy/proxy_proto.h"
#include "proxy/redis.h"
#include "proxy/upstream_h1.h"

/* Initialised in this order, torn down in reverse: the upstream
 * connections close before the caches their streams return to, and the
 * Redis store goes last (paused exchanges may hold calls on it). */
static const tg_worker_module_t *const modules[] = {
    &tg_redis_module,
    &tg_exchange_module,
    &tg_negotiate_module,
    &tg_h1_server_module,
    &tg_h2_server_module,
    &tg_upstream_h1_module,
    &tg_h2_client_module,
    &tg_probe_module, /* after the upstream modules: its attempts go first at teardown */
    &tg_fetch_module, /* so do the filters' calls still out (mirrors, background revalidations) */
};

static const struct tg_upstream_ops *const upstream[] = {
    [TG_PROTO_HTTP1] = &tg_upstream_h1_ops,
    [TG_PROTO_H2C] = &tg_upstream_h2_ops,
    [TG_PROTO_H2] = &tg_upstream_h2_ops,
};

const tg_worker_setup_t tg_gateway_stack = {
    .modules = modules,
    .n_modules = sizeof(modules) / sizeof(modules[0]),
    .accept = tg_negotiate_accept,
    .accept_proxy = tg_proxy_accept,
    .upstream = upstream,
};
