import Foundation
import Glibc
import XCTest

/// Active probes, failover between priorities and back, with detection times measured on the real
/// binary. Every measuring test prints `detection:` lines, quoted in docs/health-probes.md.
final class HealthTests: XCTestCase {
    /// Short settings that keep the tests fast: detection bound fall × interval + timeout = 550 ms.
    static let fastProbe = #"{ "type": "http", "path": "/healthz", "interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 2 }"#
    /// Scheduling slack on a shared 2-core machine, plus a curl or ctl spawn per poll.
    static let margin = 0.6

    // MARK: - Failover between priorities

    /// Killing the priority-1 backend moves traffic to priority 2 within fall × interval + timeout;
    /// starting it again on its port brings traffic back after rise successes.
    func testKilledOnlineBackend_failsOverToBackup_andReturnsAfterRestart() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: Self.fastProbe)
        var restarted: ChildProcess?
        defer { proxy.stop(); blue.stop(); green.stop(); restarted?.stop() }

        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "up", timeout: 3), "blue never came up")
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")

        blue.child.signal(SIGKILL)
        _ = blue.child.waitForExit(timeout: 5)
        let down = try XCTUnwrap(waitForBody(proxy.url(), "green\n", timeout: 5), "traffic never moved to green")
        report("kill priority-1 backend → traffic on backup (interval 200ms, timeout 150ms, fall 2)", down, bound: 2 * 0.2 * 1.1 + 0.15)
        XCTAssertLessThanOrEqual(down, 2 * 0.2 * 1.1 + 0.15 + Self.margin)
        XCTAssertEqual(try health(proxy, "web/blue"), "down")

        restarted = try startBackend(name: "blue", port: blue.port, dir)
        let up = try XCTUnwrap(waitForBody(proxy.url(), "blue\n", timeout: 5), "traffic never came back to blue")
        report("restart priority-1 backend → traffic back (interval 200ms, rise 2)", up, bound: 2 * 0.2 * 1.1)
        XCTAssertLessThanOrEqual(up, 2 * 0.2 * 1.1 + Self.margin)

        let events = try proxy.ctl("show", "events", "20").stdout
        XCTAssertTrue(events.contains("web/blue down (probe: connect refused (2 consecutive failures))"), events)
        XCTAssertTrue(events.contains("web/blue up (probe: HTTP 200 on /healthz (2 consecutive successes))"), events)
    }

    /// A backend whose health path answers 500 is taken out; back at 200 it returns after rise successes.
    func testBackendAnswering500OnHealthPath_isTakenOut_andReturns() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: Self.fastProbe)
        defer { proxy.stop(); blue.stop(); green.stop() }
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "up", timeout: 3), "blue never came up")

        XCTAssertEqual(try curl("http://\(blue.address)/control/health?status=500", ["-X", "POST"]).code, 200)
        let down = try XCTUnwrap(waitForHealth(proxy, "web/blue", "down", timeout: 5))
        report("health path answers 500 → down", down, bound: 2 * 0.2 * 1.1 + 0.15)
        XCTAssertLessThanOrEqual(down, 2 * 0.2 * 1.1 + 0.15 + Self.margin)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")

        XCTAssertEqual(try curl("http://\(blue.address)/control/health?status=200", ["-X", "POST"]).code, 200)
        let up = try XCTUnwrap(waitForHealth(proxy, "web/blue", "up", timeout: 5))
        report("health path back to 200 → up", up, bound: 2 * 0.2 * 1.1)
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")

        let events = try proxy.ctl("show", "events").stdout
        XCTAssertTrue(events.contains("web/blue down (probe: HTTP 500 on /healthz (2 consecutive failures))"), events)
    }

    /// With `passive.status_5xx`, consecutive 5xx answers on live traffic take an endpoint out before
    /// any probe notices (its health path still answers 200).
    func testConsecutive5xxAnswers_markTheEndpointDown() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let slowProbe = #"{ "type": "http", "path": "/healthz", "interval": "5s", "timeout": "1s", "rise": 1, "fall": 3 }"#
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: slowProbe, passive: #"{ "failures": 0, "status_5xx": 2 }"#)
        defer { proxy.stop(); blue.stop(); green.stop() }
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "up", timeout: 8), "blue never came up")

        XCTAssertEqual(try curl(proxy.url("/status?code=503")).code, 503)
        XCTAssertEqual(try curl(proxy.url("/status?code=200")).code, 200, "a success in between resets the streak")
        XCTAssertEqual(try curl(proxy.url("/status?code=500")).code, 500)
        XCTAssertEqual(try health(proxy, "web/blue"), "up")
        XCTAssertEqual(try curl(proxy.url("/status?code=502")).code, 502)
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "down", timeout: 2), "two 5xx in a row did not mark blue down")
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        XCTAssertTrue(try proxy.ctl("show", "events").stdout.contains("passive: 2 consecutive 5xx answers"))
    }

    /// A backend that accepts connections and never answers is taken out by the probe timeout.
    func testHungBackend_isDetectedByTheTimeout() throws {
        let dir = try TemporaryDirectory()
        let hung = try SilentListener()
        let green = try Backend(name: "green", directory: dir)
        let proxy = try startProxy(dir, blue: "127.0.0.1:\(hung.port)", green: green.address,
                                   probe: #"{ "path": "/healthz", "interval": "400ms", "timeout": "300ms", "rise": 2, "fall": 2 }"#)
        defer { proxy.stop(); green.stop(); withExtendedLifetime(hung) {} }

        // Unknown counts as up until the first result, which is a timeout: down at once.
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "down", timeout: 3), "the hung backend was never taken out")
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        let events = try proxy.ctl("show", "events").stdout
        XCTAssertTrue(events.contains("web/blue down (probe: timeout after 300ms on /healthz (first check))"), events)
    }

    /// With every endpoint down the profile fails closed: 503 naming the profile, never a down endpoint.
    func testAllEndpointsDown_answers503NamingTheProfile() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        for backend in [blue, green] {
            XCTAssertEqual(try curl("http://\(backend.address)/control/health?status=503", ["-X", "POST"]).code, 200)
        }
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: Self.fastProbe)
        defer { proxy.stop(); blue.stop(); green.stop() }

        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "down", timeout: 3))
        XCTAssertNotNil(waitForHealth(proxy, "web/green", "down", timeout: 3))
        let answer = try curl(proxy.url())
        XCTAssertEqual(answer.code, 503)
        XCTAssertTrue(answer.body.contains("profile web"), answer.body)
        XCTAssertNil(answer.header("X-Backend"), "a down endpoint was used")
    }

    /// A `tcp` probe only connects; its `port` override is what gets probed, not the traffic port.
    func testTCPProbe_connectsToTheOverridePort() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let closedPort = try SilentListener().port  // bound, then closed at once: nothing listens there
        let socket = dir.path("admin.sock")
        let proxy = try Proxy(config: """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "passive": { "failures": 0 },
                "probe": { "type": "tcp", "interval": "200ms", "timeout": "150ms" },
                "endpoints": [
                  { "name": "blue", "address": "\(blue.address)", "priority": 1,
                    "probe": { "type": "tcp", "port": \(closedPort), "interval": "200ms", "timeout": "150ms" } },
                  { "name": "green", "address": "\(green.address)", "priority": 2 } ] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off" }
            """, directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop(); green.stop() }

        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "down", timeout: 3))
        XCTAssertNotNil(waitForHealth(proxy, "web/green", "up", timeout: 3))
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        let events = try proxy.ctl("show", "events").stdout
        XCTAssertTrue(events.contains("web/blue down (probe: connect refused (first check))"), events)
        XCTAssertTrue(events.contains("web/green up (probe: connected to \(green.address) (2 consecutive successes))"), events)
    }

    // MARK: - Command probes

    /// A `command` probe gets the endpoint in its environment and follows the exit status.
    func testCommandProbe_followsExitStatus_withEndpointInEnvironment() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let base = dir.url.path + "/$CUTOVER_ENDPOINT_NAME"
        let script = "echo $CUTOVER_PROFILE $CUTOVER_ENDPOINT_NAME $CUTOVER_ENDPOINT_HOST $CUTOVER_ENDPOINT_PORT > \(base).env; test ! -e \(base).down"
        let probe = #"{ "type": "command", "command": ["/bin/sh", "-c", "\#(script)"], "interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 2 }"#
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: probe)
        defer { proxy.stop(); blue.stop(); green.stop() }

        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "up", timeout: 3))
        let env = try String(contentsOfFile: dir.path("blue.env"), encoding: .utf8)
        XCTAssertEqual(env, "web blue 127.0.0.1 \(blue.port)\n")

        _ = try dir.write("blue.down", "")
        let down = try XCTUnwrap(waitForHealth(proxy, "web/blue", "down", timeout: 5))
        report("command probe exits 1 → down", down, bound: 2 * 0.2 * 1.1 + 0.15)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        XCTAssertTrue(try proxy.ctl("show", "events").stdout.contains("web/blue down (probe: command exited 1 (2 consecutive failures))"))
    }

    /// A command still running at the timeout is killed, with its children, and counts as a failure.
    func testCommandProbeStillRunningAtTimeout_isKilledAndFails() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let marker = dir.path("survived")
        let pids = dir.path("pids")
        // Each run records the shell's pid and its child's. The child sleeps longer than this test
        // waits for it, so both are gone in time only if the timeout killed the whole process group.
        let script = "sleep 10 & echo $$ $! >> \(pids); wait; touch \(marker)"
        let probe = #"{ "type": "command", "command": ["/bin/sh", "-c", "\#(script)"], "interval": "400ms", "timeout": "200ms" }"#
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: probe)
        defer {
            // The proxy does not kill a probe command still running when it exits, and that command
            // holds a descriptor inherited through the proxy, which keeps `Process` from seeing the
            // proxy's exit: end the proxy, then every run it left behind, then reap it.
            proxy.child.signal(SIGTERM)
            waitUntil(timeout: 5) { !Self.isRunning(proxy.child.pid) }
            Self.killLeftovers(Self.recordedPIDs(pids).flatMap { $0 })
            proxy.stop(); blue.stop(); green.stop()
        }

        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "down", timeout: 3))
        XCTAssertTrue(try proxy.ctl("show", "events").stdout.contains("web/blue down (probe: command timeout after 200ms, killed (first check))"))
        let firstRun = Self.recordedPIDs(pids).first ?? []
        XCTAssertEqual(firstRun.count, 2, "the first run did not record the shell and its child")
        XCTAssertTrue(waitUntil(timeout: 5) { firstRun.allSatisfy { !Self.isRunning($0) } }, "the command or its child outlived its timeout")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the command's shell outlived its timeout")
    }

    // MARK: - Default settings, for the record

    /// With the documented defaults (2s / 1s / rise 2 / fall 3) a killed up endpoint is down in
    /// about fall × interval; the number is printed for docs/health-probes.md.
    func testDefaultProbeSettings_downDetectionTime() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: #"{ "path": "/healthz" }"#)
        defer { proxy.stop(); blue.stop(); green.stop() }
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "up", timeout: 5), "blue never came up")

        blue.child.signal(SIGKILL)
        _ = blue.child.waitForExit(timeout: 5)
        let down = try XCTUnwrap(waitForBody(proxy.url(), "green\n", timeout: 8), "traffic never moved to green")
        report("DEFAULTS kill → traffic on backup (interval 2s, timeout 1s, fall 3)", down, bound: 3 * 2 * 1.1 + 1)
        XCTAssertGreaterThanOrEqual(down, 2 * 2 * 0.9 - 0.1, "down before fall consecutive failures")
        XCTAssertLessThanOrEqual(down, 3 * 2 * 1.1 + 1 + Self.margin)
    }

    /// With the defaults a restarted endpoint takes traffic back after rise (2) successes.
    func testDefaultProbeSettings_upDetectionTime() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let port = blue.port
        blue.child.signal(SIGKILL)
        _ = blue.child.waitForExit(timeout: 5)
        let proxy = try startProxy(dir, blue: "127.0.0.1:\(port)", green: green.address, probe: #"{ "path": "/healthz" }"#)
        var restarted: ChildProcess?
        defer { proxy.stop(); green.stop(); restarted?.stop() }
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "down", timeout: 3), "the first check did not take blue out")

        restarted = try startBackend(name: "blue", port: port, dir)
        let up = try XCTUnwrap(waitForBody(proxy.url(), "blue\n", timeout: 6), "traffic never came back to blue")
        report("DEFAULTS restart → traffic back (interval 2s, rise 2)", up, bound: 2 * 2 * 1.1)
        XCTAssertGreaterThanOrEqual(up, 2 * 0.9 - 0.1, "up before rise consecutive successes")
        XCTAssertLessThanOrEqual(up, 2 * 2 * 1.1 + Self.margin)
    }

    // MARK: - Reload

    /// A reload that leaves the probe alone changes no health (no event, blue stays up); a reload
    /// that removes the probe stops it and forgets what it said (back to unknown, with the cause).
    func testReload_keepsUnchangedProbes_andForgetsRemovedOnes() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let proxy = try startProxy(dir, blue: blue.address, green: green.address, probe: Self.fastProbe, adminHTTP: true)
        defer { proxy.stop(); blue.stop(); green.stop() }
        XCTAssertNotNil(waitForHealth(proxy, "web/blue", "up", timeout: 3))
        XCTAssertNotNil(waitForHealth(proxy, "web/green", "up", timeout: 3))

        XCTAssertEqual(try proxy.ctl("reload").status, 0)
        // Three probe runs of blue after the reload, one more than rise: a prober the reload had
        // restarted would have reported blue up again (an event) by then.
        let blueProbes = ["profile": "web", "endpoint": "blue", "result": "success"]
        let probedBefore = try XCTUnwrap(proxy.metric("cutover_probes_total", blueProbes), "no probe counter for blue")
        XCTAssertTrue(
            waitUntil { ((try? proxy.metric("cutover_probes_total", blueProbes)) ?? nil).map { $0 >= probedBefore + 3 } ?? false },
            "blue was not probed after the reload")
        var events = try proxy.ctl("show", "events", "50").stdout
        XCTAssertFalse((events.components(separatedBy: "reloaded").last ?? "").contains("web/blue"), events)
        XCTAssertEqual(try health(proxy, "web/blue"), "up")

        let withoutProbe = try String(contentsOfFile: proxy.configPath, encoding: .utf8).replacingOccurrences(of: #""probe": \#(Self.fastProbe), "#, with: "")
        XCTAssertFalse(withoutProbe.contains("probe"), withoutProbe)
        try withoutProbe.write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
        let reloaded = try proxy.ctl("reload")
        XCTAssertEqual(reloaded.status, 0, reloaded.stdout + reloaded.stderr)
        events = try proxy.ctl("show", "events", "50").stdout
        XCTAssertTrue(events.contains("web/blue unknown (probe removed from the config)"), events)
        XCTAssertEqual(try health(proxy, "web/blue"), "unknown")
    }

    // MARK: - Helpers

    /// blue at priority 1, green at priority 2, one profile `web`, passive checks off so that only
    /// probes move health; `adminHTTP` adds the admin HTTP listener (for `/metrics`).
    private func startProxy(
        _ dir: TemporaryDirectory, blue: String, green: String, probe: String, passive: String = #"{ "failures": 0 }"#,
        adminHTTP: Bool = false
    ) throws -> Proxy {
        let socket = dir.path("admin.sock")
        let http = adminHTTP ? #", "http": "127.0.0.1:0""# : ""
        return try Proxy(config: """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "probe": \(probe), "passive": \(passive),
                "endpoints": [
                  { "name": "blue", "address": "\(blue)", "priority": 1 },
                  { "name": "green", "address": "\(green)", "priority": 2 } ] }],
              "admin": { "socket": "\(socket)"\(http) }, "access_log": "off" }
            """, directory: dir, socketPath: socket)
    }

    /// Whether process `pid` exists and is not a zombie (a killed child nobody has reaped yet).
    private static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let comm = stat.range(of: ") ", options: .backwards) else { return false }
        return !stat[comm.upperBound...].hasPrefix("Z")
    }

    /// The pids each probe run wrote to `file`, one line per run, oldest first.
    private static func recordedPIDs(_ file: String) -> [[pid_t]] {
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map { $0.split(separator: " ").compactMap { pid_t($0) } }
    }

    /// Kills what a test left running of a probe command, checking first that each pid still
    /// names the shell or its sleep (not a process that reused the number).
    private static func killLeftovers(_ pids: [pid_t]) {
        for pid in pids where isRunning(pid) {
            let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? ""
            if ["sh\n", "sleep\n"].contains(comm) { kill(pid, SIGKILL) }
        }
    }

    /// `cutover backend` on a given port (to restart one where the proxy expects it).
    private func startBackend(name: String, port: UInt16, _ dir: TemporaryDirectory) throws -> ChildProcess {
        let child = try ChildProcess(CutoverBinary.url, ["backend", "--listen", "127.0.0.1:\(port)", "--name", name], directory: dir, label: "backend-\(name)-again")
        guard waitUntil(timeout: 5, { child.stdout.contains("listening on") }) else {
            throw FixtureError("backend \(name) did not restart on \(port): \(child.stderr)")
        }
        return child
    }

    /// The health `show endpoints` reports for `profile/name`.
    private func health(_ proxy: Proxy, _ endpoint: String) throws -> String? {
        let output = try proxy.ctl("show", "endpoints", json: true).stdout
        guard let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let endpoints = object["endpoints"] as? [[String: Any]] else { return nil }
        let match = endpoints.first { "\($0["profile"] ?? "")/\($0["name"] ?? "")" == endpoint }
        return match?["health"] as? String
    }

    /// Seconds until `endpoint` shows `wanted` health, or nil after `timeout`.
    private func waitForHealth(_ proxy: Proxy, _ endpoint: String, _ wanted: String, timeout: TimeInterval) -> TimeInterval? {
        let start = Date()
        let reached = waitUntil(timeout: timeout) { (try? health(proxy, endpoint)) == wanted }
        return reached ? Date().timeIntervalSince(start) : nil
    }

    /// Seconds until a GET answers `body`, or nil after `timeout`.
    private func waitForBody(_ url: String, _ body: String, timeout: TimeInterval) -> TimeInterval? {
        let start = Date()
        let reached = waitUntil(timeout: timeout) { (try? curl(url, timeout: 2))?.body == body }
        return reached ? Date().timeIntervalSince(start) : nil
    }

    private func report(_ what: String, _ seconds: TimeInterval, bound: TimeInterval) {
        print(String(format: "detection: %@: %.0f ms (bound %.0f ms)", what, seconds * 1000, bound * 1000))
    }
}

/// A listening socket that never accepts: the kernel completes handshakes, nothing ever answers.
private final class SilentListener {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            port = 0
            throw FixtureError("silent listener: \(String(cString: strerror(errno)))")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
    }

    deinit { close(fd) }
}
