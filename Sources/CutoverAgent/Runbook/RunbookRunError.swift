/// Why `cutover upgrade run|rollback|resume|status` could not do what was asked, for an operator.
public enum RunbookRunError: Error, Sendable, CustomStringConvertible {
    /// Another process holds the journal directory's lock.
    case locked(directory: String, holder: Int32?)
    /// The journal directory or file cannot be used.
    case journal(path: String, message: String)
    /// `status`, `rollback` or `resume` found no run in the directory.
    case noRun(directory: String)
    /// `run` found a run that has not ended; it must be rolled back or resumed first.
    case unfinishedRun(directory: String, state: String, runbook: String)
    /// The command does not apply to the run's state (`resume` of a succeeded run, …).
    case notApplicable(String)
    /// A rollback would cross a point of no return and `--accept-data-loss` was not given.
    case dataLoss([String])
    /// A confirmation was refused or could not be asked.
    case notConfirmed(String)

    public var description: String {
        switch self {
        case .locked(let directory, let holder):
            return "another cutover upgrade " + (holder.map { "(pid \($0)) " } ?? "") + "holds \(directory)/lock; one run at a time per journal directory"
        case .journal(let path, let message):
            return "cannot use the journal \(path): \(message)"
        case .noRun(let directory):
            return "no run in \(directory) (no journal.jsonl); start one with 'cutover upgrade run RUNBOOK'"
        case .unfinishedRun(let directory, let state, let runbook):
            return "the last run in \(directory) (\(runbook)) is \(state): finish it first with 'cutover upgrade resume' or 'cutover upgrade rollback' (see 'cutover upgrade status')"
        case .notApplicable(let message):
            return message
        case .dataLoss(let losses):
            return "refusing to roll back past the point of no return without --accept-data-loss; it would lose: " + losses.joined(separator: "; ")
        case .notConfirmed(let message):
            return message
        }
    }
}
