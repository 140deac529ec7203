/*
 * test_lifecycle.c - SIGHUP reload and SIGTERM drain, each on a foliod of its own.
 *
 * Each test starts another daemon from FOLIOD_TEST_BIN with a copy of FOLIOD_TEST_CONF that
 * listens on a free port, so signals never disturb the daemon the other tests use.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

static void ping_ok(struct client *c)
{
    json_t *r = itest_call_ok(c, "server.ping", NULL);
    assert_true(json_is_true(json_object_get(r, "pong")));
    json_decref(r);
}

static void test_sighup_reload(void **state)
{
    (void)state;
    struct itest_daemon d;
    itest_daemon_start(&d, "reload", NULL);
    struct client *a = itest_daemon_connect(&d);
    assert_non_null(a);
    ping_ok(a);

    /* a reloadable limit takes effect for new frames */
    char big[3001];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    itest_daemon_write_conf(&d, "max_frame = 2048\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(itest_daemon_wait_log(&d, "configuration reloaded", 5000));
    struct client *b = itest_daemon_connect(&d);
    assert_non_null(b);
    char frame[3100];
    snprintf(frame, sizeof(frame), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.ping\"%s}\n",
             big);
    assert_true(client_send_raw(b, frame, strlen(frame)));
    json_t *r = itest_next_response(b, ITEST_TIMEOUT_MS);
    itest_assert_error(r, -32600, "frame_too_large");
    json_decref(r);
    ping_ok(b);
    ping_ok(a); /* the connection from before the reload is untouched */

    /* TLS files that do not load: the old context stays and new clients still get in */
    itest_daemon_write_conf(&d, "[tls]\ncert_file = /nonexistent/server.crt\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(itest_daemon_wait_log(&d, "new TLS files rejected", 5000));
    struct client *c = itest_daemon_connect(&d);
    assert_non_null(c);
    ping_ok(c);

    /* a file that does not parse changes nothing */
    itest_daemon_write_conf(&d, "[server]\nmax_frame = lots\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(itest_daemon_wait_log(&d, "reload refused", 5000));
    ping_ok(c);

    client_close(a);
    client_close(b);
    client_close(c);
    assert_int_equal(kill(d.pid, SIGTERM), 0);
    itest_daemon_expect_exit_zero(&d, 15000);
    itest_daemon_assert_clean_log(&d);
}

static void test_sigterm_drains_in_flight(void **state)
{
    (void)state;
    struct itest_daemon d;
    itest_daemon_start(&d, "drain", NULL);
    struct client *c = itest_daemon_connect(&d);
    assert_non_null(c);
    ping_ok(c);

    /* a login takes a password hash on a worker thread: it is in flight when SIGTERM lands */
    json_t *params = json_pack("{s:s, s:s}", "user", "manager", "password", "manager");
    json_int_t id = 0;
    assert_true(client_send_request(c, "session.login", params, &id));
    json_decref(params);
    itest_sleep_ms(5);
    assert_int_equal(kill(d.pid, SIGTERM), 0);

    json_t *resp = NULL;
    assert_true(client_wait_response(c, id, ITEST_TIMEOUT_MS, &resp));
    json_t *result = client_response_result(resp);
    assert_non_null(result);
    assert_string_equal(itest_str(result, "user"), "manager");
    json_decref(resp);

    /* then the connection is closed and the daemon exits cleanly */
    json_t *msg = NULL;
    bool got = client_next(c, 5000, &msg);
    json_decref(msg);
    assert_false(got);
    client_close(c);
    itest_daemon_expect_exit_zero(&d, 15000);
    assert_true(itest_daemon_log_contains(&d, "SIGTERM: stopping"));
    itest_daemon_assert_clean_log(&d);

    /* nothing listens any more */
    assert_null(itest_daemon_connect(&d));
}

static int raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Sends one byte every 300 ms; returns how long the server kept the connection (ms). */
static int64_t trickle_until_closed(int fd, const char *bytes, size_t n, int64_t limit_ms)
{
    int64_t start = itest_now_ms();
    size_t i = 0;
    while (itest_now_ms() - start < limit_ms) {
        if (send(fd, bytes + (i++ % n), 1, MSG_NOSIGNAL) != 1)
            break;
        itest_sleep_ms(300);
    }
    return itest_now_ms() - start;
}

/* A client that trickles bytes is closed after the request (or handshake) deadline, however
 * regularly its bytes come: the idle timeout alone would never fire. */
static void test_trickling_clients_are_closed(void **state)
{
    (void)state;
    struct itest_daemon d;
    const char *extra = "handshake_timeout = 2\nrequest_timeout = 2\nidle_timeout = 60\n";
    itest_daemon_start(&d, "trickle", NULL);
    itest_daemon_write_conf(&d, extra);
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(itest_daemon_wait_log(&d, "configuration reloaded", 5000));

    /* a TLS record header, then the rest of the ClientHello never completes */
    int fd = raw_connect(d.port);
    static const char hello[] = "\x16\x03\x01\x02\x00"
                                "abcdefghijklmnopqrstuvwxyz";
    int64_t kept = trickle_until_closed(fd, hello, sizeof(hello) - 1, 15000);
    close(fd);
    if (kept > 6000)
        fail_msg("trickled handshake kept for %lld ms", (long long)kept);

    /* after the handshake: a request line that never ends */
    struct client *c = itest_daemon_connect(&d);
    assert_non_null(c);
    ping_ok(c);
    int64_t start = itest_now_ms();
    const char *line = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.ping\"";
    bool closed = false;
    for (size_t i = 0; itest_now_ms() - start < 15000; i++) {
        if (!client_send_raw(c, line + (i % strlen(line)), 1)) {
            closed = true;
            break;
        }
        json_t *msg = NULL;
        if (!client_next(c, 300, &msg) && client_error_kind(c) != CLIENT_ERR_TIMEOUT) {
            closed = true;
            break;
        }
        json_decref(msg);
    }
    client_close(c);
    assert_true(closed);
    if (itest_now_ms() - start > 6000)
        fail_msg("trickled request kept for %lld ms", (long long)(itest_now_ms() - start));
    assert_true(itest_daemon_log_contains(&d, "request line not completed"));
    assert_true(itest_daemon_log_contains(&d, "TLS handshake not completed"));

    assert_int_equal(kill(d.pid, SIGTERM), 0);
    itest_daemon_expect_exit_zero(&d, 15000);
    itest_daemon_assert_clean_log(&d);
}

/* Connections over server.max_connections are closed at accept; room frees up again. */
static void test_connection_limit(void **state)
{
    (void)state;
    struct itest_daemon d;
    itest_daemon_start(&d, "limit", NULL);
    itest_daemon_write_conf(&d, "max_connections = 2\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(itest_daemon_wait_log(&d, "configuration reloaded", 5000));
    struct client *a = itest_daemon_connect(&d);
    struct client *b = itest_daemon_connect(&d);
    assert_non_null(a);
    assert_non_null(b);
    ping_ok(a);
    ping_ok(b);
    struct client *c = itest_daemon_connect(&d);
    assert_null(c);
    assert_true(itest_daemon_log_contains(&d, "connections already (server.max_connections)"));
    client_close(a);
    /* the server notices the close, then accepts again */
    struct client *e = NULL;
    int64_t deadline = itest_now_ms() + 5000;
    while (e == NULL && itest_now_ms() < deadline) {
        e = itest_daemon_connect(&d);
        if (e == NULL)
            itest_sleep_ms(100);
    }
    assert_non_null(e);
    ping_ok(e);
    client_close(b);
    client_close(e);
    assert_int_equal(kill(d.pid, SIGTERM), 0);
    itest_daemon_expect_exit_zero(&d, 15000);
    itest_daemon_assert_clean_log(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_sighup_reload),
        ITEST(test_sigterm_drains_in_flight),
        ITEST(test_trickling_clients_are_closed),
        ITEST(test_connection_limit),
    };
    return cmocka_run_group_tests_name("lifecycle", tests, itest_group_setup, NULL);
}
