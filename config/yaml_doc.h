/*
 * config/yaml_doc.h — a YAML document in libyaml's document model
 * (yaml_document_t: nodes by id, yaml_document_get_node works), composed
 * from the parser's events by tollgate instead of by yaml_parser_load.
 *
 * Why: libyaml's loader gives every node its own malloc'ed tag string,
 * every scalar its own allocation and every mapping a 16-pair array,
 * about 2 KiB a route for a config of 100,000 routes (197 MB, half the
 * load time in page faults). Here the nodes are one array and everything
 * else — scalars, explicit tags, each collection's exact child list —
 * comes from one arena freed at once; implicit tags are shared constants.
 * Anchors and aliases work as in libyaml's loader (an alias names the
 * anchored node: a graph, not a copy).
 */
#ifndef TG_CONFIG_YAML_DOC_H
#define TG_CONFIG_YAML_DOC_H

#include <yaml.h>

#include "proxy/base/arena.h"

typedef struct tg_yaml_doc {
    yaml_document_t doc;
    tg_arena_t arena;           /* scalars, explicit tags, child lists */
    /* Why composing failed (0 returned): the parser's problem, or ours. */
    const char *problem, *context;
    yaml_mark_t problem_mark;
} tg_yaml_doc_t;

/* Composes the parser's first document into d (no nodes: an empty
 * stream). 1, or 0 with d->problem set; either way d is freed with
 * tg_yaml_doc_free. */
int tg_yaml_load(yaml_parser_t *p, tg_yaml_doc_t *d);
void tg_yaml_doc_free(tg_yaml_doc_t *d);

#endif
