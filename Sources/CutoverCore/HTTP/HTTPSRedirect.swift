/// The `Location` of the `308` a plain listener with `redirect_https` answers: the same host and
/// path on HTTPS. A 308 (not 301) keeps the method and body, so a POST is not turned into a GET.
public enum HTTPSRedirect {
    /// `https://HOST[:PORT]/path?query` for a request with Host header `host` and request-target
    /// `target`; port 443 is left out, the Host header's own port is replaced.
    public static func location(host: String?, target: String, port: UInt16) -> String {
        let name = hostName(host ?? "")
        let authority = port == 443 ? name : "\(name):\(port)"
        return "https://\(authority)\(path(of: target))"
    }

    /// The host of a Host header without its port (`[::1]:8080` → `[::1]`, `a.test:80` → `a.test`).
    static func hostName(_ header: String) -> String {
        let trimmed = header.trimmingCharacters(in: " \t")
        if trimmed.isEmpty { return "localhost" }
        if trimmed.hasPrefix("["), let close = trimmed.firstIndex(of: "]") {
            return String(trimmed[...close])
        }
        if let colon = trimmed.lastIndex(of: ":") { return String(trimmed[..<colon]) }
        return trimmed
    }

    /// The path and query of a request-target; absolute-form loses its scheme and authority, and
    /// `*` (OPTIONS) becomes `/`.
    static func path(of target: String) -> String {
        if target.hasPrefix("/") { return target }
        if let scheme = target.range(of: "://") {
            let rest = target[scheme.upperBound...]
            guard let slash = rest.firstIndex(of: "/") else { return "/" }
            return String(rest[slash...])
        }
        return "/"
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}
