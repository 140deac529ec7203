/*
 * log.c - leveled log lines on standard error.
 *
 * Each line is formatted in full and written with one write(2), so lines from the auth worker
 * threads and the event loop never interleave.
 */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;

static const char *const level_names[LOG_LEVEL_MAX] = {"ERROR", "WARN", "INFO", "DEBUG"};

const char *log_level_str(enum log_level level)
{
    return level < LOG_LEVEL_MAX ? level_names[level] : "?";
}

bool log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i < LOG_LEVEL_MAX; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return true;
    }
    return false;
}

void log_set_level(enum log_level level)
{
    current_level = level;
}

bool log_enabled(enum log_level level)
{
    return level <= current_level;
}

void log_msgv(enum log_level level, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;

    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ %s ", ts.tv_nsec / 1000000,
                  log_level_str(level));
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* A log line is one line: control characters from the peer cannot forge another. */
    for (size_t i = (size_t)n; i < len; i++) {
        if ((unsigned char)line[i] < 0x20)
            line[i] = ' ';
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_msgv(level, fmt, ap);
    va_end(ap);
}
