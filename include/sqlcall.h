/*
 * sqlcall.h - the handler shared by every method whose work is one SQL API function.
 *
 * The method table names the statement (e.g. "SELECT api_room_create($1::jsonb, $2::jsonb)");
 * the handler sends the caller's context and the validated params as the two parameters, and
 * answers with the function's jsonb result once the transaction has committed. Domain errors
 * raised by the function (SQLSTATE FL000, MESSAGE = reason, DETAIL = text) become JSON-RPC
 * domain errors.
 */
#ifndef FOLIOD_SQLCALL_H
#define FOLIOD_SQLCALL_H

struct rpc_call;

void sqlcall_handler(struct rpc_call *call);

#endif
