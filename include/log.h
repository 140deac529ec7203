/*
 * log.h - one line per event, with a level, on standard error.
 *
 * Lines look like "2026-11-23T18:50:00.123Z INFO message". The level is set at start and on
 * reload. Callers that have a connection use conn_log() (conn.h), which prefixes the
 * connection's identity; this module knows nothing about connections.
 */
#ifndef FOLIOD_LOG_H
#define FOLIOD_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_MAX
};

const char *log_level_str(enum log_level level);
__attribute__((warn_unused_result)) bool log_level_parse(const char *s, enum log_level *out);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msgv(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
