import Foundation
import Glibc
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
