import Foundation
import Glibc
import XCTest

/// Issue 12: `switch … --guard D` judges green on the answers real clients get and reverts on its
/// own; the real binary, real backends (`cutover backend --fail-ratio/--delay`), a steady client load.
final class GuardTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var backends: [Backend] = []
    private var socket: String { dir.path("admin.sock") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
    }

    override func tearDown() {
        for backend in backends { backend.stop() }
        dir = nil
    }

    private func backend(_ name: String, _ options: String...) throws -> Backend {
        let started = try Backend(name: name, directory: dir, options: options)
        backends.append(started)
        return started
    }

    /// Profile `web`: blue online, green offline, fast HTTP probes (so green is up before the
    /// switch), and the given guard thresholds.
    private func proxy(blue: Backend, green: Backend, guardConfig: String, rootExtra: String = "") throws -> Proxy {
        let config = """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "endpoints": [
                  { "name": "blue", "address": "\(blue.address)" },
                  { "name": "green", "address": "\(green.address)", "state": "offline" } ],
                "probe": { "type": "http", "path": "/healthz", "interval": "300ms", "timeout": "250ms" },
                "guard": \(guardConfig) }],
              "admin": { "socket": "\(socket)" }, "access_log": "off", "workers": 1\(rootExtra) }
            """
        let proxy = try Proxy(config: config, directory: dir, socketPath: socket)
        let up = waitUntil(timeout: 10) { (try? endpointState(proxy, "green")["health"] as? String) == "up" }
        let green = try endpointState(proxy, "green")
        XCTAssertTrue(up, "green never passed its probes: \(green)")
        return proxy
    }

    private struct Event {
        /// As the proxy prints it: truncated to the millisecond.
        let time: Date
        let endpoint: String?
        let state: String
        let cause: String

        /// When the event had certainly happened. A request that starts within the millisecond of
        /// `time` may still have been routed just before it (seen at 200 and 2,000 requests/s).
        var happenedBy: Date { time.addingTimeInterval(0.001) }
    }

    private func events(_ proxy: Proxy) throws -> [Event] {
        let result = try proxy.ctl("show events 200", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let format = ISO8601DateFormatter()
        format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return (object?["events"] as? [[String: Any]] ?? []).compactMap { event in
            guard let time = (event["time"] as? String).flatMap(format.date(from:)) else { return nil }
            return Event(time: time, endpoint: event["endpoint"] as? String, state: event["state"] as? String ?? "", cause: event["cause"] as? String ?? "")
        }
    }

    private func guardStatus(_ proxy: Proxy) throws -> [String: Any] {
        let result = try proxy.ctl("show endpoints web", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (object?["guards"] as? [[String: Any]])?.first ?? [:]
    }

    private func endpointState(_ proxy: Proxy, _ name: String) throws -> [String: Any] {
        let result = try proxy.ctl("show endpoints web", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        return (object?["endpoints"] as? [[String: Any]])?.first { $0["name"] as? String == name } ?? [:]
    }

    /// What one breach run measured: from green's first bad answer to the revert event, how many bad
    /// answers green gave, and what reached green after the revert.
    private struct BreachRun {
        var reaction: TimeInterval
        var badAnswers: Int
        /// Each request green answered that started after the revert: its start and end in ms after
        /// the revert, and its status (for the failure message).
        var lateGreen: [String]
        var greenAfterRevert: Int { lateGreen.count }
        var cause: String
        var failures: [String]
    }

    /// A steady load at `rate`, a guarded switch to a green that fails 30 % of requests.
    private func breachRun(rate: Double, connections: Int) throws -> BreachRun {
        let blue = try backend("blue")
        let green = try backend("green", "--fail-ratio", "0.3")
        let proxy = try proxy(blue: blue, green: green, guardConfig: #"{ "max_5xx_ratio": 0.05, "min_requests": 20 }"#)
        defer { proxy.stop() }
        let load = LoadClient()
        load.start(port: proxy.port(), connections: connections, rate: rate)
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.count > Int(rate / 4) }, "load did not start")
        let switched = try proxy.ctl("switch", "web", "green", "--guard", "30s")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(switched.stdout.contains("guard window 30s open, blue standing by"), switched.stdout)
        var revert: Event?
        let reverted = try waitUntil(timeout: 15) {
            revert = try events(proxy).first { $0.state == "reverted" }
            return revert != nil
        }
        let seen = try events(proxy).map { "\($0.state) (\($0.cause))" }
        XCTAssertTrue(reverted, "no revert event: \(seen)")
        // Half a second more of load: requests that start after the revert.
        let afterRevert = Date()
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.filter { $0.started > afterRevert.addingTimeInterval(0.5) }.count > 10 })
        load.stop()
        let results = load.results
        let revertTime = revert?.happenedBy ?? Date()
        let badFromGreen = results.filter { $0.backend == "green" && $0.status == 500 }
        let firstBad = badFromGreen.map(\.ended).min() ?? revertTime
        return BreachRun(
            reaction: revertTime.timeIntervalSince(firstBad),
            badAnswers: badFromGreen.count,
            lateGreen: results.filter { $0.started > revertTime && $0.backend == "green" }.map {
                "\(Int($0.started.timeIntervalSince(revertTime) * 1000))..\(Int($0.ended.timeIntervalSince(revertTime) * 1000)) ms \($0.status)"
            },
            cause: revert?.cause ?? "",
            failures: load.failures)
    }

    /// Green answers 500 to 30 % of requests while its /healthz stays healthy: the guard reverts
    /// within an interval (500 ms) of reaching min_requests, names the breach and the ratio, and no
    /// request that starts after the revert reaches green. Measured at 200 and 2,000 requests/s.
    func testFiveHundreds_revertWithinAnInterval_andNothingLaterReachesGreen() throws {
        for (rate, connections) in [(200.0, 4), (2000.0, 20)] {
            let run = try breachRun(rate: rate, connections: connections)
            backends.forEach { $0.stop() }
            backends = []
            print("guard breach at \(Int(rate)) req/s: revert \(Int(run.reaction * 1000)) ms after green's first bad answer, \(run.badAnswers) bad answers from green (blast radius); \(run.cause)")
            XCTAssertEqual(run.failures.prefix(3), [], "client errors at \(rate) req/s")
            XCTAssertEqual(run.greenAfterRevert, 0, "requests that started after the revert reached green (\(rate) req/s): \(run.lateGreen)")
            XCTAssertTrue(run.cause.contains("guard breach: 5xx ratio 0.") && run.cause.contains("> 0.05 over"), run.cause)
            XCTAssertTrue(run.cause.contains("reverted to blue"), run.cause)
            // One interval (500 ms) after min_requests answers, plus a bound for a loaded 2-core machine.
            XCTAssertLessThan(run.reaction, 3.0, "revert took \(run.reaction) s at \(rate) req/s")
        }
    }

    /// Green slower than max_p99 (300 ms late, threshold 100 ms): a breach names the p99; with
    /// --wait-guard the switch answers the breach as an error (exit non-zero, code guard-breach).
    func testSlowGreen_breachesMaxP99_andWaitGuardAnswersTheBreach() throws {
        let blue = try backend("blue")
        let green = try backend("green", "--delay", "300ms")
        let proxy = try proxy(blue: blue, green: green, guardConfig: #"{ "max_p99": "100ms", "min_requests": 10, "interval": "200ms" }"#)
        defer { proxy.stop() }
        let load = LoadClient()
        load.start(port: proxy.port(), connections: 8, rate: 100)
        defer { load.stop() }
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.count > 20 })
        let switched = try proxy.ctl("switch", "web", "green", "--guard", "30s", "--wait-guard")
        XCTAssertNotEqual(switched.status, 0, switched.stdout)
        XCTAssertTrue(switched.stdout.contains("guard-breach"), switched.stdout)
        XCTAssertTrue(switched.stdout.contains("p99 250ms..500ms > 100ms"), switched.stdout)
        let status = try guardStatus(proxy)
        XCTAssertEqual(status["outcome"] as? String, "breach")
        XCTAssertEqual(status["breached"] as? String, "max_p99")
        XCTAssertEqual(status["reverted_to"] as? String, "blue")
        XCTAssertEqual(try endpointState(proxy, "blue")["live"] as? Bool, true)
    }

    /// Green starts refusing connections right after the switch (its process is killed): the
    /// connect failures breach and revert, and passive health marks green down.
    func testRefusedConnects_revert_andPassiveHealthMarksGreenDown() throws {
        let blue = try backend("blue")
        let green = try backend("green")
        let proxy = try proxy(blue: blue, green: green, guardConfig: #"{ "max_connect_failures": 2, "interval": "200ms" }"#)
        defer { proxy.stop() }
        let load = LoadClient()
        load.start(port: proxy.port(), connections: 4, rate: 100)
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.count > 20 })
        let switched = try proxy.ctl("switch", "web", "green", "--guard", "30s")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        green.stop()
        var revert: [Event] = []
        XCTAssertTrue(try waitUntil(timeout: 10) {
            revert = try events(proxy).filter { $0.state == "reverted" }
            return !revert.isEmpty
        })
        XCTAssertTrue(revert.first?.cause.contains("connect failures") ?? false, revert.first?.cause ?? "")
        let revertTime = revert.first?.happenedBy ?? Date()
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.filter { $0.started > revertTime.addingTimeInterval(0.3) }.count > 10 })
        load.stop()
        let late = load.results.filter { $0.started > revertTime }
        XCTAssertEqual(late.filter { $0.status != 200 }.count, 0, "answers after the revert: \(late.filter { $0.status != 200 }.prefix(3).map(\.status))")
        let down = waitUntil(timeout: 10) { (try? endpointState(proxy, "green")["health"] as? String) == "down" }
        let greenState = try endpointState(proxy, "green")
        XCTAssertTrue(down, "passive health did not mark green down: \(greenState)")
    }

    /// A healthy green: blue stands by during the window (state standby, not offline, probes go on),
    /// a reload keeps the window, the clean end records an event, blue drains to offline, and every
    /// later request is on green.
    func testHealthyGreen_windowEndsClean_blueStandsByThenGoesOffline() throws {
        let blue = try backend("blue")
        let green = try backend("green")
        let proxy = try proxy(blue: blue, green: green, guardConfig: #"{ "interval": "200ms" }"#)
        defer { proxy.stop() }
        let load = LoadClient()
        load.start(port: proxy.port(), connections: 4, rate: 100)
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.count > 20 })
        XCTAssertEqual(try proxy.ctl("switch", "web", "green", "--guard", "3s").status, 0)
        XCTAssertEqual(try endpointState(proxy, "blue")["state"] as? String, "standby")
        XCTAssertEqual(try guardStatus(proxy)["state"] as? String, "watching")
        let text = try proxy.ctl("show", "endpoints", "web").stdout
        XCTAssertTrue(text.contains("guard web: watching green"), text)
        XCTAssertEqual(try proxy.ctl("reload").status, 0)
        XCTAssertEqual(try guardStatus(proxy)["state"] as? String, "watching", "a reload keeps the window")
        XCTAssertTrue(waitUntil(timeout: 15) { (try? guardStatus(proxy)["state"] as? String) == "ended" })
        let status = try guardStatus(proxy)
        XCTAssertEqual(status["outcome"] as? String, "clean", "\(status)")
        XCTAssertGreaterThan(status["requests_judged"] as? Int ?? 0, 100)
        XCTAssertTrue(waitUntil(timeout: 5) { (try? endpointState(proxy, "blue")["state"] as? String) == "offline" })
        let ended = try events(proxy).first { $0.cause.hasPrefix("guard window clean") }
        XCTAssertNotNil(ended, "no clean-end event")
        let after = Date()
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.filter { $0.started > after }.count > 20 })
        load.stop()
        XCTAssertEqual(load.failures.prefix(3), [])
        XCTAssertEqual(load.results.filter { $0.started > after && $0.backend != "green" }.count, 0)
    }

    /// After a revert, a green that recovers is not switched back to; the window stays ended.
    func testRevert_isNotFollowedByASwitchBack() throws {
        let blue = try backend("blue")
        let green = try backend("green", "--fail-ratio", "0.5")
        let proxy = try proxy(blue: blue, green: green, guardConfig: #"{ "min_requests": 10, "interval": "200ms" }"#)
        defer { proxy.stop() }
        let load = LoadClient()
        load.start(port: proxy.port(), connections: 4, rate: 100)
        defer { load.stop() }
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.count > 20 })
        XCTAssertEqual(try proxy.ctl("switch", "web", "green", "--guard", "30s").status, 0)
        XCTAssertTrue(waitUntil(timeout: 10) { (try? guardStatus(proxy)["outcome"] as? String) == "breach" })
        _ = try curl("http://\(green.address)/control/faults?fail_ratio=0", ["-X", "POST"])
        let recovered = Date()
        // Five judging intervals with a healthy green: still nothing switches back.
        XCTAssertTrue(waitUntil(timeout: 10) { load.results.filter { $0.started > recovered.addingTimeInterval(1) }.count > 20 })
        XCTAssertEqual(try endpointState(proxy, "blue")["live"] as? Bool, true)
        XCTAssertEqual(try endpointState(proxy, "green")["live"] as? Bool, false)
        XCTAssertEqual(try events(proxy).filter { $0.endpoint == "green" && $0.state == "online" && $0.time > recovered }.count, 0)
    }

    /// A restart during a window ends it on the endpoint the state file says is live, and says so.
    func testRestartDuringAWindow_endsItOnTheLiveEndpoint() throws {
        let blue = try backend("blue")
        let green = try backend("green")
        let state = dir.path("state.json")
        var proxy = try self.proxy(blue: blue, green: green, guardConfig: "{}", rootExtra: #", "state_file": "\#(state)""#)
        XCTAssertEqual(try proxy.ctl("switch", "web", "green", "--guard", "60s").status, 0)
        let saved = try String(contentsOfFile: state, encoding: .utf8)
        XCTAssertTrue(saved.contains(#""guard""#), saved)
        proxy.stop()
        proxy = try Proxy(config: try String(contentsOfFile: proxy.configPath, encoding: .utf8), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertTrue(proxy.child.stderr.contains("the guard window on green (blue standing by) ends with the restart; green live per the state file"),
                      proxy.child.stderr)
        XCTAssertEqual(try guardStatus(proxy)["outcome"] as? String, "superseded")
        XCTAssertEqual(try endpointState(proxy, "green")["live"] as? Bool, true)
        XCTAssertFalse(try String(contentsOfFile: state, encoding: .utf8).contains(#""guard""#), "the ended window stays in the state file")
    }
}
