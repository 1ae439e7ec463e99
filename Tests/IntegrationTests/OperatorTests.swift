import Foundation
import Glibc
import XCTest

/// Issue 17: the defects a first real user hit, each proved on the real binary with real backends.
final class OperatorTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: Backend!
    private var green: Backend!
    private var socket: String { dir.path("admin.sock") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        green = try Backend(name: "green", directory: dir)
    }

    override func tearDown() {
        blue?.stop()
        green?.stop()
        dir = nil
    }

    private func config(profileExtra: String = "", rootExtra: String = "") -> String {
        blueGreenConfig(blue: blue, green: green, socket: socket, profileExtra: profileExtra, rootExtra: rootExtra)
    }

    /// Defect 2: `drain_timeout` bounds tunnels, not HTTP requests. A request still in flight on the
    /// old endpoint at the drain deadline gets its whole answer.
    func testDrainDeadline_letsAnInFlightHTTPRequestFinish() throws {
        let proxy = try Proxy(config: config(profileExtra: #", "drain_timeout": "500ms""#), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 1, path: "/slow?ms=2000")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false })
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertTrue(waitUntil(timeout: 10) { slow.results.count + slow.failures.count == 1 }, "the slow request did not end")
        slow.stop()
        XCTAssertEqual(slow.failures, [], "the in-flight request was cut")
        XCTAssertEqual(slow.results.map(\.status), [200])
        XCTAssertEqual(slow.results.map(\.backend), ["blue"])
        let events = try proxy.ctl("show events").stdout
        XCTAssertTrue(events.contains("web/blue offline (drain deadline after"), events)
        XCTAssertTrue(events.contains("0 force-closed"), events)
    }
}
