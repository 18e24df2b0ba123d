/*
 * filters/headers.c — `headers` and `cors`.
 *
 * `headers` values may hold %{variable} references, split at load time
 * into literal and variable segments so that a request only concatenates.
 * `cors` answers preflight requests itself (204) and adds the
 * Access-Control-* fields to the responses of allowed origins.
 */
#include "filters/headers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- headers ---- */

typedef enum { V_LITERAL, V_CLIENT, V_IDENTITY, V_ROUTE, V_REQUEST_ID, V_METHOD, V_PATH } var_t;

typedef struct segment {
    var_t var;
    char *text;                 /* V_LITERAL */
} segment_t;

typedef struct rule_value {
    char *name;
    segment_t *seg;
    size_t n;
} rule_value_t;

typedef struct rules {
    rule_value_t *add, *set;
    size_t n_add, n_set;
    char **remove;
    size_t n_remove;
} rules_t;

typedef struct headers_conf {
    rules_t request, response;
} headers_conf_t;

static void free_values(rule_value_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < v[i].n; j++)
            free(v[i].seg[j].text);
        free(v[i].seg);
        free(v[i].name);
    }
    free(v);
}

static void free_rules(rules_t *r)
{
    free_values(r->add, r->n_add);
    free_values(r->set, r->n_set);
    for (size_t i = 0; i < r->n_remove; i++)
        free(r->remove[i]);
    free(r->remove);
}

static void headers_destroy(void *p)
{
    headers_conf_t *c = p;
    if (c == NULL)
        return;
    free_rules(&c->request);
    free_rules(&c->response);
    free(c);
}

/* Appends a segment; text (len bytes) is copied for V_LITERAL only. */
static int add_segment(rule_value_t *v, var_t var, const char *text, size_t len)
{
    segment_t *ns = realloc(v->seg, (v->n + 1) * sizeof(*ns));
    if (ns == NULL)
        return -1;
    v->seg = ns;
    ns[v->n].var = var;
    ns[v->n].text = NULL;
    if (var == V_LITERAL && text != NULL && (ns[v->n].text = strndup(text, len)) == NULL)
        return -1;
    v->n++;
    return 0;
}

static int compile_value(tg_node_t *n, const char *value, rule_value_t *v)
{
    static const struct { const char *name; var_t var; } vars[] = {
        { "client_address", V_CLIENT }, { "identity", V_IDENTITY }, { "route", V_ROUTE },
        { "request_id", V_REQUEST_ID }, { "method", V_METHOD }, { "path", V_PATH },
    };
    const char *p = value;
    while (*p) {
        const char *open = strstr(p, "%{");
        if (open == NULL)
            return add_segment(v, V_LITERAL, p, strlen(p));
        if (open > p && add_segment(v, V_LITERAL, p, (size_t)(open - p)) < 0)
            return -1;
        const char *close = strchr(open, '}');
        size_t i = 0, len = close ? (size_t)(close - open - 2) : 0;
        for (; close && i < sizeof(vars) / sizeof(vars[0]); i++)
            if (strlen(vars[i].name) == len && strncmp(open + 2, vars[i].name, len) == 0)
                break;
        if (close == NULL || i == sizeof(vars) / sizeof(vars[0])) {
            tg_node_error(n, "headers: unknown variable in '%s' (client_address, identity, route, request_id, "
                             "method, path)", value);
            return -1;
        }
        if (add_segment(v, vars[i].var, NULL, 0) < 0)
            return -1;
        p = close + 1;
    }
    return 0;
}

static int load_values(tg_node_t *n, const char *what, rule_value_t **out, size_t *count)
{
    if (!tg_node_is_map(n)) {
        tg_node_error(n, "%s must be a mapping of header name to value", what);
        return -1;
    }
    /* the node API reads mappings by known keys; walk this one by pairs */
    size_t len = 0;
    char **names = NULL;
    if (tg_node_map_keys(n, &names, &len) < 0)
        return -1;
    *out = calloc(len ? len : 1, sizeof(**out));
    int rc = *out ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        tg_node_t val = tg_node_map_get(n, names[i]);
        char *s = tg_node_secret(&val, what); /* may carry a credential for the upstream */
        rule_value_t *v = &(*out)[*count];
        if (s == NULL || !tg_node_header_name_ok(names[i])) {
            if (s != NULL)
                tg_node_error(&val, "%s: '%s' is not a valid header name", what, names[i]);
            rc = -1;
        } else {
            v->name = strdup(names[i]);
            (*count)++;
            if (compile_value(&val, s, v) < 0)
                rc = -1;
        }
        free(s);
    }
    for (size_t i = 0; i < len; i++)
        free(names[i]);
    free(names);
    return rc;
}
static const tg_key_t rules_keys[] = {
    { "add", TG_KEY_DICT, "mapping name → value", "none",
      "appended (existing ones stay); values may use `%{client_address}`, `%{identity}`, `%{route}`, "
      "`%{request_id}`, `%{method}`, `%{path}`" },
    { "set", TG_KEY_DICT, "mapping name → value", "none", "replaces every occurrence with one header (same variables)" },
    { "remove", TG_KEY_STRINGS, "list of header names", "none", "removed (every occurrence)" },
};
static const tg_keyset_t rules_keyset = TG_KEYSET("filter.headers.rules", "headers request, response", rules_keys);

static const tg_key_t headers_keys[] = {
    { "request", TG_KEY_MAP, "header rules", "none", "edits of the request headers, before they go upstream",
      .sub = &rules_keyset },
    { "response", TG_KEY_MAP, "header rules", "none", "edits of the response headers, before they go to the client",
      .sub = &rules_keyset },
};
static const tg_keyset_t headers_keyset = TG_KEYSET("filter.headers", "headers", headers_keys);



static int load_rules(tg_node_t *n, const char *what, rules_t *r)
{
    tg_node_t v[3];
    int rc = tg_node_keys(n, what, &rules_keyset, v);
    tg_node_t add = tg_node_get(v, &rules_keyset, "add"), set = tg_node_get(v, &rules_keyset, "set");
    tg_node_t remove = tg_node_get(v, &rules_keyset, "remove");
    if (tg_node_present(&add) && load_values(&add, "add", &r->add, &r->n_add) < 0)
        rc = -1;
    if (tg_node_present(&set) && load_values(&set, "set", &r->set, &r->n_set) < 0)
        rc = -1;
    if (tg_node_present(&remove) && tg_node_str_list(&remove, "remove", &r->remove, &r->n_remove) < 0)
        rc = -1;
    return rc;
}

static void *headers_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[2];
    headers_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_keys(node, "headers", &headers_keyset, v);
    tg_node_t req = tg_node_get(v, &headers_keyset, "request"), resp = tg_node_get(v, &headers_keyset, "response");
    if (tg_node_present(&req) && load_rules(&req, "headers request", &c->request) < 0)
        rc = -1;
    if (tg_node_present(&resp) && load_rules(&resp, "headers response", &c->response) < 0)
        rc = -1;
    if (rc < 0) {
        headers_destroy(c);
        return NULL;
    }
    return c;
}

static const char *render(const rule_value_t *v, tg_filter_exchange_t *fx)
{
    if (v->n == 1 && v->seg[0].var == V_LITERAL)
        return v->seg[0].text;
    const char *parts[16];
    size_t total = 0, n = v->n < 16 ? v->n : 16;
    for (size_t i = 0; i < n; i++) {
        const tg_header_t *rid;
        switch (v->seg[i].var) {
        case V_LITERAL: parts[i] = v->seg[i].text; break;
        case V_CLIENT: parts[i] = fx->client_addr; break;
        case V_IDENTITY: parts[i] = fx->identity ? fx->identity : ""; break;
        case V_ROUTE: parts[i] = fx->route; break;
        case V_REQUEST_ID:
            rid = tg_headers_get(&fx->req->headers, "x-request-id");
            parts[i] = rid ? rid->value : "";
            break;
        case V_METHOD: parts[i] = fx->req->method; break;
        case V_PATH: parts[i] = fx->req->target; break;
        }
        total += strlen(parts[i]);
    }
    char *out = tg_arena_alloc(fx->arena, total + 1), *w = out;
    if (out == NULL)
        return "";
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(w, parts[i], l);
        w += l;
    }
    *w = '\0';
    return out;
}

static void apply(const rules_t *r, tg_headers_t *h, tg_filter_exchange_t *fx)
{
    for (size_t i = 0; i < r->n_remove; i++)
        tg_headers_remove(h, r->remove[i]);
    for (size_t i = 0; i < r->n_set; i++)
        tg_headers_set(h, fx->arena, r->set[i].name, render(&r->set[i], fx));
    for (size_t i = 0; i < r->n_add; i++) {
        const char *v = render(&r->add[i], fx);
        tg_headers_add(h, fx->arena, r->add[i].name, strlen(r->add[i].name), v, strlen(v));
    }
}

static tg_filter_status_t headers_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    apply(&((headers_conf_t *)p)->request, &fx->req->headers, fx);
    return TG_FILTER_CONTINUE;
}

static void headers_on_response(void *p, tg_filter_exchange_t *fx, size_t index, tg_response_t *resp)
{
    apply(&((headers_conf_t *)p)->response, &resp->headers, fx);
}

const tg_filter_type_t tg_filter_headers = {
    .name = "headers",
    .doc = "edits request and response headers, with per-request variables",
    .keys = &headers_keyset,
    .create = headers_create,
    .destroy = headers_destroy,
    .on_request = headers_on_request,
    .on_response = headers_on_response,
};

/* ---- cors ---- */

typedef struct cors_conf {
    char **origins;             /* exact origins, "*", or "*.suffix" */
    size_t n_origins;
    char *methods, *headers, *expose; /* comma-joined lists */
    int credentials;
    uint64_t max_age_ms;
    char max_age[24];           /* in seconds, as the header says it */
} cors_conf_t;

static const tg_key_t cors_keys[] = {
    { "allow_origins", TG_KEY_STRINGS, "list (required)", "—",
      "exact origins (`https://app.example.com`), a subdomain wildcard that names its scheme "
      "(`https://*.example.com`; a bare `*.example.com` means https only), or `*`",
      .flags = TG_KEY_REQUIRED },
    { "allow_methods", TG_KEY_STRINGS, "list", "`[GET, HEAD, POST]`", "`Access-Control-Allow-Methods` of preflight "
                                                                        "answers" },
    { "allow_headers", TG_KEY_STRINGS, "list", "what the browser asks for", "`Access-Control-Allow-Headers`" },
    { "expose_headers", TG_KEY_STRINGS, "list", "none", "`Access-Control-Expose-Headers` on actual responses" },
    { "allow_credentials", TG_KEY_BOOL, "bool", "`false`",
      "`Access-Control-Allow-Credentials: true`; cannot be combined with `*` (config error)",
      TG_FIELD(cors_conf_t, credentials, TG_FIELD_INT) },
    { "max_age", TG_KEY_DURATION, "duration", "`10m`", "`Access-Control-Max-Age`",
      TG_FIELD(cors_conf_t, max_age_ms, TG_FIELD_U64), .def = 600000 },
};
static const tg_keyset_t cors_keyset = TG_KEYSET("filter.cors", "cors", cors_keys);

static void cors_destroy(void *p)
{
    cors_conf_t *c = p;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_origins; i++)
        free(c->origins[i]);
    free(c->origins);
    free(c->methods);
    free(c->headers);
    free(c->expose);
    free(c);
}

static char *joined(tg_node_t *n, const char *what, const char *dflt, int *rc)
{
    if (!tg_node_present(n))
        return dflt ? strdup(dflt) : NULL;
    char **v = NULL;
    size_t cnt = 0, len = 1;
    if (tg_node_str_list(n, what, &v, &cnt) < 0) {
        *rc = -1;
        return NULL;
    }
    for (size_t i = 0; i < cnt; i++)
        len += strlen(v[i]) + 2;
    char *out = calloc(1, len);
    for (size_t i = 0; i < cnt; i++) {
        if (out) {
            if (i)
                strcat(out, ", ");
            strcat(out, v[i]);
        }
        free(v[i]);
    }
    free(v);
    return out;
}

static void *cors_create(tg_node_t *node, const char *config_path)
{
    tg_node_t v[6];
    cors_conf_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    int rc = tg_node_read_into(node, "cors", &cors_keyset, c, v);
    tg_node_t origins = tg_node_get(v, &cors_keyset, "allow_origins"), methods = tg_node_get(v, &cors_keyset, "allow_methods");
    tg_node_t headers = tg_node_get(v, &cors_keyset, "allow_headers"), expose = tg_node_get(v, &cors_keyset, "expose_headers");
    if (tg_node_present(&origins) && tg_node_str_list(&origins, "allow_origins", &c->origins, &c->n_origins) < 0)
        rc = -1;
    c->methods = joined(&methods, "allow_methods", "GET, HEAD, POST", &rc);
    c->headers = joined(&headers, "allow_headers", NULL, &rc);
    c->expose = joined(&expose, "expose_headers", NULL, &rc);
    snprintf(c->max_age, sizeof(c->max_age), "%llu", (unsigned long long)(c->max_age_ms / 1000));
    for (size_t i = 0; rc == 0 && i < c->n_origins; i++)
        if (c->credentials && strcmp(c->origins[i], "*") == 0) {
            tg_node_error(&origins, "cors: '*' cannot be combined with allow_credentials (browsers refuse it)");
            rc = -1;
        }
    if (rc < 0) {
        cors_destroy(c);
        return NULL;
    }
    return c;
}

/* A wildcard origin names its scheme (http, then "*.example.com"); without
 * one it means https: a page served over plain http is anybody's on the
 * path, and must not share an https origin's credentials. */
static int wildcard_allows(const char *pattern, const char *origin)
{
    const char *scheme = "https://", *suffix = NULL;
    if (strncasecmp(pattern, "https://*.", 10) == 0)
        suffix = pattern + 9;
    else if (strncasecmp(pattern, "http://*.", 9) == 0)
        scheme = "http://", suffix = pattern + 8;
    else if (strncmp(pattern, "*.", 2) == 0)
        suffix = pattern + 1;
    else
        return 0;
    size_t scl = strlen(scheme), sl = strlen(suffix);
    if (strncasecmp(origin, scheme, scl) != 0)
        return 0;
    const char *host = origin + scl;
    size_t hl = strlen(host);
    return hl > sl && host[0] != '.' && strcasecmp(host + hl - sl, suffix) == 0 && strpbrk(host, "/:@") == NULL;
}

static int origin_allowed(const cors_conf_t *c, const char *origin)
{
    for (size_t i = 0; i < c->n_origins; i++) {
        const char *o = c->origins[i];
        if (strcmp(o, "*") == 0 || strcasecmp(o, origin) == 0 || wildcard_allows(o, origin))
            return 1;
    }
    return 0;
}

static void put(tg_headers_t *h, tg_arena_t *a, const char *name, const char *value)
{
    tg_headers_add(h, a, name, strlen(name), value, strlen(value));
}

static tg_filter_status_t cors_on_request(void *p, tg_filter_exchange_t *fx, size_t index)
{
    cors_conf_t *c = p;
    const tg_header_t *origin = tg_headers_get(&fx->req->headers, "origin");
    if (origin == NULL)
        return TG_FILTER_CONTINUE; /* not a cross-origin request */
    int allowed = origin_allowed(c, origin->value);
    int preflight = strcmp(fx->req->method, "OPTIONS") == 0 &&
                    tg_headers_get(&fx->req->headers, "access-control-request-method") != NULL;
    if (preflight) {
        if (!allowed) {
            fx->reply_status = 403;
            fx->reply_message = "CORS origin not allowed";
            return TG_FILTER_REPLY;
        }
        tg_headers_t *h = &fx->reply_headers;
        fx->reply_status = 204;
        fx->reply_message = "";
        put(h, fx->arena, "access-control-allow-methods", c->methods);
        const tg_header_t *asked = tg_headers_get(&fx->req->headers, "access-control-request-headers");
        if (c->headers)
            put(h, fx->arena, "access-control-allow-headers", c->headers);
        else if (asked) /* none configured: allow what the browser asks for */
            put(h, fx->arena, "access-control-allow-headers", asked->value);
        put(h, fx->arena, "access-control-max-age", c->max_age);
    }
    if (!allowed)
        return TG_FILTER_CONTINUE; /* no CORS fields: the browser will refuse the response */
    tg_headers_t *h = preflight ? &fx->reply_headers : &fx->response_headers;
    int any = c->n_origins == 1 && strcmp(c->origins[0], "*") == 0;
    put(h, fx->arena, "access-control-allow-origin", any ? "*" : origin->value);
    if (!any)
        put(h, fx->arena, "vary", "Origin");
    if (c->credentials)
        put(h, fx->arena, "access-control-allow-credentials", "true");
    if (c->expose && !preflight)
        put(h, fx->arena, "access-control-expose-headers", c->expose);
    return preflight ? TG_FILTER_REPLY : TG_FILTER_CONTINUE;
}

const tg_filter_type_t tg_filter_cors = {
    .name = "cors",
    .doc = "answers CORS preflights and adds CORS fields for allowed browser origins",
    .keys = &cors_keyset,
    .create = cors_create,
    .destroy = cors_destroy,
    .on_request = cors_on_request,
};
