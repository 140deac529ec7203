/*
 * fmt.c - human text in and out for folioctl: money, dates, ids, subcommand options, tables.
 *
 * Money never goes through floating point: amounts are parsed digit by digit into an int64 of
 * minor units with an overflow check at each step, and printed by splitting the magnitude
 * with integer division. See fmt.h for the rules.
 */
#include "fmt.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[FMT_STATUS_MAX] = {"ok", "syntax", "decimals", "range"};

const char *fmt_status_str(enum fmt_status s)
{
    return s < FMT_STATUS_MAX ? status_names[s] : "?";
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ---- money ---- */

enum fmt_status fmt_parse_amount(const char *s, unsigned minor_units, int64_t limit, int64_t *out)
{
    bool negative = false;
    size_t decimals = 0;
    int64_t v = 0;
    const char *p = s;

    if (s == NULL || minor_units > FMT_MAX_MINOR_UNITS || limit < 0)
        return FMT_SYNTAX;
    if (*p == '-') {
        negative = true;
        p++;
    }
    if (!is_digit(*p))
        return FMT_SYNTAX;
    /* Digits are accumulated as a negative number so that the check is the same for both
     * signs; the magnitude is compared with the limit at every step. */
    for (; is_digit(*p); p++) {
        if (v < (INT64_MIN + (*p - '0')) / 10)
            return FMT_RANGE;
        v = v * 10 - (*p - '0');
        if (v < -limit)
            return FMT_RANGE;
    }
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return FMT_SYNTAX;
        for (; is_digit(*p); p++) {
            if (++decimals > minor_units)
                break;
            if (v < (INT64_MIN + (*p - '0')) / 10)
                return FMT_RANGE;
            v = v * 10 - (*p - '0');
        }
        /* Tell "1.234" (too many decimals) from "1.2x" (garbage): the rest must be digits. */
        if (decimals > minor_units) {
            while (is_digit(*p))
                p++;
            return *p == '\0' ? FMT_DECIMALS : FMT_SYNTAX;
        }
    }
    if (*p != '\0')
        return FMT_SYNTAX;
    for (; decimals < minor_units; decimals++) {
        if (v < INT64_MIN / 10)
            return FMT_RANGE;
        v *= 10;
    }
    if (v < -limit)
        return FMT_RANGE;
    *out = negative ? v : -v;
    return FMT_OK;
}

const char *fmt_money(char *buf, int64_t amount, unsigned minor_units)
{
    /* The magnitude as unsigned, so that INT64_MIN prints too; digits are written from the
     * right, the decimal point after minor_units of them, at least one digit before it. */
    uint64_t mag = amount < 0 ? (uint64_t)0 - (uint64_t)amount : (uint64_t)amount;
    char tmp[FMT_MONEY_LEN];
    size_t n = 0, out = 0;

    if (minor_units > FMT_MAX_MINOR_UNITS)
        minor_units = FMT_MAX_MINOR_UNITS;
    do {
        if (minor_units > 0 && n == minor_units)
            tmp[n++] = '.';
        tmp[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag > 0 || n <= minor_units);
    if (amount < 0)
        buf[out++] = '-';
    while (n > 0)
        buf[out++] = tmp[--n];
    buf[out] = '\0';
    return buf;
}

/* ---- ids, dates, payments ---- */

bool fmt_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    int64_t v = 0;

    if (s == NULL || !is_digit(*s))
        return false;
    for (; is_digit(*s); s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    if (*s != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool fmt_is_date(const char *s)
{
    static const int days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;

    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !is_digit(s[i]))
            return false;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > days[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return true;
}

enum fmt_status fmt_parse_payment(const char *s, unsigned minor_units, int64_t limit,
                                  struct fmt_payment *out)
{
    const char *colon = s != NULL ? strchr(s, ':') : NULL;
    const char *second;
    char amount[FMT_MONEY_LEN + 8];
    size_t mlen, alen;
    int64_t window = 0;
    enum fmt_status st;

    if (colon == NULL)
        return FMT_SYNTAX;
    mlen = (size_t)(colon - s);
    if (mlen == 0 || mlen >= sizeof(out->method))
        return FMT_SYNTAX;
    for (size_t i = 0; i < mlen; i++) {
        char c = s[i];

        if (!is_digit(c) && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && c != '_' &&
            c != '-')
            return FMT_SYNTAX;
    }
    second = strchr(colon + 1, ':');
    alen = second != NULL ? (size_t)(second - colon - 1) : strlen(colon + 1);
    if (alen == 0 || alen >= sizeof(amount))
        return alen == 0 ? FMT_SYNTAX : FMT_RANGE;
    memcpy(amount, colon + 1, alen);
    amount[alen] = '\0';
    if (second != NULL && !fmt_parse_int(second + 1, 1, 8, &window))
        return FMT_SYNTAX;
    st = fmt_parse_amount(amount, minor_units, limit, &out->amount);
    if (st != FMT_OK)
        return st;
    memcpy(out->method, s, mlen);
    out->method[mlen] = '\0';
    out->window = (unsigned)window;
    return FMT_OK;
}

/* ---- subcommand options ---- */

__attribute__((format(printf, 3, 4))) static bool scan_fail(char *err, size_t errlen,
                                                            const char *fmt, ...)
{
    va_list ap;

    if (errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

bool fmt_args_scan(const struct fmt_option *opts, int argc, char **argv, struct fmt_arg *out,
                   size_t *nout, char *err, size_t errlen)
{
    size_t n = 0;
    bool options_done = false;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *name, *value = NULL;
        size_t name_len;
        int found = -1;

        /* "-" (standard input), "-5.00" (a negative amount) and anything after "--" are
         * positional; so is every argument that does not start with '-'. */
        if (options_done || a[0] != '-' || a[1] == '\0' || is_digit(a[1]) || a[1] == '.') {
            out[n++] = (struct fmt_arg){-1, a};
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (a[1] != '-') {
            if (a[2] != '\0')
                return scan_fail(err, errlen, "unknown option %s", a);
            for (int k = 0; opts != NULL && opts[k].name != NULL; k++)
                if (opts[k].alias != 0 && opts[k].alias == a[1])
                    found = k;
            if (found < 0)
                return scan_fail(err, errlen, "unknown option %s", a);
        } else {
            const char *eq;

            name = a + 2;
            eq = strchr(name, '=');
            name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
            if (eq != NULL)
                value = eq + 1;
            for (int k = 0; opts != NULL && opts[k].name != NULL; k++)
                if (strlen(opts[k].name) == name_len && strncmp(opts[k].name, name, name_len) == 0)
                    found = k;
            if (found < 0)
                return scan_fail(err, errlen, "unknown option --%.*s", (int)name_len, name);
            if (value != NULL && !opts[found].has_value)
                return scan_fail(err, errlen, "option --%s takes no value", opts[found].name);
        }
        if (opts[found].has_value && value == NULL) {
            if (i + 1 >= argc)
                return scan_fail(err, errlen, "option --%s needs a value", opts[found].name);
            value = argv[++i];
        }
        if (!opts[found].repeat)
            for (size_t k = 0; k < n; k++)
                if (out[k].opt == found)
                    return scan_fail(err, errlen, "option --%s given twice", opts[found].name);
        out[n++] = (struct fmt_arg){found, value};
    }
    *nout = n;
    return true;
}

/* ---- text ---- */

char *fmt_sanitize(const char *s)
{
    char *out = strdup(s != NULL ? s : "");

    if (out == NULL)
        return NULL;
    for (unsigned char *p = (unsigned char *)out; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = *p == '\t' || *p == '\n' ? ' ' : '?';
    return out;
}

size_t fmt_width(const char *s)
{
    size_t w = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if ((*p & 0xc0) != 0x80)
            w++;
    return w;
}

/* ---- tables ---- */

struct fmt_table {
    struct fmt_column *cols;
    size_t ncols;
    char **cells; /* row by row */
    size_t ncells;
    size_t cap;
    bool failed; /* an allocation failed in fmt_table_add() */
};

struct fmt_table *fmt_table_new(const struct fmt_column *cols, size_t ncols)
{
    struct fmt_table *t;

    if (ncols == 0)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->cols = malloc(ncols * sizeof(*cols));
    if (t->cols == NULL) {
        free(t);
        return NULL;
    }
    memcpy(t->cols, cols, ncols * sizeof(*cols));
    t->ncols = ncols;
    return t;
}

void fmt_table_add(struct fmt_table *t, const char *text)
{
    char *cell;

    if (t == NULL || t->failed)
        return;
    if (t->ncells == t->cap) {
        size_t cap = t->cap == 0 ? 8 * t->ncols : 2 * t->cap;
        char **cells = realloc(t->cells, cap * sizeof(*cells));

        if (cells == NULL) {
            t->failed = true;
            return;
        }
        t->cells = cells;
        t->cap = cap;
    }
    cell = fmt_sanitize(text);
    if (cell == NULL) {
        t->failed = true;
        return;
    }
    t->cells[t->ncells++] = cell;
}

size_t fmt_table_rows(const struct fmt_table *t)
{
    return t != NULL ? t->ncells / t->ncols : 0;
}

static void table_pad(FILE *out, size_t n)
{
    while (n-- > 0)
        fputc(' ', out);
}

static void table_line(const struct fmt_table *t, FILE *out, const size_t *width,
                       const char *const *cells, size_t have)
{
    size_t last = t->ncols;

    /* Trailing empty cells would only print blanks. */
    while (last > 0 && (last - 1 >= have || cells[last - 1][0] == '\0'))
        last--;
    for (size_t c = 0; c < last; c++) {
        const char *cell = c < have ? cells[c] : "";
        size_t pad = width[c] - fmt_width(cell);

        if (t->cols[c].align == FMT_RIGHT)
            table_pad(out, pad);
        fputs(cell, out);
        if (c + 1 < last)
            table_pad(out, (t->cols[c].align == FMT_RIGHT ? 0 : pad) + 2);
    }
    fputc('\n', out);
}

bool fmt_table_print(const struct fmt_table *t, FILE *out)
{
    size_t *width;
    size_t rows;

    if (t == NULL || t->failed)
        return false;
    width = calloc(t->ncols, sizeof(*width));
    if (width == NULL)
        return false;
    for (size_t c = 0; c < t->ncols; c++)
        width[c] = fmt_width(t->cols[c].header);
    for (size_t k = 0; k < t->ncells; k++)
        if (fmt_width(t->cells[k]) > width[k % t->ncols])
            width[k % t->ncols] = fmt_width(t->cells[k]);

    for (size_t c = 0; c < t->ncols; c++) {
        const char *h = t->cols[c].header;
        size_t pad = width[c] - fmt_width(h);

        if (t->cols[c].align == FMT_RIGHT)
            table_pad(out, pad);
        fputs(h, out);
        if (c + 1 < t->ncols)
            table_pad(out, (t->cols[c].align == FMT_RIGHT ? 0 : pad) + 2);
    }
    fputc('\n', out);
    for (size_t c = 0; c < t->ncols; c++) {
        for (size_t k = 0; k < width[c]; k++)
            fputc('-', out);
        if (c + 1 < t->ncols)
            table_pad(out, 2);
    }
    fputc('\n', out);
    rows = (t->ncells + t->ncols - 1) / t->ncols;
    for (size_t r = 0; r < rows; r++) {
        size_t first = r * t->ncols;
        size_t have = t->ncells - first < t->ncols ? t->ncells - first : t->ncols;

        table_line(t, out, width, (const char *const *)t->cells + first, have);
    }
    free(width);
    return !ferror(out);
}

void fmt_table_free(struct fmt_table *t)
{
    if (t == NULL)
        return;
    for (size_t k = 0; k < t->ncells; k++)
        free(t->cells[k]);
    free(t->cells);
    free(t->cols);
    free(t);
}
