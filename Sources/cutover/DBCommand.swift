import CutoverAgent
import CutoverCore
import CutoverProxy

/// `cutover db readonly on|off|status`: the database read-only fence (see docs/agent.md).
enum DBCommand {
    // Also `db copy|promote|run|rename|drop|schema-check|fingerprint`: the other PostgreSQL steps of an
    // upgrade, each one command (see docs/database-steps.md).
    static let subcommand = Subcommand(
        name: "db", summary: "PostgreSQL steps: read-only fence, copy, promote, migrate, rename, drop, schema check", help: help, run: run)

    static let help = """
        Usage: cutover db readonly on|off|status --dsn CONNINFO [OPTIONS]
               cutover db readonly on|off|status TARGET --config FILE [OPTIONS]
               cutover db copy --from CONNINFO --to CONNINFO [--method auto|template|dump] [OPTIONS]
               cutover db promote --standby CONNINFO [--primary CONNINFO] [--timeout D] [OPTIONS]
               cutover db run --dsn CONNINFO FILE [--no-transaction] [OPTIONS]
               cutover db rename --dsn CONNINFO FROM TO [FROM TO]... [OPTIONS]
               cutover db drop --dsn CONNINFO NAME [--force] [OPTIONS]
               cutover db schema-check --dsn CONNINFO [--fingerprint HEX] [--version-query SQL --expect VALUE]
               cutover db fingerprint --dsn CONNINFO

        Each command is one step of an upgrade runbook (cutover upgrade), usable on its own.

        readonly  fences one PostgreSQL database read-only for an upgrade, gives it back
                  read-write, or shows what the database itself says about its mode.

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

        Options of readonly:
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

        copy      a stage copy of --from's database under --to's dbname. Same server (host and port)
                  or --method template: the source refuses connections (ALLOW_CONNECTIONS false), its
                  sessions are terminated, CREATE DATABASE … TEMPLATE runs, ALLOW_CONNECTIONS is put
                  back as it was, whatever happened. Other server or --method dump: the target is
                  created from template0, then pg_dump -Fc --no-owner | pg_restore --no-owner
                  --exit-on-error (never pg_dump -C); a failure drops what was created. The copy is
                  read-write and commented 'created by cutover: copy of SRC at TIME'. Refuses when
                  the target exists and cutover did not make it. Needs CREATEDB (or superuser) on the
                  target server, and to terminate the source's sessions for a template copy.
                  Undo: cutover db drop --dsn TO NAME.
          --from CONNINFO       the source database.
          --to CONNINFO         the target server; its dbname is the copy's name.
          --method M            auto (default: template on one server, dump across two), template, dump.

        promote   a streaming standby becomes a primary. With --primary: waits (at most --timeout,
                  default 30s) until the standby has replayed up to the primary's current WAL
                  position, then pg_promote(true, 60); then resets every database's inherited
                  default_transaction_read_only and proves a new session is read-write. No undo.
          --standby CONNINFO    the standby; its dbname is the database proven read-write.
          --primary CONNINFO    the primary it follows (normally fenced read-only by now).
          --timeout D           bound on the catch-up wait (default: 30s).

        run       a migration FILE in --dsn's database: BEGIN; the file; a row in
                  cutover.cutover_migrations; COMMIT. Any error rolls all of it back. Statements that
                  cannot run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM, ALTER SYSTEM, …) or
                  that end it (COMMIT) are refused before anything runs, unless the file's first line
                  is "-- cutover: no-transaction" or --no-transaction is given: then statements run one
                  by one, and a failure leaves those before it in place. A file already recorded in
                  cutover.cutover_migrations is not run again. No undo (a runbook names an undo file).
          --no-transaction      run the statements one by one whatever the file says.

        rename    renames databases in one transaction (FROM TO FROM TO…: an atomic swap such as
                  app app_old app_v2 app). Each FROM refuses connections and its sessions are
                  terminated first; every database gets its ALLOW_CONNECTIONS back afterwards.
                  Applications connecting meanwhile fail and must retry. Needs superuser, or owner
                  with CREATEDB. Undo: the reverse renames in reverse order.

        drop      drops database NAME: refuses one whose comment does not say cutover created it,
                  unless --force; refuses connections, terminates its sessions, DROP DATABASE.
                  Already absent is success. No undo.
          --force               drop it even though cutover did not create it.

        schema-check  fails (exit 1) when the schema fingerprint differs from --fingerprint, or the
                  single value --version-query returns differs from --expect, naming both values.
        fingerprint   prints the schema fingerprint (hex SHA-256 of tables, columns, constraints,
                  indexes, views, sequences, functions and types of the user schemas; owners, grants
                  and data left out) to pin in a runbook.
          --fingerprint HEX     the expected fingerprint.
          --version-query SQL   a query returning one value, with --expect VALUE.

        With --config FILE, every CONNINFO above may instead be the name of a database in the
        config's "databases" list (driver postgres): its "dsn" is used.

        Options of copy, rename and drop: --control-db NAME (default: postgres), the database the
        control session uses; it is never copied, renamed or dropped. Every command takes
        --connect-timeout D, --journal PATH and --json (the report as one JSON object: summary and
        details). A command that finds something wrong before changing anything (missing
        database, taken name, missing privilege, unreadable file, refused statement) names every
        failure and changes nothing. A step whose effect is already in place (the copy cutover
        made, a promoted server, a recorded migration, done renames, an absent database) says so
        and exits 0.

        Exit status: 0 done and proven; 1 failed (the message says why: unreachable, authentication
        failed, missing privilege, …; nothing is left half-done); 2 usage error.
        """

    static func run(_ words: [String]) throws -> Int32 {
        do {
            return try dispatch(words)
        } catch {
            // A script that asked for JSON reads stdout: it gets an error object there too (the
            // message still goes to stderr, and the exit status is unchanged).
            if words.contains("--json") { print(JSONCoding.line(AdminAnswer<NoAnswerData>(code: errorCode(error), message: "\(error)"))) }
            throw error
        }
    }

    /// The `code` of a failed command's JSON error object: the database error's, `usage`, or `failed`.
    static func errorCode(_ error: any Error) -> String {
        switch error {
        case let database as DatabaseError: return database.code
        case is UsageError: return "usage"
        default: return "failed"
        }
    }

    private static func dispatch(_ words: [String]) throws -> Int32 {
        // Options may come before the command word: find it with every option name any command knows.
        let readonlyOptions: Set<String> = ["--dsn", "--control-db", "--grace", "--connect-timeout", "--journal", "--config"]
        let everyOption = valuedOptions.values.reduce(readonlyOptions) { $0.union($1) }
        switch try Arguments(words, valued: everyOption).positionals.first {
        case "readonly", nil: return try readonly(words)
        case let command?: return try step(command, words)
        }
    }

    /// `db readonly on|off|status`, unchanged since it was the only db command.
    static func readonly(_ words: [String]) throws -> Int32 {
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
        let controlOption = arguments.value("--control-db").map { ["--control-db", $0] } ?? []
        switch action {
        case "status":
            let status = try fence.status()
            print(json ? status.json : status.text)
        case "on":
            let report = try journaled(
                journal, action: "db readonly on", target: target, undo: ShellWords.command(["cutover", "db", "readonly", "off", "--dsn", target] + controlOption),
                describe: { (r: FenceReport) in r.json }
            ) { try fence.on(grace: grace) }
            print(json ? report.json : report.text)
        default:
            let report = try journaled(
                journal, action: "db readonly off", target: target, undo: ShellWords.command(["cutover", "db", "readonly", "on", "--dsn", target] + controlOption),
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
            return try configuredDSN(name, config: path)
        }
    }

    /// The `dsn` of the postgres database named `name` in the config file at `path`.
    static func configuredDSN(_ name: String, config path: String) throws -> String {
        let config = try ConfigFile.load(path: path, use: .agent)
        guard let database = config.databases.first(where: { $0.name == name }) else {
            let known = config.databases.map(\.name)
            throw UsageError("no database named '\(name)' in \(path) (configured: \(known.isEmpty ? "none" : known.joined(separator: ", ")))")
        }
        guard database.driver == "postgres" else { throw UsageError("database '\(name)' uses driver '\(database.driver)'; only postgres is supported") }
        return database.dsn
    }

    // MARK: the step commands

    /// Option names that take a value, per step command.
    static let valuedOptions: [String: Set<String>] = [
        "copy": ["--from", "--to", "--method", "--control-db"],
        "promote": ["--standby", "--primary", "--timeout"],
        "run": ["--dsn"],
        "rename": ["--dsn", "--control-db"],
        "drop": ["--dsn", "--control-db"],
        "schema-check": ["--dsn", "--fingerprint", "--version-query", "--expect"],
        "fingerprint": ["--dsn"],
    ]

    /// Switches each step command accepts besides `--json`.
    static let switches: [String: Set<String>] = ["run": ["--no-transaction"], "drop": ["--force"]]

    /// Parses one step command, checks it (preflight), journals and applies it, prints its report.
    static func step(_ command: String, _ words: [String]) throws -> Int32 {
        guard let valued = valuedOptions[command] else {
            throw UsageError("unknown db command '\(command)' (readonly, copy, promote, run, rename, drop, schema-check, fingerprint)")
        }
        let arguments = try Arguments(words, valued: valued.union(["--journal", "--connect-timeout", "--config"]))
        try arguments.rejectUnknown(flags: (switches[command] ?? []).union(["--json"]))
        let operands = Array(arguments.positionals.dropFirst())
        let connectTimeout = try arguments.duration("--connect-timeout", default: .seconds(5))
        let json = arguments.has("--json")
        let journal = arguments.value("--journal").map(Journal.init(path:))
        func required(_ name: String) throws -> ConnectionString {
            guard let text = arguments.value(name) else { throw UsageError("\(command) needs \(name) CONNINFO") }
            return try resolve(text, arguments)
        }
        func operandCount(_ expected: Int, _ what: String) throws {
            if operands.count < expected { throw UsageError("\(command): missing \(what)") }
            if operands.count > expected { throw UsageError("\(command): unexpected '\(operands[expected])'") }
        }
        let controlDatabase = arguments.value("--control-db") ?? "postgres"

        let planned: PlannedStep
        switch command {
        case "copy":
            try operandCount(0, "")
            let methodText = arguments.value("--method") ?? "auto"
            guard let method = DatabaseCopy.Method(rawValue: methodText) else {
                throw UsageError("--method: expected auto, template or dump, not '\(methodText)'")
            }
            var copy = DatabaseCopy(source: try required("--from"), target: try required("--to"), method: method, controlDatabase: controlDatabase)
            copy.connectTimeout = connectTimeout
            planned = PlannedStep(
                step: copy, target: copy.target.description,
                undo: "cutover db drop --dsn \(shellQuoted(copy.target.description)) \(shellQuoted(copy.target.database))")
        case "promote":
            try operandCount(0, "")
            var promotion = StandbyPromotion(
                standby: try required("--standby"), primary: try arguments.value("--primary").map { try resolve($0, arguments) },
                catchUpTimeout: try arguments.duration("--timeout", default: .seconds(30)))
            promotion.connectTimeout = connectTimeout
            planned = PlannedStep(step: promotion, target: promotion.standby.description, undo: nil)
        case "run":
            try operandCount(1, "FILE")
            var migration = Migration(database: try required("--dsn"), file: operands[0], transactional: arguments.has("--no-transaction") ? false : nil)
            migration.connectTimeout = connectTimeout
            planned = PlannedStep(step: migration, target: migration.database.description, undo: nil)
        case "rename":
            guard !operands.isEmpty else { throw UsageError("rename: missing FROM TO") }
            guard operands.count % 2 == 0 else { throw UsageError("rename: '\(operands.last ?? "")' has no new name (give FROM TO pairs)") }
            let pairs = stride(from: 0, to: operands.count, by: 2).map { (from: operands[$0], to: operands[$0 + 1]) }
            var rename = DatabaseRename(server: try required("--dsn"), renames: pairs, controlDatabase: controlDatabase)
            rename.connectTimeout = connectTimeout
            let reverse = pairs.reversed().map { "\(shellQuoted($0.to)) \(shellQuoted($0.from))" }.joined(separator: " ")
            planned = PlannedStep(step: rename, target: rename.server.description, undo: "cutover db rename --dsn \(shellQuoted(rename.server.description)) \(reverse)")
        case "drop":
            try operandCount(1, "NAME")
            var drop = DatabaseDrop(server: try required("--dsn"), name: operands[0], onlyIfCreatedByCutover: !arguments.has("--force"), controlDatabase: controlDatabase)
            drop.connectTimeout = connectTimeout
            planned = PlannedStep(step: drop, target: drop.server.setting("dbname", to: drop.name).description, undo: nil)
        case "schema-check":
            try operandCount(0, "")
            let query = arguments.value("--version-query")
            let expect = arguments.value("--expect")
            if (query == nil) != (expect == nil) { throw UsageError("--version-query and --expect go together") }
            let fingerprint = arguments.value("--fingerprint")
            if fingerprint == nil && query == nil { throw UsageError("schema-check needs --fingerprint HEX or --version-query SQL --expect VALUE") }
            var check = SchemaCheck(database: try required("--dsn"), expectedFingerprint: fingerprint, versionQuery: query, expectedVersion: expect)
            check.connectTimeout = connectTimeout
            // The check is its own preflight: running it twice would say nothing new.
            planned = PlannedStep(step: check, target: check.database.description, undo: nil, preflight: false)
        default:
            try operandCount(0, "")
            let database = try required("--dsn")
            let fingerprint = try journaled(journal, action: "db fingerprint", target: database.description, undo: nil, describe: { $0 }) {
                try SchemaCheck.fingerprint(database)
            }
            print(json ? DatabaseStepReport(summary: fingerprint, details: ["fingerprint": fingerprint]).json : fingerprint)
            return 0
        }
        // A step already in effect skips its preflight (which may say "not a standby", "taken"):
        // apply then reports it as already applied, so re-running a command is harmless.
        if planned.preflight, (try? planned.step.isApplied()) != true {
            let failures = planned.step.preflight()
            if !failures.isEmpty { throw PreflightFailure(step: planned.step.description, failures: failures) }
        }
        let report = try journaled(
            journal, action: "db \(command)", target: planned.target, undo: planned.undo, describe: { (r: DatabaseStepReport) in r.json }
        ) { try planned.step.apply() }
        print(json ? report.json : report.text)
        return 0
    }

    /// A connection string, or with `--config FILE` the name of a configured postgres database.
    static func resolve(_ text: String, _ arguments: Arguments) throws -> ConnectionString {
        // A word without "=" or "://" cannot be a connection string: with --config it names a database.
        if arguments.value("--config") != nil && !text.contains("=") && !text.contains("://") {
            return try ConnectionString(configuredDSN(text, config: arguments.value("--config") ?? ""))
        }
        return try ConnectionString(text)
    }

    /// A step ready to run, with what the journal says about it.
    struct PlannedStep {
        var step: any DatabaseStep
        /// The journal's target (connection string without password).
        var target: String
        /// The command that undoes it, or nil when nothing can.
        var undo: String?
        var preflight = true
    }

    /// Everything a step's preflight found wrong; nothing was changed.
    struct PreflightFailure: Error, CustomStringConvertible {
        var step: String
        var failures: [String]
        var description: String {
            "\(step): nothing was changed:\n" + failures.map { "  - \($0)" }.joined(separator: "\n")
        }
    }

    /// A word as a POSIX shell reads it back, for the journal's undo commands.
    static func shellQuoted(_ word: String) -> String { ShellWords.quote(word) }
}
