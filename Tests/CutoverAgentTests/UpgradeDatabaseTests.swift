import CutoverAgent
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// `cutover upgrade` with database steps against a real PostgreSQL cluster: undo on failure,
/// kill -9 then rollback, and a copy + migration + rename run.
final class UpgradeDatabaseTests: ClusterTestCase {
    private var paths: [String] = []

    override func tearDownWithError() throws {
        for path in paths { try? FileManager.default.removeItem(atPath: path) }
        guard let cluster else { return }
        let admin = try cluster.connect("postgres")
        try admin.query("ALTER DATABASE app RESET default_transaction_read_only")
        for name in ["app_rb_copy", "app_rb_old"] { try admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    }

    var binary: String { get throws { try CutoverChild.binary } }

    func temporary(_ suffix: String) -> String {
        let path = NSTemporaryDirectory() + "cutover-upgrade-\(UUID().uuidString)\(suffix)"
        paths.append(path)
        return path
    }

    func upgrade(_ arguments: String...) throws -> (status: Int32, output: String) {
        try PostgresCluster.runCapturing(try binary, ["upgrade"] + arguments)
    }

    func runbook(_ steps: String) throws -> String {
        let path = temporary(".json")
        try """
            { "name": "db", "params": { "app": { "default": "\(cluster.dsn())" }, "copy": { "default": "\(cluster.dsn(database: "app_rb_copy"))" } },
              "steps": [\(steps)] }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func mode(_ database: String = "app") throws -> String {
        try ReadOnlyFence(target: try ConnectionString(cluster.dsn(database: database))).status().mode
    }

    func databaseExists(_ name: String) throws -> Bool {
        try cluster.connect("postgres").query("SELECT 1 FROM pg_database WHERE datname = $1", [name]).count == 1
    }

    func status(_ journal: String) throws -> [String: Any] {
        let (code, output) = try upgrade("status", "--journal", journal, "--json")
        XCTAssertEqual(code, 0, output)
        return try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] ?? [:]
    }

    /// plan checks each database read-only: a missing database and a missing migration file are
    /// named, a reachable database passes, and nothing changes.
    func test_plan_namesEveryFailedCheck() throws {
        let path = try runbook("""
            { "kind": "db-readonly", "dsn": "${app}", "mode": "on" },
            { "kind": "db-readonly", "dsn": "\(cluster.dsn(database: "nope"))", "mode": "on" },
            { "kind": "db-run", "dsn": "${app}", "file": "missing.sql" }
            """)
        let (code, output) = try upgrade("plan", path)
        XCTAssertEqual(code, 1, output)
        XCTAssertFalse(output.contains("steps[0] db-readonly:"), output)
        XCTAssertTrue(output.contains("steps[1] db-readonly: "), output)
        XCTAssertTrue(output.contains("nope"), output)
        XCTAssertTrue(output.contains("steps[2] db-run: "), output)
        XCTAssertTrue(output.contains("missing.sql"), output)
        XCTAssertEqual(try mode(), "read-write")
    }

    /// db-readonly on, then `exec false`: exit 1 and the database is read-write again.
    func test_fenceThenFailingExec_undoesTheFence() throws {
        let journal = temporary("-journal")
        let path = try runbook("""
            { "kind": "db-readonly", "dsn": "${app}", "mode": "on", "grace": "200ms" },
            { "kind": "exec", "command": ["false"] }
            """)
        let (code, output) = try upgrade("run", path, "--journal", journal)
        XCTAssertEqual(code, 1, output)
        XCTAssertTrue(output.contains("run FAILED at steps[1] exec"), output)
        XCTAssertTrue(output.contains("undid, last step first: steps[0] db-readonly"), output)
        XCTAssertEqual(try mode(), "read-write")
        let state = try status(journal)
        XCTAssertEqual(state["state"] as? String, "failed")
        XCTAssertEqual((state["steps"] as? [[String: Any]])?.map { $0["status"] as? String }, ["undone", "failed"])
    }

    /// kill -9 inside a slow step after fencing and copying: interrupted, and rollback drops the
    /// copy and makes the database read-write.
    func test_kill9AfterFenceAndCopy_rollbackRestores() throws {
        let journal = temporary("-journal")
        let path = try runbook("""
            { "kind": "db-readonly", "dsn": "${app}", "mode": "on", "grace": "200ms" },
            { "kind": "db-copy", "from": "${app}", "to": "${copy}" },
            { "kind": "sleep", "duration": "60s" }
            """)
        let runner = Process()
        runner.executableURL = URL(fileURLWithPath: try binary)
        runner.arguments = ["upgrade", "run", path, "--journal", journal]
        runner.standardOutput = FileHandle.nullDevice
        runner.standardError = FileHandle.nullDevice
        runner.standardInput = FileHandle.nullDevice
        try runner.run()
        defer { if runner.isRunning { kill(runner.processIdentifier, SIGKILL); runner.waitUntilExit() } }
        let deadline = Date().addingTimeInterval(30)
        func sleepStarted() -> Bool {
            let text = (try? String(contentsOfFile: journal + "/journal.jsonl", encoding: .utf8)) ?? ""
            return text.contains("\"event\":\"step_started\",\"index\":2")
        }
        while !sleepStarted() && Date() < deadline && runner.isRunning { usleep(20_000) }
        XCTAssertTrue(sleepStarted(), "the runner did not reach the sleep")
        kill(runner.processIdentifier, SIGKILL)
        runner.waitUntilExit()
        XCTAssertEqual(try mode(), "read-only")
        XCTAssertTrue(try databaseExists("app_rb_copy"))

        let state = try status(journal)
        XCTAssertEqual(state["state"] as? String, "interrupted")
        XCTAssertEqual(state["interrupted_step"] as? Int, 2)
        let (code, output) = try upgrade("rollback", "--journal", journal, "--yes")
        XCTAssertEqual(code, 0, output)
        XCTAssertEqual(try mode(), "read-write")
        XCTAssertFalse(try databaseExists("app_rb_copy"), "the copy the run made is dropped")
        XCTAssertEqual(try status(journal)["state"] as? String, "rolled-back")
    }

    /// copy → migration on the copy → rename swap: plan passes (the migration on a copy not made yet
    /// is noted, not failed), run succeeds, the new database has the migration's column.
    func test_copyMigrateRename_runs() throws {
        let journal = temporary("-journal")
        let migration = temporary(".sql")
        try "ALTER TABLE items ADD COLUMN tag text;\n".write(toFile: migration, atomically: true, encoding: .utf8)
        let path = try runbook("""
            { "kind": "db-copy", "from": "${app}", "to": "${copy}", "method": "template" },
            { "kind": "db-run", "dsn": "${copy}", "file": "\(migration)" },
            { "kind": "db-rename", "dsn": "${app}", "renames": [{"from": "app", "to": "app_rb_old"}, {"from": "app_rb_copy", "to": "app"}] },
            { "kind": "db-rename", "dsn": "${app}", "renames": [{"from": "app", "to": "app_rb_copy"}, {"from": "app_rb_old", "to": "app"}], "title": "swap back" }
            """)
        let plan = try upgrade("plan", path)
        XCTAssertEqual(plan.status, 0, plan.output)
        XCTAssertTrue(plan.output.contains("note: steps[1] db-run: not checked, it uses a database step 1 creates"), plan.output)
        XCTAssertFalse(try databaseExists("app_rb_copy"), "plan changed nothing")

        let (code, output) = try upgrade("run", path, "--journal", journal)
        XCTAssertEqual(code, 0, output)
        let columns = try cluster.connect("app_rb_copy").query("SELECT column_name FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'tag'")
        XCTAssertEqual(columns.count, 1, "the migrated copy has the new column")
        XCTAssertEqual(try cluster.connect("app").query("SELECT note FROM items").first?.first ?? nil, "seed")
    }

    // MARK: the proxy and the database in one runbook

    /// Two backends and a proxy in front of them (profile web: blue online, green offline).
    func startProxy() throws -> (socket: String, children: [CutoverChild]) {
        let dir = temporary("-proxy")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var children: [CutoverChild] = []
        var addresses: [String] = []
        for name in ["blue", "green"] {
            let child = try CutoverChild(try binary, ["backend", "--listen", "127.0.0.1:0", "--name", name], log: "\(dir)/\(name).log")
            children.append(child)
            var address = ""
            XCTAssertTrue(waitUntil(timeout: 15) {
                address = child.output.split(separator: "\n").first { $0.hasPrefix("listening on ") }.map { String($0.dropFirst(13)) } ?? ""
                return !address.isEmpty
            }, "backend \(name): \(child.output)")
            addresses.append(address)
        }
        let socket = "\(dir)/admin.sock"
        let config = "\(dir)/cutover.json"
        try """
            { "listeners": [{ "name": "web", "address": "127.0.0.1:0", "profile": "web" }],
              "profiles": [{ "name": "web", "endpoints": [
                  { "name": "blue", "address": "\(addresses[0])" }, { "name": "green", "address": "\(addresses[1])", "state": "offline" } ] }],
              "admin": { "socket": "\(socket)" }, "access_log": "off" }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let proxy = try CutoverChild(try binary, ["proxy", "--config", config], log: "\(dir)/proxy.log")
        children.append(proxy)
        XCTAssertTrue(waitUntil(timeout: 15) { FileManager.default.fileExists(atPath: socket) }, "proxy: \(proxy.output)")
        return (socket, children)
    }

    /// Live endpoints and paused, as the proxy's `show profiles --json` says.
    func web(_ socket: String) throws -> (live: [String], paused: Bool) {
        let (_, output) = try PostgresCluster.runCapturing(try binary, ["ctl", "--socket", socket, "--json", "show", "profiles"])
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
        let web = (object?["profiles"] as? [[String: Any]])?.first { $0["name"] as? String == "web" }
        return (web?["live"] as? [String] ?? [], web?["paused"] as? Bool ?? true)
    }

    /// pause → fence → switch → resume → unfence succeeds; the same with a failing last step puts
    /// the proxy back on blue, unpaused, and the database read-write.
    func test_proxyAndDatabase_runSucceeds_andFailureRestoresBoth() throws {
        let (socket, children) = try startProxy()
        defer { children.forEach { $0.stop() } }
        let steps = """
            { "kind": "pause", "socket": "\(socket)", "profile": "web" },
            { "kind": "db-readonly", "dsn": "${app}", "mode": "on", "grace": "200ms" },
            { "kind": "switch", "socket": "\(socket)", "profile": "web", "endpoint": "green", "wait": true },
            { "kind": "resume", "socket": "\(socket)", "profile": "web" }
            """
        let good = try runbook(steps + #", { "kind": "db-readonly", "dsn": "${app}", "mode": "off" }"#)
        let journal = temporary("-journal")
        let run = try upgrade("run", good, "--journal", journal)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertEqual(try status(journal)["state"] as? String, "succeeded")
        XCTAssertEqual(try web(socket).live, ["green"])
        XCTAssertEqual(try mode(), "read-write")

        // Back to blue by hand, then a run whose last step fails.
        XCTAssertEqual(try PostgresCluster.runCapturing(try binary, ["ctl", "--socket", socket, "switch", "web", "blue"]).0, 0)
        let bad = try runbook(steps + #", { "kind": "exec", "command": ["false"] }"#)
        let failed = try upgrade("run", bad, "--journal", journal)
        XCTAssertEqual(failed.status, 1, failed.output)
        let after = try web(socket)
        XCTAssertEqual(after.live, ["blue"], failed.output)
        XCTAssertFalse(after.paused)
        XCTAssertEqual(try mode(), "read-write")
        let state = try status(journal)
        XCTAssertEqual(state["state"] as? String, "failed")
        XCTAssertEqual((state["failed_step"] as? [String: Any])?["index"] as? Int, 4)
    }

    /// The kill -9 loop over the proxy and the database: killed right after each step in turn, the
    /// run is interrupted, and rollback restores blue, the open gate, read-write and no copy.
    func test_kill9AfterEachStep_rollbackRestoresProxyAndDatabase() throws {
        let (socket, children) = try startProxy()
        defer { children.forEach { $0.stop() } }
        let journal = temporary("-journal")
        let path = try runbook("""
            { "kind": "pause", "socket": "\(socket)", "profile": "web" },
            { "kind": "db-readonly", "dsn": "${app}", "mode": "on", "grace": "200ms" },
            { "kind": "db-copy", "from": "${app}", "to": "${copy}" },
            { "kind": "switch", "socket": "\(socket)", "profile": "web", "endpoint": "green" },
            { "kind": "sleep", "duration": "60s" }
            """)
        func journalText() -> String { (try? String(contentsOfFile: journal + "/journal.jsonl", encoding: .utf8)) ?? "" }
        for k in 0..<4 {
            let runner = Process()
            runner.executableURL = URL(fileURLWithPath: try binary)
            runner.arguments = ["upgrade", "run", path, "--journal", journal]
            runner.standardOutput = FileHandle.nullDevice
            runner.standardError = FileHandle.nullDevice
            runner.standardInput = FileHandle.nullDevice
            try runner.run()
            let pid = runner.processIdentifier
            XCTAssertTrue(waitUntil(timeout: 30) {
                let text = journalText()
                return text.contains("\"pid\":\(pid)") && text.contains("\"event\":\"step_finished\",\"index\":\(k),")
            }, "step \(k) did not finish: \(journalText())")
            kill(pid, SIGKILL)
            runner.waitUntilExit()
            let state = try status(journal)
            XCTAssertEqual(state["state"] as? String, "interrupted", "after step \(k)")
            let (code, output) = try upgrade("rollback", "--journal", journal, "--yes")
            XCTAssertEqual(code, 0, "after step \(k): \(output)\njournal:\n\(journalText())")
            let web = try web(socket)
            XCTAssertEqual(web.live, ["blue"], "after step \(k)")
            XCTAssertFalse(web.paused, "after step \(k)")
            XCTAssertEqual(try mode(), "read-write", "after step \(k)")
            XCTAssertFalse(try databaseExists("app_rb_copy"), "after step \(k)")
            // A template copy killed midway refuses connections to its source: rollback gives them back.
            XCTAssertNoThrow(try cluster.connect("app").query("SELECT 1"), "after step \(k): app accepts connections")
        }
    }
}
