/*
 * test_faults.c - faults under load and hostile input.
 *
 * POS clients post with idempotency keys from several threads while the database is stopped
 * and started, while foliod is killed with SIGKILL and restarted, and against two daemons on
 * one database. Every client retries a key until it gets a final answer (RY, a dropped
 * connection or a timeout are not final). Afterwards the database must hold exactly one
 * posting per acknowledged key, none for any other key of the run, and every folio balance must
 * equal the sum of its postings. Then hostile input: a 100 MB frame, deep nesting, invalid
 * UTF-8, numbers beyond 2^63, clients that vanish mid-frame, a thousand connections at once.
 *
 * The outlet FAULTS is created here with a certificate made here (signed by the test CA), so
 * its daily limits and postings never touch the demo outlets other test binaries use.
 */
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"

#define ROOM "130"
#define AMOUNT_BASE 100

static char cert_path[1024], key_path[1024];
static bool outlet_ready;

/* ---- set-up: a certificate, an outlet with a generous policy, a guest in room 130 ---- */

static void setup_outlet(void)
{
    if (outlet_ready)
        return;
    const char *dir = getenv("FOLIOD_TEST_DIR");
    assert_non_null(dir);
    char ca[1024], cakey[1024], cmd[8192];
    itest_tls_path(ca, sizeof(ca), "ca.crt");
    itest_tls_path(cakey, sizeof(cakey), "ca.key");
    snprintf(cert_path, sizeof(cert_path), "%s/outlet-FAULTS.crt", dir);
    snprintf(key_path, sizeof(key_path), "%s/outlet-FAULTS.key", dir);
    snprintf(cmd, sizeof(cmd),
             "set -e; cd '%s'; openssl ecparam -name prime256v1 -genkey -noout -out '%s' 2>/dev/null;"
             " openssl req -new -key '%s' -subj '/CN=FAULTS/O=foliod tests' -out faults.csr;"
             " printf 'extendedKeyUsage=clientAuth\\n' > faults.ext;"
             " openssl x509 -req -in faults.csr -CA '%s' -CAkey '%s' -CAcreateserial -days 2"
             " -extfile faults.ext -out '%s' 2>/dev/null",
             dir, key_path, key_path, ca, cakey, cert_path);
    itest_shell("make the FAULTS certificate", cmd);

    struct client *m = itest_connect_user("manager");
    json_t *r = itest_call_ok(
        m, "outlet.create",
        json_pack("{s:s, s:s, s:s, s:{s:[s], s:s, s:i}}", "code", "FAULTS", "name",
                  "Fault injection", "cert_cn", "FAULTS", "policy", "allowed_codes", "TIP",
                  "credit_policy", "flag", "late_charge_hours", 0));
    json_decref(r);
    itest_close(m);

    struct client *c = itest_connect_user("cashier");
    r = itest_call_ok(c, "stay.check_in",
                      json_pack("{s:s, s:{s:s, s:s}, s:s, s:i}", "room", ROOM, "guest",
                                "first_name", "Fay", "last_name", "Ults", "departure",
                                "2099-12-31", "rate", 0));
    json_decref(r);
    itest_close(c);
    outlet_ready = true;
}

static struct client *pos_connect(unsigned port, int timeout_ms)
{
    struct client_options opts;
    itest_options(&opts);
    opts.port = port;
    opts.cert_file = cert_path;
    opts.key_file = key_path;
    opts.timeout_ms = timeout_ms;
    struct client *c = client_new(&opts);
    if (c != NULL && !client_connect(c)) {
        client_close(c);
        return NULL;
    }
    return c;
}

/* ---- load: threads that each post their own keys until every one has a final answer ---- */

/* Workers keep posting new keys until this is set, then finish the key in hand. */
static volatile int stop_load;

struct worker {
    pthread_t thread;
    unsigned ports[2]; /* a key goes to ports[i % nports] */
    int nports;
    const char *prefix;
    int first, count;   /* keys prefix-first .. prefix-(first+count-1) at most */
    int done;           /* keys that got a final answer */
    int64_t deadline_ms;
    /* results */
    int ok, replayed, retries, unexpected;
    int64_t acked_total;
    char last_unexpected[256];
};

static int64_t amount_of(int i)
{
    return AMOUNT_BASE + i % 7;
}

/* Posts key i until a final answer; returns the status ("" when out of time). */
static void post_until_final(struct worker *w, struct client **cp, int i, char *status,
                             size_t statuslen)
{
    char key[64], check[32];
    snprintf(key, sizeof(key), "%s-%d", w->prefix, i);
    snprintf(check, sizeof(check), "C%d", i);
    status[0] = '\0';
    for (int attempt = 0; itest_now_ms() < w->deadline_ms; attempt++) {
        unsigned port = w->ports[(i + attempt) % w->nports];
        if (*cp == NULL)
            *cp = pos_connect(port, 5000);
        if (*cp == NULL) {
            w->retries++;
            itest_sleep_ms(100);
            continue;
        }
        json_t *params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:I}], s:I}", "key", key, "room",
                                   ROOM, "check", check, "subtotals", "code", "TIP", "amount",
                                   (json_int_t)amount_of(i), "total", (json_int_t)amount_of(i));
        json_t *resp = NULL;
        bool got = client_call(*cp, "pos.post", params, &resp);
        json_decref(params);
        if (!got) {
            /* dropped or timed out: the outcome is unknown, so the same key goes again */
            client_close(*cp);
            *cp = NULL;
            w->retries++;
            itest_sleep_ms(50);
            continue;
        }
        json_t *result = client_response_result(resp);
        const char *st = json_string_value(json_object_get(result, "status"));
        if (st == NULL) {
            snprintf(w->last_unexpected, sizeof(w->last_unexpected), "%s: not a POS answer",
                     key);
            w->unexpected++;
            json_decref(resp);
            return;
        }
        if (strcmp(st, "RY") == 0) {
            json_decref(resp);
            w->retries++;
            itest_sleep_ms(100);
            continue;
        }
        snprintf(status, statuslen, "%s", st);
        if (strcmp(st, "OK") == 0) {
            w->ok++;
            w->acked_total += amount_of(i);
            if (json_is_true(json_object_get(result, "replayed")))
                w->replayed++;
        } else {
            const char *reason = json_string_value(json_object_get(result, "reason"));
            snprintf(w->last_unexpected, sizeof(w->last_unexpected), "%s: %s/%s", key, st,
                     reason != NULL ? reason : "");
            w->unexpected++;
        }
        json_decref(resp);
        return;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct client *c = NULL;
    for (int i = w->first; i < w->first + w->count && !stop_load; i++) {
        char status[8];
        post_until_final(w, &c, i, status, sizeof(status));
        if (status[0] == '\0')
            break; /* out of time: reported by the checks */
        w->done++;
    }
    client_close(c);
    return NULL;
}

static void start_workers(struct worker *ws, int n, const char *prefix, const unsigned *ports,
                          int nports, int keys_each, bool shared_keys, int seconds)
{
    stop_load = 0;
    for (int k = 0; k < n; k++) {
        memset(&ws[k], 0, sizeof(ws[k]));
        ws[k].nports = nports;
        for (int p = 0; p < nports; p++)
            ws[k].ports[p] = ports[(p + k) % nports];
        ws[k].prefix = prefix;
        /* shared keys: pairs of workers send the same keys, each to another daemon */
        ws[k].first = shared_keys ? (k / 2) * keys_each : k * keys_each;
        ws[k].count = keys_each;
        ws[k].deadline_ms = itest_now_ms() + seconds * 1000;
        assert_int_equal(pthread_create(&ws[k].thread, NULL, worker_main, &ws[k]), 0);
    }
}

static void join_workers(struct worker *ws, int n)
{
    for (int k = 0; k < n; k++) {
        pthread_join(ws[k].thread, NULL);
        if (ws[k].unexpected > 0)
            fail_msg("worker %d: %d unexpected answers, last %s", k, ws[k].unexpected,
                     ws[k].last_unexpected);
    }
}

/* ---- checks in the database ---- */

static PGconn *db_connect(void)
{
    const char *ci = getenv("FOLIOD_TEST_PG_CONNINFO");
    if (ci == NULL)
        fail_msg("FOLIOD_TEST_PG_CONNINFO is not set");
    PGconn *pg = PQconnectdb(ci);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("cannot connect to the database: %s", PQerrorMessage(pg));
    return pg;
}

static long long query_ll(PGconn *pg, const char *sql, const char *param)
{
    const char *params[1] = {param};
    PGresult *r = PQexecParams(pg, sql, param != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long long v = PQgetisnull(r, 0, 0) ? 0 : atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* Exactly one OK request and one posting per key of the run, the acknowledged sum posted once,
 * and every balance equal to its postings. */
static void check_exactly_once(const char *prefix, int keys, int64_t acked_total)
{
    PGconn *pg = db_connect();
    char like[64];
    snprintf(like, sizeof(like), "%s-%%", prefix);
    long long requests = query_ll(pg,
                                  "SELECT count(*) FROM pos_requests r JOIN outlets o ON o.id = "
                                  "r.outlet_id WHERE o.code = 'FAULTS' AND r.key LIKE $1",
                                  like);
    long long ok = query_ll(pg,
                            "SELECT count(*) FROM pos_requests r JOIN outlets o ON o.id = "
                            "r.outlet_id WHERE o.code = 'FAULTS' AND r.key LIKE $1 AND "
                            "r.status = 'OK'",
                            like);
    long long posted = query_ll(pg,
                                "SELECT count(*) FROM postings p WHERE p.id IN (SELECT "
                                "unnest(r.posting_ids) FROM pos_requests r JOIN outlets o ON "
                                "o.id = r.outlet_id WHERE o.code = 'FAULTS' AND r.key LIKE $1)",
                                like);
    long long sum = query_ll(pg,
                             "SELECT coalesce(sum(r.total), 0) FROM pos_requests r JOIN outlets "
                             "o ON o.id = r.outlet_id WHERE o.code = 'FAULTS' AND r.key LIKE $1 "
                             "AND r.status = 'OK'",
                             like);
    /* postings of the outlet that no stored request accounts for would be doubles */
    long long strays = query_ll(
        pg,
        "SELECT count(*) FROM postings p JOIN outlets o ON o.id = p.outlet_id WHERE o.code = "
        "'FAULTS' AND NOT EXISTS (SELECT 1 FROM pos_requests r WHERE p.id = ANY (r.posting_ids))",
        NULL);
    long long bad_balances = query_ll(
        pg,
        "SELECT count(*) FROM folios f WHERE f.balance <> (SELECT coalesce(sum(p.amount), 0) "
        "FROM postings p WHERE p.folio_id = f.id)",
        NULL);
    PQfinish(pg);
    assert_int_equal(requests, keys);
    assert_int_equal(ok, keys);
    assert_int_equal(posted, keys);
    assert_int_equal(sum, acked_total);
    assert_int_equal(strays, 0);
    assert_int_equal(bad_balances, 0);
}

static int64_t expected_total(int first, int keys)
{
    int64_t t = 0;
    for (int i = first; i < first + keys; i++)
        t += amount_of(i);
    return t;
}

/* ---- the tests ---- */

#define WORKERS 6
#define KEYS_EACH 30
#define KEYS_MAX 100000

/* Sums what the workers acknowledged and checks that every key they started got a final answer
 * (a worker stops only between keys). Returns the number of keys. */
static int collect(struct worker *ws, int n, int64_t *acked, int *retries)
{
    int keys = 0;
    *acked = 0;
    *retries = 0;
    for (int k = 0; k < n; k++) {
        assert_int_equal(ws[k].ok, ws[k].done);
        keys += ws[k].done;
        *acked += ws[k].acked_total;
        *retries += ws[k].retries;
    }
    return keys;
}

/* The keys of worker k are first..first+done-1: the expected total is recomputed from them. */
static int64_t expected_of(struct worker *ws, int n)
{
    int64_t t = 0;
    for (int k = 0; k < n; k++)
        t += expected_total(ws[k].first, ws[k].done);
    return t;
}

static void test_database_restart_under_load(void **state)
{
    (void)state;
    setup_outlet();
    const struct itest_env *env = itest_env();
    if (env->pg_stop == NULL || env->pg_start == NULL)
        fail_msg("FOLIOD_TEST_PG_STOP and FOLIOD_TEST_PG_START must be set");
    struct worker ws[WORKERS];
    unsigned ports[1] = {env->port};
    start_workers(ws, WORKERS, "pgr", ports, 1, KEYS_MAX, false, 90);
    itest_sleep_ms(1500);
    itest_shell("stop PostgreSQL", env->pg_stop);
    itest_sleep_ms(2000);
    itest_shell("start PostgreSQL", env->pg_start);
    itest_sleep_ms(1500);
    stop_load = 1;
    join_workers(ws, WORKERS);
    int64_t acked;
    int retries;
    int keys = collect(ws, WORKERS, &acked, &retries);
    printf("test_faults: database stopped 2 s under load: %d keys acknowledged, %d retries\n",
           keys, retries);
    assert_true(retries > 0); /* the outage really hit requests in flight */
    assert_int_equal(acked, expected_of(ws, WORKERS));
    check_exactly_once("pgr", keys, acked);
}

static void test_sigkill_under_load(void **state)
{
    (void)state;
    setup_outlet();
    struct itest_daemon d;
    itest_daemon_start(&d, "faults-kill", "[log]\naccess = no\n");
    struct worker ws[WORKERS];
    unsigned ports[1] = {d.port};
    start_workers(ws, WORKERS, "kill", ports, 1, KEYS_MAX, false, 90);
    for (int round = 0; round < 2; round++) {
        itest_sleep_ms(1000);
        itest_daemon_kill(&d);
        itest_sleep_ms(300);
        itest_daemon_spawn(&d);
    }
    itest_sleep_ms(1000);
    stop_load = 1;
    join_workers(ws, WORKERS);
    int64_t acked;
    int retries;
    int keys = collect(ws, WORKERS, &acked, &retries);
    printf("test_faults: foliod SIGKILLed twice under load: %d keys acknowledged, %d retries\n",
           keys, retries);
    assert_true(retries > 0);
    assert_int_equal(acked, expected_of(ws, WORKERS));
    check_exactly_once("kill", keys, acked);
    itest_daemon_stop(&d, 15000);
}

static void test_two_daemons_one_database(void **state)
{
    (void)state;
    setup_outlet();
    struct itest_daemon a, b;
    itest_daemon_start(&a, "faults-a", "[log]\naccess = no\n");
    itest_daemon_start(&b, "faults-b", "[log]\naccess = no\n");
    struct worker ws[WORKERS];
    unsigned ports[2] = {a.port, b.port};
    /* workers 2k and 2k+1 send the same keys, each starting on another daemon */
    start_workers(ws, WORKERS, "two", ports, 2, KEYS_EACH, true, 90);
    join_workers(ws, WORKERS); /* runs to the end of its keys: stop_load stays 0 */
    int replayed = 0;
    for (int k = 0; k < WORKERS; k++) {
        assert_int_equal(ws[k].ok, KEYS_EACH);
        replayed += ws[k].replayed;
    }
    /* each shared key was posted once and answered twice: once fresh, once replayed */
    int keys = WORKERS / 2 * KEYS_EACH;
    assert_int_equal(replayed, keys);
    printf("test_faults: two daemons: %d keys sent twice each, %d replays\n", keys, replayed);
    check_exactly_once("two", keys, expected_total(0, keys));
    itest_daemon_stop(&a, 15000);
    itest_daemon_stop(&b, 15000);
}

static void expect_protocol_error(struct client *c, const char *bytes, size_t len, int code)
{
    assert_true(client_send_raw(c, bytes, len));
    json_t *r = itest_next_response(c, 60000);
    itest_assert_error(r, code, NULL);
    json_decref(r);
    r = itest_call_ok(c, "server.ping", NULL);
    json_decref(r);
}

static void test_hostile_input(void **state)
{
    (void)state;
    struct client *c = itest_connect();

    /* 100 MB without a line end, then the end: one frame_too_large, the connection lives */
    size_t big = 100u << 20;
    char *buf = malloc(1u << 20);
    assert_non_null(buf);
    memset(buf, 'x', 1u << 20);
    for (size_t sent = 0; sent < big; sent += 1u << 20)
        assert_true(client_send_raw(c, buf, 1u << 20));
    free(buf);
    json_t *r = NULL;
    assert_true(client_send_raw(c, "\n", 1));
    r = itest_next_response(c, 60000);
    itest_assert_error(r, -32600, "frame_too_large");
    json_decref(r);
    r = itest_call_ok(c, "server.ping", NULL);
    json_decref(r);

    /* nesting far deeper than any request: refused as a parse error, no stack overflow */
    size_t depth = 30000;
    char *deep = malloc(2 * depth + 2);
    assert_non_null(deep);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\n';
    expect_protocol_error(c, deep, 2 * depth + 1, -32700);
    free(deep);

    static const char bad_utf8[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.ping\",\"params\":{\"x\":\"\xff\xfe\"}}\n";
    expect_protocol_error(c, bad_utf8, sizeof(bad_utf8) - 1, -32700);
    static const char huge_number[] =
        "{\"jsonrpc\":\"2.0\",\"id\":18446744073709551616,\"method\":\"server.ping\"}\n";
    expect_protocol_error(c, huge_number, sizeof(huge_number) - 1, -32700);
    static const char huge_amount[] =
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"folio.post\",\"params\":{\"stay_id\":1,"
        "\"code\":\"FOOD\",\"amount\":99999999999999999999999}}\n";
    expect_protocol_error(c, huge_amount, sizeof(huge_amount) - 1, -32700);
    itest_close(c);

    /* clients that leave in the middle of a frame or a handshake */
    for (int i = 0; i < 20; i++) {
        struct client *v = itest_connect();
        static const char half[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"meth";
        assert_true(client_send_raw(v, half, sizeof(half) - 1));
        itest_close(v);
    }
    for (int i = 0; i < 20; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {0};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)itest_env()->port);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            (void)!send(fd, "\x16\x03\x01", 3, MSG_NOSIGNAL);
        close(fd);
    }

    /* a thousand connections at once, all served */
    enum { MANY = 1000 };
    static struct client *many[MANY];
    int opened = 0;
    /* each asks at once: the harness's idle timeout (5 s) may close early ones while later ones
     * are still connecting, after their answer, which is what it is for */
    json_int_t ids[MANY];
    for (int i = 0; i < MANY; i++) {
        struct client_options opts;
        itest_options(&opts);
        many[i] = client_new(&opts);
        assert_non_null(many[i]);
        if (client_connect(many[i]))
            opened++;
        assert_true(client_send_request(many[i], "server.ping", NULL, &ids[i]));
    }
    assert_int_equal(opened, MANY);
    for (int i = 0; i < MANY; i++) {
        json_t *resp = NULL;
        assert_true(client_wait_response(many[i], ids[i], 30000, &resp));
        assert_non_null(client_response_result(resp));
        json_decref(resp);
        client_close(many[i]);
    }

    /* and the daemon still answers */
    c = itest_connect();
    r = itest_call_ok(c, "server.ping", NULL);
    assert_string_equal(itest_str(r, "db"), "up");
    json_decref(r);
    itest_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_database_restart_under_load),
        ITEST(test_sigkill_under_load),
        ITEST(test_two_daemons_one_database),
        ITEST(test_hostile_input),
    };
    return cmocka_run_group_tests_name("faults", tests, itest_group_setup, NULL);
}
