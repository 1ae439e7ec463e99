import CutoverAgent
import CutoverCore

/// `cutover flag on|off|status`: maintenance flags through the file, sql and proxy drivers.
enum FlagCommand {
    static let subcommand = Subcommand(name: "flag", summary: "turn a maintenance flag on or off (file, sql or proxy driver)", help: help, run: run)

    static let help = """
        Usage: cutover flag on|off|status --driver file  --path PATH [--content TEXT]
               cutover flag on|off        --driver sql   --dsn CONNINFO --on-sql SQL --off-sql SQL [--status-sql SQL]
               cutover flag status        --driver sql   --dsn CONNINFO --status-sql SQL
               cutover flag on|off|status --driver proxy --socket PATH --profile NAME --gate maintenance|readonly

        Tells the application (or the proxy in front of it) that an upgrade is under way.

        Drivers:
          file    on creates PATH atomically (write a temp file, fsync, rename, fsync the directory);
                  off removes it; status says whether it exists.
            --path PATH           the flag file.
            --content TEXT        what the file contains (default: "maintenance").
          sql     runs configured statements in one transaction on a database the application reads,
                  e.g. an upsert into a settings table, optionally followed by NOTIFY.
            --dsn CONNINFO        libpq connection string.
            --on-sql SQL          statement(s) that turn the flag on.
            --off-sql SQL         statement(s) that turn it off.
            --status-sql SQL      a query returning one value; on, true, t, 1, yes mean on. Required
                                  by status (which needs neither --on-sql nor --off-sql).
          proxy   the Cutover proxy's own gates over its admin Unix socket: sends one line
                  "maintenance|readonly PROFILE on|off" and expects "OK …"; "ERR code: message" is a
                  failure. status reads the gate from the proxy's "show profiles --json".
            --socket PATH         the proxy's admin socket.
            --profile NAME        the profile whose gate is switched.
            --gate GATE           maintenance (503 for everyone but the bypass) or readonly (only
                                  GET, HEAD, OPTIONS pass).
            --timeout DURATION    bound on connect and on waiting for the answer (default: 5s).

        Common options:
          --journal PATH          append a fsync'd JSON line before and after the change, with its undo.
          --json                  print the result as one JSON object.

        Exit status: 0 done; 1 failed (the message says why); 2 usage error.
        """

    static let valued = FlagDriverOptions.names.union(["--journal"])

    static func run(_ words: [String]) throws -> Int32 {
        let arguments = try Arguments(words, valued: valued)
        try arguments.rejectUnknown(flags: ["--json"])
        guard let action = arguments.positionals.first else { throw UsageError("missing on, off or status") }
        guard ["on", "off", "status"].contains(action) else { throw UsageError("expected on, off or status, not '\(action)'") }
        guard arguments.positionals.count == 1 else { throw UsageError("unexpected '\(arguments.positionals[1])'") }
        let driver = try makeDriver(arguments, action: action)
        let options = Dictionary(uniqueKeysWithValues: FlagDriverOptions.names.compactMap { name in arguments.value(name).map { (name, $0) } })
        let journal = arguments.value("--journal").map(Journal.init(path:))
        let result: FlagResult
        switch action {
        case "on":
            result = try journaled(journal, action: "flag on", target: driver.target, undo: ShellWords.flagCommand("off", options: options), describe: { (r: FlagResult) in r.json }) {
                try driver.on()
            }
        case "off":
            result = try journaled(journal, action: "flag off", target: driver.target, undo: ShellWords.flagCommand("on", options: options), describe: { (r: FlagResult) in r.json }) {
                try driver.off()
            }
        default:
            result = try driver.status()
        }
        print(arguments.has("--json") ? result.json : result.text)
        return 0
    }

    /// Builds the driver named by `--driver` from its options.
    static func makeDriver(_ arguments: Arguments, action: String) throws -> FlagDriver {
        do {
            return try FlagDriverOptions.make(action: action) { arguments.value($0) }
        } catch let problem as FlagDriverOptions.Problem {
            throw UsageError(problem.description)
        }
    }
}
