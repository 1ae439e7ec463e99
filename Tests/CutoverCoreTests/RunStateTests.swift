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
}
