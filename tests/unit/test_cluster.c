/* Unit tests: endpoints from IP addresses and from names (one per
 * address, slots kept across sets); the order in which a request tries
 * endpoints (round-robin over the usable ones, ejections with their
 * backoff); the round-robin cursor from several threads at once (it is
 * shared by all workers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxy/cluster.h"
#include "filters/filter.h"
#include "proxy/base/clock.h"
#include "proxy/health.h"

/* A health table with entries for the first slots, as the process makes
 * one for each new endpoint slot. */
static tg_health_t *health_new(void)
{
    tg_health_t *h = tg_health_new();
    for (size_t i = 0; h != NULL && i < 64; i++)
        assert_int_equal(tg_health_reserve(h, i), 0);
    return h;
}

static tg_config_t *load(const char *yaml)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("c.yaml", yaml, strlen(yaml), tg_filters_registry(), &errs);
    tg_errors_free(&errs);
    return c;
}

/* A resolver as dns.c is to the cluster set: localhost is 127.0.0.1,
 * api.test has what the test put in `api` (port 0), any other name none. */
typedef struct fake {
    struct sockaddr_storage api[4], lo;
    size_t n_api;
} fake_t;

static fake_t fake;

static size_t fake_addrs(void *arg, const tg_cluster_conf_t *cc, const tg_endpoint_conf_t *ec,
                         const struct sockaddr_storage **out)
{
    fake_t *f = arg;
    (void)cc;
    if (strcmp(ec->host, "localhost") == 0) {
        *out = &f->lo;
        return 1;
    }
    *out = f->api;
    return strcmp(ec->host, "api.test") == 0 ? f->n_api : 0;
}

static const tg_resolver_t fake_names = { .addrs = fake_addrs, .arg = &fake };

static void v4(struct sockaddr_storage *a, const char *ip)
{
    memset(a, 0, sizeof(*a));
    a->ss_family = AF_INET;
    inet_pton(AF_INET, ip, &((struct sockaddr_in *)a)->sin_addr);
}

static const char *YAML =
    "listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
    "clusters:\n"
    "  - { name: a, endpoints: ['127.0.0.1:1001', '127.0.0.1:1002', '[::1]:1003'] }\n"
    "  - { name: b, endpoints: ['localhost:2001'] }\n";

static void test_build_and_slots(void **state)
{
    tg_config_t *cfg = load(YAML);
    assert_non_null(cfg);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
    assert_non_null(s);
    assert_int_equal(s->n_clusters, 2);
    assert_int_equal(s->n_slots, 4);
    assert_int_equal(s->clusters[1].endpoints[0].slot, 3);
    assert_int_equal(s->clusters[0].endpoints[2].addr.ss_family, AF_INET6);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
}

/* Each order lists every usable endpoint once, as a rotation of the
 * cluster's order; the first endpoints tried spread evenly. */
static void check_rotation(const size_t *order, size_t k, const size_t *usable)
{
    size_t p = 0;
    while (p < k && usable[p] != order[0])
        p++;
    assert_true(p < k);
    for (size_t i = 0; i < k; i++)
        assert_int_equal(order[i], usable[(p + i) % k]);
}

static void test_endpoint_order_round_robin(void **state)
{
    tg_config_t *cfg = load(YAML);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
    tg_health_t *h = health_new();
    size_t first[3] = { 0 }, order[3], all[3] = { 0, 1, 2 };
    uint64_t now = tg_clock_ms();
    for (int i = 0; i < 300; i++) {
        size_t k = tg_health_order(h, &s->clusters[0], tg_cluster_rr_next(&s->clusters[0]), 0, now, order);
        assert_int_equal(k, 3);
        check_rotation(order, k, all);
        first[order[0]]++;
    }
    assert_int_equal(first[0], 100);
    assert_int_equal(first[1], 100);
    assert_int_equal(first[2], 100);
    tg_health_free(h);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
}

/* An ejected endpoint is skipped (all are tried with ignore_health); the
 * ejection doubles per consecutive ejection up to max_ejection_time, and
 * the last usable endpoint is never ejected. */
static void test_endpoint_order_skips_ejected(void **state)
{
    tg_config_t *cfg = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                            "clusters:\n"
                            "  - name: a\n"
                            "    endpoints: ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003']\n"
                            "    outlier_detection: { consecutive_failures: 2, base_ejection_time: 1s, "
                            "max_ejection_time: 4s }\n");
    assert_non_null(cfg);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
    tg_cluster_t *c = &s->clusters[0];
    tg_health_t *h = health_new();
    size_t order[3], first[3] = { 0 }, rest[2] = { 0, 2 };
    uint64_t t = 1000000;
    tg_health_report(h, c, &c->endpoints[1], 0, t);
    assert_int_equal(tg_health_order(h, c, 0, 0, t, order), 3); /* one failure: not yet */
    tg_health_report(h, c, &c->endpoints[1], 0, t);
    for (unsigned i = 0; i < 200; i++) {
        size_t k = tg_health_order(h, c, i, 0, t, order);
        assert_int_equal(k, 2);
        check_rotation(order, k, rest);
        first[order[0]]++;
    }
    assert_int_equal(first[0], 100);
    assert_int_equal(first[1], 0);
    assert_int_equal(first[2], 100);
    assert_int_equal(tg_health_order(h, c, 0, 1, t, order), 3); /* ignore_health */
    /* 1 s, then 2 s, then 4 s, then still 4 s (max_ejection_time) */
    uint64_t want[] = { 1000, 2000, 4000, 4000 };
    for (int round = 0; round < 4; round++) {
        if (round > 0) {
            tg_health_report(h, c, &c->endpoints[1], 0, t);
            tg_health_report(h, c, &c->endpoints[1], 0, t);
        }
        assert_int_equal(tg_health_order(h, c, 0, 0, t + want[round] - 1, order), 2);
        assert_int_equal(tg_health_order(h, c, 0, 0, t + want[round], order), 3);
        t += want[round];
    }
    /* eject 0; then 2 would be the last usable endpoint: kept */
    tg_health_report(h, c, &c->endpoints[1], 0, t);
    tg_health_report(h, c, &c->endpoints[1], 0, t);
    tg_health_report(h, c, &c->endpoints[0], 0, t);
    tg_health_report(h, c, &c->endpoints[0], 0, t);
    tg_health_report(h, c, &c->endpoints[2], 0, t);
    tg_health_report(h, c, &c->endpoints[2], 0, t);
    assert_int_equal(tg_health_order(h, c, 7, 0, t, order), 1);
    assert_int_equal(order[0], 2);
    tg_health_free(h);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
}

typedef struct { tg_cluster_t *c; size_t counts[3]; } job_t;

static void *hammer(void *arg)
{
    job_t *j = arg;
    for (int i = 0; i < 30000; i++)
        j->counts[tg_cluster_rr_next(j->c) % 3]++;
    return NULL;
}

static void test_round_robin_threads(void **state)
{
    tg_config_t *cfg = load(YAML);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
    job_t jobs[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&jobs[i], 0, sizeof(jobs[i]));
        jobs[i].c = &s->clusters[0];
        pthread_create(&t[i], NULL, hammer, &jobs[i]);
    }
    size_t total[3] = { 0 };
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        for (int k = 0; k < 3; k++)
            total[k] += jobs[i].counts[k];
    }
    assert_int_equal(total[0], 40000);
    assert_int_equal(total[1], 40000);
    assert_int_equal(total[2], 40000);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
}

static void test_registry_keeps_slots(void **state)
{
    tg_registry_t reg = { 0 };
    tg_config_t *a = load(YAML);
    tg_config_t *b = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                          "clusters:\n"
                          "  - { name: a, endpoints: ['127.0.0.1:9999', '127.0.0.1:1002'] }\n");
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *sa = tg_cluster_set_build(a, &reg, &fake_names, NULL, &errs), *sb = tg_cluster_set_build(b, &reg, &fake_names, NULL, &errs);
    assert_non_null(sa);
    assert_non_null(sb);
    /* a/127.0.0.1:1002 keeps the slot it had in the first snapshot */
    assert_int_equal(sb->clusters[0].endpoints[1].slot, sa->clusters[0].endpoints[1].slot);
    assert_int_equal(sb->clusters[0].endpoints[0].slot, 4); /* a new address gets a new slot */
    assert_int_equal(sb->n_slots, 5);
    tg_cluster_set_free(sa);
    tg_cluster_set_free(sb);
    tg_config_unref(a);
    tg_config_unref(b);
    tg_registry_free(&reg);
}

static void count_reuse(void *arg, size_t slot)
{
    ((size_t *)arg)[slot]++;
}

/* Slots are leased by live sets: a set's slots pass to new names only once
 * it is gone (with the reuse hook run and the generation bumped), so names
 * coming and going never exhaust a bounded registry; only the names in use
 * at once count. */
static void test_registry_reuses_slots(void **state)
{
    size_t reused[8] = { 0 };
    tg_registry_t reg = { .limit = 4, .on_reuse = count_reuse, .reuse_arg = reused };
    tg_errors_t errs = { 0 };
    tg_config_t *a = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                          "clusters: [{ name: c, endpoints: ['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003'] }]\n");
    tg_config_t *b = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                          "clusters: [{ name: c, endpoints: ['127.0.0.1:1003', '127.0.0.1:2001', '127.0.0.1:2002'] }]\n");
    tg_cluster_set_t *sa = tg_cluster_set_build(a, &reg, &fake_names, NULL, &errs);
    assert_non_null(sa);
    assert_int_equal(tg_registry_in_use(&reg), 3);
    /* while a is live, b needs 5 slots: over the limit of 4, said so */
    assert_null(tg_cluster_set_build(b, &reg, &fake_names, NULL, &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "more than 4 upstream endpoints in use at once"));
    tg_errors_free(&errs);
    assert_int_equal(tg_registry_in_use(&reg), 3); /* the failed build gave its leases back */
    size_t kept = sa->clusters[0].endpoints[2].slot;
    tg_cluster_set_free(sa); /* a is gone: its slots are free */
    assert_int_equal(tg_registry_in_use(&reg), 0);
    tg_cluster_set_t *sb = tg_cluster_set_build(b, &reg, &fake_names, NULL, &errs);
    assert_non_null(sb);
    assert_int_equal(reg.n, 4); /* the 3 of a, and one the failed build took for a name of b */
    const tg_endpoint_t *ep = sb->clusters[0].endpoints;
    assert_int_equal(ep[0].slot, kept); /* c/127.0.0.1:1003 stays where it was, same generation */
    assert_int_equal(ep[0].gen, 0);
    assert_int_equal(reused[kept], 0);
    for (int i = 1; i < 3; i++) { /* the new names took freed slots, each reset once */
        assert_true(ep[i].slot != kept && ep[i].slot < 4);
        if (ep[i].slot < 3) {
            assert_int_equal(ep[i].gen, 1);
            assert_int_equal(reused[ep[i].slot], 1);
        }
    }
    assert_int_equal(tg_registry_in_use(&reg), 3);
    tg_cluster_set_free(sb);
    tg_config_unref(a);
    tg_config_unref(b);
    tg_registry_free(&reg);
}

/* A name is one endpoint per address it has now, each with the name's
 * port and weight and a slot of its own; between two sets an address that
 * stays keeps its slot (and so its health and counters) and is not new,
 * one that comes is new (health-checked first), one that goes gives its
 * slot back. A name with no address adds no endpoint. */
static void test_name_endpoints(void **state)
{
    tg_registry_t reg = { 0 };
    tg_config_t *cfg = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                            "clusters:\n"
                            "  - { name: a, endpoints: ['127.0.0.1:1001', { address: 'api.test:8000', weight: 3 }] }\n"
                            "  - { name: b, endpoints: ['gone.invalid:80'] }\n");
    assert_non_null(cfg);
    assert_false(cfg->clusters[0].endpoints[0].named);
    assert_true(cfg->clusters[0].endpoints[1].named);
    tg_errors_t errs = { 0 };
    v4(&fake.api[0], "10.0.0.1");
    v4(&fake.api[1], "10.0.0.2");
    fake.n_api = 2;
    tg_cluster_set_t *s1 = tg_cluster_set_build(cfg, &reg, &fake_names, NULL, &errs);
    assert_non_null(s1);
    const tg_cluster_t *c = &s1->clusters[0];
    assert_int_equal(c->n_endpoints, 3);
    assert_string_equal(c->endpoints[1].addr_text, "10.0.0.1:8000");
    assert_string_equal(c->endpoints[2].addr_text, "10.0.0.2:8000");
    assert_string_equal(c->endpoints[2].label, "api.test:8000 (10.0.0.2:8000)");
    assert_int_equal(ntohs(((struct sockaddr_in *)&c->endpoints[2].addr)->sin_port), 8000);
    assert_int_equal(c->n_schedule, 7); /* 1 + 3 + 3: each address has the name's weight */
    assert_int_equal(s1->clusters[1].n_endpoints, 0);
    for (size_t j = 0; j < 3; j++)
        assert_true(c->endpoints[j].joined);
    /* the answer moves: 10.0.0.1 goes, 10.0.0.3 comes */
    v4(&fake.api[0], "10.0.0.2");
    v4(&fake.api[1], "10.0.0.3");
    tg_cluster_set_t *s2 = tg_cluster_set_build(cfg, &reg, &fake_names, NULL, &errs);
    assert_non_null(s2);
    const tg_cluster_t *d = &s2->clusters[0];
    assert_int_equal(d->n_endpoints, 3);
    assert_int_equal(d->endpoints[0].slot, c->endpoints[0].slot);
    assert_false(d->endpoints[0].joined);
    assert_string_equal(d->endpoints[1].addr_text, "10.0.0.2:8000");
    assert_int_equal(d->endpoints[1].slot, c->endpoints[2].slot); /* stays: same slot, not new */
    assert_false(d->endpoints[1].joined);
    assert_true(d->endpoints[2].joined);
    assert_true(d->endpoints[2].slot != c->endpoints[1].slot); /* s1 still holds 10.0.0.1's */
    assert_true(tg_cluster_set_uses(s2, d->endpoints[1].slot, d->endpoints[1].gen));
    assert_false(tg_cluster_set_uses(s2, c->endpoints[1].slot, c->endpoints[1].gen));
    /* a set derived from s1 (new answers, same config) counts its breakers with s1's */
    tg_cluster_set_t *s3 = tg_cluster_set_build(cfg, &reg, &fake_names, s1, &errs);
    assert_non_null(s3);
    assert_ptr_equal(s3->clusters[0].load, s1->clusters[0].load);
    assert_ptr_not_equal(s2->clusters[0].load, s1->clusters[0].load);
    atomic_fetch_add(&s1->clusters[0].load->requests, 1);
    tg_cluster_set_free(s1); /* s3 keeps the counts alive */
    assert_int_equal(atomic_load(&s3->clusters[0].load->requests), 1);
    tg_cluster_set_free(s3);
    tg_cluster_set_free(s2);
    assert_int_equal(tg_registry_in_use(&reg), 0);
    tg_config_unref(cfg);
    tg_registry_free(&reg);
}

/* lb: peak_ewma — a slow answer makes its endpoint the costlier at once;
 * left alone while the other keeps being measured, its average decays
 * until it is tried first again (seconds, not minutes). */
static void test_peak_ewma_cost_and_recovery(void **state)
{
    tg_config_t *cfg = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                            "clusters: [{ name: a, lb: peak_ewma, endpoints: ['127.0.0.1:1001', '127.0.0.1:1002'] }]\n");
    assert_non_null(cfg);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
    assert_non_null(s);
    tg_health_t *h = health_new();
    const tg_cluster_t *c = &s->clusters[0];
    size_t order[2];
    uint64_t t = 100000;
    tg_health_ewma_observe(h, c->endpoints[0].slot, 250000, t); /* slow: 250 ms */
    tg_health_ewma_observe(h, c->endpoints[1].slot, 3000, t);   /* fast: 3 ms */
    order[0] = 0, order[1] = 1;
    tg_health_least_first(h, c, order, 2, 0, 1, 1, t);
    assert_int_equal(order[0], 1); /* the fast one first, whichever was drawn first */
    order[0] = 1, order[1] = 0;
    tg_health_least_first(h, c, order, 2, 0, 1, 1, t);
    assert_int_equal(order[0], 1);
    /* one faster answer pulls the slow one's average down by its weight only */
    tg_health_ewma_observe(h, c->endpoints[0].slot, 3000, t + 100);
    assert_true(atomic_load(&tg_health_ep(h, c->endpoints[0].slot)->ewma_us) > 100000);
    /* the fast one keeps being measured; the slow one, left alone, decays */
    uint64_t back = 0;
    for (uint64_t dt = 1000; dt <= 60000 && back == 0; dt += 1000) {
        tg_health_ewma_observe(h, c->endpoints[1].slot, 3000, t + 100 + dt);
        order[0] = 1, order[1] = 0;
        tg_health_least_first(h, c, order, 2, 0, 1, 1, t + 100 + dt);
        if (order[0] == 0)
            back = dt;
    }
    assert_true(back > 0 && back <= 15000); /* tried again within seconds */
    /* least_request ignores latency: in flight alone decides */
    tg_health_inflight_add(h, c->endpoints[1].slot, 1);
    order[0] = 1, order[1] = 0;
    tg_health_least_first(h, c, order, 2, 0, 1, 0, t);
    assert_int_equal(order[0], 0);
    tg_health_inflight_add(h, c->endpoints[1].slot, -1);
    tg_health_free(h);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
    tg_errors_free(&errs);
}

/* lb: least_request over a few endpoints: all are compared (not two at
 * random), the one with the fewest requests in flight first; on a tie,
 * the first of the rotation. */
static void test_least_of_all(void **state)
{
    tg_config_t *cfg = load(YAML);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
    tg_health_t *h = health_new();
    const tg_cluster_t *c = &s->clusters[0];
    uint64_t now = tg_clock_ms();
    size_t order[3] = { 0, 1, 2 };
    tg_health_least_of_all(h, c, order, 3, 0, now);
    assert_int_equal(order[0], 0); /* all idle: the rotation's first */
    tg_health_inflight_add(h, c->endpoints[0].slot, 2);
    tg_health_inflight_add(h, c->endpoints[2].slot, 1);
    tg_health_least_of_all(h, c, order, 3, 0, now);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 0); /* the rest keep their rotation, for failover */
    assert_int_equal(order[2], 2);
    size_t rotated[3] = { 2, 0, 1 };
    tg_health_inflight_add(h, c->endpoints[1].slot, 1); /* 1 and 2 tie at one */
    tg_health_least_of_all(h, c, rotated, 3, 0, now);
    assert_int_equal(rotated[0], 2);
    tg_health_free(h);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
}

/* A large cluster's window (tg_health_order_window, from a worker's view
 * of the usable endpoints) is the first entries of the full order, for
 * plain and weighted round robin, with endpoints down and ejected, after
 * health changes and when an ejection ends; ignore_health too. */
static void window_matches(tg_health_t *h, tg_cluster_t *c, tg_lb_view_t *v, uint64_t now)
{
    size_t full[300], win[16];
    for (unsigned draw = 0; draw < 700; draw += 7)
        for (int ignore = 0; ignore < 2; ignore++) {
            size_t n = tg_health_order(h, c, draw, ignore, now, full), usable = 0;
            size_t w = tg_health_order_window(h, c, v, draw, ignore, now, win, 16, &usable);
            assert_int_equal(usable, n);
            assert_int_equal(w, n < 16 ? n : 16);
            for (size_t i = 0; i < w; i++)
                assert_int_equal(win[i], full[i]);
        }
}

static void test_order_window(void **state)
{
    (void)state;
    for (int weighted = 0; weighted < 2; weighted++) {
        char yaml[16384];
        size_t at = (size_t)snprintf(yaml, sizeof(yaml), "listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                                                         "clusters:\n  - name: big\n    endpoints:\n");
        for (int i = 0; i < 200; i++)
            at += (size_t)snprintf(yaml + at, sizeof(yaml) - at, weighted ? "      - { address: '127.0.0.1:%d', weight: %d }\n"
                                                                          : "      - '127.0.0.1:%d'%.0d\n",
                                   2000 + i, weighted ? 1 + i % 3 : 0);
        tg_config_t *cfg = load(yaml);
        assert_non_null(cfg);
        tg_errors_t errs = { 0 };
        tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &fake_names, NULL, &errs);
        assert_non_null(s);
        tg_cluster_t *c = &s->clusters[0];
        assert_int_equal(c->n_endpoints, 200);
        assert_non_null(c->views); /* more than TG_LB_VIEW_MIN */
        tg_health_t *h = tg_health_new();
        for (size_t i = 0; i < 256; i++)
            assert_int_equal(tg_health_reserve(h, i), 0);
        tg_lb_view_t *v = &c->views[3];
        uint64_t now = 1000000;
        window_matches(h, c, v, now);
        /* some down, some ejected (one until now + 1000) */
        for (size_t i = 0; i < 200; i += 7)
            atomic_store(&tg_health_ep(h, c->endpoints[i].slot)->active_down, 1);
        for (size_t i = 3; i < 200; i += 11)
            atomic_store(&tg_health_ep(h, c->endpoints[i].slot)->ejected_until_ms, now + 5000 + i);
        atomic_store(&tg_health_ep(h, c->endpoints[5].slot)->ejected_until_ms, now + 1000);
        tg_health_changed(h);
        window_matches(h, c, v, now);
        assert_false(tg_lb_view_has(v, 5));
        assert_false(tg_lb_view_has(v, 0));
        assert_true(tg_lb_view_has(v, 1));
        window_matches(h, c, v, now + 1000); /* endpoint 5's ejection ended: the view saw it without a change */
        assert_true(tg_lb_view_has(v, 5));
        /* all but two down */
        for (size_t i = 0; i < 200; i++)
            atomic_store(&tg_health_ep(h, c->endpoints[i].slot)->active_down, i != 10 && i != 150);
        tg_health_changed(h);
        window_matches(h, c, v, now + 1000);
        size_t win[16], usable;
        assert_int_equal(tg_health_order_window(h, c, v, 1, 0, now + 1000, win, 16, &usable), 2);
        assert_int_equal(usable, 2);
        tg_health_free(h);
        tg_cluster_set_free(s);
        tg_config_unref(cfg);
        tg_errors_free(&errs);
    }
}

int main(void)
{
    v4(&fake.lo, "127.0.0.1");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_slots),
        cmocka_unit_test(test_peak_ewma_cost_and_recovery),
        cmocka_unit_test(test_endpoint_order_round_robin),
        cmocka_unit_test(test_endpoint_order_skips_ejected),
        cmocka_unit_test(test_round_robin_threads),
        cmocka_unit_test(test_registry_keeps_slots),
        cmocka_unit_test(test_registry_reuses_slots),
        cmocka_unit_test(test_name_endpoints),
        cmocka_unit_test(test_least_of_all),
        cmocka_unit_test(test_order_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
