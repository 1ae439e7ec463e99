import CutoverCore
import Synchronization

/// What the hot path reads for each request: the routing snapshot and each listener's routing.
final class ProxySnapshot: Sendable {
    let routing: RoutingSnapshot
    /// Routes of each listener slot (slots are stable across reloads; removed listeners leave `nil`).
    let listenerBySlot: [ListenerRouting?]
    /// Hold queue of each profile, by `ProfileRoute.index`.
    let holdQueues: [HoldQueue]

    init(routing: RoutingSnapshot, listenerBySlot: [ListenerRouting?], holdQueues: [HoldQueue]) {
        self.routing = routing
        self.listenerBySlot = listenerBySlot
        self.holdQueues = holdQueues
    }

    var generation: UInt64 { routing.generation }
}

/// Holds the current snapshot; publishing swaps it whole, so readers see one generation or the next.
final class SnapshotStore: Sendable {
    private let current: Mutex<ProxySnapshot>

    init(_ initial: ProxySnapshot) {
        current = Mutex(initial)
    }

    /// The current snapshot (the lock is held only to copy the reference).
    func load() -> ProxySnapshot {
        current.withLock { $0 }
    }

    func publish(_ snapshot: ProxySnapshot) {
        current.withLock { $0 = snapshot }
    }
}
