/*
 * filters/grpclimit.c — see grpclimit.h. Per-exchange state (arena): where
 * the walk of the framing is (proxy/base/grpc_frames.h).
 */
#include "filters/grpclimit.h"

#include <stdlib.h>

#include "proxy/base/grpc_frames.h"

typedef struct grpc_limit {
    uint64_t max;
} grpc_limit_t;
static const tg_key_t gl_keys[] = {
    { "max_request_message", TG_KEY_SIZE, "size (required), at most 4GiB", "—", "largest request message",
      .flags = TG_KEY_REQUIRED, .min = 0, .max = 4294967296LL, TG_FIELD(grpc_limit_t, max, TG_FIELD_U64) },
};
static const tg_keyset_t gl_keyset = TG_KEYSET("filter.grpc_message_limit", "grpc_message_limit", gl_keys);


static void *gl_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[1];
    grpc_limit_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "grpc_message_limit", &gl_keyset, c, v);
    if (rc < 0) {
        free(c);
        return NULL;
    }
    return c;
}

static tg_filter_status_t gl_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    if (fx->grpc == TG_GRPC_NONE)
        return TG_FILTER_CONTINUE; /* not gRPC (proxy/base/grpc_frames.h's rule): nothing to count */
    tg_grpc_frames_t *st = tg_arena_alloc(fx->arena, sizeof(*st));
    if (st != NULL)
        *st = (tg_grpc_frames_t){ 0 };
    fx->state[index] = st;
    return TG_FILTER_CONTINUE;
}

static tg_filter_status_t gl_on_request_body(void *conf, tg_filter_exchange_t *fx, size_t index,
                                             struct evbuffer *piece, int fin)
{
    grpc_limit_t *c = conf;
    tg_grpc_frames_t *st = fx->state[index];
    if (st == NULL || tg_grpc_frames_check(st, piece, c->max) == 0)
        return TG_FILTER_CONTINUE;
    fx->reply_status = 413; /* RESOURCE_EXHAUSTED for gRPC */
    fx->reply_message = "request message larger than the limit";
    return TG_FILTER_REPLY;
}

static void gl_destroy(void *p)
{
    free(p);
}

const tg_filter_type_t tg_filter_grpc_message_limit = {
    .name = "grpc_message_limit",
    .doc = "a size limit on each gRPC request message",
    .keys = &gl_keyset,
    .create = gl_create,
    .destroy = gl_destroy,
    .on_request = gl_on_request,
    .on_request_body = gl_on_request_body,
};
