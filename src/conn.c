/*
 * conn.c - one client connection: TLS bufferevent, framing, state machine, backpressure,
 * timeouts and the outlet lookup for a client certificate.
 *
 * Reading pauses when a connection has max_inflight requests in flight or when its peer is not
 * reading its answers (more than CONN_OUTPUT_HIGH bytes queued), and resumes when that clears;
 * the read timeout (handshake_timeout, then idle_timeout) only closes a connection that has
 * nothing in flight, and the write timeout closes one whose peer stopped reading.
 */
#include "conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "db.h"
#include "frame.h"
#include "rpc.h"
#include "server.h"
#include "tls.h"

#define CONN_OUTPUT_HIGH (256 * 1024)

struct conn {
    struct conn_list_node node; /* first: the server's list links through it */
    struct server *srv;
    struct bufferevent *bev;
    enum conn_state state;
    int refs;
    int inflight;
    uint64_t id;
    char peer[64];
    const char *tls_version;
    const char *refused;
    struct frame_decoder frame;
    struct session session;
    struct event *handshake_timer; /* absolute deadline: trickled handshake bytes don't extend it */
    int64_t partial_since; /* monotonic seconds when the current unfinished line began, or 0 */
    bool reading_paused;
    bool close_when_flushed;
    bool processing;
};

static const char *const state_names[CONN_STATE_MAX] = {"handshake", "identifying", "open",
                                                        "draining", "closed"};

const char *conn_state_str(enum conn_state s)
{
    return s < CONN_STATE_MAX ? state_names[s] : "?";
}

bool conn_transition_ok(enum conn_state from, enum conn_state to)
{
    switch (to) {
    case CONN_IDENTIFYING:
        return from == CONN_HANDSHAKE;
    case CONN_OPEN:
        return from == CONN_HANDSHAKE || from == CONN_IDENTIFYING;
    case CONN_DRAINING:
        return from == CONN_OPEN || from == CONN_IDENTIFYING;
    case CONN_CLOSED:
        return from != CONN_CLOSED;
    case CONN_HANDSHAKE:
    case CONN_STATE_MAX:
        break;
    }
    return false;
}

static bool conn_set_state(struct conn *c, enum conn_state to)
{
    if (!conn_transition_ok(c->state, to)) {
        conn_log(c, LOG_LEVEL_ERROR, "illegal state change %s -> %s refused",
                 conn_state_str(c->state), conn_state_str(to));
        return false;
    }
    conn_log(c, LOG_LEVEL_DEBUG, "state %s -> %s", conn_state_str(c->state), conn_state_str(to));
    c->state = to;
    return true;
}

void conn_log(const struct conn *c, enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *who = c->session.role == ROLE_NONE ? "-" : c->session.name;
    log_msg(level, "c%llu %s %s%s: %s", (unsigned long long)c->id, c->peer,
            c->session.role == ROLE_OUTLET ? "outlet:" : "", who, msg);
}

void conn_ref(struct conn *c)
{
    c->refs++;
}

void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    frame_decoder_free(&c->frame);
    free(c);
}

enum conn_state conn_state(const struct conn *c)
{
    return c->state;
}

bool conn_is_open(const struct conn *c)
{
    return c->state != CONN_CLOSED;
}

uint64_t conn_id(const struct conn *c)
{
    return c->id;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

const char *conn_tls_version(const struct conn *c)
{
    return c->tls_version != NULL ? c->tls_version : "";
}

struct session *conn_session(struct conn *c)
{
    return &c->session;
}

struct server *conn_server(const struct conn *c)
{
    return c->srv;
}

const char *conn_refused(const struct conn *c)
{
    return c->refused;
}

void conn_close(struct conn *c, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    conn_log(c, LOG_LEVEL_DEBUG, "closing: %s", why);
    conn_set_state(c, CONN_CLOSED);
    if (c->handshake_timer != NULL) {
        event_free(c->handshake_timer);
        c->handshake_timer = NULL;
    }
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (ssl != NULL && SSL_is_init_finished(ssl))
        SSL_shutdown(ssl); /* best effort close_notify; the socket closes either way */
    ERR_clear_error();
    bufferevent_free(c->bev);
    c->bev = NULL;
    frame_decoder_free(&c->frame);
    server_conn_removed(c->srv, &c->node);
    conn_unref(c);
}

void conn_close_after_flush(struct conn *c, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_close(c, why);
        return;
    }
    conn_log(c, LOG_LEVEL_DEBUG, "closing after flush: %s", why);
    c->close_when_flushed = true;
}

void conn_send(struct conn *c, json_t *msg)
{
    if (c->state == CONN_CLOSED || c->close_when_flushed) {
        json_decref(msg);
        return;
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL) {
        conn_log(c, LOG_LEVEL_ERROR, "cannot encode an answer");
        return;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: the buffer is handed over by length */
    if (evbuffer_add(out, text, len + 1) != 0)
        conn_log(c, LOG_LEVEL_ERROR, "cannot queue an answer");
    free(text);
}

void conn_send_result_text(struct conn *c, json_t *id, const char *text, size_t len)
{
    static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":", mid[] = ",\"result\":";
    if (c->state == CONN_CLOSED || c->close_when_flushed)
        return;
    char *id_text = json_dumps(id != NULL ? id : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    size_t id_len = id_text != NULL ? strlen(id_text) : 0;
    size_t n = sizeof(head) - 1 + id_len + sizeof(mid) - 1 + len + 2;
    char *msg = id_text != NULL ? malloc(n) : NULL;
    if (msg == NULL) {
        free(id_text);
        conn_log(c, LOG_LEVEL_ERROR, "cannot encode an answer");
        return;
    }
    char *p = msg;
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    memcpy(p, id_text, id_len);
    p += id_len;
    memcpy(p, mid, sizeof(mid) - 1);
    p += sizeof(mid) - 1;
    memcpy(p, text, len);
    p += len;
    memcpy(p, "}\n", 2);
    if (evbuffer_add(bufferevent_get_output(c->bev), msg, n) != 0)
        conn_log(c, LOG_LEVEL_ERROR, "cannot queue an answer");
    free(msg);
    free(id_text);
}

void conn_notify(struct conn *c, const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params",
                            params != NULL ? params : json_object());
    if (msg != NULL)
        conn_send(c, msg);
}

static int64_t mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec + 1; /* never 0: 0 means "no partial line" */
}

/* A line that has begun must be finished within request_timeout, however slowly its bytes come:
 * the read timeout alone restarts with every byte. */
static bool request_overdue(struct conn *c)
{
    if (frame_decoder_pending(&c->frame) == 0 && !c->frame.discarding) {
        c->partial_since = 0;
        return false;
    }
    int64_t now = mono_seconds();
    if (c->partial_since == 0) {
        c->partial_since = now;
        return false;
    }
    return now - c->partial_since > c->srv->cfg.request_timeout;
}

static bool should_pause(const struct conn *c)
{
    return c->inflight >= c->srv->cfg.max_inflight ||
           evbuffer_get_length(bufferevent_get_output(c->bev)) > CONN_OUTPUT_HIGH;
}

static void process_input(struct conn *c)
{
    if (c->processing || c->state != CONN_OPEN)
        return;
    c->processing = true;
    conn_ref(c);
    while (c->state == CONN_OPEN && !c->close_when_flushed) {
        if (should_pause(c)) {
            if (!c->reading_paused) {
                c->reading_paused = true;
                bufferevent_disable(c->bev, EV_READ);
            }
            break;
        }
        struct evbuffer *in = bufferevent_get_input(c->bev);
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t consumed = 0, len = 0;
        const char *line = NULL;
        enum frame_status st = frame_decode(&c->frame, v.iov_base, v.iov_len, &consumed, &line,
                                            &len);
        if (st == FRAME_LINE) {
            rpc_dispatch(c, line, len); /* may close c */
            if (c->state == CONN_CLOSED)
                break;
            evbuffer_drain(in, consumed);
        } else if (st == FRAME_TOO_LONG) {
            evbuffer_drain(in, consumed);
            conn_log(c, LOG_LEVEL_WARN, "frame longer than %d bytes discarded",
                     c->srv->cfg.max_frame);
            char message[96];
            snprintf(message, sizeof(message), "request longer than %d bytes",
                     c->srv->cfg.max_frame);
            conn_send(c, rpc_make_error(NULL, RPC_INVALID_REQUEST, message,
                                        rpc_error_data("frame_too_large", false)));
        } else if (st == FRAME_NEED_MORE) {
            evbuffer_drain(in, consumed);
        } else {
            conn_close(c, "out of memory");
            break;
        }
    }
    if (c->state == CONN_OPEN && request_overdue(c)) {
        conn_log(c, LOG_LEVEL_INFO, "request line not completed within %d s",
                 c->srv->cfg.request_timeout);
        conn_close(c, "request timeout");
    }
    c->processing = false;
    conn_unref(c);
}

static void maybe_resume(struct conn *c)
{
    if (c->state != CONN_OPEN || !c->reading_paused || should_pause(c))
        return;
    c->reading_paused = false;
    bufferevent_enable(c->bev, EV_READ);
    process_input(c);
}

void conn_call_started(struct conn *c)
{
    c->inflight++;
}

void conn_call_finished(struct conn *c)
{
    c->inflight--;
    if (c->state == CONN_DRAINING && c->inflight == 0)
        conn_close_after_flush(c, "drained");
    else
        maybe_resume(c);
}

void conn_drain(struct conn *c)
{
    if (c->state == CONN_HANDSHAKE) {
        conn_close(c, "daemon stopping");
        return;
    }
    if (c->state == CONN_CLOSED || c->state == CONN_DRAINING)
        return;
    conn_set_state(c, CONN_DRAINING);
    bufferevent_disable(c->bev, EV_READ);
    if (c->inflight == 0)
        conn_close_after_flush(c, "daemon stopping");
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (c->close_when_flushed) {
        conn_close(c, "answers sent");
        return;
    }
    maybe_resume(c);
}

static void set_read_timeout(struct conn *c, int seconds)
{
    struct timeval rt = {seconds, 0};
    struct timeval wt = {c->srv->cfg.write_timeout, 0};
    bufferevent_set_timeouts(c->bev, &rt, &wt);
}

static void opened(struct conn *c)
{
    if (!conn_set_state(c, CONN_OPEN))
        return;
    set_read_timeout(c, c->srv->cfg.idle_timeout);
    bufferevent_enable(c->bev, EV_READ);
    process_input(c);
}

static void outlet_lookup_cb(void *arg, const struct db_result *r)
{
    struct conn *c = arg;
    if (c->state == CONN_IDENTIFYING) {
        json_t *o = NULL;
        if (r->status != DB_OK) {
            c->refused = "db_unavailable";
            conn_log(c, LOG_LEVEL_WARN, "outlet lookup failed: %s", r->message);
        } else if (!PQgetisnull(r->res, 0, 0)) {
            o = json_loads(PQgetvalue(r->res, 0, 0), 0, NULL);
        }
        if (r->status == DB_OK && o == NULL) {
            c->refused = "unknown_outlet";
            conn_log(c, LOG_LEVEL_WARN, "certificate maps to no outlet");
        } else if (o != NULL && !json_is_true(json_object_get(o, "enabled"))) {
            c->refused = "outlet_disabled";
            conn_log(c, LOG_LEVEL_WARN, "outlet %s is disabled",
                     json_string_value(json_object_get(o, "code")));
        } else if (o != NULL) {
            struct session *s = &c->session;
            s->role = ROLE_OUTLET;
            s->outlet_id = json_integer_value(json_object_get(o, "id"));
            s->property_id = json_integer_value(json_object_get(o, "property_id"));
            const char *code = json_string_value(json_object_get(o, "code"));
            const char *prop = json_string_value(json_object_get(o, "property_code"));
            snprintf(s->name, sizeof(s->name), "%s", code != NULL ? code : "?");
            snprintf(s->property, sizeof(s->property), "%s", prop != NULL ? prop : "");
            conn_log(c, LOG_LEVEL_INFO, "outlet %s of %s identified by certificate", s->name,
                     s->property);
        }
        json_decref(o);
        opened(c);
    }
    conn_unref(c);
}

static void handshake_done(struct conn *c)
{
    if (c->handshake_timer != NULL) {
        event_free(c->handshake_timer);
        c->handshake_timer = NULL;
    }
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    c->tls_version = SSL_get_version(ssl);
    char fp[65], cn[65];
    if (!tls_peer_identity(ssl, fp, sizeof(fp), cn, sizeof(cn))) {
        opened(c);
        return;
    }
    if (!conn_set_state(c, CONN_IDENTIFYING))
        return;
    conn_log(c, LOG_LEVEL_DEBUG, "client certificate CN=%s sha256=%s", cn, fp);
    bufferevent_disable(c->bev, EV_READ);
    const char *params[2] = {fp, cn};
    conn_ref(c);
    if (!db_query(c->srv->db, "SELECT auth_outlet_lookup($1, $2)", 2, params, outlet_lookup_cb,
                  c)) {
        conn_unref(c);
        conn_close(c, "out of memory");
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        handshake_done(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (what & BEV_EVENT_WRITING) {
            conn_close(c, "write timeout: the client is not reading");
        } else if (c->state == CONN_HANDSHAKE) {
            conn_close(c, "TLS handshake timeout");
        } else if (c->inflight > 0) {
            if (!c->reading_paused)
                bufferevent_enable(bev, EV_READ); /* busy, not idle: keep waiting */
        } else {
            conn_log(c, LOG_LEVEL_INFO, "idle timeout");
            conn_close(c, "idle timeout");
        }
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        char buf[160] = "";
        if (e != 0)
            ERR_error_string_n(e, buf, sizeof(buf));
        if (c->state == CONN_HANDSHAKE)
            conn_log(c, LOG_LEVEL_INFO, "TLS handshake failed: %s", e ? buf : "connection reset");
        else
            conn_log(c, LOG_LEVEL_DEBUG, "connection error: %s", e ? buf : "reset or dirty close");
        ERR_clear_error();
        conn_close(c, "error");
        return;
    }
    if (what & BEV_EVENT_EOF)
        conn_close(c, "closed by peer");
}

static void handshake_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    conn_log(c, LOG_LEVEL_INFO, "TLS handshake not completed within %d s",
             c->srv->cfg.handshake_timeout);
    conn_close(c, "TLS handshake timeout");
}

struct conn *conn_new(struct server *srv, int fd, const char *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    SSL *ssl = SSL_new(srv->ssl_ctx);
    if (c == NULL || ssl == NULL) {
        free(c);
        SSL_free(ssl);
        evutil_closesocket(fd);
        return NULL;
    }
    c->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        SSL_free(ssl);
        evutil_closesocket(fd);
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->refs = 1;
    c->id = ++srv->next_conn_id;
    c->state = CONN_HANDSHAKE;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    frame_decoder_init(&c->frame, (size_t)srv->cfg.max_frame);
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    set_read_timeout(c, srv->cfg.handshake_timeout);
    c->handshake_timer = evtimer_new(srv->base, handshake_timeout_cb, c);
    struct timeval hs = {srv->cfg.handshake_timeout, 0};
    if (c->handshake_timer != NULL)
        evtimer_add(c->handshake_timer, &hs);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    server_conn_added(srv, &c->node);
    return c;
}
