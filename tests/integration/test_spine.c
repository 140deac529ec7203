/*
 * test_spine.c - integration tests of the protocol spine against a running foliod: TLS and
 * client certificates, server.ping and server.info, login and roles, the JSON-RPC error
 * answers (parse error, frame limit, invalid request, unknown method, invalid params),
 * several requests in one write, and the idle timeout.
 *
 * Run by tests/integration/harness.sh, which starts PostgreSQL and foliod (idle_timeout = 5 s)
 * with the demo hotel and passes their addresses in the environment (see itest.h).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const demo_users[] = {"cashier", "auditor", "manager", "admin"};

/* Whether properties (strings or objects with a "code") includes code. */
static bool has_property(const json_t *properties, const char *code)
{
    size_t i;
    json_t *p;

    json_array_foreach (properties, i, p) {
        const char *s = json_is_string(p) ? json_string_value(p)
                                          : json_string_value(json_object_get(p, "code"));

        if (s != NULL && strcmp(s, code) == 0)
            return true;
    }
    return false;
}

/* The demo staff belong to DEMO; the demo admin is chain-wide (property null), as set up in
 * etc/demo-hotel.json. */
static void assert_demo_property(const json_t *obj, const char *user)
{
    json_t *property = json_object_get(obj, "property");

    assert_non_null(property);
    if (strcmp(user, "admin") == 0)
        assert_true(json_is_null(property) || strcmp(itest_str(obj, "property"), "DEMO") == 0);
    else
        assert_string_equal(itest_str(obj, "property"), "DEMO");
}

static json_t *identity_of(struct client *c)
{
    json_t *info = itest_call_ok(c, "server.info", NULL);
    json_t *identity = json_object_get(info, "identity");

    assert_true(json_is_object(identity));
    json_incref(identity);
    json_decref(info);
    return identity;
}

/* Write raw bytes and return the next answer. */
static json_t *raw_exchange(struct client *c, const char *text)
{
    if (!client_send_raw(c, text, strlen(text)))
        fail_msg("send: %s", client_error(c));
    return itest_next_response(c, ITEST_TIMEOUT_MS);
}

static void assert_pong(struct client *c)
{
    json_t *r = itest_call_ok(c, "server.ping", NULL);

    assert_true(json_is_true(json_object_get(r, "pong")));
    json_decref(r);
}

static void test_ping_over_tls(void **state)
{
    struct client *c = itest_connect();
    const char *version = client_tls_version(c);
    json_t *r;
    const char *when;
    struct tm tm;
    time_t server_time;

    (void)state;
    assert_non_null(version);
    assert_true(strcmp(version, "TLSv1.2") == 0 || strcmp(version, "TLSv1.3") == 0);

    r = itest_call_ok(c, "server.ping", NULL);
    assert_true(json_is_true(json_object_get(r, "pong")));
    assert_string_equal(itest_str(r, "db"), "up");
    /* ISO 8601 in UTC, close to our own clock */
    when = itest_str(r, "time");
    memset(&tm, 0, sizeof(tm));
    assert_non_null(strptime(when, "%Y-%m-%dT%H:%M:%S", &tm));
    assert_true(when[strlen(when) - 1] == 'Z' || strstr(when, "+00") != NULL);
    server_time = timegm(&tm);
    assert_true(llabs((long long)(server_time - time(NULL))) < 300);
    json_decref(r);
    itest_close(c);
}

static void test_info_anonymous(void **state)
{
    struct client *c = itest_connect();
    json_t *r = itest_call_ok(c, "server.info", NULL);
    json_t *identity = json_object_get(r, "identity");

    (void)state;
    assert_string_equal(itest_str(r, "name"), "foliod");
    assert_true(itest_str(r, "version")[0] != '\0');
    assert_true(json_is_integer(json_object_get(r, "protocol")));
    assert_int_equal(json_integer_value(json_object_get(r, "protocol")), 1);
    assert_string_equal(itest_str(r, "tls"), client_tls_version(c));
    assert_true(json_is_object(identity));
    assert_string_equal(itest_str(identity, "kind"), "anonymous");
    assert_null(json_object_get(identity, "user"));
    assert_null(json_object_get(identity, "role"));
    /* nothing about the hotels for a stranger */
    assert_null(json_object_get(r, "properties"));
    json_decref(r);
    itest_close(c);
}

static void test_login_each_demo_user(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(demo_users) / sizeof(demo_users[0]); i++) {
        const char *u = demo_users[i];
        struct client *c = itest_connect();
        json_t *r =
            itest_call_ok(c, "session.login", json_pack("{s:s, s:s}", "user", u, "password", u));
        json_t *info, *identity;

        assert_string_equal(itest_str(r, "user"), u);
        assert_string_equal(itest_str(r, "role"), u);
        assert_demo_property(r, u);
        json_decref(r);

        info = itest_call_ok(c, "server.info", NULL);
        identity = json_object_get(info, "identity");
        assert_string_equal(itest_str(identity, "kind"), "user");
        assert_string_equal(itest_str(identity, "user"), u);
        assert_string_equal(itest_str(identity, "role"), u);
        assert_demo_property(identity, u);
        assert_true(json_is_array(json_object_get(info, "properties")));
        assert_true(has_property(json_object_get(info, "properties"), "DEMO"));
        json_decref(info);

        /* logout ends the session; the connection stays */
        json_decref(itest_call_ok(c, "session.logout", NULL));
        identity = identity_of(c);
        assert_string_equal(itest_str(identity, "kind"), "anonymous");
        json_decref(identity);
        json_decref(itest_call_error(c, "room.list", json_pack("{s:s}", "property", "DEMO"), -32000,
                                     "unauthenticated"));
        itest_close(c);
    }
}

static void test_login_bad_credentials(void **state)
{
    struct client *c = itest_connect();
    json_t *wrong_pw, *unknown_user, *identity, *r;
    int64_t t0, t1, t2;

    (void)state;
    t0 = itest_now_ms();
    wrong_pw = itest_call_error(c, "session.login",
                                json_pack("{s:s, s:s}", "user", "manager", "password", "nope"),
                                -32000, "invalid_credentials");
    t1 = itest_now_ms();
    unknown_user = itest_call_error(
        c, "session.login", json_pack("{s:s, s:s}", "user", "no_such_user", "password", "nope"),
        -32000, "invalid_credentials");
    t2 = itest_now_ms();
    /* the same answer whichever was wrong, so that the answer tells nothing */
    if (!json_equal(json_object_get(wrong_pw, "error"), json_object_get(unknown_user, "error"))) {
        char *a = json_dumps(wrong_pw, JSON_COMPACT), *b = json_dumps(unknown_user, JSON_COMPACT);

        fail_msg("different answers: wrong password %s, unknown user %s", a, b);
    }
    /* failures are slowed (the harness sets login_delay = 200 ms) */
    assert_true(t1 - t0 >= 150);
    assert_true(t2 - t1 >= 150);
    json_decref(wrong_pw);
    json_decref(unknown_user);

    /* still anonymous, and the right password then works on the same connection */
    identity = identity_of(c);
    assert_string_equal(itest_str(identity, "kind"), "anonymous");
    json_decref(identity);
    r = itest_call_ok(c, "session.login",
                      json_pack("{s:s, s:s}", "user", "manager", "password", "manager"));
    assert_string_equal(itest_str(r, "role"), "manager");
    json_decref(r);
    itest_close(c);
}

static void test_admin_without_login(void **state)
{
    struct client *c = itest_connect();

    (void)state;
    json_decref(itest_call_error(c, "room.list", json_pack("{s:s}", "property", "DEMO"), -32000,
                                 "unauthenticated"));
    json_decref(itest_call_error(c, "user.list", json_object(), -32000, "unauthenticated"));
    json_decref(itest_call_error(c, "session.logout", NULL, -32000, "unauthenticated"));
    itest_close(c);
}

static void test_role_refusals(void **state)
{
    struct client *c;
    json_t *r, *items, *item;
    size_t i;
    bool seen101 = false, seen430 = false;

    (void)state;
    c = itest_connect_user("cashier");
    json_decref(itest_call_error(c, "user.create",
                                 json_pack("{s:s, s:s, s:s}", "username", "itest_new_user",
                                           "password", "itest-secret", "role", "cashier"),
                                 -32000, "forbidden"));
    itest_close(c);

    c = itest_connect_user("auditor");
    json_decref(itest_call_error(c, "room.create",
                                 json_pack("{s:s, s:s}", "property", "DEMO", "number", "999"),
                                 -32000, "forbidden"));
    /* reading is the auditor's job */
    r = itest_call_ok(c, "room.list", json_pack("{s:s}", "property", "DEMO"));
    assert_int_equal(json_array_size(json_object_get(r, "items")), 120);
    json_decref(r);
    itest_close(c);

    c = itest_connect_user("manager");
    r = itest_call_ok(c, "room.list", json_pack("{s:s}", "property", "DEMO"));
    items = json_object_get(r, "items");
    assert_true(json_is_array(items));
    assert_int_equal(json_array_size(items), 120);
    json_array_foreach (items, i, item) {
        const char *number = itest_str(item, "number");

        seen101 = seen101 || strcmp(number, "101") == 0;
        seen430 = seen430 || strcmp(number, "430") == 0;
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(
                number, json_string_value(json_object_get(json_array_get(items, k), "number")));
    }
    assert_true(seen101);
    assert_true(seen430);
    json_decref(r);
    itest_close(c);
}

static void test_malformed_json(void **state)
{
    struct client *c = itest_connect();
    json_t *r;

    (void)state;
    r = raw_exchange(c, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"server.ping\"\n");
    itest_assert_error(r, -32700, NULL);
    assert_true(json_is_null(json_object_get(r, "id")));
    assert_string_equal(itest_str(r, "jsonrpc"), "2.0");
    json_decref(r);
    r = raw_exchange(c, "this is not json\n");
    itest_assert_error(r, -32700, NULL);
    json_decref(r);
    /* the same connection goes on */
    assert_pong(c);
    itest_close(c);
}

static void test_frame_too_large(void **state)
{
    struct client *c = itest_connect();
    const size_t total = 70000;
    const char *head =
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"server.ping\",\"params\":{\"pad\":\"";
    const char *tail = "\"}}\n";
    char *frame = malloc(total);
    size_t hl = strlen(head), tl = strlen(tail);
    json_t *r;
    struct client_rpc_error e;

    (void)state;
    assert_non_null(frame);
    memcpy(frame, head, hl);
    memset(frame + hl, 'x', total - hl - tl);
    memcpy(frame + total - tl, tail, tl);
    if (!client_send_raw(c, frame, total))
        fail_msg("send: %s", client_error(c));
    free(frame);

    r = itest_next_response(c, ITEST_TIMEOUT_MS);
    itest_assert_error(r, -32600, "frame_too_large");
    assert_true(client_response_error(r, &e));
    assert_true(json_is_null(json_object_get(r, "id")));
    json_decref(r);
    /* usable afterwards, and the oversized request was not run */
    assert_pong(c);
    itest_assert_silent(c, 300);
    assert_pong(c);
    itest_close(c);
}

static void test_invalid_request(void **state)
{
    static const char *const bad[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":11}\n",                            /* no method */
        "{\"jsonrpc\":\"1.0\",\"id\":12,\"method\":\"server.ping\"}\n", /* wrong version */
        "{\"id\":13,\"method\":\"server.ping\"}\n",                     /* no version */
        "{\"jsonrpc\":\"2.0\",\"id\":14,\"method\":42}\n",              /* method not a string */
        "[1,2,3]\n",                                                    /* not an object */
    };
    struct client *c = itest_connect();

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *r = raw_exchange(c, bad[i]);
        json_t *id = json_object_get(r, "id");

        itest_assert_error(r, -32600, NULL);
        /* the id is echoed when it could be read, else null */
        assert_true(json_is_null(id) ||
                    (json_is_integer(id) && json_integer_value(id) == 11 + (json_int_t)i));
        json_decref(r);
    }
    assert_pong(c);
    itest_close(c);
}

static void test_unknown_method(void **state)
{
    struct client *c = itest_connect();
    json_int_t id;
    json_t *r;

    (void)state;
    if (!client_send_request(c, "no_such.method", NULL, &id))
        fail_msg("send: %s", client_error(c));
    if (!client_wait_response(c, id, -1, &r))
        fail_msg("wait: %s", client_error(c));
    itest_assert_error(r, -32601, NULL);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), id);
    json_decref(r);
    assert_pong(c);
    itest_close(c);
}

static void test_invalid_params(void **state)
{
    struct client *c = itest_connect();
    json_t *r;
    struct client_rpc_error e;

    (void)state;
    r = itest_call_error(c, "session.login", json_pack("{s:i, s:s}", "user", 5, "password", "x"),
                         -32602, "invalid_params");
    assert_true(client_response_error(r, &e));
    assert_non_null(e.field);
    assert_string_equal(e.field, "user");
    json_decref(r);

    r = itest_call_error(
        c, "session.login",
        json_pack("{s:s, s:s, s:i}", "user", "manager", "password", "manager", "extra", 1), -32602,
        "invalid_params");
    assert_true(client_response_error(r, &e));
    assert_non_null(e.field);
    assert_string_equal(e.field, "extra");
    json_decref(r);

    r = itest_call_error(c, "session.login", json_pack("{s:s}", "user", "manager"), -32602,
                         "invalid_params");
    assert_true(client_response_error(r, &e));
    assert_non_null(e.field);
    assert_string_equal(e.field, "password");
    json_decref(r);

    /* a rejected login attempt did not log anybody in */
    r = identity_of(c);
    assert_string_equal(itest_str(r, "kind"), "anonymous");
    json_decref(r);
    itest_close(c);
}

static void test_pipelined_requests(void **state)
{
    static const char batch[] = "{\"jsonrpc\":\"2.0\",\"id\":101,\"method\":\"server.ping\"}\n"
                                "{\"jsonrpc\":\"2.0\",\"id\":102,\"method\":\"server.info\"}\n"
                                "{\"jsonrpc\":\"2.0\",\"id\":103,\"method\":\"no_such.method\"}\n"
                                "{\"jsonrpc\":\"2.0\",\"id\":104,\"method\":\"server.ping\"}\n";
    struct client *c = itest_connect();
    bool seen[4] = {false, false, false, false};
    json_int_t ids[3];
    json_t *r;

    (void)state;
    if (!client_send_raw(c, batch, sizeof(batch) - 1))
        fail_msg("send: %s", client_error(c));
    for (int n = 0; n < 4; n++) {
        json_int_t id;

        r = itest_next_response(c, ITEST_TIMEOUT_MS);
        assert_true(json_is_integer(json_object_get(r, "id")));
        id = json_integer_value(json_object_get(r, "id"));
        assert_true(id >= 101 && id <= 104);
        assert_false(seen[id - 101]);
        seen[id - 101] = true;
        if (id == 101 || id == 104)
            assert_true(json_is_true(json_object_get(client_response_result(r), "pong")));
        else if (id == 102)
            assert_string_equal(itest_str(client_response_result(r), "name"), "foliod");
        else
            itest_assert_error(r, -32601, NULL);
        json_decref(r);
    }
    itest_assert_silent(c, 200);

    /* the library's own matching: three in flight, collected in reverse order */
    for (int n = 0; n < 3; n++)
        if (!client_send_request(c, n == 1 ? "server.info" : "server.ping", NULL, &ids[n]))
            fail_msg("send: %s", client_error(c));
    for (int n = 2; n >= 0; n--) {
        if (!client_wait_response(c, ids[n], -1, &r))
            fail_msg("wait: %s", client_error(c));
        assert_int_equal(json_integer_value(json_object_get(r, "id")), ids[n]);
        assert_non_null(client_response_result(r));
        if (n == 1)
            assert_string_equal(itest_str(client_response_result(r), "name"), "foliod");
        else
            assert_true(json_is_true(json_object_get(client_response_result(r), "pong")));
        json_decref(r);
    }
    itest_close(c);
}

/* A refused client certificate: the handshake fails, or (TLS 1.3, where the client finishes
 * its side first) the first exchange fails with the server's alert. Never an answer. */
static void assert_cert_refused(const char *name)
{
    bool connected;
    struct client *c = itest_connect_cert(name, &connected);
    json_t *r = NULL;
    enum client_error_kind kind;

    if (connected && client_call(c, "server.ping", NULL, &r)) {
        char *text = json_dumps(r, JSON_COMPACT);

        fail_msg("%s: the server answered %s instead of refusing the certificate", name,
                 text != NULL ? text : "?");
    }
    kind = client_error_kind(c);
    if (kind != CLIENT_ERR_TLS && kind != CLIENT_ERR_CLOSED)
        fail_msg("%s: expected a TLS refusal, got %s: %s", name, client_error_kind_str(kind),
                 client_error(c));
    itest_close(c);
}

static void test_foreign_ca_refused(void **state)
{
    (void)state;
    assert_cert_refused("foreign-client");
}

static void test_expired_cert_refused(void **state)
{
    (void)state;
    assert_cert_refused("expired-REST");
}

static void test_outlet_certificate(void **state)
{
    bool connected;
    struct client *c = itest_connect_cert("outlet-REST", &connected);
    json_t *identity;

    (void)state;
    if (!connected)
        fail_msg("outlet-REST: %s", client_error(c));
    identity = identity_of(c);
    assert_string_equal(itest_str(identity, "kind"), "outlet");
    assert_string_equal(itest_str(identity, "outlet"), "REST");
    assert_string_equal(itest_str(identity, "property"), "DEMO");
    json_decref(identity);
    /* an outlet is a machine, not a member of staff */
    json_decref(itest_call_error(c, "user.list", json_object(), -32000, "forbidden"));
    json_decref(itest_call_error(c, "room.create",
                                 json_pack("{s:s, s:s}", "property", "DEMO", "number", "998"),
                                 -32000, "forbidden"));
    /* and the certificate, not a login, says who it is */
    assert_pong(c);
    itest_close(c);
}

static void test_idle_timeout(void **state)
{
    struct client *c = itest_connect();
    int64_t start;
    json_t *msg;
    bool got;

    (void)state;
    assert_pong(c);
    start = itest_now_ms();
    /* idle_timeout = 5 s: the server closes a silent connection well before 9 s */
    for (;;) {
        int left = 9000 - (int)(itest_now_ms() - start);

        got = left > 0 && client_next(c, left, &msg);
        if (!got)
            break;
        assert_null(json_object_get(msg, "id")); /* only a notification may come */
        json_decref(msg);
    }
    if (got || client_error_kind(c) != CLIENT_ERR_CLOSED)
        fail_msg("expected the server to close an idle connection, got %s",
                 got ? "no close" : client_error(c));
    assert_true(itest_now_ms() - start >= 4000);
    assert_true(itest_now_ms() - start <= 8500);
    itest_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_ping_over_tls),        ITEST(test_info_anonymous),
        ITEST(test_login_each_demo_user), ITEST(test_login_bad_credentials),
        ITEST(test_admin_without_login),  ITEST(test_role_refusals),
        ITEST(test_malformed_json),       ITEST(test_frame_too_large),
        ITEST(test_invalid_request),      ITEST(test_unknown_method),
        ITEST(test_invalid_params),       ITEST(test_pipelined_requests),
        ITEST(test_foreign_ca_refused),   ITEST(test_expired_cert_refused),
        ITEST(test_outlet_certificate),   ITEST(test_idle_timeout),
    };

    return cmocka_run_group_tests(tests, itest_group_setup, NULL);
}
