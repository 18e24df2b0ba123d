/*
 * bench/h1_parse_bench.c — nanoseconds per request head for tollgate's
 * HTTP/1.1 parser (proxy/base/h1_parse.c) and, when built with
 * -DWITH_HTTP_PARSER, for Debian's http-parser, on three heads: a curl
 * request, a browser request with cookies, and a 40-header API request.
 *
 * Both parsers do the same work: parse the whole head and record where
 * the method, target, every header name and value are (http-parser
 * through its callbacks, ours through TG_H1P_FIELD). Each figure is the
 * best of several runs of many iterations, so it measures the parser,
 * not the machine's noise. Built and run by bench/run_h1_parse.sh.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/base/h1_parse.h"

#ifdef WITH_HTTP_PARSER
#include <http_parser.h>
#endif

#define MAX_FIELDS 64

static const char curl_head[] = "GET /api/v1/items?id=42 HTTP/1.1\r\n"
                                "Host: api.example.com\r\n"
                                "User-Agent: curl/7.88.1\r\n"
                                "Accept: */*\r\n"
                                "\r\n";

static const char browser_head[] =
    "GET /dashboard/projects/tollgate/settings?tab=general HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "Connection: keep-alive\r\n"
    "sec-ch-ua: \"Chromium\";v=\"120\", \"Not?A_Brand\";v=\"8\"\r\n"
    "sec-ch-ua-mobile: ?0\r\n"
    "sec-ch-ua-platform: \"Linux\"\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-User: ?1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Referer: https://app.example.com/dashboard/projects/tollgate\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-GB,en-US;q=0.9,en;q=0.8,de;q=0.7\r\n"
    "Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; "
    "session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2"
    "MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c; csrftoken=4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c; "
    "theme=dark; sidebar=collapsed; tz=Europe%2FBerlin\r\n"
    "\r\n";

static char api_head[4096];

static void build_api_head(void)
{
    size_t n = (size_t)snprintf(api_head, sizeof(api_head),
                                "POST /v2/orders/batch HTTP/1.1\r\nHost: orders.internal.example.com\r\n"
                                "Content-Type: application/json\r\nContent-Length: 1024\r\n"
                                "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdmMtYmlsbGluZyJ9.c2lnbmF0dXJl\r\n");
    for (int i = 0; i < 36; i++)
        n += (size_t)snprintf(api_head + n, sizeof(api_head) - n, "X-Api-Meta-%02d: value-%d-%08x-trace\r\n", i, i,
                              (unsigned)(i * 2654435761u));
    snprintf(api_head + n, sizeof(api_head) - n, "\r\n");
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- ours ---- */

static tg_h1_span_t names[MAX_FIELDS], values[MAX_FIELDS];

static int parse_ours(const char *buf, size_t len)
{
    tg_h1_parser_t p;
    tg_h1_parser_init(&p, TG_H1_REQUEST);
    int n = 0;
    tg_h1p_result_t r;
    while ((r = tg_h1_parse_head(&p, buf, len)) == TG_H1P_FIELD) {
        if (n < MAX_FIELDS) {
            names[n] = p.field_name;
            values[n] = p.field_value;
        }
        n++;
    }
    return r == TG_H1P_DONE ? n : -1;
}

#ifdef WITH_HTTP_PARSER
/* ---- http-parser, recording the same spans through its callbacks ---- */

typedef struct {
    const char *url;
    size_t url_len;
    int n;
    const char *name[MAX_FIELDS], *value[MAX_FIELDS];
    size_t name_len[MAX_FIELDS], value_len[MAX_FIELDS];
    int done;
} hp_rec_t;

static int hp_url(http_parser *p, const char *at, size_t len)
{
    hp_rec_t *r = p->data;
    r->url = at;
    r->url_len = len;
    return 0;
}

static int hp_field(http_parser *p, const char *at, size_t len)
{
    hp_rec_t *r = p->data;
    if (r->n < MAX_FIELDS) {
        r->name[r->n] = at;
        r->name_len[r->n] = len;
    }
    return 0;
}

static int hp_value(http_parser *p, const char *at, size_t len)
{
    hp_rec_t *r = p->data;
    if (r->n < MAX_FIELDS) {
        r->value[r->n] = at;
        r->value_len[r->n] = len;
    }
    r->n++;
    return 0;
}

static int hp_headers_complete(http_parser *p)
{
    ((hp_rec_t *)p->data)->done = 1;
    return 1; /* head only, like ours */
}

static const http_parser_settings hp_settings = {
    .on_url = hp_url,
    .on_header_field = hp_field,
    .on_header_value = hp_value,
    .on_headers_complete = hp_headers_complete,
};

static int parse_http_parser(const char *buf, size_t len)
{
    http_parser p;
    hp_rec_t rec;
    rec.n = 0;
    rec.done = 0;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &rec;
    http_parser_execute(&p, &hp_settings, buf, len);
    return rec.done ? rec.n : -1;
}
#endif

typedef int (*parse_fn)(const char *, size_t);

static double ns_per_head(parse_fn fn, const char *head, size_t len, int fields)
{
    const int iters = 200000, runs = 7;
    double best = 1e18;
    for (int r = 0; r < runs; r++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < iters; i++) {
            if (fn(head, len) != fields) {
                fprintf(stderr, "parse failed\n");
                return -1;
            }
            __asm__ volatile("" ::: "memory"); /* keep every iteration */
        }
        double ns = (double)(now_ns() - t0) / iters;
        if (ns < best)
            best = ns;
    }
    return best;
}

int main(void)
{
    build_api_head();
    struct {
        const char *name, *head;
    } heads[] = { { "curl", curl_head }, { "browser+cookies", browser_head }, { "api, 40 headers", api_head } };
    printf("| head | bytes | fields | tollgate h1_parse ns | http-parser ns | ratio |\n|---|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        size_t len = strlen(heads[i].head);
        int fields = parse_ours(heads[i].head, len);
        double ours = ns_per_head(parse_ours, heads[i].head, len, fields);
#ifdef WITH_HTTP_PARSER
        double theirs = ns_per_head(parse_http_parser, heads[i].head, len, fields);
        printf("| %s | %zu | %d | %.0f | %.0f | %.2fx |\n", heads[i].name, len, fields, ours, theirs, ours / theirs);
#else
        printf("| %s | %zu | %d | %.0f | - | - |\n", heads[i].name, len, fields, ours);
#endif
    }
    return 0;
}
