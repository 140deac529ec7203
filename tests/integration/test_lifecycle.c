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

struct daemon {
    pid_t pid;
    unsigned port;
    char conf[512];
    char log[512];
    char base_conf[16384];
};

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void write_conf(struct daemon *d, const char *extra)
{
    FILE *f = fopen(d->conf, "w");
    assert_non_null(f);
    fprintf(f, "%s\n[server]\nlisten_port = %u\n%s", d->base_conf, d->port, extra);
    fclose(f);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct client *connect_to(const struct daemon *d)
{
    struct client_options opts;
    itest_options(&opts);
    opts.port = d->port;
    struct client *c = client_new(&opts);
    assert_non_null(c);
    if (!client_connect(c)) {
        client_close(c);
        return NULL;
    }
    return c;
}

static void start_daemon(struct daemon *d, const char *name)
{
    const char *bin = getenv("FOLIOD_TEST_BIN");
    const char *conf = getenv("FOLIOD_TEST_CONF");
    const char *dir = getenv("FOLIOD_TEST_DIR");
    if (bin == NULL || conf == NULL || dir == NULL)
        fail_msg("FOLIOD_TEST_BIN, FOLIOD_TEST_CONF and FOLIOD_TEST_DIR must be set");
    FILE *f = fopen(conf, "r");
    assert_non_null(f);
    size_t n = fread(d->base_conf, 1, sizeof(d->base_conf) - 1, f);
    fclose(f);
    d->base_conf[n] = '\0';
    d->port = free_port();
    snprintf(d->conf, sizeof(d->conf), "%s/%s.conf", dir, name);
    snprintf(d->log, sizeof(d->log), "%s/%s.log", dir, name);
    write_conf(d, "");

    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execl(bin, bin, "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    int64_t deadline = itest_now_ms() + 20000;
    while (itest_now_ms() < deadline) {
        struct client *c = connect_to(d);
        if (c != NULL) {
            client_close(c);
            return;
        }
        sleep_ms(100);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    fail_msg("foliod on port %u did not start (see %s)", d->port, d->log);
}

/* Waits for the daemon to exit; fails unless it exits 0 within the time given. */
static void expect_exit_zero(struct daemon *d, int timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(d->pid, &status, WNOHANG)) == 0 && itest_now_ms() < deadline)
        sleep_ms(50);
    if (got == 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        fail_msg("foliod did not exit within %d ms of SIGTERM", timeout_ms);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static bool log_contains(const struct daemon *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    if (f == NULL)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void assert_clean_log(const struct daemon *d)
{
    const char *bad[] = {"AddressSanitizer", "LeakSanitizer", "runtime error", "illegal state"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (log_contains(d, bad[i]))
            fail_msg("%s mentions '%s'", d->log, bad[i]);
    }
}

static void ping_ok(struct client *c)
{
    json_t *r = itest_call_ok(c, "server.ping", NULL);
    assert_true(json_is_true(json_object_get(r, "pong")));
    json_decref(r);
}

static void test_sighup_reload(void **state)
{
    (void)state;
    struct daemon d;
    start_daemon(&d, "reload");
    struct client *a = connect_to(&d);
    assert_non_null(a);
    ping_ok(a);

    /* a reloadable limit takes effect for new frames */
    char big[3001];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_conf(&d, "max_frame = 2048\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    int64_t deadline = itest_now_ms() + 5000;
    while (!log_contains(&d, "configuration reloaded") && itest_now_ms() < deadline)
        sleep_ms(50);
    assert_true(log_contains(&d, "configuration reloaded"));
    struct client *b = connect_to(&d);
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
    write_conf(&d, "[tls]\ncert_file = /nonexistent/server.crt\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    deadline = itest_now_ms() + 5000;
    while (!log_contains(&d, "new TLS files rejected") && itest_now_ms() < deadline)
        sleep_ms(50);
    assert_true(log_contains(&d, "new TLS files rejected"));
    struct client *c = connect_to(&d);
    assert_non_null(c);
    ping_ok(c);

    /* a file that does not parse changes nothing */
    write_conf(&d, "[server]\nmax_frame = lots\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    deadline = itest_now_ms() + 5000;
    while (!log_contains(&d, "reload refused") && itest_now_ms() < deadline)
        sleep_ms(50);
    assert_true(log_contains(&d, "reload refused"));
    ping_ok(c);

    client_close(a);
    client_close(b);
    client_close(c);
    assert_int_equal(kill(d.pid, SIGTERM), 0);
    expect_exit_zero(&d, 15000);
    assert_clean_log(&d);
}

static void test_sigterm_drains_in_flight(void **state)
{
    (void)state;
    struct daemon d;
    start_daemon(&d, "drain");
    struct client *c = connect_to(&d);
    assert_non_null(c);
    ping_ok(c);

    /* a login takes a password hash on a worker thread: it is in flight when SIGTERM lands */
    json_t *params = json_pack("{s:s, s:s}", "user", "manager", "password", "manager");
    json_int_t id = 0;
    assert_true(client_send_request(c, "session.login", params, &id));
    json_decref(params);
    sleep_ms(5);
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
    expect_exit_zero(&d, 15000);
    assert_true(log_contains(&d, "SIGTERM: stopping"));
    assert_clean_log(&d);

    /* nothing listens any more */
    assert_null(connect_to(&d));
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
        sleep_ms(300);
    }
    return itest_now_ms() - start;
}

/* A client that trickles bytes is closed after the request (or handshake) deadline, however
 * regularly its bytes come: the idle timeout alone would never fire. */
static void test_trickling_clients_are_closed(void **state)
{
    (void)state;
    struct daemon d;
    d.pid = 0;
    const char *extra = "handshake_timeout = 2\nrequest_timeout = 2\nidle_timeout = 60\n";
    start_daemon(&d, "trickle");
    write_conf(&d, extra);
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    int64_t deadline = itest_now_ms() + 5000;
    while (!log_contains(&d, "configuration reloaded") && itest_now_ms() < deadline)
        sleep_ms(50);

    /* a TLS record header, then the rest of the ClientHello never completes */
    int fd = raw_connect(d.port);
    static const char hello[] = "\x16\x03\x01\x02\x00"
                                "abcdefghijklmnopqrstuvwxyz";
    int64_t kept = trickle_until_closed(fd, hello, sizeof(hello) - 1, 15000);
    close(fd);
    if (kept > 6000)
        fail_msg("trickled handshake kept for %lld ms", (long long)kept);

    /* after the handshake: a request line that never ends */
    struct client *c = connect_to(&d);
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
    assert_true(log_contains(&d, "request line not completed"));
    assert_true(log_contains(&d, "TLS handshake not completed"));

    assert_int_equal(kill(d.pid, SIGTERM), 0);
    expect_exit_zero(&d, 15000);
    assert_clean_log(&d);
}

/* Connections over server.max_connections are closed at accept; room frees up again. */
static void test_connection_limit(void **state)
{
    (void)state;
    struct daemon d;
    start_daemon(&d, "limit");
    write_conf(&d, "max_connections = 2\n");
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    int64_t deadline = itest_now_ms() + 5000;
    while (!log_contains(&d, "configuration reloaded") && itest_now_ms() < deadline)
        sleep_ms(50);
    struct client *a = connect_to(&d);
    struct client *b = connect_to(&d);
    assert_non_null(a);
    assert_non_null(b);
    ping_ok(a);
    ping_ok(b);
    struct client *c = connect_to(&d);
    assert_null(c);
    assert_true(log_contains(&d, "connections already (server.max_connections)"));
    client_close(a);
    /* the server notices the close, then accepts again */
    struct client *e = NULL;
    deadline = itest_now_ms() + 5000;
    while (e == NULL && itest_now_ms() < deadline) {
        e = connect_to(&d);
        if (e == NULL)
            sleep_ms(100);
    }
    assert_non_null(e);
    ping_ok(e);
    client_close(b);
    client_close(e);
    assert_int_equal(kill(d.pid, SIGTERM), 0);
    expect_exit_zero(&d, 15000);
    assert_clean_log(&d);
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
