import CutoverCore

/// Builds a flag driver from `--driver` and its options, as given to `cutover flag` or to the agent's
/// `flag` command, so that both accept exactly the same words.
public enum FlagDriverOptions {
    /// The option names that take a value.
    public static let names: Set<String> = [
        "--driver", "--path", "--content", "--dsn", "--on-sql", "--off-sql", "--status-sql", "--socket", "--profile", "--gate",
        "--timeout",
    ]

    /// A missing or malformed option, in words for the operator.
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// The driver the options describe; `value(name)` returns the option's value if it was given.
    ///
    /// For `action` `status` the SQL driver needs only `--dsn` and `--status-sql`: the statements
    /// that change the flag are not run (issue 17, defect 7).
    public static func make(action: String? = nil, _ value: (String) -> String?) throws -> FlagDriver {
        func required(_ name: String) throws(Problem) -> String {
            guard let text = value(name) else { throw Problem(description: "\(name) is required for --driver \(value("--driver") ?? "")") }
            return text
        }
        switch value("--driver") {
        case "file":
            var flag = FileFlag(path: try required("--path"))
            if let content = value("--content") { flag.content = content.hasSuffix("\n") ? content : content + "\n" }
            return flag
        case "sql":
            let connection = try ConnectionString(try required("--dsn"))
            if action == "status" {
                return SQLFlag(connectionString: connection, onSQL: value("--on-sql") ?? "", offSQL: value("--off-sql") ?? "", statusSQL: try required("--status-sql"))
            }
            return SQLFlag(connectionString: connection, onSQL: try required("--on-sql"), offSQL: try required("--off-sql"), statusSQL: value("--status-sql"))
        case "proxy":
            let gateText = try required("--gate")
            guard let gate = ProxyFlag.Gate(rawValue: gateText) else {
                throw Problem(description: "--gate must be maintenance or readonly, not '\(gateText)'")
            }
            var flag = ProxyFlag(socketPath: try required("--socket"), profile: try required("--profile"), gate: gate)
            if let text = value("--timeout") {
                guard let timeout = DurationText.parse(text) else { throw Problem(description: "--timeout: '\(text)' is not a duration") }
                flag.timeout = timeout
            }
            return flag
        case nil:
            throw Problem(description: "--driver is required (file, sql or proxy)")
        case let other?:
            throw Problem(description: "unknown driver '\(other)' (file, sql or proxy)")
        }
    }
}
