/* Fuzz target: JWT verification and key loading. The first input byte
 * picks what the rest is:
 *   0-127: a token, verified against an HS256 secret, an RS256 and an
 *          ES256 public key (PEM, kids r1/e1) — so base64url, the JSON
 *          parser, claim checks and all three signature paths (ES256's
 *          raw r||s form included) see attacker bytes;
 *   128-191: a JWKS document, loaded as jwks_file;
 *   192-255: a PEM public key file, loaded as a `keys:` entry.
 * The keys are fixed (public halves below) so that the corpus holds
 * validly signed tokens to mutate from.
 *
 * Oracle beyond "no crash": a token the verifier accepts must carry a
 * signature that OpenSSL, called directly here (its own base64url
 * decoding, HMAC, and an ECDSA signature rebuilt from r||s), verifies over
 * the first two segments with one of the three configured keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

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

static const char hs_secret[] = "fuzz-secret-0123456789";

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
                     "filters: [{ auth: { jwt: { secret: %s, issuer: i, audiences: [a], "
                     "scopes: [s], keys: [{ file: %s/rsa.pem, kid: r1 }, { file: %s/ec.pem, kid: e1 }] } } }]\n",
                     hs_secret, dir, dir);
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

/* base64url without padding, decoded the plain way: -1 on a bad byte. */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned long acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(tab, s[i]) : NULL;
        if (p == NULL)
            return -1;
        acc = (acc << 6) | (unsigned long)(p - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

static EVP_PKEY *pem_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (k == NULL)
        abort();
    return k;
}

static int verify_with(EVP_PKEY *k, const unsigned char *sig, size_t sig_len, const char *msg, size_t msg_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* Does the signature of tok verify, by OpenSSL alone, under HS256 with
 * the secret, RS256 with the RSA key or ES256 with the EC key? */
static int independently_signed(const char *tok)
{
    static EVP_PKEY *rsa, *ec;
    if (rsa == NULL) {
        rsa = pem_key(rsa_pub);
        ec = pem_key(ec_pub);
    }
    const char *d1 = strchr(tok, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
        return 0;
    size_t msg_len = (size_t)(d2 - tok);
    unsigned char sig[1024];
    long n = b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
    if (n <= 0)
        return 0;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (HMAC(EVP_sha256(), hs_secret, (int)strlen(hs_secret), (const unsigned char *)tok, msg_len, mac, &mac_len) &&
        (size_t)n == mac_len && memcmp(mac, sig, mac_len) == 0)
        return 1;
    if (verify_with(rsa, sig, (size_t)n, tok, msg_len))
        return 1;
    if (n == 64) { /* JWS ES256: r||s, 32 bytes each; OpenSSL takes DER */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        unsigned char *der = NULL;
        int der_len = -1;
        if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
            r = s = NULL;
            der_len = i2d_ECDSA_SIG(es, &der);
        }
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        int ok = der_len > 0 && verify_with(ec, der, (size_t)der_len, tok, msg_len);
        OPENSSL_free(der);
        if (ok)
            return 1;
    }
    return 0;
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
    if (tg_jwt_verify(jwt, tok, 1700000000, &a, &id) == NULL && !independently_signed(tok)) {
        fprintf(stderr, "fuzz_jwt: accepted a token that OpenSSL does not verify under any configured key: %s\n", tok);
        abort();
    }
    tg_arena_free(&a);
    free(tok);
    return 0;
}
