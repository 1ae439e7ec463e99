import Foundation
import Glibc
import XCTest

/// How an HTTP exchange ends when the client stops early or uploads slowly (issue 20), against the
/// real binary: who is blamed, and how soon both sockets are released.
///
/// The rule (docs/hardening.md, "When a client stops"): a client that half-closes after a complete
/// request is still answered (HAProxy's default, `abortonclose` off); a reset, or an end of stream
/// before the request body is complete, releases the client and the upstream at once. A request
/// body is timed by `timeouts.client_body` (408, the client's fault); `upstream_response` starts
/// once the whole request has been sent.
final class ExchangeEndingTests: XCTestCase {
    private func startRig(_ dir: TemporaryDirectory, timeouts: String) throws -> (rig: ProxyRig, backend: Backend) {
        let blue = try Backend(name: "blue", directory: dir)
        do {
            return (try ProxyRig(directory: dir, endpoints: [.init(name: "blue", address: blue.address)], settings: [#""timeouts": { \#(timeouts) }"#]), blue)
        } catch {
            blue.stop()
            throw error
        }
    }

    /// Waits until the proxy holds no client connection and no upstream work; with `pooled`, an idle
    /// upstream connection kept for the next request is fine.
    private func assertReleased(
        _ rig: ProxyRig, within seconds: TimeInterval, _ what: String, pooled: Bool = false, file: StaticString = #filePath, line: UInt = #line
    ) {
        let started = Date()
        XCTAssertTrue(waitUntil(timeout: seconds) { (try? rig.stats()["connections_open"] as? Int) == 0 }, "\(what): the client connection stayed open", file: file, line: line)
        XCTAssertTrue(waitUntil(timeout: seconds) {
            let endpoint = try? rig.endpoint("blue")
            return endpoint?["in_flight"] as? Int == 0 && (pooled || endpoint?["connections"] as? Int == 0)
        }, "\(what): the upstream stayed busy: \(String(describing: try? rig.endpoint("blue")))", file: file, line: line)
        XCTAssertLessThan(Date().timeIntervalSince(started), seconds, file: file, line: line)
    }

    /// A `GET` announcing `Content-Length: 100000` whose client sends no body and closes (slowhttptest's
    /// slow-body probe giving up) is released at once, not after `upstream_response`.
    func testEndOfStreamBeforeTheBodyIsComplete_releasesBothSidesAtOnce() throws {
        let dir = try TemporaryDirectory()
        let (rig, blue) = try startRig(dir, timeouts: #""upstream_response": "30s", "client_body": "30s""#)
        defer {
            rig.stop()
            blue.stop()
        }
        let client = try rig.connect()
        client.send("GET /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nabc")
        XCTAssertTrue(waitUntil { (try? rig.endpoint("blue")["in_flight"] as? Int) == 1 }, "the request never reached blue")
        client.shutdownWrite()
        assertReleased(rig, within: 3, "a client that closed mid-body")
        XCTAssertFalse(client.readAll().contains(" 200 "), "a request whose body never came was answered as if complete")
    }

    /// The same end of stream while the request is held (a paused profile: the client is not read
    /// then) is noticed at once too, not at `hold_timeout`.
    func testEndOfStreamWhileHeld_releasesTheClientAtOnce() throws {
        let dir = try TemporaryDirectory()
        let (rig, blue) = try startRig(dir, timeouts: #""client_body": "30s""#)
        defer {
            rig.stop()
            blue.stop()
        }
        XCTAssertEqual(try rig.proxy.ctl("pause", "web").status, 0)
        let client = try rig.connect()
        client.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\nabc")
        XCTAssertTrue(waitUntil { (try? rig.stats()["held_now"] as? Int) == 1 }, "the request was never held: \(String(describing: try? rig.stats()))")
        client.shutdownWrite()
        assertReleased(rig, within: 3, "a held client that closed mid-body")
        XCTAssertEqual(try rig.stats()["held_now"] as? Int, 0)
    }

    /// A reset while the upstream has not answered a complete request releases both sides at once.
    func testResetBeforeTheAnswer_releasesBothSidesAtOnce() throws {
        let dir = try TemporaryDirectory()
        let (rig, blue) = try startRig(dir, timeouts: #""upstream_response": "30s""#)
        defer {
            rig.stop()
            blue.stop()
        }
        let client = try rig.connect()
        client.send("GET /slow?ms=20000 HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertTrue(waitUntil { (try? rig.endpoint("blue")["in_flight"] as? Int) == 1 }, "the request never reached blue")
        client.reset()
        assertReleased(rig, within: 3, "a client that reset")
    }

    /// A half-close after a complete request still gets its response, then the connection closes.
    func testHalfCloseAfterACompleteRequest_isAnsweredThenClosed() throws {
        let dir = try TemporaryDirectory()
        let (rig, blue) = try startRig(dir, timeouts: #""upstream_response": "30s""#)
        defer {
            rig.stop()
            blue.stop()
        }
        let client = try rig.connect()
        client.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        client.shutdownWrite()
        let answer = client.readAll()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 "), answer)
        XCTAssertTrue(answer.hasSuffix("hello"), answer)
        assertReleased(rig, within: 3, "after the answer to a half-closed client", pooled: true)
    }

    /// A body trickled for longer than `upstream_response`, each gap shorter than `client_body`, is
    /// relayed whole: the upstream's deadline starts only when the request has been sent.
    func testSlowBodyWithinClientBody_isNotTimedByTheUpstreamDeadline() throws {
        let dir = try TemporaryDirectory()
        let (rig, blue) = try startRig(dir, timeouts: #""upstream_response": "1s", "client_body": "5s""#)
        defer {
            rig.stop()
            blue.stop()
        }
        let client = try rig.connect()
        client.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\n")
        for byte in "slowly" {
            // The scenario itself: 6 × 400 ms is well over `upstream_response`.
            usleep(400_000)
            client.send(String(byte))
        }
        let answer = client.readResponse()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 "), "a slow upload was not relayed: \(answer)")
        XCTAssertTrue(answer.hasSuffix("slowly"), answer)
    }

    /// A body that stops arriving is answered `408` after `client_body`, and the endpoint is not
    /// charged: three such uploads (passive `failures` is 3) leave blue up and serving.
    func testStalledBody_is408AndNeverCountsAgainstTheEndpoint() throws {
        let dir = try TemporaryDirectory()
        let (rig, blue) = try startRig(dir, timeouts: #""upstream_response": "1s", "client_body": "1s""#)
        defer {
            rig.stop()
            blue.stop()
        }
        for attempt in 1...3 {
            let client = try rig.connect()
            client.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nab")
            let answer = client.readAll()
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 408 "), "attempt \(attempt): \(answer)")
        }
        XCTAssertNotEqual(try rig.endpoint("blue")["health"] as? String, "down", "stalled uploads marked the endpoint down")
        let normal = try curl(rig.url("/status?code=200"), timeout: 5)
        XCTAssertEqual(normal.code, 200)
    }
}
