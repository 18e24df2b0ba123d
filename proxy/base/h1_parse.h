/*
 * proxy/base/h1_parse.h — tollgate's own HTTP/1.1 message parser (RFC 9112,
 * RFC 9110), for requests and responses alike.
 *
 * Strict: one rule set for the head, chunk lines and trailers. CRLF is the
 * only line ending (a bare CR or LF anywhere is an error); the method is a
 * token; the request-target is visible ASCII; only HTTP/1.0 and HTTP/1.1
 * are spoken (other well-formed versions are 505); header names are
 * tokens followed directly by ':'; values are field-content (HTAB, SP,
 * VCHAR, obs-text; no other control byte); obs-fold is refused;
 * Content-Length is one non-negative integer (a list of identical values
 * is merged); Transfer-Encoding must end in a single `chunked` and never
 * comes with Content-Length; chunk sizes are hex with a digit limit, chunk
 * extensions follow the grammar within a byte limit, and chunk data ends in
 * exactly CRLF.
 *
 * Incremental and zero-copy: the caller hands the bytes of the message
 * received so far, always starting at the message's first byte (the
 * buffer may move between calls, its contents may not); the parser
 * resumes at the byte where it stopped and never looks at a byte twice.
 * Everything it reports is a span — an offset and a length into that
 * buffer — so nothing is copied and nothing points into memory that may
 * move.
 *
 * No callbacks: tg_h1_parse_head() returns at each complete header field
 * (TG_H1P_FIELD, with the field in p->field_name / p->field_value) and
 * when the head ends (TG_H1P_DONE); the caller stores what it wants and
 * calls again. When the head is done, p->framing says how the body is
 * delimited. Chunked bodies are parsed by tg_h1_parse_chunk(), which
 * reads the framing bytes and leaves chunk data to the caller to move
 * (p->chunk_left bytes); the trailer section after the last chunk is read
 * by tg_h1_parse_head() again, after tg_h1_parse_trailers_begin().
 *
 * The parser allocates nothing and depends on nothing but libc. A parser
 * belongs to one connection; it is not thread-safe.
 */
#ifndef TG_BASE_H1_PARSE_H
#define TG_BASE_H1_PARSE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TG_H1_REQUEST = 0, TG_H1_RESPONSE = 1 } tg_h1_kind_t;

typedef enum {
    TG_H1P_ERROR = -1, /* p->error_status and p->error say why */
    TG_H1P_AGAIN = 0,  /* every byte given was examined; call again with more */
    TG_H1P_FIELD = 1,  /* a header or trailer field is complete (p->field_*) */
    TG_H1P_DONE = 2,   /* head or trailer section complete: p->pos is its length */
    TG_H1P_DATA = 3,   /* tg_h1_parse_chunk: p->chunk_left bytes of chunk data follow */
    TG_H1P_TRAILERS = 4, /* tg_h1_parse_chunk: the last chunk was read; trailers follow */
} tg_h1p_result_t;

/* How the message body is delimited (valid once the head is done). */
typedef enum {
    TG_H1_FRAME_NONE = 0,    /* no body */
    TG_H1_FRAME_LENGTH,      /* p->content_length bytes (> 0) */
    TG_H1_FRAME_CHUNKED,     /* chunked transfer coding */
    TG_H1_FRAME_CLOSE,       /* until the connection closes (responses only) */
    TG_H1_FRAME_TUNNEL,      /* 101 Switching Protocols: raw bytes follow */
} tg_h1_framing_t;

/* Header fields the parser recognizes (for framing, and so that callers
 * need no second lookup). */
typedef enum {
    TG_H1F_OTHER = 0,
    TG_H1F_HOST,
    TG_H1F_CONTENT_LENGTH,
    TG_H1F_TRANSFER_ENCODING,
    TG_H1F_CONNECTION,
    TG_H1F_UPGRADE,
    TG_H1F_EXPECT,
    TG_H1F_KEEP_ALIVE,
    TG_H1F_TE,
    TG_H1F_TRAILER,
    TG_H1F_PROXY_CONNECTION,
} tg_h1_field_id_t;

/* A byte range of the caller's buffer. */
typedef struct tg_h1_span {
    uint32_t off, len;
} tg_h1_span_t;

/* Limits (RFC 9112 leaves them to the implementation). */
#define TG_H1_MAX_CHUNK_SIZE_DIGITS 16  /* fits 64 bits; more is an error */
#define TG_H1_MAX_CHUNK_EXT_BYTES 4096  /* per chunk line, after the size */

typedef struct tg_h1_parser {
    /* ---- results: the start line ---- */
    tg_h1_span_t method;        /* requests */
    tg_h1_span_t target;        /* requests */
    uint16_t status;            /* responses */
    uint8_t version;            /* 10 or 11 */
    /* ---- results: the field just completed (TG_H1P_FIELD) ---- */
    uint8_t field_id;           /* tg_h1_field_id_t */
    tg_h1_span_t field_name;
    tg_h1_span_t field_value;   /* without leading and trailing whitespace */
    /* ---- results: framing (TG_H1P_DONE of a head) ---- */
    uint8_t framing;            /* tg_h1_framing_t */
    uint64_t content_length;    /* the Content-Length value, when present */
    unsigned has_content_length : 1, has_transfer_encoding : 1, conn_close : 1, conn_keep_alive : 1,
        conn_upgrade : 1, has_upgrade : 1;
    /* ---- set by the caller before parsing a response head ---- */
    unsigned no_body : 1;       /* the response answers a HEAD request */
    /* ---- errors ---- */
    uint16_t error_status;      /* 400, 501, 505 (requests); any error of a response means 502 */
    const char *error;          /* a static message */
    /* ---- chunked bodies ---- */
    uint64_t chunk_left;        /* TG_H1P_DATA: data bytes still to move; the caller decrements */
    /* ---- private ---- */
    uint8_t kind, state, cstate, in_trailers, te_chunked_last, te_other;
    uint16_t cext_bytes;
    uint8_t cdigits;
    uint32_t pos;               /* bytes of the head or trailer section examined so far */
    uint32_t mark;              /* start of the token being read */
} tg_h1_parser_t;

/* Prepares p for a new message of the given kind. */
void tg_h1_parser_init(tg_h1_parser_t *p, tg_h1_kind_t kind);

/* Parses a head (or, after tg_h1_parse_trailers_begin, a trailer section)
 * from buf[0..len), the bytes of it received so far; len never shrinks
 * between calls. Returns TG_H1P_FIELD for each complete field,
 * TG_H1P_DONE at the end (p->pos bytes make up the head, including the
 * final CRLF; the framing results are set for a head), TG_H1P_AGAIN when
 * more bytes are needed, TG_H1P_ERROR on a violation. */
tg_h1p_result_t tg_h1_parse_head(tg_h1_parser_t *p, const char *buf, size_t len);

/* Reads chunked framing (chunk-size line, extensions, the CRLF after the
 * data, the last chunk) from buf[0..len), which starts at the first byte
 * not yet consumed. *used is set to the bytes consumed. Returns
 * TG_H1P_DATA when chunk data starts (p->chunk_left bytes; the caller
 * moves them and decrements chunk_left, then calls again),
 * TG_H1P_TRAILERS after the last chunk's line, TG_H1P_AGAIN when all of
 * buf was consumed, TG_H1P_ERROR on a violation. */
tg_h1p_result_t tg_h1_parse_chunk(tg_h1_parser_t *p, const char *buf, size_t len, size_t *used);

/* Switches p to reading a trailer section with tg_h1_parse_head(); spans
 * are then relative to the first byte after the last chunk's line. */
void tg_h1_parse_trailers_begin(tg_h1_parser_t *p);

/* The length of the field-content prefix of v[0..len) (HTAB, SP, VCHAR,
 * obs-text): len when all of it may stand in a field value. */
size_t tg_h1_field_content_len(const char *v, size_t len);

/* The length of the token prefix of s[0..len) (tchar only): len when
 * all of it is a token. */
size_t tg_h1_token_len(const char *s, size_t len);

/* RFC 9110 token character (tchar). */
int tg_h1_is_tchar(unsigned char c);

/* Case-insensitive match of a span against a lowercase literal. */
int tg_h1_span_ieq(const char *buf, tg_h1_span_t s, const char *lower, size_t n);

#endif
