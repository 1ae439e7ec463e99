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
        XCTAssertEqual(rig.load.failures.count, 0, "no request may fail: \(rig.load.failures.prefix(3)); events: \((try? rig.ctl("show", "events")) ?? "")")
        let acknowledged = Set(rig.load.acknowledgedWrites)
        XCTAssertFalse(acknowledged.isEmpty)
        XCTAssertEqual(acknowledged.subtracting(try rig.itemIDs("shop_v2")), [], "every acknowledged write is in the upgraded database")
        XCTAssertGreaterThan(rig.readsDuringLongestWrite, 0, "reads go on while writes are held")
        XCTAssertEqual(rig.load.results.last?.backend, "green")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(try rig.status()["state"] as? String, "succeeded")
        XCTAssertEqual(rig.blue.errors, [])
        XCTAssertEqual(rig.green.errors, [])

        // Past the point of no return: rollback refuses and says what would be lost.
        let refused = try rig.upgrade(["rollback", "--journal", rig.journal, "--yes"])
        XCTAssertNotEqual(refused.status, 0, refused.output)
        XCTAssertTrue(refused.output.contains("--accept-data-loss") && refused.output.contains("stage database"), refused.output)
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"], "a refused rollback changes nothing")
    }

    /// The guarded commit: green passes its health checks but fails reads. Judged on reads while the
    /// writes are still held, it breaches; the guard reverts to blue and the run rolls back. No write
    /// is lost and none reaches green; the only failed requests are the reads green answered badly.
    func test_guardedCommit_brokenGreen_revertsAndRollsBack_losingNoWrite() throws {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop_v2"), greenFailsReads: true,
                                  profileExtra: #", "guard": { "min_requests": 10, "interval": "200ms" }"#)
        self.rig = rig
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let run = try rig.startRun("stage-copy", settings(rig) + ["guard=20s"])
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 1, run.output)
        XCTAssertTrue(run.output.contains("guard-breach") && run.output.contains("5xx ratio"), run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load goes on after the rollback")
        rig.load.stop()
        let answers = rig.load.results
        let badReads = answers.filter { $0.backend == "green" && $0.status == 500 }
        print("stage-copy, guarded commit with a broken green: \(rig.summary()); \(badReads.count) reads answered 500 by green before the revert")
        XCTAssertEqual(answers.filter { $0.method == "POST" && $0.backend == "green" }.count, 0, "a write reached green")
        XCTAssertEqual(rig.load.failures.filter { !$0.hasPrefix("GET 500 from green") }.prefix(3), [], "only green's bad reads may fail")
        XCTAssertGreaterThan(badReads.count, 0, "green was judged on real reads")
        let acknowledged = Set(rig.load.acknowledgedWrites)
        XCTAssertFalse(acknowledged.isEmpty)
        XCTAssertEqual(acknowledged.subtracting(try rig.itemIDs("shop")), [], "every acknowledged write is in v1's database")
        try assertBackOnBlue(rig)
        XCTAssertEqual(try rig.status()["state"] as? String, "failed")
    }

    /// A migration that fails halfway: the run undoes itself; the primary takes writes again, the
    /// copy is gone, traffic stays on blue, and the writes held meanwhile are answered by blue.
    func test_failingMigration_rollsBack_andStillNoRequestFails() throws {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop_v2"))
        self.rig = rig
        let broken = rig.directory + "/broken.sql"
        try "ALTER TABLE items ADD COLUMN note text;\nSELECT no_such_column FROM items;\n".write(toFile: broken, atomically: true, encoding: .utf8)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        let run = try rig.startRun("stage-copy", settings(rig, migration: broken))
        XCTAssertTrue(waitUntil(timeout: 120) { !run.isRunning }, "the run did not end: \(run.output)")
        XCTAssertEqual(run.process.terminationStatus, 1, run.output)
        XCTAssertTrue(run.output.contains("no_such_column"), run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load goes on after the rollback")
        rig.load.stop()
        print("stage-copy, failing migration: \(rig.summary()); longest write \(String(format: "%.2f", rig.longestWrite)) s")
        XCTAssertEqual(rig.load.failures.count, 0, "no request may fail: \(rig.load.failures.prefix(3)); events: \((try? rig.ctl("show", "events")) ?? "")")
        try assertBackOnBlue(rig)
        XCTAssertEqual(try rig.status()["state"] as? String, "failed")
    }

    /// kill -9 of the runner at several moments (writes just held, at the copy, inside a slow
    /// migration, just before the switch), under load: status says interrupted and names the step,
    /// and rollback gives back a serving, writable v1 with nothing lost and no request failed. Then
    /// a kill right after the switch: the point of no return is a step away, so either rollback
    /// still restores v1 or (the release had begun) it refuses without --accept-data-loss and
    /// resume finishes the upgrade instead.
    func test_kill9AtSeveralMoments_rollbackRestoresV1() throws {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop_v2"))
        self.rig = rig
        let slow = try slowMigration(rig)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(100))
        func killed(at event: String, _ index: Int) throws -> [String: Any] {
            let run = try rig.startRun("stage-copy", settings(rig, migration: slow))
            XCTAssertTrue(waitUntil(timeout: 60) { rig.journalText.contains(#""event":"\#(event)","index":\#(index),"#) || !run.isRunning },
                          "\(event) \(index) never came: \(run.output)")
            run.stop()
            let status = try rig.status()
            XCTAssertEqual(status["state"] as? String, "interrupted", "killed at \(event) \(index): \(run.output)")
            // Killed inside a step, between two, or after the last step but before the run's end.
            let allDone = (status["steps"] as? [[String: Any]])?.allSatisfy { $0["status"] as? String == "done" } ?? false
            XCTAssertTrue(status["interrupted_step"] != nil || status["resume_from"] != nil || allDone,
                          "killed at \(event) \(index): status names the step: \(status)")
            return status
        }
        // The wait-idle after writes are held (3), the copy (7), the migration (9), before the switch (10 done).
        for (event, index) in [("step_started", 3), ("step_started", 7), ("step_started", 9), ("step_finished", 10)] {
            _ = try killed(at: event, index)
            let rollback = try rig.upgrade(["rollback", "--journal", rig.journal, "--yes"])
            XCTAssertEqual(rollback.status, 0, "killed at \(event) \(index): \(rollback.output)")
            try assertBackOnBlue(rig)
            XCTAssertTrue(rig.load.waitForAnswers(50), "v1 serves after the rollback from \(event) \(index)")
        }
        // Right after the switch the last step is a few milliseconds away: the kill may land before
        // it, inside it, or after the run ended. Each is a state with one right answer.
        let last = try rig.startRun("stage-copy", settings(rig, migration: slow))
        XCTAssertTrue(waitUntil(timeout: 60) { rig.journalText.contains(#""event":"step_finished","index":11,"#) || !last.isRunning }, last.output)
        last.stop()
        let state = try rig.status()["state"] as? String
        XCTAssertTrue(state == "interrupted" || state == "succeeded", "after the switch: \(state ?? "-")")
        let rollback = try rig.upgrade(["rollback", "--journal", rig.journal, "--yes"])
        let endedOnGreen: Bool
        if rollback.status == 0 {
            try assertBackOnBlue(rig)
            endedOnGreen = false
        } else {
            XCTAssertTrue(rollback.output.contains("--accept-data-loss"), rollback.output)
            if state == "interrupted" {
                let resume = try rig.upgrade(["resume", "--journal", rig.journal, "--yes"])
                XCTAssertEqual(resume.status, 0, resume.output)
            }
            XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
            endedOnGreen = true
        }
        XCTAssertTrue(rig.load.waitForAnswers(50))
        rig.load.stop()
        print("stage-copy, kill -9 at 5 moments (rollback 4 times, then \(endedOnGreen ? "resume past the point of no return" : "rollback")): \(rig.summary())")
        XCTAssertEqual(rig.load.failures.count, 0, "no request may fail: \(rig.load.failures.prefix(3))")
        let database = endedOnGreen ? "shop_v2" : "shop"
        XCTAssertEqual(Set(rig.load.acknowledgedWrites).subtracting(try rig.itemIDs(database)), [], "every acknowledged write is in \(database)")
    }

    /// kill -9 inside a slow migration, then resume: the upgrade completes with nothing lost.
    func test_kill9InTheMigration_resumeCompletesTheUpgrade() throws {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop_v2"))
        self.rig = rig
        let slow = try slowMigration(rig)
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(100))
        let run = try rig.startRun("stage-copy", settings(rig, migration: slow))
        XCTAssertTrue(waitUntil(timeout: 60) { rig.journalText.contains(#""event":"step_started","index":9,"#) }, run.output)
        run.stop()
        let status = try rig.status()
        XCTAssertEqual(status["state"] as? String, "interrupted")
        XCTAssertEqual(status["interrupted_step"] as? Int, 9, "\(status)")
        let resume = try rig.upgrade(["resume", "--journal", rig.journal, "--yes"])
        XCTAssertEqual(resume.status, 0, resume.output)
        XCTAssertTrue(rig.load.waitForAnswers(100))
        rig.load.stop()
        print("stage-copy, kill -9 in the migration then resume: \(rig.summary()); longest write \(String(format: "%.2f", rig.longestWrite)) s")
        XCTAssertEqual(rig.load.failures.count, 0, "no request may fail: \(rig.load.failures.prefix(3)); events: \((try? rig.ctl("show", "events")) ?? "")")
        XCTAssertEqual(Set(rig.load.acknowledgedWrites).subtracting(try rig.itemIDs("shop_v2")), [], "every acknowledged write is in the upgraded database")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(try rig.status()["state"] as? String, "succeeded")
    }

    /// The v2 migration with a 3 s sleep in it, so that a kill lands inside it.
    func slowMigration(_ rig: WorkflowRig) throws -> String {
        let path = rig.directory + "/slow.sql"
        try "ALTER TABLE items ADD COLUMN note text;\nSELECT pg_sleep(3);\nINSERT INTO schema_version VALUES (2);\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// v1 as it was before the run: blue live, gates open, `shop` takes writes, no `shop_v2`.
    func assertBackOnBlue(_ rig: WorkflowRig, file: StaticString = #filePath, line: UInt = #line) throws {
        let web = try rig.web()
        XCTAssertEqual(web["live"] as? [String], ["blue"], file: file, line: line)
        XCTAssertEqual(web["paused"] as? Bool, false, file: file, line: line)
        XCTAssertEqual(web["readonly_gate"] as? String, "off", file: file, line: line)
        XCTAssertEqual(try ReadOnlyFence(target: try ConnectionString(cluster.dsn(database: "shop"))).status().mode, "read-write", file: file, line: line)
        XCTAssertEqual(try cluster.connect("postgres").query("SELECT 1 FROM pg_database WHERE datname = 'shop_v2'").count, 0, "the copy is gone", file: file, line: line)
    }
}
