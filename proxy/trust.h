/*
 * proxy/trust.h — the trust boundary on incoming requests.
 *
 * Some request headers carry what only tollgate may say to an upstream:
 * the client certificate (`x-forwarded-client-cert`, each TLS listener's
 * `client_cert_header`) and the identity an auth filter established (each
 * auth filter's `identity_header`, wherever it sits in the config). A
 * client-sent copy of any of them is removed from every request on every
 * listener, before routing and before any filter reads the headers.
 * Hop-by-hop headers, and every header a Connection option names, are
 * removed at the same point, so that a client cannot make the proxy drop
 * (by naming it in Connection) a header that a filter adds later; a
 * Connection option naming Host, Content-Length, Transfer-Encoding or a
 * trust header is refused outright (400).
 *
 * The set is built once per config snapshot (main thread) and read by the
 * workers; it never changes.
 */
#ifndef TG_PROXY_TRUST_H
#define TG_PROXY_TRUST_H

#include "config/config.h"
#include "proxy/base/http.h"

typedef struct tg_trust {
    char **headers;   /* lowercase names, no duplicates */
    size_t n_headers;
} tg_trust_t;

/* Collects the trust headers of a config: the default client-certificate
 * header, every TLS listener's client_cert_header and every filter's
 * trust header (tg_filter_type_t.trust_header). Returns 0 or -1 (OOM). */
int tg_trust_build(tg_trust_t *t, const tg_config_t *cfg);
void tg_trust_free(tg_trust_t *t);

/* Is name one of the trust headers? Any case, and '_' read as '-' (as
 * CGI/WSGI upstreams read it). */
int tg_trust_is_header(const tg_trust_t *t, const char *name, size_t len);

/* Is name one of the headers a proxy in front uses to describe the client
 * and the original request — Forwarded, X-Real-IP, X-Forwarded-Host,
 * -Proto, -Port, X-Original-URL, X-Rewrite-URL, X-Forwarded-For —
 * compared as above? */
int tg_trust_is_forwarding_header(const char *name, size_t len);

/* What the trust boundary knows of the connection a request came on. */
typedef struct tg_trust_peer {
    int trusted;                  /* the peer is one of the listener's trusted proxies */
    tg_underscores_t underscores; /* headers_with_underscores in force */
} tg_trust_peer_t;

/* Sanitizes a request's headers as they arrive: removes trust headers
 * (in any spelling), hop-by-hop headers and whatever Connection names;
 * from a peer that is not trusted, the forwarding headers too; names with
 * '_' as headers_with_underscores says (a forwarding header from a trusted
 * peer passes only in its '-' spelling). Returns 0, or -1 with *why set
 * when a Connection option names a protected header or, under `reject`, a
 * name has '_' (the request is then refused with 400). */
int tg_trust_sanitize_request(const tg_trust_t *t, tg_headers_t *h, const tg_trust_peer_t *p, const char **why);

/* The client's address as filters and logs should see it: the peer
 * itself, unless the peer is a trusted proxy; then, walking the list from
 * the right, the first address that is not itself trusted (or the
 * leftmost, when all are). The list is X-Forwarded-For (xff), the for=
 * parameters of Forwarded (fwd), or both in step (mode); an element that
 * names no address ends the walk at the last address read, and so does a
 * hop where the two lists disagree. xff and fwd may be NULL (all lines of
 * each already joined into one). Writes into out (cap bytes). */
void tg_trust_client_addr(const tg_cidr_t *trusted, size_t n, const char *peer, const char *xff, const char *fwd,
                          tg_forwarded_mode_t mode, char *out, size_t cap);

#endif
