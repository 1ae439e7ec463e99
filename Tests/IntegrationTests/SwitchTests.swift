import Foundation
import Glibc
import XCTest

/// Issue 4: the blue/green switch under load, draining, holding, gates, durable state and signals.
final class SwitchTests: BlueGreenTestCase {
    private func config(profileExtra: String = "", rootExtra: String = "", listeners: String? = nil) -> String {
        blueGreenConfig(blue: blue, green: green, socket: socket, profileExtra: profileExtra, rootExtra: rootExtra, listeners: listeners)
    }

    /// 50 busy keep-alive connections and 2-s requests in flight: the switch fails nothing, and every
    /// request that starts after `switch` returned is answered by green.
    func testSwitchUnderLoad_failsNothingAndMovesEveryNewRequest() throws {
        let proxy = try Proxy(config: config(), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let load = LoadClient()
        let slow = LoadClient()
        // The slow requests first, alone, so that blue's in-flight count says they reached it.
        slow.startOnce(port: proxy.port(), connections: 5, path: "/slow?ms=2000")
        XCTAssertTrue(
            waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":5")) ?? false },
            "the slow requests are not in flight on blue")
        load.start(port: proxy.port(), connections: 50)
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.count > 500 }, "load did not start")
        let switched = try proxy.ctl("switch", "web", "green")
        let switchReturned = Date()
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.filter { $0.started > switchReturned }.count > 500 })
        load.stop()
        slow.stop()

        XCTAssertEqual(load.failures, [], "client errors during the switch")
        XCTAssertEqual(load.results.filter { $0.status != 200 }.count, 0)
        let late = load.results.filter { $0.started > switchReturned && $0.backend != "green" }
        XCTAssertEqual(late.count, 0, "requests started after the switch but not answered by green")
        XCTAssertGreaterThan(load.results.filter { $0.backend == "blue" }.count, 0)
        XCTAssertEqual(slow.failures, [])
        XCTAssertEqual(slow.results.map(\.status), Array(repeating: 200, count: 5), "in-flight slow requests")
        XCTAssertEqual(Set(slow.results.map(\.backend)), ["blue"], "slow requests finish on the old endpoint")
        XCTAssertTrue(slow.results.allSatisfy { $0.ended > switchReturned }, "slow requests were in flight at the switch")
    }

    /// `switch --wait` answers only once the old endpoint drained, and says so.
    func testSwitchWait_reportsTheDrain() throws {
        let proxy = try Proxy(config: config(), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 2, path: "/slow?ms=1000")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":2")) ?? false })
        let started = Date()
        let answer = try proxy.ctl("switch", "web", "green", "--wait")
        slow.stop()
        XCTAssertEqual(answer.status, 0, answer.stdout)
        XCTAssertTrue(answer.stdout.contains("web/blue: drained"), answer.stdout)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 0.5, "--wait returned before the drain")
        XCTAssertEqual(slow.results.map(\.status), [200, 200])
        XCTAssertTrue(try proxy.ctl("show endpoints web").stdout.contains("offline"))
    }

    /// A draining endpoint shows how far its drain got: elapsed and left until `drain_timeout`, in
    /// `show endpoints` (text and JSON) and on the status page's source.
    func testDrainProgress_isShownWhileDraining() throws {
        let proxy = try Proxy(config: config(profileExtra: #", "drain_timeout": "20s""#), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 1, path: "/slow?ms=3000")
        defer { slow.stop() }
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false })
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        let object = try JSONSerialization.jsonObject(with: Data(try proxy.ctl("show endpoints web --json").stdout.utf8)) as? [String: Any]
        let blue = (object?["endpoints"] as? [[String: Any]])?.first { $0["name"] as? String == "blue" } ?? [:]
        XCTAssertEqual(blue["state"] as? String, "draining")
        let elapsed = blue["drain_elapsed_ms"] as? Int ?? -1
        let left = blue["drain_left_ms"] as? Int ?? -1
        XCTAssertTrue(elapsed >= 0 && left > 0 && left <= 20_000 && abs(elapsed + left - 20_000) <= 5, "\(blue)")
        XCTAssertTrue(try proxy.ctl("show", "endpoints", "web").stdout.contains("of 20s"), "the text table shows the drain bound")
        let green = (object?["endpoints"] as? [[String: Any]])?.first { $0["name"] as? String == "green" } ?? [:]
        XCTAssertNil(green["drain_elapsed_ms"], "only a draining endpoint has drain figures")
    }

    /// Issue 17, defect 1: a switch back to an endpoint that is draining cancels its drain. When its
    /// last in-flight request ends, the event log must not claim it went offline: it is online.
    func testSwitchBackWhileDraining_cancelsTheDrainAndRecordsNoFalseOffline() throws {
        let proxy = try Proxy(config: config(), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 1, path: "/slow?ms=800")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false })
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertEqual(try proxy.ctl("switch", "web", "blue").status, 0)
        let cancelled = try proxy.ctl("show events").stdout
        XCTAssertTrue(cancelled.contains("web/blue online (switch, drain cancelled after"), cancelled)
        XCTAssertTrue(waitUntil { slow.results.count == 1 }, "the slow request did not finish")
        slow.stop()
        XCTAssertEqual(slow.results.map(\.status), [200])
        // The old runtime recorded the false event within one 50 ms drain check of the request ending.
        let falseOffline = try waitUntil(timeout: 1) { try proxy.ctl("show events").stdout.contains("web/blue offline") }
        let events = try proxy.ctl("show events").stdout
        XCTAssertFalse(falseOffline, events)
        let endpoints = try proxy.ctl("show endpoints web --json").stdout
        XCTAssertTrue(endpoints.contains(#""name":"blue""#) && !endpoints.contains(#""state":"draining""#), endpoints)
        XCTAssertTrue(try curl(proxy.url()).body.contains("blue"), "a new request goes to blue")
    }

    /// Pause, switch, resume under load: zero errors, held requests complete on green, and the added
    /// latency is bounded by the pause.
    func testPauseSwitchResume_holdsInsteadOfFailing() throws {
        let proxy = try Proxy(config: config(), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let load = LoadClient()
        load.start(port: proxy.port(), connections: 20)
        XCTAssertTrue(waitUntil { load.results.count > 200 })
        let paused = Date()
        XCTAssertEqual(try proxy.ctl("pause", "web").status, 0)
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show stats").stdout.contains("held_now 20")) ?? false }, "requests are not held")
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertTrue(try proxy.ctl("show stats").stdout.contains("held_now 20"), "the switch released held requests")
        // Taken before the command: released requests may finish before `ctl` itself returns.
        let resumed = Date()
        XCTAssertEqual(try proxy.ctl("resume", "web").status, 0)
        XCTAssertTrue(waitUntil { load.results.filter { $0.started > resumed }.count > 200 })
        load.stop()
        XCTAssertEqual(load.failures, [])
        XCTAssertEqual(load.results.filter { $0.status != 200 }.count, 0)
        // Every connection had its request held: those started before the resume and ended after it.
        let held = load.results.filter { $0.started < resumed && $0.ended > resumed }
        XCTAssertEqual(held.count, 20)
        XCTAssertEqual(Set(held.map(\.backend)), ["green"], "held requests go where the snapshot says at resume")
        let pauseLength = resumed.timeIntervalSince(paused)
        XCTAssertTrue(held.allSatisfy { $0.ended.timeIntervalSince($0.started) < pauseLength + 1.0 })
    }

    /// Past hold_timeout or max_held, a held request gets 503 with Retry-After.
    func testHoldLimits_answer503WithRetryAfter() throws {
        let proxy = try Proxy(config: config(profileExtra: #", "hold_timeout": "300ms", "max_held": 1"#), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try proxy.ctl("pause", "web").status, 0)
        let first = RawConnection.sendingGet(port: proxy.port())
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show stats").stdout.contains("held_now 1")) ?? false })
        let overflow = try curl(proxy.url())
        XCTAssertEqual(overflow.code, 503)
        XCTAssertNotNil(overflow.header("Retry-After"))
        XCTAssertTrue(overflow.body.contains("max_held"), overflow.body)
        let timedOut = first.readResponse()
        XCTAssertTrue(timedOut.hasPrefix("HTTP/1.1 503"), timedOut)
        XCTAssertTrue(timedOut.contains("Retry-After:"), timedOut)
    }

    /// A TCP tunnel to the old endpoint survives the switch and is closed at drain_timeout.
    func testTCPTunnelDrain_survivesSwitchThenClosesAtDeadline() throws {
        let listeners = #"[{ "name": "tcp", "address": "127.0.0.1:0", "mode": "tcp", "profile": "web" }]"#
        let proxy = try Proxy(config: config(profileExtra: #", "drain_timeout": "1s""#, listeners: listeners), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let tunnel = try RawConnection(port: proxy.port())
        tunnel.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        XCTAssertTrue(tunnel.read(until: "\r\n\r\n").contains("X-Backend: blue"))
        let switchedAt = Date()
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        tunnel.send("still here")
        XCTAssertEqual(tunnel.read(until: "still here"), "still here", "the tunnel must survive the switch")
        XCTAssertEqual(try curl(proxy.url()).body.isEmpty, false)
        tunnel.setReadTimeout(5)
        _ = tunnel.readAll()  // returns when the proxy closes the tunnel
        let closedAfter = Date().timeIntervalSince(switchedAt)
        XCTAssertGreaterThan(closedAfter, 0.8)
        XCTAssertLessThan(closedAfter, 3.0)
        XCTAssertTrue(try proxy.ctl("show events").stdout.contains("1 force-closed"))
    }

    /// Maintenance answers 503 with the page and Retry-After, except for the bypass header;
    /// read-only lets GET through and refuses POST.
    func testMaintenanceAndReadOnlyGates() throws {
        let gate = #", "maintenance": { "page": "<h1>back soon</h1>", "retry_after": "45s", "bypass": { "header": { "name": "X-Cutover-Bypass", "value": "s3cret" } } }"#
        let proxy = try Proxy(config: config(profileExtra: gate), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try proxy.ctl("maintenance", "web", "on").status, 0)
        let closed = try curl(proxy.url())
        XCTAssertEqual(closed.code, 503)
        XCTAssertEqual(closed.body, "<h1>back soon</h1>")
        XCTAssertEqual(closed.header("Retry-After"), "45")
        let bypassed = try curl(proxy.url(), ["-H", "X-Cutover-Bypass: s3cret"])
        XCTAssertEqual(bypassed.code, 200)
        XCTAssertEqual(try curl(proxy.url(), ["-H", "X-Cutover-Bypass: wrong"]).code, 503)
        XCTAssertEqual(try proxy.ctl("maintenance", "web", "off").status, 0)
        XCTAssertEqual(try curl(proxy.url()).code, 200)

        XCTAssertEqual(try proxy.ctl("readonly", "web", "on").status, 0)
        XCTAssertEqual(try curl(proxy.url()).code, 200)
        XCTAssertEqual(try curl(proxy.url(), ["-I"]).code, 200)
        let post = try curl(proxy.url("/echo"), ["-X", "POST", "--data", "x=1"])
        XCTAssertEqual(post.code, 503)
        XCTAssertTrue(post.body.contains("read-only"), post.body)
        XCTAssertNotNil(post.header("Retry-After"))
        XCTAssertEqual(try proxy.ctl("readonly", "web", "off").status, 0)
        XCTAssertEqual(try curl(proxy.url("/echo"), ["-X", "POST", "--data", "x=1"]).code, 200)
    }

    /// Maintenance bypass by source network: 127.0.0.1 is inside 127.0.0.0/8.
    func testMaintenanceBypassBySource() throws {
        let gate = #", "maintenance": { "bypass": { "sources": ["127.0.0.0/8"] } }"#
        let proxy = try Proxy(config: config(profileExtra: gate), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try proxy.ctl("maintenance", "web", "on").status, 0)
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
    }

    /// A restarted proxy keeps the switched endpoint and the gates (state file); without the state
    /// file it falls back to the config.
    func testRestartKeepsSwitchedState() throws {
        let stateFile = dir.path("state.json")
        let text = config(rootExtra: #", "state_file": "\#(stateFile)""#)
        var proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertEqual(try proxy.ctl("readonly", "web", "on").status, 0)
        proxy.stop()
        proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        XCTAssertEqual(try curl(proxy.url("/echo"), ["--data", "x"]).code, 503)
        proxy.stop()
        try FileManager.default.removeItem(atPath: stateFile)
        proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
    }

    /// SIGHUP with a broken config changes nothing and keeps serving; a valid one applies.
    func testSIGHUPWithBrokenConfig_keepsRunningConfig() throws {
        let proxy = try Proxy(config: config(), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        let keepAlive = try RawConnection(port: proxy.port())
        keepAlive.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(keepAlive.readResponse().contains("blue"))
        let good = try String(contentsOfFile: proxy.configPath, encoding: .utf8)
        try good.replacingOccurrences(of: "\"offline\"", with: "\"sideways\"").write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        proxy.child.signal(SIGHUP)
        XCTAssertTrue(waitUntil { proxy.child.stderr.contains("reload refused") }, proxy.child.stderr)
        XCTAssertTrue(proxy.child.stderr.contains("profiles[0].endpoints[1].state"), proxy.child.stderr)
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
        let viaCtl = try proxy.ctl("reload")
        XCTAssertEqual(viaCtl.status, 1)
        XCTAssertTrue(viaCtl.stdout.hasPrefix("ERR invalid-config:"), viaCtl.stdout)

        // A valid change: green becomes the online one; the open connection keeps working.
        try good.replacingOccurrences(of: #""address": "\#(blue.address)" }"#, with: #""address": "\#(blue.address)", "state": "offline" }"#)
            .replacingOccurrences(of: #""address": "\#(green.address)", "state": "offline""#, with: #""address": "\#(green.address)", "state": "online""#)
            .write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        proxy.child.signal(SIGHUP)
        XCTAssertTrue(waitUntil { proxy.child.stderr.contains("reloaded") }, proxy.child.stderr)
        keepAlive.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(keepAlive.readResponse().contains("X-Backend: blue"), "runtime state (blue online) survives a reload")
    }

    /// SIGTERM stops accepting, lets in-flight requests complete, and exits 0.
    func testSIGTERM_completesInFlightRequests() throws {
        let proxy = try Proxy(config: config(), directory: dir, socketPath: socket)
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 3, path: "/slow?ms=1000")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show stats").stdout.contains("connections_open 3")) ?? false })
        proxy.child.signal(SIGTERM)
        let status = proxy.child.waitForExit(timeout: 10)
        slow.stop()
        XCTAssertEqual(status, 0)
        XCTAssertEqual(slow.failures, [])
        XCTAssertEqual(slow.results.map(\.status), [200, 200, 200])
        XCTAssertThrowsError(try RawConnection(port: proxy.port()), "the listener must be closed")
    }
}

extension RawConnection {
    /// Opens a connection and sends `GET /` without waiting for the answer.
    static func sendingGet(port: UInt16, path: String = "/") -> RawConnection {
        let connection = try! RawConnection(port: port)
        connection.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
        return connection
    }
}

/// The agent's `proxy` flag driver against the real proxy: what an upgrade runbook does to close
/// the gate while the database is being migrated.
final class ProxyFlagTests: XCTestCase {
    func testFlagDriverProxy_closesAndOpensTheMaintenanceGate() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let socket = dir.path("admin.sock")
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: nil, socket: socket), directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop() }
        let flag = { (action: String) in
            try IntegrationTests.run(CutoverBinary.url.path, ["flag", action, "--driver", "proxy", "--socket", socket, "--profile", "web", "--gate", "maintenance"])
        }
        XCTAssertEqual(try flag("on").status, 0)
        XCTAssertEqual(try curl(proxy.url()).code, 503)
        let status = try flag("status")
        XCTAssertEqual(status.status, 0, status.stderr)
        XCTAssertTrue(status.stdout.contains("on"), status.stdout)
        XCTAssertEqual(try flag("off").status, 0)
        XCTAssertEqual(try curl(proxy.url()).code, 200)
        let unknown = try IntegrationTests.run(CutoverBinary.url.path, ["flag", "on", "--driver", "proxy", "--socket", socket, "--profile", "nope", "--gate", "readonly"])
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue((unknown.stdout + unknown.stderr).contains("unknown-profile"), unknown.stdout + unknown.stderr)
    }
}

/// Holding in TCP mode: a connection made while the profile is paused waits (its early bytes too)
/// and is connected, on resume, to the endpoint the snapshot names then.
final class TCPHoldTests: XCTestCase {
    func testPausedTCPConnection_isHeldThenConnectedToTheNewEndpoint() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let socket = dir.path("admin.sock")
        let listeners = #"[{ "name": "tcp", "address": "127.0.0.1:0", "mode": "tcp", "profile": "web" }]"#
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket, listeners: listeners), directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop(); green.stop() }
        XCTAssertEqual(try proxy.ctl("pause", "web").status, 0)
        let connection = try RawConnection(port: proxy.port())
        connection.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show stats").stdout.contains("held_now 1")) ?? false }, "the connection is not held")
        connection.setReadTimeout(0.3)
        XCTAssertEqual(connection.readAll(), "", "nothing may reach an endpoint while paused")
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertEqual(try proxy.ctl("resume", "web").status, 0)
        connection.setReadTimeout(5)
        let answer = connection.readAll()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        XCTAssertTrue(answer.contains("X-Backend: green"), answer)
    }
}

/// What a profile does when no endpoint is eligible: hold (opt-in), fail open (opt-in), or 503.
final class UnavailableProfileTests: XCTestCase {
    /// With `hold_when_unavailable`, a request to a profile with nothing online waits and is served
    /// as soon as an endpoint is set online.
    func testHoldWhenUnavailable_servesTheRequestOnceAnEndpointIsOnline() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let socket = dir.path("admin.sock")
        let proxy = try Proxy(config: """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "hold_when_unavailable": true, "hold_timeout": "10s",
                             "endpoints": [{ "name": "blue", "address": "\(blue.address)", "state": "offline" }] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off" }
            """, directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop() }
        let waiting = RawConnection.sendingGet(port: proxy.port())
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show stats").stdout.contains("held_now 1")) ?? false }, "the request is not held")
        XCTAssertEqual(try proxy.ctl("set", "endpoint", "web/blue", "online").status, 0)
        let answer = waiting.readResponse()
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200"), answer)
        XCTAssertTrue(answer.contains("X-Backend: blue"), answer)
    }

    /// An endpoint whose probe fails is down: fail-closed answers 503 naming the profile, and
    /// `fail_open` routes to it anyway.
    func testFailOpen_routesToADownEndpoint_failClosedAnswers503() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let closedPort = TestUpstream.closedPort()
        for failOpen in [false, true] {
            let socket = dir.path("admin-\(failOpen).sock")
            let proxy = try Proxy(config: """
                { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
                  "profiles": [{ "name": "web", "fail_open": \(failOpen),
                                 "probe": { "type": "tcp", "port": \(closedPort), "interval": "200ms", "timeout": "150ms" },
                                 "endpoints": [{ "name": "blue", "address": "\(blue.address)" }] }],
                  "admin": { "socket": "\(socket)" }, "access_log": "off" }
                """, directory: dir, socketPath: socket)
            defer { proxy.stop() }
            XCTAssertTrue(waitUntil(timeout: 5) { (try? proxy.ctl("show endpoints").stdout.contains("down")) ?? false }, "the probe never failed")
            let answer = try curl(proxy.url())
            if failOpen {
                XCTAssertEqual(answer.body, "blue\n")
            } else {
                XCTAssertEqual(answer.code, 503)
                XCTAssertTrue(answer.body.contains("web"), answer.body)
            }
        }
        blue.stop()
    }
}
