/// Where the bytes an `HTTPExchangeAction` names are: valid only until the next call into the
/// `HTTPExchangeStateMachine`, so the driver uses them at once and never keeps the range.
public enum HTTPExchangeBytes: Sendable, Equatable {
    /// A range of the buffer handed in with the event that returned the action.
    case input(Range<Int>)
    /// A range of the machine's `clientBuffer` (client bytes that waited: a partial head, early
    /// body bytes, pipelined requests).
    case clientBuffer(Range<Int>)
    /// A range of the machine's `upstreamBuffer` (response bytes that waited for the rest of a head).
    case upstreamBuffer(Range<Int>)

    /// How many bytes.
    public var count: Int {
        switch self {
        case .input(let range), .clientBuffer(let range), .upstreamBuffer(let range): return range.count
        }
    }
}

/// An upstream failure the machine finds, before it knows the endpoint's name: the driver turns it
/// into a `ProxyFault` with `fault(endpoint:)`, so no text is built on the hot path.
public enum HTTPUpstreamFailure: Sendable, Equatable {
    /// The connect did not finish within `timeouts.connect`.
    case connectTimedOut(Duration)
    /// No response head within `timeouts.upstream_response` of the request being sent.
    case responseTimedOut(Duration)
    /// The upstream took no request body bytes for `timeouts.client_body` while the client had more.
    case bodyNotAccepted(Duration)
    /// The connection closed or reset before a response head.
    case closedBeforeAnswering
    /// The response head (or its framing) broke HTTP's rules.
    case invalidResponse(HTTPParseError)
    /// `101 Switching Protocols` to a request that asked for no upgrade.
    case switchedWithoutAsking

    /// The fault the proxy answers for, naming the endpoint (`profile/name`).
    public func fault(endpoint: String) -> ProxyFault {
        switch self {
        case .connectTimedOut(let connect):
            return .upstreamTimedOut(reason: "connect to \(endpoint) timed out after \(DurationText.format(connect))")
        case .responseTimedOut(let wait):
            return .upstreamTimedOut(reason: "\(endpoint) sent no response within \(DurationText.format(wait))")
        case .bodyNotAccepted(let wait):
            return .upstreamTimedOut(reason: "\(endpoint) took no request body bytes for \(DurationText.format(wait))")
        case .closedBeforeAnswering:
            return .upstreamUnreachable(reason: "\(endpoint) closed the connection before answering")
        case .invalidResponse(let error):
            return .upstreamInvalid(reason: "invalid response from \(endpoint): \(error.reason)")
        case .switchedWithoutAsking:
            return .upstreamInvalid(reason: "\(endpoint) switched protocols without being asked")
        }
    }
}

/// What the proxy answers itself: a fault (whose status `ProxyFault.answer` picks), an upstream
/// failure (named by the driver), the maintenance page or an HTTPS redirect.
///
/// Indirect: a fault's payload (its texts) lives in a box made only when there is a fault, so the
/// actions that carry an answer stay a few words wide and every action batch stays small to copy.
public indirect enum HTTPLocalAnswer: Sendable, Equatable {
    /// A fault with its status and message.
    case fault(ProxyFault)
    /// An upstream failure; `HTTPUpstreamFailure.fault(endpoint:)` names the endpoint.
    case upstream(HTTPUpstreamFailure)
    /// The maintenance gate's page (503).
    case maintenance
    /// `redirect_https` (308); the driver knows the location.
    case redirect

    /// Whether the client caused it: the connection closes after the answer (what follows the
    /// request cannot be trusted).
    public var isClientFault: Bool {
        switch self {
        case .fault(.client), .fault(.clientTooSlow), .fault(.clientBodyTooSlow): return true
        case .fault(.upstreamUnreachable), .fault(.upstreamInvalid), .fault(.upstreamTimedOut), .fault(.listenerRemoved), .fault(.noRoute),
            .fault(.noEndpoint), .fault(.readOnly), .fault(.holdFull), .fault(.holdTimedOut), .upstream, .maintenance, .redirect:
            return false
        }
    }
}

/// How an exchange ended, for the access log and the endpoint's counters.
public enum HTTPExchangeEnding: Sendable, Equatable {
    /// The upstream's response was relayed whole with this status.
    case relayed(status: Int)
    /// The proxy answered itself.
    case answered(HTTPLocalAnswer)
    /// The upstream answered `101` and the connection became a tunnel.
    case upgraded
    /// Nothing more could be said (a response had started, or the client went away). Boxed, like
    /// `HTTPLocalAnswer`'s payloads: the common ending (`relayed`) keeps `log` actions one word wide.
    indirect case aborted(HTTPExchangeAbort)
}

/// Why an exchange was cut off.
public enum HTTPExchangeAbort: Sendable, Equatable {
    /// The client reset the connection.
    case clientReset
    /// The client ended its stream before the request was complete.
    case clientClosedMidRequest
    /// The upstream closed or reset while its response was relayed.
    case upstreamClosedMidResponse
    /// A chunked response body broke the framing.
    case badChunkedResponse(HTTPParseError)
    /// No byte moved within `upstream_response` (or `write`) after the response started.
    case transferStalled
    /// The driver forced it (drain deadline, shutdown).
    case forced(reason: String)
    /// A fault found after part of the response had gone out: a second answer cannot follow.
    case faultAfterResponseStarted(HTTPLocalAnswer)

    /// The access log's note.
    public var note: String {
        switch self {
        case .clientReset: return "client reset"
        case .clientClosedMidRequest: return "client closed mid-request"
        case .upstreamClosedMidResponse: return "upstream closed mid-response"
        case .badChunkedResponse(let error): return "bad chunked response: \(error.reason)"
        case .transferStalled: return "transfer stalled"
        case .forced(let reason): return reason
        case .faultAfterResponseStarted(let answer): return "after the response started: \(answer)"
        }
    }
}

/// One effect for the driver of an `HTTPExchangeStateMachine` to perform, in order.
///
/// Actions are a few words each and carry no head: the request head being routed is the machine's
/// `requestHead`, and the one final response head of a batch is the batch's `responseHead`. A head
/// holds arrays, and copying actions that held heads retained and released them several times per
/// request (docs/performance-history.md, "Small actions").
public enum HTTPExchangeAction: Sendable, Equatable {
    /// Route `requestHead` (gates, holds, endpoint choice); answer with `routed(_:now:)`.
    case route
    /// Take a pooled upstream connection (unless `fresh`: a retry after a reused one closed) or start
    /// a connect to the chosen endpoint; answer with `upstreamConnected(reused:now:)` or
    /// `upstreamConnectFailed(_:now:)`.
    case connectUpstream(fresh: Bool)
    /// Write the routed request head upstream (with forwarding headers; `upgrading` keeps Upgrade).
    case writeRequestHead(upgrading: Bool)
    /// Write these bytes upstream (request body).
    case writeUpstream(HTTPExchangeBytes)
    /// Write the client's version of an interim (1xx) response head. Boxed: interim heads are rare,
    /// and one read can hold several of them before the final head.
    indirect case writeInterimHead(HTTPResponseHead)
    /// Write the client's version of the batch's `responseHead` (a final head, or `101`), then `body`
    /// in the same system call.
    case writeResponseHead(body: HTTPExchangeBytes?, keepAlive: Bool, upgrading: Bool)
    /// Write these bytes to the client (response body).
    case writeClient(HTTPExchangeBytes)
    /// Write a local answer; `keepAlive` false adds `Connection: close`.
    case answer(HTTPLocalAnswer, keepAlive: Bool)
    /// Put the upstream connection back in the pool for the next request (if still wanted).
    case parkUpstream
    /// Close the upstream connection.
    case closeUpstream
    /// Stop or start reading the client.
    case pauseClient
    case resumeClient
    /// Stop or start reading the upstream.
    case pauseUpstream
    case resumeUpstream
    /// The exchange ended: report it to the endpoint's counters and write the access-log line. It
    /// comes after the exchange's last write or answer, and before anything of the next exchange.
    case log(HTTPExchangeEnding, bytesToClient: Int)
    /// Ask the driver why the request is held now; answer with `holdTimedOut(_:now:)`.
    case giveUpHold
    /// Stop being an HTTP session: the two sockets become a tunnel, with these bytes owed to each side.
    indirect case handOver(toUpstream: HTTPExchangeBytes?, toClient: HTTPExchangeBytes?)
    /// Close the client connection once what is queued for it is written; if bytes stay queued,
    /// the machine says `closeNow` on `clientDrained` or at the `write` deadline.
    case close
    /// Close the client connection now, dropping anything queued.
    case closeNow
}

/// The few actions one event returns, in order, stored inline: no allocation per event.
public struct HTTPExchangeActions: Sendable, Equatable {
    /// The most one event produces (a response finished: write, park, log, then the next head's
    /// route and the reading it needs).
    public static let capacity = 8
    private var a0, a1, a2, a3, a4, a5, a6, a7: HTTPExchangeAction?
    /// How many actions are stored.
    public private(set) var count = 0
    /// The final response head `writeResponseHead` writes: one exchange's response starts at most
    /// once per event (after it, the next exchange waits for its route).
    public private(set) var responseHead: HTTPResponseHead?

    /// No actions.
    public init() {}

    /// Appends an action.
    /// - Precondition: fewer than `capacity` actions stored.
    public mutating func append(_ action: HTTPExchangeAction) {
        switch count {
        case 0: a0 = action
        case 1: a1 = action
        case 2: a2 = action
        case 3: a3 = action
        case 4: a4 = action
        case 5: a5 = action
        case 6: a6 = action
        case 7: a7 = action
        default: preconditionFailure("more than \(Self.capacity) actions for one event")
        }
        count += 1
    }

    /// Appends `writeResponseHead` for `head`.
    /// - Precondition: no final head in this batch yet.
    public mutating func appendResponseHead(_ head: HTTPResponseHead, body: HTTPExchangeBytes?, keepAlive: Bool, upgrading: Bool) {
        precondition(responseHead == nil, "two final response heads in one batch")
        responseHead = head
        append(.writeResponseHead(body: body, keepAlive: keepAlive, upgrading: upgrading))
    }

    /// The last action appended, if any.
    public var last: HTTPExchangeAction? { count == 0 ? nil : self[count - 1] }

    /// The action at `index`.
    public subscript(index: Int) -> HTTPExchangeAction {
        let slot: HTTPExchangeAction?
        switch index {
        case 0: slot = a0
        case 1: slot = a1
        case 2: slot = a2
        case 3: slot = a3
        case 4: slot = a4
        case 5: slot = a5
        case 6: slot = a6
        case 7: slot = a7
        default: slot = nil
        }
        guard index < count, let slot else { preconditionFailure("no action \(index) of \(count)") }
        return slot
    }
}
