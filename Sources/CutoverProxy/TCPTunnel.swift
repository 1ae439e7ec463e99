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
    private var clientEnded = false
    private var upstreamEnded = false
    private var heldID: UInt64?
    private let clientText: String

    private enum Phase {
        case routing
        case holding
        case connecting
        case pumping
        case closed
    }

    init(fd: Int32, worker: Worker, runtime: ProxyRuntime, slot: Int) {
        self.client = SocketChannel(fd: fd, worker: worker)
        self.worker = worker
        self.runtime = runtime
        self.slot = slot
        self.clientText = Socket.peer(fd).text
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
        let snapshot = runtime.store.load()
        guard let route = snapshot.routeBySlot[slot] else {
            close(reason: "listener removed")
            return
        }
        if route.paused || (route.candidates.isEmpty && route.config.holdWhenUnavailable) {
            hold(route: route, generation: snapshot.generation, queue: snapshot.holdQueues[route.index])
            return
        }
        guard let target = route.pick() else {
            close(reason: "no eligible endpoint in profile \(route.name)")
            return
        }
        connect(to: target)
    }

    private func hold(route: ProfileRoute, generation: UInt64, queue: HoldQueue) {
        let outcome = queue.hold(seenGeneration: generation, maxHeld: route.config.maxHeld) { [self] in
            self.worker.queue.async { self.releasedFromHold() }
        }
        switch outcome {
        case .held(let id):
            heldID = id
            phase = .holding
            runtime.stats.heldNow.wrappingAdd(1, ordering: .relaxed)
            runtime.stats.heldTotal.wrappingAdd(1, ordering: .relaxed)
            deadline = monotonicMilliseconds() + UInt64(route.config.holdTimeout.milliseconds)
        case .full:
            close(reason: "max_held reached in profile \(route.name)")
        case .routeAgain:
            self.route()
        }
    }

    private func releasedFromHold() {
        guard phase == .holding else { return }
        heldID = nil
        runtime.stats.heldNow.wrappingSubtract(1, ordering: .relaxed)
        phase = .routing
        route()
    }

    private func connect(to target: EndpointTarget) {
        servingTarget = target
        target.counters.inFlight.wrappingAdd(1, ordering: .relaxed)
        phase = .connecting
        deadline = monotonicMilliseconds() + UInt64(worker.settings.timeouts.connect.milliseconds)
        do {
            let fd = try Socket.startConnect(to: target.socketAddress)
            let channel = SocketChannel(fd: fd, worker: worker)
            channel.handler = self
            upstream = channel
            target.counters.connections.wrappingAdd(1, ordering: .relaxed)
            channel.awaitConnect()
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
        runtime.reportPassiveSuccess(target: target)
        startPumping()
    }

    private func startPumping() {
        phase = .pumping
        client.handler = self
        upstream?.handler = self
        touch()
        client.resumeReading()
        upstream?.resumeReading()
    }

    private func touch() {
        deadline = monotonicMilliseconds() + UInt64(worker.settings.timeouts.idle.milliseconds)
    }

    func channelReadable(_ channel: SocketChannel) {
        guard phase == .pumping, let upstream else {
            // Before pumping, client readability only matters as a hang-up.
            if phase == .holding || phase == .connecting {
                let n = channel.read(into: worker.scratch)
                if n == 0 || n == -2 { close(reason: "client left") }
                // Early client bytes stay unread in the kernel: pause until the tunnel is ready.
                if n > 0 { close(reason: "client sent data before the tunnel was ready") }
            }
            return
        }
        let other = channel === client ? upstream : client
        // Read until the socket is empty, ends, or the other side pushes back, not once per event:
        // once a socket is shut down both ways (our half-close passed on, then the peer's), Dispatch
        // on Linux was seen to deliver one last read event only, stranding the rest of the bytes and
        // the end of stream in the kernel until the idle timeout.
        while phase == .pumping {
            let n = channel.read(into: worker.scratch)
            if n > 0 {
                touch()
                if let target = servingTarget {
                    if channel === client {
                        target.counters.bytesOut.wrappingAdd(n, ordering: .relaxed)
                    } else {
                        target.counters.bytesIn.wrappingAdd(n, ordering: .relaxed)
                    }
                }
                guard other.write(UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])) else {
                    close(reason: "peer reset")
                    return
                }
                if other.hasPendingOutput {
                    channel.pauseReading()
                    return
                }
            } else if n == 0 {
                // Half-close: pass the end of stream on and keep the other direction open.
                channel.pauseReading()
                if channel === client { clientEnded = true } else { upstreamEnded = true }
                if other.hasPendingOutput {
                    return  // shut down once the queued bytes are out (see channelDrained)
                }
                other.shutdownWrite()
                if clientEnded && upstreamEnded { close(reason: "both sides closed") }
                return
            } else if n == -2 {
                close(reason: channel === client ? "client reset" : "upstream reset")
                return
            } else {
                return  // nothing more for now
            }
        }
    }

    func channelDrained(_ channel: SocketChannel) {
        guard phase == .pumping, let upstream else { return }
        let other = channel === client ? upstream : client
        let otherEnded = channel === client ? upstreamEnded : clientEnded
        if otherEnded {
            channel.shutdownWrite()
            if clientEnded && upstreamEnded { close(reason: "both sides closed") }
        } else {
            other.resumeReading()
            // Bytes may have been waiting since before the pause, with no new event to announce them.
            channelReadable(other)
        }
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
        case .routing, .closed:
            break
        }
    }

    func forceClose(reason: String) {
        close(reason: reason)
    }

    private func close(reason: String) {
        guard phase != .closed else { return }
        if phase == .holding, let id = heldID {
            _ = snapshotHoldCancel(id)
            runtime.stats.heldNow.wrappingSubtract(1, ordering: .relaxed)
        }
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
        worker.unregister(self)
        runtime.connectionClosed()
        _ = reason
    }

    private func snapshotHoldCancel(_ id: UInt64) -> Bool {
        let snapshot = runtime.store.load()
        guard let route = snapshot.routeBySlot[slot] else { return false }
        return snapshot.holdQueues[route.index].cancel(id: id)
    }
}
