import Synchronization

/// Process-wide counters for `show stats` and metrics; relaxed atomics, never a lock.
final class ProxyStats: Sendable {
    let acceptedConnections = Atomic<Int>(0)
    let openConnections = Atomic<Int>(0)
    /// Connections refused because `max_connections` was reached.
    let refusedConnections = Atomic<Int>(0)
    /// Idle client connections closed at `max_connections` to make room for a new one.
    let evictedConnections = Atomic<Int>(0)
    let requests = Atomic<Int>(0)
    /// Requests answered by the proxy itself: parse errors, gates, 502/503/504.
    let proxyAnswered = Atomic<Int>(0)
    let heldNow = Atomic<Int>(0)
    let heldTotal = Atomic<Int>(0)
    let holdTimeouts = Atomic<Int>(0)
    let switches = Atomic<Int>(0)
    let tunnels = Atomic<Int>(0)
    /// Handshakes and their failures, on TLS listeners and to TLS endpoints.
    let tls = TLSStats()
}
