/// The `COMMENT ON DATABASE` text that marks a database cutover made, so a later drop can tell it apart.
enum CutoverComment {
    static let prefix = "created by cutover: "

    /// The comment of a finished copy.
    static func copy(of source: String, at time: String) -> String { "\(prefix)copy of \(source) at \(time)" }

    /// The comment while a dump is being restored into the database (a crash leaves it marked unfinished).
    static func copyInProgress(of source: String, since time: String) -> String { "\(prefix)copy of \(source) in progress since \(time)" }

    static func isCutover(_ comment: String) -> Bool { comment.hasPrefix(prefix) }

    static func isFinishedCopy(_ comment: String) -> Bool { comment.hasPrefix(prefix + "copy of ") && !comment.contains(" in progress since ") }
}
