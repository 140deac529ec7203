/*
 * offline.c - --migrate and --import: one-shot commands with blocking libpq.
 *
 * Migrations are files named NNN_name.sql, applied in name order. Each is recorded with the
 * SHA-256 of its text; a file whose text changed after it was applied stops the run, because
 * an applied migration is history and must never be edited (write a new one instead). A
 * session advisory lock keeps two migrators from racing.
 */
#include "offline.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "auth.h"
#include "config.h"
#include "log.h"

#define MIGRATE_LOCK_KEY "7310442"

static PGconn *connect_db(const struct foliod_config *cfg)
{
    PGconn *pg = PQconnectdb(cfg->db_conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        log_error("cannot connect to the database: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    PQsetClientEncoding(pg, "UTF8");
    return pg;
}

static bool exec_ok(PGconn *pg, const char *sql, const char *what)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        log_error("%s: %s", what, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static char *slurp(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        log_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[8192];
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            char *n = realloc(buf, cap);
            if (n == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = n;
        }
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    if (buf == NULL)
        buf = calloc(1, 1);
    else
        buf[len] = '\0';
    *lenp = len;
    return buf;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int migration_filter(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 8 && d->d_name[0] >= '0' && d->d_name[0] <= '9' &&
           strcmp(d->d_name + n - 4, ".sql") == 0;
}

static bool apply_one(PGconn *pg, const char *dir, const char *name, int *applied)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    size_t len = 0;
    char *text = slurp(path, &len);
    if (text == NULL)
        return false;
    char sum[65];
    sha256_hex(text, len, sum);

    bool ok = false;
    const char *p1[1] = {name};
    PGresult *r = PQexecParams(pg, "SELECT sha256 FROM schema_migrations WHERE version = $1", 1,
                               NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("reading schema_migrations: %s", PQresultErrorMessage(r));
        goto out;
    }
    if (PQntuples(r) == 1) {
        if (strcmp(PQgetvalue(r, 0, 0), sum) != 0) {
            log_error("migration %s was changed after it was applied (recorded sha256 %s, file "
                      "%s); applied migrations must never change: add a new one",
                      name, PQgetvalue(r, 0, 0), sum);
            goto out;
        }
        ok = true;
        goto out;
    }
    if (!exec_ok(pg, "BEGIN", "begin"))
        goto out;
    PGresult *mr = PQexec(pg, text);
    if (PQresultStatus(mr) != PGRES_COMMAND_OK && PQresultStatus(mr) != PGRES_TUPLES_OK) {
        log_error("migration %s failed: %s", name, PQresultErrorMessage(mr));
        PQclear(mr);
        (void)exec_ok(pg, "ROLLBACK", "rollback");
        goto out;
    }
    PQclear(mr);
    const char *p2[2] = {name, sum};
    PGresult *ir = PQexecParams(pg,
                                "INSERT INTO schema_migrations (version, sha256) VALUES ($1, $2)",
                                2, NULL, p2, NULL, NULL, 0);
    bool recorded = PQresultStatus(ir) == PGRES_COMMAND_OK;
    if (!recorded)
        log_error("recording %s: %s", name, PQresultErrorMessage(ir));
    PQclear(ir);
    if (!recorded || !exec_ok(pg, "COMMIT", "commit")) {
        (void)exec_ok(pg, "ROLLBACK", "rollback");
        goto out;
    }
    log_info("applied migration %s", name);
    (*applied)++;
    ok = true;
out:
    PQclear(r);
    free(text);
    return ok;
}

bool offline_migrate(const struct foliod_config *cfg)
{
    PGconn *pg = connect_db(cfg);
    if (pg == NULL)
        return false;
    bool ok = false;
    struct dirent **names = NULL;
    int n = -1;
    if (!exec_ok(pg, "SET client_min_messages = warning", "settings") ||
        !exec_ok(pg, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "migration lock") ||
        !exec_ok(pg,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version text PRIMARY KEY,"
                 " sha256 text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 "creating schema_migrations"))
        goto out;
    n = scandir(cfg->db_migrations_dir, &names, migration_filter, alphasort);
    if (n < 0) {
        log_error("%s: %s", cfg->db_migrations_dir, strerror(errno));
        goto out;
    }
    int applied = 0;
    ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = apply_one(pg, cfg->db_migrations_dir, names[i]->d_name, &applied);
    if (ok)
        log_info("migrations: %d applied, %d already in place", applied, n - applied);
out:
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    PQfinish(pg);
    return ok;
}

/* Drops "password" from users whose stored hash already verifies it, so that a re-import
 * changes nothing instead of re-salting every hash. */
static void keep_matching_passwords(PGconn *pg, json_t *doc)
{
    json_t *users = json_object_get(doc, "users");
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u) {
        json_t *pw = json_object_get(u, "password");
        json_t *name = json_object_get(u, "username");
        if (!json_is_string(pw) || !json_is_string(name))
            continue;
        const char *params[1] = {json_string_value(name)};
        PGresult *r = PQexecParams(pg, "SELECT auth_user_lookup($1)", 1, NULL, params, NULL,
                                   NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
            json_t *row = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
            const char *stored = json_string_value(json_object_get(row, "password_hash"));
            if (stored != NULL && auth_verify_password(json_string_value(pw), stored))
                json_object_del(u, "password");
            json_decref(row);
        }
        PQclear(r);
    }
}

bool offline_import(const struct foliod_config *cfg, const char *path)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        log_error("%s:%d: %s", path, jerr.line, jerr.text);
        return false;
    }
    PGconn *pg = connect_db(cfg);
    if (pg == NULL) {
        json_decref(doc);
        return false;
    }
    keep_matching_passwords(pg, doc);
    char err[256];
    struct auth_kdf_params kp = {cfg->auth_scrypt_log_n, cfg->auth_scrypt_r, cfg->auth_scrypt_p};
    if (!auth_hash_members_blocking(doc, &kp, err, sizeof(err))) {
        log_error("%s: %s", path, err);
        json_decref(doc);
        PQfinish(pg);
        return false;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    bool ok = false;
    if (text != NULL) {
        const char *params[2] = {"{\"user\":\"import\",\"role\":\"admin\",\"user_id\":null,"
                                 "\"outlet_id\":null,\"property_id\":null}",
                                 text};
        PGresult *r = PQexecParams(pg, "SELECT api_setup_import($1::jsonb, $2::jsonb)", 2, NULL,
                                   params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            log_info("imported %s: %s", path, PQgetvalue(r, 0, 0));
            ok = true;
        } else {
            const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
            log_error("import of %s failed: %s%s%s", path,
                      PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), detail ? ": " : "",
                      detail ? detail : "");
        }
        PQclear(r);
    }
    PQfinish(pg);
    free(text);
    return ok;
}
