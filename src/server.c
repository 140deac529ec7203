/*
 * server.c - listener, accept with connection limits, reload, drain on stop, broadcast.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "audit.h"
#include "conn.h"
#include "db.h"
#include "log.h"
#include "sqlcall.h"
#include "tls.h"

static struct conn *node_conn(struct conn_list_node *n)
{
    /* struct conn starts with its list node (conn.c). */
    return (struct conn *)(void *)n;
}

bool server_init(struct server *srv, struct event_base *base, struct foliod_config *cfg,
                 const char *config_path, char **overrides, int noverrides)
{
    memset(srv, 0, sizeof(*srv));
    srv->base = base;
    srv->cfg = *cfg; /* takes ownership of the strings */
    memset(cfg, 0, sizeof(*cfg));
    srv->conns.next = srv->conns.prev = &srv->conns;
    srv->config_path = config_path != NULL ? strdup(config_path) : NULL;
    srv->overrides = overrides;
    srv->noverrides = noverrides;
    srv->started_at = (int64_t)time(NULL);

    char err[512];
    srv->ssl_ctx = tls_ctx_new(&srv->cfg, err, sizeof(err));
    if (srv->ssl_ctx == NULL) {
        log_error("tls: %s", err);
        return false;
    }
    srv->auth = auth_workers_new(base, srv->cfg.auth_workers);
    if (srv->auth == NULL)
        return false;
    srv->db = db_pool_new(base, &srv->cfg);
    if (srv->db == NULL) {
        log_error("cannot create the database pool");
        return false;
    }
    srv->batch = sqlbatch_new(base, srv->db, &srv->cfg);
    if (srv->batch == NULL) {
        log_error("cannot create the posting batcher");
        return false;
    }
    srv->audit = audit_new(srv);
    if (srv->audit == NULL) {
        log_error("cannot start the night audit's schedule");
        return false;
    }
    return true;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)l;
    (void)socklen;
    struct server *srv = arg;
    char host[INET6_ADDRSTRLEN] = "?", peer[64];
    int port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(peer, sizeof(peer), "%s:%d", host, port);
    if (srv->draining) {
        evutil_closesocket(fd);
        return;
    }
    if (srv->nconns >= srv->cfg.max_connections) {
        log_warn("refused %s: %d connections already (server.max_connections)", peer,
                 srv->nconns);
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (conn_new(srv, fd, peer) == NULL)
        log_error("cannot set up a connection from %s", peer);
}

static void resume_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    if (!srv->draining)
        evconnlistener_enable(srv->listener);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct server *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    log_error("accept: %s; pausing for a second", evutil_socket_error_to_string(err));
    evconnlistener_disable(l);
    struct timeval tv = {1, 0};
    event_base_once(srv->base, -1, EV_TIMEOUT, resume_accept_cb, srv, &tv);
}

bool server_start(struct server *srv)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof(port), "%d", srv->cfg.listen_port);
    int rc = getaddrinfo(srv->cfg.listen_host, port, &hints, &ai);
    if (rc != 0) {
        log_error("server.listen_host '%s': %s (a numeric address is required)",
                  srv->cfg.listen_host, gai_strerror(rc));
        return false;
    }
    srv->listener = evconnlistener_new_bind(
        srv->base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    freeaddrinfo(ai);
    if (srv->listener == NULL) {
        log_error("cannot listen on %s:%d: %s", srv->cfg.listen_host, srv->cfg.listen_port,
                  strerror(errno));
        return false;
    }
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    return true;
}

void server_reload(struct server *srv)
{
    struct foliod_config next;
    char err[512];
    if (!config_load(&next, srv->config_path, srv->overrides, srv->noverrides, err,
                     sizeof(err))) {
        log_error("reload refused, configuration unchanged: %s", err);
        return;
    }
    char changed[512];
    config_unreloadable_changes(&srv->cfg, &next, changed, sizeof(changed));
    if (changed[0] != '\0')
        log_warn("reload: %s changed but take effect only after a restart", changed);

    /* Keys that cannot change keep their running values. */
    size_t n;
    const struct config_key *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        if (keys[i].reloadable)
            continue;
        char *a = (char *)&srv->cfg + keys[i].offset;
        char *b = (char *)&next + keys[i].offset;
        size_t size = keys[i].type == CONFIG_STRING ? sizeof(char *)
                      : keys[i].type == CONFIG_BOOL ? sizeof(bool)
                                                    : sizeof(int);
        char tmp[sizeof(char *)];
        memcpy(tmp, a, size);
        memcpy(a, b, size);
        memcpy(b, tmp, size);
    }

    SSL_CTX *ctx = tls_ctx_new(&next, err, sizeof(err));
    if (ctx == NULL) {
        log_error("reload: new TLS files rejected, keeping the current ones: %s", err);
        /* keep the TLS settings that are in use */
        char **fields[] = {&next.tls_cert_file, &next.tls_key_file, &next.tls_ca_file,
                           &next.tls_min_protocol};
        char **cur[] = {&srv->cfg.tls_cert_file, &srv->cfg.tls_key_file, &srv->cfg.tls_ca_file,
                        &srv->cfg.tls_min_protocol};
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            char *t = *fields[i];
            *fields[i] = *cur[i];
            *cur[i] = t;
        }
        next.tls_verify_client = srv->cfg.tls_verify_client;
    } else {
        SSL_CTX_free(srv->ssl_ctx);
        srv->ssl_ctx = ctx;
    }
    /* after the swap of unreloadable keys, next holds the old values of those */
    struct foliod_config old = srv->cfg;
    srv->cfg = next;
    config_free(&old);

    enum log_level lvl;
    if (log_level_parse(srv->cfg.log_level, &lvl))
        log_set_level(lvl);
    db_pool_reconfigure(srv->db, &srv->cfg);
    sqlbatch_reconfigure(srv->batch, &srv->cfg);
    log_info("configuration reloaded%s", ctx != NULL ? " (TLS context replaced)" : "");
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct server *srv = arg;
    log_warn("drain timeout: closing %d connections with requests still in flight", srv->nconns);
    while (srv->conns.next != &srv->conns)
        conn_close(node_conn(srv->conns.next), "drain timeout");
    event_base_loopexit(srv->base, NULL);
}

void server_drain(struct server *srv)
{
    if (srv->draining) {
        log_warn("second stop signal: closing now");
        drain_timeout_cb(-1, 0, srv);
        return;
    }
    srv->draining = true;
    log_info("stopping: no new connections, finishing %d open ones", srv->nconns);
    if (srv->listener != NULL)
        evconnlistener_disable(srv->listener);
    struct timeval tv = {srv->cfg.drain_timeout, 0};
    srv->drain_timer = evtimer_new(srv->base, drain_timeout_cb, srv);
    if (srv->drain_timer != NULL)
        evtimer_add(srv->drain_timer, &tv);
    struct conn_list_node *n = srv->conns.next;
    while (n != &srv->conns) {
        struct conn_list_node *next = n->next;
        conn_drain(node_conn(n));
        n = next;
    }
    if (srv->nconns == 0)
        event_base_loopexit(srv->base, NULL);
}

void server_conn_added(struct server *srv, struct conn_list_node *node)
{
    node->next = &srv->conns;
    node->prev = srv->conns.prev;
    srv->conns.prev->next = node;
    srv->conns.prev = node;
    srv->nconns++;
}

void server_conn_removed(struct server *srv, struct conn_list_node *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->next = node->prev = node;
    srv->nconns--;
    if (srv->draining && srv->nconns == 0)
        event_base_loopexit(srv->base, NULL);
}

void server_broadcast(struct server *srv, unsigned roles, int64_t property_id, const char *method,
                      json_t *params)
{
    for (struct conn_list_node *n = srv->conns.next; n != &srv->conns; n = n->next) {
        struct conn *c = node_conn(n);
        struct session *s = conn_session(c);
        if (conn_state(c) != CONN_OPEN || (roles & ROLE_BIT(s->role)) == 0)
            continue;
        if (property_id != 0 && s->property_id != 0 && s->property_id != property_id)
            continue;
        conn_notify(c, method, json_incref(params));
    }
    json_decref(params);
}

void server_free(struct server *srv)
{
    if (srv->listener != NULL)
        evconnlistener_free(srv->listener);
    while (srv->conns.next != &srv->conns)
        conn_close(node_conn(srv->conns.next), "daemon stopped");
    /* Pending queries and hashes answer "unavailable" to connections that are closed now. */
    audit_free(srv->audit);
    sqlbatch_close(srv->batch);
    db_pool_free(srv->db);
    sqlbatch_free(srv->batch);
    auth_workers_free(srv->auth);
    if (srv->drain_timer != NULL)
        event_free(srv->drain_timer);
    SSL_CTX_free(srv->ssl_ctx);
    config_free(&srv->cfg);
    free(srv->config_path);
}
