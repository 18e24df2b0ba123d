/*
 * proxy/base/log.c — see log.h.
 */
#include "proxy/base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/base/clock.h"
#include "proxy/base/json.h"

static tg_log_level_t min_level = TG_LOG_INFO; /* written once at start-up */
static atomic_int log_format = TG_LOG_TEXT;   /* the config's, set at load and reload */

void tg_log_set_format(tg_log_format_t format)
{
    atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

void tg_log_set_level(tg_log_level_t level)
{
    min_level = level;
}

int tg_log_parse_level(const char *s, tg_log_level_t *out)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (tg_log_level_t)i;
            return 0;
        }
    return -1;
}

int tg_log_enabled(tg_log_level_t level)
{
    return level >= min_level;
}

/* Info and warn lines are what clients and upstreams can make a worker
 * write (a bad request, a dead upstream): each thread writes at most
 * TG_LOG_BURST of them a second, and says how many it held back. Errors
 * and debug output (asked for) are never held back. The budget is the
 * thread's own: no lock, and one noisy worker cannot silence another. */
static _Thread_local struct {
    uint64_t second;
    unsigned lines;
    unsigned long suppressed;
} budget;

static void emit(tg_log_level_t level, const char *msg);

static int within_budget(tg_log_level_t level)
{
    if (level != TG_LOG_INFO && level != TG_LOG_WARN)
        return 1;
    uint64_t second = tg_clock_coarse_ms() / 1000;
    if (second != budget.second) {
        budget.second = second;
        budget.lines = 0;
        if (budget.suppressed) {
            char note[96];
            snprintf(note, sizeof(note), "(%lu log line(s) suppressed in the last burst)", budget.suppressed);
            budget.suppressed = 0;
            emit(TG_LOG_WARN, note);
        }
    }
    if (budget.lines >= TG_LOG_BURST) {
        budget.suppressed++;
        return 0;
    }
    budget.lines++;
    return 1;
}

void tg_log(tg_log_level_t level, const char *fmt, ...)
{
    if (level < min_level || !within_budget(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, msg);
}

static void emit(tg_log_level_t level, const char *msg)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == TG_LOG_JSON) {
        char esc[6 * 1024 + 8];
        tg_json_escape(esc, sizeof(esc), msg);
        fprintf(stderr, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"message\":\"%s\"}\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, names[level], esc);
        return;
    }
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900, tm.tm_mon + 1,
            tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level], msg);
}
