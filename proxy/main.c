/*
 * proxy/main.c — command line: `tollgate -c FILE` runs the gateway,
 * `tollgate -t -c FILE` checks a config and exits 0/1 like `nginx -t`.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "proxy/base/log.h"
#include "proxy/process.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tollgate [-t] -c FILE [-l LEVEL]\n"
            "\n"
            "  -c, --config FILE    configuration file (YAML)\n"
            "  -t, --test           check the configuration and exit (0 = valid)\n"
            "  -w, --watch          reload when the configuration file changes\n"
            "  -l, --log-level LVL  debug | info | warn | error (default: info)\n"
            "  -v, --version        print the version and exit\n"
            "  -h, --help           this help\n"
            "\n"
            "Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT drain in-flight\n"
            "requests, then exit 0.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' }, { "test", no_argument, NULL, 't' },
        { "watch", no_argument, NULL, 'w' },
        { "log-level", required_argument, NULL, 'l' }, { "version", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
    };
    const char *config = NULL;
    int test = 0, watch = 0, c;
    while ((c = getopt_long(argc, argv, "c:twl:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 't':
            test = 1;
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
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    return test ? tg_process_check(config) : tg_process_run(config, watch);
}
