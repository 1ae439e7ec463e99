/// Why the proxy answers a request itself instead of relaying an upstream's response: whose fault
/// it is (the client's, the upstream's, the proxy's, a gate's or a hold's), with what the answer
/// needs to say.
///
/// `answer` is the one place that turns a fault into a status code, so that the 400s, 502s, 503s and
/// 504s Cutover writes stay consistent wherever in an exchange the fault is found.
public enum ProxyFault: Sendable, Equatable {
    /// The request broke HTTP's rules (a malformed head, a bad body, a limit): its parse error's 4xx/5xx.
    case client(HTTPParseError)
    /// The client did not send a whole head within `header_read`.
    case clientTooSlow(headerRead: Duration)
    /// The client stopped sending a request body it still owed for `client_body`.
    case clientBodyTooSlow(clientBody: Duration)
    /// The endpoint could not be reached or lost the connection before answering.
    case upstreamUnreachable(reason: String)
    /// The endpoint answered with something that is not a valid HTTP response.
    case upstreamInvalid(reason: String)
    /// The endpoint did not connect or answer in time.
    case upstreamTimedOut(reason: String)
    /// The listener's profile is being removed by a reload.
    case listenerRemoved
    /// No route of the listener matches the request's host and path (`host` is `nil` without Host).
    case noRoute(host: String?, listener: String)
    /// No endpoint of the profile is eligible and nothing holds the request.
    case noEndpoint(profile: String, retryAfter: Duration)
    /// The profile's read-only gate refuses this unsafe method.
    case readOnly(profile: String, method: String, retryAfter: Duration)
    /// The hold queue is full (`max_held`).
    case holdFull(profile: String, why: HoldConditions.Reason, maxHeld: Int, retryAfter: Duration)
    /// The request waited longer than `hold_timeout`.
    case holdTimedOut(profile: String, why: HoldConditions.Reason)

    /// What the proxy answers for a fault: status, a one-line message for the body and an optional
    /// `Retry-After`.
    public struct Answer: Sendable, Equatable {
        /// The status code.
        public var status: Int
        /// The text body, without the final newline.
        public var message: String
        /// `Retry-After`, when the client may try again later.
        public var retryAfter: Duration?

        /// An answer with these parts.
        public init(status: Int, message: String, retryAfter: Duration? = nil) {
            self.status = status
            self.message = message
            self.retryAfter = retryAfter
        }
    }

    /// The status, body and `Retry-After` for this fault.
    public var answer: Answer {
        switch self {
        case .client(let error):
            return Answer(status: error.status, message: error.reason)
        case .clientTooSlow(let headerRead):
            return Answer(status: 408, message: "request head not received within \(DurationText.format(headerRead))")
        case .clientBodyTooSlow(let clientBody):
            return Answer(status: 408, message: "no request body bytes received for \(DurationText.format(clientBody))")
        case .upstreamUnreachable(let reason), .upstreamInvalid(let reason):
            return Answer(status: 502, message: "bad gateway: \(reason)")
        case .upstreamTimedOut(let reason):
            return Answer(status: 504, message: "upstream timed out: \(reason)")
        case .listenerRemoved:
            return Answer(status: 503, message: "this listener is being removed")
        case .noRoute(let host, let listener):
            let what = host.map { "host \"\($0)\"" } ?? "a request without Host"
            return Answer(status: 404, message: "no route for \(what) on listener \(listener)")
        case .noEndpoint(let profile, let retryAfter):
            return Answer(status: 503, message: "no endpoint of profile \(profile) is available", retryAfter: retryAfter)
        case .readOnly(let profile, let method, let retryAfter):
            return Answer(
                status: 503,
                message: "\(profile) is read-only during an upgrade: \(method) is not accepted right now; reads still work. Please retry shortly.",
                retryAfter: retryAfter)
        case .holdFull(let profile, let why, let maxHeld, let retryAfter):
            return Answer(
                status: 503, message: "\(profile) is holding requests (\(Self.holdText(why))) and its hold queue is full (max_held \(maxHeld))",
                retryAfter: retryAfter)
        case .holdTimedOut(let profile, let why):
            return Answer(
                status: 503,
                message: "\(profile) held this request longer than its hold timeout (\(Self.holdText(why))); it was not sent upstream",
                retryAfter: .seconds(5))
        }
    }

    /// The `reason` label of `cutover_proxy_answers_total` for this fault.
    public var reason: ProxyAnswerReason {
        switch self {
        case .client: return .badRequest
        case .clientTooSlow, .clientBodyTooSlow: return .clientTimeout
        case .upstreamUnreachable, .upstreamInvalid: return .badGateway
        case .upstreamTimedOut: return .gatewayTimeout
        case .listenerRemoved: return .listenerRemoved
        case .noRoute: return .noRoute
        case .noEndpoint: return .noEndpoint
        case .readOnly: return .readOnly
        case .holdFull: return .holdFull
        case .holdTimedOut: return .holdTimeout
        }
    }

    /// Whether the fault counts against the endpoint's passive health (a connect failure, a reset
    /// before the answer, a timeout); an invalid response or a client's fault does not.
    public var isConnectionFailure: Bool {
        switch self {
        case .upstreamUnreachable, .upstreamTimedOut: return true
        case .client, .clientTooSlow, .clientBodyTooSlow, .upstreamInvalid, .listenerRemoved, .noRoute, .noEndpoint, .readOnly, .holdFull, .holdTimedOut:
            return false
        }
    }

    /// Why a request waits, as its 503 says when the hold gives up.
    static func holdText(_ reason: HoldConditions.Reason) -> String {
        switch reason {
        case .paused: return "paused"
        case .writesHeld: return "read-only, writes wait"
        case .unavailable: return "no endpoint available"
        }
    }
}

/// Why the proxy answered a request itself, as the `reason` label of `cutover_proxy_answers_total`:
/// operators alert on 502s and hold timeouts differently from a maintenance page they put up.
public enum ProxyAnswerReason: String, Sendable, CaseIterable {
    /// A malformed or over-limit request (4xx).
    case badRequest = "bad_request"
    /// A client too slow to send its head (408).
    case clientTimeout = "client_timeout"
    /// The endpoint refused, reset or answered something invalid (502).
    case badGateway = "bad_gateway"
    /// The endpoint did not answer in time (504).
    case gatewayTimeout = "gateway_timeout"
    /// The listener went away in a reload while the request waited.
    case listenerRemoved = "listener_removed"
    /// No route matched and the listener has no default (404).
    case noRoute = "no_route"
    /// No endpoint of the profile is eligible (503).
    case noEndpoint = "no_endpoint"
    /// The read-only gate refused an unsafe method (503).
    case readOnly = "readonly"
    /// `max_held` was reached (503).
    case holdFull = "hold_full"
    /// A held request waited `hold_timeout` (503).
    case holdTimeout = "hold_timeout"
    /// The maintenance gate's page (503).
    case maintenance = "maintenance"
    /// `redirect_https` (308).
    case redirect = "redirect_https"
}
