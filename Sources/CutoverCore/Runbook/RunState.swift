/// What a journal says about a run: its state, each step's status, and what rollback and resume must do.
///
/// A pure replay of the entries (`replay`); the only outside fact is whether the last writer's
/// process is still alive, which tells `running` from `interrupted`.
public struct RunState: Sendable, Equatable {
    /// The run as a whole (the strings of `status --json`).
    public enum State: String, Sendable, Equatable, Codable {
        case running
        case succeeded
        case failed
        case rolledBack = "rolled-back"
        /// The journal says it started and nothing says it ended, and its process is gone.
        case interrupted
    }

    /// One step (the strings of `status --json`).
    public enum StepStatus: String, Sendable, Equatable, Codable {
        case pending
        case running
        case done
        case failed
        case undone
    }

    /// One step's replayed facts.
    public struct Step: Sendable, Equatable {
        /// The step as resolved at `run`.
        public var step: RunbookStep
        /// Where it stands.
        public var status: StepStatus
        /// The undo recorded before the step started (`nil` while pending).
        public var undo: RunbookUndo?
        /// The step's result or error.
        public var detail: String?
        /// The last undo attempt failed, with this message (the step still needs undoing).
        public var undoFailure: String?
        /// An undo is journaled as started and not finished (the rollback was interrupted inside it).
        public var undoInterrupted: Bool
    }

    /// A failed step, for `failed_step`.
    public struct FailedStep: Sendable, Equatable {
        /// The step's position, from 0.
        public var index: Int
        /// The step's kind.
        public var kind: String
        /// Why it failed, one line.
        public var reason: String

        public init(index: Int, kind: String, reason: String) {
            self.index = index
            self.kind = kind
            self.reason = reason
        }
    }

    /// The run's id.
    public var runId: String
    /// The runbook file as named at `run`.
    public var runbook: String
    /// The runbook's `name`.
    public var name: String
    /// Every parameter with its resolved value.
    public var params: [NamedValue]
    /// The run as a whole.
    public var state: State
    /// One entry per step, in order.
    public var steps: [Step]
    /// The process that wrote last (the runner, a rollback or a resume).
    public var pid: Int32
    /// A rollback has started (automatically after a failure, or by `rollback`).
    public var rollingBack: Bool
    /// The step that failed, if one did.
    public var failedStep: FailedStep?

    /// Why a journal cannot be replayed.
    public struct ReplayError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Replays `entries` (oldest first). `runnerAlive` says whether the process of the last
    /// `run_started`/`rollback_started`/`resume_started` is still running.
    public static func replay(_ entries: [RunJournalEntry], runnerAlive: Bool) throws(ReplayError) -> RunState {
        guard let first = entries.first, first.event == .runStarted, let steps = first.steps, let pid = first.pid else {
            throw ReplayError(description: "the journal does not begin with run_started")
        }
        var state = RunState(
            runId: first.runId ?? "", runbook: first.runbook ?? "", name: first.name ?? "", params: first.params ?? [],
            state: .running, steps: steps.map { Step(step: $0, status: .pending, undo: nil, detail: nil, undoFailure: nil, undoInterrupted: false) },
            pid: pid, rollingBack: false, failedStep: nil)
        var ended: RunJournalEntry.Outcome?
        for (n, entry) in entries.enumerated().dropFirst() {
            func step() throws(ReplayError) -> Int {
                guard let index = entry.index, state.steps.indices.contains(index) else {
                    throw ReplayError(description: "journal line \(n + 1): \(entry.event.rawValue) names no step of this run")
                }
                return index
            }
            switch entry.event {
            case .runStarted:
                throw ReplayError(description: "journal line \(n + 1): a second run_started in one journal")
            case .stepStarted:
                let i = try step()
                state.steps[i].status = .running
                state.steps[i].undo = entry.undo ?? RunbookUndo.nothing
                state.steps[i].detail = nil
            case .stepFinished:
                let i = try step()
                state.steps[i].status = entry.ok == true ? .done : .failed
                state.steps[i].detail = entry.detail
                if entry.ok != true {
                    state.failedStep = FailedStep(index: i, kind: state.steps[i].step.kind, reason: entry.detail ?? "failed")
                }
            case .rollbackStarted:
                state.rollingBack = true
                if let pid = entry.pid { state.pid = pid }
            case .resumeStarted:
                if let pid = entry.pid { state.pid = pid }
                state.failedStep = nil
            case .undoStarted:
                let i = try step()
                state.steps[i].undoInterrupted = true
            case .undoFinished:
                let i = try step()
                state.steps[i].undoInterrupted = false
                if entry.ok == true {
                    state.steps[i].status = .undone
                    state.steps[i].undoFailure = nil
                } else {
                    state.steps[i].undoFailure = entry.detail ?? "failed"
                }
            case .runEnded:
                ended = entry.outcome ?? .failed
            }
        }
        switch ended {
        case .succeeded?: state.state = .succeeded
        case .failed?: state.state = .failed
        case .rolledBack?: state.state = .rolledBack
        case nil: state.state = runnerAlive ? .running : .interrupted
        }
        return state
    }

    /// The steps a rollback must undo, last first: done steps, a step interrupted while running (its
    /// effect may be partial), a failed step whose undo restores recorded state, and any whose undo failed.
    public var stepsToUndo: [Step] {
        steps.filter { step in
            guard step.undo != nil else { return false }
            switch step.status {
            case .pending, .undone: return false
            case .done, .running: return true
            case .failed: return step.step.action.undoesAfterFailure
            }
        }.reversed()
    }

    /// Steps to undo that crossed a point of no return: a rollback past them loses data.
    public var pointsOfNoReturnToCross: [Step] {
        stepsToUndo.filter(\.step.pointOfNoReturn)
    }

    /// Where `resume` continues: the interrupted step (to be verified first) or the first pending one.
    /// `nil` when nothing is left or the run is not resumable (it ended, or a rollback began).
    public var resumeIndex: Int? {
        // A failed step means the runner had decided to roll back: only `rollback` may continue.
        guard state == .interrupted, !rollingBack, failedStep == nil else { return nil }
        return steps.first { $0.status != .done }?.step.index
    }

    /// The step that was running when the runner died, if any.
    public var interruptedStep: Step? {
        guard state == .interrupted else { return nil }
        return steps.first { $0.status == .running || $0.undoInterrupted }
    }

    /// Undo attempts that failed and are still owed.
    public var undoFailures: [Step] { steps.filter { $0.undoFailure != nil && $0.status != .undone } }
}

/// A database fence a run holds: taken by a done `db-readonly` step and not given back since.
public struct HeldFence: Sendable, Equatable, Hashable {
    /// The step that took it, from 0.
    public var stepIndex: Int
    /// The database, as the step names it.
    public var dsn: String
    public var controlDatabase: String?
    /// The agent lease it is held under (`nil`: taken directly, nothing gives it back by itself).
    public var lease: FenceLease?

    public init(stepIndex: Int, dsn: String, controlDatabase: String?, lease: FenceLease?) {
        self.stepIndex = stepIndex
        self.dsn = dsn
        self.controlDatabase = controlDatabase
        self.lease = lease
    }
}

extension RunState {
    /// The fences the run holds now, in the order they were taken: a done (or interrupted) step
    /// fenced the database, and no later step or undo made it writable again.
    ///
    /// A leased one must be renewed while a runner lives and checked before a resume: its lease may
    /// have run out while no runner did, and writes may have reached the database since.
    public var heldFences: [HeldFence] {
        var held: [HeldFence] = []
        for step in steps {
            guard case .dbReadOnly(let dsn, let on, _, let control, let lease) = step.step.action else { continue }
            switch step.status {
            case .pending, .failed, .undone:
                continue
            case .done, .running:
                held.removeAll { $0.dsn == dsn }
                if on { held.append(HeldFence(stepIndex: step.step.index, dsn: dsn, controlDatabase: control, lease: lease)) }
            }
        }
        return held
    }
}
