/*
 * pbjson_tool: the JSON <-> protobuf codec (filters/pbjson.h) from the
 * command line, for tests/integration/test_pbjson.py, which compares it
 * with protobuf's own json_format on many messages at once.
 *
 *   pbjson_tool SET.pb TYPE to-json|from-json|set [always] [preserve] [ignore] [depth=N]
 *
 * One record a line on stdin: to-json reads base64 protobuf and writes
 * the JSON; from-json reads JSON and writes base64 protobuf; set reads
 * tab-separated FIELD.PATH=TEXT bindings (tg_pbj_set, in order) and
 * writes the base64 protobuf they make. A record the codec refuses gives
 * "ERROR <reason>". Exit 2 on usage or a bad set.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/grpcweb.h"
#include "filters/pbjson.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b != NULL && (k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap && (b = realloc(b, cap *= 2)) == NULL)
            break;
    }
    fclose(f);
    *len = n;
    return b;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: pbjson_tool SET.pb TYPE to-json|from-json [always] [preserve] [ignore] [depth=N]\n");
        return 2;
    }
    size_t len;
    char *set = slurp(argv[1], &len), why[512];
    tg_pbd_pool_t *pool = set ? tg_pbd_pool_new(set, len, why, sizeof(why)) : NULL;
    free(set); /* the pool keeps what it needs */
    if (pool == NULL) {
        fprintf(stderr, "pbjson_tool: %s: %s\n", argv[1], set ? why : "cannot read");
        return 2;
    }
    const tg_pbd_message_t *m = tg_pbd_message(pool, argv[2]);
    if (m == NULL) {
        fprintf(stderr, "pbjson_tool: no message %s\n", argv[2]);
        tg_pbd_pool_free(pool);
        return 2;
    }
    int to_json = strcmp(argv[3], "to-json") == 0;
    tg_pbj_opts_t o = { 0 };
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "always") == 0)
            o.always_print_primitive_fields = 1;
        else if (strcmp(argv[i], "preserve") == 0)
            o.preserve_proto_field_names = 1;
        else if (strcmp(argv[i], "ignore") == 0)
            o.ignore_unknown_fields = 1;
        else if (strncmp(argv[i], "depth=", 6) == 0)
            o.max_depth = (unsigned)atoi(argv[i] + 6);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        why[0] = '\0';
        if (to_json) {
            uint8_t *bin = malloc((size_t)n + 4);
            char carry[4];
            unsigned nc = 0;
            long bl = bin ? tg_grpcweb_b64_decode(line, (size_t)n, bin, carry, &nc) : -1;
            struct evbuffer *out = evbuffer_new();
            if (bl < 0 || nc != 0)
                printf("ERROR the test sent bad base64\n");
            else if (tg_pbj_to_json(pool, m, bin, (size_t)bl, &o, out, why, sizeof(why)) < 0)
                printf("ERROR %s\n", why);
            else
                printf("%.*s\n", (int)evbuffer_get_length(out), (const char *)evbuffer_pullup(out, -1));
            evbuffer_free(out);
            free(bin);
        } else {
            tg_pb_writer_t w = { 0 };
            int rc = 0;
            if (strcmp(argv[3], "set") == 0) {
                for (char *save = NULL, *pair = strtok_r(line, "\t", &save); pair != NULL && rc == 0;
                     pair = strtok_r(NULL, "\t", &save)) {
                    char *eq = strchr(pair, '=');
                    if (eq == NULL) {
                        snprintf(why, sizeof(why), "the test sent no '='");
                        rc = -1;
                        break;
                    }
                    *eq = '\0';
                    rc = tg_pbj_set(pool, m, pair, eq + 1, strlen(eq + 1), &o, &w, why, sizeof(why));
                }
            } else {
                rc = tg_pbj_from_json(pool, m, line, (size_t)n, &o, &w, why, sizeof(why));
            }
            if (rc < 0) {
                printf("ERROR %s\n", why);
            } else {
                char *b64 = malloc((w.len + 2) / 3 * 4 + 1);
                size_t k = b64 ? tg_grpcweb_b64_encode(w.p, w.len, b64) : 0;
                printf("%.*s\n", (int)k, b64 ? b64 : "");
                free(b64);
            }
            tg_pb_writer_free(&w);
        }
        fflush(stdout);
    }
    free(line);
    tg_pbd_pool_free(pool);
    return 0;
}
