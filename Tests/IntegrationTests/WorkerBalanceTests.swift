import Foundation
import XCTest

/// How accepted connections are shared among the workers (`Listener.server`).
final class WorkerBalanceTests: XCTestCase {
    /// Twenty clients that connect back to back land ten on each of two workers, within the one or
    /// two a simultaneous accept on both can add. The accept race alone let the first worker to wake
    /// take whatever had queued, often all of them. `show stats` and `/metrics` say where each
    /// connection is, every one is served, and the counts fall to zero as the clients leave.
    func testConnectionsConnectingAtOnce_areSplitEvenlyOverTwoWorkers() throws {
        let dir = try TemporaryDirectory()
        let blue = try Backend(name: "blue", directory: dir)
        defer { blue.stop() }
        let rig = try ProxyRig(directory: dir, endpoints: [.init(name: "blue", address: blue.address)], adminHTTP: true, workers: 2)
        defer { rig.stop() }

        var clients: [RawConnection] = []
        for _ in 0..<20 { clients.append(try rig.connect()) }
        XCTAssertTrue(waitUntil { (try? rig.stats()["connections_open"] as? Int) == 20 }, "\(String(describing: try? rig.stats()))")
        let byWorker = try rig.stats()["connections_by_worker"] as? [Int] ?? []
        XCTAssertEqual(byWorker.count, 2, "\(byWorker)")
        XCTAssertEqual(byWorker.reduce(0, +), 20, "\(byWorker)")
        XCTAssertLessThanOrEqual((byWorker.max() ?? 0) - (byWorker.min() ?? 0), 2, "connections by worker: \(byWorker)")
        let metrics = try rig.proxy.metrics()
        XCTAssertEqual(byWorker.indices.map { metrics.value("cutover_worker_connections", ["worker": String($0)]).map { Int($0) } }, byWorker.map { Optional($0) }, "/metrics disagrees with show stats")

        for client in clients {
            client.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            XCTAssertTrue(client.readResponse().hasPrefix("HTTP/1.1 200"))
        }
        clients.removeAll()
        XCTAssertTrue(waitUntil { (try? rig.stats()["connections_by_worker"] as? [Int]) == [0, 0] }, "\(String(describing: try? rig.stats()))")
    }
}
