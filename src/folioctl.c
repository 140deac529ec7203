/*
 * folioctl.c - command-line client of foliod for the front desk, the auditor and scripts.
 *
 * Usage: folioctl [OPTIONS] COMMAND [ARGS]; see folioctl_usage() and docs/folioctl.md.
 * Flow: options (defaults from FOLIOD_HOST, FOLIOD_PORT, FOLIOD_CA), the command's argument
 * check, the password when --user is given (--password-file, FOLIOCTL_PASSWORD, or a prompt on
 * the terminal with echo off; never the command line), one TLS connection (client.h), a
 * session.login when --user is given, the command, its output (human-readable by default, the
 * raw JSON result with --json), then close. Every error is one line on stderr, and the exit
 * status says what kind it was: 0 ok, 1 error answered by the server, 2 usage, 3 connection,
 * TLS or protocol failure.
 *
 * The front-desk subcommands (checkin, post, checkout, ...; the table folioctl_ops) are one
 * method call each: their arguments are checked before connecting, amounts typed in major units
 * are turned into minor units with the currency's decimals from server.info, and the answer is
 * printed as tables (fmt.h), with warnings such as deposit_required on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "fmt.h"
#include "pdf.h"
#include "rpc.h"

enum folioctl_exit {
    FOLIOCTL_EXIT_OK = 0,
    FOLIOCTL_EXIT_RPC = 1,   /* the server answered with an error */
    FOLIOCTL_EXIT_USAGE = 2, /* bad command line, unreadable input file, no password */
    FOLIOCTL_EXIT_CONN = 3,  /* connection, TLS, timeout or protocol failure */
};

#define FOLIOCTL_PASSWORD_MAX 1024

struct folioctl_op;

struct folioctl {
    struct client_options copts;
    const char *user;
    const char *password_file;
    bool json;
    char *password; /* heap; wiped before it is freed */
    struct client *client;
    /* an accounting subcommand: its table entry and its scanned arguments */
    const struct folioctl_op *op;
    struct fmt_arg *args;
    size_t nargs;
    /* the property's currency, from server.info (until then: 2 decimals, no name) */
    bool currency_known;
    unsigned minor_units;
    char currency[8];
    char cur_suffix[9]; /* " EUR", or "" */
};

struct folioctl_command {
    const char *name;
    int min_args;
    int max_args;
    bool needs_user; /* refuse to run without --user */
    bool login;      /* log in first when --user is given */
    int (*run)(struct folioctl *ctl, int argc, char **argv);
    const char *args; /* for the usage message */
};

/* One "folioctl: ..." line on stderr; formatted first so that it is written in one piece. */
__attribute__((format(printf, 1, 2))) static void folioctl_err(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "folioctl: %s\n", msg);
}

__attribute__((format(printf, 1, 2))) static int folioctl_usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "folioctl: %s\nTry 'folioctl --help'.\n", msg);
    return FOLIOCTL_EXIT_USAGE;
}

static void folioctl_usage(FILE *out)
{
    fprintf(out,
            "Usage: folioctl [OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "Commands:\n"
            "  ping                  round trip to the server and its database status\n"
            "  info                  server name, version, TLS and who the server thinks you are\n"
            "  login                 check --user's credentials and show the session\n"
            "  call METHOD [PARAMS]  call any method; PARAMS is a JSON object or array, or - for\n"
            "                        standard input (logs in first when --user is given)\n"
            "  import FILE           load a hotel set-up document (setup.import; needs --user,\n"
            "                        an admin); FILE - reads standard input\n"
            "\n"
            "Front desk (need --user; AMOUNTs in major units: 25.50, -5):\n"
            "  checkin ROOM --first NAME --last NAME --departure DATE [--rate AMOUNT]\n"
            "          [--rate-code C] [--adults N] [--children N] [--credit-limit AMOUNT]\n"
            "          [--group CODE [--no-master]] [--no-post] [--email E] [--phone P]\n"
            "          [--guest-id ID] [--share-with STAY_ID] [--notes TEXT] [--property P]\n"
            "  stay STAY_ID          a stay with its folio windows and routing\n"
            "  stays [--view in_house|arrivals|due_out|checked_out] [--date DATE] [--property P]\n"
            "  stay-update STAY_ID [--departure DATE] [--rate AMOUNT] [--rate-code C]\n"
            "          [--credit-limit AMOUNT|none] [--no-post yes|no] [--adults N]\n"
            "          [--children N] [--notes TEXT]\n"
            "  move STAY_ID ROOM     change room\n"
            "  checkout STAY_ID [--pay METHOD:AMOUNT[:WINDOW]]...\n"
            "  reinstate STAY_ID     undo today's checkout (manager)\n"
            "  folio FOLIO_ID        a folio's postings and balance\n"
            "  folios [--type T] [--status S] [--stay STAY_ID] [--property P]\n"
            "  open TYPE [--name NAME] [--stay STAY_ID] [--property P]\n"
            "                        non_guest, employee, control, semi_permanent, permanent,\n"
            "                        or individual --stay ID (the stay's next window)\n"
            "  close FOLIO_ID | reopen FOLIO_ID\n"
            "  post (--folio ID | --stay ID [--window W]) CODE AMOUNT [--qty N] [--desc TEXT]\n"
            "          [--ref REF]\n"
            "  pay (--folio ID | --stay ID [--window W]) METHOD AMOUNT [--ref REF] [--desc TEXT]\n"
            "                        METHOD: cash, card, deposit, bank_transfer or a payment code\n"
            "  void POSTING_ID [--reason TEXT]\n"
            "  adjust POSTING_ID --reason TEXT [--amount AMOUNT]   (manager; a closed day)\n"
            "  transfer POSTING_ID... (--to-folio ID | --to-window W) [--reason TEXT]\n"
            "  transfer-balance FROM_FOLIO TO_FOLIO [--amount AMOUNT] [--reason TEXT]\n"
            "  route STAY_ID (--code C | --department D) (--to-folio ID | --to-window W |\n"
            "          --to-master)\n"
            "  unroute RULE_ID | routes STAY_ID\n"
            "  group-create CODE NAME --departure DATE [--arrival DATE] [--credit-limit AMOUNT]\n"
            "          [--property P]\n"
            "  group GROUP_ID|CODE [--property P]\n"
            "  group-checkout GROUP_ID [--pay METHOD:AMOUNT]...\n"
            "  statement FOLIO_ID [--html | --pdf] [-o FILE]\n"
            "  close-day [--property P]   close the business date (manager)\n"
            "\n"
            "Cashier shifts and city ledger (docs/cashier.md):\n"
            "  shift-open [--float AMOUNT] [--property P]   open your cashier shift\n"
            "  shift-close DECLARED [--shift SHIFT_ID] [--note TEXT] [--lines]\n"
            "                        close it with the cash counted; prints the shift report\n"
            "  shift-report [SHIFT_ID | --cashier USER] [--lines]\n"
            "  ar-create CODE NAME [--kind company|agency] [--credit-limit AMOUNT]\n"
            "          [--contact NAME] [--email E] [--phone P] [--address A] [--tax-id T]\n"
            "          [--notes TEXT] [--property P]   (manager)\n"
            "  ar ACCOUNT_ID|CODE [--property P]   an account with its invoices and payments\n"
            "  ars [--property P]    the city-ledger accounts\n"
            "  ar-transfer FOLIO_ID ACCOUNT [--amount AMOUNT] [--ref REF]\n"
            "  ar-pay ACCOUNT METHOD AMOUNT [--ref REF] [--alloc INVOICE_ID:AMOUNT]...\n"
            "          [--property P]\n"
            "  aging [--account CODE] [--date DATE] [--property P]\n"
            "\n"
            "Night audit (need --user: an auditor or a manager; docs/audit.md):\n"
            "  audit run [--property P]      run (or resume) the audit of the open date and\n"
            "                                show its progress until it ends\n"
            "  audit status [--property P]   the current or last audit, step by step\n"
            "  audit report DATE KIND [--csv FILE | --html FILE] [--property P]\n"
            "                        a stored report of a closed date: precheck, trial_balance,\n"
            "                        revenue, payments, guest_ledger, city_ledger, deposits,\n"
            "                        cashier, room_stats, no_shows, high_balance\n"
            "\n"
            "Options:\n"
            "  --host HOST           server host (FOLIOD_HOST, default %s)\n"
            "  --port PORT           server port (FOLIOD_PORT, default %d)\n"
            "  --ca FILE             CA certificate for the server (FOLIOD_CA, default %s)\n"
            "  --cert FILE           client certificate (POS outlets)\n"
            "  --key FILE            its private key\n"
            "  --user USER           log in as USER\n"
            "  --password-file FILE  read the password from the first line of FILE\n"
            "                        (else FOLIOCTL_PASSWORD, else a prompt on the terminal)\n"
            "  --timeout MS          connect and per-request timeout (default %d)\n"
            "  --json                print the raw JSON result (errors: the error object)\n"
            "  -h, --help            this help\n"
            "\n"
            "Exit status: 0 ok, 1 error answered by the server, 2 usage, 3 connection/TLS.\n",
            CLIENT_DEFAULT_HOST, CLIENT_DEFAULT_PORT, CLIENT_DEFAULT_CA_FILE,
            CLIENT_DEFAULT_TIMEOUT_MS);
}

static bool folioctl_parse_uint(const char *s, unsigned long min, unsigned long max,
                                unsigned long *out)
{
    char *end;
    unsigned long v;

    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* ---- password ---- */

static int folioctl_tty_fd = -1;
static struct termios folioctl_tty_saved;

/* Put the terminal back before dying of a signal that arrived during the prompt. */
static void folioctl_tty_signal_cb(int sig)
{
    if (folioctl_tty_fd >= 0)
        (void)tcsetattr(folioctl_tty_fd, TCSAFLUSH, &folioctl_tty_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void folioctl_wipe_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

static void folioctl_chomp(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static bool folioctl_password_from_file(struct folioctl *ctl)
{
    FILE *f = fopen(ctl->password_file, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (f == NULL) {
        folioctl_err("cannot read password file %s: %s", ctl->password_file, strerror(errno));
        return false;
    }
    n = getline(&line, &cap, f);
    fclose(f);
    if (n < 0) {
        free(line);
        folioctl_err("password file %s is empty", ctl->password_file);
        return false;
    }
    folioctl_chomp(line);
    ctl->password = line;
    return true;
}

static bool folioctl_password_prompt(struct folioctl *ctl)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
    struct sigaction sa, old[sizeof(sigs) / sizeof(sigs[0])];
    struct termios quiet;
    char *buf;
    size_t len = 0;
    bool ok = false;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);

    if (fd < 0 || tcgetattr(fd, &folioctl_tty_saved) != 0) {
        if (fd >= 0)
            close(fd);
        folioctl_err("no password: set FOLIOCTL_PASSWORD, use --password-file, or run on a "
                     "terminal");
        return false;
    }
    buf = calloc(1, FOLIOCTL_PASSWORD_MAX);
    if (buf == NULL) {
        close(fd);
        folioctl_err("out of memory");
        return false;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = folioctl_tty_signal_cb;
    sigemptyset(&sa.sa_mask);
    folioctl_tty_fd = fd;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, &old[i]);

    quiet = folioctl_tty_saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ICANON;
    dprintf(fd, "Password for %s: ", ctl->user);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        folioctl_err("cannot turn off echo on the terminal: %s", strerror(errno));
        goto out;
    }
    for (;;) {
        char ch;
        ssize_t n = read(fd, &ch, 1);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || ch == '\n')
            break;
        if (len + 1 >= FOLIOCTL_PASSWORD_MAX) {
            folioctl_err("password longer than %d bytes", FOLIOCTL_PASSWORD_MAX - 1);
            goto restore;
        }
        buf[len++] = ch;
    }
    folioctl_chomp(buf);
    ok = true;
restore:
    (void)tcsetattr(fd, TCSAFLUSH, &folioctl_tty_saved);
    (void)!write(fd, "\n", 1);
out:
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &old[i], NULL);
    folioctl_tty_fd = -1;
    close(fd);
    if (ok)
        ctl->password = buf;
    else
        folioctl_wipe_free(buf);
    return ok;
}

static bool folioctl_read_password(struct folioctl *ctl)
{
    const char *env = getenv("FOLIOCTL_PASSWORD");

    if (ctl->password_file != NULL)
        return folioctl_password_from_file(ctl);
    if (env != NULL) {
        ctl->password = strdup(env);
        if (ctl->password == NULL)
            folioctl_err("out of memory");
        return ctl->password != NULL;
    }
    return folioctl_password_prompt(ctl);
}

/* ---- output ---- */

static void folioctl_pad(size_t n)
{
    while (n-- > 0)
        putchar(' ');
}

static bool folioctl_is_scalar(const json_t *v)
{
    return !json_is_object(v) && !json_is_array(v);
}

/* A scalar as text: strings bare, the rest as JSON (null prints as "-"). Caller frees. */
static char *folioctl_scalar_text(const json_t *v)
{
    char *raw, *text;

    if (json_is_string(v))
        return fmt_sanitize(json_string_value(v));
    if (json_is_null(v))
        return strdup("-");
    raw = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (raw == NULL)
        return NULL;
    text = fmt_sanitize(raw);
    free(raw);
    return text;
}

/* A value in one line: scalars as text, arrays of scalars joined by ", ", objects with a
 * "code" as CODE (name), anything else as compact JSON. Caller frees. */
static char *folioctl_value_text(const json_t *v)
{
    size_t i;
    json_t *el;
    char *acc = NULL;

    if (folioctl_is_scalar(v))
        return folioctl_scalar_text(v);
    if (!json_is_array(v)) {
        char *raw = json_dumps(v, JSON_COMPACT);
        char *text = raw != NULL ? fmt_sanitize(raw) : NULL;

        free(raw);
        return text;
    }
    if (json_array_size(v) == 0)
        return strdup("-");
    json_array_foreach (v, i, el) {
        const char *code = json_string_value(json_object_get(el, "code"));
        const char *name = json_string_value(json_object_get(el, "name"));
        char *part, *next;
        int n;

        if (code != NULL && name != NULL) {
            char *raw;

            part = NULL;
            if (asprintf(&raw, "%s (%s)", code, name) >= 0) {
                part = fmt_sanitize(raw);
                free(raw);
            }
        } else if (code != NULL) {
            part = fmt_sanitize(code);
        } else {
            part = folioctl_value_text(el);
        }
        if (part == NULL) {
            free(acc);
            return NULL;
        }
        n = asprintf(&next, "%s%s%s", acc != NULL ? acc : "", acc != NULL ? ", " : "", part);
        free(part);
        free(acc);
        if (n < 0)
            return NULL;
        acc = next;
    }
    return acc;
}

struct folioctl_kv {
    char **keys;
    char **values;
    size_t n;
    size_t cap;
    bool failed; /* folioctl_kv_put() ran out of memory */
};

static bool folioctl_kv_add(struct folioctl_kv *kv, const char *key, char *value)
{
    if (value == NULL)
        return false;
    if (kv->n == kv->cap) {
        size_t cap = kv->cap == 0 ? 16 : 2 * kv->cap;
        char **k = realloc(kv->keys, cap * sizeof(*k));

        if (k == NULL) {
            free(value);
            return false;
        }
        kv->keys = k;
        k = realloc(kv->values, cap * sizeof(*k));
        if (k == NULL) {
            free(value);
            return false;
        }
        kv->values = k;
        kv->cap = cap;
    }
    kv->keys[kv->n] = fmt_sanitize(key);
    if (kv->keys[kv->n] == NULL) {
        free(value);
        return false;
    }
    kv->values[kv->n++] = value;
    return true;
}

/* Flatten an object into key/value lines, nested objects as "outer.inner". */
static bool folioctl_kv_flatten(struct folioctl_kv *kv, const char *prefix, const json_t *obj)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)obj, key, v) {
        char *full = NULL;
        bool ok;

        if (asprintf(&full, "%s%s%s", prefix, prefix[0] != '\0' ? "." : "", key) < 0)
            return false;
        if (json_is_object(v) && json_object_size(v) > 0)
            ok = folioctl_kv_flatten(kv, full, v);
        else
            ok = folioctl_kv_add(kv, full, folioctl_value_text(v));
        free(full);
        if (!ok)
            return false;
    }
    return true;
}

static void folioctl_kv_free(struct folioctl_kv *kv)
{
    for (size_t i = 0; i < kv->n; i++) {
        free(kv->keys[i]);
        free(kv->values[i]);
    }
    free(kv->keys);
    free(kv->values);
}

static void folioctl_kv_print(const struct folioctl_kv *kv)
{
    size_t width = 0;

    for (size_t i = 0; i < kv->n; i++)
        if (fmt_width(kv->keys[i]) > width)
            width = fmt_width(kv->keys[i]);
    for (size_t i = 0; i < kv->n; i++) {
        printf("%s:", kv->keys[i]);
        folioctl_pad(width - fmt_width(kv->keys[i]) + 1);
        printf("%s\n", kv->values[i]);
    }
}

/* Aligned "key: value" lines for an object; extra (may be NULL) adds lines in front. */
static bool folioctl_print_object(const json_t *obj, const char *extra_key, const char *extra)
{
    struct folioctl_kv kv = {0};
    bool ok = true;

    if (extra_key != NULL)
        ok = folioctl_kv_add(&kv, extra_key, strdup(extra));
    ok = ok && folioctl_kv_flatten(&kv, "", obj);
    if (ok)
        folioctl_kv_print(&kv);
    folioctl_kv_free(&kv);
    return ok;
}

static void folioctl_print_json(const json_t *v, size_t flags)
{
    char *text = json_dumps(v, flags | JSON_ENCODE_ANY);

    if (text != NULL)
        printf("%s\n", text);
    free(text);
}

/* An "items" array of flat objects, printable as a table. */
static bool folioctl_is_table(const json_t *result)
{
    json_t *items = json_object_get(result, "items");
    size_t i;
    json_t *it;

    if (!json_is_array(items))
        return false;
    json_array_foreach (items, i, it) {
        const char *key;
        json_t *v;

        if (!json_is_object(it))
            return false;
        json_object_foreach (it, key, v) {
            if (!folioctl_is_scalar(v))
                return false;
        }
    }
    return true;
}

static bool folioctl_print_table(const json_t *result)
{
    json_t *items = json_object_get(result, "items");
    size_t rows = json_array_size(items), ncols = 0, i;
    const char **cols = NULL;
    size_t *width = NULL;
    bool *numeric = NULL;
    char **cells = NULL;
    bool ok = false;
    json_t *it, *v;
    const char *key;
    struct folioctl_kv rest = {0};

    /* columns: every key, in order of first appearance */
    json_array_foreach (items, i, it) {
        json_object_foreach (it, key, v) {
            size_t c;

            for (c = 0; c < ncols && strcmp(cols[c], key) != 0; c++)
                ;
            if (c == ncols) {
                const char **p = realloc(cols, (ncols + 1) * sizeof(*p));

                if (p == NULL)
                    goto out;
                cols = p;
                cols[ncols++] = key;
            }
        }
    }
    width = calloc(ncols + 1, sizeof(*width));
    numeric = calloc(ncols + 1, sizeof(*numeric));
    cells = calloc(rows * ncols + 1, sizeof(*cells));
    if (width == NULL || numeric == NULL || cells == NULL)
        goto out;
    for (size_t c = 0; c < ncols; c++) {
        width[c] = fmt_width(cols[c]);
        numeric[c] = true;
    }
    json_array_foreach (items, i, it) {
        for (size_t c = 0; c < ncols; c++) {
            char **cell = &cells[i * ncols + c];

            v = json_object_get(it, cols[c]);
            *cell = v != NULL ? folioctl_scalar_text(v) : strdup("");
            if (*cell == NULL)
                goto out;
            if (v != NULL && !json_is_number(v) && !json_is_null(v))
                numeric[c] = false;
            if (fmt_width(*cell) > width[c])
                width[c] = fmt_width(*cell);
        }
    }

    if (rows == 0) {
        printf("(no items)\n");
    } else {
        for (size_t c = 0; c < ncols; c++) {
            size_t pad = width[c] - fmt_width(cols[c]);

            if (numeric[c])
                folioctl_pad(pad);
            fputs(cols[c], stdout);
            if (c + 1 < ncols)
                folioctl_pad((numeric[c] ? 0 : pad) + 2);
        }
        putchar('\n');
        for (size_t c = 0; c < ncols; c++) {
            for (size_t k = 0; k < width[c]; k++)
                putchar('-');
            if (c + 1 < ncols)
                folioctl_pad(2);
        }
        putchar('\n');
        for (size_t r = 0; r < rows; r++) {
            for (size_t c = 0; c < ncols; c++) {
                const char *cell = cells[r * ncols + c];
                size_t pad = width[c] - fmt_width(cell);

                if (numeric[c])
                    folioctl_pad(pad);
                fputs(cell, stdout);
                if (c + 1 < ncols)
                    folioctl_pad((numeric[c] ? 0 : pad) + 2);
            }
            putchar('\n');
        }
        printf("(%zu item%s)\n", rows, rows == 1 ? "" : "s");
    }

    /* the result's other members (a total, a business date) below the table */
    json_object_foreach ((json_t *)result, key, v) {
        if (strcmp(key, "items") != 0 && !folioctl_kv_add(&rest, key, folioctl_value_text(v)))
            goto out;
    }
    folioctl_kv_print(&rest);
    ok = true;
out:
    if (cells != NULL)
        for (size_t k = 0; k < rows * ncols; k++)
            free(cells[k]);
    free(cells);
    free(numeric);
    free(width);
    free(cols);
    folioctl_kv_free(&rest);
    return ok;
}

static int folioctl_print_result(const struct folioctl *ctl, const json_t *result)
{
    bool ok = true;

    if (ctl->json)
        folioctl_print_json(result, JSON_COMPACT);
    else if (folioctl_is_table(result))
        ok = folioctl_print_table(result);
    else
        folioctl_print_json(result, JSON_INDENT(2));
    if (!ok) {
        folioctl_err("out of memory printing the result");
        return FOLIOCTL_EXIT_CONN;
    }
    return FOLIOCTL_EXIT_OK;
}

/* ---- calls ---- */

static int folioctl_transport_error(const struct folioctl *ctl)
{
    folioctl_err("%s", client_error(ctl->client));
    return client_error_kind(ctl->client) == CLIENT_ERR_USAGE ? FOLIOCTL_EXIT_USAGE
                                                              : FOLIOCTL_EXIT_CONN;
}

static int folioctl_rpc_error(const struct folioctl *ctl, const json_t *response)
{
    struct client_rpc_error e;

    if (!client_response_error(response, &e)) {
        folioctl_err("the server sent a response without a result or an error");
        return FOLIOCTL_EXIT_CONN;
    }
    if (ctl->json)
        folioctl_print_json(json_object_get(response, "error"), JSON_COMPACT);
    fprintf(stderr, "folioctl: ");
    if (e.reason != NULL)
        fprintf(stderr, "%s: %s", e.reason, e.message);
    else
        fprintf(stderr, "error %" JSON_INTEGER_FORMAT ": %s", e.code, e.message);
    if (e.field != NULL && strstr(e.message, e.field) == NULL)
        fprintf(stderr, " (parameter %s)", e.field);
    if (e.retryable)
        fprintf(stderr, " (temporary: try again)");
    fputc('\n', stderr);
    return FOLIOCTL_EXIT_RPC;
}

/* Call method; on success *result is a new reference. On failure the error is printed and the
 * exit status returned. params is borrowed. */
static int folioctl_call(struct folioctl *ctl, const char *method, json_t *params, json_t **result)
{
    json_t *response = NULL, *r;
    int rc;

    *result = NULL;
    if (!client_call(ctl->client, method, params, &response))
        return folioctl_transport_error(ctl);
    r = client_response_result(response);
    if (r == NULL) {
        rc = folioctl_rpc_error(ctl, response);
        json_decref(response);
        return rc;
    }
    *result = json_incref(r);
    json_decref(response);
    return FOLIOCTL_EXIT_OK;
}

static int folioctl_login(struct folioctl *ctl, json_t **result)
{
    json_t *params = json_pack("{s:s, s:s}", "user", ctl->user, "password", ctl->password);
    int rc;

    if (params == NULL) {
        folioctl_err("user name or password is not valid UTF-8");
        return FOLIOCTL_EXIT_USAGE;
    }
    rc = folioctl_call(ctl, "session.login", params, result);
    json_decref(params);
    return rc;
}

/* ---- commands ---- */

static int64_t folioctl_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void folioctl_endpoint(const struct folioctl *ctl, char *buf, size_t len)
{
    bool v6 = strchr(ctl->copts.host, ':') != NULL;

    snprintf(buf, len, "%s%s%s:%u", v6 ? "[" : "", ctl->copts.host, v6 ? "]" : "", ctl->copts.port);
}

static int folioctl_cmd_ping(struct folioctl *ctl, int argc, char **argv)
{
    json_t *result;
    int64_t start_us = folioctl_now_us(), latency_us;
    int rc = folioctl_call(ctl, "server.ping", NULL, &result);
    const char *db;
    char endpoint[300];

    (void)argc;
    (void)argv;
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    latency_us = folioctl_now_us() - start_us;
    if (ctl->json) {
        folioctl_print_json(result, JSON_COMPACT);
    } else {
        db = json_string_value(json_object_get(result, "db"));
        folioctl_endpoint(ctl, endpoint, sizeof(endpoint));
        printf("%s from %s in %lld.%lld ms, database %s\n",
               json_is_true(json_object_get(result, "pong")) ? "pong" : "answer", endpoint,
               (long long)(latency_us / 1000), (long long)(latency_us % 1000 / 100),
               db != NULL ? db : "unknown");
    }
    json_decref(result);
    return FOLIOCTL_EXIT_OK;
}

static int folioctl_cmd_info(struct folioctl *ctl, int argc, char **argv)
{
    json_t *result;
    int rc = folioctl_call(ctl, "server.info", NULL, &result);
    char endpoint[300];

    (void)argc;
    (void)argv;
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (ctl->json) {
        folioctl_print_json(result, JSON_COMPACT);
    } else if (json_is_object(result)) {
        folioctl_endpoint(ctl, endpoint, sizeof(endpoint));
        if (!folioctl_print_object(result, "server", endpoint)) {
            folioctl_err("out of memory printing the result");
            rc = FOLIOCTL_EXIT_CONN;
        }
    } else {
        folioctl_print_json(result, JSON_INDENT(2));
    }
    json_decref(result);
    return rc;
}

static int folioctl_cmd_login(struct folioctl *ctl, int argc, char **argv)
{
    json_t *result;
    int rc = folioctl_login(ctl, &result);

    (void)argc;
    (void)argv;
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (ctl->json) {
        folioctl_print_json(result, JSON_COMPACT);
    } else if (json_is_object(result)) {
        if (!folioctl_print_object(result, NULL, NULL)) {
            folioctl_err("out of memory printing the result");
            rc = FOLIOCTL_EXIT_CONN;
        }
    } else {
        folioctl_print_json(result, JSON_INDENT(2));
    }
    json_decref(result);
    return rc;
}

/* Parse a JSON document from a string, a file, or standard input ("-"). NULL after printing
 * an error. */
static json_t *folioctl_load_json(const char *what, const char *text, const char *path)
{
    json_error_t jerr;
    json_t *doc;

    if (text != NULL)
        doc = json_loads(text, 0, &jerr);
    else if (strcmp(path, "-") == 0)
        doc = json_loadf(stdin, 0, &jerr);
    else
        doc = json_load_file(path, 0, &jerr);
    if (doc == NULL) {
        if (text != NULL)
            folioctl_err("%s: not a JSON object or array: %s (column %d)", what, jerr.text,
                         jerr.column);
        else
            folioctl_err("%s %s: %s (line %d, column %d)", what, path, jerr.text, jerr.line,
                         jerr.column);
        return NULL;
    }
    return doc;
}

static int folioctl_cmd_call(struct folioctl *ctl, int argc, char **argv)
{
    json_t *params = NULL, *result;
    int rc;

    if (argc > 1) {
        bool from_stdin = strcmp(argv[1], "-") == 0;

        params = folioctl_load_json("parameters", from_stdin ? NULL : argv[1], argv[1]);
        if (params == NULL)
            return FOLIOCTL_EXIT_USAGE;
        if (!json_is_object(params) && !json_is_array(params)) {
            json_decref(params);
            return folioctl_usage_error("parameters must be a JSON object or array");
        }
    }
    rc = folioctl_call(ctl, argv[0], params, &result);
    json_decref(params);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    rc = folioctl_print_result(ctl, result);
    json_decref(result);
    return rc;
}

static int folioctl_cmd_import(struct folioctl *ctl, int argc, char **argv)
{
    json_t *doc, *result;
    int rc;

    (void)argc;
    doc = folioctl_load_json("set-up file", NULL, argv[0]);
    if (doc == NULL)
        return FOLIOCTL_EXIT_USAGE;
    if (!json_is_object(doc)) {
        json_decref(doc);
        folioctl_err("set-up file %s: the document must be a JSON object", argv[0]);
        return FOLIOCTL_EXIT_USAGE;
    }
    rc = folioctl_call(ctl, "setup.import", doc, &result);
    json_decref(doc);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    rc = folioctl_print_result(ctl, result);
    json_decref(result);
    return rc;
}

static int folioctl_cmd_audit(struct folioctl *ctl, int argc, char **argv);

static const struct folioctl_command folioctl_commands[] = {
    {"ping", 0, 0, false, false, folioctl_cmd_ping, ""},
    {"info", 0, 0, false, true, folioctl_cmd_info, ""},
    {"login", 0, 0, true, false, folioctl_cmd_login, ""},
    {"call", 1, 2, false, true, folioctl_cmd_call, " METHOD [PARAMS]"},
    {"import", 1, 1, true, true, folioctl_cmd_import, " FILE"},
    {"audit", 1, 6, true, true, folioctl_cmd_audit,
     " run|status [--property P] | audit report DATE KIND [--csv FILE | --html FILE]"},
};

/* ---- accounting subcommands (docs/accounting.md) ----
 *
 * Each subcommand is one method call: an entry of folioctl_ops names the method, the options
 * (fmt_args_scan), how many positional arguments it takes, a build function that turns the
 * arguments into params, and a show function that prints the result for a person. The build
 * runs twice: once before connecting, with the currency unknown, so that a typo is a usage error
 * before any network traffic; then with the property's minor units from server.info, which
 * decide how many decimals an amount may have. */

#define FOLIOCTL_ID_MAX 9007199254740991LL /* ids are JSON-safe integers */

struct folioctl_op {
    const char *name;
    const char *method;
    int min_pos;
    int max_pos;
    const struct fmt_option *opts;
    bool (*build)(struct folioctl *ctl, json_t *params);
    int (*show)(struct folioctl *ctl, const json_t *result);
    const char *usage; /* the arguments, for the usage message */
};

/* -- the scanned arguments -- */

static int folioctl_opt_index(const struct folioctl *ctl, const char *name)
{
    for (int k = 0; ctl->op->opts != NULL && ctl->op->opts[k].name != NULL; k++)
        if (strcmp(ctl->op->opts[k].name, name) == 0)
            return k;
    return -2; /* not an option of this command: matches nothing */
}

/* The value of option name (the last one given), or NULL when absent. */
static const char *folioctl_opt(const struct folioctl *ctl, const char *name)
{
    int k = folioctl_opt_index(ctl, name);
    const char *v = NULL;

    for (size_t i = 0; i < ctl->nargs; i++)
        if (ctl->args[i].opt == k)
            v = ctl->args[i].value;
    return v;
}

static bool folioctl_flag(const struct folioctl *ctl, const char *name)
{
    int k = folioctl_opt_index(ctl, name);

    for (size_t i = 0; i < ctl->nargs; i++)
        if (ctl->args[i].opt == k)
            return true;
    return false;
}

static size_t folioctl_npos(const struct folioctl *ctl)
{
    size_t n = 0;

    for (size_t i = 0; i < ctl->nargs; i++)
        n += ctl->args[i].opt < 0;
    return n;
}

/* The i-th positional argument, or NULL. */
static const char *folioctl_pos(const struct folioctl *ctl, size_t i)
{
    for (size_t k = 0; k < ctl->nargs; k++)
        if (ctl->args[k].opt < 0 && i-- == 0)
            return ctl->args[k].value;
    return NULL;
}

/* -- params from arguments: each prints its own usage error and returns false -- */

__attribute__((format(printf, 1, 2))) static bool folioctl_bad(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    folioctl_err("%s", msg);
    return false;
}

static bool folioctl_put(json_t *params, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(params, key, value) != 0)
        return folioctl_bad("out of memory");
    return true;
}

static bool folioctl_put_str(json_t *params, const char *key, const char *what, const char *s)
{
    json_t *v = json_string(s);

    if (v == NULL)
        return folioctl_bad("%s is not valid UTF-8", what);
    return folioctl_put(params, key, v);
}

static bool folioctl_parse_id(const char *what, const char *s, json_int_t *out)
{
    int64_t v;

    if (!fmt_parse_int(s, 1, FOLIOCTL_ID_MAX, &v))
        return folioctl_bad("%s '%s' is not an id (a positive whole number)", what, s);
    *out = (json_int_t)v;
    return true;
}

static bool folioctl_put_id(json_t *params, const char *key, const char *what, const char *s)
{
    json_int_t id = 0;

    return folioctl_parse_id(what, s, &id) && folioctl_put(params, key, json_integer(id));
}

static bool folioctl_put_int(json_t *params, const char *key, const char *what, const char *s,
                             int64_t min, int64_t max)
{
    int64_t v;

    if (!fmt_parse_int(s, min, max, &v))
        return folioctl_bad("%s '%s' is not a whole number from %lld to %lld", what, s,
                            (long long)min, (long long)max);
    return folioctl_put(params, key, json_integer((json_int_t)v));
}

static bool folioctl_put_date(json_t *params, const char *key, const char *what, const char *s)
{
    if (!fmt_is_date(s))
        return folioctl_bad("%s '%s' is not a date (YYYY-MM-DD)", what, s);
    return folioctl_put_str(params, key, what, s);
}

/* Explain a refused amount; the currency's decimals only once they are known. */
static bool folioctl_amount_error(const struct folioctl *ctl, const char *what, const char *s,
                                  enum fmt_status st)
{
    char limit[FMT_MONEY_LEN];

    switch (st) {
    case FMT_DECIMALS:
        if (!ctl->currency_known)
            return folioctl_bad("%s '%s': too many decimals", what, s);
        if (ctl->minor_units == 0)
            return folioctl_bad("%s '%s': %s amounts have no decimals", what, s, ctl->currency);
        return folioctl_bad("%s '%s': at most %u decimal%s for %s", what, s, ctl->minor_units,
                            ctl->minor_units == 1 ? "" : "s", ctl->currency);
    case FMT_RANGE:
        return folioctl_bad("%s '%s' is beyond the largest amount, %s", what, s,
                            fmt_money(limit, RPC_AMOUNT_LIMIT, ctl->minor_units));
    default:
        return folioctl_bad("%s '%s' is not an amount (write it like 25.50 or -5)", what, s);
    }
}

/* An amount in major units ("25.50") as minor units. Before the currency is known only the
 * form is checked (any number of decimals up to the maximum a currency can have). */
static bool folioctl_parse_amount(const struct folioctl *ctl, const char *what, const char *s,
                                  bool negative_ok, int64_t *out)
{
    enum fmt_status st;

    if (ctl->currency_known)
        st = fmt_parse_amount(s, ctl->minor_units, RPC_AMOUNT_LIMIT, out);
    else
        st = fmt_parse_amount(s, FMT_MAX_MINOR_UNITS, INT64_MAX, out);
    if (st != FMT_OK)
        return folioctl_amount_error(ctl, what, s, st);
    if (!negative_ok && *out < 0)
        return folioctl_bad("%s '%s' may not be negative", what, s);
    return true;
}

static bool folioctl_put_amount(const struct folioctl *ctl, json_t *params, const char *key,
                                const char *what, const char *s, bool negative_ok)
{
    int64_t v;

    return folioctl_parse_amount(ctl, what, s, negative_ok, &v) &&
           folioctl_put(params, key, json_integer((json_int_t)v));
}

/* Options that map one to one onto a parameter; absent options are left out. */
enum folioctl_kind { FK_STR, FK_ID, FK_DATE, FK_AMOUNT, FK_COUNT };

struct folioctl_map {
    const char *opt;
    const char *key;
    enum folioctl_kind kind;
    int64_t min, max; /* FK_COUNT */
};

static bool folioctl_put_opts(const struct folioctl *ctl, json_t *params,
                              const struct folioctl_map *map)
{
    for (; map->opt != NULL; map++) {
        const char *v = folioctl_opt(ctl, map->opt);
        char what[64];
        bool ok = true;

        if (v == NULL)
            continue;
        snprintf(what, sizeof(what), "--%s", map->opt);
        switch (map->kind) {
        case FK_STR:
            ok = folioctl_put_str(params, map->key, what, v);
            break;
        case FK_ID:
            ok = folioctl_put_id(params, map->key, what, v);
            break;
        case FK_DATE:
            ok = folioctl_put_date(params, map->key, what, v);
            break;
        case FK_AMOUNT:
            ok = folioctl_put_amount(ctl, params, map->key, what, v, false);
            break;
        case FK_COUNT:
            ok = folioctl_put_int(params, map->key, what, v, map->min, map->max);
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* The target of a posting or payment: --folio ID, or --stay ID with an optional --window. */
static bool folioctl_put_target(const struct folioctl *ctl, json_t *params)
{
    const char *folio = folioctl_opt(ctl, "folio"), *stay = folioctl_opt(ctl, "stay");
    const char *window = folioctl_opt(ctl, "window");

    if ((folio == NULL) == (stay == NULL))
        return folioctl_bad("give either --folio ID or --stay ID");
    if (folio != NULL && window != NULL)
        return folioctl_bad("--window goes with --stay, not with --folio");
    if (folio != NULL)
        return folioctl_put_id(params, "folio_id", "--folio", folio);
    return folioctl_put_id(params, "stay_id", "--stay", stay) &&
           (window == NULL || folioctl_put_int(params, "window", "--window", window, 1, 8));
}

/* A payment method or code: the methods are lower case words, payment codes upper case. */
static bool folioctl_put_method(json_t *params, const char *what, const char *m)
{
    bool upper = false;

    for (const char *p = m; *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            upper = true;
    return folioctl_put_str(params, upper ? "code" : "method", what, m);
}

/* Every --pay METHOD:AMOUNT[:WINDOW] as a "payments" array. */
static bool folioctl_put_payments(const struct folioctl *ctl, json_t *params, bool windows)
{
    int k = folioctl_opt_index(ctl, "pay");
    json_t *payments = json_array();

    if (payments == NULL)
        return folioctl_bad("out of memory");
    for (size_t i = 0; i < ctl->nargs; i++) {
        struct fmt_payment p;
        enum fmt_status st;
        json_t *one;

        if (ctl->args[i].opt != k)
            continue;
        if (ctl->currency_known)
            st = fmt_parse_payment(ctl->args[i].value, ctl->minor_units, RPC_AMOUNT_LIMIT, &p);
        else
            st = fmt_parse_payment(ctl->args[i].value, FMT_MAX_MINOR_UNITS, INT64_MAX, &p);
        if (st == FMT_SYNTAX) {
            json_decref(payments);
            return folioctl_bad("--pay '%s' is not METHOD:AMOUNT%s (like card:360.00%s)",
                                ctl->args[i].value, windows ? "[:WINDOW]" : "",
                                windows ? " or cash:20:2" : "");
        }
        if (st != FMT_OK || (!windows && p.window != 0)) {
            json_decref(payments);
            if (st == FMT_OK)
                return folioctl_bad("--pay '%s': a group's payments go to its master folio "
                                    "(no window)",
                                    ctl->args[i].value);
            return folioctl_amount_error(ctl, "--pay", ctl->args[i].value, st);
        }
        one = json_pack("{s:I}", "amount", (json_int_t)p.amount);
        if (one == NULL || !folioctl_put_method(one, "--pay", p.method) ||
            (p.window != 0 && !folioctl_put(one, "window", json_integer(p.window))) ||
            json_array_append_new(payments, one) != 0) {
            json_decref(payments);
            return folioctl_bad("out of memory");
        }
    }
    if (json_array_size(payments) == 0) {
        json_decref(payments);
        return true;
    }
    return folioctl_put(params, "payments", payments);
}

static bool folioctl_one_of(const char *what, const char *v, const char *const *allowed)
{
    char list[256] = "";

    for (size_t i = 0; allowed[i] != NULL; i++) {
        if (strcmp(v, allowed[i]) == 0)
            return true;
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i > 0 ? ", " : "",
                 allowed[i]);
    }
    return folioctl_bad("%s '%s' is not one of: %s", what, v, list);
}

/* -- builders -- */

#define O_VAL(n)                                                                                   \
    {                                                                                              \
        n, 0, true, false                                                                          \
    }
#define O_FLAG(n)                                                                                  \
    {                                                                                              \
        n, 0, false, false                                                                         \
    }
#define O_MANY(n)                                                                                  \
    {                                                                                              \
        n, 0, true, true                                                                           \
    }
#define O_END                                                                                      \
    {                                                                                              \
        NULL, 0, false, false                                                                      \
    }

static const struct fmt_option folioctl_o_none[] = {O_END};
static const struct fmt_option folioctl_o_property[] = {O_VAL("property"), O_END};

static bool folioctl_b_property(struct folioctl *ctl, json_t *params)
{
    const char *p = folioctl_opt(ctl, "property");

    return p == NULL || folioctl_put_str(params, "property", "--property", p);
}

static bool folioctl_b_stay_id(struct folioctl *ctl, json_t *params)
{
    return folioctl_put_id(params, "stay_id", "STAY_ID", folioctl_pos(ctl, 0));
}

static bool folioctl_b_folio_id(struct folioctl *ctl, json_t *params)
{
    return folioctl_put_id(params, "folio_id", "FOLIO_ID", folioctl_pos(ctl, 0));
}

static const struct fmt_option folioctl_o_checkin[] = {
    O_VAL("first"),
    O_VAL("last"),
    O_VAL("email"),
    O_VAL("phone"),
    O_VAL("guest-id"),
    O_VAL("arrival"),
    O_VAL("departure"),
    O_VAL("rate"),
    O_VAL("rate-code"),
    O_VAL("adults"),
    O_VAL("children"),
    O_VAL("credit-limit"),
    O_VAL("group"),
    O_FLAG("no-post"),
    O_FLAG("no-master"),
    O_VAL("share-with"),
    O_VAL("notes"),
    O_VAL("property"),
    O_END,
};

static bool folioctl_b_checkin(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"guest-id", "guest_id", FK_ID, 0, 0},
        {"arrival", "arrival", FK_DATE, 0, 0},
        {"departure", "departure", FK_DATE, 0, 0},
        {"rate", "rate", FK_AMOUNT, 0, 0},
        {"rate-code", "rate_code", FK_STR, 0, 0},
        {"adults", "adults", FK_COUNT, 1, 20},
        {"children", "children", FK_COUNT, 0, 20},
        {"credit-limit", "credit_limit", FK_AMOUNT, 0, 0},
        {"group", "group", FK_STR, 0, 0},
        {"share-with", "share_with", FK_ID, 0, 0},
        {"notes", "notes", FK_STR, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };
    static const char *const guest_opts[][2] = {
        {"first", "first_name"}, {"last", "last_name"}, {"email", "email"}, {"phone", "phone"}};
    json_t *guest;

    if (folioctl_opt(ctl, "departure") == NULL)
        return folioctl_bad("checkin needs --departure YYYY-MM-DD");
    if (folioctl_opt(ctl, "guest-id") != NULL) {
        for (size_t i = 0; i < sizeof(guest_opts) / sizeof(guest_opts[0]); i++)
            if (folioctl_opt(ctl, guest_opts[i][0]) != NULL)
                return folioctl_bad("--guest-id takes the known guest's profile: leave out "
                                    "--%s",
                                    guest_opts[i][0]);
    } else {
        if (folioctl_opt(ctl, "first") == NULL || folioctl_opt(ctl, "last") == NULL)
            return folioctl_bad("checkin needs the guest: --first NAME --last NAME (or "
                                "--guest-id ID)");
        guest = json_object();
        if (!folioctl_put(params, "guest", guest))
            return false;
        for (size_t i = 0; i < sizeof(guest_opts) / sizeof(guest_opts[0]); i++) {
            const char *v = folioctl_opt(ctl, guest_opts[i][0]);
            char what[16];

            snprintf(what, sizeof(what), "--%s", guest_opts[i][0]);
            if (v != NULL && !folioctl_put_str(guest, guest_opts[i][1], what, v))
                return false;
        }
    }
    if (folioctl_opt(ctl, "no-master") != NULL && folioctl_opt(ctl, "group") == NULL)
        return folioctl_bad("--no-master goes with --group");
    return folioctl_put_str(params, "room", "ROOM", folioctl_pos(ctl, 0)) &&
           folioctl_put_opts(ctl, params, map) &&
           (!folioctl_flag(ctl, "no-post") || folioctl_put(params, "no_post", json_true())) &&
           (!folioctl_flag(ctl, "no-master") ||
            folioctl_put(params, "route_to_master", json_false()));
}

static const struct fmt_option folioctl_o_stays[] = {O_VAL("view"), O_VAL("date"),
                                                     O_VAL("property"), O_END};

static bool folioctl_b_stays(struct folioctl *ctl, json_t *params)
{
    static const char *const views[] = {"in_house", "arrivals", "due_out", "checked_out", NULL};
    static const struct folioctl_map map[] = {
        {"view", "view", FK_STR, 0, 0},
        {"date", "date", FK_DATE, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };
    const char *view = folioctl_opt(ctl, "view");

    return (view == NULL || folioctl_one_of("--view", view, views)) &&
           folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_stay_update[] = {
    O_VAL("departure"),    O_VAL("rate"),    O_VAL("rate-code"),
    O_VAL("credit-limit"), O_VAL("no-post"), O_VAL("adults"),
    O_VAL("children"),     O_VAL("notes"),   O_END,
};

static bool folioctl_b_stay_update(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"departure", "departure", FK_DATE, 0, 0},
        {"rate", "rate", FK_AMOUNT, 0, 0},
        {"rate-code", "rate_code", FK_STR, 0, 0},
        {"adults", "adults", FK_COUNT, 1, 20},
        {"children", "children", FK_COUNT, 0, 20},
        {"notes", "notes", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };
    const char *limit = folioctl_opt(ctl, "credit-limit"), *no_post = folioctl_opt(ctl, "no-post");

    if (!folioctl_b_stay_id(ctl, params) || !folioctl_put_opts(ctl, params, map))
        return false;
    if (limit != NULL) {
        if (strcmp(limit, "none") == 0) {
            if (!folioctl_put(params, "credit_limit", json_null()))
                return false;
        } else if (!folioctl_put_amount(ctl, params, "credit_limit", "--credit-limit", limit,
                                        false)) {
            return false;
        }
    }
    if (no_post != NULL) {
        if (strcmp(no_post, "yes") != 0 && strcmp(no_post, "no") != 0)
            return folioctl_bad("--no-post takes yes or no, not '%s'", no_post);
        if (!folioctl_put(params, "no_post", json_boolean(strcmp(no_post, "yes") == 0)))
            return false;
    }
    if (json_object_size(params) == 1)
        return folioctl_bad("stay-update: nothing to change (give --departure, --rate, "
                            "--credit-limit, --no-post, ...)");
    return true;
}

static bool folioctl_b_move(struct folioctl *ctl, json_t *params)
{
    return folioctl_b_stay_id(ctl, params) &&
           folioctl_put_str(params, "room", "ROOM", folioctl_pos(ctl, 1));
}

static const struct fmt_option folioctl_o_pay_many[] = {O_MANY("pay"), O_END};

static bool folioctl_b_checkout(struct folioctl *ctl, json_t *params)
{
    return folioctl_b_stay_id(ctl, params) && folioctl_put_payments(ctl, params, true);
}

static const struct fmt_option folioctl_o_folios[] = {O_VAL("type"), O_VAL("status"), O_VAL("stay"),
                                                      O_VAL("property"), O_END};

static bool folioctl_b_folios(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"type", "type", FK_STR, 0, 0},   {"status", "status", FK_STR, 0, 0},
        {"stay", "stay_id", FK_ID, 0, 0}, {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_open[] = {O_VAL("name"), O_VAL("stay"), O_VAL("property"),
                                                    O_END};

static bool folioctl_b_open(struct folioctl *ctl, json_t *params)
{
    static const char *const types[] = {"individual",     "non_guest", "employee", "control",
                                        "semi_permanent", "permanent", NULL};
    static const struct folioctl_map map[] = {
        {"name", "name", FK_STR, 0, 0},
        {"stay", "stay_id", FK_ID, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };
    const char *type = folioctl_pos(ctl, 0);
    bool individual = strcmp(type, "individual") == 0;

    if (!folioctl_one_of("TYPE", type, types))
        return false;
    if (individual != (folioctl_opt(ctl, "stay") != NULL))
        return folioctl_bad(individual ? "open individual needs --stay ID (the stay's next window)"
                                       : "--stay goes with the type individual");
    return folioctl_put_str(params, "type", "TYPE", type) && folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_post[] = {
    O_VAL("folio"), O_VAL("stay"), O_VAL("window"), O_VAL("qty"),
    O_VAL("desc"),  O_VAL("ref"),  O_END,
};

static bool folioctl_b_post(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"qty", "quantity", FK_COUNT, 1, 999},
        {"desc", "description", FK_STR, 0, 0},
        {"ref", "reference", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_target(ctl, params) &&
           folioctl_put_str(params, "code", "CODE", folioctl_pos(ctl, 0)) &&
           folioctl_put_amount(ctl, params, "amount", "AMOUNT", folioctl_pos(ctl, 1), true) &&
           folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_pay[] = {
    O_VAL("folio"), O_VAL("stay"), O_VAL("window"), O_VAL("desc"), O_VAL("ref"), O_END,
};

static bool folioctl_b_pay(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"desc", "description", FK_STR, 0, 0},
        {"ref", "reference", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_target(ctl, params) &&
           folioctl_put_method(params, "METHOD", folioctl_pos(ctl, 0)) &&
           folioctl_put_amount(ctl, params, "amount", "AMOUNT", folioctl_pos(ctl, 1), true) &&
           folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_reason[] = {O_VAL("reason"), O_END};

static bool folioctl_b_void(struct folioctl *ctl, json_t *params)
{
    const char *reason = folioctl_opt(ctl, "reason");

    return folioctl_put_id(params, "posting_id", "POSTING_ID", folioctl_pos(ctl, 0)) &&
           (reason == NULL || folioctl_put_str(params, "reason", "--reason", reason));
}

static const struct fmt_option folioctl_o_adjust[] = {O_VAL("reason"), O_VAL("amount"), O_END};

static bool folioctl_b_adjust(struct folioctl *ctl, json_t *params)
{
    const char *amount = folioctl_opt(ctl, "amount");

    if (folioctl_opt(ctl, "reason") == NULL)
        return folioctl_bad("adjust needs --reason TEXT");
    return folioctl_b_void(ctl, params) &&
           (amount == NULL ||
            folioctl_put_amount(ctl, params, "amount", "--amount", amount, false));
}

static const struct fmt_option folioctl_o_transfer[] = {O_VAL("to-folio"), O_VAL("to-window"),
                                                        O_VAL("reason"), O_END};

static bool folioctl_b_transfer(struct folioctl *ctl, json_t *params)
{
    const char *to_folio = folioctl_opt(ctl, "to-folio"),
               *to_window = folioctl_opt(ctl, "to-window");
    const char *reason = folioctl_opt(ctl, "reason");
    json_t *ids = json_array();

    if (!folioctl_put(params, "posting_ids", ids))
        return false;
    for (size_t i = 0; i < folioctl_npos(ctl); i++) {
        json_int_t id = 0;

        if (!folioctl_parse_id("POSTING_ID", folioctl_pos(ctl, i), &id))
            return false;
        if (json_array_append_new(ids, json_integer(id)) != 0)
            return folioctl_bad("out of memory");
    }
    if ((to_folio == NULL) == (to_window == NULL))
        return folioctl_bad("give either --to-folio ID or --to-window W");
    return (to_folio == NULL || folioctl_put_id(params, "to_folio_id", "--to-folio", to_folio)) &&
           (to_window == NULL ||
            folioctl_put_int(params, "to_window", "--to-window", to_window, 1, 8)) &&
           (reason == NULL || folioctl_put_str(params, "reason", "--reason", reason));
}

static const struct fmt_option folioctl_o_transfer_balance[] = {O_VAL("amount"), O_VAL("reason"),
                                                                O_END};

static bool folioctl_b_transfer_balance(struct folioctl *ctl, json_t *params)
{
    const char *amount = folioctl_opt(ctl, "amount"), *reason = folioctl_opt(ctl, "reason");

    return folioctl_put_id(params, "from_folio_id", "FROM", folioctl_pos(ctl, 0)) &&
           folioctl_put_id(params, "to_folio_id", "TO", folioctl_pos(ctl, 1)) &&
           (amount == NULL ||
            folioctl_put_amount(ctl, params, "amount", "--amount", amount, false)) &&
           (reason == NULL || folioctl_put_str(params, "reason", "--reason", reason));
}

static const struct fmt_option folioctl_o_route[] = {
    O_VAL("code"),      O_VAL("department"), O_VAL("to-folio"),
    O_VAL("to-window"), O_FLAG("to-master"), O_END,
};

static bool folioctl_b_route(struct folioctl *ctl, json_t *params)
{
    const char *code = folioctl_opt(ctl, "code"), *dept = folioctl_opt(ctl, "department");
    const char *to_folio = folioctl_opt(ctl, "to-folio"),
               *to_window = folioctl_opt(ctl, "to-window");
    bool to_master = folioctl_flag(ctl, "to-master");

    if ((code == NULL) == (dept == NULL))
        return folioctl_bad("give either --code CODE or --department DEPT");
    if ((to_folio != NULL) + (to_window != NULL) + to_master != 1)
        return folioctl_bad("give one of --to-folio ID, --to-window W, --to-master");
    return folioctl_b_stay_id(ctl, params) &&
           (code == NULL || folioctl_put_str(params, "code", "--code", code)) &&
           (dept == NULL || folioctl_put_str(params, "department", "--department", dept)) &&
           (to_folio == NULL || folioctl_put_id(params, "to_folio_id", "--to-folio", to_folio)) &&
           (to_window == NULL ||
            folioctl_put_int(params, "to_window", "--to-window", to_window, 1, 8)) &&
           (!to_master || folioctl_put(params, "to_master", json_true()));
}

static bool folioctl_b_unroute(struct folioctl *ctl, json_t *params)
{
    return folioctl_put_id(params, "routing_id", "RULE_ID", folioctl_pos(ctl, 0));
}

static const struct fmt_option folioctl_o_group_create[] = {
    O_VAL("departure"), O_VAL("arrival"), O_VAL("credit-limit"), O_VAL("property"), O_END};

static bool folioctl_b_group_create(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"arrival", "arrival", FK_DATE, 0, 0},
        {"departure", "departure", FK_DATE, 0, 0},
        {"credit-limit", "credit_limit", FK_AMOUNT, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    if (folioctl_opt(ctl, "departure") == NULL)
        return folioctl_bad("group-create needs --departure YYYY-MM-DD");
    return folioctl_put_str(params, "code", "CODE", folioctl_pos(ctl, 0)) &&
           folioctl_put_str(params, "name", "NAME", folioctl_pos(ctl, 1)) &&
           folioctl_put_opts(ctl, params, map);
}

static bool folioctl_b_group(struct folioctl *ctl, json_t *params)
{
    const char *g = folioctl_pos(ctl, 0);
    int64_t id;

    /* A number is the group's id, anything else its code. */
    if (fmt_parse_int(g, 1, FOLIOCTL_ID_MAX, &id))
        return folioctl_put(params, "group_id", json_integer((json_int_t)id)) &&
               folioctl_b_property(ctl, params);
    return folioctl_put_str(params, "code", "GROUP", g) && folioctl_b_property(ctl, params);
}

static bool folioctl_b_group_checkout(struct folioctl *ctl, json_t *params)
{
    return folioctl_put_id(params, "group_id", "GROUP_ID", folioctl_pos(ctl, 0)) &&
           folioctl_put_payments(ctl, params, false);
}

static const struct fmt_option folioctl_o_statement[] = {
    O_FLAG("html"), O_FLAG("pdf"), {"output", 'o', true, false}, O_END};

/* --pdf asks for the text statement and sets it as a PDF (pdf.c) in -o FILE. */
static bool folioctl_b_statement(struct folioctl *ctl, json_t *params)
{
    const char *out = folioctl_opt(ctl, "output");

    if (folioctl_flag(ctl, "pdf") && folioctl_flag(ctl, "html"))
        return folioctl_bad("statement: --html and --pdf exclude each other");
    if (folioctl_flag(ctl, "pdf") && (out == NULL || strcmp(out, "-") == 0))
        return folioctl_bad("statement: --pdf needs -o FILE");
    return folioctl_b_folio_id(ctl, params) &&
           folioctl_put_str(params, "format", "--html",
                            folioctl_flag(ctl, "html") ? "html" : "text");
}

/* -- output -- */

/* A member by a dotted path ("guest.last_name"), or NULL. */
static json_t *folioctl_get(const json_t *obj, const char *path)
{
    char key[64];
    const char *dot;

    while (obj != NULL && (dot = strchr(path, '.')) != NULL) {
        size_t n = (size_t)(dot - path);

        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        obj = json_object_get(obj, key);
        path = dot + 1;
    }
    return obj != NULL ? json_object_get(obj, path) : NULL;
}

/* A scalar for a person: strings as they are, numbers, yes/no, and "" for null or absent.
 * Writes into buf (len bytes) and returns it; control characters are replaced when the text
 * is printed (fmt_table_add, folioctl_kv_put). */
static const char *folioctl_text(const json_t *obj, const char *path, char *buf, size_t len)
{
    const json_t *v = folioctl_get(obj, path);

    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
    else if (v != NULL && !json_is_null(v)) {
        char *raw = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

        snprintf(buf, len, "%s", raw != NULL ? raw : "?");
        free(raw);
    } else
        buf[0] = '\0';
    return buf;
}

/* An amount member as money ("11.66"); "" when absent or null. buf: FMT_MONEY_LEN bytes. */
static const char *folioctl_money(const struct folioctl *ctl, const json_t *obj, const char *path,
                                  char *buf)
{
    const json_t *v = folioctl_get(obj, path);

    if (json_is_integer(v))
        return fmt_money(buf, (int64_t)json_integer_value(v), ctl->minor_units);
    return folioctl_text(obj, path, buf, FMT_MONEY_LEN);
}

/* The first of several names a member may have, or NULL. */
static const char *folioctl_first(const json_t *obj, const char *const *paths)
{
    for (; *paths != NULL; paths++) {
        const json_t *v = folioctl_get(obj, *paths);

        if (v != NULL && !json_is_null(v))
            return *paths;
    }
    return paths[-1];
}

/* "Ada Lovelace" from a guest object or a stay's guest_name; "" when there is none. */
static const char *folioctl_guest_name(const json_t *obj, char *buf, size_t len)
{
    const json_t *g =
        json_is_object(json_object_get(obj, "guest")) ? json_object_get(obj, "guest") : obj;
    const char *first = json_string_value(json_object_get(g, "first_name"));
    const char *last = json_string_value(json_object_get(g, "last_name"));

    if (json_is_string(json_object_get(obj, "guest")))
        folioctl_text(obj, "guest", buf, len);
    else if (first != NULL || last != NULL)
        snprintf(buf, len, "%s%s%s", first != NULL ? first : "",
                 first != NULL && last != NULL ? " " : "", last != NULL ? last : "");
    else
        folioctl_text(obj,
                      json_is_string(json_object_get(obj, "guest_name")) ? "guest_name" : "name",
                      buf, len);
    return buf;
}

/* Sticky-error key/value lines (folioctl_kv_print aligns them). */
static void folioctl_kv_put(struct folioctl_kv *kv, const char *key, const char *value)
{
    if (!kv->failed &&
        !folioctl_kv_add(kv, key, fmt_sanitize(value != NULL && value[0] != '\0' ? value : "-")))
        kv->failed = true;
}

__attribute__((format(printf, 3, 4))) static void
folioctl_kv_putf(struct folioctl_kv *kv, const char *key, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    folioctl_kv_put(kv, key, buf);
}

/* Print and free kv; an exit status. */
static int folioctl_kv_done(struct folioctl_kv *kv)
{
    bool ok = !kv->failed;

    if (ok)
        folioctl_kv_print(kv);
    folioctl_kv_free(kv);
    memset(kv, 0, sizeof(*kv));
    if (!ok) {
        folioctl_err("out of memory printing the result");
        return FOLIOCTL_EXIT_CONN;
    }
    return FOLIOCTL_EXIT_OK;
}

/* Print and free a table; an exit status. A title line goes above it when given. */
static int folioctl_table_done(struct fmt_table *t, const char *title)
{
    bool ok;

    if (title != NULL)
        printf(title[0] != '\0' ? "\n%s\n" : "\n", title);
    ok = fmt_table_print(t, stdout);
    fmt_table_free(t);
    if (!ok) {
        folioctl_err("out of memory printing the result");
        return FOLIOCTL_EXIT_CONN;
    }
    return FOLIOCTL_EXIT_OK;
}

static struct fmt_table *folioctl_table(const struct fmt_column *cols, size_t n)
{
    struct fmt_table *t = fmt_table_new(cols, n);

    if (t == NULL)
        folioctl_err("out of memory printing the result");
    return t;
}

#define FOLIOCTL_NCOLS(cols) (sizeof(cols) / sizeof((cols)[0]))

/* Postings: id, date, code, description, qty, amount, type (and what a line refers to). */
static int folioctl_show_postings(const struct folioctl *ctl, const json_t *postings,
                                  const char *title)
{
    static const struct fmt_column cols[] = {
        {"id", FMT_RIGHT},         {"date", FMT_LEFT}, {"code", FMT_LEFT},
        {"description", FMT_LEFT}, {"qty", FMT_RIGHT}, {"amount", FMT_RIGHT},
        {"type", FMT_LEFT},        {"ref", FMT_LEFT},  {"note", FMT_LEFT},
    };
    static const char *const date_keys[] = {"business_date", "date", NULL};
    struct fmt_table *t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    size_t i;
    json_t *p;

    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (postings, i, p) {
        char buf[512], money[FMT_MONEY_LEN], note[128] = "";
        const json_t *v;

        fmt_table_add(t, folioctl_text(p, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(p, folioctl_first(p, date_keys), buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(p, "code", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(p, "description", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(p, "quantity", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, p, "amount", money));
        fmt_table_add(t, folioctl_text(p, "type", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(p, "reference", buf, sizeof(buf)));
        /* The links that make a line traceable: what it voids, adjusts or belongs to. */
        if (json_is_integer(v = json_object_get(p, "void_of")))
            snprintf(note, sizeof(note), "voids %" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_integer(v = json_object_get(p, "adjusts")))
            snprintf(note, sizeof(note), "adjusts %" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_integer(v = json_object_get(p, "parent_id")))
            snprintf(note, sizeof(note), "on %" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_integer(v = json_object_get(p, "transfer_id")))
            snprintf(note, sizeof(note), "transfer %" JSON_INTEGER_FORMAT, json_integer_value(v));
        if (json_is_integer(v = json_object_get(p, "routed_from_folio_id")))
            snprintf(note + strlen(note), sizeof(note) - strlen(note),
                     "%sfrom folio %" JSON_INTEGER_FORMAT, note[0] != '\0' ? ", " : "",
                     json_integer_value(v));
        if (json_is_integer(v = json_object_get(p, "voided_by")))
            snprintf(note + strlen(note), sizeof(note) - strlen(note),
                     "%svoided by %" JSON_INTEGER_FORMAT, note[0] != '\0' ? ", " : "",
                     json_integer_value(v));
        if (json_is_integer(v = json_object_get(p, "transferred_by")))
            snprintf(note + strlen(note), sizeof(note) - strlen(note),
                     "%smoved by transfer %" JSON_INTEGER_FORMAT, note[0] != '\0' ? ", " : "",
                     json_integer_value(v));
        fmt_table_add(t, note);
    }
    if (json_array_size(postings) == 0) {
        fmt_table_free(t);
        if (title != NULL)
            printf(title[0] != '\0' ? "\n%s\n" : "\n", title);
        printf("(no postings)\n");
        return FOLIOCTL_EXIT_OK;
    }
    return folioctl_table_done(t, title);
}

/* A stay's folio windows. */
static int folioctl_show_windows(const struct folioctl *ctl, const json_t *folios)
{
    static const struct fmt_column cols[] = {
        {"window", FMT_RIGHT}, {"folio", FMT_RIGHT},   {"number", FMT_LEFT},
        {"status", FMT_LEFT},  {"balance", FMT_RIGHT},
    };
    struct fmt_table *t;
    size_t i;
    json_t *f;

    if (json_array_size(folios) == 0)
        return FOLIOCTL_EXIT_OK;
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (folios, i, f) {
        char buf[256], money[FMT_MONEY_LEN];

        fmt_table_add(t, folioctl_text(f, "window", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "number", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "status", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, f, "balance", money));
    }
    return folioctl_table_done(t, NULL);
}

/* "code FOOD" / "department food", and where they go: "window 2 (F000041)", "group master
 * (F000050)", "folio F000060 (id 60)". */
static void folioctl_route_text(const json_t *r, char *what, size_t wlen, char *to, size_t tlen)
{
    char buf[128], number[64], id[32];
    const char *target = json_string_value(json_object_get(r, "target"));

    if (json_is_string(json_object_get(r, "code")))
        snprintf(what, wlen, "code %s", folioctl_text(r, "code", buf, sizeof(buf)));
    else
        snprintf(what, wlen, "department %s", folioctl_text(r, "department", buf, sizeof(buf)));
    folioctl_text(r, "to_folio_number", number, sizeof(number));
    folioctl_text(r, "to_folio_id", id, sizeof(id));
    if (target != NULL && strcmp(target, "master") == 0)
        snprintf(to, tlen, "group master (%s)", number);
    else if (json_is_integer(json_object_get(r, "to_window")))
        snprintf(to, tlen, "window %s (%s)", folioctl_text(r, "to_window", buf, sizeof(buf)),
                 number);
    else
        snprintf(to, tlen, "folio %s (id %s)", number, id);
    if (json_is_string(json_object_get(r, "to_folio_status")) &&
        strcmp(json_string_value(json_object_get(r, "to_folio_status")), "open") != 0)
        snprintf(to + strlen(to), tlen - strlen(to), ", %s",
                 json_string_value(json_object_get(r, "to_folio_status")));
}

static int folioctl_show_route_table(const json_t *rules)
{
    static const struct fmt_column cols[] = {
        {"rule", FMT_RIGHT}, {"charges", FMT_LEFT}, {"go to", FMT_LEFT}};
    struct fmt_table *t;
    size_t i;
    json_t *r;

    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (rules, i, r) {
        char buf[64], what[128], to[128];

        folioctl_route_text(r, what, sizeof(what), to, sizeof(to));
        fmt_table_add(t, folioctl_text(r, json_object_get(r, "routing_id") ? "routing_id" : "id",
                                       buf, sizeof(buf)));
        fmt_table_add(t, what);
        fmt_table_add(t, to);
    }
    return folioctl_table_done(t, NULL);
}

static int folioctl_show_stay(struct folioctl *ctl, const json_t *stay)
{
    struct folioctl_kv kv = {0};
    char buf[512], buf2[256], money[FMT_MONEY_LEN];
    const json_t *routes = json_object_get(stay, "routing");
    int rc;

    if (!json_is_array(routes))
        routes = json_object_get(stay, "routes");
    if (!json_is_array(routes))
        routes = json_object_get(stay, "routing_rules");
    folioctl_kv_putf(&kv, "stay", "%s (id %s)", folioctl_text(stay, "number", buf, sizeof(buf)),
                     folioctl_text(stay, "id", buf2, sizeof(buf2)));
    folioctl_kv_put(&kv, "status", folioctl_text(stay, "status", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "room", folioctl_text(stay, "room", buf, sizeof(buf)));
    folioctl_guest_name(stay, buf, sizeof(buf));
    if (json_is_integer(folioctl_get(stay, "guest.id")))
        folioctl_kv_putf(&kv, "guest", "%s (guest id %s)", buf,
                         folioctl_text(stay, "guest.id", buf2, sizeof(buf2)));
    else
        folioctl_kv_put(&kv, "guest", buf);
    folioctl_kv_put(&kv, "arrival", folioctl_text(stay, "arrival", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "departure", folioctl_text(stay, "departure", buf, sizeof(buf)));
    folioctl_kv_putf(&kv, "guests", "%s adult(s), %s child(ren)",
                     folioctl_text(stay, "adults", buf, sizeof(buf)),
                     folioctl_text(stay, "children", buf2, sizeof(buf2)));
    folioctl_kv_putf(&kv, "rate", "%s %s", folioctl_money(ctl, stay, "rate", money),
                     folioctl_text(stay, "rate_code", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "credit limit",
                    json_is_integer(json_object_get(stay, "credit_limit"))
                        ? folioctl_money(ctl, stay, "credit_limit", money)
                        : "none");
    folioctl_kv_put(&kv, "no post", folioctl_text(stay, "no_post", buf, sizeof(buf)));
    if (json_is_object(json_object_get(stay, "group")))
        folioctl_kv_putf(&kv, "group", "%s (id %s)",
                         folioctl_text(stay, "group.code", buf, sizeof(buf)),
                         folioctl_text(stay, "group.id", buf2, sizeof(buf2)));
    else if (json_object_get(stay, "group") != NULL)
        folioctl_kv_put(&kv, "group", folioctl_text(stay, "group", buf, sizeof(buf)));
    if (json_is_string(json_object_get(stay, "checked_out_at")))
        folioctl_kv_put(&kv, "checked out",
                        folioctl_text(stay, "checked_out_at", buf, sizeof(buf)));
    folioctl_kv_putf(&kv, "balance", "%s%s", folioctl_money(ctl, stay, "balance", money),
                     ctl->cur_suffix);
    rc = folioctl_kv_done(&kv);
    if (rc == FOLIOCTL_EXIT_OK && json_array_size(json_object_get(stay, "folios")) > 0) {
        putchar('\n');
        rc = folioctl_show_windows(ctl, json_object_get(stay, "folios"));
    }
    if (rc == FOLIOCTL_EXIT_OK && json_array_size(routes) > 0) {
        printf("\nrouting\n");
        rc = folioctl_show_route_table(routes);
    }
    if (rc == FOLIOCTL_EXIT_OK && json_array_size(json_object_get(stay, "payments")) > 0)
        rc = folioctl_show_postings(ctl, json_object_get(stay, "payments"), "payments");
    return rc;
}

static int folioctl_s_stay(struct folioctl *ctl, const json_t *result)
{
    return folioctl_show_stay(ctl, result);
}

static int folioctl_s_stays(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column cols[] = {
        {"id", FMT_RIGHT},    {"number", FMT_LEFT},  {"room", FMT_LEFT},
        {"guest", FMT_LEFT},  {"arrival", FMT_LEFT}, {"departure", FMT_LEFT},
        {"status", FMT_LEFT}, {"group", FMT_LEFT},   {"balance", FMT_RIGHT},
    };
    const json_t *items = json_object_get(result, "items");
    struct fmt_table *t;
    size_t i;
    json_t *s;

    if (json_array_size(items) == 0) {
        printf("(no stays)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (items, i, s) {
        char buf[256], money[FMT_MONEY_LEN];

        fmt_table_add(t, folioctl_text(s, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(s, "number", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(s, "room", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_guest_name(s, buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(s, "arrival", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(s, "departure", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(s, "status", buf, sizeof(buf)));
        fmt_table_add(
            t,
            folioctl_text(s, json_is_object(json_object_get(s, "group")) ? "group.code" : "group",
                          buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, s, "balance", money));
    }
    if (folioctl_table_done(t, NULL) != FOLIOCTL_EXIT_OK)
        return FOLIOCTL_EXIT_CONN;
    printf("(%zu stay%s)\n", json_array_size(items), json_array_size(items) == 1 ? "" : "s");
    return FOLIOCTL_EXIT_OK;
}

/* The lines that say which folio this is. */
static void folioctl_folio_head(const struct folioctl *ctl, struct folioctl_kv *kv, const json_t *f)
{
    char buf[512], buf2[256], buf3[64], money[FMT_MONEY_LEN];

    folioctl_kv_putf(kv, "folio", "%s (id %s)", folioctl_text(f, "number", buf, sizeof(buf)),
                     folioctl_text(f, "id", buf2, sizeof(buf2)));
    folioctl_kv_put(kv, "type", folioctl_text(f, "type", buf, sizeof(buf)));
    folioctl_kv_put(kv, "status", folioctl_text(f, "status", buf, sizeof(buf)));
    if (json_is_string(json_object_get(f, "name")))
        folioctl_kv_put(kv, "name", folioctl_text(f, "name", buf, sizeof(buf)));
    if (json_is_integer(json_object_get(f, "stay_id")) &&
        json_is_string(json_object_get(f, "stay_number")))
        folioctl_kv_putf(kv, "stay", "%s (id %s), window %s",
                         folioctl_text(f, "stay_number", buf, sizeof(buf)),
                         folioctl_text(f, "stay_id", buf2, sizeof(buf2)),
                         folioctl_text(f, "window", buf3, sizeof(buf3)));
    else if (json_is_integer(json_object_get(f, "stay_id")))
        folioctl_kv_putf(kv, "stay", "%s, window %s", folioctl_text(f, "stay_id", buf, sizeof(buf)),
                         folioctl_text(f, "window", buf2, sizeof(buf2)));
    if (json_is_string(json_object_get(f, "group")))
        folioctl_kv_putf(kv, "group", "%s (id %s)", folioctl_text(f, "group", buf, sizeof(buf)),
                         folioctl_text(f, "group_id", buf2, sizeof(buf2)));
    if (json_is_string(json_object_get(f, "room")))
        folioctl_kv_put(kv, "room", folioctl_text(f, "room", buf, sizeof(buf)));
    if (json_is_string(json_object_get(f, "guest")))
        folioctl_kv_put(kv, "guest", folioctl_text(f, "guest", buf, sizeof(buf)));
    if (json_is_integer(json_object_get(f, "credit_limit")))
        folioctl_kv_put(kv, "credit limit", folioctl_money(ctl, f, "credit_limit", money));
    folioctl_kv_putf(kv, "balance", "%s%s", folioctl_money(ctl, f, "balance", money),
                     ctl->cur_suffix);
}

static int folioctl_s_folio(struct folioctl *ctl, const json_t *result)
{
    struct folioctl_kv kv = {0};
    char money[FMT_MONEY_LEN];
    const json_t *totals = json_object_get(result, "totals");
    int rc;

    folioctl_folio_head(ctl, &kv, result);
    rc = folioctl_kv_done(&kv);
    if (rc == FOLIOCTL_EXIT_OK)
        rc = folioctl_show_postings(ctl, json_object_get(result, "postings"), "");
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    putchar('\n');
    if (json_is_object(totals)) {
        folioctl_kv_put(&kv, "charges", folioctl_money(ctl, totals, "charges", money));
        folioctl_kv_put(&kv, "credits", folioctl_money(ctl, totals, "credits", money));
    }
    folioctl_kv_putf(&kv, "balance", "%s%s", folioctl_money(ctl, result, "balance", money),
                     ctl->cur_suffix);
    return folioctl_kv_done(&kv);
}

static int folioctl_s_folio_summary(struct folioctl *ctl, const json_t *result)
{
    struct folioctl_kv kv = {0};
    const json_t *f = json_is_object(json_object_get(result, "folio"))
                          ? json_object_get(result, "folio")
                          : result;

    folioctl_folio_head(ctl, &kv, f);
    return folioctl_kv_done(&kv);
}

static int folioctl_s_folios(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column cols[] = {
        {"id", FMT_RIGHT},   {"number", FMT_LEFT},  {"type", FMT_LEFT}, {"status", FMT_LEFT},
        {"stay", FMT_RIGHT}, {"window", FMT_RIGHT}, {"name", FMT_LEFT}, {"balance", FMT_RIGHT},
    };
    const json_t *items = json_object_get(result, "items");
    struct fmt_table *t;
    size_t i;
    json_t *f;

    if (json_array_size(items) == 0) {
        printf("(no folios)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (items, i, f) {
        char buf[256], money[FMT_MONEY_LEN];

        fmt_table_add(t, folioctl_text(f, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "number", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "type", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "status", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "stay_id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(f, "window", buf, sizeof(buf)));
        if (json_is_string(json_object_get(f, "name")))
            fmt_table_add(t, folioctl_text(f, "name", buf, sizeof(buf)));
        else
            fmt_table_add(t, folioctl_guest_name(f, buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, f, "balance", money));
    }
    if (folioctl_table_done(t, NULL) != FOLIOCTL_EXIT_OK)
        return FOLIOCTL_EXIT_CONN;
    printf("(%zu folio%s)\n", json_array_size(items), json_array_size(items) == 1 ? "" : "s");
    return FOLIOCTL_EXIT_OK;
}

/* The answer of post, pay, void and adjust: the lines written, then where they went. */
static int folioctl_s_posted(struct folioctl *ctl, const json_t *result)
{
    static const char *const lists[] = {"postings", "voids", "adjustments", NULL};
    const json_t *lines = NULL, *folio = json_object_get(result, "folio");
    char buf[128], money[FMT_MONEY_LEN];
    int rc;

    for (size_t i = 0; lists[i] != NULL && lines == NULL; i++)
        if (json_is_array(json_object_get(result, lists[i])))
            lines = json_object_get(result, lists[i]);
    if (lines == NULL && json_is_object(json_object_get(result, "posting"))) {
        /* one line only */
        json_t *one = json_pack("[O]", json_object_get(result, "posting"));

        rc = one != NULL ? folioctl_show_postings(ctl, one, NULL) : FOLIOCTL_EXIT_CONN;
        json_decref(one);
    } else {
        rc = folioctl_show_postings(ctl, lines, NULL);
    }
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (json_is_integer(json_object_get(result, "total")))
        printf("total:   %s\n", folioctl_money(ctl, result, "total", money));
    if (json_is_object(folio))
        printf("folio %s balance: %s%s\n",
               folioctl_text(folio,
                             json_is_string(json_object_get(folio, "number")) ? "number" : "id",
                             buf, sizeof(buf)),
               folioctl_money(ctl, folio, "balance", money), ctl->cur_suffix);
    if (json_is_true(json_object_get(result, "routed")))
        printf("(routed by the stay's routing instructions)\n");
    if (json_is_integer(json_object_get(result, "left")))
        printf("left to adjust on the posting: %s\n", folioctl_money(ctl, result, "left", money));
    return FOLIOCTL_EXIT_OK;
}

static void folioctl_side(const struct folioctl *ctl, const json_t *side, char *out, size_t len)
{
    char buf[64], money[FMT_MONEY_LEN];

    if (json_is_object(side))
        snprintf(out, len, "folio %s (balance %s)",
                 folioctl_text(side,
                               json_is_string(json_object_get(side, "number")) ? "number" : "id",
                               buf, sizeof(buf)),
                 folioctl_money(ctl, side, "balance", money));
    else
        snprintf(out, len, "folio ?");
}

static int folioctl_s_transfer(struct folioctl *ctl, const json_t *result)
{
    char buf[64], money[FMT_MONEY_LEN], from[160], to[160];

    folioctl_side(ctl, json_object_get(result, "from"), from, sizeof(from));
    folioctl_side(ctl, json_object_get(result, "to"), to, sizeof(to));
    printf("transfer %s: %s%s from %s to %s\n",
           folioctl_text(result, "transfer_id", buf, sizeof(buf)),
           folioctl_money(ctl, result, "amount", money), ctl->cur_suffix, from, to);
    return FOLIOCTL_EXIT_OK;
}

static int folioctl_s_route(struct folioctl *ctl, const json_t *result)
{
    char id[32], stay[32], what[128], to[128];
    const json_t *rule =
        json_is_object(json_object_get(result, "rule")) ? json_object_get(result, "rule") : result;

    (void)ctl;
    folioctl_route_text(rule, what, sizeof(what), to, sizeof(to));
    printf("routing rule %s for stay %s: %s -> %s\n",
           folioctl_text(rule, json_object_get(rule, "routing_id") ? "routing_id" : "id", id,
                         sizeof(id)),
           folioctl_text(rule, "stay_id", stay, sizeof(stay)), what, to);
    return FOLIOCTL_EXIT_OK;
}

static int folioctl_s_unroute(struct folioctl *ctl, const json_t *result)
{
    char what[128], to[128];

    folioctl_route_text(result, what, sizeof(what), to, sizeof(to));
    printf("routing rule %s cleared (%s went to %s)\n", folioctl_pos(ctl, 0), what, to);
    return FOLIOCTL_EXIT_OK;
}

static int folioctl_s_routes(struct folioctl *ctl, const json_t *result)
{
    const json_t *items = json_object_get(result, "items");

    (void)ctl;
    if (json_array_size(items) == 0) {
        printf("(no routing rules)\n");
        return FOLIOCTL_EXIT_OK;
    }
    return folioctl_show_route_table(items);
}

static int folioctl_s_group(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column cols[] = {
        {"stay", FMT_RIGHT}, {"number", FMT_LEFT}, {"room", FMT_LEFT},
        {"guest", FMT_LEFT}, {"status", FMT_LEFT}, {"balance", FMT_RIGHT},
    };
    struct folioctl_kv kv = {0};
    char buf[512], buf2[256], buf3[64], money[FMT_MONEY_LEN];
    const json_t *g = json_is_object(json_object_get(result, "group"))
                          ? json_object_get(result, "group")
                          : result;
    const json_t *master = json_object_get(result, "master_folio");
    const json_t *members = json_object_get(result, "members");
    struct fmt_table *t;
    size_t i;
    json_t *m;
    int rc;

    if (!json_is_object(master))
        master = json_object_get(result, "master");
    folioctl_kv_putf(&kv, "group", "%s (id %s)", folioctl_text(g, "code", buf, sizeof(buf)),
                     folioctl_text(g, "id", buf2, sizeof(buf2)));
    folioctl_kv_put(&kv, "name", folioctl_text(g, "name", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "status", folioctl_text(g, "status", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "arrival", folioctl_text(g, "arrival", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "departure", folioctl_text(g, "departure", buf, sizeof(buf)));
    if (json_is_integer(json_object_get(g, "credit_limit")))
        folioctl_kv_put(&kv, "credit limit", folioctl_money(ctl, g, "credit_limit", money));
    if (json_is_object(master))
        folioctl_kv_putf(&kv, "master folio", "%s (id %s), %s, balance %s%s",
                         folioctl_text(master, "number", buf, sizeof(buf)),
                         folioctl_text(master, "id", buf2, sizeof(buf2)),
                         folioctl_text(master, "status", buf3, sizeof(buf3)),
                         folioctl_money(ctl, master, "balance", money), ctl->cur_suffix);
    rc = folioctl_kv_done(&kv);
    if (rc != FOLIOCTL_EXIT_OK || !json_is_array(members))
        return rc;
    if (json_array_size(members) == 0) {
        printf("\n(no members)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (members, i, m) {
        fmt_table_add(t, folioctl_text(m, json_object_get(m, "stay_id") ? "stay_id" : "id", buf,
                                       sizeof(buf)));
        fmt_table_add(t, folioctl_text(m, "number", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(m, "room", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_guest_name(m, buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(m, "status", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, m, "balance", money));
    }
    return folioctl_table_done(t, "");
}

static int folioctl_s_group_checkout(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column cols[] = {
        {"stay", FMT_RIGHT}, {"number", FMT_LEFT}, {"room", FMT_LEFT}, {"balance", FMT_RIGHT}};
    const json_t *done = json_object_get(result, "checked_out");
    const json_t *left = json_object_get(result, "not_checked_out");
    const json_t *master = json_object_get(result, "master");
    char buf[64], status[32], money[FMT_MONEY_LEN];
    struct fmt_table *t;
    size_t i;
    json_t *v;

    printf("checked out: ");
    if (json_array_size(done) == 0)
        printf("none");
    json_array_foreach (done, i, v) {
        if (json_is_integer(v))
            printf("%s%" JSON_INTEGER_FORMAT, i > 0 ? ", " : "", json_integer_value(v));
        else
            printf("%s%s", i > 0 ? ", " : "", folioctl_text(v, "stay_id", buf, sizeof(buf)));
    }
    putchar('\n');
    if (json_is_object(master))
        printf("master folio %s: %s, balance %s%s\n",
               folioctl_text(master,
                             json_is_string(json_object_get(master, "number")) ? "number" : "id",
                             buf, sizeof(buf)),
               folioctl_text(master, "status", status, sizeof(status)),
               folioctl_money(ctl, master, "balance", money), ctl->cur_suffix);
    if (json_array_size(left) == 0)
        return FOLIOCTL_EXIT_OK;
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (left, i, v) {
        fmt_table_add(t, folioctl_text(v, "stay_id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "number", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "room", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, v, "balance", money));
    }
    return folioctl_table_done(t, "not checked out (folios not settled):");
}

/* Write the statement to -o FILE (or standard output). Server text that goes to a terminal
 * keeps its line ends and tabs but loses other control characters. */
static int folioctl_s_statement(struct folioctl *ctl, const json_t *result)
{
    const char *content = json_string_value(json_object_get(result, "content"));
    const char *path = folioctl_opt(ctl, "output");
    size_t len;
    FILE *f;

    if (content == NULL) {
        folioctl_err("the server's statement has no content");
        return FOLIOCTL_EXIT_CONN;
    }
    len = strlen(content);
    if (folioctl_flag(ctl, "pdf")) {
        char title[96], err[256];
        const char *number = json_string_value(json_object_get(result, "number"));

        snprintf(title, sizeof(title), "Folio statement %s", number != NULL ? number : "");
        if (!pdf_write_text(content, title, path, err, sizeof(err))) {
            folioctl_err("%s", err);
            return FOLIOCTL_EXIT_USAGE;
        }
        if (!ctl->json)
            printf("statement of folio %s (PDF) written to %s\n", folioctl_pos(ctl, 0), path);
        return FOLIOCTL_EXIT_OK;
    }
    if (path == NULL || strcmp(path, "-") == 0) {
        bool tty = isatty(STDOUT_FILENO);

        for (const unsigned char *p = (const unsigned char *)content; *p != '\0'; p++)
            putchar(tty && ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f) ? '?' : *p);
        if (len > 0 && content[len - 1] != '\n')
            putchar('\n');
        return FOLIOCTL_EXIT_OK;
    }
    f = fopen(path, "w");
    if (f == NULL) {
        folioctl_err("cannot write %s: %s", path, strerror(errno));
        return FOLIOCTL_EXIT_USAGE;
    }
    if (fwrite(content, 1, len, f) != len || ferror(f)) {
        folioctl_err("cannot write %s: %s", path, strerror(errno));
        fclose(f);
        return FOLIOCTL_EXIT_USAGE;
    }
    if (fclose(f) != 0) {
        folioctl_err("cannot write %s: %s", path, strerror(errno));
        return FOLIOCTL_EXIT_USAGE;
    }
    if (!ctl->json)
        printf("statement of folio %s (%s, %zu bytes) written to %s\n", folioctl_pos(ctl, 0),
               folioctl_flag(ctl, "html") ? "HTML" : "text", len, path);
    return FOLIOCTL_EXIT_OK;
}

static int folioctl_s_close_day(struct folioctl *ctl, const json_t *result)
{
    char closed[32], open[32];

    (void)ctl;
    printf("business date %s closed; the business date is now %s\n",
           folioctl_text(result, "closed", closed, sizeof(closed)),
           folioctl_text(result, "business_date", open, sizeof(open)));
    return FOLIOCTL_EXIT_OK;
}

/* Warnings in an answer (a deposit to collect) go to stderr, in --json mode too. */
static void folioctl_warnings(const struct folioctl *ctl, const json_t *result)
{
    const json_t *warnings = json_object_get(result, "warnings");
    size_t i;
    json_t *w;

    json_array_foreach (warnings, i, w) {
        const char *reason = json_string_value(w);
        const char *message = NULL;
        const json_t *data = json_object_get(result, "data");
        char limit[FMT_MONEY_LEN], balance[FMT_MONEY_LEN];
        char *safe;

        if (json_is_object(w)) {
            reason = json_string_value(json_object_get(w, "reason"));
            if (reason == NULL)
                reason = json_string_value(json_object_get(w, "code"));
            message = json_string_value(json_object_get(w, "message"));
            if (json_is_object(json_object_get(w, "data")))
                data = json_object_get(w, "data");
            else
                data = w;
        }
        safe = fmt_sanitize(reason != NULL ? reason : "warning");
        if (safe == NULL)
            return;
        if (strcmp(safe, "deposit_required") == 0 &&
            json_is_integer(json_object_get(data, "balance"))) {
            folioctl_money(ctl, data, "balance", balance);
            if (json_is_integer(json_object_get(data, "credit_limit")))
                folioctl_err("warning: deposit required: the balance %s%s is over the credit "
                             "limit of %s; collect a deposit or raise the limit",
                             balance, ctl->cur_suffix,
                             folioctl_money(ctl, data, "credit_limit", limit));
            else
                folioctl_err("warning: deposit required: the balance is %s%s; collect a deposit",
                             balance, ctl->cur_suffix);
        } else if (strcmp(safe, "deposit_required") == 0) {
            folioctl_err("warning: deposit required: the balance is over the credit limit; "
                         "collect a deposit or raise the limit");
        } else {
            char *m = message != NULL ? fmt_sanitize(message) : NULL;

            folioctl_err("warning: %s%s%s", safe, m != NULL ? ": " : "", m != NULL ? m : "");
            free(m);
        }
        free(safe);
    }
}

/* An error's details worth a line each: the windows that keep a checkout from closing. */
static void folioctl_error_details(const struct folioctl *ctl, const json_t *data)
{
    const json_t *windows = json_object_get(data, "windows");
    size_t i;
    json_t *w;

    json_array_foreach (windows, i, w) {
        char win[32], folio[32], money[FMT_MONEY_LEN];

        fprintf(stderr, "  window %s (folio %s): balance %s%s\n",
                folioctl_text(w, "window", win, sizeof(win)),
                folioctl_text(w, "folio_id", folio, sizeof(folio)),
                folioctl_money(ctl, w, "balance", money), ctl->cur_suffix);
    }
    if (windows == NULL && json_is_integer(json_object_get(data, "folio_id")) &&
        json_is_integer(json_object_get(data, "balance"))) {
        char folio[32], money[FMT_MONEY_LEN];

        fprintf(stderr, "  folio %s: balance %s%s\n",
                folioctl_text(data, "folio_id", folio, sizeof(folio)),
                folioctl_money(ctl, data, "balance", money), ctl->cur_suffix);
    }
}

/* The currency of the property the command is about: server.info lists the caller's
 * properties with their minor units. Without an answer the default (2 decimals) stands. */
static int folioctl_learn_currency(struct folioctl *ctl)
{
    const char *want = folioctl_opt(ctl, "property");
    json_t *response = NULL, *props, *p, *pick = NULL;
    const char *mine;
    size_t i;

    if (!client_call(ctl->client, "server.info", NULL, &response))
        return folioctl_transport_error(ctl);
    props = json_object_get(client_response_result(response), "properties");
    mine = json_string_value(folioctl_get(client_response_result(response), "identity.property"));
    json_array_foreach (props, i, p) {
        const char *code = json_string_value(json_object_get(p, "code"));

        if (code != NULL && want != NULL && strcmp(code, want) == 0)
            pick = p;
        else if (code != NULL && want == NULL && mine != NULL && strcmp(code, mine) == 0)
            pick = p;
    }
    if (pick == NULL && want == NULL && json_array_size(props) == 1)
        pick = json_array_get(props, 0);
    if (pick != NULL) {
        json_int_t mu = json_integer_value(json_object_get(pick, "minor_units"));
        const char *cur = json_string_value(json_object_get(pick, "currency"));

        if (json_is_integer(json_object_get(pick, "minor_units")) && mu >= 0 &&
            mu <= FMT_MAX_MINOR_UNITS)
            ctl->minor_units = (unsigned)mu;
        if (cur != NULL && strlen(cur) < sizeof(ctl->currency)) {
            snprintf(ctl->currency, sizeof(ctl->currency), "%s", cur);
            snprintf(ctl->cur_suffix, sizeof(ctl->cur_suffix), " %s", cur);
        }
    }
    json_decref(response);
    ctl->currency_known = true;
    return FOLIOCTL_EXIT_OK;
}

/* Build the params: false after a usage error was printed. *params is a new reference. */
static bool folioctl_build(struct folioctl *ctl, json_t **params)
{
    *params = json_object();
    if (*params == NULL)
        return folioctl_bad("out of memory");
    if (!ctl->op->build(ctl, *params)) {
        json_decref(*params);
        *params = NULL;
        return false;
    }
    return true;
}

static int folioctl_run_op(struct folioctl *ctl)
{
    json_t *params, *response = NULL, *result;
    struct client_rpc_error e;
    int rc = folioctl_learn_currency(ctl);

    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (!folioctl_build(ctl, &params))
        return FOLIOCTL_EXIT_USAGE;
    if (!client_call(ctl->client, ctl->op->method, params, &response)) {
        json_decref(params);
        return folioctl_transport_error(ctl);
    }
    json_decref(params);
    result = client_response_result(response);
    if (result == NULL) {
        rc = folioctl_rpc_error(ctl, response);
        if (client_response_error(response, &e))
            folioctl_error_details(ctl, e.data);
        json_decref(response);
        return rc;
    }
    folioctl_warnings(ctl, result);
    if (ctl->json && !(ctl->op->show == folioctl_s_statement && folioctl_opt(ctl, "output")))
        folioctl_print_json(result, JSON_COMPACT);
    else
        rc = ctl->op->show(ctl, result);
    json_decref(response);
    return rc;
}

/* ---- cashier shifts and the city ledger (docs/cashier.md) ---- */

static const struct fmt_option folioctl_o_shift_open[] = {O_VAL("float"), O_VAL("property"), O_END};

static bool folioctl_b_shift_open(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"float", "float", FK_AMOUNT, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_shift_close[] = {O_VAL("shift"), O_VAL("note"),
                                                           O_FLAG("lines"), O_END};

static bool folioctl_b_shift_close(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"shift", "shift_id", FK_ID, 0, 0},
        {"note", "note", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_amount(ctl, params, "declared", "DECLARED", folioctl_pos(ctl, 0), false) &&
           folioctl_put_opts(ctl, params, map);
}

static const struct fmt_option folioctl_o_shift_report[] = {O_VAL("cashier"), O_FLAG("lines"),
                                                            O_END};

static bool folioctl_b_shift_report(struct folioctl *ctl, json_t *params)
{
    const char *id = folioctl_pos(ctl, 0), *who = folioctl_opt(ctl, "cashier");

    if (id != NULL && who != NULL)
        return folioctl_bad("give SHIFT_ID or --cashier NAME, not both");
    if (id != NULL)
        return folioctl_put_id(params, "shift_id", "SHIFT_ID", id);
    return who == NULL || folioctl_put_str(params, "user", "--cashier", who);
}

/* One row of the cash drawer table. */
static void folioctl_drawer_row(const struct folioctl *ctl, struct fmt_table *t, const char *what,
                                const json_t *obj, const char *path)
{
    char money[FMT_MONEY_LEN];

    fmt_table_add(t, what);
    fmt_table_add(t, folioctl_money(ctl, obj, path, money));
}

/* A shift report: who and when, the payments by method, the cash drawer (float, cash in and
 * out, paid-outs, expected, declared, difference) and, with --lines, every money line. */
static int folioctl_s_shift(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column mcols[] = {
        {"method", FMT_LEFT},    {"lines", FMT_RIGHT}, {"received", FMT_RIGHT},
        {"refunded", FMT_RIGHT}, {"net", FMT_RIGHT},
    };
    static const struct fmt_column dcols[] = {{"cash drawer", FMT_LEFT}, {"amount", FMT_RIGHT}};
    static const struct fmt_column lcols[] = {
        {"id", FMT_RIGHT},  {"date", FMT_LEFT},    {"folio", FMT_LEFT}, {"type", FMT_LEFT},
        {"code", FMT_LEFT}, {"amount", FMT_RIGHT}, {"ref", FMT_LEFT},
    };
    struct folioctl_kv kv = {0};
    char buf[256], buf2[256], buf3[64], what[64], money[FMT_MONEY_LEN];
    const json_t *methods = json_object_get(result, "by_method");
    const json_t *lines = json_object_get(result, "lines");
    bool closed = json_is_integer(json_object_get(result, "declared"));
    json_int_t diff = json_integer_value(json_object_get(result, "difference"));
    struct fmt_table *t;
    size_t i;
    json_t *m;
    int rc;

    folioctl_kv_putf(&kv, "shift", "%s (%s)", folioctl_text(result, "id", buf, sizeof(buf)),
                     folioctl_text(result, "status", buf2, sizeof(buf2)));
    folioctl_kv_put(&kv, "cashier", folioctl_text(result, "user", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "property", folioctl_text(result, "property", buf, sizeof(buf)));
    folioctl_kv_putf(&kv, "opened", "%s (business date %s)",
                     folioctl_text(result, "opened_at", buf, sizeof(buf)),
                     folioctl_text(result, "opened_business_date", buf2, sizeof(buf2)));
    if (json_is_string(json_object_get(result, "closed_at")))
        folioctl_kv_putf(&kv, "closed", "%s by %s (business date %s)",
                         folioctl_text(result, "closed_at", buf, sizeof(buf)),
                         folioctl_text(result, "closed_by", buf2, sizeof(buf2)),
                         folioctl_text(result, "closed_business_date", buf3, sizeof(buf3)));
    if (json_is_string(json_object_get(result, "note")))
        folioctl_kv_put(&kv, "note", folioctl_text(result, "note", buf, sizeof(buf)));
    rc = folioctl_kv_done(&kv);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;

    if (json_array_size(methods) == 0) {
        printf("\n(no payments)\n");
    } else {
        t = folioctl_table(mcols, FOLIOCTL_NCOLS(mcols));
        if (t == NULL)
            return FOLIOCTL_EXIT_CONN;
        json_array_foreach (methods, i, m) {
            fmt_table_add(t, folioctl_text(m, "method", buf, sizeof(buf)));
            fmt_table_add(t, folioctl_text(m, "count", buf, sizeof(buf)));
            fmt_table_add(t, folioctl_money(ctl, m, "received", money));
            fmt_table_add(t, folioctl_money(ctl, m, "refunded", money));
            fmt_table_add(t, folioctl_money(ctl, m, "net", money));
        }
        if (folioctl_table_done(t, "") != FOLIOCTL_EXIT_OK)
            return FOLIOCTL_EXIT_CONN;
    }

    t = folioctl_table(dcols, FOLIOCTL_NCOLS(dcols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    folioctl_drawer_row(ctl, t, "opening float", result, "float");
    folioctl_drawer_row(ctl, t, "+ cash received", result, "cash.received");
    folioctl_drawer_row(ctl, t, "- cash refunded", result, "cash.refunded");
    snprintf(what, sizeof(what), "- paid-outs (%s)",
             folioctl_text(result, "paid_outs.count", buf, sizeof(buf)));
    folioctl_drawer_row(ctl, t, what, result, "cash.paid_out");
    folioctl_drawer_row(ctl, t, "= expected cash", result, "expected_cash");
    if (closed) {
        folioctl_drawer_row(ctl, t, "declared", result, "declared");
        folioctl_drawer_row(ctl, t,
                            diff < 0   ? "difference (short)"
                            : diff > 0 ? "difference (over)"
                                       : "difference",
                            result, "difference");
    }
    if (folioctl_table_done(t, "") != FOLIOCTL_EXIT_OK)
        return FOLIOCTL_EXIT_CONN;
    if (json_integer_value(folioctl_get(result, "voids.count")) > 0)
        printf("(%s voided line%s among them)\n",
               folioctl_text(result, "voids.count", buf, sizeof(buf)),
               json_integer_value(folioctl_get(result, "voids.count")) == 1 ? "" : "s");

    if (!folioctl_flag(ctl, "lines") || !json_is_array(lines))
        return FOLIOCTL_EXIT_OK;
    if (json_array_size(lines) == 0) {
        printf("\n(no lines)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(lcols, FOLIOCTL_NCOLS(lcols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (lines, i, m) {
        fmt_table_add(t, folioctl_text(m, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(m, "business_date", buf, sizeof(buf)));
        if (json_is_string(json_object_get(m, "account")))
            snprintf(buf, sizeof(buf), "%s (%s)",
                     folioctl_text(m, "folio_number", buf2, sizeof(buf2)),
                     folioctl_text(m, "account", buf3, sizeof(buf3)));
        else
            folioctl_text(m, "folio_number", buf, sizeof(buf));
        fmt_table_add(t, buf);
        fmt_table_add(t, folioctl_text(m, "type", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(m, "code", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, m, "amount", money));
        fmt_table_add(t, folioctl_text(m, "reference", buf, sizeof(buf)));
    }
    return folioctl_table_done(t, "");
}

static const struct fmt_option folioctl_o_ar_create[] = {
    O_VAL("kind"),    O_VAL("credit-limit"), O_VAL("contact"), O_VAL("email"),    O_VAL("phone"),
    O_VAL("address"), O_VAL("tax-id"),       O_VAL("notes"),   O_VAL("property"), O_END,
};

static bool folioctl_b_ar_create(struct folioctl *ctl, json_t *params)
{
    static const char *const kinds[] = {"company", "agency", NULL};
    static const struct folioctl_map map[] = {
        {"kind", "kind", FK_STR, 0, 0},
        {"credit-limit", "credit_limit", FK_AMOUNT, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };
    static const struct folioctl_map contact_map[] = {
        {"contact", "name", FK_STR, 0, 0},  {"email", "email", FK_STR, 0, 0},
        {"phone", "phone", FK_STR, 0, 0},   {"address", "address", FK_STR, 0, 0},
        {"tax-id", "tax_id", FK_STR, 0, 0}, {"notes", "notes", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };
    const char *kind = folioctl_opt(ctl, "kind");
    json_t *contact;

    if (kind != NULL && !folioctl_one_of("--kind", kind, kinds))
        return false;
    if (!folioctl_put_str(params, "code", "CODE", folioctl_pos(ctl, 0)) ||
        !folioctl_put_str(params, "name", "NAME", folioctl_pos(ctl, 1)) ||
        !folioctl_put_opts(ctl, params, map))
        return false;
    contact = json_object();
    if (contact == NULL)
        return folioctl_bad("out of memory");
    if (!folioctl_put_opts(ctl, contact, contact_map)) {
        json_decref(contact);
        return false;
    }
    if (json_object_size(contact) == 0) {
        json_decref(contact);
        return true;
    }
    return folioctl_put(params, "contact", contact);
}

static bool folioctl_b_ar(struct folioctl *ctl, json_t *params)
{
    const char *a = folioctl_pos(ctl, 0);
    int64_t id;

    /* A number is the account's id, anything else its code. */
    if (fmt_parse_int(a, 1, FOLIOCTL_ID_MAX, &id))
        return folioctl_put(params, "account_id", json_integer((json_int_t)id)) &&
               folioctl_b_property(ctl, params);
    return folioctl_put_str(params, "code", "ACCOUNT", a) && folioctl_b_property(ctl, params);
}

/* Invoices: id, date, age, folio, guest, room, amount, open, status, reference. */
static int folioctl_show_invoices(const struct folioctl *ctl, const json_t *invoices,
                                  const char *title)
{
    static const struct fmt_column cols[] = {
        {"invoice", FMT_RIGHT}, {"date", FMT_LEFT}, {"age", FMT_RIGHT},    {"folio", FMT_LEFT},
        {"guest", FMT_LEFT},    {"room", FMT_LEFT}, {"amount", FMT_RIGHT}, {"open", FMT_RIGHT},
        {"status", FMT_LEFT},   {"ref", FMT_LEFT},
    };
    struct fmt_table *t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    size_t i;
    json_t *v;

    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (invoices, i, v) {
        char buf[256], money[FMT_MONEY_LEN];

        fmt_table_add(t, folioctl_text(v, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "business_date", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "age_days", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "folio_number", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "guest", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "room", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, v, "amount", money));
        fmt_table_add(t, folioctl_money(ctl, v, "open_amount", money));
        fmt_table_add(t, folioctl_text(v, "status", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(v, "reference", buf, sizeof(buf)));
    }
    return folioctl_table_done(t, title);
}

/* "12: 100.00, 13: 50.00" from a payment's allocations. */
static void folioctl_allocations_text(const struct folioctl *ctl, const json_t *allocs, char *out,
                                      size_t len)
{
    size_t i, used = 0;
    json_t *a;

    out[0] = '\0';
    json_array_foreach (allocs, i, a) {
        char id[32], money[FMT_MONEY_LEN];
        int n = snprintf(out + used, len - used, "%s%s: %s", i > 0 ? ", " : "",
                         folioctl_text(a, "invoice_id", id, sizeof(id)),
                         folioctl_money(ctl, a, "amount", money));

        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
}

/* A city-ledger account: its figures, its contact, and (ar.get) its invoices and payments. */
static int folioctl_s_ar_account(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column pcols[] = {
        {"payment", FMT_RIGHT}, {"date", FMT_LEFT}, {"method", FMT_LEFT},     {"amount", FMT_RIGHT},
        {"shift", FMT_RIGHT},   {"ref", FMT_LEFT},  {"applied to", FMT_LEFT},
    };
    static const char *const contact_keys[] = {"name",   "email", "phone", "address",
                                               "tax_id", "notes", NULL};
    struct folioctl_kv kv = {0};
    char buf[1024], buf2[256], money[FMT_MONEY_LEN];
    const json_t *a = json_is_object(json_object_get(result, "account"))
                          ? json_object_get(result, "account")
                          : result;
    const json_t *invoices = json_object_get(result, "invoices");
    const json_t *payments = json_object_get(result, "payments");
    struct fmt_table *t;
    size_t i;
    json_t *y;
    int rc;

    folioctl_kv_putf(&kv, "account", "%s (id %s)", folioctl_text(a, "code", buf, sizeof(buf)),
                     folioctl_text(a, "id", buf2, sizeof(buf2)));
    folioctl_kv_put(&kv, "name", folioctl_text(a, "name", buf, sizeof(buf)));
    folioctl_kv_put(&kv, "kind", folioctl_text(a, "kind", buf, sizeof(buf)));
    for (i = 0; contact_keys[i] != NULL; i++) {
        char path[32];

        snprintf(path, sizeof(path), "contact.%s", contact_keys[i]);
        if (json_is_string(folioctl_get(a, path))) {
            snprintf(buf2, sizeof(buf2), "contact %s", contact_keys[i]);
            folioctl_kv_put(&kv, buf2, folioctl_text(a, path, buf, sizeof(buf)));
        }
    }
    folioctl_kv_putf(&kv, "folio", "%s (id %s)", folioctl_text(a, "folio_number", buf, sizeof(buf)),
                     folioctl_text(a, "folio_id", buf2, sizeof(buf2)));
    if (json_is_integer(json_object_get(a, "credit_limit"))) {
        folioctl_kv_put(&kv, "credit limit", folioctl_money(ctl, a, "credit_limit", money));
        folioctl_kv_put(&kv, "available", folioctl_money(ctl, a, "available", money));
    } else {
        folioctl_kv_put(&kv, "credit limit", "none");
    }
    folioctl_kv_putf(&kv, "open invoices", "%s",
                     folioctl_text(a, "open_invoices", buf, sizeof(buf)));
    folioctl_kv_putf(&kv, "balance", "%s%s", folioctl_money(ctl, a, "balance", money),
                     ctl->cur_suffix);
    rc = folioctl_kv_done(&kv);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (json_is_array(invoices)) {
        if (json_array_size(invoices) == 0)
            printf("\n(no invoices)\n");
        else if ((rc = folioctl_show_invoices(ctl, invoices, "")) != FOLIOCTL_EXIT_OK)
            return rc;
    }
    if (!json_is_array(payments))
        return FOLIOCTL_EXIT_OK;
    if (json_array_size(payments) == 0) {
        printf("\n(no payments)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(pcols, FOLIOCTL_NCOLS(pcols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (payments, i, y) {
        fmt_table_add(t, folioctl_text(y, "id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(y, "business_date", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(y, "method", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_money(ctl, y, "amount", money));
        fmt_table_add(t, folioctl_text(y, "shift_id", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(y, "reference", buf, sizeof(buf)));
        folioctl_allocations_text(ctl, json_object_get(y, "allocations"), buf, sizeof(buf));
        fmt_table_add(t, buf);
    }
    return folioctl_table_done(t, "");
}

static int folioctl_s_ar_accounts(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column cols[] = {
        {"code", FMT_LEFT},           {"name", FMT_LEFT},     {"kind", FMT_LEFT},
        {"credit limit", FMT_RIGHT},  {"balance", FMT_RIGHT}, {"available", FMT_RIGHT},
        {"open invoices", FMT_RIGHT},
    };
    const json_t *items = json_object_get(result, "items");
    struct fmt_table *t;
    size_t i;
    json_t *a;

    if (json_array_size(items) == 0) {
        printf("(no city-ledger accounts)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (items, i, a) {
        char buf[256], money[FMT_MONEY_LEN];

        fmt_table_add(t, folioctl_text(a, "code", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(a, "name", buf, sizeof(buf)));
        fmt_table_add(t, folioctl_text(a, "kind", buf, sizeof(buf)));
        fmt_table_add(t, json_is_integer(json_object_get(a, "credit_limit"))
                             ? folioctl_money(ctl, a, "credit_limit", money)
                             : "none");
        fmt_table_add(t, folioctl_money(ctl, a, "balance", money));
        fmt_table_add(t, folioctl_money(ctl, a, "available", money));
        fmt_table_add(t, folioctl_text(a, "open_invoices", buf, sizeof(buf)));
    }
    if (folioctl_table_done(t, NULL) != FOLIOCTL_EXIT_OK)
        return FOLIOCTL_EXIT_CONN;
    printf("(%zu account%s)\n", json_array_size(items), json_array_size(items) == 1 ? "" : "s");
    return FOLIOCTL_EXIT_OK;
}

static const struct fmt_option folioctl_o_ar_transfer[] = {O_VAL("amount"), O_VAL("ref"), O_END};

static bool folioctl_b_ar_transfer(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"amount", "amount", FK_AMOUNT, 0, 0},
        {"ref", "reference", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_id(params, "folio_id", "FOLIO_ID", folioctl_pos(ctl, 0)) &&
           folioctl_put_str(params, "account", "ACCOUNT", folioctl_pos(ctl, 1)) &&
           folioctl_put_opts(ctl, params, map);
}

static int folioctl_s_ar_transfer(struct folioctl *ctl, const json_t *result)
{
    struct folioctl_kv kv = {0};
    char buf[256], buf2[256], buf3[256], money[FMT_MONEY_LEN];
    const json_t *inv = json_object_get(result, "invoice");
    const json_t *a = json_object_get(result, "account");
    const json_t *f = json_object_get(result, "folio");

    folioctl_kv_putf(
        &kv, "invoice", "%s, %s%s to %s (%s)", folioctl_text(inv, "id", buf, sizeof(buf)),
        folioctl_money(ctl, inv, "amount", money), ctl->cur_suffix,
        folioctl_text(a, "code", buf2, sizeof(buf2)), folioctl_text(a, "name", buf3, sizeof(buf3)));
    folioctl_kv_put(&kv, "business date", folioctl_text(inv, "business_date", buf, sizeof(buf)));
    folioctl_kv_putf(&kv, "folio", "%s (id %s), balance now %s%s",
                     folioctl_text(f, "number", buf, sizeof(buf)),
                     folioctl_text(f, "id", buf2, sizeof(buf2)),
                     folioctl_money(ctl, f, "balance", money), ctl->cur_suffix);
    folioctl_kv_putf(&kv, "account balance", "%s%s", folioctl_money(ctl, a, "balance", money),
                     ctl->cur_suffix);
    if (json_is_integer(json_object_get(a, "credit_limit")))
        folioctl_kv_putf(&kv, "available", "%s%s", folioctl_money(ctl, a, "available", money),
                         ctl->cur_suffix);
    return folioctl_kv_done(&kv);
}

static const struct fmt_option folioctl_o_ar_pay[] = {O_VAL("ref"), O_MANY("alloc"),
                                                      O_VAL("property"), O_END};

/* Every --alloc INVOICE_ID:AMOUNT as an "allocations" array. */
static bool folioctl_put_allocations(const struct folioctl *ctl, json_t *params)
{
    int k = folioctl_opt_index(ctl, "alloc");
    json_t *allocs = json_array();

    if (allocs == NULL)
        return folioctl_bad("out of memory");
    for (size_t i = 0; i < ctl->nargs; i++) {
        const char *v = ctl->args[i].value, *colon;
        char id_text[32];
        json_int_t id = 0;
        int64_t amount;

        if (ctl->args[i].opt != k)
            continue;
        colon = strchr(v, ':');
        if (colon == NULL || (size_t)(colon - v) >= sizeof(id_text)) {
            json_decref(allocs);
            return folioctl_bad("--alloc '%s' is not INVOICE_ID:AMOUNT (like 12:150.00)", v);
        }
        memcpy(id_text, v, (size_t)(colon - v));
        id_text[colon - v] = '\0';
        if (!folioctl_parse_id("--alloc invoice", id_text, &id) ||
            !folioctl_parse_amount(ctl, "--alloc amount", colon + 1, false, &amount) ||
            json_array_append_new(allocs, json_pack("{s:I, s:I}", "invoice_id", id, "amount",
                                                    (json_int_t)amount)) != 0) {
            json_decref(allocs);
            return false;
        }
    }
    if (json_array_size(allocs) == 0) {
        json_decref(allocs);
        return true;
    }
    return folioctl_put(params, "allocations", allocs);
}

static bool folioctl_b_ar_pay(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"ref", "reference", FK_STR, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_str(params, "account", "ACCOUNT", folioctl_pos(ctl, 0)) &&
           folioctl_put_str(params, "method", "METHOD", folioctl_pos(ctl, 1)) &&
           folioctl_put_amount(ctl, params, "amount", "AMOUNT", folioctl_pos(ctl, 2), false) &&
           folioctl_put_opts(ctl, params, map) && folioctl_put_allocations(ctl, params);
}

static int folioctl_s_ar_pay(struct folioctl *ctl, const json_t *result)
{
    struct folioctl_kv kv = {0};
    char buf[256], buf2[256], buf3[64], money[FMT_MONEY_LEN];
    const json_t *y = json_object_get(result, "payment");
    const json_t *a = json_object_get(result, "account");
    int rc;

    folioctl_kv_putf(&kv, "payment", "%s, %s%s by %s on %s",
                     folioctl_text(y, "id", buf, sizeof(buf)),
                     folioctl_money(ctl, y, "amount", money), ctl->cur_suffix,
                     folioctl_text(y, "method", buf2, sizeof(buf2)),
                     folioctl_text(y, "account", buf3, sizeof(buf3)));
    folioctl_kv_put(&kv, "shift", folioctl_text(y, "shift_id", buf, sizeof(buf)));
    folioctl_kv_putf(&kv, "account balance", "%s%s", folioctl_money(ctl, a, "balance", money),
                     ctl->cur_suffix);
    rc = folioctl_kv_done(&kv);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    return folioctl_show_invoices(ctl, json_object_get(result, "invoices"), "invoices paid:");
}

static const struct fmt_option folioctl_o_aging[] = {O_VAL("account"), O_VAL("date"),
                                                     O_VAL("property"), O_END};

static bool folioctl_b_aging(struct folioctl *ctl, json_t *params)
{
    static const struct folioctl_map map[] = {
        {"account", "account", FK_STR, 0, 0},
        {"date", "date", FK_DATE, 0, 0},
        {"property", "property", FK_STR, 0, 0},
        {NULL, NULL, FK_STR, 0, 0},
    };

    return folioctl_put_opts(ctl, params, map);
}

static void folioctl_aging_row(const struct folioctl *ctl, struct fmt_table *t, const json_t *r,
                               const char *code, const char *name)
{
    static const char *const buckets[] = {"days_0_30",    "days_31_60", "days_61_90",
                                          "days_over_90", "total",      NULL};
    char money[FMT_MONEY_LEN];

    fmt_table_add(t, code);
    fmt_table_add(t, name);
    for (size_t k = 0; buckets[k] != NULL; k++)
        fmt_table_add(t, folioctl_money(ctl, r, buckets[k], money));
}

/* The aging: one row per account, buckets by the invoices' age in days, and the totals. */
static int folioctl_s_aging(struct folioctl *ctl, const json_t *result)
{
    static const struct fmt_column cols[] = {
        {"account", FMT_LEFT}, {"name", FMT_LEFT}, {"0-30", FMT_RIGHT},  {"31-60", FMT_RIGHT},
        {"61-90", FMT_RIGHT},  {"90+", FMT_RIGHT}, {"total", FMT_RIGHT},
    };
    const json_t *items = json_object_get(result, "items");
    char prop[64], date[32];
    struct fmt_table *t;
    size_t i;
    json_t *a;

    printf("city ledger of %s aged as of %s (days since each invoice's business date)%s%s\n",
           folioctl_text(result, "property", prop, sizeof(prop)),
           folioctl_text(result, "as_of", date, sizeof(date)),
           ctl->currency[0] != '\0' ? ", amounts in " : "", ctl->currency);
    if (json_array_size(items) == 0) {
        printf("(nothing owed)\n");
        return FOLIOCTL_EXIT_OK;
    }
    t = folioctl_table(cols, FOLIOCTL_NCOLS(cols));
    if (t == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_array_foreach (items, i, a) {
        char code[64], name[256];

        folioctl_aging_row(ctl, t, a, folioctl_text(a, "account", code, sizeof(code)),
                           folioctl_text(a, "name", name, sizeof(name)));
    }
    folioctl_aging_row(ctl, t, json_object_get(result, "totals"), "total", "");
    return folioctl_table_done(t, NULL);
}

static const struct folioctl_op folioctl_ops[] = {
    {"checkin", "stay.check_in", 1, 1, folioctl_o_checkin, folioctl_b_checkin, folioctl_s_stay,
     " ROOM --first NAME --last NAME --departure DATE [--rate AMOUNT] [OPTIONS]"},
    {"stay", "stay.get", 1, 1, folioctl_o_none, folioctl_b_stay_id, folioctl_s_stay, " STAY_ID"},
    {"stays", "stay.list", 0, 0, folioctl_o_stays, folioctl_b_stays, folioctl_s_stays,
     " [--view in_house|arrivals|due_out|checked_out] [--date DATE] [--property P]"},
    {"stay-update", "stay.update", 1, 1, folioctl_o_stay_update, folioctl_b_stay_update,
     folioctl_s_stay,
     " STAY_ID [--departure DATE] [--rate AMOUNT] [--rate-code C] [--credit-limit AMOUNT|none]"
     " [--no-post yes|no] [--adults N] [--children N] [--notes TEXT]"},
    {"move", "stay.move", 2, 2, folioctl_o_none, folioctl_b_move, folioctl_s_stay, " STAY_ID ROOM"},
    {"checkout", "stay.check_out", 1, 1, folioctl_o_pay_many, folioctl_b_checkout, folioctl_s_stay,
     " STAY_ID [--pay METHOD:AMOUNT[:WINDOW]]..."},
    {"reinstate", "stay.reinstate", 1, 1, folioctl_o_none, folioctl_b_stay_id, folioctl_s_stay,
     " STAY_ID"},
    {"folio", "folio.get", 1, 1, folioctl_o_none, folioctl_b_folio_id, folioctl_s_folio,
     " FOLIO_ID"},
    {"folios", "folio.list", 0, 0, folioctl_o_folios, folioctl_b_folios, folioctl_s_folios,
     " [--type T] [--status S] [--stay STAY_ID] [--property P]"},
    {"open", "folio.open", 1, 1, folioctl_o_open, folioctl_b_open, folioctl_s_folio_summary,
     " TYPE [--name NAME] [--stay STAY_ID] [--property P]"},
    {"close", "folio.close", 1, 1, folioctl_o_none, folioctl_b_folio_id, folioctl_s_folio_summary,
     " FOLIO_ID"},
    {"reopen", "folio.reopen", 1, 1, folioctl_o_none, folioctl_b_folio_id, folioctl_s_folio_summary,
     " FOLIO_ID"},
    {"post", "folio.post", 2, 2, folioctl_o_post, folioctl_b_post, folioctl_s_posted,
     " (--folio ID | --stay ID [--window W]) CODE AMOUNT [--qty N] [--desc TEXT] [--ref REF]"},
    {"pay", "folio.pay", 2, 2, folioctl_o_pay, folioctl_b_pay, folioctl_s_posted,
     " (--folio ID | --stay ID [--window W]) METHOD AMOUNT [--ref REF] [--desc TEXT]"},
    {"void", "folio.void", 1, 1, folioctl_o_reason, folioctl_b_void, folioctl_s_posted,
     " POSTING_ID [--reason TEXT]"},
    {"adjust", "folio.adjust", 1, 1, folioctl_o_adjust, folioctl_b_adjust, folioctl_s_posted,
     " POSTING_ID --reason TEXT [--amount AMOUNT]"},
    {"transfer", "folio.transfer", 1, 500, folioctl_o_transfer, folioctl_b_transfer,
     folioctl_s_transfer, " POSTING_ID... (--to-folio ID | --to-window W) [--reason TEXT]"},
    {"transfer-balance", "folio.transfer_balance", 2, 2, folioctl_o_transfer_balance,
     folioctl_b_transfer_balance, folioctl_s_transfer,
     " FROM_FOLIO TO_FOLIO [--amount AMOUNT] [--reason TEXT]"},
    {"route", "routing.set", 1, 1, folioctl_o_route, folioctl_b_route, folioctl_s_route,
     " STAY_ID (--code C | --department D) (--to-folio ID | --to-window W | --to-master)"},
    {"unroute", "routing.clear", 1, 1, folioctl_o_none, folioctl_b_unroute, folioctl_s_unroute,
     " RULE_ID"},
    {"routes", "routing.list", 1, 1, folioctl_o_none, folioctl_b_stay_id, folioctl_s_routes,
     " STAY_ID"},
    {"group-create", "group.create", 2, 2, folioctl_o_group_create, folioctl_b_group_create,
     folioctl_s_group,
     " CODE NAME --departure DATE [--arrival DATE] [--credit-limit AMOUNT] [--property P]"},
    {"group", "group.get", 1, 1, folioctl_o_property, folioctl_b_group, folioctl_s_group,
     " GROUP_ID|CODE [--property P]"},
    {"group-checkout", "group.check_out", 1, 1, folioctl_o_pay_many, folioctl_b_group_checkout,
     folioctl_s_group_checkout, " GROUP_ID [--pay METHOD:AMOUNT]..."},
    {"statement", "folio.statement", 1, 1, folioctl_o_statement, folioctl_b_statement,
     folioctl_s_statement, " FOLIO_ID [--html | --pdf -o FILE]"},
    {"close-day", "business_date.close", 0, 0, folioctl_o_property, folioctl_b_property,
     folioctl_s_close_day, " [--property P]"},
    {"shift-open", "cashier.open", 0, 0, folioctl_o_shift_open, folioctl_b_shift_open,
     folioctl_s_shift, " [--float AMOUNT] [--property P]"},
    {"shift-close", "cashier.close", 1, 1, folioctl_o_shift_close, folioctl_b_shift_close,
     folioctl_s_shift, " DECLARED [--shift SHIFT_ID] [--note TEXT] [--lines]"},
    {"shift-report", "cashier.report", 0, 1, folioctl_o_shift_report, folioctl_b_shift_report,
     folioctl_s_shift, " [SHIFT_ID | --cashier USER] [--lines]"},
    {"ar-create", "ar.create", 2, 2, folioctl_o_ar_create, folioctl_b_ar_create,
     folioctl_s_ar_account,
     " CODE NAME [--kind company|agency] [--credit-limit AMOUNT] [--contact NAME] [--email E]"
     " [--phone P] [--address A] [--tax-id T] [--notes TEXT] [--property P]"},
    {"ar", "ar.get", 1, 1, folioctl_o_property, folioctl_b_ar, folioctl_s_ar_account,
     " ACCOUNT_ID|CODE [--property P]"},
    {"ars", "ar.list", 0, 0, folioctl_o_property, folioctl_b_property, folioctl_s_ar_accounts,
     " [--property P]"},
    {"ar-transfer", "ar.transfer", 2, 2, folioctl_o_ar_transfer, folioctl_b_ar_transfer,
     folioctl_s_ar_transfer, " FOLIO_ID ACCOUNT [--amount AMOUNT] [--ref REF]"},
    {"ar-pay", "ar.pay", 3, 3, folioctl_o_ar_pay, folioctl_b_ar_pay, folioctl_s_ar_pay,
     " ACCOUNT METHOD AMOUNT [--ref REF] [--alloc INVOICE_ID:AMOUNT]... [--property P]"},
    {"aging", "ar.aging", 0, 0, folioctl_o_aging, folioctl_b_aging, folioctl_s_aging,
     " [--account CODE] [--date DATE] [--property P]"},
};

/* ---- night audit (docs/audit.md) ----
 *
 * audit run|status|report: a command of its own rather than one call, since `audit run`
 * follows the run until it ends (audit.progress notifications, audit.status when none come)
 * and `audit report` writes tables, CSV or HTML. A report's content becomes tables without
 * knowing each kind: every array of objects is a table, every object of objects a table with
 * one row per member, every object of plain values a two-column table; amounts are the
 * members named like amounts (FOLIOCTL_AUDIT_MONEY), shown in major units. */

static const char *const folioctl_audit_money[] = {"adjustments",
                                                   "adr",
                                                   "amount",
                                                   "applied",
                                                   "balance",
                                                   "charges",
                                                   "closing",
                                                   "computed_closing",
                                                   "corrections",
                                                   "credit_limit",
                                                   "credits",
                                                   "days_0_30",
                                                   "days_31_60",
                                                   "days_61_90",
                                                   "days_over_90",
                                                   "declared",
                                                   "difference",
                                                   "expected_cash",
                                                   "float",
                                                   "held",
                                                   "in_house_balance",
                                                   "guest_ledger",
                                                   "house_ledger",
                                                   "invoiced",
                                                   "net",
                                                   "opening",
                                                   "over_by",
                                                   "paid",
                                                   "paid_out",
                                                   "paid_outs",
                                                   "posted",
                                                   "rate",
                                                   "received",
                                                   "refunded",
                                                   "revenue",
                                                   "revpar",
                                                   "room_revenue",
                                                   "service",
                                                   "tax",
                                                   "threshold",
                                                   "total",
                                                   "transfers",
                                                   "transfers_in",
                                                   "transfers_out",
                                                   "voids",
                                                   NULL};

struct folioctl_audit {
    struct folioctl *ctl;
    const char *property; /* --property, or NULL: the caller's */
    const char *kind;
    FILE *out;
    enum { FA_TEXT, FA_CSV, FA_HTML } format;
};

static bool folioctl_audit_is_money(const struct folioctl_audit *fa, const char *key)
{
    /* the cashier report counts its voids */
    if (strcmp(key, "voids") == 0 && fa->kind != NULL && strcmp(fa->kind, "cashier") == 0)
        return false;
    for (size_t i = 0; folioctl_audit_money[i] != NULL; i++)
        if (strcmp(key, folioctl_audit_money[i]) == 0)
            return true;
    return false;
}

/* A cell as text (caller frees): amounts in major units, objects and arrays as compact JSON. */
static char *folioctl_audit_cell(const struct folioctl_audit *fa, const char *key, const json_t *v)
{
    if (json_is_integer(v) && folioctl_audit_is_money(fa, key)) {
        char money[FMT_MONEY_LEN];
        return strdup(fmt_money(money, (int64_t)json_integer_value(v), fa->ctl->minor_units));
    }
    if (v == NULL)
        return strdup("");
    return folioctl_value_text(v);
}

static void folioctl_audit_csv_field(FILE *out, const char *s)
{
    bool quote = strpbrk(s, ",\"\n\r") != NULL || (s[0] != '\0' && strchr("=+-@", s[0]) != NULL &&
                                                   !(s[0] == '-' && s[1] >= '0' && s[1] <= '9'));
    if (!quote) {
        fputs(s, out);
        return;
    }
    /* a formula-like cell gets a leading quote so that a spreadsheet shows it as text */
    fputc('"', out);
    if (strchr("=+-@", s[0]) != NULL)
        fputc('\'', out);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void folioctl_audit_html_text(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '&':
            fputs("&amp;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&#39;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

/* One table: the title, the column names and rows of cells (all strings, owned). */
struct folioctl_audit_table {
    char title[96];
    const char *cols[32];
    size_t ncols;
    char **cells; /* rows * ncols */
    size_t nrows;
    bool failed;
};

static void folioctl_audit_table_free(struct folioctl_audit_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
}

static void folioctl_audit_add_col(struct folioctl_audit_table *t, const char *name)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i], name) == 0)
            return;
    if (t->ncols < sizeof(t->cols) / sizeof(t->cols[0]))
        t->cols[t->ncols++] = name;
}

/* Adds a row: label (may be NULL: no label column) then the object's plain members. */
static void folioctl_audit_add_row(const struct folioctl_audit *fa, struct folioctl_audit_table *t,
                                   const char *label, const json_t *obj)
{
    char **cells = realloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    if (cells == NULL) {
        t->failed = true;
        return;
    }
    t->cells = cells;
    for (size_t c = 0; c < t->ncols; c++) {
        const char *col = t->cols[c];
        char *text;
        if (label != NULL && c == 0)
            text = fmt_sanitize(label);
        else if (json_is_object(obj))
            text = folioctl_audit_cell(fa, col, json_object_get(obj, col));
        else
            text = folioctl_audit_cell(fa, t->title, obj);
        if (text == NULL)
            t->failed = true;
        cells[t->nrows * t->ncols + c] = text;
    }
    t->nrows++;
}

static int folioctl_audit_emit(const struct folioctl_audit *fa, struct folioctl_audit_table *t)
{
    FILE *out = fa->out;
    int rc = FOLIOCTL_EXIT_OK;

    if (t->failed) {
        folioctl_err("out of memory");
        return FOLIOCTL_EXIT_CONN;
    }
    if (fa->format == FA_TEXT) {
        struct fmt_column cols[32];
        struct fmt_table *ft;
        for (size_t c = 0; c < t->ncols; c++) {
            cols[c].header = t->cols[c];
            cols[c].align = FMT_LEFT;
            for (size_t r = 0; r < t->nrows; r++) {
                const char *s = t->cells[r * t->ncols + c];
                if (s != NULL && s[0] != '\0' && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) &&
                    strspn(s, "-0123456789.") == strlen(s))
                    cols[c].align = FMT_RIGHT;
            }
        }
        fprintf(out, "\n%s\n", t->title);
        if (t->nrows == 0) {
            fprintf(out, "(none)\n");
            return rc;
        }
        ft = fmt_table_new(cols, t->ncols);
        if (ft == NULL)
            return FOLIOCTL_EXIT_CONN;
        for (size_t i = 0; i < t->nrows * t->ncols; i++)
            fmt_table_add(ft, t->cells[i]);
        if (!fmt_table_print(ft, out))
            rc = FOLIOCTL_EXIT_USAGE;
        fmt_table_free(ft);
    } else if (fa->format == FA_CSV) {
        fprintf(out, "# %s\n", t->title);
        for (size_t c = 0; c < t->ncols; c++) {
            if (c > 0)
                fputc(',', out);
            folioctl_audit_csv_field(out, t->cols[c]);
        }
        fputc('\n', out);
        for (size_t r = 0; r < t->nrows; r++) {
            for (size_t c = 0; c < t->ncols; c++) {
                if (c > 0)
                    fputc(',', out);
                folioctl_audit_csv_field(out, t->cells[r * t->ncols + c]);
            }
            fputc('\n', out);
        }
        fputc('\n', out);
    } else {
        fputs("<h2>", out);
        folioctl_audit_html_text(out, t->title);
        fputs("</h2>\n<table>\n<tr>", out);
        for (size_t c = 0; c < t->ncols; c++) {
            fputs("<th>", out);
            folioctl_audit_html_text(out, t->cols[c]);
            fputs("</th>", out);
        }
        fputs("</tr>\n", out);
        for (size_t r = 0; r < t->nrows; r++) {
            fputs("<tr>", out);
            for (size_t c = 0; c < t->ncols; c++) {
                fputs("<td>", out);
                folioctl_audit_html_text(out, t->cells[r * t->ncols + c]);
                fputs("</td>", out);
            }
            fputs("</tr>\n", out);
        }
        fputs("</table>\n", out);
    }
    return ferror(out) ? FOLIOCTL_EXIT_USAGE : rc;
}

/* The tables of one report's content (see the section comment). */
static int folioctl_audit_tables(const struct folioctl_audit *fa, const json_t *content)
{
    struct folioctl_audit_table summary = {.title = "summary"};
    const char *key;
    json_t *v;
    int rc = FOLIOCTL_EXIT_OK;

    folioctl_audit_add_col(&summary, "item");
    folioctl_audit_add_col(&summary, "value");
    json_object_foreach ((json_t *)content, key, v) {
        struct folioctl_audit_table t = {0};
        snprintf(t.title, sizeof(t.title), "%s", key);
        if (json_is_array(v) && (json_array_size(v) == 0 || json_is_object(json_array_get(v, 0)))) {
            size_t i;
            json_t *el, *x;
            const char *k2;
            json_array_foreach (v, i, el)
                json_object_foreach (el, k2, x)
                    if (!json_is_object(x))
                        folioctl_audit_add_col(&t, k2);
            json_array_foreach (v, i, el)
                folioctl_audit_add_row(fa, &t, NULL, el);
        } else if (json_is_object(v)) {
            const char *k2, *k3;
            json_t *x, *y;
            bool nested = json_object_size(v) > 0;
            json_object_foreach (v, k2, x)
                nested = nested && json_is_object(x);
            if (nested) {
                folioctl_audit_add_col(&t, "");
                json_object_foreach (v, k2, x)
                    json_object_foreach (x, k3, y)
                        if (!json_is_object(y))
                            folioctl_audit_add_col(&t, k3);
                json_object_foreach (v, k2, x)
                    folioctl_audit_add_row(fa, &t, k2, x);
            } else {
                folioctl_audit_add_col(&t, "item");
                folioctl_audit_add_col(&t, "value");
                json_object_foreach (v, k2, x) {
                    char *cell = folioctl_audit_cell(fa, k2, x);
                    char **cells = realloc(t.cells, (t.nrows + 1) * 2 * sizeof(char *));
                    if (cells == NULL || cell == NULL) {
                        free(cell);
                        t.failed = true;
                        if (cells != NULL)
                            t.cells = cells;
                        break;
                    }
                    t.cells = cells;
                    cells[t.nrows * 2] = fmt_sanitize(k2);
                    cells[t.nrows * 2 + 1] = cell;
                    t.nrows++;
                }
            }
        } else {
            char **cells = realloc(summary.cells, (summary.nrows + 1) * 2 * sizeof(char *));
            if (cells == NULL) {
                summary.failed = true;
                continue;
            }
            summary.cells = cells;
            cells[summary.nrows * 2] = fmt_sanitize(key);
            cells[summary.nrows * 2 + 1] = folioctl_audit_cell(fa, key, v);
            summary.nrows++;
            continue;
        }
        if (rc == FOLIOCTL_EXIT_OK)
            rc = folioctl_audit_emit(fa, &t);
        folioctl_audit_table_free(&t);
    }
    if (summary.nrows > 0 && rc == FOLIOCTL_EXIT_OK)
        rc = folioctl_audit_emit(fa, &summary);
    folioctl_audit_table_free(&summary);
    return rc;
}

/* The minor units of the property the command is about (server.info). */
static void folioctl_audit_currency(struct folioctl *ctl, const char *want)
{
    json_t *response = NULL, *p;
    size_t i;

    if (!client_call(ctl->client, "server.info", NULL, &response))
        return;
    json_t *res = client_response_result(response);
    const char *mine = json_string_value(folioctl_get(res, "identity.property"));
    json_array_foreach (json_object_get(res, "properties"), i, p) {
        const char *code = json_string_value(json_object_get(p, "code"));
        json_int_t mu = json_integer_value(json_object_get(p, "minor_units"));
        const char *cur = json_string_value(json_object_get(p, "currency"));
        const char *pick = want != NULL ? want : mine;
        if (code == NULL ||
            (pick != NULL ? strcmp(code, pick) != 0
                          : json_array_size(json_object_get(res, "properties")) != 1))
            continue;
        if (mu >= 0 && mu <= FMT_MAX_MINOR_UNITS)
            ctl->minor_units = (unsigned)mu;
        if (cur != NULL && strlen(cur) < sizeof(ctl->currency)) {
            snprintf(ctl->currency, sizeof(ctl->currency), "%s", cur);
            snprintf(ctl->cur_suffix, sizeof(ctl->cur_suffix), " %s", cur);
        }
    }
    json_decref(response);
    ctl->currency_known = true;
}

static json_t *folioctl_audit_params(const struct folioctl_audit *fa)
{
    json_t *p = json_object();
    if (p != NULL && fa->property != NULL)
        json_object_set_new(p, "property", json_string(fa->property));
    return p;
}

/* One line about a run: its date, status, step and progress. */
static void folioctl_audit_line(const json_t *run)
{
    char date[16], status[32], step[32], done[32], total[32];

    folioctl_text(run, "business_date", date, sizeof(date));
    folioctl_text(run, "status", status, sizeof(status));
    folioctl_text(run, "step", step, sizeof(step));
    folioctl_text(run, "progress.done", done, sizeof(done));
    folioctl_text(run, "progress.total", total, sizeof(total));
    printf("audit of %s: %s, step %s (%s of %s)\n", date, status, step, done, total);
    fflush(stdout);
}

static int folioctl_audit_status(struct folioctl_audit *fa)
{
    json_t *result;
    int rc = folioctl_call(fa->ctl, "audit.status", folioctl_audit_params(fa), &result);
    char buf[128], buf2[128];

    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (fa->ctl->json) {
        folioctl_print_json(result, JSON_COMPACT);
        json_decref(result);
        return rc;
    }
    printf("property %s, business date %s, last closed %s\n",
           folioctl_text(result, "property", buf, sizeof(buf)),
           folioctl_text(result, "business_date", buf2, sizeof(buf2)),
           json_is_string(json_object_get(result, "last_closed"))
               ? json_string_value(json_object_get(result, "last_closed"))
               : "-");
    printf("schedule %s at %s (%s), next due %s\n",
           json_is_true(json_object_get(result, "schedule")) ? "on" : "off",
           folioctl_text(result, "audit_time", buf, sizeof(buf)),
           folioctl_text(result, "timezone", buf2, sizeof(buf2)),
           json_string_value(json_object_get(result, "next_audit_at")) != NULL
               ? json_string_value(json_object_get(result, "next_audit_at"))
               : "-");
    if (json_is_object(json_object_get(result, "run"))) {
        const json_t *run = json_object_get(result, "run");
        static const struct fmt_column cols[] = {
            {"step", FMT_LEFT}, {"status", FMT_LEFT}, {"done", FMT_RIGHT}, {"total", FMT_RIGHT}};
        struct fmt_table *t = fmt_table_new(cols, 4);
        size_t i;
        json_t *s;
        folioctl_audit_line(run);
        if (json_is_object(json_object_get(run, "error")))
            printf("error: %s\n", folioctl_text(run, "error.message", buf, sizeof(buf)));
        if (t == NULL) {
            json_decref(result);
            return FOLIOCTL_EXIT_CONN;
        }
        json_array_foreach (json_object_get(run, "steps"), i, s) {
            fmt_table_add(t, folioctl_text(s, "step", buf, sizeof(buf)));
            fmt_table_add(t, folioctl_text(s, "status", buf, sizeof(buf)));
            fmt_table_add(t, folioctl_text(s, "done", buf, sizeof(buf)));
            fmt_table_add(t, folioctl_text(s, "total", buf, sizeof(buf)));
        }
        if (!fmt_table_print(t, stdout))
            rc = FOLIOCTL_EXIT_USAGE;
        fmt_table_free(t);
    } else {
        printf("no audit has run yet\n");
    }
    json_decref(result);
    return rc;
}

/* audit.run, then follow the run until it is done, blocked or failed. */
static int folioctl_audit_run(struct folioctl_audit *fa)
{
    struct folioctl *ctl = fa->ctl;
    json_t *params = folioctl_audit_params(fa), *response = NULL, *msg;
    struct client_rpc_error e;
    char last[128] = "";
    int rc = FOLIOCTL_EXIT_OK;

    if (!client_call(ctl->client, "audit.run", params, &response)) {
        json_decref(params);
        return folioctl_transport_error(ctl);
    }
    json_decref(params);
    if (client_response_error(response, &e)) {
        if (e.reason == NULL || strcmp(e.reason, "audit_in_progress") != 0) {
            rc = folioctl_rpc_error(ctl, response);
            if (e.reason != NULL && strcmp(e.reason, "audit_blocked") == 0 && !ctl->json) {
                json_t *data = json_object_get(json_object_get(response, "error"), "data");
                struct folioctl_audit sub = *fa;
                sub.out = stderr;
                sub.format = FA_TEXT;
                (void)folioctl_audit_tables(&sub, json_object_get(data, "blockers"));
            }
            json_decref(response);
            return rc;
        }
        fprintf(stderr, "folioctl: the audit is running already; following it\n");
    } else if (!ctl->json) {
        folioctl_audit_line(client_response_result(response));
    }
    json_decref(response);
    /* audit.progress notifications after each step; audit.status when none come for a while */
    for (int quiet = 0;;) {
        json_t *run = NULL;
        if (client_next(ctl->client, 1000, &msg)) {
            const char *method = json_string_value(json_object_get(msg, "method"));
            if (method != NULL && strcmp(method, "audit.progress") == 0)
                run = json_incref(json_object_get(msg, "params"));
            json_decref(msg);
            quiet = 0;
            if (run == NULL)
                continue;
        } else if (client_error_kind(ctl->client) != CLIENT_ERR_TIMEOUT) {
            return folioctl_transport_error(ctl);
        } else {
            json_t *st;
            if (++quiet < 3)
                continue;
            quiet = 0;
            rc = folioctl_call(ctl, "audit.status", folioctl_audit_params(fa), &st);
            if (rc != FOLIOCTL_EXIT_OK)
                return rc;
            run = json_incref(json_object_get(st, "run"));
            json_decref(st);
            if (!json_is_object(run)) {
                json_decref(run);
                continue;
            }
        }
        const char *status = json_string_value(json_object_get(run, "status"));
        char now[128];
        snprintf(now, sizeof(now), "%s/%s/%" JSON_INTEGER_FORMAT, status != NULL ? status : "?",
                 json_string_value(json_object_get(run, "step")) != NULL
                     ? json_string_value(json_object_get(run, "step"))
                     : "?",
                 json_integer_value(folioctl_get(run, "progress.done")));
        if (strcmp(now, last) != 0) {
            snprintf(last, sizeof(last), "%s", now);
            if (ctl->json)
                folioctl_print_json(run, JSON_COMPACT);
            else
                folioctl_audit_line(run);
        }
        if (status != NULL && strcmp(status, "running") != 0) {
            if (strcmp(status, "done") != 0) {
                char buf[512];
                folioctl_err("the audit stopped: %s (%s)", status,
                             folioctl_text(run, "error.message", buf, sizeof(buf)));
                rc = FOLIOCTL_EXIT_RPC;
            }
            json_decref(run);
            return rc;
        }
        json_decref(run);
    }
}

static int folioctl_audit_report(struct folioctl_audit *fa, const char *date, const char *kind,
                                 const char *path)
{
    struct folioctl *ctl = fa->ctl;
    json_t *params = folioctl_audit_params(fa), *result;
    char buf[64], buf2[64];
    int rc;

    if (params == NULL)
        return FOLIOCTL_EXIT_CONN;
    json_object_set_new(params, "date", json_string(date));
    json_object_set_new(params, "kind", json_string(kind));
    rc = folioctl_call(ctl, "audit.report", params, &result);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (ctl->json && path == NULL) {
        folioctl_print_json(result, JSON_COMPACT);
        json_decref(result);
        return rc;
    }
    fa->out = stdout;
    if (path != NULL) {
        fa->out = fopen(path, "w");
        if (fa->out == NULL) {
            folioctl_err("cannot write %s: %s", path, strerror(errno));
            json_decref(result);
            return FOLIOCTL_EXIT_USAGE;
        }
    }
    folioctl_text(result, "property", buf, sizeof(buf));
    folioctl_text(result, "business_date", buf2, sizeof(buf2));
    if (fa->format == FA_HTML) {
        fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", fa->out);
        folioctl_audit_html_text(fa->out, kind);
        fputs("</title><style>body{font-family:sans-serif}table{border-collapse:collapse;"
              "margin-bottom:1em}td,th{border:1px solid #999;padding:2px 6px}"
              "</style></head><body>\n<h1>",
              fa->out);
        folioctl_audit_html_text(fa->out, kind);
        fputs(" report, ", fa->out);
        folioctl_audit_html_text(fa->out, buf);
        fputs(", business date ", fa->out);
        folioctl_audit_html_text(fa->out, buf2);
        fprintf(fa->out, "</h1>\n<p>amounts in %s</p>\n",
                ctl->currency[0] != '\0' ? ctl->currency : "major units");
    } else if (fa->format == FA_CSV) {
        fprintf(fa->out, "# %s report, %s, business date %s, amounts in %s\n", kind, buf, buf2,
                ctl->currency[0] != '\0' ? ctl->currency : "major units");
    } else {
        fprintf(fa->out, "%s report of %s, business date %s%s%s\n", kind, buf, buf2,
                ctl->currency[0] != '\0' ? ", amounts in " : "", ctl->currency);
    }
    rc = folioctl_audit_tables(fa, json_object_get(result, "content"));
    if (fa->format == FA_HTML)
        fputs("</body></html>\n", fa->out);
    if (path != NULL) {
        if (fclose(fa->out) != 0 && rc == FOLIOCTL_EXIT_OK) {
            folioctl_err("cannot write %s: %s", path, strerror(errno));
            rc = FOLIOCTL_EXIT_USAGE;
        }
        if (rc == FOLIOCTL_EXIT_OK && !ctl->json)
            printf("%s report of %s written to %s\n", kind, buf2, path);
    }
    json_decref(result);
    return rc;
}

/* audit run [--property P] | audit status [--property P]
 * | audit report DATE KIND [--csv FILE | --html FILE] [--property P] */
static int folioctl_cmd_audit(struct folioctl *ctl, int argc, char **argv)
{
    struct folioctl_audit fa = {.ctl = ctl, .out = stdout, .format = FA_TEXT};
    const char *pos[3] = {NULL, NULL, NULL}, *path = NULL;
    size_t npos = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--property") == 0 || strcmp(a, "--csv") == 0 || strcmp(a, "--html") == 0) {
            if (i + 1 >= argc)
                return folioctl_usage_error("%s needs a value", a);
            if (strcmp(a, "--property") == 0) {
                fa.property = argv[++i];
            } else {
                if (path != NULL)
                    return folioctl_usage_error("give --csv or --html once");
                fa.format = strcmp(a, "--csv") == 0 ? FA_CSV : FA_HTML;
                path = argv[++i];
            }
        } else if (a[0] == '-' && a[1] == '-') {
            return folioctl_usage_error("audit: unknown option %s", a);
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            return folioctl_usage_error("audit: too many arguments");
        }
    }
    if (strcmp(argv[0], "report") == 0) {
        if (npos != 2 || !fmt_is_date(pos[0]))
            return folioctl_usage_error("usage: folioctl audit report DATE KIND [--csv FILE | "
                                        "--html FILE] [--property P]");
        fa.kind = pos[1];
    } else if ((strcmp(argv[0], "run") != 0 && strcmp(argv[0], "status") != 0) || npos != 0 ||
               path != NULL) {
        return folioctl_usage_error("usage: folioctl audit run|status [--property P] | audit "
                                    "report DATE KIND [--csv FILE | --html FILE]");
    }
    folioctl_audit_currency(ctl, fa.property);
    if (strcmp(argv[0], "run") == 0)
        return folioctl_audit_run(&fa);
    if (strcmp(argv[0], "status") == 0)
        return folioctl_audit_status(&fa);
    return folioctl_audit_report(&fa, pos[0], pos[1], path);
}

/* ---- main ---- */

enum folioctl_opt {
    FOLIOCTL_OPT_HOST = 256,
    FOLIOCTL_OPT_PORT,
    FOLIOCTL_OPT_CA,
    FOLIOCTL_OPT_CERT,
    FOLIOCTL_OPT_KEY,
    FOLIOCTL_OPT_USER,
    FOLIOCTL_OPT_PASSWORD_FILE,
    FOLIOCTL_OPT_JSON,
    FOLIOCTL_OPT_TIMEOUT,
};

static int folioctl_parse_args(struct folioctl *ctl, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, NULL, FOLIOCTL_OPT_HOST},
        {"port", required_argument, NULL, FOLIOCTL_OPT_PORT},
        {"ca", required_argument, NULL, FOLIOCTL_OPT_CA},
        {"cert", required_argument, NULL, FOLIOCTL_OPT_CERT},
        {"key", required_argument, NULL, FOLIOCTL_OPT_KEY},
        {"user", required_argument, NULL, FOLIOCTL_OPT_USER},
        {"password-file", required_argument, NULL, FOLIOCTL_OPT_PASSWORD_FILE},
        {"json", no_argument, NULL, FOLIOCTL_OPT_JSON},
        {"timeout", required_argument, NULL, FOLIOCTL_OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env;
    unsigned long v;
    int opt;

    client_options_init(&ctl->copts);
    if ((env = getenv("FOLIOD_HOST")) != NULL && env[0] != '\0')
        ctl->copts.host = env;
    if ((env = getenv("FOLIOD_PORT")) != NULL && env[0] != '\0') {
        if (!folioctl_parse_uint(env, 1, 65535, &v))
            return folioctl_usage_error("FOLIOD_PORT=%s is not a port number", env);
        ctl->copts.port = (unsigned)v;
    }
    if ((env = getenv("FOLIOD_CA")) != NULL && env[0] != '\0')
        ctl->copts.ca_file = env;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case FOLIOCTL_OPT_HOST:
            ctl->copts.host = optarg;
            break;
        case FOLIOCTL_OPT_PORT:
            if (!folioctl_parse_uint(optarg, 1, 65535, &v))
                return folioctl_usage_error("--port %s is not a port number", optarg);
            ctl->copts.port = (unsigned)v;
            break;
        case FOLIOCTL_OPT_CA:
            ctl->copts.ca_file = optarg;
            break;
        case FOLIOCTL_OPT_CERT:
            ctl->copts.cert_file = optarg;
            break;
        case FOLIOCTL_OPT_KEY:
            ctl->copts.key_file = optarg;
            break;
        case FOLIOCTL_OPT_USER:
            ctl->user = optarg;
            break;
        case FOLIOCTL_OPT_PASSWORD_FILE:
            ctl->password_file = optarg;
            break;
        case FOLIOCTL_OPT_JSON:
            ctl->json = true;
            break;
        case FOLIOCTL_OPT_TIMEOUT:
            if (!folioctl_parse_uint(optarg, 1, 3600000, &v))
                return folioctl_usage_error("--timeout %s is not a number of milliseconds "
                                            "(1-3600000)",
                                            optarg);
            ctl->copts.timeout_ms = (int)v;
            break;
        case 'h':
            folioctl_usage(stdout);
            exit(FOLIOCTL_EXIT_OK);
        default:
            if (optopt != 0 && optopt < 256)
                return folioctl_usage_error("unknown option -%c", optopt);
            return folioctl_usage_error("unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (ctl->copts.key_file != NULL && ctl->copts.cert_file == NULL)
        return folioctl_usage_error("--key needs --cert");
    if (ctl->user != NULL && ctl->user[0] == '\0')
        return folioctl_usage_error("--user needs a user name");
    return FOLIOCTL_EXIT_OK;
}

/* An accounting subcommand's arguments, checked before anything is read or sent. */
static int folioctl_prepare_op(struct folioctl *ctl, int nargs, char **args)
{
    char err[256];
    size_t npos;
    json_t *params;

    ctl->args = calloc((size_t)nargs + 1, sizeof(*ctl->args));
    if (ctl->args == NULL) {
        folioctl_err("out of memory");
        return FOLIOCTL_EXIT_USAGE;
    }
    if (!fmt_args_scan(ctl->op->opts, nargs, args, ctl->args, &ctl->nargs, err, sizeof(err)))
        return folioctl_usage_error("%s: %s", ctl->op->name, err);
    npos = folioctl_npos(ctl);
    if (npos < (size_t)ctl->op->min_pos || npos > (size_t)ctl->op->max_pos)
        return folioctl_usage_error("usage: folioctl [OPTIONS] %s%s", ctl->op->name,
                                    ctl->op->usage);
    if (ctl->user == NULL)
        return folioctl_usage_error("%s needs --user", ctl->op->name);
    if (!folioctl_build(ctl, &params))
        return FOLIOCTL_EXIT_USAGE;
    json_decref(params);
    return FOLIOCTL_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct folioctl ctl = {.minor_units = 2};
    const struct folioctl_command *cmd = NULL;
    int rc, nargs;
    char **args;

    signal(SIGPIPE, SIG_IGN);
    rc = folioctl_parse_args(&ctl, argc, argv);
    if (rc != FOLIOCTL_EXIT_OK)
        return rc;
    if (optind >= argc)
        return folioctl_usage_error("no command given");
    for (size_t i = 0; i < sizeof(folioctl_commands) / sizeof(folioctl_commands[0]); i++)
        if (strcmp(argv[optind], folioctl_commands[i].name) == 0)
            cmd = &folioctl_commands[i];
    for (size_t i = 0; i < sizeof(folioctl_ops) / sizeof(folioctl_ops[0]); i++)
        if (strcmp(argv[optind], folioctl_ops[i].name) == 0)
            ctl.op = &folioctl_ops[i];
    if (cmd == NULL && ctl.op == NULL)
        return folioctl_usage_error("unknown command %s", argv[optind]);
    args = argv + optind + 1;
    nargs = argc - optind - 1;
    if (ctl.op != NULL) {
        rc = folioctl_prepare_op(&ctl, nargs, args);
        if (rc != FOLIOCTL_EXIT_OK) {
            free(ctl.args);
            return rc;
        }
    } else {
        if (nargs < cmd->min_args || nargs > cmd->max_args)
            return folioctl_usage_error("usage: folioctl [OPTIONS] %s%s", cmd->name, cmd->args);
        if (cmd->needs_user && ctl.user == NULL)
            return folioctl_usage_error("%s needs --user", cmd->name);
    }
    if (ctl.user != NULL && (ctl.op != NULL || cmd->login || cmd->needs_user) &&
        !folioctl_read_password(&ctl)) {
        free(ctl.args);
        return FOLIOCTL_EXIT_USAGE;
    }

    ctl.client = client_new(&ctl.copts);
    if (ctl.client == NULL) {
        folioctl_err("out of memory");
        rc = FOLIOCTL_EXIT_CONN;
        goto out;
    }
    if (!client_connect(ctl.client)) {
        rc = folioctl_transport_error(&ctl);
        goto out;
    }
    if (ctl.user != NULL && (ctl.op != NULL || cmd->login)) {
        json_t *session;

        rc = folioctl_login(&ctl, &session);
        json_decref(session);
        if (rc != FOLIOCTL_EXIT_OK)
            goto out;
    }
    rc = ctl.op != NULL ? folioctl_run_op(&ctl) : cmd->run(&ctl, nargs, args);
out:
    client_close(ctl.client);
    folioctl_wipe_free(ctl.password);
    free(ctl.args);
    if (fflush(stdout) != 0 && rc == FOLIOCTL_EXIT_OK) {
        /* A reader that went away (`| head`) needs no message. */
        if (errno != EPIPE)
            folioctl_err("cannot write the output: %s", strerror(errno));
        rc = FOLIOCTL_EXIT_USAGE;
    }
    return rc;
}
