import Synchronization

/// One endpoint as the hot path sees it: its identity, where to connect, and live counters.
///
/// A target outlives snapshots: the same object is reused by every snapshot while the endpoint keeps
/// its address, so counters and pooled upstream connections survive switches and reloads.
public final class EndpointTarget: Sendable {
    public let profile: String
    public let name: String
    public let address: HostPort
    /// The resolved socket address (a `sockaddr_in`/`sockaddr_in6` as bytes), filled by the I/O layer.
    public let socketAddress: [UInt8]
    public let counters: EndpointCounters
    /// How the I/O layer speaks TLS to this endpoint (its client context), `nil` for plain TCP;
    /// opaque here, filled like `socketAddress`.
    public let upstreamTLS: (any AnyObject & Sendable)?
    /// `send_proxy`: each new connection to the endpoint starts with a PROXY header of this version.
    public let sendProxy: ProxyProtocol.Version?

    public init(
        profile: String, name: String, address: HostPort, socketAddress: [UInt8], counters: EndpointCounters = EndpointCounters(),
        upstreamTLS: (any AnyObject & Sendable)? = nil, sendProxy: ProxyProtocol.Version? = nil
    ) {
        self.sendProxy = sendProxy
        self.profile = profile
        self.name = name
        self.address = address
        self.socketAddress = socketAddress
        self.counters = counters
        self.upstreamTLS = upstreamTLS
    }

    /// `profile/name`, as operators write it in `set endpoint`.
    public var qualifiedName: String { "\(profile)/\(name)" }
}

/// Live, lock-free counters of one endpoint, read by `show endpoints`, drains and metrics.
public final class EndpointCounters: Sendable {
    /// Requests and tunnels currently being served by this endpoint.
    public let inFlight = Atomic<Int>(0)
    /// Of those, HTTP requests with an unsafe method (not GET, HEAD or OPTIONS): what a runbook waits
    /// to reach zero after holding writes, before it fences the database underneath.
    public let writesInFlight = Atomic<Int>(0)
    /// Upstream connections open to this endpoint (in use or idle in a pool).
    public let connections = Atomic<Int>(0)
    /// Responses by status class (`2xx`...); `noResponse` counts exchanges that ended without one.
    public let responses1xx = Atomic<Int>(0)
    public let responses2xx = Atomic<Int>(0)
    public let responses3xx = Atomic<Int>(0)
    public let responses4xx = Atomic<Int>(0)
    public let responses5xx = Atomic<Int>(0)
    public let noResponse = Atomic<Int>(0)
    public let connectErrors = Atomic<Int>(0)
    /// Tunnels and requests force-closed at a drain deadline.
    public let forceClosed = Atomic<Int>(0)
    /// Non-zero while live traffic has a failure streak against this endpoint, so that successes
    /// reset it only when there is something to reset.
    public let passiveStreak = Atomic<Int>(0)
    public let bytesIn = Atomic<Int>(0)
    public let bytesOut = Atomic<Int>(0)
    /// Durations of exchanges relayed from this endpoint, for `cutover_request_duration_seconds`.
    public let latency = LatencyHistogram()

    public init() {}

    /// An HTTP request was handed to this endpoint.
    public func requestStarted(method: String) {
        inFlight.wrappingAdd(1, ordering: .relaxed)
        if !ReadOnlyGate.isSafe(method: method) { writesInFlight.wrappingAdd(1, ordering: .relaxed) }
    }

    /// An HTTP request handed to this endpoint ended, answered or not.
    public func requestEnded(method: String) {
        inFlight.wrappingSubtract(1, ordering: .relaxed)
        if !ReadOnlyGate.isSafe(method: method) { writesInFlight.wrappingSubtract(1, ordering: .relaxed) }
    }

    /// Responses counted per status class label (`1xx` ... `5xx`, and `none`).
    public var responsesByClass: [(label: String, count: Int)] {
        [("1xx", responses1xx.load(ordering: .relaxed)), ("2xx", responses2xx.load(ordering: .relaxed)),
         ("3xx", responses3xx.load(ordering: .relaxed)), ("4xx", responses4xx.load(ordering: .relaxed)),
         ("5xx", responses5xx.load(ordering: .relaxed)), ("none", noResponse.load(ordering: .relaxed))]
    }

    /// Counts one finished exchange under its status class (0 when no response was relayed).
    public func recordResponse(status: Int) {
        switch status {
        case 100...199: responses1xx.wrappingAdd(1, ordering: .relaxed)
        case 200...299: responses2xx.wrappingAdd(1, ordering: .relaxed)
        case 300...399: responses3xx.wrappingAdd(1, ordering: .relaxed)
        case 400...499: responses4xx.wrappingAdd(1, ordering: .relaxed)
        case 500...599: responses5xx.wrappingAdd(1, ordering: .relaxed)
        default: noResponse.wrappingAdd(1, ordering: .relaxed)
        }
    }
}
