/*
 * config/yaml_doc.c — composing a YAML document from events. See
 * yaml_doc.h.
 */
#include "config/yaml_doc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A collection being read: its node and where its children's ids start
 * on the shared id stack. */
typedef struct frame {
    int node;
    size_t base;
} frame_t;

typedef struct anchor {
    const char *name;           /* arena */
    int node;
} anchor_t;

typedef struct composer {
    tg_yaml_doc_t *d;
    frame_t *frames;
    size_t n_frames, cap_frames;
    int *ids;                   /* children of the open collections, innermost last */
    size_t n_ids, cap_ids;
    anchor_t *anchors;
    size_t n_anchors, cap_anchors;
} composer_t;

static int grow(void **v, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    void *nv = realloc(*v, c * elem);
    if (nv == NULL)
        return -1;
    *v = nv;
    *cap = c;
    return 0;
}

static int fail(composer_t *c, const char *problem, yaml_mark_t mark)
{
    c->d->problem = problem;
    c->d->problem_mark = mark;
    return -1;
}

/* A new node (its id), the tag given or the collection's default. */
static int add_node(composer_t *c, yaml_node_type_t type, const yaml_char_t *tag, const char *dflt,
                    yaml_mark_t start, yaml_mark_t end)
{
    yaml_document_t *doc = &c->d->doc;
    size_t n = (size_t)(doc->nodes.top - doc->nodes.start), cap = (size_t)(doc->nodes.end - doc->nodes.start);
    if (n >= (size_t)INT32_MAX - 1)
        return fail(c, "too many nodes", start);
    if (n == cap) {
        size_t nc = cap ? cap * 2 : 256;
        yaml_node_t *v = realloc(doc->nodes.start, nc * sizeof(*v));
        if (v == NULL)
            return fail(c, "out of memory", start);
        doc->nodes.start = v;
        doc->nodes.top = v + n;
        doc->nodes.end = v + nc;
    }
    const yaml_char_t *t = (const yaml_char_t *)dflt;
    if (tag != NULL && strcmp((const char *)tag, "!") != 0 &&
        (t = (const yaml_char_t *)tg_arena_strndup(&c->d->arena, (const char *)tag, strlen((const char *)tag))) == NULL)
        return fail(c, "out of memory", start);
    yaml_node_t *node = doc->nodes.top++;
    memset(node, 0, sizeof(*node));
    node->type = type;
    node->tag = (yaml_char_t *)t;
    node->start_mark = start;
    node->end_mark = end;
    return (int)n + 1;
}

static int anchor_node(composer_t *c, const yaml_char_t *name, int node, yaml_mark_t mark)
{
    if (name == NULL)
        return 0;
    for (size_t i = 0; i < c->n_anchors; i++)
        if (strcmp(c->anchors[i].name, (const char *)name) == 0)
            return fail(c, "found duplicate anchor", mark);
    if (grow((void **)&c->anchors, &c->cap_anchors, c->n_anchors, sizeof(*c->anchors)) < 0)
        return fail(c, "out of memory", mark);
    const char *copy = tg_arena_strndup(&c->d->arena, (const char *)name, strlen((const char *)name));
    if (copy == NULL)
        return fail(c, "out of memory", mark);
    c->anchors[c->n_anchors++] = (anchor_t){ copy, node };
    return 0;
}

/* A finished node becomes a child of the innermost open collection. */
static int child(composer_t *c, int node, yaml_mark_t mark)
{
    if (c->n_frames == 0)
        return 0; /* the root */
    if (grow((void **)&c->ids, &c->cap_ids, c->n_ids, sizeof(*c->ids)) < 0)
        return fail(c, "out of memory", mark);
    c->ids[c->n_ids++] = node;
    return 0;
}

static int open_collection(composer_t *c, int node, yaml_mark_t mark)
{
    if (grow((void **)&c->frames, &c->cap_frames, c->n_frames, sizeof(*c->frames)) < 0)
        return fail(c, "out of memory", mark);
    c->frames[c->n_frames++] = (frame_t){ node, c->n_ids };
    return 0;
}

/* The innermost collection ends: its children, exactly sized, in the arena. */
static int close_collection(composer_t *c, yaml_mark_t end)
{
    frame_t f = c->frames[--c->n_frames];
    yaml_node_t *node = c->d->doc.nodes.start + f.node - 1;
    size_t n = c->n_ids - f.base;
    node->end_mark = end;
    if (node->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *items = tg_arena_alloc(&c->d->arena, (n ? n : 1) * sizeof(*items));
        if (items == NULL)
            return fail(c, "out of memory", end);
        if (n > 0)
            memcpy(items, c->ids + f.base, n * sizeof(*items));
        node->data.sequence.items.start = items;
        node->data.sequence.items.top = node->data.sequence.items.end = items + n;
    } else {
        yaml_node_pair_t *pairs = tg_arena_alloc(&c->d->arena, (n / 2 ? n / 2 : 1) * sizeof(*pairs));
        if (pairs == NULL)
            return fail(c, "out of memory", end);
        for (size_t i = 0; i + 1 < n; i += 2)
            pairs[i / 2] = (yaml_node_pair_t){ c->ids[f.base + i], c->ids[f.base + i + 1] };
        node->data.mapping.pairs.start = pairs;
        node->data.mapping.pairs.top = node->data.mapping.pairs.end = pairs + n / 2;
    }
    c->n_ids = f.base;
    return child(c, f.node, end);
}

/* One event of the document's body. 1: the document ended; 0: go on; -1: failed. */
static int on_event(composer_t *c, yaml_event_t *e)
{
    int node;
    switch (e->type) {
    case YAML_DOCUMENT_END_EVENT:
        c->d->doc.end_implicit = e->data.document_end.implicit;
        c->d->doc.end_mark = e->end_mark;
        return 1;
    case YAML_ALIAS_EVENT:
        for (size_t i = 0; i < c->n_anchors; i++)
            if (strcmp(c->anchors[i].name, (const char *)e->data.alias.anchor) == 0)
                return child(c, c->anchors[i].node, e->start_mark);
        return fail(c, "found undefined alias", e->start_mark);
    case YAML_SCALAR_EVENT: {
        char *v = tg_arena_strndup(&c->d->arena, (const char *)e->data.scalar.value, e->data.scalar.length);
        if (v == NULL)
            return fail(c, "out of memory", e->start_mark);
        if ((node = add_node(c, YAML_SCALAR_NODE, e->data.scalar.tag, YAML_STR_TAG, e->start_mark, e->end_mark)) < 0)
            return -1;
        yaml_node_t *n = c->d->doc.nodes.start + node - 1;
        n->data.scalar.value = (yaml_char_t *)v;
        n->data.scalar.length = e->data.scalar.length;
        n->data.scalar.style = e->data.scalar.style;
        if (anchor_node(c, e->data.scalar.anchor, node, e->start_mark) < 0)
            return -1;
        return child(c, node, e->start_mark);
    }
    case YAML_SEQUENCE_START_EVENT:
        if ((node = add_node(c, YAML_SEQUENCE_NODE, e->data.sequence_start.tag, YAML_SEQ_TAG, e->start_mark,
                             e->end_mark)) < 0)
            return -1;
        c->d->doc.nodes.start[node - 1].data.sequence.style = e->data.sequence_start.style;
        if (anchor_node(c, e->data.sequence_start.anchor, node, e->start_mark) < 0)
            return -1;
        return open_collection(c, node, e->start_mark);
    case YAML_MAPPING_START_EVENT:
        if ((node = add_node(c, YAML_MAPPING_NODE, e->data.mapping_start.tag, YAML_MAP_TAG, e->start_mark,
                             e->end_mark)) < 0)
            return -1;
        c->d->doc.nodes.start[node - 1].data.mapping.style = e->data.mapping_start.style;
        if (anchor_node(c, e->data.mapping_start.anchor, node, e->start_mark) < 0)
            return -1;
        return open_collection(c, node, e->start_mark);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return c->n_frames > 0 ? close_collection(c, e->end_mark) : fail(c, "unbalanced collection", e->start_mark);
    default:
        return fail(c, "unexpected event", e->start_mark);
    }
}

int tg_yaml_load(yaml_parser_t *p, tg_yaml_doc_t *d)
{
    memset(d, 0, sizeof(*d));
    tg_arena_init(&d->arena);
    composer_t c = { .d = d };
    int rc = 0, started = 0;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(p, &e)) {
            d->problem = p->problem ? p->problem : "unknown";
            d->context = p->context;
            d->problem_mark = p->problem_mark;
            break;
        }
        int step;
        if (e.type == YAML_STREAM_START_EVENT) {
            step = 0;
        } else if (e.type == YAML_STREAM_END_EVENT) {
            step = 1; /* no document: no nodes */
        } else if (e.type == YAML_DOCUMENT_START_EVENT && !started) {
            started = 1;
            d->doc.start_implicit = e.data.document_start.implicit;
            d->doc.start_mark = e.start_mark;
            step = 0;
        } else {
            step = on_event(&c, &e);
        }
        yaml_event_delete(&e);
        if (step != 0) {
            rc = step > 0;
            break;
        }
    }
    free(c.frames);
    free(c.ids);
    free(c.anchors);
    return rc;
}

void tg_yaml_doc_free(tg_yaml_doc_t *d)
{
    free(d->doc.nodes.start);
    memset(&d->doc, 0, sizeof(d->doc));
    tg_arena_free(&d->arena);
}
