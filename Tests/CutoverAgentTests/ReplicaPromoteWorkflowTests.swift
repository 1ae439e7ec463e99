import CutoverAgent
import Foundation
import XCTest

/// Deploy/runbooks/replica-promote.json end to end under a live read/write load: the class's cluster
/// is the primary, a `pg_basebackup -R` standby of it is v2's database.
final class ReplicaPromoteWorkflowTests: ClusterTestCase {
    private var rig: WorkflowRig?
    private var standby: StandbyCluster?

    override func tearDown() {
        rig?.stop()
        standby?.stop()
        super.tearDown()
    }

    /// The rig with green on a fresh standby's `shop`, once the standby has replayed the shop.
    private func makeRig() throws -> (WorkflowRig, StandbyCluster) {
        try WorkflowRig.createShop(cluster)
        let standby = try StandbyCluster(of: cluster)
        self.standby = standby
        let rig = try WorkflowRig(cluster: cluster, greenDSN: standby.dsn(database: "shop"))
        self.rig = rig
        // The rig made `shop` again on the primary: the standby replays that too.
        XCTAssertTrue(waitUntil(timeout: 15) {
            (try? PostgresConnection(try ConnectionString(standby.dsn(database: "shop"))).scalar("SELECT count(*) FROM items")) == "100"
        }, "the standby never replayed the shop")
        return (rig, standby)
    }

    private func settings(_ rig: WorkflowRig, _ standby: StandbyCluster, migration: String) -> [String] {
        [rig.proxySetting, "primary=\(cluster.dsn(database: "shop"))", "replica=\(standby.dsn(database: "shop"))", "migration=\(migration)"]
    }

    private func ids(_ dsn: String) throws -> Set<Int> {
        Set(try PostgresConnection(try ConnectionString(dsn)).query("SELECT id FROM items WHERE id > 0").compactMap { $0[0].flatMap { Int($0) } })
    }

    /// Exit 0, zero failed requests, every acknowledged write on the promoted replica, traffic on
    /// green, reads answered while writes were held, and the hold window measured against the migration.
    func test_replicaPromote_underLoad_losesNothingAndFailsNothing() throws {
        let (rig, standby) = try makeRig()
        // The migration takes a measurable second so the hold window can be set against it.
        let migration = rig.directory + "/v2-slow.sql"
        try "SELECT pg_sleep(1);\nALTER TABLE items ADD COLUMN note text;\nINSERT INTO schema_version VALUES (2);\n".write(toFile: migration, atomically: true, encoding: .utf8)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let run = try rig.startRun("replica-promote", settings(rig, standby, migration: migration))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        rig.load.stop()
        print("replica-promote: \(rig.summary()); longest write (hold window) \(String(format: "%.2f", rig.longestWrite)) s against a migration of ≥ 1 s, \(rig.readsDuringLongestWrite) reads answered meanwhile\n\(run.output)")
        XCTAssertEqual(rig.load.failures, [], "no request may fail")
        let acknowledged = Set(rig.load.acknowledgedWrites)
        XCTAssertFalse(acknowledged.isEmpty)
        XCTAssertEqual(acknowledged.subtracting(try ids(standby.dsn(database: "shop"))), [], "every acknowledged write is on the promoted replica")
        XCTAssertGreaterThan(rig.readsDuringLongestWrite, 0, "reads go on while writes are held")
        XCTAssertGreaterThanOrEqual(rig.longestWrite, 1.0, "writes were held across the migration")
        XCTAssertLessThan(rig.longestWrite, 1.0 + 5.0, "the hold window is the migration plus a few seconds (fence, catch-up, promotion, health)")
        XCTAssertEqual(rig.load.results.last?.backend, "green")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(try rig.status()["state"] as? String, "succeeded")
        XCTAssertEqual(rig.blue.errors, [])
        XCTAssertEqual(rig.green.errors, [])
    }

    /// A failing migration on the promoted replica: the plan says the promotion cannot be undone; the
    /// run rolls back to a writable primary with traffic on blue, the held writes released to blue.
    func test_replicaPromote_failingMigration_rollsBackToAWritablePrimaryOnBlue() throws {
        let (rig, standby) = try makeRig()
        let failing = rig.directory + "/v2-failing.sql"
        try "ALTER TABLE items ADD COLUMN note text;\nSELECT 1/0;\n".write(toFile: failing, atomically: true, encoding: .utf8)
        let plan = try rig.upgrade(["plan", WorkflowRig.runbook("replica-promote")] + settings(rig, standby, migration: failing).flatMap { ["--set", $0] })
        XCTAssertEqual(plan.status, 0, plan.output)
        XCTAssertTrue(plan.output.contains("cannot be undone (a promoted standby"), "the plan says the promotion cannot be undone: \(plan.output)")
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let run = try rig.startRun("replica-promote", settings(rig, standby, migration: failing))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertNotEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        rig.load.stop()
        print("replica-promote failing migration: \(rig.summary()); longest write \(String(format: "%.2f", rig.longestWrite)) s\n\(run.output)")
        XCTAssertEqual(rig.load.failures, [], "no request may fail: the held writes go to blue")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["blue"])
        XCTAssertEqual(rig.load.results.last?.backend, "blue")
        let primary = try cluster.connect("shop")
        XCTAssertEqual(try primary.scalar("SHOW transaction_read_only"), "off", "the primary is writable again")
        XCTAssertEqual(Set(rig.load.acknowledgedWrites).subtracting(try rig.itemIDs("shop")), [], "every acknowledged write is on the primary")
        XCTAssertEqual(rig.blue.errors, [])
    }
}
