import CutoverAgent
import Foundation
import XCTest

/// Deploy/runbooks/stage-copy.json end to end under a live read/write load: real PostgreSQL, real
/// v1 and v2 apps, the real proxy and the real runner.
final class StageCopyWorkflowTests: ClusterTestCase {
    private var rig: WorkflowRig?

    override func tearDown() {
        rig?.stop()
        super.tearDown()
    }

    func settings(_ rig: WorkflowRig, migration: String? = nil) -> [String] {
        [rig.proxySetting, "primary=\(cluster.dsn(database: "shop"))", "stage=\(cluster.dsn(database: "shop_v2"))",
         "migration=\(migration ?? rig.migration)"]
    }

    /// The lossless rolling upgrade: exit 0, zero failed requests, every acknowledged write in the
    /// final database, traffic on green, and writes held no longer than copy + migration + a bound.
    func test_stageCopy_underLoad_losesNothingAndFailsNothing() throws {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop_v2"))
        self.rig = rig
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let run = try rig.startRun("stage-copy", settings(rig))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 0, run.output)
        // Some load on v2 after the switch, then stop and look.
        XCTAssertTrue(rig.load.waitForAnswers(200))
        rig.load.stop()
        print("stage-copy: \(rig.summary()); longest write \(String(format: "%.2f", rig.longestWrite)) s, \(rig.readsDuringLongestWrite) reads answered meanwhile\n\(run.output)")
        XCTAssertEqual(rig.load.failures, [], "no request may fail")
        let acknowledged = Set(rig.load.acknowledgedWrites)
        XCTAssertFalse(acknowledged.isEmpty)
        XCTAssertEqual(acknowledged.subtracting(try rig.itemIDs("shop_v2")), [], "every acknowledged write is in the upgraded database")
        XCTAssertGreaterThan(rig.readsDuringLongestWrite, 0, "reads go on while writes are held")
        XCTAssertEqual(rig.load.results.last?.backend, "green")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(try rig.status()["state"] as? String, "succeeded")
        XCTAssertEqual(rig.blue.errors, [])
        XCTAssertEqual(rig.green.errors, [])
    }
}
