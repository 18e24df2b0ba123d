/* Fuzz target: the YAML config loader, filters' configs included —
 * except access_log, whose loading opens (creates) its output file: inputs
 * that mention it are skipped, so fuzzing never creates files. */
#include <stdint.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "access_log", 10) != NULL)
        return 0;
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    tg_config_unref(c);
    tg_errors_free(&errs);
    return 0;
}
