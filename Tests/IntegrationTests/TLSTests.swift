import Foundation
import XCTest

/// TLS end to end with certificates the test makes: termination on HTTP and TCP listeners (curl
/// verifying against the test CA, openssl s_client for SNI, ALPN and versions), certificates
/// re-read at reload, the HTTPS redirect, and TLS to endpoints with verification.
final class TLSTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var certificates: TestCertificates!
    private var stoppers: [() -> Void] = []

    override func setUpWithError() throws {
        directory = try TemporaryDirectory()
        certificates = try TestCertificates(directory: directory)
    }

    override func tearDown() {
        for stop in stoppers.reversed() { stop() }
        stoppers = []
        certificates = nil
        directory = nil
    }

    private func backend(_ name: String) throws -> Backend {
        let backend = try Backend(name: name, directory: directory)
        stoppers.append { backend.stop() }
        return backend
    }

    /// A proxy whose listeners are given as JSON, routing to profile `web` (`endpoints` as JSON).
    private func proxy(listeners: String, endpoints: String, profileExtra: String = "", rootExtra: String = "", expectListeners: Int = 1, adminHTTP: Bool = false) throws -> Proxy {
        let socket = directory.path("admin-\(UUID().uuidString.prefix(4)).sock")
        let http = adminHTTP ? #", "http": "127.0.0.1:0""# : ""
        let config = """
            { "listeners": \(listeners),
              "profiles": [{ "name": "web", "endpoints": \(endpoints)\(profileExtra) }],
              "admin": { "socket": "\(socket)"\(http) }, "access_log": "off", "workers": 1\(rootExtra) }
            """
        let proxy = try Proxy(config: config, directory: directory, socketPath: socket, expectListeners: expectListeners)
        stoppers.append { proxy.stop() }
        return proxy
    }

    private func tlsListener(name: String = "web", mode: String = "http", certificates pairs: [(cert: String, key: String)], extra: String = "") -> String {
        let list = pairs.map { #"{ "cert": "\#($0.cert)", "key": "\#($0.key)" }"# }.joined(separator: ", ")
        return #"{ "name": "\#(name)", "address": "127.0.0.1:0", "mode": "\#(mode)", "profile": "web", "tls": { "certificates": [\#(list)]\#(extra) } }"#
    }

    /// curl over HTTPS to `name` at the listener's port, trusting only the test CA.
    private func https(_ proxy: Proxy, _ path: String, name: String = "site.test", listener: String? = nil, _ extra: [String] = []) throws -> CurlResult {
        let port = proxy.port(listener)
        return try curl("https://\(name):\(port)\(path)", ["--cacert", certificates.caPath, "--resolve", "\(name):\(port):127.0.0.1"] + extra)
    }

    private func stats(_ proxy: Proxy) throws -> [String: Any] {
        let result = try proxy.ctl("show", "stats", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return object?["data"] as? [String: Any] ?? object ?? [:]
    }

    // MARK: - Termination

    /// curl verifies the chain and name against the test CA; the backend hears plain HTTP with https as the proto.
    func testHTTPS_verifiesAgainstTheTestCA_andForwardsProtoHTTPS() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let answer = try https(proxy, "/headers")
        XCTAssertEqual(answer.code, 200, answer.body)
        XCTAssertTrue(answer.body.contains("X-Forwarded-Proto: https"), answer.body)
        XCTAssertTrue(answer.body.contains("proto=https"), answer.body)
        // Without the CA, curl must refuse: the certificate really is the test's.
        XCTAssertNotEqual(try curl("https://site.test:\(proxy.port())/", ["--resolve", "site.test:\(proxy.port()):127.0.0.1"]).exitStatus, 0)
        XCTAssertEqual(try stats(proxy)["tls_handshakes"] as? Int, 1)
    }

    /// SNI picks the certificate whose names match (wildcards too); an unknown or absent name gets the first.
    func testSNI_choosesTheCertificateByName_firstIsTheDefault() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test", "*.site.test"])
        let other = try certificates.leaf("other", names: ["other.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site, other]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        func subject(_ name: String?) throws -> String {
            let output = try tlsClient(port: proxy.port(), serverName: name, input: "").output
            return output.split(separator: "\n").first { $0.hasPrefix("subject=") }.map(String.init) ?? "(no subject in: \(output))"
        }
        XCTAssertTrue(try subject("other.test").contains("CN = other.test"))
        XCTAssertTrue(try subject("www.site.test").contains("CN = site.test"))
        XCTAssertTrue(try subject("unknown.test").contains("CN = site.test"))
        XCTAssertTrue(try subject(nil).contains("CN = site.test"))
        XCTAssertEqual(try https(proxy, "/", name: "other.test").body.trimmingCharacters(in: .whitespacesAndNewlines), "blue")
    }

    /// ALPN answers http/1.1 (a client offering h2 first still gets HTTP/1.1).
    func testALPN_answersHTTP11() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let output = try tlsClient(port: proxy.port(), serverName: "site.test", extra: ["-alpn", "h2,http/1.1"]).output
        XCTAssertTrue(output.contains("ALPN protocol: http/1.1"), output)
    }

    /// TLS 1.1 is refused by default, 1.2 is refused under min_version 1.3; both are counted by reason.
    func testOldVersions_areRefusedAndCounted() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(
            listeners: "[\(tlsListener(certificates: [site])), \(tlsListener(name: "strict", certificates: [site], extra: #", "min_version": "1.3""#))]",
            endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#, expectListeners: 2, adminHTTP: true)
        // The client's own security level would refuse 1.1 before sending anything: lower it, so the proxy decides.
        let old = try tlsClient(port: proxy.port("web"), serverName: "site.test", extra: ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
        XCTAssertTrue(old.output.contains("alert protocol version"), old.output)
        let twelve = try tlsClient(port: proxy.port("strict"), serverName: "site.test", extra: ["-tls1_2"])
        XCTAssertTrue(twelve.output.contains("alert protocol version"), twelve.output)
        XCTAssertTrue(try tlsClient(port: proxy.port("strict"), serverName: "site.test", input: "").output.contains("TLSv1.3"))
        XCTAssertEqual(try stats(proxy)["tls_handshake_failures"] as? Int, 2)
        let text = try proxy.ctl("show", "stats").stdout
        XCTAssertTrue(text.contains("tls_handshake_failures 2"), text)
        let metrics = try proxy.metrics()
        XCTAssertEqual(metrics.value("cutover_tls_handshake_failures_total", ["reason": "unsupported_protocol"]), 2, "\(metrics)")
        XCTAssertEqual(metrics.value("cutover_tls_handshakes_total", ["version": "1.3"]), 1)
    }

    /// A plain-HTTP client on the TLS port is told in plain text, then closed, and counted.
    func testPlainHTTPOnTheTLSPort_gets400InPlainTextAndIsCounted() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let answer = try curl("http://127.0.0.1:\(proxy.port())/")
        XCTAssertEqual(answer.code, 400)
        XCTAssertTrue(answer.body.contains("speaks HTTPS"), answer.body)
        XCTAssertEqual(try stats(proxy)["tls_plain_http"] as? Int, 1)
    }

    /// Keep-alive (one connection for two requests), pipelining, bodies streamed both ways and an
    /// Upgrade tunnel all behave over TLS as over plain HTTP.
    func testHTTPOverTLS_keepAlivePipeliningStreamingAndUpgrade() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let port = proxy.port()
        let curlArguments = ["--cacert", certificates.caPath, "--resolve", "site.test:\(port):127.0.0.1", "-s", "-S"]
        let twice = try IntegrationTests.run("/usr/bin/curl", curlArguments + ["-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
                                                                "https://site.test:\(port)/", "https://site.test:\(port)/healthz"])
        XCTAssertEqual(twice.stdout.split(separator: "\n").map(String.init), ["1", "0"], "the second request did not reuse the TLS connection")

        let body = directory.path("body.bin")
        let bytes = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) }
        FileManager.default.createFile(atPath: body, contents: Data(bytes))
        let echoed = directory.path("echoed.bin")
        let echo = try IntegrationTests.run("/usr/bin/curl", curlArguments + ["--data-binary", "@\(body)", "-o", echoed, "https://site.test:\(port)/echo"])
        XCTAssertEqual(echo.status, 0, echo.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: echoed), Data(bytes), "the 3 MB echo differs")
        let big = try https(proxy, "/bytes?n=4000000")
        XCTAssertEqual(big.body.utf8.count, 4_000_000)

        let pipelined = "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        let answers = try tlsClient(port: port, serverName: "site.test", extra: ["-quiet", "-ign_eof"], input: pipelined).output
        XCTAssertEqual(answers.components(separatedBy: "HTTP/1.1 200").count - 1, 3, answers)

        // The echo upgrade never closes by itself: s_client is stopped at its deadline and what it printed is judged.
        let upgrade = "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping over tls\n"
        let tunnel = try tlsClient(port: port, serverName: "site.test", extra: ["-quiet", "-ign_eof"], input: upgrade, timeout: 3).output
        XCTAssertTrue(tunnel.contains("101"), tunnel)
        XCTAssertTrue(tunnel.contains("ping over tls"), tunnel)
    }

    /// `redirect_https` on a plain listener answers 308 to the same host and path on the HTTPS port.
    func testRedirectHTTPS_answers308ToTheSameHostAndPath() throws {
        let blue = try backend("blue")
        let proxy = try proxy(listeners: #"[{ "name": "plain", "address": "127.0.0.1:0", "profile": "web", "redirect_https": 8443 }]"#,
                              endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let answer = try curl(proxy.url("/shop/cart?item=3"), ["-H", "Host: shop.test:8080", "-X", "POST"])
        XCTAssertEqual(answer.code, 308)
        XCTAssertEqual(answer.header("Location"), "https://shop.test:8443/shop/cart?item=3")
    }

    /// TCP mode with tls: the client's TLS ends at the proxy and the endpoint gets the plain bytes.
    func testTCPModeWithTLS_terminatesAndForwardsPlainBytes() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(mode: "tcp", certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        XCTAssertEqual(try https(proxy, "/").body.trimmingCharacters(in: .whitespacesAndNewlines), "blue")
        let answer = try https(proxy, "/headers")
        XCTAssertFalse(answer.body.contains("X-Forwarded-Proto"), "TCP mode must not touch the bytes: \(answer.body)")
        let bytes = (0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 7) }
        let body = directory.path("tcp-body.bin")
        FileManager.default.createFile(atPath: body, contents: Data(bytes))
        let echoed = directory.path("tcp-echoed.bin")
        let port = proxy.port()
        let echo = try IntegrationTests.run("/usr/bin/curl", ["-sS", "--cacert", certificates.caPath, "--resolve", "site.test:\(port):127.0.0.1",
                                             "--data-binary", "@\(body)", "-o", echoed, "https://site.test:\(port)/echo"])
        XCTAssertEqual(echo.status, 0, echo.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: echoed), Data(bytes))
    }

    /// A client that opens the TLS port and never says hello is closed at `timeouts.tls_handshake`, and counted.
    func testSilentClient_isClosedAtTheHandshakeTimeout() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#,
                              rootExtra: #", "timeouts": { "tls_handshake": "300ms", "header_read": "30s", "idle": "30s" }"#)
        let connection = try RawConnection(port: proxy.port())
        connection.setReadTimeout(10)
        let started = Date()
        let end = ResponseReader(connection).readToEnd()
        XCTAssertTrue(end.closed, "the silent client was never closed")
        XCTAssertLessThan(Date().timeIntervalSince(started), 8, "closed by something else than the 300 ms handshake timeout")
        XCTAssertEqual(try stats(proxy)["tls_handshake_failures"] as? Int, 1)
        XCTAssertEqual(try stats(proxy)["connections_open"] as? Int, 0)
    }

    /// The switch, a drain and a pause run once over TLS: nothing fails, new requests go to green
    /// after the switch, a slow request in flight finishes on blue, held requests complete on green.
    func testSwitchDrainAndHold_overTLS() throws {
        let blue = try backend("blue")
        let green = try backend("green")
        let site = try certificates.leaf("site", names: ["site.test"])
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [site]))]",
                              endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }, { "name": "green", "address": "\#(green.address)", "state": "offline" }]"#)
        let results = Results()
        let port = proxy.port()
        let trust = ["--cacert", certificates.caPath, "--resolve", "site.test:\(port):127.0.0.1"]
        let failed = CurlResult(code: 0, headers: "", body: "", exitStatus: -1)
        let slow = Thread { results.add((try? curl("https://site.test:\(port)/slow?ms=1500", trust)) ?? failed) }
        slow.start()
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false }, "the slow request is not in flight")
        let switched = try proxy.ctl("switch", "web", "green", "--wait")
        XCTAssertEqual(switched.status, 0, switched.stdout)
        XCTAssertTrue(switched.stdout.contains("web/blue: drained"), switched.stdout)
        XCTAssertTrue(waitUntil { results.all.count == 1 })
        XCTAssertEqual(results.all.first?.code, 200)
        XCTAssertEqual(results.all.first?.header("X-Backend"), "blue", "the drained request finished on blue")
        XCTAssertEqual(try https(proxy, "/").body.trimmingCharacters(in: .whitespacesAndNewlines), "green")

        XCTAssertEqual(try proxy.ctl("pause", "web").status, 0)
        let held = (0..<3).map { _ in Thread { results.add((try? curl("https://site.test:\(port)/", trust)) ?? failed) } }
        for thread in held { thread.start() }
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show stats").stdout.contains("held_now 3")) ?? false }, "the TLS requests are not held")
        XCTAssertEqual(try proxy.ctl("switch", "web", "blue").status, 0)
        XCTAssertEqual(try proxy.ctl("resume", "web").status, 0)
        XCTAssertTrue(waitUntil { results.all.count == 4 })
        XCTAssertEqual(results.all.dropFirst().map(\.code), [200, 200, 200])
        XCTAssertEqual(Set(results.all.dropFirst().map { $0.header("X-Backend") ?? "-" }), ["blue"], "held requests go where the snapshot says at resume")
    }

    // MARK: - Reload

    /// A reload with a key that does not match is refused naming the file, the old certificate keeps
    /// serving; after a good reload new handshakes get the new certificate.
    func testReload_mismatchedKeyIsRefused_oldCertServes_thenNewCertAfterAGoodReload() throws {
        let blue = try backend("blue")
        let first = try certificates.leaf("site", names: ["site.test"], organization: "first")
        let second = try certificates.leaf("site2", names: ["site.test"], organization: "second")
        let stray = try certificates.strayKey("stray")
        // The config names fixed paths; the test swaps the files underneath, as an operator renewing would.
        let live = (cert: directory.path("live.pem"), key: directory.path("live.key"))
        try FileManager.default.copyItem(atPath: first.cert, toPath: live.cert)
        try FileManager.default.copyItem(atPath: first.key, toPath: live.key)
        let proxy = try proxy(listeners: "[\(tlsListener(certificates: [live]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        func organization() throws -> String {
            let output = try tlsClient(port: proxy.port(), serverName: "site.test", input: "").output
            return output.split(separator: "\n").first { $0.hasPrefix("subject=") }.map(String.init) ?? output
        }
        XCTAssertTrue(try organization().contains("O = first"))

        try FileManager.default.removeItem(atPath: live.key)
        try FileManager.default.copyItem(atPath: stray, toPath: live.key)
        let refused = try proxy.ctl("reload")
        XCTAssertNotEqual(refused.status, 0, refused.stdout)
        let message = refused.stdout + refused.stderr
        XCTAssertTrue(message.contains("listeners[0].tls"), message)
        XCTAssertTrue(message.contains(live.key) && message.contains("does not belong"), message)
        XCTAssertTrue(try organization().contains("O = first"), "the old certificate must keep serving")
        XCTAssertEqual(try https(proxy, "/").body.trimmingCharacters(in: .whitespacesAndNewlines), "blue")

        for (from, to) in [(second.cert, live.cert), (second.key, live.key)] {
            try FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        let accepted = try proxy.ctl("reload")
        XCTAssertEqual(accepted.status, 0, accepted.stdout + accepted.stderr)
        XCTAssertTrue(try organization().contains("O = second"))
        XCTAssertEqual(try https(proxy, "/").body.trimmingCharacters(in: .whitespacesAndNewlines), "blue")
    }

    /// `proxy --check` reads the certificates as a start would: a key of another certificate fails it, naming the file.
    func testCheck_readsTheCertificates() throws {
        let site = try certificates.leaf("site", names: ["site.test"])
        let stray = try certificates.strayKey("stray")
        func check(key: String) throws -> (status: Int32, stdout: String, stderr: String) {
            let listener = tlsListener(certificates: [(site.cert, key)])
            let text = #"{ "listeners": [\#(listener)], "profiles": [{ "name": "web", "endpoints": [{ "name": "blue", "address": "127.0.0.1:9" }] }] }"#
            let config = try directory.write("check-\(UUID().uuidString.prefix(4)).json", text)
            return try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", config, "--check"])
        }
        XCTAssertEqual(try check(key: site.key).status, 0)
        let refused = try check(key: stray)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("listeners[0].tls") && refused.stderr.contains(stray), refused.stderr)
    }

    // MARK: - Upstream TLS

    /// A TCP listener that terminates TLS routes by the server name of its own handshake.
    func testTCPModeWithTLSAndRoutes_routesByTheHandshakesServerName() throws {
        let blue = try backend("blue")
        let green = try backend("green")
        let a = try certificates.leaf("a", names: ["a.test"])
        let b = try certificates.leaf("b", names: ["b.test"])
        let socket = directory.path("routes.sock")
        let listener = tlsListener(mode: "tcp", certificates: [a, b]).replacingOccurrences(of: #""profile": "web","#, with: #""profile": "web", "routes": [{ "host": "b.test", "profile": "other" }],"#)
        let config = """
            { "listeners": [\(listener)],
              "profiles": [{ "name": "web", "endpoints": [{ "name": "blue", "address": "\(blue.address)" }] },
                           { "name": "other", "endpoints": [{ "name": "green", "address": "\(green.address)" }] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
        let proxy = try Proxy(config: config, directory: directory, socketPath: socket)
        stoppers.append { proxy.stop() }
        XCTAssertEqual(try https(proxy, "/", name: "b.test").header("X-Backend"), "green")
        XCTAssertEqual(try https(proxy, "/", name: "a.test").header("X-Backend"), "blue")
    }

    /// A TCP listener whose endpoint has `tls` wraps the client's plain bytes in TLS towards it.
    func testTCPModeToATLSEndpoint_encryptsTowardsIt() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let terminator = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let tls = #"{ "ca": "\#(certificates.caPath)", "server_name": "site.test" }"#
        let outer = try proxy(listeners: #"[{ "name": "raw", "address": "127.0.0.1:0", "mode": "tcp", "profile": "web" }]"#,
                              endpoints: #"[{ "name": "inner", "address": "127.0.0.1:\#(terminator.port())", "tls": \#(tls) }]"#)
        let answer = try curl(outer.url("/headers"))
        XCTAssertEqual(answer.code, 200, answer.body)
        XCTAssertTrue(answer.body.contains("X-Forwarded-Proto: https"), "the inner proxy did not see TLS: \(answer.body)")
    }

    /// An endpoint behind TLS (a second cutover terminating for the backend) is reached with its
    /// certificate verified against the CA, and probed over TLS; a wrong expected name is a 502
    /// whose log line says why.
    func testUpstreamTLS_verifiesTheEndpoint_probesOverTLS_andAFailedVerificationIs502() throws {
        let blue = try backend("blue")
        let site = try certificates.leaf("site", names: ["site.test"])
        let terminator = try proxy(listeners: "[\(tlsListener(certificates: [site]))]", endpoints: #"[{ "name": "blue", "address": "\#(blue.address)" }]"#)
        let inner = "127.0.0.1:\(terminator.port())"
        let socket = directory.path("outer.sock")
        let config = """
            { "listeners": [{ "name": "good", "address": "127.0.0.1:0", "profile": "good" }, { "name": "bad", "address": "127.0.0.1:0", "profile": "bad" }],
              "profiles": [
                { "name": "good", "probe": { "type": "http", "path": "/healthz", "interval": "200ms", "timeout": "200ms", "rise": 1, "fall": 1 },
                  "endpoints": [{ "name": "tls", "address": "\(inner)", "tls": { "ca": "\(certificates.caPath)", "server_name": "site.test" } }] },
                { "name": "bad", "endpoints": [{ "name": "tls", "address": "\(inner)", "tls": { "ca": "\(certificates.caPath)", "server_name": "wrong.test" } }] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
        let outer = try Proxy(config: config, directory: directory, socketPath: socket, expectListeners: 2)
        stoppers.append { outer.stop() }
        let good = try curl(outer.url("/headers", listener: "good"))
        XCTAssertEqual(good.code, 200, good.body)
        XCTAssertTrue(good.body.contains("X-Forwarded-Proto: https"), "the inner proxy saw the request over TLS: \(good.body)")
        let healthy = waitUntil(timeout: 10) {
            let endpoints = (try? outer.ctl("show", "endpoints", "good").stdout) ?? ""
            return endpoints.contains(" up")
        }
        let endpoints = try outer.ctl("show", "endpoints", "good").stdout
        XCTAssertTrue(healthy, "the TLS probe never saw the endpoint up: \(endpoints)")

        let bad = try curl(outer.url("/", listener: "bad"))
        XCTAssertEqual(bad.code, 502, bad.body)
        XCTAssertTrue(bad.body.contains("certificate verify failed"), bad.body)
        XCTAssertTrue(waitUntil { outer.child.stderr.contains("TLS handshake with bad/tls failed: certificate verify failed") }, outer.child.stderr)
    }
}

/// Answers collected from client threads.
private final class Results: @unchecked Sendable {  // `items` is guarded by `lock`
    private let lock = NSLock()
    private var items: [CurlResult] = []

    func add(_ result: CurlResult) { lock.withLock { items.append(result) } }
    var all: [CurlResult] { lock.withLock { items } }
}
