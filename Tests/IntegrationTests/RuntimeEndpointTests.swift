import Foundation
import Glibc
import XCTest

/// Issue 17: endpoints added and removed at runtime, an outside checker's health verdict, and the
/// one-shot `deploy` / `rollback`, on the real binary with real backends.
final class RuntimeEndpointTests: BlueGreenTestCase {
    private static let probe = #", "probe": { "type": "http", "path": "/healthz", "interval": "100ms", "timeout": "100ms", "rise": 1, "fall": 1 }"#

    private func endpointNames(_ proxy: Proxy) throws -> [String] {
        let answer = try proxy.ctl("show", "endpoints", "web", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any]
        return (object?["endpoints"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    /// An endpoint added at runtime takes traffic, survives a reload and a restart (state file), and
    /// once removed is gone for good; an endpoint of the config file cannot be removed at runtime.
    func testAddedEndpoint_survivesReloadAndRestart_andRemoveForgetsIt() throws {
        let text = blueGreenConfig(blue: blue, green: nil, socket: socket, rootExtra: #", "state_file": "\#(dir.path("state.json"))""#)
        var proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        let added = try proxy.ctl("add", "endpoint", "web/green", green.address, "weight", "5", "offline")
        XCTAssertEqual(added.status, 0, added.stdout)
        XCTAssertTrue(added.stdout.contains("added web/green \(green.address) offline, priority 1, weight 5"), added.stdout)
        XCTAssertEqual(try proxy.ctl("add", "endpoint", "web/green", green.address).status, 1, "a second endpoint of the same name")
        let badName = try proxy.ctl("add", "endpoint", "web/bad!name", green.address)
        XCTAssertEqual(badName.status, 1)
        XCTAssertTrue(badName.stdout.contains("ERR bad-arguments: add endpoint web/bad!name: profiles[0].endpoints[2].name:"), badName.stdout)
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        XCTAssertEqual(try proxy.ctl("reload").status, 0)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n", "a reload dropped the added endpoint")
        proxy.stop()
        proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n", "a restart dropped the added endpoint")
        XCTAssertEqual(try endpointNames(proxy), ["blue", "green"])
        XCTAssertTrue(try proxy.ctl("show", "endpoints", "web").stdout.contains("5"), "the weight was not restored")

        let refused = try proxy.ctl("remove", "endpoint", "web/blue")
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stdout.contains("defined in the config file"), refused.stdout)
        XCTAssertEqual(try proxy.ctl("switch", "web", "blue").status, 0)
        let removed = try proxy.ctl("remove", "endpoint", "web/green")
        XCTAssertEqual(removed.status, 0, removed.stdout)
        XCTAssertEqual(try endpointNames(proxy), ["blue"])
        XCTAssertTrue(try proxy.ctl("show", "events").stdout.contains("web/green removed (remove endpoint"))
        proxy.stop()
        proxy = try Proxy(config: text, directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try endpointNames(proxy), ["blue"], "a removed endpoint came back after a restart")
    }

    /// `remove endpoint` drains first: a request in flight on the endpoint finishes, and the answer
    /// comes only after it.
    func testRemoveEndpoint_drainsFirst() throws {
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: nil, socket: socket), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertEqual(try proxy.ctl("add", "endpoint", "web/green", green.address, "priority", "0").status, 0)
        let slow = LoadClient()
        slow.startOnce(port: proxy.port(), connections: 1, path: "/slow?ms=1000")
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show endpoints web --json").stdout.contains("\"in_flight\":1")) ?? false })
        let removed = try proxy.ctl("remove", "endpoint", "web/green")
        XCTAssertEqual(removed.status, 0, removed.stdout)
        XCTAssertTrue(removed.stdout.contains("drained after"), removed.stdout)
        XCTAssertEqual(slow.results.map(\.status), [200], "the answer came before the drain ended, or the request failed")
        XCTAssertEqual(slow.results.map(\.backend), ["green"])
        slow.stop()
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
    }

    /// An outside checker marks an endpoint down with its cause (the switch then refuses it), and
    /// `auto` hands it back to the probes.
    func testSetEndpointHealth_outsideVerdictThenAuto() throws {
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: green, socket: socket, profileExtra: Self.probe), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show", "endpoints", "web").stdout.components(separatedBy: " up ").count == 3) ?? false },
                      "both endpoints up: \((try? proxy.ctl("show", "endpoints", "web").stdout) ?? "")")
        let down = try proxy.ctl("set", "endpoint", "web/green", "health", "down", "cause", "consul: check failing")
        XCTAssertEqual(down.status, 0, down.stdout)
        XCTAssertTrue(try proxy.ctl("show", "events").stdout.contains("web/green down (set endpoint health: consul: check failing)"))
        usleep(400_000)  // four probe intervals: passing probes must not overrule the verdict
        let refused = try proxy.ctl("switch", "web", "green")
        XCTAssertEqual(refused.status, 1, refused.stdout)
        XCTAssertTrue(refused.stdout.contains("consul: check failing"), refused.stdout)
        let auto = try proxy.ctl("set", "endpoint", "web/green", "health", "auto")
        XCTAssertEqual(auto.status, 0, auto.stdout)
        XCTAssertTrue(auto.stdout.contains("health up"), auto.stdout)
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
    }

    /// `deploy` adds the new endpoint, waits for its probes, switches and drains the old one;
    /// `rollback` goes back; a deploy whose endpoint never comes up leaves traffic where it was.
    func testDeployThenRollback_andAFailedDeployChangesNothing() throws {
        let proxy = try Proxy(config: blueGreenConfig(blue: blue, green: nil, socket: socket, profileExtra: Self.probe), directory: dir, socketPath: socket)
        defer { proxy.stop() }
        XCTAssertTrue(waitUntil { (try? proxy.ctl("show", "endpoints", "web").stdout.contains(" up ")) ?? false })
        let deployed = try proxy.ctl("deploy", "web", green.address, "--name", "v2", "--timeout", "10s")
        XCTAssertEqual(deployed.status, 0, deployed.stdout)
        XCTAssertTrue(deployed.stdout.contains("deployed web to v2 (\(green.address)) (web/blue: drained after"), deployed.stdout)
        XCTAssertEqual(try curl(proxy.url()).body, "green\n")
        let rolledBack = try proxy.ctl("rollback", "web")
        XCTAssertEqual(rolledBack.status, 0, rolledBack.stdout)
        XCTAssertTrue(rolledBack.stdout.contains("rolled web back to blue"), rolledBack.stdout)
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")

        // A port nothing listens on: the probe fails until the deadline.
        let closed = try Backend(name: "gone", directory: dir)
        let deadAddress = closed.address
        closed.stop()
        let started = Date()
        let failed = try proxy.ctl("deploy", "web", deadAddress, "--timeout", "1s")
        XCTAssertEqual(failed.status, 1, failed.stdout)
        XCTAssertTrue(failed.stdout.contains("not up after 1s"), failed.stdout)
        XCTAssertTrue(failed.stdout.contains("traffic unchanged"), failed.stdout)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 0.9)
        XCTAssertEqual(try curl(proxy.url()).body, "blue\n")
    }

    /// `show events --follow` on the admin socket and `/events` on the admin HTTP listener stream
    /// each change as it happens: a switch made after they started reaches both.
    func testEventStreams_deliverChangesAsTheyHappen() throws {
        let proxy = try Proxy(
            config: blueGreenConfig(blue: blue, green: green, socket: socket, rootExtra: "").replacingOccurrences(
                of: #""admin": { "socket": "\#(socket)" }"#, with: #""admin": { "socket": "\#(socket)", "http": "127.0.0.1:0" }"#),
            directory: dir, socketPath: socket)
        defer { proxy.stop() }
        var adminPort = ""
        XCTAssertTrue(waitUntil {
            guard let line = proxy.child.stderr.split(separator: "\n").first(where: { $0.contains("admin http on http://127.0.0.1:") }) else { return false }
            adminPort = String(line.split(separator: ":")[safe: 4]?.prefix { $0.isNumber } ?? "")
            return !adminPort.isEmpty
        }, proxy.child.stderr)
        let follower = try ChildProcess(CutoverBinary.url, ["ctl", "--socket", socket, "show", "events", "--follow"], directory: dir, label: "follow")
        defer { follower.stop() }
        let jsonFollower = try ChildProcess(CutoverBinary.url, ["ctl", "--socket", socket, "--json", "show", "events", "--follow"], directory: dir, label: "follow-json")
        defer { jsonFollower.stop() }
        let sse = try ChildProcess(URL(fileURLWithPath: "/usr/bin/curl"), ["-s", "-N", "--max-time", "20", "http://127.0.0.1:\(adminPort)/events"], directory: dir, label: "sse")
        defer { sse.stop() }
        XCTAssertTrue(waitUntil {
            follower.stdout.contains("OK following events") && jsonFollower.stdout.contains("following events") && sse.stdout.contains(": following events")
        }, "streams did not start: \(follower.stdout) | \(jsonFollower.stdout) | \(sse.stdout)")
        XCTAssertEqual(try proxy.ctl("switch", "web", "green").status, 0)
        XCTAssertTrue(waitUntil(timeout: 5) { follower.stdout.contains("web/green online (switch)") }, follower.stdout)
        XCTAssertTrue(waitUntil(timeout: 5) { jsonFollower.stdout.contains(#""endpoint":"green""#) && jsonFollower.stdout.contains(#""state":"online""#) }, jsonFollower.stdout)
        XCTAssertTrue(waitUntil(timeout: 5) { sse.stdout.contains("event: change\ndata: {") && sse.stdout.contains(#""endpoint":"green""#) }, sse.stdout)
    }
}

private extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
