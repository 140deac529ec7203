/*
 * config.c - INI parser, the key table, validation with file:line, reload comparison.
 *
 * Format: "[section]" lines, "key = value" lines, comments starting with ';' or '#', blank lines.
 * Values may be wrapped in double quotes to keep leading or trailing spaces. Unknown sections
 * and keys are errors: a typo must not silently fall back to a default.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define KEY(sec, nm, type, field, def, mn, mx, rel, help)                                          \
    {sec, nm, type, offsetof(struct foliod_config, field), def, mn, mx, rel, help}

static const struct config_key key_table[] = {
    KEY("server", "listen_host", CONFIG_STRING, listen_host, "127.0.0.1", 0, 0, false,
        "address to listen on"),
    KEY("server", "listen_port", CONFIG_INT, listen_port, "7443", 1, 65535, false, "TCP port"),
    KEY("server", "max_connections", CONFIG_INT, max_connections, "10000", 1, 1000000, true,
        "connections accepted at once; more are closed at accept"),
    KEY("server", "max_frame", CONFIG_INT, max_frame, "65536", 1024, 16777216, true,
        "longest request line in bytes"),
    KEY("server", "max_inflight", CONFIG_INT, max_inflight, "32", 1, 10000, true,
        "requests in flight per connection before reading pauses"),
    KEY("server", "idle_timeout", CONFIG_INT, idle_timeout, "300", 1, 86400, true,
        "seconds a connection may stay silent with nothing in flight"),
    KEY("server", "handshake_timeout", CONFIG_INT, handshake_timeout, "10", 1, 600, true,
        "seconds to finish the TLS handshake"),
    KEY("server", "write_timeout", CONFIG_INT, write_timeout, "30", 1, 3600, true,
        "seconds a client may leave answers unread"),
    KEY("server", "request_timeout", CONFIG_INT, request_timeout, "30", 1, 3600, true,
        "seconds a client may take to send one request line once it has started it"),
    KEY("server", "drain_timeout", CONFIG_INT, drain_timeout, "10", 0, 3600, true,
        "seconds to finish in-flight requests on SIGTERM before closing"),
    KEY("tls", "cert_file", CONFIG_STRING, tls_cert_file, "var/tls/server.crt", 0, 0, true,
        "server certificate chain (PEM)"),
    KEY("tls", "key_file", CONFIG_STRING, tls_key_file, "var/tls/server.key", 0, 0, true,
        "server private key (PEM)"),
    KEY("tls", "ca_file", CONFIG_STRING, tls_ca_file, "var/tls/ca.crt", 0, 0, true,
        "CA that signs client (outlet) certificates"),
    KEY("tls", "verify_client", CONFIG_VERIFY, tls_verify_client, "optional", 0, 0, true,
        "none | optional | require"),
    KEY("tls", "min_protocol", CONFIG_STRING, tls_min_protocol, "TLSv1.2", 0, 0, true,
        "TLSv1.2 or TLSv1.3"),
    KEY("database", "conninfo", CONFIG_STRING, db_conninfo, "dbname=foliod", 0, 0, false,
        "libpq connection string"),
    KEY("database", "pool_size", CONFIG_INT, db_pool_size, "8", 1, 256, false,
        "database connections"),
    KEY("database", "statement_timeout", CONFIG_INT, db_statement_timeout, "5000", 100, 600000,
        false, "milliseconds a statement may run"),
    KEY("database", "connect_timeout", CONFIG_INT, db_connect_timeout, "5", 1, 300, true,
        "seconds to establish a database connection"),
    KEY("database", "reconnect_min", CONFIG_INT, db_reconnect_min, "100", 10, 600000, true,
        "first reconnect delay in milliseconds (doubles up to reconnect_max)"),
    KEY("database", "reconnect_max", CONFIG_INT, db_reconnect_max, "5000", 10, 600000, true,
        "longest reconnect delay in milliseconds"),
    KEY("database", "queue_max", CONFIG_INT, db_queue_max, "10000", 1, 10000000, true,
        "queries waiting for a free connection before db_unavailable is answered"),
    KEY("database", "batch_lanes", CONFIG_INT, db_batch_lanes, "2", 0, 256, true,
        "batches of postings written at once (group commit); 0 writes each on its own"),
    KEY("database", "batch_max", CONFIG_INT, db_batch_max, "32", 1, 64, true,
        "postings in one batch at most"),
    KEY("database", "migrations_dir", CONFIG_STRING, db_migrations_dir, "sql", 0, 0, true,
        "directory of NNN_name.sql migrations for --migrate"),
    KEY("auth", "scrypt_log_n", CONFIG_INT, auth_scrypt_log_n, "15", 10, 20, true,
        "scrypt cost: N = 2^scrypt_log_n for new password hashes"),
    KEY("auth", "scrypt_r", CONFIG_INT, auth_scrypt_r, "8", 1, 32, true, "scrypt block size"),
    KEY("auth", "scrypt_p", CONFIG_INT, auth_scrypt_p, "1", 1, 16, true, "scrypt parallelism"),
    KEY("auth", "login_delay", CONFIG_INT, auth_login_delay, "1000", 0, 60000, true,
        "milliseconds added per failed login on a connection before the answer"),
    KEY("auth", "max_failures", CONFIG_INT, auth_max_failures, "5", 1, 1000, true,
        "failed logins after which the connection is closed"),
    KEY("auth", "workers", CONFIG_INT, auth_workers, "2", 1, 64, false,
        "threads that compute password hashes off the event loop"),
    KEY("log", "level", CONFIG_STRING, log_level, "info", 0, 0, true,
        "error | warn | info | debug"),
    KEY("log", "access", CONFIG_BOOL, log_access, "yes", 0, 0, true,
        "one line per request: caller, method, duration, outcome"),
};

const struct config_key *config_keys(size_t *count)
{
    *count = sizeof(key_table) / sizeof(key_table[0]);
    return key_table;
}

static const char *const verify_names[CONFIG_VERIFY_MAX] = {"none", "optional", "require"};

const char *config_verify_str(int v)
{
    return v >= 0 && v < CONFIG_VERIFY_MAX ? verify_names[v] : "?";
}

static bool set_value(struct foliod_config *cfg, const struct config_key *k, const char *value,
                      char *err, size_t errlen)
{
    char *base = (char *)cfg + k->offset;
    switch (k->type) {
    case CONFIG_STRING: {
        char *copy = strdup(value);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        char **slot = (char **)(void *)base;
        free(*slot);
        *slot = copy;
        return true;
    }
    case CONFIG_INT: {
        errno = 0;
        char *end = NULL;
        long v = strtol(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            snprintf(err, errlen, "%s.%s: '%s' is not an integer", k->section, k->name, value);
            return false;
        }
        if (v < k->min || v > k->max) {
            snprintf(err, errlen, "%s.%s: %ld is outside %ld..%ld", k->section, k->name, v, k->min,
                     k->max);
            return false;
        }
        *(int *)(void *)base = (int)v;
        return true;
    }
    case CONFIG_BOOL: {
        bool b;
        if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 ||
            strcmp(value, "1") == 0 || strcasecmp(value, "on") == 0) {
            b = true;
        } else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 ||
                   strcmp(value, "0") == 0 || strcasecmp(value, "off") == 0) {
            b = false;
        } else {
            snprintf(err, errlen, "%s.%s: '%s' is not yes or no", k->section, k->name, value);
            return false;
        }
        *(bool *)(void *)base = b;
        return true;
    }
    case CONFIG_VERIFY:
        for (int i = 0; i < CONFIG_VERIFY_MAX; i++) {
            if (strcasecmp(value, verify_names[i]) == 0) {
                *(int *)(void *)base = i;
                return true;
            }
        }
        snprintf(err, errlen, "%s.%s: '%s' is not one of none, optional, require", k->section,
                 k->name, value);
        return false;
    case CONFIG_TYPE_MAX:
        break;
    }
    snprintf(err, errlen, "%s.%s: bad key type", k->section, k->name);
    return false;
}

static const struct config_key *find_key(const char *section, const char *name)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

static bool section_known(const char *section)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].section, section) == 0)
            return true;
    }
    return false;
}

bool config_init(struct foliod_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    size_t n;
    const struct config_key *keys = config_keys(&n);
    char err[256];
    for (size_t i = 0; i < n; i++) {
        if (!set_value(cfg, &keys[i], keys[i].default_value, err, sizeof(err))) {
            config_free(cfg);
            return false;
        }
    }
    return true;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* Strips a trailing comment that follows whitespace, and unquotes "...". */
static bool clean_value(char *v, char *err, size_t errlen)
{
    if (v[0] == '"') {
        char *close = strchr(v + 1, '"');
        if (close == NULL) {
            snprintf(err, errlen, "unterminated quoted value");
            return false;
        }
        char *rest = trim(close + 1);
        if (*rest != '\0' && *rest != ';' && *rest != '#') {
            snprintf(err, errlen, "text after quoted value");
            return false;
        }
        size_t len = (size_t)(close - v - 1);
        memmove(v, v + 1, len);
        v[len] = '\0';
        return true;
    }
    for (char *p = v; *p != '\0'; p++) {
        if ((*p == ';' || *p == '#') && (p == v || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            break;
        }
    }
    char *t = trim(v);
    memmove(v, t, strlen(t) + 1);
    return true;
}

bool config_parse_text(struct foliod_config *cfg, const char *text, const char *name, char *err,
                       size_t errlen)
{
    char section[64] = "";
    char msg[256];
    int lineno = 0;
    const char *p = text;
    while (*p != '\0') {
        lineno++;
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        char buf[4096];
        if (len >= sizeof(buf)) {
            snprintf(err, errlen, "%s:%d: line too long", name, lineno);
            return false;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        p = eol != NULL ? eol + 1 : p + len;

        char *line = trim(buf);
        if (*line == '\0' || *line == ';' || *line == '#')
            continue;
        if (*line == '[') {
            char *close = strchr(line, ']');
            if (close == NULL || *trim(close + 1) != '\0') {
                snprintf(err, errlen, "%s:%d: malformed section header", name, lineno);
                return false;
            }
            *close = '\0';
            char *sec = trim(line + 1);
            if (!section_known(sec)) {
                snprintf(err, errlen, "%s:%d: unknown section [%s]", name, lineno, sec);
                return false;
            }
            snprintf(section, sizeof(section), "%s", sec);
            continue;
        }
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", name, lineno);
            return false;
        }
        *eq = '\0';
        char *key = trim(line);
        char *value = trim(eq + 1);
        if (section[0] == '\0') {
            snprintf(err, errlen, "%s:%d: key '%s' outside any [section]", name, lineno, key);
            return false;
        }
        const struct config_key *k = find_key(section, key);
        if (k == NULL) {
            snprintf(err, errlen, "%s:%d: unknown key '%s' in [%s]", name, lineno, key, section);
            return false;
        }
        if (!clean_value(value, msg, sizeof(msg)) || !set_value(cfg, k, value, msg, sizeof(msg))) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, msg);
            return false;
        }
    }
    return true;
}

bool config_apply_override(struct foliod_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[4096];
    char msg[256];
    if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf)) {
        snprintf(err, errlen, "command line: override too long");
        return false;
    }
    char *eq = strchr(buf, '=');
    char *dot = strchr(buf, '.');
    if (eq == NULL || dot == NULL || dot > eq) {
        snprintf(err, errlen, "command line: '%s' is not section.key=value", arg);
        return false;
    }
    *dot = '\0';
    *eq = '\0';
    const struct config_key *k = find_key(trim(buf), trim(dot + 1));
    if (k == NULL) {
        snprintf(err, errlen, "command line: unknown key '%s.%s'", trim(buf), trim(dot + 1));
        return false;
    }
    char *value = trim(eq + 1);
    if (!clean_value(value, msg, sizeof(msg)) || !set_value(cfg, k, value, msg, sizeof(msg))) {
        snprintf(err, errlen, "command line: %s", msg);
        return false;
    }
    return true;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *data = NULL;
    size_t len = 0, cap = 0;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + got + 1 > cap) {
            size_t ncap = cap == 0 ? 8192 : cap * 2;
            while (ncap < len + got + 1)
                ncap *= 2;
            if (ncap > (16u << 20)) {
                snprintf(err, errlen, "%s: file too large", path);
                goto fail;
            }
            char *n = realloc(data, ncap);
            if (n == NULL) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            data = n;
            cap = ncap;
        }
        memcpy(data + len, chunk, got);
        len += got;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    if (data == NULL)
        data = calloc(1, 1);
    else
        data[len] = '\0';
    if (data == NULL)
        snprintf(err, errlen, "out of memory");
    return data;
fail:
    fclose(f);
    free(data);
    return NULL;
}

bool config_validate(const struct foliod_config *cfg, char *err, size_t errlen)
{
    enum log_level lvl;
    if (!log_level_parse(cfg->log_level, &lvl)) {
        snprintf(err, errlen, "log.level: '%s' is not error, warn, info or debug", cfg->log_level);
        return false;
    }
    if (cfg->db_reconnect_min > cfg->db_reconnect_max) {
        snprintf(err, errlen, "database.reconnect_min (%d) exceeds reconnect_max (%d)",
                 cfg->db_reconnect_min, cfg->db_reconnect_max);
        return false;
    }
    if (strcmp(cfg->tls_min_protocol, "TLSv1.2") != 0 &&
        strcmp(cfg->tls_min_protocol, "TLSv1.3") != 0) {
        snprintf(err, errlen, "tls.min_protocol: '%s' is not TLSv1.2 or TLSv1.3",
                 cfg->tls_min_protocol);
        return false;
    }
    if (cfg->listen_host[0] == '\0') {
        snprintf(err, errlen, "server.listen_host is empty");
        return false;
    }
    return true;
}

bool config_load(struct foliod_config *cfg, const char *path, char *const *overrides,
                 int noverrides, char *err, size_t errlen)
{
    if (!config_init(cfg)) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    if (path != NULL) {
        char *text = read_file(path, err, errlen);
        if (text == NULL)
            goto fail;
        bool ok = config_parse_text(cfg, text, path, err, errlen);
        free(text);
        if (!ok)
            goto fail;
    }
    for (int i = 0; i < noverrides; i++) {
        if (!config_apply_override(cfg, overrides[i], err, errlen))
            goto fail;
    }
    if (!config_validate(cfg, err, errlen))
        goto fail;
    return true;
fail:
    config_free(cfg);
    return false;
}

static bool key_equal(const struct foliod_config *a, const struct foliod_config *b,
                      const struct config_key *k)
{
    const char *pa = (const char *)a + k->offset;
    const char *pb = (const char *)b + k->offset;
    switch (k->type) {
    case CONFIG_STRING:
        return strcmp(*(char *const *)(const void *)pa, *(char *const *)(const void *)pb) == 0;
    case CONFIG_INT:
    case CONFIG_VERIFY:
        return *(const int *)(const void *)pa == *(const int *)(const void *)pb;
    case CONFIG_BOOL:
        return *(const bool *)(const void *)pa == *(const bool *)(const void *)pb;
    case CONFIG_TYPE_MAX:
        break;
    }
    return false;
}

void config_unreloadable_changes(const struct foliod_config *a, const struct foliod_config *b,
                                 char *out, size_t outlen)
{
    size_t n, used = 0;
    const struct config_key *keys = config_keys(&n);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (keys[i].reloadable || key_equal(a, b, &keys[i]))
            continue;
        int w = snprintf(out + used, outlen - used, "%s%s.%s", used > 0 ? ", " : "",
                         keys[i].section, keys[i].name);
        if (w < 0 || (size_t)w >= outlen - used)
            break;
        used += (size_t)w;
    }
}

void config_free(struct foliod_config *cfg)
{
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        if (keys[i].type == CONFIG_STRING) {
            char **slot = (char **)(void *)((char *)cfg + keys[i].offset);
            free(*slot);
            *slot = NULL;
        }
    }
}
