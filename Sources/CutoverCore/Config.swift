/// The whole configuration of a Cutover process, as validated from a JSON file or built from flags.
///
/// Values here are what the operator asked for; runtime changes (switches, pauses, gates) live in
/// `RuntimeState` and are layered on top when a `RoutingSnapshot` is built.
public struct Config: Sendable, Equatable {
    public var listeners: [ListenerConfig]
    public var profiles: [ProfileConfig]
    public var admin: AdminConfig
    /// Where runtime state is persisted; `nil` keeps it in memory only.
    public var stateFile: String?
    public var databases: [DatabaseConfig]
    public var timeouts: Timeouts
    public var limits: Limits
    /// `"stderr"`, `"off"` or a file path for the per-request access log.
    public var accessLog: String
    /// How access lines are written: words (`text`) or one JSON object each (`json`).
    public var accessLogFormat: AccessLogFormat = .text
    /// Number of worker queues that own connections; 0 means one per CPU the process may run on.
    public var workers: Int
    /// Whether each worker's poller thread is bound to a CPU of its own (`worker_cpu_affinity`).
    public var workerCPUAffinity: WorkerCPUAffinity = .auto
    /// The fleet this proxy is one of (runtime state in etcd); `nil` keeps the state local.
    public var cluster: ClusterConfig?
    /// `trusted_proxies`: peers whose `X-Forwarded-For` is believed, for listeners without their own list.
    public var trustedProxies = TrustedProxies()

    public init(
        listeners: [ListenerConfig], profiles: [ProfileConfig], admin: AdminConfig = AdminConfig(),
        stateFile: String? = nil, databases: [DatabaseConfig] = [], timeouts: Timeouts = Timeouts(),
        limits: Limits = Limits(), accessLog: String = "stderr", workers: Int = 0
    ) {
        self.listeners = listeners
        self.profiles = profiles
        self.admin = admin
        self.stateFile = stateFile
        self.databases = databases
        self.timeouts = timeouts
        self.limits = limits
        self.accessLog = accessLog
        self.workers = workers
    }

    /// How many workers start: `workers`, or with `0` one per CPU of the process's affinity mask
    /// (`allowedCPUs`, empty when it could not be read: then one per online CPU).
    ///
    /// Why the mask and not the online count: under `taskset`, a cpuset or a container's CPU limit the
    /// process may run on fewer CPUs than the machine has, and `worker_cpu_affinity auto` binds by
    /// the mask, so counting online CPUs stacked two bound workers on one CPU. HAProxy's `nbthread`
    /// default counts the CPUs it is bound to in the same way.
    public func workerCount(allowedCPUs: [Int], onlineCPUs: Int) -> Int {
        if workers > 0 { return workers }
        return max(1, allowedCPUs.isEmpty ? onlineCPUs : allowedCPUs.count)
    }

    /// The profile with this name, if configured.
    public func profile(named name: String) -> ProfileConfig? {
        profiles.first { $0.name == name }
    }

    /// The proxies `listener` believes: its own `trusted_proxies`, else the top-level list.
    public func trustedProxies(for listener: ListenerConfig) -> TrustedProxies {
        listener.trustedProxies ?? trustedProxies
    }
}

/// `worker_cpu_affinity`: where the workers' poller threads may run.
///
/// Why bind them: with a worker per CPU on a machine whose CPUs also run the backend or the load,
/// the scheduler sometimes stacks two pollers on one CPU for a while, and the connections of the one
/// that waits stall. Bound, two workers' c50 p99 went from 1.3-1.8x HAProxy `nbthread 2`'s to
/// 0.89x and 0.67x (docs/performance-history.md, "Worker CPU affinity"). Fewer workers than CPUs
/// are left free, so that the scheduler can move one onto a CPU that idles, which a bound one
/// could not use; a single worker bound to CPU 0 on two CPUs had a longer tail in the one run that
/// tried it (1.11x HAProxy's p99).
/// HAProxy (`cpu-map`) and nginx (`worker_cpu_affinity auto`) bind only when asked; Cutover's default
/// is a worker per CPU, where binding is what measured better.
public enum WorkerCPUAffinity: String, Sendable, Equatable, CaseIterable {
    /// With at least as many workers as CPUs the process may run on, worker *i* is bound to the
    /// *i*-th of those CPUs (wrapping round); with fewer, none is bound.
    case auto
    /// The scheduler places the poller threads wherever the process may run.
    case off

    /// The CPU worker `index` of `workers` is bound to, given the CPUs the process may run on in
    /// ascending order; nil when it is left to the scheduler.
    public func cpu(forWorker index: Int, of workers: Int, allowed: [Int]) -> Int? {
        switch self {
        case .off: return nil
        case .auto: return allowed.isEmpty || workers < allowed.count ? nil : allowed[index % allowed.count]
        }
    }
}

/// A host and a TCP port, as written `host:port` (IPv6 as `[::1]:port`).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `host:port` or `[v6]:port`; the reason is a phrase for a config error.
    public static func parse(_ text: String) -> Result<HostPort, HostPortError> {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.malformed) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return .failure(.missingPort) }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return .failure(.missingPort) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return .failure(.malformed) }
        }
        guard !host.isEmpty else { return .failure(.missingHost) }
        guard let port = UInt16(portText), !portText.isEmpty else { return .failure(.badPort(String(portText))) }
        return .success(HostPort(host: String(host), port: port))
    }
}

/// Why a `host:port` string was refused.
public enum HostPortError: Error, Sendable, Equatable, CustomStringConvertible {
    case missingPort
    case missingHost
    case badPort(String)
    case malformed

    public var description: String {
        switch self {
        case .missingPort: return "has no port"
        case .missingHost: return "has no host"
        case .badPort(let p): return "has an invalid port \"\(p)\" (want 0-65535)"
        case .malformed: return "is not host:port (IPv6 hosts go in brackets: [::1]:8080)"
        }
    }
}

/// How a listener treats its bytes.
public enum ListenerMode: String, Sendable, Equatable, CaseIterable {
    case http
    case tcp
}

/// One listening address, routed to its default profile or, through `routes`, to several.
public struct ListenerConfig: Sendable, Equatable {
    public var name: String
    public var address: HostPort
    public var mode: ListenerMode
    /// The profile for requests (or connections) no route matches; `nil` answers those with 404
    /// (HTTP) or closes them (TCP). Only a listener with routes may leave it out.
    public var profile: String?
    /// Host/path (HTTP) or SNI (TCP) routes to other profiles; the most specific match wins
    /// (see `RouteTable`).
    public var routes: [RouteConfig]
    /// TLS termination; `nil` for a plain listener (a TCP listener then passes TLS through untouched).
    public var tls: ListenerTLSConfig?
    /// On a plain HTTP listener: answer every request with `308` to the same host and path on
    /// HTTPS at this port (443 leaves the port out of the URL).
    public var redirectHTTPSPort: UInt16?
    /// `proxy_protocol`: every connection starts with a PROXY v1 or v2 header naming the client (the
    /// balancer in front speaks it); a connection without one is closed.
    public var proxyProtocol = false
    /// `trusted_proxies` of this listener; `nil` uses the top-level list (`Config.trustedProxies(for:)`).
    public var trustedProxies: TrustedProxies?

    public init(
        name: String, address: HostPort, mode: ListenerMode, profile: String?, routes: [RouteConfig] = [],
        tls: ListenerTLSConfig? = nil, redirectHTTPSPort: UInt16? = nil
    ) {
        self.name = name
        self.address = address
        self.mode = mode
        self.profile = profile
        self.tls = tls
        self.redirectHTTPSPort = redirectHTTPSPort
        self.routes = routes
    }

    /// `profile web` or `3 routes, default web` for the log line of an opened listener.
    public var routingSummary: String {
        let fallback = profile.map { "profile \($0)" } ?? "no default profile"
        return routes.isEmpty ? fallback : "\(routes.count) route\(routes.count == 1 ? "" : "s"), \(fallback)"
    }

    /// Every profile this listener can send work to: the routes' profiles in order, then the default.
    public var profilesReached: [String] {
        var names: [String] = []
        for name in routes.map(\.profile) + [profile].compactMap({ $0 }) where !names.contains(name) { names.append(name) }
        return names
    }
}

/// One `routes` entry of a listener: which requests go to `profile` instead of the default.
///
/// HTTP listeners match `host` (exact or `*.suffix`, case-insensitive, port ignored) and
/// `pathPrefix` (on segment boundaries); TCP listeners match `host` against the TLS server name.
public struct RouteConfig: Sendable, Equatable {
    /// `api.example.com`, or `*.example.com` for one or more labels before `example.com`; `nil` matches any host.
    public var host: String?
    /// `/api` matches `/api` and `/api/…` but not `/apix`; `nil` matches any path.
    public var pathPrefix: String?
    /// Remove `pathPrefix` from the request target before it goes upstream (`/api/x` → `/x`).
    public var stripPrefix: Bool
    public var profile: String

    public init(host: String? = nil, pathPrefix: String? = nil, stripPrefix: Bool = false, profile: String) {
        self.host = host
        self.pathPrefix = pathPrefix
        self.stripPrefix = stripPrefix
        self.profile = profile
    }

    /// `host/prefix` as `show profiles` prints it, `*` standing for any host; ` (strip)` when stripping.
    public var summary: String {
        (host ?? "*") + (pathPrefix ?? "") + (stripPrefix ? " (strip)" : "")
    }
}

/// What the operator asked of an endpoint, kept apart from what probes see (`Health`).
public enum AdminState: String, Sendable, Equatable, CaseIterable {
    /// Eligible for new work.
    case online
    /// Never chosen for new work.
    case offline
    /// Gets nothing new; in-flight work finishes, then it becomes `offline`.
    case draining
}

/// What probes and passive checks see of an endpoint.
public enum Health: String, Sendable, Equatable, CaseIterable {
    case unknown
    case up
    case down
}

/// How a profile picks among its endpoints.
public enum RoutingMethod: String, Sendable, Equatable, CaseIterable {
    /// Best priority present wins; weighted round robin among equals.
    case priority
}

/// One backend address of a profile.
public struct EndpointConfig: Sendable, Equatable {
    public var name: String
    public var address: HostPort
    /// Lower wins.
    public var priority: Int
    /// Share among endpoints of the same priority (0 never chosen).
    public var weight: Int
    public var state: AdminState
    /// Overrides the profile's probe for this endpoint.
    public var probe: ProbeConfig?
    /// Reach the endpoint (and probe it) over TLS; `nil` for plain TCP.
    public var tls: UpstreamTLSConfig?
    /// `send_proxy` for this endpoint, overriding the profile's.
    public var sendProxy: ProxyProtocol.Version?

    public init(name: String, address: HostPort, priority: Int = 1, weight: Int = 1, state: AdminState = .online, probe: ProbeConfig? = nil, tls: UpstreamTLSConfig? = nil) {
        self.name = name
        self.address = address
        self.priority = priority
        self.weight = weight
        self.state = state
        self.probe = probe
        self.tls = tls
    }
}

/// The kind of active health check.
public enum ProbeType: String, Sendable, Equatable, CaseIterable {
    case http
    case tcp
    case command
    /// Reads one line from an agent on the backend (`AgentReply`): health, drain, weight.
    case agent
}

/// An active health probe; defaults follow common traffic managers (2 s / 1 s / rise 2 / fall 3).
public struct ProbeConfig: Sendable, Equatable {
    public var type: ProbeType
    public var method: String
    public var path: String
    /// Host header for HTTP probes; the endpoint address when `nil`.
    public var host: String?
    public var headers: [HTTPHeaderField]
    /// Status codes counted as healthy (default 200-399).
    public var expectStatus: [ClosedRange<Int>]
    /// A substring the body must contain, if set.
    public var bodyContains: String?
    /// Probe this port instead of the endpoint's.
    public var port: UInt16?
    /// Executable and arguments for `command` probes.
    public var command: [String]
    public var interval: Duration
    public var timeout: Duration
    public var rise: Int
    public var fall: Int

    public init(
        type: ProbeType = .http, method: String = "GET", path: String = "/", host: String? = nil,
        headers: [HTTPHeaderField] = [], expectStatus: [ClosedRange<Int>] = [200...399],
        bodyContains: String? = nil, port: UInt16? = nil, command: [String] = [],
        interval: Duration = .seconds(2), timeout: Duration = .seconds(1), rise: Int = 2, fall: Int = 3
    ) {
        self.type = type
        self.method = method
        self.path = path
        self.host = host
        self.headers = headers
        self.expectStatus = expectStatus
        self.bodyContains = bodyContains
        self.port = port
        self.command = command
        self.interval = interval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
    }
}

/// A header name and value, as configured or parsed.
public struct HTTPHeaderField: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// Who may pass a closed maintenance gate: a source network or a header carrying a secret.
public struct MaintenanceBypass: Sendable, Equatable {
    public var sources: [CIDR]
    public var header: HTTPHeaderField?

    public init(sources: [CIDR] = [], header: HTTPHeaderField? = nil) {
        self.sources = sources
        self.header = header
    }
}

/// What a profile answers while its maintenance or read-only gate is closed.
public struct GateConfig: Sendable, Equatable {
    /// Body of the maintenance 503 (HTML); a built-in page when `nil`.
    public var maintenancePage: String?
    /// Path of a file holding the maintenance page; read at load time.
    public var maintenancePageFile: String?
    public var retryAfter: Duration
    public var bypass: MaintenanceBypass

    public init(maintenancePage: String? = nil, maintenancePageFile: String? = nil, retryAfter: Duration = .seconds(30), bypass: MaintenanceBypass = MaintenanceBypass()) {
        self.maintenancePage = maintenancePage
        self.maintenancePageFile = maintenancePageFile
        self.retryAfter = retryAfter
        self.bypass = bypass
    }
}

/// Passive health: failures seen on live traffic that mark an endpoint down early.
public struct PassiveHealthConfig: Sendable, Equatable {
    /// Consecutive connect failures, resets or timeouts that mark the endpoint down (0 = off).
    public var failures: Int
    /// Consecutive 5xx answers that mark it down (0 = off, the default).
    public var status5xx: Int

    public init(failures: Int = 3, status5xx: Int = 0) {
        self.failures = failures
        self.status5xx = status5xx
    }
}

/// The profile's `guard` object: what a guarded switch judges the new endpoint by, every judging
/// `interval`, over every answer it gave since the switch. Every key is optional.
public struct GuardConfig: Sendable, Equatable {
    /// Breach when more than this share of judged answers are 5xx (`max_5xx_ratio`, default 0.05).
    public var max5xxRatio: Double?
    /// No 5xx-ratio or p99 judgement before this many answers in the window (`min_requests`, default 20).
    public var minRequests: Int
    /// Breach when more connects than this fail (refused, reset, timed out) in the window
    /// (`max_connect_failures`, default 2: the third failure breaches). Judged from the first request.
    public var maxConnectFailures: Int?
    /// Breach when the p99 is certainly above this (`max_p99`, off by default); see `GuardFigures.p99`.
    public var maxP99: Duration?
    /// Breach when the p99 is certainly above this multiple of the old endpoint's recent p99
    /// (`max_p99_ratio`, off by default; skipped when the old endpoint had too few recent answers).
    public var maxP99Ratio: Double?
    /// How often the window is judged (`interval`, default 500ms).
    public var interval: Duration

    public init(
        max5xxRatio: Double? = 0.05, minRequests: Int = 20, maxConnectFailures: Int? = 2, maxP99: Duration? = nil,
        maxP99Ratio: Double? = nil, interval: Duration = .milliseconds(500)
    ) {
        self.max5xxRatio = max5xxRatio
        self.minRequests = minRequests
        self.maxConnectFailures = maxConnectFailures
        self.maxP99 = maxP99
        self.maxP99Ratio = maxP99Ratio
        self.interval = interval
    }
}

/// A named group of endpoints with the settings for probing, draining, holding and gates.
public struct ProfileConfig: Sendable, Equatable {
    public var name: String
    public var routing: RoutingMethod
    public var endpoints: [EndpointConfig]
    public var probe: ProbeConfig?
    public var passive: PassiveHealthConfig
    public var drainTimeout: Duration
    public var holdTimeout: Duration
    public var maxHeld: Int
    /// Hold requests instead of answering 503 when no endpoint is eligible.
    public var holdWhenUnavailable: Bool
    /// Route to down endpoints rather than failing when nothing is healthy.
    public var failOpen: Bool
    /// Treat `unknown` health as up until the first probe result.
    public var unknownIsUp: Bool
    public var gate: GateConfig
    /// Thresholds a guarded switch (`switch … --guard DURATION`) judges the new endpoint by.
    public var guardThresholds: GuardConfig
    /// `send_proxy`: new connections to this profile's endpoints start with a PROXY header naming
    /// the client; an endpoint's own `send_proxy` wins.
    public var sendProxy: ProxyProtocol.Version?

    public init(
        name: String, routing: RoutingMethod = .priority, endpoints: [EndpointConfig], probe: ProbeConfig? = nil,
        passive: PassiveHealthConfig = PassiveHealthConfig(), drainTimeout: Duration = .seconds(30),
        holdTimeout: Duration = .seconds(30), maxHeld: Int = 10_000, holdWhenUnavailable: Bool = false,
        failOpen: Bool = false, unknownIsUp: Bool = true, gate: GateConfig = GateConfig(),
        guardThresholds: GuardConfig = GuardConfig()
    ) {
        self.name = name
        self.routing = routing
        self.endpoints = endpoints
        self.probe = probe
        self.passive = passive
        self.drainTimeout = drainTimeout
        self.holdTimeout = holdTimeout
        self.maxHeld = maxHeld
        self.holdWhenUnavailable = holdWhenUnavailable
        self.failOpen = failOpen
        self.unknownIsUp = unknownIsUp
        self.gate = gate
        self.guardThresholds = guardThresholds
    }

    /// The endpoint with this name, if configured.
    public func endpoint(named name: String) -> EndpointConfig? {
        endpoints.first { $0.name == name }
    }

    /// The PROXY header version `endpoint` is sent, if any (its own `send_proxy`, else the profile's).
    public func sendProxy(to endpoint: EndpointConfig) -> ProxyProtocol.Version? {
        endpoint.sendProxy ?? sendProxy
    }
}

/// The admin interfaces: a Unix socket for commands and an optional HTTP listener.
public struct AdminConfig: Sendable, Equatable {
    public var socket: String?
    /// Permission bits of the socket file (default 0600).
    public var socketMode: UInt16
    /// Group owning the socket, if set.
    public var socketGroup: String?
    public var http: HostPort?
    /// Bearer token required on the HTTP listener (mandatory when it is not loopback).
    public var token: String?
    /// Open sessions per admin listener (socket and HTTP each); at the cap the longest-silent one
    /// is closed to make room (default 64).
    public var maxSessions: Int
    /// Time an admin session has to send a whole command or request, from its connect or its last
    /// answer (default 10 s, as HAProxy's `stats timeout`).
    public var readTimeout: Duration

    public init(
        socket: String? = nil, socketMode: UInt16 = 0o600, socketGroup: String? = nil, http: HostPort? = nil, token: String? = nil,
        maxSessions: Int = 64, readTimeout: Duration = .seconds(10)
    ) {
        self.socket = socket
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.http = http
        self.token = token
        self.maxSessions = maxSessions
        self.readTimeout = readTimeout
    }
}

/// A database the agent can fence or migrate.
public struct DatabaseConfig: Sendable, Equatable {
    public var name: String
    public var driver: String
    /// libpq connection string; its `dbname` is the database acted upon.
    public var dsn: String

    public init(name: String, driver: String = "postgres", dsn: String) {
        self.name = name
        self.driver = driver
        self.dsn = dsn
    }
}

/// Connection timeouts, shared by all listeners.
public struct Timeouts: Sendable, Equatable {
    /// Upstream TCP connect.
    public var connect: Duration
    /// Time allowed to receive a whole request head (408 after).
    public var headerRead: Duration
    /// An idle keep-alive client connection, or a TCP tunnel with no traffic either way.
    public var idle: Duration
    /// Waiting for an upstream's response head, or for more of its body (504 before the head).
    /// Starts once the whole request has been sent: a slow request body is timed by `clientBody`.
    public var upstreamResponse: Duration
    /// Longest wait for the next bytes of a request body the client still owes (408 when it passes,
    /// never counted against the endpoint).
    public var clientBody: Duration
    /// A peer that accepts no bytes for this long is closed.
    public var write: Duration
    /// How long SIGTERM waits for in-flight work before closing.
    public var shutdown: Duration
    /// A TLS handshake (client side on a TLS listener, or to a TLS endpoint) that takes longer is abandoned.
    public var tlsHandshake: Duration

    public init(
        connect: Duration = .seconds(5), headerRead: Duration = .seconds(10), idle: Duration = .seconds(60),
        upstreamResponse: Duration = .seconds(60), write: Duration = .seconds(30), shutdown: Duration = .seconds(30),
        tlsHandshake: Duration = .seconds(10), clientBody: Duration = .seconds(60)
    ) {
        self.tlsHandshake = tlsHandshake
        self.clientBody = clientBody
        self.connect = connect
        self.headerRead = headerRead
        self.idle = idle
        self.upstreamResponse = upstreamResponse
        self.write = write
        self.shutdown = shutdown
    }
}

/// Size limits on what clients may send, and on open connections.
public struct Limits: Sendable, Equatable {
    public var maxConnections: Int
    public var maxHeaderBytes: Int
    public var maxHeaderCount: Int
    public var maxRequestLineBytes: Int
    /// Largest accepted request body; `nil` means unlimited (bodies are streamed, never buffered).
    public var maxBodyBytes: Int?
    /// Idle upstream keep-alive connections kept per endpoint per worker.
    public var maxIdleUpstreamPerEndpoint: Int

    public init(
        maxConnections: Int = 8_000, maxHeaderBytes: Int = 16_384, maxHeaderCount: Int = 100,
        maxRequestLineBytes: Int = 8_192, maxBodyBytes: Int? = nil, maxIdleUpstreamPerEndpoint: Int = 256
    ) {
        self.maxConnections = maxConnections
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxRequestLineBytes = maxRequestLineBytes
        self.maxBodyBytes = maxBodyBytes
        self.maxIdleUpstreamPerEndpoint = maxIdleUpstreamPerEndpoint
    }
}
