/*
 * test_dbdown.c - integration test of a database outage: with PostgreSQL stopped, a logged-in
 * connection gets db_unavailable (retryable) quickly instead of hanging, server.ping still
 * answers, and once PostgreSQL is back the same connection and session work again.
 *
 * Needs FOLIOD_TEST_PG_STOP and FOLIOD_TEST_PG_START (set by tests/integration/harness.sh);
 * skipped without them. The group teardown restarts PostgreSQL if a failed test left it down,
 * so that the test binaries run after this one find it up.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long PostgreSQL may take to come back and the daemon to reconnect. */
#define DBDOWN_RECOVERY_MS 20000

static bool dbdown_pg_stopped;

static int dbdown_teardown(void **state)
{
    const struct itest_env *env = itest_env();

    (void)state;
    if (dbdown_pg_stopped && env->pg_start != NULL) {
        int rc = system(env->pg_start);

        if (rc != 0) {
            fprintf(stderr, "test_dbdown: could not restart PostgreSQL (status %d)\n", rc);
            return -1;
        }
        dbdown_pg_stopped = false;
    }
    return 0;
}

static json_t *room_list_params(void)
{
    return json_pack("{s:s}", "property", "DEMO");
}

static void assert_demo_rooms(json_t *result)
{
    assert_true(json_is_array(json_object_get(result, "items")));
    assert_int_equal(json_array_size(json_object_get(result, "items")), 120);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void test_db_down_and_back(void **state)
{
    const struct itest_env *env = itest_env();
    struct client *c, *anon;
    json_t *r, *identity;
    struct client_rpc_error e;
    const char *db;
    int64_t start;
    bool recovered = false;
    int attempts = 0;

    (void)state;
    if (env->pg_stop == NULL || env->pg_start == NULL) {
        fprintf(stderr, "test_dbdown: FOLIOD_TEST_PG_STOP/START not set, skipped\n");
        skip();
    }
    c = itest_connect_user("manager");
    r = itest_call_ok(c, "room.list", room_list_params());
    assert_demo_rooms(r);
    json_decref(r);

    dbdown_pg_stopped = true;
    itest_shell("stop PostgreSQL", env->pg_stop);

    /* a prompt, retryable refusal; itest_call_error fails on a client timeout */
    start = itest_now_ms();
    r = itest_call_error(c, "room.list", room_list_params(), -32000, "db_unavailable");
    assert_true(client_response_error(r, &e));
    assert_true(e.retryable);
    assert_true(itest_now_ms() - start < ITEST_TIMEOUT_MS);
    json_decref(r);

    /* the daemon itself still answers, on this connection and on a new one */
    r = itest_call_ok(c, "server.ping", NULL);
    assert_true(json_is_true(json_object_get(r, "pong")));
    db = itest_str(r, "db");
    assert_true(strcmp(db, "down") == 0 || strcmp(db, "up") == 0);
    json_decref(r);
    anon = itest_connect();
    r = itest_call_ok(anon, "server.ping", NULL);
    assert_true(json_is_true(json_object_get(r, "pong")));
    json_decref(r);
    itest_close(anon);

    itest_shell("start PostgreSQL", env->pg_start);
    dbdown_pg_stopped = false;

    /* the same connection recovers: until then only db_unavailable is an acceptable answer */
    start = itest_now_ms();
    while (!recovered && itest_now_ms() - start < DBDOWN_RECOVERY_MS) {
        json_t *response;

        attempts++;
        if (!client_call_new(c, "room.list", room_list_params(), &response))
            fail_msg("room.list after restart: %s", client_error(c));
        r = client_response_result(response);
        if (r != NULL) {
            assert_demo_rooms(r);
            recovered = true;
        } else {
            itest_assert_error(response, -32000, "db_unavailable");
            sleep_ms(500);
        }
        json_decref(response);
    }
    if (!recovered)
        fail_msg("room.list still failing %d ms after PostgreSQL restarted (%d attempts)",
                 DBDOWN_RECOVERY_MS, attempts);

    /* the session survived the outage */
    r = itest_call_ok(c, "server.info", NULL);
    identity = json_object_get(r, "identity");
    assert_string_equal(itest_str(identity, "kind"), "user");
    assert_string_equal(itest_str(identity, "user"), "manager");
    json_decref(r);
    r = itest_call_ok(c, "server.ping", NULL);
    assert_string_equal(itest_str(r, "db"), "up");
    json_decref(r);
    itest_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_db_down_and_back),
    };

    return cmocka_run_group_tests(tests, itest_group_setup, dbdown_teardown);
}
