import CutoverCore
import Dispatch
import Glibc

/// One HTTP/1.1 client connection: parses each request strictly, routes it through the current
/// snapshot on its own, forwards it over a pooled keep-alive upstream connection and streams both
/// bodies without buffering them whole. Pipelined requests are answered one after the other.
///
/// Backpressure: while one side has unwritten output, the side feeding it is not read.
final class HTTPSession: WorkerConnection, ChannelHandler, @unchecked Sendable {  // confined to worker.queue
    private let client: SocketChannel
    private let worker: Worker
    private unowned let runtime: ProxyRuntime
    private let slot: Int
    private let clientAddress: [UInt8]
    private let clientText: String
    /// The client as forwarding headers name it, built once per connection.
    private let origin: HTTPForwarding.Origin
    /// Client bytes read but not consumed yet: a partial head, pipelined requests, early body bytes.
    private var inbound: [UInt8] = []
    private var phase = Phase.awaitingHead
    private var exchange: Exchange?
    private(set) var deadline: UInt64 = 0
    /// When the first byte of the current head arrived (0 while idle), for the header-read timeout.
    private var headStartedAt: UInt64 = 0
    /// The client half-closed after its request: answer it, then close.
    private var clientEnded = false
    private var closeWhenFlushed = false
    /// The HTTPS port every request is redirected to (`redirect_https` on a plain listener).
    private let redirectHTTPSPort: UInt16?

    /// Client bytes buffered beyond the request being served before the client is no longer read.
    static let maxBufferedPipeline = 65_536

    private enum Phase {
        case awaitingHead
        case holding
        case connecting
        case forwarding
        case closed
    }

    init(fd: Int32, worker: Worker, runtime: ProxyRuntime, slot: Int, transport: ListenerTransport = .plain) {
        self.client = SocketChannel(fd: fd, worker: worker, tls: transport.tls.map { .server($0) })
        self.redirectHTTPSPort = transport.redirectHTTPSPort
        self.worker = worker
        self.runtime = runtime
        self.slot = slot
        let peer = Socket.peer(fd)
        self.clientAddress = peer.bytes
        self.clientText = peer.text
        self.origin = HTTPForwarding.Origin(address: peer.text, proto: transport.tls == nil ? "http" : "https")
    }

    func start() {
        worker.register(self)
        client.handler = self
        setIdleDeadline()
        client.resumeReading()
    }

    var servingTarget: EndpointTarget? { exchange?.target }

    private var timeouts: Timeouts { worker.settings.timeouts }

    private func setIdleDeadline() {
        deadline = monotonicMilliseconds() + UInt64(timeouts.idle.milliseconds)
    }

    // MARK: - Reading from the client

    func channelReadable(_ channel: SocketChannel) {
        if channel === client {
            clientReadable()
        } else {
            upstreamReadable(channel)
        }
    }

    private func clientReadable() {
        let n = client.read(into: worker.scratch)
        if n == -1 { return }
        if n <= 0 {
            clientHungUp(reset: n == -2)
            return
        }
        let bytes = UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])
        if phase == .forwarding, let exchange, !exchange.requestBodyDone, inbound.isEmpty {
            // The common streaming case: pass body bytes straight from the read buffer.
            let consumed = forwardRequestBody(bytes, exchange: exchange)
            if consumed < 0 { return }
            if consumed < n { inbound.append(contentsOf: bytes[consumed...]) }
        } else if phase == .awaitingHead, inbound.isEmpty, !client.hasPendingOutput {
            // The common keep-alive case: a whole head in one read, parsed where it landed and
            // never copied; only what follows it (a body, a pipelined request) is kept.
            markHeadStarted()
            switch parseHead(bytes) {
            case .failure(let error):
                rejectRequest(error)
                return
            case .success(.incomplete):
                inbound.append(contentsOf: bytes)
            case .success(.complete(let head, let headLength)):
                if headLength < n { inbound.append(contentsOf: bytes[headLength...]) }
                headStartedAt = 0
                begin(head)
            }
        } else {
            inbound.append(contentsOf: bytes)
        }
        process()
    }

    private func clientHungUp(reset: Bool) {
        clientEnded = true
        client.pauseReading()
        switch phase {
        case .awaitingHead, .holding:
            close()
        case .connecting, .forwarding:
            if let exchange, exchange.requestBodyDone, !reset {
                // A half-close after a complete request: still owed its response.
                closeWhenFlushed = true
            } else {
                abortExchange(reason: reset ? "client reset" : "client closed mid-request")
            }
        case .closed:
            break
        }
    }

    /// Advances whatever the buffered client bytes allow: the next head, or more request body.
    private func process() {
        while true {
            switch phase {
            case .awaitingHead:
                // Answer in order: the next request waits until the previous response is out.
                if client.hasPendingOutput { return }
                if inbound.isEmpty {
                    if clientEnded { close() ; return }
                    headStartedAt = 0
                    setIdleDeadline()
                    client.resumeReading()
                    return
                }
                if !parseNextHead() { return }
            case .forwarding:
                guard let exchange, let upstream = exchange.upstream else { return }
                if !exchange.requestBodyDone && !inbound.isEmpty && !upstream.hasPendingOutput {
                    let consumed = inbound.withUnsafeBytes { forwardRequestBody($0, exchange: exchange) }
                    if consumed < 0 { return }
                    inbound.removeFirst(consumed)
                }
                // Pausing a Dispatch source costs a thread wake-up on resume, so a client whose request is
                // complete stays readable: pipelined bytes queue in `inbound` up to a bound.
                if upstream.hasPendingOutput || clientEnded || inbound.count > HTTPSession.maxBufferedPipeline {
                    client.pauseReading()
                } else {
                    client.resumeReading()
                }
                return
            case .holding, .connecting:
                client.pauseReading()
                return
            case .closed:
                return
            }
        }
    }

    /// Parses a head from `inbound`; true when a request started (the loop goes on).
    private func parseNextHead() -> Bool {
        markHeadStarted()
        let parsed: HeadParse<HTTPRequestHead>
        switch inbound.withUnsafeBytes({ parseHead($0) }) {
        case .success(let value): parsed = value
        case .failure(let error):
            rejectRequest(error)
            return false
        }
        switch parsed {
        case .incomplete:
            client.resumeReading()
            return false
        case .complete(let head, let headLength):
            inbound.removeFirst(headLength)
            headStartedAt = 0
            begin(head)
            return true
        }
    }

    /// Starts the header-read clock at the first byte of a head.
    private func markHeadStarted() {
        guard headStartedAt == 0 else { return }
        headStartedAt = monotonicMilliseconds()
        deadline = headStartedAt + UInt64(timeouts.headerRead.milliseconds)
    }

    private func parseHead(_ raw: UnsafeRawBufferPointer) -> Result<HeadParse<HTTPRequestHead>, HTTPParseError> {
        let limits = worker.settings.headLimits
        return Result { () throws(HTTPParseError) in try HTTPParser.parseRequestHead(raw, limits: limits) }
    }

    private func rejectRequest(_ error: HTTPParseError) {
        runtime.stats.proxyAnswered.wrappingAdd(1, ordering: .relaxed)
        logAccess(method: "-", target: "-", status: error.status, endpoint: "-", bytes: 0, started: headStartedAt, note: error.reason)
        inbound = []
        respondAndClose(HTTPErrorResponse.errorResponse(status: error.status, message: error.reason, close: true))
    }

    // MARK: - Routing a request

    private func begin(_ head: HTTPRequestHead) {
        runtime.stats.requests.wrappingAdd(1, ordering: .relaxed)
        let framing: BodyFraming
        do {
            framing = try head.bodyFraming()
        } catch {
            rejectRequest(error)
            return
        }
        if let limit = worker.settings.limits.maxBodyBytes, case .contentLength(let length) = framing, length > Int64(limit) {
            rejectRequest(HTTPParseError(status: 413, reason: "request body of \(length) bytes is over the limit of \(limit)"))
            return
        }
        if framing == .chunked {
            // Chunked bytes that came with the head are checked before anything goes upstream, so a
            // body whose framing is already broken is never forwarded; the rest is checked as it streams.
            var scanner = ChunkedBodyScanner()
            let checked = inbound.withUnsafeBytes { raw in
                Result { () throws(HTTPParseError) in try scanner.scan(raw) }
            }
            if case .failure(let error) = checked {
                rejectRequest(error)
                return
            }
        }
        let exchange = Exchange(head: head, framing: framing, started: monotonicMilliseconds())
        exchange.clientKeepAlive = head.keepAlive && !runtime.shuttingDown.load(ordering: .relaxed)
        self.exchange = exchange
        route(exchange)
    }

    private func route(_ exchange: Exchange) {
        let snapshot = runtime.store.load()
        guard let listener = snapshot.listenerBySlot[slot] else {
            answerLocally(exchange, status: 503, message: "this listener is being removed", retryAfter: nil)
            return
        }
        // The profile comes from the same snapshot read as the endpoint it picks below.
        let hostHeader = listener.routesNothing ? nil : exchange.head.headers["Host"]
        let route: ProfileRoute
        switch listener.decide(target: exchange.head.target, hostHeader: hostHeader) {
        case .noRoute:
            let what = hostHeader.map { "host \"\($0)\"" } ?? "a request without Host"
            answerLocally(exchange, status: 404, message: "no route for \(what) on listener \(listener.name)", retryAfter: nil)
            return
        case .profile(let chosen, let match):
            route = chosen
            exchange.upstreamTarget = match.flatMap { $0.stripLength > 0 ? $0.upstreamTarget(exchange.head.target) : nil }
        }
        exchange.profile = route.name
        exchange.profileIndex = route.index
        exchange.reportsServerErrors = route.config.passive.status5xx > 0
        if let port = redirectHTTPSPort {
            let location = HTTPSRedirect.location(host: exchange.head.headers.values(named: "Host").first, target: exchange.head.target, port: port)
            let keep = exchange.clientKeepAlive && exchange.framing == .none
            let response = HTTPErrorResponse.errorResponse(status: 308, message: "This site is served over HTTPS: \(location)", extraHeaders: [("Location", location)], close: !keep)
            finishLocally(exchange, status: 308, response: response, keepAlive: keep, note: "redirect_https")
            return
        }
        if route.maintenance && !bypassesMaintenance(exchange.head, gate: route.config.gate) {
            answerMaintenance(exchange, gate: route.config.gate)
            return
        }
        if let fields = route.config.gate.fieldsForBackend(exchange.head.headers) { exchange.head.headers = fields }
        switch route.readOnly.verdict(method: exchange.head.method) {
        case .refuse:
            answerLocally(
                exchange, status: 503,
                message: "\(route.name) is read-only during an upgrade: \(exchange.head.method) is not accepted right now; reads still work. Please retry shortly.",
                retryAfter: route.config.gate.retryAfter)
            return
        case .pass, .hold:
            // A held write waits in the same queue as a paused request: `route.hold` says so below.
            break
        }
        let work = HoldConditions.Work(method: exchange.head.method)
        if route.hold.holds(work) {
            hold(exchange, work: work, route: route, generation: snapshot.generation, queue: snapshot.holdQueues[route.index])
            return
        }
        guard let target = route.pick() else {
            answerLocally(exchange, status: 503, message: "no endpoint of profile \(route.name) is available", retryAfter: route.config.gate.retryAfter)
            return
        }
        dispatch(exchange, to: target)
    }

    private func bypassesMaintenance(_ head: HTTPRequestHead, gate: GateConfig) -> Bool {
        if gate.bypass.sources.contains(where: { $0.contains(clientAddress) }) { return true }
        if let header = gate.bypass.header, head.headers.values(named: header.name).contains(header.value) { return true }
        return false
    }

    private func hold(_ exchange: Exchange, work: HoldConditions.Work, route: ProfileRoute, generation: UInt64, queue: HoldQueue) {
        let outcome = queue.hold(seenGeneration: generation, work: work, maxHeld: route.config.maxHeld) { [self] in
            self.worker.queue.async { self.releasedFromHold() }
        }
        switch outcome {
        case .held(let id, let reason):
            exchange.held = (queue, id, reason)
            phase = .holding
            client.pauseReading()
            runtime.stats.heldNow.wrappingAdd(1, ordering: .relaxed)
            runtime.stats.heldTotal.wrappingAdd(1, ordering: .relaxed)
            deadline = monotonicMilliseconds() + UInt64(route.config.holdTimeout.milliseconds)
        case .full(let reason):
            answerLocally(exchange, status: 503, message: "\(route.name) is holding requests (\(Self.holdText(reason))) and its hold queue is full (max_held \(route.config.maxHeld))", retryAfter: route.config.gate.retryAfter)
        case .routeAgain:
            self.route(exchange)
        }
    }

    /// Why a request waits, as its 503 says when the hold gives up.
    private static func holdText(_ reason: HoldConditions.Reason) -> String {
        switch reason {
        case .paused: return "paused"
        case .writesHeld: return "read-only, writes wait"
        case .unavailable: return "no endpoint available"
        }
    }

    private func releasedFromHold() {
        guard phase == .holding, let exchange else { return }
        exchange.held = nil
        runtime.stats.heldNow.wrappingSubtract(1, ordering: .relaxed)
        phase = .awaitingHead  // not reading heads: `route` moves on at once
        route(exchange)
    }

    private func stopHolding() {
        guard let held = exchange?.held else { return }
        exchange?.held = nil
        if held.queue.cancel(id: held.id) {
            runtime.stats.heldNow.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    // MARK: - Upstream connection

    private func dispatch(_ exchange: Exchange, to target: EndpointTarget) {
        exchange.target = target
        target.counters.requestStarted(method: exchange.head.method)
        if let pooled = worker.pool.take(target) {
            exchange.upstream = pooled
            exchange.reusedUpstream = true
            pooled.handler = self
            sendRequestHead(exchange)
        } else {
            connect(exchange, to: target)
        }
    }

    private func connect(_ exchange: Exchange, to target: EndpointTarget) {
        phase = .connecting
        deadline = monotonicMilliseconds() + UInt64(timeouts.connect.milliseconds)
        exchange.reusedUpstream = false
        do {
            let fd = try Socket.startConnect(to: target.socketAddress)
            let channel = SocketChannel(upstreamFD: fd, to: target, worker: worker)
            channel.handler = self
            exchange.upstream = channel
            target.counters.connections.wrappingAdd(1, ordering: .relaxed)
            channel.awaitConnect()
        } catch {
            upstreamFailed(exchange, status: 502, reason: "cannot connect to \(target.qualifiedName): \(error)", passive: true)
        }
    }

    func channelConnected(_ channel: SocketChannel, error: Int32) {
        guard phase == .connecting, let exchange, channel === exchange.upstream, let target = exchange.target else { return }
        if error != 0 {
            let reason = channel.tlsFailure ?? "\(target.qualifiedName) refused the connection (\(String(cString: strerror(error))))"
            upstreamFailed(exchange, status: 502, reason: reason, passive: true)
            return
        }
        runtime.reportPassiveSuccess(target: target, proof: .connected)
        sendRequestHead(exchange)
    }

    private func sendRequestHead(_ exchange: Exchange) {
        guard let upstream = exchange.upstream else { return }
        phase = .forwarding
        exchange.upgrading = exchange.head.upgradeRequested
        worker.headBuffer.removeAll(keepingCapacity: true)
        if let stripped = exchange.upstreamTarget {
            var head = exchange.head
            head.target = stripped
            HTTPForwarding.writeUpstreamRequest(head, origin: origin, upgrading: exchange.upgrading, into: &worker.headBuffer)
        } else {
            HTTPForwarding.writeUpstreamRequest(exchange.head, origin: origin, upgrading: exchange.upgrading, into: &worker.headBuffer)
        }
        exchange.requestBodyDone = exchange.framing == .none
        exchange.requestBodyScanner = exchange.framing == .chunked ? ChunkedBodyScanner() : nil
        if case .contentLength(let length) = exchange.framing {
            exchange.requestBodyRemaining = length
            exchange.requestBodyDone = length == 0
        }
        deadline = monotonicMilliseconds() + UInt64(timeouts.upstreamResponse.milliseconds)
        guard upstream.write(worker.headBuffer) else {
            upstreamLost(exchange, reason: "connection to \(exchange.target?.qualifiedName ?? "?") lost while sending")
            return
        }
        upstream.resumeReading()
        process()
    }

    /// Passes request body bytes on to the upstream; returns how many belong to this body, or -1 when
    /// the exchange ended (a framing error).
    private func forwardRequestBody(_ bytes: UnsafeRawBufferPointer, exchange: Exchange) -> Int {
        guard let upstream = exchange.upstream else { return 0 }
        var consumed = 0
        switch exchange.framing {
        case .none, .untilClose:
            exchange.requestBodyDone = true
            return 0
        case .contentLength:
            consumed = Int(min(Int64(bytes.count), exchange.requestBodyRemaining))
            exchange.requestBodyRemaining -= Int64(consumed)
            exchange.requestBodyDone = exchange.requestBodyRemaining == 0
        case .chunked:
            do {
                let result = try exchange.requestBodyScanner!.scan(bytes)
                consumed = result.consumed
                exchange.requestBodyDone = result.finished
            } catch {
                // Part of the body already went upstream: that exchange cannot be saved.
                rejectStreamedBody(exchange, error)
                return -1
            }
        }
        exchange.target?.counters.bytesOut.wrappingAdd(consumed, ordering: .relaxed)
        if consumed > 0 && !upstream.write(UnsafeRawBufferPointer(rebasing: bytes[0..<consumed])) {
            upstreamLost(exchange, reason: "connection to \(exchange.target?.qualifiedName ?? "?") lost while sending the body")
            return -1
        }
        if upstream.hasPendingOutput { client.pauseReading() }
        return consumed
    }

    // MARK: - Reading from the upstream

    private func upstreamReadable(_ channel: SocketChannel) {
        guard let exchange, channel === exchange.upstream else { return }
        let n = channel.read(into: worker.scratch)
        if n == -1 { return }
        if n <= 0 {
            if !exchange.responseHeadDone {
                upstreamLost(exchange, reason: "\(exchange.target?.qualifiedName ?? "?") closed the connection before answering")
            } else if exchange.responseFraming == .untilClose && n == 0 {
                exchange.upstreamReusable = false
                finishExchange(exchange)
            } else {
                // The body was cut short: the client must see a broken connection, not a short body.
                abortExchange(reason: "\(exchange.target?.qualifiedName ?? "?") closed mid-response")
            }
            return
        }
        exchange.receivedFromUpstream = true
        exchange.target?.counters.bytesIn.wrappingAdd(n, ordering: .relaxed)
        deadline = monotonicMilliseconds() + UInt64(timeouts.upstreamResponse.milliseconds)
        let bytes = UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])
        if exchange.responseHeadDone {
            forwardResponseBody(bytes, exchange: exchange)
            return
        }
        if exchange.responseInbound.isEmpty, case .success(.complete(let head, let headLength)) = parseResponseHead(bytes),
           head.status >= 200 {
            // The common case: a final response head whole in one read, used where it landed.
            startResponse(exchange, head: head, rest: UnsafeRawBufferPointer(rebasing: bytes[headLength...]))
            return
        }
        exchange.responseInbound.append(contentsOf: bytes)
        parseResponseHeads(exchange)
    }

    private func parseResponseHead(_ raw: UnsafeRawBufferPointer) -> Result<HeadParse<HTTPResponseHead>, HTTPParseError> {
        let limits = worker.settings.upstreamHeadLimits
        return Result { () throws(HTTPParseError) in try HTTPParser.parseResponseHead(raw, limits: limits) }
    }

    private func parseResponseHeads(_ exchange: Exchange) {
        while !exchange.responseHeadDone {
            let result = exchange.responseInbound.withUnsafeBytes { parseResponseHead($0) }
            let parsed: HeadParse<HTTPResponseHead>
            switch result {
            case .success(let value): parsed = value
            case .failure(let error):
                upstreamFailed(exchange, status: 502, reason: "invalid response from \(exchange.target?.qualifiedName ?? "?"): \(error.reason)", passive: false)
                return
            }
            guard case .complete(let head, let headLength) = parsed else { return }
            exchange.responseInbound.removeFirst(headLength)
            if head.status == 101 {
                switchProtocols(exchange, head: head)
                return
            }
            if head.status < 200 {
                // Interim answers (100 Continue) go to HTTP/1.1 clients as they are; 1.0 clients don't know them.
                if exchange.head.version == .http1_1 {
                    writeHead(head, requestVersion: .http1_1, keepClientAlive: true, upgrading: false)
                }
                continue
            }
            let rest = exchange.responseInbound
            exchange.responseInbound = []
            rest.withUnsafeBytes { startResponse(exchange, head: head, rest: $0) }
        }
    }

    /// Relays a final response head; `rest` holds the bytes that arrived after it.
    private func startResponse(_ exchange: Exchange, head: HTTPResponseHead, rest: UnsafeRawBufferPointer) {
        let framing: BodyFraming
        do {
            framing = try head.bodyFraming(requestMethod: exchange.head.method)
        } catch {
            upstreamFailed(exchange, status: 502, reason: "invalid response from \(exchange.target?.qualifiedName ?? "?"): \(error.reason)", passive: false)
            return
        }
        exchange.responseHeadDone = true
        exchange.status = head.status
        // Judged on the head, before any byte reaches the client: reported after the body, a success
        // could reach the control queue behind the client's next request's failure and wipe its streak.
        if let target = exchange.target {
            if head.status >= 500 && exchange.reportsServerErrors {
                runtime.reportPassiveFailure(target: target, cause: "HTTP \(head.status) for \(exchange.head.method) \(exchange.head.target)", signal: .serverError)
            } else {
                runtime.reportPassiveSuccess(target: target, proof: .answered)
            }
        }
        exchange.responseFraming = framing
        exchange.upstreamReusable = head.keepAlive && framing != .untilClose
        // A response that arrives before the whole request body leaves the rest of that body unread:
        // the client connection cannot carry another request after it.
        if framing == .untilClose || !exchange.requestBodyDone || closeWhenFlushed || clientEnded
            || runtime.shuttingDown.load(ordering: .relaxed) {
            exchange.clientKeepAlive = false
        }
        if case .contentLength(let length) = framing { exchange.responseBodyRemaining = length }
        if framing == .chunked { exchange.responseBodyScanner = ChunkedBodyScanner() }
        exchange.sentToClient = true
        if framing == .none || rest.isEmpty {
            writeHead(head, requestVersion: exchange.head.version, keepClientAlive: exchange.clientKeepAlive, upgrading: false)
            if framing == .none {
                if !rest.isEmpty { exchange.upstreamReusable = false }
                finishExchange(exchange)
            }
            return
        }
        // The head goes out together with the body bytes that came with it.
        serializeForClient(head, requestVersion: exchange.head.version, keepClientAlive: exchange.clientKeepAlive, upgrading: false)
        forwardResponseBody(rest, exchange: exchange, afterHead: true)
    }

    /// Puts the client's version of an upstream response head into `worker.headBuffer`.
    private func serializeForClient(_ head: HTTPResponseHead, requestVersion: HTTPVersion, keepClientAlive: Bool, upgrading: Bool) {
        worker.headBuffer.removeAll(keepingCapacity: true)
        HTTPForwarding.writeClientResponse(head, requestVersion: requestVersion, keepClientAlive: keepClientAlive, upgrading: upgrading, into: &worker.headBuffer)
    }

    private func writeHead(_ head: HTTPResponseHead, requestVersion: HTTPVersion, keepClientAlive: Bool, upgrading: Bool) {
        serializeForClient(head, requestVersion: requestVersion, keepClientAlive: keepClientAlive, upgrading: upgrading)
        client.write(worker.headBuffer)
    }

    /// Relays response body bytes; with `afterHead`, `worker.headBuffer` holds the response head to
    /// send in the same system call.
    private func forwardResponseBody(_ bytes: UnsafeRawBufferPointer, exchange: Exchange, afterHead: Bool = false) {
        var consumed = bytes.count
        var done = false
        switch exchange.responseFraming {
        case .none:
            consumed = 0
            done = true
        case .contentLength:
            consumed = Int(min(Int64(bytes.count), exchange.responseBodyRemaining))
            exchange.responseBodyRemaining -= Int64(consumed)
            done = exchange.responseBodyRemaining == 0
        case .chunked:
            do {
                let result = try exchange.responseBodyScanner!.scan(bytes)
                consumed = result.consumed
                done = result.finished
            } catch {
                abortExchange(reason: "bad chunked response from \(exchange.target?.qualifiedName ?? "?"): \(error.reason)")
                return
            }
        case .untilClose:
            break
        }
        if consumed < bytes.count { exchange.upstreamReusable = false }  // bytes after the response: not HTTP we trust
        exchange.bytesToClient += consumed
        let body = UnsafeRawBufferPointer(rebasing: bytes[0..<consumed])
        let written = afterHead ? worker.headBuffer.withUnsafeBytes { client.write($0, body) } : client.write(body)
        if !written {
            abortExchange(reason: "client went away mid-response")
            return
        }
        if done {
            finishExchange(exchange)
        } else if client.hasPendingOutput {
            exchange.upstream?.pauseReading()
            deadline = monotonicMilliseconds() + UInt64(timeouts.write.milliseconds)
        }
    }

    func channelDrained(_ channel: SocketChannel) {
        if channel === client {
            if closeWhenFlushed && exchange == nil {
                close()
                return
            }
            if phase == .forwarding, let exchange {
                deadline = monotonicMilliseconds() + UInt64(timeouts.upstreamResponse.milliseconds)
                exchange.upstream?.resumeReading()
            } else {
                process()
            }
        } else {
            // The upstream took everything queued: more request body may flow.
            process()
        }
    }

    // MARK: - Upgrade

    private func switchProtocols(_ exchange: Exchange, head: HTTPResponseHead) {
        guard exchange.upgrading, let upstream = exchange.upstream, let target = exchange.target else {
            upstreamFailed(exchange, status: 502, reason: "\(exchange.target?.qualifiedName ?? "?") switched protocols without being asked", passive: false)
            return
        }
        exchange.status = 101
        writeHead(head, requestVersion: exchange.head.version, keepClientAlive: true, upgrading: true)
        logAccess(exchange, note: "upgraded")
        target.counters.recordResponse(status: 101)
        // From here the connection is a tunnel; it keeps the in-flight count until it closes.
        phase = .closed
        self.exchange = nil
        deadline = 0
        worker.unregister(self)
        let tunnel = TCPTunnel(upgradedClient: client, upstream: upstream, target: target, worker: worker, runtime: runtime, slot: slot, clientText: clientText)
        tunnel.startUpgraded(pendingToUpstream: inbound, pendingToClient: exchange.responseInbound)
        inbound = []
    }

    // MARK: - Answers and endings

    private func answerMaintenance(_ exchange: Exchange, gate: GateConfig) {
        let page = gate.maintenancePage ?? ProxyRuntime.defaultMaintenancePage
        var head = HTTPResponseHead(status: 503)
        head.headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
        head.headers.add(name: "Content-Length", value: String(page.utf8.count))
        head.headers.add(name: "Retry-After", value: String(max(1, gate.retryAfter.milliseconds / 1000)))
        head.headers.add(name: "Cache-Control", value: "no-store")
        let keep = exchange.clientKeepAlive && exchange.framing == .none
        if !keep { head.headers.add(name: "Connection", value: "close") }
        var bytes: [UInt8] = []
        head.write(into: &bytes)
        if exchange.head.method != "HEAD" { bytes.append(contentsOf: page.utf8) }
        finishLocally(exchange, status: 503, response: bytes, keepAlive: keep, note: "maintenance")
    }

    /// Answers from the proxy itself (gates, no endpoint, hold limits) with a short text body.
    private func answerLocally(_ exchange: Exchange, status: Int, message: String, retryAfter: Duration?) {
        // With a request body still unread, only closing keeps the connection unambiguous.
        let keep = exchange.clientKeepAlive && exchange.framing == .none
        var extra: [(String, String)] = []
        if let retryAfter { extra.append(("Retry-After", String(max(1, retryAfter.milliseconds / 1000)))) }
        let response = HTTPErrorResponse.errorResponse(status: status, message: message, extraHeaders: extra, close: !keep)
        finishLocally(exchange, status: status, response: response, keepAlive: keep, note: message)
    }

    private func finishLocally(_ exchange: Exchange, status: Int, response: [UInt8], keepAlive: Bool, note: String) {
        runtime.stats.proxyAnswered.wrappingAdd(1, ordering: .relaxed)
        exchange.status = status
        logAccess(exchange, note: note)
        self.exchange = nil
        phase = .awaitingHead
        client.write(response)
        if keepAlive {
            process()
        } else {
            closeWhenFlushed = true
            inbound = []
            if !client.hasPendingOutput { close() }
        }
    }

    /// The upstream connection died before a response started: retry once on a fresh connection when
    /// that is safe (a reused keep-alive connection the upstream had closed, and no body sent yet).
    private func upstreamLost(_ exchange: Exchange, reason: String) {
        if exchange.reusedUpstream && !exchange.receivedFromUpstream && exchange.framing == .none && !exchange.retried,
           let target = exchange.target {
            exchange.retried = true
            if let upstream = exchange.upstream { worker.pool.close(upstream, target: target) }
            exchange.upstream = nil
            connect(exchange, to: target)
            return
        }
        upstreamFailed(exchange, status: 502, reason: reason, passive: true)
    }

    /// The exchange failed on the upstream side: 502/504 if nothing was sent to the client yet.
    private func upstreamFailed(_ exchange: Exchange, status: Int, reason: String, passive: Bool) {
        guard let target = exchange.target else { return }
        if passive {
            target.counters.connectErrors.wrappingAdd(1, ordering: .relaxed)
            runtime.reportPassiveFailure(target: target, cause: reason)
        }
        if let upstream = exchange.upstream { worker.pool.close(upstream, target: target) }
        exchange.upstream = nil
        target.counters.requestEnded(method: exchange.head.method)
        target.counters.recordResponse(status: exchange.sentToClient ? exchange.status : status)
        exchange.target = nil
        if exchange.sentToClient {
            logAccess(exchange, note: reason, endpoint: target.name)
            self.exchange = nil
            close()
            return
        }
        Log.warning("\(status) for \(exchange.head.method) \(exchange.head.target) from \(clientText): \(reason)")
        exchange.clientKeepAlive = exchange.clientKeepAlive && exchange.requestBodyDone
        let keep = exchange.clientKeepAlive && exchange.framing == .none
        let response = HTTPErrorResponse.errorResponse(status: status, message: status == 504 ? "upstream timed out: \(reason)" : "bad gateway: \(reason)", close: !keep)
        exchange.endpointName = target.name
        finishLocally(exchange, status: status, response: response, keepAlive: keep, note: reason)
    }

    private func abortExchange(reason: String) {
        guard let exchange else {
            close()
            return
        }
        if let target = exchange.target {
            if let upstream = exchange.upstream { worker.pool.close(upstream, target: target) }
            exchange.upstream = nil
            target.counters.requestEnded(method: exchange.head.method)
            target.counters.recordResponse(status: exchange.sentToClient ? exchange.status : 0)
            exchange.endpointName = target.name
            exchange.target = nil
        }
        logAccess(exchange, note: "aborted: \(reason)")
        self.exchange = nil
        close()
    }

    /// The request body broke its chunked framing after the head went upstream: that upstream
    /// connection is lost, but while no response has started the client still learns it was at fault.
    private func rejectStreamedBody(_ exchange: Exchange, _ error: HTTPParseError) {
        guard !exchange.sentToClient, let target = exchange.target else {
            abortExchange(reason: "bad chunked request body: \(error.reason)")
            return
        }
        if let upstream = exchange.upstream { worker.pool.close(upstream, target: target) }
        exchange.upstream = nil
        target.counters.requestEnded(method: exchange.head.method)
        target.counters.recordResponse(status: 0)
        exchange.endpointName = target.name
        exchange.target = nil
        exchange.status = error.status
        runtime.stats.proxyAnswered.wrappingAdd(1, ordering: .relaxed)
        logAccess(exchange, note: "bad chunked request body: \(error.reason)")
        self.exchange = nil
        inbound = []
        respondAndClose(HTTPErrorResponse.errorResponse(status: error.status, message: error.reason, close: true))
    }

    /// A response has been relayed whole: return or close the upstream, then serve the next request.
    private func finishExchange(_ exchange: Exchange) {
        guard let target = exchange.target else { return }
        target.counters.requestEnded(method: exchange.head.method)
        target.counters.recordResponse(status: exchange.status)
        target.counters.latency.record(milliseconds: monotonicMilliseconds() &- exchange.started)
        if let upstream = exchange.upstream {
            exchange.upstream = nil
            // A draining endpoint keeps no idle connections: it closes after its current response.
            let stillWanted = runtime.store.load().routing.profile(at: exchange.profileIndex, named: exchange.profile)?.isCandidate(target) ?? false
            if exchange.upstreamReusable && exchange.requestBodyDone && stillWanted && !runtime.shuttingDown.load(ordering: .relaxed) {
                worker.pool.park(upstream, target: target)
            } else {
                worker.pool.close(upstream, target: target)
            }
        }
        exchange.endpointName = target.name
        exchange.target = nil
        logAccess(exchange, note: nil)
        self.exchange = nil
        phase = .awaitingHead
        if !exchange.clientKeepAlive {
            closeWhenFlushed = true
            if !client.hasPendingOutput { close() }
            return
        }
        process()
    }

    private func respondAndClose(_ response: [UInt8]) {
        phase = .awaitingHead
        closeWhenFlushed = true
        client.pauseReading()
        client.write(response)
        if !client.hasPendingOutput { close() }
        deadline = monotonicMilliseconds() + UInt64(timeouts.write.milliseconds)
    }

    // MARK: - Deadlines and closing

    func deadlinePassed(now: UInt64) {
        switch phase {
        case .awaitingHead:
            if closeWhenFlushed || inbound.isEmpty && headStartedAt == 0 {
                close()
            } else {
                runtime.stats.proxyAnswered.wrappingAdd(1, ordering: .relaxed)
                logAccess(method: "-", target: "-", status: 408, endpoint: "-", bytes: 0, started: headStartedAt, note: "request head not received in time")
                inbound = []
                respondAndClose(HTTPErrorResponse.errorResponse(status: 408, message: "request head not received within \(DurationText.format(timeouts.headerRead))", close: true))
            }
        case .holding:
            guard let exchange else { return close() }
            // What holds it now, which may have changed since it was parked (a resume under a write hold).
            let current = runtime.store.load().routing.profile(at: exchange.profileIndex, named: exchange.profile)?.hold.reason(for: HoldConditions.Work(method: exchange.head.method))
            let reason = current ?? exchange.held?.reason ?? .paused
            stopHolding()
            runtime.stats.holdTimeouts.wrappingAdd(1, ordering: .relaxed)
            let profile = exchange.profile
            answerLocally(exchange, status: 503, message: "\(profile) held this request longer than its hold timeout (\(Self.holdText(reason))); it was not sent upstream", retryAfter: .seconds(5))
        case .connecting:
            guard let exchange else { return close() }
            upstreamFailed(exchange, status: 504, reason: "connect to \(exchange.target?.qualifiedName ?? "?") timed out after \(DurationText.format(timeouts.connect))", passive: true)
        case .forwarding:
            guard let exchange else { return close() }
            if exchange.responseHeadDone {
                abortExchange(reason: "transfer stalled")
            } else {
                upstreamFailed(exchange, status: 504, reason: "\(exchange.target?.qualifiedName ?? "?") sent no response within \(DurationText.format(timeouts.upstreamResponse))", passive: true)
            }
        case .closed:
            break
        }
    }

    func forceClose(reason: String) {
        if exchange != nil {
            abortExchange(reason: reason)
        } else {
            close()
        }
    }

    /// Closes an idle keep-alive connection (shutdown); busy ones finish first.
    func closeIfIdle() {
        if phase == .awaitingHead && exchange == nil && inbound.isEmpty { close() }
    }

    private func close() {
        // `.closed` also after an upgrade handed the sockets to a tunnel: they are not ours to close.
        guard phase != .closed else { return }
        if phase == .holding { stopHolding() }
        phase = .closed
        deadline = 0
        client.close()
        if let exchange, let target = exchange.target {
            if let upstream = exchange.upstream { worker.pool.close(upstream, target: target) }
            target.counters.requestEnded(method: exchange.head.method)
            exchange.target = nil
        }
        exchange = nil
        worker.unregister(self)
        runtime.connectionClosed()
    }

    // MARK: - Access log

    private func logAccess(_ exchange: Exchange, note: String?, endpoint: String? = nil) {
        logAccess(
            method: exchange.head.method, target: exchange.head.target, status: exchange.status,
            endpoint: endpoint ?? exchange.endpointName ?? exchange.target?.name ?? "-", bytes: exchange.bytesToClient,
            started: exchange.started, note: note, profile: exchange.profile)
    }

    private func logAccess(method: String, target: String, status: Int, endpoint: String, bytes: Int, started: UInt64, note: String?, profile: String = "-") {
        guard let log = worker.accessLog else { return }
        let elapsed = started == 0 ? 0 : monotonicMilliseconds() &- started
        var line = "\(Timestamp.now()) \(clientText) \"\(method) \(target)\" \(status) \(profile)/\(endpoint) \(bytes)B \(elapsed)ms"
        if let note { line += " \"\(note)\"" }
        log.append(worker: worker.index, line)
    }
}

/// One request/response in flight on an `HTTPSession`.
private final class Exchange {
    var head: HTTPRequestHead
    let framing: BodyFraming
    let started: UInt64
    var profile = "-"
    /// Index of `profile` in the snapshot that routed the request (a hint: a reload may move it).
    var profileIndex = 0
    /// The target sent upstream when the route strips its prefix; `nil` sends `head.target`.
    var upstreamTarget: String?
    /// The profile counts 5xx answers as passive failures (`passive.status_5xx`).
    var reportsServerErrors = false
    var target: EndpointTarget?
    /// Name of the endpoint that served it, kept for the access log after `target` is released.
    var endpointName: String?
    var upstream: SocketChannel?
    var reusedUpstream = false
    var retried = false
    var upgrading = false
    var held: (queue: HoldQueue, id: UInt64, reason: HoldConditions.Reason)?
    var clientKeepAlive = true
    var requestBodyDone = false
    var requestBodyRemaining: Int64 = 0
    var requestBodyScanner: ChunkedBodyScanner?
    var receivedFromUpstream = false
    var responseInbound: [UInt8] = []
    var responseHeadDone = false
    var responseFraming = BodyFraming.none
    var responseBodyRemaining: Int64 = 0
    var responseBodyScanner: ChunkedBodyScanner?
    var upstreamReusable = false
    var sentToClient = false
    var status = 0
    var bytesToClient = 0

    init(head: HTTPRequestHead, framing: BodyFraming, started: UInt64) {
        self.head = head
        self.framing = framing
        self.started = started
        // A request without a body is complete with its head: a 502 before anything was sent
        // upstream (connect refused) must not cost the client its keep-alive connection.
        self.requestBodyDone = framing == .none
    }
}
