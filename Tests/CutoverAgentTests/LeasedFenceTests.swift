import CutoverAgent
import CutoverCore
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A `db-readonly` step with `agent` and `lease`: the real `cutover agent` holds the fence, the real
/// runner renews it while it lives, and a runner killed with SIGKILL leaves the database read-only
/// for no longer than the lease; `resume` then refuses, because writes may have landed since.
final class LeasedFenceTests: ClusterTestCase {
    private var directory = ""
    private var agent: CutoverChild?

    override func setUpWithError() throws {
        try super.setUpWithError()
        directory = NSTemporaryDirectory() + "cutover-lease-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let socket = agentSocket
        agent = try CutoverChild(try CutoverChild.binary, ["agent", "--socket", socket, "--journal", "\(directory)/agent.jsonl"], log: "\(directory)/agent.log")
        XCTAssertTrue(waitFor(seconds: 15) { FileManager.default.fileExists(atPath: socket) }, "the agent did not bind its socket: \(agent?.output ?? "")")
    }

    override func tearDownWithError() throws {
        agent?.stop()
        try? FileManager.default.removeItem(atPath: directory)
        if let cluster { try cluster.connect("postgres").query("ALTER DATABASE app RESET default_transaction_read_only") }
    }

    var agentSocket: String { "\(directory)/agent.sock" }
    var journal: String { "\(directory)/journal" }

    func runbook(lease: String, then steps: String) throws -> String {
        let path = "\(directory)/runbook.json"
        try """
            { "name": "leased", "steps": [
              { "kind": "db-readonly", "dsn": "\(cluster.dsn())", "mode": "on", "grace": "200ms", "agent": "\(agentSocket)", "lease": "\(lease)" },
              \(steps) ] }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func mode() throws -> String {
        try ReadOnlyFence(target: try ConnectionString(cluster.dsn())).status().mode
    }

    func agentLeases() throws -> String {
        try PostgresCluster.runCapturing(try CutoverChild.binary, ["ctl", "--socket", agentSocket, "lease", "show"]).1
    }

    func waitFor(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    /// A run longer than three leases keeps the fence (the runner renews it), and a run that ends
    /// hands the fence over: the lease is released, so the database stays read-only afterwards.
    func test_runnerRenewsTheLease_andReleasesItAtTheEnd() throws {
        let path = try runbook(lease: "2s", then: #"{ "kind": "sleep", "duration": "6500ms" }"#)
        let (code, output) = try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade", "run", path, "--journal", journal])
        XCTAssertEqual(code, 0, output)
        XCTAssertTrue(output.contains("agent lease on"), output)
        XCTAssertFalse(output.contains("could not renew"), output)
        XCTAssertEqual(try mode(), "read-only", "the fence outlived three leases")
        XCTAssertTrue(try agentLeases().contains("no leases"), "the run released its lease at the end")
        let agentLog = agent?.output ?? ""
        XCTAssertFalse(agentLog.contains("expired without renewal"), agentLog)
    }

    /// SIGKILL of the runner while it holds the fence: the agent gives the database back when the
    /// lease runs out, `resume` refuses (writes may have reached it), and `rollback` ends the run.
    func test_kill9_theAgentGivesTheDatabaseBack_andResumeRefuses() throws {
        let path = try runbook(lease: "2s", then: #"{ "kind": "sleep", "duration": "60s" }"#)
        let runner = try CutoverChild(try CutoverChild.binary, ["upgrade", "run", path, "--journal", journal], log: "\(directory)/runner.log")
        defer { runner.stop() }
        let reachedSleep = waitFor(seconds: 30) {
            ((try? String(contentsOfFile: journal + "/journal.jsonl", encoding: .utf8)) ?? "").contains("\"event\":\"step_started\",\"index\":1")
        }
        XCTAssertTrue(reachedSleep, runner.output)
        XCTAssertEqual(try mode(), "read-only")
        runner.stop()

        let killed = Date()
        XCTAssertTrue(try waitFor(seconds: 20) { try mode() == "read-write" }, "the lease never gave the database back: \(agent?.output ?? "")")
        let givenBackAfter = Date().timeIntervalSince(killed)
        XCTAssertTrue((agent?.output ?? "").contains("expired without renewal"), agent?.output ?? "")
        print("leased fence: given back \(String(format: "%.1f", givenBackAfter)) s after the runner was killed (lease 2s, agent checks every 1s)")

        let (resumeCode, resumeOutput) = try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade", "resume", "--journal", journal])
        XCTAssertNotEqual(resumeCode, 0, resumeOutput)
        XCTAssertTrue(resumeOutput.contains("read-write now"), resumeOutput)
        XCTAssertTrue(resumeOutput.contains("lease of 2s ran out"), resumeOutput)
        XCTAssertTrue(resumeOutput.contains("cutover upgrade rollback"), resumeOutput)

        let (rollbackCode, rollbackOutput) = try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade", "rollback", "--journal", journal, "--yes"])
        XCTAssertEqual(rollbackCode, 0, rollbackOutput)
        XCTAssertEqual(try mode(), "read-write")
        let (_, status) = try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade", "status", "--journal", journal, "--json"])
        XCTAssertEqual(try JSONCoding.decode(RunStatusReport.self, from: status).state, .rolledBack, status)
    }

    /// A fence step that fails after the agent took it, then the rollback: the undo goes through the
    /// agent too, so no lease is left behind to fire later.
    func test_failedRun_undoesThroughTheAgent_leavingNoLease() throws {
        let path = try runbook(lease: "30s", then: #"{ "kind": "exec", "command": ["false"] }"#)
        let (code, output) = try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade", "run", path, "--journal", journal])
        XCTAssertEqual(code, 1, output)
        XCTAssertEqual(try mode(), "read-write")
        let leases = try agentLeases()
        XCTAssertTrue(leases.contains("no leases"), leases)
    }

    /// `lease` without `agent` is refused before anything runs, naming the key.
    func test_leaseWithoutAgent_isRefused() throws {
        let path = "\(directory)/bad.json"
        try #"{ "name": "bad", "steps": [ { "kind": "db-readonly", "dsn": "dbname=x", "mode": "on", "lease": "10s" } ] }"#
            .write(toFile: path, atomically: true, encoding: .utf8)
        let (code, output) = try PostgresCluster.runCapturing(try CutoverChild.binary, ["upgrade", "plan", path])
        XCTAssertNotEqual(code, 0, output)
        XCTAssertTrue(output.contains("steps[0].lease"), output)
        XCTAssertTrue(output.contains("\"agent\""), output)
    }
}
