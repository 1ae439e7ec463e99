/// What `cutover upgrade status` prints: the replayed run as data (`--json`, snake_case) and as text.
public struct RunStatusReport: Codable, Sendable, Equatable {
    /// One step's line.
    public struct Step: Codable, Sendable, Equatable {
        /// The step's position, from 0.
        public var index: Int
        /// The step's kind.
        public var kind: String
        /// The step's `title`.
        public var title: String?
        /// Where the step stands.
        public var status: RunState.StepStatus
        /// The step's result or error.
        public var detail: String?
        /// The recorded undo (once the step has started).
        public var undo: String?
        /// The last undo attempt failed with this; the step still needs undoing.
        public var undoFailed: String?
        /// The step is marked `point_of_no_return`.
        public var pointOfNoReturn: Bool
    }

    /// `failed_step`.
    public struct FailedStep: Codable, Sendable, Equatable {
        /// The step's position, from 0.
        public var index: Int
        /// The step's kind.
        public var kind: String
        /// Why it failed, one line.
        public var reason: String
    }

    /// The runbook file as named at `run`.
    public var runbook: String
    /// The runbook's `name`.
    public var name: String
    /// The run's id.
    public var runId: String
    /// The run as a whole.
    public var state: RunState.State
    /// The process that wrote the journal last.
    public var pid: Int32
    /// One entry per step, in order.
    public var steps: [Step]
    /// The step that failed, if one did.
    public var failedStep: FailedStep?
    /// The step the runner was in when it died (`interrupted` only).
    public var interruptedStep: Int?
    /// Where `resume` would continue, when it can.
    public var resumeFrom: Int?
    /// Steps `rollback` would undo, in the order it would undo them.
    public var rollbackWouldUndo: [Int]
    /// Whether that rollback needs `--accept-data-loss`.
    public var rollbackLosesData: Bool

    public init(_ state: RunState) {
        runbook = state.runbook
        name = state.name
        runId = state.runId
        self.state = state.state
        pid = state.pid
        steps = state.steps.map {
            Step(index: $0.step.index, kind: $0.step.kind, title: $0.step.title, status: $0.status, detail: $0.detail,
                 undo: $0.undo?.summary, undoFailed: $0.undoFailure, pointOfNoReturn: $0.step.pointOfNoReturn)
        }
        failedStep = state.failedStep.map { FailedStep(index: $0.index, kind: $0.kind, reason: $0.reason) }
        interruptedStep = state.interruptedStep?.step.index
        resumeFrom = state.resumeIndex
        rollbackWouldUndo = state.stepsToUndo.map(\.step.index)
        rollbackLosesData = !state.pointsOfNoReturnToCross.isEmpty
    }

    /// For a person: the state, one line per step, and what can be done next.
    public var text: String {
        var lines = ["run \(runId) of \(name) (\(runbook)): \(state.rawValue)" + (state == .interrupted ? " (process \(pid) is gone)" : state == .running ? " (process \(pid))" : "")]
        for step in steps {
            var line = "  \(step.index + 1). \(step.kind.padding(toLength: 13, withPad: " ", startingAt: 0)) \(step.status.rawValue)"
            if let title = step.title { line += " — \(title)" }
            if step.index == interruptedStep { line += "  ← interrupted here" }
            if let failed = step.undoFailed { line += "  (undo failed: \(failed))" }
            lines.append(line)
        }
        if let failedStep { lines.append("failed: step \(failedStep.index + 1) \(failedStep.kind): \(failedStep.reason)") }
        switch state {
        case .interrupted:
            var next: [String] = []
            if let resumeFrom { next.append("'cutover upgrade resume' continues at step \(resumeFrom + 1)") }
            if !rollbackWouldUndo.isEmpty {
                next.append("'cutover upgrade rollback' undoes steps " + rollbackWouldUndo.map { String($0 + 1) }.joined(separator: ", ")
                            + (rollbackLosesData ? " (crosses the point of no return: needs --accept-data-loss)" : ""))
            }
            if !next.isEmpty { lines.append("next: " + next.joined(separator: "; or ")) }
        case .failed where !rollbackWouldUndo.isEmpty:
            lines.append("left to undo: steps " + rollbackWouldUndo.map { String($0 + 1) }.joined(separator: ", ") + " ('cutover upgrade rollback')")
        case .running, .succeeded, .failed, .rolledBack:
            break
        }
        return lines.joined(separator: "\n")
    }
}
