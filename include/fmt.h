/*
 * fmt.h - human text in and out for folioctl: money, dates, ids, subcommand options, tables.
 *
 * Pure (no network, no globals), so that every rule is unit-tested in tests/unit.
 *
 * Money is an integer number of minor units and stays one: fmt_parse_amount() reads "25.50"
 * as 2550 with integer arithmetic only (refusing garbage, more decimals than the currency has,
 * and anything beyond a limit), and fmt_money() prints 1166 as "11.66" and -5 as "-0.05".
 *
 * fmt_args_scan() classifies a subcommand's arguments against a table of options
 * ("--name VALUE", "--name=VALUE", a one-letter alias "-o VALUE", flags, "--" ends options);
 * anything else, including a negative amount such as "-5.00", is a positional argument.
 *
 * A table: fmt_table_new() with its columns -> fmt_table_add() cell by cell, row by row (a row
 * is complete after one cell per column) -> fmt_table_print() -> fmt_table_free(). Cells are
 * copied with control characters replaced, so server data cannot drive the terminal. An
 * allocation failure in fmt_table_add() is remembered and reported by fmt_table_print().
 */
#ifndef FOLIOD_FMT_H
#define FOLIOD_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define FMT_MUST_CHECK __attribute__((warn_unused_result))

/* The most decimals a currency may have (properties.minor_units is 0..4). */
#define FMT_MAX_MINOR_UNITS 4
/* Room for any int64 amount with its sign, decimal point and terminating NUL. */
#define FMT_MONEY_LEN 32

enum fmt_status {
    FMT_OK,
    FMT_SYNTAX,   /* not a number in the expected form */
    FMT_DECIMALS, /* more decimals than the currency has */
    FMT_RANGE,    /* beyond the limit (or the type) */
    FMT_STATUS_MAX
};

/* A stable lower-case name ("syntax", "decimals", ...). */
const char *fmt_status_str(enum fmt_status s);

/* "25.50" -> 2550 with minor_units 2. Form: an optional '-', one or more digits, optionally a
 * '.' followed by 1..minor_units digits. No '+', spaces, thousands separators or exponents.
 * |value| must not exceed limit (minor units). *out is written only on FMT_OK. */
FMT_MUST_CHECK enum fmt_status fmt_parse_amount(const char *s, unsigned minor_units, int64_t limit,
                                                int64_t *out);

/* amount in minor units as "-12.34" (minor_units 2) or "-1234" (minor_units 0) into buf, which
 * must hold FMT_MONEY_LEN bytes. minor_units above FMT_MAX_MINOR_UNITS are taken as that
 * maximum. Returns buf. */
const char *fmt_money(char *buf, int64_t amount, unsigned minor_units);

/* A decimal integer in [min, max], digits only (no sign, no spaces). */
FMT_MUST_CHECK bool fmt_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* "YYYY-MM-DD" that is a real calendar date (years 1900-9999). */
bool fmt_is_date(const char *s);

/* A settlement given as "METHOD:AMOUNT" or "METHOD:AMOUNT:WINDOW" (window 1-8; 0 when absent).
 * The method is 1-32 characters of [A-Za-z0-9_-]. */
struct fmt_payment {
    char method[33];
    int64_t amount;
    unsigned window;
};
FMT_MUST_CHECK enum fmt_status fmt_parse_payment(const char *s, unsigned minor_units, int64_t limit,
                                                 struct fmt_payment *out);

/* ---- subcommand options ---- */

/* One option of a subcommand; a table ends with a {NULL} entry. */
struct fmt_option {
    const char *name; /* long name without "--" */
    char alias;       /* one-letter alias ("-o"), or 0 */
    bool has_value;   /* takes a value; otherwise a flag */
    bool repeat;      /* may be given more than once */
};

/* One argument as scanned: opt is the option's index in the table, or -1 for a positional
 * argument; value is the option's value (NULL for a flag) or the positional argument. Both
 * borrow from argv. */
struct fmt_arg {
    int opt;
    const char *value;
};

/* Classify argv[0..argc-1] into out (room for argc entries; *nout is set to the count). On a
 * usage error (unknown option, missing value, a value given to a flag, an option repeated that
 * may not be) writes a message to err and returns false. */
FMT_MUST_CHECK bool fmt_args_scan(const struct fmt_option *opts, int argc, char **argv,
                                  struct fmt_arg *out, size_t *nout, char *err, size_t errlen);

/* ---- text ---- */

/* A copy of s with control characters replaced (tab and LF by a space, the rest by '?'), or
 * NULL when memory is exhausted. The caller frees it. */
char *fmt_sanitize(const char *s);

/* Terminal columns a UTF-8 string takes (one per code point). */
size_t fmt_width(const char *s);

/* ---- tables ---- */

enum fmt_align { FMT_LEFT, FMT_RIGHT, FMT_ALIGN_MAX };

struct fmt_column {
    const char *header;
    enum fmt_align align;
};

struct fmt_table;

/* A table with ncols columns (the array is copied; the header strings must outlive the
 * table). NULL when memory is exhausted. */
struct fmt_table *fmt_table_new(const struct fmt_column *cols, size_t ncols);

/* The next cell (NULL prints as empty). A failure is remembered (see fmt_table_print). */
void fmt_table_add(struct fmt_table *t, const char *text);

/* Complete rows so far. */
size_t fmt_table_rows(const struct fmt_table *t);

/* Header, a rule of dashes, then the rows; columns separated by two spaces, no trailing
 * blanks. A partial last row is padded with empty cells. False when an earlier
 * fmt_table_add() ran out of memory (nothing is printed) or writing failed. */
FMT_MUST_CHECK bool fmt_table_print(const struct fmt_table *t, FILE *out);

void fmt_table_free(struct fmt_table *t);

#endif
