/*
 * filters/grpclimit.c — see grpclimit.h. Per-exchange state (arena): where
 * the parser is in the framing — collecting a prefix, or skipping the
 * rest of a message.
 */
#include "filters/grpclimit.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <strings.h>

typedef struct grpc_limit {
    uint64_t max;
} grpc_limit_t;

typedef struct frame_state {
    unsigned char prefix[5];
    size_t have;          /* prefix bytes collected */
    uint64_t remaining;   /* message bytes still to skip */
} frame_state_t;

static void *gl_create(tg_node_t *node, const char *config_path)
{
    static const char *const keys[] = { "max_request_message" };
    tg_node_t v[1];
    grpc_limit_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_fields(node, "grpc_message_limit", keys, 1, v);
    if (!tg_node_present(&v[0])) {
        tg_node_error(node, "grpc_message_limit: missing required key 'max_request_message'");
        rc = -1;
    } else if (tg_node_size(&v[0], "max_request_message", &c->max) < 0) {
        rc = -1;
    } else if (c->max > 0xffffffffu) {
        tg_node_error(&v[0], "max_request_message: gRPC messages are at most 4 GiB");
        rc = -1;
    }
    if (rc < 0) {
        free(c);
        return NULL;
    }
    return c;
}

static tg_filter_status_t gl_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    const tg_header_t *ct = tg_headers_get(&fx->req->headers, "content-type");
    if (ct == NULL || strncasecmp(ct->value, "application/grpc", 16) != 0)
        return TG_FILTER_CONTINUE; /* not gRPC: nothing to count */
    frame_state_t *st = tg_arena_alloc(fx->arena, sizeof(*st));
    if (st != NULL) {
        st->have = 0;
        st->remaining = 0;
    }
    fx->state[index] = st;
    return TG_FILTER_CONTINUE;
}

/* Walks the piece's framing without copying it: skip message bytes, read
 * prefixes (which may straddle pieces). */
static tg_filter_status_t gl_on_request_body(void *conf, tg_filter_exchange_t *fx, size_t index,
                                             struct evbuffer *piece, int fin)
{
    grpc_limit_t *c = conf;
    frame_state_t *st = fx->state[index];
    if (st == NULL)
        return TG_FILTER_CONTINUE;
    size_t len = evbuffer_get_length(piece), pos = 0;
    while (pos < len) {
        if (st->remaining > 0) {
            uint64_t skip = st->remaining < len - pos ? st->remaining : len - pos;
            st->remaining -= skip;
            pos += (size_t)skip;
            continue;
        }
        struct evbuffer_ptr p;
        if (evbuffer_ptr_set(piece, &p, pos, EVBUFFER_PTR_SET) < 0)
            break;
        size_t take = 5 - st->have < len - pos ? 5 - st->have : len - pos;
        if (evbuffer_copyout_from(piece, &p, st->prefix + st->have, take) < 0)
            break;
        st->have += take;
        pos += take;
        if (st->have < 5)
            break;
        st->have = 0;
        uint64_t n = (uint64_t)st->prefix[1] << 24 | (uint64_t)st->prefix[2] << 16 | (uint64_t)st->prefix[3] << 8 |
                     st->prefix[4];
        if (n > c->max) {
            fx->reply_status = 413; /* RESOURCE_EXHAUSTED for gRPC */
            fx->reply_message = "request message larger than the limit";
            return TG_FILTER_REPLY;
        }
        st->remaining = n;
    }
    return TG_FILTER_CONTINUE;
}

static void gl_destroy(void *p)
{
    free(p);
}

const tg_filter_type_t tg_filter_grpc_message_limit = {
    .name = "grpc_message_limit",
    .create = gl_create,
    .destroy = gl_destroy,
    .on_request = gl_on_request,
    .on_request_body = gl_on_request_body,
};
