/*
 * client.h - blocking TLS JSON-RPC client for foliod (folioctl and the integration tests).
 *
 * API: fill a struct client_options (client_options_init() sets the defaults), create a client
 * with client_new(), open it with client_connect() (TCP connect, TLS handshake, server
 * certificate checked against the CA file and the host name or IP), then exchange newline-
 * delimited JSON-RPC 2.0 messages: client_call() sends one request and waits for the response
 * with its id; client_send_request() and client_wait_response() do the same in two steps so
 * that several requests can be in flight; client_send_raw() writes bytes as they are (tests of
 * malformed input); client_next() returns the next message in arrival order. Messages read while
 * waiting for another id (server notifications, answers to other requests) are queued, never
 * dropped: client_next() and client_take_notification() hand them out later.
 *
 * Lifecycle: client_new -> client_connect -> any number of calls -> client_close (which also
 * frees a client whose connect failed). A client is used by one thread at a time. After a
 * transport failure (timeout, TLS error, peer closed) the connection is dead: every later call
 * fails with the same error, and the client only needs client_close().
 *
 * Every wait is bounded: connect, handshake, write and read use poll() with a deadline taken
 * from the options' timeout (or the timeout given to the call); nothing blocks forever. (Name
 * resolution is getaddrinfo(), bounded by the resolver's own timeouts.)
 *
 * With TLS 1.3 the client finishes its side of the handshake before the server checks a client
 * certificate: a refused certificate (foreign CA, expired) then shows as CLIENT_ERR_TLS (the
 * server's alert) on the first read rather than from client_connect().
 *
 * Errors: every fallible function returns bool (must be checked); on false,
 * client_error_kind() says what class of failure it was and client_error() gives a one-line
 * message for a person ("connection refused", "TLS handshake failed: certificate verify
 * failed", "timed out after 10000 ms waiting for a response", "connection closed by peer").
 * A JSON-RPC error answer is not a transport failure: the call returns true with the error
 * response, and client_response_error() decodes it.
 *
 * Writing to a connection the peer has closed raises SIGPIPE; programs using this module
 * ignore SIGPIPE (folioctl and the integration tests do).
 */
#ifndef FOLIOD_CLIENT_H
#define FOLIOD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define CLIENT_MUST_CHECK __attribute__((warn_unused_result))

/* Defaults of struct client_options, also used by folioctl's help text. */
#define CLIENT_DEFAULT_HOST "127.0.0.1"
#define CLIENT_DEFAULT_PORT 7443
#define CLIENT_DEFAULT_CA_FILE "var/tls/ca.crt"
#define CLIENT_DEFAULT_TIMEOUT_MS 10000
/* The largest message the client accepts from the server (a long list, a statement). */
#define CLIENT_MAX_MESSAGE (16 * 1024 * 1024)

/* Connection settings. The strings are copied by client_new(); the caller keeps its own. */
struct client_options {
    const char *host;        /* name or IP literal; default CLIENT_DEFAULT_HOST */
    unsigned port;           /* default CLIENT_DEFAULT_PORT */
    const char *ca_file;     /* PEM CA the server certificate must chain to */
    const char *cert_file;   /* PEM client certificate (POS outlets); NULL for none */
    const char *key_file;    /* its private key; NULL: the key is read from cert_file */
    const char *server_name; /* name or IP checked in the server certificate; NULL: host */
    int timeout_ms;          /* bound for connect+handshake and for each wait; > 0 */
};

enum client_error_kind {
    CLIENT_ERR_NONE,
    CLIENT_ERR_USAGE,     /* bad options, or a call on a client that is not connected */
    CLIENT_ERR_NOMEM,     /* allocation failed */
    CLIENT_ERR_RESOLVE,   /* the host name did not resolve */
    CLIENT_ERR_CONNECT,   /* TCP connect refused or the host unreachable */
    CLIENT_ERR_TLS_FILES, /* a local CA, certificate or key file could not be loaded */
    CLIENT_ERR_TLS,       /* handshake failed, certificate refused, or a TLS alert */
    CLIENT_ERR_TIMEOUT,   /* a wait ran past its deadline */
    CLIENT_ERR_CLOSED,    /* the peer closed (or reset) the connection */
    CLIENT_ERR_IO,        /* another socket error */
    CLIENT_ERR_PROTOCOL,  /* the server sent a line that is not a JSON object, or too long */
    CLIENT_ERR_MAX
};

/* A JSON-RPC error answer, decoded. The pointers borrow from the response object. */
struct client_rpc_error {
    json_int_t code;     /* -32700, -32600, -32601, -32602, -32000 ... */
    const char *message; /* for a person; "" when absent */
    const char *reason;  /* data.reason, stable lower-case; NULL when absent */
    const char *field;   /* data.field (invalid params); NULL when absent */
    bool retryable;      /* data.retryable is true */
    json_t *data;        /* the whole data member; NULL when absent */
};

struct client;

/* Stable lower-case name of an error kind ("timeout", "tls", ...). */
const char *client_error_kind_str(enum client_error_kind kind);

/* Fill opts with the defaults (no client certificate). */
void client_options_init(struct client_options *opts);

/* A new, unconnected client with a copy of opts. NULL only when memory is exhausted.
 * The caller owns the client and frees it with client_close(). */
struct client *client_new(const struct client_options *opts);

/* Connect and run the TLS handshake within opts->timeout_ms. */
CLIENT_MUST_CHECK bool client_connect(struct client *c);

/* Close the connection (best-effort TLS close_notify, no wait) and free the client, its queue
 * and its copies of the options. NULL is ignored. */
void client_close(struct client *c);

/* Why the last failing call failed; CLIENT_ERR_NONE / "" when nothing failed. The string is
 * owned by the client and valid until the next call on it. */
enum client_error_kind client_error_kind(const struct client *c);
const char *client_error(const struct client *c);

/* The negotiated protocol ("TLSv1.3") once connected, else NULL. Owned by OpenSSL. */
const char *client_tls_version(const struct client *c);

/* Write len bytes exactly as given (no framing added). */
CLIENT_MUST_CHECK bool client_send_raw(struct client *c, const void *buf, size_t len);

/* Send {"jsonrpc":"2.0","id":N,"method":method,"params":params} with the next free id (ids
 * start at 1 and only grow). params is borrowed (the caller keeps its reference) and may be
 * NULL to leave the member out. The id is stored in *id_out when id_out is not NULL. */
CLIENT_MUST_CHECK bool client_send_request(struct client *c, const char *method, json_t *params,
                                           json_int_t *id_out);

/* Wait up to timeout_ms (< 0: the options' timeout) for the response with this id, looking in
 * the queue first. On success *response is a new reference the caller must json_decref(); it
 * may be a result or an error answer. Other messages read meanwhile are queued. */
CLIENT_MUST_CHECK bool client_wait_response(struct client *c, json_int_t id, int timeout_ms,
                                            json_t **response);

/* client_send_request() + client_wait_response() with the options' timeout. params borrowed. */
CLIENT_MUST_CHECK bool client_call(struct client *c, const char *method, json_t *params,
                                   json_t **response);

/* As client_call(), but steals the reference to params, also when it fails (so that a
 * json_pack() can be passed straight in). NULL params: no params member. */
CLIENT_MUST_CHECK bool client_call_new(struct client *c, const char *method, json_t *params,
                                       json_t **response);

/* The next message in arrival order (queued ones first), waiting up to timeout_ms (< 0: the
 * options' timeout; 0: only what is already buffered). *message is a new reference. */
CLIENT_MUST_CHECK bool client_next(struct client *c, int timeout_ms, json_t **message);

/* Remove and return the oldest queued notification (a message without an id), or NULL when
 * none is queued. Never reads from the network. The caller owns the returned reference. */
json_t *client_take_notification(struct client *c);

/* Number of messages waiting in the queue. */
size_t client_queued(const struct client *c);

/* The "result" member of a response (borrowed), or NULL for an error answer. */
json_t *client_response_result(const json_t *response);

/* When response is an error answer, fill *err (pointers borrowed from response) and return
 * true; otherwise return false and leave *err zeroed. */
bool client_response_error(const json_t *response, struct client_rpc_error *err);

#endif
