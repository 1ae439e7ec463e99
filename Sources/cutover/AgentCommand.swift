import CutoverAgent
import CutoverControl
import CutoverCore
import CutoverProxy
import Dispatch
import Foundation

/// `cutover agent`: the long-running companion with its own admin socket.
enum AgentCommand {
    static let subcommand = Subcommand(name: "agent", summary: "run the companion agent on its own admin socket", help: help, run: run)

    static let help = """
        Usage: cutover agent --socket PATH --journal PATH [--config FILE]

        Runs the companion agent: it holds the database credentials so the proxy host does not
        need them, and executes commands sent one per line on its Unix socket (mode 0600), in the
        proxy's admin protocol: each answer is "OK …" or "ERR <code>: <message>" followed by an
        empty line, so `cutover ctl --socket PATH COMMAND` drives the agent too.

        Commands:
          db readonly on|off|status DSN-OR-NAME [--grace D] [--lease D] [--control-db NAME]
                  as `cutover db readonly`; NAME is a database from the config's "databases"
                  list, or give a connection string in quotes. With --lease, the agent gives the
                  database back read-write (off) when the lease expires without renewal, and
                  logs why. Leases are kept in JOURNAL.leases and re-armed when the agent
                  restarts.
          lease renew NAME D    extends the lease of NAME (the configured name, the dbname, or
                                the connection string the fence was taken with).
          lease release NAME    ends the lease of NAME and keeps the database as it is.
          lease show            the leases held and the time left on each.
          flag on|off|status --driver file|sql|proxy OPTIONS
                                the maintenance flags of `cutover flag`, with the same options
                                (see `cutover flag --help`); every change is journaled.
          help
        Append --json to any command for a JSON answer.

        Options:
          --socket PATH   the agent's admin socket.
          --journal PATH  every change is appended here (fsync'd) before and after it runs.
          --config FILE   the Cutover config; its "databases" entries can be named in commands.

        Every command answers JSON with --json (as `cutover ctl --json` sends): the proxy's
        envelope {"ok":true,"message":...} beside the command's fields, or
        {"ok":false,"code":...,"message":...}.

        Runs until SIGTERM or SIGINT: then it stops accepting, finishes the command in
        progress, removes its socket file and exits 0 (leases stay in JOURNAL.leases).
        Logs to standard error.
        """

    static func run(_ words: [String]) throws -> Int32 {
        let arguments = try Arguments(words, valued: ["--socket", "--journal", "--config"])
        try arguments.rejectUnknown(flags: [])
        guard arguments.positionals.isEmpty else { throw UsageError("unexpected '\(arguments.positionals[0])'") }
        guard let socketPath = arguments.value("--socket") else { throw UsageError("--socket is required") }
        guard let journalPath = arguments.value("--journal") else { throw UsageError("--journal is required") }
        var databases: [String: String] = [:]
        if let path = arguments.value("--config") {
            for database in try ConfigFile.load(path: path, use: .agent).databases where database.driver == "postgres" {
                databases[database.name] = database.dsn
            }
        }
        let service = AgentService(journal: Journal(path: journalPath), databases: databases) { printError("cutover agent: \($0)") }
        let server = try AgentServer(path: socketPath, service: service) { printError("cutover agent: \($0)") }
        printError("cutover agent: listening on \(server.path), journal \(journalPath)")
        withExtendedLifetime(server) { SignalRouter.parkMainThread() }
    }
}
