/*
 * possim.c - the POS simulator: an outlet's side of the POS interface (docs/pos.md), for a
 * person at a terminal and for scripts and tests.
 *
 * Usage: possim [OPTIONS] COMMAND [ARGS]; see possim_usage(). Flow: options (defaults from
 * FOLIOD_HOST, FOLIOD_PORT, FOLIOD_CA, like folioctl), the command's arguments checked before
 * connecting, one TLS connection with the outlet's client certificate (client.h), pos.hello
 * (the link start: it gives the currency's decimals and the tax rules of the codes the outlet
 * may post), the command, its answer printed for a person (or the raw answer with --json),
 * then close.
 *
 * Like a configured POS, `post` computes the total, tax and service from the rules pos.hello
 * gave, with the server's rounding (half away from zero, per line); --total (and --tax,
 * --service) send given values instead, e.g. to see a DM answer. Before sending a post, possim
 * writes its params to the state file, so that `replay` can resend exactly the same request
 * (same key, same body) after a lost answer: the server then answers the first answer again
 * with "replayed": true and posts nothing.
 *
 * Exit status: 0 the answer is OK, 1 another answer (NG, NP, CO, DM, IA, DN, NA, UR) or a
 * JSON-RPC error, 2 usage or a local file, 3 connection, TLS, timeout or protocol failure,
 * 4 RY (temporary: send the same request again, e.g. with `replay`).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "fmt.h"
#include "rpc.h"

enum possim_exit {
    POSSIM_EXIT_OK = 0,
    POSSIM_EXIT_REFUSED = 1, /* an answer other than OK and RY, or a JSON-RPC error */
    POSSIM_EXIT_USAGE = 2,   /* bad command line, unreadable or unwritable state file */
    POSSIM_EXIT_CONN = 3,    /* connection, TLS, timeout or protocol failure */
    POSSIM_EXIT_RETRY = 4,   /* RY: send the same request again */
};

#define POSSIM_DEFAULT_STATE "possim-last.json"
#define POSSIM_MAX_SUBTOTALS 9
#define POSSIM_MAX_ITEMS 200

struct possim_command;

struct possim {
    struct client_options copts;
    char key_path[4096]; /* the key derived from --cert when --key is absent */
    bool json;
    const char *state_file;
    struct client *client;
    const struct possim_command *cmd;
    struct fmt_arg *args;
    size_t nargs;
    json_t *hello; /* the pos.hello answer */
    unsigned minor_units;
    char currency[8];
};

struct possim_command {
    const char *name;
    const struct fmt_option *opts;
    int min_pos, max_pos;
    int (*run)(struct possim *ps);
    const char *usage;
};

__attribute__((format(printf, 1, 2))) static void possim_err(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "possim: %s\n", msg);
}

__attribute__((format(printf, 1, 2))) static int possim_usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "possim: %s\nTry 'possim --help'.\n", msg);
    return POSSIM_EXIT_USAGE;
}

static void possim_usage(FILE *out)
{
    fprintf(out,
            "Usage: possim [OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "A POS outlet talking to foliod with its client certificate (docs/pos.md).\n"
            "\n"
            "Commands (AMOUNTs in major units: 25.50):\n"
            "  hello                 the outlet, its property, business date and policy\n"
            "  inquire --room R | --name N\n"
            "                        who is in a room, or in-house guests by surname prefix\n"
            "  post --room R --check C --sub CODE:AMOUNT [--sub CODE:AMOUNT]... [--key K]\n"
            "       [--stay STAY_ID] [--name GUEST] [--tip AMOUNT] [--total AMOUNT]\n"
            "       [--tax AMOUNT] [--service AMOUNT] [--covers N] [--table T]\n"
            "       [--item NAME:QUANTITY:AMOUNT]... [--description TEXT]\n"
            "                        post a check to a room; without --total, the total, tax\n"
            "                        and service are computed from the rules pos.hello gave;\n"
            "                        without --key a new key is made up\n"
            "  replay                send the last post again (same key, same body) from the\n"
            "                        state file\n"
            "  status KEY            the stored answer for a key\n"
            "  postings [--date DATE]\n"
            "                        this outlet's postings of a business date, with totals\n"
            "\n"
            "Options:\n"
            "  --host HOST           server host (FOLIOD_HOST, default %s)\n"
            "  --port PORT           server port (FOLIOD_PORT, default %d)\n"
            "  --ca FILE             CA certificate for the server (FOLIOD_CA, default %s)\n"
            "  --cert FILE           the outlet's client certificate (required)\n"
            "  --key FILE            its private key (default: FILE.crt -> FILE.key when it\n"
            "                        exists, else read from --cert)\n"
            "  --state FILE          where post keeps the last request for replay\n"
            "                        (POSSIM_STATE, default %s)\n"
            "  --json                print the raw answer (one JSON object per line)\n"
            "  --timeout MS          bound for connecting and for each answer (default %d)\n"
            "  -h, --help            this help\n"
            "\n"
            "Exit status: 0 OK, 1 refused (NG NP CO DM IA DN NA UR, or an error), 2 usage,\n"
            "3 connection or TLS failure, 4 RY (send the same request again: replay).\n",
            CLIENT_DEFAULT_HOST, CLIENT_DEFAULT_PORT, CLIENT_DEFAULT_CA_FILE, POSSIM_DEFAULT_STATE,
            CLIENT_DEFAULT_TIMEOUT_MS);
}

/* ---- arguments ---- */

static bool possim_parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    int64_t v;

    if (!fmt_parse_int(s, (int64_t)lo, (int64_t)hi, &v))
        return false;
    *out = (unsigned long)v;
    return true;
}

/* The value of the command's option (the last one given), or NULL. */
static const char *possim_opt(const struct possim *ps, const char *name)
{
    const char *v = NULL;

    for (size_t i = 0; i < ps->nargs; i++)
        if (ps->args[i].opt >= 0 && strcmp(ps->cmd->opts[ps->args[i].opt].name, name) == 0)
            v = ps->args[i].value;
    return v;
}

/* The n-th positional argument of the command, or NULL. */
static const char *possim_pos(const struct possim *ps, size_t n)
{
    for (size_t i = 0; i < ps->nargs; i++)
        if (ps->args[i].opt < 0 && n-- == 0)
            return ps->args[i].value;
    return NULL;
}

static size_t possim_npos(const struct possim *ps)
{
    size_t n = 0;

    for (size_t i = 0; i < ps->nargs; i++)
        if (ps->args[i].opt < 0)
            n++;
    return n;
}

static bool possim_is_code(const char *s, size_t len)
{
    if (len == 0 || len > 16)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              (i > 0 && (ch == '_' || ch == '-'))))
            return false;
    }
    return true;
}

/* An amount in major units of the property's currency; minor_units FMT_MAX_MINOR_UNITS only
 * checks the form before the currency is known. */
static bool possim_amount(const char *what, const char *s, unsigned minor_units, int64_t *out)
{
    enum fmt_status st = fmt_parse_amount(s, minor_units, RPC_AMOUNT_LIMIT, out);

    if (st == FMT_OK && *out >= 0)
        return true;
    if (st == FMT_DECIMALS)
        possim_err("%s %s: at most %u decimals", what, s, minor_units);
    else
        possim_err("%s %s: not an amount (write 25.50; at least 0)", what, s);
    return false;
}

/* "CODE:AMOUNT" -> code (copied into code[17]) and amount. */
static bool possim_subtotal(const char *s, unsigned minor_units, char code[17], int64_t *amount)
{
    const char *colon = strrchr(s, ':');

    if (colon == NULL || !possim_is_code(s, (size_t)(colon - s))) {
        possim_err("--sub %s: write CODE:AMOUNT with a transaction code such as FOOD:25.50", s);
        return false;
    }
    snprintf(code, 17, "%.*s", (int)(colon - s), s);
    if (!possim_amount("--sub", colon + 1, minor_units, amount))
        return false;
    if (*amount == 0) {
        possim_err("--sub %s: the amount must not be zero", s);
        return false;
    }
    return true;
}

/* "NAME:QUANTITY:AMOUNT" (the name may hold colons) -> an item object, or NULL. */
static json_t *possim_item(const char *s, unsigned minor_units)
{
    const char *c2 = strrchr(s, ':');
    const char *c1 = NULL;
    char qty[16];
    unsigned long q;
    int64_t amount;

    for (const char *p = s; c2 != NULL && p < c2; p++)
        if (*p == ':')
            c1 = p;
    if (c1 == NULL || c1 == s || (size_t)(c2 - c1 - 1) >= sizeof(qty)) {
        possim_err("--item %s: write NAME:QUANTITY:AMOUNT, e.g. \"Soup:2:7.50\"", s);
        return NULL;
    }
    snprintf(qty, sizeof(qty), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
    if (!possim_parse_uint(qty, 1, 999, &q)) {
        possim_err("--item %s: the quantity must be 1 to 999", s);
        return NULL;
    }
    if (fmt_parse_amount(c2 + 1, minor_units, RPC_AMOUNT_LIMIT, &amount) != FMT_OK) {
        possim_err("--item %s: %s is not an amount", s, c2 + 1);
        return NULL;
    }
    return json_pack("{s:s%, s:I, s:I}", "name", s, (size_t)(c1 - s), "quantity", (json_int_t)q,
                     "amount", (json_int_t)amount);
}

/* ---- printing ---- */

static void possim_print_json(const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

static const char *possim_s(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s != NULL ? s : "";
}

static json_int_t possim_i(const json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* Money of the property with its currency, into buf (FMT_MONEY_LEN + 8 bytes). */
static const char *possim_money(const struct possim *ps, char *buf, int64_t amount)
{
    char m[FMT_MONEY_LEN];

    snprintf(buf, FMT_MONEY_LEN + 8, "%s%s%s", fmt_money(m, amount, ps->minor_units),
             ps->currency[0] != '\0' ? " " : "", ps->currency);
    return buf;
}

/* printf of one string from the server, with control characters neutralised (a macro so that
 * the format stays a literal the compiler checks). */
#define possim_line(fmt, text)                                                                     \
    do {                                                                                           \
        char *clean_ = fmt_sanitize(text);                                                         \
        printf(fmt, clean_ != NULL ? clean_ : "?");                                                \
        free(clean_);                                                                              \
    } while (0)

/* "STATUS reason: message", then what every answer may carry. */
static void possim_print_head(const struct possim *ps, const json_t *a)
{
    char buf[FMT_MONEY_LEN + 8];
    const json_t *expected = json_object_get(a, "expected");
    char head[256];

    snprintf(head, sizeof(head), "%s %s", possim_s(a, "status"), possim_s(a, "reason"));
    possim_line("%s", head);
    possim_line(": %s\n", possim_s(a, "message"));
    if (json_is_object(expected)) {
        printf("  expected total %s", possim_money(ps, buf, possim_i(expected, "total")));
        printf(", tax %s", possim_money(ps, buf, possim_i(expected, "tax")));
        printf(", service %s", possim_money(ps, buf, possim_i(expected, "service")));
        printf(", tip %s\n", possim_money(ps, buf, possim_i(expected, "tip")));
    }
    if (json_is_true(json_object_get(a, "replayed")))
        printf("  (replayed: the stored answer for this key; nothing was posted again)\n");
}

static void possim_print_hello(const struct possim *ps, const json_t *a)
{
    const json_t *pol = json_object_get(a, "policy");
    const json_t *codes = json_object_get(a, "codes");
    const json_t *c, *r;
    char buf[FMT_MONEY_LEN + 8];
    size_t i, k;

    possim_print_head(ps, a);
    possim_line("  outlet         %s", possim_s(json_object_get(a, "outlet"), "code"));
    possim_line(" (%s)\n", possim_s(json_object_get(a, "outlet"), "name"));
    possim_line("  property       %s", possim_s(json_object_get(a, "property"), "code"));
    possim_line(" (%s)", possim_s(json_object_get(a, "property"), "name"));
    printf(", %s\n", ps->currency);
    possim_line("  business date  %s\n", possim_s(a, "business_date"));
    printf("  policy         ");
    if (json_is_integer(json_object_get(pol, "max_per_posting")))
        printf("max %s per posting, ", possim_money(ps, buf, possim_i(pol, "max_per_posting")));
    if (json_is_integer(json_object_get(pol, "max_per_day")))
        printf("max %s per day, ", possim_money(ps, buf, possim_i(pol, "max_per_day")));
    possim_line("credit over limit: %s", possim_s(pol, "credit_policy"));
    printf(",\n                 inquiry %s, name %s, late charges %" JSON_INTEGER_FORMAT
           " h, %s credit, %s during the night audit\n",
           json_is_true(json_object_get(pol, "inquiry_required")) ? "required" : "optional",
           json_is_true(json_object_get(pol, "name_match_required")) ? "required" : "optional",
           possim_i(pol, "late_charge_hours"),
           json_is_true(json_object_get(pol, "may_see_credit")) ? "sees" : "does not see",
           json_is_true(json_object_get(pol, "block_during_audit")) ? "refused" : "posted");
    json_array_foreach (codes, i, c)
    {
        possim_line("  code %-9s", possim_s(c, "code"));
        possim_line(" %s", possim_s(c, "description"));
        json_array_foreach (json_object_get(c, "rules"), k, r)
        {
            int64_t ppm = possim_i(r, "rate_ppm");

            possim_line("%s", k == 0 ? ": " : ", ");
            possim_line("%s", possim_s(r, "code"));
            printf(" %lld.%04lld%%%s%s", (long long)(ppm / 10000), (long long)(ppm % 10000),
                   json_is_true(json_object_get(r, "inclusive")) ? " inclusive" : "",
                   json_is_true(json_object_get(r, "compound")) ? " compound" : "");
        }
        printf("\n");
    }
}

static bool possim_print_inquiry(const struct possim *ps, const json_t *a)
{
    static const struct fmt_column cols[] = {
        {"STAY", FMT_RIGHT},  {"RESERVATION", FMT_LEFT}, {"ROOM", FMT_LEFT},
        {"NAME", FMT_LEFT},   {"ARRIVAL", FMT_LEFT},     {"DEPARTURE", FMT_LEFT},
        {"STATUS", FMT_LEFT}, {"NO-POST", FMT_LEFT},     {"CREDIT", FMT_RIGHT},
    };
    const json_t *guests = json_object_get(a, "guests");
    struct fmt_table *t;
    const json_t *g;
    size_t i;
    bool ok;

    possim_print_head(ps, a);
    if (!json_is_array(guests))
        return true;
    t = fmt_table_new(cols, sizeof(cols) / sizeof(cols[0]));
    if (t == NULL)
        return false;
    json_array_foreach (guests, i, g)
    {
        char id[32], name[256], buf[FMT_MONEY_LEN + 8];
        const json_t *credit = json_object_get(g, "credit_available");

        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, possim_i(g, "stay_id"));
        snprintf(name, sizeof(name), "%s, %s", possim_s(g, "last_name"), possim_s(g, "first_name"));
        fmt_table_add(t, id);
        fmt_table_add(t, possim_s(g, "reservation"));
        fmt_table_add(t, possim_s(g, "room"));
        fmt_table_add(t, name);
        fmt_table_add(t, possim_s(g, "arrival"));
        fmt_table_add(t, possim_s(g, "departure"));
        fmt_table_add(t, possim_s(g, "status"));
        fmt_table_add(t, json_is_true(json_object_get(g, "no_post")) ? "yes" : "no");
        fmt_table_add(t, credit == NULL ? ""
                         : json_is_null(credit)
                             ? "no limit"
                             : possim_money(ps, buf, json_integer_value(credit)));
    }
    ok = fmt_table_print(t, stdout);
    fmt_table_free(t);
    return ok;
}

static void possim_print_post(const struct possim *ps, const json_t *a)
{
    const json_t *lines = json_object_get(a, "postings");
    const json_t *w, *l;
    char buf[FMT_MONEY_LEN + 8];
    size_t i;

    possim_print_head(ps, a);
    if (json_is_string(json_object_get(a, "key")))
        possim_line("  key       %s\n", possim_s(a, "key"));
    if (!json_is_array(lines))
        return;
    printf("  total     %s", possim_money(ps, buf, possim_i(a, "total")));
    printf(" (tax %s", possim_money(ps, buf, possim_i(a, "tax")));
    printf(", service %s", possim_money(ps, buf, possim_i(a, "service")));
    printf(", tip %s)\n", possim_money(ps, buf, possim_i(a, "tip")));
    json_array_foreach (lines, i, l)
    {
        char id[64];

        snprintf(id, sizeof(id), "  %-9s #%" JSON_INTEGER_FORMAT " folio %" JSON_INTEGER_FORMAT,
                 i == 0 ? "postings" : "", possim_i(l, "id"), possim_i(l, "folio_id"));
        printf("%s", id);
        possim_line("  %-8s", possim_s(l, "code"));
        printf(" %12s\n", possim_money(ps, buf, possim_i(l, "amount")));
    }
    if (json_is_true(json_object_get(a, "routed")))
        printf("  routed    some lines went to another folio (routing instructions)\n");
    if (json_is_true(json_object_get(a, "late_charge")))
        printf("  late      posted after checkout: the front desk must settle it\n");
    json_array_foreach (json_object_get(a, "warnings"), i, w)
        possim_line("  warning   %s\n", json_string_value(w));
}

static bool possim_print_postings(const struct possim *ps, const json_t *a)
{
    static const struct fmt_column ccols[] = {
        {"CHECK", FMT_LEFT}, {"KEY", FMT_LEFT},    {"ROOM", FMT_LEFT},
        {"STAY", FMT_RIGHT}, {"TOTAL", FMT_RIGHT}, {"NOTE", FMT_LEFT},
    };
    static const struct fmt_column tcols[] = {
        {"CODE", FMT_LEFT}, {"DESCRIPTION", FMT_LEFT}, {"LINES", FMT_RIGHT}, {"AMOUNT", FMT_RIGHT}};
    struct fmt_table *t;
    const json_t *x;
    char buf[FMT_MONEY_LEN + 8], n[32];
    size_t i;
    bool ok;

    possim_print_head(ps, a);
    if (!json_is_array(json_object_get(a, "checks")))
        return true;
    t = fmt_table_new(ccols, sizeof(ccols) / sizeof(ccols[0]));
    if (t == NULL)
        return false;
    json_array_foreach (json_object_get(a, "checks"), i, x)
    {
        fmt_table_add(t, possim_s(x, "check"));
        fmt_table_add(t, possim_s(x, "key"));
        fmt_table_add(t, possim_s(x, "room"));
        snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT, possim_i(x, "stay_id"));
        fmt_table_add(t, n);
        fmt_table_add(t, possim_money(ps, buf, possim_i(x, "total")));
        fmt_table_add(t, json_is_true(json_object_get(x, "voided"))        ? "voided"
                         : json_is_true(json_object_get(x, "late_charge")) ? "late charge"
                                                                           : "");
    }
    printf("\n");
    ok = fmt_table_print(t, stdout);
    fmt_table_free(t);
    t = fmt_table_new(tcols, sizeof(tcols) / sizeof(tcols[0]));
    if (!ok || t == NULL) {
        fmt_table_free(t);
        return false;
    }
    json_array_foreach (json_object_get(a, "totals"), i, x)
    {
        fmt_table_add(t, possim_s(x, "code"));
        fmt_table_add(t, possim_s(x, "description"));
        snprintf(n, sizeof(n), "%" JSON_INTEGER_FORMAT, possim_i(x, "lines"));
        fmt_table_add(t, n);
        fmt_table_add(t, possim_money(ps, buf, possim_i(x, "amount")));
    }
    fmt_table_add(t, "TOTAL");
    fmt_table_add(t, "");
    fmt_table_add(t, "");
    fmt_table_add(t, possim_money(ps, buf, possim_i(a, "total")));
    printf("\n");
    ok = fmt_table_print(t, stdout);
    fmt_table_free(t);
    return ok;
}

/* ---- the exchange ---- */

static int possim_transport_error(const struct possim *ps)
{
    possim_err("%s", client_error(ps->client));
    return client_error_kind(ps->client) == CLIENT_ERR_USAGE ? POSSIM_EXIT_USAGE : POSSIM_EXIT_CONN;
}

/* Call method; on an answer object, *answer is a new reference and the exit status of its
 * FIAS status is returned in *rc (0 OK, 1 refused, 4 RY). A JSON-RPC error (an unknown or
 * disabled outlet's certificate, a role refusal) or a transport failure is reported here and
 * *answer is NULL. params is stolen. */
static void possim_call(struct possim *ps, const char *method, json_t *params, json_t **answer,
                        int *rc)
{
    json_t *response = NULL;
    struct client_rpc_error e;
    json_t *result;
    const char *status;

    *answer = NULL;
    if (!client_call_new(ps->client, method, params, &response)) {
        *rc = possim_transport_error(ps);
        return;
    }
    result = client_response_result(response);
    if (result == NULL) {
        if (!client_response_error(response, &e)) {
            possim_err("the server sent a response without a result or an error");
            *rc = POSSIM_EXIT_CONN;
        } else {
            if (ps->json)
                possim_print_json(json_object_get(response, "error"));
            possim_err("%s: %s%s", e.reason != NULL ? e.reason : "error", e.message,
                       e.retryable ? " (temporary: try again)" : "");
            *rc = e.retryable ? POSSIM_EXIT_RETRY : POSSIM_EXIT_REFUSED;
        }
        json_decref(response);
        return;
    }
    status = json_string_value(json_object_get(result, "status"));
    if (!json_is_object(result) || status == NULL) {
        possim_err("%s: the answer has no status", method);
        json_decref(response);
        *rc = POSSIM_EXIT_CONN;
        return;
    }
    *rc = strcmp(status, "OK") == 0   ? POSSIM_EXIT_OK
          : strcmp(status, "RY") == 0 ? POSSIM_EXIT_RETRY
                                      : POSSIM_EXIT_REFUSED;
    *answer = json_incref(result);
    json_decref(response);
}

/* pos.hello: the currency's decimals and the codes' rules for the commands. */
static int possim_link(struct possim *ps)
{
    const json_t *prop;
    int rc;

    possim_call(ps, "pos.hello", NULL, &ps->hello, &rc);
    if (ps->hello == NULL)
        return rc;
    if (rc != POSSIM_EXIT_OK) {
        if (ps->json)
            possim_print_json(ps->hello);
        else
            possim_print_head(ps, ps->hello);
        return rc;
    }
    prop = json_object_get(ps->hello, "property");
    ps->minor_units = (unsigned)possim_i(prop, "minor_units");
    if (ps->minor_units > FMT_MAX_MINOR_UNITS)
        ps->minor_units = FMT_MAX_MINOR_UNITS;
    snprintf(ps->currency, sizeof(ps->currency), "%s", possim_s(prop, "currency"));
    return POSSIM_EXIT_OK;
}

/* ---- the split, as the server computes it (docs/schema.md, fl_code_split) ---- */

static int64_t possim_div_round(int64_t num, int64_t den)
{
    int64_t q = num / den, r = num % den;

    if (2 * (r < 0 ? -r : r) >= den)
        q += num < 0 ? -1 : 1;
    return q;
}

/* Adds the lines amount makes on code (from pos.hello's codes) to *total, *tax, *service. A
 * code the outlet may not post has no rules here: the server refuses it anyway. */
static void possim_split(const struct possim *ps, const char *code, int64_t amount, int64_t *total,
                         int64_t *tax, int64_t *service)
{
    const json_t *codes = json_object_get(ps->hello, "codes");
    const json_t *rules = NULL, *c, *r;
    int64_t incl_ppm = 0, net = amount, running, incl[16] = {0};
    size_t i, k;

    json_array_foreach (codes, i, c) if (strcmp(possim_s(c, "code"), code) == 0) rules =
        json_object_get(c, "rules");
    json_array_foreach (rules, k, r) if (json_is_true(json_object_get(r, "inclusive"))) incl_ppm +=
        possim_i(r, "rate_ppm");
    json_array_foreach (rules, k, r)
    {
        if (k < 16 && json_is_true(json_object_get(r, "inclusive"))) {
            incl[k] = possim_div_round(amount * possim_i(r, "rate_ppm"), 1000000 + incl_ppm);
            net -= incl[k];
        }
    }
    *total += net;
    running = net;
    json_array_foreach (rules, k, r)
    {
        int64_t a;

        if (json_is_true(json_object_get(r, "inclusive")))
            a = k < 16 ? incl[k] : 0;
        else
            a = possim_div_round((json_is_true(json_object_get(r, "compound")) ? running : net) *
                                     possim_i(r, "rate_ppm"),
                                 1000000);
        running += a;
        *total += a;
        if (strcmp(possim_s(r, "kind"), "service") == 0)
            *service += a;
        else
            *tax += a;
    }
}

/* ---- commands ---- */

#define O_VAL(n)                                                                                   \
    {                                                                                              \
        n, 0, true, false                                                                          \
    }
#define O_REP(n)                                                                                   \
    {                                                                                              \
        n, 0, true, true                                                                           \
    }
#define O_END                                                                                      \
    {                                                                                              \
        NULL, 0, false, false                                                                      \
    }

static const struct fmt_option possim_o_none[] = {O_END};
static const struct fmt_option possim_o_inquire[] = {O_VAL("room"), O_VAL("name"), O_END};
static const struct fmt_option possim_o_post[] = {
    O_VAL("key"),    O_VAL("room"),  O_VAL("check"),   O_REP("sub"),         O_VAL("tip"),
    O_VAL("total"),  O_VAL("tax"),   O_VAL("service"), O_VAL("stay"),        O_VAL("name"),
    O_VAL("covers"), O_VAL("table"), O_REP("item"),    O_VAL("description"), O_END,
};
static const struct fmt_option possim_o_postings[] = {O_VAL("date"), O_END};

static int possim_hello(struct possim *ps)
{
    if (ps->json)
        possim_print_json(ps->hello);
    else
        possim_print_hello(ps, ps->hello);
    return POSSIM_EXIT_OK;
}

static int possim_check_inquire(const struct possim *ps)
{
    if ((possim_opt(ps, "room") == NULL) == (possim_opt(ps, "name") == NULL))
        return possim_usage_error("inquire: give --room ROOM or --name NAME");
    return POSSIM_EXIT_OK;
}

static int possim_inquire(struct possim *ps)
{
    const char *room = possim_opt(ps, "room"), *name = possim_opt(ps, "name");
    json_t *answer;
    int rc;

    possim_call(ps, "pos.inquiry",
                room != NULL ? json_pack("{s:s}", "room", room) : json_pack("{s:s}", "name", name),
                &answer, &rc);
    if (answer == NULL)
        return rc;
    if (ps->json)
        possim_print_json(answer);
    else if (!possim_print_inquiry(ps, answer))
        rc = POSSIM_EXIT_USAGE;
    json_decref(answer);
    return rc;
}

/* The arguments of post are checked twice: their form before connecting (minor units not
 * known yet: the most decimals any currency has), their amounts after pos.hello. */
static int possim_check_post(const struct possim *ps)
{
    char code[17];
    int64_t v;
    unsigned long n;
    size_t subs = 0, items = 0;
    static const char *const amounts[] = {"tip", "total", "tax", "service"};

    if (possim_opt(ps, "room") == NULL || possim_opt(ps, "check") == NULL)
        return possim_usage_error("post: --room and --check are required");
    for (size_t i = 0; i < ps->nargs; i++) {
        const char *name = ps->args[i].opt >= 0 ? ps->cmd->opts[ps->args[i].opt].name : "";

        if (strcmp(name, "sub") == 0) {
            if (!possim_subtotal(ps->args[i].value, FMT_MAX_MINOR_UNITS, code, &v))
                return POSSIM_EXIT_USAGE;
            subs++;
        } else if (strcmp(name, "item") == 0) {
            json_t *item = possim_item(ps->args[i].value, FMT_MAX_MINOR_UNITS);

            if (item == NULL)
                return POSSIM_EXIT_USAGE;
            json_decref(item);
            items++;
        }
    }
    if (subs == 0 || subs > POSSIM_MAX_SUBTOTALS)
        return possim_usage_error("post: give 1 to %d --sub CODE:AMOUNT", POSSIM_MAX_SUBTOTALS);
    if (items > POSSIM_MAX_ITEMS)
        return possim_usage_error("post: at most %d --item", POSSIM_MAX_ITEMS);
    for (size_t i = 0; i < sizeof(amounts) / sizeof(amounts[0]); i++) {
        const char *s = possim_opt(ps, amounts[i]);
        char what[16];

        snprintf(what, sizeof(what), "--%s", amounts[i]);
        if (s != NULL && !possim_amount(what, s, FMT_MAX_MINOR_UNITS, &v))
            return POSSIM_EXIT_USAGE;
    }
    if (possim_opt(ps, "stay") != NULL &&
        !possim_parse_uint(possim_opt(ps, "stay"), 1, 9007199254740991UL, &n))
        return possim_usage_error("post: --stay %s is not a stay id", possim_opt(ps, "stay"));
    if (possim_opt(ps, "covers") != NULL &&
        !possim_parse_uint(possim_opt(ps, "covers"), 0, 999, &n))
        return possim_usage_error("post: --covers must be 0 to 999");
    if ((possim_opt(ps, "tax") != NULL || possim_opt(ps, "service") != NULL) &&
        possim_opt(ps, "total") == NULL)
        return possim_usage_error("post: --tax and --service go with --total");
    return POSSIM_EXIT_OK;
}

static bool possim_put_amount(const struct possim *ps, json_t *params, const char *name,
                              int64_t *out)
{
    const char *s = possim_opt(ps, name);
    char what[16];

    if (s == NULL)
        return true;
    snprintf(what, sizeof(what), "--%s", name);
    if (!possim_amount(what, s, ps->minor_units, out))
        return false;
    return json_object_set_new(params, name, json_integer(*out)) == 0;
}

/* The params of pos.post from the command line; NULL after a message. */
static json_t *possim_post_params(const struct possim *ps)
{
    json_t *params = json_object(), *subs = json_array(), *items = json_array();
    int64_t total = 0, tax = 0, service = 0, tip = 0, given;
    const char *tip_code = json_string_value(json_object_get(ps->hello, "tip_code"));
    char key[80];
    unsigned long n;
    struct timespec ts;

    if (params == NULL || subs == NULL || items == NULL)
        goto fail;
    if (possim_opt(ps, "key") != NULL) {
        snprintf(key, sizeof(key), "%s", possim_opt(ps, "key"));
    } else {
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(key, sizeof(key), "possim-%lld-%ld-%ld", (long long)ts.tv_sec, (long)getpid(),
                 (long)(ts.tv_nsec / 1000));
    }
    json_object_set_new(params, "key", json_string(key));
    json_object_set_new(params, "room", json_string(possim_opt(ps, "room")));
    json_object_set_new(params, "check", json_string(possim_opt(ps, "check")));
    for (size_t i = 0; i < ps->nargs; i++) {
        const char *name = ps->args[i].opt >= 0 ? ps->cmd->opts[ps->args[i].opt].name : "";
        char code[17];
        int64_t amount;

        if (strcmp(name, "sub") == 0) {
            if (!possim_subtotal(ps->args[i].value, ps->minor_units, code, &amount))
                goto fail;
            possim_split(ps, code, amount, &total, &tax, &service);
            json_array_append_new(
                subs, json_pack("{s:s, s:I}", "code", code, "amount", (json_int_t)amount));
        } else if (strcmp(name, "item") == 0) {
            json_t *item = possim_item(ps->args[i].value, ps->minor_units);

            if (item == NULL)
                goto fail;
            json_array_append_new(items, item);
        }
    }
    json_object_set(params, "subtotals", subs);
    if (json_array_size(items) > 0)
        json_object_set(params, "items", items);
    if (!possim_put_amount(ps, params, "tip", &tip))
        goto fail;
    if (tip > 0)
        possim_split(ps, tip_code != NULL ? tip_code : "", tip, &total, &tax, &service);
    if (possim_opt(ps, "total") != NULL) {
        if (!possim_put_amount(ps, params, "total", &given) ||
            !possim_put_amount(ps, params, "tax", &given) ||
            !possim_put_amount(ps, params, "service", &given))
            goto fail;
    } else {
        json_object_set_new(params, "total", json_integer(total));
        json_object_set_new(params, "tax", json_integer(tax));
        json_object_set_new(params, "service", json_integer(service));
    }
    if (possim_opt(ps, "stay") != NULL &&
        possim_parse_uint(possim_opt(ps, "stay"), 1, 9007199254740991UL, &n))
        json_object_set_new(params, "stay_id", json_integer((json_int_t)n));
    if (possim_opt(ps, "name") != NULL)
        json_object_set_new(params, "guest_name", json_string(possim_opt(ps, "name")));
    if (possim_opt(ps, "covers") != NULL && possim_parse_uint(possim_opt(ps, "covers"), 0, 999, &n))
        json_object_set_new(params, "covers", json_integer((json_int_t)n));
    if (possim_opt(ps, "table") != NULL)
        json_object_set_new(params, "table", json_string(possim_opt(ps, "table")));
    if (possim_opt(ps, "description") != NULL)
        json_object_set_new(params, "description", json_string(possim_opt(ps, "description")));
    json_decref(subs);
    json_decref(items);
    return params;
fail:
    json_decref(params);
    json_decref(subs);
    json_decref(items);
    return NULL;
}

/* Writes {"params": ...} to the state file (a temporary file renamed over it, so that a
 * crash never leaves half a request). */
static bool possim_save(const struct possim *ps, json_t *params)
{
    char tmp[4200];
    json_t *doc = json_pack("{s:O}", "params", params);
    bool ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp", ps->state_file);
    ok = doc != NULL && json_dump_file(doc, tmp, JSON_INDENT(2)) == 0 &&
         rename(tmp, ps->state_file) == 0;
    if (!ok) {
        possim_err("cannot write the state file %s: %s", ps->state_file, strerror(errno));
        unlink(tmp);
    }
    json_decref(doc);
    return ok;
}

static int possim_send_post(struct possim *ps, json_t *params)
{
    json_t *answer;
    int rc;

    possim_call(ps, "pos.post", params, &answer, &rc);
    if (answer == NULL)
        return rc;
    if (ps->json)
        possim_print_json(answer);
    else
        possim_print_post(ps, answer);
    json_decref(answer);
    return rc;
}

static int possim_post(struct possim *ps)
{
    json_t *params = possim_post_params(ps);

    if (params == NULL)
        return POSSIM_EXIT_USAGE;
    if (!possim_save(ps, params)) {
        json_decref(params);
        return POSSIM_EXIT_USAGE;
    }
    return possim_send_post(ps, params);
}

static int possim_replay(struct possim *ps)
{
    json_error_t jerr;
    json_t *doc = json_load_file(ps->state_file, JSON_REJECT_DUPLICATES, &jerr);
    json_t *params = json_object_get(doc, "params");

    if (!json_is_object(params)) {
        if (doc == NULL)
            possim_err("cannot read the state file %s: %s", ps->state_file, jerr.text);
        else
            possim_err("the state file %s holds no post", ps->state_file);
        json_decref(doc);
        return POSSIM_EXIT_USAGE;
    }
    json_incref(params);
    json_decref(doc);
    if (!ps->json)
        possim_line("replaying key %s\n", possim_s(params, "key"));
    return possim_send_post(ps, params);
}

static int possim_status(struct possim *ps)
{
    json_t *answer;
    int rc;

    possim_call(ps, "pos.status", json_pack("{s:s}", "key", possim_pos(ps, 0)), &answer, &rc);
    if (answer == NULL)
        return rc;
    if (ps->json)
        possim_print_json(answer);
    else
        possim_print_post(ps, answer);
    json_decref(answer);
    return rc;
}

static int possim_check_postings(const struct possim *ps)
{
    const char *d = possim_opt(ps, "date");

    if (d != NULL && !fmt_is_date(d))
        return possim_usage_error("postings: --date %s is not a date YYYY-MM-DD", d);
    return POSSIM_EXIT_OK;
}

static int possim_postings(struct possim *ps)
{
    const char *d = possim_opt(ps, "date");
    json_t *answer;
    int rc;

    possim_call(ps, "pos.postings", d != NULL ? json_pack("{s:s}", "business_date", d) : NULL,
                &answer, &rc);
    if (answer == NULL)
        return rc;
    if (ps->json)
        possim_print_json(answer);
    else if (!possim_print_postings(ps, answer))
        rc = POSSIM_EXIT_USAGE;
    json_decref(answer);
    return rc;
}

static const struct possim_command possim_commands[] = {
    {"hello", possim_o_none, 0, 0, possim_hello, ""},
    {"inquire", possim_o_inquire, 0, 0, possim_inquire, " --room ROOM | --name NAME"},
    {"post", possim_o_post, 0, 0, possim_post, " --room R --check C --sub CODE:AMOUNT..."},
    {"replay", possim_o_none, 0, 0, possim_replay, ""},
    {"status", possim_o_none, 1, 1, possim_status, " KEY"},
    {"postings", possim_o_postings, 0, 0, possim_postings, " [--date DATE]"},
};

/* The command's own checks, before connecting. */
static int possim_check(const struct possim *ps)
{
    if (ps->cmd->run == possim_inquire)
        return possim_check_inquire(ps);
    if (ps->cmd->run == possim_post)
        return possim_check_post(ps);
    if (ps->cmd->run == possim_postings)
        return possim_check_postings(ps);
    return POSSIM_EXIT_OK;
}

/* ---- main ---- */

enum {
    POSSIM_OPT_HOST = 256,
    POSSIM_OPT_PORT,
    POSSIM_OPT_CA,
    POSSIM_OPT_CERT,
    POSSIM_OPT_KEY,
    POSSIM_OPT_STATE,
    POSSIM_OPT_JSON,
    POSSIM_OPT_TIMEOUT,
};

static int possim_parse_args(struct possim *ps, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, POSSIM_OPT_HOST},
        {"port", required_argument, NULL, POSSIM_OPT_PORT},
        {"ca", required_argument, NULL, POSSIM_OPT_CA},
        {"cert", required_argument, NULL, POSSIM_OPT_CERT},
        {"key", required_argument, NULL, POSSIM_OPT_KEY},
        {"state", required_argument, NULL, POSSIM_OPT_STATE},
        {"json", no_argument, NULL, POSSIM_OPT_JSON},
        {"timeout", required_argument, NULL, POSSIM_OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env;
    unsigned long v;
    size_t len;
    int opt;

    client_options_init(&ps->copts);
    if ((env = getenv("FOLIOD_HOST")) != NULL && env[0] != '\0')
        ps->copts.host = env;
    if ((env = getenv("FOLIOD_PORT")) != NULL && env[0] != '\0') {
        if (!possim_parse_uint(env, 1, 65535, &v))
            return possim_usage_error("FOLIOD_PORT=%s is not a port number", env);
        ps->copts.port = (unsigned)v;
    }
    if ((env = getenv("FOLIOD_CA")) != NULL && env[0] != '\0')
        ps->copts.ca_file = env;
    ps->state_file =
        (env = getenv("POSSIM_STATE")) != NULL && env[0] != '\0' ? env : POSSIM_DEFAULT_STATE;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case POSSIM_OPT_HOST:
            ps->copts.host = optarg;
            break;
        case POSSIM_OPT_PORT:
            if (!possim_parse_uint(optarg, 1, 65535, &v))
                return possim_usage_error("--port %s is not a port number", optarg);
            ps->copts.port = (unsigned)v;
            break;
        case POSSIM_OPT_CA:
            ps->copts.ca_file = optarg;
            break;
        case POSSIM_OPT_CERT:
            ps->copts.cert_file = optarg;
            break;
        case POSSIM_OPT_KEY:
            ps->copts.key_file = optarg;
            break;
        case POSSIM_OPT_STATE:
            ps->state_file = optarg;
            break;
        case POSSIM_OPT_JSON:
            ps->json = true;
            break;
        case POSSIM_OPT_TIMEOUT:
            if (!possim_parse_uint(optarg, 1, 3600000, &v))
                return possim_usage_error("--timeout %s is not a number of milliseconds "
                                          "(1-3600000)",
                                          optarg);
            ps->copts.timeout_ms = (int)v;
            break;
        case 'h':
            possim_usage(stdout);
            exit(POSSIM_EXIT_OK);
        default:
            if (optopt != 0 && optopt < 256)
                return possim_usage_error("unknown option -%c", optopt);
            return possim_usage_error("unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (ps->copts.cert_file == NULL)
        return possim_usage_error("--cert is required: an outlet is its client certificate");
    if (strlen(ps->state_file) >= 4096)
        return possim_usage_error("--state: the file name is too long");
    len = strlen(ps->copts.cert_file);
    if (ps->copts.key_file == NULL && len > 4 && len < sizeof(ps->key_path) &&
        strcmp(ps->copts.cert_file + len - 4, ".crt") == 0) {
        snprintf(ps->key_path, sizeof(ps->key_path), "%.*s.key", (int)(len - 4),
                 ps->copts.cert_file);
        if (access(ps->key_path, R_OK) == 0)
            ps->copts.key_file = ps->key_path;
    }
    return POSSIM_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct possim ps = {.minor_units = 2};
    char err[256];
    int rc;

    signal(SIGPIPE, SIG_IGN);
    rc = possim_parse_args(&ps, argc, argv);
    if (rc != POSSIM_EXIT_OK)
        return rc;
    if (optind >= argc)
        return possim_usage_error("no command given");
    for (size_t i = 0; i < sizeof(possim_commands) / sizeof(possim_commands[0]); i++)
        if (strcmp(argv[optind], possim_commands[i].name) == 0)
            ps.cmd = &possim_commands[i];
    if (ps.cmd == NULL)
        return possim_usage_error("unknown command %s", argv[optind]);
    ps.args = calloc((size_t)(argc - optind), sizeof(*ps.args));
    if (ps.args == NULL) {
        possim_err("out of memory");
        return POSSIM_EXIT_USAGE;
    }
    if (!fmt_args_scan(ps.cmd->opts, argc - optind - 1, argv + optind + 1, ps.args, &ps.nargs, err,
                       sizeof(err))) {
        rc = possim_usage_error("%s: %s", ps.cmd->name, err);
        goto out;
    }
    if (possim_npos(&ps) < (size_t)ps.cmd->min_pos || possim_npos(&ps) > (size_t)ps.cmd->max_pos) {
        rc = possim_usage_error("usage: possim [OPTIONS] %s%s", ps.cmd->name, ps.cmd->usage);
        goto out;
    }
    rc = possim_check(&ps);
    if (rc != POSSIM_EXIT_OK)
        goto out;

    ps.client = client_new(&ps.copts);
    if (ps.client == NULL) {
        possim_err("out of memory");
        rc = POSSIM_EXIT_CONN;
        goto out;
    }
    if (!client_connect(ps.client)) {
        rc = possim_transport_error(&ps);
        goto out;
    }
    rc = possim_link(&ps);
    if (rc == POSSIM_EXIT_OK)
        rc = ps.cmd->run(&ps);
out:
    client_close(ps.client);
    json_decref(ps.hello);
    free(ps.args);
    if (fflush(stdout) != 0 && rc == POSSIM_EXIT_OK) {
        if (errno != EPIPE)
            possim_err("cannot write the output: %s", strerror(errno));
        rc = POSSIM_EXIT_USAGE;
    }
    return rc;
}
