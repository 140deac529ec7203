/*
 * test_cashier.c - integration tests of cashier shifts and the city ledger (docs/cashier.md)
 * against a running foliod: a shift's report against hand-computed figures (float, cash and
 * card payments, a refund, a voided payment, a paid-out, the declared cash and the
 * difference), payments refused without an open shift (and the whole call rolled back),
 * closing twice, who may read a shift, city-ledger transfers (credit limit, the folio reaching
 * zero so that the stay checks out), partial and refused payments of invoices, and the aging
 * buckets across business dates rolled with business_date.close (the function the night audit
 * calls at its end), checked against figures computed here.
 *
 * Everything runs on a property of its own, C5, created through the admin and manager methods,
 * with users of its own logged in with itest_connect_login() (so that no shift is opened for
 * them behind the test's back). The aging test rolls C5's business date by about three months,
 * so it runs last.
 *
 * Run by tests/integration/harness.sh (see itest.h).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROP "C5"

static const char *const c5_rooms[] = {"C5-01", "C5-02", "C5-03", "C5-04"};

/* C5 with the demo's codes and users c5cashier, c5manager, c5auditor (itest_ensure_property),
 * plus cashiers of this file: c5ann (the shift figures), c5bob (reads another's shift), c5nos
 * (never opens a shift). Each user's password is the user name. */
static void c5_setup(void)
{
    static bool done;
    static const char *const cashiers[] = {"c5ann", "c5bob", "c5nos"};
    struct client *admin;

    if (done)
        return;
    itest_ensure_property(PROP, "Hotel C5 Cashier", c5_rooms,
                          sizeof(c5_rooms) / sizeof(c5_rooms[0]), "c5");
    admin = itest_connect_user("admin");
    for (size_t i = 0; i < sizeof(cashiers) / sizeof(cashiers[0]); i++)
        itest_create(admin, "user.create",
                     json_pack("{s:s, s:s, s:s, s:s, s:s}", "username", cashiers[i], "password",
                               cashiers[i], "role", "cashier", "property", PROP, "full_name",
                               cashiers[i]));
    itest_close(admin);
    done = true;
}

static struct client *login(const char *user)
{
    return itest_connect_login(user, user);
}

static char *dump(const json_t *v)
{
    static char buf[8192];
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    snprintf(buf, sizeof(buf), "%s", text != NULL ? text : "?");
    free(text);
    return buf;
}

/* A domain error with this reason; returns the whole response (new reference). */
static json_t *refused(struct client *c, const char *method, json_t *params, const char *reason)
{
    return itest_call_error(c, method, params, -32000, reason);
}

static void refuse(struct client *c, const char *method, json_t *params, const char *reason)
{
    json_decref(refused(c, method, params, reason));
}

/* A fresh shift for the user of c with this float: a shift left open by an earlier run of
 * the test against the same database is closed first. Returns the shift's id. */
static json_int_t fresh_shift(struct client *c, json_int_t opening_float)
{
    json_t *r = itest_call_raw(c, "cashier.report", NULL);
    json_int_t id;

    if (itest_reason(r) == NULL &&
        strcmp(itest_str(json_object_get(r, "result"), "status"), "open") == 0)
        json_decref(itest_call_ok(
            c, "cashier.close",
            json_pack("{s:i, s:s}", "declared", 0, "note", "left open by an earlier run")));
    json_decref(r);
    r = itest_call_ok(c, "cashier.open", json_pack("{s:I}", "float", opening_float));
    assert_string_equal(itest_str(r, "status"), "open");
    assert_int_equal(itest_int(r, "float"), opening_float);
    assert_int_equal(itest_int(r, "expected_cash"), opening_float);
    assert_int_equal(itest_int(r, "postings"), 0);
    id = itest_int(r, "id");
    json_decref(r);
    return id;
}

static json_int_t open_folio(struct client *c, const char *name)
{
    json_t *f = itest_call_ok(
        c, "folio.open",
        json_pack("{s:s, s:s, s:s}", "property", PROP, "type", "non_guest", "name", name));
    json_int_t id = itest_int(f, "id");

    json_decref(f);
    return id;
}

static json_t *post(struct client *c, json_int_t folio, const char *code, json_int_t amount)
{
    return itest_call_ok(
        c, "folio.post",
        json_pack("{s:I, s:s, s:I}", "folio_id", folio, "code", code, "amount", amount));
}

static json_int_t pay(struct client *c, json_int_t folio, const char *method, json_int_t amount)
{
    json_t *r = itest_call_ok(
        c, "folio.pay",
        json_pack("{s:I, s:s, s:I}", "folio_id", folio, "method", method, "amount", amount));
    json_int_t id = itest_int(r, "posting.id");

    assert_int_equal(itest_int(r, "posting.amount"), -amount);
    json_decref(r);
    return id;
}

static json_int_t folio_balance(struct client *c, json_int_t folio)
{
    json_t *f = itest_call_ok(c, "folio.get", json_pack("{s:I}", "folio_id", folio));
    json_int_t b = itest_int(f, "balance");

    json_decref(f);
    return b;
}

/* The member of an array of objects whose key equals value, or NULL. Borrowed. */
static json_t *find_by(const json_t *array, const char *key, const char *value)
{
    json_t *e;
    size_t i;

    json_array_foreach (array, i, e) {
        const char *s = json_string_value(json_object_get(e, key));

        if (s != NULL && strcmp(s, value) == 0)
            return e;
    }
    return NULL;
}

/* by_method entry of a shift report: received, refunded and net, or fail. */
static void assert_method(const json_t *report, const char *method, json_int_t received,
                          json_int_t refunded)
{
    json_t *m = find_by(json_object_get(report, "by_method"), "method", method);

    if (m == NULL)
        fail_msg("no %s in by_method of %s", method, dump(report));
    assert_int_equal(itest_int(m, "received"), received);
    assert_int_equal(itest_int(m, "refunded"), refunded);
    assert_int_equal(itest_int(m, "net"), received - refunded);
}

/* ---- shifts ---- */

/* The figures of a shift, computed by hand:
 *   float 100.00; cash in 50.00 + 25.00 (and 7.00 taken then voided); card 120.00; bank 10.00;
 *   cash refund 15.00; paid-out 30.00 (a florist)
 *   cash received 75.00, refunded 15.00, paid out 30.00
 *   expected cash = 100.00 + 75.00 - 15.00 - 30.00 = 130.00; declared 129.00: 1.00 short. */
static void assert_ann_figures(const json_t *r)
{
    assert_int_equal(itest_int(r, "float"), 10000);
    assert_int_equal(itest_int(r, "cash.float"), 10000);
    assert_int_equal(itest_int(r, "cash.received"), 7500);
    assert_int_equal(itest_int(r, "cash.refunded"), 1500);
    assert_int_equal(itest_int(r, "cash.paid_out"), 3000);
    assert_int_equal(itest_int(r, "cash.expected"), 13000);
    assert_int_equal(itest_int(r, "expected_cash"), 13000);
    assert_method(r, "cash", 7500, 1500);
    assert_method(r, "card", 12000, 0);
    assert_method(r, "bank_transfer", 1000, 0);
    assert_int_equal(json_array_size(json_object_get(r, "by_method")), 3);
    assert_int_equal(itest_int(r, "paid_outs.count"), 1);
    assert_int_equal(itest_int(r, "paid_outs.amount"), 3000);
    assert_int_equal(itest_int(r, "voids.count"), 1);
    assert_int_equal(itest_int(r, "voids.amount"), 700);
    /* 50, 25, 120, 10, refund 15, paid-out 30, 7 and its void */
    assert_int_equal(itest_int(r, "postings"), 8);
}

static void test_shift_totals(void **state)
{
    struct client *ann, *manager;
    json_t *r, *lines, *p;
    json_int_t shift, folio, po, cash7, bal, sum = 0;
    size_t i;

    (void)state;
    c5_setup();
    ann = login("c5ann");
    manager = login("c5manager");
    shift = fresh_shift(ann, 10000);
    refuse(ann, "cashier.open", json_pack("{s:i}", "float", 500), "shift_already_open");

    folio = open_folio(ann, "Shift walk-in");
    json_decref(post(ann, folio, "ROOM", 20000)); /* 200.00 + VAT 10% */
    assert_int_equal(folio_balance(ann, folio), itest_split_total("ROOM", 20000));
    pay(ann, folio, "cash", 5000);
    pay(ann, folio, "cash", 2500);
    pay(ann, folio, "card", 12000);
    pay(ann, folio, "bank_transfer", 1000);
    pay(ann, folio, "cash", -1500); /* a refund */
    cash7 = pay(ann, folio, "cash", 700);
    json_decref(itest_call_ok(
        ann, "folio.void", json_pack("{s:I, s:s}", "posting_id", cash7, "reason", "wrong folio")));
    /* a paid-out: cash handed out for the guest, charged to the folio, no tax */
    r = itest_call_ok(ann, "folio.post",
                      json_pack("{s:I, s:s, s:i, s:s}", "folio_id", folio, "code", "PAIDOUT",
                                "amount", 3000, "description", "Florist"));
    assert_string_equal(itest_str(json_object_get(r, "posting"), "kind"), "paid_out");
    assert_string_equal(itest_str(json_object_get(r, "posting"), "type"), "charge");
    assert_int_equal(json_array_size(json_object_get(r, "postings")), 1);
    assert_int_equal(itest_int(r, "total"), 3000);
    po = itest_int(r, "posting.id");
    json_decref(r);
    bal = itest_split_total("ROOM", 20000) - 5000 - 2500 - 12000 - 1000 + 1500 + 3000;
    assert_int_equal(folio_balance(ann, folio), bal);

    /* the open shift's report, live */
    r = itest_call_ok(ann, "cashier.report", NULL);
    assert_int_equal(itest_int(r, "id"), shift);
    assert_string_equal(itest_str(r, "status"), "open");
    assert_string_equal(itest_str(r, "user"), "c5ann");
    assert_ann_figures(r);
    assert_true(json_is_null(json_object_get(r, "declared")));
    lines = json_object_get(r, "lines");
    assert_int_equal(json_array_size(lines), 8);
    json_array_foreach (lines, i, p) {
        sum += itest_int(p, "amount");
    }
    /* the shift's lines are the folio's postings but the room charge */
    assert_int_equal(sum, bal - itest_split_total("ROOM", 20000));
    assert_int_equal(itest_int(lines, "7.id"), po);
    json_decref(r);

    /* closing: declared 129.00 against 130.00 expected */
    r = itest_call_ok(ann, "cashier.close",
                      json_pack("{s:i, s:s}", "declared", 12900, "note", "one euro short"));
    assert_int_equal(itest_int(r, "id"), shift);
    assert_string_equal(itest_str(r, "status"), "closed");
    assert_ann_figures(r);
    assert_int_equal(itest_int(r, "declared"), 12900);
    assert_int_equal(itest_int(r, "difference"), -100);
    assert_string_equal(itest_str(r, "closed_by"), "c5ann");
    assert_string_equal(itest_str(r, "note"), "one euro short");
    json_decref(r);

    /* the closed shift is what it was at closing, for its cashier and for a manager */
    r = itest_call_ok(manager, "cashier.report", json_pack("{s:I}", "shift_id", shift));
    assert_string_equal(itest_str(r, "status"), "closed");
    assert_ann_figures(r);
    assert_int_equal(itest_int(r, "difference"), -100);
    json_decref(r);
    r = itest_call_ok(ann, "cashier.report", NULL); /* the latest shift */
    assert_int_equal(itest_int(r, "id"), shift);
    assert_int_equal(itest_int(r, "declared"), 12900);
    json_decref(r);

    /* closing twice */
    refuse(ann, "cashier.close", json_pack("{s:I, s:i}", "shift_id", shift, "declared", 12900),
           "shift_closed");
    refuse(ann, "cashier.close", json_pack("{s:i}", "declared", 12900), "no_open_shift");
    refuse(manager, "cashier.close", json_pack("{s:I, s:i}", "shift_id", shift, "declared", 1),
           "shift_closed");

    /* nothing joins a closed shift: the next payment has no shift to go to */
    refuse(ann, "folio.pay",
           json_pack("{s:I, s:s, s:i}", "folio_id", folio, "method", "cash", "amount", 100),
           "no_open_shift");
    r = itest_call_ok(manager, "cashier.report", json_pack("{s:I}", "shift_id", shift));
    assert_int_equal(itest_int(r, "postings"), 8);
    json_decref(r);
    assert_int_equal(folio_balance(ann, folio), bal);

    /* a new shift starts from its own float */
    fresh_shift(ann, 0);
    pay(ann, folio, "cash", bal);
    r = itest_call_ok(ann, "cashier.close", json_pack("{s:I}", "declared", bal));
    assert_int_equal(itest_int(r, "expected_cash"), bal);
    assert_int_equal(itest_int(r, "difference"), 0);
    json_decref(r);
    itest_close(ann);
    itest_close(manager);
}

static void test_no_open_shift(void **state)
{
    struct client *nos;
    json_t *r, *st;
    json_int_t folio, stay, w1, total;
    char bd[11], dep[11];

    (void)state;
    c5_setup();
    nos = login("c5nos");
    folio = open_folio(nos, "No shift");
    /* charges need no shift */
    json_decref(post(nos, folio, "TIP", 2500));
    refuse(nos, "folio.pay",
           json_pack("{s:I, s:s, s:i}", "folio_id", folio, "method", "cash", "amount", 1000),
           "no_open_shift");
    refuse(nos, "folio.pay",
           json_pack("{s:I, s:s, s:i}", "folio_id", folio, "method", "cash", "amount", -1000),
           "no_open_shift");
    refuse(nos, "folio.post",
           json_pack("{s:I, s:s, s:i}", "folio_id", folio, "code", "PAIDOUT", "amount", 1000),
           "no_open_shift");
    assert_int_equal(folio_balance(nos, folio), 2500);

    /* a checkout's payments: the whole call rolls back and the stay stays in house */
    itest_business_date(nos, PROP, bd);
    itest_date_add(bd, 2, dep);
    st = itest_call_ok(nos, "stay.check_in",
                       json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:i}", "property", PROP, "room",
                                 "C5-01", "guest", "first_name", "Nora", "last_name", "Noshift",
                                 "departure", dep, "rate", 9000));
    stay = itest_int(st, "id");
    w1 = itest_int(st, "folios.0.id");
    json_decref(st);
    json_decref(post(nos, w1, "ROOM", 9000));
    total = itest_split_total("ROOM", 9000);
    refuse(nos, "stay.check_out",
           json_pack("{s:I, s:[{s:s, s:I}]}", "stay_id", stay, "payments", "method", "card",
                     "amount", total),
           "no_open_shift");
    st = itest_call_ok(nos, "stay.get", json_pack("{s:I}", "stay_id", stay));
    assert_string_equal(itest_str(st, "status"), "in_house");
    assert_int_equal(itest_int(st, "balance"), total);
    json_decref(st);
    assert_int_equal(folio_balance(nos, w1), total);

    /* with a shift the same checkout goes through, and the payment is the shift's */
    fresh_shift(nos, 2000);
    st = itest_call_ok(nos, "stay.check_out",
                       json_pack("{s:I, s:[{s:s, s:I}]}", "stay_id", stay, "payments", "method",
                                 "card", "amount", total));
    assert_string_equal(itest_str(st, "status"), "checked_out");
    json_decref(st);
    r = itest_call_ok(nos, "cashier.close", json_pack("{s:i}", "declared", 2000));
    assert_method(r, "card", total, 0);
    assert_int_equal(itest_int(r, "expected_cash"), 2000);
    assert_int_equal(itest_int(r, "difference"), 0);
    json_decref(r);
    itest_close(nos);
}

static void test_report_access(void **state)
{
    struct client *ann, *bob, *manager, *auditor;
    json_t *r;
    json_int_t ann_shift, bob_shift;

    (void)state;
    c5_setup();
    ann = login("c5ann");
    bob = login("c5bob");
    manager = login("c5manager");
    auditor = login("c5auditor");
    ann_shift = fresh_shift(ann, 5000);
    bob_shift = fresh_shift(bob, 7000);

    /* a cashier sees their own shifts only */
    refuse(bob, "cashier.report", json_pack("{s:I}", "shift_id", ann_shift), "forbidden");
    refuse(bob, "cashier.report", json_pack("{s:s}", "user", "c5ann"), "forbidden");
    r = itest_call_ok(bob, "cashier.report", json_pack("{s:s}", "user", "c5bob"));
    assert_int_equal(itest_int(r, "id"), bob_shift);
    json_decref(r);
    /* nor may they close another's */
    refuse(bob, "cashier.close", json_pack("{s:I, s:i}", "shift_id", ann_shift, "declared", 0),
           "forbidden");

    /* managers and auditors see every shift, by id or by user */
    r = itest_call_ok(manager, "cashier.report", json_pack("{s:I}", "shift_id", ann_shift));
    assert_string_equal(itest_str(r, "user"), "c5ann");
    assert_int_equal(itest_int(r, "expected_cash"), 5000);
    json_decref(r);
    r = itest_call_ok(auditor, "cashier.report", json_pack("{s:s}", "user", "c5bob"));
    assert_int_equal(itest_int(r, "id"), bob_shift);
    assert_int_equal(itest_int(r, "float"), 7000);
    json_decref(r);
    r = itest_call_ok(auditor, "cashier.report", json_pack("{s:I}", "shift_id", ann_shift));
    assert_int_equal(itest_int(r, "id"), ann_shift);
    json_decref(r);
    /* an auditor takes no money */
    refuse(auditor, "cashier.open", NULL, "forbidden");

    /* a manager may close a shift a cashier left open */
    r = itest_call_ok(manager, "cashier.close",
                      json_pack("{s:I, s:i}", "shift_id", bob_shift, "declared", 7000));
    assert_string_equal(itest_str(r, "closed_by"), "c5manager");
    assert_string_equal(itest_str(r, "user"), "c5bob");
    assert_int_equal(itest_int(r, "difference"), 0);
    json_decref(r);
    json_decref(itest_call_ok(ann, "cashier.close", json_pack("{s:i}", "declared", 5000)));

    /* another property's shift is out of a manager's reach */
    {
        struct client *demo = itest_connect_user("manager");

        refuse(demo, "cashier.report", json_pack("{s:I}", "shift_id", ann_shift), "forbidden");
        itest_close(demo);
    }
    itest_close(ann);
    itest_close(bob);
    itest_close(manager);
    itest_close(auditor);
}

/* ---- city ledger ---- */

/* A city-ledger account of C5 (created unless it exists); returns its balance. */
static json_int_t ar_account(struct client *manager, const char *code, const char *name,
                             const char *kind, json_int_t credit_limit)
{
    json_t *params = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "property", PROP, "code", code,
                               "name", name, "kind", kind, "contact", "name", "Accounts payable",
                               "email", "ap@example.org");
    json_t *r;
    json_int_t balance;

    if (credit_limit >= 0)
        json_object_set_new(params, "credit_limit", json_integer(credit_limit));
    itest_create(manager, "ar.create", params);
    r = itest_call_ok(manager, "ar.get", json_pack("{s:s, s:s}", "property", PROP, "code", code));
    assert_string_equal(itest_str(r, "name"), name);
    assert_string_equal(itest_str(r, "kind"), kind);
    balance = itest_int(r, "balance");
    json_decref(r);
    return balance;
}

static json_int_t ar_balance(struct client *c, const char *code)
{
    json_t *r = itest_call_ok(c, "ar.get", json_pack("{s:s, s:s}", "property", PROP, "code", code));
    json_int_t b = itest_int(r, "balance"), open = 0;
    json_t *inv;
    size_t i;

    /* the account owes what its invoices still have open */
    json_array_foreach (json_object_get(r, "invoices"), i, inv) {
        open += itest_int(inv, "open_amount");
    }
    assert_int_equal(open, b);
    json_decref(r);
    return b;
}

/* ar.transfer of a folio's balance (amount < 0: all of it); returns the invoice id. */
static json_int_t ar_transfer(struct client *c, json_int_t folio, const char *account,
                              json_int_t amount, json_int_t expect_amount)
{
    json_t *params =
        json_pack("{s:I, s:s, s:s}", "folio_id", folio, "account", account, "reference", "PO-4711");
    json_t *r;
    json_int_t id;

    if (amount >= 0)
        json_object_set_new(params, "amount", json_integer(amount));
    r = itest_call_ok(c, "ar.transfer", params);
    assert_int_equal(itest_int(r, "invoice.amount"), expect_amount);
    assert_int_equal(itest_int(r, "invoice.open_amount"), expect_amount);
    assert_string_equal(itest_str(json_object_get(r, "invoice"), "account"), account);
    id = itest_int(r, "invoice.id");
    json_decref(r);
    return id;
}

static void test_ar_credit_limit(void **state)
{
    struct client *cashier, *manager;
    json_t *r;
    json_int_t start, f1, f2, f3, closed, due1, due2, inv;
    struct client_rpc_error e;

    (void)state;
    c5_setup();
    cashier = login("c5cashier");
    manager = login("c5manager");
    refuse(cashier, "ar.create",
           json_pack("{s:s, s:s, s:s}", "property", PROP, "code", "C5NOPE", "name", "Nope"),
           "forbidden");
    start = ar_account(manager, "C5LIMIT", "Limited Travel", "agency", 50000);
    if (start != 0)
        skip(); /* an earlier run against the same database used up the limit */

    f1 = open_folio(cashier, "Limit one");
    json_decref(post(cashier, f1, "FOOD", 30000));
    due1 = itest_split_total("FOOD", 30000); /* 349.80 */
    f2 = open_folio(cashier, "Limit two");
    json_decref(post(cashier, f2, "ROOM", 20000));
    due2 = itest_split_total("ROOM", 20000); /* 220.00 */

    ar_transfer(cashier, f1, "C5LIMIT", -1, due1);
    assert_int_equal(folio_balance(cashier, f1), 0);
    assert_int_equal(ar_balance(cashier, "C5LIMIT"), due1);

    /* 349.80 + 220.00 > 500.00: refused, nothing moves */
    r = refused(cashier, "ar.transfer",
                json_pack("{s:I, s:s}", "folio_id", f2, "account", "C5LIMIT"), "credit_limit");
    assert_true(client_response_error(r, &e));
    assert_int_equal(itest_int(e.data, "credit_limit"), 50000);
    assert_int_equal(itest_int(e.data, "balance"), due1);
    assert_int_equal(itest_int(e.data, "amount"), due2);
    json_decref(r);
    assert_int_equal(folio_balance(cashier, f2), due2);
    assert_int_equal(ar_balance(cashier, "C5LIMIT"), due1);

    /* up to the limit exactly is fine, one cent more is not */
    inv = ar_transfer(cashier, f2, "C5LIMIT", 50000 - due1, 50000 - due1);
    assert_true(inv > 0);
    assert_int_equal(folio_balance(cashier, f2), due2 - (50000 - due1));
    assert_int_equal(ar_balance(cashier, "C5LIMIT"), 50000);
    refuse(cashier, "ar.transfer",
           json_pack("{s:I, s:s, s:i}", "folio_id", f2, "account", "C5LIMIT", "amount", 1),
           "credit_limit");

    /* nothing to transfer, more than the balance, a closed folio, an unknown account */
    f3 = open_folio(cashier, "Limit three");
    refuse(cashier, "ar.transfer", json_pack("{s:I, s:s}", "folio_id", f3, "account", "C5LIMIT"),
           "nothing_to_transfer");
    json_decref(itest_call_error(
        cashier, "ar.transfer",
        json_pack("{s:I, s:s, s:I}", "folio_id", f2, "account", "C5LIMIT", "amount", due2 + 1),
        -32602, "invalid_params"));
    closed = open_folio(cashier, "Limit closed");
    json_decref(itest_call_ok(cashier, "folio.close", json_pack("{s:I}", "folio_id", closed)));
    refuse(cashier, "ar.transfer",
           json_pack("{s:I, s:s}", "folio_id", closed, "account", "C5LIMIT"), "folio_closed");
    refuse(cashier, "ar.transfer", json_pack("{s:I, s:s}", "folio_id", f2, "account", "C5NONE"),
           "not_found");

    /* the account's folio moves only through the city-ledger methods */
    r = itest_call_ok(cashier, "ar.get",
                      json_pack("{s:s, s:s}", "property", PROP, "code", "C5LIMIT"));
    {
        json_int_t acc_folio = itest_int(r, "folio_id");

        refuse(cashier, "folio.post",
               json_pack("{s:I, s:s, s:i}", "folio_id", acc_folio, "code", "TIP", "amount", 100),
               "use_ar");
        refuse(cashier, "folio.transfer_balance",
               json_pack("{s:I, s:I}", "from_folio_id", f2, "to_folio_id", acc_folio), "use_ar");
    }
    json_decref(r);
    itest_close(cashier);
    itest_close(manager);
}

static void test_ar_check_out(void **state)
{
    struct client *cashier, *manager, *auditor;
    json_t *st, *r, *inv;
    json_int_t stay, w1, due, before;
    char bd[11], dep[11];

    (void)state;
    c5_setup();
    cashier = login("c5cashier");
    manager = login("c5manager");
    before = ar_account(manager, "C5ACME", "Acme Corporation", "company", -1);

    itest_business_date(cashier, PROP, bd);
    itest_date_add(bd, 1, dep);
    st = itest_call_ok(cashier, "stay.check_in",
                       json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:i}", "property", PROP, "room",
                                 "C5-02", "guest", "first_name", "Cora", "last_name", "Company",
                                 "departure", dep, "rate", 15000));
    stay = itest_int(st, "id");
    w1 = itest_int(st, "folios.0.id");
    json_decref(st);
    json_decref(post(cashier, w1, "ROOM", 15000));
    json_decref(post(cashier, w1, "BEV", 2000));
    due = itest_split_total("ROOM", 15000) + itest_split_total("BEV", 2000);
    assert_int_equal(folio_balance(cashier, w1), due);
    /* with a balance the stay cannot leave */
    refuse(cashier, "stay.check_out", json_pack("{s:I}", "stay_id", stay), "balance_not_zero");

    /* to the company: the folio reaches zero and the stay checks out with no payment */
    r = itest_call_ok(cashier, "ar.transfer",
                      json_pack("{s:I, s:s, s:s}", "folio_id", w1, "account", "C5ACME", "reference",
                                "Conference 42"));
    inv = json_object_get(r, "invoice");
    assert_int_equal(itest_int(inv, "amount"), due);
    assert_int_equal(itest_int(inv, "stay_id"), stay);
    assert_string_equal(itest_str(inv, "room"), "C5-02");
    assert_string_equal(itest_str(inv, "guest"), "Cora Company");
    assert_string_equal(itest_str(inv, "business_date"), bd);
    assert_string_equal(itest_str(inv, "status"), "open");
    assert_int_equal(itest_int(r, "folio.balance"), 0);
    assert_int_equal(itest_int(r, "account.balance"), before + due);
    json_decref(r);
    st = itest_call_ok(cashier, "stay.check_out", json_pack("{s:I}", "stay_id", stay));
    assert_string_equal(itest_str(st, "status"), "checked_out");
    json_decref(st);
    assert_int_equal(ar_balance(cashier, "C5ACME"), before + due);

    /* the guest's statement shows where the balance went */
    r = itest_call_ok(cashier, "folio.get", json_pack("{s:I}", "folio_id", w1));
    {
        json_t *postings = json_object_get(r, "postings");
        json_t *last = json_array_get(postings, json_array_size(postings) - 1);

        assert_string_equal(itest_str(last, "type"), "transfer_out");
        assert_int_equal(itest_int(last, "amount"), -due);
    }
    json_decref(r);

    /* anyone on the staff reads the city ledger */
    auditor = login("c5auditor");
    r = itest_call_ok(auditor, "ar.list", json_pack("{s:s}", "property", PROP));
    assert_non_null(find_by(json_object_get(r, "items"), "code", "C5ACME"));
    json_decref(r);
    refuse(auditor, "ar.transfer", json_pack("{s:I, s:s}", "folio_id", w1, "account", "C5ACME"),
           "forbidden");
    itest_close(auditor);
    itest_close(cashier);
    itest_close(manager);
}

static void test_ar_pay(void **state)
{
    struct client *cashier, *manager, *nos;
    json_t *r, *invoices;
    json_int_t shift, inv[3], f;
    const json_int_t amounts[3] = {10000, 20000, 30000};
    struct client_rpc_error e;
    char name[32];

    (void)state;
    c5_setup();
    cashier = login("c5cashier");
    manager = login("c5manager");
    nos = login("c5nos");
    if (ar_account(manager, "C5PAY", "Paying Tours", "agency", -1) != 0)
        skip(); /* an earlier run against the same database */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "Tour group %d", i + 1);
        f = open_folio(cashier, name);
        json_decref(post(cashier, f, "TIP", amounts[i])); /* no tax: the amount as it is */
        inv[i] = ar_transfer(cashier, f, "C5PAY", -1, amounts[i]);
    }
    assert_int_equal(ar_balance(cashier, "C5PAY"), 60000);

    /* a payment needs a shift like any other */
    refuse(nos, "ar.pay",
           json_pack("{s:s, s:s, s:i, s:s}", "property", PROP, "account", "C5PAY", "amount", 100,
                     "method", "cash"),
           "no_open_shift");
    assert_int_equal(ar_balance(cashier, "C5PAY"), 60000);

    shift = fresh_shift(cashier, 0);
    /* partial, oldest first: 100.00 of the first and 50.00 of the second */
    r = itest_call_ok(cashier, "ar.pay",
                      json_pack("{s:s, s:s, s:i, s:s, s:s}", "property", PROP, "account", "C5PAY",
                                "amount", 15000, "method", "bank_transfer", "reference",
                                "SWIFT 1"));
    assert_int_equal(itest_int(r, "payment.amount"), 15000);
    assert_int_equal(itest_int(r, "payment.shift_id"), shift);
    assert_int_equal(json_array_size(itest_path(r, "payment.allocations")), 2);
    assert_int_equal(itest_int(r, "payment.allocations.0.invoice_id"), inv[0]);
    assert_int_equal(itest_int(r, "payment.allocations.0.amount"), 10000);
    assert_int_equal(itest_int(r, "payment.allocations.1.invoice_id"), inv[1]);
    assert_int_equal(itest_int(r, "payment.allocations.1.amount"), 5000);
    invoices = json_object_get(r, "invoices");
    assert_int_equal(itest_int(invoices, "0.open_amount"), 0);
    assert_string_equal(itest_str(json_array_get(invoices, 0), "status"), "paid");
    assert_int_equal(itest_int(invoices, "1.open_amount"), 15000);
    assert_int_equal(itest_int(r, "account.balance"), 45000);
    json_decref(r);

    /* given allocations: 70.00 of the third invoice, by card */
    r = itest_call_ok(cashier, "ar.pay",
                      json_pack("{s:s, s:s, s:i, s:s, s:[{s:I, s:i}]}", "property", PROP, "account",
                                "C5PAY", "amount", 7000, "method", "card", "allocations",
                                "invoice_id", inv[2], "amount", 7000));
    assert_int_equal(itest_int(r, "invoices.0.open_amount"), 23000);
    json_decref(r);
    assert_int_equal(ar_balance(cashier, "C5PAY"), 38000);

    /* refused: more than owed, more than an invoice has open, allocations that do not add up,
     * a paid invoice, an invoice of another account */
    r = refused(cashier, "ar.pay",
                json_pack("{s:s, s:s, s:i, s:s}", "property", PROP, "account", "C5PAY", "amount",
                          38001, "method", "cash"),
                "overpayment");
    assert_true(client_response_error(r, &e));
    assert_int_equal(itest_int(e.data, "balance"), 38000);
    json_decref(r);
    refuse(cashier, "ar.pay",
           json_pack("{s:s, s:s, s:i, s:s, s:[{s:I, s:i}]}", "property", PROP, "account", "C5PAY",
                     "amount", 16000, "method", "cash", "allocations", "invoice_id", inv[1],
                     "amount", 16000),
           "overpayment");
    refuse(cashier, "ar.pay",
           json_pack("{s:s, s:s, s:i, s:s, s:[{s:I, s:i}]}", "property", PROP, "account", "C5PAY",
                     "amount", 100, "method", "cash", "allocations", "invoice_id", inv[0], "amount",
                     100),
           "overpayment");
    json_decref(itest_call_error(cashier, "ar.pay",
                                 json_pack("{s:s, s:s, s:i, s:s, s:[{s:I, s:i}, {s:I, s:i}]}",
                                           "property", PROP, "account", "C5PAY", "amount", 5000,
                                           "method", "cash", "allocations", "invoice_id", inv[1],
                                           "amount", 1000, "invoice_id", inv[2], "amount", 1000),
                                 -32602, "invalid_params"));
    assert_int_equal(ar_balance(cashier, "C5PAY"), 38000);

    /* the payments are in the cashier's shift, by method; no cash moved */
    r = itest_call_ok(cashier, "cashier.close", json_pack("{s:i}", "declared", 0));
    assert_method(r, "bank_transfer", 15000, 0);
    assert_method(r, "card", 7000, 0);
    assert_int_equal(itest_int(r, "expected_cash"), 0);
    assert_string_equal(itest_str(json_array_get(json_object_get(r, "lines"), 0), "account"),
                        "C5PAY");
    json_decref(r);

    /* the account's history */
    r = itest_call_ok(manager, "ar.get",
                      json_pack("{s:s, s:s}", "property", PROP, "code", "C5PAY"));
    assert_int_equal(json_array_size(json_object_get(r, "payments")), 2);
    assert_int_equal(json_array_size(json_object_get(r, "invoices")), 3);
    assert_int_equal(itest_int(r, "open_invoices"), 2);
    json_decref(r);
    itest_close(cashier);
    itest_close(manager);
    itest_close(nos);
}

/* ---- aging ---- */

/* One invoice of the aging scenario: created on business day `day` (counted from the start),
 * with `paid` of it paid on business day `paid_day` (-1: never). */
struct aging_invoice {
    int day;
    json_int_t amount;
    int paid_day;
    json_int_t paid;
};

static const struct aging_invoice aging_invoices[] = {
    {0, 1000, 75, 500}, /* A: half paid on day 75 */
    {20, 2000, -1, 0},  /* B */
    {45, 4000, -1, 0},  /* C */
    {75, 8000, -1, 0},  /* D */
    {95, 16000, -1, 0}, /* E: the day of the last roll */
};
#define AGING_N (sizeof(aging_invoices) / sizeof(aging_invoices[0]))

/* The buckets as of business day `as_of`, computed here: what was open that day, by age in
 * days (0-30, 31-60, 61-90, over 90). */
static void aging_expected(int as_of, json_int_t b[5])
{
    memset(b, 0, 5 * sizeof(b[0]));
    for (size_t i = 0; i < AGING_N; i++) {
        const struct aging_invoice *v = &aging_invoices[i];
        json_int_t open = v->amount;
        int age = as_of - v->day;

        if (v->day > as_of)
            continue;
        if (v->paid_day >= 0 && v->paid_day <= as_of)
            open -= v->paid;
        b[age <= 30 ? 0 : age <= 60 ? 1 : age <= 90 ? 2 : 3] += open;
        b[4] += open;
    }
}

static void assert_aging(struct client *c, const char *start, int as_of, bool as_of_given)
{
    json_t *params = json_pack("{s:s, s:s}", "property", PROP, "account", "C5AGE");
    json_t *r, *item;
    json_int_t b[5];
    char date[11];

    itest_date_add(start, as_of, date);
    if (as_of_given)
        json_object_set_new(params, "date", json_string(date));
    r = itest_call_ok(c, "ar.aging", params);
    assert_string_equal(itest_str(r, "as_of"), date);
    item = find_by(json_object_get(r, "items"), "account", "C5AGE");
    if (item == NULL)
        fail_msg("no C5AGE in %s", dump(r));
    aging_expected(as_of, b);
    if (itest_int(item, "days_0_30") != b[0] || itest_int(item, "days_31_60") != b[1] ||
        itest_int(item, "days_61_90") != b[2] || itest_int(item, "days_over_90") != b[3] ||
        itest_int(item, "total") != b[4])
        fail_msg("aging as of day %d (%s): expected %lld/%lld/%lld/%lld total %lld, got %s", as_of,
                 date, (long long)b[0], (long long)b[1], (long long)b[2], (long long)b[3],
                 (long long)b[4], dump(item));
    /* one account asked for: the totals are its figures */
    assert_int_equal(itest_int(r, "totals.total"), b[4]);
    assert_int_equal(itest_int(r, "totals.days_over_90"), b[3]);
    json_decref(r);
}

static void test_aging(void **state)
{
    struct client *cashier, *manager;
    char start[11], bd[11];
    int day = 0;

    (void)state;
    c5_setup();
    cashier = login("c5cashier");
    manager = login("c5manager");
    if (ar_account(manager, "C5AGE", "Aging Holidays", "agency", -1) != 0)
        skip(); /* an earlier run against the same database */
    itest_business_date(cashier, PROP, start);
    fresh_shift(cashier, 0);

    for (size_t i = 0; i < AGING_N; i++) {
        const struct aging_invoice *v = &aging_invoices[i];
        char name[32];
        json_int_t f;

        /* roll the business date to the invoice's day, the way the night audit ends */
        while (day < v->day) {
            json_t *r =
                itest_call_ok(manager, "business_date.close", json_pack("{s:s}", "property", PROP));

            day++;
            itest_date_add(start, day, bd);
            assert_string_equal(itest_str(r, "business_date"), bd);
            json_decref(r);
            /* the payment of invoice A, on its day */
            if (day == aging_invoices[0].paid_day)
                json_decref(itest_call_ok(
                    cashier, "ar.pay",
                    json_pack("{s:s, s:s, s:I, s:s}", "property", PROP, "account", "C5AGE",
                              "amount", aging_invoices[0].paid, "method", "bank_transfer")));
        }
        snprintf(name, sizeof(name), "Aging %zu", i + 1);
        f = open_folio(cashier, name);
        json_decref(post(cashier, f, "TIP", v->amount));
        ar_transfer(cashier, f, "C5AGE", -1, v->amount);
    }
    /* the business date is now day 95 */
    {
        char expect[11];

        itest_business_date(cashier, PROP, bd);
        itest_date_add(start, 95, expect);
        assert_string_equal(bd, expect);
    }

    /* as of the business date (day 95), then as of earlier days, around the boundaries */
    assert_aging(cashier, start, 95, false);
    assert_aging(cashier, start, 95, true);
    assert_aging(cashier, start, 90, true);
    assert_aging(cashier, start, 74, true);
    assert_aging(cashier, start, 50, true);
    assert_aging(cashier, start, 31, true);
    assert_aging(cashier, start, 30, true);
    assert_aging(cashier, start, 0, true);
    assert_aging(cashier, start, 200, true); /* a date ahead: everything has aged */
    json_decref(itest_call_ok(cashier, "cashier.close", json_pack("{s:i}", "declared", 0)));
    itest_close(cashier);
    itest_close(manager);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_shift_totals),    ITEST(test_no_open_shift), ITEST(test_report_access),
        ITEST(test_ar_credit_limit), ITEST(test_ar_check_out),  ITEST(test_ar_pay),
        ITEST(test_aging), /* rolls C5's business date: last */
    };

    return cmocka_run_group_tests(tests, itest_group_setup, NULL);
}
