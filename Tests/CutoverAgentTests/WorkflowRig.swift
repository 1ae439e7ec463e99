import CutoverAgent
import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// What a user of the shipped workflows has, for real: database `shop` (table `items`, schema v1) on
/// the test cluster, a v1 app (blue) and a v2 app (green) over it, the real `cutover proxy` in front
/// with blue online and green offline behind HTTP probes on `/healthz`, and a client load of reads
/// and writes through the proxy. One rig per test; `stop` ends everything it started.
final class WorkflowRig {
    let cluster: PostgresCluster
    let directory: String
    let socket: String
    let blue: ShopApp
    let green: ShopApp
    let proxy: CutoverChild
    let port: UInt16
    let load = ShopLoad()
    /// The v1 → v2 migration: `items.note` and schema version 2.
    let migration: String

    /// `greenDatabase` is the database v2 will use (`shop_v2` for a stage copy, `shop` when shared).
    /// `afterShopCreated` runs once `shop` exists, before the apps start (a standby of it, say).
    init(cluster: PostgresCluster, greenDSN: String, greenVersion: Int = 2, greenFailsReads: Bool = false, profileExtra: String = "",
         afterShopCreated: () throws -> Void = {}) throws {
        self.cluster = cluster
        directory = NSTemporaryDirectory() + "cutover-workflow-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.createShop(cluster)
        try afterShopCreated()
        migration = directory + "/v2.sql"
        try """
            ALTER TABLE items ADD COLUMN note text;
            INSERT INTO schema_version VALUES (2);
            """.write(toFile: migration, atomically: true, encoding: .utf8)
        blue = try ShopApp(name: "blue", version: 1, dsn: cluster.dsn(database: "shop"))
        green = try ShopApp(name: "green", version: greenVersion, dsn: greenDSN, failsReads: greenFailsReads)
        socket = directory + "/admin.sock"
        let config = directory + "/cutover.json"
        try """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web",
                  "endpoints": [{ "name": "blue", "address": "\(blue.address)" }, { "name": "green", "address": "\(green.address)", "state": "offline" }],
                  "probe": { "type": "http", "path": "/healthz", "interval": "300ms", "timeout": "300ms", "rise": 1, "fall": 8 },
                  "hold_timeout": "120s", "max_held": 10000, "drain_timeout": "10s"\(profileExtra) }],
              "admin": { "socket": "\(socket)" }, "access_log": "off" }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        proxy = try CutoverChild(try CutoverChild.binary, ["proxy", "--config", config], log: directory + "/proxy.log")
        var port: UInt16 = 0
        let proxy = proxy
        let socket = socket
        let started = waitUntil(timeout: 15) {
            guard proxy.isRunning else { return true }  // it refused its config: say why at once
            guard let line = proxy.output.split(separator: "\n").first(where: { $0.contains(" listening on ") }),
                  let on = line.range(of: "listening on ") else { return false }
            port = UInt16(line[on.upperBound...].split(separator: " ")[0].split(separator: ":").last ?? "") ?? 0
            return port != 0 && FileManager.default.fileExists(atPath: socket)
        }
        guard started, proxy.isRunning else { throw FixtureError("proxy did not start: \(proxy.output)") }
        self.port = port
        guard waitUntil(timeout: 15, { (try? self.endpointHealth("blue")) == "up" }) else {
            throw FixtureError("blue never came up: \(proxy.output)")
        }
    }

    /// A fresh `shop` with 100 rows of schema v1 (and no `shop_v2`).
    static func createShop(_ cluster: PostgresCluster) throws {
        let admin = try cluster.connect("postgres")
        for name in ["shop", "shop_v2"] { try admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        try admin.query("CREATE DATABASE shop")
        let shop = try cluster.connect("shop")
        try shop.query("CREATE TABLE items (id bigint PRIMARY KEY, created timestamptz NOT NULL DEFAULT now())")
        try shop.query("CREATE TABLE schema_version (version int PRIMARY KEY)")
        try shop.query("INSERT INTO schema_version VALUES (1)")
        try shop.query("INSERT INTO items (id) SELECT -g FROM generate_series(1, 100) g")
    }

    /// The shipped runbook `name` (Deploy/runbooks/NAME.json).
    static func runbook(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Deploy/runbooks/\(name).json").path
    }

    var journal: String { directory + "/journal" }

    /// `cutover upgrade WORDS...` to completion: exit status and output.
    func upgrade(_ words: [String]) throws -> (status: Int32, output: String) {
        try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade"] + words)
    }

    /// `cutover upgrade run RUNBOOK --set ... --journal J --yes` started in the background.
    func startRun(_ runbook: String, _ settings: [String]) throws -> CutoverChild {
        try CutoverChild(try CutoverChild.binary, ["upgrade", "run", Self.runbook(runbook)] + settings.flatMap { ["--set", $0] }
                         + ["--journal", journal, "--yes"], log: directory + "/run-\(UUID().uuidString.prefix(4)).log")
    }

    /// The run journal as written so far.
    var journalText: String { (try? String(contentsOfFile: journal + "/journal.jsonl", encoding: .utf8)) ?? "" }

    /// The common `--set`s: the proxy socket.
    var proxySetting: String { "proxy_socket=\(socket)" }

    func ctl(_ words: String...) throws -> String {
        try PostgresCluster.runCapturing(try CutoverChild.binary, ["ctl", "--socket", socket] + words).1
    }

    func endpointHealth(_ name: String) throws -> String? {
        let object = try JSONSerialization.jsonObject(with: Data(ctl("--json", "show", "endpoints").utf8)) as? [String: Any]
        return (object?["endpoints"] as? [[String: Any]])?.first { $0["name"] as? String == name }?["health"] as? String
    }

    /// `show profiles --json` for web.
    func web() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(ctl("--json", "show", "profiles").utf8)) as? [String: Any]
        return (object?["profiles"] as? [[String: Any]])?.first { $0["name"] as? String == "web" } ?? [:]
    }

    /// The ids of `items` in `database` (the acknowledged writes must all be there).
    func itemIDs(_ database: String) throws -> Set<Int> {
        Set(try cluster.connect(database).query("SELECT id FROM items WHERE id > 0").compactMap { $0[0].flatMap { Int($0) } })
    }

    /// The upgrade's `status --json`.
    func status() throws -> [String: Any] {
        let (_, output) = try upgrade(["status", "--journal", journal, "--json"])
        return try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] ?? [:]
    }

    /// What the load saw, for the closing figures: requests, failures, acknowledged writes.
    func summary() -> String {
        let answers = load.results
        return "\(answers.count) requests (\(answers.filter { $0.method == "POST" }.count) writes), \(load.failures.count) failed, \(load.acknowledgedWrites.count) writes acknowledged"
    }

    /// The longest a write waited for its answer (the hold window as clients saw it), in seconds.
    var longestWrite: Double {
        load.results.filter { $0.method == "POST" }.map { $0.ended.timeIntervalSince($0.started) }.max() ?? 0
    }

    /// Reads answered while the longest-waiting write was held: more than zero means reads went on.
    var readsDuringLongestWrite: Int {
        let answers = load.results
        guard let longest = answers.filter({ $0.method == "POST" }).max(by: { $0.ended.timeIntervalSince($0.started) < $1.ended.timeIntervalSince($1.started) })
        else { return 0 }
        return answers.filter { $0.method == "GET" && $0.started >= longest.started && $0.ended <= longest.ended }.count
    }

    func stop() {
        load.stop()
        proxy.stop()
        blue.stop()
        green.stop()
        try? FileManager.default.removeItem(atPath: directory)
        if let admin = try? cluster.connect("postgres") {
            for name in ["shop", "shop_v2"] {
                _ = try? admin.query("ALTER DATABASE \(name) RESET default_transaction_read_only")
                _ = try? admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
            }
        }
    }
}

extension WorkflowRig {
    /// Endpoint `name` of web as `show endpoints --json` has it (`state` is the admin state).
    func endpoint(_ name: String) throws -> [String: Any]? {
        let object = try JSONSerialization.jsonObject(with: Data(ctl("--json", "show", "endpoints").utf8)) as? [String: Any]
        return (object?["endpoints"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    /// `held_total` from `show stats --json`: how many requests the proxy ever held.
    func heldTotal() throws -> Int? {
        func find(_ value: Any) -> Int? {
            if let object = value as? [String: Any] {
                if let held = object["held_total"] as? Int { return held }
                return object.values.lazy.compactMap(find).first
            }
            return nil
        }
        return find(try JSONSerialization.jsonObject(with: Data(ctl("--json", "show", "stats").utf8)))
    }

    /// `GET /slow` through the proxy on `connections` threads until `stop`: requests that are in
    /// flight when a switch happens.
    func startSlowRequests(connections: Int, path: String = "/slow") -> SlowRequests {
        let slow = SlowRequests(path: path)
        for _ in 0..<connections { slow.run(port: port) }
        return slow
    }
}

/// Slow requests (`GET /slow`, a second each) kept going on their own connections; every answer, or
/// nil for an exchange without one, is recorded.
final class SlowRequests: @unchecked Sendable {  // `answers` is guarded by `lock`; the rest is atomic or immutable
    private let lock = NSLock()
    private var recorded: [ShopLoad.Answer?] = []
    private let stopFlag = Atomic<Bool>(false)
    private let group = DispatchGroup()
    private let path: String

    init(path: String) { self.path = path }

    var answers: [ShopLoad.Answer?] { lock.withLock { recorded } }

    func stop() {
        stopFlag.store(true, ordering: .relaxed)
        group.wait()
    }

    fileprivate func run(port: UInt16) {
        group.enter()
        Thread { [self] in
            defer { group.leave() }
            while !stopFlag.load(ordering: .relaxed) {
                let started = Date()
                guard let client = try? TestSocket.Client(port: port, readTimeout: 30),
                      let (head, body) = client.exchange("GET \(path) HTTP/1.1\r\nHost: shop\r\n\r\n") else {
                    lock.withLock { recorded.append(nil) }
                    continue
                }
                let lines = head.split(separator: "\r\n")
                let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
                let backend = lines.first { $0.lowercased().hasPrefix("x-backend:") }
                    .map { $0.dropFirst("x-backend:".count).trimmingCharacters(in: .whitespaces) } ?? "-"
                let answer = ShopLoad.Answer(method: "GET", status: status, backend: backend, started: started, ended: Date(),
                                             body: String(decoding: body, as: UTF8.self))
                lock.withLock { recorded.append(answer) }
            }
        }.start()
    }
}
