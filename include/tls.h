/*
 * tls.h - the server's SSL_CTX and the peer certificate's identity.
 *
 * tls_ctx_new() builds a context from the configuration (TLS 1.2 minimum, server certificate
 * and key, client CA and verify policy) or fails with a message; on SIGHUP the server builds a
 * new one and swaps it in only if it built. Existing connections keep the context they were
 * accepted with (OpenSSL reference-counts it). The caller frees with SSL_CTX_free().
 */
#ifndef FOLIOD_TLS_H
#define FOLIOD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct foliod_config;

SSL_CTX *tls_ctx_new(const struct foliod_config *cfg, char *err, size_t errlen);

/*
 * The verified peer certificate's SHA-256 fingerprint (64 lower-case hex digits) and subject
 * common name. Returns false when the peer sent no certificate.
 */
bool tls_peer_identity(SSL *ssl, char *fingerprint, size_t fplen, char *cn, size_t cnlen);

#endif
