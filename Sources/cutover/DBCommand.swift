import CutoverAgent
import CutoverCore
import CutoverProxy

/// `cutover db readonly on|off|status`: the database read-only fence (see AGENT-README.md).
enum DBCommand {
    static let subcommand = Subcommand(name: "db", summary: "make a PostgreSQL database read-only and back, or show its mode", help: help, run: run)

    static let help = """
        Usage: cutover db readonly on|off|status --dsn CONNINFO [OPTIONS]
               cutover db readonly on|off|status TARGET --config FILE [OPTIONS]

        Fences one PostgreSQL database read-only for an upgrade, gives it back read-write, or shows
        what the database itself says about its mode.

          on      ALTER DATABASE … SET default_transaction_read_only = on; wait up to --grace for
                  transactions that began before the fence; terminate every client session that
                  started before the fence (their open work is rolled back); then prove it: a new
                  session's probe write must fail with SQLSTATE 25006. Anything else undoes the
                  setting and fails. Refuses before changing anything when the role lacks a
                  privilege, when role settings of default_transaction_read_only would override the
                  database's, or when prepared transactions exist on the database.
          off     ALTER DATABASE … RESET default_transaction_read_only; terminates nothing; proves a
                  write works from a new session (in a transaction that is rolled back).
          status  read-only or read-write (the database's own setting), client sessions, open and
                  writing transactions, prepared transactions, overriding role settings.
        on and off are idempotent.

        Options:
          --dsn CONNINFO        libpq connection string of the database to act on, e.g.
                                "host=127.0.0.1 port=5432 dbname=app user=cutover"; its dbname is
                                the database fenced. The role must own the database (or be a member
                                of its owner) and have pg_signal_backend and pg_read_all_stats, or
                                be a superuser.
          TARGET --config FILE  instead of --dsn: the database named TARGET in the config's
                                "databases" list (driver postgres); its "dsn" is used.
          --control-db NAME     database the control session connects to (default: postgres); it
                                must not be the fenced database, because ALTER DATABASE fails in a
                                session of a read-only database.
          --grace DURATION      how long `on` waits for pre-fence transactions before terminating
                                them (default: 2s; e.g. 500ms, 10s, 1m).
          --connect-timeout D   bound on each connection attempt (default: 5s).
          --journal PATH        append a fsync'd JSON line before and after the change, with its undo.
          --json                print the report as one JSON object.

        Exit status: 0 done and proven; 1 failed (the message says why: unreachable, authentication
        failed, missing privilege, …; nothing is left half-done); 2 usage error.
        """

    static func run(_ words: [String]) throws -> Int32 {
        let arguments = try Arguments(words, valued: ["--dsn", "--control-db", "--grace", "--connect-timeout", "--journal", "--config"])
        try arguments.rejectUnknown(flags: ["--json"])
        guard arguments.positionals.first == "readonly" else {
            throw UsageError(arguments.positionals.isEmpty ? "missing 'readonly'" : "unknown db command '\(arguments.positionals[0])'")
        }
        guard arguments.positionals.count >= 2 else { throw UsageError("missing on, off or status") }
        let action = arguments.positionals[1]
        guard ["on", "off", "status"].contains(action) else { throw UsageError("expected on, off or status, not '\(action)'") }
        guard arguments.positionals.count <= 3 else { throw UsageError("unexpected '\(arguments.positionals[3])'") }
        let dsn = try connectionString(arguments, target: arguments.positionals.count == 3 ? arguments.positionals[2] : nil)
        let grace = try arguments.duration("--grace", default: .seconds(2))
        let connectTimeout = try arguments.duration("--connect-timeout", default: .seconds(5))
        let json = arguments.has("--json")
        let journal = arguments.value("--journal").map(Journal.init(path:))

        var fence = try ReadOnlyFence(target: ConnectionString(dsn), controlDatabase: arguments.value("--control-db") ?? "postgres")
        fence.connectTimeout = connectTimeout
        let target = fence.target.description
        switch action {
        case "status":
            let status = try fence.status()
            print(json ? status.json : status.text)
        case "on":
            let report = try journaled(
                journal, action: "db readonly on", target: target, undo: "cutover db readonly off --dsn \"\(target)\"",
                describe: { (r: FenceReport) in r.json }
            ) { try fence.on(grace: grace) }
            print(json ? report.json : report.text)
        default:
            let report = try journaled(
                journal, action: "db readonly off", target: target, undo: "cutover db readonly on --dsn \"\(target)\"",
                describe: { (r: FenceReport) in r.json }
            ) { try fence.off() }
            print(json ? report.json : report.text)
        }
        return 0
    }

    /// The `--dsn`, or the `dsn` of the database named TARGET in `--config`.
    static func connectionString(_ arguments: Arguments, target: String?) throws -> String {
        switch (target, arguments.value("--dsn")) {
        case (nil, nil):
            throw UsageError("name a configured database (TARGET with --config FILE) or give --dsn")
        case (.some, .some):
            throw UsageError("give either TARGET or --dsn, not both")
        case (nil, let dsn?):
            return dsn
        case (let name?, nil):
            guard let path = arguments.value("--config") else { throw UsageError("TARGET '\(name)' needs --config FILE") }
            let config = try ConfigFile.load(path: path)
            guard let database = config.databases.first(where: { $0.name == name }) else {
                let known = config.databases.map(\.name)
                throw UsageError("no database named '\(name)' in \(path) (configured: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
            }
            guard database.driver == "postgres" else { throw UsageError("database '\(name)' uses driver '\(database.driver)'; only postgres is supported") }
            return database.dsn
        }
    }
}
