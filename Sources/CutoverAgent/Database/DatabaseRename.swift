import CutoverCore
import Foundation

/// Renames databases on one server in one transaction, so `app → app_old, app_v2 → app` is an atomic swap.
///
/// `ALTER DATABASE … RENAME` fails with 55006 while anyone is connected, so every `from` database
/// first refuses connections (`ALLOW_CONNECTIONS false`, which stops superusers too) and its sessions
/// are terminated; after the transaction each database gets its own previous ALLOW_CONNECTIONS back
/// under whatever name it has then (settings follow the database's oid, not its name). A connection
/// attempt made during the swap waits and then fails with "database … does not exist … just been
/// dropped or renamed": applications must retry.
public struct DatabaseRename: DatabaseStep {
    /// Any connection string to the server; its dbname is not used.
    public var server: ConnectionString
    /// Renames in the order they run.
    public var renames: [(from: String, to: String)]
    /// Database the control session connects to; it cannot be renamed.
    public var controlDatabase: String
    /// Bound on each connection attempt.
    public var connectTimeout: Duration = .seconds(5)

    /// The renames on `server`; nothing happens until `apply`.
    public init(server: ConnectionString, renames: [(from: String, to: String)], controlDatabase: String = "postgres") {
        self.server = server
        self.renames = renames
        self.controlDatabase = controlDatabase
    }

    public var description: String {
        "rename on \(server.endpoint): " + renames.map { "\($0.from) → \($0.to)" }.joined(separator: ", ") + " (one transaction)"
    }

    /// The reverse renames in reverse order.
    public var undoStep: (any DatabaseStep)? {
        var undo = self
        undo.renames = renames.reversed().map { (from: $0.to, to: $0.from) }
        return undo
    }

    /// Names that must exist at the end, and names that must be gone (renamed away and not reused).
    private var outcome: (present: Set<String>, absent: Set<String>) {
        let targets = Set(renames.map(\.to))
        return (targets, Set(renames.map(\.from)).subtracting(targets))
    }

    public func preflight() -> [String] {
        var failures: [String] = []
        if renames.isEmpty { failures.append("no rename given") }
        do throws(DatabaseError) {
            let control = try ControlSession(server, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
            var names = Set(try control.connection.query("SELECT datname FROM pg_database").compactMap { $0[0] })
            // Simulate the list: a name freed by an earlier rename may be taken by a later one.
            for (from, to) in renames {
                if from == controlDatabase || to == controlDatabase {
                    failures.append("\(from) → \(to): \"\(controlDatabase)\" is the control database; pass another control database")
                }
                if !names.contains(from) {
                    failures.append("\(from) → \(to): no database \"\(from)\" on \(server.endpoint) at that point")
                } else if try !control.mayRename(from) {
                    failures.append("\(from) → \(to): role \"\(server.user)\" may not rename \"\(from)\" (needs superuser, or owner with CREATEDB)")
                }
                if names.contains(from), case let blocked = try control.unterminableSessions(of: from), !blocked.isEmpty {
                    failures.append("\(from) → \(to): sessions this role cannot terminate: " + blocked.joined(separator: ", "))
                }
                if names.contains(to) {
                    failures.append("\(from) → \(to): \"\(to)\" is taken on \(server.endpoint) at that point")
                }
                names.remove(from)
                names.insert(to)
            }
        } catch {
            failures.append(error.description)
        }
        return failures
    }

    public func isApplied() throws(DatabaseError) -> Bool {
        try isApplied(ControlSession(server, controlDatabase: controlDatabase, connectTimeout: connectTimeout))
    }

    public func apply() throws(DatabaseError) -> DatabaseStepReport {
        let clock = ContinuousClock()
        let started = clock.now
        let control = try ControlSession(server, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
        if try isApplied(control) {
            return DatabaseStepReport(summary: "already renamed: " + renames.map { "\($0.from) → \($0.to)" }.joined(separator: ", "), details: ["already_applied": "true"])
        }
        // Each database's oid and ALLOW_CONNECTIONS before anything changes (the first rename's view of a name).
        var previous: [(oid: String, allowed: Bool)] = []
        var seen: Set<String> = []
        for (from, _) in renames where !seen.contains(from) {
            seen.insert(from)
            guard let info = try control.database(from) else {
                throw .databaseMissing(database: from, message: "no such database on \(server.endpoint); nothing was renamed")
            }
            previous.append((info.oid, info.allowsConnections))
        }
        var terminated = 0
        var failure: DatabaseError?
        do throws(DatabaseError) {
            for (from, _) in renames where try control.database(from) != nil {
                try control.setAllowConnections(from, false)
                terminated += try control.terminateSessions(of: from)
            }
            try control.connection.query("BEGIN")
            do throws(DatabaseError) {
                for (from, to) in renames {
                    try control.connection.query("ALTER DATABASE \(SQLText.identifier(from)) RENAME TO \(SQLText.identifier(to))")
                }
                try control.connection.query("COMMIT")
            } catch {
                _ = try? control.connection.query("ROLLBACK")
                throw error
            }
        } catch {
            failure = error
        }
        // Put ALLOW_CONNECTIONS back under each database's name now, renamed or not.
        var restoreFailures: [String] = []
        for (oid, allowed) in previous where allowed {
            do throws(DatabaseError) {
                if let name = try control.name(ofOID: oid) { try control.setAllowConnections(name, true) }
            } catch {
                restoreFailures.append("oid \(oid): \(error)")
            }
        }
        if !restoreFailures.isEmpty {
            let reason = "ALLOW_CONNECTIONS could not be restored (" + restoreFailures.joined(separator: "; ") + ")"
            throw .refused(step: description, reason: failure.map { "\($0); and \(reason)" } ?? reason)
        }
        if let failure { throw failure }
        let elapsed = (clock.now - started).milliseconds
        return DatabaseStepReport(
            summary: "renamed " + renames.map { "\($0.from) → \($0.to)" }.joined(separator: ", ") + " in one transaction (\(elapsed) ms)",
            details: ["renames": renames.map { "\($0.from)=>\($0.to)" }.joined(separator: ","), "terminated_sessions": String(terminated), "elapsed_ms": String(elapsed)])
    }

    private func isApplied(_ control: ControlSession) throws(DatabaseError) -> Bool {
        let (present, absent) = outcome
        guard !renames.isEmpty else { return true }
        for name in present where try control.database(name) == nil { return false }
        for name in absent where try control.database(name) != nil { return false }
        return true
    }
}
