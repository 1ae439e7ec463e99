import Foundation
import Glibc
import XCTest

/// Backends that break mid-answer (issue 20, "backend faults"), against the real binary: the
/// sample backend's `/fault/…` routes behind `cutover proxy`, seen with curl and raw sockets. A cut
/// body must reach the client broken, never complete-looking; garbage is a 502, silence a 504, a
/// refused connect a 502 that passive health counts.
final class BackendFaultTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: Backend!
    private var proxy: Proxy!

    /// curl's exit status for a body shorter than its framing promised (CURLE_PARTIAL_FILE).
    private static let curlPartialFile: Int32 = 18

    override func tearDown() {
        proxy?.stop()
        blue?.stop()
        dir = nil
    }

    /// Starts blue and a proxy in front of it (or of `address`, when given), with an access log file
    /// and `upstream_response` of 1 s; the TCP probe runs every 30 s, so what the tests see of
    /// health comes from live traffic.
    private func start(address: String? = nil) throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        let socket = dir.path("admin.sock")
        proxy = try Proxy(config: """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "probe": { "type": "tcp", "interval": "30s" },
                             "endpoints": [{ "name": "blue", "address": "\(address ?? blue.address)" }] }],
              "timeouts": { "upstream_response": "1s" },
              "admin": { "socket": "\(socket)" }, "access_log": "\(dir.path("access.log"))", "workers": 1 }
            """, directory: dir, socketPath: socket)
    }

    /// The raw bytes of one request's answer, read until the proxy closes (or 10 s pass).
    private func rawAnswer(_ path: String) throws -> (head: String, body: [UInt8], closed: Bool) {
        let connection = try RawConnection(port: proxy.port())
        connection.send("GET \(path) HTTP/1.1\r\nHost: test\r\n\r\n")
        let (_, bytes, closed) = ResponseReader(connection).readToEnd()
        let separator = Array("\r\n\r\n".utf8)
        guard let headEnd = bytes.firstRange(of: separator) else { return (String(decoding: bytes, as: UTF8.self), [], closed) }
        return (String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self), Array(bytes[headEnd.upperBound...]), closed)
    }

    /// The access log's lines, once one contains `text` (lines are handed on every 100 ms).
    private func accessLine(containing text: String) -> String? {
        var found: String?
        waitUntil(timeout: 5) {
            let log = (try? String(contentsOfFile: dir.path("access.log"), encoding: .utf8)) ?? ""
            found = log.split(separator: "\n").first { $0.contains(text) }.map(String.init)
            return found != nil
        }
        return found
    }

    private func endpoint() throws -> [String: Any] {
        let shown = try proxy.ctl("show", "endpoints", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any]
        return (object?["endpoints"] as? [[String: Any]])?.first ?? [:]
    }

    /// A backend that promises 100,000 bytes and closes after 1,000: the client gets the head and
    /// the 1,000 bytes, then a closed connection, so it can tell the body is short; the proxy never
    /// pads it, answers a second response after it, or keeps the connection alive.
    func testBodyCutMidway_reachesTheClientBroken() throws {
        try start()
        let (head, body, closed) = try rawAnswer("/fault/cut-mid-body")
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), head)
        XCTAssertTrue(head.lowercased().contains("content-length: 100000"), head)
        XCTAssertTrue(closed, "the connection stayed open after the cut")
        XCTAssertEqual(body.count, 1000, "the client got \(body.count) bytes of the body, not what the backend sent")

        let fetched = try curl(proxy.url("/fault/cut-mid-body"))
        XCTAssertEqual(fetched.exitStatus, Self.curlPartialFile, "curl saw a complete-looking response: \(fetched.headers)")
        XCTAssertNotNil(accessLine(containing: "\"aborted: web/blue closed mid-response\""))
    }

    /// A chunked body cut inside a chunk: the client never sees a terminating `0` chunk.
    func testChunkedBodyCutMidChunk_hasNoLastChunk() throws {
        try start()
        let connection = try RawConnection(port: proxy.port())
        connection.send("GET /fault/cut-mid-chunk HTTP/1.1\r\nHost: test\r\n\r\n")
        let (_, bytes, closed) = ResponseReader(connection).readToEnd()
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"), text.prefix(200).debugDescription)
        XCTAssertTrue(text.lowercased().contains("transfer-encoding: chunked"), text.prefix(300).debugDescription)
        XCTAssertTrue(closed, "the connection stayed open after the cut")
        let bodyStart = (bytes.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound)!
        XCTAssertNil(ResponseReader.dechunk(bytes, from: bodyStart), "the client got a complete chunked body: \(text.suffix(40).debugDescription)")
        XCTAssertFalse(text.hasSuffix("0\r\n\r\n"), "a terminating chunk was made up")
        XCTAssertTrue(text.contains("1000\r\n"), "the half chunk's size line was not relayed")

        let fetched = try curl(proxy.url("/fault/cut-mid-chunk"))
        XCTAssertEqual(fetched.exitStatus, Self.curlPartialFile, "curl saw a complete-looking response: \(fetched.headers)")
    }

    /// A status line that is not HTTP is a `502` naming the endpoint, at once: the backend keeps its
    /// connection open after the garbage, so a proxy that did not see the parse fail would answer
    /// `504` at the 1 s `upstream_response` instead.
    func testMalformedStatusLine_is502() throws {
        try start()
        let answer = try curl(proxy.url("/fault/malformed"))
        XCTAssertEqual(answer.code, 502, answer.body)
        XCTAssertTrue(answer.body.contains("invalid response from web/blue"), answer.body)
        // The connection to blue is not reused: the next request gets a clean answer.
        let next = try curl(proxy.url("/"))
        XCTAssertEqual(next.code, 200)
        XCTAssertEqual(next.body, "blue\n")
    }

    /// A backend that accepts the request and never answers is a `504` once `upstream_response`
    /// (1 s) passes, and its connection is closed (the backend's thread sees the close).
    func testHangingBackend_is504AfterUpstreamResponse() throws {
        try start()
        let started = Date()
        let answer = try curl(proxy.url("/fault/hang"))
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(answer.code, 504, answer.body)
        XCTAssertTrue(answer.body.contains("sent no response within 1s"), answer.body)
        XCTAssertGreaterThanOrEqual(elapsed, 0.9, "504 before the timeout")
        XCTAssertTrue(waitUntil { (try? self.endpoint()["connections"] as? Int) == 0 }, "the hung upstream connection stayed open: \(String(describing: try? endpoint()))")
    }

    /// Connects refused (a port nothing listens on) are `502`s, and after `passive.failures` (3) of
    /// them the endpoint is down, with the cause in `show endpoints`; then the profile answers `503`
    /// without trying it.
    func testRefusedConnects_are502AndPassiveHealthMarksTheEndpointDown() throws {
        try start(address: "127.0.0.1:\(TestUpstream.closedPort())")
        for attempt in 1...3 {
            let answer = try curl(proxy.url("/"))
            XCTAssertEqual(answer.code, 502, "attempt \(attempt): \(answer.body)")
        }
        let shown = try endpoint()
        XCTAssertEqual(shown["health"] as? String, "down", "\(shown)")
        let cause = (shown["last_change"] as? [String: Any])?["cause"] as? String ?? ""
        XCTAssertTrue(cause.contains("passive: 3 consecutive failures"), "\(shown)")
        let refused = try curl(proxy.url("/"))
        XCTAssertEqual(refused.code, 503, refused.body)
        XCTAssertTrue(refused.body.contains("no endpoint of profile web"), refused.body)
    }

    /// A backend that sends the head and part of the body, then resets: the client gets the head,
    /// at most what was sent, then a closed connection; the access log says the exchange was aborted.
    func testResetAfterHead_reachesTheClientBrokenAndIsLogged() throws {
        try start()
        let (head, body, closed) = try rawAnswer("/fault/reset-after-head")
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200"), head)
        XCTAssertTrue(closed, "the connection stayed open after the reset")
        XCTAssertLessThanOrEqual(body.count, 1000, "more body than the backend sent")
        XCTAssertNotNil(accessLine(containing: "\"GET /fault/reset-after-head\" 200 web/blue"))
        XCTAssertNotNil(accessLine(containing: "aborted: web/blue closed mid-response"), (try? String(contentsOfFile: dir.path("access.log"), encoding: .utf8)) ?? "")

        let fetched = try curl(proxy.url("/fault/reset-after-head"))
        XCTAssertEqual(fetched.exitStatus, Self.curlPartialFile, "curl saw a complete-looking response: \(fetched.headers)")
    }
}
