import Foundation
import Glibc
import Synchronization
import XCTest

/// Issue 18: `cutover proxy --takeover` upgrades the proxy itself without a gap. Real processes:
/// the running proxy hands its listening sockets over (SCM_RIGHTS) to the new one, which moves the
/// admin socket to itself; clients connecting all the while, and `ctl`, never see a refusal.
final class TakeoverTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: Backend!
    private var green: Backend!
    private var socket: String { dir.path("admin.sock") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        green = try Backend(name: "green", directory: dir)
    }

    override func tearDown() {
        blue?.stop()
        green?.stop()
        dir = nil
    }

    private var config: String {
        blueGreenConfig(blue: blue, green: green, socket: socket, rootExtra: #", "state_file": "\#(dir.path("state.json"))", "workers": 1"#)
    }

    /// Clients that open a new connection for every request, and an admin client asking the admin
    /// socket over and over: every failure is recorded.
    private final class Churn: @unchecked Sendable {  // `records` is guarded by the mutex
        struct Answer {
            let started: Date
            let backend: String
        }

        private let state = Mutex<(answers: [Answer], failures: [String], admin: Int)>(([], [], 0))
        private let stopping = Atomic<Bool>(false)
        private let group = DispatchGroup()

        func start(port: UInt16, connections: Int, adminSocket: String) {
            for _ in 0..<connections {
                group.enter()
                Thread { [self] in
                    defer { group.leave() }
                    while !stopping.load(ordering: .relaxed) { request(port: port) }
                }.start()
            }
            group.enter()
            Thread { [self] in
                defer { group.leave() }
                while !stopping.load(ordering: .relaxed) {
                    askAdmin(adminSocket)
                    usleep(10_000)
                }
            }.start()
        }

        private func request(port: UInt16) {
            let started = Date()
            do {
                let connection = try RawConnection(port: port)
                connection.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                let response = connection.readResponse()
                guard response.hasPrefix("HTTP/1.1 200") else {
                    state.withLock { $0.failures.append("answer: \(response.prefix(60).debugDescription)") }
                    return
                }
                let backend = response.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-backend:") }
                    .map { $0.dropFirst("x-backend:".count).trimmingCharacters(in: .whitespaces) } ?? "-"
                state.withLock { $0.answers.append(Answer(started: started, backend: backend)) }
            } catch {
                state.withLock { $0.failures.append("\(error)") }
            }
        }

        private func askAdmin(_ path: String) {
            do {
                let connection = try RawConnection(unixPath: path)
                connection.send("show profiles\n")
                let answer = connection.read(until: "\n\n")
                guard answer.contains("web") else {
                    state.withLock { $0.failures.append("admin answered \(answer.prefix(60).debugDescription)") }
                    return
                }
                state.withLock { $0.admin += 1 }
            } catch {
                state.withLock { $0.failures.append("admin: \(error)") }
            }
        }

        func stop() {
            stopping.store(true, ordering: .relaxed)
            group.wait()
        }

        var answers: [Answer] { state.withLock { $0.answers } }
        var failures: [String] { state.withLock { $0.failures } }
        var adminAnswers: Int { state.withLock { $0.admin } }
    }

    /// A new process takes over under connection churn: no connection refused or reset, no admin
    /// command refused, the switch carried over through the state file, and the old process exits 0
    /// after draining.
    func testTakeover_underChurn_refusesNothing_andCarriesTheSwitchOver() throws {
        let old = try Proxy(config: config, directory: dir, socketPath: socket)
        defer { old.stop() }
        XCTAssertEqual(try old.ctl("switch", "web", "green", "--force").status, 0)
        let churn = Churn()
        churn.start(port: old.port(), connections: 6, adminSocket: socket)
        XCTAssertTrue(waitUntil(timeout: 10) { churn.answers.count > 100 }, "the load did not start: \(churn.failures.prefix(3))")

        let new = try Proxy(config: config, directory: dir, socketPath: socket, extraArguments: ["--takeover"])
        defer { new.stop() }
        XCTAssertEqual(new.port(), old.port(), "the new process listens on the same socket")
        XCTAssertEqual(old.child.waitForExit(timeout: 40), 0, "the old process did not drain and exit: \(old.child.stderr)")
        let afterExit = Date()
        let before = churn.answers.count
        XCTAssertTrue(waitUntil(timeout: 10) { churn.answers.count > before + 100 }, "nothing served after the old process exited")
        churn.stop()

        XCTAssertEqual(churn.failures.prefix(5), [], "\(churn.failures.count) failures during the takeover")
        XCTAssertGreaterThan(churn.adminAnswers, 10)
        XCTAssertEqual(churn.answers.filter { $0.backend != "green" }.count, 0, "the switch to green carried over")
        XCTAssertGreaterThan(churn.answers.filter { $0.started > afterExit }.count, 0)
        XCTAssertTrue(old.child.stderr.contains("takeover: the new process serves"), old.child.stderr)
        XCTAssertTrue(new.child.stderr.contains("taken over"), new.child.stderr)
        XCTAssertTrue(try new.ctl("show", "profiles").stdout.contains("green"))
        print("takeover under churn: \(churn.answers.count) requests on fresh connections and \(churn.adminAnswers) admin commands, \(churn.failures.count) failures")
    }

    /// A takeover with a config that does not validate is refused before anything is touched: the
    /// new process exits 1 naming the key, the old one keeps serving and answering ctl.
    func testTakeover_withABrokenConfig_isRefused_andTheOldOneKeepsServing() throws {
        let old = try Proxy(config: config, directory: dir, socketPath: socket)
        defer { old.stop() }
        let broken = try dir.write("broken.json", config.replacingOccurrences(of: #""access_log""#, with: #""acess_log""#))
        let attempt = try IntegrationTests.run(CutoverBinary.url.path, ["proxy", "--config", broken, "--takeover"], timeout: 20)
        XCTAssertEqual(attempt.status, 1, attempt.stdout + attempt.stderr)
        XCTAssertTrue(attempt.stderr.contains("acess_log"), attempt.stderr)
        XCTAssertTrue(old.child.isRunning)
        XCTAssertEqual(try curl(old.url()).code, 200)
        XCTAssertEqual(try old.ctl("show", "profiles").status, 0)
    }

    /// Requests held by a pause in the old process are released once the new process resumes (the
    /// old one follows the state file while it drains) and answered by the old one: none is dropped.
    func testTakeover_heldRequestsAreReleasedByTheSuccessorsResume() throws {
        let old = try Proxy(config: config, directory: dir, socketPath: socket)
        defer { old.stop() }
        XCTAssertEqual(try old.ctl("pause", "web").status, 0)
        let answers = Mutex<[(Int, String)]>([])
        let group = DispatchGroup()
        for index in 0..<3 {
            group.enter()
            let port = old.port()
            Thread {
                defer { group.leave() }
                guard let connection = try? RawConnection(port: port) else { return }
                connection.setReadTimeout(30)
                connection.send("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                let response = connection.readResponse()
                answers.withLock { $0.append((index, String(response.prefix(12)))) }
            }.start()
            XCTAssertTrue(waitUntil(timeout: 10) { (try? old.ctl("show", "profiles", json: true).stdout.contains(#""held":\#(index + 1)"#)) ?? false })
        }
        let new = try Proxy(config: config, directory: dir, socketPath: socket, extraArguments: ["--takeover"])
        defer { new.stop() }
        XCTAssertTrue(try new.ctl("show", "profiles", json: true).stdout.contains(#""paused":true"#), "the pause carried over")
        XCTAssertEqual(try new.ctl("resume", "web").status, 0)
        group.wait()
        let got = answers.withLock { $0 }
        // Released in arrival order (HoldQueueTests prove the order); here each goes on its own
        // upstream connection, so the answers may come back in any order: all of them must come.
        XCTAssertEqual(got.map(\.1), Array(repeating: "HTTP/1.1 200", count: 3), "\(got)")
        XCTAssertEqual(Set(got.map(\.0)), [0, 1, 2])
        XCTAssertEqual(old.child.waitForExit(timeout: 40), 0, old.child.stderr)
    }
}
