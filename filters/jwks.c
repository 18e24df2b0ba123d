/*
 * filters/jwks.c — see jwks.h.
 */
#include "filters/jwks.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/base/clock.h"
#include "proxy/base/json.h"
#include "proxy/base/log.h"

/* A key set document longer than this is refused (a real one is a few KiB). */
#define MAX_DOC (1u << 20)
/* Requests waiting on one set's fetch; more are refused at once. */
#define MAX_WAITERS 4096
#define FIRST_RETRY_MS 1000

/* ---- base64url ---- */

long tg_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i], v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '-') v = 62;
        else if (c == '_') v = 63;
        else if (c == '=' && i + 2 >= len) break; /* tolerate padding at the end */
        else return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return bits >= 6 ? -1 : n;
}


/* ---- sets ---- */

tg_jwk_set_t *tg_jwk_set_new(void)
{
    tg_jwk_set_t *s = calloc(1, sizeof(*s));
    if (s != NULL)
        atomic_init(&s->refs, 1);
    return s;
}

static void jwk_free(tg_jwk_t *k)
{
    EVP_PKEY_free(k->pkey);
    if (k->secret)
        OPENSSL_cleanse(k->secret, k->secret_len);
    free(k->secret);
    free(k->kid);
}

int tg_jwk_set_add(tg_jwk_set_t *s, tg_jwk_t k)
{
    tg_jwk_t *n = realloc(s->keys, (s->n + 1) * sizeof(*n));
    if (n == NULL) {
        jwk_free(&k);
        return -1;
    }
    s->keys = n;
    s->keys[s->n++] = k;
    return 0;
}

tg_jwk_set_t *tg_jwk_set_ref(tg_jwk_set_t *s)
{
    if (s != NULL)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void tg_jwk_set_unref(tg_jwk_set_t *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        jwk_free(&s->keys[i]);
    free(s->keys);
    free(s);
}

int tg_jwk_alg_of(EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "RSA"))
        return TG_JWK_RS256;
    if (EVP_PKEY_is_a(k, "EC")) {
        char group[64];
        size_t gl = 0;
        if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &gl) == 1 &&
            (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
            return TG_JWK_ES256;
    }
    return 0;
}

static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *k = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return k;
}

static BIGNUM *b64_bn(const char *s)
{
    if (s == NULL || strlen(s) > 2048) /* RSA moduli up to 12,288 bits */
        return NULL;
    size_t len = strlen(s);
    unsigned char *buf = malloc(len * 3 / 4 + 3);
    long n = buf ? tg_b64url_decode(s, len, buf) : -1;
    BIGNUM *bn = n > 0 ? BN_bin2bn(buf, (int)n, NULL) : NULL;
    free(buf);
    return bn;
}

/* One JWK: RSA (n, e), EC P-256 (x, y) or oct (k). A key whose `use` is
 * not "sig" is not for us (skipped, not an error). */
static int jwk_key(tg_jwk_set_t *s, const tg_json_t *jwk, char *why, size_t cap)
{
    const char *kty = tg_json_get_str(jwk, "kty"), *kid = tg_json_get_str(jwk, "kid"),
               *use = tg_json_get_str(jwk, "use");
    if (use != NULL && strcmp(use, "sig") != 0)
        return 0;
    tg_jwk_t k = { .kid = kid ? strdup(kid) : NULL };
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int rc = -1;
    if (bld == NULL || (kid != NULL && k.kid == NULL))
        goto out;
    if (kty && strcmp(kty, "RSA") == 0) {
        BIGNUM *n = b64_bn(tg_json_get_str(jwk, "n")), *e = b64_bn(tg_json_get_str(jwk, "e"));
        if (n && e && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            k.pkey = pkey_from_params("RSA", bld);
        BN_free(n);
        BN_free(e);
        k.alg = TG_JWK_RS256;
    } else if (kty && strcmp(kty, "EC") == 0) {
        const char *crv = tg_json_get_str(jwk, "crv"), *x = tg_json_get_str(jwk, "x"), *y = tg_json_get_str(jwk, "y");
        unsigned char pub[1 + 64 + 6], xb[48], yb[48];
        long xl = x && strlen(x) <= 60 ? tg_b64url_decode(x, strlen(x), xb) : -1;
        long yl = y && strlen(y) <= 60 ? tg_b64url_decode(y, strlen(y), yb) : -1;
        if (crv && strcmp(crv, "P-256") == 0 && xl == 32 && yl == 32) {
            pub[0] = 4;
            memcpy(pub + 1, xb, 32);
            memcpy(pub + 33, yb, 32);
            if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
                OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65))
                k.pkey = pkey_from_params("EC", bld);
        }
        k.alg = TG_JWK_ES256;
    } else if (kty && strcmp(kty, "oct") == 0 && tg_json_get_str(jwk, "k")) {
        const char *sk = tg_json_get_str(jwk, "k");
        k.secret = strlen(sk) <= 1024 ? malloc(strlen(sk) * 3 / 4 + 3) : NULL;
        long n = k.secret ? tg_b64url_decode(sk, strlen(sk), k.secret) : -1;
        if (n >= 16) { /* as for `secret`: at least 16 bytes */
            k.secret_len = (size_t)n;
            k.alg = TG_JWK_HS256;
            OSSL_PARAM_BLD_free(bld);
            return tg_jwk_set_add(s, k);
        }
    }
    if (k.pkey != NULL && tg_jwk_alg_of(k.pkey) == k.alg) {
        OSSL_PARAM_BLD_free(bld);
        return tg_jwk_set_add(s, k);
    }
    snprintf(why, cap, "key %.64s is not a usable RSA, EC P-256 or oct (16+ bytes) key", kid ? kid : "(no kid)");
    rc = 1;
out:
    OSSL_PARAM_BLD_free(bld);
    jwk_free(&k);
    return rc;
}

int tg_jwk_set_parse(tg_jwk_set_t *s, const char *doc, size_t len, char *why, size_t cap)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t root;
    const tg_json_t *keys;
    int rc = 0;
    if (len > MAX_DOC || tg_json_parse(doc, len, &a, &root) < 0 || (keys = tg_json_get(&root, "keys")) == NULL ||
        keys->t != TG_JSON_ARR) {
        snprintf(why, cap, "not a JWKS document ({\"keys\": [...]})");
        rc = -1;
    } else {
        for (size_t i = 0; i < keys->n && rc == 0; i++)
            if (jwk_key(s, &keys->items[i], why, cap) < 0) {
                snprintf(why, cap, "out of memory");
                rc = -1;
            }
    }
    tg_arena_free(&a);
    return rc;
}

/* ---- remote sets ---- */

typedef struct waiter {
    struct waiter *next;
    tg_filter_waker_t waker;
    void (*fn)(tg_filter_exchange_t *fx, uint64_t gen);
    int first;                 /* waits for the first set (until startup_wait ends) */
} waiter_t;

struct tg_jwks_remote {
    const tg_filter_host_t *host;
    char *label;               /* the URL, for logs and metrics */
    /* main thread */
    char *cluster, *authority, *jwks_path, *issuer, *discovery_path;
    int discover;              /* jwks_path comes from the issuer's discovery document */
    int configured_path;       /* jwks_path was given (never dropped for a new discovery) */
    uint64_t min_refresh_ms, max_refresh_ms, refetch_interval_ms, timeout_ms;
    tg_timer_t timer;           /* the next fetch */
    tg_timer_t window;          /* the end of startup_wait */
    struct event *kick;         /* a refetch a worker asked for (made active from its thread) */
    int in_flight, dying, discovering;
    unsigned failures;         /* in a row */
    uint64_t fetches, failed, refetches; /* counters, read by /metrics on the main thread */
    /* shared with the workers, under mu (gen and the bounds also read without) */
    pthread_mutex_t mu;
    tg_jwk_set_t *set;
    atomic_ullong gen;
    atomic_ullong max_stale_ms;
    atomic_ullong fetched_ms;  /* the set in force's (0: none) */
    uint64_t startup_until_ms; /* requests may wait for the first set until then */
    int fetching;              /* a fetch is in flight or asked for */
    int refetch_wanted;        /* a worker asked (unknown kid) */
    uint64_t last_fetch_ms;
    waiter_t *waiters;
    size_t n_waiters;
};

static void schedule(tg_jwks_remote_t *r, uint64_t ms)
{
    tg_timer_after(r->host->loop, &r->timer, ms * 1000);
}

/* Wakes the waiters (all, or those not waiting for the first set). */
static void wake(tg_jwks_remote_t *r, int all)
{
    pthread_mutex_lock(&r->mu);
    waiter_t *keep = NULL, *go = NULL;
    for (waiter_t *w = r->waiters, *next; w != NULL; w = next) {
        next = w->next;
        if (all || !w->first) {
            w->next = go;
            go = w;
            r->n_waiters--;
        } else {
            w->next = keep;
            keep = w;
        }
    }
    r->waiters = keep;
    pthread_mutex_unlock(&r->mu);
    for (waiter_t *w = go, *next; w != NULL; w = next) {
        next = w->next;
        if (!r->host->stopping) /* out of memory: that request stays paused until its timeout */
            tg_filter_wake(&w->waker, w->fn);
        free(w);
    }
}

static void start_fetch(tg_jwks_remote_t *r);

/* A fetch failed: the last good set stays (up to max_stale), the next
 * try comes after 1 s doubling up to min_refresh; requests that waited
 * on this fetch get their answer (the first set's waiters wait on). */
static void fetch_failed(tg_jwks_remote_t *r, const char *why)
{
    r->failed++;
    if (r->failures++ == 0)
        tg_warn("jwt: key set %s: %s (the last good keys serve meanwhile, up to max_stale)", r->label, why);
    else
        tg_debug("jwt: key set %s: %s (failure %u in a row)", r->label, why, r->failures);
    if (r->discover && !r->configured_path) { /* a moved key set: ask the issuer again */
        free(r->jwks_path);
        r->jwks_path = NULL;
    }
    uint64_t delay = FIRST_RETRY_MS;
    for (unsigned i = 1; i < r->failures && delay < r->min_refresh_ms; i++)
        delay *= 2;
    schedule(r, delay < r->min_refresh_ms ? delay : r->min_refresh_ms);
    pthread_mutex_lock(&r->mu);
    r->fetching = 0;
    pthread_mutex_unlock(&r->mu);
    wake(r, 0);
}

/* Cache-Control: max-age=N (seconds) as milliseconds, clamped; absent or
 * no-cache: min_refresh. */
static uint64_t refresh_after(const tg_jwks_remote_t *r, const tg_headers_t *h)
{
    const tg_header_t *cc = tg_headers_get(h, "cache-control");
    uint64_t ms = r->min_refresh_ms;
    const char *p = cc ? strcasestr(cc->value, "max-age=") : NULL;
    if (p != NULL && (p == cc->value || p[-1] == ' ' || p[-1] == ',')) {
        unsigned long long s = strtoull(p + 8, NULL, 10);
        ms = s > 10ull * 365 * 86400 ? 10ull * 365 * 86400 * 1000 : s * 1000;
    }
    if (cc != NULL && (strcasestr(cc->value, "no-cache") || strcasestr(cc->value, "no-store")))
        ms = r->min_refresh_ms;
    return ms < r->min_refresh_ms ? r->min_refresh_ms : ms > r->max_refresh_ms ? r->max_refresh_ms : ms;
}

/* The discovery document: its issuer must be ours (OpenID Connect
 * Discovery 4.3), its jwks_uri on the issuer's origin (the cluster we
 * fetch through). */
static const char *take_discovery(tg_jwks_remote_t *r, const char *doc, size_t len)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t root;
    const char *err = NULL, *iss, *uri;
    char origin[512];
    const char *scheme = strncmp(r->issuer, "https://", 8) == 0 ? "https://" : "http://";
    snprintf(origin, sizeof(origin), "%s%s", scheme, r->authority);
    size_t ol = strlen(origin);
    if (len > MAX_DOC || tg_json_parse(doc, len, &a, &root) < 0 || root.t != TG_JSON_OBJ)
        err = "the discovery document is not a JSON object";
    else if ((iss = tg_json_get_str(&root, "issuer")) == NULL || strcmp(iss, r->issuer) != 0)
        err = "the discovery document names another issuer";
    else if ((uri = tg_json_get_str(&root, "jwks_uri")) == NULL)
        err = "the discovery document has no jwks_uri";
    else if (strncmp(uri, origin, ol) != 0 || (uri[ol] != '/' && uri[ol] != '\0'))
        err = "its jwks_uri is on another origin than the issuer: set jwks_uri";
    else {
        free(r->jwks_path);
        r->jwks_path = strdup(uri[ol] ? uri + ol : "/");
        err = r->jwks_path ? NULL : "out of memory";
    }
    tg_arena_free(&a);
    return err;
}

static void remote_free(tg_jwks_remote_t *r);

static void on_answer(void *arg, const tg_filter_call_result_t *res)
{
    tg_jwks_remote_t *r = arg;
    r->in_flight = 0;
    if (r->dying) {
        remote_free(r);
        return;
    }
    char why[200];
    if (res->status != 200) {
        if (res->status)
            snprintf(why, sizeof(why), "%s answered %d", r->discovering ? "discovery" : "the key set URL", res->status);
        else
            snprintf(why, sizeof(why), "%s", res->error ? res->error : "failed");
        fetch_failed(r, why);
        return;
    }
    if (r->discovering) {
        const char *err = take_discovery(r, res->body, res->body_len);
        if (err != NULL) {
            fetch_failed(r, err);
            return;
        }
        r->in_flight = 0;
        start_fetch(r); /* the keys, at once */
        return;
    }
    tg_jwk_set_t *s = tg_jwk_set_new();
    why[0] = '\0';
    if (s == NULL || tg_jwk_set_parse(s, res->body, res->body_len, why, sizeof(why)) < 0 || s->n == 0) {
        if (s != NULL && s->n == 0 && why[0] == '\0')
            snprintf(why, sizeof(why), "the key set has no usable key");
        tg_jwk_set_unref(s);
        fetch_failed(r, why[0] ? why : "out of memory");
        return;
    }
    if (why[0])
        tg_debug("jwt: key set %s: %s (skipped)", r->label, why);
    if (r->failures)
        tg_info("jwt: key set %s: fetched again after %u failure(s)", r->label, r->failures);
    r->failures = 0;
    s->fetched_ms = tg_clock_ms();
    pthread_mutex_lock(&r->mu);
    tg_jwk_set_t *old = r->set;
    r->set = s;
    atomic_store_explicit(&r->fetched_ms, s->fetched_ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->gen, 1, memory_order_release);
    r->fetching = 0;
    pthread_mutex_unlock(&r->mu);
    tg_jwk_set_unref(old);
    schedule(r, refresh_after(r, res->headers));
    wake(r, 1);
}

static void start_fetch(tg_jwks_remote_t *r)
{
    if (r->in_flight || r->dying)
        return;
    static const char *const accept[] = { "accept", "application/json" };
    r->discovering = r->jwks_path == NULL;
    tg_filter_call_t c = {
        .cluster = r->cluster,
        .method = "GET",
        .path = r->discovering ? r->discovery_path : r->jwks_path,
        .authority = r->authority,
        .headers = accept,
        .n_headers = 1,
        .timeout_ms = r->timeout_ms,
        .max_body = MAX_DOC,
    };
    pthread_mutex_lock(&r->mu);
    r->fetching = 1;
    r->last_fetch_ms = tg_clock_ms();
    pthread_mutex_unlock(&r->mu);
    r->fetches++;
    if (r->host->call(r->host, &c, on_answer, r) < 0) {
        fetch_failed(r, "out of memory");
        return;
    }
    r->in_flight = 1;
}

static void on_timer(tg_timer_t *t)
{
    start_fetch(TG_CONTAINER_OF(t, tg_jwks_remote_t, timer));
}

/* A worker asked for a refetch (a kid no key has). */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    tg_jwks_remote_t *r = arg;
    pthread_mutex_lock(&r->mu);
    int wanted = r->refetch_wanted;
    r->refetch_wanted = 0;
    pthread_mutex_unlock(&r->mu);
    if (!wanted || r->in_flight)
        return;
    r->refetches++;
    tg_timer_cancel(&r->timer);
    start_fetch(r);
}

/* startup_wait is over: who still waits for the first set is answered. */
static void on_window(tg_timer_t *t)
{
    wake(TG_CONTAINER_OF(t, tg_jwks_remote_t, window), 1);
}

static void set_params(tg_jwks_remote_t *r, const tg_jwks_params_t *p)
{
    char *cl = strdup(p->cluster), *au = strdup(p->authority);
    if (cl != NULL && au != NULL) {
        free(r->cluster);
        free(r->authority);
        r->cluster = cl;
        r->authority = au;
    } else {
        free(cl);
        free(au);
    }
    r->min_refresh_ms = p->min_refresh_ms;
    r->max_refresh_ms = p->max_refresh_ms;
    r->refetch_interval_ms = p->refetch_interval_ms;
    r->timeout_ms = p->timeout_ms;
    atomic_store(&r->max_stale_ms, p->max_stale_ms);
}

static void remote_free(tg_jwks_remote_t *r)
{
    tg_timer_cancel(&r->timer);
    tg_timer_cancel(&r->window);
    if (r->kick)
        event_free(r->kick);
    for (waiter_t *w = r->waiters, *next; w != NULL; w = next) { /* their exchanges are over */
        next = w->next;
        free(w);
    }
    tg_jwk_set_unref(r->set);
    pthread_mutex_destroy(&r->mu);
    free(r->label);
    free(r->cluster);
    free(r->authority);
    free(r->jwks_path);
    free(r->issuer);
    free(r->discovery_path);
    free(r);
}

static void remote_destroy(void *obj)
{
    tg_jwks_remote_t *r = obj;
    if (r->in_flight) { /* the answer frees it */
        r->dying = 1;
        tg_timer_cancel(&r->timer);
        tg_timer_cancel(&r->window);
        return;
    }
    remote_free(r);
}

static void *remote_make(const tg_filter_host_t *h, const char *key, const void *arg)
{
    const tg_jwks_params_t *p = arg;
    tg_jwks_remote_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->host = h;
    set_params(r, p);
    r->discover = p->jwks_path == NULL;
    r->configured_path = p->jwks_path != NULL;
    r->label = strdup(strchr(key, ' ') ? strchr(key, ' ') + 1 : key);
    r->jwks_path = p->jwks_path ? strdup(p->jwks_path) : NULL;
    r->issuer = p->issuer ? strdup(p->issuer) : NULL;
    r->discovery_path = p->discovery_path ? strdup(p->discovery_path) : NULL;
    r->startup_until_ms = tg_clock_ms() + p->startup_wait_ms;
    r->timer.fn = on_timer;
    r->window.fn = on_window;
    r->kick = event_new(h->base, -1, 0, on_kick, r); /* made active by workers: a libevent event */
    if (r->label == NULL || r->cluster == NULL || r->kick == NULL ||
        (p->jwks_path && r->jwks_path == NULL) || (r->discover && (r->issuer == NULL || r->discovery_path == NULL))) {
        remote_free(r);
        return NULL;
    }
    /* the first fetch from the loop, once the config that asked is in force */
    schedule(r, 0);
    tg_timer_after(h->loop, &r->window, p->startup_wait_ms * 1000);
    return r;
}

static void label(struct evbuffer *out, const char *family, const char *url)
{
    evbuffer_add_printf(out, "%s{url=\"", family);
    for (const char *p = url; *p; p++) {
        if (*p == '"' || *p == '\\')
            evbuffer_add_printf(out, "\\%c", *p);
        else if (*p == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, p, 1);
    }
    evbuffer_add(out, "\"} ", 3);
}

static void remote_metrics(void *const *objs, size_t n, struct evbuffer *out)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        { "tollgate_jwks_fetches_total", "counter", "Key set (and OpenID discovery) fetches started, by URL." },
        { "tollgate_jwks_fetch_failures_total", "counter",
          "Key set fetches that failed (no answer, not 200, not a usable key set), by URL." },
        { "tollgate_jwks_unknown_kid_refetches_total", "counter",
          "Fetches started early because a token named a key id the set did not have, by URL." },
        { "tollgate_jwks_keys", "gauge", "Keys in the set in force (0: none yet, or older than max_stale), by URL." },
        { "tollgate_jwks_age_seconds", "gauge", "Seconds since the set in force was fetched, by URL (absent: none)." },
    };
    uint64_t now = tg_clock_ms();
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (size_t i = 0; i < n; i++) {
            tg_jwks_remote_t *r = objs[i];
            pthread_mutex_lock(&r->mu);
            const tg_jwk_set_t *s = r->set;
            int fresh = s != NULL && now - s->fetched_ms <= atomic_load(&r->max_stale_ms);
            uint64_t v[] = { r->fetches, r->failed, r->refetches, fresh ? s->n : 0, s ? now - s->fetched_ms : 0 };
            pthread_mutex_unlock(&r->mu);
            if (f == 4 && s == NULL)
                continue;
            label(out, fam[f].name, r->label);
            if (f == 4)
                evbuffer_add_printf(out, "%.3f\n", (double)v[f] / 1000.0);
            else
                evbuffer_add_printf(out, "%llu\n", (unsigned long long)v[f]);
        }
    }
}

static const tg_shared_type_t remote_type = {
    .name = "jwks",
    .make = remote_make,
    .destroy = remote_destroy,
    .metrics = remote_metrics,
};

tg_jwks_remote_t *tg_jwks_remote_get(const tg_filter_host_t *h, const char *key, const tg_jwks_params_t *p)
{
    tg_jwks_remote_t *r = tg_shared_get(h, &remote_type, key, p);
    if (r != NULL)
        set_params(r, p); /* a reload may have changed them: the newest config's */
    return r;
}

void tg_jwks_remote_put(const tg_filter_host_t *h, tg_jwks_remote_t *r)
{
    if (h != NULL && r != NULL)
        tg_shared_put(h->shared, r);
}

uint64_t tg_jwks_remote_generation(tg_jwks_remote_t *r, uint64_t now_ms)
{
    uint64_t f = atomic_load_explicit(&r->fetched_ms, memory_order_relaxed);
    if (f == 0 || now_ms - f > atomic_load_explicit(&r->max_stale_ms, memory_order_relaxed))
        return 0; /* no set that may be used */
    return atomic_load_explicit(&r->gen, memory_order_acquire);
}

void tg_jwks_view_release(tg_jwks_view_t *v)
{
    tg_jwk_set_unref(v->set);
    v->set = NULL;
    v->gen = 0;
}

const tg_jwk_set_t *tg_jwks_remote_keys(tg_jwks_remote_t *r, tg_jwks_view_t *v, uint64_t now_ms)
{
    if (atomic_load_explicit(&r->gen, memory_order_acquire) != v->gen) { /* a new set: take it (rare) */
        pthread_mutex_lock(&r->mu);
        tg_jwk_set_t *s = tg_jwk_set_ref(r->set);
        uint64_t g = atomic_load_explicit(&r->gen, memory_order_relaxed);
        pthread_mutex_unlock(&r->mu);
        tg_jwk_set_unref(v->set);
        v->set = s;
        v->gen = g;
    }
    if (v->set == NULL || now_ms - v->set->fetched_ms > atomic_load_explicit(&r->max_stale_ms, memory_order_relaxed))
        return NULL;
    return v->set;
}

int tg_jwks_remote_wait(tg_jwks_remote_t *r, tg_jwks_want_t why, uint64_t seen_gen, tg_filter_exchange_t *fx,
                        void (*fn)(tg_filter_exchange_t *fx, uint64_t gen), uint64_t now_ms)
{
    waiter_t *w = malloc(sizeof(*w));
    if (w == NULL)
        return 0;
    *w = (waiter_t){ .waker = tg_filter_waker(fx), .fn = fn, .first = why == TG_JWKS_NO_KEYS };
    int kick = 0, queued = 0, again = 0;
    pthread_mutex_lock(&r->mu);
    if (seen_gen != TG_JWKS_GEN_UNSEEN && seen_gen != atomic_load_explicit(&r->gen, memory_order_relaxed)) {
        again = 1; /* a set newer than the one checked: check again with it */
    } else if (r->n_waiters >= MAX_WAITERS) {
        queued = 0;
    } else if (why == TG_JWKS_NO_KEYS) {
        queued = r->set == NULL && now_ms < r->startup_until_ms;
    } else if (r->fetching) {
        queued = 1; /* single flight: this fetch answers it too */
    } else if (now_ms - r->last_fetch_ms >= r->refetch_interval_ms) {
        queued = kick = 1;
        r->fetching = r->refetch_wanted = 1;
    }
    if (queued) {
        w->next = r->waiters;
        r->waiters = w;
        r->n_waiters++;
    }
    pthread_mutex_unlock(&r->mu);
    if (kick)
        event_active(r->kick, EV_READ, 0);
    if (again) {
        queued = tg_filter_wake(&w->waker, fn) == 0;
        free(w);
        return queued;
    }
    if (!queued)
        free(w);
    return queued;
}
