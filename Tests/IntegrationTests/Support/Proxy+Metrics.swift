import Foundation

/// Reading the proxy's own counters, for tests that wait for something to have happened inside
/// it (probes run, bytes read) instead of sleeping. Needs `"admin": { "http": "127.0.0.1:0" }`.
extension Proxy {
    /// The admin HTTP listener's port from the "admin http on http://HOST:PORT/" log line; nil until
    /// the proxy logged it (or when `admin.http` is not set).
    var adminHTTPPort: UInt16? {
        let log = child.stderr
        guard let range = log.range(of: "admin http on http://") else { return nil }
        let address = log[range.upperBound...].prefix { $0 != "/" }
        return address.split(separator: ":").last.flatMap { UInt16($0) }
    }

    /// `GET /metrics`, parsed by the strict exposition reader.
    func metrics() throws -> PrometheusExposition {
        var port: UInt16?
        waitUntil(timeout: 5) {
            port = adminHTTPPort
            return port != nil
        }
        guard let port else { throw FixtureError("no admin http line in the proxy log: \(child.stderr)") }
        let answer = try curl("http://127.0.0.1:\(port)/metrics")
        guard answer.code == 200 else { throw FixtureError("GET /metrics answered \(answer.code): \(answer.body)") }
        return try PrometheusExposition(answer.body)
    }

    /// One sample of `/metrics` (e.g. `cutover_probes_total` with `result: success`), or nil when
    /// the proxy does not export exactly one such sample.
    func metric(_ name: String, _ labels: [String: String]) throws -> Double? {
        try metrics().value(name, labels)
    }
}
