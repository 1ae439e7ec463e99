import CutoverAgent
import Foundation
import Synchronization
import XCTest

/// Deploy/runbooks/expand-contract.json and contract.json end to end under a live read/write load:
/// one shared database, a backward-compatible expand, a drained switch, then the contract.
final class ExpandContractWorkflowTests: ClusterTestCase {
    private var rig: WorkflowRig?

    override func tearDown() {
        rig?.stop()
        super.tearDown()
    }

    /// The load-balancer flip: exit 0, zero failed requests, nothing ever held, slow requests in
    /// flight on blue at the switch finish on blue; contract refused while blue is online or
    /// draining and accepted once blue is offline.
    func test_expandContract_underLoad_failsNothing_holdsNothing_andContractWaitsForBlue() throws {
        let rig = try WorkflowRig(cluster: cluster, greenDSN: cluster.dsn(database: "shop"))
        self.rig = rig
        let database = "database=\(cluster.dsn(database: "shop"))"
        rig.load.start(port: rig.port)
        XCTAssertTrue(rig.load.waitForAnswers(200), "the load never got going: \(rig.load.failures.prefix(3))")
        let slow = rig.startSlowRequests(connections: 3)
        defer { slow.stop() }
        XCTAssertTrue(waitUntil(timeout: 10) { slow.answers.count >= 3 }, "slow requests are answered before the run")

        let started = Date()
        let run = try rig.startRun("expand-contract", [rig.proxySetting, database, "expand=\(rig.migration)"])
        XCTAssertTrue(waitUntil(timeout: 60) { !run.isRunning }, "the run did not end: \(run.output)")
        let runTime = Date().timeIntervalSince(started)
        XCTAssertEqual(run.process.terminationStatus, 0, run.output)
        XCTAssertTrue(rig.load.waitForAnswers(200))
        slow.stop()
        rig.load.stop()

        let answers = rig.load.results
        XCTAssertEqual(try rig.heldTotal(), 0, "no request is ever held")
        let firstGreen = try XCTUnwrap(answers.filter { $0.backend == "green" }.map(\.ended).min(), "traffic reached green")
        let slowAnswers = slow.answers
        let inFlightAtSwitch = slowAnswers.compactMap { $0 }.filter { $0.backend == "blue" && $0.started < firstGreen && $0.ended > firstGreen }
        let longestRequest = answers.map { $0.ended.timeIntervalSince($0.started) }.max() ?? 0
        print("expand-contract: \(rig.summary()); run \(String(format: "%.2f", runTime)) s; longest load request \(String(format: "%.3f", longestRequest)) s; held_total \(String(describing: try rig.heldTotal())); \(slowAnswers.count) slow requests, \(inFlightAtSwitch.count) in flight on blue at the switch and finished there\n\(run.output)")
        XCTAssertEqual(rig.load.failures, [], "no request may fail")
        XCTAssertEqual(slowAnswers.filter { $0 == nil || $0!.status != 200 }.count, 0, "every slow request is answered 200")
        XCTAssertGreaterThan(inFlightAtSwitch.count, 0, "requests in flight on blue at the switch finish on blue")
        XCTAssertLessThan(longestRequest, 1.0, "no load request waits noticeably")
        let acknowledged = Set(rig.load.acknowledgedWrites)
        XCTAssertEqual(acknowledged.subtracting(try rig.itemIDs("shop")), [], "every acknowledged write is in the shared database")
        XCTAssertEqual(answers.last?.backend, "green")
        XCTAssertEqual(try rig.web()["live"] as? [String], ["green"])
        XCTAssertEqual(rig.blue.errors, [], "v1 keeps working on the expanded schema")
        XCTAssertEqual(rig.green.errors, [])

        // contract.json: refused while blue is online or draining, accepted after it is offline.
        let contract = rig.directory + "/contract.sql"
        try "DELETE FROM schema_version WHERE version = 1;".write(toFile: contract, atomically: true, encoding: .utf8)
        let settings = [rig.proxySetting, database, "contract=\(contract)"].flatMap { ["--set", $0] }
        // Blue back online beside green, with 5-second requests in flight on it, so `drain` stays draining.
        _ = try rig.ctl("set", "endpoint", "web/blue", "online")
        let slowOnBlue = rig.startSlowRequests(connections: 6, path: "/slow/5")
        defer { slowOnBlue.stop() }
        usleep(300_000)  // the slow requests are sent, half of them to blue; they take 5 s
        for (word, state) in [("online", "online"), ("drain", "draining")] {
            _ = try rig.ctl("set", "endpoint", "web/blue", word)
            XCTAssertEqual(try rig.endpoint("blue")?["state"] as? String, state)
            let plan = try rig.upgrade(["plan", WorkflowRig.runbook("contract")] + settings)
            XCTAssertNotEqual(plan.status, 0, "contract plan with blue \(state): \(plan.output)")
            XCTAssertTrue(plan.output.contains("blue") && plan.output.contains(state), "the refusal names the check: \(plan.output)")
            let refusedRun = try rig.upgrade(["run", WorkflowRig.runbook("contract")] + settings + ["--journal", rig.directory + "/contract-\(state)", "--yes"])
            XCTAssertNotEqual(refusedRun.status, 0, "contract run with blue \(state): \(refusedRun.output)")
            XCTAssertEqual(try cluster.connect("shop").scalar("SELECT count(*) FROM schema_version WHERE version = 1"), "1", "a refused contract changes nothing")
            print("contract with blue \(state): exit \(plan.status)\n\(plan.output)")
        }
        slowOnBlue.stop()
        _ = try rig.ctl("set", "endpoint", "web/blue", "offline")
        let plan = try rig.upgrade(["plan", WorkflowRig.runbook("contract")] + settings)
        XCTAssertEqual(plan.status, 0, plan.output)
        let contractRun = try rig.upgrade(["run", WorkflowRig.runbook("contract")] + settings + ["--journal", rig.directory + "/contract", "--yes"])
        XCTAssertEqual(contractRun.status, 0, contractRun.output)
        XCTAssertEqual(try cluster.connect("shop").scalar("SELECT count(*) FROM schema_version WHERE version = 1"), "0", "the contract ran")
    }
}
