import Foundation
import Glibc
import Synchronization
import XCTest

/// `readonly PROFILE hold` with the real binary: reads pass, writes wait in the hold queue (bounded as
/// a pause is) and land, in arrival order, on the endpoint live when the gate opens.
final class ReadOnlyHoldTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: RecordingBackend!
    private var green: RecordingBackend!
    private var socket: String { dir.path("admin.sock") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try RecordingBackend(name: "blue")
        green = try RecordingBackend(name: "green")
    }

    override func tearDown() {
        blue?.stop()
        green?.stop()
        dir = nil
    }

    /// Blue online, green offline; one worker; no probes (so a switch to green needs no probe);
    /// `profileExtra` and `rootExtra` are JSON members appended to the profile and to the root.
    private func startProxy(profileExtra: String = "", rootExtra: String = "", mode: String = "http") throws -> Proxy {
        try Proxy(config: """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "mode": "\(mode)", "profile": "web" }],
              "profiles": [{ "name": "web", "endpoints": [
                  { "name": "blue", "address": "\(blue.address)" },
                  { "name": "green", "address": "\(green.address)", "state": "offline" } ]\(profileExtra) }],
              "admin": { "socket": "\(socket)", "http": "127.0.0.1:0" }, "access_log": "off", "workers": 1\(rootExtra) }
            """, directory: dir, socketPath: socket)
    }

    /// GET on the proxy's admin HTTP listener.
    private func admin(_ proxy: Proxy, _ path: String) throws -> CurlResult {
        var port: UInt16 = 0
        waitUntil {
            port = AdminTests.adminHTTPPort(in: proxy.child.stderr) ?? 0
            return port != 0
        }
        return try curl("http://127.0.0.1:\(port)\(path)")
    }

    private func ok(_ proxy: Proxy, _ words: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try proxy.ctl(words)
        XCTAssertEqual(result.status, 0, "\(words): \(result.stdout)\(result.stderr)", file: file, line: line)
        return result.stdout
    }

    /// `show profiles --json` for profile web.
    private func profile(_ proxy: Proxy) throws -> [String: Any] {
        let result = try proxy.ctl("show", "profiles", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (object?["profiles"] as? [[String: Any]])?.first ?? [:]
    }

    private func waitHeld(_ proxy: Proxy, _ count: Int, file: StaticString = #filePath, line: UInt = #line) {
        let reached = waitUntil { ((try? profile(proxy))?["held"] as? Int) == count }
        XCTAssertTrue(reached, "profile web never held \(count): \((try? profile(proxy)) ?? [:])", file: file, line: line)
    }

    /// Sends a POST on a connection of its own and returns the connection, for its answer later.
    private func sendPost(_ proxy: Proxy, _ body: String) throws -> RawConnection {
        let connection = try RawConnection(port: proxy.port())
        connection.send("POST /write HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        return connection
    }

    // MARK: - Scenarios

    /// During hold a GET is answered at once and two POSTs wait without reaching any endpoint; after
    /// `switch web green`, `readonly web off` sends both to green (not blue), in arrival order.
    func testHold_readsPass_writesWaitThenLandInOrderOnTheEndpointLiveAtOff() throws {
        let proxy = try startProxy()
        defer { proxy.stop() }
        XCTAssertTrue(try ok(proxy, "readonly web hold").hasPrefix("OK readonly web hold"))
        let first = try sendPost(proxy, "first")
        waitHeld(proxy, 1)
        let second = try sendPost(proxy, "second")
        waitHeld(proxy, 2)

        let started = Date()
        let read = try curl(proxy.url("/page"))
        XCTAssertEqual(read.code, 200)
        XCTAssertEqual(read.body, "blue\n")
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "a read waited behind the held writes")
        XCTAssertEqual(try curl(proxy.url("/page"), ["-I"]).code, 200)
        XCTAssertEqual(blue.requests, ["GET /page", "HEAD /page"], "only the reads may reach blue")
        XCTAssertEqual(green.requests, [])

        // Visible while held: the text table, the JSON (readonly keeps its Bool meaning), the events.
        let table = try ok(proxy, "show profiles")
        XCTAssertTrue(table.contains("readonly-hold"), table)
        let view = try profile(proxy)
        XCTAssertEqual(view["readonly_gate"] as? String, "hold")
        XCTAssertEqual(view["readonly"] as? Bool, true)
        XCTAssertEqual(view["held"] as? Int, 2)
        let metrics = try PrometheusExposition(try admin(proxy, "/metrics").body)
        XCTAssertEqual(metrics.value("cutover_profile_readonly_hold", ["profile": "web"]), 1)
        XCTAssertEqual(metrics.value("cutover_profile_readonly", ["profile": "web"]), 1)
        XCTAssertEqual(metrics.value("cutover_held_requests", ["profile": "web"]), 2)
        let status = try admin(proxy, "/status").body
        XCTAssertTrue(status.contains("<span class=\"chip gate\">readonly-hold</span>"), status)
        let health = try admin(proxy, "/health/web")
        XCTAssertEqual(health.code, 200, "held writes are not failed writes")
        XCTAssertTrue(health.body.contains("(readonly-hold)"), health.body)

        XCTAssertTrue(try ok(proxy, "switch web green").hasPrefix("OK switched web to green"))
        usleep(200_000)
        XCTAssertEqual(green.requests, [], "a switch must not release held writes")
        let opened = try ok(proxy, "readonly web off")
        XCTAssertTrue(opened.hasPrefix("OK readonly web off (2 held released)"), opened)

        let firstAnswer = first.readResponse()
        let secondAnswer = second.readResponse()
        XCTAssertTrue(firstAnswer.hasPrefix("HTTP/1.1 200"), firstAnswer)
        XCTAssertTrue(firstAnswer.hasSuffix("green\n"), firstAnswer)
        XCTAssertTrue(secondAnswer.hasPrefix("HTTP/1.1 200"), secondAnswer)
        XCTAssertTrue(secondAnswer.hasSuffix("green\n"), secondAnswer)
        XCTAssertEqual(green.requests, ["POST /write first", "POST /write second"], "held writes out of order or lost")
        XCTAssertEqual(blue.requests, ["GET /page", "HEAD /page"], "a held write reached the old endpoint")
        XCTAssertEqual(try profile(proxy)["readonly_gate"] as? String, "off")
        XCTAssertEqual(try PrometheusExposition(try admin(proxy, "/metrics").body).value("cutover_profile_readonly_hold", ["profile": "web"]), 0)
        let events = try ok(proxy, "show events")
        XCTAssertTrue(events.contains("readonly hold"), events)
        XCTAssertTrue(events.contains("readonly off (readonly command, 2 held released)"), events)
    }

    /// Held writes are bounded like paused requests: past max_held and past hold_timeout, 503 with
    /// Retry-After; reads keep passing while the queue is full.
    func testHoldLimits_answer503WithRetryAfter_readsStillPass() throws {
        let proxy = try startProxy(profileExtra: #", "hold_timeout": "2s", "max_held": 1"#)
        defer { proxy.stop() }
        _ = try ok(proxy, "readonly web hold")
        let held = try sendPost(proxy, "waits")
        waitHeld(proxy, 1)
        let overflow = try curl(proxy.url("/write"), ["-X", "POST", "--data", "over"])
        XCTAssertEqual(overflow.code, 503)
        XCTAssertNotNil(overflow.header("Retry-After"))
        XCTAssertTrue(overflow.body.contains("max_held 1"), overflow.body)
        XCTAssertEqual(try curl(proxy.url("/page")).code, 200, "a full hold queue must not stop reads")
        let timedOut = held.readResponse()
        XCTAssertTrue(timedOut.hasPrefix("HTTP/1.1 503"), timedOut)
        XCTAssertTrue(timedOut.contains("Retry-After:"), timedOut)
        XCTAssertTrue(timedOut.contains("hold timeout"), timedOut)
        XCTAssertEqual(blue.requests, ["GET /page"], "a write got through the hold")
        XCTAssertEqual(try profile(proxy)["held"] as? Int, 0)
    }

    /// Moving the gate from hold to on answers the held writes 503 at once; nothing reaches a backend.
    func testHoldThenOn_answersHeldWrites503() throws {
        let proxy = try startProxy(profileExtra: #", "maintenance": { "retry_after": "7s" }"#)
        defer { proxy.stop() }
        _ = try ok(proxy, "readonly web hold")
        let held = try sendPost(proxy, "refused")
        waitHeld(proxy, 1)
        let closed = try ok(proxy, "readonly web on")
        XCTAssertTrue(closed.hasPrefix("OK readonly web on (1 held answered 503)"), closed)
        let answer = held.readResponse()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 503"), answer)
        XCTAssertTrue(answer.contains("Retry-After: 7"), answer)
        XCTAssertTrue(answer.contains("read-only"), answer)
        XCTAssertEqual(blue.requests, [])
        XCTAssertEqual(try curl(proxy.url("/write"), ["-X", "POST", "--data", "x"]).code, 503, "on refuses new writes at once")
        XCTAssertEqual(try profile(proxy)["readonly_gate"] as? String, "on")
    }

    /// A request leaves the queue only when nothing holds it: `resume` releases the held read but not
    /// the write the gate still holds; `readonly off` while paused releases nothing.
    func testPauseAndHold_releaseOnlyWhenNothingHoldsTheRequest() throws {
        let proxy = try startProxy()
        defer { proxy.stop() }
        _ = try ok(proxy, "readonly web hold")
        _ = try ok(proxy, "pause web")
        let write = try sendPost(proxy, "one")
        waitHeld(proxy, 1)
        let read = try RawConnection(port: proxy.port())
        read.send("GET /page HTTP/1.1\r\nHost: t\r\n\r\n")
        waitHeld(proxy, 2)

        XCTAssertTrue(try ok(proxy, "resume web").hasPrefix("OK resumed web: 1 held released"))
        let readAnswer = read.readResponse()
        XCTAssertTrue(readAnswer.hasPrefix("HTTP/1.1 200") && readAnswer.hasSuffix("blue\n"), readAnswer)
        waitHeld(proxy, 1)
        XCTAssertEqual(blue.requests, ["GET /page"], "resume released a write the gate still holds")

        _ = try ok(proxy, "pause web")
        XCTAssertEqual(try ok(proxy, "readonly web off").trimmingCharacters(in: .whitespacesAndNewlines), "OK readonly web off")
        usleep(200_000)
        XCTAssertEqual(try profile(proxy)["held"] as? Int, 1, "readonly off released a write the pause still holds")
        XCTAssertEqual(blue.requests, ["GET /page"])

        _ = try ok(proxy, "resume web")
        let writeAnswer = write.readResponse()
        XCTAssertTrue(writeAnswer.hasPrefix("HTTP/1.1 200"), writeAnswer)
        XCTAssertEqual(blue.requests, ["GET /page", "POST /write one"])
    }

    /// The gate position survives a restart through the state file; a state file written before
    /// `hold` existed (`"readonly": true` only) still restores the gate as on.
    func testStateFile_keepsHold_andReadsOldFiles() throws {
        let stateFile = dir.path("state.json")
        let rootExtra = #", "state_file": "\#(stateFile)""#
        var proxy = try startProxy(rootExtra: rootExtra)
        _ = try ok(proxy, "readonly web hold")
        proxy.stop()
        let saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stateFile))) as? [String: Any]
        let web = (saved?["profiles"] as? [String: Any])?["web"] as? [String: Any]
        XCTAssertEqual(web?["readonly_gate"] as? String, "hold", "\(saved ?? [:])")
        XCTAssertEqual(web?["readonly"] as? Bool, true, "older binaries must read a held gate as closed")

        proxy = try startProxy(rootExtra: rootExtra)
        XCTAssertEqual(try profile(proxy)["readonly_gate"] as? String, "hold")
        let write = try sendPost(proxy, "after-restart")
        waitHeld(proxy, 1)
        _ = try ok(proxy, "readonly web off")
        XCTAssertTrue(write.readResponse().hasPrefix("HTTP/1.1 200"))
        proxy.stop()

        let old = """
            { "version": 1, "profiles": { "web": { "paused": false, "maintenance": false, "readonly": true,
              "endpoints": { "blue": { "state": "online", "priority": 1, "weight": 1 },
                             "green": { "state": "offline", "priority": 1, "weight": 1 } } } } }
            """
        try old.write(toFile: stateFile, atomically: true, encoding: .utf8)
        proxy = try startProxy(rootExtra: rootExtra)
        defer { proxy.stop() }
        XCTAssertEqual(try profile(proxy)["readonly_gate"] as? String, "on")
        XCTAssertEqual(try curl(proxy.url("/write"), ["-X", "POST", "--data", "x"]).code, 503)
        XCTAssertEqual(blue.requests, ["POST /write after-restart"])
    }

    /// TCP listeners carry no methods: the read-only gate neither holds nor refuses their connections,
    /// in `hold` as in `on` (as before `hold` existed).
    func testTCPListener_isNotGated() throws {
        let proxy = try startProxy(mode: "tcp")
        defer { proxy.stop() }
        for gate in ["hold", "on"] {
            _ = try ok(proxy, "readonly web \(gate)")
            let tunnel = try sendPost(proxy, gate)
            tunnel.setReadTimeout(5)
            let answer = tunnel.readResponse()
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200") && answer.hasSuffix("blue\n"), "\(gate): \(answer)")
        }
        XCTAssertEqual(blue.requests, ["POST /write hold", "POST /write on"])
        XCTAssertEqual(try profile(proxy)["held"] as? Int, 0)
    }
}

/// An HTTP backend in the test process that serves one connection at a time, in accept order, records
/// each request as "METHOD target[ body]" and answers `Connection: close` with its name.
private final class RecordingBackend: Sendable {
    private let upstream: TestUpstream
    private let recorded: Recorded

    private final class Recorded: Sendable {
        let requests = Mutex<[String]>([])
    }

    init(name: String) throws {
        let recorded = Recorded()
        self.recorded = recorded
        upstream = try TestUpstream(serial: true) { fd in
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard let request = RecordingBackend.readRequest(fd) else { return }  // a probe, or nothing
            recorded.requests.withLock { $0.append(request) }
            let body = "\(name)\n"
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nX-Backend: \(name)\r\nConnection: close\r\n\r\n"
            Blocking.write(fd, Array((request.hasPrefix("HEAD ") ? head : head + body).utf8))
        }
    }

    var address: String { upstream.address }

    /// What reached this backend, in arrival order.
    var requests: [String] { recorded.requests.withLock { $0 } }

    func stop() { upstream.stop() }

    /// One request head and its Content-Length body, as "METHOD target[ body]".
    private static func readRequest(_ fd: Int32) -> String? {
        var data: [UInt8] = []
        let separator: [UInt8] = [13, 10, 13, 10]
        while data.firstRange(of: separator) == nil {
            guard let chunk = Blocking.read(fd) else { return nil }
            data += chunk
        }
        let headEnd = data.firstRange(of: separator)!
        let head = String(decoding: data[..<headEnd.lowerBound], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        let length = lines.first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        while data.count < headEnd.upperBound + length {
            guard let chunk = Blocking.read(fd) else { return nil }
            data += chunk
        }
        let requestLine = lines.first?.split(separator: " ") ?? []
        guard requestLine.count >= 2 else { return nil }
        let body = String(decoding: data[headEnd.upperBound..<(headEnd.upperBound + length)], as: UTF8.self)
        return "\(requestLine[0]) \(requestLine[1])" + (body.isEmpty ? "" : " \(body)")
    }
}
