/*
 * sqlcall.c - the handler for methods that are one SQL API function each, and the batcher
 * that writes several postings in one transaction (group commit).
 *
 * The function runs as one statement, hence one transaction; the answer is built from its
 * jsonb result after the pool has seen the transaction end.
 *
 * The batcher: a posting call waits in a FIFO; while fewer than `lanes` batches are being
 * written, the FIFO's first `max` calls leave as one fl_batch() statement. Calls that arrive
 * while every lane is busy gather behind it, so the batches grow with the load and stay single
 * calls when it is light (no call ever waits for a timer). A batch's answers are given only
 * after its transaction committed; a batch that fails as a whole (database gone, statement
 * timeout) answers every one of its calls with that failure, as a single call would have been.
 */
#include "sqlcall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "conn.h"
#include "db.h"
#include "jtext.h"
#include "log.h"
#include "rpc.h"
#include "server.h"

static json_t *result_json(struct rpc_call *call, const char *text)
{
    json_error_t jerr;
    json_t *result = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (result == NULL)
        conn_log(call->conn, LOG_LEVEL_ERROR, "%s returned invalid JSON: %s", call->method->name,
                 jerr.text);
    return result;
}

/* PostgreSQL's type oid of jsonb (catalog pg_type; libpq has no header for it). */
#define JSONB_OID 3802

/* Whether the single value of r is jsonb whose text (jsonb's output: JSON on one line, UTF-8 as
 * the pool asks for) can go to the client as it is, without being parsed and written again.
 * Not when it has a line end (jsonb's output has none, but a raw one would end the client's
 * frame), nor a number of 19 digits or more: jansson, here and in clients, refuses integers
 * beyond 64 bits, and such a result is parsed as before (and refused, as before). */
static bool result_is_jsonb(const struct db_result *r, const char **text, size_t *len)
{
    if (PQntuples(r->res) != 1 || PQnfields(r->res) != 1 || PQgetisnull(r->res, 0, 0) ||
        PQftype(r->res, 0) != JSONB_OID)
        return false;
    *text = PQgetvalue(r->res, 0, 0);
    *len = (size_t)PQgetlength(r->res, 0, 0);
    return memchr(*text, '\n', *len) == NULL && memchr(*text, '\r', *len) == NULL &&
           !jtext_has_long_number(*text, *len);
}

static void sqlcall_done_cb(void *arg, const struct db_result *r)
{
    struct rpc_call *call = arg;
    if (r->status != DB_OK) {
        rpc_fail_db(call, r);
        return;
    }
    const char *text;
    size_t len;
    if (result_is_jsonb(r, &text, &len)) {
        rpc_reply_text(call, text, len);
        return;
    }
    json_t *result = json_null();
    if (PQntuples(r->res) == 1 && PQnfields(r->res) == 1 && !PQgetisnull(r->res, 0, 0)) {
        result = result_json(call, PQgetvalue(r->res, 0, 0));
        if (result == NULL) {
            rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "internal error");
            return;
        }
    }
    rpc_reply(call, result);
}

/* ---- the batcher ---- */

struct bcall {
    struct bcall *next;
    struct sqlbatch *owner;
    struct rpc_call *call;
    int again;    /* times sent again (a lost deadlock, or not run: fl_batch stopped) */
    char *ctx;    /* JSON text, owned */
    char *params; /* JSON text, owned */
};

struct batch {
    struct sqlbatch *owner;
    struct bcall *calls;
    int n;
};

struct sqlbatch {
    struct db_pool *db;
    struct event *kick_ev; /* zero-delay: sends what this turn of the loop queued */
    struct bcall *head, *tail;
    int waiting;
    int writing;       /* batches sent, not yet answered */
    long long batched; /* calls sent in batches of two or more, since the start */
    int lanes;
    int max;
    int queue_max;
    char lock_budget[16]; /* ms a batch's calls may wait for locks: 4/5 of statement_timeout */
    bool closed;
};

static const char batch_sql[] = "SELECT fl_batch($1::jsonb, $2::integer)";

static void bcall_free(struct bcall *bc)
{
    free(bc->ctx);
    free(bc->params);
    free(bc);
}

static void kick(struct sqlbatch *b);

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sqlbatch *b = arg;
    if (!b->closed)
        kick(b);
}

struct sqlbatch *sqlbatch_new(struct event_base *base, struct db_pool *db,
                              const struct foliod_config *cfg)
{
    struct sqlbatch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->kick_ev = event_new(base, -1, 0, kick_cb, b);
    if (b->kick_ev == NULL) {
        free(b);
        return NULL;
    }
    b->db = db;
    sqlbatch_reconfigure(b, cfg);
    return b;
}

void sqlbatch_stats(const struct sqlbatch *b, int *waiting, int *writing, long long *batched)
{
    *waiting = b != NULL ? b->waiting : 0;
    *writing = b != NULL ? b->writing : 0;
    *batched = b != NULL ? b->batched : 0;
}

/* A retryable failure: no database answer, for the reason why. */
static struct db_result unavailable(const char *why)
{
    return (struct db_result){DB_UNAVAILABLE, NULL, "", why, "", ""};
}

/* Answers every call of the list with r and frees the list. */
static void fail_calls(struct bcall *bc, const struct db_result *r)
{
    while (bc != NULL) {
        struct bcall *next = bc->next;
        rpc_fail_db(bc->call, r);
        bcall_free(bc);
        bc = next;
    }
}

/* Answers every waiting call db_unavailable (retryable): what is left when memory ran out. */
static void fail_waiting(struct sqlbatch *b, const char *why)
{
    struct bcall *list = b->head;
    b->head = b->tail = NULL;
    b->waiting = 0;
    struct db_result r = unavailable(why);
    fail_calls(list, &r);
}

/* Puts a list of calls (last: its last element) back at the head of the queue. */
static void requeue(struct sqlbatch *b, struct bcall *list, struct bcall *last)
{
    if (list == NULL)
        return;
    if (b->closed) {
        struct db_result r = unavailable("daemon stopping");
        fail_calls(list, &r);
        return;
    }
    for (struct bcall *bc = list; bc != NULL; bc = bc->next)
        b->waiting++;
    last->next = b->head;
    if (b->head == NULL)
        b->tail = last;
    b->head = list;
}

/* How many times a call goes back to the queue before it is answered busy (retryable). */
#define BATCH_AGAIN_MAX 3

/* One answer of fl_batch: {"ok": result}, {"error": {sqlstate, message, detail, hint}} or
 * {"again": true}. False when the call lost a deadlock, or was not run because its batch
 * stopped at one: it is not answered but goes back to the queue, to run in a later batch,
 * after the batch it waited for has committed (at most BATCH_AGAIN_MAX times). */
static bool answer_call(struct bcall *bc, json_t *answer)
{
    struct rpc_call *call = bc->call;
    json_t *ok = json_object_get(answer, "ok");
    if (ok != NULL) {
        rpc_reply(call, json_incref(ok));
        return true;
    }
    bool not_run = json_is_true(json_object_get(answer, "again"));
    json_t *err = json_object_get(answer, "error");
    const char *state = not_run ? "40P01" : json_string_value(json_object_get(err, "sqlstate"));
    const char *message = not_run ? "deadlock detected (its batch stopped at one)"
                                  : json_string_value(json_object_get(err, "message"));
    if (state == NULL || strlen(state) != 5 || message == NULL) {
        conn_log(call->conn, LOG_LEVEL_ERROR, "%s: fl_batch gave no answer for the call",
                 call->method->name);
        rpc_fail(call, RPC_INTERNAL_ERROR, "internal", false, "internal error");
        return true;
    }
    if (strcmp(state, "40P01") == 0 && bc->again < BATCH_AGAIN_MAX) {
        const char *why =
            not_run ? "was not run: its batch lost a deadlock" : "lost a deadlock in its batch";
        conn_log(call->conn, LOG_LEVEL_INFO, "%s %s; sent again", call->method->name, why);
        bc->again++;
        return false;
    }
    const char *detail = json_string_value(json_object_get(err, "detail"));
    const char *hint = json_string_value(json_object_get(err, "hint"));
    struct db_result r = {
        DB_ERROR, NULL, state, message, detail != NULL ? detail : "", hint != NULL ? hint : ""};
    rpc_fail_db(call, &r);
    return true;
}

static void lane_free(struct sqlbatch *b)
{
    b->writing--;
    if (!b->closed)
        kick(b);
}

/* A call that found a lane with no other call waiting went alone, as an unbatched call. */
static void single_done_cb(void *arg, const struct db_result *r)
{
    struct bcall *bc = arg;
    struct sqlbatch *b = bc->owner;
    sqlcall_done_cb(bc->call, r);
    bcall_free(bc);
    lane_free(b);
}

/* Where one answer lies in the text of fl_batch's array. */
struct span {
    size_t start, end;
};

/* The bounds of the n answers in the text of fl_batch's array, into spans: false unless the
 * text is an array of exactly n values (it is then read as a whole, as any other result). */
static bool cut_answers(const char *text, size_t len, int n, struct span *spans)
{
    struct jtext_array a;
    size_t start, end;
    int i = 0;
    jtext_array_open(&a, text, len);
    while (jtext_array_next(&a, &start, &end)) {
        if (i == n)
            return false;
        spans[i].start = start;
        spans[i].end = end;
        i++;
    }
    return !a.bad && i == n;
}

/* answer_call() for an answer given as text: {"ok": result} passes the result's text on, and
 * anything else (an error, "again") is parsed on its own for answer_call. */
static bool answer_text(struct bcall *bc, const char *s, size_t len)
{
    size_t vstart, vend;
    if (jtext_ok_member(s, len, &vstart, &vend)) {
        rpc_reply_text(bc->call, s + vstart, vend - vstart);
        return true;
    }
    json_t *answer = json_loadb(s, len, 0, NULL);
    bool done = answer_call(bc, answer); /* NULL: no answer for the call */
    json_decref(answer);
    return done;
}

/* Each call gets its answer from fl_batch's array: cut from its text when the result is jsonb
 * (result_is_jsonb) and an array of one value per call, else parsed as a whole. */
static void batch_done_cb(void *arg, const struct db_result *r)
{
    struct batch *bt = arg;
    struct sqlbatch *b = bt->owner;
    if (r->status != DB_OK) {
        fail_calls(bt->calls, r);
    } else {
        const char *text = NULL;
        size_t len = 0;
        struct span *spans = NULL;
        json_t *answers = NULL;
        if (result_is_jsonb(r, &text, &len)) {
            spans = calloc((size_t)bt->n, sizeof(*spans));
            if (spans != NULL && !cut_answers(text, len, bt->n, spans)) {
                free(spans);
                spans = NULL;
            }
        }
        if (spans == NULL) {
            if (PQntuples(r->res) == 1 && PQnfields(r->res) == 1 && !PQgetisnull(r->res, 0, 0))
                answers = result_json(bt->calls->call, PQgetvalue(r->res, 0, 0));
            if (!json_is_array(answers) || json_array_size(answers) != (size_t)bt->n)
                log_error("fl_batch answered %s for %d calls",
                          answers == NULL ? "nothing usable" : "a different number of answers",
                          bt->n);
        }
        struct bcall *again = NULL, *again_last = NULL;
        size_t i = 0;
        for (struct bcall *bc = bt->calls, *next; bc != NULL; bc = next, i++) {
            next = bc->next;
            bool done = spans != NULL
                            ? answer_text(bc, text + spans[i].start, spans[i].end - spans[i].start)
                            : answer_call(bc, json_array_get(answers, i)); /* NULL past the end */
            if (done) {
                bcall_free(bc);
                continue;
            }
            bc->next = NULL;
            if (again_last != NULL)
                again_last->next = bc;
            else
                again = bc;
            again_last = bc;
        }
        free(spans);
        json_decref(answers);
        requeue(b, again, again_last);
    }
    free(bt);
    lane_free(b);
}

/* Appends s to the growing buffer; false when memory ran out. */
static bool buf_add(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t want = *cap * 2 > *len + n + 1 ? *cap * 2 : *len + n + 1;
        char *grown = realloc(*buf, want);
        if (grown == NULL)
            return false;
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return true;
}

static struct bcall *pop(struct sqlbatch *b)
{
    struct bcall *bc = b->head;
    b->head = bc->next;
    if (b->head == NULL)
        b->tail = NULL;
    b->waiting--;
    bc->next = NULL;
    return bc;
}

/* The head call alone, as its own statement, without fl_batch's subtransaction. */
static bool send_single(struct sqlbatch *b)
{
    struct bcall *bc = pop(b);
    const char *params[2] = {bc->ctx, bc->params};
    if (!db_query(b->db, bc->call->method->sql, 2, params, single_done_cb, bc)) {
        struct db_result r = unavailable("out of memory");
        rpc_fail_db(bc->call, &r);
        bcall_free(bc);
        return false;
    }
    b->writing++;
    return true;
}

/* Up to max calls from the head as one fl_batch statement. */
static bool send_batch(struct sqlbatch *b)
{
    struct batch *bt = calloc(1, sizeof(*bt));
    size_t len = 0, cap = 4096;
    char *text = malloc(cap);
    if (bt == NULL || text == NULL) {
        free(bt);
        free(text);
        return false;
    }
    bt->owner = b;
    text[0] = '\0';
    bool ok = buf_add(&text, &len, &cap, "[");
    struct bcall **tailp = &bt->calls;
    while (ok && b->head != NULL && bt->n < b->max) {
        struct bcall *bc = b->head;
        ok = buf_add(&text, &len, &cap, bt->n > 0 ? ",{\"m\":\"" : "{\"m\":\"") &&
             buf_add(&text, &len, &cap, bc->call->method->name) &&
             buf_add(&text, &len, &cap, "\",\"ctx\":") && buf_add(&text, &len, &cap, bc->ctx) &&
             buf_add(&text, &len, &cap, ",\"p\":") && buf_add(&text, &len, &cap, bc->params) &&
             buf_add(&text, &len, &cap, "}");
        if (!ok)
            break;
        *tailp = pop(b);
        tailp = &bc->next;
        bt->n++;
    }
    ok = ok && buf_add(&text, &len, &cap, "]");
    const char *params[2] = {text, b->lock_budget};
    if (ok && db_query(b->db, batch_sql, 2, params, batch_done_cb, bt)) {
        b->writing++;
        b->batched += bt->n;
        free(text);
        return true;
    }
    free(text);
    struct db_result r = unavailable("out of memory");
    fail_calls(bt->calls, &r);
    free(bt);
    return false;
}

/* Sends batches while a lane is free and calls wait. When memory runs out, the calls still
 * waiting are answered db_unavailable (retryable) rather than left without a lane. */
static void kick(struct sqlbatch *b)
{
    while (b->head != NULL && b->writing < (b->lanes > 0 ? b->lanes : 1)) {
        bool sent = b->head->next == NULL || b->max == 1 ? send_single(b) : send_batch(b);
        if (!sent) {
            fail_waiting(b, "out of memory");
            return;
        }
    }
}

static void batch_submit(struct sqlbatch *b, struct rpc_call *call, char *ctx, char *params)
{
    const char *why = b->closed                    ? "daemon stopping"
                      : b->waiting >= b->queue_max ? "database queue full"
                                                   : NULL;
    struct bcall *bc = why == NULL ? calloc(1, sizeof(*bc)) : NULL;
    if (bc == NULL) {
        free(ctx);
        free(params);
        struct db_result r = unavailable(why != NULL ? why : "out of memory");
        rpc_fail_db(call, &r);
        return;
    }
    bc->owner = b;
    bc->call = call;
    bc->ctx = ctx;
    bc->params = params;
    if (b->tail != NULL)
        b->tail->next = bc;
    else
        b->head = bc;
    b->tail = bc;
    b->waiting++;
    /* after the other requests this turn of the loop reads, which may join its batch */
    if (!event_pending(b->kick_ev, EV_TIMEOUT, NULL))
        event_active(b->kick_ev, EV_TIMEOUT, 1);
}

void sqlbatch_reconfigure(struct sqlbatch *b, const struct foliod_config *cfg)
{
    b->lanes = cfg->db_batch_lanes;
    b->max = cfg->db_batch_max;
    b->queue_max = cfg->db_queue_max;
    snprintf(b->lock_budget, sizeof(b->lock_budget), "%d", cfg->db_statement_timeout / 5 * 4);
    if (!b->closed)
        kick(b);
}

void sqlbatch_close(struct sqlbatch *b)
{
    if (b == NULL)
        return;
    b->closed = true;
    struct bcall *list = b->head;
    b->head = b->tail = NULL;
    b->waiting = 0;
    struct db_result r = unavailable("daemon stopping");
    fail_calls(list, &r);
}

void sqlbatch_free(struct sqlbatch *b)
{
    if (b == NULL)
        return;
    sqlbatch_close(b);
    event_free(b->kick_ev);
    free(b);
}

/* ---- the handler ---- */

void sqlcall_handler(struct rpc_call *call)
{
    struct server *srv = conn_server(call->conn);
    json_t *ctx = rpc_call_context(call);
    char *ctx_text = ctx != NULL ? json_dumps(ctx, JSON_COMPACT) : NULL;
    char *params_text = json_dumps(call->params, JSON_COMPACT);
    json_decref(ctx);
    if (ctx_text != NULL && params_text != NULL && (call->method->flags & RPC_F_BATCH) &&
        srv->batch != NULL && srv->cfg.db_batch_lanes > 0) {
        batch_submit(srv->batch, call, ctx_text, params_text);
        return;
    }
    const char *params[2] = {ctx_text, params_text};
    bool queued = ctx_text != NULL && params_text != NULL &&
                  db_query(srv->db, call->method->sql, 2, params, sqlcall_done_cb, call);
    free(ctx_text);
    free(params_text);
    if (!queued) {
        struct db_result r = unavailable("out of memory");
        rpc_fail_db(call, &r);
    }
}
