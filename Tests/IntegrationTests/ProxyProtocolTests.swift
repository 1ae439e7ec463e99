import CutoverCore
import Foundation
import Glibc
import Synchronization
import XCTest

/// Client addresses behind another balancer (issue 17): PROXY v1/v2 accepted on a listener (plain and
/// TLS), `trusted_proxies` for X-Forwarded-For, and `send_proxy` to endpoints; the built binary in
/// front of `cutover backend` (whose `/headers` echoes the request head) or a raw TCP upstream.
final class ProxyProtocolTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var stoppers: [() -> Void] = []

    override func setUpWithError() throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() {
        for stop in stoppers.reversed() { stop() }
        stoppers = []
        directory = nil
    }

    private var accessLogPath: String { directory.path("access.log") }

    /// A proxy with `listeners` (JSON) in front of profile `web`, the access log in a file and the
    /// admin HTTP listener for `/metrics`.
    /// A slow probe by default keeps probing out of the way of what the tests count.
    private func proxy(
        listeners: String, endpoints: String, profileExtra: String = "", rootExtra: String = "", expectListeners: Int = 1,
        probe: String = #"{ "type": "tcp", "interval": "30s" }"#
    ) throws -> Proxy {
        let socket = directory.path("admin-\(UUID().uuidString.prefix(4)).sock")
        let config = """
            { "listeners": \(listeners),
              "profiles": [{ "name": "web", "probe": \(probe), "endpoints": \(endpoints)\(profileExtra) }],
              "admin": { "socket": "\(socket)", "http": "127.0.0.1:0" }, "access_log": "\(accessLogPath)", "workers": 1\(rootExtra) }
            """
        let proxy = try Proxy(config: config, directory: directory, socketPath: socket, expectListeners: expectListeners)
        stoppers.append { proxy.stop() }
        return proxy
    }

    private func backend() throws -> Backend {
        let backend = try Backend(name: "blue", directory: directory)
        stoppers.append { backend.stop() }
        return backend
    }

    private func endpoint(_ address: String, extra: String = "") -> String {
        #"[{ "name": "blue", "address": "\#(address)"\#(extra) }]"#
    }

    private func listener(_ name: String = "front", mode: String = "http", extra: String) -> String {
        #"{ "name": "\#(name)", "address": "127.0.0.1:0", "mode": "\#(mode)", "profile": "web"\#(extra) }"#
    }

    /// Waits until the access log has a line containing `text` (it is flushed every 100 ms).
    private func accessLogLine(containing text: String) -> String? {
        var found: String?
        waitUntil(timeout: 5) {
            let log = (try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? ""
            found = log.split(separator: "\n").map(String.init).first { $0.contains(text) }
            return found != nil
        }
        return found
    }

    private func v2Header(source: [UInt8], destination: [UInt8], sourcePort: UInt16, destinationPort: UInt16) -> [UInt8] {
        ProxyProtocol.header(.v2, for: .init(
            source: .init(ip: source, port: sourcePort), destination: .init(ip: destination, port: destinationPort)))
    }

    // MARK: - Accepting the PROXY protocol

    /// A v1 header names the client: X-Forwarded-For, Forwarded and the access log say 203.0.113.7.
    func testV1Header_namesTheClient_toTheBackendAndInTheAccessLog() throws {
        let blue = try backend()
        let proxy = try proxy(listeners: "[\(listener(extra: #", "proxy_protocol": true"#))]", endpoints: endpoint(blue.address))
        let connection = try RawConnection(port: proxy.port())
        // The header in two writes: the reader waits for its CRLF.
        connection.send("PROXY TCP4 203.0.113.7 ")
        connection.send("192.0.2.1 51234 80\r\nGET /headers HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        let response = connection.readResponse().lowercased()
        XCTAssertTrue(response.hasPrefix("http/1.1 200"), response)
        XCTAssertTrue(response.contains("x-forwarded-for: 203.0.113.7\r\n"), "the header's client, not the socket's nor the client's claim: \(response)")
        XCTAssertTrue(response.contains("forwarded: for=203.0.113.7;proto=http\r\n"), response)
        // Keep-alive: the next request on the connection is the same client.
        connection.send("GET /headers?second HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(connection.readResponse().lowercased().contains("x-forwarded-for: 203.0.113.7\r\n"))
        XCTAssertNotNil(accessLogLine(containing: #"203.0.113.7 "GET /headers?second""#), "access log: \((try? String(contentsOfFile: accessLogPath, encoding: .utf8)) ?? "")")
    }

    /// A v2 header with an IPv6 client, TLVs after the addresses; a v2 LOCAL is served as the socket.
    func testV2Header_IPv6Client_andLocalHealthCheck() throws {
        let blue = try backend()
        let proxy = try proxy(listeners: "[\(listener(extra: #", "proxy_protocol": true"#))]", endpoints: endpoint(blue.address))
        let source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 11) + [7]
        var header = v2Header(source: source, destination: Array(repeating: 0, count: 15) + [1], sourcePort: 4711, destinationPort: 443)
        header[15] += 6  // announce a TLV …
        header += [0x04, 0x00, 0x03, 0x61, 0x62, 0x63]  // … PP2_TYPE_NOOP, skipped
        let connection = try RawConnection(port: proxy.port())
        connection.send(header + Array("GET /headers HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
        let response = connection.readResponse().lowercased()
        XCTAssertTrue(response.contains("x-forwarded-for: 2001:db8:0:0:0:0:0:7\r\n"), response)
        XCTAssertTrue(response.contains(#"forwarded: for="[2001:db8:0:0:0:0:0:7]";proto=http"#), response)

        let local = try RawConnection(port: proxy.port())
        local.send(ProxyProtocol.v2Signature + [0x20, 0x00, 0x00, 0x00] + Array("GET /headers HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
        XCTAssertTrue(local.readResponse().lowercased().contains("x-forwarded-for: 127.0.0.1\r\n"), "LOCAL: the connection speaks for itself")
    }

    /// No header, a malformed one, or none within header_read: closed unanswered, counted; the
    /// listener keeps serving good connections.
    func testMissingOrBadHeader_isClosedAndCounted() throws {
        let blue = try backend()
        let proxy = try proxy(
            listeners: "[\(listener(extra: #", "proxy_protocol": true"#))]", endpoints: endpoint(blue.address),
            rootExtra: #", "timeouts": { "header_read": "300ms" }"#)
        for bad in ["GET /headers HTTP/1.1\r\nHost: t\r\n\r\n", "PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\nGET / HTTP/1.1\r\n\r\n"] {
            let connection = try RawConnection(port: proxy.port())
            connection.send(bad)
            XCTAssertEqual(connection.readAll(), "", "closed without an answer: \(bad.debugDescription)")
        }
        let silent = try RawConnection(port: proxy.port())
        let started = Date()
        XCTAssertEqual(silent.readAll(), "", "a silent connection is closed at header_read")
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(try proxy.metric("cutover_proxy_protocol_errors_total", [:]), 3)

        let good = try RawConnection(port: proxy.port())
        good.send("PROXY TCP4 198.51.100.1 192.0.2.1 1 80\r\nGET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(good.readResponse().lowercased().contains("x-forwarded-for: 198.51.100.1\r\n"))
        XCTAssertNotNil(accessLogLine(containing: #"198.51.100.1 "GET /headers""#))
        XCTAssertTrue(proxy.child.stderr.contains("not a PROXY protocol header"), proxy.child.stderr)
    }

    /// At max_connections a connection still silent before its header makes room, as an idle
    /// HTTP client does: a balancer's real connection is served, not refused.
    func testSilentConnection_isEvictedAtMaxConnections() throws {
        let blue = try backend()
        let proxy = try proxy(
            listeners: "[\(listener(extra: #", "proxy_protocol": true"#))]", endpoints: endpoint(blue.address),
            rootExtra: #", "limits": { "max_connections": 1 }"#)
        let silent = try RawConnection(port: proxy.port())
        XCTAssertTrue(waitUntil(timeout: 5) { (try? proxy.metric("cutover_connections_open", [:])) == 1 })
        let good = try RawConnection(port: proxy.port())
        good.send("PROXY TCP4 198.51.100.1 192.0.2.1 1 80\r\nGET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(good.readResponse().lowercased().contains("x-forwarded-for: 198.51.100.1\r\n"))
        XCTAssertEqual(silent.readAll(), "", "the silent one was closed")
        XCTAssertEqual(try proxy.metric("cutover_connections_evicted_total", [:]), 1)
    }

    /// On a TLS listener the header comes before the ClientHello: curl --haproxy-protocol over
    /// HTTPS is served; the same request without the header is refused and counted.
    func testTLSListener_readsTheHeaderBeforeTheHandshake() throws {
        let blue = try backend()
        let certificates = try TestCertificates(directory: directory)
        let site = try certificates.leaf("site", names: ["site.test"])
        let tls = #", "proxy_protocol": true, "tls": { "certificates": [{ "cert": "\#(site.cert)", "key": "\#(site.key)" }] }"#
        let proxy = try proxy(listeners: "[\(listener(extra: tls))]", endpoints: endpoint(blue.address))
        let port = proxy.port()
        let arguments = ["--cacert", certificates.caPath, "--resolve", "site.test:\(port):127.0.0.1"]
        let served = try curl("https://site.test:\(port)/headers", arguments + ["--haproxy-protocol"])
        XCTAssertEqual(served.code, 200, "\(served.body) \(proxy.child.stderr)")
        XCTAssertTrue(served.body.lowercased().contains("x-forwarded-proto: https"), served.body)
        let refused = try curl("https://site.test:\(port)/headers", arguments)
        XCTAssertNotEqual(refused.code, 200)
        XCTAssertEqual(try proxy.metric("cutover_proxy_protocol_errors_total", [:]), 1)
    }

    /// A TCP listener with proxy_protocol: the header is taken off, the bytes after it are tunnelled.
    func testTCPListener_stripsTheHeader_andTunnelsTheRest() throws {
        let recorder = Recorder()
        let upstream = try TestUpstream { fd in
            guard let bytes = Blocking.read(fd) else { return }
            recorder.append(String(decoding: bytes, as: UTF8.self))
            Blocking.write(fd, bytes)
        }
        stoppers.append { upstream.stop() }
        let proxy = try proxy(listeners: "[\(listener(mode: "tcp", extra: #", "proxy_protocol": true"#))]", endpoints: endpoint(upstream.address))
        let connection = try RawConnection(port: proxy.port())
        connection.send(v2Header(source: [203, 0, 113, 9], destination: [192, 0, 2, 1], sourcePort: 5, destinationPort: 6) + Array("ping\n".utf8))
        XCTAssertEqual(connection.read(until: "ping\n"), "ping\n")
        XCTAssertEqual(recorder.all, ["ping\n"], "the upstream gets the client's bytes, not the header")
    }

    // MARK: - trusted_proxies

    /// From a trusted peer, X-Forwarded-For is kept and appended to, and the access log names its
    /// right-most untrusted entry; another listener without the list replaces the claim.
    func testTrustedProxies_keepXForwardedFor_untrustedClientsAreReplaced() throws {
        let blue = try backend()
        let listeners = "[\(listener("inner", extra: #", "trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8"]"#)), \(listener("outer", extra: ""))]"
        let proxy = try proxy(listeners: listeners, endpoints: endpoint(blue.address), expectListeners: 2)
        let claim = ["-H", "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 10.1.2.3"]
        let trusted = try curl(proxy.url("/headers?trusted", listener: "inner"), claim)
        XCTAssertTrue(trusted.body.lowercased().contains("x-forwarded-for: 6.6.6.6, 198.51.100.7, 10.1.2.3, 127.0.0.1\r\n"), trusted.body)
        XCTAssertNotNil(accessLogLine(containing: #"198.51.100.7 "GET /headers?trusted""#), "the right-most untrusted entry is the client")
        let untrusted = try curl(proxy.url("/headers?untrusted", listener: "outer"), claim)
        XCTAssertTrue(untrusted.body.lowercased().contains("x-forwarded-for: 127.0.0.1\r\n"), untrusted.body)
        XCTAssertFalse(untrusted.body.contains("6.6.6.6"), untrusted.body)
        XCTAssertNotNil(accessLogLine(containing: #"127.0.0.1 "GET /headers?untrusted""#))
    }

    // MARK: - send_proxy

    /// HTTP with send_proxy v1: each new upstream connection starts with the header of the client
    /// that opened it, and is never handed to another client (a second client gets its own).
    func testSendProxyV1_HTTP_headerFirst_andNoUpstreamSharedAcrossClients() throws {
        let recorder = Recorder()
        let closed = Atomic<Int>(0)
        let upstream = try TestUpstream { fd in
            // Record what came first on the connection (up to the end of its first head), then answer
            // every request on it (each is one small read).
            var head: [UInt8] = []
            while !String(decoding: head, as: UTF8.self).contains("\r\n\r\n"), let more = Blocking.read(fd) { head += more }
            recorder.append(String(decoding: head, as: UTF8.self))
            let ok = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".utf8)
            Blocking.write(fd, ok)
            while Blocking.read(fd) != nil { Blocking.write(fd, ok) }
            closed.wrappingAdd(1, ordering: .relaxed)
        }
        stoppers.append { upstream.stop() }
        let proxy = try proxy(
            listeners: "[\(listener(extra: #", "proxy_protocol": true"#))]", endpoints: endpoint(upstream.address), profileExtra: #", "send_proxy": "v1""#)
        let first = try RawConnection(port: proxy.port())
        first.send("PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(first.readResponse().hasPrefix("HTTP/1.1 200"))
        first.send("GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(first.readResponse().hasPrefix("HTTP/1.1 200"))
        XCTAssertEqual(upstream.accepted.load(ordering: .relaxed), 1, "the same client reuses its upstream connection")

        let second = try RawConnection(port: proxy.port())
        second.send("PROXY TCP4 198.51.100.9 192.0.2.1 40000 80\r\nGET /c HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(second.readResponse().hasPrefix("HTTP/1.1 200"))
        XCTAssertEqual(upstream.accepted.load(ordering: .relaxed), 2, "another client never gets the first one's connection")
        let heads = recorder.all
        XCTAssertEqual(heads.count, 2)
        XCTAssertTrue(heads.first?.hasPrefix("PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\nGET /a HTTP/1.1\r\n") ?? false, "\(heads)")
        XCTAssertTrue(heads.last?.hasPrefix("PROXY TCP4 198.51.100.9 192.0.2.1 40000 80\r\nGET /c HTTP/1.1\r\n") ?? false, "\(heads)")
        // A pinned connection is of no use to anyone else: it closes with its client.
        XCTAssertEqual(closed.load(ordering: .relaxed), 0)
        first.reset()
        XCTAssertTrue(waitUntil(timeout: 5) { closed.load(ordering: .relaxed) == 1 }, "the first client's upstream connection closed with it")
    }

    /// TCP mode with send_proxy v2 on the endpoint: the upstream reads a v2 header naming the real
    /// client (the socket's own address without an incoming header), then the client's bytes.
    func testSendProxyV2_TCP_upstreamReadsTheHeader() throws {
        let parsed = Mutex<ProxyProtocol.Parse?>(nil)
        let recorder = Recorder()
        let upstream = try TestUpstream { fd in
            var bytes: [UInt8] = []
            while case .incomplete = ProxyProtocol.parse(bytes), let more = Blocking.read(fd, max: 1) { bytes += more }
            let result = ProxyProtocol.parse(bytes)
            parsed.withLock { $0 = result }
            guard case .proxied = result, let rest = Blocking.read(fd) else { return }
            recorder.append(String(decoding: rest, as: UTF8.self))
            Blocking.write(fd, rest)
        }
        stoppers.append { upstream.stop() }
        let proxy = try proxy(listeners: "[\(listener(mode: "tcp", extra: ""))]", endpoints: endpoint(upstream.address, extra: #", "send_proxy": "v2""#))
        let connection = try RawConnection(port: proxy.port())
        connection.send("hello\n")
        XCTAssertEqual(connection.read(until: "hello\n"), "hello\n")
        guard case .proxied(let addresses, let length) = parsed.withLock({ $0 }) else { return XCTFail("\(String(describing: parsed.withLock { $0 }))") }
        XCTAssertEqual(length, 28, "v2, AF_INET")
        XCTAssertEqual(addresses.source.ip, [127, 0, 0, 1])
        XCTAssertEqual(addresses.destination.port, proxy.port(), "the address the client connected to")
        XCTAssertEqual(recorder.all, ["hello\n"])
    }

    /// Probes of a send_proxy endpoint's traffic port send a LOCAL header first (the endpoint
    /// expects one on every connection), as HAProxy's checks do with send-proxy.
    func testProbes_ofASendProxyEndpoint_sendALocalHeader() throws {
        let recorder = Recorder()
        let upstream = try TestUpstream { fd in
            var bytes: [UInt8] = []
            while bytes.count < 16, let more = Blocking.read(fd, max: 16 - bytes.count) { bytes += more }
            recorder.append(bytes.map { String($0) }.joined(separator: " "))
        }
        stoppers.append { upstream.stop() }
        _ = try proxy(
            listeners: "[\(listener(mode: "tcp", extra: ""))]", endpoints: endpoint(upstream.address),
            profileExtra: #", "send_proxy": "v2""#, probe: #"{ "type": "tcp", "interval": "100ms", "timeout": "100ms" }"#)
        let local = (ProxyProtocol.v2Signature + [0x20, 0x00, 0x00, 0x00]).map { String($0) }.joined(separator: " ")
        XCTAssertTrue(waitUntil(timeout: 5) { recorder.all.contains(local) }, "\(recorder.all)")
    }

    // MARK: - Config

    func testWrongType_isRefusedWithTheKeyPath() throws {
        let config = """
            { "listeners": [{ "name": "front", "address": "127.0.0.1:0", "profile": "web", "proxy_protocol": "yes" }],
              "profiles": [{ "name": "web", "endpoints": [{ "name": "blue", "address": "127.0.0.1:9" }] }] }
            """
        let path = try directory.write("bad.json", config)
        let check = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", path, "--check"])
        XCTAssertEqual(check.status, 1, check.stdout)
        XCTAssertTrue(check.stderr.contains("listeners[0].proxy_protocol"), check.stderr)
        XCTAssertTrue(check.stderr.contains("expected true or false, got a string"), check.stderr)
    }
}
