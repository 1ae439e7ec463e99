import Foundation
import Glibc
import XCTest

/// HTTP/1.1 mode end to end: the built `cutover proxy` in front of `cutover backend`, driven with curl
/// and raw sockets (issue 2, "How it is shown").
final class HTTPProxyTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var backend: Backend?
    private var rig: ProxyRig?

    override func setUpWithError() throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() {
        rig?.stop()
        backend?.stop()
        rig = nil
        backend = nil
        directory = nil
    }

    /// Starts the sample backend `blue` and the proxy in front of it.
    private func startBlue(settings: [String] = [], adminHTTP: Bool = false) throws -> ProxyRig {
        let blue = try Backend(name: "blue", directory: directory)
        backend = blue
        let started = try ProxyRig(
            directory: directory, endpoints: [.init(name: "blue", address: blue.address)], settings: settings, adminHTTP: adminHTTP)
        rig = started
        return started
    }

    /// curl writing the body to a file (binary-safe); returns the status, the header dump and the body.
    private func curlToFile(_ url: String, _ extra: [String]) throws -> (code: Int, headers: String, body: Data) {
        let headers = directory.path("curl-\(UUID().uuidString.prefix(6)).headers")
        let body = directory.path("curl-\(UUID().uuidString.prefix(6)).body")
        let result = try IntegrationTests.run("/usr/bin/curl", ["-s", "-S", "--max-time", "30", "-D", headers, "-o", body, "-w", "%{http_code}"] + extra + [url])
        XCTAssertEqual(result.status, 0, result.stderr)
        return (Int(result.stdout) ?? 0, (try? String(contentsOfFile: headers, encoding: .utf8)) ?? "",
                (try? Data(contentsOf: URL(fileURLWithPath: body))) ?? Data())
    }

    /// A file of `count` varied bytes (so a misplaced or repeated block shows up).
    private func payload(_ count: Int) throws -> (path: String, data: Data) {
        var bytes = [UInt8](repeating: 0, count: count)
        var state: UInt32 = 2_463_534_242
        for index in 0..<count {
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            bytes[index] = UInt8(truncatingIfNeeded: state)
        }
        let data = Data(bytes)
        let path = directory.path("payload-\(count)")
        try data.write(to: URL(fileURLWithPath: path))
        return (path, data)
    }

    // MARK: - Keep-alive

    /// Several requests on one client connection are all answered on it, over one upstream connection.
    func testSequentialRequestsOnOneClientConnection_reuseBothSides() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        for index in 0..<5 {
            connection.send("GET /?n=\(index) HTTP/1.1\r\nHost: test\r\n\r\n")
            let response = try XCTUnwrap(reader.next(), "response \(index)")
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.text, "blue\n")
            XCTAssertNil(response.header("Connection"), "keep-alive is the HTTP/1.1 default: no Connection: close")
        }
        XCTAssertEqual(try rig.stats()["connections_accepted"] as? Int, 1)
        XCTAssertEqual(try rig.endpoint("blue")["connections"] as? Int, 1, "one upstream connection carried all five requests")
    }

    /// Separate client connections in turn share one pooled upstream connection.
    func testSeparateClientConnections_sharePooledUpstreamConnection() throws {
        let rig = try startBlue()
        for _ in 0..<4 {
            let result = try curl(rig.url("/"))
            XCTAssertEqual(result.code, 200)
            XCTAssertEqual(result.body, "blue\n")
        }
        XCTAssertEqual(try rig.stats()["connections_accepted"] as? Int, 4)
        XCTAssertEqual(try rig.endpoint("blue")["connections"] as? Int, 1, "the upstream connection went back to the pool each time")
    }

    /// An upstream that closes each keep-alive connection after one answer costs the client
    /// nothing: a stale pooled connection is retried on a fresh one.
    func testUpstreamClosingPooledConnections_isRetriedTransparently() throws {
        let upstream = try TestUpstream { fd in
            var received: [UInt8] = []
            while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n"), let bytes = Blocking.read(fd) {
                received += bytes
            }
            // Keep-alive by default, then close anyway: legal, and what idle-timeout servers do.
            Blocking.write(fd, Array("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".utf8))
        }
        defer { upstream.stop() }
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "once", address: upstream.address)])
        self.rig = rig
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        for index in 0..<10 {
            connection.send("GET /\(index) HTTP/1.1\r\nHost: test\r\n\r\n")
            let response = reader.next()
            XCTAssertEqual(response?.status, 200, "request \(index): \(response?.head ?? "no answer")")
        }
        XCTAssertGreaterThanOrEqual(upstream.accepted.load(ordering: .relaxed), 10)
    }

    /// An HTTP/1.0 request without keep-alive is answered and closed; with keep-alive it stays open.
    func testHTTP10Client_getsCloseOrKeepAliveAsAsked() throws {
        let rig = try startBlue()
        let plain = try rig.connect(readTimeout: 3)
        plain.send("GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        let plainReader = ResponseReader(plain)
        let first = try XCTUnwrap(plainReader.next())
        XCTAssertEqual(first.text, "blue\n")
        XCTAssertEqual(first.header("Connection")?.lowercased(), "close")
        XCTAssertTrue(plainReader.readToEnd().closed)

        let kept = try rig.connect(readTimeout: 3)
        let keptReader = ResponseReader(kept)
        for _ in 0..<2 {
            kept.send("GET / HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n")
            let response = try XCTUnwrap(keptReader.next())
            XCTAssertEqual(response.text, "blue\n")
            XCTAssertEqual(response.header("Connection")?.lowercased(), "keep-alive")
        }
    }

    /// An upgrade the backend declines (a plain 200) leaves an ordinary keep-alive connection.
    func testDeclinedUpgrade_continuesAsHTTP() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        let declined = try XCTUnwrap(reader.next())
        XCTAssertEqual(declined.status, 200)
        XCTAssertEqual(declined.text, "blue\n")
        connection.send("GET /headers HTTP/1.1\r\nHost: test\r\n\r\n")
        let next = try XCTUnwrap(reader.next())
        XCTAssertTrue(next.text.hasPrefix("GET /headers HTTP/1.1\r\n"), next.text)
    }

    // MARK: - Bodies

    /// A chunked request body reaches the backend whole and in order.
    func testChunkedUpload_isStreamedToBackend() throws {
        let rig = try startBlue()
        let upload = try payload(300_000)
        let result = try curlToFile(rig.url("/echo"), ["-H", "Transfer-Encoding: chunked", "--data-binary", "@\(upload.path)"])
        XCTAssertEqual(result.code, 200)
        XCTAssertEqual(result.body.count, upload.data.count)
        XCTAssertTrue(result.body == upload.data, "echoed body differs from the chunked upload")
    }

    /// A chunked response is relayed with its chunked framing and every byte.
    func testChunkedDownload_isRelayedWhole() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("GET /chunked?n=100000&chunks=7 HTTP/1.1\r\nHost: test\r\n\r\n")
        let response = try XCTUnwrap(reader.next())
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.header("Transfer-Encoding"), "chunked")
        XCTAssertEqual(response.body, [UInt8](repeating: UInt8(ascii: "c"), count: 100_000))
        // The chunked response ended cleanly: the connection carries another request.
        connection.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(reader.next()?.text, "blue\n")
    }

    /// A 10 MiB upload is echoed intact, and the proxy never holds it in memory.
    func testTenMiBUpload_isStreamedAndEchoedIntact() throws {
        let rig = try startBlue()
        let upload = try payload(10 * 1_048_576)
        let before = rig.peakResidentKiB
        let result = try curlToFile(rig.url("/echo"), ["--data-binary", "@\(upload.path)"])
        XCTAssertEqual(result.code, 200)
        XCTAssertEqual(result.body.count, upload.data.count)
        XCTAssertTrue(result.body == upload.data, "echoed 10 MiB body differs from the upload")
        // Both directions together are 20 MiB; streaming keeps the peak growth far below one body.
        let growth = rig.peakResidentKiB - before
        XCTAssertLessThan(growth, 6 * 1024, "proxy peak memory grew by \(growth) KiB: bodies buffered?")
    }

    /// A 10 MiB download arrives complete, and the proxy never holds it in memory.
    func testTenMiBDownload_isStreamedIntact() throws {
        let rig = try startBlue()
        let before = rig.peakResidentKiB
        let result = try curlToFile(rig.url("/bytes?n=10485760"), [])
        XCTAssertEqual(result.code, 200)
        XCTAssertEqual(result.body.count, 10_485_760)
        XCTAssertTrue(result.body.allSatisfy { $0 == UInt8(ascii: "x") })
        let growth = rig.peakResidentKiB - before
        XCTAssertLessThan(growth, 6 * 1024, "proxy peak memory grew by \(growth) KiB: body buffered?")
    }

    /// The proxy's own answers are counted by reason in /metrics: a request without Host is a
    /// `bad_request`, a backend that refuses is a `bad_gateway`; the reasons add up to the total.
    func testProxyAnswers_areCountedByReason() throws {
        let rig = try startBlue(adminHTTP: true)
        let connection = try rig.connect()
        connection.send("GET / HTTP/1.1\r\n\r\n")
        XCTAssertTrue(connection.readResponse().hasPrefix("HTTP/1.1 400"))
        backend?.stop()
        XCTAssertEqual(try curl(rig.url("/")).code, 502)
        let metrics = try rig.proxy.metrics()
        XCTAssertEqual(metrics.value("cutover_proxy_answers_total", ["reason": "bad_request"]), 1)
        XCTAssertEqual(metrics.value("cutover_proxy_answers_total", ["reason": "bad_gateway"]), 1)
        XCTAssertEqual(metrics.value("cutover_proxy_answers_total", ["reason": "maintenance"]), 0)
        XCTAssertEqual(metrics.value("cutover_proxy_answered_total"), 2)
    }

    /// A client that stops reading a 64 MiB answer makes the proxy stop reading the backend,
    /// not buffer the rest; the client then gets every byte. (64 MiB: more than the loopback socket
    /// buffers on the way can hold, so the proxy must pause.)
    func testSlowReader_isBackpressuredNotBuffered() throws {
        let rig = try startBlue(adminHTTP: true)
        let connection = try rig.connect()
        var small: Int32 = 65_536
        setsockopt(connection.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        _ = try rig.proxy.metrics()  // the admin listener's first answer is not part of the growth measured
        let before = rig.peakResidentKiB
        connection.send("GET /bytes?n=67108864 HTTP/1.1\r\nHost: test\r\n\r\n")
        // Not reading. Wait until the proxy has either stopped reading blue (the bytes it received
        // from blue stay the same for 300 ms) or buffered far more than the socket buffers between
        // it and us hold (4 MiB of send buffer, 128 KiB of ours): only then is there something to measure.
        let limit = 16.0 * 1024 * 1024
        var received = 0.0
        var lastChange = Date()
        let settled = waitUntil(timeout: 20) {
            guard let now = (try? rig.proxy.metric("cutover_upstream_bytes_received_total", ["profile": "web", "endpoint": "blue"])) ?? nil else { return false }
            if now != received { (received, lastChange) = (now, Date()) }
            return received >= limit || (received > 0 && Date().timeIntervalSince(lastChange) >= 0.3)
        }
        XCTAssertTrue(settled, "the proxy never started reading blue's answer")
        XCTAssertLessThan(received, limit, "the proxy read \(Int(received)) bytes from blue while the client read nothing")
        let growth = rig.peakResidentKiB - before
        XCTAssertLessThan(growth, 6 * 1024, "proxy peak memory grew by \(growth) KiB while the client read nothing")
        let response = try XCTUnwrap(ResponseReader(connection).next())
        XCTAssertEqual(response.body.count, 67_108_864)
    }

    /// A POST body followed at once by a pipelined GET: the body ends where Content-Length says.
    func testPipelinedRequestAfterBody_startsWhereBodyEnds() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello" + "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertEqual(reader.next()?.text, "hello")
        XCTAssertEqual(reader.next()?.text, "blue\n")
    }

    /// A client that half-closes right after its request still receives the whole answer.
    func testClientHalfCloseAfterRequest_stillGetsResponse() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("GET /slow?ms=200 HTTP/1.1\r\nHost: test\r\n\r\n")
        connection.shutdownWrite()
        let response = try XCTUnwrap(reader.next(), "the answer was dropped after our half-close")
        XCTAssertEqual(response.text, "blue slow\n")
        XCTAssertTrue(reader.readToEnd().closed)
    }

    /// A client that half-closes right after asking for 8 MiB still receives every byte (the
    /// answer outgrows the socket buffers, so the proxy must wait for the client to drain).
    func testClientHalfCloseBeforeLargeResponse_stillGetsAllOfIt() throws {
        let rig = try startBlue()
        let connection = try rig.connect(readTimeout: 5)
        let reader = ResponseReader(connection)
        connection.send("GET /bytes?n=8388608 HTTP/1.1\r\nHost: test\r\n\r\n")
        connection.shutdownWrite()
        let response = try XCTUnwrap(reader.next(), "the answer stalled after our half-close")
        XCTAssertEqual(response.body.count, 8_388_608)
        XCTAssertTrue(reader.readToEnd().closed)
    }

    // MARK: - Expect: 100-continue

    /// curl's `Expect: 100-continue` upload gets the backend's 100 Continue, then the answer.
    func testExpectContinue_fromCurl_gets100ThenResponse() throws {
        let rig = try startBlue()
        let upload = try payload(200_000)
        let result = try curlToFile(rig.url("/echo"), ["-H", "Expect: 100-continue", "--data-binary", "@\(upload.path)"])
        XCTAssertTrue(result.headers.contains("HTTP/1.1 100 Continue"), result.headers)
        XCTAssertEqual(result.code, 200)
        XCTAssertTrue(result.body == upload.data)
    }

    /// A client that waits for 100 Continue before sending its body gets it, then the full answer.
    func testExpectContinue_rawClientWaitsFor100_thenSendsBody() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        let interim = try XCTUnwrap(reader.next(), "no 100 Continue before the body was sent")
        XCTAssertEqual(interim.status, 100)
        XCTAssertNil(interim.header("Connection"))
        connection.send("hello world")
        let response = try XCTUnwrap(reader.next())
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.text, "hello world")
    }

    // MARK: - Bodyless responses

    /// A HEAD answer carries the GET's Content-Length but no body; the next request parses cleanly.
    func testHeadResponse_hasNoBody_andNextRequestParses() throws {
        try assertBodyless(request: "HEAD / HTTP/1.1\r\nHost: test\r\n\r\n", status: 200, head: true)
    }

    /// A 204 answer has no body; the next request on the connection parses cleanly.
    func testNoContentResponse_hasNoBody_andNextRequestParses() throws {
        try assertBodyless(request: "GET /status?code=204 HTTP/1.1\r\nHost: test\r\n\r\n", status: 204, head: false)
    }

    /// A 304 answer has no body even with a Content-Length; the next request parses cleanly.
    func testNotModifiedResponse_hasNoBody_andNextRequestParses() throws {
        try assertBodyless(request: "GET /status?code=304 HTTP/1.1\r\nHost: test\r\n\r\n", status: 304, head: false)
    }

    private func assertBodyless(request: String, status: Int, head: Bool, line: UInt = #line) throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send(request)
        let first = try XCTUnwrap(reader.next(bodyless: true), line: line)
        XCTAssertEqual(first.status, status, line: line)
        if head { XCTAssertEqual(first.header("Content-Length"), "5", line: line) }
        // Had any body bytes followed, they would now sit in front of the next status line.
        connection.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        let second = try XCTUnwrap(reader.next(), line: line)
        XCTAssertEqual(second.head.prefix(15), "HTTP/1.1 200 OK", line: line)
        XCTAssertEqual(second.text, "blue\n", line: line)
    }

    // MARK: - Upgrade

    /// After `101 Switching Protocols` the connection is a tunnel: bytes echo both ways until close.
    func testUpgrade_echoesBytesBothWaysAfter101() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        let switched = try XCTUnwrap(reader.next())
        XCTAssertEqual(switched.status, 101)
        XCTAssertEqual(switched.header("Upgrade"), "echo")
        XCTAssertEqual(switched.header("Connection")?.lowercased(), "upgrade")
        connection.send("ping one\n")
        XCTAssertEqual(reader.read(until: "ping one\n"), "ping one\n")
        let big = String(repeating: "0123456789abcdef", count: 16_384)  // 256 KiB through the tunnel
        connection.send(big + "END")
        XCTAssertEqual(reader.read(until: "END")?.count, big.count + 3)
        connection.shutdownWrite()
        let end = reader.readToEnd()
        XCTAssertEqual(end.text, "")
        XCTAssertTrue(end.closed, "the tunnel did not close after our end of stream")
    }

    /// Bytes the client sends right behind its upgrade request are delivered once the tunnel is up.
    func testUpgrade_withEarlyBytesBehindHead_deliversThem() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly bytes\n")
        XCTAssertEqual(reader.next()?.status, 101)
        XCTAssertEqual(reader.read(until: "early bytes\n"), "early bytes\n")
    }

    // MARK: - Pipelining

    /// Three requests sent in one write are answered in order, the slow first one included.
    func testPipelinedRequests_areAnsweredInOrder() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send(
            "GET /slow?ms=300 HTTP/1.1\r\nHost: test\r\n\r\n"
            + "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
            + "GET /headers HTTP/1.1\r\nHost: test\r\nX-Order: third\r\n\r\n")
        XCTAssertEqual(reader.next()?.text, "blue slow\n")
        XCTAssertEqual(reader.next()?.text, "blue\n")
        let third = try XCTUnwrap(reader.next())
        XCTAssertTrue(third.text.hasPrefix("GET /headers HTTP/1.1\r\n"), third.text)
        XCTAssertTrue(third.text.contains("X-Order: third"))
    }

    // MARK: - Header rewriting

    /// Hop-by-hop fields (and those named in Connection) are dropped; forwarding fields are set.
    func testHopByHopHeaders_areRemoved_andForwardingHeadersSet() throws {
        let rig = try startBlue()
        let connection = try rig.connect()
        let reader = ResponseReader(connection)
        connection.send(
            "GET /headers HTTP/1.1\r\nHost: test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
            + "Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n"
            + "X-Forwarded-For: 10.9.8.7\r\nX-Kept: yes\r\n\r\n")
        let response = try XCTUnwrap(reader.next())
        XCTAssertEqual(response.status, 200)
        let seen = response.text.lowercased()
        for gone in ["x-secret", "keep-alive", "connection:", "te:", "proxy-connection"] {
            XCTAssertFalse(seen.contains(gone), "backend saw \(gone): \(response.text)")
        }
        XCTAssertTrue(seen.contains("x-kept: yes"))
        // 127.0.0.1 is no trusted proxy (trusted_proxies is empty): what it claimed is replaced.
        XCTAssertTrue(seen.contains("x-forwarded-for: 127.0.0.1\r\n"), response.text)
        XCTAssertTrue(seen.contains("x-forwarded-proto: http\r\n"), response.text)
        XCTAssertTrue(seen.contains("forwarded: for=127.0.0.1;proto=http\r\n"), response.text)
        XCTAssertTrue(seen.contains("via: 1.1 cutover\r\n"), response.text)
        XCTAssertEqual(response.header("Via"), "1.1 cutover", "the response carries Via too")
    }

    // MARK: - Strict parsing

    /// Malformed or ambiguous requests get their 4xx/5xx and a closed connection, reach no upstream,
    /// and a following valid connection is served.
    func testMalformedRequests_areRejectedClosedAndNeverForwarded() throws {
        let recorder = Recorder()
        let upstream = try TestUpstream { fd in
            // Record what arrives, answer once and close: enough to see whether anything was forwarded.
            var received: [UInt8] = []
            while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n"), let bytes = Blocking.read(fd) {
                received += bytes
            }
            recorder.append(String(decoding: received, as: UTF8.self))
            Blocking.write(fd, Array("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n".utf8))
        }
        defer { upstream.stop() }
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "recorder", address: upstream.address)])
        self.rig = rig

        let manyHeaders = (0..<200).map { "X-H\($0): v\r\n" }.joined()
        let cases: [(name: String, request: [UInt8], status: Int)] = [
            ("Content-Length with Transfer-Encoding",
             Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".utf8), 400),
            ("two different Content-Length", Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".utf8), 400),
            ("malformed Content-Length", Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nhello".utf8), 400),
            // RFC 9112 §6.3: a request coding that does not end in chunked is 400; a known-framed
            // but unsupported coding is 501.
            ("Transfer-Encoding gzip", Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nxx".utf8), 400),
            ("Transfer-Encoding gzip, chunked",
             Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".utf8), 501),
            ("Transfer-Encoding chunked, chunked",
             Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n".utf8), 400),
            ("bare LF line endings", Array("GET /smuggle HTTP/1.1\nHost: t\n\n".utf8), 400),
            ("bare CR in a field", Array("GET /smuggle HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n".utf8), 400),
            ("NUL in a field value", Array("GET /smuggle HTTP/1.1\r\nHost: t\r\nX-A: a".utf8) + [0] + Array("b\r\n\r\n".utf8), 400),
            ("obs-fold", Array("GET /smuggle HTTP/1.1\r\nHost: t\r\nX-A: a\r\n folded\r\n\r\n".utf8), 400),
            ("bad chunk size", Array("POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".utf8), 400),
            ("invalid method", Array("G@T /smuggle HTTP/1.1\r\nHost: t\r\n\r\n".utf8), 400),
            ("invalid target", Array("GET smuggle HTTP/1.1\r\nHost: t\r\n\r\n".utf8), 400),
            ("HTTP/2.0 version", Array("GET /smuggle HTTP/2.0\r\nHost: t\r\n\r\n".utf8), 505),
            ("9000-byte request line", Array("GET /smuggle\(String(repeating: "a", count: 9000)) HTTP/1.1\r\nHost: t\r\n\r\n".utf8), 414),
            ("200 header fields", Array("GET /smuggle HTTP/1.1\r\nHost: t\r\n\(manyHeaders)\r\n".utf8), 431),
        ]
        for (name, request, status) in cases {
            let connection = try rig.connect(readTimeout: 3)
            connection.send(request)
            let reader = ResponseReader(connection)
            let answer = reader.next()
            XCTAssertEqual(answer?.status, status, "\(name): \(answer?.head ?? "no answer")")
            XCTAssertEqual(answer?.header("Connection"), "close", name)
            let rest = reader.readToEnd()
            XCTAssertTrue(rest.closed, "\(name): connection left open")
        }
        XCTAssertEqual(recorder.all.filter { $0.contains("smuggle") }, [], "malformed requests reached the upstream")

        let valid = try curl(rig.url("/valid"))
        XCTAssertEqual(valid.code, 200)
        XCTAssertEqual(valid.body, "ok\n")
        XCTAssertTrue(recorder.all.contains { $0.hasPrefix("GET /valid HTTP/1.1\r\n") }, "\(recorder.all)")
    }

    /// A recording upstream that answers every request `ok` and keeps its connection: what it saw
    /// is what Cutover forwarded.
    private func startRecorder() throws -> (ProxyRig, Recorder, TestUpstream) {
        let recorder = Recorder()
        let upstream = try TestUpstream { fd in
            var received: [UInt8] = []
            while let bytes = Blocking.read(fd) {
                received += bytes
                // Each request here is a head plus at most a 3-byte body.
                while let end = String(decoding: received, as: UTF8.self).range(of: "\r\n\r\n") {
                    let headLength = String(decoding: received, as: UTF8.self)[..<end.upperBound].utf8.count
                    let head = String(decoding: received[..<headLength], as: UTF8.self)
                    let bodyLength = head.lowercased().contains("content-length: 3") ? 3 : 0
                    guard received.count >= headLength + bodyLength else { break }
                    recorder.append(String(decoding: received[..<(headLength + bodyLength)], as: UTF8.self))
                    received.removeFirst(headLength + bodyLength)
                    Blocking.write(fd, Array("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n".utf8))
                }
            }
        }
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "recorder", address: upstream.address)])
        self.rig = rig
        return (rig, recorder, upstream)
    }

    /// Sends one request through the proxy to the recording upstream; returns what the upstream saw.
    private func forwarded(_ request: String) throws -> String {
        let (rig, recorder, upstream) = try startRecorder()
        defer { upstream.stop() }
        let connection = try rig.connect(readTimeout: 5)
        let reader = ResponseReader(connection)
        connection.send(request)
        XCTAssertEqual(reader.next()?.status, 200)
        return try XCTUnwrap(recorder.all.first, "nothing forwarded")
    }

    /// Issue 20, defect 2: an absolute-form target reaches the backend in origin-form, with the
    /// target's authority as its only Host (RFC 9112 §3.2.2), never with a second authority.
    func testAbsoluteFormTarget_isForwardedOriginFormWithHostOfTheTarget() throws {
        let seen = try forwarded("GET http://internal.admin/secret HTTP/1.1\r\nHost: public.example\r\n\r\n")
        XCTAssertTrue(seen.hasPrefix("GET /secret HTTP/1.1\r\n"), seen)
        XCTAssertTrue(seen.contains("\r\nHost: internal.admin\r\n"), seen)
        XCTAssertFalse(seen.contains("public.example"), seen)
    }

    /// Issue 20, defect 3: `Content-Length: 3, 3` is forwarded as the one value it means.
    func testContentLengthList_isForwardedAsOneNormalisedValue() throws {
        let seen = try forwarded("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc")
        XCTAssertTrue(seen.contains("\r\nContent-Length: 3\r\n"), seen)
        XCTAssertFalse(seen.contains("3, 3"), seen)
        XCTAssertEqual(seen.lowercased().components(separatedBy: "content-length").count - 1, 1, seen)
        XCTAssertTrue(seen.hasSuffix("\r\n\r\nabc"), seen)
    }

    /// A chunk size that turns bad after the body started streaming still gets 400 and a close.
    func testBadChunkSizeMidBody_gets400AndClose() throws {
        let rig = try startBlue()
        let connection = try rig.connect(readTimeout: 3)
        let reader = ResponseReader(connection)
        connection.send("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        // Let the head and the first chunk go upstream before the broken chunk arrives.
        XCTAssertTrue(waitUntil(timeout: 3) { (try? rig.endpoint("blue")["in_flight"] as? Int) == 1 })
        connection.send("zz\r\nworld\r\n0\r\n\r\n")
        let answer = try XCTUnwrap(reader.next(), "no answer to a broken chunk")
        XCTAssertEqual(answer.status, 400)
        XCTAssertEqual(answer.header("Connection"), "close")
        XCTAssertTrue(reader.readToEnd().closed)
        XCTAssertTrue(waitUntil(timeout: 3) { (try? rig.endpoint("blue")["connections"] as? Int) == 0 }, "the half-fed upstream connection was kept")
    }

    /// A client that never finishes its head gets 408 after `header_read` and is closed.
    func testSlowHead_gets408AfterHeaderReadTimeout() throws {
        let rig = try startBlue(settings: [#""timeouts": { "header_read": "500ms" }"#])
        let connection = try rig.connect(readTimeout: 4)
        let reader = ResponseReader(connection)
        let started = Date()
        connection.send("GET / HTTP/1.1\r\nHost: test\r\nX-Partial: ")
        let answer = try XCTUnwrap(reader.next(), "no answer to a stalled head")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(answer.status, 408)
        XCTAssertGreaterThanOrEqual(elapsed, 0.4)
        XCTAssertLessThan(elapsed, 2.5)
        XCTAssertTrue(reader.readToEnd().closed)
    }

    // MARK: - Errors the proxy answers itself

    /// An endpoint whose port refuses connections gives 502 with a short text body.
    func testRefusedUpstream_gives502() throws {
        // No probe: one that ran before the request would take the endpoint out (503, not 502).
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "gone", address: "127.0.0.1:\(TestUpstream.closedPort())")], probed: false)
        self.rig = rig
        let result = try curl(rig.url("/"))
        XCTAssertEqual(result.code, 502)
        XCTAssertTrue(result.body.contains("bad gateway"), result.body)
        XCTAssertTrue(result.body.contains("web/gone"), result.body)
    }

    /// A 502 on a body-less request leaves the client connection usable for the next request.
    func testRefusedUpstream_502KeepsClientConnection() throws {
        let rig = try ProxyRig(directory: directory, endpoints: [.init(name: "gone", address: "127.0.0.1:\(TestUpstream.closedPort())")])
        self.rig = rig
        let connection = try rig.connect(readTimeout: 3)
        let reader = ResponseReader(connection)
        for _ in 0..<2 {
            connection.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            let response = try XCTUnwrap(reader.next())
            XCTAssertTrue(response.status == 502 || response.status == 503, response.head)
            XCTAssertNil(response.header("Connection"))
        }
    }

    /// With every endpoint offline the proxy answers 503 naming the profile.
    func testAllEndpointsOffline_gives503NamingProfile() throws {
        let blue = try Backend(name: "blue", directory: directory)
        backend = blue
        let rig = try ProxyRig(directory: directory, endpoints: [
            .init(name: "blue", address: blue.address, state: "offline"),
            .init(name: "green", address: blue.address, state: "offline"),
        ])
        self.rig = rig
        let result = try curl(rig.url("/"))
        XCTAssertEqual(result.code, 503)
        XCTAssertTrue(result.body.contains("profile web"), result.body)
    }

    /// A backend slower than `upstream_response` gives 504, in about that time.
    func testSlowUpstream_gives504AfterUpstreamResponseTimeout() throws {
        let rig = try startBlue(settings: [#""timeouts": { "upstream_response": "500ms" }"#])
        let started = Date()
        let result = try curl(rig.url("/slow?ms=3000"))
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertEqual(result.code, 504)
        XCTAssertTrue(result.body.contains("timed out"), result.body)
        XCTAssertLessThan(elapsed, 2.5)
    }
}
