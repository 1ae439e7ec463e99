#ifndef CUTOVER_COPENSSL_SHIM_H
#define CUTOVER_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <string.h>

// Swift does not import function-like macros: small inline functions in their place.

static inline int cutover_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

/// Options every context of the proxy sets: a peer that closes without close_notify is a plain end
/// of stream (most HTTP clients do), and no renegotiation (a CPU-exhaustion vector).
static inline void cutover_ssl_ctx_set_proxy_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    // A write may be retried with a longer, reallocated buffer (the channel's pending queue grows).
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

static inline void cutover_ssl_ctx_set_servername_callback(SSL_CTX *ctx, int (*callback)(SSL *, int *, void *), void *arg) {
    SSL_CTX_set_tlsext_servername_callback(ctx, callback);
    SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}

static inline int cutover_ssl_set_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

static const int CUTOVER_SSL_TLSEXT_ERR_OK = SSL_TLSEXT_ERR_OK;
static const int CUTOVER_SSL_TLSEXT_ERR_NOACK = SSL_TLSEXT_ERR_NOACK;
static const int CUTOVER_SSL_R_HTTP_REQUEST = SSL_R_HTTP_REQUEST;

static int cutover_alpn_select_http11(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                      const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    static const unsigned char offered[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    unsigned char *chosen = NULL;
    if (SSL_select_next_proto(&chosen, outlen, offered, sizeof offered, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
        // A client offering only h2 still gets HTTP/1.1 rather than a failed handshake.
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/// Answers ALPN with `http/1.1` (the only protocol an HTTP listener speaks).
static inline void cutover_ssl_ctx_select_http11(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, cutover_alpn_select_http11, NULL);
}

/// Offers `http/1.1` by ALPN on a client context.
static inline int cutover_ssl_ctx_offer_http11(SSL_CTX *ctx) {
    static const unsigned char offered[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    return SSL_CTX_set_alpn_protos(ctx, offered, sizeof offered);
}

/// The DNS names of a context's leaf certificate (subjectAltName entries, else the subject CN),
/// newline-separated into `out`; returns the length written, or -1 without a certificate.
static inline int cutover_ssl_ctx_certificate_names(SSL_CTX *ctx, char *out, int capacity) {
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (cert == NULL || capacity < 1) return -1;
    int length = 0;
    out[0] = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names != NULL) {
        for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
            if (name->type != GEN_DNS) continue;
            const unsigned char *text = ASN1_STRING_get0_data(name->d.dNSName);
            int size = ASN1_STRING_length(name->d.dNSName);
            if (length + size + 2 > capacity) break;
            memcpy(out + length, text, (size_t)size);
            length += size;
            out[length++] = '\n';
        }
        GENERAL_NAMES_free(names);
    }
    if (length == 0) {
        int size = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, capacity - 1);
        if (size > 0) length = size;
    }
    out[length] = 0;
    return length;
}

/// The negotiated ALPN protocol, copied into `out` (empty when none); returns its length.
static inline int cutover_ssl_alpn_selected(const SSL *ssl, char *out, int capacity) {
    const unsigned char *data = NULL;
    unsigned int size = 0;
    SSL_get0_alpn_selected(ssl, &data, &size);
    if (data == NULL || (int)size >= capacity) { out[0] = 0; return 0; }
    memcpy(out, data, size);
    out[size] = 0;
    return (int)size;
}

#endif
