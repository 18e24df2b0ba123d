/*
 * proxy/base/log.h — leveled logging to stderr, as text or JSON lines. The
 * level is set once at start (before any worker starts) and only read
 * afterwards; the format follows the config (log_format). One fprintf per line,
 * so lines from different threads never interleave. Info and warn lines
 * are rate-limited per thread (TG_LOG_BURST a second), with a count of
 * what was held back: a client or an upstream cannot flood the log.
 */
#ifndef TG_BASE_LOG_H
#define TG_BASE_LOG_H

typedef enum { TG_LOG_DEBUG = 0, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR } tg_log_level_t;

#define TG_LOG_BURST 50 /* info + warn lines per thread per second */

void tg_log_set_level(tg_log_level_t level);

/* text: "TIME LEVEL message"; json: one object a line,
 * {"time":"...","level":"...","message":"..."} (log shippers parse it
 * without patterns). Any thread may log while it changes (a reload). */
typedef enum { TG_LOG_TEXT = 0, TG_LOG_JSON } tg_log_format_t;
void tg_log_set_format(tg_log_format_t format);
/* Parses "debug|info|warn|error"; returns -1 if unknown. */
int tg_log_parse_level(const char *s, tg_log_level_t *out);
int tg_log_enabled(tg_log_level_t level);
void tg_log(tg_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tg_debug(...) do { if (tg_log_enabled(TG_LOG_DEBUG)) tg_log(TG_LOG_DEBUG, __VA_ARGS__); } while (0)
#define tg_info(...) tg_log(TG_LOG_INFO, __VA_ARGS__)
#define tg_warn(...) tg_log(TG_LOG_WARN, __VA_ARGS__)
#define tg_error(...) tg_log(TG_LOG_ERROR, __VA_ARGS__)

#endif
