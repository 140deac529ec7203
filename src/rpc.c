/*
 * rpc.c - JSON-RPC 2.0 envelope, parameter validation, the method table and dispatch.
 *
 * The method table below is the one place that lists every method, its handler, the roles that
 * may call it and its parameters. Decisions (also in docs/protocol.md): requests must use named
 * params (an object); batches are refused with -32600; notifications sent by a client (no id)
 * are ignored, because a folio server must never do work it cannot acknowledge; unknown
 * envelope members and unknown params are refused rather than ignored, so a typo cannot post
 * something other than what was meant.
 */
#include "rpc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "auth.h"
#include "conn.h"
#include "db.h"
#include "server.h"
#include "session.h"
#include "sqlcall.h"

/* ---- parameter tables ---- */

#define P_END {NULL, RPC_P_MAX, false, 0, 0}
#define P_STR(n, req, lo, hi) {n, RPC_P_STRING, req, lo, hi}
#define P_INT(n, req, lo, hi) {n, RPC_P_INT, req, lo, hi}
#define P_BOOL(n, req) {n, RPC_P_BOOL, req, 0, 0}
#define P_OBJ(n, req) {n, RPC_P_OBJECT, req, 0, 0}
#define P_ARR(n, req, hi) {n, RPC_P_ARRAY, req, 0, hi}
#define P_DATE(n, req) {n, RPC_P_DATE, req, 0, 0}

static const struct rpc_param p_none[] = {P_END};
static const struct rpc_param p_login[] = {
    P_STR("user", true, 1, 64),
    P_STR("password", true, 1, 1024),
    P_END,
};
static const struct rpc_param p_property_scope[] = {P_STR("property", false, 1, 16), P_END};
static const struct rpc_param p_property[] = {
    P_STR("code", true, 1, 16),
    P_STR("name", false, 1, 200),
    P_STR("currency", false, 3, 3),
    P_INT("minor_units", false, 0, 4),
    P_STR("timezone", false, 1, 64),
    P_DATE("business_date", false),
    P_STR("audit_time", false, 4, 8),
    P_OBJ("settings", false),
    P_END,
};
static const struct rpc_param p_room[] = {
    P_STR("property", false, 1, 16),
    P_STR("number", true, 1, 16),
    P_STR("room_type", false, 1, 32),
    P_INT("floor", false, -10, 500),
    P_STR("status", false, 1, 32),
    P_END,
};
static const struct rpc_param p_room_list[] = {
    P_STR("property", false, 1, 16),
    P_STR("status", false, 1, 32),
    P_END,
};
static const struct rpc_param p_trx_code[] = {
    P_STR("property", false, 1, 16),
    P_STR("code", true, 1, 16),
    P_STR("description", false, 1, 200),
    P_STR("department", false, 1, 32),
    P_STR("kind", false, 1, 16),
    P_STR("payment_method", false, 1, 32),
    P_BOOL("enabled", false),
    P_ARR("rules", false, 16),
    P_END,
};
static const struct rpc_param p_outlet[] = {
    P_STR("property", false, 1, 16),
    P_STR("code", true, 1, 16),
    P_STR("name", false, 1, 200),
    P_STR("cert_fingerprint", false, 0, 64),
    P_STR("cert_cn", false, 0, 64),
    P_BOOL("enabled", false),
    P_OBJ("policy", false),
    P_END,
};
static const struct rpc_param p_user[] = {
    P_STR("username", true, 1, 64),
    P_STR("password", false, 1, 1024),
    P_STR("role", false, 1, 16),
    P_STR("property", false, 0, 16),
    P_STR("full_name", false, 0, 200),
    P_BOOL("enabled", false),
    P_END,
};
static const struct rpc_param p_user_list[] = {
    P_STR("property", false, 1, 16),
    P_STR("role", false, 1, 16),
    P_END,
};
static const struct rpc_param p_import[] = {
    P_STR("comment", false, 0, 10000),
    P_ARR("properties", false, 100),
    P_ARR("users", false, 10000),
    P_END,
};


/* guest accounting (docs/accounting.md) */
#define P_ID(n, req) {n, RPC_P_INT, req, 1, 9007199254740991LL}
#define P_AMT(n, req, lo, hi) {n, RPC_P_AMOUNT, req, lo, hi}
static const struct rpc_param p_stay_id[] = {P_ID("stay_id", true), P_END};
static const struct rpc_param p_check_in[] = {
    P_STR("property", false, 1, 16),
    P_STR("room", true, 1, 16),
    P_OBJ("guest", false),
    P_ID("guest_id", false),
    P_DATE("arrival", false),
    P_DATE("departure", true),
    P_INT("adults", false, 1, 20),
    P_INT("children", false, 0, 20),
    P_AMT("rate", false, 0, RPC_AMOUNT_LIMIT),
    P_STR("rate_code", false, 1, 16),
    P_AMT("credit_limit", false, 0, RPC_AMOUNT_LIMIT),
    P_BOOL("no_post", false),
    P_STR("group", false, 1, 16),
    P_BOOL("route_to_master", false),
    P_ID("share_with", false),
    P_STR("notes", false, 0, 1000),
    P_END,
};
static const struct rpc_param p_stay_list[] = {
    P_STR("property", false, 1, 16),
    P_STR("view", false, 1, 16),
    P_DATE("date", false),
    P_END,
};
static const struct rpc_param p_stay_update[] = {
    P_ID("stay_id", true),
    P_DATE("departure", false),
    P_AMT("rate", false, 0, RPC_AMOUNT_LIMIT),
    P_STR("rate_code", false, 1, 16),
    {"credit_limit", RPC_P_AMOUNT_OR_NULL, false, 0, RPC_AMOUNT_LIMIT},
    P_BOOL("no_post", false),
    P_INT("adults", false, 1, 20),
    P_INT("children", false, 0, 20),
    P_STR("notes", false, 0, 1000),
    P_OBJ("guest", false),
    P_END,
};
static const struct rpc_param p_stay_move[] = {
    P_ID("stay_id", true),
    P_STR("room", true, 1, 16),
    P_END,
};
static const struct rpc_param p_check_out[] = {
    P_ID("stay_id", true),
    P_ARR("payments", false, 16),
    P_END,
};
static const struct rpc_param p_folio_id[] = {P_ID("folio_id", true), P_END};
static const struct rpc_param p_folio_open[] = {
    P_STR("property", false, 1, 16),
    P_STR("type", true, 1, 16),
    P_STR("name", false, 1, 200),
    P_ID("stay_id", false),
    P_END,
};
static const struct rpc_param p_folio_list[] = {
    P_STR("property", false, 1, 16),
    P_STR("type", false, 1, 16),
    P_STR("status", false, 1, 16),
    P_ID("stay_id", false),
    P_END,
};
static const struct rpc_param p_folio_post[] = {
    P_ID("folio_id", false),
    P_ID("stay_id", false),
    P_INT("window", false, 1, 8),
    P_STR("code", true, 1, 16),
    P_AMT("amount", true, 0, 0),
    P_INT("quantity", false, 1, 999),
    P_STR("description", false, 0, 200),
    P_STR("reference", false, 0, 64),
    P_END,
};
static const struct rpc_param p_folio_pay[] = {
    P_ID("folio_id", false),
    P_ID("stay_id", false),
    P_INT("window", false, 1, 8),
    P_STR("method", false, 1, 32),
    P_STR("code", false, 1, 16),
    P_AMT("amount", true, 0, 0),
    P_STR("description", false, 0, 200),
    P_STR("reference", false, 0, 64),
    P_END,
};
static const struct rpc_param p_folio_void[] = {
    P_ID("posting_id", true),
    P_STR("reason", false, 0, 200),
    P_END,
};
static const struct rpc_param p_folio_adjust[] = {
    P_ID("posting_id", true),
    P_AMT("amount", false, 1, RPC_AMOUNT_LIMIT),
    P_STR("reason", true, 1, 200),
    P_END,
};
static const struct rpc_param p_folio_transfer[] = {
    P_ARR("posting_ids", true, 500),
    P_ID("to_folio_id", false),
    P_INT("to_window", false, 1, 8),
    P_STR("reason", false, 0, 200),
    P_END,
};
static const struct rpc_param p_transfer_balance[] = {
    P_ID("from_folio_id", true),
    P_ID("to_folio_id", true),
    P_AMT("amount", false, 1, RPC_AMOUNT_LIMIT),
    P_STR("reason", false, 0, 200),
    P_END,
};
static const struct rpc_param p_statement[] = {
    P_ID("folio_id", true),
    P_STR("format", false, 1, 8),
    P_END,
};
static const struct rpc_param p_routing_set[] = {
    P_ID("stay_id", true),
    P_STR("code", false, 1, 16),
    P_STR("department", false, 1, 32),
    P_ID("to_folio_id", false),
    P_INT("to_window", false, 1, 8),
    P_BOOL("to_master", false),
    P_END,
};
static const struct rpc_param p_routing_clear[] = {P_ID("routing_id", true), P_END};
static const struct rpc_param p_group_create[] = {
    P_STR("property", false, 1, 16),
    P_STR("code", true, 1, 16),
    P_STR("name", true, 1, 200),
    P_DATE("arrival", false),
    P_DATE("departure", true),
    P_AMT("credit_limit", false, 0, RPC_AMOUNT_LIMIT),
    P_END,
};
static const struct rpc_param p_group_get[] = {
    P_STR("property", false, 1, 16),
    P_ID("group_id", false),
    P_STR("code", false, 1, 16),
    P_END,
};
static const struct rpc_param p_group_check_out[] = {
    P_ID("group_id", true),
    P_ARR("payments", false, 16),
    P_END,
};


/* POS interface (docs/pos.md) */
static const struct rpc_param p_pos_inquiry[] = {
    P_STR("room", false, 1, 16),
    P_STR("name", false, 1, 64),
    P_END,
};
static const struct rpc_param p_pos_post[] = {
    P_STR("key", true, 1, 64),
    P_STR("room", true, 1, 16),
    P_ID("stay_id", false),
    P_STR("guest_name", false, 1, 64),
    P_STR("check", true, 1, 32),
    P_INT("covers", false, 0, 999),
    P_STR("table", false, 0, 16),
    P_ARR("subtotals", true, 9),
    P_AMT("tax", false, 0, RPC_AMOUNT_LIMIT),
    P_AMT("service", false, 0, RPC_AMOUNT_LIMIT),
    P_AMT("tip", false, 0, RPC_AMOUNT_LIMIT),
    P_AMT("total", true, 0, RPC_AMOUNT_LIMIT),
    P_ARR("items", false, 200),
    P_STR("description", false, 0, 200),
    P_END,
};
static const struct rpc_param p_pos_status[] = {P_STR("key", true, 1, 64), P_END};
static const struct rpc_param p_pos_postings[] = {P_DATE("business_date", false), P_END};


/* cashier shifts and city ledger (docs/cashier.md) */
static const struct rpc_param p_cashier_open[] = {
    P_AMT("float", false, 0, RPC_AMOUNT_LIMIT),
    P_STR("property", false, 1, 16),
    P_END,
};
static const struct rpc_param p_cashier_close[] = {
    P_ID("shift_id", false),
    P_AMT("declared", true, 0, RPC_AMOUNT_LIMIT),
    P_STR("note", false, 0, 200),
    P_END,
};
static const struct rpc_param p_cashier_report[] = {
    P_ID("shift_id", false),
    P_STR("user", false, 1, 64),
    P_END,
};
static const struct rpc_param p_ar_create[] = {
    P_STR("property", false, 1, 16),
    P_STR("code", true, 1, 16),
    P_STR("name", true, 1, 200),
    P_STR("kind", false, 1, 16),
    P_OBJ("contact", false),
    P_AMT("credit_limit", false, 0, RPC_AMOUNT_LIMIT),
    P_END,
};
static const struct rpc_param p_ar_get[] = {
    P_STR("property", false, 1, 16),
    P_ID("account_id", false),
    P_STR("code", false, 1, 16),
    P_END,
};
static const struct rpc_param p_ar_transfer[] = {
    P_ID("folio_id", true),
    P_STR("account", true, 1, 16),
    P_AMT("amount", false, 1, RPC_AMOUNT_LIMIT),
    P_STR("reference", false, 0, 64),
    P_END,
};
static const struct rpc_param p_ar_pay[] = {
    P_STR("property", false, 1, 16),
    P_STR("account", true, 1, 16),
    P_AMT("amount", true, 1, RPC_AMOUNT_LIMIT),
    P_STR("method", true, 1, 32),
    P_STR("reference", false, 0, 64),
    P_ARR("allocations", false, 500),
    P_END,
};
static const struct rpc_param p_ar_aging[] = {
    P_STR("property", false, 1, 16),
    P_STR("account", false, 1, 16),
    P_DATE("date", false),
    P_END,
};

/* night audit and reports (docs/audit.md) */
static const struct rpc_param p_audit_run[] = {
    P_STR("property", false, 1, 16),
    P_DATE("date", false),
    P_END,
};
static const struct rpc_param p_audit_report[] = {
    P_STR("property", false, 1, 16),
    P_DATE("date", true),
    P_STR("kind", false, 1, 32),
    P_END,
};
static const struct rpc_param p_report[] = {
    P_STR("property", false, 1, 16),
    P_DATE("date", false),
    P_END,
};

/* ---- the method table ---- */

#define R(x) ROLE_BIT(ROLE_##x)
#define SQL(fn) "SELECT " fn "($1::jsonb, $2::jsonb)"
#define FD (R(CASHIER) | R(MANAGER)) /* the front desk */

static const struct rpc_method methods[] = {
    {"server.ping", server_ping, ROLES_ANY, 0, p_none, NULL},
    {"server.info", server_info, ROLES_ANY, 0, p_none, NULL},
    {"session.login", session_login, R(NONE) | ROLES_STAFF, 0, p_login, NULL},
    {"session.logout", session_logout, ROLES_STAFF, 0, p_none, NULL},

    {"property.create", sqlcall_handler, R(ADMIN), 0, p_property, SQL("api_property_create")},
    {"property.update", sqlcall_handler, R(ADMIN), 0, p_property, SQL("api_property_update")},
    {"property.list", sqlcall_handler, ROLES_STAFF, 0, p_none, SQL("api_property_list")},
    {"room.create", sqlcall_handler, R(MANAGER) | R(ADMIN), 0, p_room, SQL("api_room_create")},
    {"room.update", sqlcall_handler, R(MANAGER) | R(ADMIN), 0, p_room, SQL("api_room_update")},
    {"room.list", sqlcall_handler, ROLES_STAFF, 0, p_room_list, SQL("api_room_list")},
    {"trx_code.create", sqlcall_handler, R(MANAGER) | R(ADMIN), 0, p_trx_code,
     SQL("api_trx_code_create")},
    {"trx_code.update", sqlcall_handler, R(MANAGER) | R(ADMIN), 0, p_trx_code,
     SQL("api_trx_code_update")},
    {"trx_code.list", sqlcall_handler, ROLES_STAFF, 0, p_property_scope,
     SQL("api_trx_code_list")},
    {"outlet.create", sqlcall_handler, R(MANAGER) | R(ADMIN), 0, p_outlet,
     SQL("api_outlet_create")},
    {"outlet.update", sqlcall_handler, R(MANAGER) | R(ADMIN), 0, p_outlet,
     SQL("api_outlet_update")},
    {"outlet.list", sqlcall_handler, R(AUDITOR) | R(MANAGER) | R(ADMIN), 0, p_property_scope,
     SQL("api_outlet_list")},
    {"user.create", sqlcall_handler, R(ADMIN), RPC_F_HASH_PASSWORDS, p_user,
     SQL("api_user_create")},
    {"user.update", sqlcall_handler, R(ADMIN), RPC_F_HASH_PASSWORDS, p_user,
     SQL("api_user_update")},
    {"user.list", sqlcall_handler, R(ADMIN), 0, p_user_list, SQL("api_user_list")},
    {"setup.import", sqlcall_handler, R(ADMIN), RPC_F_HASH_PASSWORDS, p_import,
     SQL("api_setup_import")},

    {"stay.check_in", sqlcall_handler, FD, 0, p_check_in, SQL("api_stay_check_in")},
    {"stay.get", sqlcall_handler, ROLES_STAFF, 0, p_stay_id, SQL("api_stay_get")},
    {"stay.list", sqlcall_handler, ROLES_STAFF, 0, p_stay_list, SQL("api_stay_list")},
    {"stay.update", sqlcall_handler, FD, 0, p_stay_update, SQL("api_stay_update")},
    {"stay.move", sqlcall_handler, FD, 0, p_stay_move, SQL("api_stay_move")},
    {"stay.check_out", sqlcall_handler, FD, 0, p_check_out, SQL("api_stay_check_out")},
    {"stay.reinstate", sqlcall_handler, R(MANAGER), 0, p_stay_id, SQL("api_stay_reinstate")},
    {"group.create", sqlcall_handler, FD, 0, p_group_create, SQL("api_group_create")},
    {"group.get", sqlcall_handler, ROLES_STAFF, 0, p_group_get, SQL("api_group_get")},
    {"group.check_out", sqlcall_handler, FD, 0, p_group_check_out, SQL("api_group_check_out")},
    {"folio.open", sqlcall_handler, FD, 0, p_folio_open, SQL("api_folio_open")},
    {"folio.get", sqlcall_handler, ROLES_STAFF, 0, p_folio_id, SQL("api_folio_get")},
    {"folio.list", sqlcall_handler, ROLES_STAFF, 0, p_folio_list, SQL("api_folio_list")},
    {"folio.post", sqlcall_handler, FD, RPC_F_BATCH, p_folio_post, SQL("api_folio_post")},
    {"folio.pay", sqlcall_handler, FD, 0, p_folio_pay, SQL("api_folio_pay")},
    {"folio.void", sqlcall_handler, FD, 0, p_folio_void, SQL("api_folio_void")},
    {"folio.adjust", sqlcall_handler, R(MANAGER), 0, p_folio_adjust, SQL("api_folio_adjust")},
    {"folio.transfer", sqlcall_handler, FD, 0, p_folio_transfer, SQL("api_folio_transfer")},
    {"folio.transfer_balance", sqlcall_handler, FD, 0, p_transfer_balance,
     SQL("api_folio_transfer_balance")},
    {"folio.statement", sqlcall_handler, ROLES_STAFF, 0, p_statement, SQL("api_folio_statement")},
    {"folio.close", sqlcall_handler, FD, 0, p_folio_id, SQL("api_folio_close")},
    {"folio.reopen", sqlcall_handler, R(MANAGER), 0, p_folio_id, SQL("api_folio_reopen")},
    {"routing.set", sqlcall_handler, FD, 0, p_routing_set, SQL("api_routing_set")},
    {"routing.clear", sqlcall_handler, FD, 0, p_routing_clear, SQL("api_routing_clear")},
    {"routing.list", sqlcall_handler, ROLES_STAFF, 0, p_stay_id, SQL("api_routing_list")},
    {"business_date.close", sqlcall_handler, R(MANAGER), 0, p_property_scope,
     SQL("api_business_date_close")},

    {"cashier.open", sqlcall_handler, FD, 0, p_cashier_open, SQL("api_cashier_open")},
    {"cashier.close", sqlcall_handler, FD, 0, p_cashier_close, SQL("api_cashier_close")},
    {"cashier.report", sqlcall_handler, ROLES_STAFF, 0, p_cashier_report,
     SQL("api_cashier_report")},
    {"ar.create", sqlcall_handler, R(MANAGER), 0, p_ar_create, SQL("api_ar_create")},
    {"ar.get", sqlcall_handler, ROLES_STAFF, 0, p_ar_get, SQL("api_ar_get")},
    {"ar.list", sqlcall_handler, ROLES_STAFF, 0, p_property_scope, SQL("api_ar_list")},
    {"ar.transfer", sqlcall_handler, FD, 0, p_ar_transfer, SQL("api_ar_transfer")},
    {"ar.pay", sqlcall_handler, FD, 0, p_ar_pay, SQL("api_ar_pay")},
    {"ar.aging", sqlcall_handler, ROLES_STAFF, 0, p_ar_aging, SQL("api_ar_aging")},

    {"audit.run", audit_run, R(AUDITOR) | R(MANAGER), 0, p_audit_run, NULL},
    {"audit.status", sqlcall_handler, ROLES_STAFF, 0, p_property_scope, SQL("api_audit_status")},
    {"audit.report", sqlcall_handler, R(AUDITOR) | R(MANAGER), 0, p_audit_report,
     SQL("api_audit_report")},
    {"report.in_house", sqlcall_handler, R(CASHIER) | R(AUDITOR) | R(MANAGER), 0, p_report,
     SQL("api_report_in_house")},
    {"report.trial_balance", sqlcall_handler, R(AUDITOR) | R(MANAGER), 0, p_report,
     SQL("api_report_trial_balance")},
    {"report.revenue", sqlcall_handler, R(AUDITOR) | R(MANAGER), 0, p_report,
     SQL("api_report_revenue")},
    {"report.high_balance", sqlcall_handler, R(AUDITOR) | R(MANAGER), 0, p_report,
     SQL("api_report_high_balance")},
    {"report.cashier", sqlcall_handler, R(AUDITOR) | R(MANAGER), 0, p_report,
     SQL("api_report_cashier")},

    {"pos.hello", sqlcall_handler, R(OUTLET), RPC_F_POS_ANSWER, p_none, SQL("api_pos_hello")},
    {"pos.inquiry", sqlcall_handler, R(OUTLET), RPC_F_POS_ANSWER, p_pos_inquiry,
     SQL("api_pos_inquiry")},
    {"pos.post", sqlcall_handler, R(OUTLET), RPC_F_POS_ANSWER | RPC_F_BATCH, p_pos_post,
     SQL("api_pos_post")},
    {"pos.status", sqlcall_handler, R(OUTLET), RPC_F_POS_ANSWER, p_pos_status,
     SQL("api_pos_status")},
    {"pos.postings", sqlcall_handler, R(OUTLET), RPC_F_POS_ANSWER, p_pos_postings,
     SQL("api_pos_postings")},
};

const struct rpc_method *rpc_methods(size_t *count)
{
    *count = sizeof(methods) / sizeof(methods[0]);
    return methods;
}

const struct rpc_method *rpc_method_find(const char *name)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    }
    return NULL;
}

/* ---- envelope ---- */

/* How many bytes of s to print so as to print at most max of them without cutting a UTF-8
 * sequence in two (s comes from parsed JSON, so it is valid UTF-8): a message or a field
 * that ends in half a character is not valid JSON text, and its answer could not be built. */
static int utf8_prefix(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return (int)n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

void rpc_request_clear(struct rpc_request *req)
{
    json_decref(req->root);
    memset(req, 0, sizeof(*req));
}

/* Whether v holds a real number of magnitude 2^63 or more anywhere (the request's params; depth:
 * jansson's parser bounds the nesting). jansson reads 1e19 as a real; PostgreSQL would keep it as the integer
 * 10000000000000000000, which no 64-bit JSON reader (jansson included) takes back. */
static bool has_huge_real(const json_t *v)
{
    if (json_is_real(v)) {
        double x = json_real_value(v);
        return x >= 9223372036854775808.0 || x <= -9223372036854775808.0;
    }
    const char *key;
    json_t *member;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, member)
        {
            if (has_huge_real(member))
                return true;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, member)
        {
            if (has_huge_real(member))
                return true;
        }
    }
    return false;
}

int rpc_parse_request(const char *text, size_t len, struct rpc_request *req, char *msg,
                      size_t msglen)
{
    memset(req, 0, sizeof(*req));
    json_error_t jerr;
    req->root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (req->root == NULL) {
        snprintf(msg, msglen, "parse error: %s", jerr.text);
        return RPC_PARSE_ERROR;
    }
    if (json_is_array(req->root)) {
        snprintf(msg, msglen, "batch requests are not supported");
        return RPC_INVALID_REQUEST;
    }
    if (!json_is_object(req->root)) {
        snprintf(msg, msglen, "a request must be a JSON object");
        return RPC_INVALID_REQUEST;
    }
    json_t *id = json_object_get(req->root, "id");
    if (id != NULL) {
        if (!json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
            snprintf(msg, msglen, "id must be a string, an integer or null");
            return RPC_INVALID_REQUEST;
        }
        if (json_is_string(id) && json_string_length(id) > 128) {
            snprintf(msg, msglen, "id longer than 128 bytes");
            return RPC_INVALID_REQUEST;
        }
        req->id = id;
    } else {
        req->notification = true;
    }
    const char *key;
    json_t *value;
    json_object_foreach(req->root, key, value) {
        if (strcmp(key, "jsonrpc") != 0 && strcmp(key, "id") != 0 &&
            strcmp(key, "method") != 0 && strcmp(key, "params") != 0) {
            snprintf(msg, msglen, "unexpected member '%.*s'", utf8_prefix(key, 64), key);
            return RPC_INVALID_REQUEST;
        }
    }
    json_t *version = json_object_get(req->root, "jsonrpc");
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
        snprintf(msg, msglen, "jsonrpc must be \"2.0\"");
        return RPC_INVALID_REQUEST;
    }
    json_t *method = json_object_get(req->root, "method");
    if (!json_is_string(method) || json_string_length(method) == 0 ||
        json_string_length(method) > 64) {
        snprintf(msg, msglen, "method must be a non-empty string of at most 64 bytes");
        return RPC_INVALID_REQUEST;
    }
    req->method = json_string_value(method);
    json_t *params = json_object_get(req->root, "params");
    if (params == NULL) {
        params = json_object();
        if (params == NULL || json_object_set_new(req->root, "params", params) != 0) {
            snprintf(msg, msglen, "out of memory");
            return RPC_INVALID_REQUEST;
        }
    } else if (!json_is_object(params) && !json_is_array(params)) {
        snprintf(msg, msglen, "params must be an object");
        return RPC_INVALID_REQUEST;
    }
    req->params = params;
    /* after the id is known, so that the answer carries it */
    if (has_huge_real(params)) {
        snprintf(msg, msglen, "parse error: a number beyond 2^63");
        return RPC_PARSE_ERROR;
    }
    return 0;
}

/* ---- parameter validation ---- */

static const char *const ptype_names[RPC_P_MAX] = {
    "a string", "an integer", "an amount in minor units (integer)", "a boolean", "an object",
    "an array", "a date YYYY-MM-DD", "an amount in minor units (integer) or null"};

static bool valid_date(const char *s, size_t len)
{
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    }
    int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1)
        return false;
    int maxd = mdays[m - 1];
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        maxd = 29;
    return d <= maxd;
}

bool rpc_validate_params(const json_t *params, const struct rpc_param *spec, char *field,
                         size_t fieldlen, char *msg, size_t msglen)
{
    field[0] = '\0';
    if (!json_is_object(params)) {
        snprintf(msg, msglen, "params must be an object of named parameters");
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)params, key, value) {
        const struct rpc_param *p = spec;
        while (p->name != NULL && strcmp(p->name, key) != 0)
            p++;
        if (p->name == NULL) {
            snprintf(field, fieldlen, "%.*s",
                     utf8_prefix(key, fieldlen - 1 < 64 ? fieldlen - 1 : 64), key);
            snprintf(msg, msglen, "unexpected parameter '%.*s'", utf8_prefix(key, 64), key);
            return false;
        }
    }
    for (const struct rpc_param *p = spec; p->name != NULL; p++) {
        json_t *v = json_object_get(params, p->name);
        if (v == NULL) {
            if (p->required) {
                snprintf(field, fieldlen, "%s", p->name);
                snprintf(msg, msglen, "missing parameter '%s'", p->name);
                return false;
            }
            continue;
        }
        bool ok = false;
        enum rpc_ptype type = p->type;
        if (type == RPC_P_AMOUNT_OR_NULL) {
            if (json_is_null(v))
                continue;
            type = RPC_P_AMOUNT;
        }
        switch (type) {
        case RPC_P_STRING:
            ok = json_is_string(v) && (long long)json_string_length(v) >= p->min &&
                 (long long)json_string_length(v) <= p->max &&
                 strlen(json_string_value(v)) == json_string_length(v);
            if (json_is_string(v) && !ok) {
                snprintf(field, fieldlen, "%s", p->name);
                snprintf(msg, msglen, "'%s' must be %lld to %lld bytes long", p->name, p->min,
                         p->max);
                return false;
            }
            break;
        case RPC_P_INT:
        case RPC_P_AMOUNT: {
            if (!json_is_integer(v))
                break;
            long long x = json_integer_value(v);
            long long lo = p->min, hi = p->max;
            if (type == RPC_P_AMOUNT) {
                /* {0, 0} means any amount within the limit, either sign */
                if (lo == 0 && hi == 0)
                    lo = -RPC_AMOUNT_LIMIT;
                if (lo < -RPC_AMOUNT_LIMIT)
                    lo = -RPC_AMOUNT_LIMIT;
                if (hi > RPC_AMOUNT_LIMIT || hi == 0)
                    hi = RPC_AMOUNT_LIMIT;
            }
            if (x < lo || x > hi) {
                snprintf(field, fieldlen, "%s", p->name);
                snprintf(msg, msglen, "'%s' must be between %lld and %lld", p->name, lo, hi);
                return false;
            }
            ok = true;
            break;
        }
        case RPC_P_BOOL:
            ok = json_is_boolean(v);
            break;
        case RPC_P_OBJECT:
            ok = json_is_object(v);
            break;
        case RPC_P_ARRAY:
            ok = json_is_array(v);
            if (ok && p->max > 0 && (long long)json_array_size(v) > p->max) {
                snprintf(field, fieldlen, "%s", p->name);
                snprintf(msg, msglen, "'%s' has more than %lld elements", p->name, p->max);
                return false;
            }
            break;
        case RPC_P_DATE:
            ok = json_is_string(v) && valid_date(json_string_value(v), json_string_length(v));
            break;
        case RPC_P_AMOUNT_OR_NULL:
        case RPC_P_MAX:
            break;
        }
        if (!ok) {
            snprintf(field, fieldlen, "%s", p->name);
            snprintf(msg, msglen, "'%s' must be %s", p->name,
                     p->type < RPC_P_MAX ? ptype_names[p->type] : "valid");
            return false;
        }
    }
    return true;
}

/* ---- responses ---- */

static json_t *copy_id(json_t *id)
{
    return id != NULL ? json_deep_copy(id) : json_null();
}

json_t *rpc_make_result(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:o, s:o}", "jsonrpc", "2.0", "id", copy_id(id), "result",
                     result != NULL ? result : json_null());
}

json_t *rpc_make_error(json_t *id, int code, const char *message, json_t *data)
{
    json_t *err = json_pack("{s:i, s:s}", "code", code, "message", message);
    if (err == NULL) /* a message that is not UTF-8 (not expected) still gets an answer */
        err = json_pack("{s:i, s:s}", "code", code, "message", "invalid request");
    if (err != NULL && data != NULL)
        json_object_set_new(err, "data", data);
    else
        json_decref(data);
    if (err == NULL)
        return NULL;
    return json_pack("{s:s, s:o, s:o}", "jsonrpc", "2.0", "id", copy_id(id), "error", err);
}

json_t *rpc_error_data(const char *reason, bool retryable)
{
    json_t *data = json_pack("{s:s}", "reason", reason);
    if (data != NULL && retryable)
        json_object_set_new(data, "retryable", json_true());
    return data;
}

/* ---- dispatch ---- */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void access_log(struct conn *c, const char *method, json_t *id, uint64_t start_us,
                       const char *outcome)
{
    struct server *srv = conn_server(c);
    if (!srv->cfg.log_access)
        return;
    char idbuf[48] = "-";
    if (json_is_integer(id))
        snprintf(idbuf, sizeof(idbuf), "%lld", (long long)json_integer_value(id));
    else if (json_is_string(id))
        snprintf(idbuf, sizeof(idbuf), "%.40s", json_string_value(id));
    uint64_t took = now_us() - start_us;
    conn_log(c, LOG_LEVEL_INFO, "access method=%.64s id=%s us=%llu outcome=%s", method, idbuf,
             (unsigned long long)took, outcome);
}

static void answer_now(struct conn *c, json_t *id, const char *method, uint64_t start, int code,
                       const char *message, json_t *data)
{
    char outcome[80];
    json_t *reason = data != NULL ? json_object_get(data, "reason") : NULL;
    snprintf(outcome, sizeof(outcome), "error:%d:%.40s", code,
             json_is_string(reason) ? json_string_value(reason) : "");
    access_log(c, method, id, start, outcome);
    json_t *msg = rpc_make_error(id, code, message, data);
    if (msg != NULL)
        conn_send(c, msg);
}

json_t *pos_answer(const char *status, const char *reason, const char *message)
{
    return json_pack("{s:s, s:s, s:s}", "status", status, "reason", reason, "message", message);
}

static void call_free(struct rpc_call *call)
{
    struct conn *c = call->conn;
    json_decref(call->id);
    json_decref(call->params);
    free(call);
    conn_call_finished(c);
    conn_unref(c);
}

void rpc_reply(struct rpc_call *call, json_t *result)
{
    access_log(call->conn, call->method->name, call->id, call->start_us, "ok");
    json_t *msg = rpc_make_result(call->id, result);
    if (msg != NULL)
        conn_send(call->conn, msg);
    call_free(call);
}

void rpc_reply_text(struct rpc_call *call, const char *text, size_t len)
{
    access_log(call->conn, call->method->name, call->id, call->start_us, "ok");
    conn_send_result_text(call->conn, call->id, text, len);
    call_free(call);
}

void rpc_fail(struct rpc_call *call, int code, const char *reason, bool retryable,
              const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    if (call->method->flags & RPC_F_POS_ANSWER) {
        /* A POS gets a FIAS status, never a JSON-RPC error: RY means "retry with the same
         * key", UR "never retry unchanged". */
        const char *status = retryable ? "RY" : "UR";
        char outcome[64];
        snprintf(outcome, sizeof(outcome), "%s:%.40s", status, reason);
        access_log(call->conn, call->method->name, call->id, call->start_us, outcome);
        json_t *msg = rpc_make_result(call->id, pos_answer(status, reason, message));
        if (msg != NULL)
            conn_send(call->conn, msg);
        call_free(call);
        return;
    }
    answer_now(call->conn, call->id, call->method->name, call->start_us, code, message,
               rpc_error_data(reason, retryable));
    call_free(call);
}

static bool is_reason(const char *s)
{
    if (*s == '\0' || strlen(s) > 48)
        return false;
    for (; *s != '\0'; s++) {
        if (!islower((unsigned char)*s) && *s != '_' && !isdigit((unsigned char)*s))
            return false;
    }
    return true;
}

void rpc_fail_db(struct rpc_call *call, const struct db_result *r)
{
    if (r->status == DB_UNAVAILABLE) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "db_unavailable", true,
                 "database unavailable (%s); retry later", r->message);
        return;
    }
    const char *st = r->sqlstate;
    if (strcmp(st, "FL000") == 0 && is_reason(r->message)) {
        const char *text = r->detail[0] != '\0' ? r->detail : r->message;
        if (call->method->flags & RPC_F_POS_ANSWER) {
            rpc_fail(call, RPC_DOMAIN_ERROR, r->message, false, "%s", text);
            return;
        }
        json_t *data = rpc_error_data(r->message, false);
        int code = strcmp(r->message, "invalid_params") == 0 ? RPC_INVALID_PARAMS
                   : strcmp(r->message, "immutable") == 0    ? RPC_INTERNAL_ERROR
                                                               : RPC_DOMAIN_ERROR;
        if (r->hint[0] != '\0' && data != NULL) {
            json_t *extra = json_loads(r->hint, 0, NULL);
            if (json_is_object(extra))
                json_object_update(data, extra);
            json_decref(extra);
        }
        answer_now(call->conn, call->id, call->method->name, call->start_us, code, text, data);
        call_free(call);
        return;
    }
    if (strcmp(st, "23505") == 0) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "conflict", false, "already exists: %s",
                 r->detail[0] != '\0' ? r->detail : r->message);
    } else if (strncmp(st, "22", 2) == 0 || strcmp(st, "23514") == 0 ||
               strcmp(st, "23502") == 0) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "invalid_value", false, "invalid value: %s", r->message);
    } else if (strcmp(st, "23503") == 0) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "not_found", false, "a referenced record does not exist");
    } else if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 ||
               strcmp(st, "55P03") == 0) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "busy", true, "concurrent update; retry");
    } else if (strcmp(st, "57014") == 0) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "timeout", true, "the database took too long; retry");
    } else if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0 ||
               strcmp(st, "53300") == 0) {
        rpc_fail(call, RPC_DOMAIN_ERROR, "db_unavailable", true,
                 "database unavailable; retry later");
    } else {
        conn_log(call->conn, LOG_LEVEL_ERROR, "%s failed: SQLSTATE %s: %s", call->method->name,
                 st, r->message);
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "internal error");
    }
}

json_t *rpc_call_context(const struct rpc_call *call)
{
    struct session *s = conn_session(call->conn);
    char who[80];
    if (s->role == ROLE_OUTLET)
        snprintf(who, sizeof(who), "outlet:%s", s->name);
    else
        snprintf(who, sizeof(who), "%s", s->name);
    json_t *ctx = json_pack("{s:s, s:s, s:I, s:s}", "user", who, "role", auth_role_str(s->role),
                            "conn", (json_int_t)conn_id(call->conn), "peer",
                            conn_peer(call->conn));
    if (ctx == NULL)
        return NULL;
    json_object_set_new(ctx, "user_id", s->user_id ? json_integer(s->user_id) : json_null());
    json_object_set_new(ctx, "outlet_id",
                        s->outlet_id ? json_integer(s->outlet_id) : json_null());
    json_object_set_new(ctx, "property_id",
                        s->property_id ? json_integer(s->property_id) : json_null());
    return ctx;
}

/* Hashes the password members of a call's params one by one, then runs the handler. */
struct hash_chain {
    json_t **slots;
    size_t n;
    size_t next;
};

static void hash_next(struct rpc_call *call);

static void hash_done_cb(void *arg, bool ok, const char *hash)
{
    struct rpc_call *call = arg;
    struct hash_chain *hc = call->state;
    if (!ok) {
        free(hc->slots);
        free(hc);
        call->state = NULL;
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "password hashing failed");
        return;
    }
    json_t *obj = hc->slots[hc->next++];
    json_object_del(obj, "password");
    json_object_set_new(obj, "password_hash", json_string(hash));
    hash_next(call);
}

static void hash_next(struct rpc_call *call)
{
    struct hash_chain *hc = call->state;
    if (hc->next == hc->n) {
        free(hc->slots);
        free(hc);
        call->state = NULL;
        call->method->handler(call);
        return;
    }
    struct server *srv = conn_server(call->conn);
    struct auth_kdf_params kp = {srv->cfg.auth_scrypt_log_n, srv->cfg.auth_scrypt_r,
                                 srv->cfg.auth_scrypt_p};
    json_t *pw = json_object_get(hc->slots[hc->next], "password");
    if (!auth_hash_async(srv->auth, json_string_value(pw), &kp, hash_done_cb, call)) {
        free(hc->slots);
        free(hc);
        call->state = NULL;
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
    }
}

static void hash_then_run(struct rpc_call *call)
{
    size_t n = auth_password_slots(call->params, NULL, 0);
    if (n == 0) {
        call->method->handler(call);
        return;
    }
    struct hash_chain *hc = calloc(1, sizeof(*hc));
    json_t **slots = calloc(n, sizeof(*slots));
    if (hc == NULL || slots == NULL) {
        free(hc);
        free(slots);
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "out of memory");
        return;
    }
    hc->slots = slots;
    hc->n = auth_password_slots(call->params, slots, n);
    call->state = hc;
    hash_next(call);
}

void rpc_dispatch(struct conn *c, const char *line, size_t len)
{
    uint64_t start = now_us();
    struct rpc_request req;
    char msg[256];
    struct server *srv = conn_server(c);
    srv->requests++;

    int code = rpc_parse_request(line, len, &req, msg, sizeof(msg));
    if (code != 0) {
        answer_now(c, req.id, "-", start, code, msg,
                   rpc_error_data(code == RPC_PARSE_ERROR ? "parse_error" : "invalid_request",
                                  false));
        goto done;
    }
    if (req.notification) {
        conn_log(c, LOG_LEVEL_DEBUG, "ignored a notification for %.64s", req.method);
        goto done;
    }
    const char *refused = conn_refused(c);
    if (refused != NULL) {
        answer_now(c, req.id, req.method, start, RPC_DOMAIN_ERROR,
                   "this client certificate is not accepted", rpc_error_data(refused, false));
        conn_close_after_flush(c, refused);
        goto done;
    }
    const struct rpc_method *m = rpc_method_find(req.method);
    if (m == NULL) {
        snprintf(msg, sizeof(msg), "unknown method '%.*s'", utf8_prefix(req.method, 64),
                 req.method);
        answer_now(c, req.id, req.method, start, RPC_METHOD_NOT_FOUND, msg,
                   rpc_error_data("unknown_method", false));
        goto done;
    }
    struct session *s = conn_session(c);
    if ((m->roles & ROLE_BIT(s->role)) == 0) {
        bool anon = s->role == ROLE_NONE;
        snprintf(msg, sizeof(msg), anon ? "log in first: %s needs a session"
                                         : "role %s may not call %s",
                 anon ? m->name : auth_role_str(s->role), m->name);
        answer_now(c, req.id, m->name, start, RPC_DOMAIN_ERROR, msg,
                   rpc_error_data(anon ? "unauthenticated" : "forbidden", false));
        goto done;
    }
    char field[80];
    if (!rpc_validate_params(req.params, m->params, field, sizeof(field), msg, sizeof(msg))) {
        if (m->flags & RPC_F_POS_ANSWER) {
            json_t *answer = pos_answer("UR", "invalid_request", msg);
            if (answer != NULL && field[0] != '\0')
                json_object_set_new(answer, "field", json_string(field));
            access_log(c, m->name, req.id, start, "UR:invalid_request");
            conn_send(c, rpc_make_result(req.id, answer));
            goto done;
        }
        json_t *data = rpc_error_data("invalid_params", false);
        if (data != NULL && field[0] != '\0')
            json_object_set_new(data, "field", json_string(field));
        answer_now(c, req.id, m->name, start, RPC_INVALID_PARAMS, msg, data);
        goto done;
    }

    struct rpc_call *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        answer_now(c, req.id, m->name, start, RPC_INTERNAL_ERROR, "out of memory",
                   rpc_error_data("internal", true));
        goto done;
    }
    call->conn = c;
    call->method = m;
    call->id = json_deep_copy(req.id);
    call->params = json_incref(req.params);
    call->start_us = start;
    conn_ref(c);
    conn_call_started(c);
    rpc_request_clear(&req);
    if (m->flags & RPC_F_HASH_PASSWORDS)
        hash_then_run(call);
    else
        m->handler(call);
    return;
done:
    rpc_request_clear(&req);
}
