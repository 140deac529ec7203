/*
 * itest.c - shared helpers of the integration tests (see itest.h).
 *
 * The environment is read once by itest_group_setup() into a static struct: each test binary
 * is one process talking to one daemon, so there is nothing to thread through cmocka's state.
 */
#include "itest.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
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

/* A client presenting <tls dir>/<name>.crt and .key to the daemon on port (0: the shared one). */
static struct client *connect_cert_port(const char *name, unsigned port, bool *connected)
{
    struct client_options opts;
    struct client *c;
    char cert[4096], key[4096], file[256];

    itest_options(&opts);
    if (port != 0)
        opts.port = port;
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

struct client *itest_connect_cert(const char *name, bool *connected)
{
    return connect_cert_port(name, 0, connected);
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
    /* payments need an open cashier shift (docs/cashier.md): a front-desk user bound to a
     * property always has one, opened here with a zero float unless already open */
    if (json_is_string(json_object_get(r, "property")) &&
        (strcmp(itest_str(r, "role"), "cashier") == 0 ||
         strcmp(itest_str(r, "role"), "manager") == 0)) {
        json_t *shift = itest_call_raw(c, "cashier.open", json_pack("{s:i}", "float", 0));
        const char *reason = itest_reason(shift);

        if (reason != NULL && strcmp(reason, "shift_already_open") != 0) {
            char *text = json_dumps(shift, JSON_COMPACT);

            fail_msg("cashier.open for %s: %s", user, text != NULL ? text : "?");
        }
        json_decref(shift);
    }
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

/* ---- helpers for the accounting tests ---- */

json_t *itest_call_raw(struct client *c, const char *method, json_t *params)
{
    return itest_call(c, method, params);
}

const char *itest_reason(const json_t *response)
{
    struct client_rpc_error e;

    if (!client_response_error(response, &e))
        return NULL;
    return e.reason != NULL ? e.reason : "";
}

json_t *itest_path(const json_t *obj, const char *path)
{
    char buf[256];
    char *save = NULL, *part;
    json_t *cur = (json_t *)obj;

    if (strlen(path) >= sizeof(buf))
        return NULL;
    strcpy(buf, path);
    for (part = strtok_r(buf, ".", &save); part != NULL && cur != NULL;
         part = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(part, &end, 10);

            cur = *end == '\0' ? json_array_get(cur, i) : NULL;
        } else {
            cur = json_object_get(cur, part);
        }
    }
    return cur;
}

json_int_t itest_int(const json_t *obj, const char *path)
{
    json_t *v = itest_path(obj, path);

    if (!json_is_integer(v)) {
        char *text = json_dumps(obj, JSON_COMPACT | JSON_ENCODE_ANY);

        fail_msg("expected an integer at \"%s\" in %s", path, text != NULL ? text : "?");
    }
    return json_integer_value(v);
}

struct client *itest_connect_login(const char *user, const char *password)
{
    struct client *c = itest_connect();
    json_t *r = itest_call_ok(c, "session.login",
                              json_pack("{s:s, s:s}", "user", user, "password", password));

    assert_string_equal(itest_str(r, "user"), user);
    json_decref(r);
    return c;
}

void itest_create(struct client *c, const char *method, json_t *params)
{
    json_t *r = itest_call(c, method, params);
    const char *reason = itest_reason(r);

    if (reason != NULL && strcmp(reason, "conflict") != 0) {
        char *text = json_dumps(r, JSON_COMPACT);

        fail_msg("%s: expected a result or conflict, got %s", method, text != NULL ? text : "?");
    }
    json_decref(r);
}

void itest_date_add(const char *date, int days, char *out)
{
    struct tm tm;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    if (strptime(date, "%Y-%m-%d", &tm) == NULL)
        fail_msg("not a date: %s", date);
    tm.tm_hour = 12;
    t = timegm(&tm) + (time_t)days * 86400;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

void itest_business_date(struct client *c, const char *property, char *out)
{
    json_t *r = itest_call_ok(c, "property.list", NULL);
    json_t *items = json_object_get(r, "items"), *p;
    size_t i;

    json_array_foreach (items, i, p) {
        if (strcmp(itest_str(p, "code"), property) == 0) {
            snprintf(out, 11, "%s", itest_str(p, "business_date"));
            json_decref(r);
            return;
        }
    }
    json_decref(r);
    fail_msg("property %s not listed by property.list", property);
}

/* The demo hotel's charge codes and their rules (etc/demo-hotel.json), for test properties. */
struct itest_rule {
    const char *code;
    int rate_ppm;
    bool inclusive, compound;
};
static const struct {
    const char *code, *department;
    struct itest_rule rules[2];
} itest_charges[] = {
    {"ROOM", "rooms", {{"VAT10", 100000, false, false}}},
    {"FOOD", "food", {{"SVC10", 100000, false, false}, {"VAT6", 60000, false, true}}},
    {"BEV", "beverage", {{"SVC10", 100000, false, false}, {"VAT20", 200000, false, true}}},
    {"MINIBAR", "minibar", {{"VAT20", 200000, false, false}}},
    {"SPA", "spa", {{"VAT20", 200000, true, false}}},
    {"TIP", "tips", {{NULL, 0, false, false}}},
    {"MISC", "misc", {{"VAT20", 200000, false, false}}},
};

void itest_ensure_property(const char *code, const char *name, const char *const *rooms,
                           size_t nrooms, const char *user_prefix)
{
    static const char *const taxes[][3] = {
        {"VAT6", "VAT 6%", "tax"},
        {"VAT10", "VAT 10%", "tax"},
        {"VAT20", "VAT 20%", "tax"},
        {"SVC10", "Service charge 10%", "service"},
    };
    static const char *const payments[][2] = {
        {"CASH", "cash"}, {"CARD", "card"}, {"DEPOSIT", "deposit"}, {"BANK", "bank_transfer"}};
    static const char *const roles[] = {"cashier", "manager", "auditor"};
    struct client *admin = itest_connect_user("admin");
    size_t i;

    itest_create(admin, "property.create",
                 json_pack("{s:s, s:s, s:s, s:s}", "code", code, "name", name, "currency", "EUR",
                           "timezone", "Europe/Paris"));
    for (i = 0; i < nrooms; i++)
        itest_create(
            admin, "room.create",
            json_pack("{s:s, s:s, s:s}", "property", code, "number", rooms[i], "room_type", "STD"));
    for (i = 0; i < sizeof(taxes) / sizeof(taxes[0]); i++)
        itest_create(admin, "trx_code.create",
                     json_pack("{s:s, s:s, s:s, s:s}", "property", code, "code", taxes[i][0],
                               "description", taxes[i][1], "kind", taxes[i][2]));
    for (i = 0; i < sizeof(payments) / sizeof(payments[0]); i++)
        itest_create(admin, "trx_code.create",
                     json_pack("{s:s, s:s, s:s, s:s, s:s}", "property", code, "code",
                               payments[i][0], "description", payments[i][0], "kind", "payment",
                               "payment_method", payments[i][1]));
    for (i = 0; i < sizeof(itest_charges) / sizeof(itest_charges[0]); i++) {
        json_t *rules = json_array();

        for (size_t k = 0; k < 2 && itest_charges[i].rules[k].code != NULL; k++) {
            const struct itest_rule *r = &itest_charges[i].rules[k];

            json_array_append_new(rules, json_pack("{s:s, s:i, s:b, s:b}", "code", r->code,
                                                   "rate_ppm", r->rate_ppm, "inclusive",
                                                   r->inclusive, "compound", r->compound));
        }
        itest_create(admin, "trx_code.create",
                     json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "property", code, "code",
                               itest_charges[i].code, "description", itest_charges[i].code, "kind",
                               "charge", "department", itest_charges[i].department, "rules",
                               rules));
    }
    for (i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        char user[64];

        snprintf(user, sizeof(user), "%s%s", user_prefix, roles[i]);
        itest_create(admin, "user.create",
                     json_pack("{s:s, s:s, s:s, s:s, s:s}", "username", user, "password", user,
                               "role", roles[i], "property", code, "full_name", user));
    }
    itest_close(admin);
}

void itest_room_status(struct client *c, const char *property, const char *number, char *out)
{
    json_t *r = itest_call_ok(c, "room.list", json_pack("{s:s}", "property", property));
    json_t *room;
    size_t i;

    json_array_foreach (json_object_get(r, "items"), i, room) {
        if (strcmp(itest_str(room, "number"), number) == 0) {
            snprintf(out, 32, "%s", itest_str(room, "status"));
            json_decref(r);
            return;
        }
    }
    json_decref(r);
    fail_msg("room %s of %s not listed by room.list", number, property);
}

int64_t itest_div_round(int64_t num, int64_t den)
{
    int64_t q = num / den, r = num % den;

    if (2 * (r < 0 ? -r : r) >= den)
        q += num < 0 ? -1 : 1;
    return q;
}

size_t itest_split(const char *code, int64_t amount, struct itest_line lines[3])
{
    for (size_t i = 0; i < sizeof(itest_charges) / sizeof(itest_charges[0]); i++) {
        const struct itest_rule *rules = itest_charges[i].rules;
        int64_t incl_ppm = 0, net = amount, earlier = 0;
        size_t n = 0, k;

        if (strcmp(itest_charges[i].code, code) != 0)
            continue;
        for (k = 0; k < 2 && rules[k].code != NULL; k++)
            if (rules[k].inclusive)
                incl_ppm += rules[k].rate_ppm;
        lines[n++] = (struct itest_line){code, "charge", 0};
        for (k = 0; k < 2 && rules[k].code != NULL; k++) {
            int64_t v;

            if (rules[k].inclusive) {
                v = itest_div_round(amount * rules[k].rate_ppm, 1000000 + incl_ppm);
                net -= v;
            } else {
                /* exclusive rules come after the inclusive ones: net is final here */
                int64_t base = rules[k].compound ? net + earlier : net;

                v = itest_div_round(base * rules[k].rate_ppm, 1000000);
            }
            earlier += v;
            lines[n++] = (struct itest_line){
                rules[k].code, strncmp(rules[k].code, "SVC", 3) == 0 ? "service" : "tax", v};
        }
        lines[0].amount = net;
        return n;
    }
    fail_msg("itest_split: unknown code %s", code);
    return 0;
}

int64_t itest_split_total(const char *code, int64_t amount)
{
    struct itest_line lines[3];
    size_t n = itest_split(code, amount, lines);
    int64_t total = 0;

    for (size_t i = 0; i < n; i++)
        total += lines[i].amount;
    return total;
}

const char *itest_code_department(const char *code)
{
    for (size_t i = 0; i < sizeof(itest_charges) / sizeof(itest_charges[0]); i++)
        if (strcmp(itest_charges[i].code, code) == 0)
            return itest_charges[i].department;
    return NULL;
}

/* ---- daemons of a test's own ---- */

void itest_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

unsigned itest_free_port(void)
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

void itest_daemon_write_conf(const struct itest_daemon *d, const char *extra)
{
    const char *base = getenv("FOLIOD_TEST_CONF");
    if (base == NULL)
        fail_msg("FOLIOD_TEST_CONF is not set");
    static char text[16384];
    FILE *f = fopen(base, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    f = fopen(d->conf, "w");
    assert_non_null(f);
    fprintf(f, "%s\n[server]\nlisten_port = %u\n%s", text, d->port, extra != NULL ? extra : "");
    fclose(f);
}

struct client *itest_daemon_connect(const struct itest_daemon *d)
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

struct client *itest_daemon_connect_cert(const struct itest_daemon *d, const char *name)
{
    bool connected;
    struct client *c = connect_cert_port(name, d->port, &connected);

    if (!connected)
        fail_msg("%s: %s", name, client_error(c));
    return c;
}

void itest_daemon_spawn(struct itest_daemon *d)
{
    const char *bin = getenv("FOLIOD_TEST_BIN");
    if (bin == NULL)
        fail_msg("FOLIOD_TEST_BIN is not set");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execl(bin, bin, "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    int64_t deadline = itest_now_ms() + 20000;
    while (itest_now_ms() < deadline) {
        struct client *c = itest_daemon_connect(d);
        if (c != NULL) {
            client_close(c);
            return;
        }
        itest_sleep_ms(100);
    }
    itest_daemon_kill(d);
    fail_msg("foliod on port %u did not start (see %s)", d->port, d->log);
}

void itest_daemon_start(struct itest_daemon *d, const char *name, const char *extra)
{
    const char *dir = getenv("FOLIOD_TEST_DIR");
    if (dir == NULL)
        fail_msg("FOLIOD_TEST_DIR is not set");
    memset(d, 0, sizeof(*d));
    d->port = itest_free_port();
    snprintf(d->conf, sizeof(d->conf), "%s/%s.conf", dir, name);
    snprintf(d->log, sizeof(d->log), "%s/%s.log", dir, name);
    unlink(d->log);
    itest_daemon_write_conf(d, extra);
    itest_daemon_spawn(d);
}

void itest_daemon_kill(struct itest_daemon *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

void itest_daemon_expect_exit_zero(struct itest_daemon *d, int timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(d->pid, &status, WNOHANG)) == 0 && itest_now_ms() < deadline)
        itest_sleep_ms(50);
    if (got == 0) {
        itest_daemon_kill(d);
        fail_msg("foliod (%s) did not exit within %d ms", d->log, timeout_ms);
    }
    d->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("foliod (%s) exited with status %d", d->log, status);
}

void itest_daemon_stop(struct itest_daemon *d, int timeout_ms)
{
    assert_int_equal(kill(d->pid, SIGTERM), 0);
    itest_daemon_expect_exit_zero(d, timeout_ms);
}

bool itest_daemon_log_contains(const struct itest_daemon *d, const char *needle)
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

bool itest_daemon_wait_log(const struct itest_daemon *d, const char *needle, int timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    while (!itest_daemon_log_contains(d, needle)) {
        if (itest_now_ms() >= deadline)
            return false;
        itest_sleep_ms(50);
    }
    return true;
}

void itest_daemon_assert_clean_log(const struct itest_daemon *d)
{
    const char *bad[] = {"AddressSanitizer", "LeakSanitizer", "runtime error", "illegal state"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (itest_daemon_log_contains(d, bad[i]))
            fail_msg("%s mentions '%s'", d->log, bad[i]);
    }
}

PGconn *itest_pg(void)
{
    const char *conninfo = getenv("FOLIOD_TEST_PG_CONNINFO");
    PGconn *pg;

    if (conninfo == NULL || conninfo[0] == '\0')
        fail_msg("FOLIOD_TEST_PG_CONNINFO is not set");
    pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(pg));
        PQfinish(pg);
        fail_msg("database: %s", msg);
    }
    return pg;
}

void itest_pg_exec(PGconn *pg, const char *query)
{
    PGresult *res = PQexec(pg, query);

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", query, PQerrorMessage(pg));
    PQclear(res);
}

/* Asks for row id of table ("folios" or "stays") FOR UPDATE in pg's open transaction, waiting
 * for it or (nowait) not. The result, for the caller to judge and clear. */
static PGresult *pg_lock_row(PGconn *pg, const char *table, json_int_t id, bool nowait)
{
    static const char *const sql[2][2] = {
        {"SELECT id FROM folios WHERE id = $1::bigint FOR UPDATE",
         "SELECT id FROM folios WHERE id = $1::bigint FOR UPDATE NOWAIT"},
        {"SELECT id FROM stays WHERE id = $1::bigint FOR UPDATE",
         "SELECT id FROM stays WHERE id = $1::bigint FOR UPDATE NOWAIT"},
    };
    char param[32];
    const char *params[1] = {param};
    int t;

    if (strcmp(table, "folios") == 0)
        t = 0;
    else if (strcmp(table, "stays") == 0)
        t = 1;
    else {
        fail_msg("no table %s to lock a row of", table);
        return NULL;
    }
    snprintf(param, sizeof(param), "%" JSON_INTEGER_FORMAT, id);
    return PQexecParams(pg, sql[t][nowait], 1, NULL, params, NULL, NULL, 0);
}

void itest_pg_lock(PGconn *pg, const char *table, json_int_t id)
{
    PGresult *res = pg_lock_row(pg, table, id, false);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        fail_msg("lock %s %" JSON_INTEGER_FORMAT ": %s", table, id, PQerrorMessage(pg));
    PQclear(res);
}

bool itest_pg_row_held(PGconn *pg, const char *table, json_int_t id)
{
    PGresult *res;
    const char *state;
    bool held = false;

    itest_pg_exec(pg, "BEGIN");
    res = pg_lock_row(pg, table, id, true);
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (state == NULL || strcmp(state, "55P03") != 0)
            fail_msg("lock %s %" JSON_INTEGER_FORMAT " NOWAIT: %s", table, id, PQerrorMessage(pg));
        held = true;
    }
    PQclear(res);
    itest_pg_exec(pg, "ROLLBACK");
    return held;
}

void itest_pg_wait_lock_waiter(int timeout_ms)
{
    PGconn *mon = itest_pg();
    int64_t until = itest_now_ms() + timeout_ms;
    bool waiting = false;

    while (!waiting) {
        PGresult *w = PQexec(mon, "SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name = 'foliod' "
                                  "AND wait_event_type = 'Lock'");

        waiting = PQresultStatus(w) == PGRES_TUPLES_OK && atoi(PQgetvalue(w, 0, 0)) > 0;
        PQclear(w);
        if (waiting || itest_now_ms() > until)
            break;
        itest_sleep_ms(50);
    }
    PQfinish(mon);
    if (!waiting)
        fail_msg("no foliod backend waited for a lock within %d ms", timeout_ms);
}
