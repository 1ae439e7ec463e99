import COpenSSL

/// Why TLS material could not be loaded: the file, and OpenSSL's reason in words.
///
/// Raised at start and at reload; a reload that meets one is refused and the running certificates
/// keep serving.
enum TLSError: Error, CustomStringConvertible {
    /// A certificate chain file that is missing, unreadable or not PEM.
    case certificate(file: String, reason: String)
    /// A private key file that is missing, unreadable, encrypted or not PEM.
    case key(file: String, reason: String)
    /// A key that is not the private key of the certificate it is paired with.
    case keyMismatch(cert: String, key: String)
    /// A CA bundle (`tls.ca` of an endpoint) that could not be read.
    case authorities(file: String, reason: String)
    /// OpenSSL refused to build a context (out of memory, a broken library).
    case context(reason: String)

    var description: String {
        switch self {
        case .certificate(let file, let reason): return "certificate \(file): \(reason)"
        case .key(let file, let reason): return "key \(file): \(reason)"
        case .keyMismatch(let cert, let key): return "key \(key) does not belong to certificate \(cert)"
        case .authorities(let file, let reason): return "CA bundle \(file): \(reason)"
        case .context(let reason): return "TLS context: \(reason)"
        }
    }

    /// The reason of the oldest error on this thread's OpenSSL error queue, which is then emptied
    /// (a stale entry would be blamed on the next, unrelated call).
    static func drainReason(fallback: String = "unknown error") -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return fallback }
        if let reason = ERR_reason_error_string(code) { return String(cString: reason) }
        return "error \(code)"
    }
}
