/// One line of a run's journal. The journal alone decides `status`, `rollback` and `resume`.
///
/// Written (append + fsync) before and after every step and undo; `step_started` carries the
/// concrete undo so that a runner killed inside the step leaves enough to reverse it.
/// Encoded with snake_case keys (`run_id`, `undo_started`).
public struct RunJournalEntry: Codable, Sendable, Equatable {
    /// What happened.
    public enum Event: String, Codable, Sendable, Equatable {
        /// A run began: the resolved runbook, params and the runner's pid.
        case runStarted = "run_started"
        /// A step is about to start; `undo` is what reverses it.
        case stepStarted = "step_started"
        /// The step finished: `ok` and `detail`.
        case stepFinished = "step_finished"
        /// A rollback began (after a failure, or `cutover upgrade rollback`): its process `pid`.
        case rollbackStarted = "rollback_started"
        /// `cutover upgrade resume` took over the run: its `pid`.
        case resumeStarted = "resume_started"
        /// The undo of step `index` is about to run.
        case undoStarted = "undo_started"
        /// The undo of step `index` finished: `ok` and `detail`.
        case undoFinished = "undo_finished"
        /// Nothing more will happen in this run: `outcome`.
        case runEnded = "run_ended"
    }

    /// How a run ended.
    public enum Outcome: String, Codable, Sendable, Equatable {
        case succeeded
        /// A step failed; what could be undone was undone (see the steps).
        case failed
        /// `rollback` restored the start state.
        case rolledBack = "rolled-back"
    }

    /// What happened.
    public var event: Event
    /// UTC, ISO 8601; written by the runner, never read by the replay.
    public var time: String
    /// The run's id (`run_started`).
    public var runId: String?
    /// The runbook file as named at `run`.
    public var runbook: String?
    /// The runbook's `name`.
    public var name: String?
    /// Every parameter with its resolved value (`run_started`).
    public var params: [NamedValue]?
    /// The resolved steps (`run_started`): status, rollback and resume need nothing else.
    public var steps: [RunbookStep]?
    /// The process that writes the following entries (run, rollback or resume).
    public var pid: Int32?
    /// The step the entry is about (0-based).
    public var index: Int?
    /// That step's kind, for a person reading the file.
    public var kind: String?
    /// The concrete undo, recorded before the step starts (`step_started`).
    public var undo: RunbookUndo?
    /// Whether the step or undo succeeded (`step_finished`, `undo_finished`).
    public var ok: Bool?
    /// The step's result or error, one line.
    public var detail: String?
    /// How the run ended (`run_ended`).
    public var outcome: Outcome?

    public init(event: Event, time: String, runId: String? = nil, runbook: String? = nil, name: String? = nil, params: [NamedValue]? = nil,
                steps: [RunbookStep]? = nil, pid: Int32? = nil, index: Int? = nil, kind: String? = nil, undo: RunbookUndo? = nil,
                ok: Bool? = nil, detail: String? = nil, outcome: Outcome? = nil) {
        self.event = event
        self.time = time
        self.runId = runId
        self.runbook = runbook
        self.name = name
        self.params = params
        self.steps = steps
        self.pid = pid
        self.index = index
        self.kind = kind
        self.undo = undo
        self.ok = ok
        self.detail = detail
        self.outcome = outcome
    }

    /// `run_started` for `runbook`, run by process `pid`.
    public static func runStarted(_ runbook: Runbook, runId: String, pid: Int32, time: String) -> RunJournalEntry {
        RunJournalEntry(event: .runStarted, time: time, runId: runId, runbook: runbook.file, name: runbook.name, params: runbook.params,
                        steps: runbook.steps, pid: pid)
    }
}
