import Foundation
import XCTest

/// Where the workers' poller threads may run (`worker_cpu_affinity`), as the kernel reports it in
/// `/proc/PID/task/TID/status`.
final class WorkerAffinityTests: XCTestCase {
    /// By default, with a worker per CPU, worker *i* is bound to the *i*-th CPU the process may
    /// use; with `off` each may run on all of them; fewer workers than CPUs are left free; a proxy
    /// started confined to one CPU (`taskset`) binds both its workers to that one, not to CPUs 0
    /// and 1, and with the default worker count starts one worker there. Each serves requests
    /// either way.
    func testPollerThreads_areBoundToTheProcessCPUsInTurn_orLeftToTheScheduler() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        defer { blue.stop() }
        let endpoints = [ProxyRig.Endpoint(name: "blue", address: blue.address)]
        // The proxies inherit this process's mask.
        let allowed = try Self.allowedCPUs(statusOf: "/proc/self/status")
        XCTAssertFalse(allowed.isEmpty)
        let workers = max(2, allowed.count)
        func pollers(_ rig: ProxyRig) -> [String: [Int]]? { try? Self.pollerCPUs(pid: rig.proxy.child.pid) }

        let bound = try ProxyRig(directory: dir, endpoints: endpoints, workers: workers)
        defer { bound.stop() }
        let perCPU = Dictionary(uniqueKeysWithValues: (0..<workers).map { ("cutover.poll.\($0)", [allowed[$0 % allowed.count]]) })
        XCTAssertTrue(waitUntil { pollers(bound) == perCPU }, "pollers: \(String(describing: pollers(bound))), process may use \(allowed)")
        try Self.assertServes(bound, workers: workers)

        let free = try ProxyRig(directory: dir, endpoints: endpoints, settings: [#""worker_cpu_affinity": "off""#], workers: workers)
        defer { free.stop() }
        XCTAssertTrue(waitUntil { pollers(free)?.count == workers })
        XCTAssertEqual(pollers(free), Dictionary(uniqueKeysWithValues: (0..<workers).map { ("cutover.poll.\($0)", allowed) }))
        try Self.assertServes(free, workers: workers)

        if allowed.count >= 2 {
            let fewer = try ProxyRig(directory: dir, endpoints: endpoints, workers: allowed.count - 1)
            defer { fewer.stop() }
            XCTAssertTrue(waitUntil { pollers(fewer)?.count == allowed.count - 1 })
            XCTAssertEqual(Set(pollers(fewer)?.values.map { $0 } ?? []), [allowed], "fewer workers than CPUs stay free")
        }

        let last = allowed[allowed.count - 1]
        let confined = try ProxyRig(directory: dir, endpoints: endpoints, workers: 2, launcher: ["/usr/bin/taskset", "-c", String(last)])
        defer { confined.stop() }
        let oneCPU = ["cutover.poll.0": [last], "cutover.poll.1": [last]]
        XCTAssertTrue(waitUntil { pollers(confined) == oneCPU }, "pollers: \(String(describing: pollers(confined)))")
        try Self.assertServes(confined, workers: 2)

        // The default count follows the mask too: one CPU, one worker, bound to it.
        let confinedDefault = try ProxyRig(directory: dir, endpoints: endpoints, workers: 0, launcher: ["/usr/bin/taskset", "-c", String(last)])
        defer { confinedDefault.stop() }
        XCTAssertTrue(waitUntil { pollers(confinedDefault) == ["cutover.poll.0": [last]] }, "pollers: \(String(describing: pollers(confinedDefault)))")
        try Self.assertServes(confinedDefault, workers: 1)
    }

    /// A connection per worker lands one on each (`Listener.server`), and every one is answered.
    private static func assertServes(_ rig: ProxyRig, workers: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let clients = try (0..<workers).map { _ in try rig.connect() }
        XCTAssertTrue(waitUntil { (try? rig.stats()["connections_by_worker"] as? [Int]) == Array(repeating: 1, count: workers) },
                      "\(String(describing: try? rig.stats()))", file: file, line: line)
        for client in clients {
            client.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            XCTAssertTrue(client.readResponse().hasPrefix("HTTP/1.1 200"), file: file, line: line)
        }
    }

    /// The CPUs each `cutover.poll.N` thread of `pid` may run on, by thread name.
    private static func pollerCPUs(pid: Int32) throws -> [String: [Int]] {
        var found: [String: [Int]] = [:]
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") {
            guard let thread = Int32(entry),
                  let name = try? String(contentsOfFile: "/proc/\(pid)/task/\(entry)/comm", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines),
                  name.hasPrefix("cutover.poll.")
            else { continue }
            found[name] = try allowedCPUs(statusOf: "/proc/\(pid)/task/\(thread)/status")
        }
        return found
    }

    /// `Cpus_allowed_list` of a `/proc/…/status` file, expanded: `0-2,5` is `[0, 1, 2, 5]`.
    private static func allowedCPUs(statusOf path: String) throws -> [Int] {
        let status = try String(contentsOfFile: path, encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else {
            throw FixtureError("no Cpus_allowed_list in \(path)")
        }
        let list = line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces)
        return try list.split(separator: ",").flatMap { part -> [Int] in
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            guard let low = bounds.first, let high = bounds.last, bounds.count <= 2 else { throw FixtureError("unreadable CPU list \(list)") }
            return Array(low...high)
        }
    }
}
