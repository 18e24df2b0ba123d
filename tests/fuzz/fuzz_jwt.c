/* Fuzz target: JWT verification — base64url, the JSON parser, claim
 * checks — against an HS256 key, with the input as the token. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "filters/auth.h"
#include "filters/jwt.h"

static tg_config_t *cfg;
static const tg_jwt_conf_t *jwt;

static void setup(void)
{
    static const char yaml[] = "listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                               "filters: [{ auth: { jwt: { secret: fuzz-secret-0123456789, issuer: i, "
                               "audiences: [a], scopes: [s] } } }]\n";
    tg_errors_t errs = { 0 };
    cfg = tg_config_load_string("j.yaml", yaml, sizeof(yaml) - 1, &errs);
    tg_errors_free(&errs);
    if (cfg == NULL)
        abort();
    jwt = tg_auth_jwt(cfg->filters.v[0].conf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL)
        setup();
    char *tok = malloc(size + 1);
    memcpy(tok, data, size);
    tok[size] = '\0';
    tg_arena_t a;
    tg_arena_init(&a);
    const char *id = NULL;
    tg_jwt_verify(jwt, tok, 1700000000, &a, &id);
    tg_arena_free(&a);
    free(tok);
    return 0;
}
