/* test_folioctl_fmt.c - folioctl's text helpers: amounts in and out, ids, dates, payments,
 * subcommand options and tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fmt.h"

#define LIMIT 1000000000000LL

static void test_money_out(void **state)
{
    (void)state;
    char buf[FMT_MONEY_LEN];

    assert_string_equal(fmt_money(buf, 1166, 2), "11.66");
    assert_string_equal(fmt_money(buf, -5, 2), "-0.05");
    assert_string_equal(fmt_money(buf, 0, 2), "0.00");
    assert_string_equal(fmt_money(buf, 100, 2), "1.00");
    assert_string_equal(fmt_money(buf, -100000, 2), "-1000.00");
    assert_string_equal(fmt_money(buf, 1234, 0), "1234");
    assert_string_equal(fmt_money(buf, -1234, 0), "-1234");
    assert_string_equal(fmt_money(buf, 5, 3), "0.005");
    assert_string_equal(fmt_money(buf, 12345, 4), "1.2345");
    assert_string_equal(fmt_money(buf, 1, 9), "0.0001"); /* clamped to the maximum */
    assert_string_equal(fmt_money(buf, INT64_MAX, 2), "92233720368547758.07");
    assert_string_equal(fmt_money(buf, INT64_MIN, 2), "-92233720368547758.08");
}

static void expect_amount(const char *s, unsigned mu, int64_t want)
{
    int64_t v = 42;

    assert_int_equal(fmt_parse_amount(s, mu, LIMIT, &v), FMT_OK);
    assert_true(v == want);
}

static void expect_refused(const char *s, unsigned mu, enum fmt_status want)
{
    int64_t v = 42;

    assert_string_equal(fmt_status_str(fmt_parse_amount(s, mu, LIMIT, &v)), fmt_status_str(want));
    assert_true(v == 42); /* untouched */
}

static void test_amount_in(void **state)
{
    (void)state;
    expect_amount("25.50", 2, 2550);
    expect_amount("25.5", 2, 2550);
    expect_amount("25", 2, 2500);
    expect_amount("0.05", 2, 5);
    expect_amount("-0.05", 2, -5);
    expect_amount("-12", 2, -1200);
    expect_amount("0", 2, 0);
    expect_amount("-0", 2, 0);
    expect_amount("007.10", 2, 710);
    expect_amount("1234", 0, 1234);
    expect_amount("1.234", 3, 1234);
    expect_amount("1.2345", 4, 12345);
    expect_amount("10000000000.00", 2, LIMIT); /* exactly the limit */
    expect_amount("-10000000000", 2, -LIMIT);

    expect_refused("1.234", 2, FMT_DECIMALS);
    expect_refused("1.500", 2, FMT_DECIMALS);
    expect_refused("25.0", 0, FMT_DECIMALS);
    expect_refused("10000000000.01", 2, FMT_RANGE);
    expect_refused("-10000000000.01", 2, FMT_RANGE);
    expect_refused("99999999999999999999999", 2, FMT_RANGE);
    expect_refused("1.2x", 2, FMT_SYNTAX);
    expect_refused("1.234x", 2, FMT_SYNTAX);
    expect_refused("", 2, FMT_SYNTAX);
    expect_refused("-", 2, FMT_SYNTAX);
    expect_refused(".5", 2, FMT_SYNTAX);
    expect_refused("5.", 2, FMT_SYNTAX);
    expect_refused("+5", 2, FMT_SYNTAX);
    expect_refused(" 5", 2, FMT_SYNTAX);
    expect_refused("5 ", 2, FMT_SYNTAX);
    expect_refused("1,50", 2, FMT_SYNTAX);
    expect_refused("1e3", 2, FMT_SYNTAX);
    expect_refused("--5", 2, FMT_SYNTAX);
    expect_refused("0x10", 2, FMT_SYNTAX);
    expect_refused("1.2.3", 2, FMT_SYNTAX);
    expect_refused("abc", 2, FMT_SYNTAX);
    expect_refused("5", 5, FMT_SYNTAX); /* no currency has 5 decimals */
    assert_int_equal(fmt_parse_amount(NULL, 2, LIMIT, &(int64_t){0}), FMT_SYNTAX);

    /* The widest int64 magnitudes with no limit but the type's. */
    int64_t v;
    assert_int_equal(fmt_parse_amount("92233720368547758.07", 2, INT64_MAX, &v), FMT_OK);
    assert_true(v == INT64_MAX);
    assert_int_equal(fmt_parse_amount("-92233720368547758.07", 2, INT64_MAX, &v), FMT_OK);
    assert_true(v == -INT64_MAX);
    assert_int_equal(fmt_parse_amount("92233720368547758.08", 2, INT64_MAX, &v), FMT_RANGE);
    assert_int_equal(fmt_parse_amount("922337203685477580.7", 2, INT64_MAX, &v), FMT_RANGE);
}

/* Every amount printed and parsed again gives itself back. */
static void test_amount_round_trip(void **state)
{
    (void)state;
    static const int64_t samples[] = {0,   1,    -1,    9,         10,         99,    100,
                                      101, 1166, -1166, 123456789, -987654321, LIMIT, -LIMIT};
    char buf[FMT_MONEY_LEN];

    for (unsigned mu = 0; mu <= FMT_MAX_MINOR_UNITS; mu++)
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
            int64_t v;

            assert_int_equal(fmt_parse_amount(fmt_money(buf, samples[i], mu), mu, LIMIT, &v),
                             FMT_OK);
            assert_true(v == samples[i]);
        }
}

static void test_ints_and_dates(void **state)
{
    (void)state;
    int64_t v;

    assert_true(fmt_parse_int("12", 1, 100, &v) && v == 12);
    assert_true(fmt_parse_int("9007199254740991", 1, 9007199254740991LL, &v));
    assert_false(fmt_parse_int("9007199254740992", 1, 9007199254740991LL, &v));
    assert_false(fmt_parse_int("99999999999999999999", 1, INT64_MAX, &v));
    assert_false(fmt_parse_int("0", 1, 100, &v));
    assert_false(fmt_parse_int("-1", 1, 100, &v));
    assert_false(fmt_parse_int("+1", 1, 100, &v));
    assert_false(fmt_parse_int("1x", 1, 100, &v));
    assert_false(fmt_parse_int("", 1, 100, &v));
    assert_false(fmt_parse_int(NULL, 1, 100, &v));

    assert_true(fmt_is_date("2026-11-23"));
    assert_true(fmt_is_date("2024-02-29"));
    assert_true(fmt_is_date("2000-02-29"));
    assert_false(fmt_is_date("2100-02-29"));
    assert_false(fmt_is_date("2026-02-29"));
    assert_false(fmt_is_date("2026-04-31"));
    assert_false(fmt_is_date("2026-13-01"));
    assert_false(fmt_is_date("2026-00-10"));
    assert_false(fmt_is_date("2026-1-01"));
    assert_false(fmt_is_date("2026/01/01"));
    assert_false(fmt_is_date("2026-01-01x"));
    assert_false(fmt_is_date("tomorrow"));
    assert_false(fmt_is_date(NULL));
}

static void test_payment(void **state)
{
    (void)state;
    struct fmt_payment p;

    assert_int_equal(fmt_parse_payment("card:360.00", 2, LIMIT, &p), FMT_OK);
    assert_string_equal(p.method, "card");
    assert_true(p.amount == 36000);
    assert_int_equal(p.window, 0);
    assert_int_equal(fmt_parse_payment("bank_transfer:12.5:2", 2, LIMIT, &p), FMT_OK);
    assert_string_equal(p.method, "bank_transfer");
    assert_true(p.amount == 1250);
    assert_int_equal(p.window, 2);

    assert_int_equal(fmt_parse_payment("card:1.234", 2, LIMIT, &p), FMT_DECIMALS);
    assert_int_equal(fmt_parse_payment("card", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment(":10", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("card:", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("card:10:9", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("card:10:0", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("card:10:", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("card:10:1:1", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("ca rd:10", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("card:ten", 2, LIMIT, &p), FMT_SYNTAX);
    assert_int_equal(fmt_parse_payment("abcdefghijabcdefghijabcdefghijabc:1", 2, LIMIT, &p),
                     FMT_SYNTAX);
}

static const struct fmt_option opts[] = {
    {"folio", 0, true, false},    {"pay", 0, true, true},  {"no-post", 0, false, false},
    {"output", 'o', true, false}, {NULL, 0, false, false},
};

/* Scans a space-separated command line and renders it as "pos:X opt=V flag ..." or "!error". */
static void scan(const char *line, char *out, size_t outlen)
{
    char copy[256], *argv[32], *tok, *save = NULL;
    struct fmt_arg args[32];
    size_t n = 99;
    int argc = 0;
    char err[128] = "";

    snprintf(copy, sizeof(copy), "%s", line);
    for (tok = strtok_r(copy, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    out[0] = '\0';
    if (!fmt_args_scan(opts, argc, argv, args, &n, err, sizeof(err))) {
        assert_int_equal(n, 99); /* untouched */
        snprintf(out, outlen, "!%s", err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(out);

        if (args[i].opt < 0)
            snprintf(out + used, outlen - used, "%spos:%s", i ? " " : "", args[i].value);
        else if (args[i].value == NULL)
            snprintf(out + used, outlen - used, "%s%s", i ? " " : "", opts[args[i].opt].name);
        else
            snprintf(out + used, outlen - used, "%s%s=%s", i ? " " : "", opts[args[i].opt].name,
                     args[i].value);
    }
}

static void test_args(void **state)
{
    (void)state;
    char out[512];

    scan("--folio 40 FOOD 10.00", out, sizeof(out));
    assert_string_equal(out, "folio=40 pos:FOOD pos:10.00");
    scan("FOOD --folio=40 -5.00", out, sizeof(out));
    assert_string_equal(out, "pos:FOOD folio=40 pos:-5.00");
    scan("-o f.html --no-post - -.5", out, sizeof(out));
    assert_string_equal(out, "output=f.html no-post pos:- pos:-.5");
    scan("--pay card:1 --pay cash:2", out, sizeof(out));
    assert_string_equal(out, "pay=card:1 pay=cash:2");
    scan("-- --folio -o", out, sizeof(out));
    assert_string_equal(out, "pos:--folio pos:-o");
    scan("--folio= x", out, sizeof(out));
    assert_string_equal(out, "folio= pos:x");

    scan("--bogus 1", out, sizeof(out));
    assert_string_equal(out, "!unknown option --bogus");
    scan("--bogus=1", out, sizeof(out));
    assert_string_equal(out, "!unknown option --bogus");
    scan("-x", out, sizeof(out));
    assert_string_equal(out, "!unknown option -x");
    scan("-oo", out, sizeof(out));
    assert_string_equal(out, "!unknown option -oo");
    scan("--folio", out, sizeof(out));
    assert_string_equal(out, "!option --folio needs a value");
    scan("-o", out, sizeof(out));
    assert_string_equal(out, "!option --output needs a value");
    scan("--no-post=yes", out, sizeof(out));
    assert_string_equal(out, "!option --no-post takes no value");
    scan("--folio 1 --folio 2", out, sizeof(out));
    assert_string_equal(out, "!option --folio given twice");
    scan("--fol 1", out, sizeof(out)); /* no abbreviations */
    assert_string_equal(out, "!unknown option --fol");
}

static char *print_table(const struct fmt_table *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    assert_non_null(f);
    assert_true(fmt_table_print(t, f));
    fclose(f);
    return buf;
}

static void test_table(void **state)
{
    (void)state;
    static const struct fmt_column cols[] = {
        {"id", FMT_RIGHT}, {"code", FMT_LEFT}, {"amount", FMT_RIGHT}, {"description", FMT_LEFT}};
    struct fmt_table *t = fmt_table_new(cols, 4);
    char *text;

    assert_non_null(t);
    fmt_table_add(t, "501");
    fmt_table_add(t, "FOOD");
    fmt_table_add(t, "20.00");
    fmt_table_add(t, "dinner\tfor\x1b[31mtwo");
    fmt_table_add(t, "7");
    fmt_table_add(t, "SVC10");
    fmt_table_add(t, "-2.00");
    fmt_table_add(t, "");
    fmt_table_add(t, "12");
    fmt_table_add(t, "CAFÉ");
    fmt_table_add(t, NULL);
    assert_int_equal(fmt_table_rows(t), 2);
    text = print_table(t);
    assert_string_equal(text, " id  code   amount  description\n"
                              "---  -----  ------  ------------------\n"
                              "501  FOOD    20.00  dinner for?[31mtwo\n"
                              "  7  SVC10   -2.00\n"
                              " 12  CAFÉ\n");
    free(text);
    fmt_table_free(t);

    /* No rows: header and rule only. */
    t = fmt_table_new(cols, 2);
    text = print_table(t);
    assert_string_equal(text, "id  code\n--  ----\n");
    free(text);
    fmt_table_free(t);

    assert_null(fmt_table_new(cols, 0));
    fmt_table_free(NULL);
    assert_int_equal(fmt_table_rows(NULL), 0);
}

static void test_text(void **state)
{
    (void)state;
    char *s = fmt_sanitize("a\tb\nc\x7f\x01");

    assert_string_equal(s, "a b c??");
    free(s);
    assert_int_equal(fmt_width("CAFÉ"), 4);
    assert_int_equal(fmt_width(""), 0);
    assert_string_equal(fmt_status_str(FMT_DECIMALS), "decimals");
    assert_string_equal(fmt_status_str(FMT_STATUS_MAX), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_money_out),
        cmocka_unit_test(test_amount_in),
        cmocka_unit_test(test_amount_round_trip),
        cmocka_unit_test(test_ints_and_dates),
        cmocka_unit_test(test_payment),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
