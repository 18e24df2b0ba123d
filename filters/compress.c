/*
 * filters/compress.c — see compress.h. One encoder per compressed
 * response (its state is the filter's per-exchange slot, freed on
 * completion); window sizes are bounded so one costs at most a few
 * hundred KiB (gzip: 32 KiB window, memLevel 8; brotli: 256 KiB window;
 * zstd: 256 KiB window).
 */
#include "filters/compress.h"

#include "filters/decompress.h"

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <ctype.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>

enum { ALG_GZIP = 0, ALG_BR, ALG_ZSTD, ALG_N };
static const char *const alg_names[ALG_N] = { "gzip", "br", "zstd" };

#define COMPRESS_OUT_CHUNK 16384 /* output space reserved per encoder step */
#define COMPRESS_WINDOW_LOG 18   /* brotli and zstd: a 256 KiB window */
#define TG_DEFAULT_MAX_DECOMPRESSED (64ull * 1024 * 1024) /* decompress_requests: max_decompressed_bytes */

typedef struct compress_conf {
    int order[ALG_N];            /* algorithms, most preferred first */
    size_t n_order;
    const char *offer[ALG_N];    /* their names, same order */
    uint32_t gzip_level, brotli_quality, zstd_level;
    uint64_t min_size;
    char **types;
    size_t n_types;
    int decompress_requests;     /* inflate gzip/br/zstd request bodies before they go upstream */
    uint64_t max_request_ratio;  /* ... refusing one that grows past this many times its size */
    uint64_t max_decompressed;   /* ... or past this many bytes */
} compress_conf_t;

/* Encoders kept for the next response: setting one up costs more than
 * the compression of a small body (zlib: about 270 KiB to allocate and
 * clear). gzip and zstd reset in place; brotli has no reset. */
#define COMPRESS_CACHE 4         /* idle encoders per worker and algorithm */
struct encoder;
typedef struct enc_cache {
    struct encoder *idle[ALG_N][COMPRESS_CACHE];
    unsigned n[ALG_N];
} enc_cache_t;

typedef struct cstate {
    struct encoder *enc;         /* the response's, when compressed */
    tg_decoder_t *dec;           /* the request's, when decompressed (filters/decompress.h) */
    struct evbuffer *dec_out;    /* ... and where each piece inflates to */
} cstate_t;

typedef struct encoder encoder_t;
struct encoder {
    int alg;
    z_stream z;
    BrotliEncoderState *br;
    ZSTD_CCtx *zs;
    struct evbuffer *out;
};

static const char *const default_types[] = {
    "text/*", "application/json", "application/*+json", "application/javascript", "application/xml",
    "application/*+xml", "application/x-ndjson", "image/svg+xml",
};

static const tg_key_t compress_keys[] = {
    { "algorithms", TG_KEY_STRINGS, "list of `zstd`, `br`, `gzip`", "`[zstd, br, gzip]`",
      "the encodings offered, most preferred first: the client's Accept-Encoding q-values decide, and among equal "
      "ones this order" },
    { "gzip_level", TG_KEY_INT, "integer 1–9", "`5`", "zlib's compression level", .min = 1, .max = 9,
      TG_FIELD(compress_conf_t, gzip_level, TG_FIELD_U32), .def = 5 },
    { "brotli_quality", TG_KEY_INT, "integer 0–11", "`4`", "brotli's quality", .min = 0, .max = 11,
      TG_FIELD(compress_conf_t, brotli_quality, TG_FIELD_U32), .def = 4 },
    { "zstd_level", TG_KEY_INT, "integer 1–19", "`3`", "zstd's compression level", .min = 1, .max = 19,
      TG_FIELD(compress_conf_t, zstd_level, TG_FIELD_U32), .def = 3 },
    { "min_size", TG_KEY_SIZE, "size", "`256`",
      "a response whose Content-Length is below this is sent as it is (one of unknown length is compressed)",
      TG_FIELD(compress_conf_t, min_size, TG_FIELD_U64), .def = 256 },
    { "content_types", TG_KEY_STRINGS, "list of media types; `type/*` and `type/*+suffix` patterns",
      "`[text/*, application/json, application/*+json, application/javascript, application/xml, application/*+xml, "
      "application/x-ndjson, image/svg+xml]`",
      "only these are compressed (parameters such as `charset` ignored)" },
    { "decompress_requests", TG_KEY_BOOL, "bool", "`false`",
      "a request body with `Content-Encoding: gzip`, `br` or `zstd` is decompressed before it goes upstream "
      "(the header and Content-Length removed); a corrupt or truncated one gets `400`",
      TG_FIELD(compress_conf_t, decompress_requests, TG_FIELD_INT) },
    { "max_request_ratio", TG_KEY_INT, "integer 1–100000", "`100`",
      "with `decompress_requests`: a body that grows past this many times its compressed size (plus 64 KiB) is "
      "refused with `413` as it streams, before the rest is inflated (zip bombs). Enforced on each piece of the "
      "body as it arrives as well as in total, so an incompressible start earns no allowance for a bomb after it",
      .min = 1, .max = 100000, TG_FIELD(compress_conf_t, max_request_ratio, TG_FIELD_U64), .def = 100 },
    { "max_decompressed_bytes", TG_KEY_SIZE, "size", "`64MiB`",
      "with `decompress_requests`: the most a body may decompress to, whatever `limits.max_body_bytes` says (even "
      "unlimited); past it `413`",
      .min = 1, .max = INT64_MAX, TG_FIELD(compress_conf_t, max_decompressed, TG_FIELD_U64),
      .def = TG_DEFAULT_MAX_DECOMPRESSED },
};
static const tg_keyset_t compress_keyset = TG_KEYSET("filter.compress", "compress", compress_keys);

/* ---- negotiation ---- */

/* q of one Accept-Encoding element's parameters ("; q=0.5"); 1 without. */
static double parse_q(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            char buf[16];
            size_t n = (size_t)(end - p - 2) < sizeof(buf) - 1 ? (size_t)(end - p - 2) : sizeof(buf) - 1;
            memcpy(buf, p + 2, n);
            buf[n] = '\0';
            char *e;
            double q = strtod(buf, &e);
            return e == buf || q < 0 ? 0 : q > 1 ? 1 : q;
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1;
}

int tg_compress_negotiate(const char *ae, const char *const *offer, size_t n)
{
    double q[ALG_N] = { -1, -1, -1 }, star = -1;
    if (ae == NULL || n > ALG_N)
        return -1;
    for (const char *p = ae; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t tl = (size_t)(p - tok);
        const char *params = p;
        while (*p && *p != ',')
            p++;
        if (tl == 0)
            continue;
        double v = parse_q(params, p);
        if (tl == 1 && tok[0] == '*') {
            star = v;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if ((strlen(offer[i]) == tl && strncasecmp(tok, offer[i], tl) == 0) ||
                (strcmp(offer[i], "gzip") == 0 && tl == 6 && strncasecmp(tok, "x-gzip", 6) == 0))
                q[i] = v;
    }
    int best = -1;
    double bq = 0;
    for (size_t i = 0; i < n; i++) {
        double v = q[i] >= 0 ? q[i] : star >= 0 ? star : 0;
        if (v > bq) {
            bq = v;
            best = (int)i;
        }
    }
    return best;
}

int tg_compress_type_allowed(const char *ct, char *const *patterns, size_t n)
{
    if (ct == NULL)
        return 0;
    while (*ct == ' ')
        ct++;
    size_t tl = strcspn(ct, "; \t");
    for (size_t i = 0; i < n; i++) {
        const char *pat = patterns[i], *star = strchr(pat, '*');
        if (star == NULL) {
            if (strlen(pat) == tl && strncasecmp(ct, pat, tl) == 0)
                return 1;
            continue;
        }
        size_t pl = (size_t)(star - pat), sl = strlen(star + 1);
        if (tl >= pl + sl && strncasecmp(ct, pat, pl) == 0 && strncasecmp(ct + tl - sl, star + 1, sl) == 0 &&
            memchr(ct + pl, '/', tl - pl - sl) == NULL)
            return 1;
    }
    return 0;
}

/* ---- config ---- */

static void *compress_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[9];
    compress_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "compress", &compress_keyset, c, v);
    tg_node_t algs = tg_node_get(v, &compress_keyset, "algorithms"), types = tg_node_get(v, &compress_keyset, "content_types");
    static const int def_order[] = { ALG_ZSTD, ALG_BR, ALG_GZIP };
    if (tg_node_present(&algs)) {
        char **names = NULL;
        size_t n = 0;
        if (tg_node_str_list(&algs, "algorithms", &names, &n) < 0)
            rc = -1;
        for (size_t i = 0; i < n; i++) {
            int a = -1;
            for (int k = 0; k < ALG_N; k++)
                if (strcmp(names[i], alg_names[k]) == 0)
                    a = k;
            for (size_t j = 0; a >= 0 && j < c->n_order; j++)
                if (c->order[j] == a)
                    a = -2;
            if (a == -1) {
                tg_node_error(&algs, "algorithms: '%s' is not one of zstd, br, gzip", names[i]);
                rc = -1;
            } else if (a == -2) {
                tg_node_error(&algs, "algorithms: '%s' is listed twice", names[i]);
                rc = -1;
            } else {
                c->order[c->n_order++] = a;
            }
            free(names[i]);
        }
        free(names);
        if (rc == 0 && c->n_order == 0) {
            tg_node_error(&algs, "algorithms: name at least one of zstd, br, gzip");
            rc = -1;
        }
    } else {
        memcpy(c->order, def_order, sizeof(def_order));
        c->n_order = ALG_N;
    }
    for (size_t i = 0; i < c->n_order; i++)
        c->offer[i] = alg_names[c->order[i]];
    if (tg_node_present(&types)) {
        if (tg_node_str_list(&types, "content_types", &c->types, &c->n_types) < 0)
            rc = -1;
    } else {
        c->n_types = sizeof(default_types) / sizeof(default_types[0]);
        c->types = calloc(c->n_types, sizeof(char *));
        for (size_t i = 0; c->types && i < c->n_types; i++)
            c->types[i] = strdup(default_types[i]);
        if (c->types == NULL)
            rc = -1;
    }
    if (rc < 0) {
        for (size_t i = 0; c->types && i < c->n_types; i++)
            free(c->types[i]);
        free(c->types);
        free(c);
        return NULL;
    }
    return c;
}

static void encoder_free(encoder_t *e);

static void compress_destroy(void *p)
{
    compress_conf_t *c = p;
    for (size_t i = 0; i < c->n_types; i++)
        free(c->types[i]);
    free(c->types);
    free(c);
}

/* ---- the encoders ---- */

static void encoder_free(encoder_t *e)
{
    if (e == NULL)
        return;
    if (e->alg == ALG_GZIP)
        deflateEnd(&e->z);
    BrotliEncoderDestroyInstance(e->br);
    ZSTD_freeCCtx(e->zs);
    if (e->out)
        evbuffer_free(e->out);
    free(e);
}

/* The worker's idle encoders (per-worker state: made when the worker
 * takes the config up, freed with the config). */
static void *compress_worker_init(void *conf, unsigned worker)
{
    return calloc(1, sizeof(enc_cache_t));
}

static void compress_worker_free(void *conf, void *state)
{
    enc_cache_t *k = state;
    for (int a = 0; a < ALG_N; a++)
        for (unsigned i = 0; i < k->n[a]; i++)
            encoder_free(k->idle[a][i]);
    free(k);
}

static encoder_t *encoder_new(const compress_conf_t *c, int alg)
{
    encoder_t *e = calloc(1, sizeof(*e));
    if (e == NULL || (e->out = evbuffer_new()) == NULL) {
        free(e);
        return NULL;
    }
    e->alg = alg;
    int ok = 0;
    if (alg == ALG_GZIP) {
        ok = deflateInit2(&e->z, (int)c->gzip_level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK;
        if (!ok)
            e->alg = -1; /* nothing for deflateEnd */
    } else if (alg == ALG_BR) {
        ok = (e->br = BrotliEncoderCreateInstance(NULL, NULL, NULL)) != NULL &&
             BrotliEncoderSetParameter(e->br, BROTLI_PARAM_QUALITY, (uint32_t)c->brotli_quality) &&
             BrotliEncoderSetParameter(e->br, BROTLI_PARAM_LGWIN, COMPRESS_WINDOW_LOG);
    } else {
        ok = (e->zs = ZSTD_createCCtx()) != NULL &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(e->zs, ZSTD_c_compressionLevel, (int)c->zstd_level)) &&
             !ZSTD_isError(ZSTD_CCtx_setParameter(e->zs, ZSTD_c_windowLog, COMPRESS_WINDOW_LOG));
    }
    if (!ok) {
        encoder_free(e);
        return NULL;
    }
    return e;
}

/* A reset encoder from the worker's cache (k; NULL: none, in tests), else
 * a new one. */
static encoder_t *encoder_get(const compress_conf_t *c, enc_cache_t *k, int alg)
{
    if (k != NULL && k->n[alg] > 0)
        return k->idle[alg][--k->n[alg]];
    return encoder_new(c, alg);
}

/* Back to the worker's cache (reset), or freed. */
static void encoder_put(enc_cache_t *k, encoder_t *e)
{
    int reset = e->alg == ALG_GZIP ? deflateReset(&e->z) == Z_OK
              : e->alg == ALG_ZSTD ? !ZSTD_isError(ZSTD_CCtx_reset(e->zs, ZSTD_reset_session_only))
                                   : 0; /* brotli cannot be reset */
    if (!reset || k == NULL || k->n[e->alg] >= COMPRESS_CACHE) {
        encoder_free(e);
        return;
    }
    evbuffer_drain(e->out, evbuffer_get_length(e->out));
    k->idle[e->alg][k->n[e->alg]++] = e;
}

/* Feeds len bytes (and, with flush, pushes out everything so far: a sync
 * flush, or the end of the stream when fin). Output goes to e->out.
 * 0 or -1 (the encoder failed: the response is cut). */
static int encode(encoder_t *e, const unsigned char *in, size_t len, int flush, int fin)
{
    for (;;) {
        struct evbuffer_iovec iov;
        if (evbuffer_reserve_space(e->out, COMPRESS_OUT_CHUNK, &iov, 1) < 1)
            return -1;
        unsigned char *out = iov.iov_base;
        size_t avail_out = iov.iov_len, before_in = len;
        int done = 0;
        if (e->alg == ALG_GZIP) {
            e->z.next_in = (unsigned char *)in;
            e->z.avail_in = (uInt)len;
            e->z.next_out = out;
            e->z.avail_out = (uInt)avail_out;
            int zr = deflate(&e->z, fin ? Z_FINISH : flush ? Z_SYNC_FLUSH : Z_NO_FLUSH);
            if (zr == Z_STREAM_ERROR)
                return -1;
            in = e->z.next_in;
            len = e->z.avail_in;
            avail_out = e->z.avail_out;
            done = len == 0 && (fin ? zr == Z_STREAM_END : avail_out != 0);
        } else if (e->alg == ALG_BR) {
            BrotliEncoderOperation op = fin ? BROTLI_OPERATION_FINISH
                                            : flush ? BROTLI_OPERATION_FLUSH : BROTLI_OPERATION_PROCESS;
            const uint8_t *next_in = in;
            uint8_t *next_out = out;
            if (!BrotliEncoderCompressStream(e->br, op, &len, &next_in, &avail_out, &next_out, NULL))
                return -1;
            in = next_in;
            done = len == 0 && !BrotliEncoderHasMoreOutput(e->br) &&
                   (!fin || BrotliEncoderIsFinished(e->br));
        } else {
            ZSTD_inBuffer ib = { in, len, 0 };
            ZSTD_outBuffer ob = { out, avail_out, 0 };
            size_t rem = ZSTD_compressStream2(e->zs, &ob, &ib, fin ? ZSTD_e_end : flush ? ZSTD_e_flush : ZSTD_e_continue);
            if (ZSTD_isError(rem))
                return -1;
            in += ib.pos;
            len -= ib.pos;
            avail_out = ob.size - ob.pos;
            done = len == 0 && (!(flush || fin) || rem == 0);
        }
        iov.iov_len -= avail_out;
        if (evbuffer_commit_space(e->out, &iov, 1) < 0)
            return -1;
        (void)before_in;
        if (done)
            return 0;
    }
}

static cstate_t *slot_of(tg_filter_exchange_t *fx, size_t index)
{
    if (fx->state[index] == NULL) {
        cstate_t *st = tg_arena_alloc(fx->arena, sizeof(*st));
        if (st != NULL)
            memset(st, 0, sizeof(*st));
        fx->state[index] = st;
    }
    return fx->state[index];
}

/* ---- the hooks ---- */

static tg_filter_status_t compress_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    compress_conf_t *c = conf;
    const tg_header_t *ce = c->decompress_requests ? tg_headers_get(&fx->req->headers, "content-encoding") : NULL;
    if (ce == NULL || fx->req->body == TG_BODY_NONE)
        return TG_FILTER_CONTINUE;
    int alg = -1;
    for (int k = 0; k < ALG_N; k++)
        if (strcasecmp(ce->value, alg_names[k]) == 0)
            alg = k;
    if (alg < 0)
        return TG_FILTER_CONTINUE; /* identity, a list of codings, or one we do not know: as it is */
    cstate_t *st = slot_of(fx, index);
    if (st == NULL || (st->dec = tg_decoder_new((tg_decode_alg_t)alg, c->max_request_ratio, c->max_decompressed)) == NULL ||
        (st->dec_out = evbuffer_new()) == NULL) {
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    tg_headers_remove(&fx->req->headers, "content-encoding");
    tg_headers_remove(&fx->req->headers, "content-length");
    fx->req->body = TG_BODY_CHUNKED; /* the decompressed length is not known ahead */
    fx->req->content_length = 0;
    return TG_FILTER_CONTINUE;
}

static tg_filter_status_t compress_on_request_body(void *conf, tg_filter_exchange_t *fx, size_t index,
                                                   struct evbuffer *piece, int fin)
{
    (void)conf;
    cstate_t *st = fx->state[index];
    tg_decoder_t *d = st ? st->dec : NULL;
    if (d == NULL)
        return TG_FILTER_CONTINUE;
    struct evbuffer *out = st->dec_out;
    tg_decode_result_t rc = tg_decoder_feed(d, piece, out);
    if (rc != TG_DECODE_OK)
        evbuffer_drain(out, evbuffer_get_length(out));
    if (rc == TG_DECODE_OVER) {
        fx->reply_status = 413;
        fx->reply_message = "request body decompresses past max_request_ratio or max_decompressed_bytes";
        return TG_FILTER_REPLY;
    }
    if (rc != TG_DECODE_OK || (fin && !tg_decoder_done(d))) {
        fx->reply_status = 400;
        fx->reply_message = rc != TG_DECODE_OK ? "request body is not valid compressed data"
                                               : "compressed request body is truncated";
        return TG_FILTER_REPLY;
    }
    evbuffer_add_buffer(piece, out); /* moves the chains: no copy */
    return TG_FILTER_CONTINUE;
}

static int no_transform(const tg_headers_t *h)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].name_len == 13 && strncasecmp(h->v[i].name, "cache-control", 13) == 0 &&
            tg_header_has_token(h->v[i].value, h->v[i].value_len, "no-transform"))
            return 1;
    return 0;
}

/* Adds "Accept-Encoding" to Vary unless it is there (or Vary is "*"). */
static void add_vary(tg_response_t *resp, tg_arena_t *a)
{
    for (size_t i = 0; i < resp->headers.n; i++) {
        const tg_header_t *h = &resp->headers.v[i];
        if (h->name_len == 4 && strncasecmp(h->name, "vary", 4) == 0 &&
            (tg_header_has_token(h->value, h->value_len, "accept-encoding") ||
             tg_header_has_token(h->value, h->value_len, "*")))
            return;
    }
    tg_headers_add(&resp->headers, a, "vary", 4, "Accept-Encoding", 15);
}

static void compress_on_response(void *conf, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp)
{
    compress_conf_t *c = conf;
    const tg_header_t *ct = tg_headers_get(&resp->headers, "content-type");
    if (ct == NULL || strncasecmp(ct->value, "application/grpc", 16) == 0 ||
        !tg_compress_type_allowed(ct->value, c->types, c->n_types))
        return;
    if (resp->status < 200 || resp->status == 204 || resp->status == 206 || resp->status == 304 ||
        resp->body == TG_BODY_TUNNEL)
        return;
    const tg_header_t *ce = tg_headers_get(&resp->headers, "content-encoding");
    if ((ce != NULL && strcasecmp(ce->value, "identity") != 0) || no_transform(&resp->headers))
        return; /* already encoded, or the origin forbids it */
    add_vary(resp, fx->arena); /* the answer depends on Accept-Encoding from here on */
    if (strcmp(fx->req->method, "HEAD") == 0 || resp->body == TG_BODY_NONE ||
        (resp->body == TG_BODY_LENGTH && resp->content_length < c->min_size))
        return;
    const tg_header_t *ae = tg_headers_get(&fx->req->headers, "accept-encoding");
    int pick = ae ? tg_compress_negotiate(ae->value, c->offer, c->n_order) : -1;
    if (pick < 0)
        return;
    cstate_t *st = slot_of(fx, index);
    encoder_t *e = st ? encoder_get(c, tg_filter_worker_state(fx, index), c->order[pick]) : NULL;
    if (e == NULL)
        return; /* out of memory: sent as it is */
    st->enc = e;
    tg_headers_remove(&resp->headers, "content-encoding");
    tg_headers_add(&resp->headers, fx->arena, "content-encoding", 16, alg_names[e->alg],
                   strlen(alg_names[e->alg]));
    tg_headers_remove(&resp->headers, "content-length");
    resp->body = TG_BODY_CHUNKED; /* the length changes: chunked (HTTP/1.1) or framed (HTTP/2) */
    resp->content_length = 0;
    const tg_header_t *etag = tg_headers_get(&resp->headers, "etag");
    if (etag != NULL && etag->value[0] == '"') { /* a strong validator no longer holds for these bytes */
        size_t l = strlen(etag->value);
        char *weak = tg_arena_alloc(fx->arena, l + 3);
        if (weak != NULL) {
            memcpy(weak, "W/", 2);
            memcpy(weak + 2, etag->value, l + 1);
            tg_headers_set(&resp->headers, fx->arena, "etag", weak);
        }
    }
}

static void compress_on_response_body(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece,
                                      int fin)
{
    cstate_t *st = fx->state[index];
    encoder_t *e = st ? st->enc : NULL;
    if (e == NULL)
        return;
    int n = evbuffer_peek(piece, -1, NULL, NULL, 0);
    struct evbuffer_iovec stack[16], *v = n <= 16 ? stack : malloc((size_t)n * sizeof(*v));
    int rc = v == NULL ? -1 : 0;
    if (rc == 0)
        evbuffer_peek(piece, -1, NULL, v, n);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = encode(e, v[i].iov_base, v[i].iov_len, 0, 0);
    if (rc == 0) /* everything so far goes out now: a stream is never held back */
        rc = encode(e, NULL, 0, 1, fin);
    if (v != stack)
        free(v);
    evbuffer_drain(piece, evbuffer_get_length(piece));
    if (rc < 0) {
        /* the client got a Content-Encoding it can no longer be given: end
         * the stream short (it sees a truncated body, never wrong bytes) */
        st->enc = NULL;
        encoder_free(e);
        return;
    }
    evbuffer_add_buffer(piece, e->out);
}

static void compress_on_complete(void *conf, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    cstate_t *st = fx->state[index];
    if (st != NULL) {
        if (st->enc != NULL)
            encoder_put(tg_filter_worker_state(fx, index), st->enc);
        tg_decoder_free(st->dec);
        if (st->dec_out != NULL)
            evbuffer_free(st->dec_out);
        st->enc = NULL;
        st->dec = NULL;
        st->dec_out = NULL;
    }
}

const tg_filter_type_t tg_filter_compress = {
    .name = "compress",
    .doc = "compresses responses with zstd, brotli or gzip as the client accepts, streaming",
    .keys = &compress_keyset,
    .create = compress_create,
    .destroy = compress_destroy,
    .on_request = compress_on_request,
    .on_request_body = compress_on_request_body,
    .on_response = compress_on_response,
    .on_response_body = compress_on_response_body,
    .on_complete = compress_on_complete,
    .worker_init = compress_worker_init,
    .worker_free = compress_worker_free,
};
