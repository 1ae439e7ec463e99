/// The networks whose `X-Forwarded-For` a listener believes (`trusted_proxies`), as nginx's
/// `set_real_ip_from` with `real_ip_recursive on`.
///
/// A connection from inside one of them keeps the `X-Forwarded-For` it sent (ours is appended), and
/// the client the log names is the right-most address in it that is not itself a trusted proxy: the
/// left-hand entries were written by whoever the first untrusted hop was, so they prove nothing.
/// A connection from anywhere else has its forwarding fields replaced (`HTTPForwarding`).
public struct TrustedProxies: Sendable, Equatable {
    public var networks: [CIDR]

    public init(_ networks: [CIDR] = []) {
        self.networks = networks
    }

    /// No network is trusted (the default).
    public var isEmpty: Bool { networks.isEmpty }

    /// Whether `address` (4 or 16 bytes) is inside one of the networks.
    public func contains(_ address: [UInt8]) -> Bool {
        networks.contains { $0.contains(address) }
    }

    /// The client a request from a trusted peer speaks for: walking `X-Forwarded-For` from the
    /// right, the first entry outside the trusted networks; the left-most entry when every one is
    /// trusted; `nil` without the field (the peer itself is then the client).
    ///
    /// An entry that is not an IP address ends the walk: what stands left of garbage cannot be
    /// attributed, so the last address before it (the nearest good hop) is the answer.
    public func client(forwardedFor headers: HTTPHeaders) -> (bytes: [UInt8], text: String)? {
        let entries = headers.values(named: "X-Forwarded-For").flatMap { $0.split(separator: ",") }
        var nearest: (bytes: [UInt8], text: String)?
        for entry in entries.reversed() {
            guard let bytes = Self.address(String(entry)) else { return nearest }
            nearest = (bytes, IPAddressText.format(bytes))
            if !contains(bytes) { return nearest }
        }
        return nearest
    }

    /// An entry as balancers write them: `192.0.2.1`, `2001:db8::1`, and also `[2001:db8::1]`,
    /// `192.0.2.1:4711` or `[2001:db8::1]:4711` (some add the port).
    static func address(_ entry: String) -> [UInt8]? {
        var text = Substring(entry.trimmingASCIIWhitespace)
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            text = text[text.index(after: text.startIndex)..<close]
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            text = text[..<colon]
        }
        return IPAddressText.parse(String(text))
    }
}

extension String {
    /// Without leading and trailing spaces and tabs (list elements in a field value, RFC 9110 §5.6.1).
    fileprivate var trimmingASCIIWhitespace: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return self[first...last]
    }
}
