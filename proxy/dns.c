/*
 * proxy/dns.c — see dns.h. One c-ares channel, driven by the main loop:
 * its sockets are libevent events (the channel's sock-state callback adds
 * and removes them) and one timer follows ares_timeout. While a config is
 * prepared the loop may itself be running a callback (a reload from a
 * signal or the admin listener), so the wait for first answers polls the
 * channel's sockets directly instead of re-entering the loop.
 */
#include "proxy/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/base/loop.h"
#include "proxy/base/clock.h"
#include "proxy/base/log.h"


typedef struct dns_name {
    struct tg_dns *d;
    char *cluster, *host;
    tg_dns_family_t family;
    uint64_t min_ttl_ms, max_ttl_ms;
    tg_dns_on_failure_t on_failure;
    uint32_t max_addresses; /* taken from one answer (dns.max_addresses) */
    size_t over;        /* addresses of the last answer past max_addresses (0: none): warned once per count */
    struct sockaddr_storage *addrs; /* sorted, port 0 */
    size_t n;
    int resolved;       /* a good answer came (ever) */
    int answered;       /* some answer came (good or not) */
    int querying;       /* a lookup is under way; the name is then freed by its callback */
    int dead;           /* forgotten while querying */
    int again;          /* was querying when its channel was replaced */
    unsigned fail_streak;
    uint64_t lookups, failures, changes;
    uint64_t ttl_ms, next_at_ms;
    char last_error[64];
    int keep;           /* mark: a config being kept has it */
    tg_timer_t timer;   /* the next lookup */
} dns_name_t;

typedef struct sock_ev {
    ares_socket_t fd;
    struct event *ev;
} sock_ev_t;

struct tg_dns {
    tg_loop_t *loop;          /* the main thread's (its timers and deferred calls) */
    struct event_base *base;  /* ... and its libevent base (the resolver's sockets) */
    ares_channel ch;
    char *servers;            /* the channel's resolvers ("" : resolv.conf's) */
    uint64_t timeout_ms;
    tg_timer_t ares_timer;    /* c-ares's own timeouts */
    tg_deferred_t change;     /* on_change, once for a burst of changes */
    sock_ev_t *socks;
    size_t n_socks, cap_socks;
    dns_name_t **names;
    size_t n_names, cap_names;
    unsigned generation;      /* bumped whenever some name's addresses change */
    void (*on_change)(void *arg);
    void *arg;
    tg_resolver_t resolver;
};

static void lookup(dns_name_t *nm);

/* ---- the channel on the event loop ---- */

static void rearm(tg_dns_t *d)
{
    struct timeval tv;
    if (d->ch != NULL && ares_timeout(d->ch, NULL, &tv) != NULL)
        tg_timer_after(d->loop, &d->ares_timer, (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec);
    else
        tg_timer_cancel(&d->ares_timer);
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    tg_dns_t *d = arg;
    ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD, (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm(d);
}

static void on_ares_timer(tg_timer_t *t)
{
    tg_dns_t *d = TG_CONTAINER_OF(t, tg_dns_t, ares_timer);
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(d);
}

static void sock_state(void *arg, ares_socket_t fd, int readable, int writable)
{
    tg_dns_t *d = arg;
    size_t i = 0;
    while (i < d->n_socks && d->socks[i].fd != fd)
        i++;
    if (!readable && !writable) {
        if (i < d->n_socks) {
            event_free(d->socks[i].ev);
            d->socks[i] = d->socks[--d->n_socks];
        }
        return;
    }
    if (i == d->n_socks) {
        if (d->n_socks == d->cap_socks) {
            size_t cap = d->cap_socks ? d->cap_socks * 2 : 8;
            sock_ev_t *s = realloc(d->socks, cap * sizeof(*s));
            if (s == NULL)
                return; /* the query times out instead */
            d->socks = s;
            d->cap_socks = cap;
        }
        d->socks[i] = (sock_ev_t){ fd, NULL };
        d->n_socks++;
    } else {
        event_free(d->socks[i].ev);
    }
    d->socks[i].ev = event_new(d->base, fd, EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0),
                               on_sock, d);
    if (d->socks[i].ev == NULL || event_add(d->socks[i].ev, NULL) < 0)
        tg_warn("dns: cannot watch a resolver socket: lookups on it time out");
}

/* A channel for these settings; the old one (if any) is destroyed, its
 * lookups ending with ARES_EDESTRUCTION and started again on the new. */
static int channel_open(tg_dns_t *d, const tg_dns_conf_t *c, const char *servers)
{
    struct ares_options o = { 0 };
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = d;
    o.timeout = (int)(c->timeout_ms / 3 > 50 ? c->timeout_ms / 3 : 50); /* two tries: t/3 then 2t/3 */
    o.tries = 2;
    ares_channel ch;
    int rc = ares_init_options(&ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        tg_error("dns: cannot set up the resolver: %s", ares_strerror(rc));
        return -1;
    }
    if (*servers && (rc = ares_set_servers_ports_csv(ch, servers)) != ARES_SUCCESS) {
        tg_error("dns: resolvers '%s': %s", servers, ares_strerror(rc));
        ares_destroy(ch);
        return -1;
    }
    ares_channel old = d->ch;
    for (size_t i = 0; i < d->n_names; i++)
        d->names[i]->again = d->names[i]->querying;
    d->ch = ch;
    free(d->servers);
    d->servers = strdup(servers);
    d->timeout_ms = c->timeout_ms;
    if (old != NULL)
        ares_destroy(old); /* callbacks with ARES_EDESTRUCTION: those names look up again on the new channel */
    for (size_t i = 0; i < d->n_names; i++)
        if (d->names[i]->again && !d->names[i]->querying)
            lookup(d->names[i]);
    return 0;
}

/* ---- names ---- */

/* Some name's addresses changed. Also while a config is prepared: the
 * process compares the generation with its snapshot's and derives a new
 * one only if the snapshot in force was built from older answers. */
static void announce(tg_dns_t *d)
{
    d->generation++;
    tg_defer(d->loop, &d->change);
}

static void announce_now(tg_deferred_t *c)
{
    tg_dns_t *d = TG_CONTAINER_OF(c, tg_dns_t, change);
    d->on_change(d->arg);
}

static void name_free(dns_name_t *nm)
{
    tg_timer_cancel(&nm->timer);
    free(nm->cluster);
    free(nm->host);
    free(nm->addrs);
    free(nm);
}

static int addr_cmp(const void *a, const void *b)
{
    const struct sockaddr_storage *x = a, *y = b;
    if (x->ss_family != y->ss_family)
        return x->ss_family == AF_INET ? -1 : 1;
    if (x->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)x)->sin_addr, &((const struct sockaddr_in *)y)->sin_addr, 4);
    return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr, &((const struct sockaddr_in6 *)y)->sin6_addr, 16);
}

static void addrs_text(const struct sockaddr_storage *a, size_t n, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at + INET6_ADDRSTRLEN + 8 < cap; i++) {
        char ip[INET6_ADDRSTRLEN];
        const void *src = a[i].ss_family == AF_INET ? (const void *)&((const struct sockaddr_in *)&a[i])->sin_addr
                                                    : (const void *)&((const struct sockaddr_in6 *)&a[i])->sin6_addr;
        inet_ntop(a[i].ss_family, src, ip, sizeof(ip));
        at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", ip);
    }
    if (n == 0)
        snprintf(buf, cap, "no address");
}

static void schedule(dns_name_t *nm, uint64_t ms)
{
    nm->next_at_ms = tg_clock_ms() + ms;
    tg_timer_after(nm->d->loop, &nm->timer, ms * 1000);
}

static void failed(dns_name_t *nm, const char *why)
{
    nm->failures++;
    snprintf(nm->last_error, sizeof(nm->last_error), "%s", why);
    int first = nm->fail_streak++ == 0;
    if (nm->on_failure == TG_DNS_FAIL && nm->n > 0) {
        nm->n = 0;
        nm->changes++;
        announce(nm->d);
        tg_warn("dns: cluster '%s': %s: %s; its endpoints are dropped (on_failure: fail)", nm->cluster, nm->host, why);
    } else if (first) {
        tg_log(nm->resolved ? TG_LOG_WARN : TG_LOG_ERROR, "dns: cluster '%s': %s: %s%s", nm->cluster, nm->host, why,
               nm->resolved ? "; the last addresses stay in use" : "; the name has no endpoint yet");
    }
    unsigned shift = nm->fail_streak - 1 < 16 ? nm->fail_streak - 1 : 16;
    uint64_t retry = nm->min_ttl_ms << shift;
    schedule(nm, retry < nm->max_ttl_ms ? retry : nm->max_ttl_ms);
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    dns_name_t *nm = arg;
    nm->querying = 0;
    if (nm->dead || status == ARES_EDESTRUCTION) {
        if (res != NULL)
            ares_freeaddrinfo(res);
        if (nm->dead)
            name_free(nm);
        /* else: its channel was replaced; channel_open looks it up again */
        return;
    }
    nm->answered = 1;
    size_t max = nm->max_addresses ? nm->max_addresses : TG_DEFAULT_DNS_MAX_ADDRESSES, n4 = 0, n = 0, all = 0;
    for (struct ares_addrinfo_node *a = res ? res->nodes : NULL; a != NULL; a = a->ai_next)
        all++;
    struct sockaddr_storage *got = malloc((all ? all : 1) * sizeof(*got));
    if (got == NULL) {
        if (res != NULL)
            ares_freeaddrinfo(res);
        failed(nm, "out of memory");
        return;
    }
    int ttl = -1;
    for (struct ares_addrinfo_node *a = res ? res->nodes : NULL; a != NULL; a = a->ai_next) {
        int fam = a->ai_family;
        if ((fam != AF_INET && fam != AF_INET6) || (fam == AF_INET && nm->family == TG_DNS_V6) ||
            (fam == AF_INET6 && nm->family == TG_DNS_V4))
            continue;
        if (nm->family == TG_DNS_AUTO && fam == AF_INET6 && n4 > 0)
            continue;
        if (nm->family == TG_DNS_AUTO && fam == AF_INET && n4 == 0) {
            n = 0; /* the first IPv4 address: the IPv6 ones before it go */
            ttl = -1;
        }
        memset(&got[n], 0, sizeof(got[n]));
        memcpy(&got[n], a->ai_addr, a->ai_addrlen < sizeof(got[n]) ? a->ai_addrlen : sizeof(got[n]));
        if (fam == AF_INET)
            ((struct sockaddr_in *)&got[n])->sin_port = 0, n4++;
        else
            ((struct sockaddr_in6 *)&got[n])->sin6_port = 0, ((struct sockaddr_in6 *)&got[n])->sin6_flowinfo = 0;
        n++;
        if (ttl < 0 || a->ai_ttl < ttl)
            ttl = a->ai_ttl;
    }
    if (res != NULL)
        ares_freeaddrinfo(res);
    if (status != ARES_SUCCESS || n == 0) {
        free(got);
        failed(nm, status != ARES_SUCCESS ? ares_strerror(status) : "the answer has no address of the family asked");
        return;
    }
    qsort(got, n, sizeof(got[0]), addr_cmp);
    size_t k = 1; /* without duplicates */
    for (size_t i = 1; i < n; i++)
        if (addr_cmp(&got[i], &got[k - 1]) != 0)
            got[k++] = got[i];
    n = k;
    if (n > max) { /* the first in address order: the same ones whatever order the server rotates them in */
        if (nm->over != n)
            tg_warn("dns: cluster '%s': %s: %zu addresses, more than max_addresses (%zu); the rest are left out",
                    nm->cluster, nm->host, n, max);
        nm->over = n;
        n = max;
    } else {
        nm->over = 0;
    }
    if (nm->fail_streak > 0 && nm->resolved)
        tg_info("dns: cluster '%s': %s resolves again", nm->cluster, nm->host);
    nm->fail_streak = 0;
    nm->last_error[0] = '\0';
    uint64_t t = ttl > 0 ? (uint64_t)ttl * 1000 : 0;
    nm->ttl_ms = t < nm->min_ttl_ms ? nm->min_ttl_ms : t > nm->max_ttl_ms ? nm->max_ttl_ms : t;
    if (n != nm->n || memcmp(got, nm->addrs, n * sizeof(got[0])) != 0) {
        char was[512], now[512];
        addrs_text(nm->addrs, nm->n, was, sizeof(was));
        struct sockaddr_storage *a = realloc(nm->addrs, n * sizeof(*a));
        if (a == NULL) {
            free(got);
            failed(nm, "out of memory");
            return;
        }
        memcpy(a, got, n * sizeof(*a));
        nm->addrs = a;
        nm->n = n;
        addrs_text(nm->addrs, nm->n, now, sizeof(now));
        if (nm->resolved) {
            nm->changes++;
            tg_info("dns: cluster '%s': %s is now %s (was %s)", nm->cluster, nm->host, now, was);
        } else {
            tg_debug("dns: cluster '%s': %s is %s", nm->cluster, nm->host, now);
        }
        announce(nm->d);
    }
    free(got);
    nm->resolved = 1;
    schedule(nm, nm->ttl_ms);
}

static void lookup(dns_name_t *nm)
{
    tg_dns_t *d = nm->d;
    struct ares_addrinfo_hints h = { .ai_flags = ARES_AI_NOSORT, .ai_socktype = SOCK_STREAM };
    h.ai_family = nm->family == TG_DNS_V4 ? AF_INET : nm->family == TG_DNS_V6 ? AF_INET6 : AF_UNSPEC;
    nm->querying = 1;
    nm->lookups++;
    ares_getaddrinfo(d->ch, nm->host, NULL, &h, on_answer, nm); /* may answer at once (/etc/hosts) */
    rearm(d);
}

static void on_timer(tg_timer_t *t)
{
    dns_name_t *nm = TG_CONTAINER_OF(t, dns_name_t, timer);
    if (!nm->querying)
        lookup(nm);
}

static dns_name_t *find(tg_dns_t *d, const char *cluster, const char *host, tg_dns_family_t family)
{
    for (size_t i = 0; i < d->n_names; i++) {
        dns_name_t *nm = d->names[i];
        if (nm->family == family && strcmp(nm->cluster, cluster) == 0 && strcasecmp(nm->host, host) == 0)
            return nm;
    }
    return NULL;
}

static dns_name_t *add(tg_dns_t *d, const tg_cluster_conf_t *cc, const char *host)
{
    if (d->n_names == d->cap_names) {
        size_t cap = d->cap_names ? d->cap_names * 2 : 16;
        dns_name_t **v = realloc(d->names, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        d->names = v;
        d->cap_names = cap;
    }
    dns_name_t *nm = calloc(1, sizeof(*nm));
    if (nm == NULL || (nm->cluster = strdup(cc->name)) == NULL || (nm->host = strdup(host)) == NULL) {
        if (nm != NULL)
            name_free(nm);
        return NULL;
    }
    nm->d = d;
    nm->timer.fn = on_timer;
    nm->family = cc->dns.family;
    d->names[d->n_names++] = nm;
    return nm;
}

/* Polls the channel until every name in want[] has had an answer or
 * the deadline passes (see the top of the file for why not the loop). */
static void wait_answers(tg_dns_t *d, dns_name_t *const *want, size_t n, uint64_t deadline_ms)
{
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++)
            left += !want[i]->answered;
        uint64_t now = tg_clock_ms();
        if (left == 0 || now >= deadline_ms)
            break;
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* read with unsigned shifts: c-ares's own macros shift an int by 31 */
        unsigned bits = (unsigned)ares_getsock(d->ch, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        nfds_t np = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = (short)(((bits >> i) & 1u ? POLLIN : 0) | ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u ? POLLOUT : 0));
            if (ev)
                pfd[np++] = (struct pollfd){ .fd = socks[i], .events = ev };
        }
        struct timeval max = { (time_t)((deadline_ms - now) / 1000), (suseconds_t)((deadline_ms - now) % 1000 * 1000) },
                       tv, *tvp = ares_timeout(d->ch, &max, &tv);
        int ms = (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1;
        int r = poll(pfd, np, ms);
        if (r < 0 && errno != EINTR)
            break;
        if (r <= 0) {
            ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (nfds_t i = 0; i < np; i++)
            if (pfd[i].revents)
                ares_process_fd(d->ch, (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) ? pfd[i].fd : ARES_SOCKET_BAD,
                                (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD);
    }
    rearm(d);
}

static int servers_csv(const tg_dns_conf_t *c, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n_resolvers; i++) {
        int w = snprintf(buf + at, cap - at, "%s%s", i ? "," : "", c->resolvers[i]);
        if (w < 0 || (size_t)w >= cap - at)
            return -1;
        at += (size_t)w;
    }
    return 0;
}

static int prepare(void *arg, const tg_config_t *cfg, tg_errors_t *errs)
{
    tg_dns_t *d = arg;
    char servers[1024];
    if (servers_csv(&cfg->dns, servers, sizeof(servers)) < 0) {
        tg_errors_add(errs, "dns: resolvers: the list is too long");
        return -1;
    }
    if ((d->ch == NULL || strcmp(servers, d->servers) != 0 || cfg->dns.timeout_ms != d->timeout_ms) &&
        channel_open(d, &cfg->dns, servers) < 0) {
        tg_errors_add(errs, "dns: cannot set up the resolver (see the log)");
        return -1;
    }
    size_t n_want = 0, cap_want = 0;
    dns_name_t **want = NULL;
    int rc = 0;
    for (size_t i = 0; i < cfg->n_clusters && rc == 0; i++) {
        const tg_cluster_conf_t *cc = &cfg->clusters[i];
        for (size_t j = 0; j < cc->n_endpoints && rc == 0; j++) {
            const tg_endpoint_conf_t *ec = &cc->endpoints[j];
            if (!ec->named)
                continue;
            dns_name_t *nm = find(d, cc->name, ec->host, cc->dns.family);
            if (nm == NULL && (nm = add(d, cc, ec->host)) == NULL) {
                rc = -1;
                break;
            }
            /* the newest config's settings (a refused one's are put back by the next commit) */
            nm->min_ttl_ms = cc->dns.min_ttl_ms;
            nm->max_ttl_ms = cc->dns.max_ttl_ms;
            nm->on_failure = cc->dns.on_failure;
            nm->max_addresses = cc->dns.max_addresses;
            if (nm->answered || nm->querying)
                continue; /* known, or being looked up */
            if (n_want == cap_want) {
                cap_want = cap_want ? cap_want * 2 : 16;
                dns_name_t **v = realloc(want, cap_want * sizeof(*v));
                if (v == NULL) {
                    rc = -1;
                    break;
                }
                want = v;
            }
            want[n_want++] = nm;
            lookup(nm);
        }
    }
    if (rc < 0) {
        free(want);
        tg_errors_add(errs, "dns: out of memory");
        return -1;
    }
    wait_answers(d, want, n_want, tg_clock_ms() + cfg->dns.timeout_ms);
    free(want);
    /* a name of an on_failure: fail cluster must have an address to start with */
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const tg_cluster_conf_t *cc = &cfg->clusters[i];
        for (size_t j = 0; cc->dns.on_failure == TG_DNS_FAIL && j < cc->n_endpoints; j++) {
            dns_name_t *nm = cc->endpoints[j].named ? find(d, cc->name, cc->endpoints[j].host, cc->dns.family) : NULL;
            if (nm != NULL && nm->n == 0) {
                tg_errors_add(errs, "cluster '%s': endpoint '%s' does not resolve: %s (dns on_failure: fail)", cc->name,
                              cc->endpoints[j].address, nm->answered ? nm->last_error : "no answer within dns.timeout");
                rc = -1;
            }
        }
    }
    return rc;
}

static size_t addrs(void *arg, const tg_cluster_conf_t *cc, const tg_endpoint_conf_t *ec,
                    const struct sockaddr_storage **out)
{
    dns_name_t *nm = find(arg, cc->name, ec->host, cc->dns.family);
    *out = nm ? nm->addrs : NULL;
    return nm ? nm->n : 0;
}

static unsigned generation(void *arg)
{
    return ((tg_dns_t *)arg)->generation;
}

void tg_dns_commit(tg_dns_t *d, const tg_config_t *cfg)
{
    for (size_t i = 0; i < d->n_names; i++)
        d->names[i]->keep = 0;
    for (size_t i = 0; i < cfg->n_clusters; i++) {
        const tg_cluster_conf_t *cc = &cfg->clusters[i];
        for (size_t j = 0; j < cc->n_endpoints; j++) {
            dns_name_t *nm = cc->endpoints[j].named ? find(d, cc->name, cc->endpoints[j].host, cc->dns.family) : NULL;
            if (nm != NULL) {
                nm->keep = 1;
                nm->min_ttl_ms = cc->dns.min_ttl_ms;
                nm->max_ttl_ms = cc->dns.max_ttl_ms;
                nm->on_failure = cc->dns.on_failure;
                nm->max_addresses = cc->dns.max_addresses;
            }
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < d->n_names; i++) {
        dns_name_t *nm = d->names[i];
        if (nm->keep) {
            d->names[k++] = nm;
            continue;
        }
        tg_timer_cancel(&nm->timer);
        if (nm->querying)
            nm->dead = 1; /* its callback frees it */
        else
            name_free(nm);
    }
    d->n_names = k;
}

tg_dns_t *tg_dns_new(tg_loop_t *loop, void (*on_change)(void *arg), void *arg)
{
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        tg_error("dns: cannot initialise c-ares");
        return NULL;
    }
    tg_dns_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        ares_library_cleanup();
        return NULL;
    }
    d->loop = loop;
    d->base = tg_loop_base(loop);
    d->ares_timer.fn = on_ares_timer;
    d->change.fn = announce_now;
    d->on_change = on_change;
    d->arg = arg;
    d->resolver = (tg_resolver_t){ .prepare = prepare, .addrs = addrs, .generation = generation, .arg = d };
    return d;
}

void tg_dns_free(tg_dns_t *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n_names; i++) {
        tg_timer_cancel(&d->names[i]->timer);
        d->names[i]->dead = 1;
        if (!d->names[i]->querying)
            name_free(d->names[i]);
    }
    d->n_names = 0;
    if (d->ch != NULL)
        ares_destroy(d->ch); /* the names still querying are freed by their callbacks */
    for (size_t i = 0; i < d->n_socks; i++)
        event_free(d->socks[i].ev);
    free(d->socks);
    free(d->names);
    free(d->servers);
    tg_timer_cancel(&d->ares_timer);
    tg_defer_cancel(&d->change);
    free(d);
    ares_library_cleanup();
}

const tg_resolver_t *tg_dns_resolver(tg_dns_t *d)
{
    return &d->resolver;
}

size_t tg_dns_count(const tg_dns_t *d)
{
    return d ? d->n_names : 0;
}

void tg_dns_info(const tg_dns_t *d, size_t i, tg_dns_info_t *out)
{
    const dns_name_t *nm = d->names[i];
    uint64_t now = tg_clock_ms();
    *out = (tg_dns_info_t){ .cluster = nm->cluster, .host = nm->host, .addrs = nm->addrs, .n_addrs = nm->n,
                            .lookups = nm->lookups, .failures = nm->failures, .changes = nm->changes,
                            .resolved = nm->resolved, .last_error = nm->last_error, .ttl_ms = nm->ttl_ms,
                            .next_in_ms = nm->querying || nm->next_at_ms <= now ? 0 : nm->next_at_ms - now };
}
