/*
 * tls.c - the server's TLS context and the identity in a client certificate.
 *
 * TLS 1.2 is the floor (1.3 preferred by OpenSSL's negotiation). Client certificates are
 * optional by default: front-desk clients log in with a password, POS outlets present a
 * certificate signed by the configured CA. A presented certificate that does not verify fails
 * the handshake. SSL_MODE_RELEASE_BUFFERS keeps idle connections small.
 *
 * Handshake cost (OpenSSL 3.0 spends most of a handshake decoding and verifying certificates):
 * - the server sends exactly the chain in cert_file (SSL_MODE_NO_AUTO_CHAIN): without it OpenSSL
 *   rebuilds and re-verifies a chain from the client CA store on every handshake, and sends the
 *   CA certificate the client already has;
 * - sessions are kept in this context's cache and resumed with TLS 1.3 tickets that only name
 *   them (stateful tickets, SSL_OP_NO_TICKET; session IDs in TLS 1.2), one ticket per handshake:
 *   a stateless ticket would serialise the session, client certificate included, and decode it
 *   again for every ticket issued and every resumption. A resumed session keeps the verified
 *   client certificate; the outlet lookup still runs on every connection. The cache lives as long
 *   as the context: a restart or a reload that replaces it means full handshakes.
 */
#include "tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "config.h"

/* Sessions kept for resumption, and for how long (seconds). A session with a client
 * certificate takes about 2 KiB. */
#define TLS_SESSION_CACHE_SIZE 20000
#define TLS_SESSION_LIFETIME 3600

static void ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
    char buf[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "", buf);
}

SSL_CTX *tls_ctx_new(const struct foliod_config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_error(err, errlen, "cannot create TLS context", NULL);
        return NULL;
    }
    int min = strcmp(cfg->tls_min_protocol, "TLSv1.3") == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, min);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    static const unsigned char sid[] = "foliod";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, TLS_SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, TLS_SESSION_LIFETIME);
    SSL_CTX_set_num_tickets(ctx, 1);

    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert_file) != 1) {
        ssl_error(err, errlen, "cannot load certificate", cfg->tls_cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, errlen, "cannot load key", cfg->tls_key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, errlen, "key does not match certificate", cfg->tls_key_file);
        goto fail;
    }
    if (cfg->tls_verify_client != CONFIG_VERIFY_NONE) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL) != 1) {
            ssl_error(err, errlen, "cannot load client CA", cfg->tls_ca_file);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca_file);
        if (names == NULL) {
            ssl_error(err, errlen, "cannot read client CA names", cfg->tls_ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER;
        if (cfg->tls_verify_client == CONFIG_VERIFY_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

bool tls_peer_identity(SSL *ssl, char *fingerprint, size_t fplen, char *cn, size_t cnlen)
{
    fingerprint[0] = '\0';
    cn[0] = '\0';
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL)
        return false;
    if (SSL_get_verify_result(ssl) != X509_V_OK) {
        X509_free(cert);
        return false;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) == 1) {
        for (unsigned int i = 0; i < mdlen && 2 * i + 2 < fplen; i++)
            snprintf(fingerprint + 2 * i, 3, "%02x", md[i]);
    }
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                                      (int)cnlen);
    if (n < 0)
        cn[0] = '\0';
    X509_free(cert);
    return true;
}
