/*
 * loadgen.c - the load generator of `make bench` (bench/run.sh): JSON-RPC 2.0 over TLS against
 * foliod from one libevent loop (bufferevent_openssl, non-blocking), every latency recorded in
 * microseconds.
 *
 *   loadgen setup       rooms BENCHnnnn with an in-house stay each, outlets for the POS runs
 *                       (tolerates what already exists, so it can run twice)
 *   loadgen load        N connections posting charges, closed loop (each keeps --depth requests
 *                       in flight) or open loop (--rate requests per second in all, sent on each
 *                       connection's timer whatever the answers); --kind folio (a non_guest folio
 *                       opened per connection), stay (one in-house stay per connection) or pos
 *                       (pos.post with idempotency keys; each connection an outlet with its own
 *                       client certificate, or all of them the outlet of --cert)
 *   loadgen handshakes  connect + TLS handshake + close, as many as possible for --seconds
 *   loadgen idle        open --conns TLS connections (one server.ping each), hold them, and read
 *                       foliod's resident memory (--pid) before and after
 *   loadgen reconnect   --conns outlets connect at once, each with its own client certificate,
 *                       and send --hello; the time until all are served. With --resume, a first
 *                       unmeasured round collects each outlet's session ticket, the connections
 *                       close, and the measured round resumes those sessions (TLS 1.3 PSK with
 *                       a fresh key exchange, as a POS that keeps its ticket does); the result
 *                       says how many handshakes were resumptions
 *
 * Output: a readable summary, then one line "result key=value ..." that bench/run.sh parses.
 * An error answer is never a success: it is counted under its reason (data.reason of a JSON-RPC
 * error, "pos_STATUS:reason" for a POS answer other than OK, or what happened to the transport:
 * connect, tls, closed, timeout). Every mode is bounded in time and stops by itself. Only
 * loopback addresses are accepted as targets.
 *
 * Lifecycle: main() parses the options and builds one client SSL_CTX; the mode's start function
 * opens connections (struct lconn, all preallocated in struct bench and never moved, so a
 * deferred callback may hold a pointer to one); callbacks drive each connection's state
 * (CONNECTING -> SETUP -> READY -> CLOSED); timers end the phases; when the mode is done the
 * loop exits, the results are printed and everything is freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MUST_CHECK __attribute__((warn_unused_result))

#define LG_MAX_LINE (16 * 1024 * 1024) /* a stay.list of every bench stay fits easily */
#define LG_MAX_CONNS 60000
#define LG_SETUP_WINDOW 16 /* setup requests in flight on the one setup connection */
#define LG_MAX_REASONS 64
#define LG_TICK_US 100000
#define LG_SETUP_LIMIT_US 60000000 /* load: connections not ready by then are given up */

enum lg_mode { LG_SETUP, LG_LOAD, LG_HANDSHAKES, LG_IDLE, LG_RECONNECT, LG_MODE_MAX };
static const char *const mode_names[LG_MODE_MAX] = {"setup", "load", "handshakes", "idle",
                                                    "reconnect"};

enum lg_kind { LG_KIND_FOLIO, LG_KIND_STAY, LG_KIND_POS, LG_KIND_MAX };
static const char *const kind_names[LG_KIND_MAX] = {"folio", "stay", "pos"};

enum lconn_state { LC_UNUSED, LC_CONNECTING, LC_SETUP, LC_READY, LC_CLOSED, LC_STATE_MAX };

/* The run as a whole: SETUP (connections log in, open folios...), WARMUP (load, not recorded),
 * MEASURE (recorded), DRAIN (no new requests; wait for the answers), DONE. */
enum lg_phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

enum req_purpose { REQ_SETUP, REQ_LOAD, REQ_HELLO };

struct options {
    enum lg_mode mode;
    enum lg_kind kind;
    const char *host;
    int port;
    const char *ca_file;
    const char *user;
    const char *password;
    const char *cert_file; /* outlet certificate for --kind pos */
    const char *key_file;
    const char *mint_ca_cert; /* reconnect: sign one certificate per outlet with this CA */
    const char *mint_ca_key;
    const char *outlet_prefix; /* outlets PREFIXnnnn (setup, reconnect, pos) */
    const char *room_prefix;   /* load --kind stay|pos: the in-house stays of these rooms */
    const char *hello;         /* reconnect, idle: the first request */
    const char *code;          /* charge code of folio.post / pos.post */
    const char *tag;           /* makes idempotency keys and references unique per run */
    long long amount;
    int conns;
    int depth;
    double rate; /* open loop when > 0: requests per second over all connections */
    double seconds;
    double warmup;
    double timeout;
    double hold;
    bool resume; /* reconnect: resume the sessions of an unmeasured first round */
    int concurrency; /* handshakes: parallel connectors; idle: connections opening at once */
    int stays;       /* setup: rooms and stays to have */
    int outlets;     /* setup and reconnect: outlets PREFIX0001.. */
    int pid;         /* foliod's pid, for /proc/PID/status */
};

/* A latency sample set: every value kept, sorted once at the end (exact percentiles). */
struct samples {
    uint32_t *v;
    size_t n, cap;
};

struct reason_count {
    char name[64];
    uint64_t n;
};

struct reasons {
    struct reason_count r[LG_MAX_REASONS];
    int n;
    uint64_t other;
};

struct pending {
    uint64_t id;
    int64_t t_sched; /* when it was due (open loop) or sent (closed loop) */
    int64_t t_sent;
    uint8_t purpose;
    bool pos; /* a POS method: its result carries a status */
    bool measured;
};

struct cred {
    X509 *cert;
    EVP_PKEY *key;
};

struct stay_ref {
    int64_t id;
    char room[17];
};

struct bench;

struct lconn {
    struct bench *b;
    int index;
    uint32_t gen; /* bumped on every close: stale deferred callbacks recognise themselves */
    enum lconn_state state;
    struct bufferevent *bev;
    int step; /* position in the mode's setup sequence */
    int64_t folio_id;
    int64_t stay_id;
    const char *room;
    const struct cred *cred;
    uint64_t next_id;
    uint64_t seq; /* load requests sent: part of the reference / idempotency key */
    struct pending *pend;
    size_t npend, cappend;
    struct event *timer; /* open loop: the next request's due time */
    int64_t next_due;
    int64_t t_start;
    int64_t t_done; /* handshakes: when the server's session ticket came */
    SSL_SESSION *session; /* reconnect --resume: the ticket of the first round (owned) */
    bool counted;   /* this connection's outcome is in the mode's counters */
    bool close_scheduled;
};

struct setup_req {
    const char *method;
    json_t *params;
    const char *tolerate; /* a reason that means "already there" */
};

struct bench {
    struct options o;
    struct event_base *base;
    SSL_CTX *ctx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct lconn *conns;
    int nconns;           /* in the run (idle: shrinks to those started when time runs out) */
    int nalloc;           /* allocated */
    struct lconn control; /* fetches the stay list before a load run; runs the setup mode */
    enum lg_phase phase;
    int64_t t_begin, t_warm, t0, t_end, t_deadline;
    struct event *tick;
    struct event *phase_timer;
    struct samples lat;
    struct reasons reasons;
    uint64_t sent, ok, ok_in_window, ok_total, errors, notifications;
    int64_t send_lag_max, send_lag_sum;
    int ready, failed, started;
    struct stay_ref *stays;
    int nstays;
    struct cred *creds;
    int ncreds;
    int exit_status;
    bool finishing;
    /* setup mode */
    struct setup_req *sq;
    size_t nsq, sq_next, sq_phase_end;
    int sq_inflight;
    int sq_done, sq_existing;
    char departure[16];
    /* memory */
    long rss_before_kb, rss_after_kb, hwm_kb;
    /* handshakes and reconnect */
    uint64_t hs_done, hs_no_ticket;
    int resumed; /* reconnect: handshakes of the measured round that resumed a session */
    /* this process's CPU time while the mode ran: the load generator shares the machine */
    int64_t cpu_start_us, cpu_us;
};

static volatile sig_atomic_t interrupted;

/* ---- small utilities ---- */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct timeval tv_us(int64_t us)
{
    if (us < 0)
        us = 0;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return tv;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    return q;
}

static void samples_add(struct samples *s, int64_t us)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = us < 0 ? 0 : us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (per mille) of sorted samples. */
static uint32_t samples_pct(const struct samples *s, unsigned permille)
{
    if (s->n == 0)
        return 0;
    size_t rank = (s->n * permille + 999) / 1000;
    return s->v[rank == 0 ? 0 : rank - 1];
}

static uint64_t samples_mean(const struct samples *s)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    return s->n ? sum / s->n : 0;
}

static void reasons_add(struct reasons *rs, const char *name)
{
    for (int i = 0; i < rs->n; i++) {
        if (strcmp(rs->r[i].name, name) == 0) {
            rs->r[i].n++;
            return;
        }
    }
    if (rs->n == LG_MAX_REASONS) {
        rs->other++;
        return;
    }
    struct reason_count *r = &rs->r[rs->n++];
    /* one token for the result line: no spaces, commas or colons beyond ours */
    size_t j = 0;
    for (; name[j] != '\0' && j < sizeof(r->name) - 1; j++) {
        char ch = name[j];
        r->name[j] = (ch == ' ' || ch == ',' || ch == '=' || (unsigned char)ch < 0x20) ? '_' : ch;
    }
    r->name[j] = '\0';
    r->n = 1;
}

/* "a:3,b:1" or "-" */
static void reasons_format(const struct reasons *rs, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < rs->n && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%s:%" PRIu64, off ? "," : "",
                                rs->r[i].name, rs->r[i].n);
    if (rs->other && off < len)
        off +=
            (size_t)snprintf(buf + off, len - off, "%sother:%" PRIu64, off ? "," : "", rs->other);
    if (off == 0)
        snprintf(buf, len, "-");
}

/* User and system CPU time of this process. */
static int64_t cpu_time_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

/* VmRSS or VmHWM of a process in KiB, -1 if unreadable. */
static long proc_status_kb(int pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static void error_count(struct bench *b, const char *reason)
{
    b->errors++;
    reasons_add(&b->reasons, reason);
}

/* ---- TLS ---- */

static MUST_CHECK bool load_cred(const char *cert_file, const char *key_file, struct cred *out)
{
    FILE *f = fopen(cert_file, "r");
    if (f == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", cert_file, strerror(errno));
        return false;
    }
    out->cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    const char *kf = key_file != NULL ? key_file : cert_file;
    f = fopen(kf, "r");
    if (f == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", kf, strerror(errno));
        return false;
    }
    out->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (out->cert == NULL || out->key == NULL || X509_check_private_key(out->cert, out->key) != 1) {
        fprintf(stderr, "loadgen: cannot use %s / %s as a client certificate\n", cert_file, kf);
        return false;
    }
    return true;
}

static MUST_CHECK bool add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL)
        return false;
    bool ok = X509_add_ext(cert, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A fresh EC P-256 key and a one-day client certificate CN=cn signed by ca. */
static MUST_CHECK bool make_client_cert(const struct cred *ca, const char *cn, struct cred *out)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *bn = NULL;
    unsigned char serial[15];
    bool ok = false;
    if (key == NULL || x == NULL || name == NULL)
        goto done;
    if (RAND_bytes(serial, sizeof(serial)) != 1 ||
        (bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto done;
    if (X509_set_version(x, 2) != 1 || X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL)
        goto done;
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"foliod bench",
                                   -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
        X509_set_pubkey(x, key) != 1)
        goto done;
    if (!add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") ||
        !add_ext(x, ca->cert, NID_ext_key_usage, "clientAuth") ||
        X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto done;
    out->cert = x;
    out->key = key;
    x = NULL;
    key = NULL;
    ok = true;
done:
    BN_free(bn);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok;
}

/* A certificate per connection, for outlets PREFIXnnnn (nnnn from 1, modulo --outlets), signed
 * by the development CA: what tls.sh makes with the openssl command, a thousand times faster. */
static MUST_CHECK bool mint_creds(struct bench *b)
{
    const struct options *o = &b->o;
    struct cred ca = {0};
    bool ok = false;
    if (!load_cred(o->mint_ca_cert, o->mint_ca_key, &ca))
        goto done;
    b->creds = calloc((size_t)o->conns, sizeof(*b->creds));
    if (b->creds == NULL)
        goto done;
    for (int i = 0; i < o->conns; i++) {
        char cn[64];
        snprintf(cn, sizeof(cn), "%s%04d", o->outlet_prefix, (i % o->outlets) + 1);
        if (!make_client_cert(&ca, cn, &b->creds[i])) {
            fprintf(stderr, "loadgen: cannot make a certificate for %s\n", cn);
            goto done;
        }
        b->ncreds = i + 1;
    }
    ok = true;
done:
    X509_free(ca.cert);
    EVP_PKEY_free(ca.key);
    return ok;
}

/* The client side of every connection; a client certificate is set per connection. */
static SSL_CTX *client_ctx_new(const char *ca_file)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        fprintf(stderr, "loadgen: cannot load CA file %s\n", ca_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

/* ---- connections ---- */

static void lconn_closed(struct lconn *c, const char *reason);
static void on_connected(struct lconn *c);
static void on_answer(struct lconn *c, const struct pending *p, json_t *msg, int64_t t);
static void maybe_finish(struct bench *b);

static void lconn_close(struct lconn *c)
{
    if (c->bev != NULL) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl != NULL && SSL_is_init_finished(ssl))
            SSL_shutdown(ssl); /* best effort close_notify; the socket closes either way */
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->timer != NULL)
        evtimer_del(c->timer);
    c->npend = 0;
    c->gen++;
    c->state = LC_CLOSED;
    ERR_clear_error();
}

static const struct pending *pending_take(struct lconn *c, uint64_t id, struct pending *out)
{
    for (size_t i = 0; i < c->npend; i++) {
        if (c->pend[i].id == id) {
            *out = c->pend[i];
            c->pend[i] = c->pend[--c->npend];
            return out;
        }
    }
    return NULL;
}

/* Sends one request; steals params. The send time is t_sched unless that is 0 (now). */
static bool lconn_call(struct lconn *c, const char *method, json_t *params,
                       enum req_purpose purpose, int64_t t_sched)
{
    if (c->bev == NULL) {
        json_decref(params);
        return false;
    }
    uint64_t id = ++c->next_id;
    json_t *msg =
        json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t)id, "method", method);
    if (msg == NULL || (params != NULL && json_object_set_new(msg, "params", params) != 0)) {
        json_decref(msg);
        return false;
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL)
        return false;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the terminator: written by length */
    int rc = bufferevent_write(c->bev, text, len + 1);
    free(text);
    if (rc != 0)
        return false;
    if (c->npend == c->cappend) {
        c->cappend = c->cappend ? c->cappend * 2 : 4;
        c->pend = xrealloc(c->pend, c->cappend * sizeof(*c->pend));
    }
    int64_t t = now_us();
    struct pending *p = &c->pend[c->npend++];
    p->id = id;
    p->t_sent = t;
    p->t_sched = t_sched ? t_sched : t;
    p->purpose = (uint8_t)purpose;
    p->pos = strncmp(method, "pos.", 4) == 0;
    p->measured = false;
    return true;
}

/* NULL when msg is a success; else the reason to count it under (in buf or static). */
static const char *answer_error(const struct pending *p, json_t *msg, char *buf, size_t len)
{
    json_t *err = json_object_get(msg, "error");
    if (err != NULL) {
        const char *reason =
            json_string_value(json_object_get(json_object_get(err, "data"), "reason"));
        if (reason != NULL)
            return reason;
        snprintf(buf, len, "rpc_%lld", (long long)json_integer_value(json_object_get(err, "code")));
        return buf;
    }
    json_t *res = json_object_get(msg, "result");
    if (res == NULL)
        return "no_result";
    if (p->pos) {
        const char *st = json_string_value(json_object_get(res, "status"));
        if (st == NULL)
            return "pos_no_status";
        if (strcmp(st, "OK") != 0) {
            const char *reason = json_string_value(json_object_get(res, "reason"));
            snprintf(buf, len, "pos_%.8s:%.40s", st, reason != NULL ? reason : "-");
            return buf;
        }
    }
    return NULL;
}

static void handle_line(struct lconn *c, const char *line, size_t n)
{
    struct bench *b = c->b;
    int64_t t = now_us();
    json_error_t je;
    json_t *msg = json_loadb(line, n, 0, &je);
    if (!json_is_object(msg)) {
        json_decref(msg);
        error_count(b, "bad_json");
        lconn_closed(c, NULL);
        return;
    }
    json_t *jid = json_object_get(msg, "id");
    if (!json_is_integer(jid)) {
        if (jid == NULL && json_object_get(msg, "method") != NULL) {
            b->notifications++; /* a server push such as audit.started */
        } else {
            char buf[96];
            struct pending none = {0};
            const char *why = answer_error(&none, msg, buf, sizeof(buf));
            error_count(b, why != NULL ? why : "answer_without_id");
        }
        json_decref(msg);
        return;
    }
    struct pending p;
    if (pending_take(c, (uint64_t)json_integer_value(jid), &p) == NULL) {
        error_count(b, "unknown_id"); /* answered after we gave up on it (timeout) */
        json_decref(msg);
        return;
    }
    on_answer(c, &p, msg, t);
    json_decref(msg);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct lconn *c = arg;
    uint32_t gen = c->gen;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t n = 0;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
        if (line == NULL) {
            if (evbuffer_get_length(in) > LG_MAX_LINE) {
                error_count(c->b, "line_too_long");
                lconn_closed(c, NULL);
            }
            return;
        }
        handle_line(c, line, n);
        free(line);
        if (c->gen != gen)
            return; /* closed (and perhaps reopened) meanwhile: bev is gone */
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct lconn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(bev);
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        on_connected(c);
        return;
    }
    const char *why = "closed";
    unsigned long e = (what & BEV_EVENT_ERROR) ? bufferevent_get_openssl_error(bev) : 0;
    if (c->state == LC_CONNECTING) {
        int se = 0;
        socklen_t len = sizeof(se);
        evutil_socket_t fd = bufferevent_getfd(bev);
        if (fd >= 0)
            (void)getsockopt(fd, SOL_SOCKET, SO_ERROR, &se, &len);
        if (se == 0)
            se = EVUTIL_SOCKET_ERROR(); /* libevent may have taken SO_ERROR already */
        why = se == ECONNREFUSED ? "connect_refused"
              : se != 0          ? "connect_failed"
              : e != 0           ? "tls_handshake"
                                 : "closed_in_handshake";
    } else if (what & BEV_EVENT_ERROR) {
        why = e != 0 ? "tls_error" : "reset";
    }
    lconn_closed(c, why);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)ss;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* Starts connecting; failures are reported through lconn_closed(). */
static void lconn_open(struct lconn *c, const struct cred *cred)
{
    struct bench *b = c->b;
    c->state = LC_CONNECTING;
    c->step = 0;
    c->npend = 0;
    c->close_scheduled = false;
    c->counted = false;
    c->cred = cred;
    c->t_start = now_us();
    SSL *ssl = SSL_new(b->ctx);
    if (ssl == NULL) {
        lconn_closed(c, "ssl_new");
        return;
    }
    SSL_set_app_data(ssl, c);
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), b->o.host) != 1 ||
        (cred != NULL &&
         (SSL_use_certificate(ssl, cred->cert) != 1 || SSL_use_PrivateKey(ssl, cred->key) != 1)) ||
        (c->session != NULL && b->phase == PH_MEASURE && SSL_set_session(ssl, c->session) != 1)) {
        SSL_free(ssl);
        lconn_closed(c, "ssl_setup");
        return;
    }
    c->bev = bufferevent_openssl_socket_new(b->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        SSL_free(ssl);
        lconn_closed(c, "bufferevent");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&b->addr, (int)b->addrlen) != 0) {
        int e = EVUTIL_SOCKET_ERROR();
        lconn_closed(c, e == EMFILE || e == ENFILE ? "no_fd"
                        : e == EADDRNOTAVAIL       ? "no_port"
                                                   : "connect");
    }
}

/* ---- load mode ---- */

static bool send_load(struct lconn *c, int64_t t_sched)
{
    struct bench *b = c->b;
    const struct options *o = &b->o;
    char ref[96];
    c->seq++;
    snprintf(ref, sizeof(ref), "%s-%d-%" PRIu64, o->tag, c->index, c->seq);
    json_t *params;
    const char *method;
    if (o->kind == LG_KIND_POS) {
        method = "pos.post";
        char check[40];
        snprintf(check, sizeof(check), "%d-%" PRIu64, c->index, c->seq);
        params = json_pack("{s:s, s:s, s:s, s:[{s:s, s:I}], s:I}", "key", ref, "room", c->room,
                           "check", check, "subtotals", "code", o->code, "amount",
                           (json_int_t)o->amount, "total", (json_int_t)o->amount);
    } else {
        method = "folio.post";
        params = json_pack("{s:s, s:I, s:s}", "code", o->code, "amount", (json_int_t)o->amount,
                           "reference", ref);
        if (params != NULL)
            json_object_set_new(params, o->kind == LG_KIND_FOLIO ? "folio_id" : "stay_id",
                                json_integer(o->kind == LG_KIND_FOLIO ? c->folio_id : c->stay_id));
    }
    if (params == NULL || !lconn_call(c, method, params, REQ_LOAD, t_sched)) {
        error_count(b, "send_failed");
        return false;
    }
    int64_t lag = c->pend[c->npend - 1].t_sent - c->pend[c->npend - 1].t_sched;
    if (lag > b->send_lag_max)
        b->send_lag_max = lag;
    b->send_lag_sum += lag;
    b->sent++;
    return true;
}

static bool sending(const struct bench *b)
{
    return b->phase == PH_WARMUP || b->phase == PH_MEASURE;
}

static void open_loop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lconn *c = arg;
    struct bench *b = c->b;
    if (c->state != LC_READY || !sending(b))
        return;
    int64_t period = (int64_t)(1e6 * b->o.conns / b->o.rate);
    int64_t t = now_us();
    /* every request that fell due is sent, stamped with its due time (no coordinated
     * omission: a late sender shows as latency, and as send_lag in the result) */
    while (c->next_due <= t && sending(b) && c->next_due < b->t_end) {
        int64_t due = c->next_due;
        c->next_due += period;
        if (!send_load(c, due))
            break;
    }
    if (c->next_due < b->t_end) {
        struct timeval tv = tv_us(c->next_due - now_us());
        evtimer_add(c->timer, &tv);
    }
}

static void start_sending(struct lconn *c)
{
    struct bench *b = c->b;
    if (c->state != LC_READY)
        return;
    if (b->o.rate > 0) {
        int64_t period = (int64_t)(1e6 * b->o.conns / b->o.rate);
        /* spread the connections evenly over one period */
        c->next_due = b->t_warm + period * c->index / b->o.conns;
        if (c->timer == NULL)
            c->timer = evtimer_new(b->base, open_loop_cb, c);
        if (c->timer == NULL) {
            error_count(b, "timer");
            return;
        }
        struct timeval tv = tv_us(c->next_due - now_us());
        evtimer_add(c->timer, &tv);
        return;
    }
    for (int i = 0; i < b->o.depth; i++) {
        if (!send_load(c, 0))
            break;
    }
}

static void finish(struct bench *b)
{
    if (b->finishing)
        return;
    b->finishing = true;
    b->phase = PH_DONE;
    event_base_loopexit(b->base, NULL);
}

static void phase_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bench *b = arg;
    int64_t t = now_us();
    if (b->phase == PH_WARMUP) {
        b->phase = PH_MEASURE;
        b->t0 = t;
        b->t_end = t + (int64_t)(b->o.seconds * 1e6);
        fprintf(stderr, "loadgen: measuring for %.1f s\n", b->o.seconds); /* for scripts */
        struct timeval tv = tv_us(b->t_end - t);
        evtimer_add(b->phase_timer, &tv);
    } else if (b->phase == PH_MEASURE) {
        b->phase = PH_DRAIN;
        b->t_end = t;
        b->t_deadline = t + (int64_t)(b->o.timeout * 1e6);
        maybe_finish(b);
    }
}

/* Every connection is ready (or failed): the load starts. */
static void start_load(struct bench *b)
{
    if (b->phase != PH_SETUP)
        return;
    if (b->ready == 0) {
        fprintf(stderr, "loadgen: no connection got ready\n");
        b->exit_status = 1;
        finish(b);
        return;
    }
    b->phase = PH_WARMUP;
    b->t_warm = now_us();
    /* the open-loop timers stop at t_end: an upper bound until the measurement starts */
    b->t_end = b->t_warm + (int64_t)((b->o.warmup + b->o.seconds) * 1e6);
    for (int i = 0; i < b->nconns; i++)
        start_sending(&b->conns[i]);
    struct timeval tv = tv_us((int64_t)(b->o.warmup * 1e6));
    evtimer_add(b->phase_timer, &tv);
}

static void load_conn_done_setup(struct lconn *c, bool ok)
{
    struct bench *b = c->b;
    if (c->counted)
        return;
    c->counted = true;
    if (ok) {
        c->state = LC_READY;
        b->ready++;
    } else {
        b->failed++;
    }
    if (b->ready + b->failed == b->nconns)
        start_load(b);
}

/* The setup sequence of one load connection; result is the previous step's answer. */
static void load_setup_step(struct lconn *c, json_t *result)
{
    struct bench *b = c->b;
    const struct options *o = &b->o;
    c->state = LC_SETUP;
    switch (c->step++) {
    case 0:
        if (o->kind == LG_KIND_POS) {
            if (!lconn_call(c, o->hello, NULL, REQ_SETUP, 0))
                load_conn_done_setup(c, false);
            return;
        }
        if (!lconn_call(c, "session.login",
                        json_pack("{s:s, s:s}", "user", o->user, "password", o->password),
                        REQ_SETUP, 0))
            load_conn_done_setup(c, false);
        return;
    case 1:
        if (o->kind == LG_KIND_FOLIO) {
            char name[64];
            snprintf(name, sizeof(name), "bench %s %d", o->tag, c->index);
            if (!lconn_call(c, "folio.open",
                            json_pack("{s:s, s:s}", "type", "non_guest", "name", name), REQ_SETUP,
                            0))
                load_conn_done_setup(c, false);
            return;
        }
        load_conn_done_setup(c, true);
        return;
    case 2:
        c->folio_id = json_integer_value(json_object_get(result, "id"));
        if (c->folio_id <= 0) {
            error_count(b, "setup:folio.open_without_id");
            load_conn_done_setup(c, false);
            lconn_close(c);
            return;
        }
        load_conn_done_setup(c, true);
        return;
    default:
        return;
    }
}

static void start_load_conns(struct bench *b)
{
    for (int i = 0; i < b->nconns; i++) {
        struct lconn *c = &b->conns[i];
        if (b->nstays > 0) {
            c->stay_id = b->stays[i % b->nstays].id;
            c->room = b->stays[i % b->nstays].room;
        }
        lconn_open(c, b->o.kind == LG_KIND_POS ? &b->creds[i % b->ncreds] : NULL);
    }
}

/* The control connection before a stay or pos run: which stays are in house. */
static void control_step(struct lconn *c, json_t *result)
{
    struct bench *b = c->b;
    const struct options *o = &b->o;
    c->state = LC_SETUP;
    switch (c->step++) {
    case 0:
        if (!lconn_call(c, "session.login",
                        json_pack("{s:s, s:s}", "user", o->user, "password", o->password),
                        REQ_SETUP, 0))
            lconn_closed(c, "send_failed");
        return;
    case 1:
        if (!lconn_call(c, "stay.list", json_pack("{s:s}", "view", "in_house"), REQ_SETUP, 0))
            lconn_closed(c, "send_failed");
        return;
    case 2: {
        json_t *items = json_object_get(result, "items");
        size_t n = json_array_size(items);
        b->stays = calloc(n ? n : 1, sizeof(*b->stays));
        if (b->stays == NULL) {
            lconn_closed(c, "nomem");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(items, i);
            const char *room = json_string_value(json_object_get(s, "room"));
            int64_t id = json_integer_value(json_object_get(s, "id"));
            if (room == NULL || id <= 0 ||
                strncmp(room, o->room_prefix, strlen(o->room_prefix)) != 0)
                continue;
            struct stay_ref *r = &b->stays[b->nstays++];
            r->id = id;
            snprintf(r->room, sizeof(r->room), "%s", room);
        }
        c->counted = true;
        lconn_close(c);
        if (b->nstays < b->nconns)
            fprintf(stderr,
                    "loadgen: note: %d bench stays in house for %d connections: some share one\n",
                    b->nstays, b->nconns);
        if (b->nstays == 0) {
            fprintf(stderr, "loadgen: no in-house stay in a room %s... (loadgen setup --stays N "
                            "makes BENCHnnnn)\n", o->room_prefix);
            b->exit_status = 1;
            finish(b);
            return;
        }
        start_load_conns(b);
        return;
    }
    default:
        return;
    }
}

static void load_answer(struct lconn *c, const struct pending *p, json_t *msg, int64_t t)
{
    struct bench *b = c->b;
    char buf[96];
    const char *why = answer_error(p, msg, buf, sizeof(buf));
    bool in_window =
        b->t0 != 0 && p->t_sched >= b->t0 && p->t_sched < b->t_end && b->phase != PH_WARMUP;
    if (why == NULL)
        b->ok_total++; /* acknowledged, warm-up and drain included: what the database holds */
    if (why != NULL) {
        error_count(b, why);
    } else if (in_window) {
        b->ok++;
        samples_add(&b->lat, t - p->t_sched);
        if (t <= b->t_end || b->phase == PH_MEASURE)
            b->ok_in_window++;
    }
    if (b->o.rate <= 0 && sending(b) && c->state == LC_READY)
        send_load(c, 0);
    if (b->phase == PH_DRAIN)
        maybe_finish(b);
}

/* ---- setup mode ---- */

static void sq_add(struct bench *b, const char *method, json_t *params, const char *tolerate)
{
    if (params == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    b->sq = xrealloc(b->sq, (b->nsq + 1) * sizeof(*b->sq));
    b->sq[b->nsq++] = (struct setup_req){method, params, tolerate};
}

/* Keeps LG_SETUP_WINDOW requests in flight up to the end of the current phase. */
static void sq_pump(struct lconn *c)
{
    struct bench *b = c->b;
    while (b->sq_inflight < LG_SETUP_WINDOW && b->sq_next < b->sq_phase_end) {
        struct setup_req *r = &b->sq[b->sq_next++];
        json_t *params = r->params;
        r->params = NULL;
        if (!lconn_call(c, r->method, params, REQ_SETUP, 0)) {
            lconn_closed(c, "send_failed");
            return;
        }
        /* the pending id maps back to the request: ids are sequential from 3 on */
        b->sq_inflight++;
    }
}

static bool business_date_plus(const char *date, int days, char *out, size_t outlen)
{
    struct tm tm = {0};
    if (date == NULL || sscanf(date, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_mday += days;
    tm.tm_hour = 12;
    time_t t = timegm(&tm);
    struct tm res;
    return gmtime_r(&t, &res) != NULL && strftime(out, outlen, "%Y-%m-%d", &res) == 10;
}

static void setup_queue_phase2(struct bench *b)
{
    for (int i = 1; i <= b->o.stays; i++) {
        char room[17], last[32];
        snprintf(room, sizeof(room), "BENCH%04d", i);
        snprintf(last, sizeof(last), "Guest %04d", i);
        sq_add(b, "stay.check_in",
               json_pack("{s:s, s:{s:s, s:s}, s:s}", "room", room, "guest", "first_name", "Bench",
                         "last_name", last, "departure", b->departure),
               "room_not_vacant");
    }
}

static void setup_queue_phase1(struct bench *b)
{
    const struct options *o = &b->o;
    for (int i = 1; i <= o->stays; i++) {
        char room[17];
        snprintf(room, sizeof(room), "BENCH%04d", i);
        sq_add(b, "room.create",
               json_pack("{s:s, s:s, s:i}", "number", room, "room_type", "STD", "floor", 9),
               "conflict");
    }
    /* Bench outlets: no daily or per-posting ceiling, so a long run is never refused. */
    for (int i = 1; i <= o->outlets; i++) {
        char code[17];
        snprintf(code, sizeof(code), "%s%04d", o->outlet_prefix, i);
        sq_add(b, "outlet.create",
               json_pack("{s:s, s:s, s:s, s:{s:[s,s,s], s:s}}", "code", code, "name",
                         "bench outlet", "cert_cn", code, "policy", "allowed_codes", "FOOD", "BEV",
                         "TIP", "credit_policy", "flag"),
               "conflict");
    }
}

static void setup_step(struct lconn *c, const struct pending *p, json_t *msg)
{
    struct bench *b = c->b;
    const struct options *o = &b->o;
    c->state = LC_SETUP;
    if (c->step >= 3) { /* a queued request answered */
        b->sq_inflight--;
        char buf[96];
        const char *why = answer_error(p, msg, buf, sizeof(buf));
        size_t idx = (size_t)(p->id - 3);
        if (why == NULL) {
            b->sq_done++;
        } else if (idx < b->nsq && b->sq[idx].tolerate != NULL &&
                   strcmp(why, b->sq[idx].tolerate) == 0) {
            b->sq_existing++;
        } else {
            char what[128];
            snprintf(what, sizeof(what), "setup:%s:%s", idx < b->nsq ? b->sq[idx].method : "?",
                     why);
            error_count(b, what);
        }
        if (b->sq_inflight == 0 && b->sq_next == b->sq_phase_end) {
            if (c->step == 3) {
                c->step = 4;
                setup_queue_phase2(b);
                b->sq_phase_end = b->nsq;
            }
            if (b->sq_next == b->sq_phase_end) {
                c->counted = true;
                lconn_close(c);
                finish(b);
                return;
            }
        }
        sq_pump(c);
        return;
    }
    json_t *result = msg != NULL ? json_object_get(msg, "result") : NULL;
    char buf[96];
    if (msg != NULL && answer_error(p, msg, buf, sizeof(buf)) != NULL) {
        error_count(b, answer_error(p, msg, buf, sizeof(buf)));
        lconn_closed(c, NULL);
        return;
    }
    switch (c->step++) {
    case 0:
        if (!lconn_call(c, "session.login",
                        json_pack("{s:s, s:s}", "user", o->user, "password", o->password),
                        REQ_SETUP, 0))
            lconn_closed(c, "send_failed");
        return;
    case 1:
        if (!lconn_call(c, "server.info", NULL, REQ_SETUP, 0))
            lconn_closed(c, "send_failed");
        return;
    case 2: {
        json_t *props = json_object_get(result, "properties");
        const char *bd =
            json_string_value(json_object_get(json_array_get(props, 0), "business_date"));
        if (!business_date_plus(bd, 7, b->departure, sizeof(b->departure))) {
            error_count(b, "setup:no_business_date");
            lconn_closed(c, NULL);
            return;
        }
        setup_queue_phase1(b);
        b->sq_phase_end = b->nsq;
        if (b->nsq == 0) { /* nothing but stays, and none asked */
            setup_queue_phase2(b);
            b->sq_phase_end = b->nsq;
            c->step = 4;
        }
        if (b->nsq == 0) {
            c->counted = true;
            lconn_close(c);
            finish(b);
            return;
        }
        sq_pump(c);
        return;
    }
    default:
        return;
    }
}

/* ---- handshakes, idle, reconnect ---- */

static void hs_next_cb(evutil_socket_t fd, short what, void *arg);

/* Handshake mode: this slot's handshake ended (done or failed); start the next one. */
static void hs_slot_end(struct lconn *c, const char *error, int64_t t)
{
    struct bench *b = c->b;
    if (error != NULL) {
        error_count(b, error);
    } else if (b->phase == PH_MEASURE && c->t_start >= b->t0 && t <= b->t_end) {
        b->hs_done++;
        samples_add(&b->lat, t - c->t_start);
    }
    if (c->state != LC_CLOSED)
        lconn_close(c);
    if (b->phase == PH_MEASURE && now_us() < b->t_end) {
        /* after an error, a pause: a refusing server must not turn this into a busy loop */
        struct timeval tv = tv_us(error != NULL ? 10000 : 0);
        event_base_once(b->base, -1, EV_TIMEOUT, hs_next_cb, c, &tv);
    } else {
        maybe_finish(b);
    }
}

static void hs_next_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lconn *c = arg;
    struct bench *b = c->b;
    if (b->phase == PH_MEASURE && now_us() < b->t_end)
        lconn_open(c, NULL);
    else
        maybe_finish(b);
}

struct deferred_end {
    struct lconn *c;
    uint32_t gen;
    int64_t t;
};

static void hs_deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct deferred_end *d = arg;
    if (d->c->gen == d->gen)
        hs_slot_end(d->c, NULL, d->t);
    free(d);
}

/* TLS 1.3: the server sends its session tickets once it has read our Finished; that is when a
 * handshake is complete on both sides. The bufferevent is inside SSL_read here: the close waits
 * for the next turn of the loop. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct lconn *c = SSL_get_app_data(ssl);
    if (c != NULL && c->b->o.mode == LG_RECONNECT) {
        if (c->b->phase != PH_SETUP)
            return 0;
        SSL_SESSION_free(c->session); /* the latest ticket wins */
        c->session = sess;
        return 1; /* we keep the reference */
    }
    if (c == NULL || c->b->o.mode != LG_HANDSHAKES || c->close_scheduled)
        return 0;
    c->close_scheduled = true;
    c->t_done = now_us();
    struct deferred_end *d = malloc(sizeof(*d));
    if (d == NULL)
        return 0;
    *d = (struct deferred_end){c, c->gen, c->t_done};
    struct timeval tv = {0, 0};
    if (event_base_once(c->b->base, -1, EV_TIMEOUT, hs_deferred_cb, d, &tv) != 0)
        free(d);
    return 0; /* we keep no session: every handshake is a full one */
}

static void idle_open_more(struct bench *b);

static void conn_served(struct lconn *c, const char *error, int64_t t)
{
    struct bench *b = c->b;
    if (c->counted)
        return;
    c->counted = true;
    if (error != NULL) {
        error_count(b, error);
        b->failed++;
    } else {
        b->ready++;
        if (b->phase == PH_MEASURE)
            samples_add(&b->lat, t - (b->o.mode == LG_RECONNECT ? b->t0 : c->t_start));
        c->state = LC_READY;
    }
    if (b->o.mode == LG_IDLE)
        idle_open_more(b);
    maybe_finish(b);
}

static void idle_open_more(struct bench *b)
{
    while (b->started < b->nconns && b->started - b->ready - b->failed < b->o.concurrency &&
           b->phase == PH_MEASURE) {
        struct lconn *c = &b->conns[b->started++];
        lconn_open(c, NULL);
    }
}

static void hold_done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg);
}

static void settle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bench *b = arg;
    if (b->o.pid > 0) {
        b->rss_after_kb = proc_status_kb(b->o.pid, "VmRSS");
        b->hwm_kb = proc_status_kb(b->o.pid, "VmHWM");
    }
    int open = 0;
    for (int i = 0; i < b->nconns; i++)
        open += b->conns[i].state == LC_READY;
    fprintf(stderr, "loadgen: %d idle connections open; foliod RSS %ld KiB -> %ld KiB\n", open,
            b->rss_before_kb, b->rss_after_kb);
    b->ready = open; /* the ones still open when memory was read */
    struct timeval tv = tv_us((int64_t)(b->o.hold * 1e6));
    event_base_once(b->base, -1, EV_TIMEOUT, hold_done_cb, b, &tv);
}

/* ---- dispatch by mode ---- */

static void on_connected(struct lconn *c)
{
    struct bench *b = c->b;
    const struct options *o = &b->o;
    if (c == &b->control) {
        if (o->mode == LG_SETUP)
            setup_step(c, NULL, NULL);
        else
            control_step(c, NULL);
        return;
    }
    switch (o->mode) {
    case LG_LOAD:
        load_setup_step(c, NULL);
        return;
    case LG_HANDSHAKES: {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        c->state = LC_SETUP;
        if (ssl != NULL && SSL_version(ssl) < TLS1_3_VERSION)
            hs_slot_end(c, NULL, now_us()); /* TLS 1.2: complete at CONNECTED */
        return;
    }
    case LG_IDLE:
    case LG_RECONNECT:
        c->state = LC_SETUP;
        if (o->mode == LG_RECONNECT && b->phase == PH_MEASURE &&
            SSL_session_reused(bufferevent_openssl_get_ssl(c->bev)))
            b->resumed++;
        if (!lconn_call(c, o->hello, NULL, REQ_HELLO, 0))
            conn_served(c, "send_failed", now_us());
        return;
    case LG_SETUP:
    case LG_MODE_MAX:
        return;
    }
}

static void on_answer(struct lconn *c, const struct pending *p, json_t *msg, int64_t t)
{
    struct bench *b = c->b;
    char buf[96];
    if (c == &b->control && b->o.mode == LG_SETUP) {
        setup_step(c, p, msg);
        return;
    }
    if (p->purpose == REQ_LOAD) {
        load_answer(c, p, msg, t);
        return;
    }
    const char *why = answer_error(p, msg, buf, sizeof(buf));
    if (p->purpose == REQ_HELLO) {
        conn_served(c, why, t);
        return;
    }
    /* a setup answer */
    if (why != NULL) {
        char what[128];
        snprintf(what, sizeof(what), "setup:%s", why);
        error_count(b, what);
        if (c == &b->control) {
            lconn_closed(c, NULL);
        } else {
            load_conn_done_setup(c, false);
            lconn_close(c);
        }
        return;
    }
    json_t *result = json_object_get(msg, "result");
    if (c == &b->control)
        control_step(c, result);
    else
        load_setup_step(c, result);
}

/* The connection failed or the peer closed it; reason NULL when already counted. */
static void lconn_closed(struct lconn *c, const char *reason)
{
    struct bench *b = c->b;
    enum lconn_state was = c->state;
    /* what was in flight will never be answered */
    for (size_t i = 0; i < c->npend; i++) {
        if (c->pend[i].purpose == REQ_LOAD)
            error_count(b, "closed_in_flight");
    }
    lconn_close(c);
    if (c == &b->control) {
        if (reason != NULL)
            error_count(b, reason);
        fprintf(stderr, "loadgen: the %s connection failed (%s)\n",
                b->o.mode == LG_SETUP ? "setup" : "control",
                reason != NULL ? reason : "an error answer: see the reasons");
        b->exit_status = 1;
        finish(b);
        return;
    }
    switch (b->o.mode) {
    case LG_LOAD:
        if (reason != NULL)
            error_count(b, reason);
        if (!c->counted)
            load_conn_done_setup(c, false);
        else if (was == LC_READY)
            b->failed++; /* lost during the run */
        if (b->phase == PH_DRAIN)
            maybe_finish(b);
        return;
    case LG_HANDSHAKES:
        if (c->close_scheduled) /* the ticket came before the close: a success */
            hs_slot_end(c, NULL, c->t_done);
        else
            hs_slot_end(c, reason != NULL ? reason : "closed", now_us());
        return;
    case LG_IDLE:
    case LG_RECONNECT:
        if (!c->counted) {
            conn_served(c, reason != NULL ? reason : "closed", now_us());
        } else if (was == LC_READY) {
            error_count(b, b->o.mode == LG_IDLE ? "idle_closed_by_server" : "closed_after_hello");
        }
        return;
    case LG_SETUP:
    case LG_MODE_MAX:
        return;
    }
}

static int64_t total_pending(const struct bench *b)
{
    int64_t n = 0;
    for (int i = 0; i < b->nconns; i++)
        n += (int64_t)b->conns[i].npend;
    return n;
}

static void reconnect_storm(struct bench *b);

static void reconnect_storm_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reconnect_storm(arg);
}

/* reconnect --resume: every outlet of the first round has been served; close them all and
 * start the measured round a second later (the server has closed its side by then). */
static void reconnect_primed(struct bench *b)
{
    int tickets = 0;
    for (int i = 0; i < b->nconns; i++) {
        lconn_close(&b->conns[i]);
        tickets += b->conns[i].session != NULL;
    }
    fprintf(stderr, "loadgen: first round: %d served, %d failed, %d session tickets kept\n",
            b->ready, b->failed, tickets);
    if (b->failed > 0 || tickets < b->nconns) {
        error_count(b, b->failed > 0 ? "first_round_failed" : "no_session_ticket");
        b->exit_status = 1;
        finish(b);
        return;
    }
    b->ready = b->failed = 0;
    struct timeval tv = {1, 0};
    b->t_deadline = 0;
    event_base_once(b->base, -1, EV_TIMEOUT, reconnect_storm_cb, b, &tv);
}

static void maybe_finish(struct bench *b)
{
    if (b->finishing)
        return;
    switch (b->o.mode) {
    case LG_LOAD:
        if (b->phase == PH_DRAIN && total_pending(b) == 0)
            finish(b);
        return;
    case LG_HANDSHAKES: {
        if (b->phase == PH_MEASURE && now_us() < b->t_end)
            return;
        for (int i = 0; i < b->nconns; i++) {
            if (b->conns[i].state != LC_CLOSED && b->conns[i].state != LC_UNUSED)
                return;
        }
        finish(b);
        return;
    }
    case LG_IDLE:
        if (b->ready + b->failed == b->nconns && b->phase == PH_MEASURE) {
            b->phase = PH_DRAIN;
            struct timeval tv = {1, 0}; /* let the server settle before reading its memory */
            event_base_once(b->base, -1, EV_TIMEOUT, settle_cb, b, &tv);
        }
        return;
    case LG_RECONNECT:
        if (b->ready + b->failed < b->nconns)
            return;
        if (b->phase == PH_SETUP) {
            reconnect_primed(b);
            return;
        }
        b->t_end = now_us();
        finish(b);
        return;
    case LG_SETUP:
    case LG_MODE_MAX:
        return;
    }
}

/* Timeouts of requests, the overall deadline, Ctrl-C. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bench *b = arg;
    int64_t t = now_us();
    if (interrupted) {
        fprintf(stderr, "loadgen: interrupted\n");
        b->exit_status = 1;
        finish(b);
        return;
    }
    int64_t limit = (int64_t)(b->o.timeout * 1e6);
    for (int i = -1; i < b->nconns; i++) {
        struct lconn *c = i < 0 ? &b->control : &b->conns[i];
        for (size_t j = 0; j < c->npend;) {
            if (t - c->pend[j].t_sent <= limit) {
                j++;
                continue;
            }
            struct pending p = c->pend[j];
            c->pend[j] = c->pend[--c->npend];
            if (p.purpose == REQ_LOAD) {
                error_count(b, "timeout");
                if (b->o.rate <= 0 && sending(b) && c->state == LC_READY)
                    send_load(c, 0);
            } else if (p.purpose == REQ_HELLO) {
                conn_served(c, "timeout", t);
            } else {
                error_count(b, "setup:timeout");
                if (c == &b->control || b->o.mode == LG_LOAD) {
                    lconn_closed(c, NULL);
                    if (b->finishing)
                        return;
                }
                break;
            }
        }
    }
    if (b->o.mode == LG_LOAD && b->phase == PH_SETUP && t - b->t_begin > LG_SETUP_LIMIT_US) {
        for (int i = 0; i < b->nconns && b->phase == PH_SETUP; i++) {
            struct lconn *c = &b->conns[i];
            if (!c->counted) {
                error_count(b, "setup_timeout");
                load_conn_done_setup(c, false);
                lconn_close(c);
            }
        }
        if (b->phase == PH_SETUP) { /* the control connection never delivered the stays */
            error_count(b, "setup_timeout");
            b->exit_status = 1;
            finish(b);
        }
        return;
    }
    if (b->phase == PH_DRAIN && b->o.mode == LG_LOAD) {
        if (t >= b->t_deadline) {
            int64_t left = total_pending(b);
            for (int64_t k = 0; k < left; k++)
                error_count(b, "no_answer_at_end");
            finish(b);
            return;
        }
        maybe_finish(b);
    }
    if (b->t_deadline != 0 && t >= b->t_deadline && b->o.mode != LG_LOAD) {
        b->t_deadline = 0;
        if (b->o.mode == LG_SETUP) {
            error_count(b, "deadline");
            b->exit_status = 1;
            finish(b);
            return;
        }
        /* idle, reconnect: what has not been served by now counts as failed */
        if (b->o.mode == LG_IDLE)
            b->nconns = b->started;
        for (int i = 0; i < b->nconns && !b->finishing; i++) {
            if (!b->conns[i].counted)
                conn_served(&b->conns[i], "not_served_in_time", t);
        }
        maybe_finish(b);
        return;
    }
    if (b->o.mode == LG_HANDSHAKES && t >= b->t_end + 3000000)
        finish(b); /* a handshake left hanging after the end: the report does not wait */
}

/* ---- modes ---- */

static void start_mode(struct bench *b)
{
    const struct options *o = &b->o;
    int64_t t = now_us();
    b->t_begin = t;
    b->cpu_start_us = cpu_time_us();
    switch (o->mode) {
    case LG_SETUP:
        b->t_deadline = t + (int64_t)(o->seconds * 1e6);
        lconn_open(&b->control, NULL);
        return;
    case LG_LOAD:
        if (o->kind == LG_KIND_FOLIO) {
            start_load_conns(b);
        } else {
            lconn_open(&b->control, NULL);
        }
        return;
    case LG_HANDSHAKES:
        b->phase = PH_MEASURE;
        b->t0 = t;
        b->t_end = t + (int64_t)(o->seconds * 1e6);
        for (int i = 0; i < b->nconns; i++)
            lconn_open(&b->conns[i], NULL);
        return;
    case LG_IDLE:
        b->phase = PH_MEASURE;
        b->t0 = t;
        b->t_deadline = t + (int64_t)(o->seconds * 1e6);
        if (o->pid > 0)
            b->rss_before_kb = proc_status_kb(o->pid, "VmRSS");
        idle_open_more(b);
        return;
    case LG_RECONNECT:
        if (o->resume) { /* the unmeasured round that collects the tickets */
            b->phase = PH_SETUP;
            b->t_deadline = t + (int64_t)(o->seconds * 1e6);
            for (int i = 0; i < b->nconns; i++)
                lconn_open(&b->conns[i], &b->creds[i % b->ncreds]);
            return;
        }
        reconnect_storm(b);
        return;
    case LG_MODE_MAX:
        return;
    }
}

/* Every outlet connects now (resuming its session when it has one) and sends --hello. */
static void reconnect_storm(struct bench *b)
{
    int64_t t = now_us();
    b->phase = PH_MEASURE;
    b->t0 = t;
    b->t_deadline = t + (int64_t)(b->o.seconds * 1e6);
    b->cpu_start_us = cpu_time_us(); /* the first round's work is not the storm's */
    for (int i = 0; i < b->nconns; i++)
        lconn_open(&b->conns[i], &b->creds[i % b->ncreds]);
    b->started = b->nconns;
}

static void print_results(struct bench *b)
{
    const struct options *o = &b->o;
    struct samples *s = &b->lat;
    if (s->n > 0)
        qsort(s->v, s->n, sizeof(*s->v), cmp_u32);
    char reasons[2048];
    reasons_format(&b->reasons, reasons, sizeof(reasons));
    double secs = b->t0 > 0 && b->t_end > b->t0 ? (double)(b->t_end - b->t0) / 1e6 : 0;
    char lat[256];
    snprintf(lat, sizeof(lat),
             "p50_us=%" PRIu32 " p95_us=%" PRIu32 " p99_us=%" PRIu32 " max_us=%" PRIu32
             " mean_us=%" PRIu64 " samples=%zu cpu_ms=%" PRId64,
             samples_pct(s, 500), samples_pct(s, 950), samples_pct(s, 990), samples_pct(s, 1000),
             samples_mean(s), s->n, b->cpu_us / 1000);
    switch (o->mode) {
    case LG_SETUP:
        printf("setup: %d requests done, %d already there, %" PRIu64 " errors (%s)\n", b->sq_done,
               b->sq_existing, b->errors, reasons);
        printf("result mode=setup done=%d existing=%d errors=%" PRIu64 " reasons=%s\n", b->sq_done,
               b->sq_existing, b->errors, reasons);
        break;
    case LG_LOAD: {
        double tput = secs > 0 ? (double)b->ok_in_window / secs : 0;
        printf("load %s %s: %d connections (%d ready, %d failed), %.2f s measured: %.1f ok/s; "
               "latency p50 %.2f ms p95 %.2f ms p99 %.2f ms max %.2f ms; %" PRIu64 " errors (%s)\n",
               kind_names[o->kind], o->rate > 0 ? "open loop" : "closed loop", b->nconns, b->ready,
               b->failed, secs, tput, samples_pct(s, 500) / 1e3, samples_pct(s, 950) / 1e3,
               samples_pct(s, 990) / 1e3, samples_pct(s, 1000) / 1e3, b->errors, reasons);
        printf("result mode=load kind=%s loop=%s conns=%d depth=%d rate=%.1f ready=%d failed=%d "
               "seconds=%.3f sent=%" PRIu64 " ok=%" PRIu64 " ok_in_window=%" PRIu64
               " ok_total=%" PRIu64 " throughput=%.1f %s send_lag_max_us=%" PRId64
               " send_lag_mean_us=%" PRId64 " errors=%" PRIu64 " reasons=%s\n",
               kind_names[o->kind], o->rate > 0 ? "open" : "closed", b->nconns, o->depth, o->rate,
               b->ready, b->failed, secs, b->sent, b->ok, b->ok_in_window, b->ok_total, tput, lat,
               b->send_lag_max, b->sent > 0 ? b->send_lag_sum / (int64_t)b->sent : 0, b->errors,
               reasons);
        break;
    }
    case LG_HANDSHAKES: {
        double rate = secs > 0 ? (double)b->hs_done / secs : 0;
        printf("handshakes: %d connectors, %.2f s: %" PRIu64 " complete (%.1f/s); handshake "
               "p50 %.2f ms p99 %.2f ms; %" PRIu64 " errors (%s)\n",
               b->nconns, secs, b->hs_done, rate, samples_pct(s, 500) / 1e3,
               samples_pct(s, 990) / 1e3, b->errors, reasons);
        printf("result mode=handshakes conns=%d seconds=%.3f done=%" PRIu64 " rate=%.1f %s "
               "errors=%" PRIu64 " reasons=%s\n",
               b->nconns, secs, b->hs_done, rate, lat, b->errors, reasons);
        break;
    }
    case LG_IDLE: {
        long delta = b->rss_after_kb - b->rss_before_kb;
        double per = b->ready > 0 ? (double)delta * 1024.0 / b->ready : 0;
        printf("idle: %d of %d connections open, foliod RSS %ld KiB -> %ld KiB: %.0f bytes "
               "(%.1f KiB) per connection; peak %ld KiB; %" PRIu64 " errors (%s)\n",
               b->ready, b->nconns, b->rss_before_kb, b->rss_after_kb, per, per / 1024, b->hwm_kb,
               b->errors, reasons);
        printf("result mode=idle conns=%d open=%d rss_before_kb=%ld rss_after_kb=%ld "
               "per_conn_bytes=%.0f hwm_kb=%ld %s errors=%" PRIu64 " reasons=%s\n",
               b->nconns, b->ready, b->rss_before_kb, b->rss_after_kb, per, b->hwm_kb, lat,
               b->errors, reasons);
        break;
    }
    case LG_RECONNECT: {
        double all_ms = b->ready == b->nconns ? (double)samples_pct(s, 1000) / 1e3 : -1;
        printf("reconnect: %d outlets at once (%s), %d of them resuming a session: %d served, "
               "%d failed; all served in %.1f ms; p50 %.1f ms p99 %.1f ms; %" PRIu64
               " errors (%s)\n",
               b->nconns, o->hello, b->resumed, b->ready, b->failed, all_ms,
               samples_pct(s, 500) / 1e3, samples_pct(s, 990) / 1e3, b->errors, reasons);
        printf("result mode=reconnect conns=%d hello=%s resumed=%d served=%d failed=%d "
               "all_ms=%.1f %s errors=%" PRIu64 " reasons=%s\n",
               b->nconns, o->hello, b->resumed, b->ready, b->failed, all_ms, lat, b->errors,
               reasons);
        break;
    }
    case LG_MODE_MAX:
        break;
    }
    fflush(stdout);
}

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen MODE [options]\n"
               "modes: setup | load | handshakes | idle | reconnect (see bench/loadgen.c)\n"
               "  --host ADDR         loopback address of foliod (127.0.0.1)\n"
               "  --port N            foliod's port (7443)\n"
               "  --ca FILE           CA of the server certificate (var/tls/ca.crt)\n"
               "  --user U --password P   staff login (cashier / cashier)\n"
               "  --kind folio|stay|pos   load: what is posted (folio)\n"
               "  --conns N           connections (16)\n"
               "  --depth D           closed loop: requests in flight per connection (1)\n"
               "  --rate R            open loop: requests per second over all connections\n"
               "  --seconds S         measured duration; setup, idle, reconnect: deadline (10)\n"
               "  --warmup S          load: unrecorded seconds before the measurement (1)\n"
               "  --timeout S         an unanswered request counts as an error after S (10)\n"
               "  --code C --amount A charge code and unit amount (TIP, 100); for pos a code\n"
               "                      without tax rules (the check's total is the amount)\n"
               "  --cert F --key F    pos, reconnect: one outlet certificate for all connections\n"
               "  --mint-ca F --mint-ca-key F  pos, reconnect: sign a certificate per outlet\n"
               "  --outlets N --outlet-prefix P  setup: create outlets P0001..PN; pos, reconnect:\n"
               "                      connection i is outlet P(i mod N + 1) (0, BR)\n"
               "  --stays N           setup: rooms BENCHnnnn with an in-house stay each (0)\n"
               "  --room-prefix P     load --kind stay|pos: the in-house stays whose room number\n"
               "                      starts with P (BENCH)\n"
               "  --hello METHOD      idle, reconnect, pos: first request (server.ping)\n"
               "  --concurrency N     handshakes: parallel connectors (8); idle: opening (100)\n"
               "  --hold S            idle: seconds to hold the connections open (2)\n"
               "  --resume            reconnect: a first, unmeasured round collects the session\n"
               "                      tickets that the measured round resumes\n"
               "  --pid PID           idle: foliod's pid, for its memory\n"
               "  --tag T             unique per run: references, keys, folio names\n");
}

static MUST_CHECK bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static MUST_CHECK bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static MUST_CHECK bool parse_options(int argc, char **argv, struct options *o)
{
    static char tag[32];
    snprintf(tag, sizeof(tag), "%lx%x", (unsigned long)time(NULL), (unsigned)getpid());
    *o = (struct options){.host = "127.0.0.1",
                          .port = 7443,
                          .ca_file = "var/tls/ca.crt",
                          .user = "cashier",
                          .password = "cashier",
                          .outlet_prefix = "BR",
                          .room_prefix = "BENCH",
                          .hello = "server.ping",
                          .code = "TIP",
                          .tag = tag,
                          .amount = 100,
                          .conns = 16,
                          .depth = 1,
                          .seconds = 10,
                          .warmup = 1,
                          .timeout = 10,
                          .hold = 2,
                          .concurrency = -1};
    if (argc < 2) {
        usage(stderr);
        return false;
    }
    o->mode = LG_MODE_MAX;
    for (int m = 0; m < LG_MODE_MAX; m++) {
        if (strcmp(argv[1], mode_names[m]) == 0)
            o->mode = (enum lg_mode)m;
    }
    if (o->mode == LG_MODE_MAX) {
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        fprintf(stderr, "loadgen: unknown mode '%s'\n", argv[1]);
        usage(stderr);
        return false;
    }
    enum {
        O_HOST = 256,
        O_PORT,
        O_CA,
        O_USER,
        O_PASSWORD,
        O_KIND,
        O_CONNS,
        O_DEPTH,
        O_RATE,
        O_SECONDS,
        O_WARMUP,
        O_TIMEOUT,
        O_CODE,
        O_AMOUNT,
        O_CERT,
        O_KEY,
        O_MINT_CA,
        O_MINT_CA_KEY,
        O_OUTLETS,
        O_OUTLET_PREFIX,
        O_STAYS,
        O_HELLO,
        O_CONCURRENCY,
        O_HOLD,
        O_PID,
        O_TAG,
        O_RESUME,
        O_ROOM_PREFIX
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"ca", required_argument, NULL, O_CA},
        {"user", required_argument, NULL, O_USER},
        {"password", required_argument, NULL, O_PASSWORD},
        {"kind", required_argument, NULL, O_KIND},
        {"conns", required_argument, NULL, O_CONNS},
        {"depth", required_argument, NULL, O_DEPTH},
        {"rate", required_argument, NULL, O_RATE},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"code", required_argument, NULL, O_CODE},
        {"amount", required_argument, NULL, O_AMOUNT},
        {"cert", required_argument, NULL, O_CERT},
        {"key", required_argument, NULL, O_KEY},
        {"mint-ca", required_argument, NULL, O_MINT_CA},
        {"mint-ca-key", required_argument, NULL, O_MINT_CA_KEY},
        {"outlets", required_argument, NULL, O_OUTLETS},
        {"outlet-prefix", required_argument, NULL, O_OUTLET_PREFIX},
        {"stays", required_argument, NULL, O_STAYS},
        {"hello", required_argument, NULL, O_HELLO},
        {"concurrency", required_argument, NULL, O_CONCURRENCY},
        {"hold", required_argument, NULL, O_HOLD},
        {"pid", required_argument, NULL, O_PID},
        {"tag", required_argument, NULL, O_TAG},
        {"resume", no_argument, NULL, O_RESUME},
        {"room-prefix", required_argument, NULL, O_ROOM_PREFIX},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    long long v = 0;
    bool good = true;
    optind = 2;
    while (good && (opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_HOST:
            o->host = optarg;
            break;
        case O_PORT:
            good = parse_int(optarg, 1, 65535, &v);
            o->port = (int)v;
            break;
        case O_CA:
            o->ca_file = optarg;
            break;
        case O_USER:
            o->user = optarg;
            break;
        case O_PASSWORD:
            o->password = optarg;
            break;
        case O_KIND:
            good = false;
            for (int k = 0; k < LG_KIND_MAX; k++) {
                if (strcmp(optarg, kind_names[k]) == 0) {
                    o->kind = (enum lg_kind)k;
                    good = true;
                }
            }
            break;
        case O_CONNS:
            good = parse_int(optarg, 1, LG_MAX_CONNS, &v);
            o->conns = (int)v;
            break;
        case O_DEPTH:
            good = parse_int(optarg, 1, 1000, &v);
            o->depth = (int)v;
            break;
        case O_RATE:
            good = parse_double(optarg, 0.001, 1e7, &o->rate);
            break;
        case O_SECONDS:
            good = parse_double(optarg, 0.1, 3600, &o->seconds);
            break;
        case O_WARMUP:
            good = parse_double(optarg, 0, 600, &o->warmup);
            break;
        case O_TIMEOUT:
            good = parse_double(optarg, 0.1, 600, &o->timeout);
            break;
        case O_CODE:
            o->code = optarg;
            break;
        case O_AMOUNT:
            good = parse_int(optarg, 1, 1000000000, &o->amount);
            break;
        case O_CERT:
            o->cert_file = optarg;
            break;
        case O_KEY:
            o->key_file = optarg;
            break;
        case O_MINT_CA:
            o->mint_ca_cert = optarg;
            break;
        case O_MINT_CA_KEY:
            o->mint_ca_key = optarg;
            break;
        case O_OUTLETS:
            good = parse_int(optarg, 0, 9999, &v);
            o->outlets = (int)v;
            break;
        case O_OUTLET_PREFIX:
            o->outlet_prefix = optarg;
            break;
        case O_STAYS:
            good = parse_int(optarg, 0, 9999, &v);
            o->stays = (int)v;
            break;
        case O_HELLO:
            o->hello = optarg;
            break;
        case O_CONCURRENCY:
            good = parse_int(optarg, 1, LG_MAX_CONNS, &v);
            o->concurrency = (int)v;
            break;
        case O_HOLD:
            good = parse_double(optarg, 0, 3600, &o->hold);
            break;
        case O_PID:
            good = parse_int(optarg, 1, INT32_MAX, &v);
            o->pid = (int)v;
            break;
        case O_TAG:
            o->tag = optarg;
            break;
        case O_RESUME:
            o->resume = true;
            break;
        case O_ROOM_PREFIX:
            o->room_prefix = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return false;
        }
        if (!good)
            fprintf(stderr, "loadgen: bad value '%s' for --%s\n", optarg,
                    longopts[opt - O_HOST].name);
    }
    if (!good)
        return false;
    if (optind != argc) {
        fprintf(stderr, "loadgen: unexpected argument '%s'\n", argv[optind]);
        return false;
    }
    if (o->concurrency < 0)
        o->concurrency = o->mode == LG_HANDSHAKES ? 8 : 100;
    if (o->mode == LG_HANDSHAKES)
        o->conns = o->concurrency;
    if (strlen(o->tag) > 24 || strlen(o->outlet_prefix) > 12) {
        fprintf(stderr, "loadgen: --tag at most 24 characters, --outlet-prefix at most 12\n");
        return false;
    }
    if ((o->mode == LG_RECONNECT || (o->mode == LG_LOAD && o->kind == LG_KIND_POS)) &&
        o->cert_file == NULL &&
        (o->mint_ca_cert == NULL || o->mint_ca_key == NULL || o->outlets < 1)) {
        fprintf(stderr, "loadgen: outlets need --cert, or --mint-ca, --mint-ca-key and "
                        "--outlets\n");
        return false;
    }
    return true;
}

/* As many descriptors as allowed: idle and reconnect hold one per connection. */
static void raise_fd_limit(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)want + 32 > rl.rlim_cur)
        fprintf(stderr, "loadgen: note: %d connections but only %lu descriptors allowed\n", want,
                (unsigned long)rl.rlim_cur);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Builds what the mode needs, runs it to its end and prints the results; the exit status. */
static int bench_run(struct bench *b)
{
    const struct options *o = &b->o;
    struct evutil_addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof(port), "%d", o->port);
    if (evutil_getaddrinfo(o->host, port, &hints, &ai) != 0 || ai == NULL) {
        fprintf(stderr, "loadgen: --host must be a numeric address\n");
        return 2;
    }
    memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
    b->addrlen = (socklen_t)ai->ai_addrlen;
    evutil_freeaddrinfo(ai);
    if (!is_loopback(&b->addr)) {
        fprintf(stderr, "loadgen: only loopback addresses are load-tested (got %s)\n", o->host);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    raise_fd_limit(o->conns);

    b->ctx = client_ctx_new(o->ca_file);
    if (b->ctx == NULL)
        return 1;
    if (o->mode == LG_HANDSHAKES || (o->mode == LG_RECONNECT && o->resume)) {
        SSL_CTX_set_session_cache_mode(b->ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(b->ctx, new_session_cb);
    }
    bool outlets = o->mode == LG_RECONNECT || (o->mode == LG_LOAD && o->kind == LG_KIND_POS);
    if (outlets && o->cert_file != NULL) {
        b->creds = calloc(1, sizeof(*b->creds));
        if (b->creds == NULL)
            return 1;
        b->ncreds = 1;
        if (!load_cred(o->cert_file, o->key_file, &b->creds[0]))
            return 1;
    } else if (outlets) {
        int64_t t = now_us();
        if (!mint_creds(b))
            return 1;
        fprintf(stderr, "loadgen: %d outlet certificates made in %.0f ms\n", b->ncreds,
                (double)(now_us() - t) / 1e3);
    }

    /* the open loop's send times need a precise clock: libevent's default on Linux is
     * CLOCK_MONOTONIC_COARSE, one kernel tick (4 ms here), and timers set with it fired up to a
     * tick late, which showed as latency */
    struct event_config *ecfg = event_config_new();
    if (ecfg == NULL)
        return 1;
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    b->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (b->base == NULL)
        return 1;
    b->nconns = o->mode == LG_SETUP ? 0 : o->conns;
    b->conns = calloc((size_t)(b->nconns ? b->nconns : 1), sizeof(*b->conns));
    if (b->conns == NULL)
        return 1;
    b->nalloc = b->nconns;
    for (int i = 0; i < b->nconns; i++) {
        b->conns[i].b = b;
        b->conns[i].index = i;
    }
    b->control.b = b;
    b->control.index = -1;
    b->phase_timer = evtimer_new(b->base, phase_cb, b);
    b->tick = event_new(b->base, -1, EV_PERSIST, tick_cb, b);
    struct timeval tick = tv_us(LG_TICK_US);
    if (b->phase_timer == NULL || b->tick == NULL || evtimer_add(b->tick, &tick) != 0)
        return 1;

    start_mode(b);
    if (!b->finishing)
        event_base_dispatch(b->base);
    if (o->mode == LG_LOAD && b->t0 == 0)
        b->exit_status = 1; /* the measurement never started */
    if (b->t_end < b->t0)
        b->t_end = now_us();
    b->cpu_us = cpu_time_us() - b->cpu_start_us;
    print_results(b);
    return b->exit_status;
}

/* Frees what bench_run() built, however far it got. */
static void bench_free(struct bench *b)
{
    for (int i = 0; i < b->nalloc; i++) {
        lconn_close(&b->conns[i]);
        SSL_SESSION_free(b->conns[i].session);
        if (b->conns[i].timer != NULL)
            event_free(b->conns[i].timer);
        free(b->conns[i].pend);
    }
    lconn_close(&b->control);
    free(b->control.pend);
    for (int i = 0; i < b->ncreds; i++) {
        X509_free(b->creds[i].cert);
        EVP_PKEY_free(b->creds[i].key);
    }
    for (size_t i = 0; i < b->nsq; i++)
        json_decref(b->sq[i].params);
    free(b->sq);
    free(b->creds);
    free(b->stays);
    free(b->conns);
    free(b->lat.v);
    if (b->tick != NULL)
        event_free(b->tick);
    if (b->phase_timer != NULL)
        event_free(b->phase_timer);
    if (b->base != NULL)
        event_base_free(b->base);
    SSL_CTX_free(b->ctx);
    free(b);
}

int main(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return 1;
    if (!parse_options(argc, argv, &b->o)) {
        free(b);
        return 2;
    }
    int rc = bench_run(b);
    bench_free(b);
    return rc;
}
