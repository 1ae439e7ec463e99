/// A listener's `routes`, compiled once per snapshot for a lookup that allocates nothing.
///
/// Order of specificity, first match wins (the order `docs/routing.md` documents):
/// 1. the host decides first: an exact host, then wildcards with the longest suffix first
///    (`*.eu.example.com` before `*.example.com`), then routes with no host;
/// 2. within one host, the longest `path_prefix` first, a route without a prefix last;
/// 3. what validation allows beyond that (never the same host and prefix twice) keeps config order.
///
/// Patterns are lowered and sorted here, so a request costs one pass over at most the routes it
/// could match, comparing bytes in place: no `String` is built per request. With 50 routes the
/// scan is a few hundred byte comparisons, far below one read system call.
public struct RouteTable: Sendable, Equatable {
    /// What a route asks of the host.
    public enum HostPattern: Sendable, Equatable {
        /// Any host, or none.
        case any
        /// This host, lowercased, without a trailing dot.
        case exact([UInt8])
        /// Hosts ending in this suffix (lowercased, starting with the dot) with at least one label before it.
        case wildcard(suffix: [UInt8])

        /// Parses a configured `host` (already validated); `nil` is any host.
        public init(_ text: String?) {
            guard let text else {
                self = .any
                return
            }
            var bytes = Array(text.utf8).map(RouteTable.lowercased)
            if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
            if bytes.starts(with: [UInt8(ascii: "*")]) {
                self = .wildcard(suffix: Array(bytes.dropFirst()))
            } else {
                self = .exact(bytes)
            }
        }

        /// 0 for exact, 1 for wildcards, 2 for any: the first key of the order.
        var rank: Int {
            switch self {
            case .exact: return 0
            case .wildcard: return 1
            case .any: return 2
            }
        }

        /// Whether `host` (port already removed) matches, ignoring ASCII case.
        func matches(_ host: UnsafeRawBufferPointer) -> Bool {
            switch self {
            case .any:
                return true
            case .exact(let pattern):
                return host.count == pattern.count && RouteTable.equalsLowered(host, 0, pattern)
            case .wildcard(let suffix):
                // `.example.com` itself has an empty first label: not a host under the wildcard.
                guard host.count > suffix.count, host[0] != UInt8(ascii: ".") else { return false }
                return RouteTable.equalsLowered(host, host.count - suffix.count, suffix)
            }
        }
    }

    /// One compiled route.
    public struct Entry: Sendable, Equatable {
        /// Index of the route in the listener's `routes`.
        public let route: Int
        public let host: HostPattern
        /// Empty when the route matches any path.
        public let pathPrefix: [UInt8]
        public let stripPrefix: Bool
    }

    /// The routes in match order.
    public let entries: [Entry]

    /// Compiles `routes` (validated: patterns well-formed, no two alike) into match order.
    public init(_ routes: [RouteConfig]) {
        let compiled = routes.enumerated().map { index, route in
            Entry(route: index, host: HostPattern(route.host), pathPrefix: Array((route.pathPrefix ?? "").utf8), stripPrefix: route.stripPrefix)
        }
        entries = compiled.sorted(by: Self.precedes)
    }

    /// Whether there are no routes (every request goes to the default).
    public var isEmpty: Bool { entries.isEmpty }

    /// The order of the table: host rank, longer wildcard suffix, longer prefix, then config order.
    static func precedes(_ a: Entry, _ b: Entry) -> Bool {
        if a.host.rank != b.host.rank { return a.host.rank < b.host.rank }
        if case .wildcard(let x) = a.host, case .wildcard(let y) = b.host, x.count != y.count { return x.count > y.count }
        if a.pathPrefix.count != b.pathPrefix.count { return a.pathPrefix.count > b.pathPrefix.count }
        return a.route < b.route
    }

    /// The first route matching `host` (a `Host` value or a server name, port allowed; `nil` when the
    /// request has none) and `path` (the path part of the target, query excluded).
    public func match(host: UnsafeRawBufferPointer?, path: UnsafeRawBufferPointer) -> Entry? {
        let name = host.map(Self.hostName) ?? UnsafeRawBufferPointer(start: nil, count: 0)
        let hasHost = host != nil
        for entry in entries {
            if case .any = entry.host {} else if !hasHost { continue }
            guard entry.host.matches(name) else { continue }
            if Self.pathMatches(path, prefix: entry.pathPrefix) { return entry }
        }
        return nil
    }

    /// The route for an HTTP request: `target` as on the request line, `hostHeader` the `Host` value.
    ///
    /// An absolute-form target (`GET http://host/path`) names the host itself, and wins over
    /// `Host` (RFC 9112 §3.2.2); authority-form (`CONNECT host:port`) matches by that authority
    /// and no path; `*` (OPTIONS) has no path.
    public func match(target: UnsafeRawBufferPointer, hostHeader: UnsafeRawBufferPointer?) -> RouteMatch? {
        let parts = RequestTargetParts(target)
        let host = parts.authority.map { UnsafeRawBufferPointer(rebasing: target[$0]) } ?? hostHeader
        guard let entry = match(host: host, path: UnsafeRawBufferPointer(rebasing: target[parts.path])) else { return nil }
        let strip = entry.stripPrefix ? entry.pathPrefix.count : 0
        return RouteMatch(route: entry.route, pathStart: parts.path.lowerBound, stripLength: strip)
    }

    /// `String` convenience over the byte lookup; native strings hand over their bytes without a copy.
    public func match(target: String, hostHeader: String?) -> RouteMatch? {
        var target = target
        var host = hostHeader
        return target.withUTF8 { t in
            guard host != nil else { return match(target: UnsafeRawBufferPointer(t), hostHeader: nil) }
            return host!.withUTF8 { h in match(target: UnsafeRawBufferPointer(t), hostHeader: UnsafeRawBufferPointer(h)) }
        }
    }

    /// The host part of a `Host` value or server name: the port and one trailing dot removed
    /// (`Example.com.:8080` → `Example.com`, `[::1]:80` → `[::1]`); case is left to the comparison.
    static func hostName(_ value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var end = value.count
        if value.first == UInt8(ascii: "[") {
            // An IP literal: everything up to the bracket, whatever follows.
            if let close = value.firstIndex(of: UInt8(ascii: "]")) { end = close + 1 }
        } else if let colon = value.lastIndex(of: UInt8(ascii: ":")) {
            end = colon
        }
        if end > 0 && value[end - 1] == UInt8(ascii: ".") { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: value[0..<end])
    }

    /// Prefix on a segment boundary: `/api` takes `/api` and `/api/x`, not `/apix`. Case-sensitive,
    /// and on the bytes as sent (no percent-decoding: routing is not access control).
    static func pathMatches(_ path: UnsafeRawBufferPointer, prefix: [UInt8]) -> Bool {
        if prefix.isEmpty { return true }
        guard path.count >= prefix.count else { return false }
        for i in 0..<prefix.count where path[i] != prefix[i] { return false }
        return path.count == prefix.count || path[prefix.count] == UInt8(ascii: "/")
    }

    /// Whether `bytes[offset...]` starts with `lowered`, folding ASCII case of `bytes`.
    static func equalsLowered(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ lowered: [UInt8]) -> Bool {
        for i in 0..<lowered.count where lowercased(bytes[offset + i]) != lowered[i] { return false }
        return true
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}

/// Which route took a request, and what stripping its prefix removes from the target.
public struct RouteMatch: Sendable, Equatable {
    /// Index of the route in the listener's `routes`.
    public let route: Int
    /// Where the path starts in the request target (0 for origin-form, after the authority for absolute-form).
    public let pathStart: Int
    /// Bytes of the path to remove before forwarding (the prefix length with `strip_prefix`, else 0).
    public let stripLength: Int

    public init(route: Int, pathStart: Int, stripLength: Int) {
        self.route = route
        self.pathStart = pathStart
        self.stripLength = stripLength
    }

    /// The target to send upstream: `target` with the prefix cut out, and `/` put back where the
    /// path became empty (`/api` → `/`, `/api?q=1` → `/?q=1`, `http://h/api/x` → `http://h/x`).
    public func upstreamTarget(_ target: String) -> String {
        guard stripLength > 0 else { return target }
        let bytes = Array(target.utf8)
        let cut = pathStart + stripLength
        guard cut <= bytes.count else { return target }
        var result = Array(bytes[0..<pathStart])
        if cut == bytes.count || bytes[cut] != UInt8(ascii: "/") { result.append(UInt8(ascii: "/")) }
        result.append(contentsOf: bytes[cut...])
        return String(decoding: result, as: UTF8.self)
    }
}

/// The host and path positions in a request target, found without copying.
struct RequestTargetParts {
    /// Range of the authority in absolute-form (`http://HOST:PORT/…`) or authority-form; `nil` in origin-form.
    var authority: Range<Int>?
    /// Range of the path, query and fragment excluded; empty for `*`, authority-form and `http://host`.
    var path: Range<Int>

    init(_ target: UnsafeRawBufferPointer) {
        let slash = UInt8(ascii: "/")
        if target.first == slash {
            authority = nil
            path = 0..<Self.pathEnd(target, from: 0)
            return
        }
        if let afterScheme = Self.schemeEnd(target) {
            var end = afterScheme
            while end < target.count, target[end] != slash, target[end] != UInt8(ascii: "?"), target[end] != UInt8(ascii: "#") { end += 1 }
            // A userinfo (`user@host`) is not part of the host.
            var start = afterScheme
            for i in afterScheme..<end where target[i] == UInt8(ascii: "@") { start = i + 1 }
            authority = start..<end
            path = end < target.count && target[end] == slash ? end..<Self.pathEnd(target, from: end) : end..<end
            return
        }
        if target.count == 1 && target[0] == UInt8(ascii: "*") {
            authority = nil
        } else {
            authority = 0..<target.count  // CONNECT host:port
        }
        path = target.count..<target.count
    }

    /// Index after `http://` or `https://` (scheme case-insensitive), or `nil`.
    private static func schemeEnd(_ target: UnsafeRawBufferPointer) -> Int? {
        for pattern in schemes where target.count >= pattern.count && RouteTable.equalsLowered(target, 0, pattern) {
            return pattern.count
        }
        return nil
    }

    private static let schemes: [[UInt8]] = [Array("http://".utf8), Array("https://".utf8)]

    private static func pathEnd(_ target: UnsafeRawBufferPointer, from start: Int) -> Int {
        var end = start
        while end < target.count, target[end] != UInt8(ascii: "?"), target[end] != UInt8(ascii: "#") { end += 1 }
        return end
    }
}
