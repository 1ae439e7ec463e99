/// A database change the runbook engine can check, apply, verify and (maybe) undo.
///
/// Each step is a value: nothing happens at init. Every method opens its own sessions and closes them
/// before it returns.
/// - Important: libpq calls block; call these off any proxy queue.
public protocol DatabaseStep: Sendable {
    /// What `plan` prints: "copy app → app_v2 (template)".
    var description: String { get }
    /// Checks everything that can be checked without changing anything (reachable, privileges,
    /// target name free, file readable/non-empty/allowed statements...). Returns the list of failures
    /// (empty = ok) rather than throwing, so plan can name every failure.
    func preflight() -> [String]
    /// Whether the effect is already in place (resume re-checks before redoing; must be cheap and not change anything).
    func isApplied() throws(DatabaseError) -> Bool
    /// Does it. Idempotent where the operation allows it.
    func apply() throws(DatabaseError) -> DatabaseStepReport
    /// The inverse step, or nil when the effect cannot be undone (plan shows "cannot be undone").
    var undoStep: (any DatabaseStep)? { get }
}
