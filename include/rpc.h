/*
 * rpc.h - the JSON-RPC 2.0 envelope, parameter validation, the method table and dispatch.
 *
 * rpc_parse_request() and rpc_validate_params() are pure (no I/O) so they can be unit-tested
 * and fuzzed. rpc_dispatch() takes one frame from a connection, answers protocol errors itself,
 * checks the caller's role, validates the parameters against the method's table entry and hands
 * an rpc_call to the handler. A handler finishes the call exactly once, now or later, with
 * rpc_reply() or rpc_fail(); both free the call. A call holds a reference on its connection, so
 * a connection that closed meanwhile simply drops the answer (the work, e.g. a commit, stands).
 */
#ifndef FOLIOD_RPC_H
#define FOLIOD_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct conn;
struct db_result;

enum rpc_error_code {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_INTERNAL_ERROR = -32603,
    RPC_DOMAIN_ERROR = -32000,
};

enum rpc_ptype {
    RPC_P_STRING, /* min/max bound the length in bytes */
    RPC_P_INT,    /* min/max bound the value */
    RPC_P_AMOUNT, /* integer minor units within +-RPC_AMOUNT_LIMIT; min/max narrow it ({0,0}: any) */
    RPC_P_BOOL,
    RPC_P_OBJECT,
    RPC_P_ARRAY,  /* min/max bound the number of elements */
    RPC_P_DATE,   /* "YYYY-MM-DD", a real calendar date */
    RPC_P_AMOUNT_OR_NULL, /* an amount as RPC_P_AMOUNT, or null (e.g. "no credit limit") */
    RPC_P_MAX
};

/* One named parameter; a table ends with a {NULL} entry. */
struct rpc_param {
    const char *name;
    enum rpc_ptype type;
    bool required;
    long long min;
    long long max;
};

/* Money never exceeds this many minor units in one field (10 billion in major units). */
#define RPC_AMOUNT_LIMIT 1000000000000LL

struct rpc_request {
    json_t *root;       /* owned; release with rpc_request_clear() */
    json_t *id;         /* borrowed from root; NULL for a notification or when unusable */
    const char *method; /* borrowed from root */
    json_t *params;     /* borrowed from root; an object (empty when absent) */
    bool notification;
};

/*
 * Parses one frame. Returns 0 and fills req, or a JSON-RPC error code (RPC_PARSE_ERROR or
 * RPC_INVALID_REQUEST) with msg filled and req->id set when the request had a usable id. The
 * caller calls rpc_request_clear() in both cases.
 */
int rpc_parse_request(const char *text, size_t len, struct rpc_request *req, char *msg,
                      size_t msglen);
void rpc_request_clear(struct rpc_request *req);

/* Checks params against spec: required members present, types and bounds, no unknown members.
 * On failure fills field (the offending member) and msg. */
__attribute__((warn_unused_result)) bool rpc_validate_params(const json_t *params,
                                                             const struct rpc_param *spec,
                                                             char *field, size_t fieldlen,
                                                             char *msg, size_t msglen);

/* Response objects; both steal their json_t arguments (id is borrowed and copied). */
json_t *rpc_make_result(json_t *id, json_t *result);
json_t *rpc_make_error(json_t *id, int code, const char *message, json_t *data);
/* A domain error's data: {"reason": reason} plus "retryable": true when asked. */
json_t *rpc_error_data(const char *reason, bool retryable);

struct rpc_call;
typedef void (*rpc_handler_fn)(struct rpc_call *call);

enum rpc_flag {
    RPC_F_HASH_PASSWORDS = 1u << 0, /* hash "password" members before the handler runs */
    RPC_F_POS_ANSWER = 1u << 1,     /* POS method: every outcome is a result with a FIAS status
                                     * (bad params: UR, database down: RY), see docs/pos.md */
    RPC_F_BATCH = 1u << 2,          /* a posting: written with others in one transaction
                                     * (sqlcall.h), each answered on its own */
};

struct rpc_method {
    const char *name;
    rpc_handler_fn handler;
    unsigned roles; /* ROLE_BIT()s allowed */
    unsigned flags;
    const struct rpc_param *params;
    const char *sql; /* for SQL-backed handlers: the one statement they run */
};

const struct rpc_method *rpc_methods(size_t *count);
const struct rpc_method *rpc_method_find(const char *name);

struct rpc_call {
    struct conn *conn; /* referenced */
    const struct rpc_method *method;
    json_t *id;        /* owned */
    json_t *params;    /* owned */
    uint64_t start_us;
    void *state;       /* handler-private, freed by the handler before it finishes */
};

void rpc_dispatch(struct conn *conn, const char *line, size_t len);

/* Finish a call. Both free the call and steal their json_t arguments. */
void rpc_reply(struct rpc_call *call, json_t *result);
/* rpc_reply() with the result as text: text[0, len), JSON on one line (PostgreSQL's jsonb
 * output), sent as it is. */
void rpc_reply_text(struct rpc_call *call, const char *text, size_t len);
void rpc_fail(struct rpc_call *call, int code, const char *reason, bool retryable,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A POS answer object {"status", "reason", "message"} (docs/pos.md). */
json_t *pos_answer(const char *status, const char *reason, const char *message);
/* Maps a failed database result to the answer (domain error, conflict, db_unavailable...). */
void rpc_fail_db(struct rpc_call *call, const struct db_result *r);

/* The JSON context the SQL API functions receive: who is calling. Caller owns it. */
json_t *rpc_call_context(const struct rpc_call *call);

#endif
