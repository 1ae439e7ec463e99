extension ConfigLoader {
    /// The most probe headers a profile may set; probes are health checks, not clients.
    public static let maxProbeHeaders = 8
    /// The highest endpoint weight (a canary at 1 in 1000 is the finest useful split).
    public static let maxWeight = 1000

    /// Checks the rules a decoded or flag-built config must meet: names, uniqueness, references,
    /// ranges and cross-key constraints. Key paths use the JSON key names.
    public static func validate(_ config: Config, file: String, use: ConfigUse = .proxy) throws(ConfigError) {
        let validator = ConfigValidator(file: file, use: use)
        try validator.check(config)
    }

    /// Whether `host` is a loopback name or address (`localhost`, `127.0.0.0/8`, `::1`).
    public static func isLoopback(host: String) -> Bool {
        if host == "localhost" { return true }
        guard let bytes = IPAddressText.parse(host) else { return false }
        if bytes.count == 4 { return bytes[0] == 127 }
        if bytes == [UInt8](repeating: 0, count: 15) + [1] { return true }
        // IPv4-mapped ::ffff:127.x.y.z
        return bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
    }
}

/// The rules of `ConfigLoader.validate`, one function per section, each naming the key it refuses.
private struct ConfigValidator {
    let file: String
    let use: ConfigUse

    private func fail(_ key: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, key: key, reason: reason)
    }

    /// Runs every rule in document order, so the first error reported is the first in the file.
    func check(_ config: Config) throws(ConfigError) {
        if use == .proxy {
            guard !config.listeners.isEmpty else { throw fail("listeners", "at least one listener is required") }
            guard !config.profiles.isEmpty else { throw fail("profiles", "at least one profile is required") }
        }
        try checkListeners(config)
        try checkProfiles(config.profiles)
        try checkAdmin(config.admin, listeners: config.listeners)
        try checkDatabases(config.databases)
        if let stateFile = config.stateFile, stateFile.isEmpty { throw fail("state_file", "must not be empty (leave it out to keep state in memory)") }
        try checkTimeouts(config.timeouts)
        try checkLimits(config.limits)
        guard !config.accessLog.isEmpty else { throw fail("access_log", "must be \"stderr\", \"off\" or a file path") }
        guard config.workers >= 0 else { throw fail("workers", "must be 0 (one per CPU) or more, got \(config.workers)") }
        if let cluster = config.cluster { try checkCluster(cluster) }
    }

    /// At least one etcd member, a prefix that is an absolute key path, a node name that fits in one key.
    private func checkCluster(_ cluster: ClusterConfig) throws(ConfigError) {
        guard !cluster.etcd.isEmpty else { throw fail("cluster.etcd", "at least one etcd member URL is required") }
        guard cluster.prefix.hasPrefix("/"), cluster.prefix.count > 1, !cluster.prefix.hasSuffix("/") else {
            throw fail("cluster.prefix", "must start with / and not end with / (such as /cutover/prod), got \"\(cluster.prefix)\"")
        }
        guard !cluster.prefix.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7f }) else {
            throw fail("cluster.prefix", "must not contain spaces or control characters")
        }
        try checkName(cluster.node, key: "cluster.node")
        if let tls = cluster.tls {
            guard cluster.etcd.contains(where: \.secure) else {
                throw fail("cluster.tls", "is set, but no member in cluster.etcd is https://")
            }
            guard (tls.cert == nil) == (tls.key == nil) else {
                throw fail(tls.cert == nil ? "cluster.tls.cert" : "cluster.tls.key", "a client certificate needs both cert and key")
            }
        }
    }

    /// Names, duplicate names and addresses (reported on the later one), and profile references.
    private func checkListeners(_ config: Config) throws(ConfigError) {
        let profileNames = config.profiles.map(\.name)
        for (i, listener) in config.listeners.enumerated() {
            let path = "listeners[\(i)]"
            try checkName(listener.name, key: "\(path).name")
            if let first = config.listeners[..<i].firstIndex(where: { $0.name == listener.name }) {
                throw fail("\(path).name", "duplicate listener name \"\(listener.name)\" (also listeners[\(first)])")
            }
            if let other = config.listeners[..<i].first(where: { Self.overlaps($0.address, listener.address) }) {
                throw fail("\(path).address", "\(listener.address) is already used by listener \"\(other.name)\" (\(other.address))")
            }
            if let profile = listener.profile {
                try checkProfileReference(profile, key: "\(path).profile", profiles: profileNames)
            } else if listener.routes.isEmpty {
                throw fail("\(path).profile", "required key is missing (only a listener with routes may leave it out)")
            }
            try checkRoutes(listener, path: path, profiles: profileNames)
            try checkListenerTLS(listener, path: path)
        }
    }

    /// A TLS listener needs a certificate; a redirect to HTTPS only makes sense on plain HTTP.
    private func checkListenerTLS(_ listener: ListenerConfig, path: String) throws(ConfigError) {
        if let tls = listener.tls, tls.certificates.isEmpty {
            throw fail("\(path).tls.certificates", "at least one certificate is required ({\"cert\": \"site.pem\", \"key\": \"site.key\"})")
        }
        guard listener.redirectHTTPSPort != nil else { return }
        guard listener.mode == .http else { throw fail("\(path).redirect_https", "only an http listener can redirect (this one is tcp)") }
        guard listener.tls == nil else {
            throw fail("\(path).redirect_https", "this listener already speaks TLS; set redirect_https on the plain listener")
        }
    }

    private func checkProfileReference(_ name: String, key: String, profiles: [String]) throws(ConfigError) {
        guard profiles.contains(name) else {
            throw fail(key, "no profile named \"\(name)\" (profiles: \(profiles.joined(separator: ", ")))")
        }
    }

    /// Each route: a known profile, well-formed patterns, something to match, and no two routes
    /// that match exactly the same requests (the later would be dead, which is always a mistake).
    private func checkRoutes(_ listener: ListenerConfig, path: String, profiles: [String]) throws(ConfigError) {
        for (j, route) in listener.routes.enumerated() {
            let key = "\(path).routes[\(j)]"
            if let host = route.host { try checkRouteHost(host, key: "\(key).host") }
            if let prefix = route.pathPrefix {
                // A TLS passthrough connection shows its server name and nothing else.
                guard listener.mode == .http else {
                    throw fail("\(key).path_prefix", "a tcp listener routes by TLS server name (SNI) only: use host")
                }
                try checkPathPrefix(prefix, key: "\(key).path_prefix")
            }
            if route.stripPrefix && route.pathPrefix == nil {
                throw fail("\(key).strip_prefix", "needs a path_prefix to strip")
            }
            guard route.host != nil || route.pathPrefix != nil else {
                throw fail(key, "matches every request (no host, no path_prefix): make \"\(route.profile)\" the listener's profile instead")
            }
            try checkProfileReference(route.profile, key: "\(key).profile", profiles: profiles)
            let pattern = (RouteTable.HostPattern(route.host), route.pathPrefix ?? "")
            if let k = listener.routes[..<j].firstIndex(where: { (RouteTable.HostPattern($0.host), $0.pathPrefix ?? "") == pattern }) {
                throw fail(key, "matches exactly the same requests as \(path).routes[\(k)] (\(listener.routes[k].summary))")
            }
        }
    }

    /// `example.com`, `*.example.com` or an IP literal; no port (matching ignores it), no scheme.
    private func checkRouteHost(_ host: String, key: String) throws(ConfigError) {
        var name = Substring(host)
        if name.hasPrefix("*.") { name = name.dropFirst(2) }
        if name.hasSuffix(".") { name = name.dropLast() }
        if name.hasPrefix("["), name.hasSuffix("]"), !host.hasPrefix("*") {
            guard IPAddressText.parse(String(name.dropFirst().dropLast())) != nil else { throw fail(key, "\"\(host)\" is not an IPv6 address") }
            return
        }
        if host.contains("/") { throw fail(key, "\"\(host)\" is not a host name (write the host alone, without scheme or path)") }
        if name.contains(":") { throw fail(key, "\"\(host)\" has a port: host matching ignores ports, leave it out") }
        if host.contains("*") && !host.hasPrefix("*.") || name.contains("*") {
            throw fail(key, "\"\(host)\" is not a host name; a wildcard is written *.example.com (one or more labels)")
        }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let valid = !name.isEmpty && labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "-"), UInt8(ascii: "_"):
                    return true
                default:
                    return false
                }
            }
        }
        guard valid else { throw fail(key, "\"\(host)\" is not a host name (letters, digits, \"-\" and dots; a wildcard is *.example.com)") }
    }

    /// Starts with `/`, no query, no trailing `/` (matching is on segment boundaries already).
    private func checkPathPrefix(_ prefix: String, key: String) throws(ConfigError) {
        guard prefix.hasPrefix("/") else { throw fail(key, "\"\(prefix)\" must start with \"/\"") }
        guard prefix != "/" else { throw fail(key, "\"/\" matches every path: leave path_prefix out") }
        guard !prefix.hasSuffix("/") else {
            throw fail(key, "\"\(prefix)\" ends with \"/\": write \"\(prefix.dropLast())\" (it matches \(prefix.dropLast()) and \(prefix)…, never \(prefix.dropLast())x)")
        }
        guard !prefix.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) else {
            throw fail(key, "\"\(prefix)\" contains a space, a control character, \"?\" or \"#\" (a prefix is matched against the path only)")
        }
    }

    /// Whether two listen addresses would collide at bind time; port 0 never collides (the OS picks).
    static func overlaps(_ a: HostPort, _ b: HostPort) -> Bool {
        guard a.port == b.port, a.port != 0 else { return false }
        return a.host == b.host || isWildcard(a.host) || isWildcard(b.host)
    }

    private static func isWildcard(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "*"
    }

    /// Each profile with its endpoints, probe, passive counters and gate.
    private func checkProfiles(_ profiles: [ProfileConfig]) throws(ConfigError) {
        for (i, profile) in profiles.enumerated() {
            let path = "profiles[\(i)]"
            try checkName(profile.name, key: "\(path).name")
            if let first = profiles[..<i].firstIndex(where: { $0.name == profile.name }) {
                throw fail("\(path).name", "duplicate profile name \"\(profile.name)\" (also profiles[\(first)])")
            }
            guard !profile.endpoints.isEmpty else { throw fail("\(path).endpoints", "at least one endpoint is required") }
            for (j, endpoint) in profile.endpoints.enumerated() {
                try checkEndpoint(endpoint, index: j, in: profile, path: "\(path).endpoints[\(j)]")
            }
            if let probe = profile.probe { try checkProbe(probe, path: "\(path).probe") }
            guard profile.passive.failures >= 0 else { throw fail("\(path).passive.failures", "must be 0 (off) or more") }
            guard profile.passive.status5xx >= 0 else { throw fail("\(path).passive.status_5xx", "must be 0 (off) or more") }
            guard profile.maxHeld >= 0 else { throw fail("\(path).max_held", "must be 0 or more, got \(profile.maxHeld)") }
            try checkGate(profile.gate, path: "\(path).maintenance")
            try checkGuard(profile.guardThresholds, path: "\(path).guard")
        }
    }

    /// Guard thresholds: ratios in range, counts not negative, an interval the timer can keep.
    private func checkGuard(_ thresholds: GuardConfig, path: String) throws(ConfigError) {
        if let ratio = thresholds.max5xxRatio, !(0...1).contains(ratio) {
            throw fail("\(path).max_5xx_ratio", "must be between 0 and 1, got \(ratio)")
        }
        guard thresholds.minRequests >= 0 else { throw fail("\(path).min_requests", "must be 0 or more, got \(thresholds.minRequests)") }
        if let failures = thresholds.maxConnectFailures, failures < 0 {
            throw fail("\(path).max_connect_failures", "must be 0 or more, got \(failures)")
        }
        if let p99 = thresholds.maxP99, p99 <= .zero { throw fail("\(path).max_p99", "must be longer than 0") }
        if let ratio = thresholds.maxP99Ratio, ratio <= 0 { throw fail("\(path).max_p99_ratio", "must be more than 0, got \(ratio)") }
        guard thresholds.interval >= .milliseconds(10) else { throw fail("\(path).interval", "must be at least 10ms") }
    }

    /// One endpoint: name unique within its profile, a real port, ranges, and a config-time state.
    private func checkEndpoint(_ endpoint: EndpointConfig, index j: Int, in profile: ProfileConfig, path: String) throws(ConfigError) {
        try checkName(endpoint.name, key: "\(path).name")
        if profile.endpoints[..<j].contains(where: { $0.name == endpoint.name }) {
            throw fail("\(path).name", "duplicate endpoint name \"\(endpoint.name)\" in profile \"\(profile.name)\"")
        }
        // Port 0 means "any" when binding, but nothing can be reached on it.
        guard endpoint.address.port != 0 else {
            throw fail("\(path).address", "\(endpoint.address) has port 0 (only listeners may use port 0)")
        }
        guard endpoint.priority >= 0 else { throw fail("\(path).priority", "must be 0 or more (lower wins), got \(endpoint.priority)") }
        guard (0...ConfigLoader.maxWeight).contains(endpoint.weight) else {
            throw fail("\(path).weight", "must be 0-\(ConfigLoader.maxWeight), got \(endpoint.weight)")
        }
        // Draining needs a deadline and in-flight counts that only exist at runtime.
        guard endpoint.state != .draining else {
            throw fail("\(path).state", "\"draining\" is a runtime state (set by switch or drain); configure online or offline")
        }
        if let probe = endpoint.probe { try checkProbe(probe, path: "\(path).probe") }
        if let tls = endpoint.tls, let name = tls.serverName, name.isEmpty || name.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw fail("\(path).tls.server_name", "\"\(name)\" is not a host name")
        }
    }

    /// Probe fields that would produce a malformed request or a check that can never settle.
    private func checkProbe(_ probe: ProbeConfig, path: String) throws(ConfigError) {
        guard !probe.method.isEmpty, probe.method.utf8.allSatisfy(Self.isTokenByte) else {
            throw fail("\(path).method", "\"\(probe.method)\" is not an HTTP method")
        }
        guard probe.path.hasPrefix("/") else { throw fail("\(path).path", "\"\(probe.path)\" must start with \"/\"") }
        // The path goes on the request line verbatim: a space or CR/LF would split it.
        guard !probe.path.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            throw fail("\(path).path", "\"\(probe.path)\" contains spaces or control characters (percent-encode them)")
        }
        if let host = probe.host, host.isEmpty || host.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw fail("\(path).host", "\"\(host)\" is not a host name")
        }
        guard probe.headers.count <= ConfigLoader.maxProbeHeaders else {
            throw fail("\(path).headers", "at most \(ConfigLoader.maxProbeHeaders) headers, got \(probe.headers.count)")
        }
        for header in probe.headers {
            let key = "\(path).headers.\(header.name)"
            guard !header.name.isEmpty, header.name.utf8.allSatisfy(Self.isTokenByte) else {
                throw fail(key, "\"\(header.name)\" is not a header name")
            }
            guard !Self.hasLineBreakOrNUL(header.value) else { throw fail(key, "header values may not contain CR, LF or NUL") }
        }
        guard !probe.expectStatus.isEmpty else { throw fail("\(path).expect_status", "at least one status or range is required") }
        for (i, range) in probe.expectStatus.enumerated() where range.lowerBound < 100 || range.upperBound > 599 {
            let text = range.count == 1 ? "\(range.lowerBound)" : "\(range.lowerBound)-\(range.upperBound)"
            throw fail("\(path).expect_status[\(i)]", "\(text) is outside 100-599")
        }
        if probe.port == 0 { throw fail("\(path).port", "0 is not a port (want 1-65535)") }
        if probe.type == .command {
            guard let executable = probe.command.first, !executable.isEmpty else {
                throw fail("\(path).command", "required when type is \"command\": the executable and its arguments, e.g. [\"/usr/local/bin/check\", \"--quick\"]")
            }
        }
        guard probe.interval > .zero else { throw fail("\(path).interval", "must be greater than 0") }
        guard probe.timeout > .zero else { throw fail("\(path).timeout", "must be greater than 0") }
        // A timeout longer than the interval would let probes of one endpoint overlap.
        guard probe.timeout <= probe.interval else {
            throw fail("\(path).timeout", "\(DurationText.format(probe.timeout)) is longer than interval \(DurationText.format(probe.interval))")
        }
        guard probe.rise >= 1 else { throw fail("\(path).rise", "must be 1 or more, got \(probe.rise)") }
        guard probe.fall >= 1 else { throw fail("\(path).fall", "must be 1 or more, got \(probe.fall)") }
    }

    /// The bypass header must be sendable and must carry a secret.
    private func checkGate(_ gate: GateConfig, path: String) throws(ConfigError) {
        guard let header = gate.bypass.header else { return }
        guard !header.name.isEmpty, header.name.utf8.allSatisfy(Self.isTokenByte) else {
            throw fail("\(path).bypass.header.name", "\"\(header.name)\" is not a header name")
        }
        // An empty secret would let anyone through who sends the header at all.
        guard !header.value.isEmpty else { throw fail("\(path).bypass.header.value", "must not be empty") }
        guard !Self.hasLineBreakOrNUL(header.value) else {
            throw fail("\(path).bypass.header.value", "header values may not contain CR, LF or NUL")
        }
    }

    /// Admin socket and HTTP listener settings.
    private func checkAdmin(_ admin: AdminConfig, listeners: [ListenerConfig]) throws(ConfigError) {
        if let socket = admin.socket, socket.isEmpty { throw fail("admin.socket", "must not be empty (leave it out for no socket)") }
        guard admin.socketMode <= 0o777 else {
            throw fail("admin.socket_mode", "\"0\(String(admin.socketMode, radix: 8))\" has bits beyond 0777")
        }
        if let group = admin.socketGroup, group.isEmpty { throw fail("admin.socket_group", "must not be empty") }
        if let token = admin.token, token.isEmpty { throw fail("admin.token", "must not be empty") }
        guard (1...10_000).contains(admin.maxSessions) else { throw fail("admin.max_sessions", "\(admin.maxSessions) is not between 1 and 10000") }
        guard admin.readTimeout >= .milliseconds(100) else { throw fail("admin.read_timeout", "\(admin.readTimeout) is shorter than 100ms") }
        guard let http = admin.http else { return }
        if let listener = listeners.first(where: { Self.overlaps($0.address, http) }) {
            throw fail("admin.http", "\(http) is already used by listener \"\(listener.name)\" (\(listener.address))")
        }
        // Switches and gates are powerful: off loopback they need a bearer token.
        guard ConfigLoader.isLoopback(host: http.host) || admin.token != nil else {
            throw fail("admin.http", "\(http) is not a loopback address, so admin.token is required")
        }
    }

    /// Database names are unique and name a driver this build has.
    private func checkDatabases(_ databases: [DatabaseConfig]) throws(ConfigError) {
        for (i, database) in databases.enumerated() {
            let path = "databases[\(i)]"
            try checkName(database.name, key: "\(path).name")
            if let first = databases[..<i].firstIndex(where: { $0.name == database.name }) {
                throw fail("\(path).name", "duplicate database name \"\(database.name)\" (also databases[\(first)])")
            }
            guard database.driver == "postgres" else {
                throw fail("\(path).driver", "\"\(database.driver)\" is not a database driver (use postgres)")
            }
            guard !database.dsn.isEmpty else { throw fail("\(path).dsn", "must not be empty") }
        }
    }

    /// All timeouts but `shutdown` must be positive: a zero timeout would fire at once.
    private func checkTimeouts(_ timeouts: Timeouts) throws(ConfigError) {
        let positive: [(String, Duration)] = [
            ("connect", timeouts.connect), ("header_read", timeouts.headerRead), ("idle", timeouts.idle),
            ("upstream_response", timeouts.upstreamResponse), ("write", timeouts.write), ("tls_handshake", timeouts.tlsHandshake),
            ("client_body", timeouts.clientBody),
        ]
        for (key, value) in positive where value <= .zero {
            throw fail("timeouts.\(key)", "must be greater than 0")
        }
    }

    /// Size limits must admit at least one byte or header; body and idle-pool limits may be 0.
    private func checkLimits(_ limits: Limits) throws(ConfigError) {
        let atLeastOne: [(String, Int)] = [
            ("max_connections", limits.maxConnections), ("max_header_bytes", limits.maxHeaderBytes),
            ("max_header_count", limits.maxHeaderCount), ("max_request_line_bytes", limits.maxRequestLineBytes),
        ]
        for (key, value) in atLeastOne where value < 1 {
            throw fail("limits.\(key)", "must be 1 or more, got \(value)")
        }
        if let body = limits.maxBodyBytes, body < 0 { throw fail("limits.max_body_bytes", "must be 0 or more, got \(body)") }
        guard limits.maxIdleUpstreamPerEndpoint >= 0 else {
            throw fail("limits.max_idle_upstream_per_endpoint", "must be 0 or more, got \(limits.maxIdleUpstreamPerEndpoint)")
        }
    }

    /// Names appear in admin commands (`switch web green`) and metric labels: keep them plain.
    private func checkName(_ name: String, key: String) throws(ConfigError) {
        guard !name.isEmpty else { throw fail(key, "must not be empty") }
        let allowed = name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                return true
            default:
                return false
            }
        }
        guard allowed else { throw fail(key, "\"\(name)\" may only contain letters, digits, \".\", \"_\" and \"-\"") }
    }

    /// RFC 9110 `tchar`: what a method or header name may contain.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    private static func hasLineBreakOrNUL(_ text: String) -> Bool {
        text.utf8.contains { $0 == 0x0D || $0 == 0x0A || $0 == 0 }
    }
}
