/*
 * auth.c - roles, scrypt password hashes and the worker threads that compute them.
 *
 * The workers share one job queue guarded by a mutex. A finished job goes to a done list and a
 * byte on a pipe wakes the event loop, which runs the completions on its own thread, so
 * callbacks never race with the rest of the daemon.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "log.h"

static const char *const role_names[ROLE_MAX] = {"none",    "cashier", "auditor",
                                                 "manager", "admin",   "outlet"};

const char *auth_role_str(enum auth_role role)
{
    return role < ROLE_MAX ? role_names[role] : "?";
}

bool auth_role_parse(const char *s, enum auth_role *out)
{
    for (int i = 0; i < ROLE_MAX; i++) {
        if (strcmp(s, role_names[i]) == 0) {
            *out = (enum auth_role)i;
            return true;
        }
    }
    return false;
}

/* ---- scrypt ---- */

#define SALT_LEN 16
#define KEY_LEN 32

static bool scrypt(const char *password, const unsigned char *salt, size_t saltlen, int log_n,
                   int r, int p, unsigned char *out, size_t outlen)
{
    bool ok = false;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kctx == NULL)
        goto out;
    uint64_t n = (uint64_t)1 << log_n;
    uint32_t ur = (uint32_t)r, up = (uint32_t)p;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)password,
                                          strlen(password)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen),
        OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &ur),
        OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &up),
        OSSL_PARAM_construct_end(),
    };
    ok = EVP_KDF_derive(kctx, out, outlen, params) == 1;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok;
}

bool auth_hash_password(const char *password, const struct auth_kdf_params *kp, char *out,
                        size_t outlen)
{
    unsigned char salt[SALT_LEN], key[KEY_LEN];
    char salt64[64], key64[64];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return false;
    if (!scrypt(password, salt, sizeof(salt), kp->log_n, kp->r, kp->p, key, sizeof(key)))
        return false;
    EVP_EncodeBlock((unsigned char *)salt64, salt, sizeof(salt));
    EVP_EncodeBlock((unsigned char *)key64, key, sizeof(key));
    OPENSSL_cleanse(key, sizeof(key));
    int n = snprintf(out, outlen, "$scrypt$ln=%d,r=%d,p=%d$%s$%s", kp->log_n, kp->r, kp->p,
                     salt64, key64);
    return n > 0 && (size_t)n < outlen;
}

static int decode64(const char *in, unsigned char *out, size_t outcap)
{
    size_t len = strlen(in);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > outcap)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    if (in[len - 1] == '=')
        n--;
    if (in[len - 2] == '=')
        n--;
    return n;
}

bool auth_verify_password(const char *password, const char *stored)
{
    int log_n, r, p, used = 0;
    char salt64[64], key64[64];
    if (sscanf(stored, "$scrypt$ln=%d,r=%d,p=%d$%63[^$]$%63s%n", &log_n, &r, &p, salt64, key64,
               &used) != 5 || stored[used] != '\0')
        return false;
    if (log_n < 1 || log_n > 22 || r < 1 || r > 64 || p < 1 || p > 64)
        return false;
    unsigned char salt[64], want[64], got[64];
    int saltlen = decode64(salt64, salt, sizeof(salt));
    int keylen = decode64(key64, want, sizeof(want));
    if (saltlen != SALT_LEN || keylen != KEY_LEN)
        return false;
    if (!scrypt(password, salt, (size_t)saltlen, log_n, r, p, got, (size_t)keylen))
        return false;
    bool match = CRYPTO_memcmp(got, want, (size_t)keylen) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return match;
}

const char *auth_dummy_hash(void)
{
    /* A well-formed hash of a random password nobody knows, with the default cost. */
    return "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw==$"
           "q3yGxk7Jw0cF1mH0l3b0Xw8f0oKzT6bJr0GJ4dMZrHs=";
}

static size_t add_slot(json_t *obj, json_t **slots, size_t max, size_t n)
{
    if (json_is_object(obj) && json_is_string(json_object_get(obj, "password"))) {
        if (slots != NULL && n < max)
            slots[n] = obj;
        return n + 1;
    }
    return n;
}

size_t auth_password_slots(json_t *doc, json_t **slots, size_t max)
{
    size_t n = add_slot(doc, slots, max, 0);
    json_t *users = json_object_get(doc, "users");
    size_t i;
    json_t *u;
    if (json_is_array(users)) {
        json_array_foreach(users, i, u) n = add_slot(u, slots, max, n);
    }
    return slots != NULL && n > max ? max : n;
}

bool auth_hash_members_blocking(json_t *doc, const struct auth_kdf_params *kp, char *err,
                                size_t errlen)
{
    size_t n = auth_password_slots(doc, NULL, 0);
    if (n == 0)
        return true;
    json_t **slots = calloc(n, sizeof(*slots));
    if (slots == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    n = auth_password_slots(doc, slots, n);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char hash[AUTH_HASH_MAX];
        if (!auth_hash_password(json_string_value(json_object_get(slots[i], "password")), kp, hash,
                                sizeof(hash))) {
            snprintf(err, errlen, "password hashing failed");
            ok = false;
            break;
        }
        json_object_del(slots[i], "password");
        json_object_set_new(slots[i], "password_hash", json_string(hash));
    }
    free(slots);
    return ok;
}

/* ---- workers ---- */

enum job_kind { JOB_VERIFY, JOB_HASH };

struct auth_job {
    struct auth_job *next;
    enum job_kind kind;
    char *password;
    char *stored;
    struct auth_kdf_params kp;
    auth_done_fn done;
    void *arg;
    bool ok;
    char hash[AUTH_HASH_MAX];
};

struct auth_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct auth_job *todo_head, *todo_tail;
    struct auth_job *done_head, *done_tail;
    bool stopping;
    pthread_t *threads;
    int nthreads;
    int pipefd[2];
    struct event *ev;
};

static void job_free(struct auth_job *j)
{
    if (j->password != NULL) {
        OPENSSL_cleanse(j->password, strlen(j->password));
        free(j->password);
    }
    free(j->stored);
    free(j);
}

static void *worker_main(void *arg)
{
    struct auth_workers *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->todo_head == NULL && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        struct auth_job *j = w->todo_head;
        w->todo_head = j->next;
        if (w->todo_head == NULL)
            w->todo_tail = NULL;
        pthread_mutex_unlock(&w->mu);

        if (j->kind == JOB_VERIFY)
            j->ok = auth_verify_password(j->password, j->stored);
        else
            j->ok = auth_hash_password(j->password, &j->kp, j->hash, sizeof(j->hash));

        pthread_mutex_lock(&w->mu);
        j->next = NULL;
        if (w->done_tail != NULL)
            w->done_tail->next = j;
        else
            w->done_head = j;
        w->done_tail = j;
        pthread_mutex_unlock(&w->mu);
        char b = 1;
        ssize_t wr = write(w->pipefd[1], &b, 1); /* EAGAIN: a wake-up is already pending */
        (void)wr;
    }
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct auth_workers *w = arg;
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    pthread_mutex_lock(&w->mu);
    struct auth_job *j = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (j != NULL) {
        struct auth_job *next = j->next;
        j->done(j->arg, j->ok, j->kind == JOB_HASH && j->ok ? j->hash : NULL);
        job_free(j);
        j = next;
    }
}

struct auth_workers *auth_workers_new(struct event_base *base, int nthreads)
{
    struct auth_workers *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->pipefd[0] = w->pipefd[1] = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pipe2(w->pipefd, O_NONBLOCK | O_CLOEXEC) != 0)
        goto fail;
    w->ev = event_new(base, w->pipefd[0], EV_READ | EV_PERSIST, wake_cb, w);
    if (w->ev == NULL || event_add(w->ev, NULL) != 0)
        goto fail;
    w->threads = calloc((size_t)nthreads, sizeof(*w->threads));
    if (w->threads == NULL)
        goto fail;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0)
            goto fail;
        w->nthreads++;
    }
    return w;
fail:
    log_error("auth: cannot start worker threads: %s", strerror(errno));
    auth_workers_free(w);
    return NULL;
}

void auth_workers_free(struct auth_workers *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    /* Jobs nobody will complete: their owners are being torn down too; fail them so that
     * whatever they hold is released. */
    struct auth_job *lists[2] = {w->todo_head, w->done_head};
    for (int k = 0; k < 2; k++) {
        for (struct auth_job *j = lists[k]; j != NULL;) {
            struct auth_job *next = j->next;
            if (k == 1)
                j->done(j->arg, j->ok, j->kind == JOB_HASH && j->ok ? j->hash : NULL);
            else
                j->done(j->arg, false, NULL);
            job_free(j);
            j = next;
        }
    }
    if (w->ev != NULL)
        event_free(w->ev);
    if (w->pipefd[0] >= 0)
        close(w->pipefd[0]);
    if (w->pipefd[1] >= 0)
        close(w->pipefd[1]);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static bool submit(struct auth_workers *w, struct auth_job *j)
{
    pthread_mutex_lock(&w->mu);
    if (w->todo_tail != NULL)
        w->todo_tail->next = j;
    else
        w->todo_head = j;
    w->todo_tail = j;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return true;
}

bool auth_verify_async(struct auth_workers *w, const char *password, const char *stored,
                       auth_done_fn done, void *arg)
{
    struct auth_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return false;
    j->kind = JOB_VERIFY;
    j->password = strdup(password);
    j->stored = strdup(stored);
    j->done = done;
    j->arg = arg;
    if (j->password == NULL || j->stored == NULL) {
        job_free(j);
        return false;
    }
    return submit(w, j);
}

bool auth_hash_async(struct auth_workers *w, const char *password,
                     const struct auth_kdf_params *kp, auth_done_fn done, void *arg)
{
    struct auth_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return false;
    j->kind = JOB_HASH;
    j->password = strdup(password);
    j->kp = *kp;
    j->done = done;
    j->arg = arg;
    if (j->password == NULL) {
        job_free(j);
        return false;
    }
    return submit(w, j);
}
