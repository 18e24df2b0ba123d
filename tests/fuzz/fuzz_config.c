/* Fuzz target: the YAML config loader, filters' configs included. A
 * config with an access_log filter would open (create) its output file,
 * anywhere the input says: such inputs go to the access_log template
 * checker instead (the part of that filter's config that parses), so
 * fuzzing never creates files. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "filters/filter.h"
#include "filters/accesslog.h"

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
    tg_config_unref(c);
    tg_errors_free(&errs);
    return 0;
}
