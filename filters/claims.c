/*
 * filters/claims.c — see claims.h.
 */
#include "filters/claims.h"

#include <stdio.h>
#include <string.h>

static int has_scope(const tg_json_t *claims, const char *want)
{
    const tg_json_t *v = tg_json_get(claims, "scope");
    if (v && v->t == TG_JSON_STR) { /* space-separated (RFC 8693) */
        size_t wl = strlen(want);
        for (const char *p = v->str; *p;) {
            while (*p == ' ')
                p++;
            const char *e = p;
            while (*e && *e != ' ')
                e++;
            if ((size_t)(e - p) == wl && strncmp(p, want, wl) == 0)
                return 1;
            p = e;
        }
    }
    const tg_json_t *arr = tg_json_get(claims, "scp");
    for (size_t i = 0; arr && arr->t == TG_JSON_ARR && i < arr->n; i++)
        if (arr->items[i].t == TG_JSON_STR && strcmp(arr->items[i].str, want) == 0)
            return 1;
    return 0;
}

/* The token's top-level scalar claims as text, for later filters. */
static void keep_claims(const tg_json_t *claims, tg_arena_t *a, tg_headers_t *out)
{
    for (size_t i = 0; i < claims->n; i++) {
        const tg_json_t *v = &claims->items[i];
        char num[32];
        const char *text = NULL;
        if (v->t == TG_JSON_STR)
            text = v->str;
        else if (v->t == TG_JSON_BOOL)
            text = v->num != 0 ? "true" : "false";
        else if (v->t == TG_JSON_NUM) {
            if (v->num == (double)(int64_t)v->num && v->num > -9.0e15 && v->num < 9.0e15)
                snprintf(num, sizeof(num), "%lld", (long long)v->num);
            else
                snprintf(num, sizeof(num), "%.17g", v->num);
            text = tg_arena_strndup(a, num, strlen(num));
        }
        if (text != NULL)
            tg_headers_add(out, a, claims->keys[i], strlen(claims->keys[i]), text, strlen(text));
    }
}

const char *tg_claims_check(const tg_claim_rules_t *r, const tg_json_t *claims, int64_t now, tg_arena_t *a,
                            const char **identity, tg_headers_t *claims_out)
{
    const tg_json_t *exp = tg_json_get(claims, "exp"), *nbf = tg_json_get(claims, "nbf");
    if (exp == NULL && r->require_exp)
        return "token has no exp";
    if (exp && (exp->t != TG_JSON_NUM || (int64_t)exp->num + r->leeway_s < now))
        return "token expired";
    if (nbf && (nbf->t != TG_JSON_NUM || (int64_t)nbf->num - r->leeway_s > now))
        return "token not yet valid";
    if (r->issuer) {
        const char *iss = tg_json_get_str(claims, "iss");
        if (iss == NULL || strcmp(iss, r->issuer) != 0)
            return "wrong issuer";
    }
    if (r->n_aud) {
        const tg_json_t *aud = tg_json_get(claims, "aud");
        int ok = 0;
        for (size_t i = 0; aud && i < r->n_aud && !ok; i++) {
            if (aud->t == TG_JSON_STR)
                ok = strcmp(aud->str, r->audiences[i]) == 0;
            for (size_t j = 0; aud->t == TG_JSON_ARR && j < aud->n && !ok; j++)
                ok = aud->items[j].t == TG_JSON_STR && strcmp(aud->items[j].str, r->audiences[i]) == 0;
        }
        if (!ok)
            return "wrong audience";
    }
    for (size_t i = 0; i < r->n_scopes; i++)
        if (!has_scope(claims, r->scopes[i]))
            return "missing scope";
    const char *id = tg_json_get_str(claims, r->identity_claim);
    if (id == NULL || *id == '\0')
        return "token has no identity claim";
    for (const char *p = id; *p; p++) /* the identity goes into headers and logs */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "identity claim holds control characters";
    *identity = id;
    if (claims_out != NULL)
        keep_claims(claims, a, claims_out);
    return NULL;
}
