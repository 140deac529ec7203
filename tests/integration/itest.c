/*
 * itest.c - shared helpers of the integration tests (see itest.h).
 *
 * The environment is read once by itest_group_setup() into a static struct: each test binary
 * is one process talking to one daemon, so there is nothing to thread through cmocka's state.
 */
#include "itest.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ITEST_MAX_CLIENTS 32

static struct itest_env itest_env_data;
static struct client *itest_clients[ITEST_MAX_CLIENTS];

static const char *itest_getenv(const char *name, const char *fallback)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : fallback;
}

int itest_group_setup(void **state)
{
    const char *port = itest_getenv("FOLIOD_TEST_PORT", "7443");
    char *end;
    unsigned long p = strtoul(port, &end, 10);

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (*end != '\0' || p == 0 || p > 65535) {
        fprintf(stderr, "itest: FOLIOD_TEST_PORT=%s is not a port\n", port);
        return -1;
    }
    itest_env_data.host = itest_getenv("FOLIOD_TEST_HOST", "127.0.0.1");
    itest_env_data.port = (unsigned)p;
    itest_env_data.tls_dir = itest_getenv("FOLIOD_TEST_TLS", "var/tls");
    itest_env_data.pg_stop = itest_getenv("FOLIOD_TEST_PG_STOP", NULL);
    itest_env_data.pg_start = itest_getenv("FOLIOD_TEST_PG_START", NULL);
    return 0;
}

int itest_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < ITEST_MAX_CLIENTS; i++) {
        client_close(itest_clients[i]);
        itest_clients[i] = NULL;
    }
    return 0;
}

static struct client *itest_track(struct client *c)
{
    for (size_t i = 0; i < ITEST_MAX_CLIENTS; i++) {
        if (itest_clients[i] == NULL) {
            itest_clients[i] = c;
            return c;
        }
    }
    client_close(c);
    fail_msg("more than %d clients open in one test", ITEST_MAX_CLIENTS);
    return NULL;
}

void itest_close(struct client *c)
{
    for (size_t i = 0; i < ITEST_MAX_CLIENTS; i++)
        if (itest_clients[i] == c)
            itest_clients[i] = NULL;
    client_close(c);
}

const struct itest_env *itest_env(void)
{
    return &itest_env_data;
}

int64_t itest_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void itest_tls_path(char *buf, size_t len, const char *file)
{
    int n = snprintf(buf, len, "%s/%s", itest_env_data.tls_dir, file);

    if (n < 0 || (size_t)n >= len)
        fail_msg("TLS path for %s is too long", file);
}

void itest_options(struct client_options *opts)
{
    static char ca[4096];

    itest_tls_path(ca, sizeof(ca), "ca.crt");
    client_options_init(opts);
    opts->host = itest_env_data.host;
    opts->port = itest_env_data.port;
    opts->ca_file = ca; /* client_new() copies it */
    opts->timeout_ms = ITEST_TIMEOUT_MS;
}

struct client *itest_connect(void)
{
    struct client_options opts;
    struct client *c;

    itest_options(&opts);
    c = client_new(&opts);
    assert_non_null(c);
    itest_track(c);
    if (!client_connect(c))
        fail_msg("connect to %s:%u: %s (%s)", opts.host, opts.port, client_error(c),
                 client_error_kind_str(client_error_kind(c)));
    return c;
}

struct client *itest_connect_cert(const char *name, bool *connected)
{
    struct client_options opts;
    struct client *c;
    char cert[4096], key[4096], file[256];

    itest_options(&opts);
    snprintf(file, sizeof(file), "%s.crt", name);
    itest_tls_path(cert, sizeof(cert), file);
    snprintf(file, sizeof(file), "%s.key", name);
    itest_tls_path(key, sizeof(key), file);
    opts.cert_file = cert;
    opts.key_file = key;
    c = client_new(&opts);
    assert_non_null(c);
    itest_track(c);
    *connected = client_connect(c);
    /* A missing file is a broken harness, not a refusal by the server. */
    if (!*connected && client_error_kind(c) == CLIENT_ERR_TLS_FILES)
        fail_msg("%s", client_error(c));
    return c;
}

struct client *itest_connect_user(const char *user)
{
    struct client *c = itest_connect();
    json_t *r =
        itest_call_ok(c, "session.login", json_pack("{s:s, s:s}", "user", user, "password", user));

    assert_string_equal(itest_str(r, "user"), user);
    (void)itest_str(r, "role");
    /* a string, or null for a chain-wide user such as the demo admin */
    assert_true(json_is_string(json_object_get(r, "property")) ||
                json_is_null(json_object_get(r, "property")));
    json_decref(r);
    return c;
}

static json_t *itest_call(struct client *c, const char *method, json_t *params)
{
    json_t *response;

    if (!client_call_new(c, method, params, &response))
        fail_msg("%s: no answer: %s (%s)", method, client_error(c),
                 client_error_kind_str(client_error_kind(c)));
    return response;
}

json_t *itest_call_ok(struct client *c, const char *method, json_t *params)
{
    json_t *response = itest_call(c, method, params);
    json_t *result = client_response_result(response);

    if (result == NULL) {
        char *text = json_dumps(response, JSON_COMPACT);

        fail_msg("%s: expected a result, got %s", method, text != NULL ? text : "?");
    }
    json_incref(result);
    json_decref(response);
    return result;
}

void itest_assert_error(const json_t *response, json_int_t code, const char *reason)
{
    struct client_rpc_error e;
    char *text = json_dumps(response, JSON_COMPACT);
    bool ok = client_response_error(response, &e) && e.code == code &&
              (reason == NULL || (e.reason != NULL && strcmp(e.reason, reason) == 0));

    if (!ok)
        fail_msg("expected error %" JSON_INTEGER_FORMAT " %s, got %s", code,
                 reason != NULL ? reason : "", text != NULL ? text : "?");
    free(text);
    assert_true(e.message[0] != '\0'); /* every error carries a message for a person */
}

json_t *itest_call_error(struct client *c, const char *method, json_t *params, json_int_t code,
                         const char *reason)
{
    json_t *response = itest_call(c, method, params);

    itest_assert_error(response, code, reason);
    return response;
}

json_t *itest_next_response(struct client *c, int timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;

    for (;;) {
        int64_t left = deadline - itest_now_ms();
        json_t *msg;

        if (!client_next(c, left > 0 ? (int)left : 0, &msg))
            fail_msg("waiting for a response: %s (%s)", client_error(c),
                     client_error_kind_str(client_error_kind(c)));
        if (json_object_get(msg, "id") != NULL)
            return msg;
        json_decref(msg); /* a server notification */
    }
}

void itest_assert_silent(struct client *c, int timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;

    for (;;) {
        int64_t left = deadline - itest_now_ms();
        json_t *msg;

        if (left <= 0)
            return;
        if (!client_next(c, (int)left, &msg)) {
            if (client_error_kind(c) == CLIENT_ERR_TIMEOUT)
                return;
            fail_msg("expected silence, got %s", client_error(c));
        }
        if (json_object_get(msg, "id") != NULL) {
            char *text = json_dumps(msg, JSON_COMPACT);

            fail_msg("expected no more answers, got %s", text != NULL ? text : "?");
        }
        json_decref(msg);
    }
}

const char *itest_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    if (s == NULL) {
        char *text = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);

        fail_msg("expected a string member \"%s\" in %s", key, text != NULL ? text : "?");
    }
    return s;
}

void itest_shell(const char *what, const char *command)
{
    int rc;

    if (command == NULL)
        fail_msg("%s: no command configured", what);
    rc = system(command);
    if (rc != 0)
        fail_msg("%s: `%s` exited with status %d", what, command, rc);
}
