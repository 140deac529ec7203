/* test_rpc.c - JSON-RPC envelope parsing, parameter validation, the method table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "conn.h"
#include "rpc.h"
#include "sqlcall.h"

static int parse(const char *text, struct rpc_request *req, char *msg)
{
    return rpc_parse_request(text, strlen(text), req, msg, 256);
}

static void test_valid_request(void **state)
{
    (void)state;
    struct rpc_request req;
    char msg[256];
    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"server.ping\"}", &req, msg), 0);
    assert_string_equal(req.method, "server.ping");
    assert_int_equal(json_integer_value(req.id), 7);
    assert_true(json_is_object(req.params));
    assert_int_equal(json_object_size(req.params), 0);
    assert_false(req.notification);
    rpc_request_clear(&req);

    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"method\":\"x\",\"params\":{\"k\":1}}",
                           &req, msg), 0);
    assert_string_equal(json_string_value(req.id), "a-1");
    assert_int_equal(json_integer_value(json_object_get(req.params, "k")), 1);
    rpc_request_clear(&req);

    /* reals below 2^63 are numbers like any other */
    assert_int_equal(
        parse("{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"x\",\"params\":{\"a\":[9.2e18,-2.5]}}",
              &req, msg),
        0);
    rpc_request_clear(&req);

    assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"method\":\"x\"}", &req, msg), 0);
    assert_true(req.notification);
    rpc_request_clear(&req);
}

static void expect_code(const char *text, int code, const char *needle)
{
    struct rpc_request req;
    char msg[256];
    int got = parse(text, &req, msg);
    if (got != code)
        fail_msg("%s: expected %d, got %d (%s)", text, code, got, got ? msg : "");
    if (needle != NULL && strstr(msg, needle) == NULL)
        fail_msg("%s: message '%s' lacks '%s'", text, msg, needle);
    rpc_request_clear(&req);
}

static void test_bad_envelopes(void **state)
{
    (void)state;
    expect_code("{", RPC_PARSE_ERROR, "parse error");
    expect_code("not json", RPC_PARSE_ERROR, NULL);
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"} trailing", RPC_PARSE_ERROR, NULL);
    expect_code("\"\\xff\"", RPC_PARSE_ERROR, NULL);
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\u0000\"}", RPC_PARSE_ERROR, NULL);
    /* duplicate keys are refused rather than silently taking one */
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"x\"}", RPC_PARSE_ERROR, NULL);
    /* integers beyond 2^63 are not silently truncated */
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999,\"method\":\"x\"}",
                RPC_PARSE_ERROR, NULL);
    /* and neither are reals of that size anywhere (the database would keep them as integers) */
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"settings\":"
                "{\"a\":[1,{\"b\":1e19}]}}}",
                RPC_PARSE_ERROR, "2^63");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"v\":-9.3e18}}",
                RPC_PARSE_ERROR, "2^63");
    {
        /* the answer can name the request: its id is known */
        struct rpc_request req;
        char msg[256];
        assert_int_equal(
            parse("{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"x\",\"params\":{\"v\":1e300}}", &req,
                  msg),
            RPC_PARSE_ERROR);
        assert_int_equal(json_integer_value(req.id), 5);
        rpc_request_clear(&req);
    }
    expect_code("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]", RPC_INVALID_REQUEST, "batch");
    expect_code("42", RPC_INVALID_REQUEST, "object");
    expect_code("{\"id\":1,\"method\":\"x\"}", RPC_INVALID_REQUEST, "jsonrpc");
    expect_code("{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}", RPC_INVALID_REQUEST, "jsonrpc");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1}", RPC_INVALID_REQUEST, "method");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", RPC_INVALID_REQUEST, "method");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", RPC_INVALID_REQUEST, "method");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", RPC_INVALID_REQUEST, "id");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}", RPC_INVALID_REQUEST, "id");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":3}",
                RPC_INVALID_REQUEST, "params");
    expect_code("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"param\":{}}",
                RPC_INVALID_REQUEST, "unexpected member");
}

static void test_invalid_request_keeps_id(void **state)
{
    (void)state;
    struct rpc_request req;
    char msg[256];
    assert_int_equal(parse("{\"jsonrpc\":\"1.0\",\"id\":42,\"method\":\"x\"}", &req, msg),
                     RPC_INVALID_REQUEST);
    assert_int_equal(json_integer_value(req.id), 42);
    rpc_request_clear(&req);
}

static const struct rpc_param spec[] = {
    {"name", RPC_P_STRING, true, 1, 8},
    {"count", RPC_P_INT, false, 1, 100},
    {"amount", RPC_P_AMOUNT, false, 0, 0},
    {"flag", RPC_P_BOOL, false, 0, 0},
    {"day", RPC_P_DATE, false, 0, 0},
    {"items", RPC_P_ARRAY, false, 0, 2},
    {"extra", RPC_P_OBJECT, false, 0, 0},
    {NULL, RPC_P_MAX, false, 0, 0},
};

static void expect_params(const char *json, bool ok, const char *field)
{
    json_t *p = json_loads(json, 0, NULL);
    assert_non_null(p);
    char f[64], msg[256];
    bool got = rpc_validate_params(p, spec, f, sizeof(f), msg, sizeof(msg));
    if (got != ok)
        fail_msg("%s: expected %s (%s)", json, ok ? "valid" : "invalid", msg);
    if (!ok && field != NULL && strcmp(f, field) != 0)
        fail_msg("%s: field '%s', expected '%s'", json, f, field);
    json_decref(p);
}

static void test_params(void **state)
{
    (void)state;
    expect_params("{\"name\":\"abc\"}", true, NULL);
    expect_params("{\"name\":\"abc\",\"count\":100,\"amount\":-2550,\"flag\":false,"
                  "\"day\":\"2024-02-29\",\"items\":[1,2],\"extra\":{}}",
                  true, NULL);
    expect_params("{}", false, "name");
    expect_params("{\"name\":5}", false, "name");
    expect_params("{\"name\":\"\"}", false, "name");
    expect_params("{\"name\":\"123456789\"}", false, "name");
    expect_params("{\"name\":\"a\",\"other\":1}", false, "other");
    expect_params("{\"name\":\"a\",\"count\":0}", false, "count");
    expect_params("{\"name\":\"a\",\"count\":101}", false, "count");
    expect_params("{\"name\":\"a\",\"count\":\"5\"}", false, "count");
    expect_params("{\"name\":\"a\",\"count\":5.0}", false, "count");
    /* money: integers only, bounded */
    expect_params("{\"name\":\"a\",\"amount\":25.5}", false, "amount");
    expect_params("{\"name\":\"a\",\"amount\":\"2550\"}", false, "amount");
    expect_params("{\"name\":\"a\",\"amount\":1000000000001}", false, "amount");
    expect_params("{\"name\":\"a\",\"amount\":-1000000000001}", false, "amount");
    expect_params("{\"name\":\"a\",\"amount\":1000000000000}", true, NULL);
    expect_params("{\"name\":\"a\",\"flag\":1}", false, "flag");
    expect_params("{\"name\":\"a\",\"day\":\"2023-02-29\"}", false, "day");
    expect_params("{\"name\":\"a\",\"day\":\"2023-13-01\"}", false, "day");
    expect_params("{\"name\":\"a\",\"day\":\"2023-1-01\"}", false, "day");
    expect_params("{\"name\":\"a\",\"day\":\"1900-02-29\"}", false, "day");
    expect_params("{\"name\":\"a\",\"day\":\"2000-02-29\"}", true, NULL);
    expect_params("{\"name\":\"a\",\"items\":[1,2,3]}", false, "items");
    expect_params("{\"name\":\"a\",\"items\":{}}", false, "items");
    expect_params("{\"name\":\"a\",\"extra\":[]}", false, "extra");

    json_t *arr = json_array();
    char f[64], msg[256];
    assert_false(rpc_validate_params(arr, spec, f, sizeof(f), msg, sizeof(msg)));
    json_decref(arr);
}

/* Found by fuzz_rpc: a member or parameter name of more than 64 bytes with a two-byte
 * character across byte 64. The message quoting it was cut in the middle of the character,
 * was no longer UTF-8, and no error answer could be built from it. */
static void test_long_names_cut_on_characters(void **state)
{
    (void)state;
    struct rpc_request req;
    char msg[256], f[64];
    /* 63 ASCII bytes, then U+013C across bytes 63-64, then U+00E9 */
    char name[128];
    memset(name, 'x', 63);
    strcpy(name + 63, "\xc4\xbc\xc3\xa9tail");
    char text[512];
    snprintf(text, sizeof(text), "{\"jsonrpc\":\"2.0\",\"id\":1,\"%s\":1,\"method\":\"x\"}", name);
    assert_int_equal(parse(text, &req, msg), RPC_INVALID_REQUEST);
    json_t *err = rpc_make_error(req.id, RPC_INVALID_REQUEST, msg,
                                 rpc_error_data("invalid_request", false));
    assert_non_null(err);
    /* the name is cut before U+013C, not in it */
    assert_non_null(strstr(msg, "xxx'"));
    json_decref(err);
    rpc_request_clear(&req);

    /* the same for an unexpected parameter, in the message and in the field */
    json_t *p = json_object();
    json_object_set_new(p, "name", json_string("a"));
    json_object_set_new(p, name, json_integer(1));
    assert_false(rpc_validate_params(p, spec, f, sizeof(f), msg, sizeof(msg)));
    json_t *m = json_string(msg), *fj = json_string(f);
    assert_non_null(m);
    assert_non_null(fj);
    assert_int_equal(strlen(f), 63); /* 63 bytes of room: U+013C would need 65 */
    json_decref(m);
    json_decref(fj);
    json_decref(p);

    /* the fuzzer's input itself */
    static const char found[] = "{\"jsonrpc\":\"1.0\",\"met"
                                "<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<"
                                "<\xc4\xbc<<<<<<<<<<<<<<<<hod\":\"t\",\"params\":{\"stay_id\":2}}";
    assert_int_equal(parse(found, &req, msg), RPC_INVALID_REQUEST);
    err = rpc_make_error(req.id, RPC_INVALID_REQUEST, msg, rpc_error_data("invalid_request", false));
    assert_non_null(err);
    json_decref(err);
    rpc_request_clear(&req);
}

static void test_method_table(void **state)
{
    (void)state;
    size_t n;
    const struct rpc_method *m = rpc_methods(&n);
    assert_true(n >= 4);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(m[i].handler);
        assert_non_null(m[i].params);
        assert_true(m[i].roles != 0);
        assert_ptr_equal(rpc_method_find(m[i].name), &m[i]);
        for (size_t j = i + 1; j < n; j++)
            assert_string_not_equal(m[i].name, m[j].name);
        if (m[i].handler == sqlcall_handler)
            assert_non_null(m[i].sql);
        /* outlets reach the server.* and pos.* methods only, and pos.* is theirs alone */
        bool is_pos = strncmp(m[i].name, "pos.", 4) == 0;
        if (strncmp(m[i].name, "server.", 7) != 0 && !is_pos)
            assert_false(m[i].roles & ROLE_BIT(ROLE_OUTLET));
        if (is_pos) {
            assert_int_equal(m[i].roles, ROLE_BIT(ROLE_OUTLET));
            assert_true(m[i].flags & RPC_F_POS_ANSWER);
        }
    }
    assert_null(rpc_method_find("no.such"));
    /* anonymous callers reach only these */
    assert_true(rpc_method_find("session.login")->roles & ROLE_BIT(ROLE_NONE));
    assert_false(rpc_method_find("room.list")->roles & ROLE_BIT(ROLE_NONE));
    assert_false(rpc_method_find("user.create")->roles & ROLE_BIT(ROLE_CASHIER));
    assert_false(rpc_method_find("user.create")->roles & ROLE_BIT(ROLE_MANAGER));
}

static void test_responses(void **state)
{
    (void)state;
    json_t *id = json_integer(3);
    json_t *r = rpc_make_error(id, RPC_INVALID_PARAMS, "bad", rpc_error_data("invalid_params", false));
    char *s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"error\":{\"code\":-32602,\"data\":{\"reason\":\"invalid_params\"},"
                           "\"message\":\"bad\"},\"id\":3,\"jsonrpc\":\"2.0\"}");
    free(s);
    json_decref(r);
    r = rpc_make_error(NULL, RPC_PARSE_ERROR, "x", rpc_error_data("db_unavailable", true));
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"error\":{\"code\":-32700,\"data\":{\"reason\":\"db_unavailable\","
                           "\"retryable\":true},\"message\":\"x\"},\"id\":null,\"jsonrpc\":\"2.0\"}");
    free(s);
    json_decref(r);
    r = rpc_make_result(id, json_pack("{s:b}", "pong", 1));
    s = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"id\":3,\"jsonrpc\":\"2.0\",\"result\":{\"pong\":true}}");
    free(s);
    json_decref(r);
    json_decref(id);
}

static void test_conn_state_machine(void **state)
{
    (void)state;
    assert_true(conn_transition_ok(CONN_HANDSHAKE, CONN_OPEN));
    assert_true(conn_transition_ok(CONN_HANDSHAKE, CONN_IDENTIFYING));
    assert_true(conn_transition_ok(CONN_IDENTIFYING, CONN_OPEN));
    assert_true(conn_transition_ok(CONN_OPEN, CONN_DRAINING));
    assert_true(conn_transition_ok(CONN_DRAINING, CONN_CLOSED));
    assert_true(conn_transition_ok(CONN_HANDSHAKE, CONN_CLOSED));
    assert_false(conn_transition_ok(CONN_CLOSED, CONN_CLOSED));
    assert_false(conn_transition_ok(CONN_CLOSED, CONN_OPEN));
    assert_false(conn_transition_ok(CONN_OPEN, CONN_HANDSHAKE));
    assert_false(conn_transition_ok(CONN_DRAINING, CONN_OPEN));
    assert_false(conn_transition_ok(CONN_HANDSHAKE, CONN_DRAINING));
    assert_false(conn_transition_ok(CONN_OPEN, CONN_IDENTIFYING));
    assert_string_equal(conn_state_str(CONN_DRAINING), "draining");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_request),
        cmocka_unit_test(test_bad_envelopes),
        cmocka_unit_test(test_invalid_request_keeps_id),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_long_names_cut_on_characters),
        cmocka_unit_test(test_method_table),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_conn_state_machine),
    };
    return cmocka_run_group_tests_name("rpc", tests, NULL, NULL);
}
