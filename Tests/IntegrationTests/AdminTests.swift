import Foundation
import Glibc
import XCTest

/// The operator's interfaces end to end: every admin command through `cutover ctl` (text and
/// `--json`), its errors and permissions, and the admin HTTP listener (`/health`, `/metrics`, `/status`).
final class AdminTests: XCTestCase {
    /// Two backends (blue online, green offline) behind a proxy with the admin socket and admin HTTP.
    private final class Setup {
        let dir: TemporaryDirectory
        let blue: Backend
        let green: Backend
        let proxy: Proxy
        let adminPort: UInt16

        init(token: String? = nil, extraEndpoints: String = "") throws {
            let dir = try TemporaryDirectory()
            let blue = try Backend(name: "blue", directory: dir)
            let green = try Backend(name: "green", directory: dir)
            let socket = dir.path("admin.sock")
            let proxy = try Proxy(config: """
                { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
                  "profiles": [{ "name": "web", "endpoints": [
                      { "name": "blue", "address": "\(blue.address)" },
                      { "name": "green", "address": "\(green.address)", "state": "offline" }\(extraEndpoints) ] }],
                  "admin": { "socket": "\(socket)", "http": "127.0.0.1:0"\(token.map { ", \"token\": \"\($0)\"" } ?? "") },
                  "access_log": "off" }
                """, directory: dir, socketPath: socket)
            var port: UInt16 = 0
            waitUntil {
                port = AdminTests.adminHTTPPort(in: proxy.child.stderr) ?? 0
                return port != 0
            }
            (self.dir, self.blue, self.green, self.proxy, self.adminPort) = (dir, blue, green, proxy, port)
            guard port != 0 else { throw FixtureError("no admin http line in the proxy log: \(proxy.child.stderr)") }
        }

        func admin(_ path: String, _ extra: [String] = []) throws -> CurlResult {
            try curl("http://127.0.0.1:\(adminPort)\(path)", extra)
        }

        func stop() {
            proxy.stop()
            blue.stop()
            green.stop()
        }
    }

    /// The port from the proxy's "admin http on http://HOST:PORT/" log line.
    static func adminHTTPPort(in log: String) -> UInt16? {
        guard let range = log.range(of: "admin http on http://") else { return nil }
        let address = log[range.upperBound...].prefix { $0 != "/" }
        return address.split(separator: ":").last.flatMap { UInt16($0) }
    }

    /// One JSON object per line of `text`.
    private func jsonObjects(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { row in
            let object = try? JSONSerialization.jsonObject(with: Data(row.utf8)) as? [String: Any]
            XCTAssertNotNil(object, "not a JSON object: \(row)", file: file, line: line)
            return object
        }
    }

    private func ctlJSON(_ proxy: Proxy, _ words: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let result = try proxy.ctl(words, json: true)
        XCTAssertEqual(result.status, 0, "\(words): \(result.stdout)\(result.stderr)", file: file, line: line)
        let objects = jsonObjects(result.stdout, file: file, line: line)
        XCTAssertEqual(objects.count, 1, "\(words): \(result.stdout)", file: file, line: line)
        return objects.first ?? [:]
    }

    private func ctlText(_ proxy: Proxy, _ words: String, expect prefix: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let result = try proxy.ctl(words)
        XCTAssertEqual(result.status, 0, "\(words): \(result.stdout)\(result.stderr)", file: file, line: line)
        XCTAssertTrue(result.stdout.hasPrefix(prefix), "\(words): expected \(prefix)…, got \(result.stdout)", file: file, line: line)
        return result.stdout
    }

    // MARK: - The admin socket through cutover ctl

    /// Every command answers through `cutover ctl` in text (OK lines, tables) and in JSON with the documented fields.
    func testEveryCommand_answersInTextAndJSON() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let proxy = setup.proxy
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")

        // help
        let help = try ctlText(proxy, "help", expect: "help")
        for command in ["show profiles", "show endpoints", "show stats", "show events", "switch", "set endpoint", "pause", "resume", "maintenance", "readonly", "reload"] {
            XCTAssertTrue(help.contains(command), "help lacks \(command)")
        }
        XCTAssertEqual((try ctlJSON(proxy, "help")["commands"] as? [String])?.isEmpty, false)

        // show profiles
        let profilesText = try ctlText(proxy, "show profiles", expect: "PROFILE")
        XCTAssertTrue(profilesText.contains("web") && profilesText.contains("blue"), profilesText)
        let profiles = try ctlJSON(proxy, "show profiles")["profiles"] as? [[String: Any]] ?? []
        XCTAssertEqual(profiles.count, 1)
        XCTAssertEqual(profiles.first?["name"] as? String, "web")
        XCTAssertEqual(profiles.first?["live"] as? [String], ["blue"])
        for key in ["paused", "maintenance", "readonly", "held", "endpoints"] { XCTAssertNotNil(profiles.first?[key], "profile lacks \(key)") }

        // show endpoints [PROFILE]
        let endpointsText = try ctlText(proxy, "show endpoints", expect: "PROFILE")
        XCTAssertTrue(endpointsText.contains("ENDPOINT") && endpointsText.contains("INFLIGHT") && endpointsText.contains("green"), endpointsText)
        for words in ["show endpoints", "show endpoints web"] {
            let endpoints = try ctlJSON(proxy, words)["endpoints"] as? [[String: Any]] ?? []
            XCTAssertEqual(endpoints.map { $0["name"] as? String }, ["blue", "green"], words)
            for endpoint in endpoints {
                XCTAssertEqual(endpoint["profile"] as? String, "web")
                XCTAssertTrue(["online", "offline", "draining"].contains(endpoint["state"] as? String ?? ""), "\(endpoint)")
                XCTAssertTrue(["unknown", "up", "down"].contains(endpoint["health"] as? String ?? ""), "\(endpoint)")
                for key in ["priority", "weight", "in_flight", "connections"] { XCTAssertNotNil(endpoint[key] as? Int, "endpoint lacks \(key): \(endpoint)") }
            }
            XCTAssertEqual(endpoints.first?["state"] as? String, "online")
            XCTAssertEqual(endpoints.last?["state"] as? String, "offline")
        }

        // show stats
        let statsText = try ctlText(proxy, "show stats", expect: "uptime_seconds")
        XCTAssertTrue(statsText.contains("requests 1"), statsText)
        let stats = try ctlJSON(proxy, "show stats")
        for key in ["connections_open", "requests", "held_now", "switches", "snapshot_generation"] { XCTAssertNotNil(stats[key] as? Int, "stats lack \(key)") }

        // switch (text), then its JSON twin
        XCTAssertTrue(try ctlText(proxy, "switch web green", expect: "OK switched web to green").contains("green"))
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        let switched = try ctlJSON(proxy, "switch web blue --wait")
        XCTAssertEqual(switched["ok"] as? Bool, true)
        XCTAssertEqual(switched["endpoint"] as? String, "blue")
        XCTAssertEqual(switched["draining"] as? [String], ["green"])
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")

        // set endpoint ... priority / weight
        _ = try ctlText(proxy, "set endpoint web/green online priority 2 weight 7", expect: "OK web/green online priority 2 weight 7")
        let green = (try ctlJSON(proxy, "show endpoints web")["endpoints"] as? [[String: Any]] ?? []).last ?? [:]
        XCTAssertEqual(green["priority"] as? Int, 2)
        XCTAssertEqual(green["weight"] as? Int, 7)
        XCTAssertEqual(green["state"] as? String, "online")
        XCTAssertEqual(try ctlJSON(proxy, "set endpoint web/green offline weight 1")["ok"] as? Bool, true)

        // pause / resume
        _ = try ctlText(proxy, "pause web", expect: "OK paused web")
        XCTAssertEqual(try ctlJSON(proxy, "show profiles")["profiles"].flatMap { ($0 as? [[String: Any]])?.first?["paused"] as? Bool }, true)
        _ = try ctlText(proxy, "resume web", expect: "OK resumed web")
        XCTAssertEqual(try ctlJSON(proxy, "pause web")["paused"] as? Bool, true)
        let resumed = try ctlJSON(proxy, "resume web")
        XCTAssertEqual(resumed["paused"] as? Bool, false)
        XCTAssertEqual(resumed["released"] as? Int, 0)

        // maintenance / readonly
        _ = try ctlText(proxy, "maintenance web on", expect: "OK maintenance web on")
        XCTAssertEqual(try curl(proxy.url()).code, 503)
        _ = try ctlText(proxy, "maintenance web off", expect: "OK maintenance web off")
        XCTAssertEqual(try ctlJSON(proxy, "maintenance web on")["maintenance"] as? Bool, true)
        XCTAssertEqual(try ctlJSON(proxy, "maintenance web off")["maintenance"] as? Bool, false)
        _ = try ctlText(proxy, "readonly web on", expect: "OK readonly web on")
        XCTAssertEqual(try curl(proxy.url("/echo"), ["-X", "POST", "-d", "x"]).code, 503)
        XCTAssertEqual(try curl(proxy.url()).code, 200)
        _ = try ctlText(proxy, "readonly web off", expect: "OK readonly web off")
        XCTAssertEqual(try ctlJSON(proxy, "readonly web on")["readonly"] as? Bool, true)
        XCTAssertEqual(try ctlJSON(proxy, "readonly web off")["readonly"] as? Bool, false)

        // show events [N]
        let eventsText = try ctlText(proxy, "show events", expect: "20")
        XCTAssertTrue(eventsText.contains("web/green online (switch)"), eventsText)
        XCTAssertTrue(eventsText.contains("maintenance on"), eventsText)
        let lastTwo = try ctlJSON(proxy, "show events 2")["events"] as? [[String: Any]] ?? []
        XCTAssertEqual(lastTwo.count, 2)
        XCTAssertEqual(lastTwo.last?["state"] as? String, "readonly off")
        for event in lastTwo {
            for key in ["time", "profile", "state", "cause"] { XCTAssertNotNil(event[key] as? String, "event lacks \(key): \(event)") }
        }

        // reload
        _ = try ctlText(proxy, "reload", expect: "OK reloaded \(proxy.configPath)")
        let reloaded = try ctlJSON(proxy, "reload")
        XCTAssertEqual(reloaded["ok"] as? Bool, true)
        XCTAssertTrue((reloaded["message"] as? String ?? "").contains("1 listeners, 1 profiles"), "\(reloaded)")
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
    }

    /// Unknown profiles and endpoints and bad arguments answer one `ERR <code>: <message>` line and ctl exits 1.
    func testErrors_unknownProfileEndpointAndBadArguments_exitOne() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let proxy = setup.proxy
        let cases: [(String, String)] = [
            ("show endpoints nope", "ERR unknown-profile: "),
            ("switch nope blue", "ERR unknown-profile: "),
            ("pause nope", "ERR unknown-profile: "),
            ("maintenance nope on", "ERR unknown-profile: "),
            ("switch web gren", "ERR unknown-endpoint: "),
            ("set endpoint web/gren offline", "ERR unknown-endpoint: "),
            ("set endpoint web/blue sideways", "ERR bad-arguments: "),
            ("set endpoint web/blue weight 5000", "ERR bad-arguments: "),
            ("set endpoint blue offline", "ERR bad-arguments: "),
            ("show events zero", "ERR bad-arguments: "),
            ("show endpoints web extra", "ERR bad-arguments: "),
            ("maintenance web maybe", "ERR bad-arguments: "),
            ("switch web", "ERR bad-arguments: "),
            ("switch web green --soon", "ERR bad-arguments: "),
            ("frobnicate", "ERR unknown-command: "),
        ]
        for (command, prefix) in cases {
            let result = try proxy.ctl(command)
            XCTAssertEqual(result.status, 1, "\(command): \(result.stdout)\(result.stderr)")
            XCTAssertTrue(result.stdout.hasPrefix(prefix), "\(command): expected \(prefix)…, got \(result.stdout)")
            XCTAssertEqual(result.stdout.split(separator: "\n").count, 1, "\(command): one line, got \(result.stdout)")
        }
        XCTAssertTrue(try proxy.ctl("switch web gren").stdout.contains("blue, green"), "the message names the endpoints there are")

        // With --json, every error is an object, also for a line that does not parse.
        let unknown = try proxy.ctl("show endpoints nope", json: true)
        XCTAssertEqual(unknown.status, 1)
        let object = jsonObjects(unknown.stdout).first ?? [:]
        XCTAssertEqual(object["ok"] as? Bool, false)
        XCTAssertEqual(object["code"] as? String, "unknown-profile")
        XCTAssertTrue((object["message"] as? String ?? "").contains("nope"))
        let unknownEndpoint = try proxy.ctl("switch web gren", json: true)
        XCTAssertEqual(unknownEndpoint.status, 1)
        XCTAssertEqual(jsonObjects(unknownEndpoint.stdout).first?["code"] as? String, "unknown-endpoint")
        let bad = try proxy.ctl("show events zero", json: true)
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(jsonObjects(bad.stdout).first?["code"] as? String, "bad-arguments", bad.stdout)

        // Nothing changed: blue still serves.
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
    }

    /// `cutover ctl` without a command sends stdin's lines on one connection, answers in order, and exits 1 if one failed.
    func testCommandsOnStdin_answerInOrder_andAFailureSetsExitStatus() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let proxy = setup.proxy
        let script = """
            show profiles
            # a comment, skipped

            switch web green
            show endpoints web
            show endpoints nope
            show events 5
            """
        let result = try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", proxy.socketPath], input: script + "\n")
        XCTAssertEqual(result.status, 1, result.stdout + result.stderr)
        let out = result.stdout
        let order = ["PROFILE  LIVE", "OK switched web to green", "PROFILE  ENDPOINT", "ERR unknown-profile: ", "web/green online (switch)"]
        var cursor = out.startIndex
        for expected in order {
            guard let found = out.range(of: expected, range: cursor..<out.endIndex) else {
                XCTFail("\(expected) missing or out of order in:\n\(out)")
                return
            }
            cursor = found.upperBound
        }
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")

        // All fine → exit 0; with --json every answer is one JSON object per line.
        let json = try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", proxy.socketPath, "--json"], input: "show stats\nshow profiles\nshow endpoints\n")
        XCTAssertEqual(json.status, 0, json.stdout + json.stderr)
        let objects = jsonObjects(json.stdout)
        XCTAssertEqual(objects.count, 3, json.stdout)
        XCTAssertNotNil(objects.first?["requests"])
        XCTAssertNotNil(objects.dropFirst().first?["profiles"])
        XCTAssertNotNil(objects.last?["endpoints"])
    }

    /// The admin socket is created 0600: another user (nobody) cannot open it; its owner can.
    func testSocket_isMode0600_andAnotherUserCannotOpenIt() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run a command as nobody") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") || FileManager.default.isExecutableFile(atPath: "/sbin/runuser") else {
            throw XCTSkip("runuser is not installed")
        }
        let setup = try Setup()
        defer { setup.stop() }
        var info = stat()
        XCTAssertEqual(stat(setup.proxy.socketPath, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(info.st_mode & 0o777, 0o600, String(info.st_mode & 0o777, radix: 8))

        // nobody must be able to run the binary and reach the socket's directory; only the socket's mode stops it.
        XCTAssertEqual(chmod(setup.dir.url.path, 0o755), 0)
        let binary = setup.dir.path("cutover")
        try FileManager.default.copyItem(atPath: CutoverBinary.url.path, toPath: binary)
        XCTAssertEqual(chmod(binary, 0o755), 0)
        let version = try IntegrationTests.run("/usr/sbin/runuser", ["-u", "nobody", "--", binary, "--version"])
        XCTAssertEqual(version.status, 0, "nobody cannot run the copied binary: \(version.stderr)")

        let denied = try IntegrationTests.run("/usr/sbin/runuser", ["-u", "nobody", "--", binary, "ctl", "--socket", setup.proxy.socketPath, "show", "stats"])
        XCTAssertNotEqual(denied.status, 0, denied.stdout)
        XCTAssertTrue(denied.stderr.contains("Permission denied"), "expected a permission error, got: \(denied.stderr)")
        XCTAssertFalse(denied.stdout.contains("uptime_seconds"), denied.stdout)

        let owner = try setup.proxy.ctl("show stats")
        XCTAssertEqual(owner.status, 0, owner.stderr)
    }

    // MARK: - Admin HTTP

    /// `/metrics` is valid Prometheus text 0.0.4 with HELP and TYPE for each family, and its counters move with traffic.
    func testMetrics_parseAsPrometheusText_andCountersMoveWithTraffic() throws {
        // "dead" points at a port where nothing listens, to make connect errors happen.
        let setup = try Setup(extraEndpoints: """
            , { "name": "dead", "address": "127.0.0.1:1", "state": "offline" }
            """)
        defer { setup.stop() }
        let first = try setup.admin("/metrics")
        XCTAssertEqual(first.code, 200)
        XCTAssertTrue(first.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") ?? false, first.headers)
        let before = try PrometheusExposition(first.body)
        for family in before.types.keys { XCTAssertNotNil(before.help[family], "\(family) has no # HELP") }
        let expected: [String: String] = [
            "cutover_requests_total": "counter", "cutover_request_duration_seconds": "histogram",
            "cutover_endpoint_in_flight": "gauge", "cutover_endpoint_connections": "gauge", "cutover_endpoint_up": "gauge",
            "cutover_endpoint_live": "gauge", "cutover_upstream_connect_errors_total": "counter", "cutover_connections_open": "gauge",
            "cutover_held_requests": "gauge", "cutover_switches_total": "counter", "cutover_drain_force_closed_total": "counter",
        ]
        for (name, type) in expected { XCTAssertEqual(before.types[name], type, name) }

        let blue2xx = ["profile": "web", "endpoint": "blue", "class": "2xx"]
        let blue = ["profile": "web", "endpoint": "blue"]
        XCTAssertEqual(before.value("cutover_requests_total", blue2xx), 0)
        XCTAssertEqual(before.value("cutover_request_duration_seconds_count", blue), 0)
        XCTAssertEqual(before.value("cutover_endpoint_live", blue), 1)
        XCTAssertEqual(before.value("cutover_endpoint_live", ["endpoint": "green"]), 0)
        XCTAssertEqual(before.value("cutover_switches_total"), 0)

        for _ in 0..<5 { XCTAssertEqual(try curl(setup.proxy.url()).code, 200) }
        XCTAssertEqual(try curl(setup.proxy.url("/status?code=404")).code, 404)
        XCTAssertEqual(try curl(setup.proxy.url("/slow?ms=30")).code, 200)
        XCTAssertEqual(try setup.proxy.ctl("switch web dead --force").status, 0)
        XCTAssertEqual(try curl(setup.proxy.url()).code, 502)
        XCTAssertEqual(try setup.proxy.ctl("switch web green --force").status, 0)
        XCTAssertEqual(try curl(setup.proxy.url()).code, 200)
        XCTAssertEqual(try setup.proxy.ctl("pause web").status, 0)

        let after = try PrometheusExposition(try setup.admin("/metrics").body)
        XCTAssertEqual(after.value("cutover_requests_total", blue2xx), 6)
        XCTAssertEqual(after.value("cutover_requests_total", ["endpoint": "blue", "class": "4xx"]), 1)
        XCTAssertEqual(after.value("cutover_requests_total", ["endpoint": "green", "class": "2xx"]), 1)
        XCTAssertEqual(after.value("cutover_request_duration_seconds_count", blue), 7)
        XCTAssertEqual(after.value("cutover_request_duration_seconds_bucket", blue.merging(["le": "+Inf"]) { a, _ in a }), 7)
        XCTAssertGreaterThanOrEqual(after.value("cutover_request_duration_seconds_sum", blue) ?? 0, 0.03)
        XCTAssertLessThan(after.value("cutover_request_duration_seconds_bucket", blue.merging(["le": "0.025"]) { a, _ in a }) ?? 7, 7,
                          "the 30 ms request lands above the 25 ms bucket")
        XCTAssertGreaterThanOrEqual(after.value("cutover_upstream_connect_errors_total", ["endpoint": "dead"]) ?? 0, 1)
        XCTAssertEqual(after.value("cutover_switches_total"), 2)
        XCTAssertGreaterThanOrEqual(after.value("cutover_client_requests_total") ?? 0, 9)
        XCTAssertEqual(after.value("cutover_endpoint_live", ["endpoint": "green"]), 1)
        XCTAssertEqual(after.value("cutover_endpoint_live", blue), 0)
        XCTAssertEqual(after.value("cutover_profile_paused", ["profile": "web"]), 1)

        // Histogram buckets are cumulative: never decreasing with `le`.
        let buckets = after.samples.filter { $0.name == "cutover_request_duration_seconds_bucket" && $0.labels["endpoint"] == "blue" }
        XCTAssertEqual(buckets.map(\.value), buckets.map(\.value).sorted())

        // A request held by the pause shows as held; resume releases it.
        let held = try RawConnection(port: setup.proxy.port())
        held.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(try waitUntil(timeout: 5) {
            try PrometheusExposition(try setup.admin("/metrics").body).value("cutover_held_requests", ["profile": "web"]) == 1
        })
        XCTAssertEqual(try setup.proxy.ctl("resume web").status, 0)
        XCTAssertTrue(held.readResponse().contains("green"))
    }

    /// `/health` is 200 while running; `/health/PROFILE` is 200 with a live endpoint, 503 in maintenance or with none, 404 for an unknown profile.
    func testHealth_okUntilMaintenanceOrAllEndpointsOffline() throws {
        let setup = try Setup()
        defer { setup.stop() }
        let health = try setup.admin("/health")
        XCTAssertEqual(health.code, 200)
        XCTAssertEqual(health.body, "ok\n")
        XCTAssertEqual(try setup.admin("/health/web").code, 200)
        XCTAssertEqual(try setup.admin("/health/nope").code, 404)
        XCTAssertEqual(try setup.admin("/nothing-here").code, 404)

        XCTAssertEqual(try setup.proxy.ctl("maintenance web on").status, 0)
        let maintenance = try setup.admin("/health/web")
        XCTAssertEqual(maintenance.code, 503)
        XCTAssertTrue(maintenance.body.contains("maintenance"), maintenance.body)
        XCTAssertEqual(try setup.admin("/health").code, 200, "the process itself is still healthy")
        XCTAssertEqual(try setup.proxy.ctl("maintenance web off").status, 0)
        XCTAssertEqual(try setup.admin("/health/web").code, 200)

        XCTAssertEqual(try setup.proxy.ctl("set endpoint web/blue offline").status, 0)
        let none = try setup.admin("/health/web")
        XCTAssertEqual(none.code, 503)
        XCTAssertTrue(none.body.contains("no live endpoint"), none.body)
        XCTAssertEqual(try setup.proxy.ctl("set endpoint web/green online").status, 0)
        XCTAssertEqual(try setup.admin("/health/web").body, "ok: live green\n")

        // HEAD gets the status without a body; other methods are refused.
        XCTAssertEqual(try setup.admin("/health/web", ["-I"]).code, 200)
        XCTAssertEqual(try setup.admin("/health", ["-X", "POST"]).code, 405)

        // During shutdown /health turns 503 before the process goes away (a request holds it open).
        let slow = try RawConnection(port: setup.proxy.port())
        slow.send("GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertTrue(waitUntil(timeout: 5) { (try? setup.admin("/metrics").body.contains("cutover_endpoint_in_flight{profile=\"web\",endpoint=\"green\"} 1")) ?? false })
        setup.proxy.child.signal(SIGTERM)
        XCTAssertTrue(waitUntil(timeout: 3) { (try? setup.admin("/health").code) == 503 })
        XCTAssertTrue(slow.readResponse().contains("green slow"))
    }

    /// With `admin.token` set, every admin HTTP request needs `Authorization: Bearer TOKEN`.
    func testAdminHTTP_withToken_requiresBearer() throws {
        let setup = try Setup(token: "s3cret-token")
        defer { setup.stop() }
        for path in ["/health", "/health/web", "/metrics", "/status"] {
            let anonymous = try setup.admin(path)
            XCTAssertEqual(anonymous.code, 401, path)
            XCTAssertEqual(anonymous.header("WWW-Authenticate"), "Bearer realm=\"cutover\"")
            XCTAssertEqual(try setup.admin(path, ["-H", "Authorization: Bearer wrong-token"]).code, 401, path)
            XCTAssertEqual(try setup.admin(path, ["-H", "Authorization: Basic czNjcmV0LXRva2Vu"]).code, 401, path)
            XCTAssertEqual(try setup.admin(path, ["-H", "Authorization: Bearer s3cret-token"]).code, 200, path)
        }
    }

    /// `/status` is one self-contained HTML page: profiles, endpoints, live marker, gates, events; it refreshes and escapes.
    func testStatusPage_isSelfContained_showsEveryProfile_andEscapes() throws {
        let setup = try Setup()
        defer { setup.stop() }
        XCTAssertEqual(try curl(setup.proxy.url()).code, 200)
        XCTAssertEqual(try setup.proxy.ctl("switch web green").status, 0)
        XCTAssertEqual(try setup.proxy.ctl("readonly web on").status, 0)
        // A reload event quotes the config path: give it characters HTML must escape.
        let weird = setup.dir.path("a<b>&\"c\".json")
        try FileManager.default.copyItem(atPath: setup.proxy.configPath, toPath: weird)

        let page = try setup.admin("/status")
        XCTAssertEqual(page.code, 200)
        XCTAssertEqual(page.header("Content-Type"), "text/html; charset=utf-8")
        let html = page.body
        XCTAssertTrue(html.hasPrefix("<!doctype html>"))
        XCTAssertTrue(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"))
        for needle in ["id=\"profile-web\"", ">blue<", ">green<", "live: green", "readonly", "Recent events", "switch", "draining"] {
            XCTAssertTrue(html.contains(needle), "status page lacks \(needle)")
        }
        for external in ["<script", "<link", "src=", "@import", "url("] {
            XCTAssertFalse(html.contains(external), "status page must be self-contained, found \(external)")
        }

        // Start a second proxy from the weirdly named file, reload it, and look for the escaped path.
        let socket = setup.dir.path("admin2.sock")
        var config = try String(contentsOfFile: weird, encoding: .utf8)
        config = config.replacingOccurrences(of: setup.proxy.socketPath, with: socket)
        try config.write(toFile: weird, atomically: true, encoding: .utf8)
        let second = try ChildProcess(CutoverBinary.url, ["proxy", "--config", weird], directory: setup.dir, label: "proxy-weird")
        defer { second.stop() }
        var port: UInt16 = 0
        XCTAssertTrue(waitUntil { port = AdminTests.adminHTTPPort(in: second.stderr) ?? 0; return port != 0 && FileManager.default.fileExists(atPath: socket) })
        XCTAssertEqual(try IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket, "reload"]).status, 0)
        let escaped = try curl("http://127.0.0.1:\(port)/status").body
        XCTAssertTrue(escaped.contains("a&lt;b&gt;&amp;&quot;c&quot;.json"), "the event cause is escaped")
        XCTAssertFalse(escaped.contains("a<b>"), "raw markup from an event must not reach the page")
    }

    /// The status page renders in headless Chromium (screenshot + DOM check) via `Tests/status-page-screenshot.sh`.
    func testStatusPage_rendersInHeadlessChromium() throws {
        let chromium = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
            .map { "\($0)/chromium" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        guard chromium != nil else { throw XCTSkip("chromium is not installed") }
        let dir = try TemporaryDirectory()
        let screenshot = dir.path("status-page.png")
        let script = CutoverBinary.packageRoot.appendingPathComponent("Tests/status-page-screenshot.sh").path
        let started = Date()
        let result = try IntegrationTests.run("/usr/bin/env", ["CUTOVER=\(CutoverBinary.url.path)", "/bin/bash", script, screenshot], timeout: 20)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("status page OK"), result.stdout + result.stderr)
        let png = FileManager.default.contents(atPath: screenshot) ?? Data()
        XCTAssertGreaterThan(png.count, 10_000, "the screenshot is not a rendered page")
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
    }
}
