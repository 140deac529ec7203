/*
 * sqlcall.h - the handler shared by every method whose work is one SQL API function, and the
 * group commit of the posting methods.
 *
 * The method table names the statement (e.g. "SELECT api_room_create($1::jsonb, $2::jsonb)");
 * the handler sends the caller's context and the validated params as the two parameters, and
 * answers with the function's jsonb result once the transaction has committed. Domain errors
 * raised by the function (SQLSTATE FL000, MESSAGE = reason, DETAIL = text) become JSON-RPC
 * domain errors.
 *
 * A method flagged RPC_F_BATCH (folio.post, pos.post) goes through the batcher instead: calls
 * wait in a FIFO while database.batch_lanes batches are being written, and the next free lane
 * takes up to database.batch_max of them as one statement, fl_batch() (sql/016_batch.sql): one
 * transaction, each call in its own subtransaction, each answered with its own result or error
 * after the commit. A new call is looked at once the loop has read what else arrived with it
 * (a zero-delay event, not a timer), so that requests read in one turn of the loop leave in
 * one batch. A call whose batch lost a deadlock (sql/017_batch_lock_order.sql: the one that
 * lost, and those the batch did not run after it) goes back to the head of the queue, at most
 * three times, then is answered busy. With batch_lanes = 0 every call is sent on its own.
 */
#ifndef FOLIOD_SQLCALL_H
#define FOLIOD_SQLCALL_H

struct rpc_call;
struct event_base;
struct db_pool;
struct foliod_config;
struct sqlbatch;

void sqlcall_handler(struct rpc_call *call);

struct sqlbatch *sqlbatch_new(struct event_base *base, struct db_pool *db,
                              const struct foliod_config *cfg);
/* Applies batch_lanes, batch_max and queue_max; waiting calls are sent if lanes opened. */
void sqlbatch_reconfigure(struct sqlbatch *b, const struct foliod_config *cfg);
/* Calls waiting, batches being written and calls sent in batches of two or more since the
 * start, for server.info. */
void sqlbatch_stats(const struct sqlbatch *b, int *waiting, int *writing, long long *batched);
/* Answers the waiting calls db_unavailable and sends nothing more; batches already sent are
 * still answered (db_pool_free fails them). Call before db_pool_free, free after it. */
void sqlbatch_close(struct sqlbatch *b);
void sqlbatch_free(struct sqlbatch *b);

#endif
