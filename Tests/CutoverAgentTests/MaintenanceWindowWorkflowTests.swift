import CutoverAgent
import Foundation
import Synchronization
import XCTest

/// Deploy/runbooks/maintenance-window.json end to end under a live read/write load: the proxy's
/// maintenance gate, the file flag, a transactional migration, and its failure.
final class MaintenanceWindowWorkflowTests: ClusterTestCase {
    private var rig: WorkflowRig?

    override func tearDown() {
        rig?.stop()
        super.tearDown()
    }

    /// Starts the rig and the load (maintenance 503s expected) and runs the runbook with `migration`,
    /// watching the flag file meanwhile: the run, whether the flag was ever seen, and the run's time.
    private func runWindow(migration: String) throws -> (WorkflowRig, CutoverChild, flagSeen: Bool, seconds: Double) {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop"))
        self.rig = rig
        let flag = rig.directory + "/maintenance.flag"
        let migrationFile = rig.directory + "/window.sql"
        try migration.write(toFile: migrationFile, atomically: true, encoding: .utf8)
        rig.load.expectsMaintenance.store(true, ordering: .relaxed)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let started = Date()
        let run = try rig.startRun("maintenance-window", [rig.proxySetting, "database=\(cluster.dsn(database: "shop"))",
                                                          "migration=\(migrationFile)", "flag_file=\(flag)"])
        var flagSeen = false
        XCTAssertTrue(waitUntil(timeout: 60) {
            if FileManager.default.fileExists(atPath: flag) { flagSeen = true }
            return !run.isRunning
        }, "the run did not end: \(run.output)")
        let seconds = Date().timeIntervalSince(started)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        rig.load.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: flag), "the flag is cleared after the window")
        XCTAssertEqual(try rig.web()["maintenance"] as? Bool, false, "the gate is open again")
        return (rig, run, flagSeen, seconds)
    }

    /// The window: exit 0; every request in it answered with the maintenance 503 and Retry-After;
    /// no other failure; every acknowledged write kept; the flag up during the window, gone after.
    func test_maintenanceWindow_underLoad_answersMaintenance_losesNothing() throws {
        // The migration sleeps a second so the window is long enough to be seen by the load.
        let (rig, run, flagSeen, seconds) = try runWindow(migration: "SELECT pg_sleep(1);\nALTER TABLE items ADD COLUMN note text;\nINSERT INTO schema_version VALUES (2);\n")
        let maintenance = rig.load.maintenanceAnswers
        let windowStart = maintenance.map(\.started).min() ?? Date()
        let windowEnd = maintenance.map(\.ended).max() ?? Date()
        // Surely inside the gate's interval: sent after a 503 was received and answered before the
        // last 503 was sent (an answer's `ended` is taken when its thread records it, which may be late
        // on a busy machine, so the 503s' own bounds would count a green answer recorded early as inside).
        let surelyAfter = maintenance.map(\.ended).min() ?? Date()
        let surelyBefore = maintenance.map(\.started).max() ?? Date()
        let inWindow = rig.load.results.filter { $0.started > surelyAfter && $0.ended < surelyBefore }
        print("maintenance-window: \(rig.summary()); \(maintenance.count) maintenance 503s over \(String(format: "%.2f", windowEnd.timeIntervalSince(windowStart))) s (run \(String(format: "%.2f", seconds)) s, migration ≥ 1 s); flag seen \(flagSeen)\n\(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertEqual(rig.load.failures, [], "no failure besides the maintenance answers")
        XCTAssertGreaterThan(maintenance.count, 0, "requests in the window get the maintenance page")
        XCTAssertEqual(inWindow.filter { $0.status != 503 }.map { "\($0.method) \($0.status) \($0.backend)" }, [],
                       "every request inside the window is answered by the maintenance gate")
        XCTAssertTrue(flagSeen, "the flag file exists during the window")
        let acknowledged = Set(rig.load.acknowledgedWrites)
        XCTAssertFalse(acknowledged.isEmpty)
        XCTAssertEqual(acknowledged.subtracting(try rig.itemIDs("shop")), [], "every acknowledged write is kept")
        XCTAssertEqual(rig.load.results.last?.backend, "green")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(rig.blue.errors, [])
        XCTAssertEqual(rig.green.errors, [])
    }

    /// A migration failing halfway: its transaction leaves nothing, the gate opens, traffic stays on
    /// blue, the flag is cleared, and nothing but maintenance answers failed.
    func test_maintenanceWindow_failingMigration_leavesNothing_gateOff_trafficOnBlue() throws {
        let (rig, run, flagSeen, _) = try runWindow(migration: "ALTER TABLE items ADD COLUMN note text;\nINSERT INTO schema_version VALUES (2);\nSELECT 1/0;\n")
        print("maintenance-window failing migration: \(rig.summary()); \(rig.load.maintenanceAnswers.count) maintenance 503s; flag seen \(flagSeen)\n\(run.output)")
        XCTAssertNotEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertEqual(rig.load.failures, [], "no failure besides the maintenance answers")
        let shop = try cluster.connect("shop")
        XCTAssertEqual(try shop.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'"), "0", "the column is not there")
        XCTAssertEqual(try shop.scalar("SELECT count(*) FROM schema_version WHERE version = 2"), "0", "schema version 2 is not there")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["blue"])
        XCTAssertEqual(rig.load.results.last?.backend, "blue")
        XCTAssertEqual(Set(rig.load.acknowledgedWrites).subtracting(try rig.itemIDs("shop")), [], "every acknowledged write is kept")
        XCTAssertEqual(rig.blue.errors, [])
    }
}
