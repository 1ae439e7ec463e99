import CutoverCore

/// The steps an HTTP session and a TCP tunnel share between "this profile" and "a socket to one
/// of its endpoints": parking in the profile's hold queue (counted in the runtime's stats while it
/// lasts) and starting a non-blocking connect. Routing itself differs (a head against routes, a
/// server name against a listener), so it stays with each caller.
///
/// - Important: call on the worker queue that owns the caller.
enum UpstreamConnector {
    /// A place in a hold queue: `leave` when the work gives up, `released` when the queue let it go.
    struct HeldPlace {
        let queue: HoldQueue
        let id: UInt64
        /// What held it when it was parked.
        let reason: HoldConditions.Reason

        /// The work ends while parked (timeout, client gone): out of the queue and the `held_now` count.
        func leave(runtime: ProxyRuntime) {
            if queue.cancel(id: id) { runtime.stats.heldNow.wrappingSubtract(1, ordering: .relaxed) }
        }

        /// The queue released it (its callback ran): out of the `held_now` count.
        func released(runtime: ProxyRuntime) {
            runtime.stats.heldNow.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    /// What `hold` decided.
    enum HoldOutcome {
        /// Parked; `release` runs on the worker queue when the hold lifts.
        case held(HeldPlace)
        /// `max_held` reached.
        case full(HoldConditions.Reason)
        /// The world changed since the snapshot was read: route again.
        case routeAgain
    }

    /// Parks `work` in `queue` (the profile's, from snapshot `generation`), counting it in the stats.
    static func hold(
        _ work: HoldConditions.Work, in queue: HoldQueue, generation: UInt64, maxHeld: Int, runtime: ProxyRuntime, worker: Worker,
        release: @escaping @Sendable () -> Void
    ) -> HoldOutcome {
        let queueOfWorker = worker.queue
        switch queue.hold(seenGeneration: generation, work: work, maxHeld: maxHeld, release: { queueOfWorker.async(execute: release) }) {
        case .held(let id, let reason):
            runtime.stats.heldNow.wrappingAdd(1, ordering: .relaxed)
            runtime.stats.heldTotal.wrappingAdd(1, ordering: .relaxed)
            return .held(HeldPlace(queue: queue, id: id, reason: reason))
        case .full(let reason):
            return .full(reason)
        case .routeAgain:
            return .routeAgain
        }
    }

    /// Starts a non-blocking connect to `target` whose events go to `handler` (`channelConnected`),
    /// counted in the endpoint's `connections`; a `send_proxy` endpoint is first told `addresses`.
    static func connect(to target: EndpointTarget, worker: Worker, handler: ChannelHandler, addresses: ProxyProtocol.Addresses?) throws -> SocketChannel {
        let fd = try Socket.startConnect(to: target.socketAddress)
        let channel = SocketChannel(upstreamFD: fd, to: target, worker: worker)
        if let version = target.sendProxy, let addresses { channel.preamble = ProxyProtocol.header(version, for: addresses) }
        channel.handler = handler
        target.counters.connections.wrappingAdd(1, ordering: .relaxed)
        channel.awaitConnect()
        return channel
    }
}
