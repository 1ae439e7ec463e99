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
