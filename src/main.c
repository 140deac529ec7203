/*
 * main.c - arguments, configuration, signals, ordered start and shutdown.
 *
 *   foliod [-c FILE] [-o section.key=value]... [--check-config | --migrate | --import FILE |
 *           --hash-password]
 *
 * Start: configuration -> TLS context, password workers, database pool -> listener -> loop.
 * SIGHUP reloads the configuration; SIGTERM or SIGINT drains (stop accepting, finish in-flight
 * requests, close) and a second one closes at once.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "offline.h"
#include "server.h"
#include "tls.h"
#include "version.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: foliod [-c FILE] [-o section.key=value]... [command]\n"
            "  -c, --config FILE     configuration file (INI; see etc/foliod.conf)\n"
            "  -o, --set KEY=VALUE   override one key, e.g. -o server.listen_port=7444\n"
            "commands (default: run the daemon in the foreground):\n"
            "      --check-config    validate the configuration and the TLS files, then exit\n"
            "      --migrate         apply the database migrations, then exit\n"
            "      --import FILE     load a hotel set-up (JSON), then exit\n"
            "      --hash-password   read a password on standard input, print its hash\n"
            "  -V, --version\n");
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct server *srv = arg;
    if (sig == SIGHUP) {
        log_info("SIGHUP: reloading configuration");
        server_reload(srv);
    } else {
        log_info("%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        server_drain(srv);
    }
}

static int hash_password_cmd(const struct foliod_config *cfg)
{
    char line[1100];
    if (fgets(line, sizeof(line), stdin) == NULL) {
        fprintf(stderr, "foliod: no password on standard input\n");
        return 1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    struct auth_kdf_params kp = {cfg->auth_scrypt_log_n, cfg->auth_scrypt_r, cfg->auth_scrypt_p};
    char hash[AUTH_HASH_MAX];
    bool ok = auth_hash_password(line, &kp, hash, sizeof(hash));
    OPENSSL_cleanse(line, sizeof(line));
    if (!ok) {
        fprintf(stderr, "foliod: hashing failed\n");
        return 1;
    }
    printf("%s\n", hash);
    return 0;
}

static int run_daemon(struct foliod_config *cfg, const char *path, char **overrides, int nover)
{
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (base == NULL) {
        log_error("cannot create the event loop");
        return 1;
    }
    struct server srv;
    int rc = 1;
    struct event *sigs[3] = {NULL, NULL, NULL};
    char listen_host[256];
    snprintf(listen_host, sizeof(listen_host), "%s", cfg->listen_host);
    int port = cfg->listen_port;
    if (!server_init(&srv, base, cfg, path, overrides, nover) || !server_start(&srv))
        goto out;
    int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(base, signums[i], signal_cb, &srv);
        if (sigs[i] == NULL || event_add(sigs[i], NULL) != 0) {
            log_error("cannot install signal handlers");
            goto out;
        }
    }
    log_info("foliod %s listening on %s:%d (TLS), database pool of %d", FOLIOD_VERSION,
             listen_host, port, srv.cfg.db_pool_size);
    event_base_dispatch(base);
    log_info("stopped");
    rc = 0;
out:
    server_free(&srv);
    for (int i = 0; i < 3; i++) {
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    }
    event_base_free(base);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 256, OPT_MIGRATE, OPT_IMPORT, OPT_HASH };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, 'o'},
        {"check-config", no_argument, NULL, OPT_CHECK},
        {"migrate", no_argument, NULL, OPT_MIGRATE},
        {"import", required_argument, NULL, OPT_IMPORT},
        {"hash-password", no_argument, NULL, OPT_HASH},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *import_path = NULL;
    int command = 0;
    char **overrides = calloc((size_t)argc + 1, sizeof(char *));
    int nover = 0;
    if (overrides == NULL)
        return 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:o:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'o':
            overrides[nover++] = optarg;
            break;
        case OPT_CHECK:
        case OPT_MIGRATE:
        case OPT_HASH:
            command = opt;
            break;
        case OPT_IMPORT:
            command = opt;
            import_path = optarg;
            break;
        case 'V':
            printf("foliod %s (protocol %d)\n", FOLIOD_VERSION, FOLIOD_PROTOCOL);
            free(overrides);
            return 0;
        case 'h':
            usage(stdout);
            free(overrides);
            return 0;
        default:
            usage(stderr);
            free(overrides);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        free(overrides);
        return 2;
    }

    struct foliod_config cfg;
    char err[512];
    if (!config_load(&cfg, path, overrides, nover, err, sizeof(err))) {
        fprintf(stderr, "foliod: %s\n", err);
        free(overrides);
        return 1;
    }
    enum log_level lvl = LOG_LEVEL_INFO;
    if (log_level_parse(cfg.log_level, &lvl))
        log_set_level(lvl);

    int rc;
    switch (command) {
    case OPT_CHECK: {
        SSL_CTX *ctx = tls_ctx_new(&cfg, err, sizeof(err));
        rc = ctx != NULL ? 0 : 1;
        if (ctx != NULL)
            printf("configuration OK\n");
        else
            fprintf(stderr, "foliod: %s\n", err);
        SSL_CTX_free(ctx);
        break;
    }
    case OPT_MIGRATE:
        rc = offline_migrate(&cfg) ? 0 : 1;
        break;
    case OPT_IMPORT:
        rc = offline_import(&cfg, import_path) ? 0 : 1;
        break;
    case OPT_HASH:
        rc = hash_password_cmd(&cfg);
        break;
    default:
        rc = run_daemon(&cfg, path, overrides, nover);
        break;
    }
    config_free(&cfg);
    free(overrides);
    return rc;
}
