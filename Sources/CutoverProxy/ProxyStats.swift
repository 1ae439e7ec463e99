import CutoverCore
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
    /// Requests answered by the proxy itself: parse errors, gates, 502/503/504; and by reason.
    let proxyAnswered = Atomic<Int>(0)
    let proxyAnswersByReason = ProxyAnswerReason.allCases.map { _ in Counter() }
    let heldNow = Atomic<Int>(0)
    let heldTotal = Atomic<Int>(0)
    let holdTimeouts = Atomic<Int>(0)
    let switches = Atomic<Int>(0)
    let tunnels = Atomic<Int>(0)
    /// Connections to a `proxy_protocol` listener closed for a missing, malformed or late PROXY header.
    let proxyProtocolErrors = Atomic<Int>(0)
    /// Handshakes and their failures, on TLS listeners and to TLS endpoints.
    let tls = TLSStats()

    /// One relaxed counter (an `Atomic` cannot sit in an array by itself).
    final class Counter: Sendable {
        let value = Atomic<Int>(0)
    }

    /// Counts a request the proxy answered itself, in the total and under its reason.
    func countProxyAnswer(_ reason: ProxyAnswerReason) {
        proxyAnswered.wrappingAdd(1, ordering: .relaxed)
        if let index = ProxyAnswerReason.allCases.firstIndex(of: reason) {
            proxyAnswersByReason[index].value.wrappingAdd(1, ordering: .relaxed)
        }
    }
}
