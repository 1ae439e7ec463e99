import COpenSSL
import CutoverCore
import Glibc

/// The certificates of one TLS listener, loaded and checked: one OpenSSL context per certificate,
/// the first being the default and the one every handshake starts on; the SNI callback moves a
/// handshake to the certificate whose names match (`CertificateSelection`).
///
/// Immutable once built, so every worker shares it; a reload builds a new one and swaps it into the
/// `Listener`, so new handshakes use the new certificates while live connections keep theirs (each
/// SSL object holds a reference to its context).
final class TLSServerContext: @unchecked Sendable {  // immutable after init; OpenSSL contexts are thread-safe for SSL_new
    let config: ListenerTLSConfig
    /// One per certificate, in config order.
    private let contexts: [OpaquePointer]
    let selection: CertificateSelection
    /// Answer a plain HTTP request on this port with a 400 (HTTP listeners), rather than just closing.
    let answersPlainHTTP: Bool
    let stats: TLSStats
    let handshakeTimeoutMilliseconds: UInt64

    /// Reads every certificate and key, checks each pair, and prepares SNI and ALPN.
    ///
    /// - Important: reads files; call at start or on the control queue, never on a worker.
    init(config: ListenerTLSConfig, mode: ListenerMode, handshakeTimeout: Duration, stats: TLSStats) throws(TLSError) {
        self.config = config
        self.answersPlainHTTP = mode == .http
        self.stats = stats
        self.handshakeTimeoutMilliseconds = UInt64(max(1, handshakeTimeout.milliseconds))
        var contexts: [OpaquePointer] = []
        var names: [[String]] = []
        do {
            for files in config.certificates {
                let context = try Self.makeContext(files, minVersion: config.minVersion, http: mode == .http)
                contexts.append(context)
                names.append(Self.names(of: context))
            }
        } catch {
            for context in contexts { SSL_CTX_free(context) }
            throw error
        }
        self.contexts = contexts
        self.selection = CertificateSelection(names: names)
        if contexts.count > 1 {
            // The callback finds this object again through its argument; every SSL of this listener
            // keeps the object alive (`TLSStream.server`) until its handshake is over.
            cutover_ssl_ctx_set_servername_callback(contexts[0], { ssl, _, arg in
                guard let ssl, let arg else { return CUTOVER_SSL_TLSEXT_ERR_OK }
                let server = Unmanaged<TLSServerContext>.fromOpaque(arg).takeUnretainedValue()
                server.chooseCertificate(for: ssl)
                return CUTOVER_SSL_TLSEXT_ERR_OK
            }, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    deinit {
        for context in contexts { SSL_CTX_free(context) }
    }

    /// The names of each certificate, as SNI is matched against them (for logs and `show`).
    var certificateNames: [[String]] { selection.names }

    /// A new server-side SSL object on `fd`, starting on the default certificate.
    func makeSSL(fd: Int32) -> OpaquePointer? {
        guard let ssl = SSL_new(contexts[0]) else { return nil }
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        return ssl
    }

    private func chooseCertificate(for ssl: OpaquePointer) {
        let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
        let index = selection.index(for: name)
        if index != 0 { SSL_set_SSL_CTX(ssl, contexts[index]) }
    }

    private static func makeContext(_ files: CertificateFiles, minVersion: TLSVersion, http: Bool) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw .context(reason: TLSError.drainReason()) }
        cutover_ssl_ctx_set_proxy_options(context)
        _ = cutover_ssl_ctx_set_min_proto_version(context, minVersion == .v1_3 ? TLS1_3_VERSION : TLS1_2_VERSION)
        if http { cutover_ssl_ctx_select_http11(context) }
        guard SSL_CTX_use_certificate_chain_file(context, files.cert) == 1 else {
            let reason = readable(files.cert) ?? TLSError.drainReason(fallback: "not a PEM certificate")
            SSL_CTX_free(context)
            throw .certificate(file: files.cert, reason: reason)
        }
        guard SSL_CTX_use_PrivateKey_file(context, files.key, SSL_FILETYPE_PEM) == 1 else {
            let reason = readable(files.key) ?? TLSError.drainReason(fallback: "not a PEM private key")
            SSL_CTX_free(context)
            // OpenSSL checks the pair while loading the key: say so in an operator's words.
            if reason == "key values mismatch" { throw .keyMismatch(cert: files.cert, key: files.key) }
            throw .key(file: files.key, reason: reason)
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            ERR_clear_error()
            SSL_CTX_free(context)
            throw .keyMismatch(cert: files.cert, key: files.key)
        }
        return context
    }

    /// `nil` when `path` can be opened; otherwise the operating system's reason (clearer than
    /// OpenSSL's "system lib").
    private static func readable(_ path: String) -> String? {
        guard access(path, R_OK) != 0 else { return nil }
        ERR_clear_error()
        return String(cString: strerror(errno))
    }

    private static func names(of context: OpaquePointer) -> [String] {
        var buffer = [CChar](repeating: 0, count: 8192)
        let length = cutover_ssl_ctx_certificate_names(context, &buffer, Int32(buffer.count))
        guard length > 0 else { return [] }
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return text.split(separator: "\n").map(String.init)
    }
}
