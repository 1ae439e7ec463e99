import Foundation
import Glibc
import Synchronization
import XCTest

/// Issue 17, the last three: the status page's rates, the JSON access log with request ids, and
/// agent probes, each on the real binary with real backends.
final class OperatorInsightTests: BlueGreenTestCase {
    /// The proxy with the admin HTTP listener; `rootExtra`/`profileExtra` as in `blueGreenConfig`.
    private func start(profileExtra: String = "", rootExtra: String = "") throws -> (Proxy, UInt16) {
        let proxy = try Proxy(config: blueGreenConfig(
            blue: blue, green: green, socket: socket, profileExtra: profileExtra,
            rootExtra: #", "admin": { "socket": "\#(socket)", "http": "127.0.0.1:0" }"# + rootExtra)
            .replacingOccurrences(of: #""admin": { "socket": "\#(socket)" }, "#, with: ""), directory: dir, socketPath: socket)
        var port: UInt16 = 0
        waitUntil { port = AdminTests.adminHTTPPort(in: proxy.child.stderr) ?? 0; return port != 0 }
        guard port != 0 else {
            proxy.stop()
            throw FixtureError("no admin http line in the proxy log: \(proxy.child.stderr)")
        }
        return (proxy, port)
    }

    private func endpoints(_ proxy: Proxy) throws -> [String: [String: Any]] {
        let output = try proxy.ctl("show endpoints web", json: true).stdout
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        let rows = object?["endpoints"] as? [[String: Any]] ?? []
        return Dictionary(rows.map { ($0["name"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Requests through the proxy show as a rate and p50/p99 over the last minute, computed in the
    /// proxy: in `show endpoints --json` and text, and on `/status`, with held requests per profile.
    func testRecentRateAndPercentiles_inShowEndpointsAndOnTheStatusPage() throws {
        let (proxy, adminPort) = try start()
        defer { proxy.stop() }
        let connection = try RawConnection(port: proxy.port())
        // 95 quick answers and 5 that take 30 ms: the p99 lands among the slow ones, the p50 among the quick.
        for index in 0..<100 {
            connection.send("GET \(index % 20 == 0 ? "/slow?ms=30" : "/") HTTP/1.1\r\nHost: test\r\n\r\n")
            XCTAssertTrue(connection.readResponse().hasPrefix("HTTP/1.1 200"), "request \(index)")
        }
        let blueRow = try XCTUnwrap(try endpoints(proxy)["blue"])
        let rate = try XCTUnwrap(blueRow["rate_1m"] as? Double, "\(blueRow)")
        let p50 = try XCTUnwrap(blueRow["p50_ms"] as? Double, "\(blueRow)")
        let p99 = try XCTUnwrap(blueRow["p99_ms"] as? Double, "\(blueRow)")
        XCTAssertGreaterThan(rate, 0)
        XCTAssertLessThanOrEqual(rate, 100, "100 requests over at least a second")
        XCTAssertGreaterThanOrEqual(p99, p50)
        XCTAssertGreaterThanOrEqual(p99, 25, "5 of 100 answers took 30 ms")
        XCTAssertLessThan(p50, 25, "most answers were quick")
        XCTAssertNil(try endpoints(proxy)["green"]?["p50_ms"], "green served nothing: no percentile")

        let text = try proxy.ctl("show endpoints web").stdout
        XCTAssertTrue(text.contains("REQ/S") && text.contains("P99"), text)
        let page = try curl("http://127.0.0.1:\(adminPort)/status").body
        XCTAssertTrue(page.contains(">Req/s<") && page.contains(">p99<"), "status page lacks the rate columns")
        XCTAssertTrue(page.contains("0 held"), "status page lacks the held count")
        // The page shows the figures of the same minute: the p99's bucket (25..50 ms) in "NN.Nms".
        XCTAssertNotNil(page.range(of: #"<td class="num">[2-4][0-9]\.[0-9]ms</td>"#, options: .regularExpression), page)
    }
}

extension OperatorInsightTests {
    /// The `X-Request-Id` lines the backend's `/headers` saw.
    private func forwardedIDs(_ body: String) -> [String] {
        body.split(whereSeparator: \.isNewline).filter { $0.lowercased().hasPrefix("x-request-id:") }
            .map { $0.dropFirst("x-request-id:".count).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The access log file's lines once it has `count` of them (lines are handed on every 100 ms).
    private func logLines(_ path: String, count: Int) -> [String] {
        var lines: [String] = []
        waitUntil(timeout: 5) {
            lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            return lines.count >= count
        }
        return lines
    }

    /// `access_log_format: "json"` writes one object per request with the snake_case keys; a sane
    /// client `X-Request-Id` is forwarded and logged as it is, a missing or insane one is replaced by
    /// one the proxy makes, which the backend sees and the log names.
    func testJSONAccessLog_andRequestIDs_forwardedAndLogged() throws {
        let logPath = dir.path("access.jsonl")
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket)
            .replacingOccurrences(of: #""access_log": "off""#, with: #""access_log": "\#(logPath)", "access_log_format": "json", "workers": 1"#),
            directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let given = try curl(proxy.url("/headers?a=1"), ["-H", "X-Request-Id: client-abc-123"])
        XCTAssertEqual(forwardedIDs(given.body), ["client-abc-123"], given.body)
        let absent = try curl(proxy.url("/headers"))
        let made = try XCTUnwrap(forwardedIDs(absent.body).first, absent.body)
        XCTAssertNotNil(made.range(of: #"^[0-9a-f]{8}-0-[0-9a-f]+$"#, options: .regularExpression), made)
        let insane = try curl(proxy.url("/headers"), ["-H", "X-Request-Id: \(String(repeating: "x", count: 201))"])
        let replaced = forwardedIDs(insane.body)
        XCTAssertEqual(replaced.count, 1, "the client's overlong id is replaced, not joined: \(insane.body)")
        XCTAssertNotEqual(replaced.first, made, "every made id is new")
        XCTAssertEqual(try curl(proxy.url("/status?code=503"), ["-X", "POST"]).code, 503)

        let lines = logLines(logPath, count: 4)
        XCTAssertEqual(lines.count, 4, lines.joined(separator: "\n"))
        let records = try lines.map { line in try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line) }
        for record in records {
            for key in ["time", "client", "method", "target", "status", "bytes", "duration_ms", "profile", "endpoint", "request_id"] {
                XCTAssertNotNil(record[key], "\(key) missing in \(record)")
            }
            XCTAssertEqual(record["profile"] as? String, "web")
            XCTAssertEqual(record["endpoint"] as? String, "blue")
            XCTAssertEqual(record["client"] as? String, "127.0.0.1")
        }
        XCTAssertEqual(records.map { $0["request_id"] as? String }, ["client-abc-123", made, replaced.first, records[3]["request_id"] as? String])
        XCTAssertEqual(records[0]["target"] as? String, "/headers?a=1")
        XCTAssertEqual(records[0]["status"] as? Int, 200)
        XCTAssertGreaterThan(records[0]["bytes"] as? Int ?? 0, 0)
        XCTAssertEqual(records[3]["method"] as? String, "POST")
        XCTAssertEqual(records[3]["status"] as? Int, 503)
    }

    /// The text access log names the request id too (`id=…`), after the duration.
    func testTextAccessLog_namesTheRequestID() throws {
        let logPath = dir.path("access.log")
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket)
            .replacingOccurrences(of: #""access_log": "off""#, with: #""access_log": "\#(logPath)""#), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try curl(proxy.url("/"), ["-H", "X-Request-Id: trace-42"]).code, 200)
        let line = logLines(logPath, count: 1).first ?? ""
        XCTAssertNotNil(line.range(of: #"^\S+Z 127\.0\.0\.1 "GET /" 200 web/blue \d+B \d+ms id=trace-42$"#, options: .regularExpression), line)
    }
}

/// A backend's agent for `type: "agent"` probes: answers every connection with its current line.
private final class TestAgent: Sendable {
    /// The line, shared with the accept thread's closure (a `Mutex` cannot be captured by itself).
    private final class Line: Sendable {
        let text = Mutex("up")
    }

    private let line = Line()
    private let upstream: TestUpstream

    init() throws {
        let line = self.line
        upstream = try TestUpstream { fd in
            let text = line.text.withLock { $0 } + "\n"
            _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
    }

    var port: UInt16 { upstream.port }

    /// What the agent says from now on.
    func say(_ text: String) { line.text.withLock { $0 = text } }

    func stop() { upstream.stop() }
}

extension OperatorInsightTests {
    /// Which backend answered each of `count` requests on one keep-alive connection.
    private func backends(_ proxy: Proxy, count: Int) throws -> [String] {
        let connection = try RawConnection(port: proxy.port())
        return (0..<count).map { _ in
            connection.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            let response = connection.readResponse()
            return response.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-backend:") }
                .map { $0.dropFirst("x-backend:".count).trimmingCharacters(in: .whitespaces) } ?? "none: \(response.prefix(40))"
        }
    }

    /// An agent probe reads one line from the backend's agent: `maint` takes the endpoint out as
    /// down with the agent's text as the cause, `drain` sends it no new work while its request in
    /// flight finishes, `ready`/`up` bring it back, and `NN%` scales its configured weight.
    func testAgentProbe_drainsMaintainsAndWeighsTheEndpoint() throws {
        let blueAgent = try TestAgent(), greenAgent = try TestAgent()
        defer { blueAgent.stop(); greenAgent.stop() }
        func probe(_ agent: TestAgent) -> String {
            #""probe": { "type": "agent", "port": \#(agent.port), "interval": "100ms", "timeout": "100ms", "rise": 1, "fall": 1 }"#
        }
        let config = """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "endpoints": [
                  { "name": "blue", "address": "\(blue.address)", \(probe(blueAgent)) },
                  { "name": "green", "address": "\(green.address)", \(probe(greenAgent)) } ] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
        let proxy = try Proxy(config: config, directory: dir, socketPath: socket)
        defer { proxy.stop() }
        func row(_ name: String) -> [String: Any] { (try? endpoints(proxy)[name]) ?? [:] }
        XCTAssertTrue(waitUntil { row("blue")["health"] as? String == "up" && row("green")["health"] as? String == "up" }, "\(row("blue")) \(row("green"))")
        XCTAssertEqual(Set(try backends(proxy, count: 10)), ["blue", "green"])

        greenAgent.say("maint # disk swap")
        XCTAssertTrue(waitUntil { row("green")["health"] as? String == "down" }, "\(row("green"))")
        let cause = (row("green")["last_change"] as? [String: Any])?["cause"] as? String ?? ""
        XCTAssertTrue(cause.contains("agent says maint") && cause.contains("disk swap"), cause)
        XCTAssertEqual(Set(try backends(proxy, count: 6)), ["blue"])

        // A request in flight on blue when its agent asks to drain.
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 1, path: "/slow?ms=1500")
        defer { slow.stop() }
        XCTAssertTrue(waitUntil { row("blue")["in_flight"] as? Int == 1 })
        greenAgent.say("ready up")
        blueAgent.say("drain")
        XCTAssertTrue(waitUntil { row("blue")["state"] as? String == "draining" && row("green")["health"] as? String == "up" }, "\(row("blue"))")
        XCTAssertEqual(row("blue")["agent_share"] as? Int, 0)
        XCTAssertTrue(try proxy.ctl("show endpoints web").stdout.contains("draining (agent)"))
        XCTAssertEqual(Set(try backends(proxy, count: 6)), ["green"], "a draining endpoint takes no new work")
        XCTAssertTrue(waitUntil(timeout: 5) { slow.results.count + slow.failures.count == 1 })
        XCTAssertEqual(slow.failures, [])
        XCTAssertEqual(slow.results.map(\.backend), ["blue"], "the request in flight finished on blue")
        XCTAssertTrue(try proxy.ctl("show events").stdout.contains("web/blue draining (agent: drain)"))

        // Back, at half its weight: one answer in three.
        blueAgent.say("ready 50%")
        XCTAssertTrue(waitUntil { row("blue")["state"] as? String == "online" && row("blue")["agent_share"] as? Int == 50 }, "\(row("blue"))")
        XCTAssertTrue(try proxy.ctl("show endpoints web").stdout.contains("1 (50%)"))
        let shares = try backends(proxy, count: 30)
        XCTAssertEqual(shares.filter { $0 == "blue" }.count, 10, accuracy: 1, "\(shares)")
        XCTAssertEqual(shares.filter { $0 == "green" }.count, 20, accuracy: 1, "\(shares)")

        blueAgent.say("up 100%")
        XCTAssertTrue(waitUntil { row("blue")["agent_share"] == nil }, "\(row("blue"))")
        blueAgent.say("bogus words")
        XCTAssertTrue(waitUntil { row("blue")["health"] as? String == "down" })
        let refused = (row("blue")["last_change"] as? [String: Any])?["cause"] as? String ?? ""
        XCTAssertTrue(refused.contains("agent answered \"bogus\""), refused)
    }
}
