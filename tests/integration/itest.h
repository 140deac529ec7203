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
#include <libpq-fe.h>

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
 * the login answers user, role and property (a code, or null for a chain-wide user). A cashier
 * or manager bound to a property is also given an open cashier shift (cashier.open with a zero
 * float; shift_already_open is fine), since every payment needs one: such users always have an
 * open shift. Use itest_connect_login() for a user whose shifts a test manages itself. */
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

/* ---- helpers for the accounting tests ---- */

/* Call and return the whole response, result or error, without judging it (new reference);
 * fails the test only when no answer comes (transport failure). */
json_t *itest_call_raw(struct client *c, const char *method, json_t *params);

/* data.reason of an error response, or NULL when response is a result. Borrowed. */
const char *itest_reason(const json_t *response);

/* The member at a dotted path ("folio.balance", "postings.0.amount"; a number indexes an
 * array), or NULL when something on the way is missing. Borrowed. */
json_t *itest_path(const json_t *obj, const char *path);

/* Integer at a dotted path; fails the test when missing or not an integer. */
json_int_t itest_int(const json_t *obj, const char *path);

/* A client logged in with this user name and password; fails the test otherwise. */
struct client *itest_connect_login(const char *user, const char *password);

/* Call a create method and accept `conflict` (already created by an earlier run); any other
 * outcome fails the test. */
void itest_create(struct client *c, const char *method, json_t *params);

/* Date arithmetic on "YYYY-MM-DD" (out must hold 11 bytes). */
void itest_date_add(const char *date, int days, char *out);

/* The open business date of a property (property.list as any staff member). */
void itest_business_date(struct client *c, const char *property, char *out);

/* A test property of the chain, created through the admin and manager methods if it does not
 * exist yet: the given rooms, the demo's transaction codes with the demo's tax rules (ROOM,
 * FOOD, BEV, MINIBAR, SPA, TIP, MISC; VAT6, VAT10, VAT20, SVC10; CASH, CARD, DEPOSIT, BANK)
 * and, for each role in "cashier", "manager", "auditor", a user named <prefix><role> with the
 * user name as password (e.g. prefix "t3" -> t3cashier). */
void itest_ensure_property(const char *code, const char *name, const char *const *rooms,
                           size_t nrooms, const char *user_prefix);

/* The status of a room (room.list). Copied into out (32 bytes). */
void itest_room_status(struct client *c, const char *property, const char *number, char *out);

/* Half-away-from-zero rounding of num / den (den > 0), integer arithmetic only. */
int64_t itest_div_round(int64_t num, int64_t den);

/* One line of a charge split by its code's rules: the charge itself first, then one line per
 * rule (type "tax" or "service"), as docs/accounting.md defines it (see itest_split). */
struct itest_line {
    const char *code;
    const char *type; /* "charge", "tax", "service" */
    int64_t amount;
};

/* Split amount on one of the demo's charge codes (ROOM FOOD BEV MINIBAR SPA TIP MISC), computed
 * independently of the server: inclusive rules carved out of the gross, exclusive ones added,
 * compound ones on the net plus the earlier lines, every line rounded half away from zero.
 * Fills lines[0..2] and returns how many there are (zero lines included); fails the test for
 * an unknown code. */
size_t itest_split(const char *code, int64_t amount, struct itest_line lines[3]);

/* Sum of the lines of itest_split(). */
int64_t itest_split_total(const char *code, int64_t amount);

/* The department of a demo charge code, or NULL. */
const char *itest_code_department(const char *code);

/* ---- daemons of a test's own ----
 * Tests that signal, kill or reconfigure a daemon start their own: a copy of FOLIOD_TEST_CONF
 * (same database, same TLS files) listening on a free port, its log in FOLIOD_TEST_DIR. */

struct itest_daemon {
    int pid;
    unsigned port;
    char conf[512];
    char log[512];
};

void itest_sleep_ms(int ms);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
unsigned itest_free_port(void);

/* Picks a port, writes NAME.conf (FOLIOD_TEST_CONF, then [server] listen_port and the extra
 * INI text, which may name its own sections), starts foliod and waits until it accepts TLS. */
void itest_daemon_start(struct itest_daemon *d, const char *name, const char *extra);

/* Rewrites the daemon's configuration file (for a reload): the same base plus extra. */
void itest_daemon_write_conf(const struct itest_daemon *d, const char *extra);

/* (Re)starts the process with its configuration and waits until it accepts TLS (20 s). */
void itest_daemon_spawn(struct itest_daemon *d);

/* SIGKILL and reap. */
void itest_daemon_kill(struct itest_daemon *d);

/* SIGTERM; fails the test unless it exits 0 within timeout_ms. */
void itest_daemon_stop(struct itest_daemon *d, int timeout_ms);

/* Waits until the daemon exits; fails the test unless it exits 0 within timeout_ms. */
void itest_daemon_expect_exit_zero(struct itest_daemon *d, int timeout_ms);

bool itest_daemon_log_contains(const struct itest_daemon *d, const char *needle);

/* Waits up to timeout_ms for a log line containing needle; false when none came. */
bool itest_daemon_wait_log(const struct itest_daemon *d, const char *needle, int timeout_ms);

/* Fails the test if the log mentions a sanitizer report or an illegal state change. */
void itest_daemon_assert_clean_log(const struct itest_daemon *d);

/* An anonymous client of this daemon, or NULL when it cannot connect. */
struct client *itest_daemon_connect(const struct itest_daemon *d);

/* A client of this daemon presenting <tls dir>/<name>.crt and .key (e.g. "outlet-REST");
 * fails the test unless it connects. */
struct client *itest_daemon_connect_cert(const struct itest_daemon *d, const char *name);

/* ---- the test database, straight through libpq (FOLIOD_TEST_PG_CONNINFO) ---- */

/* A connection to the test database; fails the test when there is none. PQfinish it. */
PGconn *itest_pg(void);

/* Runs a statement that returns no rows (BEGIN, ROLLBACK...); fails the test otherwise. */
void itest_pg_exec(PGconn *pg, const char *query);

/* Locks row id of table ("folios" or "stays") FOR UPDATE in pg's open transaction, waiting
 * if another holds it. */
void itest_pg_lock(PGconn *pg, const char *table, json_int_t id);

/* Whether a transaction other than pg's holds row id of table ("folios" or "stays"): pg asks
 * for it FOR UPDATE NOWAIT in a transaction of its own and gives it back at once. */
bool itest_pg_row_held(PGconn *pg, const char *table, json_int_t id);

/* Waits up to timeout_ms until a backend of a foliod waits for a lock; fails the test if none
 * does. */
void itest_pg_wait_lock_waiter(int timeout_ms);

#endif
