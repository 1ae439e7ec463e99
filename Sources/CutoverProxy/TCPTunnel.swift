import CShims
import CutoverCore
import Dispatch
import Glibc

/// A TCP-mode connection (or an HTTP connection after `101 Switching Protocols`): bytes both ways
/// between the client and one endpoint, half-closes propagated, closed on error, idle timeout or at
/// the endpoint's drain deadline.
final class TCPTunnel: WorkerConnection, ChannelHandler, @unchecked Sendable {  // confined to worker.queue
    private let client: SocketChannel
    private var upstream: SocketChannel?
    private let worker: Worker
    private unowned let runtime: ProxyRuntime
    private let slot: Int
    private(set) var servingTarget: EndpointTarget?
    private(set) var deadline: UInt64 = 0
    private var phase = Phase.routing
    /// Client to upstream, and back; set when pumping starts.
    private var toUpstream: Flow?
    private var toClient: Flow?
    /// Where this connection waits while its profile is paused.
    private var held: UpstreamConnector.HeldPlace?
    private let clientText: String
    /// The client and the address it connected to, for a `send_proxy` endpoint (`nil` once upgraded:
    /// that upstream connection was opened, header and all, by the HTTP session).
    private var addresses: ProxyProtocol.Addresses?
    /// Bytes read from the client to find its TLS server name; they go upstream first.
    private var peeked: [UInt8] = []
    /// The server name the ClientHello asked for, once read (`.absent`/`.malformed` route to the default).
    private var serverName: TLSClientHello.ServerName?

    private enum Phase {
        case peeking
        case routing
        case holding
        case connecting
        case pumping
        case closed
    }

    /// - Parameter addresses: the client as a PROXY header named it, or the socket's own ends.
    init(fd: Int32, worker: Worker, runtime: ProxyRuntime, slot: Int, transport: ListenerTransport = .plain, addresses: ProxyProtocol.Addresses? = nil) {
        self.client = SocketChannel(fd: fd, worker: worker, tls: transport.tls.map { .server($0) })
        self.worker = worker
        self.runtime = runtime
        self.slot = slot
        self.addresses = addresses
        self.clientText = addresses?.source.text ?? Socket.peer(fd).text
    }

    /// Continues an upgraded HTTP connection as a tunnel; `target`'s in-flight count is already taken.
    init(upgradedClient: SocketChannel, upstream: SocketChannel, target: EndpointTarget, worker: Worker, runtime: ProxyRuntime, slot: Int, clientText: String) {
        self.client = upgradedClient
        self.upstream = upstream
        self.servingTarget = target
        self.worker = worker
        self.runtime = runtime
        self.slot = slot
        self.clientText = clientText
    }

    func start() {
        worker.register(self)
        runtime.stats.tunnels.wrappingAdd(1, ordering: .relaxed)
        route()
    }

    /// Starts pumping an adopted upgraded connection, after writing bytes that arrived early.
    func startUpgraded(pendingToUpstream: [UInt8], pendingToClient: [UInt8]) {
        worker.register(self)
        runtime.stats.tunnels.wrappingAdd(1, ordering: .relaxed)
        if !pendingToUpstream.isEmpty { upstream?.write(pendingToUpstream) }
        if !pendingToClient.isEmpty { client.write(pendingToClient) }
        startPumping()
    }

    private func route() {
        let snapshot = worker.snapshot(of: runtime.store)
        guard let listener = snapshot.listenerBySlot[slot] else {
            close(reason: "listener removed")
            return
        }
        let decision: RouteDecision
        if listener.needsServerName {
            switch serverName {
            case nil: return startPeeking()
            case .found(let name): decision = name.withUnsafeBytes { listener.decide(serverName: $0) }
            case .needMore, .absent, .malformed: decision = listener.decide(serverName: nil)
            }
        } else {
            decision = listener.fallbackDecision
        }
        guard case .profile(let route, _) = decision else {
            close(reason: "no route for this server name and no default profile on listener \(listener.name)")
            return
        }
        // A tunnel has no method to judge: the read-only gate never holds or refuses TCP connections.
        if route.hold.holds(.connection) {
            hold(route: route, generation: snapshot.generation, queue: snapshot.holdQueues[route.index])
            return
        }
        guard let target = route.pick() else {
            close(reason: "no eligible endpoint in profile \(route.name)")
            return
        }
        connect(to: target)
    }

    /// Reads the client's first bytes until its ClientHello is whole (or clearly not one), within
    /// the header-read timeout. Bytes are read, not peeked with MSG_PEEK: a partial hello left in
    /// the kernel would keep the read source firing with nothing new to parse.
    private func startPeeking() {
        phase = .peeking
        client.handler = self
        deadline = monotonicMilliseconds() + UInt64(worker.settings.timeouts.headerRead.milliseconds)
        client.resumeReading()
    }

    private func peekReadable() {
        if let name = client.terminatedServerName {
            // TLS ends here: the handshake already read the name, and the bytes are the application's.
            guard let name else { return }
            if client.tls?.isFailed == true { return close(reason: "TLS handshake failed") }
            serverName = name
            client.pauseReading()
            phase = .routing
            return route()
        }
        let n = client.read(into: worker.scratch)
        if n == -1 { return }
        if n <= 0 { return close(reason: "client closed before its TLS ClientHello") }
        peeked.append(contentsOf: UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n]))
        let name = peeked.withUnsafeBytes { TLSClientHello.serverName(in: $0) }
        // Records are at most 16 KiB, so a hello still incomplete past two of them is not one.
        if case .needMore = name, peeked.count <= 2 * (TLSClientHello.maxHelloBytes + 5) { return }
        serverName = name
        client.pauseReading()
        phase = .routing
        route()
    }

    private func hold(route: ProfileRoute, generation: UInt64, queue: HoldQueue) {
        let outcome = UpstreamConnector.hold(
            .connection, in: queue, generation: generation, maxHeld: route.config.maxHeld, runtime: runtime, worker: worker
        ) { [self] in self.releasedFromHold() }
        switch outcome {
        case .held(let place):
            held = place
            phase = .holding
            deadline = monotonicMilliseconds() + UInt64(route.config.holdTimeout.milliseconds)
        case .full:
            close(reason: "max_held reached in profile \(route.name)")
        case .routeAgain:
            self.route()
        }
    }

    private func releasedFromHold() {
        guard phase == .holding else { return }
        held?.released(runtime: runtime)
        held = nil
        phase = .routing
        route()
    }

    private func connect(to target: EndpointTarget) {
        servingTarget = target
        target.counters.inFlight.wrappingAdd(1, ordering: .relaxed)
        phase = .connecting
        deadline = monotonicMilliseconds() + UInt64(worker.settings.timeouts.connect.milliseconds)
        do {
            upstream = try UpstreamConnector.connect(to: target, worker: worker, handler: self, addresses: addresses)
        } catch {
            target.counters.connectErrors.wrappingAdd(1, ordering: .relaxed)
            close(reason: "connect to \(target.qualifiedName) failed: \(error)")
        }
    }

    func channelConnected(_ channel: SocketChannel, error: Int32) {
        guard phase == .connecting, let target = servingTarget else { return }
        guard error == 0 else {
            target.counters.connectErrors.wrappingAdd(1, ordering: .relaxed)
            runtime.reportPassiveFailure(target: target, cause: "connect \(String(cString: strerror(error)))")
            close(reason: "connect to \(target.qualifiedName): \(String(cString: strerror(error)))")
            return
        }
        runtime.reportPassiveSuccess(target: target, proof: .connected)
        startPumping()
    }

    private func startPumping() {
        guard let upstream else { return }
        if !peeked.isEmpty {
            // The ClientHello read for routing goes first; the flows queue behind it in order.
            upstream.write(peeked)
            peeked = []
        }
        phase = .pumping
        client.handler = self
        upstream.handler = self
        // Splice moves ciphertext: a TLS side has to be copied through the worker's buffer.
        let spliceable = !client.isTLS && !upstream.isTLS
        toUpstream = Flow(source: client, sink: upstream, spliceable: spliceable)
        toClient = Flow(source: upstream, sink: client, spliceable: spliceable)
        touch()
        client.resumeReading()
        upstream.resumeReading()
    }

    private func touch() {
        deadline = monotonicMilliseconds() + UInt64(worker.settings.timeouts.idle.milliseconds)
    }

    func channelReadable(_ channel: SocketChannel) {
        if phase == .peeking && channel === client { return peekReadable() }
        // Before pumping nothing else is read: early client bytes wait in the kernel until the tunnel is up.
        guard phase == .pumping, let toUpstream, let toClient else { return }
        pump(channel === client ? toUpstream : toClient)
    }

    func channelDrained(_ channel: SocketChannel) {
        guard phase == .pumping, let toUpstream, let toClient else { return }
        let flow = channel === client ? toClient : toUpstream
        guard flush(flow) else { return }
        if flow.ended {
            flow.sink.shutdownWrite()
            closeIfBothEnded()
        } else {
            flow.source.resumeReading()
            // Bytes may have been waiting since before the pause.
            pump(flow)
        }
    }

    /// Moves what `flow.source` has to `flow.sink` until the source is empty, ends, or the sink
    /// pushes back (then the source is paused until `channelDrained`). Bounded, so that one fast
    /// tunnel cannot keep the worker from its other connections.
    private func pump(_ flow: Flow) {
        for _ in 0..<16 where phase == .pumping {
            let n: Int
            let spliced = flow.splicing
            if spliced, let pipe = flow.pipe {
                // Socket to pipe to socket: the bytes never come up into user space.
                n = cshims_splice(flow.source.fd, pipe.writeFD, SplicePipe.capacity)
                if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    return close(reason: flow.source === client ? "client reset" : "upstream reset")
                }
                if n < 0 { return }
            } else {
                n = flow.source.read(into: worker.scratch)
                if n == -2 { return close(reason: flow.source === client ? "client reset" : "upstream reset") }
                if n == -1 { return }
            }
            if n == 0 {
                // Half-close: pass the end of stream on and keep the other direction open.
                flow.source.pauseReading()
                flow.ended = true
                if flow.hasPending { return }  // shut down once the queued bytes are out (channelDrained)
                flow.sink.shutdownWrite()
                return closeIfBothEnded()
            }
            touch()
            if let target = servingTarget {
                if flow.source === client {
                    target.counters.bytesOut.wrappingAdd(n, ordering: .relaxed)
                } else {
                    target.counters.bytesIn.wrappingAdd(n, ordering: .relaxed)
                }
            }
            if spliced, let pipe = flow.pipe {
                pipe.buffered += n
            } else if !flow.sink.write(UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])) {
                return close(reason: "peer reset")
            }
            if !flush(flow) {
                flow.source.pauseReading()
                return
            }
            flow.chooseMode(afterReading: n, spliced: spliced, bufferSize: worker.scratch.count)
            // A short read emptied the socket: epoll (level-triggered) reports the next bytes, so
            // asking again now would only cost a system call that answers EAGAIN, a third of all
            // splices under pgbench's small round trips. (A TLS source may hold decrypted bytes
            // that epoll cannot see; those are delivered apart, so it keeps the old loop.)
            if !flow.source.isTLS && n < (spliced ? SplicePipe.capacity : worker.scratch.count) { return }
        }
    }

    /// Empties the flow's pipe into its sink; false while bytes are still waiting for the sink.
    private func flush(_ flow: Flow) -> Bool {
        if flow.sink.hasPendingOutput { return false }  // its own queue drains first, in order
        guard let pipe = flow.pipe else { return true }
        while pipe.buffered > 0 {
            let n = cshims_splice(pipe.readFD, flow.sink.fd, pipe.buffered)
            if n > 0 {
                pipe.buffered -= n
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                flow.sink.awaitWritable()
                return false
            } else {
                close(reason: "peer reset")
                return false
            }
        }
        return true
    }

    private func closeIfBothEnded() {
        if toUpstream?.ended == true && toClient?.ended == true { close(reason: "both sides closed") }
    }

    func deadlinePassed(now: UInt64) {
        switch phase {
        case .holding:
            runtime.stats.holdTimeouts.wrappingAdd(1, ordering: .relaxed)
            close(reason: "hold timeout")
        case .connecting:
            close(reason: "connect timeout")
        case .pumping:
            close(reason: "idle timeout")
        case .peeking:
            close(reason: "no TLS ClientHello within the header read timeout")
        case .routing, .closed:
            break
        }
    }

    func forceClose(reason: String) {
        close(reason: reason)
    }

    private func close(reason: String) {
        guard phase != .closed else { return }
        if phase == .holding { held?.leave(runtime: runtime) }
        phase = .closed
        deadline = 0
        client.close()
        if let upstream, let target = servingTarget {
            upstream.close()
            target.counters.connections.wrappingSubtract(1, ordering: .relaxed)
        }
        if let target = servingTarget {
            target.counters.inFlight.wrappingSubtract(1, ordering: .relaxed)
        }
        upstream = nil
        toUpstream = nil
        toClient = nil
        worker.unregister(self)
        runtime.connectionClosed(on: worker)
        _ = reason
    }
}

/// One direction of a tunnel.
///
/// Small messages (a database's round trips) are copied through the worker's buffer: for them a
/// `recv` and a `send` cost the kernel less than two splices. A read that fills the buffer starts
/// splicing, so bulk transfers never come up into user space; a short splice goes back to copying.
private final class Flow {
    let source: SocketChannel
    let sink: SocketChannel
    /// Neither side speaks TLS, so the bytes can move through a pipe.
    let spliceable: Bool
    /// The kernel pipe bytes pass through while `splicing`: made when first needed, kept for the
    /// flow's life; never made when the process is out of descriptors (the flow keeps copying).
    private(set) var pipe: SplicePipe?
    /// Reads go into `pipe` instead of the worker's buffer.
    private(set) var splicing = false
    /// The source reached its end of stream.
    var ended = false

    /// A splice shorter than this goes back to copying.
    static let copyBelow = 16 * 1024

    init(source: SocketChannel, sink: SocketChannel, spliceable: Bool) {
        self.source = source
        self.sink = sink
        self.spliceable = spliceable
    }

    /// Picks how the next read moves bytes, after a read of `count` bytes that have all left for
    /// the sink (the pipe is empty and the sink queues nothing, so switching cannot reorder bytes).
    func chooseMode(afterReading count: Int, spliced: Bool, bufferSize: Int) {
        if spliced {
            if count < Self.copyBelow { splicing = false }
        } else if spliceable && count == bufferSize {
            if pipe == nil { pipe = SplicePipe() }
            splicing = pipe != nil
        }
    }

    /// Bytes read from the source that the sink has not taken yet.
    var hasPending: Bool { sink.hasPendingOutput || (pipe?.buffered ?? 0) > 0 }
}

/// A non-blocking pipe for `splice(2)`, closed with its flow.
private final class SplicePipe {
    let readFD: Int32
    let writeFD: Int32
    /// Bytes in the pipe not yet spliced out.
    var buffered = 0
    /// One splice moves at most this much: the default pipe capacity.
    static let capacity = 65_536

    init?() {
        var fds: [Int32] = [-1, -1]
        guard cshims_pipe_nonblocking(&fds) == 0 else { return nil }
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        Glibc.close(readFD)
        Glibc.close(writeFD)
    }
}
