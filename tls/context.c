/*
 * tls/context.c — see context.h.
 *
 * A listener gets one SSL_CTX per certificate. The first is the default
 * and carries, in its ex_data, the listener's SNI table (names taken from
 * each certificate's DNS subjectAltNames, or its CN when it has none) and
 * its ALPN list; the servername callback switches a connection to the
 * matching context. Every SSL made here references the default context
 * (OpenSSL keeps it as the session context), so the table lives exactly
 * as long as the last connection that might consult it.
 */
#include "tls/context.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include "proxy/base/log.h"

typedef struct sni_name {
    char *name;          /* lowercase; for a wildcard, the suffix ".example.com" */
    int wildcard;
    SSL_CTX *ctx;
} sni_name_t;

struct tg_tls_server {
    SSL_CTX *def;              /* the snapshot's reference */
    SSL_CTX **ctxs;            /* one per certificate; ctxs[0] == def */
    size_t n_ctxs;
    sni_name_t *names;
    size_t n_names;
    unsigned char alpn[32];    /* wire format: length-prefixed names */
    unsigned alpn_len;
};

struct tg_tls_client {
    atomic_int refs;           /* cluster sets derived by DNS share their config's contexts */
    SSL_CTX *ctx;
    char *server_name;
    int verify;
};

static int table_index = -1;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void server_table_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    tg_tls_server_t *s = ptr;
    if (s == NULL)
        return;
    for (size_t i = 1; i < s->n_ctxs; i++)
        SSL_CTX_free(s->ctxs[i]);
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i].name);
    free(s->names);
    free(s->ctxs);
    free(s);
}

static void make_index(void)
{
    table_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, server_table_free);
}

const char *tg_tls_last_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, len, "%s", "");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* ---- reading files ---- */

/* A clear message for a file OpenSSL could not use: the OS error when the
 * file itself is missing or unreadable, else OpenSSL's reason. */
static void file_error(tg_errors_t *errs, const char *where, const char *what, const char *path)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        tg_errors_add(errs, "%s: %s '%s': %s", where, what, path, strerror(errno));
        ERR_clear_error();
        return;
    }
    fclose(f);
    tg_tls_last_error(buf, sizeof(buf));
    tg_errors_add(errs, "%s: %s '%s' is not valid: %s", where, what, path, buf[0] ? buf : "unreadable PEM data");
}

int tg_tls_server_not_after(const tg_tls_server_t *s, size_t i, int64_t *not_after)
{
    X509 *x = i < s->n_ctxs ? SSL_CTX_get0_certificate(s->ctxs[i]) : NULL;
    struct tm tm;
    if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return -1;
    *not_after = (int64_t)timegm(&tm);
    return 0;
}

static void warn_validity(X509 *x, const char *where, const char *path)
{
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        tg_warn("%s: certificate '%s' has expired", where, path);
    else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        tg_warn("%s: certificate '%s' is not valid yet", where, path);
}

/* Loads a certificate chain and its key into ctx. */
static int load_cert(SSL_CTX *ctx, const tg_tls_cert_conf_t *c, tg_errors_t *errs)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        file_error(errs, c->where, "cert", c->cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        int reason = ERR_GET_REASON(ERR_peek_last_error());
        if (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH) {
            ERR_clear_error();
            tg_errors_add(errs, "%s: key '%s' does not match certificate '%s'", c->where, c->key, c->cert);
        } else {
            file_error(errs, c->where, "key", c->key);
        }
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        tg_errors_add(errs, "%s: key '%s' does not match certificate '%s'", c->where, c->key, c->cert);
        return -1;
    }
    warn_validity(SSL_CTX_get0_certificate(ctx), c->where, c->cert);
    return 0;
}

static int load_ca(SSL_CTX *ctx, const char *ca, const char *where, const char *what, tg_errors_t *errs)
{
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        file_error(errs, where, what, ca);
        return -1;
    }
    return 0;
}

static void check_cert(const tg_tls_cert_conf_t *c, tg_errors_t *errs)
{
    if (c->cert == NULL || c->key == NULL || c->where == NULL)
        return;
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx != NULL)
        load_cert(ctx, c, errs);
    SSL_CTX_free(ctx);
}

static void check_ca(const char *ca, const char *where, const char *what, tg_errors_t *errs)
{
    if (ca == NULL || where == NULL)
        return;
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx != NULL)
        load_ca(ctx, ca, where, what, errs);
    SSL_CTX_free(ctx);
}

static void check_client(const tg_tls_client_conf_t *t, tg_errors_t *errs)
{
    if (!t->enabled)
        return;
    check_ca(t->ca, t->ca_where, "ca", errs);
    check_cert(&t->client_cert, errs);
}

void tg_tls_check_files(const tg_config_t *c, tg_errors_t *errs)
{
    for (size_t i = 0; i < c->n_listeners; i++) {
        const tg_tls_server_conf_t *t = &c->listeners[i].tls;
        if (!t->enabled)
            continue;
        for (size_t k = 0; t->certs != NULL && k < t->n_certs; k++)
            check_cert(&t->certs[k], errs);
        check_ca(t->client_ca, t->client_ca_where, "client_ca", errs);
    }
    for (size_t i = 0; i < c->n_clusters; i++)
        check_client(&c->clusters[i].tls, errs);
    check_client(&c->redis.tls, errs);
}

/* ---- common context settings ---- */

static int set_versions_and_ciphers(SSL_CTX *ctx, int min_version, const char *ciphers, const char *suites,
                                    const char *groups, const char *where, tg_errors_t *errs)
{
    char buf[256];
    if (SSL_CTX_set_min_proto_version(ctx, min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
        tg_errors_add(errs, "%s: min_version: %s", where, tg_tls_last_error(buf, sizeof(buf)));
        return -1;
    }
    if (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        tg_errors_add(errs, "%s: ciphers: no usable cipher in '%s'", where, ciphers);
        ERR_clear_error();
        return -1;
    }
    if (suites && SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
        tg_errors_add(errs, "%s: ciphersuites: no usable suite in '%s'", where, suites);
        ERR_clear_error();
        return -1;
    }
    if (groups && SSL_CTX_set1_groups_list(ctx, groups) != 1) {
        tg_errors_add(errs, "%s: groups: '%s' is not a list of known groups", where, groups);
        ERR_clear_error();
        return -1;
    }
    /* Partial writes from a buffer that may move (the evbuffer's first
     * chain), and buffers released while a connection is idle. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    /* No SSL_OP_IGNORE_UNEXPECTED_EOF: a close without close_notify must be
     * told apart from one with it (proxy/sock.c), or a close-delimited
     * upstream body cut short by an attacker on the path looks complete. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    return 0;
}

/* ---- server: SNI and ALPN ---- */

static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                          unsigned inlen, void *arg)
{
    tg_tls_server_t *s = arg;
    unsigned char *sel = NULL;
    /* Our preference order; a client with nothing in common gets no ALPN
     * and speaks HTTP/1.1. */
    if (SSL_select_next_proto(&sel, outlen, s->alpn, s->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *sni_lookup(const tg_tls_server_t *s, const char *host)
{
    size_t hl = strlen(host);
    for (size_t i = 0; i < s->n_names; i++)
        if (!s->names[i].wildcard && strcasecmp(s->names[i].name, host) == 0)
            return s->names[i].ctx;
    const char *dot = strchr(host, '.'); /* a wildcard covers exactly one label */
    for (size_t i = 0; dot && i < s->n_names; i++)
        if (s->names[i].wildcard && strcasecmp(s->names[i].name, dot) == 0 && dot > host && hl > 0)
            return s->names[i].ctx;
    return NULL;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    tg_tls_server_t *s = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (host == NULL)
        return SSL_TLSEXT_ERR_OK;
    SSL_CTX *ctx = sni_lookup(s, host);
    if (ctx != NULL && ctx != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, ctx) == NULL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK; /* unknown names get the default certificate */
}

static int add_name(tg_tls_server_t *s, const char *name, size_t len, SSL_CTX *ctx)
{
    if (len == 0 || len > 253)
        return 0;
    sni_name_t *v = realloc(s->names, (s->n_names + 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    s->names = v;
    int wildcard = len > 2 && name[0] == '*' && name[1] == '.';
    if (wildcard) {
        name++;
        len--;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        copy[i] = (char)tolower((unsigned char)name[i]);
    copy[len] = '\0';
    s->names[s->n_names++] = (sni_name_t){ copy, wildcard, ctx };
    return 0;
}

/* The names a certificate serves: its DNS subjectAltNames, or its CN. */
static int add_cert_names(tg_tls_server_t *s, SSL_CTX *ctx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0, rc = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS) {
            found = 1;
            rc = add_name(s, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                          (size_t)ASN1_STRING_length(g->d.dNSName), ctx);
        }
    }
    GENERAL_NAMES_free(sans);
    if (!found && rc == 0) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        if (n > 0)
            rc = add_name(s, cn, (size_t)n, ctx);
    }
    return rc;
}

static int build_alpn(tg_tls_server_t *s, const tg_tls_server_conf_t *c, int with_h2, int with_http1)
{
    for (size_t i = 0; i < c->n_alpn; i++) {
        size_t n = strlen(c->alpn[i]);
        if ((!with_h2 && strcmp(c->alpn[i], "h2") == 0) || (!with_http1 && strcmp(c->alpn[i], "h2") != 0))
            continue;
        if (s->alpn_len + 1 + n > sizeof(s->alpn))
            return -1;
        s->alpn[s->alpn_len++] = (unsigned char)n;
        memcpy(s->alpn + s->alpn_len, c->alpn[i], n);
        s->alpn_len += (unsigned)n;
    }
    return 0;
}

static SSL_CTX *server_ctx(tg_tls_server_t *s, const tg_tls_server_conf_t *c, const char *listener,
                           const tg_tls_cert_conf_t *cert, tg_errors_t *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        tg_errors_add(errs, "%s: cannot create a TLS context (out of memory)", c->where);
        return NULL;
    }
    if (set_versions_and_ciphers(ctx, c->min_version, c->ciphers, c->ciphersuites, c->groups, c->where, errs) < 0 ||
        load_cert(ctx, cert, errs) < 0)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | (c->session_tickets ? 0 : SSL_OP_NO_TICKET));
    if (!c->session_tickets && c->session_cache_size == 0)
        SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, c->session_cache_size ? SSL_SESS_CACHE_SERVER : SSL_SESS_CACHE_OFF);
    SSL_CTX_sess_set_cache_size(ctx, c->session_cache_size);
    SSL_CTX_set_timeout(ctx, (long)(c->session_timeout_ms / 1000));
    /* Sessions carry the verified client identity: scope them to the
     * listener so that one listener's session cannot resume on another. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)listener,
                                   (unsigned)(strlen(listener) > SSL_MAX_SID_CTX_LENGTH ? SSL_MAX_SID_CTX_LENGTH
                                                                                         : strlen(listener)));
    if (c->client_auth != TG_CLIENT_AUTH_NONE) {
        if (load_ca(ctx, c->client_ca, c->client_ca_where, "client_ca", errs) < 0)
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(c->client_ca);
        if (names == NULL) {
            ERR_clear_error();
            tg_errors_add(errs, "%s: client_ca '%s' holds no certificate", c->client_ca_where, c->client_ca);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (c->client_auth == TG_CLIENT_AUTH_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, (int)c->verify_depth);
    }
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, s);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

tg_tls_server_t *tg_tls_server_new(const tg_tls_server_conf_t *c, const char *listener, int with_h2,
                                   int with_http1, tg_errors_t *errs)
{
    pthread_once(&table_once, make_index);
    tg_tls_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->ctxs = calloc(c->n_certs, sizeof(SSL_CTX *))) == NULL) {
        free(s);
        tg_errors_add(errs, "%s: out of memory", c->where);
        return NULL;
    }
    if (build_alpn(s, c, with_h2, with_http1) < 0) {
        tg_errors_add(errs, "%s: alpn: list too long", c->where);
        server_table_free(NULL, s, NULL, 0, 0, NULL);
        return NULL;
    }
    int ok = 1;
    for (size_t i = 0; i < c->n_certs; i++) {
        SSL_CTX *ctx = server_ctx(s, c, listener, &c->certs[i], errs);
        if (ctx == NULL) {
            ok = 0;
            continue;
        }
        s->ctxs[s->n_ctxs++] = ctx;
        if (ok && add_cert_names(s, ctx) < 0) {
            tg_errors_add(errs, "%s: out of memory", c->where);
            ok = 0;
        }
    }
    if (!ok) {
        for (size_t i = 0; i < s->n_ctxs; i++)
            SSL_CTX_free(s->ctxs[i]);
        s->n_ctxs = 0;
        server_table_free(NULL, s, NULL, 0, 0, NULL);
        return NULL;
    }
    s->def = s->ctxs[0];
    if (c->n_certs > 1)
        for (size_t i = 0; i < s->n_ctxs; i++) {
            SSL_CTX_set_tlsext_servername_callback(s->ctxs[i], on_servername);
            SSL_CTX_set_tlsext_servername_arg(s->ctxs[i], s);
        }
    if (SSL_CTX_set_ex_data(s->def, table_index, s) != 1) {
        tg_errors_add(errs, "%s: out of memory", c->where);
        for (size_t i = 0; i < s->n_ctxs; i++)
            SSL_CTX_free(s->ctxs[i]);
        s->n_ctxs = 0;
        server_table_free(NULL, s, NULL, 0, 0, NULL);
        return NULL;
    }
    return s;
}

void tg_tls_server_free(tg_tls_server_t *s)
{
    if (s != NULL)
        SSL_CTX_free(s->def); /* the table goes with the last SSL that uses it */
}

SSL *tg_tls_server_ssl(tg_tls_server_t *s)
{
    SSL *ssl = SSL_new(s->def);
    if (ssl != NULL)
        SSL_set_accept_state(ssl);
    return ssl;
}

/* ---- client ---- */

tg_tls_client_t *tg_tls_client_new(const tg_tls_client_conf_t *c, const char *cluster, int h2, tg_errors_t *errs)
{
    tg_tls_client_t *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        free(t);
        tg_errors_add(errs, "%s: cannot create a TLS context (out of memory)", c->where);
        return NULL;
    }
    atomic_init(&t->refs, 1);
    t->verify = c->verify;
    if (c->server_name && (t->server_name = strdup(c->server_name)) == NULL)
        goto fail;
    if (set_versions_and_ciphers(t->ctx, c->min_version, NULL, NULL, NULL, c->where, errs) < 0)
        goto fail;
    if (c->verify) {
        if (c->ca) {
            if (load_ca(t->ctx, c->ca, c->ca_where, "ca", errs) < 0)
                goto fail;
        } else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
            ERR_clear_error();
            tg_errors_add(errs, "%s: cluster '%s': cannot load the system's CA certificates", c->where, cluster);
            goto fail;
        }
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    }
    if (c->client_cert.cert && load_cert(t->ctx, &c->client_cert, errs) < 0)
        goto fail;
    static const unsigned char alpn_h1[] = "\x08http/1.1", alpn_h2[] = "\x02h2";
    if (h2 ? SSL_CTX_set_alpn_protos(t->ctx, alpn_h2, sizeof(alpn_h2) - 1) != 0
           : SSL_CTX_set_alpn_protos(t->ctx, alpn_h1, sizeof(alpn_h1) - 1) != 0)
        goto fail;
    return t;
fail:
    if (errs->n == 0)
        tg_errors_add(errs, "%s: out of memory", c->where);
    tg_tls_client_free(t);
    return NULL;
}

tg_tls_client_t *tg_tls_client_ref(tg_tls_client_t *c)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void tg_tls_client_free(tg_tls_client_t *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(c->ctx);
    free(c->server_name);
    free(c);
}

static int is_ip(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *tg_tls_client_ssl(tg_tls_client_t *c, const char *host)
{
    SSL *ssl = SSL_new(c->ctx);
    if (ssl == NULL)
        return NULL;
    SSL_set_connect_state(ssl);
    const char *name = c->server_name ? c->server_name : host;
    int ok = 1;
    if (!is_ip(name))
        ok = SSL_set_tlsext_host_name(ssl, name) == 1 && (!c->verify || SSL_set1_host(ssl, name) == 1);
    else if (c->verify)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    if (!ok) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* ---- after the handshake ---- */

int tg_tls_alpn_is_h2(const SSL *ssl)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == 2 && p[0] == 'h' && p[1] == '2';
}

/* Appends s to a growing string. */
typedef struct strbuf {
    char *p;
    size_t n, cap;
    int oom;
} strbuf_t;

static void sb_add(strbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(strbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Header values take no control characters; quotes and backslashes in the
 * subject are escaped as in a quoted-string. */
static void sb_quoted(strbuf_t *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            sb_add(b, "\\", 1);
        if (c >= 0x20 && c != 0x7f)
            sb_add(b, s + i, 1);
    }
    sb_add(b, "\"", 1);
}

static void sb_plain(strbuf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] > 0x20 && s[i] != 0x7f && s[i] != ';' && s[i] != ',')
            sb_add(b, s + i, 1);
}

static char *subject_of(X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return NULL;
    char *out = NULL;
    if (X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        if (n >= 0 && (out = malloc((size_t)n + 1)) != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(bio);
    return out;
}

int tg_tls_peer_init(tg_tls_peer_t *p, SSL *ssl)
{
    memset(p, 0, sizeof(*p));
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (x == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1)
        return -1;
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < mdlen && i < 32; i++) {
        p->fingerprint[2 * i] = hex[md[i] >> 4];
        p->fingerprint[2 * i + 1] = hex[md[i] & 15];
    }
    if ((p->subject = subject_of(x)) == NULL)
        return -1;
    strbuf_t b = { 0 };
    sb_str(&b, "Hash=");
    sb_str(&b, p->fingerprint);
    sb_str(&b, ";Subject=");
    sb_quoted(&b, p->subject, strlen(p->subject));
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        const ASN1_IA5STRING *v = g->type == GEN_URI ? g->d.uniformResourceIdentifier
                                  : g->type == GEN_DNS ? g->d.dNSName : NULL;
        if (v == NULL)
            continue;
        sb_str(&b, g->type == GEN_URI ? ";URI=" : ";DNS=");
        sb_plain(&b, (const char *)ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v));
    }
    GENERAL_NAMES_free(sans);
    if (b.oom) {
        free(b.p);
        tg_tls_peer_free(p);
        return -1;
    }
    p->header = b.p;
    return 0;
}

void tg_tls_peer_free(tg_tls_peer_t *p)
{
    free(p->subject);
    free(p->header);
    p->subject = p->header = NULL;
}
