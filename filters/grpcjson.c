/*
 * filters/grpcjson.c — the `grpc_json` filter: REST and JSON calls to a
 * gRPC service, from the service's descriptors (a FileDescriptorSet).
 *
 * A request is mapped to a method by the methods' google.api.http rules
 * (verb and path template; `body: "*"`, `body: field` or none; query
 * parameters for the fields the path and body do not set), or, for a
 * method without a rule, by `POST /pkg.Service/Method` with the whole
 * request message as the JSON body. The mapped request goes upstream as
 * that gRPC call (`:path`, `content-type: application/grpc`,
 * `te: trailers`), its message made from the JSON body and the bindings
 * (pbjson.h, httprule.h); a request that is already gRPC passes untouched,
 * one that maps to nothing is answered 404.
 *
 * The answer: each message as JSON (a unary call: one object; a server
 * stream: one object a line, NDJSON — or server-sent events when Accept
 * asks for text/event-stream — as each message arrives; a client stream
 * reads one object a line of the request body, each sent as its line
 * completes); the gRPC
 * status mapped to HTTP by the standard table, an error's body being
 * google.rpc.Status as JSON ({"code", "message", "details"}). Limits are
 * loud: a message past max_message_bytes is 413, JSON past max_depth 400.
 *
 * Per exchange: a small state in the arena and one evbuffer (the request
 * JSON or the response frames being gathered), freed at completion.
 */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/filter.h"
#include "filters/grpcweb.h" /* its base64 */
#include "filters/httprule.h"
#include "filters/openapi.h"
#include "filters/pbdesc.h"
#include "filters/pbjson.h"
#include "filters/pbschema.h"
#include "filters/reflect.h"
#include "proxy/base/http.h"
#include "proxy/base/clock.h"
#include "proxy/base/json.h"
#include "proxy/base/log.h"

#define MAX_BINDINGS 32

typedef struct gj_rule {
    const tg_pbd_method_t *method;
    const char *verb;
    const char *path;            /* the template as written */
    tg_http_template_t *tmpl;
    const char *body;            /* "", "*" or a field path */
    const char *response_body;   /* "" or the response field that is the answer */
} gj_rule_t;

typedef struct gj_conf {
    char *descriptors;
    int reflection;              /* descriptors by gRPC server reflection from the route's cluster */
    uint64_t reflection_timeout_ms;
    uint8_t *raw;                /* reflection: the FileDescriptorSet in use, for the next reload */
    size_t raw_len;
    char *cluster;               /* ... and the cluster it came from */
    uint8_t *last_raw;           /* the previous config's (inherit): kept when reflection fails */
    size_t last_len;
    char *last_cluster;
    uint64_t deadline_ms;        /* grpc-timeout for unary calls that bring none: the route's timeout */
    char **services;
    size_t n_services;
    int always_print, preserve_names;
    int ignore_unknown;
    uint32_t max_depth;
    uint64_t max_message;
    tg_pbd_pool_t *pool;
    gj_rule_t *rules;
    size_t n_rules;
    tg_pbj_opts_t opts;
} gj_conf_t;

typedef struct gj_state {
    const tg_pbd_method_t *method;
    const char *body;            /* the rule's body: "", "*" or a field */
    const char *response_body;   /* the rule's response_body: "" or a field */
    tg_http_binding_t binds[MAX_BINDINGS];
    size_t n_binds;
    struct evbuffer *buf;        /* the request JSON, then the response frames, gathered */
    int head_code;               /* grpc-status of a trailers-only answer, else -1 */
    char head_msg[256];          /* ... and its grpc-message, decoded ... */
    const char *head_details;    /* ... and its details as a JSON array (arena), or NULL */
    unsigned grpc_answer : 1;    /* the response is gRPC: translated */
    unsigned failed : 1;         /* the answer became an error body */
    unsigned sent : 1;           /* a message went out (a stream's lines) */
    unsigned sse : 1;            /* a server stream as text/event-stream (Accept asked for it) */
} gj_state_t;

static const tg_key_t print_keys[] = {
    { "always_print_primitive_fields", TG_KEY_BOOL, "boolean", "`false`",
      "write fields at their default values (0, \"\", false, [], {}) too",
      TG_FIELD(gj_conf_t, always_print, TG_FIELD_INT) },
    { "preserve_proto_field_names", TG_KEY_BOOL, "boolean", "`false`",
      "field names as declared (`user_id`) instead of lowerCamelCase (`userId`); both are read",
      TG_FIELD(gj_conf_t, preserve_names, TG_FIELD_INT) },
};
static const tg_keyset_t print_keyset = TG_KEYSET("filter.grpc_json.print_options", "grpc_json print_options",
                                                  print_keys);

static const tg_key_t gj_keys[] = {
    { "descriptors", TG_KEY_STRING, "path", "— (this or `reflection`)",
      "a FileDescriptorSet of the services (`protoc --include_imports --descriptor_set_out=FILE`), relative to "
      "the config file",
      TG_FIELD(gj_conf_t, descriptors, TG_FIELD_STR) },
    { "reflection", TG_KEY_BOOL, "boolean", "`false`",
      "fetch the descriptors from the route's cluster by gRPC server reflection (`grpc.reflection.v1`, else "
      "`v1alpha`) at start-up, on each reload and under `tollgate -t`; a failed fetch keeps the last good ones "
      "(start-up and `-t` fail when there are none)",
      TG_FIELD(gj_conf_t, reflection, TG_FIELD_INT) },
    { "reflection_timeout", TG_KEY_DURATION, "duration 100ms–1m", "`5s`",
      "the whole fetch (every round, every endpoint tried); start-up and reloads wait for it",
      .min = 100, .max = 60000, TG_FIELD(gj_conf_t, reflection_timeout_ms, TG_FIELD_U64), .def = 5000 },
    { "services", TG_KEY_STRINGS, "list of full service names", "all in the descriptors",
      "the services offered as JSON" },
    { "print_options", TG_KEY_MAP, "`{ always_print_primitive_fields, preserve_proto_field_names }`", "none",
      "how answers are written", .sub = &print_keyset },
    { "ignore_unknown_fields", TG_KEY_BOOL, "boolean", "`false`",
      "skip JSON fields (and enum names) the message does not have instead of answering 400",
      TG_FIELD(gj_conf_t, ignore_unknown, TG_FIELD_INT) },
    { "max_depth", TG_KEY_INT, "integer 1–100", "`64`", "messages nested deeper are refused: a request with "
      "400, an answer ends with a `{\"code\": 13}` body", .min = 1, .max = 100, TG_FIELD(gj_conf_t, max_depth, TG_FIELD_U32), .def = 64 },
    { "max_message_bytes", TG_KEY_SIZE, "size 1KiB–64MiB", "`4MiB`",
      "the largest JSON request body (413 past it) and the largest message either way (an answer's ends it with "
      "a `{\"code\": 13}` body)", .min = 1024,
      .max = 64LL << 20, TG_FIELD(gj_conf_t, max_message, TG_FIELD_U64), .def = 4 << 20 },
};
static const tg_keyset_t gj_keyset = TG_KEYSET("filter.grpc_json", "grpc_json", gj_keys);

/* The descriptors and the rules made of them (build's), gone. */
static void drop_descriptors(gj_conf_t *c)
{
    for (size_t i = 0; i < c->n_rules; i++)
        tg_http_template_free(c->rules[i].tmpl);
    free(c->rules);
    c->rules = NULL;
    c->n_rules = 0;
    tg_pbd_pool_free(c->pool);
    c->pool = NULL;
}

static void gj_destroy(void *p)
{
    gj_conf_t *c = p;
    if (c == NULL)
        return;
    drop_descriptors(c);
    for (size_t i = 0; i < c->n_services; i++)
        free(c->services[i]);
    free(c->services);
    free(c->descriptors);
    free(c->raw);
    free(c->cluster);
    free(c->last_raw);
    free(c->last_cluster);
    free(c);
}

static int offered(const gj_conf_t *c, const char *service)
{
    if (c->n_services == 0)
        return 1;
    for (size_t i = 0; i < c->n_services; i++)
        if (strcmp(c->services[i], service) == 0)
            return 1;
    return 0;
}

/* The pool from a FileDescriptorSet (src names where it came from, for
 * errors), and each offered method's rules. 0, or -1 with why. */
static int build(gj_conf_t *c, const void *set, size_t len, const char *src, char *why, size_t cap)
{
    char err[256] = "out of memory";
    if ((c->pool = tg_pbd_pool_new(set, len, err, sizeof(err))) == NULL) {
        snprintf(why, cap, "descriptors %s: %s", src, err);
        return -1;
    }
    size_t count = 0, methods = 0;
    for (size_t i = 0; i < c->pool->n_services; i++) {
        const tg_pbd_service_t *sv = c->pool->services[i];
        if (!offered(c, sv->full_name))
            continue;
        for (size_t j = 0; j < sv->n_methods; j++)
            count += sv->methods[j].n_rules, methods++;
    }
    for (size_t i = 0; i < c->n_services; i++) {
        int found = 0;
        for (size_t j = 0; j < c->pool->n_services && !found; j++)
            found = strcmp(c->pool->services[j]->full_name, c->services[i]) == 0;
        if (!found) {
            snprintf(why, cap, "no service %s in %s", c->services[i], src);
            return -1;
        }
    }
    if (methods == 0) {
        snprintf(why, cap, "no method to offer in %s", src);
        return -1;
    }
    if ((c->rules = calloc(count ? count : 1, sizeof(*c->rules))) == NULL) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->pool->n_services; i++) {
        const tg_pbd_service_t *sv = c->pool->services[i];
        for (size_t j = 0; offered(c, sv->full_name) && j < sv->n_methods; j++) {
            const tg_pbd_method_t *m = &sv->methods[j];
            for (size_t r = 0; r < m->n_rules; r++) {
                gj_rule_t *g = &c->rules[c->n_rules];
                g->method = m;
                g->verb = m->rules[r].verb;
                g->path = m->rules[r].path;
                g->body = m->rules[r].body;
                g->response_body = m->rules[r].response_body;
                if (g->response_body[0] != '\0' && tg_pbd_field_named(m->output, g->response_body) == NULL) {
                    snprintf(why, cap, "%s: response_body '%s' is not a field of %s", m->path, g->response_body,
                             m->output->full_name);
                    return -1;
                }
                if ((g->tmpl = tg_http_template_parse(m->rules[r].path, err, sizeof(err))) == NULL) {
                    snprintf(why, cap, "%s: google.api.http path '%s': %s", m->path, m->rules[r].path, err);
                    return -1;
                }
                c->n_rules++;
                if (m->client_streaming && strcmp(g->body, "*") != 0) {
                    snprintf(why, cap, "%s: a client stream's rule needs body: \"*\" (NDJSON)", m->path);
                    return -1;
                }
            }
        }
    }
    return 0;
}

/* The descriptors file, relative to the config file. */
static int load_file(gj_conf_t *c, tg_node_t *node, const char *config_path)
{
    char full[4096];
    const char *slash = strrchr(config_path, '/');
    if (c->descriptors[0] != '/' && slash != NULL)
        snprintf(full, sizeof(full), "%.*s/%s", (int)(slash - config_path), config_path, c->descriptors);
    else
        snprintf(full, sizeof(full), "%s", c->descriptors);
    FILE *f = fopen(full, "rb");
    if (f == NULL) {
        tg_node_error(node, "grpc_json: cannot read descriptors %s", full);
        return -1;
    }
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap);
    while (buf != NULL && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    char why[512];
    int rc = buf != NULL ? build(c, buf, n, full, why, sizeof(why))
                         : (snprintf(why, sizeof(why), "descriptors %.400s: out of memory or larger than 64 MiB", full), -1);
    free(buf);
    if (rc < 0)
        tg_node_error(node, "grpc_json: %s", why);
    return rc;
}

static void *gj_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[sizeof(gj_keys) / sizeof(gj_keys[0])], p[sizeof(print_keys) / sizeof(print_keys[0])];
    gj_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "grpc_json", &gj_keyset, c, v);
    tg_node_t print = tg_node_get(v, &gj_keyset, "print_options"), services = tg_node_get(v, &gj_keyset, "services");
    if (tg_node_read_into(&print, "grpc_json print_options", &print_keyset, c, p) < 0)
        rc = -1;
    if (tg_node_present(&services) && tg_node_str_list(&services, "services", &c->services, &c->n_services) < 0)
        rc = -1;
    if (rc == 0 && (c->descriptors != NULL) == (c->reflection != 0)) {
        tg_node_error(node, "grpc_json: give either descriptors (a FileDescriptorSet file) or reflection: true");
        rc = -1;
    }
    if (rc == 0 && c->descriptors != NULL && load_file(c, node, config_path) < 0)
        rc = -1;
    if (rc < 0) {
        gj_destroy(c);
        return NULL;
    }
    c->opts = (tg_pbj_opts_t){ .always_print_primitive_fields = c->always_print != 0,
                               .preserve_proto_field_names = c->preserve_names != 0,
                               .ignore_unknown_fields = c->ignore_unknown != 0,
                               .max_depth = c->max_depth };
    return c;
}

/* ---- /-/openapi.json (openapi.h) ---- */

/* "/v1/{name=shelves/ *}/books/{book}" -> "/v1/{name}/books/{book}" (no space in a real template),
 * each variable's name (and pattern, "" when none) into vars (arena-less:
 * pointers into a copy the caller frees). */
static char *openapi_path(const char *tmpl, const char **vars, const char **pats, size_t *n, size_t max)
{
    char *out = malloc(strlen(tmpl) * 2 + 1), *o = out;
    if (out == NULL)
        return NULL;
    char *names = out + strlen(tmpl) + 1; /* room for the names and patterns, NUL-separated */
    *n = 0;
    for (const char *p = tmpl; *p;) {
        if (*p != '{') {
            *o++ = *p++;
            continue;
        }
        const char *end = strchr(p, '}'), *eq = memchr(p, '=', end ? (size_t)(end - p) : 0);
        if (end == NULL)
            break;
        const char *name_end = eq ? eq : end;
        size_t nl = (size_t)(name_end - p - 1);
        *o++ = '{';
        memcpy(o, p + 1, nl);
        o += nl;
        *o++ = '}';
        if (*n < max) {
            memcpy(names, p + 1, nl);
            names[nl] = '\0';
            vars[*n] = names;
            names += nl + 1;
            size_t pl = eq ? (size_t)(end - eq - 1) : 0;
            memcpy(names, eq ? eq + 1 : "", pl);
            names[pl] = '\0';
            pats[(*n)++] = names;
            names += pl + 1;
        }
        p = end + 1;
    }
    *o = '\0';
    return out;
}

/* The operation object of one mapping of method m. */
static int openapi_op(gj_conf_t *c, tg_openapi_t *d, struct evbuffer *op, const tg_pbd_method_t *m,
                      const char *body, const char *response_body, const char *const *vars, const char *const *pats,
                      size_t n_vars, unsigned index)
{
    int preserve = c->preserve_names, rc = 0;
    const char *dot = strrchr(m->path + 1, '/');
    evbuffer_add_printf(op, "{\"operationId\": ");
    char id[512];
    snprintf(id, sizeof(id), "%.*s_%s%s%.0u", dot ? (int)(dot - m->path - 1) : 0, m->path + 1, m->name,
             index ? "_" : "", index);
    for (char *q = id; *q; q++)
        if (*q == '.')
            *q = '_';
    tg_openapi_str(op, id);
    evbuffer_add_printf(op, ", \"summary\": ");
    tg_openapi_str(op, m->path);
    evbuffer_add_printf(op, ", \"tags\": [");
    char tag[256];
    snprintf(tag, sizeof(tag), "%.*s", dot ? (int)(dot - m->path - 1) : 0, m->path + 1);
    tg_openapi_str(op, tag);
    evbuffer_add_printf(op, "], \"parameters\": [");
    size_t np = 0;
    for (size_t i = 0; i < n_vars; i++, np++) {
        evbuffer_add_printf(op, "%s{\"name\": ", np ? ", " : "");
        tg_openapi_str(op, vars[i]);
        evbuffer_add_printf(op, ", \"in\": \"path\", \"required\": true, \"schema\": {\"type\": \"string\"}");
        if (pats[i][0]) {
            evbuffer_add_printf(op, ", \"description\": ");
            char desc[300];
            snprintf(desc, sizeof(desc), "matches %s", pats[i]);
            tg_openapi_str(op, desc);
        }
        evbuffer_add(op, "}", 1);
    }
    /* query parameters: the top-level fields no path variable and no body sets */
    for (size_t i = 0; strcmp(body, "*") != 0 && i < m->input->n_fields && rc == 0; i++) {
        const tg_pbd_field_t *f = &m->input->fields[i];
        int bound = strcmp(f->name, body) == 0 || strcmp(f->json_name, body) == 0;
        for (size_t k = 0; k < n_vars && !bound; k++)
            bound = strcmp(f->name, vars[k]) == 0 || strcmp(f->json_name, vars[k]) == 0;
        if (bound || (f->type == TG_PBT_MESSAGE && f->message->wkt == TG_WKT_NONE))
            continue;
        evbuffer_add_printf(op, "%s{\"name\": ", np++ ? ", " : "");
        tg_openapi_str(op, preserve ? f->name : f->json_name);
        evbuffer_add_printf(op, ", \"in\": \"query\", \"schema\": ");
        rc = tg_pbs_field(d, op, f, preserve);
        evbuffer_add(op, "}", 1);
    }
    evbuffer_add(op, "]", 1);
    if (body[0] != '\0') {
        const tg_pbd_field_t *bf = strcmp(body, "*") == 0 ? NULL : tg_pbd_field_named(m->input, body);
        evbuffer_add_printf(op, ", \"requestBody\": {\"required\": true, \"content\": {\"%s\": {\"schema\": ",
                            m->client_streaming ? "application/x-ndjson" : "application/json");
        rc |= bf ? tg_pbs_field(d, op, bf, preserve) : tg_pbs_message(d, op, m->input, preserve);
        evbuffer_add(op, "}}}", 3);
    }
    const tg_pbd_field_t *rf = response_body[0] ? tg_pbd_field_named(m->output, response_body) : NULL;
    evbuffer_add_printf(op, ", \"responses\": {\"200\": {\"description\": \"%s\", \"content\": {",
                        m->server_streaming ? "one message a line (NDJSON), or server-sent events" : "the answer");
    for (int k = 0; k < (m->server_streaming ? 2 : 1); k++) {
        evbuffer_add_printf(op, "%s\"%s\": {\"schema\": ", k ? ", " : "",
                            !m->server_streaming ? "application/json" : k ? "text/event-stream" : "application/x-ndjson");
        rc |= rf ? tg_pbs_field(d, op, rf, preserve) : tg_pbs_message(d, op, m->output, preserve);
        evbuffer_add(op, "}", 1);
    }
    evbuffer_add_printf(op, "}}, \"default\": {\"description\": \"an error: the gRPC status as google.rpc.Status\", "
                            "\"content\": {\"application/json\": {\"schema\": {\"$ref\": "
                            "\"#/components/schemas/google.rpc.Status\"}}}}}}");
    return rc;
}

static void gj_openapi(void *conf, struct tg_openapi *d, const tg_filter_place_t *at)
{
    (void)at;
    gj_conf_t *c = conf;
    if (c->pool == NULL)
        return;
    if (tg_openapi_claim(d, "google.rpc.Status") == 1) {
        static const char status[] =
            "{\"type\": \"object\", \"properties\": {\"code\": {\"type\": \"integer\", \"format\": \"int32\"}, "
            "\"message\": {\"type\": \"string\"}, \"details\": {\"type\": \"array\", \"items\": {\"type\": "
            "\"object\", \"properties\": {\"@type\": {\"type\": \"string\"}}, \"additionalProperties\": {}}}}}";
        tg_openapi_schema(d, "google.rpc.Status", status, sizeof(status) - 1);
    }
    static const char *const verbs[] = { "GET", "PUT", "POST", "DELETE", "PATCH" };
    struct evbuffer *op = evbuffer_new();
    if (op == NULL)
        return;
    for (size_t i = 0; i < c->n_rules; i++) {
        const gj_rule_t *g = &c->rules[i];
        int known = 0;
        for (size_t k = 0; k < 5 && !known; k++)
            known = strcmp(g->verb, verbs[k]) == 0;
        if (!known)
            continue; /* a custom verb: OpenAPI has no place for it */
        const char *vars[TG_HTTP_TEMPLATE_MAX_VARS], *pats[TG_HTTP_TEMPLATE_MAX_VARS];
        size_t n_vars = 0;
        char *path = openapi_path(g->path, vars, pats, &n_vars, TG_HTTP_TEMPLATE_MAX_VARS);
        unsigned index = 0;
        for (size_t k = 0; k < i; k++)
            index += c->rules[k].method == g->method;
        char method[8];
        for (size_t k = 0; k <= strlen(g->verb); k++)
            method[k] = (char)(g->verb[k] >= 'A' && g->verb[k] <= 'Z' ? g->verb[k] + 32 : g->verb[k]);
        evbuffer_drain(op, evbuffer_get_length(op));
        if (path != NULL && openapi_op(c, d, op, g->method, g->body, g->response_body, vars, pats, n_vars, index) == 0)
            tg_openapi_op(d, path, method, (const char *)evbuffer_pullup(op, -1), evbuffer_get_length(op));
        free(path);
    }
    /* the methods without a rule: POST /pkg.Service/Method */
    for (size_t i = 0; i < c->pool->n_services; i++) {
        const tg_pbd_service_t *sv = c->pool->services[i];
        for (size_t j = 0; offered(c, sv->full_name) && j < sv->n_methods; j++) {
            const tg_pbd_method_t *m = &sv->methods[j];
            if (m->n_rules > 0)
                continue;
            evbuffer_drain(op, evbuffer_get_length(op));
            if (openapi_op(c, d, op, m, "*", "", NULL, NULL, 0, 0) == 0)
                tg_openapi_op(d, m->path, "post", (const char *)evbuffer_pullup(op, -1), evbuffer_get_length(op));
        }
    }
    evbuffer_free(op);
}

/* ---- descriptors by gRPC server reflection (reflect.h) ---- */

typedef struct answer {
    int ok;                      /* 200 with grpc-status 0 */
    int unimplemented;           /* 404, or grpc-status 12: the server has no such version */
    char why[256];
    uint8_t *body;
    size_t len;
} answer_t;

static void answered(void *arg, const tg_filter_call_result_t *r)
{
    answer_t *a = arg;
    if (r->status == 0) {
        snprintf(a->why, sizeof(a->why), "%s", r->error);
        return;
    }
    const tg_header_t *gs = tg_headers_get(r->trailers, "grpc-status");
    const tg_header_t *gm = tg_headers_get(r->trailers, "grpc-message");
    if (gs == NULL) { /* trailers-only */
        gs = tg_headers_get(r->headers, "grpc-status");
        gm = tg_headers_get(r->headers, "grpc-message");
    }
    int code = gs != NULL ? atoi(gs->value) : -1;
    a->unimplemented = r->status == 404 || code == 12;
    if (r->status != 200 || code != 0) {
        snprintf(a->why, sizeof(a->why), "HTTP %d, grpc-status %s%s%.120s", r->status, gs ? gs->value : "(none)",
                 gm ? ": " : "", gm ? gm->value : "");
        return;
    }
    if ((a->body = malloc(r->body_len ? r->body_len : 1)) == NULL) {
        snprintf(a->why, sizeof(a->why), "out of memory");
        return;
    }
    memcpy(a->body, r->body, r->body_len);
    a->len = r->body_len;
    a->ok = 1;
}

/* The rounds of one reflection version (path) until the set is whole. 0
 * with *set; -1 with why (*unimplemented: the server lacks the version). */
static int reflect_rounds(const gj_conf_t *c, const tg_filter_prep_t *p, const char *cluster, const char *path,
                          uint64_t deadline, uint8_t **set, size_t *set_len, int *unimplemented, char *why, size_t cap)
{
    static const char *const hdrs[] = { "content-type", "application/grpc" };
    tg_reflect_t r;
    if (tg_reflect_init(&r, (const char *const *)c->services, c->n_services) < 0) {
        tg_reflect_free(&r);
        snprintf(why, cap, "out of memory");
        return -1;
    }
    int rc;
    uint8_t *body;
    size_t len;
    while ((rc = tg_reflect_next(&r, &body, &len, why, cap)) > 0) {
        uint64_t now = tg_clock_ms();
        tg_filter_call_t call = { .cluster = cluster, .method = "POST", .path = path, .headers = hdrs, .n_headers = 1,
                                  .body = (const char *)body, .body_len = len, .grpc = 1,
                                  .timeout_ms = deadline > now ? deadline - now : 1,
                                  .max_body = TG_REFLECT_MAX_BYTES + (1u << 20) };
        answer_t a = { 0 };
        if (p->call(p, &call, answered, &a) < 0)
            snprintf(a.why, sizeof(a.why), "out of memory");
        free(body);
        *unimplemented = a.unimplemented && r.rounds == 1;
        rc = a.ok ? tg_reflect_answer(&r, a.body, a.len, why, cap) : (snprintf(why, cap, "%s", a.why), -1);
        free(a.body);
        if (rc < 0)
            break;
    }
    if (rc == 0 && tg_reflect_set(&r, set, set_len) < 0) {
        snprintf(why, cap, "out of memory");
        rc = -1;
    }
    tg_reflect_free(&r);
    return rc;
}

static int gj_prepare(void *conf, const tg_filter_prep_t *p, const tg_filter_place_t *at, tg_errors_t *errs)
{
    gj_conf_t *c = conf;
    c->deadline_ms = at != NULL ? at->timeout_ms : 0;
    if (!c->reflection)
        return 0;
    if (at == NULL || at->cluster == NULL) {
        tg_errors_add(errs, "%s%s%sgrpc_json: reflection needs the route's one cluster (not in the global filters, "
                      "not on a route with clusters:)", at ? "route '" : "", at ? at->route : "", at ? "': " : "");
        return -1;
    }
    const char *route = at->route;
    char why[512] = "", src[300];
    uint8_t *set = NULL;
    size_t len = 0;
    int unimplemented = 0;
    uint64_t deadline = tg_clock_ms() + c->reflection_timeout_ms;
    const char *version = "v1";
    int rc = reflect_rounds(c, p, at->cluster, TG_REFLECT_V1, deadline, &set, &len, &unimplemented, why, sizeof(why));
    if (rc < 0 && unimplemented) {
        version = "v1alpha";
        rc = reflect_rounds(c, p, at->cluster, TG_REFLECT_V1ALPHA, deadline, &set, &len, &unimplemented, why,
                            sizeof(why));
        if (rc < 0 && unimplemented) {
            char tmp[sizeof(why)];
            snprintf(tmp, sizeof(tmp), "the service offers no reflection (grpc.reflection.v1 nor v1alpha): %.400s", why);
            memcpy(why, tmp, sizeof(why));
        }
    }
    snprintf(src, sizeof(src), "from cluster '%s' by reflection (%s)", at->cluster, version);
    char bwhy[512];
    if (rc == 0 && build(c, set, len, src, bwhy, sizeof(bwhy)) < 0) {
        snprintf(why, sizeof(why), "%s", bwhy);
        rc = -1;
    }
    if (rc == 0) {
        c->raw = set;
        c->raw_len = len;
        if ((c->cluster = strdup(at->cluster)) == NULL) {
            tg_errors_add(errs, "route '%s': grpc_json: out of memory", route);
            return -1;
        }
        tg_info("route '%s': grpc_json: %zu service(s), %zu bytes of descriptors %s", route, c->pool->n_services, len,
                src);
        return 0;
    }
    free(set);
    /* the last good set, if the previous config fetched one from this cluster */
    drop_descriptors(c);
    if (c->last_raw != NULL && strcmp(c->last_cluster, at->cluster) == 0 &&
        build(c, c->last_raw, c->last_len, "kept from the last fetch", bwhy, sizeof(bwhy)) == 0) {
        tg_warn("route '%s': grpc_json: reflection from cluster '%s' failed: %s; the last good descriptors stay",
                route, at->cluster, why);
        c->raw = c->last_raw;
        c->raw_len = c->last_len;
        c->cluster = c->last_cluster;
        c->last_raw = NULL;
        c->last_cluster = NULL;
        return 0;
    }
    tg_errors_add(errs, "route '%s': grpc_json: no descriptors: reflection from cluster '%s' failed: %s", route,
                  at->cluster, why);
    return -1;
}

/* A reload: the previous config's descriptors, for when reflection fails. */
static void gj_inherit(void *new_conf, void *old_conf)
{
    gj_conf_t *n = new_conf, *o = old_conf;
    if (!n->reflection || o->raw == NULL || n->last_raw != NULL)
        return;
    uint8_t *copy = malloc(o->raw_len ? o->raw_len : 1);
    char *cluster = strdup(o->cluster);
    if (copy == NULL || cluster == NULL) {
        free(copy);
        free(cluster);
        return;
    }
    memcpy(copy, o->raw, o->raw_len);
    n->last_raw = copy;
    n->last_len = o->raw_len;
    n->last_cluster = cluster;
}

/* ---- errors: google.rpc.Status as JSON ---- */

/* gRPC status -> HTTP status (google.rpc.Code's documented mapping). */
static int http_status_of(int code)
{
    static const int map[17] = { 200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401 };
    return code >= 0 && code <= 16 ? map[code] : 500;
}

static void release(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* Answers {"code", "message", "details": []} with the mapped status (and
 * says the status and message for a body hook whose reply comes after the
 * response started: the gateway's own form then). */
static tg_filter_status_t json_error(tg_filter_exchange_t *fx, int http, int code, const char *msg)
{
    fx->reply_status = http;
    fx->reply_message = tg_arena_strndup(fx->arena, msg, strlen(msg));
    char esc[1024];
    tg_json_escape(esc, sizeof(esc), msg);
    char *body = malloc(strlen(esc) + 64);
    tg_response_t *r = tg_arena_alloc(fx->arena, sizeof(*r));
    if (body == NULL || r == NULL) {
        free(body);
        fx->reply_status = 500;
        fx->reply_message = "out of memory";
        return TG_FILTER_REPLY;
    }
    int n = sprintf(body, "{\"code\":%d,\"message\":\"%s\",\"details\":[]}\n", code, esc);
    memset(r, 0, sizeof(*r));
    r->status = http;
    r->version = 11;
    r->body = TG_BODY_LENGTH;
    r->content_length = (uint64_t)n;
    tg_headers_add(&r->headers, fx->arena, "content-type", 12, "application/json", 16);
    fx->reply_response = r;
    fx->reply_body = body;
    fx->reply_body_len = (size_t)n;
    fx->reply_release = release;
    fx->reply_release_arg = NULL;
    return TG_FILTER_REPLY;
}

/* ---- the request ---- */

static const tg_pbd_method_t *auto_method(const gj_conf_t *c, const char *path, size_t len)
{
    /* "/pkg.Service/Method" */
    if (len < 4 || path[0] != '/')
        return NULL;
    const char *slash = memchr(path + 1, '/', len - 1);
    if (slash == NULL || slash == path + 1 || slash == path + len - 1)
        return NULL;
    char service[512], method[256];
    size_t sl = (size_t)(slash - path - 1), ml = len - (size_t)(slash - path) - 1;
    if (sl >= sizeof(service) || ml >= sizeof(method))
        return NULL;
    memcpy(service, path + 1, sl);
    service[sl] = '\0';
    memcpy(method, slash + 1, ml);
    method[ml] = '\0';
    if (!offered(c, service))
        return NULL;
    const tg_pbd_method_t *m = tg_pbd_method(c->pool, service, method);
    return m != NULL && m->n_rules == 0 ? m : NULL;
}

static tg_filter_status_t gj_on_request(void *conf, tg_filter_exchange_t *fx, size_t index)
{
    gj_conf_t *c = conf;
    tg_request_t *req = fx->req;
    const tg_header_t *ct = tg_headers_get(&req->headers, "content-type");
    if (ct != NULL && strncasecmp(ct->value, "application/grpc", 16) == 0)
        return TG_FILTER_CONTINUE; /* already gRPC: as it is */
    gj_state_t *st = tg_arena_alloc(fx->arena, sizeof(*st));
    if (st == NULL)
        return json_error(fx, 500, 13, "out of memory");
    memset(st, 0, sizeof(*st));
    const char *path = req->target;
    size_t plen = req->path_len;
    for (size_t i = 0; i < c->n_rules && st->method == NULL; i++) {
        const gj_rule_t *g = &c->rules[i];
        if (strcmp(g->verb, req->method) != 0)
            continue;
        int n = tg_http_template_match(g->tmpl, path, plen, fx->arena, st->binds, MAX_BINDINGS);
        if (n >= 0) {
            st->method = g->method;
            st->body = g->body;
            st->response_body = g->response_body;
            st->n_binds = (size_t)n;
        }
    }
    if (st->method == NULL && strcmp(req->method, "POST") == 0 && (st->method = auto_method(c, path, plen)) != NULL) {
        st->body = "*";
        st->response_body = "";
    }
    if (st->method == NULL)
        return json_error(fx, 404, 5, "no gRPC method is mapped to this method and path");
    /* query parameters for the fields not set by the path or the body */
    if (st->body[0] != '*' && req->target[plen] == '?') {
        const char *q = req->target + plen + 1;
        int n = tg_http_query_bindings(q, strlen(q), fx->arena, st->binds + st->n_binds, MAX_BINDINGS - st->n_binds);
        if (n < 0)
            return json_error(fx, 400, 3, "a query parameter is not UTF-8 or badly escaped");
        st->n_binds += (size_t)n;
    }
    if ((st->buf = evbuffer_new()) == NULL)
        return json_error(fx, 500, 13, "out of memory");
    const tg_header_t *accept = tg_headers_get(&req->headers, "accept");
    st->sse = st->method->server_streaming && accept != NULL &&
              tg_header_has_token(accept->value, accept->value_len, "text/event-stream");
    fx->state[index] = st;
    req->target = st->method->path;
    req->path_len = strlen(st->method->path);
    req->method = "POST";
    tg_headers_set(&req->headers, fx->arena, "content-type", "application/grpc");
    tg_headers_remove(&req->headers, "content-length");
    tg_headers_remove(&req->headers, "accept-encoding"); /* the answer is rewritten: identity from upstream */
    fx->want_trailers = 1;
    /* the call's deadline, so that the service stops when the gateway
     * stops waiting: a unary call's is the route's timeout (streams run
     * as long as they flow) */
    if (c->deadline_ms > 0 && !st->method->client_streaming && !st->method->server_streaming &&
        tg_headers_get(&req->headers, "grpc-timeout") == NULL) {
        unsigned long long ms = c->deadline_ms;
        if (ms <= 99999999ull)
            tg_filter_header_printf(&req->headers, fx->arena, "grpc-timeout", "%llum", ms);
        else
            tg_filter_header_printf(&req->headers, fx->arena, "grpc-timeout", "%lluS", ms / 1000 > 99999999ull ? 99999999ull : ms / 1000);
    }
    if (req->body == TG_BODY_NONE && st->method->client_streaming) {
        /* a client stream without a body: no message at all */
    } else if (req->body == TG_BODY_NONE) { /* no body: the message is the bindings alone, made now */
        tg_pb_writer_t w = { 0 };
        char why[256];
        tg_pb_reserve_grpc_prefix(&w);
        for (size_t i = 0; i < st->n_binds; i++)
            if (tg_pbj_set(c->pool, st->method->input, st->binds[i].field, st->binds[i].value, st->binds[i].len,
                           &c->opts, &w, why, sizeof(why)) < 0) {
                tg_pb_writer_free(&w);
                return json_error(fx, 400, 3, why);
            }
        if (tg_pb_grpc_frame(&w) < 0) {
            tg_pb_writer_free(&w);
            return json_error(fx, 500, 13, "out of memory");
        }
        void *copy = tg_arena_alloc(fx->arena, w.len);
        if (copy == NULL) {
            tg_pb_writer_free(&w);
            return json_error(fx, 500, 13, "out of memory");
        }
        memcpy(copy, w.p, w.len);
        fx->req_body = copy;
        fx->req_body_len = w.len;
        tg_pb_writer_free(&w);
    } else {
        req->body = TG_BODY_CHUNKED; /* another length than the client's */
        req->content_length = 0;
    }
    return TG_FILTER_CONTINUE;
}

/* A client stream's messages: one JSON object a line (NDJSON), each sent
 * as its line completes; the last line needs no newline. The bindings of
 * the path go into every message. */
static tg_filter_status_t ndjson_in(gj_conf_t *c, tg_filter_exchange_t *fx, gj_state_t *st, struct evbuffer *piece,
                                    int fin)
{
    char why[256];
    for (;;) {
        size_t len = evbuffer_get_length(st->buf);
        struct evbuffer_ptr nl = evbuffer_search(st->buf, "\n", 1, NULL);
        if (nl.pos < 0 && !(fin && len > 0))
            return TG_FILTER_CONTINUE;
        size_t line = nl.pos < 0 ? len : (size_t)nl.pos;
        const char *text = (const char *)evbuffer_pullup(st->buf, (ev_ssize_t)line);
        size_t tl = line;
        while (tl > 0 && (text[tl - 1] == '\r' || text[tl - 1] == ' ' || text[tl - 1] == '\t'))
            tl--;
        size_t skip = 0;
        while (skip < tl && (text[skip] == ' ' || text[skip] == '\t'))
            skip++;
        int rc = 0;
        if (tl > skip) { /* blank lines carry nothing */
            tg_pb_writer_t w = { 0 };
            tg_pb_reserve_grpc_prefix(&w);
            rc = tg_pbj_from_json(c->pool, st->method->input, text + skip, tl - skip, &c->opts, &w, why, sizeof(why));
            for (size_t i = 0; rc == 0 && i < st->n_binds; i++)
                rc = tg_pbj_set(c->pool, st->method->input, st->binds[i].field, st->binds[i].value, st->binds[i].len,
                                &c->opts, &w, why, sizeof(why));
            if (rc == 0 && tg_pb_grpc_frame(&w) < 0) {
                snprintf(why, sizeof(why), "out of memory");
                rc = -1;
            }
            if (rc == 0)
                evbuffer_add(piece, w.p, w.len);
            tg_pb_writer_free(&w);
        }
        evbuffer_drain(st->buf, nl.pos < 0 ? len : line + 1);
        if (rc < 0)
            return json_error(fx, 400, 3, why); /* INVALID_ARGUMENT */
    }
}

/* The JSON body, gathered; at its end the message (body and bindings). */
static tg_filter_status_t gj_on_request_body(void *conf, tg_filter_exchange_t *fx, size_t index,
                                             struct evbuffer *piece, int fin)
{
    gj_conf_t *c = conf;
    gj_state_t *st = fx->state[index];
    if (st == NULL)
        return TG_FILTER_CONTINUE;
    if (evbuffer_get_length(st->buf) + evbuffer_get_length(piece) > c->max_message)
        return json_error(fx, 413, 8, "JSON body larger than max_message_bytes"); /* RESOURCE_EXHAUSTED */
    evbuffer_add_buffer(st->buf, piece);
    if (st->method->client_streaming)
        return ndjson_in(c, fx, st, piece, fin);
    if (!fin)
        return TG_FILTER_CONTINUE;
    size_t len = evbuffer_get_length(st->buf);
    const char *json = len ? (const char *)evbuffer_pullup(st->buf, -1) : "{}";
    tg_pb_writer_t w = { 0 };
    char why[256];
    int rc = 0;
    tg_pb_reserve_grpc_prefix(&w);
    if (st->body[0] == '*') {
        rc = tg_pbj_from_json(c->pool, st->method->input, json, len ? len : 2, &c->opts, &w, why, sizeof(why));
    } else if (st->body[0] != '\0') { /* body: field — the JSON is that field's value */
        const tg_pbd_field_t *f = tg_pbd_field_named(st->method->input, st->body);
        if (f == NULL || f->type != TG_PBT_MESSAGE || f->repeated) {
            snprintf(why, sizeof(why), "body field %s is not a message field of %s", st->body,
                     st->method->input->full_name);
            rc = -1;
        } else {
            size_t mark = tg_pb_begin(&w, f->number);
            rc = tg_pbj_from_json(c->pool, f->message, json, len ? len : 2, &c->opts, &w, why, sizeof(why));
            tg_pb_end(&w, mark);
        }
    } else if (len > 0) {
        snprintf(why, sizeof(why), "this method takes no body");
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < st->n_binds; i++) /* appended: they win over the body */
        rc = tg_pbj_set(c->pool, st->method->input, st->binds[i].field, st->binds[i].value, st->binds[i].len,
                        &c->opts, &w, why, sizeof(why));
    evbuffer_drain(st->buf, len);
    if (rc == 0 && tg_pb_grpc_frame(&w) < 0) {
        snprintf(why, sizeof(why), "out of memory");
        rc = -1;
    }
    if (rc < 0) {
        tg_pb_writer_free(&w);
        return json_error(fx, 400, 3, why); /* INVALID_ARGUMENT */
    }
    evbuffer_add(piece, w.p, w.len);
    tg_pb_writer_free(&w);
    return TG_FILTER_CONTINUE;
}

/* ---- the answer ---- */

/* grpc-message is percent-encoded (gRPC over HTTP/2): decoded into out. */
static void grpc_message(const tg_header_t *h, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; h != NULL && i < h->value_len && o + 1 < cap; i++) {
        int hi, lo;
        if (h->value[i] == '%' && i + 2 < h->value_len && (hi = tg_hex_value(h->value[i + 1])) >= 0 &&
            (lo = tg_hex_value(h->value[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = h->value[i];
        }
    }
    out[o] = '\0';
    if (!tg_utf8_ok(out, o))
        snprintf(out, cap, "(a message that is not UTF-8)");
}

/* grpc-status-details-bin (base64 of a google.rpc.Status: details = 3,
 * each an Any) as a JSON array in the arena: each detail as the Any's
 * JSON when the descriptors know its type, else {"@type": URL}. NULL
 * without the header. */
static const char *details_json(const gj_conf_t *c, tg_arena_t *a, const tg_header_t *h)
{
    if (h == NULL || h->value_len == 0 || h->value_len > 64 * 1024)
        return NULL;
    uint8_t *bin = tg_arena_alloc(a, h->value_len);
    char carry[4];
    unsigned nc = 0;
    long n = bin ? tg_grpcweb_b64_decode(h->value, h->value_len, bin, carry, &nc) : -1;
    if (n >= 0 && nc >= 2) { /* unpadded (gRPC sends -bin values so) */
        static const char pad[] = "==";
        long k = tg_grpcweb_b64_decode(pad, 4 - nc, bin + n, carry, &nc);
        n = k < 0 ? -1 : n + k;
    }
    if (n < 0)
        return NULL;
    const tg_pbd_message_t *any = tg_pbd_message(c->pool, "google.protobuf.Any");
    struct evbuffer *out = evbuffer_new();
    if (out == NULL)
        return NULL;
    evbuffer_add(out, "[", 1);
    tg_pb_reader_t r = tg_pb_reader(bin, (size_t)n);
    tg_pb_field_t f;
    int first = 1;
    while (tg_pb_next(&r, &f) > 0) {
        if (f.num != 3 || f.wire != TG_PB_LEN)
            continue;
        if (!first)
            evbuffer_add(out, ",", 1);
        first = 0;
        char why[128];
        struct evbuffer *one = evbuffer_new();
        if (one != NULL && any != NULL && tg_pbj_to_json(c->pool, any, f.data, f.len, &c->opts, one, why, sizeof(why)) == 0) {
            evbuffer_add_buffer(out, one);
        } else { /* a type the descriptors do not know: its name */
            tg_pb_reader_t ar = tg_pb_reader(f.data, f.len);
            tg_pb_field_t u;
            char url[512] = "", esc[1024];
            while (tg_pb_next(&ar, &u) > 0)
                if (u.num == 1 && u.wire == TG_PB_LEN && u.len < sizeof(url) && tg_utf8_ok(u.data, u.len))
                    snprintf(url, sizeof(url), "%.*s", (int)u.len, (const char *)u.data);
            tg_json_escape(esc, sizeof(esc), url);
            evbuffer_add_printf(out, "{\"@type\":\"%s\"}", esc);
        }
        if (one != NULL)
            evbuffer_free(one);
    }
    evbuffer_add(out, "]", 1);
    size_t len = evbuffer_get_length(out);
    char *text = tg_arena_alloc(a, len + 1);
    if (text != NULL) {
        evbuffer_copyout(out, text, len);
        text[len] = '\0';
    }
    evbuffer_free(out);
    return text;
}

static int status_code(const tg_header_t *h)
{
    int code = 0;
    for (size_t i = 0; h != NULL && i < h->value_len && i < 3; i++)
        code = code * 10 + (h->value[i] - '0');
    return h == NULL ? -1 : code;
}

static void gj_on_response(void *conf, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp)
{
    (void)conf;
    gj_state_t *st = fx->state[index];
    if (st == NULL || fx->reply_by != 0)
        return; /* not ours, or the gateway's own answer */
    const tg_header_t *ct = tg_headers_get(&resp->headers, "content-type");
    if (ct == NULL || strncasecmp(ct->value, "application/grpc", 16) != 0)
        return; /* not a gRPC answer (an error page of a proxy on the way): as it is */
    st->grpc_answer = 1;
    const tg_header_t *gs = tg_headers_get(&resp->headers, "grpc-status");
    st->head_code = gs ? status_code(gs) : -1;
    if (gs != NULL) { /* trailers-only: the status is here, the body will say it */
        grpc_message(tg_headers_get(&resp->headers, "grpc-message"), st->head_msg, sizeof(st->head_msg));
        st->head_details = details_json(conf, fx->arena, tg_headers_get(&resp->headers, "grpc-status-details-bin"));
        resp->status = http_status_of(st->head_code);
    }
    tg_headers_set(&resp->headers, fx->arena, "content-type",
                   st->sse ? "text/event-stream" : st->method->server_streaming ? "application/x-ndjson" : "application/json");
    if (st->sse)
        tg_headers_set(&resp->headers, fx->arena, "cache-control", "no-cache");
    static const char *const grpc_only[] = { "content-length", "grpc-encoding", "grpc-accept-encoding",
                                             "grpc-status", "grpc-message", "grpc-status-details-bin" };
    for (size_t i = 0; i < sizeof(grpc_only) / sizeof(grpc_only[0]); i++)
        tg_headers_remove(&resp->headers, grpc_only[i]);
    resp->body = TG_BODY_CHUNKED;
    resp->content_length = 0;
}

/* Whole gRPC messages out of buf as JSON (a line each when streaming). */
static int messages_out(gj_conf_t *c, gj_state_t *st, struct evbuffer *out, char *why, size_t cap)
{
    for (;;) {
        size_t have = evbuffer_get_length(st->buf);
        uint8_t head[5];
        if (have < 5)
            return 0;
        evbuffer_copyout(st->buf, head, 5);
        uint64_t n = (uint64_t)head[1] << 24 | (uint64_t)head[2] << 16 | (uint64_t)head[3] << 8 | head[4];
        if (head[0] != 0) {
            snprintf(why, cap, "the upstream sent a compressed message");
            return -1;
        }
        if (n > c->max_message) {
            snprintf(why, cap, "the upstream sent a message larger than max_message_bytes");
            return -1;
        }
        if (have < 5 + n)
            return 0;
        const uint8_t *msg = evbuffer_pullup(st->buf, (ev_ssize_t)(5 + n)) + 5;
        if (!st->method->server_streaming && st->sent) {
            snprintf(why, cap, "the upstream sent more than one message for a unary call");
            return -1;
        }
        if (st->sse)
            evbuffer_add(out, "data: ", 6); /* JSON holds no newline: one data line */
        int rc = st->response_body[0] != '\0'
                     ? tg_pbj_field_to_json(c->pool, st->method->output, st->response_body, msg, (size_t)n, &c->opts,
                                            out, why, cap)
                     : tg_pbj_to_json(c->pool, st->method->output, msg, (size_t)n, &c->opts, out, why, cap);
        if (rc < 0)
            return -1;
        if (st->sse)
            evbuffer_add(out, "\n\n", 2);
        else if (st->method->server_streaming)
            evbuffer_add(out, "\n", 1);
        st->sent = 1;
        evbuffer_drain(st->buf, (size_t)(5 + n));
    }
}

static void error_body(struct evbuffer *out, int code, const char *msg, int sse, const char *details)
{
    char esc[1024];
    tg_json_escape(esc, sizeof(esc), msg);
    evbuffer_add_printf(out, "%s{\"code\":%d,\"message\":\"%s\",\"details\":%s}\n%s", sse ? "event: error\ndata: " : "",
                        code, esc, details ? details : "[]", sse ? "\n" : "");
}

/* Each message as it completes; at the end the call's status: an error
 * as google.rpc.Status JSON (after a stream's lines, as its last line; a
 * unary call's error comes trailers-only from gRPC servers, so its HTTP
 * status says it too). */
static void gj_on_response_body(void *conf, tg_filter_exchange_t *fx, size_t index, struct evbuffer *piece, int fin)
{
    gj_conf_t *c = conf;
    gj_state_t *st = fx->state[index];
    if (st == NULL || !st->grpc_answer)
        return;
    if (st->failed) {
        evbuffer_drain(piece, evbuffer_get_length(piece));
        return;
    }
    evbuffer_add_buffer(st->buf, piece);
    char why[256];
    if (messages_out(c, st, piece, why, sizeof(why)) < 0) {
        st->failed = 1;
        evbuffer_drain(piece, evbuffer_get_length(piece));
        evbuffer_drain(st->buf, evbuffer_get_length(st->buf));
        error_body(piece, 13, why, st->sse, NULL); /* the head is out: the error is the body */
        return;
    }
    if (!fin)
        return;
    tg_headers_t *tr = fx->resp_trailers;
    const tg_header_t *gs = tr ? tg_headers_get(tr, "grpc-status") : NULL;
    int code = gs ? status_code(gs) : st->head_code;
    char msg[512];
    const char *details = st->head_details;
    if (gs != NULL) {
        grpc_message(tg_headers_get(tr, "grpc-message"), msg, sizeof(msg));
        details = details_json(c, fx->arena, tg_headers_get(tr, "grpc-status-details-bin"));
    } else {
        memcpy(msg, st->head_msg, sizeof(st->head_msg));
    }
    if (evbuffer_get_length(st->buf) > 0)
        error_body(piece, 13, "the upstream's last message is cut short", st->sse, NULL);
    else if (code < 0)
        error_body(piece, 13, "the upstream ended the call without a status", st->sse, NULL);
    else if (code > 0)
        error_body(piece, code, msg, st->sse, details);
    else if (!st->sent && !st->method->server_streaming)
        error_body(piece, 13, "the upstream answered OK without a message", st->sse, NULL);
    if (tr != NULL)
        tr->n = 0; /* the status went into the body: no HTTP trailers for a JSON client */
}

/* No answer from the service (connect failure, every endpoint down,
 * timeout): the gateway's status, the body a google.rpc.Status as every
 * other error of a JSON call (UNAVAILABLE, or DEADLINE_EXCEEDED on 504). */
static tg_filter_status_t gj_on_no_answer(void *conf, tg_filter_exchange_t *fx, size_t index, int status)
{
    (void)conf;
    if (fx->state[index] == NULL)
        return TG_FILTER_CONTINUE; /* not a JSON call */
    return status == 504 ? json_error(fx, 504, 4, "the service did not answer in time")
                         : json_error(fx, status, 14, "the service is unavailable");
}

static void gj_on_complete(void *conf, tg_filter_exchange_t *fx, size_t index, const tg_filter_record_t *rec)
{
    (void)conf;
    (void)rec;
    gj_state_t *st = fx->state[index];
    if (st != NULL && st->buf != NULL) {
        evbuffer_free(st->buf);
        st->buf = NULL;
    }
}

/* The whole JSON body (up to max_message_bytes) is read before the
 * request goes: the call's message is made once, and kept to be sent
 * again when an HTTP/2 upstream refuses the stream (REFUSED_STREAM,
 * GOAWAY) as a native call's body is. */
static size_t gj_body_prefix(const void *conf)
{
    const gj_conf_t *c = conf;
    return (size_t)c->max_message;
}

const tg_filter_type_t tg_filter_grpc_json = {
    .name = "grpc_json",
    .doc = "REST and JSON calls to gRPC services: google.api.http rules or POST /pkg.Service/Method, messages as "
           "proto3 JSON, server streams as NDJSON",
    .keys = &gj_keyset,
    .create = gj_create,
    .prepare = gj_prepare,
    .openapi = gj_openapi,
    .inherit = gj_inherit,
    .destroy = gj_destroy,
    .body_prefix = gj_body_prefix,
    .on_request = gj_on_request,
    .on_request_body = gj_on_request_body,
    .on_response = gj_on_response,
    .on_response_body = gj_on_response_body,
    .on_no_answer = gj_on_no_answer,
    .on_complete = gj_on_complete,
};
