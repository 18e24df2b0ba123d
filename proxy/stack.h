/*
 * proxy/stack.h — the protocol stack a gateway worker runs: the modules
 * that keep per-worker state (exchanges, the HTTP/2 server's streams, the
 * HTTP/1 upstream pools, the HTTP/2 upstream sessions) and the entry
 * points accepted sockets go to (the HTTP/1 server, which hands HTTP/2 on;
 * the PROXY protocol reader in front of it). The worker sees the
 * protocols only through this table, so the dependencies run one way:
 * stack -> protocol modules -> worker.
 */
#ifndef TG_PROXY_STACK_H
#define TG_PROXY_STACK_H

#include "proxy/worker.h"

extern const tg_worker_setup_t tg_gateway_stack;

#endif
