import COpenSSL
import CutoverCore
import Glibc

/// How the proxy speaks TLS to one endpoint (`tls` of an endpoint): trust, the expected name, and
/// the handshake deadline. Used by live connections and by the endpoint's probes.
final class TLSClientContext: @unchecked Sendable {  // immutable after init; OpenSSL contexts are thread-safe for SSL_new
    let config: UpstreamTLSConfig
    /// The name the certificate must carry (and the SNI, unless it is an IP address).
    let expectedName: String
    private let expectsAddress: Bool
    private let context: OpaquePointer
    let stats: TLSStats
    let handshakeTimeoutMilliseconds: UInt64

    /// Builds the context, reading the CA bundle if one is configured, and the client certificate
    /// the server may ask for (etcd's `--client-cert-auth`; endpoints have none).
    ///
    /// - Important: reads files; call at start or on the control queue, never on a worker.
    init(config: UpstreamTLSConfig, endpointHost: String, handshakeTimeout: Duration, stats: TLSStats, clientCertificate: CertificateFiles? = nil) throws(TLSError) {
        self.config = config
        self.expectedName = config.expectedName(endpointHost: endpointHost)
        self.expectsAddress = IPAddressText.parse(expectedName) != nil
        self.stats = stats
        self.handshakeTimeoutMilliseconds = UInt64(max(1, handshakeTimeout.milliseconds))
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw .context(reason: TLSError.drainReason()) }
        cutover_ssl_ctx_set_proxy_options(context)
        _ = cutover_ssl_ctx_set_min_proto_version(context, TLS1_2_VERSION)
        if config.verify {
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
            if let ca = config.ca {
                guard SSL_CTX_load_verify_locations(context, ca, nil) == 1 else {
                    let reason = access(ca, R_OK) != 0 ? String(cString: strerror(errno)) : TLSError.drainReason(fallback: "no PEM certificates in it")
                    ERR_clear_error()
                    SSL_CTX_free(context)
                    throw .authorities(file: ca, reason: reason)
                }
            } else {
                SSL_CTX_set_default_verify_paths(context)
            }
        } else {
            SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
        }
        if let files = clientCertificate {
            guard SSL_CTX_use_certificate_chain_file(context, files.cert) == 1 else {
                let reason = access(files.cert, R_OK) != 0 ? String(cString: strerror(errno)) : TLSError.drainReason(fallback: "not a PEM certificate")
                SSL_CTX_free(context)
                throw .certificate(file: files.cert, reason: reason)
            }
            guard SSL_CTX_use_PrivateKey_file(context, files.key, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(context) == 1 else {
                let reason = access(files.key, R_OK) != 0 ? String(cString: strerror(errno)) : TLSError.drainReason(fallback: "not a PEM private key")
                SSL_CTX_free(context)
                if reason == "key values mismatch" { throw .keyMismatch(cert: files.cert, key: files.key) }
                throw .key(file: files.key, reason: reason)
            }
        }
        self.context = context
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// The context of `endpoint` if it is reached over TLS; a CA bundle that cannot be read names `key`.
    static func load(_ endpoint: EndpointConfig, key: String, file: String, timeouts: Timeouts, stats: TLSStats) throws(ConfigError) -> TLSClientContext? {
        guard let tls = endpoint.tls else { return nil }
        do {
            return try TLSClientContext(config: tls, endpointHost: endpoint.address.host, handshakeTimeout: timeouts.tlsHandshake, stats: stats)
        } catch {
            throw ConfigError(file: file, key: key + (tls.ca == nil ? "" : ".ca"), reason: "\(error)")
        }
    }

    /// A new client-side SSL object on `fd`, with SNI and the name to verify set.
    func makeSSL(fd: Int32) -> OpaquePointer? {
        guard let ssl = SSL_new(context) else { return nil }
        SSL_set_fd(ssl, fd)
        SSL_set_connect_state(ssl)
        if expectsAddress {
            if config.verify { X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), expectedName) }
        } else {
            _ = cutover_ssl_set_host_name(ssl, expectedName)
            if config.verify { SSL_set1_host(ssl, expectedName) }
        }
        return ssl
    }

    /// Why the handshake on `ssl` failed, in words: the verification result when that was the cause.
    static func failureReason(_ ssl: OpaquePointer, queued: String) -> String {
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
            return "certificate verify failed: \(String(cString: text))"
        }
        return queued
    }
}
