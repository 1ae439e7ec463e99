/// Why a runbook was refused before anything ran: the file, the key path inside it, and a reason.
///
/// Printed as `FILE: KEY: REASON`, like `ConfigError`, e.g.
/// `stage-copy.json: steps[3].mode: "hld" is not a readonly mode; expected one of: on, off, hold`.
/// The key is empty for whole-file problems and `--set NAME` for command-line values.
public struct RunbookError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The runbook file as named by the operator.
    public var file: String
    /// Key path such as `steps[3].mode` or `params.primary`; empty for the whole file.
    public var key: String
    /// A phrase an operator can act on.
    public var reason: String

    public init(file: String, key: String, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }

    public var description: String {
        key.isEmpty ? "\(file): \(reason)" : "\(file): \(key): \(reason)"
    }
}
