import Foundation
import Glibc
import XCTest

/// Several applications behind one listener: the real binary routing by host, wildcard, path
/// prefix and TLS server name to profiles of their own, each with its own gates and switches.
final class RoutingTests: XCTestCase {
    private var directory: TemporaryDirectory!
    private var backends: [String: Backend] = [:]
    private var proxy: Proxy?
    private var children: [ChildProcess] = []

    override func setUpWithError() throws {
        directory = try TemporaryDirectory()
    }

    override func tearDown() {
        proxy?.stop()
        for child in children { child.stop() }
        for backend in backends.values { backend.stop() }
        proxy = nil
        children = []
        backends = [:]
        directory = nil
    }

    /// The routes of listener `front`, in the order the reload test swaps.
    static let frontRoutes = [
        #"{ "host": "api.example.com", "profile": "api" }"#,
        #"{ "host": "*.docs.example.com", "profile": "docs" }"#,
        #"{ "path_prefix": "/docs", "strip_prefix": true, "profile": "docs" }"#,
    ]

    /// Backends `web`, `api-blue`, `api-green` (offline standby) and `docs`; listener `front` with
    /// `routes` and default `web`, and listener `strict` with one route and no default.
    private func start(frontRoutes: [String] = RoutingTests.frontRoutes) throws -> Proxy {
        for name in ["web", "api-blue", "api-green", "docs"] where backends[name] == nil {
            backends[name] = try Backend(name: name, directory: directory)
        }
        let socket = directory.path("admin-\(UUID().uuidString.prefix(4)).sock")
        let started = try Proxy(config: config(frontRoutes: frontRoutes, socket: socket), directory: directory, socketPath: socket, expectListeners: 2)
        proxy = started
        return started
    }

    private func config(frontRoutes: [String], socket: String) -> String {
        func endpoint(_ name: String, _ backend: String, state: String = "online") -> String {
            #"{ "name": "\#(name)", "address": "\#(backends[backend]!.address)", "state": "\#(state)" }"#
        }
        return """
            { "listeners": [
                { "name": "front", "address": "127.0.0.1:0", "profile": "web", "routes": [\(frontRoutes.joined(separator: ", "))] },
                { "name": "strict", "address": "127.0.0.1:0", "routes": [{ "host": "api.example.com", "profile": "api" }] } ],
              "profiles": [
                { "name": "web", "endpoints": [\(endpoint("one", "web"))] },
                { "name": "api", "endpoints": [\(endpoint("blue", "api-blue")), \(endpoint("green", "api-green", state: "offline"))] },
                { "name": "docs", "endpoints": [\(endpoint("one", "docs"))] } ],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
    }

    private func get(_ proxy: Proxy, _ path: String, host: String, listener: String = "front") throws -> CurlResult {
        try curl(proxy.url(path, listener: listener), ["-H", "Host: \(host)"])
    }

    /// Exact host, wildcard, path prefix with strip, and the default each reach their own backend.
    func testHostWildcardAndPrefix_reachTheirProfiles() throws {
        let proxy = try start()
        let cases: [(path: String, host: String, backend: String)] = [
            ("/", "api.example.com", "api-blue"),
            ("/", "API.Example.com:8443", "api-blue"),
            ("/", "eu.docs.example.com", "docs"),
            ("/", "a.b.docs.example.com", "docs"),
            ("/", "docs.example.com", "web"),
            ("/docs", "www.example.com", "docs"),
            ("/docsx", "www.example.com", "web"),
            ("/", "www.example.com", "web"),
            ("/docs", "api.example.com", "api-blue"),
        ]
        for item in cases {
            let result = try get(proxy, item.path, host: item.host)
            XCTAssertEqual(result.code, 200, "\(item)")
            XCTAssertEqual(result.header("X-Backend"), item.backend, "\(item.host)\(item.path)")
        }
        // strip_prefix: the docs backend sees /headers, not /docs/headers.
        let stripped = try get(proxy, "/docs/headers?x=1", host: "www.example.com")
        XCTAssertEqual(stripped.header("X-Backend"), "docs")
        XCTAssertTrue(stripped.body.hasPrefix("GET /headers?x=1 HTTP/1.1\r\n"), stripped.body)
    }

    /// A listener without a default answers 404 with a body naming the host, and routes what matches.
    func testNoDefaultProfile_answers404NamingTheHost() throws {
        let proxy = try start()
        let miss = try get(proxy, "/", host: "nobody.example.com", listener: "strict")
        XCTAssertEqual(miss.code, 404)
        XCTAssertTrue(miss.body.contains(#"no route for host "nobody.example.com""#), miss.body)
        XCTAssertEqual(try get(proxy, "/", host: "api.example.com", listener: "strict").header("X-Backend"), "api-blue")
    }

    /// An absolute-form target names the host itself and wins over `Host`; a request without
    /// `Host` is still refused with 400 before routing (HTTP/1.1), or routed by path only (HTTP/1.0).
    func testAbsoluteFormAndMissingHost() throws {
        let proxy = try start()
        let connection = try RawConnection(port: proxy.port("front"))
        connection.setReadTimeout(5)
        let reader = ResponseReader(connection)
        connection.send("GET http://api.example.com/ HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        XCTAssertEqual(reader.next()?.header("X-Backend"), "api-blue")
        // Stripped and sent origin-form: the docs backend sees /headers.
        connection.send("GET http://www.example.com/docs/headers HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        let stripped = try XCTUnwrap(reader.next())
        XCTAssertEqual(stripped.header("X-Backend"), "docs")
        XCTAssertTrue(stripped.text.hasPrefix("GET /headers HTTP/1.1\r\n"), stripped.text)
        connection.send("GET /docs HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(reader.next()?.header("X-Backend"), "docs")
        connection.send("GET / HTTP/1.1\r\n\r\n")
        let missing = try XCTUnwrap(reader.next())
        XCTAssertEqual(missing.status, 400)
        XCTAssertTrue(missing.text.contains("missing Host header"), missing.text)
        let strict = try RawConnection(port: proxy.port("strict"))
        strict.setReadTimeout(5)
        strict.send("GET / HTTP/1.0\r\n\r\n")
        let notFound = try XCTUnwrap(ResponseReader(strict).next())
        XCTAssertEqual(notFound.status, 404)
        XCTAssertTrue(notFound.text.contains("no route for a request without Host on listener strict"), notFound.text)
    }

    /// `show profiles` lists the routes that lead to each profile, defaults included.
    func testShowProfiles_listsTheRoutesToEachProfile() throws {
        let proxy = try start()
        let answer = try proxy.ctl("show", "profiles", json: true)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any])
        let profiles = try XCTUnwrap(object["profiles"] as? [[String: Any]])
        let routes = Dictionary(uniqueKeysWithValues: profiles.map { ($0["name"] as! String, $0["routes"] as? [String] ?? []) })
        XCTAssertEqual(routes["web"], ["front default"])
        XCTAssertEqual(routes["api"], ["front api.example.com", "strict api.example.com"])
        XCTAssertEqual(routes["docs"], ["front *.docs.example.com", "front */docs (strip)"])
        let text = try proxy.ctl("show", "profiles").stdout
        XCTAssertTrue(text.contains("ROUTES"), text)
        XCTAssertTrue(text.contains("front */docs (strip)"), text)
    }

    /// One keep-alive client connection alternating hosts: every request lands on its own profile.
    func testKeepAliveConnection_carriesRequestsForSeveralProfiles() throws {
        let proxy = try start()
        let connection = try RawConnection(port: proxy.port("front"))
        connection.setReadTimeout(5)
        let reader = ResponseReader(connection)
        let sequence = ["api.example.com", "www.example.com", "x.docs.example.com", "api.example.com", "www.example.com", "x.docs.example.com"]
        let expected = ["api-blue", "web", "docs", "api-blue", "web", "docs"]
        for (host, backend) in zip(sequence, expected) {
            connection.send("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            let response = try XCTUnwrap(reader.next(), "no answer for \(host)")
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.header("X-Backend"), backend, host)
        }
        // Pipelined, in one write: answered in order, each by its own profile.
        connection.send("GET / HTTP/1.1\r\nHost: x.docs.example.com\r\n\r\nGET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        XCTAssertEqual(reader.next()?.header("X-Backend"), "docs")
        XCTAssertEqual(reader.next()?.header("X-Backend"), "api-blue")
        let stats = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(proxy.ctl("show", "stats", json: true).stdout.utf8)) as? [String: Any])
        XCTAssertEqual(stats["connections_accepted"] as? Int, 1, "the requests did not all share one client connection")
    }

    /// `maintenance api on` closes the api app only; web and docs keep serving on the same listener.
    func testMaintenanceOnOneProfile_leavesTheOthersServing() throws {
        let proxy = try start()
        XCTAssertEqual(try proxy.ctl("maintenance", "api", "on").status, 0)
        let api = try get(proxy, "/", host: "api.example.com")
        XCTAssertEqual(api.code, 503)
        XCTAssertNotNil(api.header("Retry-After"))
        XCTAssertEqual(try get(proxy, "/", host: "www.example.com").header("X-Backend"), "web")
        XCTAssertEqual(try get(proxy, "/docs", host: "www.example.com").header("X-Backend"), "docs")
        XCTAssertEqual(try proxy.ctl("maintenance", "api", "off").status, 0)
        XCTAssertEqual(try get(proxy, "/", host: "api.example.com").header("X-Backend"), "api-blue")
    }

    /// `pause api` holds api requests only: web answers at once while an api request waits, and
    /// `resume` releases it to api's backend.
    func testPauseOfOneProfile_holdsOnlyItsRequests() throws {
        let proxy = try start()
        XCTAssertEqual(try proxy.ctl("pause", "api").status, 0)
        let held = try RawConnection(port: proxy.port("front"))
        held.setReadTimeout(0.5)
        held.send("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        let reader = ResponseReader(held)
        XCTAssertNil(reader.next(), "a request for the paused profile was answered")
        XCTAssertEqual(try get(proxy, "/", host: "www.example.com").header("X-Backend"), "web")
        XCTAssertEqual(try get(proxy, "/docs", host: "api.example.org").header("X-Backend"), "docs")
        XCTAssertEqual(try proxy.ctl("resume", "api").status, 0)
        held.setReadTimeout(5)
        XCTAssertEqual(reader.next()?.header("X-Backend"), "api-blue")
    }

    /// A switch of api under load on all three apps: api moves to green, web and docs see not one
    /// error and not one request on another backend.
    func testSwitchOfOneProfileUnderLoad_leavesTheOtherTwoUntouched() throws {
        let proxy = try start()
        let port = proxy.port("front")
        let web = LoadClient(), docs = LoadClient(), api = LoadClient()
        web.start(port: port, connections: 2, host: "www.example.com")
        docs.start(port: port, connections: 2, host: "x.docs.example.com")
        api.start(port: port, connections: 2, host: "api.example.com")
        XCTAssertTrue(waitUntil(timeout: 10) { web.results.count > 20 && docs.results.count > 20 && api.results.count > 20 })
        let switched = try proxy.ctl("switch", "api", "green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        let afterSwitch = Date()
        XCTAssertTrue(waitUntil(timeout: 10) { api.results.contains { $0.started > afterSwitch } })
        let webBefore = web.results.count, docsBefore = docs.results.count
        XCTAssertTrue(waitUntil(timeout: 10) { web.results.count > webBefore + 20 && docs.results.count > docsBefore + 20 })
        web.stop()
        docs.stop()
        api.stop()
        for (name, client, backend) in [("web", web, "web"), ("docs", docs, "docs")] {
            XCTAssertEqual(client.failures, [], name)
            XCTAssertEqual(client.results.filter { $0.status != 200 }.count, 0, "\(name) saw errors")
            XCTAssertEqual(Set(client.results.map(\.backend)), [backend], "\(name) requests moved")
        }
        XCTAssertEqual(api.failures, [])
        XCTAssertEqual(api.results.filter { $0.status != 200 }.count, 0, "api saw errors during its own switch")
        XCTAssertTrue(api.results.filter { $0.started > afterSwitch }.allSatisfy { $0.backend == "api-green" }, "api reached blue after the switch")
    }

    /// A reload that reorders, removes and adds routes applies to the next request on an open
    /// keep-alive connection, which stays open.
    func testReloadChangesRoutes_withoutDroppingAConnection() throws {
        let proxy = try start()
        let connection = try RawConnection(port: proxy.port("front"))
        connection.setReadTimeout(5)
        let reader = ResponseReader(connection)
        func backend(_ path: String, _ host: String) -> String? {
            connection.send("GET \(path) HTTP/1.1\r\nHost: \(host)\r\n\r\n")
            return reader.next()?.header("X-Backend")
        }
        XCTAssertEqual(backend("/", "api.example.com"), "api-blue")
        XCTAssertEqual(backend("/docs", "www.example.com"), "docs")
        XCTAssertEqual(backend("/static/x", "www.example.com"), "web")
        // Reordered, the /docs route removed, a /static route added, api.example.com now docs.
        let next = [
            #"{ "path_prefix": "/static", "profile": "api" }"#,
            #"{ "host": "*.docs.example.com", "profile": "docs" }"#,
            #"{ "host": "api.example.com", "profile": "docs" }"#,
        ]
        try config(frontRoutes: next, socket: proxy.socketPath).write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        let reload = try proxy.ctl("reload")
        XCTAssertEqual(reload.status, 0, reload.stdout + reload.stderr)
        XCTAssertEqual(backend("/", "api.example.com"), "docs")
        XCTAssertEqual(backend("/docs", "www.example.com"), "web")
        XCTAssertEqual(backend("/static/x", "www.example.com"), "api-blue")
        let stats = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(proxy.ctl("show", "stats", json: true).stdout.utf8)) as? [String: Any])
        XCTAssertEqual(stats["connections_accepted"] as? Int, 1, "the keep-alive connection was dropped by the reload")
    }

    /// A reload whose routes would be ambiguous is refused with the key path; the old routes stay.
    func testReloadWithDuplicateRoutes_isRefusedAndChangesNothing() throws {
        let proxy = try start()
        let bad = RoutingTests.frontRoutes + [#"{ "host": "API.example.com.", "profile": "docs" }"#]
        try config(frontRoutes: bad, socket: proxy.socketPath).write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        let reload = try proxy.ctl("reload")
        XCTAssertNotEqual(reload.status, 0)
        XCTAssertTrue((reload.stdout + reload.stderr).contains("listeners[0].routes[3]: matches exactly the same requests as listeners[0].routes[0]"), reload.stdout + reload.stderr)
        XCTAssertEqual(try get(proxy, "/", host: "api.example.com").header("X-Backend"), "api-blue")
    }

    // MARK: - SNI

    /// A TLS server (`openssl s_server`) with a certificate for `name`; returns its address.
    private func tlsBackend(_ name: String) throws -> String {
        let key = directory.path("\(name).key"), cert = directory.path("\(name).pem")
        let made = try IntegrationTests.run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
            "-subj", "/CN=\(name)", "-days", "1",
        ])
        XCTAssertEqual(made.status, 0, made.stderr)
        let server = try ChildProcess(
            URL(fileURLWithPath: "/usr/bin/openssl"), ["s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key", key, "-www"],
            directory: directory, label: "s_server-\(name)")
        children.append(server)
        var address = ""
        _ = waitUntil(timeout: 10) {
            guard let line = server.stdout.split(separator: "\n").first(where: { $0.hasPrefix("ACCEPT ") }) else { return false }
            address = String(line.dropFirst("ACCEPT ".count))
            return true
        }
        guard !address.isEmpty else { throw FixtureError("openssl s_server for \(name) did not start: \(server.stderr)") }
        return address
    }

    /// The certificate subject `openssl s_client` saw, asking for `serverName` (none when nil).
    private static func subject(port: UInt16, serverName: String?) throws -> String {
        let arguments = ["s_client", "-connect", "127.0.0.1:\(port)"] + (serverName.map { ["-servername", $0] } ?? ["-noservername"])
        let result = try IntegrationTests.run("/usr/bin/openssl", arguments, input: "", timeout: 15)
        return subjectLine(in: result.stdout) ?? "(no certificate: \(result.stderr.suffix(200)))"
    }

    /// The `subject=` line of `openssl s_client`'s output, without spaces ("CN=alpha").
    private static func subjectLine(in output: String) -> String? {
        let line = output.split(separator: "\n").first { $0.hasPrefix("subject=") }
        return line.map { String($0.dropFirst("subject=".count)).replacingOccurrences(of: " ", with: "") }
    }

    /// A TCP listener routes TLS connections by the ClientHello's server name, untouched (the
    /// backend's own certificate reaches the client), with a default for names it does not know.
    func testSNIRouting_picksTheBackendByServerName() throws {
        let alpha = try tlsBackend("alpha"), beta = try tlsBackend("beta"), other = try tlsBackend("other")
        let socket = directory.path("admin-sni.sock")
        let config = """
            { "listeners": [
                { "name": "tls", "address": "127.0.0.1:0", "mode": "tcp", "profile": "other",
                  "routes": [{ "host": "alpha.test", "profile": "alpha" }, { "host": "*.beta.test", "profile": "beta" }] } ],
              "profiles": [
                { "name": "alpha", "endpoints": [{ "name": "one", "address": "\(alpha)" }] },
                { "name": "beta", "endpoints": [{ "name": "one", "address": "\(beta)" }] },
                { "name": "other", "endpoints": [{ "name": "one", "address": "\(other)" }] } ],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
        let proxy = try Proxy(config: config, directory: directory, socketPath: socket)
        self.proxy = proxy
        let port = proxy.port("tls")
        XCTAssertEqual(try Self.subject(port: port, serverName: "alpha.test"), "CN=alpha")
        XCTAssertEqual(try Self.subject(port: port, serverName: "ALPHA.test"), "CN=alpha")
        XCTAssertEqual(try Self.subject(port: port, serverName: "x.beta.test"), "CN=beta")
        XCTAssertEqual(try Self.subject(port: port, serverName: "beta.test"), "CN=other")
        XCTAssertEqual(try Self.subject(port: port, serverName: nil), "CN=other")
    }

    /// A paused profile holds the connections its server name routes to, after the peek; the
    /// others pass, and resume sends the held one on with its ClientHello intact.
    func testSNIRouting_holdsOnlyThePausedProfile() throws {
        let alpha = try tlsBackend("alpha"), other = try tlsBackend("other")
        let socket = directory.path("admin-sni3.sock")
        let config = """
            { "listeners": [{ "name": "tls", "address": "127.0.0.1:0", "mode": "tcp", "profile": "other",
                              "routes": [{ "host": "alpha.test", "profile": "alpha" }] }],
              "profiles": [
                { "name": "alpha", "endpoints": [{ "name": "one", "address": "\(alpha)" }] },
                { "name": "other", "endpoints": [{ "name": "one", "address": "\(other)" }] } ],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
        let proxy = try Proxy(config: config, directory: directory, socketPath: socket)
        self.proxy = proxy
        let port = proxy.port("tls")
        XCTAssertEqual(try proxy.ctl("pause", "alpha").status, 0)
        // Started from this thread and read from its output file: no second thread starting processes.
        let held = try ChildProcess(
            URL(fileURLWithPath: "/usr/bin/openssl"), ["s_client", "-connect", "127.0.0.1:\(port)", "-servername", "alpha.test"],
            directory: directory, label: "s_client-held")
        children.append(held)
        func heldSubject() -> String? { Self.subjectLine(in: held.stdout) }
        func heldNow() -> Int? {
            let stats = try? JSONSerialization.jsonObject(with: Data(proxy.ctl("show", "stats", json: true).stdout.utf8)) as? [String: Any]
            return stats?["held_now"] as? Int
        }
        XCTAssertTrue(waitUntil(timeout: 10) { heldNow() == 1 }, "the alpha connection was not held")
        XCTAssertEqual(try Self.subject(port: port, serverName: "else.test"), "CN=other")
        XCTAssertNil(heldSubject(), "the held connection was answered before resume")
        XCTAssertTrue(held.isRunning, "the held client gave up: \(held.stderr)")
        XCTAssertEqual(try proxy.ctl("resume", "alpha").status, 0)
        XCTAssertTrue(waitUntil(timeout: 15) { heldSubject() != nil }, "no certificate after resume: \(held.stderr)")
        XCTAssertEqual(heldSubject(), "CN=alpha")
    }

    /// Without a default, a server name no route knows gets its connection closed, unanswered.
    func testSNIRoutingWithoutDefault_closesUnknownNames() throws {
        let alpha = try tlsBackend("alpha")
        let socket = directory.path("admin-sni2.sock")
        let config = """
            { "listeners": [{ "name": "tls", "address": "127.0.0.1:0", "mode": "tcp", "routes": [{ "host": "alpha.test", "profile": "alpha" }] }],
              "profiles": [{ "name": "alpha", "endpoints": [{ "name": "one", "address": "\(alpha)" }] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1 }
            """
        let proxy = try Proxy(config: config, directory: directory, socketPath: socket)
        self.proxy = proxy
        XCTAssertEqual(try Self.subject(port: proxy.port("tls"), serverName: "alpha.test"), "CN=alpha")
        XCTAssertTrue(try Self.subject(port: proxy.port("tls"), serverName: "nope.test").hasPrefix("(no certificate"))
    }
}
