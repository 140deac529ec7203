/*
 * server.h - the listener, the set of connections, shared services and the drain on stop.
 *
 * struct server ties together what every connection needs: the event base, the current
 * configuration and TLS context, the database pool and the password workers. server_start()
 * binds and listens; server_reload() applies a new configuration (a TLS context is swapped in
 * only if it builds); server_drain() stops accepting, lets connections finish their in-flight
 * requests and leaves the loop once they are gone or drain_timeout has passed.
 */
#ifndef FOLIOD_SERVER_H
#define FOLIOD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "config.h"

struct event_base;
struct evconnlistener;
struct db_pool;
struct sqlbatch;
struct conn;
struct event;
struct audit;

struct conn_list_node {
    struct conn_list_node *prev, *next;
};

struct server {
    struct event_base *base;
    struct foliod_config cfg; /* owned; replaced on reload */
    SSL_CTX *ssl_ctx;         /* owned; swapped on reload */
    struct evconnlistener *listener;
    struct db_pool *db;
    struct sqlbatch *batch; /* group commit of postings (sqlcall.h) */
    struct auth_workers *auth;
    struct conn_list_node conns; /* list head of open connections */
    int nconns;
    uint64_t next_conn_id;
    uint64_t requests;
    bool draining;
    struct event *drain_timer;
    int64_t started_at; /* unix seconds */
    char *config_path;
    char **overrides;
    int noverrides;
    struct audit *audit; /* the night audit's drivers and schedule (audit.h) */
};

__attribute__((warn_unused_result)) bool server_init(struct server *srv, struct event_base *base,
                                                     struct foliod_config *cfg,
                                                     const char *config_path, char **overrides,
                                                     int noverrides);
__attribute__((warn_unused_result)) bool server_start(struct server *srv);
void server_reload(struct server *srv);
void server_drain(struct server *srv);
void server_free(struct server *srv);

/* Called by conn.c. */
void server_conn_added(struct server *srv, struct conn_list_node *node);
void server_conn_removed(struct server *srv, struct conn_list_node *node);

/* Sends a notification to every open connection whose role matches roles (ROLE_BIT mask) and,
 * when property_id is not 0, whose session belongs to that property. Steals params. */
void server_broadcast(struct server *srv, unsigned roles, int64_t property_id, const char *method,
                      json_t *params);

#endif
