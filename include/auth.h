/*
 * auth.h - roles, sessions, password hashing and the worker threads that hash off the loop.
 *
 * Passwords are stored as "$scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>" (scrypt through
 * OpenSSL's EVP_KDF). Hashing is slow on purpose, so the daemon never hashes on the event loop:
 * auth_workers runs jobs on threads and calls the completion back on the loop thread.
 * Lifecycle: auth_workers_new() -> auth_*_async() any number of times -> auth_workers_free()
 * (joins the threads; callbacks of unfinished jobs are not called).
 */
#ifndef FOLIOD_AUTH_H
#define FOLIOD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct event_base;

enum auth_role {
    ROLE_NONE,    /* anonymous: no login, no outlet certificate */
    ROLE_CASHIER,
    ROLE_AUDITOR,
    ROLE_MANAGER,
    ROLE_ADMIN,
    ROLE_OUTLET,
    ROLE_MAX
};

#define ROLE_BIT(r) (1u << (r))
#define ROLES_ANY (ROLE_BIT(ROLE_NONE) | ROLES_STAFF | ROLE_BIT(ROLE_OUTLET))
#define ROLES_STAFF                                                                                \
    (ROLE_BIT(ROLE_CASHIER) | ROLE_BIT(ROLE_AUDITOR) | ROLE_BIT(ROLE_MANAGER) | ROLE_BIT(ROLE_ADMIN))

const char *auth_role_str(enum auth_role role);
__attribute__((warn_unused_result)) bool auth_role_parse(const char *s, enum auth_role *out);

/* Who is on a connection. Owned by the connection; reset on logout. */
struct session {
    enum auth_role role;
    int64_t user_id;      /* 0 when none */
    int64_t outlet_id;    /* 0 when none */
    int64_t property_id;  /* 0 = all properties */
    char name[64];        /* user name, or outlet code */
    char property[32];    /* property code, "" = all */
    unsigned failed_logins;
};

struct auth_kdf_params {
    int log_n;
    int r;
    int p;
};

#define AUTH_HASH_MAX 160

/* Blocking: for worker threads and offline commands only. */
__attribute__((warn_unused_result)) bool auth_hash_password(const char *password,
                                                            const struct auth_kdf_params *kp,
                                                            char *out, size_t outlen);
/* Blocking, constant-time comparison. A malformed stored hash verifies false. */
bool auth_verify_password(const char *password, const char *stored);

/* A hash that matches no password, verified when the user does not exist so that a missing
 * user costs the same time as a wrong password. */
const char *auth_dummy_hash(void);

/*
 * Replaces every "password" member of the objects that carry one (the params object itself,
 * and each element of a "users" array) by "password_hash". The blocking variant is for offline
 * commands; the daemon uses auth_workers.
 */
__attribute__((warn_unused_result)) bool auth_hash_members_blocking(json_t *doc,
                                                                    const struct auth_kdf_params *kp,
                                                                    char *err, size_t errlen);
/* Collects the objects of doc that hold a string "password" (at most max). */
size_t auth_password_slots(json_t *doc, json_t **slots, size_t max);

struct auth_workers;
typedef void (*auth_done_fn)(void *arg, bool ok, const char *hash);

struct auth_workers *auth_workers_new(struct event_base *base, int nthreads);
void auth_workers_free(struct auth_workers *w);

/* Queue a verification; done(arg, matched, NULL) runs later on the loop thread. The password
 * is copied and wiped after use. Returns false (and never calls done) on allocation failure. */
__attribute__((warn_unused_result)) bool auth_verify_async(struct auth_workers *w, const char *password,
                                                           const char *stored, auth_done_fn done,
                                                           void *arg);
/* Queue a hash; done(arg, ok, hash) runs later on the loop thread; hash lives during the call. */
__attribute__((warn_unused_result)) bool auth_hash_async(struct auth_workers *w, const char *password,
                                                         const struct auth_kdf_params *kp,
                                                         auth_done_fn done, void *arg);

#endif
