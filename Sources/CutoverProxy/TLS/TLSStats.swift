import CutoverCore
import Synchronization

/// TLS counters for `show stats` and `/metrics`: handshakes done, by protocol version, and
/// failures by reason. Relaxed atomics on the success path; failures take a lock, they are rare.
final class TLSStats: Sendable {
    /// Client handshakes completed on TLS listeners.
    let handshakes = Atomic<Int>(0)
    let handshakesTLS12 = Atomic<Int>(0)
    let handshakesTLS13 = Atomic<Int>(0)
    /// Client handshakes that failed, whatever the reason.
    let handshakeFailures = Atomic<Int>(0)
    /// Of those, clients that spoke plain HTTP to a TLS port.
    let plainHTTP = Atomic<Int>(0)
    /// Handshakes to TLS endpoints that failed (verification, protocol, timeout).
    let upstreamHandshakeFailures = Atomic<Int>(0)
    private let failureReasons = Mutex<[String: Int]>([:])

    /// Counts a completed listener handshake under its version (`TLSv1.3`, as OpenSSL names it).
    func handshakeCompleted(version: String) {
        handshakes.wrappingAdd(1, ordering: .relaxed)
        if version == "TLSv1.3" {
            handshakesTLS13.wrappingAdd(1, ordering: .relaxed)
        } else {
            handshakesTLS12.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Counts a failed listener handshake under a short snake_case reason (`wrong_version_number`).
    func handshakeFailed(reason: String) {
        handshakeFailures.wrappingAdd(1, ordering: .relaxed)
        failureReasons.withLock { $0[reason, default: 0] += 1 }
    }

    /// Failures by reason, sorted by reason (for stable metrics output).
    var failuresByReason: [(reason: String, count: Int)] {
        failureReasons.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

extension ProxyRuntime {
    /// The TLS families of `/metrics`: handshakes by version, failures by reason.
    func writeTLSMetrics(_ m: inout PrometheusText) {
        let tls = stats.tls
        m.family("cutover_tls_handshakes_total", .counter, help: "TLS handshakes completed on TLS listeners, by protocol version.")
        m.sample("cutover_tls_handshakes_total", [("version", "1.2")], tls.handshakesTLS12.load(ordering: .relaxed))
        m.sample("cutover_tls_handshakes_total", [("version", "1.3")], tls.handshakesTLS13.load(ordering: .relaxed))
        m.family("cutover_tls_handshake_failures_total", .counter, help: "TLS handshakes on listeners that failed, by reason (OpenSSL's, plain_http, handshake_timeout).")
        for (reason, count) in tls.failuresByReason {
            m.sample("cutover_tls_handshake_failures_total", [("reason", reason)], count)
        }
        m.family("cutover_tls_upstream_handshake_failures_total", .counter, help: "TLS handshakes to endpoints that failed (verification, protocol, timeout).")
        m.sample("cutover_tls_upstream_handshake_failures_total", [], tls.upstreamHandshakeFailures.load(ordering: .relaxed))
    }
}
