import Foundation
import Glibc
import XCTest

/// Issue 10: `cutover upgrade` against a real proxy: run, failure with undo, kill -9 then rollback or resume.
final class UpgradeTests: XCTestCase {
    private var dir: TemporaryDirectory!
    private var blue: Backend!
    private var green: Backend!
    private var proxy: Proxy!
    private var socket: String { dir.path("admin.sock") }
    private var journal: String { dir.path("journal") }

    override func setUpWithError() throws {
        dir = try TemporaryDirectory()
        blue = try Backend(name: "blue", directory: dir)
        green = try Backend(name: "green", directory: dir)
        let config = blueGreenConfig(blue: blue, green: green, socket: socket,
                                     profileExtra: #", "maintenance": { "page": "<h1>back soon</h1>" }"#)
        proxy = try Proxy(config: config, directory: dir, socketPath: socket)
    }

    override func tearDown() {
        proxy?.stop()
        blue?.stop()
        green?.stop()
        dir = nil
    }

    // MARK: helpers

    /// The proxy's own word on profile `web`: live endpoints and gates.
    struct WebState: Equatable, CustomStringConvertible {
        var live: [String]
        var paused: Bool
        var maintenance: Bool
        var readonly: Bool
        var description: String { "live \(live) paused \(paused) maintenance \(maintenance) readonly \(readonly)" }
    }

    static let startState = WebState(live: ["blue"], paused: false, maintenance: false, readonly: false)

    func web() throws -> WebState {
        let answer = try proxy.ctl("show", "profiles", json: true)
        let object = try JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any]
        let profiles = object?["profiles"] as? [[String: Any]] ?? []
        guard let web = profiles.first(where: { $0["name"] as? String == "web" }) else { throw FixtureError("no web profile: \(answer.stdout)") }
        return WebState(live: web["live"] as? [String] ?? [], paused: web["paused"] as? Bool ?? false,
                        maintenance: web["maintenance"] as? Bool ?? false, readonly: web["readonly"] as? Bool ?? false)
    }

    func writeRunbook(_ steps: String) throws -> String {
        try dir.write("runbook-\(UUID().uuidString.prefix(4)).json", """
            { "name": "blue-green", "description": "test runbook",
              "params": { "socket": { "default": "\(socket)" }, "profile": { "default": "web" }, "green": {} },
              "steps": [\(steps)] }
            """)
    }

    @discardableResult
    func upgrade(_ words: String...) throws -> (status: Int32, stdout: String, stderr: String) {
        try IntegrationTests.run(CutoverBinary.url.path, ["upgrade"] + words)
    }

    func status() throws -> [String: Any] {
        let answer = try upgrade("status", "--journal", journal, "--json")
        XCTAssertEqual(answer.status, 0, answer.stderr)
        return try JSONSerialization.jsonObject(with: Data(answer.stdout.utf8)) as? [String: Any] ?? [:]
    }

    func stepStatuses(_ status: [String: Any]) -> [String] {
        (status["steps"] as? [[String: Any]] ?? []).map { $0["status"] as? String ?? "?" }
    }

    /// Journal events as (event, index) pairs.
    func journalEvents() -> [(String, Int?)] {
        guard let text = try? String(contentsOfFile: journal + "/journal.jsonl", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
            return (object["event"] as? String ?? "", object["index"] as? Int)
        }
    }

    /// The pid in the current journal's run_started (a finished run's journal is archived by the next run).
    func journalRunner() -> Int32? {
        guard let text = try? String(contentsOfFile: journal + "/journal.jsonl", encoding: .utf8),
              let first = text.split(separator: "\n").first,
              let object = try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any] else { return nil }
        return (object["pid"] as? Int).map(Int32.init)
    }

    static let pauseSwitchResume = """
        { "kind": "pause", "socket": "${socket}", "profile": "${profile}", "title": "hold new requests" },
        { "kind": "switch", "socket": "${socket}", "profile": "${profile}", "endpoint": "${green}", "wait": true, "timeout": "20s" },
        { "kind": "resume", "socket": "${socket}", "profile": "${profile}" }
        """

    // MARK: tests

    /// pause → switch → resume: exit 0, status succeeded, traffic on green, the gate open.
    func testRun_pauseSwitchResume_succeeds() throws {
        let runbook = try writeRunbook(Self.pauseSwitchResume)
        let plan = try upgrade("plan", runbook, "--set", "green=green")
        XCTAssertEqual(plan.status, 0, plan.stdout + plan.stderr)
        XCTAssertTrue(plan.stdout.contains("proxy web paused: requests and connections held, steps 1–3"), plan.stdout)
        XCTAssertEqual(try web(), Self.startState, "plan changed nothing")

        let result = try upgrade("run", runbook, "--set", "green=green", "--journal", journal)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("[2/3] switch: done"), result.stdout)
        XCTAssertEqual(try web(), WebState(live: ["green"], paused: false, maintenance: false, readonly: false))
        XCTAssertEqual(try curl(proxy.url("/")).body.contains("green"), true)
        let state = try status()
        XCTAssertEqual(state["state"] as? String, "succeeded")
        XCTAssertEqual(stepStatuses(state), ["done", "done", "done"])
        XCTAssertEqual((state["steps"] as? [[String: Any]])?.map { $0["kind"] as? String }, ["pause", "switch", "resume"])
    }

    /// A failing `exec false` after pause, maintenance and switch: exit 1 naming the step, the earlier
    /// steps undone last first, and the proxy back where it started.
    /// plan compares each hold with the profile's hold_timeout (30 s by default): a pause whose steps
    /// may last longer is named in a note, one that fits is not; neither fails the plan.
    func testPlan_warnsWhenAHoldCanOutlastHoldTimeout() throws {
        let path = try writeRunbook("""
            { "kind": "pause", "socket": "${socket}", "profile": "${profile}" },
            { "kind": "sleep", "duration": "1s" },
            { "kind": "resume", "socket": "${socket}", "profile": "${profile}" },
            { "kind": "readonly", "socket": "${socket}", "profile": "${profile}", "mode": "hold" },
            { "kind": "switch", "socket": "${socket}", "profile": "${profile}", "endpoint": "${green}", "wait": true, "timeout": "45s" },
            { "kind": "readonly", "socket": "${socket}", "profile": "${profile}", "mode": "off" }
            """)
        let planned = try upgrade("plan", path, "--set", "green=green")
        XCTAssertEqual(planned.status, 0, planned.stdout + planned.stderr)
        let notes = planned.stdout.split(separator: "\n").filter { $0.contains("hold_timeout") }
        XCTAssertEqual(notes.count, 1, planned.stdout)
        XCTAssertTrue(notes.first?.contains("steps[3] readonly: writes held up to 55s (until step 6), longer than profile web's hold_timeout of 30s") ?? false,
                      planned.stdout)
        XCTAssertEqual(try web(), Self.startState, "plan changes nothing")
    }

    func testFailingStep_undoesEarlierStepsInReverse() throws {
        let runbook = try writeRunbook("""
            { "kind": "pause", "socket": "${socket}", "profile": "${profile}" },
            { "kind": "maintenance", "socket": "${socket}", "profile": "${profile}", "mode": "on" },
            { "kind": "switch", "socket": "${socket}", "profile": "${profile}", "endpoint": "${green}" },
            { "kind": "exec", "command": ["false"], "title": "smoke test v2" },
            { "kind": "resume", "socket": "${socket}", "profile": "${profile}" }
            """)
        let result = try upgrade("run", runbook, "--set", "green=green", "--journal", journal)
        XCTAssertEqual(result.status, 1, result.stdout + result.stderr)
        XCTAssertTrue(result.stderr.contains("run FAILED at steps[3] exec (smoke test v2): `false` exited with status 1"), result.stderr)
        XCTAssertTrue(result.stderr.contains("undid, last step first: steps[2] switch"), result.stderr)
        XCTAssertEqual(try web(), Self.startState)
        let undos = journalEvents().filter { $0.0 == "undo_finished" }.map(\.1)
        XCTAssertEqual(undos, [2, 1, 0], "undone in reverse order")
        let state = try status()
        XCTAssertEqual(state["state"] as? String, "failed")
        XCTAssertEqual(stepStatuses(state), ["undone", "undone", "undone", "failed", "pending"])
        let failed = state["failed_step"] as? [String: Any]
        XCTAssertEqual(failed?["index"] as? Int, 3)
        XCTAssertEqual(failed?["kind"] as? String, "exec")
        XCTAssertEqual(failed?["reason"] as? String, "`false` exited with status 1")
    }

    /// A `confirm` step with a non-terminal stdin and no --yes refuses at once instead of hanging.
    func testConfirm_withoutTerminalOrYes_refusesAndUndoes() throws {
        let runbook = try writeRunbook("""
            { "kind": "pause", "socket": "${socket}", "profile": "${profile}" },
            { "kind": "confirm", "prompt": "Is v2 fine?" }
            """)
        let result = try upgrade("run", runbook, "--set", "green=green", "--journal", journal)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("standard input is not a terminal; run with --yes"), result.stderr)
        XCTAssertEqual(try web(), Self.startState)
        let yes = try upgrade("run", runbook, "--set", "green=green", "--journal", journal, "--yes")
        XCTAssertEqual(yes.status, 0, yes.stderr)
    }

    /// Refusals before anything happens: an unknown --set, a missing param, an unknown profile in plan.
    func testRefusals_nameFileKeyAndReason() throws {
        let runbook = try writeRunbook(Self.pauseSwitchResume)
        let unknown = try upgrade("run", runbook, "--set", "green=green", "--set", "gren=x", "--journal", journal)
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.stderr.contains("\(runbook): --set gren: the runbook declares no parameter \"gren\""), unknown.stderr)
        let missing = try upgrade("run", runbook, "--journal", journal)
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("params.green: required parameter is not set"), missing.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: journal + "/journal.jsonl"), "nothing was started")
        let badPlan = try upgrade("plan", runbook, "--set", "green=grene")
        XCTAssertEqual(badPlan.status, 1)
        XCTAssertTrue(badPlan.stdout.contains("steps[1] switch: profile \"web\" has no endpoint \"grene\""), badPlan.stdout)
    }

    /// kill -9 of the runner inside a slow `sleep`: status says interrupted at that step, a second
    /// run is refused, and rollback restores the start state on the real proxy.
    func testKill9DuringSlowStep_statusInterrupted_rollbackRestores() throws {
        let runbook = try writeRunbook(Self.pauseSwitchResume.replacingOccurrences(
            of: "{ \"kind\": \"resume\"", with: "{ \"kind\": \"sleep\", \"duration\": \"60s\" }, { \"kind\": \"resume\""))
        let runner = try ChildProcess(CutoverBinary.url, ["upgrade", "run", runbook, "--set", "green=green", "--journal", journal], directory: dir, label: "runner")
        defer { runner.stop() }
        XCTAssertTrue(waitUntil(timeout: 20) { self.journalEvents().contains { $0.0 == "step_started" && $0.1 == 2 } }, runner.stdout + runner.stderr)
        XCTAssertEqual(try status()["state"] as? String, "running")
        let second = try upgrade("run", runbook, "--set", "green=green", "--journal", journal)
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains("(pid \(runner.pid)) holds"), second.stderr)

        runner.signal(SIGKILL)
        XCTAssertNotNil(runner.waitForExit(timeout: 10))
        XCTAssertEqual(try web(), WebState(live: ["green"], paused: true, maintenance: false, readonly: false))
        let state = try status()
        XCTAssertEqual(state["state"] as? String, "interrupted")
        XCTAssertEqual(state["interrupted_step"] as? Int, 2)
        XCTAssertEqual(stepStatuses(state), ["done", "done", "running", "pending"])
        let text = try upgrade("status", "--journal", journal)
        XCTAssertTrue(text.stdout.contains("3. sleep         running  ← interrupted here"), text.stdout)
        let refused = try upgrade("run", runbook, "--set", "green=green", "--journal", journal)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("is interrupted: finish it first"), refused.stderr)

        let rollback = try upgrade("rollback", "--journal", journal, "--yes")
        XCTAssertEqual(rollback.status, 0, rollback.stdout + rollback.stderr)
        XCTAssertEqual(try web(), Self.startState)
        XCTAssertTrue(try curl(proxy.url("/")).body.contains("blue"))
        let after = try status()
        XCTAssertEqual(after["state"] as? String, "rolled-back")
        XCTAssertEqual(stepStatuses(after), ["undone", "undone", "undone", "pending"])
    }

    /// kill -9 inside the slow step, then resume: the run finishes and says succeeded.
    func testKill9DuringSlowStep_resumeFinishes() throws {
        let runbook = try writeRunbook(Self.pauseSwitchResume.replacingOccurrences(
            of: "{ \"kind\": \"resume\"", with: "{ \"kind\": \"sleep\", \"duration\": \"1s\" }, { \"kind\": \"resume\""))
        let runner = try ChildProcess(CutoverBinary.url, ["upgrade", "run", runbook, "--set", "green=green", "--journal", journal], directory: dir, label: "runner")
        defer { runner.stop() }
        XCTAssertTrue(waitUntil(timeout: 20) { self.journalEvents().contains { $0.0 == "step_started" && $0.1 == 2 } })
        runner.signal(SIGKILL)
        XCTAssertNotNil(runner.waitForExit(timeout: 10))
        XCTAssertEqual(try status()["state"] as? String, "interrupted")

        let resume = try upgrade("resume", "--journal", journal)
        XCTAssertEqual(resume.status, 0, resume.stdout + resume.stderr)
        XCTAssertEqual(try web(), WebState(live: ["green"], paused: false, maintenance: false, readonly: false))
        let state = try status()
        XCTAssertEqual(state["state"] as? String, "succeeded")
        XCTAssertEqual(stepStatuses(state), ["done", "done", "done", "done"])
        XCTAssertEqual(try upgrade("resume", "--journal", journal).status, 1, "nothing left to resume")
    }

    /// The kill -9 loop: the runner is killed right after each step in turn; each time status says
    /// interrupted and rollback restores the start state on the real proxy.
    func testKill9AfterEachStep_rollbackRestoresStartState() throws {
        let runbook = try writeRunbook("""
            { "kind": "pause", "socket": "${socket}", "profile": "${profile}" },
            { "kind": "maintenance", "socket": "${socket}", "profile": "${profile}", "mode": "on" },
            { "kind": "readonly", "socket": "${socket}", "profile": "${profile}", "mode": "on" },
            { "kind": "switch", "socket": "${socket}", "profile": "${profile}", "endpoint": "${green}" },
            { "kind": "maintenance", "socket": "${socket}", "profile": "${profile}", "mode": "off" },
            { "kind": "sleep", "duration": "60s" }
            """)
        for k in 0..<5 {
            let runner = try ChildProcess(CutoverBinary.url, ["upgrade", "run", runbook, "--set", "green=green", "--journal", journal], directory: dir, label: "runner-\(k)")
            XCTAssertTrue(waitUntil(timeout: 20) {
                self.journalRunner() == runner.pid && self.journalEvents().contains { $0.0 == "step_finished" && $0.1 == k }
            }, "step \(k): \(runner.stderr)")
            runner.signal(SIGKILL)
            XCTAssertNotNil(runner.waitForExit(timeout: 10))
            runner.stop()
            let state = try status()
            XCTAssertEqual(state["state"] as? String, "interrupted", "after step \(k)")
            let statuses = stepStatuses(state)
            XCTAssertEqual(Array(statuses.prefix(k + 1)), Array(repeating: "done", count: k + 1), "after step \(k)")
            let rollback = try upgrade("rollback", "--journal", journal, "--yes")
            XCTAssertEqual(rollback.status, 0, "after step \(k): \(rollback.stdout) \(rollback.stderr)")
            XCTAssertEqual(try web(), Self.startState, "after step \(k)")
            XCTAssertEqual(try status()["state"] as? String, "rolled-back")
        }
    }

    /// A failure after the point of no return: the automatic undo stops there and says so; rollback
    /// refuses without --accept-data-loss, printing the runbook's data_loss text, and with it restores.
    func testPointOfNoReturn_guardsRollback() throws {
        let runbook = try writeRunbook("""
            { "kind": "pause", "socket": "${socket}", "profile": "${profile}" },
            { "kind": "switch", "socket": "${socket}", "profile": "${profile}", "endpoint": "${green}",
              "point_of_no_return": true, "data_loss": "writes that reached ${green}" },
            { "kind": "exec", "command": ["false"] }
            """)
        let plan = try upgrade("plan", runbook, "--set", "green=green")
        XCTAssertTrue(plan.stdout.contains("POINT OF NO RETURN: rolling back past this step loses data: writes that reached green"), plan.stdout)
        let result = try upgrade("run", runbook, "--set", "green=green", "--journal", journal)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("not undone: steps up to and including steps[1] switch, the point of no return"), result.stderr)
        XCTAssertEqual(try web(), WebState(live: ["green"], paused: true, maintenance: false, readonly: false), "nothing before the point of no return was undone")

        let refused = try upgrade("rollback", "--journal", journal, "--yes")
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("without --accept-data-loss; it would lose: steps[1] switch: writes that reached green"), refused.stderr)
        XCTAssertEqual(try web().live, ["green"], "a refused rollback changes nothing")
        let noTerminal = try upgrade("rollback", "--journal", journal, "--accept-data-loss")
        XCTAssertEqual(noTerminal.status, 1, "without --yes and without a terminal rollback does not ask, it refuses")
        XCTAssertTrue(noTerminal.stderr.contains("pass --yes"), noTerminal.stderr)

        let accepted = try upgrade("rollback", "--journal", journal, "--yes", "--accept-data-loss")
        XCTAssertEqual(accepted.status, 0, accepted.stdout + accepted.stderr)
        XCTAssertEqual(try web(), Self.startState)
        XCTAssertEqual(try status()["state"] as? String, "rolled-back")
    }

    /// resume first checks the interrupted step: a switch whose effect is already in place (the
    /// runner died after the proxy switched, before the journal said so) is not redone.
    func testResume_verifiesTheInterruptedStepBeforeRedoing() throws {
        let runbook = try writeRunbook(Self.pauseSwitchResume.replacingOccurrences(
            of: "{ \"kind\": \"resume\"", with: "{ \"kind\": \"sleep\", \"duration\": \"60s\" }, { \"kind\": \"resume\""))
        let runner = try ChildProcess(CutoverBinary.url, ["upgrade", "run", runbook, "--set", "green=green", "--journal", journal], directory: dir, label: "runner")
        defer { runner.stop() }
        XCTAssertTrue(waitUntil(timeout: 20) { self.journalEvents().contains { $0.0 == "step_started" && $0.1 == 2 } })
        runner.signal(SIGKILL)
        XCTAssertNotNil(runner.waitForExit(timeout: 10))
        // Cut the journal back to "switch started": as if the runner died inside the switch.
        let file = journal + "/journal.jsonl"
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
        let cut = try XCTUnwrap(lines.firstIndex { $0.contains("\"event\":\"step_started\"") && $0.contains("\"index\":1") })
        try (lines[...cut].joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try status()["interrupted_step"] as? Int, 1)

        // The sleep it then reaches is cut short by a second kill; what matters is the switch line.
        let resumer = try ChildProcess(CutoverBinary.url, ["upgrade", "resume", "--journal", journal], directory: dir, label: "resumer")
        defer { resumer.stop() }
        XCTAssertTrue(waitUntil(timeout: 20) { resumer.stdout.contains("[3/4] sleep") }, resumer.stdout + resumer.stderr)
        XCTAssertTrue(resumer.stdout.contains("[2/4] switch: already in effect, not redone"), resumer.stdout)
        resumer.signal(SIGKILL)
        XCTAssertNotNil(resumer.waitForExit(timeout: 10))
        let rollback = try upgrade("rollback", "--journal", journal, "--yes")
        XCTAssertEqual(rollback.status, 0, rollback.stdout + rollback.stderr)
        XCTAssertEqual(try web(), Self.startState, "the undo recorded at the first attempt (back to blue) was kept")
    }
}
