/*
 * config.h - the daemon's configuration: an INI file plus command-line overrides.
 *
 * Every key lives in one table (config.c) with its section, type, default, limits and whether a
 * SIGHUP reload may change it. config_load() starts from the defaults, reads the file, then
 * applies "section.key=value" overrides; errors name the file and line (or the override). The
 * struct owns its strings; config_free() releases them. Modules take a const pointer; nothing
 * here is global.
 */
#ifndef FOLIOD_CONFIG_H
#define FOLIOD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum config_verify {
    CONFIG_VERIFY_NONE,
    CONFIG_VERIFY_OPTIONAL,
    CONFIG_VERIFY_REQUIRE,
    CONFIG_VERIFY_MAX
};

struct foliod_config {
    /* [server] */
    char *listen_host;
    int listen_port;
    int max_connections;
    int max_frame;
    int max_inflight;
    int idle_timeout;      /* seconds */
    int handshake_timeout; /* seconds */
    int write_timeout;     /* seconds */
    int request_timeout;   /* seconds to send one whole request line */
    int drain_timeout;     /* seconds */
    /* [tls] */
    char *tls_cert_file;
    char *tls_key_file;
    char *tls_ca_file;
    int tls_verify_client; /* enum config_verify */
    char *tls_min_protocol;
    /* [database] */
    char *db_conninfo;
    int db_pool_size;
    int db_statement_timeout; /* milliseconds */
    int db_connect_timeout;   /* seconds */
    int db_reconnect_min;     /* milliseconds */
    int db_reconnect_max;     /* milliseconds */
    int db_queue_max;
    int db_batch_lanes; /* 0: no group commit */
    int db_batch_max;
    char *db_migrations_dir;
    /* [auth] */
    int auth_scrypt_log_n;
    int auth_scrypt_r;
    int auth_scrypt_p;
    int auth_login_delay; /* milliseconds */
    int auth_max_failures;
    int auth_workers;
    /* [log] */
    char *log_level;
    bool log_access;
};

enum config_type {
    CONFIG_STRING,
    CONFIG_INT,
    CONFIG_BOOL,
    CONFIG_VERIFY,
    CONFIG_TYPE_MAX
};

struct config_key {
    const char *section;
    const char *name;
    enum config_type type;
    size_t offset;
    const char *default_value;
    long min;
    long max;
    bool reloadable;
    const char *help;
};

/* The key table, for documentation checks and reload comparisons. */
const struct config_key *config_keys(size_t *count);

/* Fills every field with its default. Returns false only on allocation failure. */
__attribute__((warn_unused_result)) bool config_init(struct foliod_config *cfg);

/*
 * Parses INI text into cfg (which must have been initialised). `name` is used in errors
 * ("NAME:LINE: message"). Returns false with err filled on the first error.
 */
__attribute__((warn_unused_result)) bool config_parse_text(struct foliod_config *cfg, const char *text,
                                                           const char *name, char *err, size_t errlen);

/* Applies one "section.key=value" override. */
__attribute__((warn_unused_result)) bool config_apply_override(struct foliod_config *cfg, const char *arg,
                                                               char *err, size_t errlen);

/* Defaults, then the file (when path is not NULL), then the overrides, then validation. */
__attribute__((warn_unused_result)) bool config_load(struct foliod_config *cfg, const char *path,
                                                     char *const *overrides, int noverrides,
                                                     char *err, size_t errlen);

/* Cross-key checks (e.g. reconnect_min <= reconnect_max). */
__attribute__((warn_unused_result)) bool config_validate(const struct foliod_config *cfg, char *err,
                                                         size_t errlen);

/* Names of keys that differ between a and b but cannot change on reload; writes a
 * comma-separated list into out (empty when none). */
void config_unreloadable_changes(const struct foliod_config *a, const struct foliod_config *b,
                                 char *out, size_t outlen);

void config_free(struct foliod_config *cfg);

const char *config_verify_str(int v);

#endif
