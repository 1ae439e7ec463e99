import CutoverCore

/// The db-* step kinds, wired to the database step API (db-steps-contract.md).
///
/// Until that API is merged into this branch, these kinds parse and plan but refuse to run.
enum DatabaseSteps {
    static func unavailable(_ action: StepAction) -> StepFailure {
        StepFailure("\(action.kind) steps need the database step API, which this build does not have yet")
    }

    static func undo(for action: StepAction) throws(StepFailure) -> RunbookUndo { throw unavailable(action) }
    static func perform(_ action: StepAction) throws(StepFailure) -> String { throw unavailable(action) }
    static func isApplied(_ action: StepAction) throws(StepFailure) -> Bool? { throw unavailable(action) }
    static func preflight(_ action: StepAction) -> [String] { [unavailable(action).description] }
}
