/// Which configured certificate answers a handshake: the first whose names match the client's SNI,
/// else the first one (the default), as nginx and HAProxy choose.
///
/// Pure so that the wildcard rules are tested without a handshake; the I/O layer extracts each
/// certificate's DNS names (subjectAltName, else the subject CN) and calls `index` from its SNI callback.
public struct CertificateSelection: Sendable, Equatable {
    /// Lower-cased names of each certificate, in config order.
    public let names: [[String]]

    public init(names: [[String]]) {
        self.names = names.map { $0.map { $0.lowercased() } }
    }

    /// The certificate for `serverName` (`nil` when the client sent no SNI): an exact name wins over
    /// a wildcard anywhere in the list, then the first wildcard match, then certificate 0.
    public func index(for serverName: String?) -> Int {
        guard let serverName, !serverName.isEmpty else { return 0 }
        let host = Self.trimmed(serverName.lowercased())
        if let exact = names.firstIndex(where: { $0.contains(host) }) { return exact }
        if let wildcard = names.firstIndex(where: { $0.contains { Self.matches(pattern: $0, host: host) } }) { return wildcard }
        return 0
    }

    /// RFC 6125 §6.4.3 as browsers apply it: `*` only as the whole left-most label, matching exactly
    /// one label (`*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`).
    public static func matches(pattern: String, host: String) -> Bool {
        let pattern = trimmed(pattern.lowercased())
        let host = trimmed(host.lowercased())
        guard pattern.hasPrefix("*.") else { return pattern == host }
        let suffix = pattern.dropFirst(1)  // ".example.com"
        // A wildcard over a bare top-level label (`*.com`) would match too much.
        guard suffix.dropFirst().contains(".") else { return false }
        guard host.hasSuffix(suffix) else { return false }
        let label = host.dropLast(suffix.count)
        return !label.isEmpty && !label.contains(".")
    }

    /// A fully qualified name's trailing dot does not change which host it names.
    private static func trimmed(_ name: String) -> String {
        name.hasSuffix(".") ? String(name.dropLast()) : name
    }
}
