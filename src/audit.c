/*
 * audit.c - audit.run, the drivers that step audit runs through the database, the schedule.
 *
 * See audit.h for the API and the lifecycle, docs/audit.md for the steps. A driver exists while
 * this daemon steps one run: at most one query of it is in flight at a time (the claim, a step
 * or the failure record), and a timer spaces out retries. Every callback checks whether the
 * module is closing: then it frees what it owns instead of going on.
 */
#include "audit.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "auth.h"
#include "conn.h"
#include "db.h"
#include "log.h"
#include "rpc.h"
#include "server.h"

#define AUDIT_CLAIM_SQL "SELECT fl_audit_claim($1::jsonb, $2::jsonb, $3, $4)"
#define AUDIT_STEP_SQL "SELECT fl_audit_step($1::bigint, $2)"
#define AUDIT_FAIL_SQL "SELECT fl_audit_fail($1::bigint, $2, $3, $4)"
#define AUDIT_DUE_SQL "SELECT fl_audit_due($1)"

#define AUDIT_FIRST_TICK_MS 2000
#define AUDIT_TICK_MS 30000
#define AUDIT_BUSY_RETRY_MS 200
#define AUDIT_DOWN_RETRY_MS 1000
#define AUDIT_MAX_TRANSIENT 50 /* deadlocks and serialization failures retried in a row */
#define AUDIT_MAX_SUBS 8

struct audit_driver;

struct audit {
    struct server *srv;
    char owner[160];
    struct event *tick;
    struct audit_driver *drivers;
    int pending; /* queries of the schedule in flight (drivers count their own) */
    bool closing;
};

/* One run this daemon is stepping. */
struct audit_driver {
    struct audit *a;
    struct audit_driver *next;
    int64_t run_id;
    int64_t property_id;
    char property[32];
    char business_date[16];
    struct rpc_call *call;             /* audit.run waiting for the first step, or NULL */
    struct conn *subs[AUDIT_MAX_SUBS]; /* referenced: audit.progress goes to them */
    int nsubs;
    struct event *timer;
    bool in_flight;
    int transient;
    int down;
    json_t *last; /* the last answer of fl_audit_step (owned), for the failure path */
};

/* A claim the schedule made (no caller). */
struct audit_sched_claim {
    struct audit *a;
    char property[32];
};

static void driver_step(struct audit_driver *d);

static void audit_maybe_free(struct audit *a)
{
    if (a->closing && a->pending == 0 && a->drivers == NULL)
        free(a);
}

/* ---- answers ---- */

/* A domain error with data: through rpc_fail_db, which merges a JSON hint into data. */
static void fail_with_data(struct rpc_call *call, const char *reason, const char *message,
                           json_t *data)
{
    char *hint = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
    struct db_result r = {DB_ERROR, NULL, "FL000", reason, message, hint != NULL ? hint : ""};
    rpc_fail_db(call, &r);
    free(hint);
    json_decref(data);
}

static json_t *parse_result(const struct db_result *r)
{
    if (r->status != DB_OK || PQntuples(r->res) != 1 || PQgetisnull(r->res, 0, 0))
        return NULL;
    return json_loads(PQgetvalue(r->res, 0, 0), 0, NULL);
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* ---- drivers ---- */

static struct audit_driver *driver_find(struct audit *a, int64_t run_id)
{
    for (struct audit_driver *d = a->drivers; d != NULL; d = d->next)
        if (d->run_id == run_id)
            return d;
    return NULL;
}

static void driver_subscribe(struct audit_driver *d, struct conn *c)
{
    for (int i = 0; i < d->nsubs; i++)
        if (d->subs[i] == c)
            return;
    if (d->nsubs < AUDIT_MAX_SUBS) {
        conn_ref(c);
        d->subs[d->nsubs++] = c;
    }
}

/* Unlinks and frees a driver; the module itself stays (see driver_free). */
static void driver_release(struct audit_driver *d)
{
    struct audit *a = d->a;
    struct audit_driver **pp = &a->drivers;
    while (*pp != NULL && *pp != d)
        pp = &(*pp)->next;
    if (*pp == d)
        *pp = d->next;
    if (d->call != NULL)
        rpc_fail(d->call, RPC_DOMAIN_ERROR, "db_unavailable", true,
                 "the daemon is stopping; audit.run again resumes the audit");
    for (int i = 0; i < d->nsubs; i++)
        conn_unref(d->subs[i]);
    if (d->timer != NULL)
        event_free(d->timer);
    json_decref(d->last);
    free(d);
}

static void driver_free(struct audit_driver *d)
{
    struct audit *a = d->a;
    driver_release(d);
    audit_maybe_free(a);
}

/* audit.progress to the connections that asked for this run. Steals run. */
static void driver_notify(struct audit_driver *d, const char *method, json_t *params)
{
    for (int i = 0; i < d->nsubs; i++)
        if (conn_state(d->subs[i]) == CONN_OPEN)
            conn_notify(d->subs[i], method, json_incref(params));
    json_decref(params);
}

static void broadcast_outlets(struct audit_driver *d, const char *method, const char *next_date)
{
    json_t *params =
        json_pack("{s:s, s:s}", "property", d->property, "business_date", d->business_date);
    if (params == NULL)
        return;
    if (next_date != NULL)
        json_object_set_new(params, "next_business_date", json_string(next_date));
    /* the callers of audit.run (staff) hear it too */
    driver_notify(d, method, json_incref(params));
    server_broadcast(d->a->srv, ROLE_BIT(ROLE_OUTLET), d->property_id, method, params);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    driver_step(arg);
}

static void driver_retry(struct audit_driver *d, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (d->timer == NULL)
        d->timer = evtimer_new(d->a->srv->base, retry_cb, d);
    if (d->timer == NULL || evtimer_add(d->timer, &tv) != 0) {
        log_error("audit %s: cannot arm a timer; the run stays where it is", d->property);
        driver_free(d);
    }
}

/* The run ended here (done, blocked, failed, taken over): answer, notify, forget it. */
static void driver_end(struct audit_driver *d, json_t *run)
{
    const char *state = jstr(run, "state");
    struct rpc_call *call = d->call;
    d->call = NULL;

    if (strcmp(state, "done") == 0) {
        char next[16] = "";
        const char *bd = jstr(run, "business_date");
        /* the new open date: the closed one plus a day */
        struct tm tm = {0};
        if (strptime(bd, "%Y-%m-%d", &tm) != NULL) {
            tm.tm_mday += 1;
            tm.tm_hour = 12;
            time_t t = timegm(&tm);
            gmtime_r(&t, &tm);
            strftime(next, sizeof(next), "%Y-%m-%d", &tm);
        }
        log_info("audit %s: business date %s closed (run %lld)", d->property, d->business_date,
                 (long long)d->run_id);
        if (call != NULL)
            rpc_reply(call, json_incref(run));
        driver_notify(d, "audit.progress", json_incref(run));
        broadcast_outlets(d, "audit.finished", next[0] != '\0' ? next : NULL);
    } else if (strcmp(state, "blocked") == 0) {
        log_warn("audit %s: the pre-checks block the audit of %s (see audit.status)", d->property,
                 d->business_date);
        if (call != NULL)
            fail_with_data(call, "audit_blocked",
                           "the pre-checks block the audit: see data.blocking and data.blockers",
                           json_pack("{s:O, s:O, s:O}", "blocking",
                                     json_object_get(json_object_get(run, "blockers"), "blocking"),
                                     "blockers", json_object_get(run, "blockers"), "run", run));
        driver_notify(d, "audit.progress", json_incref(run));
    } else if (strcmp(state, "taken") == 0) {
        log_info("audit %s: run %lld is driven by %s", d->property, (long long)d->run_id,
                 jstr(run, "owner"));
        if (call != NULL)
            fail_with_data(call, "audit_in_progress", "the audit is running on another daemon",
                           json_pack("{s:{s:O}}", "status", "run", run));
    } else if (strcmp(state, "cancelled") == 0) {
        log_warn("audit %s: run %lld cancelled: %s", d->property, (long long)d->run_id,
                 jstr(json_object_get(run, "error"), "message"));
        if (call != NULL)
            fail_with_data(call, "audit_cancelled",
                           "the date was closed outside the audit: audit.run audits the open date",
                           json_pack("{s:O}", "run", run));
        driver_notify(d, "audit.progress", json_incref(run));
    } else {
        const json_t *err = json_object_get(run, "error");
        log_error("audit %s: run %lld failed in step %s: %s", d->property, (long long)d->run_id,
                  jstr(run, "step"), jstr(err, "message"));
        if (call != NULL) {
            char msg[512];
            snprintf(msg, sizeof(msg), "the audit failed in step %s: %s", jstr(run, "step"),
                     jstr(err, "message"));
            fail_with_data(
                call, "audit_failed", msg,
                json_pack("{s:O, s:O}", "error", json_object_get(run, "error"), "run", run));
        }
        driver_notify(d, "audit.progress", json_incref(run));
    }
    json_decref(run);
    driver_free(d);
}

static void fail_done_cb(void *arg, const struct db_result *r)
{
    struct audit_driver *d = arg;
    d->in_flight = false;
    if (d->a->closing) {
        driver_free(d);
        return;
    }
    json_t *run = parse_result(r);
    if (run == NULL) {
        /* the failure could not even be recorded: the lease runs out and a later audit.run
         * resumes the step */
        run = d->last != NULL ? json_deep_copy(d->last) : json_object();
        json_object_set_new(run, "state", json_string("failed"));
    }
    driver_end(d, run);
}

/* A step failed with an error that a retry will not cure: record it on the run. */
static void driver_fail(struct audit_driver *d, const char *reason, const char *message)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)d->run_id);
    const char *params[4] = {id, d->a->owner, reason, message};
    d->in_flight = true;
    if (!db_query(d->a->srv->db, AUDIT_FAIL_SQL, 4, params, fail_done_cb, d)) {
        d->in_flight = false;
        driver_free(d);
    }
}

static bool transient_sqlstate(const char *st)
{
    return strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0;
}

static void step_done_cb(void *arg, const struct db_result *r)
{
    struct audit_driver *d = arg;
    d->in_flight = false;
    if (d->a->closing) {
        driver_free(d);
        return;
    }
    if (r->status == DB_UNAVAILABLE) {
        /* the step's transaction did not commit, or did: either way the run records it, and
         * the next call finds out */
        if (d->call != NULL) {
            rpc_fail(d->call, RPC_DOMAIN_ERROR, "db_unavailable", true,
                     "database unavailable (%s); the audit goes on when it is back", r->message);
            d->call = NULL;
        }
        if (d->down++ == 0)
            log_warn("audit %s: database unavailable (%s); retrying", d->property, r->message);
        driver_retry(d, AUDIT_DOWN_RETRY_MS);
        return;
    }
    d->down = 0;
    if (r->status == DB_ERROR) {
        if (transient_sqlstate(r->sqlstate) && d->transient++ < AUDIT_MAX_TRANSIENT) {
            driver_retry(d, AUDIT_BUSY_RETRY_MS);
            return;
        }
        char msg[768];
        snprintf(msg, sizeof(msg), "%s%s%s", r->message, r->detail[0] != '\0' ? ": " : "",
                 r->detail);
        const char *reason = strcmp(r->sqlstate, "FL000") == 0 ? r->message : "internal";
        log_error("audit %s: step failed: SQLSTATE %s: %s", d->property, r->sqlstate, msg);
        driver_fail(d, reason, msg);
        return;
    }
    d->transient = 0;
    json_t *run = parse_result(r);
    if (run == NULL) {
        driver_fail(d, "internal", "fl_audit_step returned no run");
        return;
    }
    const char *state = jstr(run, "state");
    if (strcmp(state, "busy") == 0) {
        json_decref(run);
        driver_retry(d, AUDIT_BUSY_RETRY_MS);
        return;
    }
    json_decref(d->last);
    d->last = json_incref(run);
    if (strcmp(state, "running") != 0) {
        driver_end(d, run);
        return;
    }
    if (d->call != NULL) {
        struct rpc_call *call = d->call;
        d->call = NULL;
        rpc_reply(call, json_incref(run));
    }
    driver_notify(d, "audit.progress", run);
    driver_step(d);
}

static void driver_step(struct audit_driver *d)
{
    if (d->a->closing) {
        driver_free(d);
        return;
    }
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)d->run_id);
    const char *params[2] = {id, d->a->owner};
    d->in_flight = true;
    if (!db_query(d->a->srv->db, AUDIT_STEP_SQL, 2, params, step_done_cb, d)) {
        d->in_flight = false;
        log_error("audit %s: out of memory; the run stays where it is", d->property);
        driver_free(d);
    }
}

/* A claim succeeded: drive the run (or say that this daemon drives it already). Steals claim.
 * Returns false when the caller was answered audit_in_progress. */
static bool driver_start(struct audit *a, json_t *claim, struct rpc_call *call)
{
    json_t *run = json_object_get(claim, "run");
    int64_t run_id = json_integer_value(json_object_get(run, "id"));
    struct audit_driver *d = driver_find(a, run_id);
    if (d != NULL) {
        if (call != NULL) {
            driver_subscribe(d, call->conn);
            fail_with_data(call, "audit_in_progress",
                           "the audit is running on this daemon; audit.progress follows it",
                           json_pack("{s:{s:O}}", "status", "run", run));
        }
        json_decref(claim);
        return false;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        if (call != NULL)
            rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
        json_decref(claim);
        return false;
    }
    d->a = a;
    d->run_id = run_id;
    d->property_id = json_integer_value(json_object_get(claim, "property_id"));
    snprintf(d->property, sizeof(d->property), "%s", jstr(claim, "property"));
    snprintf(d->business_date, sizeof(d->business_date), "%s", jstr(run, "business_date"));
    d->next = a->drivers;
    a->drivers = d;
    d->call = call;
    if (call != NULL)
        driver_subscribe(d, call->conn);
    log_info("audit %s: %s the audit of %s (run %lld, step %s)", d->property,
             json_is_true(json_object_get(claim, "created")) ? "starting" : "resuming",
             d->business_date, (long long)d->run_id, jstr(run, "step"));
    broadcast_outlets(d, "audit.started", NULL);
    json_decref(claim);
    driver_step(d);
    return true;
}

/* ---- audit.run ---- */

static void run_claim_cb(void *arg, const struct db_result *r)
{
    struct rpc_call *call = arg;
    struct audit *a = conn_server(call->conn)->audit;
    if (r->status != DB_OK) {
        rpc_fail_db(call, r);
        return;
    }
    json_t *claim = parse_result(r);
    if (claim == NULL) {
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "the claim returned nothing");
        return;
    }
    if (a == NULL || a->closing) {
        json_decref(claim);
        rpc_fail(call, RPC_DOMAIN_ERROR, "db_unavailable", true, "the daemon is stopping");
        return;
    }
    (void)driver_start(a, claim, call);
}

void audit_run(struct rpc_call *call)
{
    struct audit *a = conn_server(call->conn)->audit;
    if (a == NULL) {
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "the audit module is not running");
        return;
    }
    json_t *ctx = rpc_call_context(call);
    char *ctx_text = ctx != NULL ? json_dumps(ctx, JSON_COMPACT) : NULL;
    char *params_text = json_dumps(call->params, JSON_COMPACT);
    json_decref(ctx);
    const char *params[4] = {ctx_text, params_text, a->owner, "request"};
    bool queued = ctx_text != NULL && params_text != NULL &&
                  db_query(a->srv->db, AUDIT_CLAIM_SQL, 4, params, run_claim_cb, call);
    free(ctx_text);
    free(params_text);
    if (!queued)
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
}

/* ---- the schedule ---- */

static void sched_claim_cb(void *arg, const struct db_result *r)
{
    struct audit_sched_claim *sc = arg;
    struct audit *a = sc->a;
    a->pending--;
    if (a->closing) {
        free(sc);
        audit_maybe_free(a);
        return;
    }
    if (r->status != DB_OK) {
        if (r->status == DB_ERROR && strcmp(r->message, "audit_in_progress") == 0)
            log_debug("audit %s: running elsewhere", sc->property);
        else
            log_warn("audit %s: the schedule could not start the audit: %s%s%s", sc->property,
                     r->message, r->detail != NULL && r->detail[0] != '\0' ? ": " : "",
                     r->detail != NULL ? r->detail : "");
        free(sc);
        return;
    }
    json_t *claim = parse_result(r);
    free(sc);
    if (claim != NULL)
        (void)driver_start(a, claim, NULL);
}

static void sched_due_cb(void *arg, const struct db_result *r)
{
    struct audit *a = arg;
    a->pending--;
    if (a->closing) {
        audit_maybe_free(a);
        return;
    }
    json_t *due = parse_result(r);
    size_t i;
    json_t *item;
    json_array_foreach (due, i, item) {
        int64_t pid = json_integer_value(json_object_get(item, "property_id"));
        bool driving = false;
        for (struct audit_driver *d = a->drivers; d != NULL; d = d->next)
            driving = driving || d->property_id == pid;
        if (driving)
            continue;
        struct audit_sched_claim *sc = calloc(1, sizeof(*sc));
        json_t *p = json_pack("{s:s}", "property", jstr(item, "property"));
        char *p_text = p != NULL ? json_dumps(p, JSON_COMPACT) : NULL;
        json_decref(p);
        if (sc == NULL || p_text == NULL) {
            free(sc);
            free(p_text);
            break;
        }
        sc->a = a;
        snprintf(sc->property, sizeof(sc->property), "%s", jstr(item, "property"));
        const char *params[4] = {NULL, p_text, a->owner, "schedule"};
        a->pending++;
        if (!db_query(a->srv->db, AUDIT_CLAIM_SQL, 4, params, sched_claim_cb, sc)) {
            a->pending--;
            free(sc);
        }
        free(p_text);
    }
    json_decref(due);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct audit *a = arg;
    struct timeval tv = {AUDIT_TICK_MS / 1000, 0};
    evtimer_add(a->tick, &tv);
    if (!db_pool_up(a->srv->db) || a->srv->draining)
        return;
    const char *params[1] = {a->owner};
    a->pending++;
    if (!db_query(a->srv->db, AUDIT_DUE_SQL, 1, params, sched_due_cb, a))
        a->pending--;
}

/* ---- lifecycle ---- */

struct audit *audit_new(struct server *srv)
{
    struct audit *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->srv = srv;
    char host[64];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(a->owner, sizeof(a->owner), "%s:%d", host, srv->cfg.listen_port);
    a->tick = evtimer_new(srv->base, tick_cb, a);
    struct timeval tv = {AUDIT_FIRST_TICK_MS / 1000, (AUDIT_FIRST_TICK_MS % 1000) * 1000};
    if (a->tick == NULL || evtimer_add(a->tick, &tv) != 0) {
        if (a->tick != NULL)
            event_free(a->tick);
        free(a);
        return NULL;
    }
    return a;
}

void audit_free(struct audit *a)
{
    if (a == NULL)
        return;
    a->closing = true;
    event_free(a->tick);
    a->tick = NULL;
    struct audit_driver *d = a->drivers;
    while (d != NULL) {
        struct audit_driver *next = d->next;
        /* a driver with a query in flight is freed by its callback */
        if (!d->in_flight)
            driver_release(d);
        d = next;
    }
    audit_maybe_free(a);
}
