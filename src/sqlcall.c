/*
 * sqlcall.c - the handler for methods that are one SQL API function each.
 *
 * The function runs as one statement, hence one transaction; the answer is built from its
 * jsonb result after the pool has seen the transaction end.
 */
#include "sqlcall.h"

#include <stdlib.h>

#include "conn.h"
#include "db.h"
#include "rpc.h"
#include "server.h"

static void sqlcall_done_cb(void *arg, const struct db_result *r)
{
    struct rpc_call *call = arg;
    if (r->status != DB_OK) {
        rpc_fail_db(call, r);
        return;
    }
    json_t *result = json_null();
    if (PQntuples(r->res) == 1 && PQnfields(r->res) == 1 && !PQgetisnull(r->res, 0, 0)) {
        json_error_t jerr;
        result = json_loads(PQgetvalue(r->res, 0, 0), JSON_DECODE_ANY, &jerr);
        if (result == NULL) {
            conn_log(call->conn, LOG_LEVEL_ERROR, "%s returned invalid JSON: %s",
                     call->method->name, jerr.text);
            rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "internal error");
            return;
        }
    }
    rpc_reply(call, result);
}

void sqlcall_handler(struct rpc_call *call)
{
    json_t *ctx = rpc_call_context(call);
    char *ctx_text = ctx != NULL ? json_dumps(ctx, JSON_COMPACT) : NULL;
    char *params_text = json_dumps(call->params, JSON_COMPACT);
    json_decref(ctx);
    const char *params[2] = {ctx_text, params_text};
    bool queued = ctx_text != NULL && params_text != NULL &&
                  db_query(conn_server(call->conn)->db, call->method->sql, 2, params,
                           sqlcall_done_cb, call);
    free(ctx_text);
    free(params_text);
    if (!queued)
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
}
