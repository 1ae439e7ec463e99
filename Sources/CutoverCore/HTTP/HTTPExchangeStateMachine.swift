/// One HTTP/1.1 client connection's exchanges as a value: client and upstream bytes, ends of
/// stream, write backpressure, deadlines and the driver's routing answers go in; the effects to
/// perform come out (`HTTPExchangeAction`), a few per event, stored inline.
///
/// The machine is pure: it is given bytes and `now` (monotonic milliseconds) and never touches a
/// socket, a clock, a snapshot or the log. What needs the runtime — which profile and endpoint, a
/// gate, a hold — is asked for with an action (`route`, `connectUpstream`, `giveUpHold`) and
/// answered with an event (`routed`, `upstreamConnected`, `holdTimedOut`), so every decision about
/// framing, keep-alive, retries, timeouts and whose fault an ending is sits here and is tested by
/// feeding bytes in uneven chunks (`HTTPExchangeStateMachineTests`).
///
/// Bytes named by actions are ranges of the event's input or of the machine's own buffers
/// (`HTTPExchangeBytes`), valid until the next call: nothing is copied for the common case of a
/// whole head and its body in one read; only bytes that must wait (a partial head, a pipelined
/// request, body bytes that arrive before the upstream is connected) are kept.
///
/// Rules it keeps (docs/hardening.md, "When a client stops"):
/// - Requests are answered in order; the next head is not parsed while a response is still being
///   written (`clientWriteBlocked` … `clientDrained`).
/// - A half-close after a complete request is still answered, then the connection closes (HAProxy,
///   `abortonclose` off); a reset, or an end before the request is complete, aborts at once.
/// - While the client owes request body, the wait is `client_body` (408, the client's fault);
///   `upstream_response` starts once the whole request is sent.
/// - A reused upstream connection that closes before any response byte is retried once on a
///   fresh connection, only for a request without a body.
///
/// The exchange in progress is an object the machine owns alone (see `Exchange`): copying a machine
/// mid-exchange shares it, so a machine is moved, never copied and both halves kept.
public struct HTTPExchangeStateMachine: Sendable {
    /// The limits and timeouts the machine applies: immutable and shared, so every connection of a
    /// worker points at one copy (200 bytes inline would be 2 MB over 10,000 idle connections) and a
    /// reload's new settings reach a connection as one pointer.
    public final class Configuration: Sendable, Equatable {
        /// Limits on request heads.
        public let headLimits: HTTPHeadLimits
        /// Limits on response heads.
        public let upstreamHeadLimits: HTTPHeadLimits
        /// Largest accepted request body (`nil`: unlimited).
        public let maxBodyBytes: Int?
        /// The connection's timeouts.
        public let timeouts: Timeouts
        /// Client bytes buffered beyond the request being served before the client is no longer read.
        public let maxBufferedPipeline: Int
        /// `timeouts` in monotonic milliseconds, converted once here rather than from `Duration` on
        /// every deadline the machine sets (several per request).
        let deadlines: Deadlines

        /// The same limits and timeouts.
        public static func == (left: Configuration, right: Configuration) -> Bool {
            left === right || left.headLimits == right.headLimits && left.upstreamHeadLimits == right.upstreamHeadLimits
                && left.maxBodyBytes == right.maxBodyBytes && left.timeouts == right.timeouts
                && left.maxBufferedPipeline == right.maxBufferedPipeline
        }

        /// A configuration with these parts.
        public init(
            headLimits: HTTPHeadLimits = HTTPHeadLimits(), upstreamHeadLimits: HTTPHeadLimits = HTTPHeadLimits(), maxBodyBytes: Int? = nil,
            timeouts: Timeouts = Timeouts(), maxBufferedPipeline: Int = 65_536
        ) {
            self.headLimits = headLimits
            self.upstreamHeadLimits = upstreamHeadLimits
            self.maxBodyBytes = maxBodyBytes
            self.timeouts = timeouts
            self.maxBufferedPipeline = maxBufferedPipeline
            self.deadlines = Deadlines(timeouts)
        }
    }

    /// The timeouts the machine arms, in milliseconds (negative durations count as 0).
    struct Deadlines: Sendable {
        let idle, connect, write, headerRead, clientBody, upstreamResponse: UInt64

        init(_ timeouts: Timeouts) {
            func ms(_ duration: Duration) -> UInt64 { UInt64(max(0, duration.milliseconds)) }
            idle = ms(timeouts.idle)
            connect = ms(timeouts.connect)
            write = ms(timeouts.write)
            headerRead = ms(timeouts.headerRead)
            clientBody = ms(timeouts.clientBody)
            upstreamResponse = ms(timeouts.upstreamResponse)
        }
    }

    /// The driver's answer to `.route(head)`.
    public enum RouteDecision: Sendable, Equatable {
        /// Send it to the chosen endpoint: the machine asks for `connectUpstream`.
        case forward
        /// Answer it locally (no route, gate, read-only, hold full, …).
        case answer(HTTPLocalAnswer)
        /// Park it until `holdReleased` or the deadline (`hold_timeout`), monotonic milliseconds.
        case hold(until: UInt64)
    }

    /// How much of a body is still to come.
    struct BodyProgress: Sendable {
        var framing: BodyFraming
        var remaining: Int64
        var scanner: ChunkedBodyScanner?
        var done: Bool

        init(_ framing: BodyFraming) {
            self.framing = framing
            switch framing {
            case .none:
                remaining = 0
                done = true
            case .contentLength(let length):
                remaining = length
                done = length == 0
            case .chunked:
                remaining = 0
                scanner = ChunkedBodyScanner()
                done = false
            case .untilClose:
                remaining = 0
                done = false
            }
        }

        /// Takes what belongs to this body from `bytes`: how many bytes, with `done` updated.
        mutating func take(_ bytes: UnsafeRawBufferPointer) throws(HTTPParseError) -> Int {
            switch framing {
            case .none:
                return 0
            case .contentLength:
                let consumed = Int(min(Int64(bytes.count), remaining))
                remaining -= Int64(consumed)
                done = remaining == 0
                return consumed
            case .chunked:
                let result = try scanner!.scan(bytes)
                done = result.finished
                return result.consumed
            case .untilClose:
                return bytes.count
            }
        }

        /// Whether `buffered` would complete the body (a request whose client half-closed).
        func completes(with buffered: UnsafeRawBufferPointer) -> Bool {
            if done { return true }
            switch framing {
            case .none: return true
            case .contentLength: return Int64(buffered.count) >= remaining
            case .chunked:
                var copy = scanner!
                let scanned = Result { () throws(HTTPParseError) in try copy.scan(buffered) }
                if case .success(let result) = scanned { return result.finished }
                return false
            case .untilClose: return false
            }
        }
    }

    /// The response being relayed, from its final head on.
    struct ResponseProgress: Sendable {
        var status: Int
        var body: BodyProgress
        /// The upstream connection can carry another request after it.
        var reusable: Bool
    }

    /// One request and its response.
    ///
    /// A class, allocated once per exchange: inline, its 248 bytes would sit in every idle
    /// keep-alive connection (the state enum is as large as its largest case), 2.4 MB over 10,000
    /// of them. Only the machine holds it, so changing it in place is changing the machine's state,
    /// and the machine is confined to its connection's queue like everything of a connection.
    final class Exchange: @unchecked Sendable {
        var head: HTTPRequestHead
        var request: BodyProgress
        var keepAlive: Bool
        let upgrading: Bool
        var reused = false
        var retried = false
        var receivedFromUpstream = false
        var response: ResponseProgress?
        var bytesToClient = 0

        init(head: HTTPRequestHead, request: BodyProgress, keepAlive: Bool, upgrading: Bool) {
            self.head = head
            self.request = request
            self.keepAlive = keepAlive
            self.upgrading = upgrading
        }
    }

    enum State: Sendable {
        /// Between requests, nothing of the next head yet.
        case idle
        /// Part of a head is buffered; it started at `startedAt` (for `header_read`).
        case readingHead(startedAt: UInt64)
        /// `.route` was asked; waiting for `routed`.
        case routing(Exchange)
        /// Held until `holdReleased`, `holdTimedOut` or the deadline.
        case holding(Exchange)
        /// `.connectUpstream` was asked; waiting for `upstreamConnected`.
        case connecting(Exchange)
        /// The request head went upstream; body and response flow.
        case exchanging(Exchange)
        /// A last answer is being written; then the connection closes.
        case closing
        /// The sockets became a tunnel: nothing is ours any more.
        case handedOver
        case closed
    }

    private var state = State.idle
    /// The limits and timeouts in force; the driver refreshes them after a reload.
    public var configuration: Configuration
    /// When the current wait ends (monotonic milliseconds; 0: no deadline).
    public private(set) var deadline: UInt64 = 0
    /// Client bytes that waited (see `HTTPExchangeBytes.clientBuffer`).
    public private(set) var clientBuffer: [UInt8] = []
    private var clientBufferStart = 0
    /// Response bytes that waited for the rest of a head.
    public private(set) var upstreamBuffer: [UInt8] = []
    private var clientEnded = false
    private var clientBlocked = false
    private var upstreamBlocked = false
    private var clientReading = false
    private var upstreamReading = false
    /// Cleared by the driver when the proxy shuts down: the next response says `Connection: close`.
    public var keepAliveAllowed = true

    /// A machine for a connection just accepted.
    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    private var timeouts: Timeouts { configuration.timeouts }
    private var deadlines: Deadlines { configuration.deadlines }

    /// The head of the request being routed, held or served (`nil` between requests): what `.route`
    /// asks about.
    public var requestHead: HTTPRequestHead? {
        switch state {
        case .routing(let exchange), .holding(let exchange), .connecting(let exchange), .exchanging(let exchange): return exchange.head
        case .idle, .readingHead, .closing, .handedOver, .closed: return nil
        }
    }

    /// Whether the connection is over (closed or handed to a tunnel).
    public var isFinished: Bool {
        switch state {
        case .closed, .handedOver: return true
        case .idle, .readingHead, .routing, .holding, .connecting, .exchanging, .closing: return false
        }
    }

    /// Whether no request is in progress and nothing is buffered (shutdown may close it).
    public var isIdle: Bool {
        switch state {
        case .idle: return clientBuffer.count == clientBufferStart && !clientBlocked
        case .readingHead, .routing, .holding, .connecting, .exchanging, .closing, .handedOver, .closed: return false
        }
    }

    /// Calls `body` with the bytes `bytes` names; `input` is the buffer of the event that returned it.
    ///
    /// Mutating although it changes nothing: a driver keeps the machine in a class's stored property,
    /// and a non-mutating call with a closure there copies the whole machine first (retaining its
    /// buffers, its exchange and its configuration) several times per request; an in-place access
    /// does not.
    public mutating func withBytes<Result>(_ bytes: HTTPExchangeBytes, input: UnsafeRawBufferPointer?, _ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        switch bytes {
        case .input(let range):
            return body(UnsafeRawBufferPointer(rebasing: input![range]))
        case .clientBuffer(let range):
            return clientBuffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        case .upstreamBuffer(let range):
            return upstreamBuffer.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        }
    }

    // MARK: - Events from the client

    /// The connection was accepted: read the first head within `idle`.
    public mutating func clientConnected(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        switch state {
        case .idle:
            deadline = now + deadlines.idle
        case .readingHead, .routing, .holding, .connecting, .exchanging, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The client sent `input`.
    public mutating func clientBytes(_ input: UnsafeRawBufferPointer, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .idle, .readingHead, .routing, .holding, .connecting, .exchanging:
            if clientBuffer.isEmpty {
                let used = consumeClient(input, source: .input, now: now, &actions)
                if !isFinished && !isClosing && used < input.count { clientBuffer.append(contentsOf: input[used...]) }
            } else {
                clientBuffer.append(contentsOf: input)
                consumeBufferedClient(now: now, &actions)
            }
        case .closing, .handedOver, .closed:
            // What follows a refused request or a final answer cannot be trusted: dropped.
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The client ended its stream (a FIN; `reset`: an RST or a failed write).
    public mutating func clientEnded(reset: Bool, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        clientEnded = true
        switch state {
        case .idle:
            if reset || !clientBlocked && clientBuffer.isEmpty {
                closeNow(&actions)
            }
            // Else pipelined requests (or a response still being written) are served, then it closes.
        case .readingHead:
            closeNow(&actions)
        case .routing(let exchange), .holding(let exchange), .connecting(let exchange), .exchanging(let exchange):
            let complete = clientBuffer.withUnsafeBytes { exchange.request.completes(with: $0) }
            if reset || !complete {
                abort(exchange, reset ? .clientReset : .clientClosedMidRequest, &actions)
            } else {
                // Half-closed after a complete request: still owed its response, then the close.
                exchange.keepAlive = false
            }
        case .closing:
            if reset { closeNow(&actions) }
        case .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    // MARK: - Answers from the driver

    /// The driver's answer to `.route`.
    public mutating func routed(_ decision: RouteDecision, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .routing(let exchange):
            switch decision {
            case .forward:
                state = .connecting(exchange)
                deadline = now + deadlines.connect
                actions.append(.connectUpstream(fresh: false))
            case .answer(let answer):
                answerLocally(exchange, answer, now: now, &actions)
            case .hold(let until):
                state = .holding(exchange)
                deadline = until
            }
        case .idle, .readingHead, .holding, .connecting, .exchanging, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The hold let the request go: it is routed again.
    public mutating func holdReleased(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        switch state {
        case .holding(let exchange):
            state = .routing(exchange)
            deadline = 0
            actions.append(.route)
        case .idle, .readingHead, .routing, .connecting, .exchanging, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The driver's answer to `.giveUpHold`: the held request is answered with `fault` (a 503).
    public mutating func holdTimedOut(_ fault: ProxyFault, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .holding(let exchange):
            answerLocally(exchange, .fault(fault), now: now, &actions)
        case .idle, .readingHead, .routing, .connecting, .exchanging, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    // MARK: - Events from the upstream

    /// The upstream connection is ready (`reused`: taken from the pool): the request head goes out.
    public mutating func upstreamConnected(reused: Bool, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .connecting(let exchange):
            exchange.reused = reused
            upstreamBlocked = false
            upstreamBuffer.removeAll(keepingCapacity: true)
            upstreamBufferStart = 0
            state = .exchanging(exchange)
            actions.append(.writeRequestHead(upgrading: exchange.upgrading))
            deadline = waitDeadline(exchange, now: now)
            consumeBufferedClient(now: now, &actions)
            if case .exchanging = state, !upstreamReading {
                upstreamReading = true
                actions.append(.resumeUpstream)
            }
        case .idle, .readingHead, .routing, .holding, .exchanging, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The connect failed (refused, TLS, no socket): answered with `fault`, a 502.
    public mutating func upstreamConnectFailed(_ fault: ProxyFault, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .connecting(let exchange):
            answerLocally(exchange, .fault(fault), now: now, &actions)
        case .idle, .readingHead, .routing, .holding, .exchanging, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The upstream sent `input`.
    public mutating func upstreamBytes(_ input: UnsafeRawBufferPointer, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .exchanging(let exchange):
            exchange.receivedFromUpstream = true
            if exchange.response != nil {
                relayBody(input, source: .input, now: now, &actions)
            } else if upstreamBuffer.isEmpty {
                let used = relayHeads(input, source: .input, now: now, &actions)
                if case .exchanging(let current) = state, current.response == nil, used < input.count {
                    upstreamBuffer.append(contentsOf: input[used...])
                }
            } else {
                upstreamBuffer.append(contentsOf: input)
                let buffer = upstreamBuffer
                let used = buffer.withUnsafeBytes { relayHeads($0, source: .upstreamBuffer, now: now, &actions) }
                if case .exchanging(let current) = state, current.response == nil {
                    upstreamBufferStart = used
                } else {
                    upstreamBufferStart = upstreamBuffer.count
                }
            }
            if case .exchanging(let current) = state, !clientBlocked { deadline = waitDeadline(current, now: now) }
        case .idle, .readingHead, .routing, .holding, .connecting, .closing, .handedOver, .closed:
            // No upstream of ours is reading now.
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The upstream ended its stream (`reset`: an RST or a failed write).
    public mutating func upstreamEnded(reset: Bool, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .exchanging(let exchange):
            if let response = exchange.response {
                if response.body.framing == .untilClose && !reset {
                    exchange.response!.reusable = false
                    finishRelayed(now: now, &actions)
                } else {
                    // The body was cut short: the client must see a broken connection, not a short body.
                    abort(exchange, .upstreamClosedMidResponse, &actions)
                }
            } else {
                upstreamLost(exchange, now: now, &actions)
            }
        case .connecting(let exchange):
            upstreamLost(exchange, now: now, &actions)
        case .idle, .readingHead, .routing, .holding, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    // MARK: - Backpressure

    /// A write to the client left bytes queued: stop feeding it.
    public mutating func clientWriteBlocked(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        clientBlocked = true
        switch state {
        case .exchanging(let exchange):
            if exchange.response != nil {
                deadline = now + deadlines.write
                if upstreamReading {
                    upstreamReading = false
                    actions.append(.pauseUpstream)
                }
            }
        case .idle, .closing:
            deadline = now + deadlines.write
        case .readingHead, .routing, .holding, .connecting, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The client took everything queued.
    public mutating func clientDrained(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        clientBlocked = false
        switch state {
        case .exchanging(let exchange):
            if exchange.response != nil {
                deadline = waitDeadline(exchange, now: now)
                if !upstreamReading {
                    upstreamReading = true
                    actions.append(.resumeUpstream)
                }
            }
        case .idle:
            deadline = now + deadlines.idle
            consumeBufferedClient(now: now, &actions)
            closeIfEnded(&actions)
        case .closing:
            closeNow(&actions)
        case .readingHead, .routing, .holding, .connecting, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// A write upstream left bytes queued: the client is not read until it drains.
    public mutating func upstreamWriteBlocked(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        upstreamBlocked = true
        // The flag alone decides: `updateReading` stops the client, `deadlinePassed` blames the upstream.
        updateReading(&actions)
        return actions
    }

    /// The upstream took everything queued: more request body may flow.
    public mutating func upstreamDrained(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        upstreamBlocked = false
        switch state {
        case .exchanging:
            consumeBufferedClient(now: now, &actions)
        case .idle, .readingHead, .routing, .holding, .connecting, .closing, .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    // MARK: - Time and the driver's orders

    /// `deadline` passed.
    public mutating func deadlinePassed(now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        compactBuffers()
        switch state {
        case .idle:
            closeNow(&actions)
        case .readingHead:
            rejectHead(.clientTooSlow(headerRead: timeouts.headerRead), now: now, &actions)
        case .routing:
            // The driver answers a route at once; no deadline runs meanwhile.
            break
        case .holding:
            deadline = 0
            actions.append(.giveUpHold)
        case .connecting(let exchange):
            answerLocally(exchange, .upstream(.connectTimedOut(timeouts.connect)), now: now, &actions)
        case .exchanging(let exchange):
            if exchange.response != nil {
                abort(exchange, .transferStalled, &actions)
            } else if !exchange.request.done {
                if upstreamBlocked {
                    answerLocally(exchange, .upstream(.bodyNotAccepted(timeouts.clientBody)), now: now, &actions)
                } else {
                    answerLocally(exchange, .fault(.clientBodyTooSlow(clientBody: timeouts.clientBody)), now: now, &actions)
                }
            } else {
                answerLocally(exchange, .upstream(.responseTimedOut(timeouts.upstreamResponse)), now: now, &actions)
            }
        case .closing:
            closeNow(&actions)
        case .handedOver, .closed:
            break
        }
        updateReading(&actions)
        return actions
    }

    /// The driver ends the connection (a drain deadline, shutdown): an exchange in progress is aborted.
    public mutating func forceClose(reason: String, now: UInt64) -> HTTPExchangeActions {
        var actions = HTTPExchangeActions()
        switch state {
        case .routing(let exchange), .holding(let exchange), .connecting(let exchange), .exchanging(let exchange):
            abort(exchange, .forced(reason: reason), &actions)
        case .idle, .readingHead, .closing:
            closeNow(&actions)
        case .handedOver, .closed:
            break
        }
        return actions
    }

    // MARK: - Client bytes

    /// How a range of the bytes being consumed is named in actions.
    enum Source {
        case input
        case clientBuffer
        case upstreamBuffer

        func bytes(_ range: Range<Int>, base: Int) -> HTTPExchangeBytes {
            let shifted = (range.lowerBound + base)..<(range.upperBound + base)
            switch self {
            case .input: return .input(shifted)
            case .clientBuffer: return .clientBuffer(shifted)
            case .upstreamBuffer: return .upstreamBuffer(shifted)
            }
        }
    }

    private var upstreamBufferStart = 0

    private var isClosing: Bool {
        switch state {
        case .closing: return true
        case .idle, .readingHead, .routing, .holding, .connecting, .exchanging, .handedOver, .closed: return false
        }
    }

    /// Drops what earlier actions already used, so buffer ranges start at 0 again.
    private mutating func compactBuffers() {
        if clientBufferStart > 0 {
            clientBuffer.removeFirst(clientBufferStart)
            clientBufferStart = 0
        }
        if upstreamBufferStart > 0 {
            upstreamBuffer.removeFirst(upstreamBufferStart)
            upstreamBufferStart = 0
        }
    }

    /// Consumes what it can of the waiting client bytes.
    private mutating func consumeBufferedClient(now: UInt64, _ actions: inout HTTPExchangeActions) {
        guard clientBufferStart < clientBuffer.count else { return }
        let buffer = clientBuffer
        let start = clientBufferStart
        let used = buffer.withUnsafeBytes { raw in
            consumeClient(UnsafeRawBufferPointer(rebasing: raw[start...]), source: .clientBuffer, base: start, now: now, &actions)
        }
        if isFinished || isClosing {
            clientBufferStart = clientBuffer.count
        } else {
            clientBufferStart = start + used
        }
    }

    /// Consumes client bytes in the current state: the next head, or request body. Returns how many.
    private mutating func consumeClient(
        _ view: UnsafeRawBufferPointer, source: Source, base: Int = 0, now: UInt64, _ actions: inout HTTPExchangeActions
    ) -> Int {
        var offset = 0
        while offset < view.count {
            switch state {
            case .idle, .readingHead:
                // Answer in order: the next request waits until the previous response is out.
                if clientBlocked { return offset }
                let startedAt: UInt64
                if case .readingHead(let started) = state { startedAt = started } else { startedAt = now }
                let rest = UnsafeRawBufferPointer(rebasing: view[offset...])
                let limits = configuration.headLimits
                switch Result(catching: { () throws(HTTPParseError) in try HTTPParser.parseRequestHead(rest, limits: limits) }) {
                case .failure(let error):
                    rejectHead(.client(error), now: now, &actions)
                    return view.count
                case .success(.incomplete):
                    if case .idle = state {
                        state = .readingHead(startedAt: startedAt)
                        deadline = startedAt + deadlines.headerRead
                    }
                    return offset
                case .success(.complete(let head, let headLength)):
                    offset += headLength
                    begin(consume head, body: UnsafeRawBufferPointer(rebasing: view[offset...]), now: now, &actions)
                    if case .routing = state { return offset }
                }
            case .exchanging(let exchange):
                if exchange.request.done || upstreamBlocked { return offset }
                let rest = UnsafeRawBufferPointer(rebasing: view[offset...])
                let consumed: Int
                switch Result(catching: { () throws(HTTPParseError) in try exchange.request.take(rest) }) {
                case .success(let count): consumed = count
                case .failure(let error):
                    // Part of the body already went upstream: that exchange cannot be saved.
                    let fault = ProxyFault.client(HTTPParseError(status: error.status, reason: "bad chunked request body: \(error.reason)"))
                    answerLocally(exchange, .fault(fault), now: now, &actions)
                    return view.count
                }
                if consumed > 0 {
                    actions.append(.writeUpstream(source.bytes(offset..<(offset + consumed), base: base)))
                    offset += consumed
                    // Each body read restarts the client's clock; the last one starts the upstream's.
                    if exchange.response == nil { deadline = waitDeadline(exchange, now: now) }
                }
                if exchange.request.done || consumed == 0 { return offset }
            case .routing, .holding, .connecting, .closing, .handedOver, .closed:
                return offset
            }
        }
        return offset
    }

    /// A complete head: checked further, then routed (or refused).
    /// - Parameter received: consumed, so the parsed head moves into the exchange without a copy
    ///   (each copy retains its strings and arrays).
    private mutating func begin(_ received: consuming HTTPRequestHead, body: UnsafeRawBufferPointer, now: UInt64, _ actions: inout HTTPExchangeActions) {
        var head = received
        let framing: BodyFraming
        do {
            // From here on, routing, the log and the upstream see one authority (issue 20, defect 2).
            if !head.isOriginForm { head = try head.originFormed() }
            framing = try head.bodyFraming()
        } catch {
            rejectHead(.client(error), now: now, &actions)
            return
        }
        if let limit = configuration.maxBodyBytes, case .contentLength(let length) = framing, length > Int64(limit) {
            rejectHead(.client(HTTPParseError(status: 413, reason: "request body of \(length) bytes is over the limit of \(limit)")), now: now, &actions)
            return
        }
        var request = BodyProgress(framing)
        if framing == .chunked {
            // Chunked bytes that came with the head are checked before anything goes upstream, so a
            // body whose framing is already broken is never forwarded; the rest is checked as it streams.
            var scanner = request.scanner!
            if case .failure(let error) = Result(catching: { () throws(HTTPParseError) in try scanner.scan(body) }) {
                rejectHead(.client(error), now: now, &actions)
                return
            }
            request.scanner = ChunkedBodyScanner()
        }
        let keepAlive = head.keepAlive && keepAliveAllowed && !clientEnded
        let upgrading = head.upgradeRequested
        let exchange = Exchange(head: consume head, request: request, keepAlive: keepAlive, upgrading: upgrading)
        state = .routing(exchange)
        deadline = 0
        actions.append(.route)
    }

    // MARK: - Upstream bytes

    /// Parses response heads from `view`: interim ones are relayed, a final one starts the body,
    /// `101` hands the connection over. Returns how many bytes were used.
    private mutating func relayHeads(_ view: UnsafeRawBufferPointer, source: Source, now: UInt64, _ actions: inout HTTPExchangeActions) -> Int {
        var offset = 0
        while case .exchanging(let exchange) = state {
            let rest = UnsafeRawBufferPointer(rebasing: view[offset...])
            let limits = configuration.upstreamHeadLimits
            let head: HTTPResponseHead
            switch Result(catching: { () throws(HTTPParseError) in try HTTPParser.parseResponseHead(rest, limits: limits) }) {
            case .failure(let error):
                answerLocally(exchange, .upstream(.invalidResponse(error)), now: now, &actions)
                return view.count
            case .success(.incomplete):
                return offset
            case .success(.complete(let parsed, let headLength)):
                head = parsed
                offset += headLength
            }
            if head.status == 101 {
                guard exchange.upgrading else {
                    answerLocally(exchange, .upstream(.switchedWithoutAsking), now: now, &actions)
                    return view.count
                }
                actions.appendResponseHead(head, body: nil, keepAlive: true, upgrading: true)
                actions.append(.log(.upgraded, bytesToClient: exchange.bytesToClient))
                let toClient = offset < view.count ? source.bytes(offset..<view.count, base: 0) : nil
                let toUpstream = clientBufferStart < clientBuffer.count ? HTTPExchangeBytes.clientBuffer(clientBufferStart..<clientBuffer.count) : nil
                actions.append(.handOver(toUpstream: toUpstream, toClient: toClient))
                state = .handedOver
                deadline = 0
                clientReading = false
                upstreamReading = false
                return view.count
            }
            if head.status < 200 {
                // Interim answers (100 Continue) go to HTTP/1.1 clients as they are; 1.0 clients don't know them.
                if exchange.head.version == .http1_1 {
                    actions.append(.writeInterimHead(head))
                }
                continue
            }
            let framing: BodyFraming
            do {
                framing = try head.bodyFraming(requestMethod: exchange.head.method)
            } catch {
                answerLocally(exchange, .upstream(.invalidResponse(error)), now: now, &actions)
                return view.count
            }
            // A response that arrives before the whole request body leaves the rest of that body unread:
            // the client connection cannot carry another request after it.
            if framing == .untilClose || !exchange.request.done || clientEnded || !keepAliveAllowed { exchange.keepAlive = false }
            var response = ResponseProgress(status: head.status, body: BodyProgress(framing), reusable: head.keepAlive && framing != .untilClose)
            let body = UnsafeRawBufferPointer(rebasing: view[offset...])
            let consumed: Int
            switch Result(catching: { () throws(HTTPParseError) in try response.body.take(body) }) {
            case .success(let count): consumed = count
            case .failure(let error):
                abort(exchange, .badChunkedResponse(error), &actions)
                return view.count
            }
            // Bytes after the response: not HTTP we trust on this connection.
            if consumed < body.count { response.reusable = false }
            exchange.bytesToClient += consumed
            exchange.response = response
            let bodyBytes = consumed > 0 ? source.bytes(offset..<(offset + consumed), base: 0) : nil
            actions.appendResponseHead(head, body: bodyBytes, keepAlive: exchange.keepAlive, upgrading: false)
            if response.body.done { finishRelayed(now: now, &actions) }
            return view.count
        }
        return offset
    }

    /// Relays response body bytes.
    private mutating func relayBody(_ view: UnsafeRawBufferPointer, source: Source, now: UInt64, _ actions: inout HTTPExchangeActions) {
        guard case .exchanging(let exchange) = state, var response = exchange.response else { return }
        let consumed: Int
        switch Result(catching: { () throws(HTTPParseError) in try response.body.take(view) }) {
        case .success(let count): consumed = count
        case .failure(let error):
            abort(exchange, .badChunkedResponse(error), &actions)
            return
        }
        if consumed < view.count { response.reusable = false }
        exchange.bytesToClient += consumed
        exchange.response = response
        if consumed > 0 { actions.append(.writeClient(source.bytes(0..<consumed, base: 0))) }
        if response.body.done { finishRelayed(now: now, &actions) }
    }

    /// The upstream connection died before a response started: retried once on a fresh connection
    /// when that is safe (a reused keep-alive connection the upstream had closed, and no body), else 502.
    private mutating func upstreamLost(_ exchange: Exchange, now: UInt64, _ actions: inout HTTPExchangeActions) {
        if exchange.reused && !exchange.receivedFromUpstream && exchange.request.framing == .none && !exchange.retried {
            exchange.retried = true
            exchange.reused = false
            state = .connecting(exchange)
            upstreamReading = false
            deadline = now + deadlines.connect
            actions.append(.closeUpstream)
            actions.append(.connectUpstream(fresh: true))
            return
        }
        answerLocally(exchange, .upstream(.closedBeforeAnswering), now: now, &actions)
    }

    // MARK: - Endings

    /// The response went out whole: the upstream is parked (or closed), the exchange logged, and
    /// the connection serves the next request or closes.
    private mutating func finishRelayed(now: UInt64, _ actions: inout HTTPExchangeActions) {
        guard case .exchanging(let exchange) = state, let response = exchange.response else { return }
        actions.append(response.reusable && exchange.request.done ? .parkUpstream : .closeUpstream)
        upstreamReading = false
        upstreamBufferStart = upstreamBuffer.count
        actions.append(.log(.relayed(status: response.status), bytesToClient: exchange.bytesToClient))
        endExchange(keepAlive: exchange.keepAlive, now: now, &actions)
    }

    /// The proxy answers the request itself (or aborts, when part of a response is out already).
    private mutating func answerLocally(_ exchange: Exchange, _ answer: HTTPLocalAnswer, now: UInt64, _ actions: inout HTTPExchangeActions) {
        if exchange.response != nil {
            abort(exchange, .faultAfterResponseStarted(answer), &actions)
            return
        }
        if hasUpstream { actions.append(.closeUpstream) }
        upstreamReading = false
        // With a request body still unread, only closing keeps the connection unambiguous; after
        // the client's own fault, what follows cannot be trusted either.
        let keep = !answer.isClientFault && exchange.keepAlive && exchange.request.framing == .none
        actions.append(.answer(answer, keepAlive: keep))
        actions.append(.log(.answered(answer), bytesToClient: 0))
        if answer.isClientFault {
            closeAfterWrite(now: now, &actions)
            return
        }
        endExchange(keepAlive: keep, now: now, &actions)
    }

    /// A head that cannot start an exchange (malformed, over a limit, too slow): answered, then closed.
    private mutating func rejectHead(_ fault: ProxyFault, now: UInt64, _ actions: inout HTTPExchangeActions) {
        actions.append(.answer(.fault(fault), keepAlive: false))
        actions.append(.log(.answered(.fault(fault)), bytesToClient: 0))
        closeAfterWrite(now: now, &actions)
    }

    /// Nothing more can be said: the upstream (if any) and the client close at once.
    private mutating func abort(_ exchange: Exchange, _ reason: HTTPExchangeAbort, _ actions: inout HTTPExchangeActions) {
        if hasUpstream { actions.append(.closeUpstream) }
        actions.append(.log(.aborted(reason), bytesToClient: exchange.bytesToClient))
        closeNow(&actions)
    }

    /// After an exchange: the next request (buffered bytes first), or a close once the answer is out.
    private mutating func endExchange(keepAlive: Bool, now: UInt64, _ actions: inout HTTPExchangeActions) {
        guard keepAlive else {
            closeAfterWrite(now: now, &actions)
            return
        }
        state = .idle
        deadline = now + (clientBlocked ? deadlines.write : deadlines.idle)
        consumeBufferedClient(now: now, &actions)
        closeIfEnded(&actions)
    }

    /// Idle, nothing buffered and the client ended: the connection is done.
    private mutating func closeIfEnded(_ actions: inout HTTPExchangeActions) {
        guard case .idle = state, clientEnded, clientBufferStart == clientBuffer.count else { return }
        if clientBlocked {
            state = .closing
        } else {
            closeNow(&actions)
        }
    }

    /// The last answer is out or on its way: close when it is flushed (within `write`).
    private mutating func closeAfterWrite(now: UInt64, _ actions: inout HTTPExchangeActions) {
        state = .closing
        // Dropped at the next event: ranges named earlier in this batch stay valid.
        clientBufferStart = clientBuffer.count
        upstreamReading = false
        deadline = now + deadlines.write
        if clientReading {
            clientReading = false
            actions.append(.pauseClient)
        }
        actions.append(.close)
    }

    private mutating func closeNow(_ actions: inout HTTPExchangeActions) {
        state = .closed
        deadline = 0
        clientBufferStart = clientBuffer.count
        clientReading = false
        upstreamReading = false
        actions.append(.closeNow)
    }

    // MARK: - Helpers

    /// Whether an upstream connection belongs to the current exchange.
    private var hasUpstream: Bool {
        switch state {
        case .connecting, .exchanging: return true
        case .idle, .readingHead, .routing, .holding, .closing, .handedOver, .closed: return false
        }
    }

    /// The next wait of a forwarded exchange: `client_body` while the client owes body and no
    /// response has started, else `upstream_response`.
    private func waitDeadline(_ exchange: Exchange, now: UInt64) -> UInt64 {
        return now + (exchange.request.done || exchange.response != nil ? deadlines.upstreamResponse : deadlines.clientBody)
    }

    /// Whether the client should be read now, as a pause or resume action when that changes.
    private mutating func updateReading(_ actions: inout HTTPExchangeActions) {
        // A batch ending in a question the driver answers at once (route, a pooled connection) leaves
        // reading to the answer's batch, which the driver performs before the rest of this one.
        if case .route? = actions.last { return }
        if case .connectUpstream? = actions.last { return }
        let wanted: Bool
        switch state {
        case .idle, .readingHead:
            wanted = !clientBlocked && !clientEnded
        case .routing, .holding, .connecting:
            // Nothing can take the bytes yet (the driver watches for a hang-up meanwhile).
            wanted = false
        case .exchanging:
            // A client whose request is complete stays readable: pipelined bytes queue up to a bound.
            wanted = !clientEnded && !upstreamBlocked && clientBuffer.count - clientBufferStart <= configuration.maxBufferedPipeline
        case .closing, .handedOver, .closed:
            wanted = false
        }
        guard wanted != clientReading, !isFinished else { return }
        clientReading = wanted
        actions.append(wanted ? .resumeClient : .pauseClient)
    }

}
