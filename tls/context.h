/*
 * tls/context.h — TLS contexts built from the config: a listener's server
 * context (certificates chosen by SNI, ALPN, versions and ciphers, session
 * resumption, client-certificate verification) and a cluster's client
 * context (CA bundle, host-name verification, optional client
 * certificate); plus the client identity read off a finished handshake.
 *
 * Contexts are built on the main thread when a snapshot is loaded, so a
 * reload re-reads every certificate, key and CA file, and every problem is
 * a config error naming its file (also under `tollgate -t`). They are then
 * shared read-only by all workers (OpenSSL's SSL_CTX is safe for that).
 * Each SSL made from a context holds a reference to it: a connection
 * outlives the snapshot that accepted it without harm.
 */
#ifndef TG_TLS_CONTEXT_H
#define TG_TLS_CONTEXT_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config/config.h"

typedef struct tg_tls_server tg_tls_server_t;
typedef struct tg_tls_client tg_tls_client_t;

/* Builds a listener's contexts. with_h2: offer h2 in ALPN (when the
 * listener's HTTP/2 is enabled and the configured alpn lists it);
 * with_http1: offer the other configured names (0 on an HTTP/2-only
 * listener: ALPN then offers h2 alone). NULL
 * with messages in errs ("file:line:col: ..." of the entry at fault).
 * Certificates that are expired or not yet valid are logged as warnings. */
tg_tls_server_t *tg_tls_server_new(const tg_tls_server_conf_t *conf, const char *listener, int with_h2,
                                   int with_http1, tg_errors_t *errs);
void tg_tls_server_free(tg_tls_server_t *s);
/* Certificate i of the listener (config order): when it stops being
 * valid (notAfter), in seconds since the epoch. -1 past the last. */
int tg_tls_server_not_after(const tg_tls_server_t *s, size_t i, int64_t *not_after);
/* A new server-side SSL for an accepted connection, or NULL (out of memory). */
SSL *tg_tls_server_ssl(tg_tls_server_t *s);

/* The certificate, key and CA files a config names (listeners, clusters,
 * Redis), each read and checked as a TLS context would (exists, parses,
 * key matches), errors to errs. For a config that failed to load
 * (tg_config_load_partial): entries left half-read are skipped. */
void tg_tls_check_files(const tg_config_t *c, tg_errors_t *errs);

/* h2: offer "h2" by ALPN (protocol h2 clusters) instead of "http/1.1". */
tg_tls_client_t *tg_tls_client_new(const tg_tls_client_conf_t *conf, const char *cluster, int h2, tg_errors_t *errs);
/* Drops a reference (the last frees it); _ref takes another (NULL: NULL). */
void tg_tls_client_free(tg_tls_client_t *c);
tg_tls_client_t *tg_tls_client_ref(tg_tls_client_t *c);
/* A new client-side SSL toward host (an endpoint's host: SNI unless it is
 * an IP address, and the name verified unless server_name overrides it). */
SSL *tg_tls_client_ssl(tg_tls_client_t *c, const char *host);

/* Did the handshake select h2? */
int tg_tls_alpn_is_h2(const SSL *ssl);

/* The client's identity after a handshake. Owned by the connection; all
 * strings NULL when the client sent no certificate. */
typedef struct tg_tls_peer {
    char *subject;           /* RFC 2253 subject DN, e.g. "CN=client-a,O=Acme" */
    char *header;            /* forwarded value: Hash=..;Subject="..";URI=..;DNS=.. */
    char fingerprint[65];    /* SHA-256 of the DER certificate, lowercase hex */
} tg_tls_peer_t;

/* Fills p from a finished handshake (a certificate is only accepted if it
 * verified). Returns 0, or -1 on allocation failure. */
int tg_tls_peer_init(tg_tls_peer_t *p, SSL *ssl);
void tg_tls_peer_free(tg_tls_peer_t *p);

/* The oldest queued OpenSSL error as text (clears the queue); "" if none. */
const char *tg_tls_last_error(char *buf, size_t len);

#endif
