/*
 * conn.h - one client connection: a TLS bufferevent, its state machine and its session.
 *
 * States: HANDSHAKE -> (IDENTIFYING while an outlet certificate is looked up) -> OPEN ->
 * DRAINING (daemon stopping: no new requests, in-flight ones finish) -> CLOSED. conn_set_state()
 * is the only place the state changes and it refuses illegal transitions.
 *
 * Lifetime: the server owns one reference while the connection is open; each in-flight
 * rpc_call owns another. conn_close() frees the bufferevent (which closes the socket) at once,
 * but the struct lives until the last reference goes, so a late answer finds a closed
 * connection and is dropped instead of touching freed memory.
 */
#ifndef FOLIOD_CONN_H
#define FOLIOD_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "auth.h"
#include "log.h"

struct server;
struct bufferevent;
struct ssl_st;

enum conn_state {
    CONN_HANDSHAKE,
    CONN_IDENTIFYING,
    CONN_OPEN,
    CONN_DRAINING,
    CONN_CLOSED,
    CONN_STATE_MAX
};

struct conn;

const char *conn_state_str(enum conn_state s);
/* Whether a transition is legal (pure, for the state-machine unit test). */
bool conn_transition_ok(enum conn_state from, enum conn_state to);

/* Takes ownership of fd. Returns NULL (fd closed) on failure. */
struct conn *conn_new(struct server *srv, int fd, const char *peer);

void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

enum conn_state conn_state(const struct conn *c);
bool conn_is_open(const struct conn *c);
uint64_t conn_id(const struct conn *c);
const char *conn_peer(const struct conn *c);
const char *conn_tls_version(const struct conn *c);
struct session *conn_session(struct conn *c);
struct server *conn_server(const struct conn *c);

/* Queues one JSON message plus LF; steals msg. Dropped when the connection is closed. */
void conn_send(struct conn *c, json_t *msg);
/* Queues the answer {"jsonrpc": "2.0", "id": id, "result": <text>} plus LF, the result being
 * text[0, len), JSON on one line, as it is (id is not stolen). Dropped when the connection is
 * closed. */
void conn_send_result_text(struct conn *c, json_t *id, const char *text, size_t len);

/* In-flight accounting: rpc_dispatch() starts, rpc_reply()/rpc_fail() finish. */
void conn_call_started(struct conn *c);
void conn_call_finished(struct conn *c);

/* Stop reading, send what is queued, then close. */
void conn_close_after_flush(struct conn *c, const char *why);
void conn_close(struct conn *c, const char *why);
/* Daemon stopping: no new requests; close once in-flight requests have answered. */
void conn_drain(struct conn *c);

/* Non-NULL (a reason such as "unknown_outlet") when the peer's certificate was not accepted:
 * every request is then answered with that error and the connection closes. */
const char *conn_refused(const struct conn *c);

/* Server-pushed JSON-RPC notification (no id). */
void conn_notify(struct conn *c, const char *method, json_t *params);

void conn_log(const struct conn *c, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
