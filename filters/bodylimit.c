/*
 * filters/bodylimit.c — see bodylimit.h. The running count lives in the
 * filter's per-exchange state slot (arena memory).
 */
#include "filters/bodylimit.h"

#include <event2/buffer.h>
#include <stdlib.h>

typedef struct body_limit {
    uint64_t max;
} body_limit_t;
static const tg_key_t bl_keys[] = {
    { "max", TG_KEY_SIZE, "size (required)", "—", "the largest request body on this route; more gets `413`",
      .flags = TG_KEY_REQUIRED, TG_FIELD(body_limit_t, max, TG_FIELD_U64) },
};
static const tg_keyset_t bl_keyset = TG_KEYSET("filter.body_limit", "body_limit", bl_keys);


static void *bl_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[1];
    body_limit_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "body_limit", &bl_keyset, c, v);
    if (rc < 0) {
        free(c);
        return NULL;
    }
    return c;
}

static tg_filter_status_t too_large(tg_filter_exchange_t *fx)
{
    fx->reply_status = 413;
    fx->reply_message = "request body too large";
    return TG_FILTER_REPLY;
}

static tg_filter_status_t bl_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    body_limit_t *c = conf;
    if (fx->req->body == TG_BODY_LENGTH && fx->req->content_length > c->max)
        return too_large(fx); /* declared too large: refuse before reading it */
    uint64_t *seen = tg_arena_alloc(fx->arena, sizeof(*seen));
    if (seen != NULL)
        *seen = 0;
    fx->state[index] = seen;
    return TG_FILTER_CONTINUE;
}

static tg_filter_status_t bl_on_request_body(void *conf, tg_filter_exchange_t *fx, size_t index,
                                             struct evbuffer *piece, int fin)
{
    body_limit_t *c = conf;
    uint64_t *seen = fx->state[index];
    if (seen == NULL)
        return TG_FILTER_CONTINUE;
    *seen += evbuffer_get_length(piece);
    return *seen > c->max ? too_large(fx) : TG_FILTER_CONTINUE;
}

static void bl_destroy(void *p)
{
    free(p);
}

const tg_filter_type_t tg_filter_body_limit = {
    .name = "body_limit",
    .doc = "a request body size limit for one route",
    .keys = &bl_keyset,
    .create = bl_create,
    .destroy = bl_destroy,
    .on_request = bl_on_request,
    .on_request_body = bl_on_request_body,
};
