/*
 * proxy/process.c — see process.h.
 */
#include "proxy/process.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libgen.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "filters/filter.h"
#include "filters/openapi.h"
#include "proxy/activation.h"
#include "proxy/admin.h"
#include "proxy/base/clock.h"
#include "proxy/health.h"
#include "proxy/history.h"
#include "proxy/base/http.h"
#include "proxy/base/log.h"
#include "proxy/base/loop.h"
#include "proxy/ctl.h"
#include "proxy/dns.h"
#include "filters/cache.h"
#include "proxy/filter_host.h"
#include "proxy/metrics.h"
#include "proxy/notify.h"
#include "proxy/snapshot.h"
#include "proxy/sock.h"
#include "proxy/stack.h"
#include "proxy/stats.h"
#include "proxy/syncall.h"
#include "proxy/trace.h"
#include "proxy/status.h"
#include "proxy/worker.h"

/* --watch: changes within this long of each other make one reload. */
#define WATCH_SETTLE_MS 200

typedef struct process {
    const char *path;
    tg_registries_t registry;
    tg_snapshot_t *snap;             /* the current snapshot */
    tg_process_metrics_t pm;
    tg_admin_t *admin;
    tg_health_t *health;             /* shared with the workers */
    tg_dns_t *dns;                   /* endpoint names followed (main thread) */
    tg_filter_host_t *host;          /* what filters get from the process (filter_host.h) */
    tg_worker_t **workers;
    unsigned n_workers;
    struct event_base *base;
    tg_loop_t *loop;                 /* the main thread's timers and deferred calls (base/loop.h) */
    struct event *sig_term, *sig_int, *sig_hup, *sig_usr1;
    tg_timer_t drain_timer;          /* drain_timeout: what is still open then is closed */
    int watch_fd;                    /* inotify, with --watch; else -1 */
    char *watch_name;                /* the config file's name in its directory */
    struct event *watch_ev;
    tg_timer_t watch_timer;          /* a burst of writes makes one reload */
    tg_notify_t notify;              /* systemd's sd_notify, when it is there */
    tg_activation_t activation;      /* listening sockets systemd passed in */
    tg_timer_t watchdog_timer;       /* WATCHDOG=1 at half of WatchdogSec */
    tg_history_t *history;           /* the last 15 minutes, for the status page (with an admin listener) */
    tg_timer_t history_timer;        /* reads the counters into it once a second */
    int draining;
} process_t;

static void print_errors(const tg_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "%s\n", e->msgs[i]);
}

int tg_process_check(const char *path, int dump)
{
    tg_errors_t errs = { 0 };
    tg_snapshot_t *s = tg_snapshot_load(path, NULL, NULL, NULL, &errs); /* names are not looked up */
    tg_filter_prep_t prep = s ? tg_syncall_prep(s) : (tg_filter_prep_t){ 0 };
    if (s != NULL && tg_filters_prepare(s->cfg, &prep, &errs) < 0) { /* what filters fetch (descriptors) */
        tg_snapshot_unref(s);
        s = NULL;
    }
    print_errors(&errs);
    tg_errors_free(&errs);
    if (s == NULL) {
        fprintf(stderr, "tollgate: configuration file %s test failed\n", path);
        return 1;
    }
    char *json = dump ? tg_config_to_json(s->cfg) : NULL;
    if (json != NULL) {
        tg_ctl_print_json(stdout, json);
        free(json);
    }
    fprintf(stderr, "tollgate: configuration file %s test is successful\n", path);
    tg_snapshot_unref(s);
    return 0;
}

/* A listening socket for l: systemd's, when it passed one (a dup per
 * worker), else our own, one per worker with SO_REUSEPORT. */
static int bind_listener(process_t *p, const tg_listener_conf_t *l, tg_errors_t *errs)
{
    int afd = tg_activation_take(&p->activation, l);
    if (afd >= 0)
        return afd;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *res;
    char port[8];
    snprintf(port, sizeof(port), "%u", l->port);
    int rc = getaddrinfo(strcmp(l->host, "*") == 0 ? NULL : l->host, port, &hints, &res);
    if (rc != 0) {
        tg_errors_add(errs, "listener '%s': cannot resolve %s: %s", l->name, l->listen, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, (int)l->listen_backlog) < 0) {
        tg_errors_add(errs, "listener '%s': cannot listen on %s: %s", l->name, l->listen, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static void log_errors(const tg_errors_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        tg_error("%s", e->msgs[i]);
}

/* The workers a config asks for: `workers`, else one per CPU. */
static unsigned worker_count(const tg_config_t *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    return cfg->workers ? cfg->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
}

/* Endpoints new to the process wait for their first health check, when
 * their cluster checks health and keeps a usable endpoint meanwhile. */
static void hold_new_endpoints(process_t *p, const tg_snapshot_t *ns)
{
    uint64_t now = tg_clock_ms();
    for (size_t i = 0; i < ns->clusters->n_clusters; i++)
        tg_health_hold_new(p->health, &ns->clusters->clusters[i], now);
}

/* Hands ns to every worker (fds: per worker, a socket for each of its
 * listeners or -1; they become the workers') and makes it the current
 * snapshot. On failure the workers that took it have it, so it is the
 * current one all the same; -1. */
static int publish(process_t *p, tg_snapshot_t *ns, int *fds, size_t n)
{
    int rc = 0;
    if (p->health != NULL)
        hold_new_endpoints(p, ns);
    for (unsigned wk = 0; wk < p->n_workers && rc == 0; wk++)
        if (tg_worker_reload(p->workers[wk], ns, &fds[wk * n], n) < 0) {
            /* fds already handed over are the worker's; close the rest */
            for (unsigned r = wk; r < p->n_workers; r++)
                for (size_t j = 0; j < n; j++)
                    if (fds[r * n + j] >= 0)
                        close(fds[r * n + j]);
            rc = -1;
        }
    tg_snapshot_t *old = p->snap; /* its config dies with it, unless ns shares it */
    p->snap = ns;
    tg_snapshot_unref(old);
    return rc;
}

/* Some endpoint name's addresses changed: the current snapshot with the
 * endpoint set DNS has now goes to the workers, as a reload would (its
 * listeners all stay). Nothing to do if it was built from these answers. */
static void on_dns_change(void *arg)
{
    process_t *p = arg;
    const tg_resolver_t *names = tg_dns_resolver(p->dns);
    if (p->draining || p->snap == NULL || p->workers == NULL ||
        p->snap->dns_generation == names->generation(names->arg))
        return;
    tg_errors_t errs = { 0 };
    tg_snapshot_t *ns = tg_snapshot_derive(p->snap, names, &errs);
    size_t n = p->snap->cfg->n_listeners;
    int *fds = ns ? malloc((size_t)p->n_workers * n * sizeof(int) + 1) : NULL;
    if (fds == NULL) {
        tg_error("dns: cannot apply the new endpoint addresses; the previous ones stay in use:");
        log_errors(&errs);
        tg_errors_free(&errs);
        tg_snapshot_unref(ns);
        return;
    }
    for (size_t k = 0; k < (size_t)p->n_workers * n; k++)
        fds[k] = -1;
    if (publish(p, ns, fds, n) < 0)
        tg_error("dns: out of memory publishing the new endpoint addresses to every worker");
    free(fds);
    p->pm.dns_updates++;
    tg_errors_free(&errs);
}

/* Builds and validates a new snapshot off the hot path; binds the sockets
 * of listeners with new addresses; publishes it to every worker. On any
 * error nothing changes. Returns 0 or -1 with the reasons in errs. */
static int reload_apply(process_t *p, tg_errors_t *errs)
{
    if (p->draining) {
        tg_errors_add(errs, "draining: reload refused");
        p->pm.reloads_failed++;
        return -1;
    }
    tg_snapshot_t *ns = tg_snapshot_load(p->path, &p->registry, tg_gateway_stack.upstream, tg_dns_resolver(p->dns), errs);
    int *fds = NULL;
    size_t n = 0;
    if (ns == NULL)
        goto fail;
    const tg_config_t *oc = p->snap->cfg, *nc = ns->cfg;
    tg_filters_inherit(nc, oc); /* e.g. rate-limit counters: a reload is no reset */
    tg_filter_prep_t prep = tg_syncall_prep(ns);
    if (tg_filters_prepare(nc, &prep, errs) < 0) /* what filters fetch first (descriptors), the last good kept */
        goto fail;
    if (tg_filters_start(nc, p->n_workers, p->host, errs) < 0) /* access logs open, their writers start */
        goto fail;
    if ((nc->workers ? nc->workers : p->n_workers) != p->n_workers)
        tg_warn("reload: a change of 'workers' takes effect on restart");
    if (nc->io_uring_off != p->snap->cfg->io_uring_off)
        tg_warn("reload: a change of 'io_uring' takes effect on restart");
    n = nc->n_listeners;
    fds = malloc((size_t)p->n_workers * n * sizeof(int) + 1);
    if (fds == NULL)
        goto fail;
    for (size_t k = 0; k < (size_t)p->n_workers * n; k++)
        fds[k] = -1;
    for (size_t j = 0; j < n; j++) {
        int kept = 0;
        for (size_t i = 0; i < oc->n_listeners && !kept; i++)
            kept = tg_listener_same_address(&oc->listeners[i], &nc->listeners[j]);
        for (unsigned wk = 0; wk < p->n_workers && !kept; wk++)
            if ((fds[wk * n + j] = bind_listener(p, &nc->listeners[j], errs)) < 0)
                goto fail;
    }
    tg_snapshot_t *prev = tg_snapshot_ref(p->snap); /* oc, until the checks below */
    if (publish(p, ns, fds, n) < 0) {
        free(fds);
        tg_snapshot_unref(prev);
        tg_errors_add(errs, "out of memory publishing the configuration");
        p->pm.reloads_failed++;
        tg_dns_commit(p->dns, p->snap->cfg); /* some workers have it: it is the current one */
        return -1;
    }
    free(fds);
    if ((oc->admin.listen == NULL) != (nc->admin.listen == NULL) ||
        (oc->admin.listen && strcmp(oc->admin.listen, nc->admin.listen) != 0))
        tg_warn("reload: a change of 'admin' takes effect on restart");
    const char *oe = oc->tracing.otlp_endpoint, *ne = nc->tracing.otlp_endpoint;
    if ((oe == NULL) != (ne == NULL) || (oe && strcmp(oe, ne) != 0))
        tg_warn("reload: a change of 'tracing.otlp' takes effect on restart (sampling and propagation apply now)");
    tg_snapshot_unref(prev);
    tg_dns_commit(p->dns, nc); /* names only the old config had are forgotten */
    tg_admin_set_max_connections(p->admin, nc->admin.max_connections);
    if (p->history != NULL) {
        tg_history_set_max(p->history, nc->admin.history_routes);
        tg_history_reloaded(p->history);
    }
    p->pm.reloads_ok++;
    p->pm.last_reload_ok = time(NULL);
    tg_log_set_format(ns->cfg->log_json ? TG_LOG_JSON : TG_LOG_TEXT);
    tg_info("configuration reloaded from %s", p->path);
    return 0;
fail:
    if (fds != NULL)
        for (size_t k = 0; k < (size_t)p->n_workers * n; k++)
            if (fds[k] >= 0)
                close(fds[k]);
    free(fds);
    tg_snapshot_unref(ns);
    tg_dns_commit(p->dns, p->snap->cfg); /* the refused config's names are forgotten */
    p->pm.reloads_failed++;
    tg_error("reload failed; the previous configuration stays in force:");
    log_errors(errs);
    return -1;
}

/* A reload as systemd sees it: RELOADING=1, then READY=1 with the outcome. */
static int reload(process_t *p, tg_errors_t *errs)
{
    int tell = !p->draining;
    if (tell)
        tg_notify(&p->notify, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
                  (unsigned long long)tg_clock_us(), p->path);
    int rc = reload_apply(p, errs);
    if (tell)
        tg_notify(&p->notify, "READY=1\nSTATUS=serving %zu listener(s) with %u worker(s); %s", p->snap->cfg->n_listeners,
                  p->n_workers, rc == 0 ? "config reloaded" : "reload failed, previous config kept");
    return rc;
}

/* ---- admin endpoints ---- */

static void on_history_tick(tg_timer_t *t)
{
    process_t *p = TG_CONTAINER_OF(t, process_t, history_timer);
    tg_timer_set(p->loop, &p->history_timer, 1000);
    tg_history_tick(p->history, p->snap, p->workers, p->n_workers, p->health);
}

/* The status page's history, read once a second (history.h). */
static int start_history(process_t *p)
{
    p->history_timer.fn = on_history_tick;
    if ((p->history = tg_history_new(p->snap->cfg->admin.history_routes)) == NULL ||
        tg_timer_set(p->loop, &p->history_timer, 1000) < 0)
        return -1;
    tg_history_tick(p->history, p->snap, p->workers, p->n_workers, p->health); /* the baselines */
    return 0;
}

static int admin_reload(process_t *p, struct evbuffer *body)
{
    tg_errors_t errs = { 0 };
    int rc = reload(p, &errs);
    evbuffer_add_printf(body, "{\"status\": \"%s\", \"errors\": [", rc == 0 ? "ok" : "failed");
    for (size_t i = 0; i < errs.n; i++) {
        char esc[1024];
        tg_json_escape(esc, sizeof(esc), errs.msgs[i]);
        evbuffer_add_printf(body, "%s\"%s\"", i ? ", " : "", esc);
    }
    evbuffer_add_printf(body, "]}\n");
    tg_errors_free(&errs);
    /* 409: not the file's fault, the process is shutting down */
    return rc == 0 ? 200 : p->draining ? 409 : 400;
}

/* The admin listener answers only to names it is known by: its listen
 * address, loopback names, and admin.allowed_hosts (with or without the
 * port). A page on another site that resolves its own name to 127.0.0.1
 * (DNS rebinding) sends its own name, and is refused. */
static int admin_host_allowed(const tg_admin_conf_t *a, const char *authority)
{
    static const char *const loopback[] = { "localhost", "127.0.0.1", "[::1]" };
    char port[8];
    snprintf(port, sizeof(port), "%u", a->port);
    size_t al = strlen(authority);
    for (size_t i = 0; i < 4 + a->n_allowed_hosts; i++) {
        const char *h = i < 3 ? loopback[i] : i == 3 ? (a->host ? a->host : "") : a->allowed_hosts[i - 4];
        size_t hl = strlen(h);
        if (hl == 0 || al < hl || strncasecmp(authority, h, hl) != 0)
            continue;
        if (al == hl || (authority[hl] == ':' && strcmp(authority + hl + 1, port) == 0))
            return 1;
    }
    return 0;
}

static int admin_token_ok(const char *token, const tg_request_t *req)
{
    const tg_header_t *az = tg_headers_get(&req->headers, "authorization");
    if (az == NULL || az->value_len < 7 || strncasecmp(az->value, "bearer ", 7) != 0)
        return 0;
    const char *t = az->value + 7;
    size_t tl = strlen(t), want = strlen(token);
    return tl == want && CRYPTO_memcmp(t, token, want) == 0;
}

/* Who may ask what of the admin listener. Returns 0, or the status of a
 * refusal (body filled). */
static int admin_guard(const tg_admin_conf_t *a, const tg_request_t *req, const char *path, struct evbuffer *body)
{
    if (req->authority != NULL && !admin_host_allowed(a, req->authority)) {
        evbuffer_add_printf(body, "{\"error\": \"host not allowed\", \"status\": 421}\n");
        return 421;
    }
    /* Probes, and the status page (static; it asks for the token itself
     * before it fetches /status.json), need no token. */
    int open = strcmp(path, "/healthz") == 0 || strcmp(path, "/ready") == 0 || strcmp(path, "/") == 0;
    if (a->token != NULL && !open && !admin_token_ok(a->token, req)) {
        evbuffer_add_printf(body, "{\"error\": \"missing or invalid admin token\", \"status\": 401}\n");
        return 401;
    }
    /* A cross-site form can POST here but cannot add a header of its own
     * without a CORS preflight, which this listener never grants. */
    if (strcmp(req->method, "POST") == 0 && strncmp(path, "/-/", 3) == 0 && a->token == NULL &&
        tg_headers_get(&req->headers, "x-tollgate-admin") == NULL) {
        evbuffer_add_printf(body, "{\"error\": \"a state-changing admin request needs the admin token or an "
                                  "X-Tollgate-Admin header\", \"status\": 403}\n");
        return 403;
    }
    return 0;
}

/* The value of query parameter name in target, percent-decoded into out
 * (cap bytes); NULL if absent, malformed or too long. */
static const char *query_param(const char *target, const char *name, char *out, size_t cap)
{
    const char *q = strchr(target, '?');
    size_t nl = strlen(name);
    for (const char *p = q ? q + 1 : NULL; p != NULL && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || p[nl] != '=')
            continue;
        size_t n = 0;
        for (const char *v = p + nl + 1; *v && *v != '&'; v++) {
            int c = (unsigned char)*v;
            if (c == '%') {
                int hi = v[1] ? tg_hex_value(v[1]) : -1, lo = hi >= 0 && v[2] ? tg_hex_value(v[2]) : -1;
                if (lo < 0)
                    return NULL;
                c = hi * 16 + lo;
                v += 2;
            } else if (c == '+') {
                c = ' ';
            }
            if (n + 1 >= cap || c < 0x20 || c == 0x7f)
                return NULL;
            out[n++] = (char)c;
        }
        out[n] = '\0';
        return n ? out : NULL;
    }
    return NULL;
}

/* POST /-/cache/purge?key=HOST/PATH?QUERY | prefix=/PATH[&host=HOST][&zone=Z] */
static int admin_cache_purge(process_t *p, const tg_request_t *req, struct evbuffer *body)
{
    char key[4096], prefix[4096], host[256], zone[128];
    const char *k = query_param(req->target, "key", key, sizeof(key));
    const char *pre = query_param(req->target, "prefix", prefix, sizeof(prefix));
    const char *h = query_param(req->target, "host", host, sizeof(host));
    const char *z = query_param(req->target, "zone", zone, sizeof(zone));
    if ((k == NULL) == (pre == NULL) || (pre != NULL && pre[0] != '/')) {
        evbuffer_add_printf(body, "{\"error\": \"give key=HOST/PATH?QUERY or prefix=/PATH (with host= and zone= "
                                  "to narrow it)\", \"status\": 400}\n");
        return 400;
    }
    if (h != NULL)
        for (char *c = host; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    size_t n = tg_cache_purge(p->host->shared, z, k, h, pre);
    tg_info("admin: cache purge %s%s%s dropped %zu entries", k ? "key " : "prefix ", k ? k : pre,
            z ? " (one zone)" : "", n);
    evbuffer_add_printf(body, "{\"purged\": %zu}\n", n);
    return 200;
}

static int admin_handle(void *ctx, const tg_request_t *req, const char *path, struct evbuffer *body,
                        tg_admin_reply_t *reply)
{
    process_t *p = ctx;
    const char *method = req->method;
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int refused = admin_guard(&p->snap->cfg->admin, req, path, body);
    if (refused)
        return refused;
    if (strcmp(path, "/-/reload") == 0) {
        if (strcmp(method, "POST") == 0)
            return admin_reload(p, body);
    } else if (strcmp(path, "/-/cache/purge") == 0) {
        if (strcmp(method, "POST") == 0)
            return admin_cache_purge(p, req, body);
    } else if (!get) {
        /* every other endpoint is read-only */
    } else if (strcmp(path, "/healthz") == 0) {
        evbuffer_add_printf(body, "{\"status\": \"ok\"}\n");
        return 200;
    } else if (strcmp(path, "/ready") == 0) {
        int ready = !p->draining && p->n_workers > 0;
        evbuffer_add_printf(body, "{\"ready\": %s}\n", ready ? "true" : "false");
        return ready ? 200 : 503;
    } else if (strcmp(path, "/config") == 0) {
        char *json = tg_config_to_json(p->snap->cfg);
        if (json == NULL)
            return 500;
        evbuffer_add(body, json, strlen(json));
        free(json);
        return 200;
    } else if (strcmp(path, "/-/openapi.json") == 0) {
        tg_openapi_t *doc = tg_openapi_new();
        if (doc == NULL)
            return 500;
        tg_filters_openapi(p->snap->cfg, doc);
        tg_openapi_render(doc, body, "tollgate: the REST APIs of grpc_json routes");
        tg_openapi_free(doc);
        return 200;
    } else if (strcmp(path, "/metrics") == 0) {
        reply->ctype = "text/plain; version=0.0.4; charset=utf-8";
        tg_metrics_render(body, p->snap, p->workers, p->n_workers, &p->pm, p->health);
        return 200;
    } else if (strcmp(path, "/status.json") == 0) {
        char hv[32];
        uint64_t window = 0;
        if (query_param(req->target, "history", hv, sizeof(hv)) != NULL &&
            (tg_parse_duration_ms(hv, &window) < 0 || window == 0)) {
            evbuffer_add_printf(body, "{\"error\": \"history= takes a duration up to 15m, e.g. history=15m\", "
                                      "\"status\": 400}\n");
            return 400;
        }
        tg_status_json(body, p->snap, p->workers, p->n_workers, &p->pm, p->health, window ? p->history : NULL,
                       window);
        return 200;
    } else if (strcmp(path, "/endpoints") == 0) {
        reply->ctype = "text/plain; charset=utf-8";
        tg_status_endpoints_text(body, p->snap, p->workers, p->n_workers, p->health);
        return 200;
    } else if (strcmp(path, "/") == 0) {
        char csp[400];
        size_t len;
        const char *page = tg_status_page(&len);
        if (tg_status_page_csp(csp, sizeof(csp)) < 0)
            return 500;
        reply->ctype = "text/html; charset=utf-8";
        snprintf(reply->headers, sizeof(reply->headers),
                 "content-security-policy: %s\r\nx-frame-options: DENY\r\nreferrer-policy: no-referrer\r\n", csp);
        evbuffer_add(body, page, len);
        return 200;
    } else {
        evbuffer_add_printf(body, "{\"error\": \"no such admin endpoint\", \"status\": 404}\n");
        return 404;
    }
    evbuffer_add_printf(body, "{\"error\": \"method not allowed\", \"status\": 405}\n");
    return 405;
}

/* ---- --watch ---- */

static void on_watch_timer(tg_timer_t *t)
{
    process_t *p = TG_CONTAINER_OF(t, process_t, watch_timer);
    tg_errors_t errs = { 0 };
    tg_info("%s changed: reloading", p->path);
    reload(p, &errs);
    tg_errors_free(&errs);
}

/* Any change to the file (or a "..data"-style symlink swap beside it)
 * arms a short timer, so that a burst of writes makes one reload. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    process_t *p = arg;
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    int hit = 0;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        for (char *q = buf; q < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)q;
            if (ev->len && (strcmp(ev->name, p->watch_name) == 0 || strncmp(ev->name, "..", 2) == 0))
                hit = 1;
            q += sizeof(*ev) + ev->len;
        }
    if (hit && !p->draining) {
        tg_timer_set(p->loop, &p->watch_timer, WATCH_SETTLE_MS);
    }
}

static int start_watch(process_t *p)
{
    char *d1 = strdup(p->path), *d2 = strdup(p->path);
    if (d1 == NULL || d2 == NULL)
        goto fail;
    p->watch_name = strdup(basename(d1));
    p->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (p->watch_name == NULL || p->watch_fd < 0 ||
        inotify_add_watch(p->watch_fd, dirname(d2), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0) {
        tg_error("--watch: cannot watch %s: %s", p->path, strerror(errno));
        goto fail;
    }
    p->watch_ev = event_new(p->base, p->watch_fd, EV_READ | EV_PERSIST, on_watch, p);
    p->watch_timer.fn = on_watch_timer;
    if (p->watch_ev == NULL || event_add(p->watch_ev, NULL) < 0)
        goto fail;
    free(d1);
    free(d2);
    tg_info("watching %s for changes", p->path);
    return 0;
fail:
    free(d1);
    free(d2);
    return -1;
}

static void stop_watch(process_t *p)
{
    if (p->watch_ev)
        event_free(p->watch_ev);
    tg_timer_cancel(&p->watch_timer);
    if (p->watch_fd >= 0)
        close(p->watch_fd);
    free(p->watch_name);
}

static void stop_all(process_t *p)
{
    for (unsigned i = 0; i < p->n_workers; i++)
        tg_worker_stop(p->workers[i]);
    event_base_loopexit(p->base, NULL);
}

static void on_drain_timeout(tg_timer_t *t)
{
    tg_warn("drain timeout: closing the remaining connections");
    stop_all(TG_CONTAINER_OF(t, process_t, drain_timer));
}

static void on_watchdog(tg_timer_t *t)
{
    process_t *p = TG_CONTAINER_OF(t, process_t, watchdog_timer);
    tg_timer_after(p->loop, &p->watchdog_timer, p->notify.watchdog_usec / 2);
    tg_notify(&p->notify, "WATCHDOG=1"); /* the main loop turns: alive */
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    process_t *p = arg;
    if (sig == SIGUSR1) {
        tg_info("SIGUSR1: reopening log files");
        tg_filters_reopen(p->snap->cfg);
        return;
    }
    if (sig == SIGHUP) {
        tg_errors_t errs = { 0 };
        tg_info("SIGHUP: reloading %s", p->path);
        reload(p, &errs);
        tg_errors_free(&errs);
        return;
    }
    if (p->draining) {
        tg_warn("second signal: stopping now");
        stop_all(p);
        return;
    }
    p->draining = 1;
    tg_notify(&p->notify, "STOPPING=1\nSTATUS=draining");
    uint64_t ms = p->snap->cfg->drain_timeout_ms;
    tg_info("signal %d: draining (up to %llu ms)", (int)sig, (unsigned long long)ms);
    for (unsigned i = 0; i < p->n_workers; i++)
        tg_worker_drain(p->workers[i]);
    tg_timer_set(p->loop, &p->drain_timer, ms);
    /* The main loop ends when the workers are done: see run_main_loop. */
    event_base_loopexit(p->base, NULL);
}

static int start_workers(process_t *p)
{
    const tg_config_t *cfg = p->snap->cfg;
    p->n_workers = worker_count(cfg);
    p->workers = calloc(p->n_workers, sizeof(*p->workers));
    int *fds = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(int));
    if (p->workers == NULL || fds == NULL) {
        free(fds);
        return -1;
    }
    for (unsigned i = 0; i < p->n_workers; i++) {
        for (size_t j = 0; j < cfg->n_listeners; j++) {
            tg_errors_t errs = { 0 };
            fds[j] = bind_listener(p, &cfg->listeners[j], &errs);
            log_errors(&errs);
            tg_errors_free(&errs);
            if (fds[j] < 0) {
                while (j-- > 0)
                    close(fds[j]);
                free(fds);
                return -1;
            }
        }
        p->workers[i] = tg_worker_new(i, p->n_workers, p->snap, fds, cfg->n_listeners, p->health, &tg_gateway_stack);
        if (p->workers[i] == NULL) {
            free(fds);
            return -1;
        }
    }
    free(fds);
    if (cfg->tracing.enabled && cfg->tracing.otlp_endpoint != NULL)
        p->pm.tracer = tg_tracer_start(&cfg->tracing, p->n_workers);
    for (unsigned i = 0; i < p->n_workers; i++)
        tg_worker_set_tracer(p->workers[i], p->pm.tracer);
    for (unsigned i = 0; i < p->n_workers; i++)
        if (tg_worker_start(p->workers[i]) < 0) {
            tg_error("cannot start worker thread %u", i);
            return -1;
        }
    for (size_t j = 0; j < cfg->n_listeners; j++) {
        const char *how = NULL;
        int from_systemd = tg_activation_find(&p->activation, &cfg->listeners[j], &how) >= 0;
        tg_info("listener '%s' on %s%s%s%s", cfg->listeners[j].name, cfg->listeners[j].listen,
                from_systemd ? " (socket from systemd, matched by " : "", from_systemd ? how : "",
                from_systemd ? ")" : "");
    }
    tg_activation_report_unused(&p->activation);
    tg_info("tollgate %s running with %u worker(s), config %s", TOLLGATE_VERSION, p->n_workers, cfg->path);
    int why = 0;
    if (tg_sock_loop_batched(tg_worker_sockloop(p->workers[0]), &why))
        tg_info("I/O: reads and writes batched through io_uring");
    else
        tg_info("I/O: one system call per read and write (%s%s)", why ? "io_uring refused: " : "io_uring: off",
                why ? strerror(why) : "");
    return 0;
}

/* A registry slot passes to a new name while a snapshot is built (no live
 * snapshot uses it, so nothing writes it): its counters restart, and an
 * endpoint's health is forgotten. */
static void reset_slot(process_t *p, tg_stats_table_t table, size_t slot)
{
    for (unsigned i = 0; p->workers != NULL && i < p->n_workers; i++)
        if (p->workers[i] != NULL)
            tg_stats_reset(tg_worker_stats(p->workers[i]), table, slot);
    if (table == TG_STATS_ENDPOINT && p->health != NULL)
        tg_health_reset(p->health, slot);
    tg_debug("registry: slot %zu of the %s table reused", slot,
             table == TG_STATS_ENDPOINT ? "endpoint" : table == TG_STATS_ROUTE ? "route" : "listener");
}

static void reuse_endpoint_slot(void *arg, size_t slot)
{
    reset_slot(arg, TG_STATS_ENDPOINT, slot);
}

/* A new endpoint slot: its health entry exists before any snapshot names
 * it (workers never make one). Slots made before the health table are
 * reserved when it is made. */
static int new_endpoint_slot(void *arg, size_t slot)
{
    process_t *p = arg;
    return p->health != NULL ? tg_health_reserve(p->health, slot) : 0;
}

static tg_health_t *make_health(const tg_registry_t *endpoints)
{
    tg_health_t *h = tg_health_new();
    for (size_t i = 0; h != NULL && i < endpoints->n; i++)
        if (tg_health_reserve(h, i) < 0) {
            tg_health_free(h);
            return NULL;
        }
    return h;
}

static void reuse_route_slot(void *arg, size_t slot)
{
    reset_slot(arg, TG_STATS_ROUTE, slot);
}

static void reuse_listener_slot(void *arg, size_t slot)
{
    reset_slot(arg, TG_STATS_LISTENER, slot);
}

/* Joins the workers; while they drain, a second signal or the drain timer
 * (both on the main base) can still stop them. */
static void *join_thread(void *arg)
{
    process_t *p = arg;
    for (unsigned i = 0; i < p->n_workers; i++)
        tg_worker_join(p->workers[i]);
    event_base_loopexit(p->base, NULL);
    return NULL;
}

/* filter_host.h: what the host reads of the process. */
static tg_snapshot_t *host_snapshot(void *arg)
{
    return ((process_t *)arg)->snap;
}

static tg_worker_t *host_worker(void *arg, unsigned i)
{
    process_t *p = arg;
    return p->workers != NULL && i < p->n_workers ? p->workers[i] : NULL;
}

int tg_process_run(const char *path, int watch)
{
    process_t p = { .path = path, .watch_fd = -1 };
    tg_registries_init(&p.registry);
    p.registry.endpoints.on_reuse = reuse_endpoint_slot;
    p.registry.endpoints.on_new = new_endpoint_slot;
    p.registry.routes.on_reuse = reuse_route_slot;
    p.registry.listeners.on_reuse = reuse_listener_slot;
    p.registry.endpoints.reuse_arg = p.registry.routes.reuse_arg = p.registry.listeners.reuse_arg = &p;
    tg_notify_open(&p.notify);
    tg_activation_open(&p.activation); /* problems are logged; what is valid is used */
    p.pm.started = p.pm.last_reload_ok = time(NULL);
    p.pm.snapshots = &p.registry.snapshots;
    p.pm.registries = &p.registry;
    int status = 1;
    signal(SIGPIPE, SIG_IGN);
    /* Buffers of up to a few hundred KiB come and go with every exchange;
     * returning them to the kernel at once only to fault them back in on
     * the next request costs a page fault per request. Keep them. */
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    if (evthread_use_pthreads() < 0) {
        tg_error("libevent: no pthreads support");
        return 1;
    }
    tg_errors_t errs = { 0 };
    /* the loop first: the resolver lives on it, and start-up waits for names' first answers */
    tg_filter_host_src_t hsrc = { host_snapshot, host_worker, &p };
    if ((p.base = event_base_new()) == NULL || (p.loop = tg_loop_new(p.base)) == NULL ||
        (p.dns = tg_dns_new(p.loop, on_dns_change, &p)) == NULL ||
        (p.host = tg_filter_host_new(p.loop, &hsrc)) == NULL)
        tg_errors_add(&errs, "cannot set up the event loop or the resolver");
    else
        p.snap = tg_snapshot_load(path, &p.registry, tg_gateway_stack.upstream, tg_dns_resolver(p.dns), &errs);
    tg_filter_prep_t prep = p.snap ? tg_syncall_prep(p.snap) : (tg_filter_prep_t){ 0 };
    if (p.snap != NULL && (tg_filters_prepare(p.snap->cfg, &prep, &errs) < 0 ||
                           tg_filters_start(p.snap->cfg, worker_count(p.snap->cfg), p.host, &errs) < 0)) {
        tg_snapshot_unref(p.snap);
        p.snap = NULL;
    }
    if (p.snap == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            tg_error("%s", errs.msgs[i]);
        tg_errors_free(&errs);
        tg_filter_host_finish(p.host);
        tg_dns_free(p.dns);
        tg_filter_host_free(p.host);
        tg_loop_free(p.loop);
        if (p.base != NULL)
            event_base_free(p.base);
        tg_registries_free(&p.registry); /* what the refused config's slots leased */
        return 1;
    }
    tg_errors_free(&errs);
    tg_dns_commit(p.dns, p.snap->cfg);
    p.pm.dns = p.dns;
    p.pm.shared = p.host->shared;
    tg_log_set_format(p.snap->cfg->log_json ? TG_LOG_JSON : TG_LOG_TEXT);
    p.sig_term = evsignal_new(p.base, SIGTERM, on_signal, &p);
    p.sig_int = evsignal_new(p.base, SIGINT, on_signal, &p);
    p.sig_hup = evsignal_new(p.base, SIGHUP, on_signal, &p);
    p.sig_usr1 = evsignal_new(p.base, SIGUSR1, on_signal, &p);
    p.drain_timer.fn = on_drain_timeout;
    if (!p.sig_term || !p.sig_int || !p.sig_hup || !p.sig_usr1 ||
        evsignal_add(p.sig_term, NULL) < 0 || evsignal_add(p.sig_int, NULL) < 0 || evsignal_add(p.sig_hup, NULL) < 0 ||
        evsignal_add(p.sig_usr1, NULL) < 0)
        goto out;
    /* The watch and the admin listener are in place before any proxy
     * listener accepts: whoever sees the port open may already be editing
     * the file or asking for a reload (admin requests wait in the backlog
     * until the loop below runs, when everything is set up). */
    if (watch && start_watch(&p) < 0)
        goto out;
    const tg_admin_conf_t *ac = &p.snap->cfg->admin;
    if (ac->listen != NULL) {
        tg_errors_t aerr = { 0 };
        p.admin = tg_admin_start(p.loop, ac->host, ac->port, admin_handle, &p, &aerr);
        log_errors(&aerr);
        tg_errors_free(&aerr);
        if (p.admin == NULL)
            goto out;
        tg_admin_set_max_connections(p.admin, ac->max_connections);
        p.pm.admin = p.admin;
        tg_info("admin listener on %s", ac->listen);
        if (ac->token == NULL && strcmp(ac->host, "127.0.0.1") != 0 && strcmp(ac->host, "::1") != 0 &&
            strcmp(ac->host, "localhost") != 0)
            tg_warn("admin listener on %s, beyond loopback, without admin.token: anyone who can reach it can "
                    "read the config and reload", ac->listen);
    }
    if ((p.health = make_health(&p.registry.endpoints)) == NULL || start_workers(&p) < 0)
        goto out;
    if (p.admin != NULL && start_history(&p) < 0)
        tg_warn("admin: out of memory for the status page's history; it shows the present only");
    /* every listener is bound and listening (the kernel queues connections
     * until the workers' loops take them): ready */
    tg_notify(&p.notify, "READY=1\nSTATUS=serving %zu listener(s) with %u worker(s)", p.snap->cfg->n_listeners,
              p.n_workers);
    if (p.notify.watchdog_usec) {
        p.watchdog_timer.fn = on_watchdog;
        if (tg_timer_after(p.loop, &p.watchdog_timer, p.notify.watchdog_usec / 2) < 0)
            tg_warn("WatchdogSec: cannot arm the watchdog timer: systemd will restart tollgate");
    }
    tg_loop_run(p.loop, 0); /* until a drain starts */

    /* Draining: a helper thread joins the workers and ends the loop; the
     * loop keeps serving signals and the drain timer meanwhile. */
    pthread_t joiner;
    if (pthread_create(&joiner, NULL, join_thread, &p) == 0) {
        tg_loop_run(p.loop, 0);
        pthread_join(joiner, NULL);
    }
    status = 0;
    tg_info("drained, exiting");
out:
    for (unsigned i = 0; p.workers && i < p.n_workers; i++)
        if (p.workers[i]) {
            if (status != 0)
                tg_worker_stop(p.workers[i]);
            tg_worker_join_free(p.workers[i]);
        }
    tg_admin_free(p.admin);
    stop_watch(&p);
    free(p.workers);
    if (p.sig_term)
        event_free(p.sig_term);
    if (p.sig_int)
        event_free(p.sig_int);
    if (p.sig_hup)
        event_free(p.sig_hup);
    if (p.sig_usr1)
        event_free(p.sig_usr1);
    tg_timer_cancel(&p.drain_timer);
    tg_timer_cancel(&p.watchdog_timer);
    tg_timer_cancel(&p.history_timer);
    tg_history_free(p.history);
    tg_notify_close(&p.notify);
    tg_activation_close(&p.activation);
    tg_filter_host_finish(p.host); /* the workers are gone: calls still out are answered */
    tg_snapshot_unref(p.snap);     /* before the loop: filters' shared objects have events on it */
    p.snap = NULL;
    tg_filter_host_free(p.host);
    tg_dns_free(p.dns); /* before the loop its events are on */
    tg_loop_free(p.loop);
    if (p.base)
        event_base_free(p.base);
    tg_health_free(p.health); /* after the workers: they read it */
    tg_tracer_stop(p.pm.tracer); /* after the workers: they hand it spans; sends what is left */
    tg_registries_free(&p.registry);
    return status;
}
