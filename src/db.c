/*
 * db.c - asynchronous libpq pool driven by libevent.
 *
 * Each connection moves DOWN -> CONNECTING -> IDLE <-> BUSY and back to DOWN when it breaks.
 * While CONNECTING, PQconnectPoll says whether to wait for read or write and we arm a one-shot
 * event for that (the socket may change between polls). Once connected, a persistent read event
 * feeds PQconsumeInput; a write event is added only while PQflush has output left. A query's
 * result is delivered after PQgetResult returns NULL, i.e. after ReadyForQuery, which
 * PostgreSQL sends only once the implicit transaction has committed.
 *
 * Failures never call back from inside db_query(): they go to a "failed" list that a zero-delay
 * event flushes on the next loop turn.
 */
#include "db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"

enum dbc_state {
    DBC_DOWN,
    DBC_CONNECTING,
    DBC_IDLE,
    DBC_BUSY,
    DBC_STATE_MAX
};

static const char *const dbc_state_names[DBC_STATE_MAX] = {"down", "connecting", "idle", "busy"};
static const char *const status_names[DB_STATUS_MAX] = {"ok", "unavailable", "error"};

const char *db_status_str(enum db_status s)
{
    return s < DB_STATUS_MAX ? status_names[s] : "?";
}

struct db_item {
    struct db_item *next;
    const char *sql;
    int nparams;
    char **params;
    db_done_fn done;
    void *arg;
    const char *why; /* for failed items: the message given to the callback */
};

struct db_pool;

struct db_conn {
    struct db_pool *pool;
    int index;
    enum dbc_state state;
    PGconn *pg;
    struct event *io;    /* socket event */
    struct event *timer; /* reconnect backoff, connect timeout or query watchdog */
    int backoff_ms;
    bool want_write;
    struct db_item *item;
    PGresult *result;
};

struct db_pool {
    struct event_base *base;
    struct db_conn *conns;
    int nconns;
    int up;            /* connections IDLE or BUSY */
    bool down;         /* every connection failed since the last success */
    struct db_item *qhead, *qtail;
    int queued;
    struct db_item *fhead, *ftail; /* failed, to call back on the next loop turn */
    struct event *fail_ev;
    char *conninfo;
    char options[64];
    int statement_timeout_ms;
    int connect_timeout_s;
    int reconnect_min_ms;
    int reconnect_max_ms;
    int queue_max;
};

static void dbc_connect(struct db_conn *dc);
static void dbc_down(struct db_conn *dc, const char *why);
static void dbc_send(struct db_conn *dc, struct db_item *it);

static void item_free(struct db_item *it)
{
    for (int i = 0; i < it->nparams; i++)
        free(it->params[i]);
    free(it->params);
    free(it);
}

static void fail_item(struct db_pool *pool, struct db_item *it, const char *why)
{
    it->why = why;
    it->next = NULL;
    if (pool->ftail != NULL)
        pool->ftail->next = it;
    else
        pool->fhead = it;
    pool->ftail = it;
    event_active(pool->fail_ev, EV_TIMEOUT, 1);
}

static void call_unavailable(struct db_item *it)
{
    struct db_result r = {DB_UNAVAILABLE, NULL, "", it->why, "", ""};
    it->done(it->arg, &r);
    item_free(it);
}

static void fail_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_pool *pool = arg;
    struct db_item *it = pool->fhead;
    pool->fhead = pool->ftail = NULL;
    while (it != NULL) {
        struct db_item *next = it->next;
        call_unavailable(it);
        it = next;
    }
}

static struct db_item *queue_pop(struct db_pool *pool)
{
    struct db_item *it = pool->qhead;
    if (it != NULL) {
        pool->qhead = it->next;
        if (pool->qhead == NULL)
            pool->qtail = NULL;
        pool->queued--;
        it->next = NULL;
    }
    return it;
}

static void fail_queue(struct db_pool *pool, const char *why)
{
    struct db_item *it;
    while ((it = queue_pop(pool)) != NULL)
        fail_item(pool, it, why);
}

static void set_timer(struct db_conn *dc, int ms, event_callback_fn cb)
{
    if (dc->timer != NULL)
        event_free(dc->timer);
    dc->timer = evtimer_new(dc->pool->base, cb, dc);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (dc->timer != NULL)
        evtimer_add(dc->timer, &tv);
}

static void clear_timer(struct db_conn *dc)
{
    if (dc->timer != NULL) {
        event_free(dc->timer);
        dc->timer = NULL;
    }
}

static void clear_io(struct db_conn *dc)
{
    if (dc->io != NULL) {
        event_free(dc->io);
        dc->io = NULL;
    }
}

static bool watch(struct db_conn *dc, short what, event_callback_fn cb)
{
    clear_io(dc);
    int sock = PQsocket(dc->pg);
    if (sock < 0)
        return false;
    dc->io = event_new(dc->pool->base, sock, what, cb, dc);
    return dc->io != NULL && event_add(dc->io, NULL) == 0;
}

static void notice_cb(void *arg, const char *message)
{
    struct db_conn *dc = arg;
    /* a WARNING from our SQL says something went a slower way than it should (fl_batch) */
    if (strncmp(message, "WARNING:", 8) == 0)
        log_warn("db[%d]: %.*s", dc->index, (int)strcspn(message, "\n"), message);
    else
        log_debug("db[%d]: %.*s", dc->index, (int)strcspn(message, "\n"), message);
}

/* ---- results ---- */

static void deliver(struct db_conn *dc)
{
    struct db_item *it = dc->item;
    PGresult *res = dc->result;
    dc->item = NULL;
    dc->result = NULL;
    dc->state = DBC_IDLE;
    clear_timer(dc);

    struct db_result r = {DB_OK, res, "", "", "", ""};
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        r.status = DB_ERROR;
        r.res = NULL;
        const char *f;
        r.sqlstate = res != NULL && (f = PQresultErrorField(res, PG_DIAG_SQLSTATE)) ? f : "XX000";
        r.message = res != NULL && (f = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) ? f
                                                                                        : "no result";
        r.detail = res != NULL && (f = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)) ? f : "";
        r.hint = res != NULL && (f = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT)) ? f : "";
    }
    it->done(it->arg, &r);
    PQclear(res);
    item_free(it);
}

static void take_next(struct db_conn *dc)
{
    if (dc->state != DBC_IDLE)
        return;
    struct db_item *it = queue_pop(dc->pool);
    if (it != NULL)
        dbc_send(dc, it);
}

static void io_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct db_conn *dc = arg;
    if (what & EV_WRITE) {
        int f = PQflush(dc->pg);
        if (f < 0) {
            dbc_down(dc, "connection to the database lost");
            return;
        }
        if (f == 0 && dc->want_write) {
            dc->want_write = false;
            if (!watch(dc, EV_READ | EV_PERSIST, io_cb)) {
                dbc_down(dc, "cannot watch database socket");
                return;
            }
        }
    }
    if (!(what & EV_READ))
        return;
    if (!PQconsumeInput(dc->pg)) {
        dbc_down(dc, "connection to the database lost");
        return;
    }
    while (dc->state == DBC_BUSY && !PQisBusy(dc->pg)) {
        PGresult *res = PQgetResult(dc->pg);
        if (res == NULL) {
            deliver(dc);
            take_next(dc);
            return;
        }
        ExecStatusType st = PQresultStatus(res);
        bool is_error = st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK;
        bool have_error = dc->result != NULL && PQresultStatus(dc->result) != PGRES_TUPLES_OK &&
                          PQresultStatus(dc->result) != PGRES_COMMAND_OK;
        if (have_error && !is_error) {
            PQclear(res); /* keep the first error */
        } else {
            PQclear(dc->result);
            dc->result = res;
        }
    }
    if (dc->state == DBC_IDLE) {
        /* Nothing expected: drain what arrived (e.g. a termination notice) and check health. */
        PGresult *res;
        while (!PQisBusy(dc->pg) && (res = PQgetResult(dc->pg)) != NULL)
            PQclear(res);
        if (PQstatus(dc->pg) == CONNECTION_BAD)
            dbc_down(dc, "connection to the database lost");
    }
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_conn *dc = arg;
    log_warn("db[%d]: no answer in time; dropping the connection", dc->index);
    dbc_down(dc, "the database did not answer in time");
}

static void dbc_send(struct db_conn *dc, struct db_item *it)
{
    dc->item = it;
    dc->state = DBC_BUSY;
    dc->result = NULL;
    if (!PQsendQueryParams(dc->pg, it->sql, it->nparams, NULL, (const char *const *)it->params,
                           NULL, NULL, 0)) {
        dbc_down(dc, "cannot send to the database");
        return;
    }
    /* statement_timeout bounds the server side; this bounds a server that vanished. */
    set_timer(dc, dc->pool->statement_timeout_ms + 5000, watchdog_cb);
    int f = PQflush(dc->pg);
    if (f < 0) {
        dbc_down(dc, "cannot send to the database");
        return;
    }
    if (f == 1) {
        dc->want_write = true;
        if (!watch(dc, EV_READ | EV_WRITE | EV_PERSIST, io_cb))
            dbc_down(dc, "cannot watch database socket");
    }
}

/* ---- connection lifecycle ---- */

static void reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dbc_connect(arg);
}

static void dbc_down(struct db_conn *dc, const char *why)
{
    struct db_pool *pool = dc->pool;
    bool was_up = dc->state == DBC_IDLE || dc->state == DBC_BUSY;
    clear_io(dc);
    clear_timer(dc);
    if (dc->pg != NULL) {
        if (was_up || log_enabled(LOG_LEVEL_DEBUG)) {
            const char *m = PQerrorMessage(dc->pg);
            log_msg(was_up ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG, "db[%d] %s: %s: %.*s", dc->index,
                    dbc_state_names[dc->state], why, (int)strcspn(m, "\n"), m);
        }
        PQfinish(dc->pg);
        dc->pg = NULL;
    }
    PQclear(dc->result);
    dc->result = NULL;
    if (dc->item != NULL) {
        /* The outcome is unknown to us: the answer says retry, and idempotency keys make the
         * retry safe. */
        fail_item(pool, dc->item, why);
        dc->item = NULL;
    }
    dc->state = DBC_DOWN;
    if (was_up)
        pool->up--;
    if (pool->up == 0) {
        if (!pool->down)
            log_error("database unavailable: %s", why);
        pool->down = true;
        fail_queue(pool, "database unavailable");
    }
    set_timer(dc, dc->backoff_ms, reconnect_cb);
    dc->backoff_ms = dc->backoff_ms * 2 > pool->reconnect_max_ms ? pool->reconnect_max_ms
                                                                 : dc->backoff_ms * 2;
}

static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dbc_down(arg, "database connect timed out");
}

static void connect_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct db_conn *dc = arg;
    switch (PQconnectPoll(dc->pg)) {
    case PGRES_POLLING_READING:
        if (!watch(dc, EV_READ, connect_poll_cb))
            dbc_down(dc, "cannot watch database socket");
        return;
    case PGRES_POLLING_WRITING:
        if (!watch(dc, EV_WRITE, connect_poll_cb))
            dbc_down(dc, "cannot watch database socket");
        return;
    case PGRES_POLLING_OK:
        break;
    case PGRES_POLLING_FAILED:
    case PGRES_POLLING_ACTIVE:
    default:
        dbc_down(dc, "cannot connect to the database");
        return;
    }
    clear_timer(dc);
    if (PQsetnonblocking(dc->pg, 1) != 0 || !watch(dc, EV_READ | EV_PERSIST, io_cb)) {
        dbc_down(dc, "cannot set up the database connection");
        return;
    }
    PQsetNoticeProcessor(dc->pg, notice_cb, dc);
    struct db_pool *pool = dc->pool;
    dc->state = DBC_IDLE;
    dc->backoff_ms = pool->reconnect_min_ms;
    dc->want_write = false;
    pool->up++;
    if (pool->down)
        log_info("database available again");
    pool->down = false;
    log_debug("db[%d]: connected", dc->index);
    take_next(dc);
}

static void dbc_connect(struct db_conn *dc)
{
    struct db_pool *pool = dc->pool;
    clear_timer(dc);
    clear_io(dc);
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", pool->connect_timeout_s);
    /* after dbname, so that the conninfo it expands cannot change them: results are passed on
     * to clients as the text PostgreSQL sends (sqlcall.c), which must be UTF-8 */
    const char *keys[] = {"dbname",          "client_encoding", "application_name", "options",
                          "connect_timeout", "keepalives",      "keepalives_idle",  NULL};
    const char *vals[] = {pool->conninfo, "UTF8", "foliod", pool->options, timeout, "1", "30",
                          NULL};
    dc->pg = PQconnectStartParams(keys, vals, 1);
    if (dc->pg == NULL || PQstatus(dc->pg) == CONNECTION_BAD) {
        dbc_down(dc, "cannot start a database connection");
        return;
    }
    dc->state = DBC_CONNECTING;
    set_timer(dc, pool->connect_timeout_s * 1000, connect_timeout_cb);
    if (!watch(dc, EV_WRITE, connect_poll_cb))
        dbc_down(dc, "cannot watch database socket");
}

/* ---- pool ---- */

static void apply_config(struct db_pool *pool, const struct foliod_config *cfg)
{
    pool->connect_timeout_s = cfg->db_connect_timeout;
    pool->reconnect_min_ms = cfg->db_reconnect_min;
    pool->reconnect_max_ms = cfg->db_reconnect_max;
    pool->queue_max = cfg->db_queue_max;
}

struct db_pool *db_pool_new(struct event_base *base, const struct foliod_config *cfg)
{
    struct db_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->base = base;
    pool->nconns = cfg->db_pool_size;
    pool->statement_timeout_ms = cfg->db_statement_timeout;
    snprintf(pool->options, sizeof(pool->options), "-c statement_timeout=%d",
             cfg->db_statement_timeout);
    apply_config(pool, cfg);
    pool->conninfo = strdup(cfg->db_conninfo);
    pool->conns = calloc((size_t)pool->nconns, sizeof(*pool->conns));
    pool->fail_ev = event_new(base, -1, 0, fail_cb, pool);
    if (pool->conninfo == NULL || pool->conns == NULL || pool->fail_ev == NULL) {
        free(pool->conninfo);
        free(pool->conns);
        if (pool->fail_ev != NULL)
            event_free(pool->fail_ev);
        free(pool);
        return NULL;
    }
    for (int i = 0; i < pool->nconns; i++) {
        struct db_conn *dc = &pool->conns[i];
        dc->pool = pool;
        dc->index = i;
        dc->backoff_ms = pool->reconnect_min_ms;
        dbc_connect(dc);
    }
    return pool;
}

void db_pool_reconfigure(struct db_pool *pool, const struct foliod_config *cfg)
{
    apply_config(pool, cfg);
}

bool db_pool_up(const struct db_pool *pool)
{
    return pool->up > 0;
}

void db_pool_stats(const struct db_pool *pool, int *open, int *busy, int *queued)
{
    int b = 0;
    for (int i = 0; i < pool->nconns; i++)
        b += pool->conns[i].state == DBC_BUSY;
    *open = pool->up;
    *busy = b;
    *queued = pool->queued;
}

bool db_query(struct db_pool *pool, const char *sql, int nparams, const char *const *params,
              db_done_fn done, void *arg)
{
    struct db_item *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return false;
    it->sql = sql;
    it->done = done;
    it->arg = arg;
    if (nparams > 0) {
        it->params = calloc((size_t)nparams, sizeof(char *));
        if (it->params == NULL) {
            free(it);
            return false;
        }
        for (int i = 0; i < nparams; i++) {
            if (params[i] != NULL && (it->params[i] = strdup(params[i])) == NULL) {
                it->nparams = i;
                item_free(it);
                return false;
            }
        }
        it->nparams = nparams;
    }

    if (pool->up == 0 && pool->down) {
        fail_item(pool, it, "database unavailable");
        return true;
    }
    for (int i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state == DBC_IDLE && pool->qhead == NULL) {
            dbc_send(&pool->conns[i], it);
            return true;
        }
    }
    if (pool->queued >= pool->queue_max) {
        fail_item(pool, it, "database queue full");
        return true;
    }
    if (pool->qtail != NULL)
        pool->qtail->next = it;
    else
        pool->qhead = it;
    pool->qtail = it;
    pool->queued++;
    return true;
}

void db_pool_free(struct db_pool *pool)
{
    if (pool == NULL)
        return;
    for (int i = 0; i < pool->nconns; i++) {
        struct db_conn *dc = &pool->conns[i];
        clear_io(dc);
        clear_timer(dc);
        if (dc->pg != NULL)
            PQfinish(dc->pg);
        PQclear(dc->result);
        if (dc->item != NULL) {
            dc->item->why = "daemon stopping";
            call_unavailable(dc->item);
        }
    }
    struct db_item *it;
    while ((it = queue_pop(pool)) != NULL) {
        it->why = "daemon stopping";
        call_unavailable(it);
    }
    fail_cb(-1, 0, pool);
    event_free(pool->fail_ev);
    free(pool->conns);
    free(pool->conninfo);
    free(pool);
}

