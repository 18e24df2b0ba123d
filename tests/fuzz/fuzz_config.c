/* Fuzz target: the YAML config loader, filters' configs included. */
#include <stdint.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    tg_config_unref(c);
    tg_errors_free(&errs);
    return 0;
}
