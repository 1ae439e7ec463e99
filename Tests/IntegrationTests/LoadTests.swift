import Foundation
import XCTest

/// Small runs of the load scripts in `Tests/load/` (issue 20) against the built binary, so a
/// regression in what they check shows in CI within about 30 s: each script starts its own proxy
/// and backend, checks its invariants itself and prints `RESULT {json}`; these tests check the same
/// invariants again on the figures, never timings. The full-size runs and their figures are in
/// docs/hardening.md ("Load").
final class LoadTests: XCTestCase {
    /// Runs `Tests/load/NAME.sh` with `arguments`; the figures of its `RESULT` line.
    private func runScript(_ name: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let script = CutoverBinary.packageRoot.appendingPathComponent("Tests/load/\(name).sh").path
        let result = try IntegrationTests.run("/bin/bash", [script, "--binary", CutoverBinary.url.path] + arguments, timeout: 120)
        let output = result.stdout + result.stderr
        guard let resultLine = result.stdout.split(separator: "\n").last(where: { $0.hasPrefix("RESULT ") }),
              let figures = try JSONSerialization.jsonObject(with: Data(resultLine.dropFirst("RESULT ".count).utf8)) as? [String: Any] else {
            throw FixtureError("\(name).sh printed no RESULT line (exit \(result.status)): \(output.suffix(2000))")
        }
        XCTAssertEqual(result.status, 0, "\(name).sh found a broken invariant: \(output.suffix(2000))", file: file, line: line)
        XCTAssertEqual((figures["failed"] as? [String])?.isEmpty, true, "\(figures["failed"] ?? "-")", file: file, line: line)
        return figures
    }

    private func int(_ figures: [String: Any], _ key: String) -> Int { figures[key] as? Int ?? -1 }

    /// Defect 5 under load: 2,000 silent connections against `max_connections` 1,000; a normal
    /// client opening a new connection every 20 ms gets a 200 every time, at most the cap is open,
    /// and every connection over it was evicted (or refused), counted in `/metrics`.
    func testConnectionsOverTheCap_normalClientIsServed() throws {
        let figures = try runScript("connections-over-cap", ["--connections", "2000", "--cap", "1000", "--hold", "2"])
        XCTAssertGreaterThan(int(figures, "normal_requests"), 10, "\(figures)")
        XCTAssertEqual(int(figures, "normal_ok"), int(figures, "normal_requests"), "\(figures)")
        XCTAssertLessThanOrEqual(int(figures, "open_at_peak"), 1000, "\(figures)")
        XCTAssertGreaterThanOrEqual(int(figures, "evicted") + int(figures, "refused"), 1000, "\(figures)")
        XCTAssertEqual(figures["drained"] as? Bool, true, "\(figures)")
    }

    /// 5,000 connect-request-close cycles: every one answered 200, and after a 5 s settle the
    /// proxy's descriptors and resident memory are back to their post-warm-up start (±8, +8 MiB).
    func testConnectionChurn_leavesNoDescriptorsOrMemoryBehind() throws {
        let figures = try runScript("churn", ["--churns", "5000", "--warmup", "500"])
        XCTAssertEqual(int(figures, "ok"), 5000, "\(figures)")
        let start = figures["start"] as? [String: Int] ?? [:]
        let settled = figures["settled"] as? [String: Int] ?? [:]
        XCTAssertEqual(settled["connections_open"], 0, "\(figures)")
        XCTAssertLessThanOrEqual(settled["fds"] ?? .max, (start["fds"] ?? 0) + 8, "\(figures)")
        XCTAssertLessThanOrEqual(settled["rss_kib"] ?? .max, (start["rss_kib"] ?? 0) + 8 * 1024, "\(figures)")
    }

    /// 10 clients that ask for 20 MiB each and never read: the proxy's resident memory stays within
    /// 64 MiB of its start (buffering those bodies would take 200 MiB), each request stays in
    /// flight, a normal client is served meanwhile, and all of it is released after their resets.
    func testSlowReaders_keepMemoryBoundedAndANormalClientServed() throws {
        let figures = try runScript("slow-readers", ["--clients", "10", "--size-mib", "20", "--hold", "3"])
        XCTAssertGreaterThan(int(figures, "normal_requests"), 5, "\(figures)")
        XCTAssertEqual(int(figures, "normal_ok"), int(figures, "normal_requests"), "\(figures)")
        XCTAssertGreaterThanOrEqual(int(figures, "in_flight_during"), 10, "\(figures)")
        XCTAssertLessThanOrEqual(int(figures, "max_rss_kib"), int(figures, "baseline_rss_kib") + 64 * 1024, "\(figures)")
        XCTAssertEqual(figures["drained"] as? Bool, true, "\(figures)")
    }
}
