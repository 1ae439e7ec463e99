import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs, rolls back and resumes runbooks, journaling every step to a `RunJournalDirectory`.
///
/// The journal is the only memory: every decision after a start (what to undo, where to resume,
/// whether a rollback loses data) is `RunState.replay` of the file, never of this process's
/// variables, so a `kill -9` at any point leaves exactly what the next command needs.
public struct RunbookRunner: Sendable {
    /// Where the journal and the lock live.
    public let directory: RunJournalDirectory
    /// How each step is done, checked and undone.
    public var executor: StepExecutor
    /// Where progress lines go (standard output for the CLI).
    public var output: @Sendable (String) -> Void

    public init(directory: RunJournalDirectory, executor: StepExecutor, output: @escaping @Sendable (String) -> Void) {
        self.directory = directory
        self.executor = executor
        self.output = output
    }

    /// How a run, rollback or resume ended, for the exit status and the last lines printed.
    public struct Outcome: Sendable {
        /// Everything asked for was done (exit 0).
        public var completed: Bool
        /// The closing summary for a person.
        public var summary: String

        public init(completed: Bool, summary: String) {
            self.completed = completed
            self.summary = summary
        }
    }

    // MARK: status

    /// The current run as the journal says (`nil`: the directory holds none).
    public func status() throws(RunbookRunError) -> RunState? {
        guard let entries = try directory.entries() else { return nil }
        do {
            return try RunState.replay(entries, runnerAlive: directory.isLockHeld())
        } catch {
            throw .journal(path: directory.journalPath, message: error.description)
        }
    }

    private func replayHeld() throws(RunbookRunError) -> RunState {
        guard let entries = try directory.entries() else { throw .noRun(directory: directory.path) }
        do {
            // This process holds the lock: no other runner is alive, whatever the pid says.
            return try RunState.replay(entries, runnerAlive: false)
        } catch {
            throw .journal(path: directory.journalPath, message: error.description)
        }
    }

    // MARK: run

    /// Runs `runbook` from its first step. Refused while another run in the directory is unfinished.
    public func run(_ runbook: Runbook) throws(RunbookRunError) -> Outcome {
        let lock = try directory.lock()
        defer { lock.release() }
        if try directory.entries() != nil {
            let previous = try replayHeld()
            switch previous.state {
            case .succeeded, .failed, .rolledBack:
                try directory.archive(runId: previous.runId)
            case .running, .interrupted:
                throw .unfinishedRun(directory: directory.path, state: previous.state.rawValue, runbook: previous.runbook)
            }
        }
        let runId = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try directory.append(.runStarted(runbook, runId: runId, pid: getpid(), time: Journal.now()))
        output("run \(runId): \(runbook.name) (\(runbook.file)), \(runbook.steps.count) steps, journal \(directory.journalPath)")
        let leases = LeaseKeeper(holding: [], output: output)
        defer { leases.finish() }
        return try continueSteps(from: 0, verifyFirst: false, leases: leases)
    }

    // MARK: resume

    /// Continues an interrupted run from the step it was in, verifying that step's effect first.
    public func resume() throws(RunbookRunError) -> Outcome {
        let lock = try directory.lock()
        defer { lock.release() }
        let state = try replayHeld()
        guard state.state == .interrupted else {
            throw .notApplicable("the run in \(directory.path) is \(state.state.rawValue), not interrupted; only an interrupted run can be resumed")
        }
        if state.rollingBack || state.failedStep != nil {
            throw .notApplicable("the run stopped after a failed step or inside a rollback; finish it with 'cutover upgrade rollback'")
        }
        guard let index = state.resumeIndex else {
            // Every step is done; the runner died before journaling the end.
            try directory.append(RunJournalEntry(event: .resumeStarted, time: Journal.now(), pid: getpid()))
            try directory.append(RunJournalEntry(event: .runEnded, time: Journal.now(), outcome: .succeeded))
            return Outcome(completed: true, summary: "run succeeded: every step was done before the interruption")
        }
        try checkFencesHeld(state)
        try directory.append(RunJournalEntry(event: .resumeStarted, time: Journal.now(), pid: getpid()))
        output("resuming run \(state.runId) (\(state.runbook)) at step \(index + 1) of \(state.steps.count)")
        let leases = LeaseKeeper(holding: state.heldFences, output: output)
        defer { leases.finish() }
        return try continueSteps(from: index, verifyFirst: state.steps[index].status == .running, leases: leases)
    }

    /// Refuses a resume when a fence a done step took is gone: an agent lease that ran out while no
    /// runner lived (or a person) made the database writable, so writes may have reached it since
    /// the step, and the steps after it (a copy, a switch) would lose them.
    private func checkFencesHeld(_ state: RunState) throws(RunbookRunError) {
        for fence in state.heldFences where state.steps[fence.stepIndex].status == .done {
            let step = state.steps[fence.stepIndex].step
            let action = StepAction.dbReadOnly(dsn: fence.dsn, on: true, graceMs: 0, controlDatabase: fence.controlDatabase, lease: fence.lease)
            let held: Bool?
            do { held = try executor.isApplied(action) } catch {
                throw .notApplicable("cannot check that the fence \(step.label) took still holds (\(error)); resume again when the database answers, or roll back")
            }
            if held == false {
                let why = fence.lease.map { "its agent lease of \(DurationText.format(.milliseconds($0.leaseMs))) ran out while no runner renewed it" } ?? "someone turned it off"
                throw .notApplicable("\(step.label) made \(StepAction.redacted(fence.dsn)) read-only, but it is read-write now (\(why)): writes may have reached it since, and continuing would lose them; roll back with 'cutover upgrade rollback'")
            }
        }
    }

    /// Runs the steps from `first` to the end; on a failure undoes what the journal says was done.
    private func continueSteps(from first: Int, verifyFirst: Bool, leases: LeaseKeeper) throws(RunbookRunError) -> Outcome {
        let started = ContinuousClock.now
        var state = try replayHeld()
        let count = state.steps.count
        for index in first..<count {
            let step = state.steps[index].step
            let tag = "[\(index + 1)/\(count)] \(step.kind)"
            let bound = step.timeoutMs.map { "up to \(DurationText.format(.milliseconds($0)))" } ?? "waits for a person"
            if let skipped = step.skipped {
                // Journaled like a step that ran, so replay, status and resume need no special case.
                try directory.append(RunJournalEntry(event: .stepStarted, time: Journal.now(), index: index, kind: step.kind, undo: .nothing))
                try directory.append(RunJournalEntry(event: .stepFinished, time: Journal.now(), index: index, ok: true, detail: "skipped: \(skipped)"))
                output("\(elapsed(started)) \(tag): skipped (\(skipped))")
                state = try replayHeld()
                continue
            }
            if index == first && verifyFirst {
                // The runner died inside this step: its effect may be whole, partial or absent.
                var applied: Bool?
                do { applied = try executor.isApplied(step.action) } catch {
                    output("\(tag): cannot verify its effect (\(error)); running it again")
                }
                if applied == true {
                    try directory.append(RunJournalEntry(event: .stepFinished, time: Journal.now(), index: index, ok: true,
                                                         detail: "verified in effect after the interruption"))
                    output("\(tag): already in effect, not redone")
                    Self.track(step.action, index: index, in: leases)
                    state = try replayHeld()
                    continue
                }
                // A template copy cut short left its source refusing connections: give them back
                // before the copy runs again (it would otherwise take "refused" as the state to keep).
                if case .actions(let actions)? = state.steps[index].undo {
                    for case .dbAllowConnections(let dsn, let database) in actions {
                        do {
                            output("\(tag): " + (try DatabaseSteps.allowConnections(dsn: dsn, database: database)))
                        } catch {
                            output("\(tag): \(error)")
                        }
                    }
                }
            }
            // Resuming keeps the undo recorded at the first attempt: the state now may already be the step's.
            var undo = state.steps[index].undo
            var readFailure: StepFailure?
            if undo == nil {
                do { undo = try executor.undo(for: step) } catch { readFailure = error }
            }
            guard let undo else {
                let reason = "cannot read the state before the step: \(readFailure?.description ?? "unknown")"
                try directory.append(RunJournalEntry(event: .stepStarted, time: Journal.now(), index: index, kind: step.kind, undo: .nothing))
                try directory.append(RunJournalEntry(event: .stepFinished, time: Journal.now(), index: index, ok: false, detail: reason))
                output("\(elapsed(started)) \(tag): FAILED: \(reason)")
                return try failed(at: step, reason: reason, leases: leases)
            }
            try directory.append(RunJournalEntry(event: .stepStarted, time: Journal.now(), index: index, kind: step.kind, undo: undo))
            output("\(elapsed(started)) \(tag): \(step.title.map { "\($0): " } ?? "")\(step.action.summary) (\(bound))")
            let stepStart = ContinuousClock.now
            let result: Result<String, StepFailure>
            do { result = .success(try executor.perform(step.action, timeout: StepExecutor.timeout(step))) } catch { result = .failure(error) }
            switch result {
            case .success(let detail):
                try directory.append(RunJournalEntry(event: .stepFinished, time: Journal.now(), index: index, ok: true, detail: detail))
                output("\(elapsed(started)) \(tag): done in \(elapsed(stepStart, sign: false)): \(detail)")
                Self.track(step.action, index: index, in: leases)
            case .failure(let error):
                try directory.append(RunJournalEntry(event: .stepFinished, time: Journal.now(), index: index, ok: false, detail: error.description))
                output("\(elapsed(started)) \(tag): FAILED after \(elapsed(stepStart, sign: false)): \(error)")
                return try failed(at: step, reason: error.description, leases: leases)
            }
            state = try replayHeld()
        }
        try directory.append(RunJournalEntry(event: .runEnded, time: Journal.now(), outcome: .succeeded))
        return Outcome(completed: true, summary: "run succeeded: \(count) steps done in \(elapsed(started, sign: false))")
    }

    /// After a failed step: undo what was done, last first, but never past a point of no return.
    /// A fence a step took or gave back, for the lease keeper.
    private static func track(_ action: StepAction, index: Int, in leases: LeaseKeeper) {
        guard case .dbReadOnly(let dsn, let on, _, let control, let lease) = action else { return }
        if on {
            leases.took(HeldFence(stepIndex: index, dsn: dsn, controlDatabase: control, lease: lease))
        } else {
            leases.gaveBack(dsn)
        }
    }

    private func failed(at step: RunbookStep, reason: String, leases: LeaseKeeper) throws(RunbookRunError) -> Outcome {
        let report = try undo(acceptDataLoss: false, automatic: true, leases: leases)
        try directory.append(RunJournalEntry(event: .runEnded, time: Journal.now(), outcome: .failed))
        var lines = ["run FAILED at \(step.label): \(reason)"]
        lines.append(contentsOf: report.lines)
        return Outcome(completed: false, summary: lines.joined(separator: "\n"))
    }

    // MARK: rollback

    /// Undoes the current run's effects in reverse, as its journal records them.
    ///
    /// Refused past a point of no return unless `acceptDataLoss`, naming what would be lost.
    public func rollback(acceptDataLoss: Bool, confirm: (String) -> Bool) throws(RunbookRunError) -> Outcome {
        let lock = try directory.lock()
        defer { lock.release() }
        let state = try replayHeld()
        let owed = state.stepsToUndo
        guard !owed.isEmpty else {
            throw .notApplicable("nothing to roll back: the run in \(directory.path) is \(state.state.rawValue) and no step's effect is left")
        }
        let losses = state.pointsOfNoReturnToCross.map { "\($0.step.label): \($0.step.dataLoss ?? "data written after this step")" }
        if !losses.isEmpty && !acceptDataLoss { throw .dataLoss(losses) }
        let question = "roll back run \(state.runId) (\(state.runbook)): undo " + owed.map { "step \($0.step.index + 1) \($0.step.kind)" }.joined(separator: ", ") + "?"
        guard confirm(question) else { throw .notConfirmed("rollback not confirmed; nothing was changed") }
        let leases = LeaseKeeper(holding: state.heldFences, output: output)
        defer { leases.finish() }
        let report = try undo(acceptDataLoss: acceptDataLoss, automatic: false, leases: leases)
        try directory.append(RunJournalEntry(event: .runEnded, time: Journal.now(), outcome: report.failures == 0 ? .rolledBack : .failed))
        let head = report.failures == 0 ? "rollback completed" : "rollback FAILED: \(report.failures) undo(s) failed; 'cutover upgrade status' shows what is left"
        return Outcome(completed: report.failures == 0, summary: ([head] + report.lines).joined(separator: "\n"))
    }

    private struct UndoReport {
        var lines: [String] = []
        var failures = 0
    }

    /// Journals `rollback_started` and runs every owed undo, last step first, continuing past failures.
    private func undo(acceptDataLoss: Bool, automatic: Bool, leases: LeaseKeeper) throws(RunbookRunError) -> UndoReport {
        let state = try replayHeld()
        var owed = state.stepsToUndo
        var report = UndoReport()
        if !acceptDataLoss, let barrier = state.pointsOfNoReturnToCross.map(\.step.index).max() {
            // An automatic rollback stops at the point of no return; an operator decides beyond it.
            owed = owed.filter { $0.step.index > barrier }
            let step = state.steps[barrier].step
            report.lines.append("not undone: steps up to and including \(step.label), the point of no return (\(step.dataLoss ?? "data written after it would be lost")); 'cutover upgrade rollback --accept-data-loss' undoes them")
        }
        try directory.append(RunJournalEntry(event: .rollbackStarted, time: Journal.now(), pid: getpid(), detail: automatic ? "after a failed step" : "cutover upgrade rollback"))
        var undone: [String] = []
        for owedStep in owed {
            let step = owedStep.step
            let undo = owedStep.undo ?? .nothing
            switch undo {
            case .impossible(let reason):
                report.lines.append("not undone: \(step.label) cannot be undone: \(reason)")
                continue
            case .nothing:
                try directory.append(RunJournalEntry(event: .undoStarted, time: Journal.now(), index: step.index, kind: step.kind))
                try directory.append(RunJournalEntry(event: .undoFinished, time: Journal.now(), index: step.index, ok: true, detail: "nothing to undo"))
            case .actions(let actions):
                try directory.append(RunJournalEntry(event: .undoStarted, time: Journal.now(), index: step.index, kind: step.kind, undo: undo))
                output("undo \(step.label): \(undo.summary)")
                var details: [String] = []
                var failure: StepFailure?
                for action in actions where failure == nil {
                    do {
                        details.append(try executor.perform(action, timeout: .milliseconds(max(step.timeoutMs ?? 30_000, 30_000))))
                        Self.track(action, index: step.index, in: leases)
                    } catch {
                        failure = error
                        // A give-back that failed is left to the lease: the agent retries it when it runs out.
                        if case .dbReadOnly(let dsn, false, _, _, _?) = action { leases.abandon(dsn) }
                    }
                }
                if let failure {
                    try directory.append(RunJournalEntry(event: .undoFinished, time: Journal.now(), index: step.index, ok: false, detail: failure.description))
                    report.failures += 1
                    report.lines.append("UNDO FAILED: \(step.label): \(failure)")
                    output("undo \(step.label) FAILED: \(failure)")
                } else {
                    try directory.append(RunJournalEntry(event: .undoFinished, time: Journal.now(), index: step.index, ok: true, detail: details.joined(separator: "; ")))
                    undone.append("\(step.label) (\(undo.summary))")
                }
            }
        }
        report.lines.insert(undone.isEmpty ? "undid: nothing" : "undid, last step first: " + undone.joined(separator: ", "), at: 0)
        return report
    }

    // MARK: plan checks

    /// Every check `plan` can make without changing anything; empty when all pass.
    ///
    /// A step that uses a database an earlier step copies into existence is not checked (it cannot
    /// be yet); plan says so in the list of notes instead.
    public func checks(_ runbook: Runbook) -> (failures: [String], notes: [String]) {
        var created: [String: Int] = [:]
        var failures: [String] = []
        var notes: [String] = []
        for step in runbook.steps where step.skipped == nil {
            if let copy = DatabaseSteps.databasesUsed(step.action).compactMap({ created[$0] }).first {
                notes.append("\(step.label): not checked, it uses a database step \(copy + 1) creates")
            } else {
                failures += executor.preflight(step).map { "\(step.label): \($0)" }
            }
            for name in DatabaseSteps.createdDatabases(step.action) { created[name] = step.index }
        }
        notes += holdWarnings(runbook)
        return (failures, notes)
    }

    /// The targeted proxies that are fleet nodes, each with its `show fleet`; a proxy without a
    /// fleet (or not answering: the checks report that) is left out.
    public func fleets(_ runbook: Runbook) -> [RunbookPlan.Fleet] {
        var sockets: [String] = []
        for step in runbook.steps where step.skipped == nil {
            if let socket = step.action.proxySocket, !sockets.contains(socket) { sockets.append(socket) }
        }
        return sockets.compactMap { socket in
            guard let fleet = try? ProxyAdminSession(socket: socket).send("show fleet", as: FleetAnswer.self, timeout: .seconds(5)).data else { return nil }
            return RunbookPlan.Fleet(socket: socket, fleet: fleet)
        }
    }

    /// A hold that can outlast the profile's `hold_timeout` ends in 503s for what is still held:
    /// plan says so (a warning, not a failure: the bounds are worst cases, the timeout a choice).
    private func holdWarnings(_ runbook: Runbook) -> [String] {
        var warnings: [String] = []
        for window in RunbookPlan(runbook).windows {
            let step = runbook.steps[window.fromStep]
            let held: (socket: String, profile: String)
            if case .pause(let socket, let profile) = step.action {
                held = (socket, profile)
            } else if case .readOnly(let socket, let profile, .hold) = step.action {
                held = (socket, profile)
            } else {
                continue
            }
            guard let holdTimeoutMs = (try? ProxyAdminSession(socket: held.socket).profile(held.profile))?.holdTimeoutMs else { continue }
            let limit = DurationText.format(.milliseconds(holdTimeoutMs))
            let until = window.toStep.map { "until step \($0 + 1)" } ?? "to the end"
            if let maxMs = window.maxMs, maxMs <= holdTimeoutMs { continue }
            let length = window.maxMs.map { "up to \(DurationText.format(.milliseconds($0)))" } ?? "without a bound (a step waits for a person)"
            warnings.append("\(step.label): \(window.effect) \(length) (\(until)), longer than profile \(held.profile)'s hold_timeout of \(limit): what is still held then is answered 503; raise hold_timeout or lower the timeouts of the steps in between")
        }
        return warnings
    }

    private func elapsed(_ since: ContinuousClock.Instant, sign: Bool = true) -> String {
        let ms = (ContinuousClock.now - since).milliseconds
        let text = String(format: "%.1fs", Double(ms) / 1000)
        return sign ? "+\(text)" : text
    }
}
