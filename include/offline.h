/*
 * offline.h - commands that run instead of the daemon, with plain blocking libpq:
 * `foliod --migrate` applies the sql/ migrations, `foliod --import FILE` loads a hotel set-up.
 * They never run inside the event loop.
 */
#ifndef FOLIOD_OFFLINE_H
#define FOLIOD_OFFLINE_H

#include <stdbool.h>

struct foliod_config;

/* Applies every migration of cfg->db_migrations_dir not yet recorded in schema_migrations, each
 * in its own transaction; refuses to run when an applied migration's file has changed. */
__attribute__((warn_unused_result)) bool offline_migrate(const struct foliod_config *cfg);

/* Loads a set-up document (properties, rooms, codes, outlets, users) through
 * api_setup_import(); "password" members are hashed first. Idempotent. */
__attribute__((warn_unused_result)) bool offline_import(const struct foliod_config *cfg,
                                                        const char *path);

#endif
