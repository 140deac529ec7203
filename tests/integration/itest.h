/*
 * itest.h - shared helpers of the integration tests: where the daemon under test is, how to
 * connect to it (anonymous, with a client certificate, logged in as a demo user), and calls
 * that assert their outcome with a message naming the method and what went wrong.
 *
 * Environment (set by tests/integration/harness.sh):
 *   FOLIOD_TEST_HOST, FOLIOD_TEST_PORT   the daemon (default 127.0.0.1:7443)
 *   FOLIOD_TEST_TLS                      directory with ca.crt, outlet-REST.crt/.key,
 *                                        foreign-client.crt/.key, expired-REST.crt/.key
 *                                        (default var/tls)
 *   FOLIOD_TEST_PG_STOP, _PG_START       shell commands that stop and start PostgreSQL
 *
 * Lifecycle: a test binary passes itest_group_setup as the group set-up of
 * cmocka_run_group_tests() and registers each test with ITEST(name), which adds itest_teardown.
 * A test opens its clients with the itest_connect*() helpers and closes them with itest_close();
 * helpers that fail a test do so through cmocka (fail_msg), which jumps out of the test, and
 * itest_teardown then closes whatever clients the test left open.
 *
 * Ownership: every json_t a helper returns is a new reference the test must json_decref();
 * params passed to the helpers are stolen (json_pack() straight into the call), and NULL means
 * no params member.
 */
#ifndef FOLIOD_ITEST_H
#define FOLIOD_ITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "client.h"

/* Timeout for connects and calls in the tests: long enough for a sanitizer build. */
#define ITEST_TIMEOUT_MS 10000

struct itest_env {
    const char *host;
    unsigned port;
    const char *tls_dir;
    const char *pg_stop;  /* NULL when not set */
    const char *pg_start; /* NULL when not set */
};

/* Group set-up for cmocka_run_group_tests(): reads the environment, ignores SIGPIPE. */
int itest_group_setup(void **state);

/* Per-test teardown: closes the clients the test did not close. */
int itest_teardown(void **state);

#define ITEST(fn) cmocka_unit_test_teardown(fn, itest_teardown)

/* Close a client opened by an itest_connect*() helper. */
void itest_close(struct client *c);

/* The environment read by itest_group_setup(). */
const struct itest_env *itest_env(void);

/* Monotonic milliseconds. */
int64_t itest_now_ms(void);

/* "<tls dir>/<file>" into buf (fails the test when it does not fit). */
void itest_tls_path(char *buf, size_t len, const char *file);

/* Options for the daemon under test: host, port, CA, ITEST_TIMEOUT_MS, no client cert. */
void itest_options(struct client_options *opts);

/* A connected anonymous client; fails the test when it cannot connect. */
struct client *itest_connect(void);

/* A client presenting <tls dir>/<name>.crt and .key (e.g. "outlet-REST"). Only creates and
 * connects it: returns the client whether or not client_connect() succeeded and stores the
 * outcome in *connected, so that tests of refused certificates can look at the error. */
struct client *itest_connect_cert(const char *name, bool *connected);

/* A client logged in as a demo user (the password is the user name); fails the test unless
 * the login answers user, role and property (a code, or null for a chain-wide user). */
struct client *itest_connect_user(const char *user);

/* Call and fail the test unless a result comes back; returns the result (new reference). */
json_t *itest_call_ok(struct client *c, const char *method, json_t *params);

/* Call and fail the test unless an error with this code (and data.reason, unless reason is
 * NULL) comes back; returns the whole response (new reference) for further checks. */
json_t *itest_call_error(struct client *c, const char *method, json_t *params, json_int_t code,
                         const char *reason);

/* Fail the test unless response is an error answer with this code and reason (NULL: any). */
void itest_assert_error(const json_t *response, json_int_t code, const char *reason);

/* The next message that is not a notification (notifications are dropped), within
 * timeout_ms; fails the test on a transport error or a timeout. New reference. */
json_t *itest_next_response(struct client *c, int timeout_ms);

/* Fail the test if any message other than a notification arrives within timeout_ms. The
 * connection must stay open meanwhile. */
void itest_assert_silent(struct client *c, int timeout_ms);

/* Member key of obj as a string; fails the test when missing or not a string. */
const char *itest_str(const json_t *obj, const char *key);

/* Run a shell command; fails the test unless it exits 0. */
void itest_shell(const char *what, const char *command);

#endif
