/*
 * db.h - the asynchronous PostgreSQL pool inside the event loop.
 *
 * A fixed number of libpq connections, each driven by events on its socket (non-blocking
 * connect with PQconnectPoll, PQsendQueryParams, PQflush, PQconsumeInput, PQisBusy,
 * PQgetResult). Queries wait in one FIFO queue when every connection is busy. A broken
 * connection is reconnected with exponential backoff; while no connection is up, queries fail
 * at once with DB_UNAVAILABLE instead of waiting. Nothing here blocks the loop.
 *
 * A query's callback runs exactly once, always from the event loop and never from inside
 * db_query(). It runs only after PostgreSQL reported the statement's transaction finished
 * (ReadyForQuery), so an answer built from it is sent after commit. The PGresult in the
 * db_result belongs to the pool and is cleared after the callback returns.
 *
 * Lifecycle: db_pool_new() -> db_query()... -> db_pool_free() (fails what is queued).
 */
#ifndef FOLIOD_DB_H
#define FOLIOD_DB_H

#include <stdbool.h>

#include <libpq-fe.h>

struct event_base;
struct foliod_config;

enum db_status {
    DB_OK,
    DB_UNAVAILABLE, /* no connection, connection lost, or queue full: retryable */
    DB_ERROR,       /* the statement failed: sqlstate and message say why */
    DB_STATUS_MAX
};

struct db_result {
    enum db_status status;
    PGresult *res;         /* DB_OK: the statement's result; else NULL */
    const char *sqlstate;  /* DB_ERROR: five characters; else "" */
    const char *message;   /* DB_ERROR / DB_UNAVAILABLE: primary message */
    const char *detail;    /* DB_ERROR: detail or "" */
    const char *hint;      /* DB_ERROR: hint or "" */
};

typedef void (*db_done_fn)(void *arg, const struct db_result *r);

struct db_pool;

const char *db_status_str(enum db_status s);

struct db_pool *db_pool_new(struct event_base *base, const struct foliod_config *cfg);
void db_pool_free(struct db_pool *pool);

/* Applies the reloadable settings (timeouts, backoff, queue length). */
void db_pool_reconfigure(struct db_pool *pool, const struct foliod_config *cfg);

/* True while at least one connection is established. */
bool db_pool_up(const struct db_pool *pool);

/* Connections open and queries waiting, for server.info and logs. */
void db_pool_stats(const struct db_pool *pool, int *open, int *busy, int *queued);

/*
 * Queues sql with text parameters (copied). The callback always runs later, exactly once.
 * Returns false only on allocation failure (then the callback never runs).
 */
__attribute__((warn_unused_result)) bool db_query(struct db_pool *pool, const char *sql, int nparams,
                                                  const char *const *params, db_done_fn done,
                                                  void *arg);

#endif
