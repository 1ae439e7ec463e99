/// The JSON answers of the proxy's admin socket (`COMMAND --json`), shared by the runtime that
/// writes them and every client that reads them (`cutover ctl`, the agent's proxy flag, runbooks).
///
/// Every answer is one flat object: the envelope (`ok`, and `code`/`message`) beside the command's
/// own fields, so `{"ok":true,"message":"switched web to green","profile":"web",…}`. Encode and
/// decode with `JSONCoding`.

/// The envelope of one admin answer: `ok`, an error `code` and a `message`, and the command's data.
///
/// A refused command is `{"ok":false,"code":"unknown-profile","message":"…"}` and has no `data`;
/// decoding any failed answer as `AdminAnswer<Whatever>` works, so a client can decode first and
/// look at `ok` after.
public struct AdminAnswer<Payload: Codable & Sendable>: Codable, Sendable {
    /// False when the command was refused; then `code` says why.
    public var ok: Bool
    /// The stable error code (`AdminError.Code`'s raw values, or the agent's codes); `nil` when ok.
    public var code: String?
    /// The one-line summary (`OK …` text without `OK`), or the error message.
    public var message: String?
    /// The command's own fields, flattened beside the envelope; `nil` when refused.
    public var data: Payload?

    /// A successful answer.
    public init(message: String? = nil, data: Payload) {
        self.ok = true
        self.code = nil
        self.message = message
        self.data = data
    }

    /// A refused command.
    public init(code: String, message: String) {
        self.ok = false
        self.code = code
        self.message = message
        self.data = nil
    }

    private enum EnvelopeKeys: String, CodingKey {
        case ok, code, message
    }

    /// Decodes the JSON form (see the type).
    public init(from decoder: any Decoder) throws {
        let envelope = try decoder.container(keyedBy: EnvelopeKeys.self)
        ok = try envelope.decode(Bool.self, forKey: .ok)
        code = try envelope.decodeIfPresent(String.self, forKey: .code)
        message = try envelope.decodeIfPresent(String.self, forKey: .message)
        // The data shares the envelope's object; a refusal carries none of the command's fields.
        data = ok ? try Payload(from: decoder) : nil
    }

    /// Encodes the JSON form (see the type).
    public func encode(to encoder: any Encoder) throws {
        var envelope = encoder.container(keyedBy: EnvelopeKeys.self)
        try envelope.encode(ok, forKey: .ok)
        try envelope.encodeIfPresent(code, forKey: .code)
        try envelope.encodeIfPresent(message, forKey: .message)
        try data?.encode(to: encoder)
    }
}

extension AdminAnswer where Payload == NoAnswerData {
    /// The JSON form of a refused admin command.
    public init(_ error: AdminError) {
        self.init(code: error.code.rawValue, message: error.message)
    }
}

/// The data of an answer that has only the envelope (`reload`, or any refusal being decoded).
public struct NoAnswerData: Codable, Sendable, Equatable {
    public init() {}
}

/// `help --json`: the command summary, one line per entry.
public struct HelpAnswer: Codable, Sendable, Equatable {
    /// The lines of `AdminCommand.usage` (or the agent's command list).
    public var commands: [String]

    public init(commands: [String]) { self.commands = commands }
}

/// `switch PROFILE ENDPOINT --json`.
public struct SwitchAnswer: Codable, Sendable, Equatable {
    /// The profile concerned.
    public var profile: String
    /// The endpoint now live.
    public var endpoint: String
    /// The endpoints the switch started draining, in config order.
    public var draining: [String]
    /// With `--wait`: how each drain ended, by `PROFILE/ENDPOINT` (`drained after 51ms`, …).
    public var drains: [String: String]?
    /// With `--guard`: the window (and with `--wait-guard` or `--wait`, how it ended; key `guard`).
    public var guardWindow: GuardStatus?
    /// On a fleet proxy: the revision written and the nodes that applied it.
    public var fleet: FleetApplied?

    public init(profile: String, endpoint: String, draining: [String], drains: [String: String]? = nil, guardWindow: GuardStatus? = nil) {
        self.profile = profile
        self.endpoint = endpoint
        self.draining = draining
        self.drains = drains
        self.guardWindow = guardWindow
    }

    private enum CodingKeys: String, CodingKey {
        case profile, endpoint, draining, drains, fleet
        case guardWindow = "guard"
    }
}

/// A profile's guard window in `show endpoints --json`, `switch --guard --json` and `/metrics`:
/// open (`state` `watching`) or the last one that ended (`ended`, with its `outcome`).
public struct GuardStatus: Codable, Sendable, Equatable {
    /// The profile concerned.
    public var profile: String
    /// `watching` while the window is open, `ended` after.
    public var state: String
    /// The endpoint under judgement.
    public var live: String
    /// The endpoints standing by (while `watching`) or that stood by.
    public var standby: [String]
    /// Milliseconds until a clean end (0 once ended; key `time_left_ms`).
    public var timeLeftMs: Int64
    /// Answers judged so far (key `requests_judged`).
    public var requestsJudged: Int
    /// 5xx answers among them (key `status_5xx`).
    public var status5xx: Int
    /// `status_5xx / requests_judged`, 0 with none (key `ratio_5xx`).
    public var ratio5xx: Double
    /// Failed connects (key `connect_failures`).
    public var connectFailures: Int
    /// The p99 bucket's bounds in milliseconds: above `p99_lower_ms`, at most `p99_upper_ms`
    /// (absent: nothing timed yet, or beyond the last bound).
    public var p99LowerMs: Int64?
    public var p99UpperMs: Int64?
    /// Once ended: `clean`, `breach` or `superseded`.
    public var outcome: String?
    /// Once ended: the verdict in operator words (`guard breach: 5xx ratio 0.31 > 0.05 over 54 requests, reverted to blue`).
    public var verdict: String?
    /// After a breach: the threshold breached (`max_5xx_ratio`, …).
    public var breached: String?
    /// After a breach: the endpoint the profile went back to (key `reverted_to`).
    public var revertedTo: String?

    public init(
        profile: String, state: String, live: String, standby: [String], timeLeftMs: Int64, requestsJudged: Int, status5xx: Int,
        ratio5xx: Double, connectFailures: Int, p99LowerMs: Int64?, p99UpperMs: Int64?, outcome: String? = nil, verdict: String? = nil,
        breached: String? = nil, revertedTo: String? = nil
    ) {
        self.profile = profile
        self.state = state
        self.live = live
        self.standby = standby
        self.timeLeftMs = timeLeftMs
        self.requestsJudged = requestsJudged
        self.status5xx = status5xx
        self.ratio5xx = ratio5xx
        self.connectFailures = connectFailures
        self.p99LowerMs = p99LowerMs
        self.p99UpperMs = p99UpperMs
        self.outcome = outcome
        self.verdict = verdict
        self.breached = breached
        self.revertedTo = revertedTo
    }

    /// The status of `window` on `profile` at `now`; `nil` when no window was ever opened.
    public init?(profile: String, window: GuardWindow, now: MonotonicInstant) {
        let watch: GuardWindow.Watch
        let verdict: GuardVerdict?
        switch window {
        case .idle: return nil
        case .watching(let open): (watch, verdict) = (open, nil)
        case .ended(let closed, let how): (watch, verdict) = (closed, how)
        }
        var breached: String?
        var revertedTo: String?
        if case .breach(let breach, let back)? = verdict { (breached, revertedTo) = (breach.threshold, back) }
        let figures = watch.figures
        self.init(
            profile: profile, state: verdict == nil ? "watching" : "ended", live: watch.live, standby: watch.standby,
            timeLeftMs: verdict == nil ? watch.ends.since(now).milliseconds : 0, requestsJudged: figures.requests,
            status5xx: figures.status5xx, ratio5xx: figures.ratio5xx, connectFailures: figures.connectFailures,
            p99LowerMs: figures.p99?.lower.milliseconds, p99UpperMs: figures.p99?.upper?.milliseconds,
            outcome: verdict?.outcome, verdict: verdict?.description, breached: breached, revertedTo: revertedTo)
    }

    /// `guard web: watching green, 8.2s left, blue stands by: 412 requests, 5xx ratio 0.00, 0 connect failures, p99 1ms..5ms`.
    public var line: String {
        let p99 = p99UpperMs.map { "p99 \(p99LowerMs ?? 0)ms..\($0)ms" } ?? p99LowerMs.map { "p99 >\($0)ms" } ?? "p99 -"
        let figures = "\(requestsJudged) requests, 5xx ratio \(GuardBreach.format(ratio5xx)), \(connectFailures) connect failures, \(p99)"
        if let verdict { return "guard \(profile): ended on \(live): \(verdict) (\(figures))" }
        let left = DurationText.format(.milliseconds(timeLeftMs))
        return "guard \(profile): watching \(live), \(left) left, \(standby.joined(separator: ", ")) standing by: \(figures)"
    }
}

/// `set endpoint PROFILE/NAME … --json`.
public struct SetEndpointAnswer: Codable, Sendable, Equatable {
    /// The profile concerned.
    public var profile: String
    /// The endpoint concerned.
    public var endpoint: String

    public init(profile: String, endpoint: String) {
        self.profile = profile
        self.endpoint = endpoint
    }
}

/// `pause PROFILE --json` and `resume PROFILE --json`.
public struct PauseAnswer: Codable, Sendable, Equatable {
    /// The profile concerned.
    public var profile: String
    /// Whether the profile is paused now.
    public var paused: Bool
    /// On resume: how many held requests and connections were released.
    public var released: Int?

    public init(profile: String, paused: Bool, released: Int? = nil) {
        self.profile = profile
        self.paused = paused
        self.released = released
    }
}

/// `maintenance PROFILE on|off --json` and `readonly PROFILE on|off --json`: the gate that was set.
public struct GateAnswer: Codable, Sendable, Equatable {
    /// The profile concerned.
    public var profile: String
    /// Set by `maintenance`.
    public var maintenance: Bool?
    /// Set by `readonly` (the key is `readonly`, one word, as the command): true at `on` and at
    /// `hold` (writes kept from the backends), as scripts written before `hold` expect.
    public var readonly: Bool?
    /// Set by `readonly`: the gate's position, `off`, `on` or `hold`.
    public var readonlyGate: ReadOnlyGate?
    /// Set by `readonly`: held requests the change let go (to a backend at `off`, to a 503 at `on`).
    public var released: Int?

    public init(profile: String, maintenance: Bool? = nil, readonly gate: ReadOnlyGate? = nil, released: Int? = nil) {
        self.profile = profile
        self.maintenance = maintenance
        self.readonly = gate?.isClosed
        self.readonlyGate = gate
        self.released = released
    }
}

/// `show profiles --json`.
public struct ProfilesAnswer: Codable, Sendable, Equatable {
    /// In config order.
    public var profiles: [ProfileStatus]

    public init(profiles: [ProfileStatus]) { self.profiles = profiles }

    /// The profile named `name`, if the proxy has one.
    public func profile(named name: String) -> ProfileStatus? { profiles.first { $0.name == name } }
}

/// One profile in `show profiles`.
public struct ProfileStatus: Codable, Sendable, Equatable {
    /// Its name, as in the config.
    public var name: String
    /// The endpoints new work goes to now, in snapshot order.
    public var live: [String]
    /// Whether new work is held.
    public var paused: Bool
    /// Whether the maintenance gate answers 503.
    public var maintenance: Bool
    /// Whether writes are kept from the backends (key `readonly`): true at `on` and at `hold`.
    public var readonly: Bool
    /// The read-only gate's position: `off`, `on` or `hold`.
    public var readonlyGate: ReadOnlyGate
    /// Requests and connections held now.
    public var held: Int
    /// How many endpoints the profile has.
    public var endpoints: Int
    /// Requests and tunnels being served by the profile's endpoints now.
    public var inFlight: Int
    /// Of those, HTTP requests with an unsafe method: zero once writes are held and the last one
    /// already sent has been answered.
    public var writesInFlight: Int
    /// How long held work waits before a 503 (the profile's `hold_timeout`; absent from older proxies).
    public var holdTimeoutMs: Int64?
    /// The listener routes that lead here, as `LISTENER HOST/PREFIX` (`*` for any host), and
    /// `LISTENER default` where the profile is a listener's default (absent from older proxies).
    public var routes: [String]?

    public init(name: String, live: [String], paused: Bool, maintenance: Bool, readonly gate: ReadOnlyGate, held: Int, endpoints: Int,
                inFlight: Int = 0, writesInFlight: Int = 0, holdTimeoutMs: Int64? = nil, routes: [String]? = nil) {
        self.name = name
        self.live = live
        self.paused = paused
        self.maintenance = maintenance
        self.readonly = gate.isClosed
        self.readonlyGate = gate
        self.held = held
        self.endpoints = endpoints
        self.inFlight = inFlight
        self.writesInFlight = writesInFlight
        self.holdTimeoutMs = holdTimeoutMs
        self.routes = routes
    }
}

/// `show endpoints [PROFILE] --json`.
public struct EndpointsAnswer: Codable, Sendable, Equatable {
    /// In config order, profile by profile.
    public var endpoints: [EndpointStatus]
    /// The guard window of each profile that had one since the proxy started (open or the last ended).
    public var guards: [GuardStatus]?

    public init(endpoints: [EndpointStatus], guards: [GuardStatus]? = nil) {
        self.endpoints = endpoints
        self.guards = guards
    }

    /// The endpoint `name` (of `profile`, when given).
    public func endpoint(named name: String, profile: String? = nil) -> EndpointStatus? {
        endpoints.first { $0.name == name && (profile == nil || $0.profile == profile) }
    }
}

/// One endpoint in `show endpoints`: what the operator asked (`state`) apart from what probes saw (`health`).
public struct EndpointStatus: Codable, Sendable, Equatable {
    /// The profile concerned.
    public var profile: String
    /// Its name, as in the config.
    public var name: String
    /// `host:port`.
    public var address: String
    /// Admin state: `online`, `offline` or `draining`; `standby` while a guard window keeps it ready;
    /// `draining` also while its agent probe drains it (`agent_share` 0).
    public var state: String
    /// Health: `unknown`, `up` or `down`.
    public var health: String
    /// Lower wins.
    public var priority: Int
    /// Share among endpoints of the same priority.
    public var weight: Int
    /// Whether new work may go to it in the current snapshot.
    public var live: Bool
    /// Requests (and tunnels) in progress on it (key `in_flight`).
    public var inFlight: Int
    /// Upstream connections open to it.
    public var connections: Int
    /// The last health change, with its cause (key `last_change`).
    public var lastChange: EventRecord?
    /// While it drains: how long it has drained, and how long until `drain_timeout` (keys
    /// `drain_elapsed_ms`, `drain_left_ms`; absent otherwise).
    public var drainElapsedMs: Int64?
    public var drainLeftMs: Int64?
    /// Answers per second over about the last minute (key `rate_1m`; see `CounterRing`), absent
    /// before the first sample.
    public var rate1m: Double?
    /// Median and 99th percentile of relayed answers over the same minute, in milliseconds
    /// (keys `p50_ms`, `p99_ms`); absent with nothing timed.
    public var p50Ms: Double?
    public var p99Ms: Double?
    /// The share of `weight` its agent probe asked for, in percent (0: the agent drains it; key
    /// `agent_share`); absent while it has its full weight.
    public var agentShare: Int?

    public init(
        profile: String, name: String, address: String, state: String, health: String, priority: Int, weight: Int,
        live: Bool, inFlight: Int, connections: Int, lastChange: EventRecord? = nil, drainElapsedMs: Int64? = nil, drainLeftMs: Int64? = nil,
        rate1m: Double? = nil, p50Ms: Double? = nil, p99Ms: Double? = nil, agentShare: Int? = nil
    ) {
        self.agentShare = agentShare
        self.rate1m = rate1m
        self.p50Ms = p50Ms
        self.p99Ms = p99Ms
        self.drainElapsedMs = drainElapsedMs
        self.drainLeftMs = drainLeftMs
        self.profile = profile
        self.name = name
        self.address = address
        self.state = state
        self.health = health
        self.priority = priority
        self.weight = weight
        self.live = live
        self.inFlight = inFlight
        self.connections = connections
        self.lastChange = lastChange
    }

    // `rate_1m` is not the snake form of any property name: the encoder's strategy writes `rate1m`
    // as `rate1m`, and the decoder's reads `rate_1m` as `rate1M`. So the key is spelled out for
    // writing, and read under the name the decoder's conversion gives it.
    private enum CodingKeys: String, CodingKey {
        case profile, name, address, state, health, priority, weight, live, inFlight, connections, lastChange
        case drainElapsedMs, drainLeftMs, p50Ms, p99Ms, agentShare
        case rate1m = "rate_1m"
        case rate1mDecoded = "rate1M"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            profile: try c.decode(String.self, forKey: .profile), name: try c.decode(String.self, forKey: .name),
            address: try c.decode(String.self, forKey: .address), state: try c.decode(String.self, forKey: .state),
            health: try c.decode(String.self, forKey: .health), priority: try c.decode(Int.self, forKey: .priority),
            weight: try c.decode(Int.self, forKey: .weight), live: try c.decode(Bool.self, forKey: .live),
            inFlight: try c.decode(Int.self, forKey: .inFlight), connections: try c.decode(Int.self, forKey: .connections),
            lastChange: try c.decodeIfPresent(EventRecord.self, forKey: .lastChange),
            drainElapsedMs: try c.decodeIfPresent(Int64.self, forKey: .drainElapsedMs),
            drainLeftMs: try c.decodeIfPresent(Int64.self, forKey: .drainLeftMs),
            rate1m: try c.decodeIfPresent(Double.self, forKey: .rate1mDecoded) ?? c.decodeIfPresent(Double.self, forKey: .rate1m),
            p50Ms: try c.decodeIfPresent(Double.self, forKey: .p50Ms), p99Ms: try c.decodeIfPresent(Double.self, forKey: .p99Ms),
            agentShare: try c.decodeIfPresent(Int.self, forKey: .agentShare))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(profile, forKey: .profile)
        try c.encode(name, forKey: .name)
        try c.encode(address, forKey: .address)
        try c.encode(state, forKey: .state)
        try c.encode(health, forKey: .health)
        try c.encode(priority, forKey: .priority)
        try c.encode(weight, forKey: .weight)
        try c.encode(live, forKey: .live)
        try c.encode(inFlight, forKey: .inFlight)
        try c.encode(connections, forKey: .connections)
        try c.encodeIfPresent(lastChange, forKey: .lastChange)
        try c.encodeIfPresent(drainElapsedMs, forKey: .drainElapsedMs)
        try c.encodeIfPresent(drainLeftMs, forKey: .drainLeftMs)
        try c.encodeIfPresent(rate1m, forKey: .rate1m)
        try c.encodeIfPresent(p50Ms, forKey: .p50Ms)
        try c.encodeIfPresent(p99Ms, forKey: .p99Ms)
        try c.encodeIfPresent(agentShare, forKey: .agentShare)
    }
}

/// `show events [N] --json`.
public struct EventsAnswer: Codable, Sendable, Equatable {
    /// Oldest first.
    public var events: [EventRecord]

    public init(events: [EventRecord]) { self.events = events }
}

/// One state or health change with its cause.
public struct EventRecord: Codable, Sendable, Equatable {
    /// UTC, ISO 8601 with milliseconds.
    public var time: String
    /// The profile concerned.
    public var profile: String
    /// `nil` for profile-wide changes (pause, gates).
    public var endpoint: String?
    /// The new state in the operator's words (`draining`, `down`, `paused`, `maintenance on`).
    public var state: String
    /// Why it changed (`switch`, `probe: timeout after 1s on /healthz`, …).
    public var cause: String

    public init(time: String, profile: String, endpoint: String?, state: String, cause: String) {
        self.time = time
        self.profile = profile
        self.endpoint = endpoint
        self.state = state
        self.cause = cause
    }
}

/// `show stats --json`: process-wide totals.
public struct StatsAnswer: Codable, Sendable, Equatable {
    /// Seconds since start (key `uptime_seconds`).
    public var uptimeSeconds: Int
    /// Client connections open now.
    public var connectionsOpen: Int
    /// Client connections accepted since start.
    public var connectionsAccepted: Int
    /// Client connections refused since start (`max_connections` reached).
    public var connectionsRefused: Int
    /// Idle client connections closed at `max_connections` to make room for a new one.
    public var connectionsEvicted: Int
    /// HTTP requests since start.
    public var requests: Int
    /// Requests the proxy answered itself: parse errors, gates, 502/503/504.
    public var proxyAnswered: Int
    /// Requests and connections held now.
    public var heldNow: Int
    /// Held since start.
    public var heldTotal: Int
    /// Held ones answered 503 at the hold timeout or `max_held`.
    public var holdTimeouts: Int
    /// `switch` commands that changed the live endpoint.
    public var switches: Int
    /// Tunnels started since start (TCP mode, and upgraded HTTP connections).
    public var tunnels: Int
    /// Generation of the routing snapshot in use.
    public var snapshotGeneration: Int
    /// Worker queues.
    public var workers: Int
    /// Client connections each worker serves now, by worker index: new connections go to the one
    /// with the fewest, so these stay within one of each other while clients come and go evenly.
    public var connectionsByWorker: [Int]?
    /// TLS handshakes completed on TLS listeners.
    public var tlsHandshakes: Int
    /// TLS handshakes on listeners that failed (bad version, no shared cipher, timeout, plain HTTP…).
    public var tlsHandshakeFailures: Int
    /// Of those, clients that sent plain HTTP to a TLS port.
    public var tlsPlainHTTP: Int
    /// TLS handshakes to endpoints that failed (verification, protocol, timeout).
    public var tlsUpstreamHandshakeFailures: Int
    /// 1 for a proxy started afresh, one more than its predecessor's after each `--takeover`.
    public var processGeneration: Int
    /// When this process took over from its predecessor (UTC, ISO 8601); absent if it did not.
    public var lastTakeover: String?

    public init(
        uptimeSeconds: Int, connectionsOpen: Int, connectionsAccepted: Int, connectionsRefused: Int, connectionsEvicted: Int = 0, requests: Int,
        proxyAnswered: Int, heldNow: Int, heldTotal: Int, holdTimeouts: Int, switches: Int, tunnels: Int,
        snapshotGeneration: Int, workers: Int, tlsHandshakes: Int = 0, tlsHandshakeFailures: Int = 0, tlsPlainHTTP: Int = 0,
        tlsUpstreamHandshakeFailures: Int = 0, processGeneration: Int = 1, lastTakeover: String? = nil, connectionsByWorker: [Int]? = nil
    ) {
        self.connectionsByWorker = connectionsByWorker
        self.processGeneration = processGeneration
        self.lastTakeover = lastTakeover
        self.tlsHandshakes = tlsHandshakes
        self.tlsHandshakeFailures = tlsHandshakeFailures
        self.tlsPlainHTTP = tlsPlainHTTP
        self.tlsUpstreamHandshakeFailures = tlsUpstreamHandshakeFailures
        self.uptimeSeconds = uptimeSeconds
        self.connectionsOpen = connectionsOpen
        self.connectionsAccepted = connectionsAccepted
        self.connectionsRefused = connectionsRefused
        self.connectionsEvicted = connectionsEvicted
        self.requests = requests
        self.proxyAnswered = proxyAnswered
        self.heldNow = heldNow
        self.heldTotal = heldTotal
        self.holdTimeouts = holdTimeouts
        self.switches = switches
        self.tunnels = tunnels
        self.snapshotGeneration = snapshotGeneration
        self.workers = workers
    }
}
