/*
 * test_audit.c - integration tests of the night audit (docs/audit.md).
 *
 *   test_multi_day        a scripted hotel (check-ins, front-desk postings, a void, transfers
 *                         to a window, deposits and payments, a city-ledger transfer and
 *                         payment, checkouts, a complimentary room) audited three days in a
 *                         row; each day's stored reports against figures computed here; a
 *                         blocking pre-check on the way; report.* and audit.report
 *   test_kill_and_resume  two twin properties get the same day; one is audited on the
 *                         harness's daemon, the other on daemons of its own that are killed
 *                         (kill -9) at several points and restarted, and once loses the
 *                         database backend in the middle of a step; the postings, the reports
 *                         and the totals of both must be the same; a posting made during the
 *                         audit goes to the next date
 *   test_two_daemons      two daemons asked at the same moment: one audits, the other answers
 *                         audit_in_progress; one set of postings
 *   test_schedule         a property whose audit is due is audited by the schedule
 *
 * Every test works on properties of its own (AUD-*), created through the admin and manager
 * methods, so that the other test binaries are not disturbed. Run by harness.sh (itest.h).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static const char *const rooms10[] = {"101", "102", "103", "104", "105",
                                      "106", "107", "108", "109", "110"};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *dump(const json_t *v)
{
    static char buf[8192];
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(buf, sizeof(buf), "%s", text != NULL ? text : "?");
    free(text);
    return buf;
}

static struct client *login(const char *prefix, const char *role)
{
    char user[64];
    snprintf(user, sizeof(user), "%s%s", prefix, role);
    return itest_connect_user(user);
}

/* A property of ten rooms with the demo's codes, users <prefix>cashier/manager/auditor, a city
 * tax of 2.50 per adult and night, and the given extra settings (stolen, may be NULL). */
static void setup_property(const char *code, const char *prefix, json_t *settings)
{
    struct client *admin;
    json_t *s =
        json_pack("{s:{s:s, s:i}}", "city_tax", "code", "CITYTAX", "amount_per_guest_night", 250);
    itest_ensure_property(code, code, rooms10, 10, prefix);
    admin = itest_connect_user("admin");
    itest_create(admin, "trx_code.create",
                 json_pack("{s:s, s:s, s:s, s:s}", "property", code, "code", "CITYTAX",
                           "description", "City tax", "kind", "tax"));
    if (settings != NULL) {
        json_object_update(s, settings);
        json_decref(settings);
    }
    json_decref(itest_call_ok(admin, "property.update",
                              json_pack("{s:s, s:o}", "code", code, "settings", s)));
    itest_close(admin);
}

static void set_settings(const char *code, json_t *settings)
{
    struct client *admin = itest_connect_user("admin");
    json_decref(itest_call_ok(admin, "property.update",
                              json_pack("{s:s, s:o}", "code", code, "settings", settings)));
    itest_close(admin);
}

static json_int_t check_in(struct client *c, const char *prop, const char *room, const char *last,
                           json_int_t rate, int adults, json_t *extra)
{
    char bd[11], dep[11];
    itest_business_date(c, prop, bd);
    itest_date_add(bd, 5, dep);
    json_t *p = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:I, s:i}", "property", prop, "room", room,
                          "guest", "first_name", "Audit", "last_name", last, "departure", dep,
                          "rate", rate, "adults", adults);
    if (extra != NULL) {
        json_object_update(p, extra);
        json_decref(extra);
    }
    json_t *st = itest_call_ok(c, "stay.check_in", p);
    json_int_t id = itest_int(st, "id");
    json_decref(st);
    return id;
}

/* folio.post on a stay's window; returns the main posting's id. */
static json_int_t post(struct client *c, json_int_t stay, int window, const char *code,
                       json_int_t amount)
{
    json_t *r = itest_call_ok(c, "folio.post",
                              json_pack("{s:I, s:i, s:s, s:I}", "stay_id", stay, "window", window,
                                        "code", code, "amount", amount));
    json_int_t id = itest_int(r, "posting.id");
    json_decref(r);
    return id;
}

static void pay(struct client *c, json_int_t stay, int window, const char *method,
                json_int_t amount)
{
    json_decref(itest_call_ok(c, "folio.pay",
                              json_pack("{s:I, s:i, s:s, s:I}", "stay_id", stay, "window", window,
                                        "method", method, "amount", amount)));
}

static json_int_t folio_of(struct client *c, json_int_t stay, int window)
{
    json_t *st = itest_call_ok(c, "stay.get", json_pack("{s:I}", "stay_id", stay));
    json_t *folios = json_object_get(st, "folios"), *f;
    size_t i;
    json_int_t id = 0;
    json_array_foreach (folios, i, f)
        if (json_integer_value(json_object_get(f, "window")) == window)
            id = json_integer_value(json_object_get(f, "id"));
    json_decref(st);
    if (id == 0)
        fail_msg("stay %" JSON_INTEGER_FORMAT " has no window %d", stay, window);
    return id;
}

static json_int_t stay_balance(struct client *c, json_int_t stay)
{
    json_t *st = itest_call_ok(c, "stay.get", json_pack("{s:I}", "stay_id", stay));
    json_int_t b = itest_int(st, "balance");
    json_decref(st);
    return b;
}

/* Polls audit.status until the property's latest run is no longer running; returns it. */
static json_t *wait_audit(struct client *c, const char *prop, int timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        json_t *st = itest_call_ok(c, "audit.status", json_pack("{s:s}", "property", prop));
        json_t *run = json_object_get(st, "run");
        if (json_is_object(run) && strcmp(itest_str(run, "status"), "running") != 0) {
            json_incref(st);
            json_decref(st);
            return st;
        }
        if (itest_now_ms() > deadline)
            fail_msg("the audit of %s did not finish in %d ms: %s", prop, timeout_ms, dump(st));
        json_decref(st);
        sleep_ms(100);
    }
}

/* audit.run, then wait for the end; fails unless the run is done. Returns the closed date. */
static void run_audit(struct client *c, const char *prop, char *closed)
{
    json_t *r = itest_call_ok(c, "audit.run", json_pack("{s:s}", "property", prop));
    json_t *st = wait_audit(c, prop, 60000);
    json_t *run = json_object_get(st, "run");
    if (strcmp(itest_str(run, "status"), "done") != 0)
        fail_msg("audit of %s: %s", prop, dump(st));
    snprintf(closed, 11, "%s", itest_str(run, "business_date"));
    assert_string_equal(itest_str(st, "last_closed"), closed);
    json_decref(st);
    json_decref(r);
}

static json_t *report(struct client *c, const char *prop, const char *date, const char *kind)
{
    json_t *r =
        itest_call_ok(c, "audit.report",
                      json_pack("{s:s, s:s, s:s}", "property", prop, "date", date, "kind", kind));
    assert_true(json_is_true(json_object_get(r, "final")));
    json_t *content = json_incref(json_object_get(r, "content"));
    json_decref(r);
    return content;
}

/* The net of a code in a revenue report (0 when absent). */
static json_int_t code_net(const json_t *rev, const char *code)
{
    json_t *codes = json_object_get(rev, "codes"), *c;
    size_t i;
    json_array_foreach (codes, i, c)
        if (strcmp(itest_str(c, "code"), code) == 0)
            return itest_int(c, "net");
    return 0;
}

static json_int_t method_net(const json_t *pay_rep, const char *method)
{
    json_t *ms = json_object_get(pay_rep, "methods"), *m;
    size_t i;
    json_array_foreach (ms, i, m)
        if (strcmp(itest_str(m, "method"), method) == 0)
            return itest_int(m, "net");
    return 0;
}

#define EXPECT(what, got, want)                                                                    \
    do {                                                                                           \
        json_int_t g_ = (got), w_ = (want);                                                        \
        if (g_ != w_)                                                                              \
            fail_msg("%s: got %" JSON_INTEGER_FORMAT ", expected %" JSON_INTEGER_FORMAT, what, g_, \
                     w_);                                                                          \
    } while (0)

/* ---- the scripted hotel ---- */

/* What the test expects of one day, computed from what it did. */
struct day {
    json_int_t room[16]; /* rate of each stay in house at the end of the day (0 = comp) */
    int adults[16];
    int nstays;
    json_int_t rev_food, rev_bev, rev_misc_net, rev_misc_posted;
    json_int_t pay_cash, pay_card, pay_deposit, pay_bank;
    json_int_t guest_charges; /* every charge line of the day on guest folios */
};

static json_int_t room_tax(json_int_t rate)
{
    return itest_split_total("ROOM", rate) - rate;
}

/* Checks the day's stored reports against the expectation and the running ledgers. */
static void check_day(struct client *c, const char *prop, const char *date, const struct day *d,
                      json_int_t guest_open, json_int_t guest_close, json_int_t city_close,
                      json_int_t deposit_close, json_int_t credits, json_int_t to_city)
{
    json_t *rev = report(c, prop, date, "revenue");
    json_t *pays = report(c, prop, date, "payments");
    json_t *tb = report(c, prop, date, "trial_balance");
    json_t *rs = report(c, prop, date, "room_stats");
    json_t *gl = report(c, prop, date, "guest_ledger");
    json_t *cl = report(c, prop, date, "city_ledger");
    json_t *dep = report(c, prop, date, "deposits");
    json_int_t room_rev = 0, vat10 = 0, city = 0;
    int sold = 0;

    for (int i = 0; i < d->nstays; i++) {
        room_rev += d->room[i];
        vat10 += room_tax(d->room[i]);
        city += 250 * d->adults[i];
        sold++;
    }
    /* revenue by code */
    EXPECT("ROOM", code_net(rev, "ROOM"), room_rev);
    EXPECT("VAT10", code_net(rev, "VAT10"), vat10);
    EXPECT("CITYTAX", code_net(rev, "CITYTAX"), city);
    EXPECT("FOOD", code_net(rev, "FOOD"), d->rev_food);
    EXPECT("BEV", code_net(rev, "BEV"), d->rev_bev);
    EXPECT("MISC", code_net(rev, "MISC"), d->rev_misc_net);
    {
        struct itest_line fl[3], bl[3], ml[3];
        size_t nf = itest_split("FOOD", d->rev_food, fl), nb = itest_split("BEV", d->rev_bev, bl);
        json_int_t svc = 0, vat6 = 0, vat20 = 0;
        (void)itest_split("MISC", d->rev_misc_posted, ml);
        for (size_t k = 1; k < nf; k++) {
            if (strcmp(fl[k].code, "SVC10") == 0)
                svc += fl[k].amount;
            else
                vat6 += fl[k].amount;
        }
        for (size_t k = 1; k < nb; k++) {
            if (strcmp(bl[k].code, "SVC10") == 0)
                svc += bl[k].amount;
            else
                vat20 += bl[k].amount;
        }
        /* MISC was posted and voided the same day: its VAT nets to zero */
        EXPECT("SVC10", code_net(rev, "SVC10"), svc);
        EXPECT("VAT6", code_net(rev, "VAT6"), vat6);
        EXPECT("VAT20", code_net(rev, "VAT20"), vat20);
        EXPECT("revenue total", itest_int(rev, "totals.total"), d->guest_charges);
    }
    /* payments by method */
    EXPECT("cash", method_net(pays, "cash"), d->pay_cash);
    EXPECT("card", method_net(pays, "card"), d->pay_card);
    EXPECT("deposit", method_net(pays, "deposit"), d->pay_deposit);
    EXPECT("bank_transfer", method_net(pays, "bank_transfer"), d->pay_bank);
    /* trial balance */
    assert_true(json_is_true(json_object_get(tb, "ok")));
    EXPECT("guest opening", itest_int(tb, "ledgers.guest.opening"), guest_open);
    EXPECT("guest charges", itest_int(tb, "ledgers.guest.charges"), d->guest_charges);
    EXPECT("guest credits", itest_int(tb, "ledgers.guest.credits"), credits);
    EXPECT("guest transfers", itest_int(tb, "ledgers.guest.transfers"), -to_city);
    EXPECT("guest closing", itest_int(tb, "ledgers.guest.closing"), guest_close);
    EXPECT("city closing", itest_int(tb, "ledgers.city.closing"), city_close);
    EXPECT("deposit closing", itest_int(tb, "ledgers.deposit.closing"), deposit_close);
    EXPECT("guest ledger report", itest_int(gl, "totals.guest_ledger"), guest_close);
    EXPECT("in-house stays", itest_int(gl, "totals.stays"), d->nstays);
    EXPECT("city ledger report", itest_int(cl, "totals.balance"), city_close);
    EXPECT("city ledger aging", itest_int(cl, "totals.days_0_30"), city_close);
    EXPECT("deposits report", itest_int(dep, "totals.closing"), deposit_close);
    /* room statistics: 10 rooms, integer arithmetic, half away from zero */
    EXPECT("rooms sold", itest_int(rs, "rooms_sold"), sold);
    EXPECT("room revenue", itest_int(rs, "room_revenue"), room_rev);
    EXPECT("occupancy", itest_int(rs, "occupancy_bp"), itest_div_round(sold * 10000, 10));
    EXPECT("ADR", itest_int(rs, "adr"), sold > 0 ? itest_div_round(room_rev, sold) : 0);
    EXPECT("RevPAR", itest_int(rs, "revpar"), itest_div_round(room_rev, 10));
    json_decref(rev);
    json_decref(pays);
    json_decref(tb);
    json_decref(rs);
    json_decref(gl);
    json_decref(cl);
    json_decref(dep);
}

static void test_multi_day(void **state)
{
    (void)state;
    const char *P = "AUD-H";
    struct day d;
    char d1[11], d2[11], d3[11];
    json_int_t guest = 0, city = 0, deposits = 0, open;

    setup_property(P, "audh", NULL);
    struct client *cash = login("audh", "cashier");
    struct client *mgr = login("audh", "manager");
    struct client *aud = login("audh", "auditor");
    json_decref(itest_call_ok(
        mgr, "ar.create",
        json_pack("{s:s, s:s, s:s}", "property", P, "code", "ACME", "name", "Acme Corp")));

    /* ---- day 1 ---- */
    memset(&d, 0, sizeof(d));
    json_int_t s1 =
        check_in(cash, P, "101", "One", 12000, 2, json_pack("{s:i}", "credit_limit", 30000));
    json_int_t s2 = check_in(cash, P, "102", "Two", 9000, 1, NULL);
    json_int_t s3 = check_in(cash, P, "103", "Three", 0, 1, NULL);
    post(cash, s1, 1, "FOOD", 2000);
    json_int_t bev = post(cash, s2, 1, "BEV", 1500);
    /* drinks to the guest's second window: a transfer inside the guest ledger */
    json_decref(itest_call_ok(cash, "folio.transfer",
                              json_pack("{s:[I], s:i}", "posting_ids", bev, "to_window", 2)));
    pay(cash, s1, 1, "deposit", 10000);
    pay(cash, s2, 1, "cash", 1000);
    d.rev_food = 2000;
    d.rev_bev = 1500;
    d.pay_deposit = 10000;
    d.pay_cash = 1000;
    d.nstays = 3;
    d.room[0] = 12000, d.adults[0] = 2;
    d.room[1] = 9000, d.adults[1] = 1;
    d.room[2] = 0, d.adults[2] = 1;
    d.guest_charges = itest_split_total("FOOD", 2000) + itest_split_total("BEV", 1500) +
                      itest_split_total("ROOM", 12000) + itest_split_total("ROOM", 9000) + 4 * 250;

    /* a blocking pre-check: the cashier's shift is open (itest opened it at login) */
    set_settings(P, json_pack("{s:[s]}", "audit_block", "open_shifts"));
    json_t *r = itest_call_error(aud, "audit.run", json_pack("{s:s}", "property", P), -32000,
                                 "audit_blocked");
    json_t *blocking = itest_path(r, "error.data.blocking");
    assert_int_equal(json_array_size(blocking), 1);
    assert_string_equal(json_string_value(json_array_get(blocking, 0)), "open_shifts");
    assert_true(json_array_size(itest_path(r, "error.data.blockers.open_shifts")) >= 1);
    json_decref(r);
    r = itest_call_ok(aud, "audit.status", json_pack("{s:s}", "property", P));
    assert_string_equal(itest_str(json_object_get(r, "run"), "status"), "blocked");
    assert_false(json_is_true(json_object_get(r, "running")));
    json_decref(r);
    /* what the auditor does: here, make the check report-only (docs/audit.md) */
    set_settings(P, json_pack("{s:n}", "audit_block"));

    open = guest;
    guest += d.guest_charges - 11000;
    deposits = 10000;
    run_audit(aud, P, d1);
    check_day(aud, P, d1, &d, open, guest, city, deposits, 11000, 0);
    /* the date rolled and the stored report is what report.* gives for it */
    r = itest_call_ok(aud, "report.revenue", json_pack("{s:s, s:s}", "property", P, "date", d1));
    assert_true(json_is_true(json_object_get(r, "final")));
    json_decref(r);
    r = itest_call_ok(aud, "report.revenue", json_pack("{s:s}", "property", P));
    assert_false(json_is_true(json_object_get(r, "final")));
    EXPECT("open date revenue", itest_int(r, "content.totals.total"), 0);
    json_decref(r);
    r = itest_call_ok(cash, "report.in_house", json_pack("{s:s}", "property", P));
    EXPECT("in house now", json_array_size(json_object_get(r, "items")), 3);
    json_decref(r);
    /* a stored report never changes */
    r = itest_call_error(aud, "audit.report",
                         json_pack("{s:s, s:s, s:s}", "property", P, "date", d1, "kind", "nope"),
                         -32602, "invalid_params");
    json_decref(r);
    r = itest_call_ok(aud, "audit.report", json_pack("{s:s, s:s}", "property", P, "date", d1));
    EXPECT("stored kinds", json_array_size(json_object_get(r, "kinds")), 11);
    json_decref(r);

    /* ---- day 2 ---- */
    memset(&d, 0, sizeof(d));
    json_int_t b1 = stay_balance(cash, s1);
    assert_int_equal(b1, itest_split_total("FOOD", 2000) + itest_split_total("ROOM", 12000) + 500 -
                             10000);
    /* 50.00 of S1's bill goes to the company, the guest pays the rest by card */
    json_decref(itest_call_ok(cash, "ar.transfer",
                              json_pack("{s:I, s:s, s:i}", "folio_id", folio_of(cash, s1, 1),
                                        "account", "ACME", "amount", 5000)));
    json_decref(itest_call_ok(cash, "stay.check_out",
                              json_pack("{s:I, s:[{s:s, s:I}]}", "stay_id", s1, "payments",
                                        "method", "card", "amount", b1 - 5000)));
    json_int_t s4 = check_in(cash, P, "104", "Four", 15000, 2, NULL);
    json_int_t misc = post(cash, s2, 1, "MISC", 1000);
    json_decref(itest_call_ok(cash, "folio.void", json_pack("{s:I}", "posting_id", misc)));
    (void)s4;
    d.rev_misc_posted = 1000;
    d.rev_misc_net = 0;
    d.pay_card = b1 - 5000;
    d.nstays = 3;
    d.room[0] = 9000, d.adults[0] = 1;
    d.room[1] = 0, d.adults[1] = 1;
    d.room[2] = 15000, d.adults[2] = 2;
    d.guest_charges = itest_split_total("ROOM", 9000) + itest_split_total("ROOM", 15000) + 4 * 250;
    open = guest;
    guest += d.guest_charges - (b1 - 5000) - 5000;
    city = 5000;
    deposits = 0; /* S1's deposit was applied at checkout */
    run_audit(aud, P, d2);
    {
        char want[11];
        itest_date_add(d1, 1, want);
        assert_string_equal(d2, want);
    }
    check_day(aud, P, d2, &d, open, guest, city, deposits, b1 - 5000, 5000);
    r = report(aud, P, d2, "trial_balance");
    assert_string_equal(itest_str(r, "opening_source"), "stored");
    EXPECT("city transfers", itest_int(r, "ledgers.city.transfers"), 5000);
    EXPECT("deposit applied", itest_int(r, "ledgers.deposit.applied"), 10000);
    json_decref(r);

    /* ---- day 3 ---- */
    memset(&d, 0, sizeof(d));
    json_decref(itest_call_ok(cash, "ar.pay",
                              json_pack("{s:s, s:s, s:i, s:s}", "property", P, "account", "ACME",
                                        "amount", 2000, "method", "bank_transfer")));
    json_int_t w1 = 0, w2 = 0;
    {
        json_t *st = itest_call_ok(cash, "stay.get", json_pack("{s:I}", "stay_id", s2));
        json_t *f;
        size_t i;
        json_array_foreach (json_object_get(st, "folios"), i, f) {
            if (json_integer_value(json_object_get(f, "window")) == 1)
                w1 = json_integer_value(json_object_get(f, "balance"));
            else
                w2 = json_integer_value(json_object_get(f, "balance"));
        }
        json_decref(st);
    }
    json_decref(itest_call_ok(cash, "stay.check_out",
                              json_pack("{s:I, s:[{s:i, s:s, s:I}, {s:i, s:s, s:I}]}", "stay_id",
                                        s2, "payments", "window", 1, "method", "cash", "amount", w1,
                                        "window", 2, "method", "card", "amount", w2)));
    json_int_t b3 = stay_balance(cash, s3);
    EXPECT("comp room owes the city tax", b3, 500);
    json_decref(itest_call_ok(cash, "stay.check_out",
                              json_pack("{s:I, s:[{s:s, s:I}]}", "stay_id", s3, "payments",
                                        "method", "cash", "amount", b3)));
    d.pay_cash = w1 + b3;
    d.pay_card = w2;
    d.pay_bank = 2000;
    d.nstays = 1;
    d.room[0] = 15000, d.adults[0] = 2;
    d.guest_charges = itest_split_total("ROOM", 15000) + 500;
    open = guest;
    guest += d.guest_charges - (w1 + w2 + b3);
    city -= 2000;
    run_audit(aud, P, d3);
    /* the city ledger's payment is a credit of the city ledger, not of the guest ledger */
    check_day(aud, P, d3, &d, open, guest, city, 0, w1 + w2 + b3, 0);
    r = report(aud, P, d3, "cashier");
    assert_true(itest_int(r, "totals.shifts") >= 1);
    EXPECT("cashier net", itest_int(r, "totals.net"), w1 + w2 + b3 + 2000);
    json_decref(r);
    r = report(aud, P, d3, "room_stats");
    EXPECT("departures", itest_int(r, "departures"), 2);
    json_decref(r);
}

/* ---- daemons of the test's own (itest_daemon_*) ---- */

static struct client *daemon_login(const struct itest_daemon *d, const char *user)
{
    struct client *c = itest_daemon_connect(d);
    assert_non_null(c);
    json_t *resp = NULL;
    assert_true(client_call_new(c, "session.login",
                                json_pack("{s:s, s:s}", "user", user, "password", user), &resp));
    assert_non_null(client_response_result(resp));
    json_decref(resp);
    return c;
}

static json_t *daemon_call(struct client *c, const char *method, json_t *params)
{
    json_t *resp = NULL;
    if (!client_call_new(c, method, params, &resp))
        fail_msg("%s: %s", method, client_error(c));
    return resp;
}

/* One SQL query on the test database; the first column of the first row (or "") into out. */
static void sql_text(const char *query, char *out, size_t len)
{
    const char *conninfo = getenv("FOLIOD_TEST_PG_CONNINFO");
    if (conninfo == NULL)
        fail_msg("FOLIOD_TEST_PG_CONNINFO is not set");
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("database: %s", PQerrorMessage(pg));
    PGresult *res = PQexec(pg, query);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char err[512];
        snprintf(err, sizeof(err), "%s", PQerrorMessage(pg));
        PQclear(res);
        PQfinish(pg);
        fail_msg("%s: %s", query, err);
    }
    snprintf(out, len, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    PQclear(res);
    PQfinish(pg);
}

/* Everything the audit posted for a property and date, folio by room, as one text. */
static void audit_postings(const char *prop, const char *date, char *out, size_t len)
{
    char q[2048];
    snprintf(q, sizeof(q),
             "SELECT coalesce(string_agg(x, ';' ORDER BY x), '') FROM ("
             " SELECT concat_ws('|', rm.number, f.window_no, c.code, p.type, p.amount, p.quantity,"
             "  p.unit_amount, p.description, pp.trx_code_id IS NOT NULL) AS x"
             " FROM postings p JOIN properties pr ON pr.id = p.property_id"
             " JOIN trx_codes c ON c.id = p.trx_code_id JOIN folios f ON f.id = p.folio_id"
             " JOIN stays s ON s.id = f.stay_id JOIN rooms rm ON rm.id = s.room_id"
             " LEFT JOIN postings pp ON pp.id = p.parent_id"
             " WHERE pr.code = '%s' AND p.business_date = '%s' AND p.source = 'night_audit') q",
             prop, date);
    sql_text(q, out, len);
}

/* A report without what differs between twin properties: ids, numbers, times, user names. */
static void normalize(json_t *v)
{
    static const char *const drop[] = {"id",        "stay_id",     "folio_id",     "shift_id",
                                       "number",    "stay_number", "folio_number", "created_at",
                                       "opened_at", "closed_at",   "user",         "group_id",
                                       "property",  "property_id", "run_id"};
    if (json_is_object(v)) {
        for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
            json_object_del(v, drop[i]);
        const char *k;
        json_t *x;
        json_object_foreach (v, k, x)
            normalize(x);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach (v, i, x)
            normalize(x);
    }
}

/* The day both twins get: three stays, charges, a transfer, payments. */
static void twin_day(const char *prop, const char *prefix)
{
    struct client *c = login(prefix, "cashier");
    json_int_t a = check_in(c, prop, "101", "Alpha", 11000, 2, NULL);
    json_int_t b = check_in(c, prop, "102", "Bravo", 8500, 1, NULL);
    json_int_t g = check_in(c, prop, "103", "Golf", 13000, 3, NULL);
    post(c, a, 1, "FOOD", 3300);
    json_int_t bev = post(c, b, 1, "BEV", 2100);
    json_decref(itest_call_ok(c, "folio.transfer",
                              json_pack("{s:[I], s:i}", "posting_ids", bev, "to_window", 2)));
    /* S-Golf's drinks go to the guest's second window by routing; room and tax stay */
    json_decref(itest_call_ok(
        c, "routing.set",
        json_pack("{s:I, s:s, s:i}", "stay_id", g, "department", "beverage", "to_window", 2)));
    post(c, g, 1, "BEV", 900);
    pay(c, a, 1, "deposit", 20000);
    pay(c, b, 1, "card", 3000);
    itest_close(c);
}

static void compare_twins(struct client *ca, const char *pa, struct client *cb, const char *pb,
                          const char *date)
{
    static char xa[65536], xb[65536];
    audit_postings(pa, date, xa, sizeof(xa));
    audit_postings(pb, date, xb, sizeof(xb));
    assert_true(strlen(xa) > 0);
    if (strcmp(xa, xb) != 0)
        fail_msg("the audit's postings differ:\n%s\n%s", xa, xb);
    static const char *const kinds[] = {"precheck",     "trial_balance", "revenue",     "payments",
                                        "guest_ledger", "city_ledger",   "deposits",    "cashier",
                                        "room_stats",   "no_shows",      "high_balance"};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        json_t *ra = report(ca, pa, date, kinds[i]);
        json_t *rb = report(cb, pb, date, kinds[i]);
        normalize(ra);
        normalize(rb);
        if (!json_equal(ra, rb)) {
            char *ta = json_dumps(ra, JSON_COMPACT | JSON_SORT_KEYS);
            char *tb = json_dumps(rb, JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("report %s differs:\n%s\n%s", kinds[i], ta, tb);
        }
        json_decref(ra);
        json_decref(rb);
    }
    /* one room posting per stay and night, no more */
    char q[512], n[64];
    snprintf(q, sizeof(q),
             "SELECT count(*) || '/' || count(DISTINCT x.stay_id) FROM audit_room_posts x"
             " JOIN properties p ON p.id = x.property_id WHERE p.code = '%s'"
             " AND x.business_date = '%s'",
             pb, date);
    sql_text(q, n, sizeof(n));
    assert_string_equal(n, "3/3");
}

static void test_kill_and_resume(void **state)
{
    (void)state;
    const char *PA = "AUD-TA", *PB = "AUD-TB";
    char da[11], db[11], st[64], q[512];
    setup_property(PA, "auta", NULL);
    /* B: every step sleeps a little and posts one stay per transaction, so that a kill lands
     * in the middle of the run, at a different step each time */
    setup_property(PB, "autb",
                   json_pack("{s:i, s:i}", "audit_step_delay_ms", 400, "audit_chunk", 1));
    twin_day(PA, "auta");
    twin_day(PB, "autb");

    struct client *aa = login("auta", "auditor");
    run_audit(aa, PA, da);
    itest_close(aa); /* the harness closes connections idle for 5 s */

    struct itest_daemon d = {0};
    static const int kill_after_ms[] = {100, 300, 100, 500, 200, 800, 300, 1200};
    size_t kills = 0;
    bool terminated_backend = false, posted_during = false;
    char steps_hit[512] = "";
    itest_daemon_start(&d, "audit-kill", NULL);
    for (int round = 0; round < 40; round++) {
        struct client *c = daemon_login(&d, "autbauditor");
        /* done already (the killed daemon's last step committed)? then stop: another
         * audit.run would start the next date */
        json_t *s = daemon_call(c, "audit.status", json_pack("{s:s}", "property", PB));
        json_t *run = itest_path(s, "result.run");
        if (json_is_object(run) && strcmp(itest_str(run, "status"), "done") == 0) {
            json_decref(s);
            client_close(c);
            break;
        }
        json_decref(s);
        /* date: the day to close, so that a run that is done is never followed by the next */
        json_t *resp =
            daemon_call(c, "audit.run", json_pack("{s:s, s:s}", "property", PB, "date", da));
        const char *why = itest_reason(resp);
        if (why != NULL && strcmp(why, "db_unavailable") != 0)
            fail_msg("audit.run on the restarted daemon: %s", dump(resp));
        json_decref(resp);
        s = daemon_call(c, "audit.status", json_pack("{s:s}", "property", PB));
        run = itest_path(s, "result.run");
        snprintf(st, sizeof(st), "%s", itest_str(run, "step"));

        /* once the date has rolled: a front-desk posting goes to the next date */
        if (!posted_during && (strcmp(st, "post") == 0 || strcmp(st, "verify") == 0)) {
            struct client *cb = login("autb", "cashier");
            json_t *sl = itest_call_ok(cb, "stay.list", json_pack("{s:s}", "property", PB));
            json_int_t sid = itest_int(sl, "items.0.id");
            json_decref(sl);
            json_t *pr = itest_call_ok(
                cb, "folio.post",
                json_pack("{s:I, s:s, s:i}", "stay_id", sid, "code", "FOOD", "amount", 700));
            char next[11];
            itest_date_add(da, 1, next);
            assert_string_equal(itest_str(json_object_get(pr, "posting"), "business_date"), next);
            json_decref(pr);
            itest_close(cb);
            posted_during = true;
        }
        json_decref(s);
        if (kills < sizeof(kill_after_ms) / sizeof(kill_after_ms[0])) {
            sleep_ms(kill_after_ms[kills]);
            if (!terminated_backend && kills == 3) {
                /* the database loses the backend in the middle of a step: its transaction
                 * rolls back and the daemon retries it */
                char n[32];
                sql_text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                         " WHERE query LIKE 'SELECT fl_audit_step%' AND state = 'active'",
                         n, sizeof(n));
                terminated_backend = true;
                sleep_ms(300);
            }
            json_t *s2 = daemon_call(c, "audit.status", json_pack("{s:s}", "property", PB));
            snprintf(steps_hit + strlen(steps_hit), sizeof(steps_hit) - strlen(steps_hit), "%s%s",
                     kills > 0 ? "," : "", json_string_value(itest_path(s2, "result.run.step")));
            json_decref(s2);
            client_close(c);
            itest_daemon_kill(&d);
            kills++;
            itest_daemon_spawn(&d);
            continue;
        }
        /* no more kills: let it finish */
        for (int k = 0; k < 600; k++) {
            json_t *fin = daemon_call(c, "audit.status", json_pack("{s:s}", "property", PB));
            bool running =
                strcmp(json_string_value(itest_path(fin, "result.run.status")), "running") == 0;
            json_decref(fin);
            if (!running)
                break;
            sleep_ms(100);
        }
        client_close(c);
    }
    print_message("killed the auditing daemon %zu times, at the steps %s\n", kills, steps_hit);
    assert_true(kills >= 5);
    assert_true(posted_during);

    struct client *ab = login("autb", "auditor");
    aa = login("auta", "auditor");
    json_t *s = wait_audit(ab, PB, 60000);
    assert_string_equal(itest_str(json_object_get(s, "run"), "status"), "done");
    snprintf(db, sizeof(db), "%s", itest_str(json_object_get(s, "run"), "business_date"));
    json_decref(s);
    assert_string_equal(da, db);
    compare_twins(aa, PA, ab, PB, da);
    /* the posting made during the audit is on the next date, not in the closed day */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM postings p JOIN properties pr ON pr.id = p.property_id"
             " JOIN trx_codes c ON c.id = p.trx_code_id WHERE pr.code = '%s' AND c.code = 'FOOD'"
             " AND p.business_date > '%s'",
             PB, db);
    sql_text(q, st, sizeof(st));
    assert_string_equal(st, "1");
    itest_daemon_stop(&d, 15000);
    itest_daemon_assert_clean_log(&d);
}

static void test_two_daemons(void **state)
{
    (void)state;
    const char *P = "AUD-RACE";
    setup_property(P, "aurace",
                   json_pack("{s:i, s:i}", "audit_step_delay_ms", 150, "audit_chunk", 1));
    struct client *c = login("aurace", "cashier");
    check_in(c, P, "101", "Racer", 10000, 1, NULL);
    check_in(c, P, "102", "Pacer", 12000, 2, NULL);
    itest_close(c);

    struct itest_daemon d1 = {0}, d2 = {0};
    itest_daemon_start(&d1, "audit-race-1", NULL);
    itest_daemon_start(&d2, "audit-race-2", NULL);
    struct client *c1 = daemon_login(&d1, "auraceauditor");
    struct client *c2 = daemon_login(&d2, "auraceauditor");
    json_t *p = json_pack("{s:s}", "property", P);
    json_int_t id1 = 0, id2 = 0;
    assert_true(client_send_request(c1, "audit.run", p, &id1));
    assert_true(client_send_request(c2, "audit.run", p, &id2));
    json_decref(p);
    json_t *r1 = NULL, *r2 = NULL;
    assert_true(client_wait_response(c1, id1, 20000, &r1));
    assert_true(client_wait_response(c2, id2, 20000, &r2));
    struct client_rpc_error e;
    bool e1 = client_response_error(r1, &e);
    const char *why1 = e1 ? e.reason : NULL;
    bool e2 = client_response_error(r2, &e);
    const char *why2 = e2 ? e.reason : NULL;
    if (e1 == e2)
        fail_msg("exactly one daemon must run the audit:\n%s\n%s", dump(r1), dump(r2));
    assert_string_equal(e1 ? why1 : why2, "audit_in_progress");
    /* the refusal carries the status of the running audit */
    assert_non_null(itest_path(e1 ? r1 : r2, "error.data.status.run.step"));
    json_decref(r1);
    json_decref(r2);

    struct client *a = login("aurace", "auditor");
    json_t *s = wait_audit(a, P, 60000);
    assert_string_equal(itest_str(json_object_get(s, "run"), "status"), "done");
    char owner[160], q[512], n[64];
    snprintf(owner, sizeof(owner), "%s", itest_str(json_object_get(s, "run"), "owner"));
    snprintf(q, sizeof(q), ":%u", e1 ? d2.port : d1.port);
    assert_non_null(strstr(owner, q));
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM postings p JOIN properties pr ON pr.id = p.property_id"
             " JOIN trx_codes c ON c.id = p.trx_code_id WHERE pr.code = '%s'"
             " AND p.source = 'night_audit' AND c.code = 'ROOM'",
             P);
    sql_text(q, n, sizeof(n));
    assert_string_equal(n, "2");
    json_decref(s);
    client_close(c1);
    client_close(c2);
    itest_daemon_stop(&d1, 15000);
    itest_daemon_assert_clean_log(&d1);
    itest_daemon_stop(&d2, 15000);
    itest_daemon_assert_clean_log(&d2);
}

static void test_schedule(void **state)
{
    (void)state;
    const char *P = "AUD-SCHED";
    char today[11], yesterday[11];
    struct client *admin = itest_connect_user("admin");
    json_t *r = itest_call_ok(admin, "property.list", NULL);
    json_decref(r);
    {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(today, sizeof(today), "%Y-%m-%d", &tm);
    }
    /* the day before: whatever Paris's date is, the audit of that date is due */
    itest_date_add(today, -1, yesterday);
    itest_create(admin, "property.create",
                 json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:b}}", "code", P, "name", P,
                           "currency", "EUR", "timezone", "Europe/Paris", "business_date",
                           yesterday, "audit_time", "00:00", "settings", "audit_schedule", 0));
    itest_create(admin, "room.create",
                 json_pack("{s:s, s:s, s:s}", "property", P, "number", "1", "room_type", "STD"));
    itest_create(admin, "user.create",
                 json_pack("{s:s, s:s, s:s, s:s}", "username", "auschedauditor", "password",
                           "auschedauditor", "role", "auditor", "property", P));
    json_decref(
        itest_call_ok(admin, "property.update",
                      json_pack("{s:s, s:{s:b}}", "code", P, "settings", "audit_schedule", 1)));
    itest_close(admin);

    struct itest_daemon d = {0};
    itest_daemon_start(&d, "audit-schedule", NULL);
    struct client *a = itest_connect_user("auschedauditor");
    int64_t deadline = itest_now_ms() + 30000;
    for (;;) {
        json_t *s = itest_call_ok(a, "audit.status", json_pack("{s:s}", "property", P));
        json_t *run = json_object_get(s, "run");
        /* (another daemon's schedule may have audited it too: either is fine) */
        if (json_is_object(run) && strcmp(itest_str(run, "status"), "done") == 0 &&
            json_is_string(json_object_get(s, "last_closed")) &&
            strcmp(itest_str(s, "last_closed"), yesterday) >= 0) {
            assert_string_equal(itest_str(run, "trigger"), "schedule");
            json_decref(s);
            break;
        }
        if (itest_now_ms() > deadline)
            fail_msg("the schedule did not audit %s: %s", P, dump(s));
        json_decref(s);
        sleep_ms(200);
    }
    set_settings(P, json_pack("{s:b}", "audit_schedule", 0));
    itest_daemon_stop(&d, 15000);
    itest_daemon_assert_clean_log(&d);
}

/* A POS posting of an outlet of the property being audited. */
static json_t *na_post(struct client *outlet, const char *key, const char *room, json_int_t amount)
{
    json_t *r = itest_call_ok(
        outlet, "pos.post",
        json_pack("{s:s, s:s, s:s, s:[{s:s, s:I}], s:I}", "key", key, "room", room, "check", key,
                  "subtotals", "code", "MISC", "amount", amount, "total",
                  (json_int_t)itest_split_total("MISC", amount)));
    return r;
}

static void na_expect(json_t *answer, const char *status, const char *reason)
{
    if (strcmp(itest_str(answer, "status"), status) != 0 ||
        strcmp(itest_str(answer, "reason"), reason) != 0)
        fail_msg("expected %s %s, got %s", status, reason, dump(answer));
}

/* The number of postings with the outlet's source and the check (the key) as reference, and the
 * business date of the last one. */
static long na_postings(const char *key, char *date)
{
    char q[512], out[64];
    snprintf(q, sizeof(q),
             "SELECT count(*) || ' ' || coalesce(max(p.business_date)::text, '-') FROM pos_requests r"
             " JOIN postings p ON p.id = ANY (r.posting_ids) WHERE r.key = '%s'"
             " AND p.parent_id IS NULL",
             key);
    sql_text(q, out, sizeof(out));
    long n = strtol(out, NULL, 10);
    if (date != NULL)
        snprintf(date, 11, "%s", strchr(out, ' ') + 1);
    return n;
}

/* The next notification `method` on an outlet's connection (others are dropped), pinging it
 * and the connections of `others` (NULL-terminated, may be NULL) while waiting, so that none
 * is closed as idle; fails after timeout_ms. */
static json_t *na_notification(struct client *c, const char *method, int timeout_ms,
                               struct client *const *others)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        json_t *n;
        while ((n = client_take_notification(c)) != NULL) {
            const char *m = itest_str(n, "method");
            if (m != NULL && strcmp(m, method) == 0)
                return n;
            json_decref(n);
        }
        if (itest_now_ms() > deadline)
            fail_msg("no %s notification in %d ms", method, timeout_ms);
        json_decref(itest_call_ok(c, "server.ping", NULL));
        for (size_t i = 0; others != NULL && others[i] != NULL; i++)
            json_decref(itest_call_ok(others[i], "server.ping", NULL));
        sleep_ms(50);
    }
}

/*
 * POS postings during the audit: an outlet whose policy has block_during_audit is answered NA
 * night_audit while the audit runs (nothing stored: the same key posts once it has finished);
 * a key answered before the audit is replayed, not refused; an outlet without the policy posts
 * on the open date meanwhile; every outlet hears audit.started and audit.finished.
 */
static void test_pos_during_audit(void **state)
{
    (void)state;
    const char *P = "AUNA";
    char before[11], after[11], date[11];
    setup_property(P, "auna", json_pack("{s:i, s:i}", "audit_step_delay_ms", 300, "audit_chunk", 1));
    struct client *admin = itest_connect_user("admin");
    itest_create(admin, "outlet.create",
                 json_pack("{s:s, s:s, s:s, s:s, s:{s:[s], s:b}}", "property", P, "code",
                           "AUNAPOS", "name", "Blocked during the audit", "cert_cn", "AUNAPOS",
                           "policy", "allowed_codes", "MISC", "block_during_audit", 1));
    itest_create(admin, "outlet.create",
                 json_pack("{s:s, s:s, s:s, s:s, s:{s:[s]}}", "property", P, "code", "AUNABAR",
                           "name", "Posts during the audit", "cert_cn", "AUNABAR", "policy",
                           "allowed_codes", "MISC"));
    itest_close(admin);

    struct client *cashier = login("auna", "cashier");
    struct client *auditor = login("auna", "auditor");
    itest_business_date(cashier, P, before);
    for (int i = 0; i < 4; i++)
        check_in(cashier, P, rooms10[i], "Nightly", 10000, 1, NULL);

    bool ok;
    struct client *blocked = itest_connect_cert("outlet-AUNAPOS", &ok);
    assert_true(ok);
    struct client *bar = itest_connect_cert("outlet-AUNABAR", &ok);
    assert_true(ok);

    json_t *a = na_post(blocked, "auna-k1", "101", 1000);
    na_expect(a, "OK", "posted");
    json_decref(a);

    /* the audit answers after its first step; every later step sleeps 300 ms */
    json_t *r = itest_call_ok(auditor, "audit.run", json_pack("{s:s}", "property", P));
    assert_string_equal(itest_str(r, "status"), "running");
    json_decref(r);

    json_t *n = na_notification(blocked, "audit.started", 5000, NULL);
    assert_string_equal(itest_str(json_object_get(n, "params"), "business_date"), before);
    json_decref(n);

    a = na_post(blocked, "auna-k2", "102", 2000);
    na_expect(a, "NA", "night_audit");
    assert_string_equal(itest_str(a, "key"), "auna-k2");
    json_decref(a);
    a = na_post(blocked, "auna-k1", "101", 1000); /* answered before: replayed */
    na_expect(a, "OK", "posted");
    assert_true(json_is_true(json_object_get(a, "replayed")));
    json_decref(a);
    a = itest_call_ok(blocked, "pos.status", json_pack("{s:s}", "key", "auna-k2"));
    if (strcmp(itest_str(a, "status"), "OK") == 0)
        fail_msg("an NA answer was stored as posted: %s", dump(a));
    json_decref(a);

    /* an outlet without the policy posts on the open date meanwhile: once the date has rolled,
     * on the new one */
    json_decref(na_notification(bar, "audit.started", 5000, NULL));
    for (int64_t deadline = itest_now_ms() + 20000;;) {
        r = itest_call_ok(auditor, "audit.status", json_pack("{s:s}", "property", P));
        json_t *steps = json_object_get(json_object_get(r, "run"), "steps"), *stp;
        size_t k;
        bool rolled = false;
        json_array_foreach (steps, k, stp)
            if (strcmp(itest_str(stp, "step"), "roll") == 0 &&
                strcmp(itest_str(stp, "status"), "done") == 0)
                rolled = true;
        json_decref(r);
        if (rolled)
            break;
        if (itest_now_ms() > deadline)
            fail_msg("the audit of %s did not roll the date", P);
        json_decref(itest_call_ok(bar, "server.ping", NULL));
        sleep_ms(20);
    }
    a = na_post(bar, "auna-b1", "103", 3000);
    na_expect(a, "OK", "posted");
    json_decref(a);
    r = itest_call_ok(auditor, "audit.status", json_pack("{s:s}", "property", P));
    const char *run_status = itest_str(json_object_get(r, "run"), "status");
    if (strcmp(run_status, "running") != 0)
        fail_msg("the audit finished before the postings during it were tried: %s", dump(r));
    json_decref(r);

    /* audit.finished comes at the run's end (the other connections are kept busy meanwhile) */
    struct client *const others[] = {bar, cashier, auditor, NULL};
    n = na_notification(blocked, "audit.finished", 60000, others);
    json_t *st = wait_audit(auditor, P, 10000);
    assert_string_equal(itest_str(json_object_get(st, "run"), "status"), "done");
    json_decref(st);
    itest_business_date(cashier, P, after);
    assert_string_not_equal(before, after);
    assert_string_equal(itest_str(json_object_get(n, "params"), "next_business_date"), after);
    json_decref(n);

    /* the refused key posts now, once, on the new date */
    a = na_post(blocked, "auna-k2", "102", 2000);
    na_expect(a, "OK", "posted");
    assert_false(json_is_true(json_object_get(a, "replayed")));
    json_decref(a);
    assert_int_equal(na_postings("auna-k2", date), 1);
    assert_string_equal(date, after);
    assert_int_equal(na_postings("auna-k1", date), 1);
    assert_string_equal(date, before);
    /* the bar's posting during the audit went to the open date, never to the closed one */
    assert_int_equal(na_postings("auna-b1", date), 1);
    assert_string_equal(date, after);

    itest_close(blocked);
    itest_close(bar);
    itest_close(cashier);
    itest_close(auditor);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_multi_day),
        ITEST(test_kill_and_resume),
        ITEST(test_two_daemons),
        ITEST(test_schedule),
        ITEST(test_pos_during_audit),
    };
    return cmocka_run_group_tests_name("audit", tests, itest_group_setup, NULL);
}
