/// Walks a `JSONValue` into a `Config`, checking keys and JSON types and tracking the key path.
///
/// Only shape is checked here (unknown keys, types, required keys, syntax of durations, addresses
/// and CIDRs); rules that also apply to flag-built configs live in `ConfigLoader.validate`.
struct ConfigDecoder {
    let file: String
    /// Directory that relative `page_file` paths are resolved against.
    let baseDirectory: String
    /// An agent's config may leave out listeners and profiles.
    var use: ConfigUse = .proxy

    // The accepted keys of each object, in the order they are documented; unknown-key errors
    // list them in this order so the message reads like the reference.
    static let rootKeys = ["listeners", "profiles", "admin", "state_file", "databases", "timeouts", "limits", "access_log", "access_log_format", "workers", "worker_cpu_affinity", "cluster", "trusted_proxies"]
    static let listenerKeys = ["name", "address", "mode", "profile", "routes", "tls", "redirect_https", "proxy_protocol", "trusted_proxies"]
    static let routeKeys = ["host", "path_prefix", "strip_prefix", "profile"]
    static let listenerTLSKeys = ["certificates", "min_version"]
    static let certificateKeys = ["cert", "key"]
    static let upstreamTLSKeys = ["verify", "ca", "server_name"]
    static let profileKeys = [
        "name", "routing", "endpoints", "probe", "passive", "drain_timeout", "hold_timeout", "max_held",
        "hold_when_unavailable", "fail_open", "unknown_is_up", "maintenance", "guard", "send_proxy",
    ]
    static let endpointKeys = ["name", "address", "priority", "weight", "state", "probe", "tls", "send_proxy"]
    static let probeKeys = [
        "type", "method", "path", "host", "headers", "expect_status", "body_contains", "port", "command",
        "interval", "timeout", "rise", "fall",
    ]
    static let passiveKeys = ["failures", "status_5xx"]
    static let guardKeys = ["max_5xx_ratio", "min_requests", "max_connect_failures", "max_p99", "max_p99_ratio", "interval"]
    static let maintenanceKeys = ["page", "page_file", "retry_after", "bypass"]
    static let bypassKeys = ["sources", "header"]
    static let headerKeys = ["name", "value"]
    static let adminKeys = ["socket", "socket_mode", "socket_group", "http", "token", "max_sessions", "read_timeout"]
    static let databaseKeys = ["name", "driver", "dsn"]
    static let clusterKeys = ["etcd", "prefix", "node", "tls", "username", "password"]
    static let clusterTLSKeys = ["ca", "cert", "key", "server_name"]
    static let timeoutKeys = ["connect", "header_read", "idle", "upstream_response", "write", "shutdown", "tls_handshake", "client_body"]
    static let limitKeys = [
        "max_connections", "max_header_bytes", "max_header_count", "max_request_line_bytes", "max_body_bytes",
        "max_idle_upstream_per_endpoint",
    ]

    /// Decodes the top-level object. Listeners and profiles come first: they are required, so a
    /// config missing them fails on that before any detail deeper down.
    func decodeConfig(_ document: JSONValue) throws(ConfigError) -> Config {
        guard case .object = document else {
            throw ConfigError(file: file, key: "", reason: "expected a JSON object at the top level, got \(document.kindDescription)")
        }
        let root = try ConfigObject(document, path: "", file: file, keys: Self.rootKeys)

        let trafficRequired = use == .proxy
        var listeners: [ListenerConfig] = []
        for (i, element) in try (trafficRequired ? root.required("listeners", root.array) : root.array("listeners") ?? []).enumerated() {
            listeners.append(try decodeListener(element, path: "listeners[\(i)]"))
        }
        var profiles: [ProfileConfig] = []
        for (i, element) in try (trafficRequired ? root.required("profiles", root.array) : root.array("profiles") ?? []).enumerated() {
            profiles.append(try decodeProfile(element, path: "profiles[\(i)]"))
        }
        // Start from the model's defaults and overwrite only what the file sets.
        var config = Config(listeners: listeners, profiles: profiles)
        if let admin = try root.object("admin", keys: Self.adminKeys) { config.admin = try decodeAdmin(admin) }
        config.stateFile = try root.string("state_file")
        if let databases = try root.array("databases") {
            for (i, element) in databases.enumerated() {
                config.databases.append(try decodeDatabase(element, path: "databases[\(i)]"))
            }
        }
        if let timeouts = try root.object("timeouts", keys: Self.timeoutKeys) { config.timeouts = try decodeTimeouts(timeouts) }
        if let limits = try root.object("limits", keys: Self.limitKeys) { config.limits = try decodeLimits(limits) }
        if let accessLog = try root.string("access_log") { config.accessLog = accessLog }
        if let format = try root.choice("access_log_format", AccessLogFormat.self, what: "format for the access log") { config.accessLogFormat = format }
        if let workers = try root.int("workers") { config.workers = workers }
        if let affinity = try root.choice("worker_cpu_affinity", WorkerCPUAffinity.self, what: "worker CPU affinity") { config.workerCPUAffinity = affinity }
        if let cluster = try root.object("cluster", keys: Self.clusterKeys) { config.cluster = try decodeCluster(cluster) }
        if let trusted = try cidrList(root, "trusted_proxies") { config.trustedProxies = TrustedProxies(trusted) }
        return config
    }

    /// `{ etcd: ["http://HOST:PORT", …], prefix, node, tls?, username?, password? }`; names, the
    /// prefix's form and the pairs (cert/key, username/password) are checked by validation.
    private func decodeCluster(_ object: ConfigObject) throws(ConfigError) -> ClusterConfig {
        var members: [EtcdMember] = []
        for (i, element) in try object.required("etcd", object.array).enumerated() {
            let key = object.path("etcd") + "[\(i)]"
            guard case .string(let text) = element else {
                throw ConfigError(file: file, key: key, reason: "expected a string, got \(element.kindDescription)")
            }
            guard let member = EtcdMember(url: text) else {
                throw ConfigError(file: file, key: key, reason: "\"\(text)\" is not an etcd client URL (use http://HOST:PORT or https://HOST:PORT)")
            }
            members.append(member)
        }
        var cluster = ClusterConfig(etcd: members, prefix: try object.required("prefix", object.string), node: try object.required("node", object.string))
        if let tls = try object.object("tls", keys: Self.clusterTLSKeys) {
            cluster.tls = EtcdTLSConfig(ca: try tls.string("ca"), cert: try tls.string("cert"), key: try tls.string("key"), serverName: try tls.string("server_name"))
        }
        let username = try object.string("username")
        let password = try object.string("password")
        if username != nil || password != nil {
            guard let username, let password else {
                throw ConfigError(file: file, key: object.path(username == nil ? "username" : "password"), reason: "username and password go together (etcd v3 authentication)")
            }
            cluster.credentials = EtcdCredentials(username: username, password: password)
        }
        return cluster
    }

    /// `{ name, address, mode, profile, routes }`; profile references and route patterns are
    /// checked by validation. `profile` may only be left out when `routes` is set.
    private func decodeListener(_ value: JSONValue, path: String) throws(ConfigError) -> ListenerConfig {
        let object = try ConfigObject(value, path: path, file: file, keys: Self.listenerKeys)
        let name = try object.required("name", object.string)
        let address = try object.required("address", object.hostPort)
        let mode = try object.choice("mode", ListenerMode.self, what: "listener mode") ?? .http
        var routes: [RouteConfig] = []
        for (i, element) in (try object.array("routes") ?? []).enumerated() {
            let route = try ConfigObject(element, path: object.path("routes") + "[\(i)]", file: file, keys: Self.routeKeys)
            routes.append(RouteConfig(
                host: try route.string("host"), pathPrefix: try route.string("path_prefix"),
                stripPrefix: try route.bool("strip_prefix") ?? false, profile: try route.required("profile", route.string)))
        }
        let profile = try object.string("profile")
        if profile == nil && routes.isEmpty {
            throw object.error("profile", "required key is missing (only a listener with routes may leave it out)")
        }
        var listener = ListenerConfig(name: name, address: address, mode: mode, profile: profile, routes: routes)
        if let proxyProtocol = try object.bool("proxy_protocol") { listener.proxyProtocol = proxyProtocol }
        listener.trustedProxies = try cidrList(object, "trusted_proxies").map { TrustedProxies($0) }
        if let tls = try object.object("tls", keys: Self.listenerTLSKeys) { listener.tls = try decodeListenerTLS(tls) }
        if let redirect = object.value("redirect_https") {
            switch redirect {
            case .bool(let on):
                listener.redirectHTTPSPort = on ? 443 : nil
            case .number(let literal):
                guard let port = UInt16(literal), port != 0 else {
                    throw object.error("redirect_https", "\(literal) is not a port (want 1-65535)")
                }
                listener.redirectHTTPSPort = port
            default:
                throw object.error("redirect_https", "expected true (port 443) or the HTTPS port, got \(redirect.kindDescription)")
            }
        }
        return listener
    }

    /// `{ certificates: [{cert, key}], min_version }`; relative paths are taken from the config's folder.
    private func decodeListenerTLS(_ object: ConfigObject) throws(ConfigError) -> ListenerTLSConfig {
        var tls = ListenerTLSConfig(certificates: [])
        for (i, element) in try object.required("certificates", object.array).enumerated() {
            let pair = try ConfigObject(element, path: object.path("certificates") + "[\(i)]", file: file, keys: Self.certificateKeys)
            let cert = try pair.required("cert", pair.string)
            let key = try pair.required("key", pair.string)
            guard !cert.isEmpty else { throw pair.error("cert", "must not be empty") }
            guard !key.isEmpty else { throw pair.error("key", "must not be empty") }
            tls.certificates.append(CertificateFiles(cert: resolved(cert), key: resolved(key)))
        }
        if let version = try object.choice("min_version", TLSVersion.self, what: "TLS version") { tls.minVersion = version }
        return tls
    }

    /// `{ verify, ca, server_name }`: verification stays on unless `verify` is false.
    private func decodeUpstreamTLS(_ object: ConfigObject) throws(ConfigError) -> UpstreamTLSConfig {
        var tls = UpstreamTLSConfig()
        if let verify = try object.bool("verify") { tls.verify = verify }
        if let ca = try object.string("ca") {
            guard !ca.isEmpty else { throw object.error("ca", "must not be empty (leave it out for the system store)") }
            tls.ca = resolved(ca)
        }
        tls.serverName = try object.string("server_name")
        return tls
    }

    /// A path from the config as the process opens it: relative to the config file, not the
    /// working directory, so a service unit's cwd does not change which file is read.
    private func resolved(_ path: String) -> String {
        path.hasPrefix("/") ? path : baseDirectory + "/" + path
    }

    /// A profile and its endpoints; each absent key keeps `ProfileConfig`'s default.
    private func decodeProfile(_ value: JSONValue, path: String) throws(ConfigError) -> ProfileConfig {
        let object = try ConfigObject(value, path: path, file: file, keys: Self.profileKeys)
        let name = try object.required("name", object.string)
        var endpoints: [EndpointConfig] = []
        for (i, element) in try object.required("endpoints", object.array).enumerated() {
            endpoints.append(try decodeEndpoint(element, path: "\(path).endpoints[\(i)]"))
        }
        var profile = ProfileConfig(name: name, endpoints: endpoints)
        if let routing = try object.choice("routing", RoutingMethod.self, what: "routing method") { profile.routing = routing }
        if let probe = try object.object("probe", keys: Self.probeKeys) { profile.probe = try decodeProbe(probe) }
        if let passive = try object.object("passive", keys: Self.passiveKeys) {
            if let failures = try passive.int("failures") { profile.passive.failures = failures }
            if let status5xx = try passive.int("status_5xx") { profile.passive.status5xx = status5xx }
        }
        if let thresholds = try object.object("guard", keys: Self.guardKeys) {
            if let ratio = try thresholds.number("max_5xx_ratio") { profile.guardThresholds.max5xxRatio = ratio }
            if let minimum = try thresholds.int("min_requests") { profile.guardThresholds.minRequests = minimum }
            if let failures = try thresholds.int("max_connect_failures") { profile.guardThresholds.maxConnectFailures = failures }
            if let p99 = try thresholds.duration("max_p99") { profile.guardThresholds.maxP99 = p99 }
            if let ratio = try thresholds.number("max_p99_ratio") { profile.guardThresholds.maxP99Ratio = ratio }
            if let interval = try thresholds.duration("interval") { profile.guardThresholds.interval = interval }
        }
        if let drain = try object.duration("drain_timeout") { profile.drainTimeout = drain }
        if let hold = try object.duration("hold_timeout") { profile.holdTimeout = hold }
        if let maxHeld = try object.int("max_held") { profile.maxHeld = maxHeld }
        if let hold = try object.bool("hold_when_unavailable") { profile.holdWhenUnavailable = hold }
        if let failOpen = try object.bool("fail_open") { profile.failOpen = failOpen }
        if let unknownIsUp = try object.bool("unknown_is_up") { profile.unknownIsUp = unknownIsUp }
        if let maintenance = try object.object("maintenance", keys: Self.maintenanceKeys) {
            profile.gate = try decodeGate(maintenance)
        }
        profile.sendProxy = try object.choice("send_proxy", ProxyProtocol.Version.self, what: "PROXY protocol version")
        return profile
    }

    /// An endpoint; `state` is decoded by hand to explain why `draining` is refused.
    private func decodeEndpoint(_ value: JSONValue, path: String) throws(ConfigError) -> EndpointConfig {
        let object = try ConfigObject(value, path: path, file: file, keys: Self.endpointKeys)
        var endpoint = EndpointConfig(name: try object.required("name", object.string), address: try object.required("address", object.hostPort))
        if let priority = try object.int("priority") { endpoint.priority = priority }
        if let weight = try object.int("weight") { endpoint.weight = weight }
        if let state = try object.string("state") {
            switch state {
            case "online": endpoint.state = .online
            case "offline": endpoint.state = .offline
            case "draining":
                throw object.error("state", "\"draining\" is a runtime state (set by switch or drain); configure online or offline")
            default:
                throw object.error("state", "\"\(state)\" is not an endpoint state (use online or offline)")
            }
        }
        if let probe = try object.object("probe", keys: Self.probeKeys) { endpoint.probe = try decodeProbe(probe) }
        if let tls = try object.object("tls", keys: Self.upstreamTLSKeys) { endpoint.tls = try decodeUpstreamTLS(tls) }
        endpoint.sendProxy = try object.choice("send_proxy", ProxyProtocol.Version.self, what: "PROXY protocol version")
        return endpoint
    }

    /// A probe object, used both for a profile and for an endpoint's override (which replaces it
    /// whole: the model has no way to say "inherit this field").
    private func decodeProbe(_ object: ConfigObject) throws(ConfigError) -> ProbeConfig {
        var probe = ProbeConfig()
        if let type = try object.choice("type", ProbeType.self, what: "probe type") { probe.type = type }
        if let method = try object.string("method") { probe.method = method }
        if let path = try object.string("path") { probe.path = path }
        probe.host = try object.string("host")
        // Header names are the keys, so any key is allowed here; validation checks them as tokens.
        if let headers = try object.object("headers", keys: nil) {
            for member in headers.members {
                guard case .string(let value) = member.value else {
                    throw headers.error(member.key, "expected a string, got \(member.value.kindDescription)")
                }
                probe.headers.append(HTTPHeaderField(name: member.key, value: value))
            }
        }
        if let statuses = try object.array("expect_status") {
            // Setting the key replaces the default 200-399 rather than adding to it.
            probe.expectStatus = []
            for (i, element) in statuses.enumerated() {
                probe.expectStatus.append(try decodeStatusRange(element, key: object.path("expect_status") + "[\(i)]"))
            }
        }
        probe.bodyContains = try object.string("body_contains")
        if let port = try object.int("port") {
            guard (1...65535).contains(port) else { throw object.error("port", "\(port) is not a port (want 1-65535)") }
            probe.port = UInt16(port)
        }
        if let command = try object.array("command") {
            for (i, element) in command.enumerated() {
                guard case .string(let word) = element else {
                    throw ConfigError(file: file, key: object.path("command") + "[\(i)]", reason: "expected a string, got \(element.kindDescription)")
                }
                probe.command.append(word)
            }
        }
        if let interval = try object.duration("interval") { probe.interval = interval }
        if let timeout = try object.duration("timeout") { probe.timeout = timeout }
        if let rise = try object.int("rise") { probe.rise = rise }
        if let fall = try object.int("fall") { probe.fall = fall }
        return probe
    }

    /// `"200-299"`, `"301"` or `301`.
    private func decodeStatusRange(_ value: JSONValue, key: String) throws(ConfigError) -> ClosedRange<Int> {
        switch value {
        case .number(let literal):
            guard let code = Int(literal) else { throw ConfigError(file: file, key: key, reason: "\(literal) is not a status code") }
            return code...code
        case .string(let text):
            let parts = text.split(separator: "-", omittingEmptySubsequences: false)
            let bounds = parts.compactMap { Int($0.trimmingSpaces()) }
            guard (1...2).contains(parts.count), bounds.count == parts.count else {
                throw ConfigError(file: file, key: key, reason: "\"\(text)\" is not a status code or range (use \"200\" or \"200-299\")")
            }
            guard bounds[0] <= bounds[bounds.count - 1] else {
                throw ConfigError(file: file, key: key, reason: "\"\(text)\" is an empty range (the low code comes first)")
            }
            return bounds[0]...bounds[bounds.count - 1]
        default:
            throw ConfigError(file: file, key: key, reason: "expected a string such as \"200-299\" or a number, got \(value.kindDescription)")
        }
    }

    /// The `maintenance` object. `page_file` is only resolved here: the loader at the edge reads it
    /// and `ConfigDraft.completed(pageFiles:)` puts its text in, so a missing page fails the load,
    /// not a request.
    private func decodeGate(_ object: ConfigObject) throws(ConfigError) -> GateConfig {
        var gate = GateConfig()
        gate.maintenancePage = try object.string("page")
        if let pageFile = try object.string("page_file") {
            guard gate.maintenancePage == nil else { throw object.error("page_file", "set page or page_file, not both") }
            gate.maintenancePageFile = resolved(pageFile)
        }
        if let retryAfter = try object.duration("retry_after") { gate.retryAfter = retryAfter }
        if let bypass = try object.object("bypass", keys: Self.bypassKeys) {
            if let sources = try cidrList(bypass, "sources") { gate.bypass.sources = sources }
            if let header = try bypass.object("header", keys: Self.headerKeys) {
                gate.bypass.header = HTTPHeaderField(
                    name: try header.required("name", header.string), value: try header.required("value", header.string))
            }
        }
        return gate
    }

    /// An array of addresses and networks (`["10.0.0.0/8", "::1"]`), each error naming its element.
    private func cidrList(_ object: ConfigObject, _ key: String) throws(ConfigError) -> [CIDR]? {
        guard let elements = try object.array(key) else { return nil }
        var networks: [CIDR] = []
        for (i, element) in elements.enumerated() {
            let path = object.path(key) + "[\(i)]"
            guard case .string(let text) = element else {
                throw ConfigError(file: file, key: path, reason: "expected a string, got \(element.kindDescription)")
            }
            guard let cidr = CIDR(text) else {
                throw ConfigError(file: file, key: path, reason: "\"\(text)\" is not an address or network (use 10.0.0.0/8 or ::1/128)")
            }
            networks.append(cidr)
        }
        return networks
    }

    /// The `admin` object; whether a non-loopback `http` has a token is checked by validation.
    private func decodeAdmin(_ object: ConfigObject) throws(ConfigError) -> AdminConfig {
        var admin = AdminConfig()
        admin.socket = try object.string("socket")
        if let mode = object.value("socket_mode") {
            // Decimal 660 would silently mean 0o1224: only an octal string is accepted.
            guard case .string(let text) = mode else {
                throw object.error("socket_mode", "expected an octal string such as \"0660\", got \(mode.kindDescription)")
            }
            guard (1...4).contains(text.count), let bits = UInt16(text, radix: 8) else {
                throw object.error("socket_mode", "\"\(text)\" is not an octal mode such as \"0660\"")
            }
            admin.socketMode = bits
        }
        admin.socketGroup = try object.string("socket_group")
        admin.http = try object.hostPort("http")
        admin.token = try object.string("token")
        if let sessions = try object.int("max_sessions") { admin.maxSessions = sessions }
        if let timeout = try object.duration("read_timeout") { admin.readTimeout = timeout }
        return admin
    }

    /// One `databases` entry; the driver name is checked by validation.
    private func decodeDatabase(_ value: JSONValue, path: String) throws(ConfigError) -> DatabaseConfig {
        let object = try ConfigObject(value, path: path, file: file, keys: Self.databaseKeys)
        var database = DatabaseConfig(name: try object.required("name", object.string), dsn: try object.required("dsn", object.string))
        if let driver = try object.string("driver") { database.driver = driver }
        return database
    }

    /// The `timeouts` object; every key is a duration string.
    private func decodeTimeouts(_ object: ConfigObject) throws(ConfigError) -> Timeouts {
        var timeouts = Timeouts()
        if let connect = try object.duration("connect") { timeouts.connect = connect }
        if let headerRead = try object.duration("header_read") { timeouts.headerRead = headerRead }
        if let idle = try object.duration("idle") { timeouts.idle = idle }
        if let upstream = try object.duration("upstream_response") { timeouts.upstreamResponse = upstream }
        if let write = try object.duration("write") { timeouts.write = write }
        if let shutdown = try object.duration("shutdown") { timeouts.shutdown = shutdown }
        if let handshake = try object.duration("tls_handshake") { timeouts.tlsHandshake = handshake }
        if let clientBody = try object.duration("client_body") { timeouts.clientBody = clientBody }
        return timeouts
    }

    /// The `limits` object; `max_body_bytes` stays `nil` (unlimited) unless set.
    private func decodeLimits(_ object: ConfigObject) throws(ConfigError) -> Limits {
        var limits = Limits()
        if let value = try object.int("max_connections") { limits.maxConnections = value }
        if let value = try object.int("max_header_bytes") { limits.maxHeaderBytes = value }
        if let value = try object.int("max_header_count") { limits.maxHeaderCount = value }
        if let value = try object.int("max_request_line_bytes") { limits.maxRequestLineBytes = value }
        limits.maxBodyBytes = try object.int("max_body_bytes")
        if let value = try object.int("max_idle_upstream_per_endpoint") { limits.maxIdleUpstreamPerEndpoint = value }
        return limits
    }
}

/// One JSON object being decoded, with its key path; reading a key checks its JSON type.
///
/// An absent key and an explicit `null` both read as "not set", so defaults apply.
struct ConfigObject {
    let members: [JSONMember]
    let basePath: String
    let file: String

    /// Checks that `value` is an object whose keys are all in `keys` (`nil` allows any key).
    init(_ value: JSONValue, path: String, file: String, keys: [String]?) throws(ConfigError) {
        guard case .object(let members) = value else {
            throw ConfigError(file: file, key: path, reason: "expected an object, got \(value.kindDescription)")
        }
        self.members = members
        self.basePath = path
        self.file = file
        if let keys {
            for member in members where !keys.contains(member.key) {
                throw ConfigError(file: file, key: Self.join(path, member.key), reason: "unknown key; expected one of: \(keys.joined(separator: ", "))")
            }
        }
    }

    static func join(_ path: String, _ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The full key path of `key` in this object.
    func path(_ key: String) -> String {
        Self.join(basePath, key)
    }

    func error(_ key: String, _ reason: String) -> ConfigError {
        ConfigError(file: file, key: path(key), reason: reason)
    }

    /// The value of `key`, `nil` when absent or `null`.
    func value(_ key: String) -> JSONValue? {
        guard let value = members.first(where: { $0.key == key })?.value, value != .null else { return nil }
        return value
    }

    /// Reads `key` with `read`, refusing a missing (or `null`) key.
    func required<T>(_ key: String, _ read: (String) throws(ConfigError) -> T?) throws(ConfigError) -> T {
        guard let value = try read(key) else { throw error(key, "required key is missing") }
        return value
    }

    func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = value(key) else { return nil }
        guard case .string(let text) = value else { throw error(key, "expected a string, got \(value.kindDescription)") }
        return text
    }

    func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let flag) = value else { throw error(key, "expected true or false, got \(value.kindDescription)") }
        return flag
    }

    func int(_ key: String) throws(ConfigError) -> Int? {
        guard let value = value(key) else { return nil }
        guard case .number(let literal) = value else { throw error(key, "expected an integer, got \(value.kindDescription)") }
        // The literal is exact text: `Int` refuses fractions, exponents and overflow alike, so
        // tell them apart for the message.
        guard let number = Int(literal) else {
            let isWhole = !literal.contains(".") && !literal.contains("e") && !literal.contains("E")
            throw error(key, isWhole ? "\(literal) is too large" : "expected an integer, got \(literal)")
        }
        return number
    }

    /// A number, fractions allowed (`0.05`).
    func number(_ key: String) throws(ConfigError) -> Double? {
        guard let value = value(key) else { return nil }
        guard case .number(let literal) = value, let number = Double(literal), number.isFinite else {
            throw error(key, "expected a number such as 0.05, got \(value.kindDescription)")
        }
        return number
    }

    func array(_ key: String) throws(ConfigError) -> [JSONValue]? {
        guard let value = value(key) else { return nil }
        guard case .array(let elements) = value else { throw error(key, "expected an array, got \(value.kindDescription)") }
        return elements
    }

    func object(_ key: String, keys: [String]?) throws(ConfigError) -> ConfigObject? {
        guard let value = value(key) else { return nil }
        return try ConfigObject(value, path: path(key), file: file, keys: keys)
    }

    func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let value = value(key) else { return nil }
        guard case .string(let text) = value else {
            throw error(key, "expected a duration string such as \"2s\", got \(value.kindDescription)")
        }
        guard let duration = DurationText.parse(text) else {
            throw error(key, "\"\(text)\" is not a duration (use 500ms, 2s, 10m)")
        }
        return duration
    }

    func hostPort(_ key: String) throws(ConfigError) -> HostPort? {
        guard let text = try string(key) else { return nil }
        switch HostPort.parse(text) {
        case .success(let address): return address
        case .failure(let reason): throw error(key, "\"\(text)\" \(reason)")
        }
    }

    /// A string that must be one of `T`'s raw values.
    func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type, what: String) throws(ConfigError) -> T?
    where T.RawValue == String {
        guard let text = try string(key) else { return nil }
        guard let choice = T(rawValue: text) else {
            let allowed = T.allCases.map(\.rawValue)
            let list = allowed.count == 1 ? allowed[0] : allowed.dropLast().joined(separator: ", ") + " or " + allowed.last!
            throw error(key, "\"\(text)\" is not a \(what) (use \(list))")
        }
        return choice
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
