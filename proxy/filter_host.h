/*
 * proxy/filter_host.h — the process's side of filters/host.h: filters'
 * HTTP calls run as fetches (fetch.h) on the workers, round-robin, on the
 * snapshot in force when they were asked for, and come back to the main
 * loop; the table of shared objects lives here too.
 */
#ifndef TG_PROXY_FILTER_HOST_H
#define TG_PROXY_FILTER_HOST_H

#include "filters/host.h"
#include "proxy/worker.h"

/* Where the host finds the process's state (main thread). */
typedef struct tg_filter_host_src {
    tg_snapshot_t *(*snapshot)(void *arg);         /* the one in force */
    tg_worker_t *(*worker)(void *arg, unsigned i); /* NULL past the last (or before they run) */
    void *arg;
} tg_filter_host_src_t;

tg_filter_host_t *tg_filter_host_new(tg_loop_t *loop, const tg_filter_host_src_t *src);
/* The workers are gone: calls still pending get their callback (an
 * error), and shared objects released from now on go at once. Main
 * thread, before the loop is freed. */
void tg_filter_host_finish(tg_filter_host_t *h);
void tg_filter_host_free(tg_filter_host_t *h);

#endif
