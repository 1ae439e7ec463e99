import CutoverAgent
import Foundation
import XCTest

/// Deploy/runbooks/replica-promote.json end to end under a live read/write load: v2 (green) reads a
/// real `pg_basebackup -R` streaming standby of v1's primary, which the run promotes and migrates.
final class ReplicaPromoteWorkflowTests: ClusterTestCase {
    private var rig: WorkflowRig?
    private var standby: StandbyCluster?

    override func tearDown() {
        rig?.stop()
        standby?.stop()
        super.tearDown()
    }

    /// The rig with green on a standby of `shop` (made once `shop` exists, on a port known beforehand).
    func makeRig() throws -> (WorkflowRig, String) {
        let port = try PostgresCluster.freePort()
        let replica = "host=127.0.0.1 port=\(port) dbname=shop user=postgres"
        let rig = try WorkflowRig(cluster: cluster, greenDSN: replica) {
            self.standby = try StandbyCluster(of: self.cluster, port: port)
        }
        self.rig = rig
        return (rig, replica)
    }

    func settings(_ rig: WorkflowRig, replica: String, migration: String) -> [String] {
        [rig.proxySetting, "primary=\(cluster.dsn(database: "shop"))", "replica=\(replica)", "migration=\(migration)"]
    }

    /// Exit 0, zero failed requests, every acknowledged write on the promoted replica, traffic on
    /// green, reads answered while writes were held; plan says the promotion cannot be undone.
    func test_replicaPromote_underLoad_losesNothingAndFailsNothing() throws {
        let (rig, replica) = try makeRig()
        let plan = try rig.upgrade(["plan", WorkflowRig.runbook("replica-promote")] + settings(rig, replica: replica, migration: rig.migration).flatMap { ["--set", $0] })
        XCTAssertEqual(plan.status, 0, plan.output)
        XCTAssertTrue(plan.output.contains("cannot be undone (a promoted standby cannot become a standby again)"), plan.output)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let run = try rig.startRun("replica-promote", settings(rig, replica: replica, migration: rig.migration))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        rig.load.stop()
        print("replica-promote: \(rig.summary()); longest write \(String(format: "%.2f", rig.longestWrite)) s, \(rig.readsDuringLongestWrite) reads answered meanwhile\n\(run.output)")
        XCTAssertEqual(rig.load.failures.count, 0, "no request may fail: \(rig.load.failures.prefix(3)); events: \((try? rig.ctl("show", "events", "40")) ?? "")")
        let promoted = try PostgresConnection(try ConnectionString(replica))
        let ids = Set(try promoted.query("SELECT id FROM items WHERE id > 0").compactMap { $0[0].flatMap { Int($0) } })
        XCTAssertFalse(rig.load.acknowledgedWrites.isEmpty)
        XCTAssertEqual(Set(rig.load.acknowledgedWrites).subtracting(ids), [], "every acknowledged write is on the promoted replica")
        XCTAssertEqual(try promoted.scalar("SELECT pg_is_in_recovery()::text"), "false")
        XCTAssertGreaterThan(rig.readsDuringLongestWrite, 0, "reads go on while writes are held")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(rig.load.results.last?.backend, "green")
    }

    /// A failing migration on the promoted replica: the run undoes what it can — the primary is
    /// read-write and serves, traffic stays on blue, held writes are answered by blue — and says
    /// the promotion could not be undone.
    func test_failingMigration_givesThePrimaryBack() throws {
        let (rig, replica) = try makeRig()
        let broken = rig.directory + "/broken.sql"
        try "ALTER TABLE items ADD COLUMN note text;\nSELECT no_such_column FROM items;\n".write(toFile: broken, atomically: true, encoding: .utf8)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        let run = try rig.startRun("replica-promote", settings(rig, replica: replica, migration: broken))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 1, run.output)
        XCTAssertTrue(run.output.contains("cannot be undone"), run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load goes on after the rollback")
        rig.load.stop()
        print("replica-promote, failing migration: \(rig.summary())")
        XCTAssertEqual(rig.load.failures.count, 0, "no request may fail: \(rig.load.failures.prefix(3)); events: \((try? rig.ctl("show", "events", "40")) ?? "")")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["blue"])
        XCTAssertEqual(try rig.web()["readonly_gate"] as? String, "off")
        XCTAssertEqual(try ReadOnlyFence(target: try ConnectionString(cluster.dsn(database: "shop"))).status().mode, "read-write")
        XCTAssertEqual(Set(rig.load.acknowledgedWrites).subtracting(try rig.itemIDs("shop")), [], "every acknowledged write is in the primary")
    }
}
