import CutoverCore
import XCTest

/// The journal replay: every prefix of a run, with the runner dead or alive at that point.
final class RunStateTests: XCTestCase {
    let steps = [
        RunbookStep(index: 0, action: .pause(socket: "s", profile: "p"), timeoutMs: 1000),
        RunbookStep(index: 1, action: .switchTo(socket: "s", profile: "p", endpoint: "green", wait: false, force: false), timeoutMs: 1000),
        RunbookStep(index: 2, action: .exec(command: ["migrate"], undo: ["unmigrate"], env: []), timeoutMs: 1000, pointOfNoReturn: true, dataLoss: "writes"),
        RunbookStep(index: 3, action: .resume(socket: "s", profile: "p"), timeoutMs: 1000),
    ]

    func undo(_ i: Int) -> RunbookUndo {
        switch i {
        case 0: return .actions([.resume(socket: "s", profile: "p")])
        case 1: return .actions([.switchTo(socket: "s", profile: "p", endpoint: "blue", wait: false, force: true)])
        case 2: return .actions([.exec(command: ["unmigrate"], undo: nil, env: [])])
        default: return .actions([.pause(socket: "s", profile: "p")])
        }
    }

    var start: RunJournalEntry {
        RunJournalEntry(event: .runStarted, time: "t", runId: "r1", runbook: "rb.json", name: "n", params: [], steps: steps, pid: 42)
    }

    func started(_ i: Int) -> RunJournalEntry { RunJournalEntry(event: .stepStarted, time: "t", index: i, kind: steps[i].kind, undo: undo(i)) }
    func finished(_ i: Int, ok: Bool = true) -> RunJournalEntry {
        RunJournalEntry(event: .stepFinished, time: "t", index: i, ok: ok, detail: ok ? "done" : "exit status 1")
    }
    func undoStarted(_ i: Int) -> RunJournalEntry { RunJournalEntry(event: .undoStarted, time: "t", index: i) }
    func undoFinished(_ i: Int, ok: Bool = true) -> RunJournalEntry { RunJournalEntry(event: .undoFinished, time: "t", index: i, ok: ok, detail: ok ? nil : "refused") }
    func ended(_ outcome: RunJournalEntry.Outcome) -> RunJournalEntry { RunJournalEntry(event: .runEnded, time: "t", outcome: outcome) }
    var rollback: RunJournalEntry { RunJournalEntry(event: .rollbackStarted, time: "t", pid: 43) }

    var successfulRun: [RunJournalEntry] {
        [start] + (0..<4).flatMap { [started($0), finished($0)] } + [ended(.succeeded)]
    }

    func testCompleteRun_succeeded() throws {
        let state = try RunState.replay(successfulRun, runnerAlive: false)
        XCTAssertEqual(state.state, .succeeded)
        XCTAssertEqual(state.steps.map(\.status), [.done, .done, .done, .done])
        XCTAssertNil(state.resumeIndex)
        XCTAssertNil(state.failedStep)
    }

    /// A crash after every journal line: status, what rollback undoes (last first), where resume continues.
    func testEveryPrefix_crashOrAlive() throws {
        let run = successfulRun
        for length in 1..<run.count {
            let prefix = Array(run[..<length])
            let alive = try RunState.replay(prefix, runnerAlive: true)
            XCTAssertEqual(alive.state, .running, "prefix \(length)")
            let dead = try RunState.replay(prefix, runnerAlive: false)
            XCTAssertEqual(dead.state, .interrupted, "prefix \(length)")
            // Lines: 0 run_started, then (2i+1) step_started(i), (2i+2) step_finished(i).
            let startedCount = length / 2                     // steps with a step_started line
            let finishedCount = (length - 1) / 2              // steps with a step_finished line
            let running = startedCount > finishedCount ? startedCount - 1 : nil
            XCTAssertEqual(dead.interruptedStep?.step.index, running, "prefix \(length)")
            XCTAssertEqual(dead.stepsToUndo.map(\.step.index), Array((0..<startedCount).reversed()), "prefix \(length)")
            XCTAssertEqual(dead.resumeIndex, finishedCount < 4 ? finishedCount : nil, "prefix \(length)")
            XCTAssertEqual(dead.pointsOfNoReturnToCross.map(\.step.index), startedCount > 2 ? [2] : [], "prefix \(length)")
            for (i, step) in dead.steps.enumerated() {
                let expected: RunState.StepStatus = i < finishedCount ? .done : i == running ? .running : .pending
                XCTAssertEqual(step.status, expected, "prefix \(length) step \(i)")
            }
        }
    }

    /// A rollback killed after every one of its lines: what is still owed shrinks, nothing is forgotten.
    func testRollbackPrefixes_crash() throws {
        let base = [start, started(0), finished(0), started(1)]
        let undoLines = [rollback, undoStarted(1), undoFinished(1), undoStarted(0), undoFinished(0), ended(.rolledBack)]
        for length in 0...undoLines.count {
            let state = try RunState.replay(base + undoLines[..<length], runnerAlive: false)
            let owed: [Int] = length < 3 ? [1, 0] : length < 5 ? [0] : []
            XCTAssertEqual(state.stepsToUndo.map(\.step.index), owed, "rollback prefix \(length)")
            XCTAssertEqual(state.state, length == undoLines.count ? .rolledBack : .interrupted)
            XCTAssertEqual(state.resumeIndex, length == 0 ? 1 : nil, "a started rollback is never resumed")
            XCTAssertEqual(state.pid, length == 0 ? 42 : 43)
        }
    }

    func testFailedStep_undoesEarlierInReverse_skipsFailedExec() throws {
        let entries = [start, started(0), finished(0), started(1), finished(1), started(2), finished(2, ok: false)]
        let state = try RunState.replay(entries, runnerAlive: false)
        XCTAssertEqual(state.failedStep, RunState.FailedStep(index: 2, kind: "exec", reason: "exit status 1"))
        XCTAssertEqual(state.stepsToUndo.map(\.step.index), [1, 0], "a failed exec's undo is for a command that succeeded")
        XCTAssertNil(state.resumeIndex, "a failed run is rolled back, not resumed")
        let after = try RunState.replay(entries + [rollback, undoStarted(1), undoFinished(1), undoStarted(0), undoFinished(0, ok: false), ended(.failed)], runnerAlive: false)
        XCTAssertEqual(after.state, .failed)
        XCTAssertEqual(after.steps.map(\.status), [.done, .undone, .failed, .pending])
        XCTAssertEqual(after.undoFailures.map(\.step.index), [0])
        XCTAssertEqual(after.stepsToUndo.map(\.step.index), [0], "a failed undo is still owed")
    }

    func testFailedSwitch_isUndoneItself() throws {
        let entries = [start, started(0), finished(0), started(1), finished(1, ok: false)]
        XCTAssertEqual(try RunState.replay(entries, runnerAlive: true).stepsToUndo.map(\.step.index), [1, 0])
    }

    func testResume_takesOverAndFinishes() throws {
        let entries = [start, started(0), finished(0), started(1),
                       RunJournalEntry(event: .resumeStarted, time: "t", pid: 44), started(1), finished(1), started(2), finished(2), started(3), finished(3), ended(.succeeded)]
        let state = try RunState.replay(entries, runnerAlive: false)
        XCTAssertEqual(state.state, .succeeded)
        XCTAssertEqual(state.pid, 44)
    }

    func testJournalWithoutStart_isRefused() {
        XCTAssertThrowsError(try RunState.replay([finished(0)], runnerAlive: false))
        XCTAssertThrowsError(try RunState.replay([start, RunJournalEntry(event: .stepStarted, time: "t", index: 9)], runnerAlive: false))
    }
    /// The fences a run holds: taken by done (or interrupted) steps, minus those a later step or an
    /// undo gave back; a leased one keeps its lease.
    func testHeldFences_followTheSteps_andTheUndos() throws {
        let lease = FenceLease(agent: "/run/agent.sock", leaseMs: 30_000)
        let fenceSteps = [
            RunbookStep(index: 0, action: .dbReadOnly(dsn: "a", on: true, graceMs: 0, controlDatabase: nil, lease: lease), timeoutMs: 1000),
            RunbookStep(index: 1, action: .dbReadOnly(dsn: "b", on: true, graceMs: 0, controlDatabase: "c", lease: nil), timeoutMs: 1000),
            RunbookStep(index: 2, action: .dbReadOnly(dsn: "b", on: false, graceMs: 0, controlDatabase: "c", lease: nil), timeoutMs: 1000),
            RunbookStep(index: 3, action: .sleep(durationMs: 5), timeoutMs: 1000),
        ]
        let start = RunJournalEntry(event: .runStarted, time: "t", runId: "r", runbook: "rb", name: "n", params: [], steps: fenceSteps, pid: 42)
        func began(_ i: Int) -> RunJournalEntry { RunJournalEntry(event: .stepStarted, time: "t", index: i, kind: fenceSteps[i].kind, undo: .nothing) }
        let a = HeldFence(stepIndex: 0, dsn: "a", controlDatabase: nil, lease: lease)
        let b = HeldFence(stepIndex: 1, dsn: "b", controlDatabase: "c", lease: nil)
        XCTAssertEqual(try RunState.replay([start], runnerAlive: false).heldFences, [])
        XCTAssertEqual(try RunState.replay([start, began(0)], runnerAlive: false).heldFences, [a], "interrupted inside the fence: it may hold")
        let twoFences = [start, began(0), finished(0), began(1), finished(1)]
        XCTAssertEqual(try RunState.replay(twoFences, runnerAlive: false).heldFences, [a, b])
        let bGivenBack = twoFences + [began(2), finished(2), began(3)]
        XCTAssertEqual(try RunState.replay(bGivenBack, runnerAlive: false).heldFences, [a])
        let failedThenUndone = twoFences + [began(2), finished(2), began(3), finished(3, ok: false), rollback, undoStarted(0), undoFinished(0)]
        XCTAssertEqual(try RunState.replay(failedThenUndone, runnerAlive: false).heldFences, [], "the undo gave a back")
        let undoFailed = twoFences + [rollback, undoStarted(1), undoFinished(1), undoStarted(0), undoFinished(0, ok: false)]
        XCTAssertEqual(try RunState.replay(undoFailed, runnerAlive: false).heldFences, [a], "a failed give-back still holds")
    }
}

/// The `status --json` contract: the keys operators and tests rely on.
final class RunStatusReportTests: XCTestCase {
    func testStatusJSON_hasTheContractKeys() throws {
        let steps = [
            RunbookStep(index: 0, action: .pause(socket: "s", profile: "p"), timeoutMs: 1000),
            RunbookStep(index: 1, action: .exec(command: ["false"], undo: nil, env: []), title: "smoke", timeoutMs: 1000),
        ]
        let entries = [
            RunJournalEntry(event: .runStarted, time: "t", runId: "r", runbook: "rb.json", name: "n", params: [], steps: steps, pid: 7),
            RunJournalEntry(event: .stepStarted, time: "t", index: 0, kind: "pause", undo: .actions([.resume(socket: "s", profile: "p")])),
            RunJournalEntry(event: .stepFinished, time: "t", index: 0, ok: true),
            RunJournalEntry(event: .stepStarted, time: "t", index: 1, kind: "exec", undo: .nothing),
            RunJournalEntry(event: .stepFinished, time: "t", index: 1, ok: false, detail: "exit 1"),
        ]
        let report = RunStatusReport(try RunState.replay(entries, runnerAlive: false))
        let object = try JSONSerialization.jsonObject(with: Data(JSONCoding.line(report).utf8)) as? [String: Any]
        XCTAssertEqual(object?["runbook"] as? String, "rb.json")
        XCTAssertEqual(object?["state"] as? String, "interrupted")
        let json = object?["steps"] as? [[String: Any]]
        XCTAssertEqual(json?.map { $0["index"] as? Int }, [0, 1])
        XCTAssertEqual(json?.map { $0["kind"] as? String }, ["pause", "exec"])
        XCTAssertEqual(json?.map { $0["status"] as? String }, ["done", "failed"])
        let failed = object?["failed_step"] as? [String: Any]
        XCTAssertEqual(failed?["index"] as? Int, 1)
        XCTAssertEqual(failed?["kind"] as? String, "exec")
        XCTAssertEqual(failed?["reason"] as? String, "exit 1")
        XCTAssertEqual(object?["rollback_would_undo"] as? [Int], [0])
        XCTAssertTrue(report.text.contains("failed: step 2 exec: exit 1"), report.text)
        XCTAssertTrue(report.text.contains("'cutover upgrade rollback' undoes steps 1"), report.text)
    }

    /// The journal's own encoding round-trips every step kind and undo (status reads only the journal).
    func testJournalEntries_roundTripThroughJSONCoding() throws {
        let actions: [StepAction] = [
            .switchTo(socket: "s", profile: "p", endpoint: "e", wait: true, force: false),
            .setEndpoint(socket: "s", profile: "p", endpoint: "e", state: "drain", priority: 1, weight: nil),
            .readOnly(socket: "s", profile: "p", mode: .hold),
            .dbReadOnly(dsn: "dbname=a", on: true, graceMs: 2000, controlDatabase: nil, lease: nil),
            .dbRename(dsn: "d", renames: [NamedValue(name: "a", value: "b")]),
            .schemaCheck(dsn: "d", fingerprint: nil, versionQuery: "select 1", expect: "1"),
            .flag(on: true, driver: "sql", options: [NamedValue(name: "on-sql", value: "x")]),
            .exec(command: ["a"], undo: ["b"], env: [NamedValue(name: "PGHOST", value: "/tmp")]),
            .sleep(durationMs: 5), .wait(command: ["true"], intervalMs: 100), .confirm(prompt: "ok?"),
        ]
        let steps = actions.enumerated().map { RunbookStep(index: $0.offset, action: $0.element, timeoutMs: nil, pointOfNoReturn: $0.offset == 2, dataLoss: nil) }
        let entries = [
            RunJournalEntry(event: .runStarted, time: "t", runId: "r", runbook: "rb", name: "n", params: [NamedValue(name: "X_Y", value: "1")], steps: steps, pid: 1),
            RunJournalEntry(event: .stepStarted, time: "t", index: 0, kind: "switch",
                            undo: .actions([.switchTo(socket: "s", profile: "p", endpoint: "blue", wait: false, force: true)])),
            RunJournalEntry(event: .stepStarted, time: "t", index: 1, undo: .impossible(reason: "gone")),
            RunJournalEntry(event: .runEnded, time: "t", outcome: .rolledBack),
        ]
        for entry in entries {
            let line = JSONCoding.line(entry)
            XCTAssertFalse(line.contains("pghost"), "environment names keep their case: \(line)")
            XCTAssertEqual(try JSONCoding.decode(RunJournalEntry.self, from: line), entry, line)
        }
    }

}
