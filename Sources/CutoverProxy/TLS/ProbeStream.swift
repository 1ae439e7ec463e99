import COpenSSL
import Glibc

/// The bytes of one probe connection, plain or over TLS, on a non-blocking socket the probe
/// thread waits on with `poll` (probes run on their own threads, so waiting there is fine).
struct ProbeStream {
    let fd: Int32
    private var ssl: OpaquePointer?
    /// The last call that returned -1 needs the socket writable (else readable).
    private(set) var waitsForWrite = true

    /// How a handshake ended when it did not succeed.
    enum HandshakeFailure {
        case timedOut
        case failed(String)
    }

    init(fd: Int32) {
        self.fd = fd
    }

    /// Shakes hands as the endpoint's TLS client would; `nil` on success.
    mutating func shakeHands(_ context: TLSClientContext, until deadline: UInt64) -> HandshakeFailure? {
        guard let ssl = context.makeSSL(fd: fd) else { return .failed("cannot create a TLS session") }
        self.ssl = ssl
        while true {
            ERR_clear_error()
            let result = SSL_do_handshake(ssl)
            if result == 1 { return nil }
            let code = SSL_get_error(ssl, result)
            guard code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE else {
                return .failed(TLSClientContext.failureReason(ssl, queued: TLSError.drainReason(fallback: "connection closed")))
            }
            let events = code == SSL_ERROR_WANT_WRITE ? Int16(POLLOUT) : Int16(POLLIN)
            guard Probe.wait(fd, for: events, until: deadline) else { return .timedOut }
        }
    }

    /// Decrypted bytes already read from the socket (poll would not see them).
    var hasBufferedBytes: Bool {
        guard let ssl else { return false }
        return SSL_pending(ssl) > 0
    }

    /// Sends what the socket takes: the count, -1 to wait (`waitsForWrite` says for what), -2 on failure.
    mutating func send(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard let ssl else {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            waitsForWrite = true
            return errno == EAGAIN || errno == EINTR ? -1 : -2
        }
        ERR_clear_error()
        let n = SSL_write(ssl, bytes.baseAddress, Int32(bytes.count))
        if n > 0 { return Int(n) }
        return wouldBlock(ssl, n) ? -1 : -2
    }

    /// Reads: the count, 0 at end of stream, -1 to wait, -2 on failure.
    mutating func receive(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let ssl else {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            return errno == EAGAIN || errno == EINTR ? -1 : -2
        }
        ERR_clear_error()
        errno = 0
        let n = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
        if n > 0 { return Int(n) }
        let code = SSL_get_error(ssl, n)
        if code == SSL_ERROR_ZERO_RETURN || (code == SSL_ERROR_SYSCALL && errno == 0) { return 0 }
        return wouldBlock(ssl, n) ? -1 : -2
    }

    private mutating func wouldBlock(_ ssl: OpaquePointer, _ result: Int32) -> Bool {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ:
            waitsForWrite = false
            return true
        case SSL_ERROR_WANT_WRITE:
            waitsForWrite = true
            return true
        default:
            ERR_clear_error()
            return false
        }
    }

    /// Frees the TLS session (the caller closes the descriptor).
    mutating func close() {
        if let ssl { SSL_free(ssl) }
        ssl = nil
    }
}
