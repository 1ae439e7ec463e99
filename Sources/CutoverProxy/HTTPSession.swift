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
    /// The client and the address it connected to (from a PROXY header, or the socket): what a
    /// `send_proxy` endpoint is told.
    private let addresses: ProxyProtocol.Addresses?
    /// The listener's `trusted_proxies`, consulted per request only when the peer is one of them.
    private let trustedProxies: TrustedProxies
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
    /// `process` is running; a nested call sets `processAgain` instead of recursing.
    private var processing = false
    private var processAgain = false

    /// When the client last sent bytes (or connected): see `closeIfIdle`.
    private var clientActiveMs = monotonicMilliseconds()

    /// Client bytes buffered beyond the request being served before the client is no longer read.
    static let maxBufferedPipeline = 65_536

    private enum Phase {
        case awaitingHead
        case holding
        case connecting
        case forwarding
        case closed
    }

    /// - Parameter addresses: the client as a PROXY header named it, or the socket's own ends.
    init(fd: Int32, worker: Worker, runtime: ProxyRuntime, slot: Int, transport: ListenerTransport = .plain, addresses: ProxyProtocol.Addresses? = nil) {
        self.client = SocketChannel(fd: fd, worker: worker, tls: transport.tls.map { .server($0) })
        self.redirectHTTPSPort = transport.redirectHTTPSPort
        self.worker = worker
        self.runtime = runtime
        self.slot = slot
        let peer = addresses.map { (bytes: $0.source.ip, text: $0.source.text) } ?? Socket.peer(fd)
        self.clientAddress = peer.bytes
        self.clientText = peer.text
        self.addresses = addresses
        self.trustedProxies = transport.trustedProxies
        self.origin = HTTPForwarding.Origin(
            address: peer.text, proto: transport.tls == nil ? "http" : "https", trusted: transport.trustedProxies.contains(peer.bytes))
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
            clientActiveMs = monotonicMilliseconds()
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
                rejectHead(.client(error))
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
                if let exchange {
                    finish(exchange, .aborted(reason: reset ? "client reset" : "client closed mid-request"))
                } else {
                    close()
                }
            }
        case .closed:
            break
        }
    }

    /// Advances whatever the buffered client bytes allow: the next head, or more request body.
    ///
    /// Re-entrant calls (an exchange that ends while a head is being begun, e.g. a pipelined run of
    /// local answers) only ask the running loop for another pass, so the stack never grows with them.
    private func process() {
        if processing {
            processAgain = true
            return
        }
        processing = true
        repeat {
            processAgain = false
            advance()
        } while processAgain
        processing = false
    }

    /// One pass of `process`.
    private func advance() {
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
            rejectHead(.client(error))
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

    // MARK: - Routing a request

    private func begin(_ received: HTTPRequestHead) {
        runtime.stats.requests.wrappingAdd(1, ordering: .relaxed)
        let head: HTTPRequestHead
        let framing: BodyFraming
        do {
            // From here on, routing, the log and the upstream see one authority (issue 20, defect 2).
            head = try received.originFormed()
            framing = try head.bodyFraming()
        } catch {
            rejectHead(.client(error))
            return
        }
        if let limit = worker.settings.limits.maxBodyBytes, case .contentLength(let length) = framing, length > Int64(limit) {
            rejectHead(.client(HTTPParseError(status: 413, reason: "request body of \(length) bytes is over the limit of \(limit)")))
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
                rejectHead(.client(error))
                return
            }
        }
        let exchange = Exchange(head: head, framing: framing, started: monotonicMilliseconds())
        // Behind a trusted proxy the request speaks for the client its X-Forwarded-For names.
        if origin.trusted { exchange.forwardedClient = trustedProxies.client(forwardedFor: head.headers) }
        exchange.requestID = worker.requestIDs.id(for: head.headers)
        exchange.clientKeepAlive = head.keepAlive && !runtime.shuttingDown.load(ordering: .relaxed)
        self.exchange = exchange
        route(exchange)
    }

    private func route(_ exchange: Exchange) {
        let snapshot = runtime.store.load()
        guard let listener = snapshot.listenerBySlot[slot] else {
            finish(exchange, .answered(.listenerRemoved))
            return
        }
        // The profile comes from the same snapshot read as the endpoint it picks below.
        let route: ProfileRoute
        switch listener.decide(request: exchange.head) {
        case .noRoute:
            // Only a 404 spells the host out as text.
            finish(exchange, .answered(.noRoute(host: exchange.head.headers["Host"], listener: listener.name)))
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
            finish(exchange, .redirected(location: location))
            return
        }
        if route.maintenance && !bypassesMaintenance(exchange.head, gate: route.config.gate) {
            finish(exchange, .maintenance(route.config.gate))
            return
        }
        if let fields = route.config.gate.fieldsForBackend(exchange.head.headers) { exchange.head.headers = fields }
        switch route.readOnly.verdict(method: exchange.head.method) {
        case .refuse:
            finish(exchange, .answered(.readOnly(profile: route.name, method: exchange.head.method, retryAfter: route.config.gate.retryAfter)))
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
            finish(exchange, .answered(.noEndpoint(profile: route.name, retryAfter: route.config.gate.retryAfter)))
            return
        }
        dispatch(exchange, to: target)
    }

    private func bypassesMaintenance(_ head: HTTPRequestHead, gate: GateConfig) -> Bool {
        let source = exchange?.forwardedClient?.bytes ?? clientAddress
        if gate.bypass.sources.contains(where: { $0.contains(source) }) { return true }
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
            finish(exchange, .answered(.holdFull(profile: route.name, why: reason, maxHeld: route.config.maxHeld, retryAfter: route.config.gate.retryAfter)))
        case .routeAgain:
            self.route(exchange)
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
        if let pooled = worker.pool.take(target, for: ObjectIdentifier(self)) {
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
            if let version = target.sendProxy, let addresses { channel.preamble = ProxyProtocol.header(version, for: addresses) }
            channel.handler = self
            exchange.upstream = channel
            target.counters.connections.wrappingAdd(1, ordering: .relaxed)
            channel.awaitConnect()
        } catch {
            finish(exchange, .answered(.upstreamUnreachable(reason: "cannot connect to \(target.qualifiedName): \(error)")))
        }
    }

    func channelConnected(_ channel: SocketChannel, error: Int32) {
        guard phase == .connecting, let exchange, channel === exchange.upstream, let target = exchange.target else { return }
        if error != 0 {
            let reason = channel.tlsFailure ?? "\(target.qualifiedName) refused the connection (\(String(cString: strerror(error))))"
            finish(exchange, .answered(.upstreamUnreachable(reason: reason)))
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
            HTTPForwarding.writeUpstreamRequest(head, origin: origin, upgrading: exchange.upgrading, requestID: exchange.requestID, into: &worker.headBuffer)
        } else {
            HTTPForwarding.writeUpstreamRequest(exchange.head, origin: origin, upgrading: exchange.upgrading, requestID: exchange.requestID, into: &worker.headBuffer)
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
                finish(exchange, .answered(.client(HTTPParseError(status: error.status, reason: "bad chunked request body: \(error.reason)"))))
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
                finish(exchange, .relayed)
            } else {
                // The body was cut short: the client must see a broken connection, not a short body.
                finish(exchange, .aborted(reason: "\(exchange.target?.qualifiedName ?? "?") closed mid-response"))
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
                finish(exchange, .answered(.upstreamInvalid(reason: "invalid response from \(exchange.target?.qualifiedName ?? "?"): \(error.reason)")))
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
            finish(exchange, .answered(.upstreamInvalid(reason: "invalid response from \(exchange.target?.qualifiedName ?? "?"): \(error.reason)")))
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
                finish(exchange, .relayed)
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
                finish(exchange, .aborted(reason: "bad chunked response from \(exchange.target?.qualifiedName ?? "?"): \(error.reason)"))
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
            finish(exchange, .aborted(reason: "client went away mid-response"))
            return
        }
        if done {
            finish(exchange, .relayed)
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
            finish(exchange, .answered(.upstreamInvalid(reason: "\(exchange.target?.qualifiedName ?? "?") switched protocols without being asked")))
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
        worker.pool.closeIdle(pinnedTo: ObjectIdentifier(self))
        let tunnel = TCPTunnel(upgradedClient: client, upstream: upstream, target: target, worker: worker, runtime: runtime, slot: slot, clientText: clientText)
        tunnel.startUpgraded(pendingToUpstream: inbound, pendingToClient: exchange.responseInbound)
        inbound = []
    }

    // MARK: - Endings

    /// How an exchange ended: the one input of `finish`.
    private enum Outcome {
        /// The upstream's response was relayed whole.
        case relayed
        /// The proxy answers the request itself, for this fault.
        case answered(ProxyFault)
        /// The maintenance gate answers with its page.
        case maintenance(GateConfig)
        /// `redirect_https`: a 308 to the same host and target on the HTTPS port.
        case redirected(location: String)
        /// Nothing more can be said on this connection (a response had started, the client went
        /// away): the connection closes.
        case aborted(reason: String)
    }

    /// Every way an exchange ends goes through here: the upstream is parked or closed, the endpoint's
    /// counters and passive health hear the outcome, the access log gets its line, and the client
    /// connection serves its next request or closes.
    private func finish(_ exchange: Exchange, _ outcome: Outcome) {
        switch outcome {
        case .relayed:
            report(exchange, status: exchange.status, fault: nil, relayed: true)
            releaseUpstream(exchange, reusable: exchange.upstreamReusable && exchange.requestBodyDone)
            logAccess(exchange, note: nil)
            self.exchange = nil
            phase = .awaitingHead
            if exchange.clientKeepAlive {
                process()
            } else {
                closeWhenFlushed = true
                if !client.hasPendingOutput { close() }
            }
        case .answered(let fault):
            if exchange.sentToClient {
                // Part of a response is out: a second one cannot follow it.
                finish(exchange, .aborted(reason: fault.answer.message))
                return
            }
            let answer = fault.answer
            let upstreamFault = exchange.target != nil && !Self.isClientFault(fault)
            // The upstream did not answer: the endpoint is charged with the proxy's status, the
            // client's own faults with none.
            report(exchange, status: upstreamFault ? answer.status : 0, fault: fault)
            releaseUpstream(exchange, reusable: false)
            exchange.status = answer.status
            runtime.stats.countProxyAnswer(fault.reason)
            logAccess(exchange, note: answer.message)
            self.exchange = nil
            if Self.isClientFault(fault) {
                inbound = []
                respondAndClose(Self.response(for: answer, close: true))
                return
            }
            if upstreamFault {
                Log.warning("\(answer.status) for \(exchange.head.method) \(exchange.head.target) from \(clientText): \(answer.message)")
                exchange.clientKeepAlive = exchange.clientKeepAlive && exchange.requestBodyDone
            }
            // With a request body still unread, only closing keeps the connection unambiguous.
            let keep = exchange.clientKeepAlive && exchange.framing == .none
            send(Self.response(for: answer, close: !keep), keepAlive: keep)
        case .maintenance(let gate):
            exchange.status = 503
            runtime.stats.countProxyAnswer(.maintenance)
            logAccess(exchange, note: "maintenance")
            self.exchange = nil
            let keep = exchange.clientKeepAlive && exchange.framing == .none
            send(Self.maintenanceResponse(gate, keepAlive: keep, withBody: exchange.head.method != "HEAD"), keepAlive: keep)
        case .redirected(let location):
            exchange.status = 308
            runtime.stats.countProxyAnswer(.redirect)
            logAccess(exchange, note: "redirect_https")
            self.exchange = nil
            let keep = exchange.clientKeepAlive && exchange.framing == .none
            let response = HTTPErrorResponse.errorResponse(
                status: 308, message: "This site is served over HTTPS: \(location)", extraHeaders: [("Location", location)], close: !keep)
            send(response, keepAlive: keep)
        case .aborted(let reason):
            report(exchange, status: exchange.sentToClient ? exchange.status : 0, fault: nil)
            releaseUpstream(exchange, reusable: false)
            logAccess(exchange, note: "aborted: \(reason)")
            self.exchange = nil
            close()
        }
    }

    /// The one place a finished exchange tells the runtime how it went: the endpoint's in-flight
    /// count and response record, its latency, and a connection failure for passive health.
    ///
    /// The response head itself is judged earlier, in `startResponse` (see there why).
    private func report(_ exchange: Exchange, status: Int, fault: ProxyFault?, relayed: Bool = false) {
        guard let target = exchange.target else { return }
        if let fault, fault.isConnectionFailure {
            target.counters.connectErrors.wrappingAdd(1, ordering: .relaxed)
            runtime.reportPassiveFailure(target: target, cause: Self.reason(of: fault))
        }
        target.counters.requestEnded(method: exchange.head.method)
        target.counters.recordResponse(status: status)
        if relayed { target.counters.latency.record(milliseconds: monotonicMilliseconds() &- exchange.started) }
        exchange.endpointName = target.name
    }

    /// Parks the upstream connection for the next request when it is clean and still wanted, else
    /// closes it; forgets the target either way.
    private func releaseUpstream(_ exchange: Exchange, reusable: Bool) {
        guard let target = exchange.target else { return }
        exchange.target = nil
        guard let upstream = exchange.upstream else { return }
        exchange.upstream = nil
        // A draining endpoint keeps no idle connections: it closes after its current response.
        if reusable, !runtime.shuttingDown.load(ordering: .relaxed),
            runtime.store.load().routing.profile(at: exchange.profileIndex, named: exchange.profile)?.isCandidate(target) ?? false
        {
            worker.pool.park(upstream, target: target, for: ObjectIdentifier(self))
        } else {
            worker.pool.close(upstream, target: target)
        }
    }

    /// The client's fault: answered and the connection closed (what follows cannot be trusted).
    private static func isClientFault(_ fault: ProxyFault) -> Bool {
        switch fault {
        case .client, .clientTooSlow: return true
        case .upstreamUnreachable, .upstreamInvalid, .upstreamTimedOut, .listenerRemoved, .noRoute, .noEndpoint, .readOnly, .holdFull, .holdTimedOut:
            return false
        }
    }

    /// The operator-facing cause of an upstream fault, for passive health and the log.
    private static func reason(of fault: ProxyFault) -> String {
        switch fault {
        case .upstreamUnreachable(let reason), .upstreamInvalid(let reason), .upstreamTimedOut(let reason): return reason
        case .client, .clientTooSlow, .listenerRemoved, .noRoute, .noEndpoint, .readOnly, .holdFull, .holdTimedOut: return fault.answer.message
        }
    }

    private static func response(for answer: ProxyFault.Answer, close: Bool) -> [UInt8] {
        var extra: [(String, String)] = []
        if let retryAfter = answer.retryAfter { extra.append(("Retry-After", String(max(1, retryAfter.milliseconds / 1000)))) }
        return HTTPErrorResponse.errorResponse(status: answer.status, message: answer.message, extraHeaders: extra, close: close)
    }

    private static func maintenanceResponse(_ gate: GateConfig, keepAlive: Bool, withBody: Bool) -> [UInt8] {
        let page = gate.maintenancePage ?? ProxyRuntime.defaultMaintenancePage
        var head = HTTPResponseHead(status: 503)
        head.headers.add(name: "Content-Type", value: "text/html; charset=utf-8")
        head.headers.add(name: "Content-Length", value: String(page.utf8.count))
        head.headers.add(name: "Retry-After", value: String(max(1, gate.retryAfter.milliseconds / 1000)))
        head.headers.add(name: "Cache-Control", value: "no-store")
        if !keepAlive { head.headers.add(name: "Connection", value: "close") }
        var bytes: [UInt8] = []
        head.write(into: &bytes)
        if withBody { bytes.append(contentsOf: page.utf8) }
        return bytes
    }

    /// Writes a whole local answer, then serves the next request or closes.
    private func send(_ response: [UInt8], keepAlive: Bool) {
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

    /// A head that cannot start an exchange (malformed, over a limit, too slow): answered, then closed.
    private func rejectHead(_ fault: ProxyFault) {
        let answer = fault.answer
        runtime.stats.countProxyAnswer(fault.reason)
        logAccess(method: "-", target: "-", status: answer.status, endpoint: "-", bytes: 0, started: headStartedAt, note: answer.message)
        inbound = []
        respondAndClose(Self.response(for: answer, close: true))
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
        finish(exchange, .answered(.upstreamUnreachable(reason: reason)))
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
                rejectHead(.clientTooSlow(headerRead: timeouts.headerRead))
            }
        case .holding:
            guard let exchange else { return close() }
            // What holds it now, which may have changed since it was parked (a resume under a write hold).
            let current = runtime.store.load().routing.profile(at: exchange.profileIndex, named: exchange.profile)?.hold.reason(for: HoldConditions.Work(method: exchange.head.method))
            let reason = current ?? exchange.held?.reason ?? .paused
            stopHolding()
            runtime.stats.holdTimeouts.wrappingAdd(1, ordering: .relaxed)
            finish(exchange, .answered(.holdTimedOut(profile: exchange.profile, why: reason)))
        case .connecting:
            guard let exchange else { return close() }
            finish(exchange, .answered(.upstreamTimedOut(reason: "connect to \(exchange.target?.qualifiedName ?? "?") timed out after \(DurationText.format(timeouts.connect))")))
        case .forwarding:
            guard let exchange else { return close() }
            if exchange.responseHeadDone {
                finish(exchange, .aborted(reason: "transfer stalled"))
            } else {
                finish(exchange, .answered(.upstreamTimedOut(reason: "\(exchange.target?.qualifiedName ?? "?") sent no response within \(DurationText.format(timeouts.upstreamResponse))")))
            }
        case .closed:
            break
        }
    }

    func forceClose(reason: String) {
        if let exchange {
            finish(exchange, .aborted(reason: reason))
        } else {
            close()
        }
    }

    /// Closes an idle keep-alive connection (shutdown); busy ones finish first.
    func closeIfIdle() {
        guard phase == .awaitingHead && exchange == nil && inbound.isEmpty else { return }
        // Closing a connection between requests races with the client's next one (it may be on
        // the wire already, and the client sees an empty reply). So bytes already waiting are
        // served, with `Connection: close`, and only a client silent for a while is closed: one
        // that keeps sending gets its next answer with `Connection: close` instead, and a connection
        // just accepted gets a moment for its first request (a takeover's last accepts, typically).
        if Socket.bytesWaiting(client.fd) > 0 { return }
        if monotonicMilliseconds() &- clientActiveMs < Self.idleBeforeClose { return }
        close()
    }

    /// How long a shutdown waits for a quiet client before closing it between requests.
    static let idleBeforeClose: UInt64 = 1000

    private func close() {
        // `.closed` also after an upgrade handed the sockets to a tunnel: they are not ours to close.
        guard phase != .closed else { return }
        if phase == .holding { stopHolding() }
        phase = .closed
        deadline = 0
        client.close()
        worker.pool.closeIdle(pinnedTo: ObjectIdentifier(self))
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
            started: exchange.started, note: note, profile: exchange.profile, requestID: exchange.requestID?.value, client: exchange.forwardedClient?.text)
    }

    private func logAccess(
        method: String, target: String, status: Int, endpoint: String, bytes: Int, started: UInt64, note: String?, profile: String = "-",
        requestID: String? = nil, client: String? = nil
    ) {
        guard let log = worker.accessLog else { return }
        let elapsed = started == 0 ? 0 : monotonicMilliseconds() &- started
        log.append(worker: worker.index, AccessRecord(
            time: Timestamp.now(), client: client ?? clientText, method: method, target: target, status: status, bytes: bytes, durationMs: elapsed,
            profile: profile, endpoint: endpoint, requestId: requestID, note: note))
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
    /// The client a trusted proxy's `X-Forwarded-For` names (`trusted_proxies`); `nil` means the peer.
    var forwardedClient: (bytes: [UInt8], text: String)?
    /// Forwarded as `X-Request-Id` and logged.
    var requestID: RequestID?

    init(head: HTTPRequestHead, framing: BodyFraming, started: UInt64) {
        self.head = head
        self.framing = framing
        self.started = started
        // A request without a body is complete with its head: a 502 before anything was sent
        // upstream (connect refused) must not cost the client its keep-alive connection.
        self.requestBodyDone = framing == .none
    }
}
