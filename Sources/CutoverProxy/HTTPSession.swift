import CutoverCore
import Dispatch
import Glibc

/// One HTTP/1.1 client connection: the driver of an `HTTPExchangeStateMachine`. The machine
/// decides framing, keep-alive, retries, deadlines and whose fault an ending is; the session owns
/// the sockets, routes each head through the current snapshot, performs the machine's actions and
/// feeds it what happened (bytes, ends of stream, connects, drained writes, deadlines, holds).
///
/// Backpressure: a write that leaves bytes queued is told to the machine after the batch of
/// actions it belongs to (`clientWriteBlocked`), and the machine stops the side feeding it.
final class HTTPSession: WorkerConnection, ChannelHandler, @unchecked Sendable {  // confined to worker.queue
    private let client: SocketChannel
    private let worker: Worker
    /// Unowned without a check: the runtime outlives every connection of its workers, and a checked
    /// `unowned` costs an atomic retain and release on each of the many reads per request.
    private unowned(unsafe) let runtime: ProxyRuntime
    private let slot: Int
    /// The client as forwarding headers name it, built once per connection; its `address` is also
    /// the client as logs name it.
    private let origin: HTTPForwarding.Origin
    /// The client and the address it connected to as a PROXY header named them; `nil` without one,
    /// and then the socket's own ends are looked up when asked (`clientAddresses`): two addresses kept
    /// per connection would be two more arrays held by every idle keep-alive client.
    private let proxied: ProxyProtocol.Addresses?
    /// The listener's `trusted_proxies`, consulted per request only when the peer is one of them.
    private let trustedProxies: TrustedProxies
    /// The HTTPS port every request is redirected to (`redirect_https` on a plain listener).
    private let redirectHTTPSPort: UInt16?
    private var machine: HTTPExchangeStateMachine
    /// What routing decided for the current exchange (the machine knows nothing of the runtime):
    /// one object per exchange, so an idle keep-alive connection holds a pointer, not the record.
    private var routed: Routed?
    /// The upstream connection of the current exchange.
    private var upstream: SocketChannel?
    /// The machine has been told the client / upstream write is blocked (and not yet drained).
    private var clientBlockedTold = false
    private var upstreamBlockedTold = false
    /// The session no longer owns the client socket (closed, or handed to a tunnel).
    private var finished = false

    /// When the client last sent bytes (or connected): see `closeIfIdle`.
    private var clientActiveMs = monotonicMilliseconds()
    /// When the event being handled happened (`tick()` at every entry point): everything an event
    /// leads to (routing, connecting, the next action batch, the latency record) reads this one
    /// clock reading instead of the clock again, several times per request.
    private var eventNow: UInt64 = 0

    /// Reads the clock for a new event.
    private func tick() -> UInt64 {
        eventNow = monotonicMilliseconds()
        return eventNow
    }

    /// The runtime's side of one exchange: its route, endpoint, hold and what the log needs.
    private final class Routed {
        /// The head as routed (gates may have replaced its fields); `nil` before a head was routed.
        var head: HTTPRequestHead?
        var started: UInt64 = 0
        var profile = "-"
        /// Index of `profile` in the snapshot that routed the request (a hint: a reload may move it).
        var profileIndex = 0
        /// The target sent upstream when the route strips its prefix; `nil` sends `head.target`.
        var upstreamTarget: String?
        /// The profile counts 5xx answers as passive failures (`passive.status_5xx`).
        var reportsServerErrors = false
        var target: EndpointTarget?
        /// The store's version when `target` was picked: while it still says so, `target` is still
        /// a candidate, and parking its connection needs no second look at the snapshot.
        var pickedAtVersion: UInt64 = 0
        var held: UpstreamConnector.HeldPlace?
        /// The maintenance gate whose page answers, or the HTTPS redirect's location.
        var gate: GateConfig?
        var location: String?
        var status = 0
        /// The client a trusted proxy's `X-Forwarded-For` names (`trusted_proxies`); `nil` means the peer.
        var forwardedClient: (bytes: [UInt8], text: String)?
        /// Forwarded as `X-Request-Id` and logged.
        var requestID: RequestID?
        /// The next `.route` re-routes a released hold (the same request, not a new one).
        var rerouting = false

        init(started: UInt64 = 0) {
            self.started = started
        }
    }

    /// The current exchange's record, made on first use when no head has been routed yet (a refused
    /// head is still logged and answered from one).
    private var current: Routed {
        if let routed { return routed }
        let fresh = Routed()
        routed = fresh
        return fresh
    }

    /// - Parameter addresses: the client as a PROXY header named it; `nil`: the socket's own ends.
    init(fd: Int32, worker: Worker, runtime: ProxyRuntime, slot: Int, transport: ListenerTransport = .plain, addresses: ProxyProtocol.Addresses? = nil) {
        self.client = SocketChannel(fd: fd, worker: worker, tls: transport.tls.map { .server($0) })
        self.redirectHTTPSPort = transport.redirectHTTPSPort
        self.worker = worker
        self.runtime = runtime
        self.slot = slot
        let peer = addresses.map { (bytes: $0.source.ip, text: $0.source.text) } ?? Socket.peer(fd)
        self.proxied = addresses
        self.trustedProxies = transport.trustedProxies
        self.origin = worker.origin(
            address: peer.text, proto: transport.tls == nil ? "http" : "https", trusted: transport.trustedProxies.contains(peer.bytes))
        self.machine = HTTPExchangeStateMachine(configuration: worker.settings.exchange)
    }

    /// What a `send_proxy` endpoint is told: the PROXY header's addresses, else the socket's ends.
    private var clientAddresses: ProxyProtocol.Addresses? { proxied ?? Socket.addresses(client.fd) }

    func start() {
        worker.register(self)
        client.handler = self
        client.defersWrites = true
        client.watchesHangUp = true
        perform(machine.clientConnected(now: tick()), input: nil)
    }

    var servingTarget: EndpointTarget? { routed?.target }

    var deadline: UInt64 { finished ? 0 : machine.deadline }

    // MARK: - Events from the sockets

    func channelReadable(_ channel: SocketChannel) {
        if channel === client {
            let now = tick()
            clientActiveMs = now
            let n = client.read(into: worker.scratch)
            if n == -1 { return }
            if n <= 0 {
                perform(machine.clientEnded(reset: n == -2, now: now), input: nil)
                return
            }
            // A reload's new timeouts and limits apply from the next bytes on.
            if machine.configuration !== worker.settings.exchange { machine.configuration = worker.settings.exchange }
            machine.keepAliveAllowed = !runtime.shuttingDown.load(ordering: .relaxed)
            let bytes = UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])
            perform(machine.clientBytes(bytes, now: now), input: bytes)
        } else {
            guard channel === upstream else { return }
            let n = channel.read(into: worker.scratch)
            if n == -1 { return }
            let now = tick()
            if n <= 0 {
                perform(machine.upstreamEnded(reset: n == -2, now: now), input: nil)
                return
            }
            routed?.target?.counters.bytesIn.wrappingAdd(n, ordering: .relaxed)
            machine.keepAliveAllowed = !runtime.shuttingDown.load(ordering: .relaxed)
            let bytes = UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])
            perform(machine.upstreamBytes(bytes, now: now), input: bytes)
        }
    }

    func channelDrained(_ channel: SocketChannel) {
        if channel === client {
            guard clientBlockedTold else { return }
            clientBlockedTold = false
            perform(machine.clientDrained(now: tick()), input: nil)
        } else if channel === upstream {
            guard upstreamBlockedTold else { return }
            upstreamBlockedTold = false
            perform(machine.upstreamDrained(now: tick()), input: nil)
        }
    }

    func channelConnected(_ channel: SocketChannel, error: Int32) {
        guard channel === upstream, let target = routed?.target else { return }
        let now = tick()
        if error != 0 {
            let reason = channel.tlsFailure ?? "\(target.qualifiedName) refused the connection (\(String(cString: strerror(error))))"
            perform(machine.upstreamConnectFailed(.upstreamUnreachable(reason: reason), now: now), input: nil)
            return
        }
        runtime.reportPassiveSuccess(target: target, proof: .connected)
        perform(machine.upstreamConnected(reused: false, now: now), input: nil)
    }

    /// The client went away while it was not read (held, connecting, upstream not taking the body).
    func channelHungUp(_ channel: SocketChannel, reset: Bool) {
        guard channel === client else { return }
        // Bytes still waiting come before the end: they are read (and the end seen) when reading resumes.
        if !reset && Socket.bytesWaiting(client.fd) > 0 { return }
        perform(machine.clientEnded(reset: reset, now: tick()), input: nil)
    }

    func deadlinePassed(now: UInt64) {
        eventNow = now
        perform(machine.deadlinePassed(now: now), input: nil)
    }

    func forceClose(reason: String) {
        perform(machine.forceClose(reason: reason, now: tick()), input: nil)
        closeSession()
    }

    /// Closes an idle keep-alive connection (shutdown); busy ones finish first.
    func closeIfIdle() {
        guard !finished, machine.isIdle else { return }
        // Closing a connection between requests races with the client's next one (it may be on
        // the wire already, and the client sees an empty reply). So bytes already waiting are
        // served, with `Connection: close`, and only a client silent for a while is closed: one
        // that keeps sending gets its next answer with `Connection: close` instead, and a connection
        // just accepted gets a moment for its first request (a takeover's last accepts, typically).
        if Socket.bytesWaiting(client.fd) > 0 { return }
        if monotonicMilliseconds() &- clientActiveMs < Self.idleBeforeClose { return }
        closeSession()
    }

    /// How long a shutdown waits for a quiet client before closing it between requests.
    static let idleBeforeClose: UInt64 = 1000

    // MARK: - Performing actions

    /// Performs one batch in order. A failed write is fed back after the batch (the machine's state
    /// is whole again by then), and so is a write that left bytes queued.
    private func perform(_ actions: HTTPExchangeActions, input: UnsafeRawBufferPointer?) {
        var clientFailed = false
        var upstreamFailed = false
        // By index: iterating would first copy the whole inline batch (and retain every payload in it).
        for index in 0..<actions.count {
            if finished { return }
            switch actions[index] {
            case .route:
                route(machine.requestHead!)
            case .connectUpstream(let fresh):
                connectUpstream(fresh: fresh)
            case .writeRequestHead(let upgrading):
                let current = self.current
                guard let upstream, let head = current.head else { continue }
                worker.headBuffer.removeAll(keepingCapacity: true)
                if let stripped = current.upstreamTarget {
                    var forwarded = head
                    forwarded.target = stripped
                    HTTPForwarding.writeUpstreamRequest(forwarded, origin: origin, upgrading: upgrading, requestID: current.requestID, into: &worker.headBuffer)
                } else {
                    HTTPForwarding.writeUpstreamRequest(head, origin: origin, upgrading: upgrading, requestID: current.requestID, into: &worker.headBuffer)
                }
                if !upstream.write(worker.headBuffer) { upstreamFailed = true }
            case .writeUpstream(let bytes):
                guard let upstream else { continue }
                routed?.target?.counters.bytesOut.wrappingAdd(bytes.count, ordering: .relaxed)
                if !machine.withBytes(bytes, input: input, { upstream.write($0) }) { upstreamFailed = true }
            case .writeInterimHead(let head):
                if !writeResponseHead(head, body: nil, keepAlive: true, upgrading: false, input: input) { clientFailed = true }
            case .writeResponseHead(let body, let keepAlive, let upgrading):
                // Read in place from the batch: a bound copy of the head would retain its arrays.
                responseStarted(status: actions.responseHead!.status)
                if !writeResponseHead(actions.responseHead!, body: body, keepAlive: keepAlive, upgrading: upgrading, input: input) { clientFailed = true }
            case .writeClient(let bytes):
                if !machine.withBytes(bytes, input: input, { client.write($0) }) { clientFailed = true }
            case .answer(let answer, let keepAlive):
                if !client.write(response(for: answer, keepAlive: keepAlive)) { clientFailed = true }
            case .parkUpstream:
                releaseUpstream(reusable: true)
            case .closeUpstream:
                releaseUpstream(reusable: false)
            case .pauseClient:
                client.pauseReading()
            case .resumeClient:
                client.resumeReading()
            case .pauseUpstream:
                upstream?.pauseReading()
            case .resumeUpstream:
                upstream?.resumeReading()
            case .log(let ending, let bytes):
                ended(ending, bytesToClient: bytes)
            case .giveUpHold:
                giveUpHold()
            case .handOver(let toUpstream, let toClient):
                handOver(toUpstream: toUpstream.map { machine.withBytes($0, input: input) { Array($0) } } ?? [],
                         toClient: toClient.map { machine.withBytes($0, input: input) { Array($0) } } ?? [])
            case .close:
                // With bytes still queued the machine says `closeNow` when they drain (or at `write`).
                // This round's writes go out first, so that what is queued is known.
                client.sendDeferredWritesNow()
                if !client.hasPendingOutput { closeSession() }
            case .closeNow:
                closeSession()
            }
        }
        if finished { return }
        let now = eventNow
        if upstreamFailed {
            perform(machine.upstreamEnded(reset: true, now: now), input: nil)
        } else if upstream?.hasPendingOutput == true && !upstreamBlockedTold {
            upstreamBlockedTold = true
            perform(machine.upstreamWriteBlocked(now: now), input: nil)
        }
        if finished { return }
        if clientFailed {
            perform(machine.clientEnded(reset: true, now: now), input: nil)
        } else if client.hasPendingOutput && !clientBlockedTold {
            clientBlockedTold = true
            perform(machine.clientWriteBlocked(now: now), input: nil)
        }
    }

    /// Writes the client's version of a response head, with the body bytes that came with it in
    /// the same system call. Returns false when the write failed.
    private func writeResponseHead(
        _ head: HTTPResponseHead, body: HTTPExchangeBytes?, keepAlive: Bool, upgrading: Bool, input: UnsafeRawBufferPointer?
    ) -> Bool {
        worker.headBuffer.removeAll(keepingCapacity: true)
        HTTPForwarding.writeClientResponse(
            head, requestVersion: routed?.head?.version ?? .http1_1, keepClientAlive: keepAlive, upgrading: upgrading, into: &worker.headBuffer)
        guard let body else { return client.write(worker.headBuffer) }
        return machine.withBytes(body, input: input) { bodyBytes in
            // A small body joins the head in its buffer: a plain send costs the kernel less than
            // sendmsg, which copies in a message header and an iovec array first.
            if bodyBytes.count <= Self.joinedBodyLimit {
                worker.headBuffer.append(contentsOf: bodyBytes)
                return client.write(worker.headBuffer)
            }
            return worker.headBuffer.withUnsafeBytes { client.write($0, bodyBytes) }
        }
    }

    /// The largest body copied behind its head rather than sent from where it was read.
    private static let joinedBodyLimit = 4096

    // MARK: - Routing a request

    /// Routes a head through the current snapshot and tells the machine the decision.
    ///
    /// - Parameter received: consumed: the head moves into the record once decided, uncopied.
    private func route(_ received: consuming HTTPRequestHead) {
        var head = received
        let now = eventNow
        let current: Routed
        if let routed, routed.rerouting {
            // A released hold: the same request again, from the head as it was received.
            current = routed
            current.rerouting = false
        } else {
            runtime.stats.requests.wrappingAdd(1, ordering: .relaxed)
            current = Routed(started: now)
            routed = current
            // Behind a trusted proxy the request speaks for the client its X-Forwarded-For names.
            if origin.trusted { current.forwardedClient = trustedProxies.client(forwardedFor: head.headers) }
            current.requestID = worker.requestIDs.id(for: head.headers)
        }
        let decision = decide(&head, now: now)
        current.head = consume head
        perform(machine.routed(decision, now: now), input: nil)
    }

    /// Where the request goes; `head` loses what a gate keeps from backends (its bypass header).
    private func decide(_ head: inout HTTPRequestHead, now: UInt64) -> HTTPExchangeStateMachine.RouteDecision {
        let current = self.current
        let snapshot = worker.snapshot(of: runtime.store)
        let snapshotVersion = worker.snapshotVersion
        guard let listener = snapshot.listenerBySlot[slot] else { return .answer(.fault(.listenerRemoved)) }
        // The profile comes from the same snapshot read as the endpoint it picks below.
        let route: ProfileRoute
        switch listener.decide(request: head) {
        case .noRoute:
            // Only a 404 spells the host out as text.
            return .answer(.fault(.noRoute(host: head.headers["Host"], listener: listener.name)))
        case .profile(let chosen, let match):
            route = chosen
            current.upstreamTarget = match.flatMap { $0.stripLength > 0 ? $0.upstreamTarget(head.target) : nil }
        }
        current.profile = route.name
        current.profileIndex = route.index
        current.reportsServerErrors = route.config.passive.status5xx > 0
        if let port = redirectHTTPSPort {
            current.location = HTTPSRedirect.location(host: head.headers.values(named: "Host").first, target: head.target, port: port)
            return .answer(.redirect)
        }
        if route.maintenance && !bypassesMaintenance(head, gate: route.config.gate) {
            current.gate = route.config.gate
            return .answer(.maintenance)
        }
        if let fields = route.config.gate.fieldsForBackend(head.headers) { head.headers = fields }
        switch route.readOnly.verdict(method: head.method) {
        case .refuse:
            return .answer(.fault(.readOnly(profile: route.name, method: head.method, retryAfter: route.config.gate.retryAfter)))
        case .pass, .hold:
            // A held write waits in the same queue as a paused request: `route.hold` says so below.
            break
        }
        let work = HoldConditions.Work(method: head.method)
        if route.hold.holds(work) {
            let outcome = UpstreamConnector.hold(
                work, in: snapshot.holdQueues[route.index], generation: snapshot.generation, maxHeld: route.config.maxHeld, runtime: runtime,
                worker: worker) { [self] in self.releasedFromHold() }
            switch outcome {
            case .held(let place):
                current.held = place
                return .hold(until: now + UInt64(route.config.holdTimeout.milliseconds))
            case .full(let reason):
                return .answer(.fault(.holdFull(profile: route.name, why: reason, maxHeld: route.config.maxHeld, retryAfter: route.config.gate.retryAfter)))
            case .routeAgain:
                return decide(&head, now: now)
            }
        }
        guard let target = route.pick() else {
            return .answer(.fault(.noEndpoint(profile: route.name, retryAfter: route.config.gate.retryAfter)))
        }
        current.target = target
        current.pickedAtVersion = snapshotVersion
        target.counters.requestStarted(method: head.method)
        return .forward
    }

    private func bypassesMaintenance(_ head: HTTPRequestHead, gate: GateConfig) -> Bool {
        // The peer's address is looked up again here rather than kept: only a maintenance page asks.
        let source = current.forwardedClient?.bytes ?? clientAddresses?.source.ip ?? []
        if gate.bypass.sources.contains(where: { $0.contains(source) }) { return true }
        if let header = gate.bypass.header, head.headers.values(named: header.name).contains(header.value) { return true }
        return false
    }

    private func releasedFromHold() {
        guard !finished, let routed, let held = routed.held else { return }
        routed.held = nil
        held.released(runtime: runtime)
        routed.rerouting = true
        perform(machine.holdReleased(now: tick()), input: nil)
    }

    private func stopHolding() {
        guard let routed, let held = routed.held else { return }
        routed.held = nil
        held.leave(runtime: runtime)
    }

    /// The hold timed out: says what holds the request now, which may have changed since it was
    /// parked (a resume under a write hold).
    private func giveUpHold() {
        let work = HoldConditions.Work(method: current.head?.method ?? "GET")
        let now = worker.snapshot(of: runtime.store).routing.profile(at: current.profileIndex, named: current.profile)?.hold.reason(for: work)
        let reason = now ?? current.held?.reason ?? .paused
        stopHolding()
        runtime.stats.holdTimeouts.wrappingAdd(1, ordering: .relaxed)
        perform(machine.holdTimedOut(.holdTimedOut(profile: current.profile, why: reason), now: eventNow), input: nil)
    }

    // MARK: - Upstream connection

    /// A pooled connection to the chosen endpoint (unless `fresh`), else a new connect.
    private func connectUpstream(fresh: Bool) {
        guard let target = routed?.target else { return }
        let now = eventNow
        if !fresh, let pooled = worker.pool.take(target, for: ObjectIdentifier(self)) {
            upstream = pooled
            pooled.handler = self
            pooled.defersWrites = true
            perform(machine.upstreamConnected(reused: true, now: now), input: nil)
            return
        }
        do {
            upstreamBlockedTold = false
            upstream = try UpstreamConnector.connect(to: target, worker: worker, handler: self, addresses: target.sendProxy == nil ? nil : clientAddresses)
            upstream?.defersWrites = true
        } catch {
            perform(machine.upstreamConnectFailed(.upstreamUnreachable(reason: "cannot connect to \(target.qualifiedName): \(error)"), now: now), input: nil)
        }
    }

    /// A final response head (or `101`) with this status is about to reach the client.
    ///
    /// Judged on the head, before any byte reaches the client: reported after the body, a success
    /// could reach the control queue behind the client's next request's failure and wipe its streak.
    private func responseStarted(status: Int) {
        let current = self.current
        current.status = status
        guard status != 101, let target = current.target else { return }
        if status >= 500 && current.reportsServerErrors {
            runtime.reportPassiveFailure(target: target, cause: "HTTP \(status) for \(current.head?.method ?? "-") \(current.head?.target ?? "-")", signal: .serverError)
        } else {
            runtime.reportPassiveSuccess(target: target, proof: .answered)
        }
    }

    /// Parks the upstream connection for the next request when it is clean and still wanted, else
    /// closes it. The target stays for the exchange's report (`ended`).
    private func releaseUpstream(reusable: Bool) {
        guard let upstream else { return }
        self.upstream = nil
        upstreamBlockedTold = false
        let current = self.current
        guard let target = current.target else {
            upstream.close()
            return
        }
        // A draining endpoint keeps no idle connections: it closes after its current response.
        if reusable, !runtime.shuttingDown.load(ordering: .relaxed), isStillCandidate(target, current) {
            worker.pool.park(upstream, target: target, for: ObjectIdentifier(self))
        } else {
            worker.pool.close(upstream, target: target)
        }
    }

    /// Whether `target` may still take new work: yes while no snapshot was published since it was
    /// picked (one atomic read, the common case), else as the current snapshot says.
    private func isStillCandidate(_ target: EndpointTarget, _ current: Routed) -> Bool {
        if runtime.store.version == current.pickedAtVersion { return true }
        return worker.snapshot(of: runtime.store).routing.profile(at: current.profileIndex, named: current.profile)?.isCandidate(target) ?? false
    }

    // MARK: - Endings

    /// Every way an exchange ends comes here once (the machine's `.log`): the endpoint's counters and
    /// passive health hear the outcome, the proxy's own answers are counted, the access log gets its line.
    private func ended(_ ending: HTTPExchangeEnding, bytesToClient: Int) {
        // A held request that ends (its client went away) leaves the hold queue first.
        stopHolding()
        switch ending {
        case .relayed(let status):
            report(status: status, fault: nil, relayed: true)
            logAccess(note: nil, bytes: bytesToClient)
        case .answered(let answer):
            let fault = self.fault(of: answer)
            switch answer {
            case .maintenance:
                current.status = 503
                runtime.stats.countProxyAnswer(.maintenance)
                logAccess(note: "maintenance", bytes: 0)
            case .redirect:
                current.status = 308
                runtime.stats.countProxyAnswer(.redirect)
                logAccess(note: "redirect_https", bytes: 0)
            case .fault, .upstream:
                guard let fault else { break }
                let answered = fault.answer
                let upstreamFault = current.target != nil && !answer.isClientFault
                // The upstream did not answer: the endpoint is charged with the proxy's status, the
                // client's own faults with none.
                report(status: upstreamFault ? answered.status : 0, fault: fault)
                current.status = answered.status
                runtime.stats.countProxyAnswer(fault.reason)
                logAccess(note: answered.message, bytes: 0)
                if upstreamFault {
                    Log.warning("\(answered.status) for \(current.head?.method ?? "-") \(current.head?.target ?? "-") from \(origin.address): \(answered.message)")
                }
            }
        case .upgraded:
            // From here the connection is a tunnel; it keeps the in-flight count until it closes.
            current.target?.counters.recordResponse(status: 101)
            logAccess(note: "upgraded", bytes: bytesToClient)
            return
        case .aborted(let reason):
            report(status: current.status, fault: nil)
            logAccess(note: "aborted: \(note(for: reason))", bytes: bytesToClient)
        }
        // The next head (or a refused one, logged as `-`) starts from nothing.
        routed = nil
    }

    /// The access log's note for an abort, naming the endpoint when it was the upstream's doing.
    private func note(for reason: HTTPExchangeAbort) -> String {
        let endpoint = current.target?.qualifiedName ?? "?"
        switch reason {
        case .upstreamClosedMidResponse: return "\(endpoint) closed mid-response"
        case .badChunkedResponse(let error): return "bad chunked response from \(endpoint): \(error.reason)"
        case .clientReset, .clientClosedMidRequest, .transferStalled, .forced, .faultAfterResponseStarted: return reason.note
        }
    }

    /// The endpoint's in-flight count and response record, its latency, and a connection failure
    /// for passive health.
    private func report(status: Int, fault: ProxyFault?, relayed: Bool = false) {
        let current = self.current
        guard let target = current.target else { return }
        if let fault, fault.isConnectionFailure {
            target.counters.connectErrors.wrappingAdd(1, ordering: .relaxed)
            runtime.reportPassiveFailure(target: target, cause: Self.reason(of: fault))
        }
        target.counters.requestEnded(method: current.head?.method ?? "GET")
        target.counters.recordResponse(status: status)
        if relayed { target.counters.latency.record(milliseconds: eventNow &- current.started) }
    }

    /// The fault behind a local answer, naming the endpoint for an upstream failure.
    private func fault(of answer: HTTPLocalAnswer) -> ProxyFault? {
        switch answer {
        case .fault(let fault): return fault
        case .upstream(let failure): return failure.fault(endpoint: current.target?.qualifiedName ?? "?")
        case .maintenance, .redirect: return nil
        }
    }

    /// The bytes of a local answer.
    private func response(for answer: HTTPLocalAnswer, keepAlive: Bool) -> [UInt8] {
        switch answer {
        case .maintenance:
            let gate = current.gate ?? GateConfig()
            return Self.maintenanceResponse(gate, keepAlive: keepAlive, withBody: current.head?.method != "HEAD")
        case .redirect:
            let location = current.location ?? "/"
            return HTTPErrorResponse.errorResponse(
                status: 308, message: "This site is served over HTTPS: \(location)", extraHeaders: [("Location", location)], close: !keepAlive)
        case .fault, .upstream:
            return Self.response(for: fault(of: answer)!.answer, close: !keepAlive)
        }
    }

    // MARK: - Upgrade

    /// `101`: the two sockets become a tunnel, which owns them (and the in-flight count) from here.
    private func handOver(toUpstream: [UInt8], toClient: [UInt8]) {
        guard let upstream, let target = current.target else {
            closeSession()
            return
        }
        finished = true
        self.upstream = nil
        current.target = nil
        worker.unregister(self)
        worker.pool.closeIdle(pinnedTo: ObjectIdentifier(self))
        // A tunnel splices past the channels' queues: nothing may wait for the round's end.
        client.defersWrites = false
        upstream.defersWrites = false
        let tunnel = TCPTunnel(upgradedClient: client, upstream: upstream, target: target, worker: worker, runtime: runtime, slot: slot, clientText: origin.address)
        tunnel.startUpgraded(pendingToUpstream: toUpstream, pendingToClient: toClient)
    }

    // MARK: - Closing

    private func closeSession() {
        guard !finished else { return }
        finished = true
        stopHolding()
        client.close()
        worker.pool.closeIdle(pinnedTo: ObjectIdentifier(self))
        if let upstream {
            self.upstream = nil
            if let target = routed?.target { worker.pool.close(upstream, target: target) } else { upstream.close() }
        }
        if let routed, let target = routed.target {
            // Ended without its `.log` (a forced close of an idle-looking exchange): still not in flight.
            target.counters.requestEnded(method: routed.head?.method ?? "GET")
            routed.target = nil
        }
        worker.unregister(self)
        runtime.connectionClosed(on: worker)
    }

    // MARK: - Access log

    private func logAccess(note: String?, bytes: Int, endpoint: String? = nil) {
        // Checked before the record's parts are gathered: with the log off, no string is made.
        guard worker.accessLog != nil else { return }
        let current = self.current
        logAccess(
            method: current.head?.method ?? "-", target: current.head?.target ?? "-", status: current.status,
            endpoint: endpoint ?? current.target?.name ?? "-", bytes: bytes, started: current.started, note: note, profile: current.profile,
            requestID: current.requestID?.value, client: current.forwardedClient?.text)
    }

    private func logAccess(
        method: String, target: String, status: Int, endpoint: String, bytes: Int, started: UInt64, note: String?, profile: String = "-",
        requestID: String? = nil, client: String? = nil
    ) {
        guard let log = worker.accessLog else { return }
        let elapsed = started == 0 ? 0 : monotonicMilliseconds() &- started
        log.append(worker: worker.index, AccessRecord(
            time: Timestamp.now(), client: client ?? origin.address, method: method, target: target, status: status, bytes: bytes, durationMs: elapsed,
            profile: profile, endpoint: endpoint, requestId: requestID, note: note))
    }

    // MARK: - Answers

    /// The operator-facing cause of an upstream fault, for passive health and the log.
    private static func reason(of fault: ProxyFault) -> String {
        switch fault {
        case .upstreamUnreachable(let reason), .upstreamInvalid(let reason), .upstreamTimedOut(let reason): return reason
        case .client, .clientTooSlow, .clientBodyTooSlow, .listenerRemoved, .noRoute, .noEndpoint, .readOnly, .holdFull, .holdTimedOut:
            return fault.answer.message
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
}
