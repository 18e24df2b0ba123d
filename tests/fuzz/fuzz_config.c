/* Fuzz target: the YAML config loader, filters' configs included. A
 * config with an access_log filter would open (create) its output file,
 * anywhere the input says: such inputs go to the access_log template
 * checker instead (the part of that filter's config that parses), so
 * fuzzing never creates files.
 *
 * Oracle beyond "no crash": a config the loader accepts must round-trip
 * through what `tollgate -T` and /config print. Its "document" (the file
 * as loaded, every scalar as a JSON string) is itself a config the loader
 * must accept, and to the same effective configuration, byte for byte.
 * Inputs whose document cannot stand for them are left out: secrets are
 * printed "<redacted>" and ${VAR}s expanded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "filters/filter.h"
#include "filters/accesslog.h"

static void round_trip(const tg_config_t *c)
{
    static const char key[] = ", \"document\": ";
    char *j1 = tg_config_to_json(c);
    if (j1 == NULL)
        abort(); /* memory only */
    char *d = strstr(j1, key), *end = strrchr(j1, '}'); /* the document, then "}\n" */
    if (d == NULL || end == NULL || end < d) {
        fprintf(stderr, "fuzz_config: no document in %s\n", j1);
        abort();
    }
    d += sizeof(key) - 1;
    size_t dl = (size_t)(end - d);
    if (memmem(d, dl, "<redacted>", 10) == NULL) {
        tg_errors_t errs = { 0 };
        tg_config_t *c2 = tg_config_load_string("fuzz.yaml", d, dl, tg_filters_registry(), &errs);
        char *j2 = c2 != NULL ? tg_config_to_json(c2) : NULL;
        if (c2 == NULL || j2 == NULL || strcmp(j1, j2) != 0) {
            fprintf(stderr, "fuzz_config: the printed document does not load back the same\n  first:  %s\n  again:  %s\n",
                    j1, j2 != NULL ? j2 : errs.n ? errs.msgs[0] : "(refused)");
            abort();
        }
        free(j2);
        tg_config_unref(c2);
        tg_errors_free(&errs);
    }
    free(j1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "access_log", 10) != NULL) {
        char *t = malloc(size + 1);
        memcpy(t, data, size);
        t[size] = '\0';
        (void)tg_access_log_template_check(t);
        free(t);
        return 0;
    }
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("fuzz.yaml", (const char *)data, size, tg_filters_registry(), &errs);
    tg_errors_free(&errs);
    if (c != NULL && memmem(data, size, "${", 2) == NULL)
        round_trip(c);
    tg_config_unref(c);
    return 0;
}
