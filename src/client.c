/*
 * client.c - blocking TLS JSON-RPC client for foliod (see include/client.h for the API).
 *
 * One struct client owns a TCP socket (non-blocking, every wait done with poll() against a
 * deadline), an SSL_CTX and SSL built for that one connection, a receive buffer that holds the
 * bytes of the next, incomplete line, and a FIFO of messages read but not yet handed out.
 * A read timeout leaves the connection usable (OpenSSL keeps any partial record); any other
 * transport failure, or a write that could not finish, marks the connection dead and the error
 * sticks.
 */
#include "client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define CLIENT_READ_CHUNK 16384

struct client_msg {
    json_t *msg;
    struct client_msg *next;
};

struct client {
    /* copies of the options */
    char *host;
    char *ca_file;
    char *cert_file;
    char *key_file;
    char *server_name;
    unsigned port;
    int timeout_ms;
    char endpoint[300]; /* "host:port" or "[v6]:port", for messages */

    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    bool connected;
    bool dead; /* transport failed: the error below sticks */

    enum client_error_kind err_kind;
    char err[320];

    json_int_t next_id;

    char *buf; /* received bytes not yet split into lines */
    size_t buf_len;
    size_t buf_cap;
    size_t buf_scanned; /* bytes of buf known to hold no LF */

    struct client_msg *q_head;
    struct client_msg *q_tail;
    size_t q_len;
};

static const char *const client_error_kind_names[CLIENT_ERR_MAX] = {
    [CLIENT_ERR_NONE] = "none",         [CLIENT_ERR_USAGE] = "usage",
    [CLIENT_ERR_NOMEM] = "nomem",       [CLIENT_ERR_RESOLVE] = "resolve",
    [CLIENT_ERR_CONNECT] = "connect",   [CLIENT_ERR_TLS_FILES] = "tls_files",
    [CLIENT_ERR_TLS] = "tls",           [CLIENT_ERR_TIMEOUT] = "timeout",
    [CLIENT_ERR_CLOSED] = "closed",     [CLIENT_ERR_IO] = "io",
    [CLIENT_ERR_PROTOCOL] = "protocol",
};

const char *client_error_kind_str(enum client_error_kind kind)
{
    if ((int)kind < 0 || kind >= CLIENT_ERR_MAX)
        return "unknown";
    return client_error_kind_names[kind];
}

void client_options_init(struct client_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->host = CLIENT_DEFAULT_HOST;
    opts->port = CLIENT_DEFAULT_PORT;
    opts->ca_file = CLIENT_DEFAULT_CA_FILE;
    opts->timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
}

/* ---- errors ---- */

__attribute__((format(printf, 3, 0))) static void
client_vfail(struct client *c, enum client_error_kind kind, const char *fmt, va_list ap)
{
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    c->err_kind = kind;
}

__attribute__((format(printf, 3, 4))) static void
client_fail(struct client *c, enum client_error_kind kind, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    client_vfail(c, kind, fmt, ap);
    va_end(ap);
}

/* A failure after which the byte stream can no longer be trusted: the error sticks. */
__attribute__((format(printf, 3, 4))) static void
client_fail_dead(struct client *c, enum client_error_kind kind, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    client_vfail(c, kind, fmt, ap);
    va_end(ap);
    c->dead = true;
}

static void client_clear_error(struct client *c)
{
    c->err_kind = CLIENT_ERR_NONE;
    c->err[0] = '\0';
}

enum client_error_kind client_error_kind(const struct client *c)
{
    return c->err_kind;
}

const char *client_error(const struct client *c)
{
    return c->err;
}

/* The most telling OpenSSL error of the queue (the last one queued), then clear the queue. */
static const char *client_ssl_reason(void)
{
    unsigned long e, last = 0;
    const char *reason;

    while ((e = ERR_get_error()) != 0)
        last = e;
    if (last == 0)
        return "unknown TLS error";
    reason = ERR_reason_error_string(last);
    return reason != NULL ? reason : "unknown TLS error";
}

/* ---- time ---- */

static int64_t client_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t client_deadline(const struct client *c, int timeout_ms)
{
    return client_now_ms() + (timeout_ms < 0 ? c->timeout_ms : timeout_ms);
}

/* Wait until fd is ready for events or the deadline passes. False on timeout (error set with
 * `what` naming the wait) or on a poll failure. */
static bool client_poll(struct client *c, short events, int64_t deadline, int timeout_ms,
                        const char *what)
{
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int64_t left = deadline - client_now_ms();
        int rc;

        if (left <= 0) {
            client_fail(c, CLIENT_ERR_TIMEOUT, "timed out after %d ms %s", timeout_ms, what);
            return false;
        }
        rc = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (rc > 0)
            return true; /* readable, writable, or HUP/ERR: the next SSL call finds out which */
        if (rc < 0 && errno != EINTR) {
            client_fail_dead(c, CLIENT_ERR_IO, "poll failed: %s", strerror(errno));
            return false;
        }
    }
}

/* ---- lifecycle ---- */

static bool client_dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return true;
    *dst = strdup(src);
    return *dst != NULL;
}

struct client *client_new(const struct client_options *opts)
{
    struct client *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->fd = -1;
    c->next_id = 1;
    c->port = opts->port;
    c->timeout_ms = opts->timeout_ms;
    if (opts->host != NULL && strchr(opts->host, ':') != NULL)
        snprintf(c->endpoint, sizeof(c->endpoint), "[%s]:%u", opts->host, opts->port);
    else if (opts->host != NULL)
        snprintf(c->endpoint, sizeof(c->endpoint), "%s:%u", opts->host, opts->port);
    if (!client_dup_opt(&c->host, opts->host) || !client_dup_opt(&c->ca_file, opts->ca_file) ||
        !client_dup_opt(&c->cert_file, opts->cert_file) ||
        !client_dup_opt(&c->key_file, opts->key_file) ||
        !client_dup_opt(&c->server_name, opts->server_name)) {
        client_close(c);
        return NULL;
    }
    return c;
}

static void client_queue_free(struct client *c)
{
    while (c->q_head != NULL) {
        struct client_msg *m = c->q_head;

        c->q_head = m->next;
        json_decref(m->msg);
        free(m);
    }
    c->q_tail = NULL;
    c->q_len = 0;
}

void client_close(struct client *c)
{
    if (c == NULL)
        return;
    if (c->ssl != NULL) {
        /* One non-blocking close_notify; the peer need not answer it. */
        if (c->connected && !c->dead)
            (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    ERR_clear_error();
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    client_queue_free(c);
    free(c->buf);
    free(c->host);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->server_name);
    free(c);
}

/* ---- connect ---- */

static bool client_readable_file(struct client *c, const char *what, const char *path)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        client_fail(c, CLIENT_ERR_TLS_FILES, "cannot read %s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static bool client_build_ctx(struct client *c)
{
    const char *key = c->key_file != NULL ? c->key_file : c->cert_file;

    if (!client_readable_file(c, "CA file", c->ca_file))
        return false;
    if (c->cert_file != NULL && (!client_readable_file(c, "certificate", c->cert_file) ||
                                 !client_readable_file(c, "key", key)))
        return false;

    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        client_fail(c, CLIENT_ERR_NOMEM, "cannot create TLS context: %s", client_ssl_reason());
        return false;
    }
    if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION)) {
        client_fail(c, CLIENT_ERR_TLS_FILES, "cannot require TLS 1.2: %s", client_ssl_reason());
        return false;
    }
    /* A peer that drops the TCP connection without close_notify reads as a plain close. */
    SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_load_verify_locations(c->ctx, c->ca_file, NULL) != 1) {
        client_fail(c, CLIENT_ERR_TLS_FILES, "cannot load CA file %s: %s", c->ca_file,
                    client_ssl_reason());
        return false;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (c->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(c->ctx, c->cert_file) != 1) {
            client_fail(c, CLIENT_ERR_TLS_FILES, "cannot load certificate %s: %s", c->cert_file,
                        client_ssl_reason());
            return false;
        }
        if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1) {
            client_fail(c, CLIENT_ERR_TLS_FILES, "cannot load key %s: %s", key,
                        client_ssl_reason());
            return false;
        }
        if (SSL_CTX_check_private_key(c->ctx) != 1) {
            client_fail(c, CLIENT_ERR_TLS_FILES, "key %s does not match certificate %s", key,
                        c->cert_file);
            ERR_clear_error();
            return false;
        }
    }
    return true;
}

/* Non-blocking connect to one address; true when connected, else errno in *err (0: timeout). */
static bool client_connect_addr(struct client *c, const struct addrinfo *ai, int64_t deadline,
                                int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int one = 1;

    if (fd < 0) {
        *err = errno;
        return false;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        socklen_t len = sizeof(*err);

        if (errno != EINPROGRESS) {
            *err = errno;
            close(fd);
            return false;
        }
        c->fd = fd;
        if (!client_poll(c, POLLOUT, deadline, c->timeout_ms, "connecting")) {
            *err = 0;
            c->fd = -1;
            close(fd);
            return false;
        }
        c->fd = -1;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) != 0)
            *err = errno;
        if (*err != 0) {
            close(fd);
            return false;
        }
    }
    /* Small request/response lines: do not let Nagle hold them back. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    return true;
}

static bool client_tcp_connect(struct client *c, int64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[16];
    int rc, err = 0;
    bool timed_out = false;

    snprintf(port, sizeof(port), "%u", c->port);
    rc = getaddrinfo(c->host, port, &hints, &res);
    if (rc != 0) {
        client_fail(c, CLIENT_ERR_RESOLVE, "cannot resolve %s: %s", c->host,
                    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return false;
    }
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (client_connect_addr(c, ai, deadline, &err))
            break;
        if (err == 0) {
            timed_out = true;
            break; /* the deadline is shared: no time is left for another address */
        }
    }
    freeaddrinfo(res);
    if (c->fd >= 0)
        return true;
    if (timed_out)
        client_fail(c, CLIENT_ERR_TIMEOUT, "connecting to %s timed out after %d ms", c->endpoint,
                    c->timeout_ms);
    else
        client_fail(c, CLIENT_ERR_CONNECT, "cannot connect to %s: %s", c->endpoint, strerror(err));
    return false;
}

static bool client_is_ip(const char *name)
{
    unsigned char addr[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

static bool client_handshake(struct client *c, int64_t deadline)
{
    const char *name = c->server_name != NULL ? c->server_name : c->host;

    ERR_clear_error();
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        client_fail(c, CLIENT_ERR_NOMEM, "cannot create TLS session: %s", client_ssl_reason());
        return false;
    }
    if (client_is_ip(name)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1) {
            client_fail(c, CLIENT_ERR_USAGE, "bad server address %s", name);
            ERR_clear_error();
            return false;
        }
    } else {
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (SSL_set1_host(c->ssl, name) != 1 || SSL_set_tlsext_host_name(c->ssl, name) != 1) {
            client_fail(c, CLIENT_ERR_USAGE, "bad server name %s", name);
            ERR_clear_error();
            return false;
        }
    }

    for (;;) {
        int rc, e, saved_errno;
        long verify;

        ERR_clear_error();
        errno = 0;
        rc = SSL_connect(c->ssl);
        if (rc == 1)
            break;
        saved_errno = errno;
        e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!client_poll(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
                             c->timeout_ms, "in the TLS handshake"))
                return false;
            continue;
        }
        verify = SSL_get_verify_result(c->ssl);
        if (verify != X509_V_OK) {
            client_fail(c, CLIENT_ERR_TLS,
                        "TLS handshake with %s failed: server certificate not accepted "
                        "for %s: %s",
                        c->endpoint, name, X509_verify_cert_error_string(verify));
            ERR_clear_error();
        } else if (e == SSL_ERROR_SSL) {
            client_fail(c, CLIENT_ERR_TLS, "TLS handshake with %s failed: %s", c->endpoint,
                        client_ssl_reason());
        } else if (e == SSL_ERROR_ZERO_RETURN ||
                   (e == SSL_ERROR_SYSCALL &&
                    (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE))) {
            client_fail(c, CLIENT_ERR_TLS,
                        "TLS handshake with %s failed: connection closed by peer", c->endpoint);
            ERR_clear_error();
        } else {
            client_fail(c, CLIENT_ERR_TLS, "TLS handshake with %s failed: %s", c->endpoint,
                        saved_errno != 0 ? strerror(saved_errno) : client_ssl_reason());
            ERR_clear_error();
        }
        return false;
    }
    return true;
}

bool client_connect(struct client *c)
{
    int64_t deadline;

    client_clear_error(c);
    if (c->connected || c->fd >= 0 || c->ssl != NULL) {
        client_fail(c, CLIENT_ERR_USAGE, "client already connected");
        return false;
    }
    if (c->host == NULL || c->host[0] == '\0' || c->port == 0 || c->port > 65535 ||
        c->ca_file == NULL || c->ca_file[0] == '\0' || c->timeout_ms <= 0 ||
        (c->key_file != NULL && c->cert_file == NULL)) {
        client_fail(c, CLIENT_ERR_USAGE,
                    "bad client options (host, port 1-65535, CA file, timeout > 0, "
                    "a key only with a certificate)");
        return false;
    }
    if (!client_build_ctx(c))
        return false;
    deadline = client_deadline(c, -1);
    if (!client_tcp_connect(c, deadline))
        return false;
    if (!client_handshake(c, deadline)) {
        c->dead = true;
        return false;
    }
    c->connected = true;
    return true;
}

const char *client_tls_version(const struct client *c)
{
    return c->connected ? SSL_get_version(c->ssl) : NULL;
}

static bool client_usable(struct client *c)
{
    if (c->dead)
        return false; /* the error of the failure that killed it is still set */
    client_clear_error(c);
    if (!c->connected) {
        client_fail(c, CLIENT_ERR_USAGE, "client is not connected");
        return false;
    }
    return true;
}

/* ---- transport ---- */

/* Classify a failed SSL_read/SSL_write; always marks the connection dead. */
static void client_io_failure(struct client *c, int e, int saved_errno, const char *what)
{
    if (e == SSL_ERROR_ZERO_RETURN ||
        (e == SSL_ERROR_SYSCALL && (saved_errno == 0 || saved_errno == EPIPE))) {
        ERR_clear_error();
        client_fail_dead(c, CLIENT_ERR_CLOSED, "connection closed by peer while %s", what);
    } else if (e == SSL_ERROR_SYSCALL && saved_errno == ECONNRESET) {
        ERR_clear_error();
        client_fail_dead(c, CLIENT_ERR_CLOSED, "connection reset by peer while %s", what);
    } else if (e == SSL_ERROR_SSL) {
        const char *reason = client_ssl_reason();

        /* With TLS 1.3 a refused client certificate arrives here, after the handshake. */
        if (strstr(reason, "alert") != NULL)
            client_fail_dead(c, CLIENT_ERR_TLS, "the server ended the TLS session while %s: %s%s",
                             what, reason,
                             c->cert_file != NULL ? " (client certificate refused?)" : "");
        else
            client_fail_dead(c, CLIENT_ERR_TLS, "TLS error while %s: %s", what, reason);
    } else {
        ERR_clear_error();
        client_fail_dead(c, CLIENT_ERR_IO, "socket error while %s: %s", what,
                         saved_errno != 0 ? strerror(saved_errno) : "unknown");
    }
}

static bool client_write_all(struct client *c, const char *data, size_t len, int64_t deadline)
{
    size_t off = 0;

    while (off < len) {
        size_t left = len - off;
        int n, e, saved_errno;

        ERR_clear_error();
        errno = 0;
        n = SSL_write(c->ssl, data + off, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        saved_errno = errno;
        e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            if (!client_poll(c, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, deadline,
                             c->timeout_ms, "sending")) {
                /* Part of a line may be out: the stream cannot be resynchronised. */
                c->dead = true;
                return false;
            }
            continue;
        }
        client_io_failure(c, e, saved_errno, "sending");
        return false;
    }
    return true;
}

/* Read at least one more byte into the buffer, waiting until the deadline. */
static bool client_fill(struct client *c, int64_t deadline, int timeout_ms)
{
    if (c->buf_cap - c->buf_len < CLIENT_READ_CHUNK) {
        size_t cap = c->buf_cap == 0 ? 2 * CLIENT_READ_CHUNK : 2 * c->buf_cap;
        char *p = realloc(c->buf, cap);

        if (p == NULL) {
            client_fail_dead(c, CLIENT_ERR_NOMEM, "out of memory reading a message");
            return false;
        }
        c->buf = p;
        c->buf_cap = cap;
    }
    for (;;) {
        size_t room = c->buf_cap - c->buf_len;
        int n, e, saved_errno;

        ERR_clear_error();
        errno = 0;
        n = SSL_read(c->ssl, c->buf + c->buf_len, room > INT32_MAX ? INT32_MAX : (int)room);
        if (n > 0) {
            c->buf_len += (size_t)n;
            return true;
        }
        saved_errno = errno;
        e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (!client_poll(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, timeout_ms,
                             "waiting for a message"))
                return false;
            continue;
        }
        client_io_failure(c, e, saved_errno, "reading");
        return false;
    }
}

/* Split one complete line off the buffer. *msg is NULL when no complete line is buffered. */
static bool client_take_line(struct client *c, json_t **msg)
{
    char *lf;
    size_t line_len, used;
    json_error_t jerr;

    *msg = NULL;
    for (;;) {
        lf = c->buf_len > c->buf_scanned
                 ? memchr(c->buf + c->buf_scanned, '\n', c->buf_len - c->buf_scanned)
                 : NULL;
        if (lf == NULL) {
            c->buf_scanned = c->buf_len;
            if (c->buf_len > CLIENT_MAX_MESSAGE) {
                client_fail_dead(c, CLIENT_ERR_PROTOCOL, "server sent a line longer than %d bytes",
                                 CLIENT_MAX_MESSAGE);
                return false;
            }
            return true;
        }
        line_len = (size_t)(lf - c->buf);
        if (line_len > 0 && c->buf[line_len - 1] == '\r')
            line_len--;
        if (line_len > 0)
            *msg = json_loadb(c->buf, line_len, 0, &jerr);
        used = (size_t)(lf - c->buf) + 1;
        memmove(c->buf, c->buf + used, c->buf_len - used);
        c->buf_len -= used;
        c->buf_scanned = 0;
        if (line_len == 0)
            continue; /* blank keep-alive line */
        if (*msg == NULL) {
            client_fail_dead(c, CLIENT_ERR_PROTOCOL, "server sent invalid JSON: %s", jerr.text);
            return false;
        }
        if (!json_is_object(*msg)) {
            json_decref(*msg);
            *msg = NULL;
            client_fail_dead(c, CLIENT_ERR_PROTOCOL, "server sent a JSON value, not an object");
            return false;
        }
        return true;
    }
}

/* The next message off the wire (not the queue). */
static bool client_read_message(struct client *c, int64_t deadline, int timeout_ms, json_t **msg)
{
    for (;;) {
        if (!client_take_line(c, msg))
            return false;
        if (*msg != NULL)
            return true;
        if (!client_fill(c, deadline, timeout_ms))
            return false;
    }
}

/* ---- queue ---- */

static bool client_enqueue(struct client *c, json_t *msg)
{
    struct client_msg *m = malloc(sizeof(*m));

    if (m == NULL) {
        json_decref(msg);
        client_fail_dead(c, CLIENT_ERR_NOMEM, "out of memory queueing a message");
        return false;
    }
    m->msg = msg;
    m->next = NULL;
    if (c->q_tail != NULL)
        c->q_tail->next = m;
    else
        c->q_head = m;
    c->q_tail = m;
    c->q_len++;
    return true;
}

/* Unlink and return the first queued message that `match` accepts, or NULL. */
static json_t *client_dequeue_if(struct client *c, bool (*match)(const json_t *, json_int_t),
                                 json_int_t arg)
{
    struct client_msg *prev = NULL;

    for (struct client_msg *m = c->q_head; m != NULL; prev = m, m = m->next) {
        json_t *msg = m->msg;

        if (!match(msg, arg))
            continue;
        if (prev != NULL)
            prev->next = m->next;
        else
            c->q_head = m->next;
        if (c->q_tail == m)
            c->q_tail = prev;
        c->q_len--;
        free(m);
        return msg;
    }
    return NULL;
}

static bool client_match_any(const json_t *msg, json_int_t arg)
{
    (void)msg;
    (void)arg;
    return true;
}

static bool client_match_id(const json_t *msg, json_int_t id)
{
    const json_t *jid = json_object_get(msg, "id");

    return json_is_integer(jid) && json_integer_value(jid) == id;
}

static bool client_match_notification(const json_t *msg, json_int_t arg)
{
    (void)arg;
    return json_object_get(msg, "id") == NULL;
}

size_t client_queued(const struct client *c)
{
    return c->q_len;
}

json_t *client_take_notification(struct client *c)
{
    return client_dequeue_if(c, client_match_notification, 0);
}

/* ---- messages ---- */

bool client_send_raw(struct client *c, const void *buf, size_t len)
{
    if (!client_usable(c))
        return false;
    return client_write_all(c, buf, len, client_deadline(c, -1));
}

bool client_send_request(struct client *c, const char *method, json_t *params, json_int_t *id_out)
{
    json_t *req;
    char *text;
    size_t len;
    bool ok;
    json_int_t id;

    if (!client_usable(c))
        return false;
    if (method == NULL) {
        client_fail(c, CLIENT_ERR_USAGE, "no method given");
        return false;
    }
    id = c->next_id;
    req = json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", id, "method", method);
    if (req == NULL) {
        client_fail(c, CLIENT_ERR_USAGE, "method name is not valid UTF-8");
        return false;
    }
    if (params != NULL && json_object_set(req, "params", params) != 0) {
        json_decref(req);
        client_fail(c, CLIENT_ERR_NOMEM, "out of memory building a request");
        return false;
    }
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (text == NULL) {
        client_fail(c, CLIENT_ERR_NOMEM, "cannot encode the request");
        return false;
    }
    len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the buffer is sent by length */
    ok = client_write_all(c, text, len + 1, client_deadline(c, -1));
    free(text);
    if (!ok)
        return false;
    c->next_id++;
    if (id_out != NULL)
        *id_out = id;
    return true;
}

bool client_wait_response(struct client *c, json_int_t id, int timeout_ms, json_t **response)
{
    int64_t deadline;
    int shown_ms = timeout_ms < 0 ? c->timeout_ms : timeout_ms;
    json_t *msg;

    *response = NULL;
    if (!client_usable(c))
        return false;
    msg = client_dequeue_if(c, client_match_id, id);
    if (msg != NULL) {
        *response = msg;
        return true;
    }
    deadline = client_deadline(c, timeout_ms);
    for (;;) {
        if (!client_read_message(c, deadline, shown_ms, &msg)) {
            if (c->err_kind == CLIENT_ERR_TIMEOUT)
                client_fail(c, CLIENT_ERR_TIMEOUT,
                            "timed out after %d ms waiting for the response to request "
                            "%" JSON_INTEGER_FORMAT,
                            shown_ms, id);
            return false;
        }
        if (client_match_id(msg, id)) {
            *response = msg;
            return true;
        }
        if (!client_enqueue(c, msg))
            return false;
    }
}

bool client_call(struct client *c, const char *method, json_t *params, json_t **response)
{
    json_int_t id;

    *response = NULL;
    if (!client_send_request(c, method, params, &id))
        return false;
    return client_wait_response(c, id, -1, response);
}

bool client_call_new(struct client *c, const char *method, json_t *params, json_t **response)
{
    bool ok = client_call(c, method, params, response);

    json_decref(params);
    return ok;
}

bool client_next(struct client *c, int timeout_ms, json_t **message)
{
    json_t *msg;

    *message = NULL;
    if (!client_usable(c))
        return false;
    msg = client_dequeue_if(c, client_match_any, 0);
    if (msg != NULL) {
        *message = msg;
        return true;
    }
    return client_read_message(c, client_deadline(c, timeout_ms),
                               timeout_ms < 0 ? c->timeout_ms : timeout_ms, message);
}

json_t *client_response_result(const json_t *response)
{
    if (json_object_get(response, "error") != NULL)
        return NULL;
    return json_object_get(response, "result");
}

bool client_response_error(const json_t *response, struct client_rpc_error *err)
{
    json_t *error = json_object_get(response, "error");
    json_t *data;

    memset(err, 0, sizeof(*err));
    if (!json_is_object(error))
        return false;
    err->code = json_integer_value(json_object_get(error, "code"));
    err->message = json_string_value(json_object_get(error, "message"));
    if (err->message == NULL)
        err->message = "";
    data = json_object_get(error, "data");
    if (json_is_object(data)) {
        err->data = data;
        err->reason = json_string_value(json_object_get(data, "reason"));
        err->field = json_string_value(json_object_get(data, "field"));
        err->retryable = json_is_true(json_object_get(data, "retryable"));
    } else if (data != NULL) {
        err->data = data;
    }
    return true;
}
