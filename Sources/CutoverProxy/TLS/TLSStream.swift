import COpenSSL
import CutoverCore
import Glibc

/// The TLS state of one `SocketChannel`: an OpenSSL object on the channel's non-blocking socket,
/// its handshake, and the handshake deadline.
///
/// OpenSSL reads and writes the descriptor itself (no memory BIOs, so no extra copy); a
/// `WANT_READ`/`WANT_WRITE` becomes the epoll interest of the channel, so a handshake advances on
/// the same readiness loop as every other byte, and no thread ever waits for a peer.
final class TLSStream: WorkerConnection, @unchecked Sendable {  // confined to the channel's worker queue
    /// Which end of the handshake the proxy is.
    enum Role {
        /// A client of a TLS listener; the context holds the certificates.
        case server(TLSServerContext)
        /// The proxy reaching an endpoint over TLS; `endpoint` names it in logs.
        case client(TLSClientContext, endpoint: String)
    }

    /// Where the handshake stands.
    enum Phase: Equatable {
        case handshaking
        case established
        /// The handshake or the session failed; the reason is in snake_case for metrics and in words for logs.
        case failed(reason: String)
    }

    /// What one step of the handshake asks for next.
    enum Step {
        case wantRead
        case wantWrite
        case done
        case failed
    }

    let role: Role
    private var ssl: OpaquePointer?
    private(set) var phase: Phase = .handshaking
    /// The handshake waits for the socket to become writable (else readable).
    private(set) var handshakeWantsWrite = false
    /// A read needs the socket to be writable first (TLS 1.3 may answer a key update while reading).
    var readWantsWrite = false
    /// The handler has been told about a failure or end it has not read yet.
    weak var channel: SocketChannel?
    private(set) var deadline: UInt64 = 0
    /// The words of the last failure, for logs and 502 bodies.
    private(set) var failureText: String?
    let fd: Int32

    init(role: Role, fd: Int32) {
        self.role = role
        self.fd = fd
        switch role {
        case .server(let context): ssl = context.makeSSL(fd: fd)
        case .client(let context, _): ssl = context.makeSSL(fd: fd)
        }
        if ssl == nil { phase = .failed(reason: "ssl_new") }
    }

    var isHandshaking: Bool { phase == .handshaking }

    var isFailed: Bool {
        if case .failed = phase { return true }
        return false
    }

    /// Decrypted bytes OpenSSL holds that the socket will not signal again.
    var hasBufferedPlaintext: Bool {
        guard let ssl, phase == .established else { return false }
        return SSL_pending(ssl) > 0
    }

    /// Arms the handshake deadline (from the listener's or endpoint's `tls_handshake` timeout).
    func startClock(now: UInt64) {
        switch role {
        case .server(let context): deadline = now + context.handshakeTimeoutMilliseconds
        case .client(let context, _): deadline = now + context.handshakeTimeoutMilliseconds
        }
    }

    /// Advances the handshake as far as the socket allows.
    func handshake() -> Step {
        guard let ssl, phase == .handshaking else { return isFailed ? .failed : .done }
        ERR_clear_error()
        errno = 0
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            phase = .established
            deadline = 0
            if case .server(let context) = role { context.stats.handshakeCompleted(version: String(cString: SSL_get_version(ssl))) }
            return .done
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ:
            handshakeWantsWrite = false
            return .wantRead
        case SSL_ERROR_WANT_WRITE:
            handshakeWantsWrite = true
            return .wantWrite
        case let code:
            fail(Self.reason(code: code))
            return .failed
        }
    }

    /// Gives up on the handshake: its deadline passed or the worker is closing everything.
    func abandon(reason: String) {
        guard phase == .handshaking else { return }
        fail(reason)
    }

    private func fail(_ reason: String) {
        guard !isFailed else { return }
        deadline = 0
        switch role {
        case .server(let context):
            var counted = reason
            if reason == "http_request" {
                counted = "plain_http"
                context.stats.plainHTTP.wrappingAdd(1, ordering: .relaxed)
                // As nginx does: a plain-HTTP client learns in plain text why nothing works.
                if context.answersPlainHTTP { Self.answerPlainHTTP(fd) }
            }
            context.stats.handshakeFailed(reason: counted)
            failureText = reason.replacingOccurrences(of: "_", with: " ")
            phase = .failed(reason: counted)
        case .client(let context, let endpoint):
            context.stats.upstreamHandshakeFailures.wrappingAdd(1, ordering: .relaxed)
            let words = ssl.map { TLSClientContext.failureReason($0, queued: reason.replacingOccurrences(of: "_", with: " ")) } ?? reason
            failureText = "TLS handshake with \(endpoint) failed: \(words)"
            Log.warning("\(failureText!)")
            phase = .failed(reason: reason)
        }
    }

    private static func answerPlainHTTP(_ fd: Int32) {
        // The rest of the request is read away first: closing a socket with unread bytes sends a
        // reset, which can destroy the answer before the client reads it.
        var sink = [UInt8](repeating: 0, count: 16_384)
        for _ in 0..<4 where sink.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
        let response = HTTPErrorResponse.errorResponse(
            status: 400, message: "This port speaks HTTPS: use https:// to reach it.", close: true)
        _ = response.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// The failure of the last OpenSSL call as a snake_case reason: OpenSSL's reason string
    /// (`wrong_version_number`, `no_shared_cipher`), or what the socket said.
    private static func reason(code: Int32) -> String {
        let queued = ERR_peek_error()
        if code == SSL_ERROR_SSL || queued != 0 {
            let words = TLSError.drainReason(fallback: "protocol error")
            return words.lowercased().replacingOccurrences(of: " ", with: "_")
        }
        if code == SSL_ERROR_SYSCALL {
            return errno == 0 ? "closed_during_handshake" : "reset"
        }
        if code == SSL_ERROR_ZERO_RETURN { return "closed_during_handshake" }
        return "error_\(code)"
    }

    /// Reads decrypted bytes, filling `buffer` from as many records as are there: the count, 0 at
    /// the peer's end of stream, -1 when nothing is there yet, -2 on a failure.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let ssl else { return -2 }
        switch phase {
        case .handshaking: return -1
        case .failed: return -2
        case .established: break
        }
        var total = 0
        while total < buffer.count {
            ERR_clear_error()
            errno = 0
            let n = SSL_read(ssl, buffer.baseAddress! + total, Int32(min(buffer.count - total, Int(Int32.max))))
            if n > 0 {
                total += Int(n)
                continue
            }
            switch SSL_get_error(ssl, n) {
            case SSL_ERROR_WANT_READ:
                return total > 0 ? total : -1
            case SSL_ERROR_WANT_WRITE:
                readWantsWrite = true
                return total > 0 ? total : -1
            case SSL_ERROR_ZERO_RETURN:
                // The end comes again on the next read, after these bytes are passed on.
                return total
            case SSL_ERROR_SYSCALL where errno == 0:
                return total
            default:
                ERR_clear_error()
                return total > 0 ? total : -2
            }
        }
        return total
    }

    /// Encrypts and sends up to `count` bytes: how many were taken, -1 when the socket is full,
    /// -2 on a failure. A retry after -1 must start with the same bytes (OpenSSL's rule).
    func write(_ base: UnsafeRawPointer, _ count: Int) -> Int {
        guard let ssl, phase == .established else { return isFailed ? -2 : -1 }
        ERR_clear_error()
        let n = SSL_write(ssl, base, Int32(min(count, Int(Int32.max))))
        if n > 0 { return Int(n) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ:
            return -1
        default:
            ERR_clear_error()
            return -2
        }
    }

    /// Sends close_notify (once, best effort: a full socket just loses it).
    func sendCloseNotify() {
        guard let ssl, phase == .established else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// Frees the OpenSSL object; the descriptor stays the channel's to close.
    func free() {
        if let ssl { SSL_free(ssl) }
        ssl = nil
        deadline = 0
    }

    /// The name the client asked for by SNI, once the handshake is done.
    var serverName: String? {
        guard let ssl, phase == .established else { return nil }
        return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }

    /// The negotiated protocol version, e.g. `TLSv1.3`.
    var version: String? {
        guard let ssl, phase == .established else { return nil }
        return String(cString: SSL_get_version(ssl))
    }

    // MARK: - WorkerConnection (the handshake deadline rides the worker's sweep)

    var servingTarget: EndpointTarget? { nil }

    func deadlinePassed(now: UInt64) {
        channel?.handshakeAbandoned(reason: "handshake_timeout")
    }

    func forceClose(reason: String) {
        channel?.handshakeAbandoned(reason: "closed_by_proxy")
    }
}
