/*
 * test_pos.c - integration tests of the POS interface (docs/pos.md) against a running foliod:
 * outlets identified by their client certificates, every FIAS answer status from a real
 * scenario (OK NG NP CO DM IA DN UR, and RY with PostgreSQL stopped), idempotency (replay, a
 * dropped connection, two concurrent requests with one key, a key reused for another body),
 * per-outlet policy, routing, late charges, and the POS simulator program.
 *
 * Guests are checked in through the front-desk methods as the demo cashier, in rooms 2xx of the
 * demo hotel (other test binaries use 1xx, 3xx and 4xx). The demo outlets' policies are those
 * of etc/demo-hotel.json (docs/schema.md). Certificates come from FOLIOD_TEST_TLS:
 * outlet-<CODE>.crt/.key for the demo outlets, outlet-GHOST (no such outlet), outlet-OFFLINE
 * (an outlet this test creates disabled), foreign-client and expired-REST.
 *
 * Needs FOLIOD_TEST_PG_STOP/START for the RY test and FOLIOD_TEST_PG_CONNINFO to age a checkout
 * (late-charge window); the tests that need them are skipped without. PostgreSQL is started
 * again by the teardown if a failed test left it stopped.
 */
#include "itest.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define POS_RECOVERY_MS 20000

static char pos_run[32];       /* makes the idempotency keys of this run unique */
static char pos_date[11];      /* the open business date */
static char pos_departure[11]; /* business date + 2 */
static bool pos_pg_stopped;

/* ---- helpers ---- */

static void pos_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void pos_key(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s-%s", pos_run, name);
}

static char *pos_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* A connected client with the outlet's certificate; fails the test otherwise. */
static struct client *pos_connect(const char *outlet)
{
    char name[64];
    bool connected;
    struct client *c;

    snprintf(name, sizeof(name), "outlet-%s", outlet);
    c = itest_connect_cert(name, &connected);
    if (!connected)
        fail_msg("%s: %s", name, client_error(c));
    return c;
}

/* A POS method's answer (a result object with a status); params stolen. New reference. */
static json_t *pos_call(struct client *c, const char *method, json_t *params)
{
    json_t *response = NULL, *result;

    if (!client_call_new(c, method, params, &response))
        fail_msg("%s: %s", method, client_error(c));
    result = client_response_result(response);
    if (!json_is_object(result) || !json_is_string(json_object_get(result, "status"))) {
        char *text = pos_dump(response);

        fail_msg("%s: expected an answer with a status, got %s", method, text ? text : "?");
    }
    json_incref(result);
    json_decref(response);
    return result;
}

/* Fails the test unless the answer has this status and reason (NULL: any reason) and a
 * message for a person. */
static void pos_expect(const json_t *a, const char *status, const char *reason)
{
    const char *st = json_string_value(json_object_get(a, "status"));
    const char *re = json_string_value(json_object_get(a, "reason"));
    const char *msg = json_string_value(json_object_get(a, "message"));

    if (st == NULL || strcmp(st, status) != 0 || re == NULL ||
        (reason != NULL && strcmp(re, reason) != 0) || msg == NULL || msg[0] == '\0') {
        char *text = pos_dump(a);

        fail_msg("expected %s %s, got %s", status, reason != NULL ? reason : "*",
                 text != NULL ? text : "?");
    }
}

static json_t *pos_call_expect(struct client *c, const char *method, json_t *params,
                               const char *status, const char *reason)
{
    json_t *a = pos_call(c, method, params);

    pos_expect(a, status, reason);
    return a;
}

static int64_t pos_round(int64_t num, int64_t den)
{
    int64_t q = num / den, r = num % den;

    if (2 * (r < 0 ? -r : r) >= den)
        q += num < 0 ? -1 : 1;
    return q;
}

/* The total a subtotal makes with the demo's rules (docs/schema.md), computed here
 * independently of the server; tax and service are added to *tax and *service. */
static int64_t pos_split(const char *code, int64_t amount, int64_t *tax, int64_t *service)
{
    int64_t svc = 0, t = 0, net = amount;

    if (strcmp(code, "FOOD") == 0) {
        svc = pos_round(amount * 100000, 1000000);
        t = pos_round((amount + svc) * 60000, 1000000);
    } else if (strcmp(code, "BEV") == 0) {
        svc = pos_round(amount * 100000, 1000000);
        t = pos_round((amount + svc) * 200000, 1000000);
    } else if (strcmp(code, "LAUNDRY") == 0 || strcmp(code, "MINIBAR") == 0 ||
               strcmp(code, "MISC") == 0) {
        t = pos_round(amount * 200000, 1000000);
    } else if (strcmp(code, "SPA") == 0) {
        t = pos_round(amount * 200000, 1200000); /* inclusive */
        net = amount - t;
    } else if (strcmp(code, "TIP") != 0) {
        fail_msg("pos_split: no rules for %s", code);
    }
    *tax += t;
    *service += svc;
    return net + svc + t;
}

/* pos.post params for one subtotal with the right total (tax and service left out). */
static json_t *pos_post_params(const char *key, const char *room, const char *check,
                               const char *code, int64_t amount)
{
    int64_t tax = 0, service = 0, total = pos_split(code, amount, &tax, &service);
    char k[96];

    pos_key(k, sizeof(k), key);
    return json_pack("{s:s, s:s, s:s, s:[{s:s, s:I}], s:I}", "key", k, "room", room, "check", check,
                     "subtotals", "code", code, "amount", (json_int_t)amount, "total",
                     (json_int_t)total);
}

/* Check a guest in as the cashier: room, names, credit limit (< 0: none), no-post, and the
 * stay to share the room with (0: none). Returns the stay id; *window1 gets window 1's id. */
static json_int_t pos_check_in(struct client *cashier, const char *room, const char *first,
                               const char *last, json_int_t credit_limit, bool no_post,
                               json_int_t share_with, json_int_t *window1)
{
    json_t *p = json_pack("{s:s, s:{s:s, s:s}, s:s, s:b}", "room", room, "guest", "first_name",
                          first, "last_name", last, "departure", pos_departure, "no_post", no_post);
    json_t *st;
    json_int_t id;

    if (credit_limit >= 0)
        json_object_set_new(p, "credit_limit", json_integer(credit_limit));
    if (share_with > 0)
        json_object_set_new(p, "share_with", json_integer(share_with));
    st = itest_call_ok(cashier, "stay.check_in", p);
    id = json_integer_value(json_object_get(st, "id"));
    if (window1 != NULL)
        *window1 = json_integer_value(
            json_object_get(json_array_get(json_object_get(st, "folios"), 0), "id"));
    assert_true(id > 0);
    json_decref(st);
    return id;
}

static void pos_check_out(struct client *cashier, json_int_t stay_id)
{
    json_decref(itest_call_ok(cashier, "stay.check_out", json_pack("{s:I}", "stay_id", stay_id)));
}

/* folio.get as the cashier (new reference). */
static json_t *pos_folio(struct client *cashier, json_int_t folio_id)
{
    return itest_call_ok(cashier, "folio.get", json_pack("{s:I}", "folio_id", folio_id));
}

/* The postings of a folio whose reference is check: how many, and their sum. */
static size_t pos_folio_lines(struct client *cashier, json_int_t folio_id, const char *check,
                              int64_t *sum)
{
    json_t *f = pos_folio(cashier, folio_id), *l;
    size_t i, n = 0;

    *sum = 0;
    json_array_foreach (json_object_get(f, "postings"), i, l)
    {
        const char *ref = json_string_value(json_object_get(l, "reference"));

        if (ref != NULL && strcmp(ref, check) == 0) {
            n++;
            *sum += json_integer_value(json_object_get(l, "amount"));
            assert_string_equal(itest_str(l, "source"), "pos");
        }
    }
    json_decref(f);
    return n;
}

static json_int_t pos_int(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v)) {
        char *text = pos_dump(obj);

        fail_msg("expected an integer %s in %s", key, text != NULL ? text : "?");
    }
    return json_integer_value(v);
}

/* Runs SQL through libpq (FOLIOD_TEST_PG_CONNINFO); false when that is not set. */
static bool pos_sql(const char *sql)
{
    const char *conninfo = getenv("FOLIOD_TEST_PG_CONNINFO");
    PGconn *db;
    PGresult *res;
    bool ok;

    if (conninfo == NULL || conninfo[0] == '\0')
        return false;
    db = itest_pg();
    res = PQexec(db, sql);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(db));
        PQclear(res);
        PQfinish(db);
        fail_msg("libpq: %s: %s", sql, msg);
    }
    PQclear(res);
    PQfinish(db);
    return true;
}

static int pos_group_setup(void **state)
{
    struct client *c;
    json_t *info;
    const char *bd;
    int rc = itest_group_setup(state);

    if (rc != 0)
        return rc;
    snprintf(pos_run, sizeof(pos_run), "t%lld-%ld", (long long)time(NULL), (long)getpid());
    c = itest_connect_user("cashier");
    info = itest_call_ok(c, "server.info", NULL);
    bd = json_string_value(
        json_object_get(json_array_get(json_object_get(info, "properties"), 0), "business_date"));
    assert_non_null(bd);
    snprintf(pos_date, sizeof(pos_date), "%s", bd);
    json_decref(info);
    itest_close(c);
    {
        struct tm tm = {0};
        time_t t;

        strptime(pos_date, "%Y-%m-%d", &tm);
        tm.tm_hour = 12;
        t = timegm(&tm) + 2 * 86400;
        gmtime_r(&t, &tm);
        strftime(pos_departure, sizeof(pos_departure), "%Y-%m-%d", &tm);
    }
    return itest_teardown(state);
}

/* PostgreSQL back up if a failed test left it stopped, then the usual clean-up. */
static int pos_teardown(void **state)
{
    const struct itest_env *env = itest_env();

    if (pos_pg_stopped && env->pg_start != NULL) {
        if (system(env->pg_start) != 0)
            fprintf(stderr, "test_pos: could not restart PostgreSQL\n");
        else
            pos_pg_stopped = false;
    }
    return itest_teardown(state);
}

/* ---- identity ---- */

static void test_hello_and_roles(void **state)
{
    struct client *rest = pos_connect("REST");
    struct client *cashier = itest_connect_user("cashier");
    json_t *a, *codes, *c;
    size_t i;
    bool food = false;

    (void)state;
    a = pos_call_expect(rest, "pos.hello", NULL, "OK", "linked");
    assert_string_equal(itest_str(json_object_get(a, "outlet"), "code"), "REST");
    assert_string_equal(itest_str(json_object_get(a, "property"), "code"), "DEMO");
    assert_string_equal(itest_str(json_object_get(a, "property"), "currency"), "EUR");
    assert_string_equal(itest_str(a, "business_date"), pos_date);
    assert_string_equal(itest_str(json_object_get(a, "policy"), "credit_policy"), "refuse");
    assert_int_equal(pos_int(json_object_get(a, "policy"), "max_per_posting"), 150000);
    assert_string_equal(itest_str(a, "tip_code"), "TIP");
    codes = json_object_get(a, "codes");
    json_array_foreach (codes, i, c)
    {
        if (strcmp(itest_str(c, "code"), "FOOD") == 0) {
            food = true;
            assert_int_equal(json_array_size(json_object_get(c, "rules")), 2);
            assert_string_equal(itest_str(json_array_get(json_object_get(c, "rules"), 0), "kind"),
                                "service");
        }
        assert_true(strcmp(itest_str(c, "code"), "SPA") != 0);
    }
    assert_true(food);
    json_decref(a);

    /* staff never reach the POS methods, whatever they send */
    json_decref(itest_call_error(cashier, "pos.hello", NULL, -32000, "forbidden"));
    json_decref(itest_call_error(cashier, "pos.post",
                                 pos_post_params("staff", "201", "1", "FOOD", 1000), -32000,
                                 "forbidden"));
    json_decref(itest_call_error(cashier, "pos.status", json_pack("{s:s}", "key", "x"), -32000,
                                 "forbidden"));
    /* and an outlet reaches nothing else */
    json_decref(itest_call_error(
        rest, "folio.post",
        json_pack("{s:I, s:s, s:i}", "stay_id", (json_int_t)1, "code", "FOOD", "amount", 100),
        -32000, "forbidden"));
    itest_close(rest);
    itest_close(cashier);
}

/* A certificate that is refused: the handshake fails, or (TLS 1.3) the first exchange. */
static void pos_assert_cert_refused(const char *name)
{
    bool connected;
    struct client *c = itest_connect_cert(name, &connected);
    json_t *r = NULL;
    enum client_error_kind kind;

    if (connected && client_call(c, "pos.hello", NULL, &r)) {
        char *text = pos_dump(r);

        fail_msg("%s: the server answered %s instead of refusing the certificate", name,
                 text != NULL ? text : "?");
    }
    kind = client_error_kind(c);
    if (kind != CLIENT_ERR_TLS && kind != CLIENT_ERR_CLOSED)
        fail_msg("%s: expected a TLS refusal, got %s: %s", name, client_error_kind_str(kind),
                 client_error(c));
    itest_close(c);
}

/* An accepted handshake whose first request is refused with reason, then the connection
 * closes. */
static void pos_assert_first_request_refused(const char *name, const char *reason)
{
    bool connected;
    struct client *c = itest_connect_cert(name, &connected);
    json_t *r, *msg;

    if (!connected)
        fail_msg("%s: %s", name, client_error(c));
    r = itest_call_error(c, "pos.hello", NULL, -32000, reason);
    json_decref(r);
    if (client_next(c, ITEST_TIMEOUT_MS, &msg)) {
        char *text = pos_dump(msg);

        fail_msg("%s: expected the connection to close, got %s", name, text ? text : "?");
    }
    itest_close(c);
}

static void test_certificates(void **state)
{
    struct client *manager = itest_connect_user("manager");
    struct client *off;
    json_t *r;

    (void)state;
    pos_assert_cert_refused("foreign-client");
    pos_assert_cert_refused("expired-REST");
    /* signed by the right CA, but no outlet has that certificate */
    pos_assert_first_request_refused("outlet-GHOST", "unknown_outlet");

    /* a disabled outlet: refused at its first request */
    itest_create(manager, "outlet.create",
                 json_pack("{s:s, s:s, s:s, s:b, s:{s:[s]}}", "code", "OFFLINE", "name",
                           "Closed kiosk", "cert_cn", "OFFLINE", "enabled", 0, "policy",
                           "allowed_codes", "MISC"));
    r = itest_call_ok(manager, "outlet.update",
                      json_pack("{s:s, s:b}", "code", "OFFLINE", "enabled", 0));
    json_decref(r);
    pos_assert_first_request_refused("outlet-OFFLINE", "outlet_disabled");

    /* enabled, it connects; disabled while connected, its requests are refused (DN) */
    json_decref(itest_call_ok(manager, "outlet.update",
                              json_pack("{s:s, s:b}", "code", "OFFLINE", "enabled", 1)));
    off = pos_connect("OFFLINE");
    json_decref(pos_call_expect(off, "pos.hello", NULL, "OK", "linked"));
    json_decref(itest_call_ok(manager, "outlet.update",
                              json_pack("{s:s, s:b}", "code", "OFFLINE", "enabled", 0)));
    json_decref(pos_call_expect(off, "pos.hello", NULL, "DN", "outlet_disabled"));
    json_decref(pos_call_expect(off, "pos.post", pos_post_params("off", "201", "1", "MISC", 100),
                                "DN", "outlet_disabled"));
    itest_close(off);
    itest_close(manager);
}

/* ---- posting, idempotency ---- */

static void test_post_replay_status(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    struct client *bar = pos_connect("BAR");
    json_int_t stay, w1;
    json_t *a, *b, *params, *lines, *f, *l;
    char key[96];
    int64_t sum;
    size_t i;
    bool listed = false;

    (void)state;
    stay = pos_check_in(cashier, "201", "Ada", "Lovelace", 100000, false, 0, &w1);

    /* FOOD 100.00 -> FOOD 100.00, SVC10 10.00, VAT6 6.60 = 116.60, tax and service given */
    params = json_pack("{s:s, s:s, s:s, s:i, s:s, s:[{s:s, s:i}], s:i, s:i, s:i, s:[{s:s, s:i, "
                       "s:i}], s:s}",
                       "key", "", "room", "201", "check", "C201-1", "covers", 2, "table", "12",
                       "subtotals", "code", "FOOD", "amount", 10000, "tax", 660, "service", 1000,
                       "total", 11660, "items", "name", "Soup", "quantity", 2, "amount", 5000,
                       "description", "dinner");
    pos_key(key, sizeof(key), "post-1");
    json_object_set_new(params, "key", json_string(key));
    a = pos_call_expect(rest, "pos.post", json_deep_copy(params), "OK", "posted");
    assert_false(json_is_true(json_object_get(a, "replayed")));
    assert_int_equal(pos_int(a, "total"), 11660);
    assert_int_equal(pos_int(a, "tax"), 660);
    assert_int_equal(pos_int(a, "service"), 1000);
    assert_int_equal(pos_int(a, "stay_id"), stay);
    assert_string_equal(itest_str(a, "key"), key);
    lines = json_object_get(a, "postings");
    assert_int_equal(json_array_size(lines), 3);
    assert_string_equal(itest_str(json_array_get(lines, 0), "code"), "FOOD");
    assert_int_equal(pos_int(json_array_get(lines, 0), "amount"), 10000);
    assert_int_equal(pos_int(json_array_get(lines, 1), "amount"), 1000);
    assert_int_equal(pos_int(json_array_get(lines, 2), "amount"), 660);
    assert_int_equal(json_array_size(json_object_get(a, "warnings")), 0);

    /* on the guest's folio: source pos, the check as reference, the outlet as operator */
    f = pos_folio(cashier, w1);
    assert_int_equal(pos_int(f, "balance"), 11660);
    json_array_foreach (json_object_get(f, "postings"), i, l)
    {
        assert_string_equal(itest_str(l, "source"), "pos");
        assert_string_equal(itest_str(l, "reference"), "C201-1");
        assert_string_equal(itest_str(l, "operator"), "outlet:REST");
    }
    json_decref(f);

    /* the same key and body: the first answer, replayed, nothing posted again */
    b = pos_call_expect(rest, "pos.post", json_deep_copy(params), "OK", "posted");
    assert_true(json_is_true(json_object_get(b, "replayed")));
    assert_true(json_equal(json_object_get(a, "postings"), json_object_get(b, "postings")));
    json_decref(b);
    assert_int_equal(pos_folio_lines(cashier, w1, "C201-1", &sum), 3);
    assert_int_equal(sum, 11660);

    /* pos.status: the stored answer */
    b = pos_call_expect(rest, "pos.status", json_pack("{s:s}", "key", key), "OK", "posted");
    assert_true(json_is_true(json_object_get(b, "replayed")));
    assert_true(json_equal(json_object_get(a, "postings"), json_object_get(b, "postings")));
    json_decref(b);

    /* the same key with another body */
    json_object_set_new(params, "check", json_string("C201-2"));
    json_decref(
        pos_call_expect(rest, "pos.post", json_deep_copy(params), "UR", "idempotency_key_reused"));
    assert_int_equal(pos_folio_lines(cashier, w1, "C201-2", &sum), 0);

    /* keys of nobody, and keys of another outlet */
    json_decref(pos_call_expect(rest, "pos.status", json_pack("{s:s}", "key", "no-such-key"), "UR",
                                "unknown_key"));
    json_decref(
        pos_call_expect(bar, "pos.status", json_pack("{s:s}", "key", key), "UR", "unknown_key"));

    /* pos.postings: REST lists the check, BAR does not */
    b = pos_call_expect(rest, "pos.postings", NULL, "OK", "listed");
    assert_string_equal(itest_str(b, "business_date"), pos_date);
    json_array_foreach (json_object_get(b, "checks"), i,
                       l) if (strcmp(itest_str(l, "key"), key) == 0)
    {
        listed = true;
        assert_int_equal(pos_int(l, "total"), 11660);
    }
    assert_true(listed);
    assert_true(pos_int(b, "total") >= 11660);
    json_decref(b);
    b = pos_call_expect(bar, "pos.postings", json_pack("{s:s}", "business_date", pos_date), "OK",
                        "listed");
    json_array_foreach (json_object_get(b, "checks"), i, l)
        assert_true(strcmp(itest_str(l, "key"), key) != 0);
    json_decref(b);

    json_decref(a);
    json_decref(params);
    itest_close(rest);
    itest_close(bar);
    itest_close(cashier);
}

static void test_invalid_requests(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    json_t *params, *a;
    json_int_t w1;
    int64_t sum;

    (void)state;
    pos_check_in(cashier, "202", "Alan", "Turing", -1, false, 0, &w1);
    /* refused by the daemon's parameter check: a real number for an amount, a missing total */
    params = pos_post_params("invalid", "202", "C202", "FOOD", 1000);
    json_object_set_new(params, "total", json_real(11.66));
    a = pos_call_expect(rest, "pos.post", params, "UR", "invalid_request");
    assert_string_equal(itest_str(a, "field"), "total");
    json_decref(a);
    /* refused by the SQL's check: an unknown member in a subtotal, a zero subtotal */
    params = pos_post_params("invalid", "202", "C202", "FOOD", 1000);
    json_object_set_new(json_array_get(json_object_get(params, "subtotals"), 0), "qty",
                        json_integer(1));
    json_decref(pos_call_expect(rest, "pos.post", params, "UR", "invalid_request"));
    params = pos_post_params("invalid", "202", "C202", "FOOD", 1000);
    json_object_set_new(json_array_get(json_object_get(params, "subtotals"), 0), "amount",
                        json_integer(0));
    json_decref(pos_call_expect(rest, "pos.post", params, "UR", "invalid_request"));
    json_decref(pos_call_expect(rest, "pos.inquiry",
                                json_pack("{s:s, s:s}", "room", "202", "name", "tur"), "UR",
                                "invalid_request"));
    /* a malformed message is not stored: the same key with a good body posts */
    json_decref(
        pos_call_expect(rest, "pos.status", json_pack("{s:s}", "key", "x"), "UR", "unknown_key"));
    a = pos_call_expect(rest, "pos.post", pos_post_params("invalid", "202", "C202", "FOOD", 1000),
                        "OK", "posted");
    assert_false(json_is_true(json_object_get(a, "replayed")));
    json_decref(a);
    assert_int_equal(pos_folio_lines(cashier, w1, "C202", &sum), 3);
    itest_close(rest);
    itest_close(cashier);
}

static void test_mismatch(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    json_t *params, *a, *exp;
    json_int_t w1;
    int64_t tax = 0, service = 0, total, sum;
    char key[96];

    (void)state;
    pos_check_in(cashier, "206", "Grace", "Hopper", -1, false, 0, &w1);
    /* FOOD 25.50 + BEV 10.00 + tip 2.00 */
    total = pos_split("FOOD", 2550, &tax, &service) + pos_split("BEV", 1000, &tax, &service) + 200;
    pos_key(key, sizeof(key), "dm-total");
    params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:i}, {s:s, s:i}], s:i, s:I}", "key", key, "room",
                       "206", "check", "C206", "subtotals", "code", "FOOD", "amount", 2550, "code",
                       "BEV", "amount", 1000, "tip", 200, "total", (json_int_t)(total - 1));
    a = pos_call_expect(rest, "pos.post", params, "DM", "total_mismatch");
    exp = json_object_get(a, "expected");
    assert_int_equal(pos_int(exp, "total"), total);
    assert_int_equal(pos_int(exp, "tax"), tax);
    assert_int_equal(pos_int(exp, "service"), service);
    assert_int_equal(pos_int(exp, "tip"), 200);
    json_decref(a);

    pos_key(key, sizeof(key), "dm-tax");
    params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:i}], s:I, s:I}", "key", key, "room", "206",
                       "check", "C206", "subtotals", "code", "BEV", "amount", 1000, "tax",
                       (json_int_t)(tax + 1), "total", (json_int_t)total);
    json_decref(pos_call_expect(rest, "pos.post", params, "DM", "tax_mismatch"));
    pos_key(key, sizeof(key), "dm-service");
    params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:i}], s:i, s:I}", "key", key, "room", "206",
                       "check", "C206", "subtotals", "code", "FOOD", "amount", 1000, "service", 99,
                       "total", (json_int_t)1166);
    json_decref(pos_call_expect(rest, "pos.post", params, "DM", "service_mismatch"));
    /* a refusal is stored too: the same request gets it again, replayed */
    a = pos_call_expect(rest, "pos.status", json_pack("{s:s}", "key", key), "DM",
                        "service_mismatch");
    assert_true(json_is_true(json_object_get(a, "replayed")));
    json_decref(a);
    assert_int_equal(pos_folio_lines(cashier, w1, "C206", &sum), 0);

    /* the right total with tip, tax and service: posted on FOOD, BEV and TIP */
    pos_key(key, sizeof(key), "dm-ok");
    params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:i}, {s:s, s:i}], s:i, s:I, s:I, s:I}", "key",
                       key, "room", "206", "check", "C206", "subtotals", "code", "FOOD", "amount",
                       2550, "code", "BEV", "amount", 1000, "tip", 200, "tax", (json_int_t)tax,
                       "service", (json_int_t)service, "total", (json_int_t)total);
    json_decref(pos_call_expect(rest, "pos.post", params, "OK", "posted"));
    assert_int_equal(pos_folio_lines(cashier, w1, "C206", &sum), 7);
    assert_int_equal(sum, total);
    itest_close(rest);
    itest_close(cashier);
}

/* ---- the guest ---- */

static void test_guest_not_found(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    struct client *bar = pos_connect("BAR");
    struct client *spa = pos_connect("SPA");
    json_int_t s1, s2, other, w1;
    json_t *params, *a;

    (void)state;
    json_decref(pos_call_expect(rest, "pos.post", pos_post_params("ng-1", "299", "C", "FOOD", 100),
                                "NG", "unknown_room"));
    json_decref(pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "room", "299"), "NG",
                                "unknown_room"));
    json_decref(pos_call_expect(rest, "pos.post", pos_post_params("ng-2", "229", "C", "FOOD", 100),
                                "NG", "not_in_house"));
    json_decref(pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "room", "229"), "NG",
                                "not_in_house"));

    /* two guests in one room: each listed, a posting must say which */
    s1 = pos_check_in(cashier, "203", "Marie", "Curie", -1, false, 0, NULL);
    s2 = pos_check_in(cashier, "203", "Pierre", "Curie", -1, false, s1, &w1);
    a = pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "room", "203"), "OK", "found");
    assert_int_equal(json_array_size(json_object_get(a, "guests")), 2);
    json_decref(a);
    json_decref(pos_call_expect(rest, "pos.post", pos_post_params("ng-3", "203", "C", "FOOD", 100),
                                "NG", "stay_required"));
    params = pos_post_params("ng-4", "203", "C203", "FOOD", 100);
    json_object_set_new(params, "stay_id", json_integer(s2));
    a = pos_call_expect(rest, "pos.post", params, "OK", "posted");
    assert_int_equal(pos_int(a, "stay_id"), s2);
    assert_int_equal(pos_int(json_array_get(json_object_get(a, "postings"), 0), "folio_id"), w1);
    json_decref(a);
    /* a stay of another room */
    other = pos_check_in(cashier, "207", "Emmy", "Noether", -1, false, 0, NULL);
    params = pos_post_params("ng-5", "203", "C", "FOOD", 100);
    json_object_set_new(params, "stay_id", json_integer(other));
    json_decref(pos_call_expect(rest, "pos.post", params, "NG", "not_in_house"));

    /* the name: BAR requires it; compared without case and accents */
    pos_check_in(cashier, "208", "Zoë", "Müller-Lüdenscheidt", -1, false, 0, NULL);
    json_decref(pos_call_expect(bar, "pos.post", pos_post_params("ng-6", "208", "C", "BEV", 100),
                                "NG", "name_mismatch"));
    params = pos_post_params("ng-7", "208", "C", "BEV", 100);
    json_object_set_new(params, "guest_name", json_string("Mueller"));
    a = pos_call_expect(bar, "pos.post", params, "NG", "name_mismatch");
    assert_null(strstr(itest_str(a, "message"), "Lüdenscheidt")); /* never tells the name */
    json_decref(a);
    params = pos_post_params("ng-8", "208", "C208", "BEV", 100);
    json_object_set_new(params, "guest_name", json_string("MULLER LUDENSCHEIDT"));
    json_decref(pos_call_expect(bar, "pos.post", params, "OK", "posted"));
    /* REST does not require it, but checks it when given */
    params = pos_post_params("ng-9", "208", "C", "FOOD", 100);
    json_object_set_new(params, "guest_name", json_string("Noether"));
    json_decref(pos_call_expect(rest, "pos.post", params, "NG", "name_mismatch"));
    params = pos_post_params("ng-10", "208", "C208b", "FOOD", 100);
    json_object_set_new(params, "guest_name", json_string("müller-lüdenscheidt, zoe"));
    json_decref(pos_call_expect(rest, "pos.post", params, "OK", "posted"));

    /* checked out, and SPA takes no late charges */
    s1 = pos_check_in(cashier, "209", "Ida", "Pfeiffer", -1, false, 0, NULL);
    pos_check_out(cashier, s1);
    params = pos_post_params("ng-11", "209", "C", "SPA", 1000);
    json_object_set_new(params, "guest_name", json_string("Pfeiffer"));
    json_decref(pos_call_expect(spa, "pos.post", params, "NG", "checked_out"));
    params = pos_post_params("ng-12", "209", "C", "SPA", 1000);
    json_object_set_new(params, "guest_name", json_string("Pfeiffer"));
    json_object_set_new(params, "stay_id", json_integer(s1));
    json_decref(pos_call_expect(spa, "pos.post", params, "NG", "checked_out"));
    json_decref(pos_call_expect(spa, "pos.inquiry", json_pack("{s:s}", "room", "209"), "NG",
                                "not_in_house"));

    /* no-post */
    pos_check_in(cashier, "204", "Nils", "Nopost", -1, true, 0, NULL);
    a = pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "room", "204"), "OK", "found");
    assert_true(
        json_is_true(json_object_get(json_array_get(json_object_get(a, "guests"), 0), "no_post")));
    json_decref(a);
    json_decref(pos_call_expect(rest, "pos.post", pos_post_params("np", "204", "C", "FOOD", 100),
                                "NP", "no_post"));
    itest_close(rest);
    itest_close(bar);
    itest_close(spa);
    itest_close(cashier);
}

static void test_inquiry(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    struct client *spa = pos_connect("SPA");
    struct client *minibar = pos_connect("MINIBAR");
    json_int_t first;
    json_t *a, *g;
    size_t i;
    int n;

    (void)state;
    /* ten guests in one room: by room every one, by name at most 9 */
    first = pos_check_in(cashier, "217", "Guest0", "Tenbrook", 80000, false, 0, NULL);
    for (i = 1; i < 10; i++) {
        char fn[16];

        snprintf(fn, sizeof(fn), "Guest%zu", i);
        pos_check_in(cashier, "217", fn, "Tenbrook", -1, false, first, NULL);
    }
    a = pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "room", "217"), "OK", "found");
    assert_int_equal(json_array_size(json_object_get(a, "guests")), 10);
    json_array_foreach (json_object_get(a, "guests"), i, g)
    {
        assert_string_equal(itest_str(g, "room"), "217");
        assert_string_equal(itest_str(g, "last_name"), "Tenbrook");
        assert_string_equal(itest_str(g, "arrival"), pos_date);
        assert_string_equal(itest_str(g, "departure"), pos_departure);
        assert_string_equal(itest_str(g, "status"), "in_house");
        assert_non_null(json_object_get(g, "stay_id"));
        assert_non_null(json_object_get(g, "reservation"));
        assert_null(json_object_get(g, "credit_available")); /* REST may not see credit */
    }
    json_decref(a);
    a = pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "name", "TENBRÖ"), "OK", "found");
    assert_int_equal(json_array_size(json_object_get(a, "guests")), 9);
    assert_true(json_is_true(json_object_get(a, "truncated")));
    json_decref(a);
    /* SPA sees the credit available (limit 800.00 on the first guest, none on the others) */
    a = pos_call_expect(spa, "pos.inquiry", json_pack("{s:s}", "name", "tenbrook"), "OK", "found");
    json_array_foreach (json_object_get(a, "guests"), i, g)
    {
        json_t *credit = json_object_get(g, "credit_available");

        assert_non_null(credit);
        if (json_integer_value(json_object_get(g, "stay_id")) == first)
            assert_int_equal(json_integer_value(credit), 80000);
        else
            assert_true(json_is_null(credit));
    }
    json_decref(a);
    json_decref(pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "name", "zzqx"), "NG",
                                "not_in_house"));

    /* name searches are rate-limited per outlet: 30 a minute */
    for (n = 0; n < 30; n++) {
        a = pos_call(minibar, "pos.inquiry", json_pack("{s:s}", "name", "tenb"));
        pos_expect(a, "OK", "found");
        json_decref(a);
    }
    json_decref(pos_call_expect(minibar, "pos.inquiry", json_pack("{s:s}", "name", "tenb"), "DN",
                                "rate_limited"));
    /* not room inquiries, and not other outlets */
    json_decref(
        pos_call_expect(minibar, "pos.inquiry", json_pack("{s:s}", "room", "217"), "OK", "found"));
    json_decref(
        pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "name", "tenb"), "OK", "found"));
    itest_close(rest);
    itest_close(spa);
    itest_close(minibar);
    itest_close(cashier);
}

/* ---- credit, policy ---- */

static void test_credit(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    struct client *laundry = pos_connect("LAUNDRY");
    json_int_t w1;
    json_t *a;
    int64_t sum;

    (void)state;
    pos_check_in(cashier, "205", "Nikola", "Tesla", 10000, false, 0, &w1);
    /* 116.60 over a limit of 100.00: REST refuses (CO), nothing is posted */
    json_decref(pos_call_expect(rest, "pos.post",
                                pos_post_params("co-1", "205", "C205", "FOOD", 10000), "CO",
                                "credit_limit"));
    assert_int_equal(pos_folio_lines(cashier, w1, "C205", &sum), 0);
    /* within the limit it posts */
    json_decref(pos_call_expect(
        rest, "pos.post", pos_post_params("co-2", "205", "C205", "FOOD", 5000), "OK", "posted"));
    /* LAUNDRY accepts over the limit and flags it */
    a = pos_call_expect(laundry, "pos.post",
                        pos_post_params("co-3", "205", "L205", "LAUNDRY", 10000), "OK", "posted");
    assert_int_equal(json_array_size(json_object_get(a, "warnings")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "warnings"), 0)),
                        "deposit_required");
    json_decref(a);
    assert_int_equal(pos_folio_lines(cashier, w1, "L205", &sum), 2);
    assert_int_equal(sum, 12000);
    itest_close(rest);
    itest_close(laundry);
    itest_close(cashier);
}

static void test_policy(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    struct client *spa = pos_connect("SPA");
    struct client *laundry = pos_connect("LAUNDRY");
    json_t *params, *a;
    json_int_t used;
    int n = 0;
    char key[32];

    (void)state;
    pos_check_in(cashier, "210", "Lise", "Meitner", -1, false, 0, NULL);
    /* codes */
    json_decref(pos_call_expect(rest, "pos.post", pos_post_params("dn-1", "210", "C", "SPA", 1000),
                                "DN", "code_not_allowed"));
    params = pos_post_params("dn-2", "210", "C", "LAUNDRY", 1000);
    json_object_set_new(params, "tip", json_integer(100));
    json_object_set_new(params, "total", json_integer(1300));
    json_decref(pos_call_expect(laundry, "pos.post", params, "DN", "code_not_allowed"));

    /* the limit per posting: 300.00 for LAUNDRY (250.00 + 20% VAT is exactly that) */
    a = pos_call_expect(laundry, "pos.post", pos_post_params("dn-3", "210", "C", "LAUNDRY", 25001),
                        "DN", "outlet_limit");
    assert_string_equal(itest_str(a, "limit"), "max_per_posting");
    json_decref(a);

    /* the limit per day: 600.00 for LAUNDRY, whatever it posted before */
    a = pos_call_expect(laundry, "pos.postings", NULL, "OK", "listed");
    used = pos_int(a, "total");
    json_decref(a);
    while (used + 30000 <= 60000) {
        snprintf(key, sizeof(key), "dn-day-%d", n++);
        json_decref(pos_call_expect(laundry, "pos.post",
                                    pos_post_params(key, "210", "LDAY", "LAUNDRY", 25000), "OK",
                                    "posted"));
        used += 30000;
    }
    a = pos_call_expect(laundry, "pos.post",
                        pos_post_params("dn-day-last", "210", "LDAY", "LAUNDRY", 25000), "DN",
                        "outlet_limit");
    assert_string_equal(itest_str(a, "limit"), "max_per_day");
    json_decref(a);

    /* SPA: an inquiry about the guest first */
    params = pos_post_params("dn-4", "210", "S210", "SPA", 12000);
    json_object_set_new(params, "guest_name", json_string("Meitner"));
    json_decref(pos_call_expect(spa, "pos.post", params, "DN", "inquiry_required"));
    json_decref(
        pos_call_expect(spa, "pos.inquiry", json_pack("{s:s}", "room", "210"), "OK", "found"));
    params = pos_post_params("dn-5", "210", "S210", "SPA", 12000);
    json_object_set_new(params, "guest_name", json_string("Meitner"));
    a = pos_call_expect(spa, "pos.post", params, "OK", "posted");
    assert_int_equal(pos_int(a, "total"), 12000); /* VAT included */
    assert_int_equal(pos_int(a, "tax"), 2000);
    json_decref(a);
    itest_close(rest);
    itest_close(spa);
    itest_close(laundry);
    itest_close(cashier);
}

static void test_late_charges(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    json_int_t s1, s2, w1;
    json_t *a, *f;
    char sql[256];
    int64_t sum;

    (void)state;
    /* within REST's window of 2 hours: posted, window 1 reopened for the front desk */
    s1 = pos_check_in(cashier, "215", "Ada", "Late", -1, false, 0, &w1);
    pos_check_out(cashier, s1);
    a = pos_call_expect(rest, "pos.inquiry", json_pack("{s:s}", "room", "215"), "OK", "found");
    assert_string_equal(itest_str(json_array_get(json_object_get(a, "guests"), 0), "status"),
                        "checked_out");
    json_decref(a);
    a = pos_call_expect(rest, "pos.post", pos_post_params("late-1", "215", "C215", "FOOD", 1000),
                        "OK", "posted");
    assert_true(json_is_true(json_object_get(a, "late_charge")));
    json_decref(a);
    f = pos_folio(cashier, w1);
    assert_string_equal(itest_str(f, "status"), "open");
    assert_int_equal(pos_int(f, "balance"), 1166);
    json_decref(f);
    assert_int_equal(pos_folio_lines(cashier, w1, "C215", &sum), 3);

    /* three hours after the checkout: outside the window */
    s2 = pos_check_in(cashier, "216", "Bob", "Later", -1, false, 0, NULL);
    pos_check_out(cashier, s2);
    snprintf(sql, sizeof(sql),
             "UPDATE stays SET checked_out_at = checked_out_at - interval '3 hours' "
             "WHERE id = %lld",
             (long long)s2);
    if (!pos_sql(sql)) {
        fprintf(stderr, "test_pos: FOLIOD_TEST_PG_CONNINFO not set, late_charge_window skipped\n");
    } else {
        json_decref(pos_call_expect(rest, "pos.post",
                                    pos_post_params("late-2", "216", "C216", "FOOD", 1000), "DN",
                                    "late_charge_window"));
    }
    itest_close(rest);
    itest_close(cashier);
}

/* ---- folios ---- */

static void test_routing_and_closed_folio(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    json_int_t stay, w1, w2;
    json_t *r, *a, *params, *l;
    int64_t sum, tax = 0, service = 0, total;
    char key[96];
    size_t i;

    (void)state;
    /* FOOD goes to window 2: a POS posting follows the routing like any charge */
    stay = pos_check_in(cashier, "211", "Max", "Planck", -1, false, 0, &w1);
    r = itest_call_ok(cashier, "folio.open",
                      json_pack("{s:s, s:I}", "type", "individual", "stay_id", stay));
    w2 = pos_int(r, "id");
    json_decref(r);
    json_decref(itest_call_ok(
        cashier, "routing.set",
        json_pack("{s:I, s:s, s:i}", "stay_id", stay, "code", "FOOD", "to_window", 2)));
    total = pos_split("FOOD", 3000, &tax, &service) + pos_split("BEV", 1000, &tax, &service);
    pos_key(key, sizeof(key), "route");
    params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:i}, {s:s, s:i}], s:I}", "key", key, "room",
                       "211", "check", "C211", "subtotals", "code", "FOOD", "amount", 3000, "code",
                       "BEV", "amount", 1000, "total", (json_int_t)total);
    a = pos_call_expect(rest, "pos.post", params, "OK", "posted");
    assert_true(json_is_true(json_object_get(a, "routed")));
    json_array_foreach (json_object_get(a, "postings"), i, l)
    {
        json_int_t want = i < 3 ? w2 : w1; /* FOOD and its lines, then BEV and its lines */

        assert_int_equal(pos_int(l, "folio_id"), want);
    }
    json_decref(a);
    assert_int_equal(pos_folio_lines(cashier, w2, "C211", &sum), 3);
    assert_int_equal(sum, pos_split("FOOD", 3000, &tax, &service));
    assert_int_equal(pos_folio_lines(cashier, w1, "C211", &sum), 3);

    /* the folio FOOD is routed to is closed: IA, nothing posted */
    stay = pos_check_in(cashier, "212", "Rosalind", "Franklin", -1, false, 0, &w1);
    r = itest_call_ok(cashier, "folio.open",
                      json_pack("{s:s, s:I}", "type", "individual", "stay_id", stay));
    w2 = pos_int(r, "id");
    json_decref(r);
    json_decref(itest_call_ok(
        cashier, "routing.set",
        json_pack("{s:I, s:s, s:i}", "stay_id", stay, "code", "FOOD", "to_window", 2)));
    json_decref(itest_call_ok(cashier, "folio.close", json_pack("{s:I}", "folio_id", w2)));
    json_decref(pos_call_expect(rest, "pos.post",
                                pos_post_params("ia", "212", "C212", "FOOD", 1000), "IA",
                                "folio_closed"));
    assert_int_equal(pos_folio_lines(cashier, w1, "C212", &sum), 0);
    /* BEV is not routed: it posts */
    json_decref(pos_call_expect(
        rest, "pos.post", pos_post_params("ia-bev", "212", "C212", "BEV", 1000), "OK", "posted"));
    itest_close(rest);
    itest_close(cashier);
}

/* ---- exactly once ---- */

static void test_replay_after_dropped_connection(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    json_t *params, *a;
    json_int_t w1, id;
    int64_t sum;

    (void)state;
    pos_check_in(cashier, "213", "Kurt", "Goedel", -1, false, 0, &w1);
    params = pos_post_params("drop", "213", "C213", "FOOD", 4200);
    /* the POS sends and loses the connection before it reads the answer */
    if (!client_send_request(rest, "pos.post", params, &id))
        fail_msg("send: %s", client_error(rest));
    itest_close(rest);
    /* it reconnects and sends the same request again */
    rest = pos_connect("REST");
    a = pos_call_expect(rest, "pos.post", json_deep_copy(params), "OK", "posted");
    assert_true(json_is_true(json_object_get(a, "replayed")));
    json_decref(a);
    assert_int_equal(pos_folio_lines(cashier, w1, "C213", &sum), 3);
    a = pos_call_expect(rest, "pos.status",
                        json_pack("{s:O}", "key", json_object_get(params, "key")), "OK", "posted");
    assert_int_equal(sum, pos_int(a, "total"));
    json_decref(a);
    json_decref(params);
    itest_close(rest);
    itest_close(cashier);
}

static void test_concurrent_same_key(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    struct client *c1 = pos_connect("REST"), *c2 = pos_connect("REST");
    json_t *params, *r1, *r2, *a1, *a2;
    json_int_t w1, id1, id2;
    int64_t sum;

    (void)state;
    pos_check_in(cashier, "214", "Alonzo", "Church", -1, false, 0, &w1);
    params = pos_post_params("twice", "214", "C214", "BEV", 1800);
    if (!client_send_request(c1, "pos.post", params, &id1) ||
        !client_send_request(c2, "pos.post", params, &id2))
        fail_msg("send: %s / %s", client_error(c1), client_error(c2));
    if (!client_wait_response(c1, id1, -1, &r1) || !client_wait_response(c2, id2, -1, &r2))
        fail_msg("wait: %s / %s", client_error(c1), client_error(c2));
    a1 = client_response_result(r1);
    a2 = client_response_result(r2);
    pos_expect(a1, "OK", "posted");
    pos_expect(a2, "OK", "posted");
    /* exactly one of them posted; the other waited for it and got its answer */
    assert_true(json_is_true(json_object_get(a1, "replayed")) !=
                json_is_true(json_object_get(a2, "replayed")));
    assert_true(json_equal(json_object_get(a1, "postings"), json_object_get(a2, "postings")));
    json_decref(r1);
    json_decref(r2);
    json_decref(params);
    assert_int_equal(pos_folio_lines(cashier, w1, "C214", &sum), 3);
    itest_close(c1);
    itest_close(c2);
    itest_close(cashier);
}

/* One outlet's checks sent back to back: they wait while earlier ones are written and go to
 * the database together (sql/016_batch.sql). Each keeps its own answer: a refusal (no-post
 * room) takes no other check with it, and a key sent twice within the batch is posted once
 * and replayed once. */
static void test_batched_posts(void **state)
{
    enum { N = 30 };
    struct client *cashier = itest_connect_user("cashier");
    struct client *rest = pos_connect("REST");
    json_t *answers[N], *info;
    json_int_t w1, ids[N], before, after;
    char check[32];
    int64_t sum;

    (void)state;
    pos_check_in(cashier, "221", "Grace", "Batch", -1, false, 0, &w1);
    pos_check_in(cashier, "222", "Nora", "Nopost", -1, true, 0, NULL);
    info = itest_call_ok(cashier, "server.info", NULL);
    before = itest_int(info, "database.batched");
    json_decref(info);
    for (int i = 0; i < N; i++) {
        char key[32];
        json_t *p;

        /* of every five checks, the fourth repeats the key and body of the third, and the
         * fifth goes to the no-post room */
        int j = i % 5 == 3 ? i - 1 : i;

        snprintf(key, sizeof(key), "batch-%d", j);
        snprintf(check, sizeof(check), "CB%d", j);
        p = pos_post_params(key, i % 5 == 4 ? "222" : "221", check, "BEV", 100 + j);
        assert_true(client_send_request(rest, "pos.post", p, &ids[i]));
        json_decref(p);
    }
    for (int i = 0; i < N; i++) {
        json_t *r = NULL;

        if (!client_wait_response(rest, ids[i], -1, &r))
            fail_msg("answer %d: %s", i, client_error(rest));
        answers[i] = json_incref(client_response_result(r));
        json_decref(r);
        if (i % 5 == 4) {
            pos_expect(answers[i], "NP", "no_post");
        } else {
            pos_expect(answers[i], "OK", "posted");
            assert_int_equal(json_is_true(json_object_get(answers[i], "replayed")), i % 5 == 3);
        }
    }
    info = itest_call_ok(cashier, "server.info", NULL);
    after = itest_int(info, "database.batched");
    json_decref(info);
    if (after - before < 2)
        fail_msg("no batch formed (%lld calls batched)", (long long)(after - before));
    for (int i = 0; i < N; i++) {
        if (i % 5 == 3) {
            /* the replay: the first answer's postings, posted once */
            assert_true(json_equal(json_object_get(answers[i], "postings"),
                                   json_object_get(answers[i - 1], "postings")));
            snprintf(check, sizeof(check), "CB%d", i - 1);
            assert_int_equal(pos_folio_lines(cashier, w1, check, &sum), 3);
            assert_int_equal(sum, pos_int(answers[i - 1], "total"));
        } else if (i % 5 != 4) {
            snprintf(check, sizeof(check), "CB%d", i);
            assert_int_equal(pos_folio_lines(cashier, w1, check, &sum), 3);
            assert_int_equal(sum, pos_int(answers[i], "total"));
        }
    }
    for (int i = 0; i < N; i++)
        json_decref(answers[i]);
    itest_close(rest);
    itest_close(cashier);
}

/* Outlets, then the front desk, posting to the same rooms at once, their postings written in
 * two batches at a time (a daemon of its own, two lanes of at most four calls): each batch
 * locks the outlets and stays of its calls in one order before they run
 * (sql/017_batch_lock_order.sql), so the batches wait for each other but never deadlock.
 * Without that, two batches met in opposite orders, lost deadlocks one second at a time, and
 * answered postings busy. Every posting here is made once and answered OK, and the daemon
 * never reports a lost deadlock. */
static void test_batches_share_rooms(void **state)
{
    enum { OUTLETS = 3, ROOMS = 3, CHECKS = 16, FRONT = 24 };
    static const char *const outlet[OUTLETS] = {"REST", "LAUNDRY", "MINIBAR"};
    static const char *const code[OUTLETS] = {"BEV", "LAUNDRY", "MINIBAR"};
    static const char *const room[ROOMS] = {"223", "224", "225"};
    struct client *cashier = itest_connect_user("cashier");
    struct client *pos[OUTLETS], *staff;
    struct itest_daemon d;
    json_int_t w1[ROOMS], ids[OUTLETS][CHECKS], before, after;
    int64_t expected[ROOMS] = {0}, sum;
    json_t *info;

    (void)state;
    for (int r = 0; r < ROOMS; r++)
        pos_check_in(cashier, room[r], "Shared", "Rooms", -1, false, 0, &w1[r]);
    itest_daemon_start(&d, "pos-share-rooms",
                       "[database]\nbatch_lanes = 2\nbatch_max = 4\n[log]\naccess = no\n");
    staff = itest_daemon_connect(&d);
    assert_non_null(staff);
    json_decref(itest_call_ok(staff, "session.login",
                              json_pack("{s:s, s:s}", "user", "cashier", "password", "cashier")));
    info = itest_call_ok(staff, "server.info", NULL);
    before = itest_int(info, "database.batched");
    json_decref(info);
    for (int o = 0; o < OUTLETS; o++) {
        char name[64];

        snprintf(name, sizeof(name), "outlet-%s", outlet[o]);
        pos[o] = itest_daemon_connect_cert(&d, name);
    }
    /* every outlet's checks go round the rooms, each outlet starting at another room */
    for (int i = 0; i < CHECKS; i++) {
        for (int o = 0; o < OUTLETS; o++) {
            char key[32], check[32];
            json_t *p;

            snprintf(key, sizeof(key), "share-%d-%d", o, i);
            snprintf(check, sizeof(check), "SR%d-%d", o, i);
            p = pos_post_params(key, room[(i + o) % ROOMS], check, code[o], 100 + i);
            assert_true(client_send_request(pos[o], "pos.post", p, &ids[o][i]));
            json_decref(p);
        }
    }
    for (int i = 0; i < CHECKS; i++) {
        for (int o = 0; o < OUTLETS; o++) {
            json_t *r = NULL;
            const json_t *a;
            char check[32];

            if (!client_wait_response(pos[o], ids[o][i], -1, &r))
                fail_msg("%s check %d: %s", outlet[o], i, client_error(pos[o]));
            a = client_response_result(r);
            if (a == NULL) {
                char *text = pos_dump(r);

                fail_msg("%s check %d: %s", outlet[o], i, text != NULL ? text : "?");
            }
            pos_expect(a, "OK", "posted");
            snprintf(check, sizeof(check), "SR%d-%d", o, i);
            assert_int_equal(pos_folio_lines(cashier, w1[(i + o) % ROOMS], check, &sum),
                             json_array_size(json_object_get(a, "postings")));
            assert_int_equal(sum, pos_int(a, "total"));
            expected[(i + o) % ROOMS] += sum;
            json_decref(r);
        }
    }
    /* the front desk too: one connection's FOOD charges (tax rules: each runs on its own in
     * its batch) go round the rooms' folios, and two batches at a time take them in turn;
     * no outlet is locked here, only the stays keep the batches apart */
    {
        json_int_t fids[FRONT];

        for (int i = 0; i < FRONT; i++) {
            json_t *p = json_pack("{s:I, s:s, s:i}", "folio_id", w1[i % ROOMS], "code", "FOOD",
                                  "amount", 100 + i);

            assert_true(client_send_request(staff, "folio.post", p, &fids[i]));
            json_decref(p);
        }
        for (int i = 0; i < FRONT; i++) {
            json_t *r = NULL;
            const json_t *a;

            if (!client_wait_response(staff, fids[i], -1, &r))
                fail_msg("front desk charge %d: %s", i, client_error(staff));
            a = client_response_result(r);
            if (a == NULL) {
                char *text = pos_dump(r);

                fail_msg("front desk charge %d: %s", i, text != NULL ? text : "?");
            }
            expected[i % ROOMS] += pos_int(a, "total");
            json_decref(r);
        }
    }
    info = itest_call_ok(staff, "server.info", NULL);
    after = itest_int(info, "database.batched");
    json_decref(info);
    if (after - before < 2)
        fail_msg("no batch formed (%lld calls batched)", (long long)(after - before));
    for (int r = 0; r < ROOMS; r++) {
        json_t *f = pos_folio(cashier, w1[r]);

        assert_int_equal(pos_int(f, "balance"), expected[r]);
        json_decref(f);
    }
    assert_false(itest_daemon_log_contains(&d, "deadlock"));
    for (int o = 0; o < OUTLETS; o++)
        itest_close(pos[o]);
    itest_close(staff);
    itest_daemon_stop(&d, 15000);
    itest_daemon_assert_clean_log(&d);
    itest_close(cashier);
}

/* A row the lock-ahead cannot foresee (sql/017_batch_lock_order.sql) can still close a
 * circle: here the stay of a guest checked out within REST's late-charge window, which a check
 * finds only when it runs. A daemon of its own with one lane: the first check goes alone, the
 * next three leave together, a check to room 226 (in house: locked ahead), a late charge to
 * room 227 (its stay held by a transaction opened here) and another check to 226. The batch
 * posts the first and waits for 227's stay; the transaction then asks for 226's folio, which
 * the batch holds. PostgreSQL refuses the batch's late charge, which waited first: the batch
 * stops there and commits the check it has run, and foliod sends the late charge and the check
 * not run again. Every check is answered OK and posted once. */
static void test_batch_stops_at_deadlock(void **state)
{
    enum { N = 4 };
    static const char *const room[N] = {"226", "226", "227", "226"};
    struct client *cashier = itest_connect_user("cashier");
    struct itest_daemon d;
    struct client *rest;
    json_int_t w1[2], late, ids[N];
    PGconn *pg;

    (void)state;
    pos_check_in(cashier, "226", "Ann", "Ahead", -1, false, 0, &w1[0]);
    late = pos_check_in(cashier, "227", "Len", "Late", -1, false, 0, &w1[1]);
    pos_check_out(cashier, late);
    itest_daemon_start(&d, "pos-deadlock", "[database]\nbatch_lanes = 1\n[log]\naccess = no\n");
    rest = itest_daemon_connect_cert(&d, "outlet-REST");
    pg = itest_pg();
    itest_pg_exec(pg, "BEGIN");
    itest_pg_lock(pg, "stays", late);
    for (int i = 0; i < N; i++) {
        char key[32], check[32];
        json_t *p;

        snprintf(key, sizeof(key), "circle-%d", i);
        snprintf(check, sizeof(check), "DL%d", i);
        p = pos_post_params(key, room[i], check, "BEV", 100 + i);
        assert_true(client_send_request(rest, "pos.post", p, &ids[i]));
        json_decref(p);
    }
    /* the batch has posted to 226 and waits for 227's stay; asking for 226's folio closes the
     * circle (a failure here means this transaction lost it instead) */
    itest_pg_wait_lock_waiter(10000);
    itest_pg_lock(pg, "folios", w1[0]);
    itest_pg_exec(pg, "ROLLBACK");
    PQfinish(pg);
    for (int i = 0; i < N; i++) {
        json_t *r = NULL;
        const json_t *a;
        char check[32];
        int64_t sum;

        if (!client_wait_response(rest, ids[i], 20000, &r))
            fail_msg("check %d: %s", i, client_error(rest));
        a = client_response_result(r);
        if (a == NULL) {
            char *text = pos_dump(r);

            fail_msg("check %d: %s", i, text != NULL ? text : "?");
        }
        pos_expect(a, "OK", "posted");
        snprintf(check, sizeof(check), "DL%d", i);
        assert_int_equal(pos_folio_lines(cashier, w1[i == 2], check, &sum),
                         json_array_size(json_object_get(a, "postings")));
        assert_int_equal(sum, pos_int(a, "total"));
        json_decref(r);
    }
    assert_true(itest_daemon_log_contains(&d, "pos.post lost a deadlock in its batch; sent again"));
    assert_true(itest_daemon_log_contains(
        &d, "pos.post was not run: its batch lost a deadlock; sent again"));
    itest_close(rest);
    itest_daemon_stop(&d, 15000);
    itest_daemon_assert_clean_log(&d);
    itest_close(cashier);
}

static void test_database_down_retry(void **state)
{
    const struct itest_env *env = itest_env();
    struct client *cashier, *rest;
    json_t *params, *a = NULL;
    json_int_t w1;
    int64_t start, sum;
    int attempts = 0;

    (void)state;
    if (env->pg_stop == NULL || env->pg_start == NULL) {
        fprintf(stderr, "test_pos: FOLIOD_TEST_PG_STOP/START not set, RY skipped\n");
        skip();
    }
    cashier = itest_connect_user("cashier");
    rest = pos_connect("REST");
    pos_check_in(cashier, "218", "Claude", "Shannon", -1, false, 0, &w1);
    params = pos_post_params("ry", "218", "C218", "FOOD", 2500);

    pos_pg_stopped = true;
    itest_shell("stop PostgreSQL", env->pg_stop);
    a = pos_call_expect(rest, "pos.post", json_deep_copy(params), "RY", "db_unavailable");
    json_decref(a);
    itest_shell("start PostgreSQL", env->pg_start);
    pos_pg_stopped = false;

    /* the same key, until the daemon has its connections back */
    start = itest_now_ms();
    for (;;) {
        a = pos_call(rest, "pos.post", json_deep_copy(params));
        attempts++;
        if (strcmp(itest_str(a, "status"), "RY") != 0)
            break;
        if (itest_now_ms() - start > POS_RECOVERY_MS)
            fail_msg("still RY %d ms after PostgreSQL restarted (%d attempts)", POS_RECOVERY_MS,
                     attempts);
        json_decref(a);
        pos_sleep_ms(300);
    }
    pos_expect(a, "OK", "posted");
    assert_false(json_is_true(json_object_get(a, "replayed")));
    json_decref(a);
    assert_int_equal(pos_folio_lines(cashier, w1, "C218", &sum), 3);
    json_decref(params);
    itest_close(rest);
    itest_close(cashier);
}

/* ---- the simulator ---- */

/* Runs build/.../possim with the outlet's certificate and args; its output into out. Returns
 * its exit status. */
static int pos_possim(const char *outlet, const char *args, char *out, size_t outlen)
{
    const char *bin = getenv("FOLIOD_TEST_BIN");
    const char *dir = getenv("FOLIOD_TEST_DIR");
    const struct itest_env *env = itest_env();
    char cmd[4096], ca[1024], cert[1024], state_file[1024];
    const char *slash;
    FILE *p;
    size_t n;
    int st;

    if (bin == NULL || (slash = strrchr(bin, '/')) == NULL) {
        fprintf(stderr, "test_pos: FOLIOD_TEST_BIN not set, possim skipped\n");
        skip();
    }
    itest_tls_path(ca, sizeof(ca), "ca.crt");
    snprintf(cert, sizeof(cert), "%s/outlet-%s.crt", env->tls_dir, outlet);
    snprintf(state_file, sizeof(state_file), "%s/possim-%s.json", dir != NULL ? dir : "/tmp",
             pos_run);
    snprintf(cmd, sizeof(cmd),
             "'%.*s/possim' --host %s --port %u --ca '%s' --cert '%s' --state '%s' %s 2>&1",
             (int)(slash - bin), bin, env->host, env->port, ca, cert, state_file, args);
    p = popen(cmd, "r");
    if (p == NULL)
        fail_msg("popen %s failed", cmd);
    n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_possim(void **state)
{
    struct client *cashier = itest_connect_user("cashier");
    char out[8192], args[512], key[96];
    json_int_t w1;
    json_t *a;
    int64_t sum;
    int rc;

    (void)state;
    pos_check_in(cashier, "219", "Edsger", "Dijkstra", -1, false, 0, &w1);
    rc = pos_possim("MINIBAR", "hello", out, sizeof(out));
    if (rc != 0 || strstr(out, "OK linked") == NULL)
        fail_msg("possim hello: status %d: %s", rc, out);
    rc = pos_possim("MINIBAR", "inquire --room 219", out, sizeof(out));
    if (rc != 0 || strstr(out, "Dijkstra") == NULL)
        fail_msg("possim inquire: status %d: %s", rc, out);
    /* a post whose total possim computes from the rules pos.hello gave */
    pos_key(key, sizeof(key), "possim");
    snprintf(args, sizeof(args),
             "post --key %s --room 219 --check M219 --sub MINIBAR:12.50 --item 'Water:2:2.50' "
             "--item 'Nuts:1:7.50'",
             key);
    rc = pos_possim("MINIBAR", args, out, sizeof(out));
    if (rc != 0 || strstr(out, "OK posted") == NULL || strstr(out, "15.00 EUR") == NULL)
        fail_msg("possim post: status %d: %s", rc, out);
    /* replay: the same request again, answered from the store */
    rc = pos_possim("MINIBAR", "replay", out, sizeof(out));
    if (rc != 0 || strstr(out, "replayed") == NULL)
        fail_msg("possim replay: status %d: %s", rc, out);
    assert_int_equal(pos_folio_lines(cashier, w1, "M219", &sum), 2);
    assert_int_equal(sum, 1500);
    snprintf(args, sizeof(args), "--json status %s", key);
    rc = pos_possim("MINIBAR", args, out, sizeof(out));
    a = json_loads(out, 0, NULL);
    if (rc != 0 || a == NULL || !json_is_true(json_object_get(a, "replayed")))
        fail_msg("possim status: status %d: %s", rc, out);
    json_decref(a);
    /* a refusal: exit status 1 and the answer */
    rc = pos_possim("MINIBAR", "post --room 219 --check M2 --sub MINIBAR:10 --total 10", out,
                    sizeof(out));
    if (rc != 1 || strstr(out, "DM total_mismatch") == NULL)
        fail_msg("possim post with a wrong total: status %d: %s", rc, out);
    rc = pos_possim("GHOST", "hello", out, sizeof(out));
    if (rc != 1 || strstr(out, "unknown_outlet") == NULL)
        fail_msg("possim as GHOST: status %d: %s", rc, out);
    rc = pos_possim("MINIBAR", "postings", out, sizeof(out));
    if (rc != 0 || strstr(out, "M219") == NULL)
        fail_msg("possim postings: status %d: %s", rc, out);
    itest_close(cashier);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_hello_and_roles),
        ITEST(test_certificates),
        ITEST(test_post_replay_status),
        ITEST(test_invalid_requests),
        ITEST(test_mismatch),
        ITEST(test_guest_not_found),
        ITEST(test_inquiry),
        ITEST(test_credit),
        ITEST(test_policy),
        ITEST(test_late_charges),
        ITEST(test_routing_and_closed_folio),
        ITEST(test_replay_after_dropped_connection),
        ITEST(test_concurrent_same_key),
        ITEST(test_batched_posts),
        ITEST(test_batches_share_rooms),
        ITEST(test_batch_stops_at_deadlock),
        cmocka_unit_test_teardown(test_database_down_retry, pos_teardown),
        ITEST(test_possim),
    };

    return cmocka_run_group_tests(tests, pos_group_setup, pos_teardown);
}
