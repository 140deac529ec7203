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

enum folioctl_exit {
    FOLIOCTL_EXIT_OK = 0,
    FOLIOCTL_EXIT_RPC = 1,   /* the server answered with an error */
    FOLIOCTL_EXIT_USAGE = 2, /* bad command line, unreadable input file, no password */
    FOLIOCTL_EXIT_CONN = 3,  /* connection, TLS, timeout or protocol failure */
};

#define FOLIOCTL_PASSWORD_MAX 1024

struct folioctl {
    struct client_options copts;
    const char *user;
    const char *password_file;
    bool json;
    char *password; /* heap; wiped before it is freed */
    struct client *client;
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

/* Copy s with control characters replaced, so that server data cannot drive the terminal. */
static char *folioctl_sanitize(const char *s)
{
    char *out = strdup(s);

    if (out == NULL)
        return NULL;
    for (unsigned char *p = (unsigned char *)out; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = *p == '\t' || *p == '\n' ? ' ' : '?';
    return out;
}

/* Columns a UTF-8 string takes (one per code point; good enough for names and codes). */
static size_t folioctl_width(const char *s)
{
    size_t w = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if ((*p & 0xc0) != 0x80)
            w++;
    return w;
}

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
        return folioctl_sanitize(json_string_value(v));
    if (json_is_null(v))
        return strdup("-");
    raw = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (raw == NULL)
        return NULL;
    text = folioctl_sanitize(raw);
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
        char *text = raw != NULL ? folioctl_sanitize(raw) : NULL;

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
                part = folioctl_sanitize(raw);
                free(raw);
            }
        } else if (code != NULL) {
            part = folioctl_sanitize(code);
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
    kv->keys[kv->n] = folioctl_sanitize(key);
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
        if (folioctl_width(kv->keys[i]) > width)
            width = folioctl_width(kv->keys[i]);
    for (size_t i = 0; i < kv->n; i++) {
        printf("%s:", kv->keys[i]);
        folioctl_pad(width - folioctl_width(kv->keys[i]) + 1);
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
        width[c] = folioctl_width(cols[c]);
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
            if (folioctl_width(*cell) > width[c])
                width[c] = folioctl_width(*cell);
        }
    }

    if (rows == 0) {
        printf("(no items)\n");
    } else {
        for (size_t c = 0; c < ncols; c++) {
            size_t pad = width[c] - folioctl_width(cols[c]);

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
                size_t pad = width[c] - folioctl_width(cell);

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

static const struct folioctl_command folioctl_commands[] = {
    {"ping", 0, 0, false, false, folioctl_cmd_ping, ""},
    {"info", 0, 0, false, true, folioctl_cmd_info, ""},
    {"login", 0, 0, true, false, folioctl_cmd_login, ""},
    {"call", 1, 2, false, true, folioctl_cmd_call, " METHOD [PARAMS]"},
    {"import", 1, 1, true, true, folioctl_cmd_import, " FILE"},
};

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

int main(int argc, char **argv)
{
    struct folioctl ctl = {0};
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
    if (cmd == NULL)
        return folioctl_usage_error("unknown command %s", argv[optind]);
    args = argv + optind + 1;
    nargs = argc - optind - 1;
    if (nargs < cmd->min_args || nargs > cmd->max_args)
        return folioctl_usage_error("usage: folioctl [OPTIONS] %s%s", cmd->name, cmd->args);
    if (cmd->needs_user && ctl.user == NULL)
        return folioctl_usage_error("%s needs --user", cmd->name);
    if (ctl.user != NULL && (cmd->login || cmd->needs_user) && !folioctl_read_password(&ctl))
        return FOLIOCTL_EXIT_USAGE;

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
    if (ctl.user != NULL && cmd->login) {
        json_t *session;

        rc = folioctl_login(&ctl, &session);
        json_decref(session);
        if (rc != FOLIOCTL_EXIT_OK)
            goto out;
    }
    rc = cmd->run(&ctl, nargs, args);
out:
    client_close(ctl.client);
    folioctl_wipe_free(ctl.password);
    if (fflush(stdout) != 0 && rc == FOLIOCTL_EXIT_OK) {
        /* A reader that went away (`| head`) needs no message. */
        if (errno != EPIPE)
            folioctl_err("cannot write the output: %s", strerror(errno));
        rc = FOLIOCTL_EXIT_USAGE;
    }
    return rc;
}
