/*
 * proxy/redis.h — the Redis store of a worker: a RESP client on the
 * worker's own loop, behind the store interface filters count through
 * (filters/store.h). One client per worker, made from the config's
 * `redis:` section (docs/configuration.md, docs/deployment.md):
 *
 *  - `pool` connections per Redis node (TCP, or TLS through tg_sock),
 *    AUTH first when a password is set; every call of the worker's
 *    requests goes down one of them, pipelined: commands queue in the
 *    socket's output and are written once per loop iteration;
 *  - replies come back in order; each call has a deadline (`timeout`)
 *    after which its request is answered without it (on_store_error) and
 *    the late reply is read and dropped; a connection whose replies stop
 *    altogether is closed;
 *  - a lost connection fails its calls at once and is reconnected with
 *    exponential backoff and jitter; meanwhile calls fail without waiting;
 *  - scripts are called by EVALSHA and loaded (SCRIPT LOAD, then the call
 *    again) when the server answers NOSCRIPT;
 *  - Redis Cluster: the slot map comes from CLUSTER SLOTS; MOVED updates
 *    it (and asks for a fresh map), ASK is followed once with ASKING;
 *  - errors are counted by kind and logged at most once a second.
 *
 * A reload with the same `redis:` section keeps the client and its
 * connections; a changed one starts a new client, and the old one serves
 * the calls it has until they are answered or time out, then closes; its
 * memory goes once no exchange holds it (tg_redis_store_acquire).
 */
#ifndef TG_PROXY_REDIS_H
#define TG_PROXY_REDIS_H

#include "filters/store.h"
#include "proxy/worker.h"

/* TG_WMOD_REDIS */
extern const tg_worker_module_t tg_redis_module;

/* The worker's store, or NULL when no `redis:` section is configured,
 * with a hold on it: a store a reload replaced stays allocated (failing
 * new calls) until its last holder lets go. Worker thread. */
tg_store_t *tg_redis_store_acquire(tg_worker_t *w);
/* Lets go of a store from tg_redis_store_acquire (NULL: nothing). */
void tg_redis_store_release(tg_store_t *s);

/* Redis's hash slot of a key (CRC16 of its {hash tag}, or of all of it). */
unsigned tg_redis_key_slot(const char *key, size_t len);

#endif
