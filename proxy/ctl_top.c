/*
 * proxy/ctl_top.c — see ctl_top.h.
 */
#include "proxy/ctl_top.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/base/arena.h"
#include "proxy/base/json.h"

#define TOP_ROUTES 40 /* rows at most; the rest are counted */

static double num(const tg_json_t *o, const char *key)
{
    const tg_json_t *v = tg_json_get(o, key);
    return v != NULL && v->t == TG_JSON_NUM ? v->num : 0;
}

static const char *str(const tg_json_t *o, const char *key)
{
    const char *s = tg_json_get_str(o, key);
    return s != NULL ? s : "";
}

/* Element i of array member `key`, or NULL (absent, null, past the end). */
static const tg_json_t *at(const tg_json_t *o, const char *key, size_t i)
{
    const tg_json_t *a = tg_json_get(o, key);
    if (a == NULL || a->t != TG_JSON_ARR || i >= a->n || a->items[i].t == TG_JSON_NULL)
        return NULL;
    return &a->items[i];
}

static double at_num(const tg_json_t *o, const char *key, size_t i)
{
    const tg_json_t *v = at(o, key, i);
    return v != NULL && v->t == TG_JSON_NUM ? v->num : 0;
}

static size_t len_of(const tg_json_t *o, const char *key)
{
    const tg_json_t *a = tg_json_get(o, key);
    return a != NULL && a->t == TG_JSON_ARR ? a->n : 0;
}

/* One route over the last closed bucket and the current one. */
typedef struct top_row {
    const char *name, *cluster;
    double rps, e4, e5;   /* per second; percent of requests */
    double p50, p99;      /* µs; < 0: no request */
    const tg_json_t *hist;
} top_row_t;

static int by_sort(const void *a, const void *b, void *arg)
{
    const top_row_t *x = a, *y = b;
    tg_top_sort_t sort_by = *(const tg_top_sort_t *)arg;
    double kx = sort_by == TG_TOP_BY_ERRORS ? x->e5 * 1000 + x->e4 : x->rps;
    double ky = sort_by == TG_TOP_BY_ERRORS ? y->e5 * 1000 + y->e4 : y->rps;
    if (kx != ky)
        return kx < ky ? 1 : -1;
    return strcmp(x->name, y->name);
}

static void fmt_us(char *out, size_t cap, double us)
{
    if (us < 0)
        snprintf(out, cap, "-");
    else if (us < 1000)
        snprintf(out, cap, "%.0fus", us);
    else if (us < 1e6)
        snprintf(out, cap, "%.1fms", us / 1000);
    else
        snprintf(out, cap, "%.2fs", us / 1e6);
}

/* Requests/s of each of the last `n` buckets as block characters (a
 * space where there is no data). */
static void sparkline(FILE *f, const tg_json_t *h, const tg_json_t *route, size_t n)
{
    static const char *const blocks[] = { "\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588" };
    size_t total = len_of(route, "requests"), from = total > n ? total - n : 0;
    double max = 0, bucket_s = num(h, "bucket_ms") / 1000, partial_s = 0;
    if (bucket_s <= 0)
        bucket_s = 10;
    double start = num(h, "start_ms"), now = num(h, "now_ms");
    partial_s = (now - (start + (double)(total ? total - 1 : 0) * bucket_s * 1000)) / 1000;
    if (partial_s < 1)
        partial_s = 1;
    double v[128];
    for (size_t i = from; i < total && i - from < 128; i++) {
        v[i - from] = at(route, "requests", i) ? at_num(route, "requests", i) / (i + 1 == total ? partial_s : bucket_s)
                                                : -1;
        if (v[i - from] > max)
            max = v[i - from];
    }
    for (size_t i = 0; i < total - from && i < 128; i++) {
        if (v[i] < 0)
            fputc(' ', f);
        else
            fputs(blocks[max > 0 ? (size_t)(v[i] / max * 7.0 + 0.5) : 0], f);
    }
}

static void header(FILE *f, const tg_json_t *s)
{
    double now_ms = num(s, "now_ms");
    long up = (long)(now_ms / 1000 - num(s, "started"));
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    char clock[16] = "";
    if (localtime_r(&t, &tm) != NULL)
        strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
    const tg_json_t *rl = tg_json_get(s, "reloads");
    fprintf(f, "tollgate %s - up %ldh%02ldm%02lds, %.0f workers, reloads %.0f ok %.0f failed - %s\n",
            str(s, "version"), up / 3600, up / 60 % 60, up % 60, num(s, "workers"), num(rl, "ok"), num(rl, "failed"),
            clock);
}

static void routes(FILE *f, const tg_json_t *s, const tg_json_t *h, tg_top_sort_t sort)
{
    const tg_json_t *hr = tg_json_get(h, "routes");
    size_t n = hr != NULL && hr->t == TG_JSON_ARR ? hr->n : 0;
    top_row_t *rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows == NULL)
        return;
    double bucket_s = num(h, "bucket_ms") / 1000;
    for (size_t i = 0; i < n; i++) {
        const tg_json_t *r = &hr->items[i];
        size_t b = len_of(r, "requests");
        top_row_t *row = &rows[i];
        row->name = str(r, "name");
        row->hist = r;
        row->p50 = row->p99 = -1;
        if (b == 0)
            continue;
        double partial_s = (num(h, "now_ms") - num(h, "start_ms")) / 1000 - (double)(b - 1) * bucket_s;
        double secs = (partial_s > 0 ? partial_s : 0) + (b >= 2 && at(r, "requests", b - 2) ? bucket_s : 0);
        double req = at_num(r, "requests", b - 1) + (b >= 2 ? at_num(r, "requests", b - 2) : 0);
        double c4 = at_num(r, "4xx", b - 1) + (b >= 2 ? at_num(r, "4xx", b - 2) : 0);
        double c5 = at_num(r, "5xx", b - 1) + (b >= 2 ? at_num(r, "5xx", b - 2) : 0);
        row->rps = secs >= 1 ? req / secs : req;
        row->e4 = req > 0 ? 100 * c4 / req : 0;
        row->e5 = req > 0 ? 100 * c5 / req : 0;
        size_t pb = at(r, "p99_us", b - 1) ? b - 1 : b - 2; /* the current bucket, else the last closed one */
        if (at(r, "p99_us", pb)) {
            row->p50 = at_num(r, "p50_us", pb);
            row->p99 = at_num(r, "p99_us", pb);
        }
    }
    const tg_json_t *sr = tg_json_get(s, "routes"); /* the clusters routes send to */
    for (size_t i = 0; sr != NULL && sr->t == TG_JSON_ARR && i < sr->n; i++)
        for (size_t k = 0; k < n; k++)
            if (strcmp(rows[k].name, str(&sr->items[i], "name")) == 0)
                rows[k].cluster = str(&sr->items[i], "cluster");
    qsort_r(rows, n, sizeof(*rows), by_sort, &sort);
    fprintf(f, "\n%-24s %-16s %9s %6s %6s %8s %8s  %s\n", "ROUTE", "CLUSTER", "REQ/S", "4XX%", "5XX%", "P50", "P99",
            "REQ/S, LAST 5 MIN");
    for (size_t i = 0; i < n && i < TOP_ROUTES; i++) {
        char p50[16], p99[16];
        fmt_us(p50, sizeof(p50), rows[i].p50);
        fmt_us(p99, sizeof(p99), rows[i].p99);
        fprintf(f, "%-24.24s %-16.16s %9.1f %6.1f %6.1f %8s %8s  ", rows[i].name,
                rows[i].cluster ? rows[i].cluster : "", rows[i].rps, rows[i].e4, rows[i].e5, p50, p99);
        sparkline(f, h, rows[i].hist, 30);
        fputc('\n', f);
    }
    if (n > TOP_ROUTES)
        fprintf(f, "... and %zu more routes\n", n - TOP_ROUTES);
    free(rows);
}

static void clusters(FILE *f, const tg_json_t *s, const tg_json_t *h)
{
    const tg_json_t *cs = tg_json_get(s, "clusters"), *hc = tg_json_get(h, "clusters"),
                    *ev = tg_json_get(h, "events");
    fprintf(f, "\n%-24s %7s %10s  %s\n", "CLUSTER", "UP", "FAIL/S", "CHANGES (LAST 15 MIN)");
    for (size_t i = 0; cs != NULL && cs->t == TG_JSON_ARR && i < cs->n; i++) {
        const tg_json_t *c = &cs->items[i];
        const char *name = str(c, "name");
        size_t up = 0, total = len_of(c, "endpoints");
        for (size_t k = 0; k < total; k++)
            up += strcmp(str(at(c, "endpoints", k), "state"), "up") == 0;
        double fails = 0, secs = 0;
        for (size_t k = 0; hc != NULL && hc->t == TG_JSON_ARR && k < hc->n; k++) {
            const tg_json_t *x = &hc->items[k];
            size_t b = len_of(x, "failures");
            if (strcmp(str(x, "name"), name) != 0 || b == 0)
                continue;
            fails = at_num(x, "failures", b - 1) + (b >= 2 ? at_num(x, "failures", b - 2) : 0);
            secs = (num(h, "now_ms") - num(h, "start_ms")) / 1000 - (double)(b - 1) * num(h, "bucket_ms") / 1000 +
                   (b >= 2 && at(x, "failures", b - 2) ? num(h, "bucket_ms") / 1000 : 0);
        }
        char ups[24];
        snprintf(ups, sizeof(ups), "%zu/%zu", up, total);
        fprintf(f, "%-24.24s %7s %10.1f ", name, ups, secs >= 1 ? fails / secs : fails);
        int shown = 0;
        for (size_t k = ev != NULL && ev->t == TG_JSON_ARR ? ev->n : 0; k > 0 && shown < 3; k--) {
            const tg_json_t *e = &ev->items[k - 1];
            if (strcmp(str(e, "kind"), "endpoint") != 0 || strcmp(str(e, "cluster"), name) != 0)
                continue;
            time_t t = (time_t)(num(e, "at_ms") / 1000);
            struct tm tm;
            char clock[16] = "";
            if (localtime_r(&t, &tm) != NULL)
                strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
            fprintf(f, " %s %s %s->%s;", clock, str(e, "endpoint"), str(e, "from"), str(e, "to"));
            shown++;
        }
        fputc('\n', f);
    }
}

static void limits(FILE *f, const tg_json_t *s)
{
    const tg_json_t *ls = tg_json_get(s, "limits");
    if (ls == NULL || ls->t != TG_JSON_ARR || ls->n == 0)
        return;
    fprintf(f, "\n%-40s %s\n", "LIMIT", "REFUSED IN THE LAST MINUTE (KEY: COUNT)");
    for (size_t i = 0; i < ls->n; i++) {
        const tg_json_t *l = &ls->items[i];
        const tg_json_t *route = tg_json_get(l, "route");
        char where[128];
        snprintf(where, sizeof(where), "%s/%s#%.0f%s", route != NULL && route->t == TG_JSON_STR ? route->str : "*",
                 str(l, "filter"), num(l, "index"), strcmp(str(l, "mode"), "shadow") == 0 ? " (shadow)" : "");
        fprintf(f, "%-40.40s", where);
        size_t n = len_of(l, "limited");
        if (n == 0)
            fprintf(f, " nobody");
        for (size_t k = 0; k < n && k < 5; k++) {
            const tg_json_t *x = at(l, "limited", k);
            fprintf(f, " %s: %s%.0f%s", str(x, "key"), tg_json_get(x, "estimated") && tg_json_get(x, "estimated")->num ? "<=" : "",
                    num(x, "refusals"), k + 1 < n && k < 4 ? "," : "");
        }
        if (n > 5)
            fprintf(f, " (+%zu)", n - 5);
        fputc('\n', f);
    }
}

int tg_ctl_top_frame(FILE *f, const char *json, size_t len, tg_top_sort_t sort)
{
    tg_arena_t a;
    tg_arena_init(&a);
    tg_json_t s;
    const tg_json_t *h;
    if (tg_json_parse(json, len, &a, &s) < 0 || s.t != TG_JSON_OBJ || (h = tg_json_get(&s, "history")) == NULL ||
        h->t != TG_JSON_OBJ) {
        tg_arena_free(&a);
        return -1;
    }
    header(f, &s);
    routes(f, &s, h, sort);
    clusters(f, &s, h);
    limits(f, &s);
    tg_arena_free(&a);
    return 0;
}
