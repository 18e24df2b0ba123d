/*
 * proxy/main.c — command line: `tollgate -c FILE` runs the gateway,
 * `tollgate -t -c FILE` checks a config and exits 0/1 like `nginx -t`,
 * `-T` also prints the effective config, `tollgate ctl CMD` talks to a
 * running gateway's admin listener.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"
#include "filters/filter.h"
#include "proxy/base/log.h"
#include "proxy/base/mem.h"
#include "proxy/ctl.h"
#include "proxy/process.h"

#ifndef TOLLGATE_DEFAULT_CONFIG
#define TOLLGATE_DEFAULT_CONFIG "/etc/tollgate/tollgate.yaml"
#endif

/* --schema: the JSON Schema of the config, indented (docs/tollgate.schema.json
 * is this output, checked by a test). */
static int print_schema(void)
{
    tg_schema_filter_t fs[32];
    size_t n = tg_filters_schema(fs, 32);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL || n > 32 || tg_schema_write_json(m, fs, n) < 0 || fclose(m) != 0) {
        fprintf(stderr, "tollgate: cannot write the schema\n");
        free(buf);
        return 1;
    }
    tg_ctl_print_json(stdout, buf);
    free(buf);
    return fflush(stdout) == 0 ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tollgate [-t | -T] -c FILE [-w] [-l LEVEL]\n"
            "       tollgate [-c FILE] ctl reload|config|health|endpoints|status|top|purge\n"
            "\n"
            "  -c, --config FILE    configuration file (YAML; ctl default: " TOLLGATE_DEFAULT_CONFIG ")\n"
            "  -t, --test           check the configuration and exit (0 = valid)\n"
            "  -T, --test-dump      check it, then print the effective configuration (secrets redacted)\n"
            "  -w, --watch          reload when the configuration file changes\n"
            "  -l, --log-level LVL  debug | info | warn | error (default: info)\n"
            "      --schema         print the config's JSON Schema (draft 2020-12) and exit\n"
            "  -v, --version        print the version and exit\n"
            "  -h, --help           this help\n"
            "\n"
            "Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT drain in-flight\n"
            "requests, then exit 0; SIGUSR1 reopens the access logs.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "test", no_argument, NULL, 't' },
        { "test-dump", no_argument, NULL, 'T' },    { "watch", no_argument, NULL, 'w' },
        { "log-level", required_argument, NULL, 'l' }, { "version", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' }, { "schema", no_argument, NULL, 'S' }, { NULL, 0, NULL, 0 },
    };
    tg_mem_hook_libevent(); /* before libevent allocates anything: workers' buffers come from their caches */
    const char *config = NULL;
    int test = 0, dump = 0, watch = 0, c;
    /* '+': options end at the first word, so that `ctl top -n 3` keeps its own */
    while ((c = getopt_long(argc, argv, "+c:tTwl:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'T':
            test = dump = 1;
            break;
        case 'w':
            watch = 1;
            break;
        case 'l': {
            tg_log_level_t lvl;
            if (tg_log_parse_level(optarg, &lvl) < 0) {
                fprintf(stderr, "tollgate: unknown log level '%s'\n", optarg);
                return 2;
            }
            tg_log_set_level(lvl);
            break;
        }
        case 'v':
            printf("tollgate %s\n", TOLLGATE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'S':
            return print_schema();
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc && strcmp(argv[optind], "ctl") == 0)
        return tg_ctl_main(config ? config : TOLLGATE_DEFAULT_CONFIG, argc - optind - 1, argv + optind + 1);
    if (config == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    return test ? tg_process_check(config, dump) : tg_process_run(config, watch);
}
