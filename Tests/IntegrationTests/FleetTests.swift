import Foundation
import Glibc
import XCTest

/// Issue 19: several proxies switch as one, their runtime state in a real etcd (`cluster` config).
final class FleetTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: Backend!
    private var green: Backend!
    private var etcd: EtcdCluster!
    private var proxies: [Proxy] = []

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        green = try Backend(name: "green", directory: dir)
    }

    override func tearDown() {
        for proxy in proxies { proxy.stop() }
        proxies = []
        etcd?.stop()
        blue?.stop()
        green?.stop()
        dir = nil
    }

    /// Starts proxy `node` of a fleet under a fresh prefix per test.
    @discardableResult
    private func startProxy(_ node: String, stateFile: Bool = false) throws -> Proxy {
        let socket = dir.path("\(node).sock")
        let state = stateFile ? #", "state_file": "\#(dir.path("\(node).state"))""# : ""
        let cluster = #", "cluster": { "etcd": \#(etcd.clientURLsJSON), "prefix": "/cutover/test", "node": "\#(node)" }"#
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket, rootExtra: cluster + state), directory: dir, socketPath: socket)
        proxies.append(proxy)
        return proxy
    }

    /// `show fleet --json` of `proxy`, decoded loosely.
    private func fleet(_ proxy: Proxy) -> [String: Any]? {
        guard let answer = try? proxy.ctl("show fleet --json"), let data = answer.stdout.data(using: .utf8) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    private func fleetNodes(_ proxy: Proxy) -> [String] {
        ((fleet(proxy)?["nodes"] as? [[String: Any]]) ?? []).compactMap { $0["node"] as? String }
    }

    private func backend(_ proxy: Proxy) -> String? {
        try? curl(proxy.url("/")).header("X-Backend")
    }

    /// A switch on one proxy answers once all three applied it, names the three, and no request
    /// that starts after the answer reaches blue through any proxy.
    func testSwitchOnOneProxy_answersWithEveryNode_andNoProxySendsToBlueAfter() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let nodes = ["proxy-1", "proxy-2", "proxy-3"]
        let fleetProxies = try nodes.map { try startProxy($0) }
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(fleetProxies[0]) == nodes }, "the three nodes registered: \(fleet(fleetProxies[0]) ?? [:])")
        let loads = fleetProxies.map { _ in LoadClient() }
        for (load, proxy) in zip(loads, fleetProxies) { load.start(port: proxy.port(), connections: 4) }
        XCTAssertTrue(waitUntil(timeout: 10) { loads.allSatisfy { $0.results.count > 100 } }, "load did not start")

        // What a ctl round trip costs by itself, to read the switch's figure against.
        let baselineStart = Date()
        _ = try fleetProxies[0].ctl("show profiles")
        print("fleet switch: a ctl show profiles round trip takes \(Int(Date().timeIntervalSince(baselineStart) * 1000)) ms")
        let asked = Date()
        let switched = try fleetProxies[0].ctl("switch web green --json")
        let answered = Date()
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(switched.stdout.utf8)) as? [String: Any])
        let applied = try XCTUnwrap(answer["fleet"] as? [String: Any], switched.stdout)
        XCTAssertEqual(applied["applied"] as? [String], nodes)
        XCTAssertEqual(applied["pending"] as? [String], [])
        print("fleet switch: \(Int(answered.timeIntervalSince(asked) * 1000)) ms from the command to the answer with \(nodes.count) nodes (ctl process included); the proxy waited \(applied["waited_ms"] ?? "?") ms for the nodes")

        XCTAssertTrue(waitUntil(timeout: 10) { loads.allSatisfy { $0.results.filter { $0.started > answered }.count > 100 } })
        for load in loads { load.stop() }
        for (index, load) in loads.enumerated() {
            XCTAssertEqual(load.failures, [], "client errors through \(nodes[index])")
            XCTAssertEqual(load.results.filter { $0.status != 200 }.count, 0, "non-200 through \(nodes[index])")
            let late = load.results.filter { $0.started > answered && $0.backend != "green" }
            XCTAssertEqual(late.count, 0, "requests through \(nodes[index]) started after the answer but not answered by green")
            XCTAssertGreaterThan(load.results.filter { $0.backend == "blue" }.count, 0, "\(nodes[index]) served blue before")
            // The first request of this proxy on green, after the command was given.
            if let first = load.results.filter({ $0.backend == "green" }).map(\.started).min() {
                print("fleet switch: \(nodes[index])'s first request on green started \(Int(first.timeIntervalSince(asked) * 1000)) ms after the command")
            }
        }
    }

    /// Two switches given at once on two proxies: whenever both were based on the same revision,
    /// exactly one is written and the other is refused with `conflict`; the fleet ends on one state.
    func testConcurrentSwitchesFromTwoProxies_oneWinsTheOtherGetsConflict() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        var conflicts = 0
        for round in 0..<20 where conflicts == 0 {
            let targets = round % 2 == 0 ? ("green", "blue") : ("blue", "green")
            let group = DispatchGroup()
            let box = Answers()
            for (socket, name, target) in [(a.socketPath, "a", targets.0), (b.socketPath, "b", targets.1)] {
                DispatchQueue.global().async(group: group) {
                    let answer = (try? IntegrationTests.run(CutoverBinary.url.path, ["ctl", "--socket", socket, "switch", "web", target, "--force"])) ?? (status: -1, stdout: "", stderr: "ctl failed")
                    box.set(name, answer)
                }
            }
            group.wait()
            let answers = box.all
            let ok = answers.values.filter { $0.status == 0 }
            let refused = answers.values.filter { $0.status != 0 }
            XCTAssertGreaterThanOrEqual(ok.count, 1, "round \(round): neither switch was written: \(answers)")
            for answer in refused {
                XCTAssertTrue(answer.stdout.contains("ERR conflict") || answer.stderr.contains("ERR conflict"), "round \(round): refused otherwise than by conflict: \(answer)")
            }
            conflicts += refused.count
            // Both proxies end on the same live endpoint: the winner's.
            XCTAssertTrue(waitUntil(timeout: 5) { self.backend(a) != nil && self.backend(a) == self.backend(b) }, "round \(round): the proxies disagree")
        }
        XCTAssertGreaterThan(conflicts, 0, "20 rounds of concurrent switches and never a conflict")
    }

    /// etcd killed: both proxies keep serving their last state, refuse changes with
    /// `store-unavailable` and say so in `show fleet`; a proxy started meanwhile starts on its
    /// state file; once etcd is back, a switch reaches all three.
    func testEtcdDown_proxiesServeStaticAndRefuse_thenConvergeWhenBack() throws {
        etcd = try EtcdCluster(size: 1, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })
        XCTAssertEqual(try a.ctl("switch web green").status, 0)
        XCTAssertEqual(backend(b), "green")

        etcd.kill(0)
        for proxy in [a, b] {
            XCTAssertTrue(waitUntil(timeout: 10) { self.fleet(proxy)?["store"] as? String == "unavailable" }, "show fleet did not say unavailable")
            XCTAssertEqual(backend(proxy), "green", "fail-static: the last applied state is served")
        }
        let refused = try b.ctl("switch web blue")
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue((refused.stdout + refused.stderr).contains("ERR store-unavailable"), refused.stdout + refused.stderr)
        XCTAssertEqual(backend(a), "green", "the refused switch changed nothing")
        XCTAssertEqual(backend(b), "green", "the refused switch changed nothing here either")

        let c = try startProxy("proxy-c")
        XCTAssertTrue(c.child.stderr.contains("etcd unreachable at start"), c.child.stderr)
        XCTAssertEqual(backend(c), "blue", "started on the config's state")

        try etcd.start(0)
        for proxy in [a, b, c] {
            XCTAssertTrue(waitUntil(timeout: 15) { self.fleet(proxy)?["store"] as? String == "available" }, "store did not come back: \(fleet(proxy) ?? [:])")
        }
        XCTAssertTrue(waitUntil(timeout: 10) { self.backend(c) == "green" }, "proxy-c did not converge on the fleet's state")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 3 }, "\(fleet(a) ?? [:])")
        let switched = try b.ctl("switch web blue")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(switched.stdout.contains("proxy-a, proxy-b, proxy-c"), switched.stdout)
        for proxy in [a, b, c] { XCTAssertEqual(backend(proxy), "blue") }
    }

    /// A 3-member etcd cluster: one member down, switches still work on every node; two down (no
    /// quorum), the proxies serve their last state and refuse changes; both back, a switch reaches all.
    func testThreeMemberCluster_oneDownStillSwitches_twoDownRefuses_thenConverges() throws {
        etcd = try EtcdCluster(size: 3, directory: dir)
        let a = try startProxy("proxy-a")
        let b = try startProxy("proxy-b")
        XCTAssertTrue(waitUntil(timeout: 10) { self.fleetNodes(a).count == 2 })

        etcd.kill(0)
        let switched = try a.ctl("switch web green")
        XCTAssertEqual(switched.status, 0, switched.stdout + switched.stderr)
        XCTAssertTrue(switched.stdout.contains("applied by proxy-a, proxy-b"), switched.stdout)
        XCTAssertEqual(backend(b), "green")

        etcd.kill(1)
        var refused = (status: Int32(0), stdout: "", stderr: "")
        XCTAssertTrue(try waitUntil(timeout: 20) {
            refused = try b.ctl("switch web blue")
            return refused.status != 0
        }, "a switch was accepted without quorum")
        XCTAssertTrue(refused.stdout.contains("ERR store-unavailable"), refused.stdout + refused.stderr)
        for proxy in [a, b] { XCTAssertEqual(backend(proxy), "green", "fail-static without quorum") }

        try etcd.start(0)
        try etcd.start(1)
        var again = (status: Int32(1), stdout: "", stderr: "")
        XCTAssertTrue(try waitUntil(timeout: 30) {
            again = try b.ctl("switch web blue")
            return again.status == 0
        }, "no switch after the members returned: \(again)")
        XCTAssertTrue(again.stdout.contains("applied by proxy-a, proxy-b"), again.stdout)
        for proxy in [a, b] { XCTAssertEqual(backend(proxy), "blue") }
    }
}

/// The answers of concurrent `ctl` runs, by name.
private final class Answers: @unchecked Sendable {  // `answers` is guarded by `lock`
    private let lock = NSLock()
    private var answers: [String: (status: Int32, stdout: String, stderr: String)] = [:]

    func set(_ name: String, _ answer: (status: Int32, stdout: String, stderr: String)) { lock.withLock { answers[name] = answer } }
    var all: [String: (status: Int32, stdout: String, stderr: String)] { lock.withLock { answers } }
}
