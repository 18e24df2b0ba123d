/* Fuzz target: JWT verification and key loading. The first input byte
 * picks what the rest is:
 *   0-127: a token, verified against an HS256 secret, an RS256 and an
 *          ES256 public key (PEM, kids r1/e1) — so base64url, the JSON
 *          parser, claim checks and all three signature paths (ES256's
 *          raw r||s form included) see attacker bytes;
 *   128-191: a JWKS document, loaded as jwks_file;
 *   192-255: a PEM public key file, loaded as a `keys:` entry.
 * The keys are fixed (public halves below) so that the corpus holds
 * validly signed tokens to mutate from. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "filters/auth.h"
#include "filters/jwt.h"

static const char ec_pub[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtdF1WxI7+e/8GALMFoiFytQKfsDF\n"
    "PcQtnROULnl5Wyzw5kTbzjS6i1LBTVVzm0pFhNdi17GwjnltvWGGBHkmFw==\n"
    "-----END PUBLIC KEY-----\n";
static const char rsa_pub[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAjo+Q5SpuJSiMEdoBe/Dc\n"
    "zZ6NyjO3+qnuj/Qq1rFT6txA5vNPjzTWbsw6pTkIjOY0pLlUOFHbhVkHM0iwIbYO\n"
    "7wMjv9yqmz/PDaxhC0vF9kjrAWpT9tVm2nCWN0KqEPhOubYiveaU013CMfK2lRYp\n"
    "McXKz7rv1ZPH4n1G7aizNZU4vuKI1VhfvkEF3+E+JjyCOv2gxR2usFwADStIa2VA\n"
    "xUJPe/pzAnfW1UoIVBEawi+Twkv+hRNYOI1y4SMjOO2lLj+dztbCwDBoyeeknZ2u\n"
    "IP2cVCFDtEA4uD468VlMijjqaU/mHjzdgUjF0hjVo5qxHUtFHagKK+s/wj4IYGvo\n"
    "7wIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static char dir[] = "/tmp/tg-fuzz-jwt-XXXXXX";
static tg_config_t *cfg;
static const tg_jwt_conf_t *jwt;

static void write_file(const char *name, const void *data, size_t len)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
}

static void setup(void)
{
    if (mkdtemp(dir) == NULL)
        abort();
    write_file("ec.pem", ec_pub, sizeof(ec_pub) - 1);
    write_file("rsa.pem", rsa_pub, sizeof(rsa_pub) - 1);
    char yaml[1024];
    int n = snprintf(yaml, sizeof(yaml),
                     "listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                     "filters: [{ auth: { jwt: { secret: fuzz-secret-0123456789, issuer: i, audiences: [a], "
                     "scopes: [s], keys: [{ file: %s/rsa.pem, kid: r1 }, { file: %s/ec.pem, kid: e1 }] } } }]\n",
                     dir, dir);
    tg_errors_t errs = { 0 };
    cfg = tg_config_load_string("j.yaml", yaml, (size_t)n, tg_filters_registry(), &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "fuzz_jwt: %s\n", errs.msgs[i]);
    tg_errors_free(&errs);
    if (cfg == NULL)
        abort();
    jwt = tg_auth_jwt(cfg->filters.v[0].conf);
}

/* Loads a config whose jwt keys come from the fuzzed file; the loader must
 * accept or refuse it cleanly (the sanitizers watch). */
static void load_keys(const char *what, const uint8_t *data, size_t size)
{
    write_file("input", data, size);
    char yaml[512];
    int n = snprintf(yaml, sizeof(yaml),
                     "listeners: [{ name: l, listen: '127.0.0.1:1' }]\n"
                     "filters: [{ auth: { jwt: { %s } } }]\n",
                     what);
    tg_errors_t errs = { 0 };
    tg_config_t *c = tg_config_load_string("k.yaml", yaml, (size_t)n, tg_filters_registry(), &errs);
    tg_errors_free(&errs);
    if (c != NULL)
        tg_config_unref(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (cfg == NULL)
        setup();
    if (size < 1)
        return 0;
    if (data[0] >= 128) {
        char what[256];
        if (data[0] < 192)
            snprintf(what, sizeof(what), "jwks_file: %s/input", dir);
        else
            snprintf(what, sizeof(what), "keys: [{ file: %s/input }]", dir);
        load_keys(what, data + 1, size - 1);
        return 0;
    }
    char *tok = malloc(size);
    memcpy(tok, data + 1, size - 1);
    tok[size - 1] = '\0';
    tg_arena_t a;
    tg_arena_init(&a);
    const char *id = NULL;
    tg_jwt_verify(jwt, tok, 1700000000, &a, &id);
    tg_arena_free(&a);
    free(tok);
    return 0;
}
