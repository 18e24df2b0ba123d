/*
 * filters/cache_rfc.c — see cache_rfc.h.
 */
#include "filters/cache_rfc.h"

#include <string.h>
#include <strings.h>
#include <time.h>

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

void tg_cc_init(tg_cc_t *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = TG_CC_ABSENT;
    cc->max_stale = cc->min_fresh = TG_CC_ABSENT;
}

/* delta-seconds (RFC 9111 1.2.2): digits only; past 2^31 it is 2^31. */
int64_t tg_http_delta_parse(const char *v, size_t len)
{
    while (len > 0 && is_ows(*v))
        v++, len--;
    while (len > 0 && is_ows(v[len - 1]))
        len--;
    if (len == 0)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        if (n < TG_CC_DELTA_MAX)
            n = n * 10 + (v[i] - '0');
    }
    return n > TG_CC_DELTA_MAX ? TG_CC_DELTA_MAX : n;
}

/* The value of an integer directive: first copy only; malformed is 0. */
static void set_delta(int64_t *slot, const char *v, size_t len, int has_value)
{
    if (*slot != TG_CC_ABSENT)
        return;
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') /* tolerated: a quoted number */
        v++, len -= 2;
    int64_t n = has_value ? tg_http_delta_parse(v, len) : -1;
    *slot = n < 0 ? 0 : n;
}

static int name_is(const char *n, size_t nl, const char *want)
{
    return strlen(want) == nl && strncasecmp(n, want, nl) == 0;
}

void tg_cc_parse(tg_cc_t *cc, const char *v, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        size_t ns = i;
        while (i < len && v[i] != '=' && v[i] != ',' && !is_ows(v[i]))
            i++;
        size_t nl = i - ns;
        while (i < len && is_ows(v[i]))
            i++;
        const char *val = NULL;
        size_t vl = 0;
        int has_value = 0;
        if (i < len && v[i] == '=') {
            i++;
            while (i < len && is_ows(v[i]))
                i++;
            has_value = 1;
            val = v + i;
            if (i < len && v[i] == '"') { /* a quoted-string: to its closing quote, escapes skipped */
                i++;
                while (i < len && v[i] != '"')
                    i += v[i] == '\\' && i + 1 < len ? 2 : 1;
                if (i < len)
                    i++;
            } else {
                while (i < len && v[i] != ',' && !is_ows(v[i]))
                    i++;
            }
            vl = (size_t)(v + i - val);
        }
        while (i < len && v[i] != ',') /* anything else up to the next directive is ignored */
            i++;
        if (nl == 0)
            continue;
        const char *n = v + ns;
        if (name_is(n, nl, "no-store"))
            cc->no_store = 1;
        else if (name_is(n, nl, "no-cache"))
            cc->no_cache = 1; /* a field list (no-cache="f") is taken as the whole response: stricter */
        else if (name_is(n, nl, "private"))
            cc->private_ = 1;
        else if (name_is(n, nl, "public"))
            cc->public_ = 1;
        else if (name_is(n, nl, "must-revalidate"))
            cc->must_revalidate = 1;
        else if (name_is(n, nl, "proxy-revalidate"))
            cc->proxy_revalidate = 1;
        else if (name_is(n, nl, "must-understand"))
            cc->must_understand = 1;
        else if (name_is(n, nl, "only-if-cached"))
            cc->only_if_cached = 1;
        else if (name_is(n, nl, "max-age"))
            set_delta(&cc->max_age, val, vl, has_value);
        else if (name_is(n, nl, "s-maxage"))
            set_delta(&cc->s_maxage, val, vl, has_value);
        else if (name_is(n, nl, "stale-while-revalidate"))
            set_delta(&cc->stale_while_revalidate, val, vl, has_value);
        else if (name_is(n, nl, "stale-if-error"))
            set_delta(&cc->stale_if_error, val, vl, has_value);
        else if (name_is(n, nl, "min-fresh"))
            set_delta(&cc->min_fresh, val, vl, has_value);
        else if (name_is(n, nl, "max-stale") && cc->max_stale == TG_CC_ABSENT)
            cc->max_stale = has_value ? (tg_http_delta_parse(val, vl) < 0 ? 0 : tg_http_delta_parse(val, vl))
                                      : TG_CC_DELTA_MAX;
    }
}

/* ---- dates ---- */

static int month_of(const char *m)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(m, names + i * 3, 3) == 0)
            return i;
    return -1;
}

/* n digits at p, or -1. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int64_t make_time(int year, int mon, int day, int h, int m, int s)
{
    if (year < 1970 || year > 9999 || mon < 0 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60)
        return -1;
    struct tm tm = { .tm_year = year - 1900, .tm_mon = mon, .tm_mday = day, .tm_hour = h, .tm_min = m, .tm_sec = s };
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (int64_t)t;
}

/* "HH:MM:SS" at p. */
static int clock_of(const char *p, int *h, int *m, int *s)
{
    if (p[2] != ':' || p[5] != ':')
        return -1;
    *h = digits(p, 2), *m = digits(p + 3, 2), *s = digits(p + 6, 2);
    return *h < 0 || *m < 0 || *s < 0 ? -1 : 0;
}

int64_t tg_http_date_parse(const char *v, size_t len)
{
    char b[40];
    while (len > 0 && is_ows(*v))
        v++, len--;
    while (len > 0 && is_ows(v[len - 1]))
        len--;
    if (len < 24 || len >= sizeof(b))
        return -1;
    memcpy(b, v, len);
    b[len] = '\0';
    int h, m, s, day, mon, year;
    const char *comma = memchr(b, ',', len);
    if (comma != NULL && comma - b == 3 && len == 29) { /* Sun, 06 Nov 1994 08:49:37 GMT */
        if (b[4] != ' ' || b[7] != ' ' || b[11] != ' ' || b[16] != ' ' || strcmp(b + 25, " GMT") != 0 ||
            clock_of(b + 17, &h, &m, &s) < 0)
            return -1;
        day = digits(b + 5, 2), mon = month_of(b + 8), year = digits(b + 12, 4);
        return day < 0 || year < 0 ? -1 : make_time(year, mon, day, h, m, s);
    }
    if (comma != NULL) { /* Sunday, 06-Nov-94 08:49:37 GMT */
        const char *p = comma + 1;
        size_t rest = len - (size_t)(p - b);
        if (rest != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-' || p[10] != ' ' || strcmp(p + 19, " GMT") != 0 ||
            clock_of(p + 11, &h, &m, &s) < 0)
            return -1;
        day = digits(p + 1, 2), mon = month_of(p + 4), year = digits(p + 8, 2);
        if (day < 0 || year < 0)
            return -1;
        year += year < 70 ? 2000 : 1900; /* RFC 9110 5.6.7: within 50 years of now, for a year 2000-2069 */
        return make_time(year, mon, day, h, m, s);
    }
    if (len == 24 && b[3] == ' ' && b[7] == ' ' && b[10] == ' ' && b[19] == ' ') { /* Sun Nov  6 08:49:37 1994 */
        if (clock_of(b + 11, &h, &m, &s) < 0)
            return -1;
        day = b[8] == ' ' ? digits(b + 9, 1) : digits(b + 8, 2);
        mon = month_of(b + 4), year = digits(b + 20, 4);
        return day < 0 || year < 0 ? -1 : make_time(year, mon, day, h, m, s);
    }
    return -1;
}

void tg_http_date_format(int64_t t, char out[30])
{
    static const char days[] = "SunMonTueWedThuFriSat", months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    time_t tt = (time_t)(t < 0 ? 0 : t);
    struct tm tm;
    gmtime_r(&tt, &tm);
    int year = tm.tm_year + 1900;
    if (year > 9999)
        year = 9999;
    char *p = out;
    memcpy(p, days + tm.tm_wday * 3, 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months + tm.tm_mon * 3, 3);
    p += 3;
    *p++ = ' ';
    for (int d = 1000; d > 0; d /= 10)
        *p++ = (char)('0' + (year / d) % 10);
    *p++ = ' ';
    int hms[3] = { tm.tm_hour, tm.tm_min, tm.tm_sec };
    for (int i = 0; i < 3; i++) {
        *p++ = (char)('0' + hms[i] / 10);
        *p++ = (char)('0' + hms[i] % 10);
        *p++ = i < 2 ? ':' : ' ';
    }
    memcpy(p, "GMT", 4);
}

/* ---- storing and freshness ---- */

int tg_cache_status_heuristic(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    default:
        return 0;
    }
}

int tg_cache_may_store(int status, const tg_cc_t *resp, int has_expires, int authorization)
{
    if (status < 200 || status == 206 || status == 304) /* partial and not-modified answers are never entries */
        return 0;
    int understood = (tg_cache_status_heuristic(status) && status != 206) || status == 302 || status == 307;
    if (resp->must_understand ? !understood : resp->no_store)
        return 0;
    if (resp->private_)
        return 0;
    /* 3.5: an answer to a request with credentials only when it says so */
    if (authorization && !resp->public_ && resp->s_maxage == TG_CC_ABSENT && !resp->must_revalidate)
        return 0;
    return resp->public_ || has_expires || resp->max_age != TG_CC_ABSENT || resp->s_maxage != TG_CC_ABSENT ||
           tg_cache_status_heuristic(status);
}

int64_t tg_cache_lifetime(const tg_cc_t *resp, int status, int64_t date, int64_t expires, int64_t last_modified,
                          int64_t heuristic_max)
{
    if (resp->s_maxage != TG_CC_ABSENT)
        return resp->s_maxage;
    if (resp->max_age != TG_CC_ABSENT)
        return resp->max_age;
    if (expires >= 0) {
        int64_t d = expires - (date >= 0 ? date : expires);
        return d > 0 ? d : 0;
    }
    if (last_modified >= 0 && date >= last_modified && tg_cache_status_heuristic(status)) {
        int64_t h = (date - last_modified) / 10;
        return h < heuristic_max ? h : heuristic_max;
    }
    return 0;
}

int64_t tg_cache_initial_age(int64_t age_value, int64_t date, int64_t request_time, int64_t response_time)
{
    int64_t apparent = date >= 0 && response_time > date ? response_time - date : 0;
    int64_t delay = response_time > request_time ? response_time - request_time : 0;
    int64_t corrected = (age_value > 0 ? age_value : 0) + delay;
    return apparent > corrected ? apparent : corrected;
}

/* ---- ranges and validators ---- */

/* A decimal number at v[*i..], at least one digit; -1 if none or past 2^62. */
static int64_t read_u(const char *v, size_t len, size_t *i)
{
    size_t s = *i;
    uint64_t n = 0;
    while (*i < len && v[*i] >= '0' && v[*i] <= '9') {
        n = n * 10 + (uint64_t)(v[*i] - '0');
        if (n > (1ull << 62))
            return -1;
        (*i)++;
    }
    return *i == s ? -1 : (int64_t)n;
}

int tg_range_parse(const char *v, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
    size_t i = 0;
    while (i < len && is_ows(v[i]))
        i++;
    if (len - i < 6 || strncasecmp(v + i, "bytes=", 6) != 0)
        return 0;
    i += 6;
    while (i < len && is_ows(v[i]))
        i++;
    int64_t a = -1, b = -1;
    if (i < len && v[i] == '-') { /* a suffix: the last N bytes */
        i++;
        if ((b = read_u(v, len, &i)) < 0)
            return 0;
    } else {
        if ((a = read_u(v, len, &i)) < 0 || i >= len || v[i] != '-')
            return 0;
        i++;
        if (i < len && v[i] >= '0' && v[i] <= '9' && (b = read_u(v, len, &i)) < 0)
            return 0;
        if (b >= 0 && b < a)
            return 0; /* invalid: ignored */
    }
    while (i < len && is_ows(v[i]))
        i++;
    if (i != len)
        return 0; /* several ranges (or junk): the whole representation */
    if (a < 0) { /* suffix */
        if (b == 0 || size == 0)
            return -1;
        *first = (uint64_t)b >= size ? 0 : size - (uint64_t)b;
        *last = size - 1;
        return 1;
    }
    if ((uint64_t)a >= size)
        return -1;
    *first = (uint64_t)a;
    *last = b < 0 || (uint64_t)b >= size ? size - 1 : (uint64_t)b;
    return 1;
}

/* The opaque part of an entity tag (without W/), or NULL. */
static const char *opaque(const char *t, size_t len, size_t *olen, int *weak)
{
    *weak = len >= 2 && t[0] == 'W' && t[1] == '/';
    if (*weak)
        t += 2, len -= 2;
    if (len < 2 || t[0] != '"' || t[len - 1] != '"')
        return NULL;
    *olen = len;
    return t;
}

int tg_etag_match_weak(const char *list, size_t len, const char *etag, size_t etag_len)
{
    size_t eo = 0;
    int ew;
    const char *e = etag ? opaque(etag, etag_len, &eo, &ew) : NULL;
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(list[i]) || list[i] == ','))
            i++;
        size_t s = i;
        if (i < len && list[i] == '*')
            return 1;
        if (i + 1 < len && list[i] == 'W' && list[i + 1] == '/')
            i += 2;
        if (i < len && list[i] == '"') {
            i++;
            while (i < len && list[i] != '"')
                i++;
            if (i < len)
                i++;
        } else {
            while (i < len && list[i] != ',')
                i++;
            continue; /* not an entity tag: skipped */
        }
        size_t to = 0;
        int tw;
        const char *t = opaque(list + s, i - s, &to, &tw);
        if (e != NULL && t != NULL && to == eo && memcmp(t, e, eo) == 0)
            return 1;
    }
    return 0;
}

int tg_etag_equal_strong(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t ao = 0, bo = 0;
    int aw, bw;
    const char *x = opaque(a, alen, &ao, &aw), *y = opaque(b, blen, &bo, &bw);
    return x != NULL && y != NULL && !aw && !bw && ao == bo && memcmp(x, y, ao) == 0;
}
