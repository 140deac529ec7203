/*
 * session.h - handlers for identity and server methods: session.login, session.logout,
 * server.ping, server.info. Login looks the user up in the database, verifies the password on
 * an auth worker thread, and on failure answers invalid_credentials after a delay that grows
 * with each failure on the connection (the same answer and cost whether the user or the
 * password was wrong); too many failures close the connection.
 */
#ifndef FOLIOD_SESSION_H
#define FOLIOD_SESSION_H

struct rpc_call;

void session_login(struct rpc_call *call);
void session_logout(struct rpc_call *call);
void server_ping(struct rpc_call *call);
void server_info(struct rpc_call *call);

#endif
