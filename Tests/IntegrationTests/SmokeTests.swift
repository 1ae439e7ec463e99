import XCTest

/// The shortest end-to-end path: a backend, the proxy from flags-equivalent config, one request.
final class SmokeTests: XCTestCase {
    func testRequestReachesOnlineEndpoint_andSwitchMovesIt() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let green = try Backend(name: "green", directory: dir)
        let socket = dir.path("admin.sock")
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket), directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop(); green.stop() }

        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
        let switched = try proxy.ctl("switch", "web", "green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
    }
}

/// A SIGTERM that arrives while the proxy starts (a unit stopped at once, a script's cleanup) stops it
/// cleanly once it serves: never the default action on a process that already listens, never lost.
final class StartSignalTests: XCTestCase {
    func testSIGTERMRightAfterListening_stopsCleanly() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        defer { blue.stop() }
        for attempt in 0..<6 {
            let socket = dir.path("admin-\(attempt).sock")
            let child = try ChildProcess(
                CutoverBinary.url, ["proxy", "--listen", "127.0.0.1:0", "--endpoint", "blue=\(blue.address)", "--admin-socket", socket],
                directory: dir, label: "proxy-\(attempt)")
            defer { child.stop() }
            // The signal goes out the moment the first listener is logged, before the admin socket exists.
            XCTAssertTrue(waitUntil(timeout: 15) { child.stderr.contains(" listening on ") || !child.isRunning }, child.stderr)
            child.signal(SIGTERM)
            let status = child.waitForExit(timeout: 15)
            XCTAssertEqual(status, 0, "attempt \(attempt): exit \(status.map(String.init) ?? "none (signal lost)"): \(child.stderr)")
            // Foundation traps on the termination reason of a process still running, which would
            // take the whole test run down with this one failure. What the kernel holds for it says
            // whether the signal still waits (ShdPnd) and which thread, if any, left it unblocked.
            guard status != nil else {
                XCTFail("attempt \(attempt): still running; \(Self.signalState(of: child.process.processIdentifier))")
                continue
            }
            XCTAssertEqual(child.process.terminationReason, .exit, child.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "attempt \(attempt): the admin socket was left behind")
        }
    }

    /// Once the proxy serves, every one of its threads, the main thread too, blocks the signals it
    /// acts on, so each can only be read from the signal source's signalfd. `dispatchMain()` left
    /// the main thread in `sigsuspend` with nothing blocked, where a SIGTERM was now and then taken
    /// by libdispatch's handler and lost: a proxy that kept serving after it was told to stop.
    func testEveryThreadOfARunningProxy_blocksTheSignalsItActsOn() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        let socket = dir.path("admin.sock")
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: blue, socket: socket), directory: dir, socketPath: socket)
        defer { proxy.stop(); blue.stop() }
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
        let pid = proxy.child.process.processIdentifier
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        XCTAssertGreaterThan(tasks.count, 1, "a serving proxy runs several threads")
        let wanted = [SIGHUP, SIGINT, SIGUSR2, SIGTERM].reduce(UInt64(0)) { $0 | 1 << UInt64($1 - 1) }
        for task in tasks {
            let status = try String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)
            let line = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }
            let blocked = line.flatMap { UInt64($0.dropFirst("SigBlk:".count).trimmingCharacters(in: .whitespaces), radix: 16) }
            let name = status.split(separator: "\n").first { $0.hasPrefix("Name:") } ?? "?"
            XCTAssertEqual(blocked.map { $0 & wanted }, wanted, "thread \(task) (\(name)) leaves some of SIGHUP, SIGINT, SIGUSR2, SIGTERM unblocked")
        }
    }

    /// The process's shared pending signals and each thread's name and blocked set, from `/proc`.
    private static func signalState(of pid: Int32) -> String {
        func fields(_ path: String, _ names: [String]) -> String {
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").filter { line in names.contains { line.hasPrefix($0 + ":") } }
                .map { $0.replacingOccurrences(of: "\t", with: " ") }.joined(separator: " ")
        }
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let threads = tasks.sorted().map { fields("/proc/\(pid)/task/\($0)/status", ["Name", "SigBlk"]) }
        return fields("/proc/\(pid)/status", ["ShdPnd"]) + "; threads: " + threads.joined(separator: "; ")
    }
}
