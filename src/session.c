/*
 * session.c - session.login / session.logout and the server.* methods.
 *
 * A failed login is logged with the user name tried (never the password), answered with one
 * reason for both halves (invalid_credentials), and slowed: the answer waits login_delay times
 * the number of failures on this connection (capped at ten times); after max_failures the
 * connection is closed. A missing user is checked against a dummy hash so that it costs the
 * same time as a wrong password.
 */
#include "session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "auth.h"
#include "conn.h"
#include "db.h"
#include "rpc.h"
#include "server.h"
#include "sqlcall.h"
#include "version.h"

static json_t *iso_now(void)
{
    char buf[40];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

void server_ping(struct rpc_call *call)
{
    struct server *srv = conn_server(call->conn);
    rpc_reply(call, json_pack("{s:b, s:o, s:s}", "pong", 1, "time", iso_now(), "db",
                              db_pool_up(srv->db) ? "up" : "down"));
}

static json_t *identity(struct conn *c)
{
    struct session *s = conn_session(c);
    if (s->role == ROLE_NONE)
        return json_pack("{s:s}", "kind", "anonymous");
    if (s->role == ROLE_OUTLET)
        return json_pack("{s:s, s:s, s:s}", "kind", "outlet", "outlet", s->name, "property",
                         s->property);
    json_t *id = json_pack("{s:s, s:s, s:s}", "kind", "user", "user", s->name, "role",
                           auth_role_str(s->role));
    if (id != NULL)
        json_object_set_new(id, "property", s->property[0] ? json_string(s->property) : json_null());
    return id;
}

static json_t *info_base(struct rpc_call *call)
{
    struct server *srv = conn_server(call->conn);
    int open, busy, queued, waiting, writing;
    long long batched;
    db_pool_stats(srv->db, &open, &busy, &queued);
    sqlbatch_stats(srv->batch, &waiting, &writing, &batched);
    return json_pack(
        "{s:s, s:s, s:i, s:s, s:o, s:o, s:{s:b, s:i, s:i, s:i, s:i, s:i, s:I}, s:I, s:i}", "name",
        "foliod", "version", FOLIOD_VERSION, "protocol", FOLIOD_PROTOCOL, "tls",
        conn_tls_version(call->conn), "identity", identity(call->conn), "time", iso_now(),
        "database", "up", db_pool_up(srv->db), "connections", open, "busy", busy, "queued", queued,
        "postings_waiting", waiting, "batches_writing", writing, "batched", (json_int_t)batched,
        "started_at", (json_int_t)srv->started_at, "clients", srv->nconns);
}

static void info_done_cb(void *arg, const struct db_result *r)
{
    struct rpc_call *call = arg;
    json_t *info = info_base(call);
    if (r->status == DB_OK && PQntuples(r->res) == 1 && !PQgetisnull(r->res, 0, 0)) {
        json_t *extra = json_loads(PQgetvalue(r->res, 0, 0), 0, NULL);
        if (json_is_object(extra) && info != NULL)
            json_object_update(info, extra);
        json_decref(extra);
    }
    rpc_reply(call, info);
}

void server_info(struct rpc_call *call)
{
    if (conn_session(call->conn)->role == ROLE_NONE) {
        rpc_reply(call, info_base(call));
        return;
    }
    json_t *ctx = rpc_call_context(call);
    char *ctx_text = ctx != NULL ? json_dumps(ctx, JSON_COMPACT) : NULL;
    json_decref(ctx);
    const char *params[2] = {ctx_text, "{}"};
    bool queued = ctx_text != NULL &&
                  db_query(conn_server(call->conn)->db,
                           "SELECT api_server_info($1::jsonb, $2::jsonb)", 2, params,
                           info_done_cb, call);
    free(ctx_text);
    if (!queued)
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
}

/* ---- login ---- */

struct login {
    struct rpc_call *call;
    json_t *user; /* the looked-up row, or NULL when the user does not exist */
    struct event *delay;
};

static void login_free(struct login *l)
{
    json_decref(l->user);
    if (l->delay != NULL)
        event_free(l->delay);
    free(l);
}

static void login_refuse_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct login *l = arg;
    struct rpc_call *call = l->call;
    struct conn *c = call->conn;
    struct server *srv = conn_server(c);
    bool close_it = conn_session(c)->failed_logins >= (unsigned)srv->cfg.auth_max_failures;
    login_free(l);
    conn_ref(c);
    rpc_fail(call, RPC_DOMAIN_ERROR, "invalid_credentials", false,
             "unknown user or wrong password");
    if (close_it)
        conn_close_after_flush(c, "too many failed logins");
    conn_unref(c);
}

static void login_verified_cb(void *arg, bool ok, const char *hash)
{
    (void)hash;
    struct login *l = arg;
    struct rpc_call *call = l->call;
    struct conn *c = call->conn;
    struct session *s = conn_session(c);
    const char *name = json_string_value(json_object_get(call->params, "user"));
    bool enabled = l->user != NULL && json_is_true(json_object_get(l->user, "enabled"));
    enum auth_role role = ROLE_NONE;
    const char *role_text = json_string_value(json_object_get(l->user, "role"));
    if (ok && enabled && role_text != NULL && auth_role_parse(role_text, &role) &&
        role != ROLE_NONE && role != ROLE_OUTLET) {
        memset(s, 0, sizeof(*s));
        s->role = role;
        s->user_id = json_integer_value(json_object_get(l->user, "id"));
        s->property_id = json_integer_value(json_object_get(l->user, "property_id"));
        const char *prop = json_string_value(json_object_get(l->user, "property_code"));
        snprintf(s->name, sizeof(s->name), "%s", name);
        snprintf(s->property, sizeof(s->property), "%s", prop != NULL ? prop : "");
        conn_log(c, LOG_LEVEL_INFO, "login as %s (%s)", s->name, auth_role_str(role));
        json_t *res = json_pack("{s:s, s:s}", "user", s->name, "role", auth_role_str(role));
        if (res != NULL)
            json_object_set_new(res, "property", prop != NULL ? json_string(prop) : json_null());
        login_free(l);
        rpc_reply(call, res);
        return;
    }
    s->failed_logins++;
    conn_log(c, LOG_LEVEL_WARN, "failed login for user '%.64s' (%u on this connection)", name,
             s->failed_logins);
    struct server *srv = conn_server(c);
    unsigned factor = s->failed_logins < 10 ? s->failed_logins : 10;
    long ms = (long)srv->cfg.auth_login_delay * (long)factor;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    l->delay = evtimer_new(srv->base, login_refuse_cb, l);
    if (l->delay == NULL || evtimer_add(l->delay, &tv) != 0)
        login_refuse_cb(-1, 0, l);
}

static void login_lookup_cb(void *arg, const struct db_result *r)
{
    struct login *l = arg;
    struct rpc_call *call = l->call;
    if (r->status != DB_OK) {
        login_free(l);
        rpc_fail_db(call, r);
        return;
    }
    if (PQntuples(r->res) == 1 && !PQgetisnull(r->res, 0, 0))
        l->user = json_loads(PQgetvalue(r->res, 0, 0), 0, NULL);
    const char *stored = json_string_value(json_object_get(l->user, "password_hash"));
    const char *password = json_string_value(json_object_get(call->params, "password"));
    struct server *srv = conn_server(call->conn);
    if (!auth_verify_async(srv->auth, password, stored != NULL ? stored : auth_dummy_hash(),
                           login_verified_cb, l)) {
        login_free(l);
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
    }
}

void session_login(struct rpc_call *call)
{
    struct login *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
        return;
    }
    l->call = call;
    const char *params[1] = {json_string_value(json_object_get(call->params, "user"))};
    if (!db_query(conn_server(call->conn)->db, "SELECT auth_user_lookup($1)", 1, params,
                  login_lookup_cb, l)) {
        free(l);
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
    }
}

void session_logout(struct rpc_call *call)
{
    struct session *s = conn_session(call->conn);
    conn_log(call->conn, LOG_LEVEL_INFO, "logout");
    unsigned failures = s->failed_logins;
    memset(s, 0, sizeof(*s));
    s->failed_logins = failures;
    rpc_reply(call, json_pack("{s:b}", "ok", 1));
}
