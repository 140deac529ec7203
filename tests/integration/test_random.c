/*
 * test_random.c - randomized test of guest accounting: thousands of random front-desk
 * operations through the protocol over several connections, each answer compared with what a
 * model of the hotel (rooms, stays, windows, folios, postings, routing rules) predicts, then the
 * books checked directly in PostgreSQL.
 *
 * Operations: check-in, post (random codes, amounts, quantities; allowances by the manager;
 * late charges), pay and refund, void, adjust (after closing a business date of its own
 * property), transfer of postings, transfer of balances, routing set and clear, room moves,
 * extra windows, checkout attempts with and without payments, non-guest and employee folios
 * opened and closed, and bursts of concurrent postings on all connections. A refusal is
 * accepted when the model predicted that reason; any other outcome is a mismatch. The model
 * keeps every folio's expected balance from the answers and the independently computed taxes.
 *
 * At the end, against the database (FOLIOD_TEST_PG_CONNINFO): every folio's balance equals the
 * sum of its postings; the sum of all postings equals the sum of all balances; every posting
 * the answers named exists unchanged and nothing else was posted; UPDATE and DELETE on
 * postings are refused and the statistics show none; every void reverses a posting of the
 * same folio exactly and no posting is voided twice; every transfer's out and in sides sum to
 * zero, one folio each, the ones the answers named. And through the protocol: every folio's
 * balance equals the model's, room statuses follow the stays.
 *
 * It runs on a property of its own, R3 (rooms R-001..R-030, the demo's codes, users r3cashier
 * and r3manager), so that it cannot disturb the other tests. The seed is printed at the start;
 * FOLIOD_TEST_SEED repeats a run, FOLIOD_TEST_OPS changes the number of operations (default
 * 4000).
 */
#include "itest.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NROOMS 30
#define NOOO 2  /* the last rooms are out of order */
#define NCONN 4 /* 3 cashier connections and 1 manager connection (the last) */
#define MAX_MISMATCHES 40

/* ---- the model ---- */

/* posting types as the model groups them (tax stands for tax and service lines) */
enum ptype { PT_CHARGE, PT_TAX, PT_PAYMENT, PT_VOID, PT_ADJ, PT_XFER, PT_MAX };

struct mpost {
    json_int_t id, folio; /* folio id it sits on */
    int64_t amount;
    enum ptype type;
    char db_type[16]; /* as the answer named it */
    int root;         /* index of the charge a generated line belongs to; itself for roots */
    int day;
    /* roots (charges and payments) */
    const char *code;
    int64_t gross; /* amount x quantity as asked (charges) */
    int64_t group_total;
    bool voided, transferred, fully_adjusted;
    int64_t adjusted;
};

struct mfolio {
    json_int_t id;
    int64_t balance;
    bool open;
    int stay; /* -1 for non-guest and employee folios */
    int window;
};

struct mstay {
    json_int_t id;
    int room;
    bool in_house;
    int win[9]; /* folio index by window, -1 */
    int nwin;
    int64_t credit_limit; /* -1: none */
};

struct mrule {
    json_int_t id;
    int stay;
    bool by_code;
    const char *key;
    int target; /* folio index */
    bool active;
};

struct mroom {
    char number[16];
    int stay; /* -1: vacant */
    bool ooo, used;
};

struct mxfer {
    json_int_t id, from, to;
    int64_t amount;
};

#define VEC(T)                                                                                     \
    struct {                                                                                       \
        T *v;                                                                                      \
        size_t n, cap;                                                                             \
    }
#define VEC_PUSH(vec, x)                                                                           \
    do {                                                                                           \
        if ((vec).n == (vec).cap) {                                                                \
            (vec).cap = (vec).cap ? (vec).cap * 2 : 64;                                            \
            (vec).v = realloc((vec).v, (vec).cap * sizeof(*(vec).v));                              \
            assert_non_null((vec).v);                                                              \
        }                                                                                          \
        (vec).v[(vec).n++] = (x);                                                                  \
    } while (0)

static struct {
    uint64_t rng;
    struct client *c[NCONN];
    struct mroom rooms[NROOMS];
    VEC(struct mstay) stays;
    VEC(struct mfolio) folios;
    VEC(struct mpost) posts;
    VEC(struct mrule) rules;
    VEC(struct mxfer) xfers;
    int day;
    size_t day_start[8]; /* index of the first posting of each business date */
    char bd[11];
    long checkout_payments; /* payments posted by successful checkouts (ids not in answers) */
    long unseen_adjust_lines;
    /* statistics */
    long calls; /* operations sent */
    long op_tried[32], op_ok[32];
    struct {
        char reason[40];
        long n;
    } refusals[64];
    size_t nrefusals;
    char mismatches[MAX_MISMATCHES][600];
    size_t nmismatch;
    long total_mismatch;
} M;

enum op {
    OP_CHECK_IN,
    OP_POST,
    OP_ALLOWANCE,
    OP_LATE_CHARGE,
    OP_PAY,
    OP_VOID,
    OP_ADJUST,
    OP_TRANSFER,
    OP_TRANSFER_BALANCE,
    OP_ROUTING_SET,
    OP_ROUTING_CLEAR,
    OP_MOVE,
    OP_WINDOW,
    OP_CHECK_OUT,
    OP_NON_GUEST,
    OP_CLOSE,
    OP_GET,
    OP_BURST,
    OP_DATE_CLOSE,
    OP_MAX
};
static const char *const op_names[OP_MAX] = {
    "stay.check_in",     "folio.post",       "allowance (manager)",  "late charge (manager)",
    "folio.pay",         "folio.void",       "folio.adjust",         "folio.transfer",
    "transfer_balance",  "routing.set",      "routing.clear",        "stay.move",
    "folio.open window", "stay.check_out",   "folio.open non-guest", "folio.close",
    "folio.get",         "burst of 4 posts", "business_date.close",
};

static const char *const charge_codes[] = {"ROOM", "FOOD", "BEV", "MINIBAR", "SPA", "TIP", "MISC"};
static const char *const departments[] = {"rooms", "food", "beverage", "minibar",
                                          "spa",   "tips", "misc"};
static const char *const pay_methods[] = {"cash", "card", "deposit", "bank_transfer"};

/* ---- helpers ---- */

static uint64_t rnd(void)
{
    /* splitmix64: the same sequence on every platform */
    uint64_t z = (M.rng += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rnd_int(int n)
{
    return n > 0 ? (int)(rnd() % (uint64_t)n) : 0;
}

static int64_t rnd_range(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static bool chance(int percent)
{
    return rnd_int(100) < percent;
}

static char *dump(const json_t *v)
{
    static char buf[2][1200];
    static int k;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    k ^= 1;
    snprintf(buf[k], sizeof(buf[k]), "%s", text != NULL ? text : "?");
    free(text);
    return buf[k];
}

static bool names_warning(const json_t *w, const char *name)
{
    const json_t *k[3] = {w, json_object_get(w, "code"), json_object_get(w, "reason")};

    for (int i = 0; i < 3; i++)
        if (json_is_string(k[i]) && strcmp(json_string_value(k[i]), name) == 0)
            return true;
    return false;
}

static void mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mismatch(const char *fmt, ...)
{
    va_list ap;

    M.total_mismatch++;
    if (M.nmismatch < MAX_MISMATCHES) {
        va_start(ap, fmt);
        vsnprintf(M.mismatches[M.nmismatch++], sizeof(M.mismatches[0]), fmt, ap);
        va_end(ap);
    }
}

static void count_refusal(const char *reason)
{
    for (size_t i = 0; i < M.nrefusals; i++)
        if (strcmp(M.refusals[i].reason, reason) == 0) {
            M.refusals[i].n++;
            return;
        }
    if (M.nrefusals < sizeof(M.refusals) / sizeof(M.refusals[0])) {
        snprintf(M.refusals[M.nrefusals].reason, sizeof(M.refusals[0].reason), "%s", reason);
        M.refusals[M.nrefusals++].n = 1;
    }
}

/* A set of acceptable outcomes: "" is success, anything else a refusal reason. */
struct expect {
    const char *r[6];
    size_t n;
};

static void expect_add(struct expect *e, const char *reason)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->r[i], reason) == 0)
            return;
    if (e->n < 6)
        e->r[e->n++] = reason;
}

static bool expect_has(const struct expect *e, const char *reason)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->r[i], reason) == 0)
            return true;
    return false;
}

static const char *expect_str(const struct expect *e)
{
    static char buf[200];
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < e->n; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s", i ? "|" : "",
                                e->r[i][0] ? e->r[i] : "ok");
    return buf;
}

/* Call, judge the outcome against e (empty e = success expected), count it. Returns the
 * response (new reference); *ok says whether it is a result. A non-domain error (invalid
 * params, internal) fails the test at once: it is a bug here or there, not a refusal. */
static json_t *call(int op, struct client *c, const char *method, json_t *params, struct expect *e,
                    bool *ok)
{
    char *ptext = json_dumps(params, JSON_COMPACT);
    json_t *resp = itest_call_raw(c, method, params);
    const char *reason = itest_reason(resp);
    struct client_rpc_error err;

    if (e->n == 0)
        expect_add(e, "");
    M.op_tried[op]++;
    M.calls++;
    if (reason != NULL) {
        assert_true(client_response_error(resp, &err));
        if (err.code != -32000)
            fail_msg("%s %s: unexpected error %s (expected %s)", method, ptext, dump(resp),
                     expect_str(e));
        count_refusal(reason);
    } else {
        M.op_ok[op]++;
    }
    if (!expect_has(e, reason != NULL ? reason : ""))
        mismatch("%s %s: expected %s, got %s", method, ptext, expect_str(e),
                 reason != NULL ? dump(resp) : "a result");
    free(ptext);
    *ok = reason == NULL;
    return resp;
}

static struct client *any_conn(void)
{
    return M.c[rnd_int(NCONN)];
}

static struct client *cashier_conn(void)
{
    return M.c[rnd_int(NCONN - 1)];
}

static struct client *manager_conn(void)
{
    return M.c[NCONN - 1];
}

static int folio_index(json_int_t id)
{
    for (size_t i = M.folios.n; i-- > 0;)
        if (M.folios.v[i].id == id)
            return (int)i;
    return -1;
}

static int add_folio(json_int_t id, int stay, int window)
{
    struct mfolio f = {.id = id, .balance = 0, .open = true, .stay = stay, .window = window};

    VEC_PUSH(M.folios, f);
    return (int)M.folios.n - 1;
}

static int64_t stay_total(int s)
{
    int64_t t = 0;

    for (int w = 1; w <= 8; w++)
        if (M.stays.v[s].win[w] >= 0)
            t += M.folios.v[M.stays.v[s].win[w]].balance;
    return t;
}

/* Re-read a folio's balance from the server (after an outcome the model could not price). */
static void resync(int f)
{
    json_t *r =
        itest_call_ok(M.c[0], "folio.get", json_pack("{s:I}", "folio_id", M.folios.v[f].id));

    M.folios.v[f].balance = itest_int(r, "balance");
    M.folios.v[f].open = strcmp(itest_str(r, "status"), "closed") != 0;
    json_decref(r);
}

static enum ptype ptype_of(const char *t)
{
    if (strcmp(t, "charge") == 0)
        return PT_CHARGE;
    if (strcmp(t, "tax") == 0 || strcmp(t, "service") == 0)
        return PT_TAX;
    if (strcmp(t, "payment") == 0)
        return PT_PAYMENT;
    if (strcmp(t, "void") == 0)
        return PT_VOID;
    if (strcmp(t, "adjustment") == 0)
        return PT_ADJ;
    return PT_XFER;
}

/* Record a posting named by an answer; returns its index. */
static int record_posting(const json_t *p, int root)
{
    struct mpost mp;

    memset(&mp, 0, sizeof(mp));
    mp.id = itest_int(p, "id");
    mp.folio = itest_int(p, "folio_id");
    mp.amount = itest_int(p, "amount");
    snprintf(mp.db_type, sizeof(mp.db_type), "%s", itest_str(p, "type"));
    mp.type = ptype_of(mp.db_type);
    mp.root = root;
    mp.day = M.day;
    VEC_PUSH(M.posts, mp);
    if (root < 0)
        M.posts.v[M.posts.n - 1].root = (int)M.posts.n - 1;
    return (int)M.posts.n - 1;
}

/* The folio a charge addressed to folio f should land on (routing), and an alternative that
 * the contract also allows (-1 if none). */
static void route_of(int f, const char *code, int *target, int *alt)
{
    int s = M.folios.v[f].stay;
    const char *dept = itest_code_department(code);
    int by_code = -1, by_dept = -1;

    *target = f;
    *alt = -1;
    if (s < 0)
        return;
    for (size_t i = 0; i < M.rules.n; i++) {
        struct mrule *r = &M.rules.v[i];

        if (!r->active || r->stay != s)
            continue;
        if (r->by_code && strcmp(r->key, code) == 0)
            by_code = r->target;
        else if (!r->by_code && strcmp(r->key, dept) == 0)
            by_dept = r->target;
    }
    if (by_code < 0)
        by_code = by_dept;
    if (by_code < 0)
        return;
    if (M.folios.v[f].window == 1 && M.stays.v[s].in_house) {
        *target = by_code;
    } else if (!M.stays.v[s].in_house) {
        /* a late charge to a stay that left: whether its rules still apply is open */
        *target = by_code;
        *alt = f;
    } else {
        /* whether a rule also catches charges addressed to windows other than 1 is open */
        *alt = by_code;
    }
}

/* A closed window of a stay that has checked out: a manager's late charge reopens it. The
 * contract says so for folio.post only; for a payment or a void on such a window it is silent
 * (the implementation treats them as late postings too), so both outcomes are accepted. */
static bool late_window(int f)
{
    int s = M.folios.v[f].stay;

    return s >= 0 && !M.stays.v[s].in_house && !M.folios.v[f].open;
}

/* ---- operations ---- */

static int random_in_house_stay(void)
{
    int tries = 20;

    while (M.stays.n > 0 && tries-- > 0) {
        int s = rnd_int((int)M.stays.n);

        if (M.stays.v[s].in_house)
            return s;
    }
    for (size_t s = 0; s < M.stays.n; s++)
        if (M.stays.v[s].in_house)
            return (int)s;
    return -1;
}

/* A random folio; open_only picks among open folios. */
static int random_folio(bool open_only)
{
    int tries = 30;

    while (M.folios.n > 0 && tries-- > 0) {
        /* favour recent folios: they are the busy ones */
        int f = chance(70) ? (int)M.folios.n - 1 - rnd_int((int)(M.folios.n < 60 ? M.folios.n : 60))
                           : rnd_int((int)M.folios.n);

        if (!open_only || M.folios.v[f].open)
            return f;
    }
    for (size_t f = M.folios.n; f-- > 0;)
        if (!open_only || M.folios.v[f].open)
            return (int)f;
    return -1;
}

static void op_check_in(void)
{
    int room = rnd_int(NROOMS);
    struct mroom *rm = &M.rooms[room];
    char dep[11];
    struct expect e = {0};
    json_t *params, *r;
    bool ok;
    int64_t limit = chance(30) ? rnd_range(0, 40000) : -1;

    itest_date_add(M.bd, 10, dep);
    params = json_pack("{s:s, s:{s:s, s:s}, s:s, s:i}", "room", rm->number, "guest", "first_name",
                       "Random", "last_name", "Guest", "departure", dep, "adults", 1 + rnd_int(3));
    if (limit >= 0)
        json_object_set_new(params, "credit_limit", json_integer(limit));
    if (rm->stay >= 0)
        expect_add(&e, "room_not_vacant");
    if (rm->ooo)
        expect_add(&e, "room_out_of_order");
    r = call(OP_CHECK_IN, any_conn(), "stay.check_in", params, &e, &ok);
    if (ok) {
        struct mstay st;

        memset(&st, 0, sizeof(st));
        st.id = itest_int(json_object_get(r, "result"), "id");
        st.room = room;
        st.in_house = true;
        st.credit_limit = limit;
        for (int w = 0; w <= 8; w++)
            st.win[w] = -1;
        st.nwin = 1;
        VEC_PUSH(M.stays, st);
        M.stays.v[M.stays.n - 1].win[1] = add_folio(
            itest_int(json_object_get(r, "result"), "folios.0.id"), (int)M.stays.n - 1, 1);
        rm->stay = (int)M.stays.n - 1;
        rm->used = true;
    }
    json_decref(r);
}

/* Record a folio.post answer's lines against the model; returns false if it could not. */
static void apply_post(const json_t *res, const char *code, int64_t gross, int target, int alt,
                       int addressed, const char *what)
{
    json_int_t fid = itest_int(res, "folio.id");
    int f = folio_index(fid), root;
    int64_t expect_total = itest_split_total(code, gross);
    json_t *p;
    size_t i;

    if (f < 0 || (f != target && f != alt)) {
        mismatch("%s %s %" PRId64 " addressed to folio %" JSON_INTEGER_FORMAT
                 ": landed on folio %" JSON_INTEGER_FORMAT ", expected %" JSON_INTEGER_FORMAT "%s",
                 what, code, gross, M.folios.v[addressed].id, fid, M.folios.v[target].id,
                 alt >= 0 ? " (or the routing target)" : "");
        if (f < 0)
            return;
    }
    if (itest_int(res, "total") != expect_total)
        mismatch("%s %s %" PRId64 ": total %" JSON_INTEGER_FORMAT ", computed %" PRId64, what, code,
                 gross, itest_int(res, "total"), expect_total);
    M.folios.v[f].balance += itest_int(res, "total");
    M.folios.v[f].open = true; /* a late charge reopens the window */
    root = record_posting(json_object_get(res, "posting"), -1);
    M.posts.v[root].code = code;
    M.posts.v[root].gross = gross;
    M.posts.v[root].group_total = itest_int(res, "total");
    json_array_foreach (json_object_get(res, "postings"), i, p) {
        int k;

        if (itest_int(p, "id") == M.posts.v[root].id)
            continue;
        k = record_posting(p, root);
        if (M.posts.v[k].folio != fid)
            mismatch("%s %s: generated line %s not on the charge's folio", what, code, dump(p));
    }
}

static void op_post(int op)
{
    int f = random_folio(op == OP_POST ? !chance(3) : true), target, alt;
    const char *code = charge_codes[rnd_int(7)];
    int64_t amount = chance(15) ? rnd_range(1, 30) : rnd_range(1, 30000);
    int qty = chance(80) ? 1 : 1 + rnd_int(5);
    struct client *c = op == OP_POST ? any_conn() : manager_conn();
    struct expect e = {0};
    json_t *params, *r;
    bool ok, late = false;
    int s;

    if (op == OP_LATE_CHARGE) {
        /* a closed window of a checked-out stay */
        f = -1;
        for (int tries = 0; tries < 30 && f < 0; tries++) {
            int x = rnd_int((int)M.folios.n);
            int st = M.folios.v[x].stay;

            if (st >= 0 && !M.stays.v[st].in_house && !M.folios.v[x].open)
                f = x;
        }
        if (f < 0)
            return;
        late = true;
        code = "TIP"; /* no rule of the random routing names TIP's department twice */
    }
    if (f < 0)
        return;
    if (op == OP_ALLOWANCE)
        amount = -amount;
    s = M.folios.v[f].stay;
    route_of(f, code, &target, &alt);
    if (late && (target != f || alt >= 0))
        return; /* a routed late charge is not something the contract describes */
    if (!M.folios.v[f].open && !late) {
        /* closed: refused (a manager's late charge to a checked-out stay excepted) */
        if (c == manager_conn() && s >= 0 && !M.stays.v[s].in_house)
            c = cashier_conn();
        expect_add(&e, "folio_closed");
    } else if (target != f && !M.folios.v[target].open) {
        /* only for stays that left (rules to closed folios are cleared first): refused, or
         * posted where it was addressed */
        expect_add(&e, "folio_closed");
        expect_add(&e, "");
        target = f;
        alt = -1;
    }
    if (s >= 0 && chance(40))
        params = json_pack("{s:I, s:i, s:s, s:I, s:i}", "stay_id", M.stays.v[s].id, "window",
                           M.folios.v[f].window, "code", code, "amount", (json_int_t)amount,
                           "quantity", qty);
    else
        params = json_pack("{s:I, s:s, s:I, s:i}", "folio_id", M.folios.v[f].id, "code", code,
                           "amount", (json_int_t)amount, "quantity", qty);
    if (chance(20))
        json_object_set_new(params, "reference", json_string("CHK-R"));
    r = call(op, c, "folio.post", params, &e, &ok);
    if (ok) {
        json_t *res = json_object_get(r, "result");
        int landed;

        apply_post(res, code, amount * qty, target, alt, f, op_names[op]);
        landed = folio_index(itest_int(res, "folio.id"));
        if (landed >= 0 && itest_int(res, "folio.balance") != M.folios.v[landed].balance)
            mismatch("folio.post: folio %" JSON_INTEGER_FORMAT " balance %" JSON_INTEGER_FORMAT
                     ", model %" PRId64,
                     M.folios.v[landed].id, itest_int(res, "folio.balance"),
                     M.folios.v[landed].balance);
        /* the credit-limit prompt: a posting that lands on an in-house stay with a limit
         * whose total is then over it (a charge routed away from the stay does not take its
         * balance anywhere, so it carries no prompt) */
        s = landed >= 0 ? M.folios.v[landed].stay : -1;
        if (s >= 0 && M.stays.v[s].in_house && M.stays.v[s].credit_limit >= 0) {
            bool over = stay_total(s) > M.stays.v[s].credit_limit, warned = false;
            json_t *w;
            size_t i;

            json_array_foreach (json_object_get(res, "warnings"), i, w)
                warned = warned || names_warning(w, "deposit_required");
            if (over != warned)
                mismatch("folio.post to stay %" JSON_INTEGER_FORMAT " (credit limit %" PRId64
                         ", stay balance now %" PRId64
                         "): deposit_required %s, expected %s; warnings %s",
                         M.stays.v[s].id, M.stays.v[s].credit_limit, stay_total(s),
                         warned ? "given" : "missing", over ? "given" : "none",
                         dump(json_object_get(res, "warnings")));
        }
    }
    json_decref(r);
}

static void op_pay(void)
{
    struct client *c;
    int f = random_folio(!chance(3));
    struct expect e = {0};
    int64_t bal, amount;
    json_t *params, *r;
    bool ok;

    if (f < 0)
        return;
    bal = M.folios.v[f].balance;
    if (bal > 0 && chance(50))
        amount = bal;
    else if (bal > 1 && chance(60))
        amount = rnd_range(1, bal);
    else if (chance(20))
        amount = -rnd_range(1, 2000); /* a refund */
    else
        amount = rnd_range(1, 20000);
    c = any_conn();
    if (!M.folios.v[f].open)
        expect_add(&e, "folio_closed");
    if (late_window(f) && c == manager_conn())
        expect_add(&e, "");
    params = chance(70) ? json_pack("{s:I, s:s, s:I}", "folio_id", M.folios.v[f].id, "method",
                                    pay_methods[rnd_int(4)], "amount", (json_int_t)amount)
                        : json_pack("{s:I, s:s, s:I, s:s}", "folio_id", M.folios.v[f].id, "code",
                                    "CARD", "amount", (json_int_t)amount, "reference", "AUTH");
    r = call(OP_PAY, c, "folio.pay", params, &e, &ok);
    if (ok) {
        json_t *res = json_object_get(r, "result");
        int k = record_posting(json_object_get(res, "posting"), -1);

        M.folios.v[f].open = true;

        if (M.posts.v[k].amount != -amount)
            mismatch("folio.pay %" PRId64 ": posting amount %" PRId64, amount, M.posts.v[k].amount);
        M.posts.v[k].group_total = M.posts.v[k].amount;
        M.folios.v[f].balance += M.posts.v[k].amount;
        if (itest_int(res, "folio.balance") != M.folios.v[f].balance)
            mismatch("folio.pay: balance %" JSON_INTEGER_FORMAT ", model %" PRId64,
                     itest_int(res, "folio.balance"), M.folios.v[f].balance);
    }
    json_decref(r);
}

static bool is_root(const struct mpost *p)
{
    return (p->type == PT_CHARGE || p->type == PT_PAYMENT) && p->root == (int)(p - M.posts.v);
}

static int random_posting(bool root_only, bool today_only)
{
    for (int tries = 0; tries < 40 && M.posts.n > 0; tries++) {
        int k = chance(70) ? (int)M.posts.n - 1 - rnd_int((int)(M.posts.n < 200 ? M.posts.n : 200))
                           : rnd_int((int)M.posts.n);
        struct mpost *p = &M.posts.v[k];

        if (root_only && (!is_root(p) || p->voided || p->transferred))
            continue;
        if (today_only && p->day != M.day)
            continue;
        return k;
    }
    return -1;
}

static void op_void(void)
{
    struct client *c;
    int k = chance(80) ? random_posting(true, true) : random_posting(false, false);
    struct mpost *p;
    struct expect e = {0};
    json_t *r, *v;
    int f;
    bool ok;
    size_t i;

    if (k < 0)
        return;
    p = &M.posts.v[k];
    f = folio_index(p->folio);
    if (!is_root(p))
        expect_add(&e, "not_voidable");
    if (p->voided)
        expect_add(&e, "already_voided");
    if (p->transferred)
        expect_add(&e, "posting_transferred");
    if (p->day != M.day)
        expect_add(&e, "business_date_closed");
    c = any_conn();
    if (f >= 0 && !M.folios.v[f].open) {
        expect_add(&e, "folio_closed");
        if (late_window(f) && c == manager_conn() && e.n == 1)
            expect_add(&e, "");
    }
    if (is_root(p) && p->fully_adjusted)
        expect_add(&e, "already_voided");
    r = call(OP_VOID, c, "folio.void",
             json_pack("{s:I, s:s}", "posting_id", p->id, "reason", "random"), &e, &ok);
    if (ok) {
        json_t *res = json_object_get(r, "result");
        int64_t sum = 0;
        bool expected = is_root(p) && !p->voided && !p->transferred;

        json_array_foreach (json_object_get(res, "voids"), i, v) {
            record_posting(v, k);
            sum += itest_int(v, "amount");
        }
        p = &M.posts.v[k]; /* the vector may have moved */
        if (f >= 0)
            M.folios.v[f].open = true; /* a manager's void reopens a checked-out window */
        if (!expected) {
            /* a mismatch already reported: follow the server */
            if (f >= 0)
                resync(f);
        } else {
            if (sum != -p->group_total)
                mismatch("folio.void %" JSON_INTEGER_FORMAT ": voids sum to %" PRId64
                         ", the posting's group to %" PRId64,
                         p->id, sum, p->group_total);
            M.folios.v[f].balance -= p->group_total;
            if (itest_int(res, "folio.balance") != M.folios.v[f].balance)
                mismatch("folio.void: balance %" JSON_INTEGER_FORMAT ", model %" PRId64,
                         itest_int(res, "folio.balance"), M.folios.v[f].balance);
        }
        p->voided = true;
    }
    json_decref(r);
}

static void op_adjust(void)
{
    int k = -1, f = -1;
    struct mpost *p;
    struct expect e = {0};
    json_t *params, *r;
    bool ok, full;
    int64_t amount = 0, left;

    for (int tries = 0; tries < 40 && k < 0; tries++) {
        /* mostly a posting of a closed date; now and then one of today (use_void) */
        int x = M.day > 0 && chance(90) ? rnd_int((int)M.day_start[M.day])
                                        : random_posting(true, false);

        if (x >= 0 && is_root(&M.posts.v[x]) && !M.posts.v[x].voided && !M.posts.v[x].transferred &&
            M.posts.v[x].type == PT_CHARGE && M.posts.v[x].gross > 0 &&
            !M.posts.v[x].fully_adjusted && (M.posts.v[x].day < M.day || chance(10))) {
            f = folio_index(M.posts.v[x].folio);
            if (f >= 0 && M.folios.v[f].open)
                k = x;
        }
    }
    if (k < 0)
        return;
    p = &M.posts.v[k];
    f = folio_index(p->folio);
    left = p->gross - p->adjusted;
    /* partial adjustments of tax-inclusive codes are left out: whether "what is left" is the
     * gross or the net is open */
    full = p->adjusted == 0 && (chance(40) || strcmp(p->code, "SPA") == 0);
    if (!full && strcmp(p->code, "SPA") == 0)
        return;
    if (!full)
        amount = chance(15) ? left + rnd_range(1, 500) : rnd_range(1, left);
    if (p->day == M.day)
        expect_add(&e, "use_void");
    else if (!full && amount > left)
        expect_add(&e, "exceeds_original");
    params = full ? json_pack("{s:I, s:s}", "posting_id", p->id, "reason", "random full")
                  : json_pack("{s:I, s:I, s:s}", "posting_id", p->id, "amount", (json_int_t)amount,
                              "reason", "random partial");
    r = call(OP_ADJUST, manager_conn(), "folio.adjust", params, &e, &ok);
    p = &M.posts.v[k];
    if (ok) {
        json_t *res = json_object_get(r, "result"), *lines = json_object_get(res, "postings"), *x;
        int64_t change = full ? -p->group_total : itest_split_total(p->code, -amount), sum = 0;
        size_t i;

        if (json_is_array(lines)) {
            json_array_foreach (lines, i, x) {
                record_posting(x, k);
                sum += itest_int(x, "amount");
            }
            p = &M.posts.v[k]; /* the vector may have moved */
            if (sum != change)
                mismatch("folio.adjust %s: lines sum to %" PRId64 ", expected %" PRId64,
                         dump(params), sum, change);
        } else {
            M.unseen_adjust_lines++;
        }
        M.folios.v[f].balance += change;
        if (full)
            p->fully_adjusted = true;
        else
            p->adjusted += amount;
        if (json_is_integer(itest_path(res, "folio.balance")) &&
            itest_int(res, "folio.balance") != M.folios.v[f].balance)
            mismatch("folio.adjust: balance %" JSON_INTEGER_FORMAT ", model %" PRId64,
                     itest_int(res, "folio.balance"), M.folios.v[f].balance);
    }
    json_decref(r);
}

/* A target folio for a transfer or a routing rule: another window of the stay, another
 * stay's window or a non-guest folio. */
static int random_target(int from)
{
    int s = M.folios.v[from].stay;

    if (s >= 0 && chance(40)) {
        int w = 1 + rnd_int(8);

        if (M.stays.v[s].win[w] >= 0)
            return M.stays.v[s].win[w];
    }
    return random_folio(!chance(5));
}

static void op_transfer(void)
{
    int k = chance(85) ? random_posting(true, false) : random_posting(false, false), k2 = -1;
    int from, to, s;
    struct mpost *p;
    struct expect e = {0};
    json_t *ids, *params, *r;
    bool ok, by_window = false;
    int64_t amount;

    if (k < 0)
        return;
    p = &M.posts.v[k];
    from = folio_index(p->folio);
    if (from < 0)
        return;
    to = random_target(from);
    if (to < 0)
        return;
    s = M.folios.v[from].stay;
    /* sometimes a second posting of the same folio */
    if (chance(25)) {
        for (int tries = 0; tries < 20 && k2 < 0; tries++) {
            int x = random_posting(true, false);

            if (x >= 0 && x != k && M.posts.v[x].folio == p->folio)
                k2 = x;
        }
    }
    for (int i = 0; i < 2; i++) {
        struct mpost *q = i == 0 ? p : (k2 >= 0 ? &M.posts.v[k2] : NULL);

        if (q == NULL)
            continue;
        if (q->type != PT_CHARGE && q->type != PT_PAYMENT)
            expect_add(&e, "not_transferable");
        else if (!is_root(q))
            expect_add(&e, "not_transferable");
        if (q->voided)
            expect_add(&e, "not_transferable");
        if (q->transferred)
            expect_add(&e, "already_transferred");
        if (is_root(q) && (q->fully_adjusted || q->adjusted > 0))
            expect_add(&e, "not_transferable"); /* open: an adjusted charge */
    }
    if (to == from)
        expect_add(&e, "same_folio");
    if (!M.folios.v[from].open || !M.folios.v[to].open)
        expect_add(&e, "folio_closed");
    ids = json_pack("[I]", p->id);
    if (k2 >= 0)
        json_array_append_new(ids, json_integer(M.posts.v[k2].id));
    if (s >= 0 && M.folios.v[to].stay == s && chance(60)) {
        by_window = true;
        params = json_pack("{s:o, s:i, s:s}", "posting_ids", ids, "to_window",
                           M.folios.v[to].window, "reason", "random");
    } else {
        params = json_pack("{s:o, s:I, s:s}", "posting_ids", ids, "to_folio_id", M.folios.v[to].id,
                           "reason", "random");
    }
    (void)by_window;
    /* a transfer of an adjusted charge is not named by the contract: accept either */
    if (expect_has(&e, "not_transferable") && is_root(p) && !p->voided &&
        (p->fully_adjusted || p->adjusted > 0) && e.n == 1)
        expect_add(&e, "");
    r = call(OP_TRANSFER, any_conn(), "folio.transfer", params, &e, &ok);
    p = &M.posts.v[k];
    if (ok) {
        json_t *res = json_object_get(r, "result");
        struct mxfer x = {.id = itest_int(res, "transfer_id"),
                          .from = M.folios.v[from].id,
                          .to = M.folios.v[to].id,
                          .amount = itest_int(res, "amount")};

        amount = p->group_total + (k2 >= 0 ? M.posts.v[k2].group_total : 0);
        if (p->fully_adjusted || p->adjusted > 0 ||
            (k2 >= 0 && (M.posts.v[k2].fully_adjusted || M.posts.v[k2].adjusted > 0))) {
            resync(from);
            resync(to);
        } else {
            if (x.amount != amount)
                mismatch("folio.transfer %s: amount %" PRId64 ", expected %" PRId64, dump(params),
                         x.amount, amount);
            M.folios.v[from].balance -= amount;
            M.folios.v[to].balance += amount;
            if (itest_int(res, "from.balance") != M.folios.v[from].balance ||
                itest_int(res, "to.balance") != M.folios.v[to].balance)
                mismatch("folio.transfer: balances %s, model from %" PRId64 " to %" PRId64,
                         dump(res), M.folios.v[from].balance, M.folios.v[to].balance);
        }
        p->transferred = true;
        if (k2 >= 0)
            M.posts.v[k2].transferred = true;
        VEC_PUSH(M.xfers, x);
    }
    json_decref(r);
}

static void op_transfer_balance(void)
{
    int from = -1, to;
    struct expect e = {0};
    json_t *params, *r;
    bool ok, whole = chance(40);
    int64_t amount;

    for (int tries = 0; tries < 30 && from < 0; tries++) {
        int f = random_folio(!chance(5));

        if (f >= 0 && M.folios.v[f].balance > 0)
            from = f;
    }
    if (from < 0)
        return;
    to = random_target(from);
    if (to < 0)
        return;
    amount = whole ? M.folios.v[from].balance : rnd_range(1, M.folios.v[from].balance);
    if (to == from)
        expect_add(&e, "same_folio");
    if (!M.folios.v[from].open || !M.folios.v[to].open)
        expect_add(&e, "folio_closed");
    params = whole ? json_pack("{s:I, s:I}", "from_folio_id", M.folios.v[from].id, "to_folio_id",
                               M.folios.v[to].id)
                   : json_pack("{s:I, s:I, s:I}", "from_folio_id", M.folios.v[from].id,
                               "to_folio_id", M.folios.v[to].id, "amount", (json_int_t)amount);
    r = call(OP_TRANSFER_BALANCE, any_conn(), "folio.transfer_balance", params, &e, &ok);
    if (ok) {
        json_t *res = json_object_get(r, "result");
        struct mxfer x = {.id = itest_int(res, "transfer_id"),
                          .from = M.folios.v[from].id,
                          .to = M.folios.v[to].id,
                          .amount = itest_int(res, "amount")};

        if (x.amount != amount)
            mismatch("folio.transfer_balance %s: amount %" PRId64 ", expected %" PRId64,
                     dump(params), x.amount, amount);
        M.folios.v[from].balance -= x.amount;
        M.folios.v[to].balance += x.amount;
        if (itest_int(res, "from.balance") != M.folios.v[from].balance ||
            itest_int(res, "to.balance") != M.folios.v[to].balance)
            mismatch("folio.transfer_balance: balances %s, model from %" PRId64 " to %" PRId64,
                     dump(res), M.folios.v[from].balance, M.folios.v[to].balance);
        VEC_PUSH(M.xfers, x);
    }
    json_decref(r);
}

static void op_routing_set(void)
{
    int s = random_in_house_stay(), target, ci = rnd_int(7);
    bool by_code = chance(60);
    const char *key = by_code ? charge_codes[ci] : departments[ci];
    struct expect e = {0};
    json_t *params, *r;
    bool ok;

    if (s < 0)
        return;
    for (size_t i = 0; i < M.rules.n; i++)
        if (M.rules.v[i].active && M.rules.v[i].stay == s && M.rules.v[i].by_code == by_code &&
            strcmp(M.rules.v[i].key, key) == 0)
            return; /* one rule per key: whether a second replaces the first is open */
    /* another window of the stay, or a non-guest folio; never a closed one */
    if (chance(60)) {
        int w = 1 + rnd_int(8);

        target = M.stays.v[s].win[w];
    } else {
        target = -1;
        for (int tries = 0; tries < 20 && target < 0; tries++) {
            int f = random_folio(true);

            if (f >= 0 && M.folios.v[f].stay < 0)
                target = f;
        }
    }
    if (target < 0 || !M.folios.v[target].open)
        return;
    if (target == M.stays.v[s].win[1])
        expect_add(&e, "same_folio");
    if (M.folios.v[target].stay == s)
        params =
            json_pack("{s:I, s:s, s:i}", "stay_id", M.stays.v[s].id,
                      by_code ? "code" : "department", key, "to_window", M.folios.v[target].window);
    else
        params =
            json_pack("{s:I, s:s, s:I}", "stay_id", M.stays.v[s].id,
                      by_code ? "code" : "department", key, "to_folio_id", M.folios.v[target].id);
    r = call(OP_ROUTING_SET, any_conn(), "routing.set", params, &e, &ok);
    if (ok) {
        struct mrule rule = {.id = itest_int(json_object_get(r, "result"), "id"),
                             .stay = s,
                             .by_code = by_code,
                             .key = key,
                             .target = target,
                             .active = true};

        VEC_PUSH(M.rules, rule);
    }
    json_decref(r);
}

static void clear_rule(size_t i)
{
    struct expect e = {0};
    json_t *r;
    bool ok;

    r = call(OP_ROUTING_CLEAR, any_conn(), "routing.clear",
             json_pack("{s:I}", "routing_id", M.rules.v[i].id), &e, &ok);
    if (ok)
        M.rules.v[i].active = false;
    json_decref(r);
}

static void op_routing_clear(void)
{
    for (int tries = 0; tries < 20 && M.rules.n > 0; tries++) {
        size_t i = (size_t)rnd_int((int)M.rules.n);

        if (M.rules.v[i].active) {
            clear_rule(i);
            return;
        }
    }
}

static void op_move(void)
{
    int s = random_in_house_stay(), room = rnd_int(NROOMS);
    struct expect e = {0};
    json_t *r;
    bool ok;

    if (s < 0 || room == M.stays.v[s].room)
        return;
    if (M.rooms[room].stay >= 0)
        expect_add(&e, "room_not_vacant");
    if (M.rooms[room].ooo)
        expect_add(&e, "room_out_of_order");
    r = call(OP_MOVE, any_conn(), "stay.move",
             json_pack("{s:I, s:s}", "stay_id", M.stays.v[s].id, "room", M.rooms[room].number), &e,
             &ok);
    if (ok) {
        M.rooms[M.stays.v[s].room].stay = -1;
        M.rooms[room].stay = s;
        M.rooms[room].used = true;
        M.stays.v[s].room = room;
    }
    json_decref(r);
}

static void op_window(void)
{
    int s = random_in_house_stay();
    struct expect e = {0};
    json_t *r;
    bool ok;

    if (s < 0)
        return;
    if (M.stays.v[s].nwin >= 8)
        expect_add(&e, "window_limit");
    r = call(OP_WINDOW, any_conn(), "folio.open",
             json_pack("{s:s, s:I}", "type", "individual", "stay_id", M.stays.v[s].id), &e, &ok);
    if (ok) {
        json_t *res = json_object_get(r, "result");
        int w = (int)itest_int(res, "window");

        if (w != M.stays.v[s].nwin + 1 || w > 8) {
            mismatch("folio.open individual for stay %" JSON_INTEGER_FORMAT
                     ": window %d, expected %d",
                     M.stays.v[s].id, w, M.stays.v[s].nwin + 1);
        } else {
            M.stays.v[s].win[w] = add_folio(itest_int(res, "id"), s, w);
            M.stays.v[s].nwin = w;
        }
    }
    json_decref(r);
}

/* Pay a folio's negative balance back with a refund so that it can be settled. */
static void refund_negative(int f)
{
    struct expect e = {0};
    json_t *r;
    bool ok;

    if (M.folios.v[f].balance >= 0 || !M.folios.v[f].open)
        return;
    r = call(OP_PAY, any_conn(), "folio.pay",
             json_pack("{s:I, s:s, s:I}", "folio_id", M.folios.v[f].id, "method", "cash", "amount",
                       (json_int_t)M.folios.v[f].balance),
             &e, &ok);
    if (ok) {
        int k = record_posting(itest_path(r, "result.posting"), -1);

        M.posts.v[k].group_total = M.posts.v[k].amount;
        M.folios.v[f].balance += M.posts.v[k].amount;
    }
    json_decref(r);
}

static void op_check_out(void)
{
    int s = random_in_house_stay();
    bool settle = chance(60), ok;
    struct expect e = {0};
    json_t *payments = json_array(), *r, *params;
    int64_t after[9];
    long npay = 0;
    bool zero = true;

    if (s < 0) {
        json_decref(payments);
        return;
    }
    for (int w = 1; w <= 8; w++) {
        int f = M.stays.v[s].win[w];

        after[w] = 0;
        if (f < 0 || !M.folios.v[f].open)
            continue;
        if (settle)
            refund_negative(f);
        after[w] = M.folios.v[f].balance;
        if (settle && after[w] > 0 && (chance(95) || w > 1)) {
            json_array_append_new(payments, json_pack("{s:i, s:s, s:I}", "window", w, "method",
                                                      pay_methods[rnd_int(4)], "amount",
                                                      (json_int_t)after[w]));
            npay++;
            after[w] = 0;
        }
        if (after[w] != 0)
            zero = false;
    }
    if (!zero)
        expect_add(&e, "balance_not_zero");
    if (json_array_size(payments) > 0) {
        params = json_pack("{s:I, s:o}", "stay_id", M.stays.v[s].id, "payments", payments);
    } else {
        json_decref(payments);
        params = json_pack("{s:I}", "stay_id", M.stays.v[s].id);
    }
    r = call(OP_CHECK_OUT, any_conn(), "stay.check_out", params, &e, &ok);
    if (ok) {
        for (int w = 1; w <= 8; w++) {
            int f = M.stays.v[s].win[w];

            if (f >= 0) {
                M.folios.v[f].balance = after[w] == 0 ? 0 : M.folios.v[f].balance;
                if (after[w] != 0)
                    resync(f);
                M.folios.v[f].open = false;
            }
        }
        M.checkout_payments += npay;
        M.stays.v[s].in_house = false;
        M.rooms[M.stays.v[s].room].stay = -1;
        /* rules of a stay that left are of no further use; rules that route to its windows are
         * cleared before (see below) */
    } else if (strcmp(itest_reason(r), "balance_not_zero") == 0) {
        /* data.windows names exactly the windows left with a balance */
        struct client_rpc_error err;
        json_t *ws, *x;
        size_t i, expected = 0;
        bool right = true;

        assert_true(client_response_error(r, &err));
        ws = itest_path(err.data, "windows");
        for (int w = 1; w <= 8; w++)
            expected += after[w] != 0;
        json_array_foreach (ws, i, x) {
            int w = (int)itest_int(x, "window");

            right = right && w >= 1 && w <= 8 && after[w] != 0 &&
                    after[w] == itest_int(x, "balance") && M.stays.v[s].win[w] >= 0 &&
                    M.folios.v[M.stays.v[s].win[w]].id == itest_int(x, "folio_id");
        }
        if (!right || json_array_size(ws) != expected) {
            char model[200];
            size_t off = 0;

            model[0] = '\0';
            for (int w = 1; w <= 8; w++)
                if (after[w] != 0)
                    off += (size_t)snprintf(model + off, sizeof(model) - off,
                                            " window %d: %" PRId64, w, after[w]);
            mismatch("stay.check_out %s: data.windows %s, the model has%s", dump(params), dump(ws),
                     model);
        }
    }
    json_decref(r);
}

static void op_non_guest(void)
{
    bool employee = chance(25);
    struct expect e = {0};
    json_t *r;
    bool ok;

    r = call(OP_NON_GUEST, any_conn(), "folio.open",
             json_pack("{s:s, s:s}", "type", employee ? "employee" : "non_guest", "name",
                       employee ? "Random employee" : "Random passer-by"),
             &e, &ok);
    if (ok)
        add_folio(itest_int(json_object_get(r, "result"), "id"), -1, 0);
    json_decref(r);
}

static void op_close(void)
{
    int f = -1, s;
    struct expect e = {0};
    json_t *r;
    bool ok;

    bool zero = chance(60);

    for (int tries = 0; tries < 30 && f < 0; tries++) {
        int x = random_folio(true);

        if (x >= 0 && (!zero || M.folios.v[x].balance == 0))
            f = x;
    }
    if (f < 0)
        return;
    s = M.folios.v[f].stay;
    /* first the rules that route to it (a rule to a closed folio is not described) */
    for (size_t i = 0; i < M.rules.n; i++)
        if (M.rules.v[i].active && M.rules.v[i].target == f)
            clear_rule(i);
    if (M.folios.v[f].balance != 0)
        expect_add(&e, "balance_not_zero");
    if (s >= 0 && M.stays.v[s].in_house && M.folios.v[f].window == 1) {
        e.n = 0;
        expect_add(&e, "use_check_out");
        if (M.folios.v[f].balance != 0)
            expect_add(&e, "balance_not_zero");
    }
    r = call(OP_CLOSE, any_conn(), "folio.close", json_pack("{s:I}", "folio_id", M.folios.v[f].id),
             &e, &ok);
    if (ok)
        M.folios.v[f].open = false;
    json_decref(r);
}

static void check_folio(int f, const char *when)
{
    json_t *r = itest_call_ok(M.c[rnd_int(NCONN)], "folio.get",
                              json_pack("{s:I}", "folio_id", M.folios.v[f].id));
    json_int_t bal = itest_int(r, "balance"), sum = 0;
    json_t *p;
    size_t i;
    bool closed = strcmp(itest_str(r, "status"), "closed") == 0;

    json_array_foreach (json_object_get(r, "postings"), i, p)
        sum += itest_int(p, "amount");
    if (bal != M.folios.v[f].balance || sum != bal)
        mismatch("%s: folio %" JSON_INTEGER_FORMAT " balance %" JSON_INTEGER_FORMAT
                 ", postings sum %" JSON_INTEGER_FORMAT ", model %" PRId64,
                 when, M.folios.v[f].id, bal, sum, M.folios.v[f].balance);
    if (closed == M.folios.v[f].open)
        mismatch("%s: folio %" JSON_INTEGER_FORMAT " is %s, model says %s", when, M.folios.v[f].id,
                 itest_str(r, "status"), M.folios.v[f].open ? "open" : "closed");
    json_decref(r);
}

static void op_get(void)
{
    int f = random_folio(false);

    if (f < 0)
        return;
    M.op_tried[OP_GET]++;
    M.op_ok[OP_GET]++;
    M.calls++;
    check_folio(f, "folio.get");
}

/* Four postings at once, one per connection, to open folios (sometimes the same one). */
static void op_burst(void)
{
    int f[NCONN], target[NCONN], alt[NCONN];
    const char *code[NCONN];
    int64_t amount[NCONN];
    json_int_t id[NCONN];
    json_t *params[NCONN];
    int same = chance(40) ? random_folio(true) : -1;

    for (int i = 0; i < NCONN; i++) {
        f[i] = same >= 0 ? same : random_folio(true);
        if (f[i] < 0)
            return;
    }
    for (int i = 0; i < NCONN; i++) {
        code[i] = charge_codes[rnd_int(7)];
        amount[i] = rnd_range(1, 20000);
        route_of(f[i], code[i], &target[i], &alt[i]);
        if (!M.folios.v[target[i]].open)
            return;
    }
    for (int i = 0; i < NCONN; i++) {
        params[i] = json_pack("{s:I, s:s, s:I}", "folio_id", M.folios.v[f[i]].id, "code", code[i],
                              "amount", (json_int_t)amount[i]);
        if (!client_send_request(M.c[i], "folio.post", params[i], &id[i]))
            fail_msg("burst: send: %s", client_error(M.c[i]));
    }
    for (int i = 0; i < NCONN; i++) {
        json_t *resp;
        json_t *res;

        if (!client_wait_response(M.c[i], id[i], -1, &resp))
            fail_msg("burst: wait: %s", client_error(M.c[i]));
        M.op_tried[OP_BURST]++;
        M.calls++;
        res = client_response_result(resp);
        if (res == NULL) {
            const char *reason = itest_reason(resp);

            count_refusal(reason != NULL ? reason : "?");
            mismatch("burst folio.post %s: %s", dump(params[i]), dump(resp));
        } else {
            M.op_ok[OP_BURST]++;
            apply_post(res, code[i], amount[i], target[i], alt[i], f[i], "burst folio.post");
        }
        json_decref(params[i]);
        json_decref(resp);
    }
}

static void op_date_close(void)
{
    struct expect e = {0};
    char next[11];
    json_t *r;
    bool ok;

    itest_date_add(M.bd, 1, next);
    r = call(OP_DATE_CLOSE, manager_conn(), "business_date.close",
             json_pack("{s:s}", "property", "R3"), &e, &ok);
    if (ok) {
        json_t *res = json_object_get(r, "result");

        if (strcmp(itest_str(res, "closed"), M.bd) != 0 ||
            strcmp(itest_str(res, "business_date"), next) != 0)
            mismatch("business_date.close: %s, expected closed %s, business date %s", dump(res),
                     M.bd, next);
        snprintf(M.bd, sizeof(M.bd), "%s", itest_str(res, "business_date"));
        M.day++;
        M.day_start[M.day] = M.posts.n;
    }
    json_decref(r);
}

/* ---- the database checks ---- */

static PGconn *pg_connect(void)
{
    const char *conninfo = getenv("FOLIOD_TEST_PG_CONNINFO");
    PGconn *pg;

    if (conninfo == NULL || conninfo[0] == '\0')
        fail_msg("FOLIOD_TEST_PG_CONNINFO is not set");
    pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK)
        fail_msg("PostgreSQL: %s", PQerrorMessage(pg));
    return pg;
}

static PGresult *pg_query(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("SQL failed: %s\n%s", PQerrorMessage(pg), sql);
    return res;
}

static long long pg_int(PGconn *pg, const char *sql)
{
    PGresult *res = pg_query(pg, sql);
    long long v;

    if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
        fail_msg("SQL did not give one value: %s", sql);
    v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

static void pg_expect_zero(PGconn *pg, const char *what, const char *sql)
{
    long long n = pg_int(pg, sql);

    printf("test_random: db check: %-62s %s\n", what, n == 0 ? "ok" : "FAILED");
    if (n != 0)
        mismatch("database: %s: %lld offending rows (%s)", what, n, sql);
}

/* A statement that must be refused by the database (append-only postings). */
static void pg_expect_refused(PGconn *pg, const char *what, const char *sql)
{
    PGresult *res;

    PQclear(pg_query(pg, "BEGIN"));
    res = PQexec(pg, sql);
    printf("test_random: db check: %-62s %s\n", what,
           PQresultStatus(res) == PGRES_FATAL_ERROR ? "ok (refused)" : "FAILED");
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
        mismatch("database: %s was not refused: %s", what, sql);
    PQclear(res);
    PQclear(pg_query(pg, "ROLLBACK"));
}

static int cmp_id(const void *a, const void *b)
{
    json_int_t x = ((const struct mpost *)a)->id, y = ((const struct mpost *)b)->id;

    return x < y ? -1 : x > y;
}

static void db_checks(void)
{
    PGconn *pg = pg_connect();
    char sql[1024];
    long long pid = pg_int(pg, "SELECT id FROM properties WHERE code = 'R3'");
    PGresult *res;
    struct mpost *sorted;
    long long missing = 0, changed = 0, rows_other = 0, nrows;
    long long xfer_lines, nvoid = 0;
    long before;
    size_t seen = 0;

    pg_expect_zero(pg, "every folio balance = the sum of its postings",
                   "SELECT count(*) FROM folios f WHERE f.balance <> "
                   "(SELECT coalesce(sum(p.amount), 0) FROM postings p WHERE p.folio_id = f.id)");
    pg_expect_zero(pg, "sum of all postings = sum of all balances",
                   "SELECT (SELECT coalesce(sum(amount), 0) FROM postings) - "
                   "(SELECT coalesce(sum(balance), 0) FROM folios)");
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT coalesce(sum(p.amount), 0) FROM postings p JOIN folios f ON "
             "f.id = p.folio_id WHERE f.property_id = %lld) - (SELECT coalesce(sum(balance), 0) "
             "FROM folios WHERE property_id = %lld)",
             pid, pid);
    pg_expect_zero(pg, "the same for R3 alone", sql);
    pg_expect_zero(pg, "postings on a folio of another property",
                   "SELECT count(*) FROM postings p JOIN folios f ON f.id = p.folio_id "
                   "WHERE f.property_id <> p.property_id");
    pg_expect_zero(pg, "voids: same folio, negated amount of what they void",
                   "SELECT count(*) FROM postings v LEFT JOIN postings o ON o.id = v.void_of "
                   "WHERE v.type = 'void' AND (o.id IS NULL OR o.folio_id <> v.folio_id "
                   "OR o.amount <> -v.amount)");
    pg_expect_zero(pg, "no posting voided twice",
                   "SELECT count(*) FROM (SELECT void_of FROM postings WHERE void_of IS NOT NULL "
                   "GROUP BY void_of HAVING count(*) > 1) x");
    pg_expect_zero(pg, "no void of a void",
                   "SELECT count(*) FROM postings v JOIN postings o ON o.id = v.void_of "
                   "WHERE o.type = 'void'");
    pg_expect_zero(pg, "transfers: out and in sides sum to zero",
                   "SELECT count(*) FROM (SELECT transfer_id FROM postings WHERE transfer_id IS "
                   "NOT NULL GROUP BY transfer_id HAVING sum(amount) <> 0) x");
    pg_expect_zero(pg, "transfers: one source folio and one target folio each",
                   "SELECT count(*) FROM (SELECT transfer_id FROM postings WHERE transfer_id IS "
                   "NOT NULL GROUP BY transfer_id HAVING "
                   "count(DISTINCT folio_id) FILTER (WHERE type = 'transfer_out') <> 1 OR "
                   "count(DISTINCT folio_id) FILTER (WHERE type = 'transfer_in') <> 1) x");
    pg_expect_zero(pg, "transfer lines carry a transfer id",
                   "SELECT count(*) FROM postings WHERE type IN ('transfer_out', 'transfer_in') "
                   "AND transfer_id IS NULL");
    pg_expect_zero(pg, "transfers rows match their postings (amount, from, to)",
                   "SELECT count(*) FROM transfers t WHERE t.amount <> (SELECT coalesce(sum("
                   "p.amount), 0) FROM postings p WHERE p.transfer_id = t.id AND p.type = "
                   "'transfer_in') OR EXISTS (SELECT 1 FROM postings p WHERE p.transfer_id = "
                   "t.id AND ((p.type = 'transfer_out' AND p.folio_id <> t.from_folio_id) OR "
                   "(p.type = 'transfer_in' AND p.folio_id <> t.to_folio_id)))");
    pg_expect_zero(pg, "no posting dated to a business date after it closed",
                   "SELECT count(*) FROM postings p JOIN business_dates d ON d.property_id = "
                   "p.property_id AND d.business_date = p.business_date "
                   "WHERE p.created_at >= d.closed_at");
    pg_expect_zero(pg, "voids dated like what they void",
                   "SELECT count(*) FROM postings v JOIN postings o ON o.id = v.void_of "
                   "WHERE v.business_date <> o.business_date");
    pg_expect_zero(pg, "adjustments dated after what they adjust",
                   "SELECT count(*) FROM postings a JOIN postings o ON o.id = a.adjusts "
                   "WHERE a.business_date <= o.business_date");
    pg_expect_zero(pg, "adjustments never exceed the original",
                   "SELECT count(*) FROM postings o WHERE abs(o.unit_amount * o.quantity) < "
                   "abs((SELECT coalesce(sum(a.unit_amount * a.quantity), 0) FROM postings a "
                   "WHERE a.adjusts = o.id AND a.parent_id IS NULL))");
    pg_expect_zero(pg, "generated lines sit with their charge",
                   "SELECT count(*) FROM postings g JOIN postings c ON c.id = g.parent_id "
                   "WHERE g.folio_id <> c.folio_id AND g.type IN ('tax', 'service')");

    /* every transfer an answer named: its sides, its amount */
    snprintf(sql, sizeof(sql),
             "SELECT transfer_id, min(folio_id) FILTER (WHERE type = 'transfer_out'), "
             "min(folio_id) FILTER (WHERE type = 'transfer_in'), "
             "sum(amount) FILTER (WHERE type = 'transfer_in'), count(*) "
             "FROM postings WHERE property_id = %lld AND transfer_id IS NOT NULL "
             "GROUP BY transfer_id ORDER BY transfer_id",
             pid);
    res = pg_query(pg, sql);
    before = M.total_mismatch;
    if ((size_t)PQntuples(res) != M.xfers.n)
        mismatch("database: %d transfers in R3, the answers named %zu", PQntuples(res), M.xfers.n);
    xfer_lines = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        json_int_t tid = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        size_t k;

        xfer_lines += strtoll(PQgetvalue(res, i, 4), NULL, 10);
        for (k = 0; k < M.xfers.n && M.xfers.v[k].id != tid; k++)
            ;
        if (k == M.xfers.n) {
            mismatch("database: transfer %" JSON_INTEGER_FORMAT " no answer named", tid);
            continue;
        }
        if (strtoll(PQgetvalue(res, i, 1), NULL, 10) != M.xfers.v[k].from ||
            strtoll(PQgetvalue(res, i, 2), NULL, 10) != M.xfers.v[k].to ||
            strtoll(PQgetvalue(res, i, 3), NULL, 10) != M.xfers.v[k].amount)
            mismatch("database: transfer %" JSON_INTEGER_FORMAT " is %s -> %s of %s, the answer "
                     "said %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT " of %" PRId64,
                     tid, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                     M.xfers.v[k].from, M.xfers.v[k].to, M.xfers.v[k].amount);
    }
    PQclear(res);
    printf("test_random: db check: %-62s %s\n", "every transfer as its answer named it",
           M.total_mismatch == before ? "ok" : "FAILED");

    /* every posting an answer named is there, unchanged; nothing else is */
    sorted = malloc((M.posts.n + 1) * sizeof(*sorted));
    assert_non_null(sorted);
    memcpy(sorted, M.posts.v, M.posts.n * sizeof(*sorted));
    qsort(sorted, M.posts.n, sizeof(*sorted), cmp_id);
    snprintf(sql, sizeof(sql),
             "SELECT id, folio_id, amount, type FROM postings WHERE property_id = %lld "
             "ORDER BY id",
             pid);
    res = pg_query(pg, sql);
    nrows = PQntuples(res);
    for (int i = 0; i < PQntuples(res); i++) {
        struct mpost key = {.id = strtoll(PQgetvalue(res, i, 0), NULL, 10)};
        struct mpost *p = bsearch(&key, sorted, M.posts.n, sizeof(*sorted), cmp_id);
        const char *type = PQgetvalue(res, i, 3);

        if (strcmp(type, "void") == 0)
            nvoid++;
        if (p == NULL) {
            if (strcmp(type, "transfer_out") != 0 && strcmp(type, "transfer_in") != 0)
                rows_other++;
            continue;
        }
        seen++;
        if (p->folio != strtoll(PQgetvalue(res, i, 1), NULL, 10) ||
            p->amount != strtoll(PQgetvalue(res, i, 2), NULL, 10) ||
            strcmp(p->db_type, type) != 0) {
            if (changed++ < 5)
                mismatch("database: posting %" JSON_INTEGER_FORMAT " is folio %s amount %s type "
                         "%s, the answer said folio %" JSON_INTEGER_FORMAT " amount %" PRId64
                         " type %s",
                         p->id, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), type, p->folio,
                         p->amount, p->db_type);
        }
    }
    PQclear(res);
    missing = (long long)M.posts.n - (long long)seen;
    printf("test_random: db check: %-62s %s\n",
           "every posting named by an answer exists, unchanged",
           missing == 0 && changed == 0 ? "ok" : "FAILED");
    if (missing != 0)
        mismatch("database: %lld postings named by answers are missing", missing);
    /* the others: transfer lines, the checkout payments, adjustment lines not listed */
    printf("test_random: db check: %-62s %s\n",
           "no posting beyond those the operations account for",
           rows_other == M.checkout_payments ||
                   (M.unseen_adjust_lines > 0 && rows_other >= M.checkout_payments)
               ? "ok"
               : "FAILED");
    if (rows_other != M.checkout_payments && M.unseen_adjust_lines == 0)
        mismatch("database: %lld postings of R3 that no answer named besides transfer lines, "
                 "expected %ld (payments of checkouts)",
                 rows_other, M.checkout_payments);
    printf("test_random: R3 has %lld postings (%lld transfer lines, %lld voids)\n", nrows,
           xfer_lines, nvoid);
    free(sorted);

    /* append-only, by the database itself */
    pg_expect_refused(
        pg, "UPDATE of a posting",
        "UPDATE postings SET amount = amount WHERE id = (SELECT max(id) FROM postings)");
    pg_expect_refused(pg, "DELETE of a posting",
                      "DELETE FROM postings WHERE id = (SELECT max(id) FROM postings)");
    pg_expect_zero(pg, "statistics: no row of postings ever updated or deleted",
                   "SELECT coalesce(sum(n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables "
                   "WHERE relname = 'postings'");
    PQfinish(pg);
}

/* ---- the test ---- */

static void setup_property(void)
{
    const char *rooms[NROOMS];
    char names[NROOMS][16];
    struct client *m;

    for (int i = 0; i < NROOMS; i++) {
        snprintf(names[i], sizeof(names[i]), "R-%03d", i + 1);
        rooms[i] = names[i];
        snprintf(M.rooms[i].number, sizeof(M.rooms[i].number), "%s", names[i]);
        M.rooms[i].stay = -1;
        M.rooms[i].ooo = i >= NROOMS - NOOO;
    }
    itest_ensure_property("R3", "Hotel R3 Random", rooms, NROOMS, "r3");
    m = itest_connect_user("r3manager");
    for (int i = NROOMS - NOOO; i < NROOMS; i++)
        json_decref(itest_call_ok(m, "room.update",
                                  json_pack("{s:s, s:s, s:s}", "property", "R3", "number", names[i],
                                            "status", "out_of_order")));
    itest_close(m);
}

static void final_room_check(void)
{
    json_t *r = itest_call_ok(M.c[0], "room.list", json_pack("{s:s}", "property", "R3")), *room;
    size_t i;

    json_array_foreach (json_object_get(r, "items"), i, room) {
        const char *num = itest_str(room, "number"), *st = itest_str(room, "status");

        for (int k = 0; k < NROOMS; k++) {
            const char *want;

            if (strcmp(M.rooms[k].number, num) != 0)
                continue;
            want = M.rooms[k].ooo         ? "out_of_order"
                   : M.rooms[k].stay >= 0 ? "occupied_"
                   : M.rooms[k].used      ? "vacant_dirty"
                                          : "vacant_clean";
            if (strncmp(st, want, strlen(want)) != 0)
                mismatch("room %s is %s, the model says %s", num, st, want);
        }
    }
    json_decref(r);
}

static void test_random_operations(void **state)
{
    const char *seed_env = getenv("FOLIOD_TEST_SEED"), *ops_env = getenv("FOLIOD_TEST_OPS");
    uint64_t seed = seed_env != NULL && seed_env[0] ? strtoull(seed_env, NULL, 0) : 20261123ULL;
    long nops = ops_env != NULL && ops_env[0] ? strtol(ops_env, NULL, 10) : 4000;
    /* weights per operation */
    static const int weight[OP_MAX] = {
        [OP_CHECK_IN] = 9,    [OP_POST] = 30,         [OP_ALLOWANCE] = 2,
        [OP_LATE_CHARGE] = 1, [OP_PAY] = 12,          [OP_VOID] = 9,
        [OP_ADJUST] = 4,      [OP_TRANSFER] = 6,      [OP_TRANSFER_BALANCE] = 4,
        [OP_ROUTING_SET] = 4, [OP_ROUTING_CLEAR] = 2, [OP_MOVE] = 4,
        [OP_WINDOW] = 3,      [OP_CHECK_OUT] = 7,     [OP_NON_GUEST] = 2,
        [OP_CLOSE] = 3,       [OP_GET] = 3,           [OP_BURST] = 2,
    };
    int total_weight = 0;
    int64_t t0 = itest_now_ms();
    long done = 0;

    (void)state;
    printf("test_random: seed %" PRIu64 " (FOLIOD_TEST_SEED=%" PRIu64
           " repeats this run), %ld operations\n",
           seed, seed, nops);
    fflush(stdout);
    M.rng = seed;
    setup_property();
    for (int i = 0; i < NCONN; i++)
        M.c[i] = itest_connect_user(i == NCONN - 1 ? "r3manager" : "r3cashier");
    itest_business_date(M.c[0], "R3", M.bd);
    for (int i = 0; i < OP_MAX; i++)
        total_weight += weight[i];

    while (M.calls < nops) {
        int pick = rnd_int(total_weight), op = 0;

        /* the business date closes twice during the run */
        if ((M.day == 0 && M.calls >= nops / 3) || (M.day == 1 && M.calls >= 2 * nops / 3)) {
            op_date_close();
            if (M.op_ok[OP_DATE_CLOSE] == 0)
                fail_msg("business_date.close failed; see the mismatches");
            continue;
        }
        while (pick >= weight[op])
            pick -= weight[op++];
        /* keep some guests in house */
        if (op == OP_CHECK_OUT && M.stays.n < 8)
            op = OP_CHECK_IN;
        switch (op) {
        case OP_CHECK_IN:
            op_check_in();
            break;
        case OP_POST:
        case OP_ALLOWANCE:
        case OP_LATE_CHARGE:
            op_post(op);
            break;
        case OP_PAY:
            op_pay();
            break;
        case OP_VOID:
            op_void();
            break;
        case OP_ADJUST:
            op_adjust();
            break;
        case OP_TRANSFER:
            op_transfer();
            break;
        case OP_TRANSFER_BALANCE:
            op_transfer_balance();
            break;
        case OP_ROUTING_SET:
            op_routing_set();
            break;
        case OP_ROUTING_CLEAR:
            op_routing_clear();
            break;
        case OP_MOVE:
            op_move();
            break;
        case OP_WINDOW:
            op_window();
            break;
        case OP_CHECK_OUT:
            op_check_out();
            break;
        case OP_NON_GUEST:
            op_non_guest();
            break;
        case OP_CLOSE:
            op_close();
            break;
        case OP_GET:
            op_get();
            break;
        case OP_BURST:
            op_burst();
            break;
        default:
            break;
        }
        /* a run that has gone off the rails says so early */
        if (M.total_mismatch > 200)
            break;
    }
    for (int i = 0; i < OP_MAX; i++)
        done += M.op_tried[i];

    /* every folio against the server */
    for (size_t f = 0; f < M.folios.n; f++)
        check_folio((int)f, "final folio.get");
    final_room_check();
    printf("test_random: %ld operations in %.1f s; per operation (tried / succeeded):\n", done,
           (double)(itest_now_ms() - t0) / 1000.0);
    for (int i = 0; i < OP_MAX; i++)
        printf("test_random:   %-24s %6ld / %6ld\n", op_names[i], M.op_tried[i], M.op_ok[i]);
    printf("test_random: refusals by reason (each predicted by the model unless listed below):\n");
    for (size_t i = 0; i < M.nrefusals; i++)
        printf("test_random:   %-24s %6ld\n", M.refusals[i].reason, M.refusals[i].n);
    printf("test_random: model: %zu stays, %zu folios, %zu postings named by answers, %zu "
           "transfers, %zu routing rules, %d business dates closed\n",
           M.stays.n, M.folios.n, M.posts.n, M.xfers.n, M.rules.n, M.day);
    fflush(stdout);

    db_checks();

    if (M.total_mismatch > 0) {
        fprintf(stderr, "test_random: %ld mismatches (seed %" PRIu64 "); the first %zu:\n",
                M.total_mismatch, seed, M.nmismatch);
        for (size_t i = 0; i < M.nmismatch; i++)
            fprintf(stderr, "  %s\n", M.mismatches[i]);
        fail_msg("%ld mismatches between the contract, the model and the server", M.total_mismatch);
    }
    printf("test_random: all checks passed\n");
    for (int i = 0; i < NCONN; i++)
        itest_close(M.c[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        ITEST(test_random_operations),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, itest_group_setup, NULL);
}
