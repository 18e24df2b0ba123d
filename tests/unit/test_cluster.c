/* Unit tests: endpoint resolution and round-robin spread, including from
 * several threads at once (the cursor is shared by all workers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/cluster.h"

static tg_config_t *load(const char *yaml)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("c.yaml", yaml, strlen(yaml), &errs);
    tg_errors_free(&errs);
    return c;
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
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &errs);
    assert_non_null(s);
    assert_int_equal(s->n_clusters, 2);
    assert_int_equal(s->n_slots, 4);
    assert_int_equal(s->clusters[1].endpoints[0].slot, 3);
    assert_int_equal(s->clusters[0].endpoints[2].addr.ss_family, AF_INET6);
    tg_cluster_set_free(s);
    tg_config_unref(cfg);
}

static void test_round_robin_even(void **state)
{
    tg_config_t *cfg = load(YAML);
    tg_errors_t errs = { 0 };
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &errs);
    size_t counts[3] = { 0 };
    for (int i = 0; i < 300; i++)
        counts[tg_cluster_rr_next(&s->clusters[0]) % 3]++;
    assert_int_equal(counts[0], 100);
    assert_int_equal(counts[1], 100);
    assert_int_equal(counts[2], 100);
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
    tg_cluster_set_t *s = tg_cluster_set_build(cfg, NULL, &errs);
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
    tg_cluster_set_t *sa = tg_cluster_set_build(a, &reg, &errs), *sb = tg_cluster_set_build(b, &reg, &errs);
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

static void test_unresolvable(void **state)
{
    tg_config_t *cfg = load("listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                            "clusters: [{ name: a, endpoints: ['no-such-host.invalid:80'] }]\n");
    assert_non_null(cfg);
    tg_errors_t errs = { 0 };
    assert_null(tg_cluster_set_build(cfg, NULL, &errs));
    assert_int_equal(errs.n, 1);
    assert_non_null(strstr(errs.msgs[0], "cluster 'a': cannot resolve endpoint 'no-such-host.invalid:80'"));
    tg_errors_free(&errs);
    tg_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_slots),
        cmocka_unit_test(test_round_robin_even),
        cmocka_unit_test(test_round_robin_threads),
        cmocka_unit_test(test_registry_keeps_slots),
        cmocka_unit_test(test_unresolvable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
