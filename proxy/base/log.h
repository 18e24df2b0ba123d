/*
 * proxy/base/log.h — leveled logging to stderr. The level is set once at start
 * (before any worker starts) and only read afterwards. One fprintf per line,
 * so lines from different threads never interleave. Info and warn lines
 * are rate-limited per thread (TG_LOG_BURST a second), with a count of
 * what was held back: a client or an upstream cannot flood the log.
 */
#ifndef TG_BASE_LOG_H
#define TG_BASE_LOG_H

typedef enum { TG_LOG_DEBUG = 0, TG_LOG_INFO, TG_LOG_WARN, TG_LOG_ERROR } tg_log_level_t;

#define TG_LOG_BURST 50 /* info + warn lines per thread per second */

void tg_log_set_level(tg_log_level_t level);
/* Parses "debug|info|warn|error"; returns -1 if unknown. */
int tg_log_parse_level(const char *s, tg_log_level_t *out);
int tg_log_enabled(tg_log_level_t level);
void tg_log(tg_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tg_debug(...) do { if (tg_log_enabled(TG_LOG_DEBUG)) tg_log(TG_LOG_DEBUG, __VA_ARGS__); } while (0)
#define tg_info(...) tg_log(TG_LOG_INFO, __VA_ARGS__)
#define tg_warn(...) tg_log(TG_LOG_WARN, __VA_ARGS__)
#define tg_error(...) tg_log(TG_LOG_ERROR, __VA_ARGS__)

#endif
