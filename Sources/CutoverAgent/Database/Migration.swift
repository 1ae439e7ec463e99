import CutoverCore
import Foundation

/// A migration SQL file run against one database: in one transaction unless the file says otherwise.
///
/// Transactional mode sends `BEGIN`, the whole file, a row into `cutover.cutover_migrations` and
/// `COMMIT`; any error rolls all of it back, so nothing of a failed migration remains, and the row
/// (keyed by the file's SHA-256) makes `isApplied` exact. A statement that cannot run in a
/// transaction block (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …) or that would end it (`COMMIT`) is
/// refused before anything runs. A file whose first line is `-- cutover: no-transaction` runs its
/// statements one by one instead; a failure there leaves the statements before it in place, and the
/// row is written only after the last one succeeded (a resume re-runs the whole file: write such
/// files to be re-runnable).
public struct Migration: DatabaseStep {
    /// The database the file runs in.
    public var database: ConnectionString
    /// Path of the SQL file.
    public var file: String
    /// `true`/`false` forces the mode; `nil` lets the file decide (transactional unless it starts with the directive).
    public var transactional: Bool?
    /// The file that undoes this one, if any.
    public var undoFile: String?
    /// Bound on each connection attempt.
    public var connectTimeout: Duration = .seconds(5)

    /// A run of `file` in `database`; nothing happens until `apply`.
    public init(database: ConnectionString, file: String, transactional: Bool? = nil, undoFile: String? = nil) {
        self.database = database
        self.file = file
        self.transactional = transactional
        self.undoFile = undoFile
    }

    public var description: String {
        let mode: String
        switch transactional {
        case true?: mode = "in one transaction"
        case false?: mode = "statement by statement"
        case nil: mode = "mode from the file"
        }
        return "run \(file) in \(database.database) (\(mode))"
    }

    public var undoStep: (any DatabaseStep)? {
        undoFile.map { Migration(database: database, file: $0) }
    }

    /// The file's text and its statements, with the mode decided; throws when it cannot run at all.
    func load() throws(DatabaseError) -> (text: String, script: SQLScript, transactional: Bool) {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw .refused(step: "run \(file)", reason: "cannot read \(file)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .refused(step: "run \(file)", reason: "\(file) is not UTF-8 text")
        }
        let script = SQLScript(text)
        guard !script.statements.isEmpty else {
            throw .refused(step: "run \(file)", reason: "\(file) holds no SQL statement")
        }
        let inTransaction = transactional ?? !script.declaresNoTransaction
        if inTransaction, let first = script.transactionRefusals.first {
            throw .refused(
                step: "run \(file)",
                reason: "\(file) line \(first.line): \(first.what) cannot run inside a transaction block; make "
                    + "`\(SQLScript.noTransactionDirective)` the file's first line to run its statements one by one "
                    + "(then a failure leaves the statements before it in place)")
        }
        return (text, script, inTransaction)
    }

    public func preflight() -> [String] {
        var failures: [String] = []
        do throws(DatabaseError) {
            _ = try load()
        } catch {
            failures.append(error.description)
        }
        do throws(DatabaseError) {
            _ = try open()
        } catch {
            failures.append(error.description)
        }
        return failures
    }

    /// True when the file's SHA-256 is recorded in `cutover.cutover_migrations` (written only on success).
    public func isApplied() throws(DatabaseError) -> Bool {
        let (text, _, _) = try load()
        let session = try open()
        return try isRecorded(session, sha: try sha256(session, text))
    }

    public func apply() throws(DatabaseError) -> DatabaseStepReport {
        let clock = ContinuousClock()
        let started = clock.now
        let (text, script, inTransaction) = try load()
        let session = try open()
        let sha = try sha256(session, text)
        var details: [String: String] = [
            "file": file, "file_sha256": sha, "statements": String(script.statements.count),
            "mode": inTransaction ? "transaction" : "no-transaction",
        ]
        if try isRecorded(session, sha: sha) {
            details["already_applied"] = "true"
            return DatabaseStepReport(summary: "\(file) was already applied to \(database.database)", details: details)
        }
        if inTransaction {
            try session.query("BEGIN")
            do throws(DatabaseError) {
                // One simple-query message: the server runs every statement in the open transaction.
                try session.query(text)
                try record(session, sha: sha)
                try session.query("COMMIT")
            } catch {
                _ = try? session.query("ROLLBACK")
                throw Self.explain(error, "in \(file); the transaction was rolled back: nothing of the migration remains")
            }
        } else {
            for (index, statement) in script.statements.enumerated() {
                do throws(DatabaseError) {
                    try session.query(statement.text)
                } catch {
                    throw Self.explain(
                        error,
                        "in \(file) statement \(index + 1) of \(script.statements.count) (line \(statement.line)); "
                            + "the \(index) statement(s) before it stay applied")
                }
            }
            try record(session, sha: sha)
        }
        let elapsed = (clock.now - started).milliseconds
        details["elapsed_ms"] = String(elapsed)
        return DatabaseStepReport(
            summary: "ran \(file) in \(database.database) (\(script.statements.count) statement(s), \(inTransaction ? "one transaction" : "one by one")) in \(elapsed) ms",
            details: details)
    }

    private func open() throws(DatabaseError) -> PostgresConnection {
        try PostgresConnection(database, connectTimeout: connectTimeout)
    }

    /// SHA-256 of the file's text, computed by the server (no crypto library in the package).
    private func sha256(_ session: PostgresConnection, _ text: String) throws(DatabaseError) -> String {
        try session.scalar("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')", [text]) ?? ""
    }

    private func isRecorded(_ session: PostgresConnection, sha: String) throws(DatabaseError) -> Bool {
        guard try session.scalar("SELECT to_regclass('cutover.cutover_migrations') IS NOT NULL") == "t" else { return false }
        return try session.scalar("SELECT count(*) FROM cutover.cutover_migrations WHERE file_sha = $1", [sha]) != "0"
    }

    /// Writes the file's row (creating schema and table when missing), in the caller's transaction if any.
    private func record(_ session: PostgresConnection, sha: String) throws(DatabaseError) {
        try session.query("CREATE SCHEMA IF NOT EXISTS cutover")
        try session.query(
            "CREATE TABLE IF NOT EXISTS cutover.cutover_migrations (file_sha text PRIMARY KEY, file_name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        try session.query(
            "INSERT INTO cutover.cutover_migrations (file_sha, file_name) VALUES ($1, $2) ON CONFLICT (file_sha) DO NOTHING",
            [sha, (file as NSString).lastPathComponent])
    }

    /// The same error with where it happened and what is left appended to its message.
    private static func explain(_ error: DatabaseError, _ context: String) -> DatabaseError {
        switch error {
        case .queryFailed(let state, let message): return .queryFailed(sqlstate: state, message: "\(message) (\(context))")
        case .connectionLost(let message): return .connectionLost(message: "\(message) (\(context))")
        default: return error
        }
    }
}
