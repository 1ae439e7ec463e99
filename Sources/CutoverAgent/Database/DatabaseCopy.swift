import CutoverCore
import Foundation

/// A stage copy of a database: `CREATE DATABASE … TEMPLATE` on one server, `pg_dump | pg_restore` across two.
///
/// Template copy (measured, research/db-mechanics.md §3): another session on the source makes
/// `CREATE DATABASE` wait 5 s and fail with 55006, and new connections stall during the copy; so the
/// source refuses connections (`ALLOW_CONNECTIONS false`) while its sessions are terminated and the
/// copy runs, and gets its previous setting back in every outcome. The copy never inherits
/// `default_transaction_read_only`; it is reset on the copy if present all the same, and the copy is
/// marked with `COMMENT ON DATABASE … IS 'created by cutover: copy of SRC at TIME'` so that its undo,
/// `DatabaseDrop(onlyIfCreatedByCutover: true)`, can prove cutover made it.
public struct DatabaseCopy: DatabaseStep {
    /// How the copy is made.
    public enum Method: String, Sendable, Codable, CaseIterable {
        /// Template when source and target are on one server (same host and port), dump otherwise.
        case automatic = "auto"
        /// `CREATE DATABASE target TEMPLATE source`: fast, same server only, source offline meanwhile.
        case template
        /// `pg_dump -Fc --no-owner | pg_restore --no-owner --exit-on-error` into a database created first.
        case dump
    }

    /// The database copied (its dbname).
    public var source: ConnectionString
    /// Where the copy goes: server and the new database's name (its dbname).
    public var target: ConnectionString
    public var method: Method
    /// Database the control sessions connect to on each server; never the source or the target.
    public var controlDatabase: String
    /// Bound on each connection attempt.
    public var connectTimeout: Duration = .seconds(5)

    /// A copy of `source`'s database to `target`'s; nothing happens until `apply`.
    public init(source: ConnectionString, target: ConnectionString, method: Method = .automatic, controlDatabase: String = "postgres") {
        self.source = source
        self.target = target
        self.method = method
        self.controlDatabase = controlDatabase
    }

    /// `.template` or `.dump`: what `.automatic` means for these two servers.
    public var resolvedMethod: Method {
        switch method {
        case .automatic: return source.endpoint == target.endpoint ? .template : .dump
        case .template, .dump: return method
        }
    }

    public var description: String {
        let whereTo = source.endpoint == target.endpoint ? "" : " on \(target.endpoint)"
        return "copy \(source.database) → \(target.database)\(whereTo) (\(resolvedMethod.rawValue))"
    }

    public var undoStep: (any DatabaseStep)? {
        DatabaseDrop(server: target, name: target.database, onlyIfCreatedByCutover: true, controlDatabase: controlDatabase)
    }

    public func preflight() -> [String] {
        var failures: [String] = []
        let sourceName = source.database
        let targetName = target.database
        if resolvedMethod == .template && source.endpoint != target.endpoint {
            failures.append("a template copy needs source and target on one server (\(source.endpoint) vs \(target.endpoint)); use method dump")
        }
        if source.endpoint == target.endpoint && sourceName == targetName {
            failures.append("source and target are the same database \"\(sourceName)\" on \(source.endpoint)")
        }
        for name in [sourceName, targetName] where name == controlDatabase {
            failures.append("\"\(name)\" is the control database; pass another control database")
        }
        do throws(DatabaseError) {
            let control = try ControlSession(source, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
            if try control.database(sourceName) == nil {
                failures.append("source database \"\(sourceName)\" does not exist on \(source.endpoint)")
            } else if resolvedMethod == .template {
                // CREATE DATABASE … TEMPLATE and ALLOW_CONNECTIONS need the owner; the copy needs every session gone.
                if try !control.mayAlter(sourceName) {
                    failures.append("role \"\(source.user)\" may not copy \"\(sourceName)\" by template (needs superuser or membership in its owner)")
                }
                let blocked = try control.unterminableSessions(of: sourceName)
                if !blocked.isEmpty {
                    failures.append("sessions of \"\(sourceName)\" this role cannot terminate: " + blocked.joined(separator: ", "))
                }
            }
        } catch {
            failures.append("source server: \(error)")
        }
        do throws(DatabaseError) {
            let control = try ControlSession(target, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
            if let info = try control.database(targetName) {
                if !(info.comment.map(CutoverComment.isCutover) ?? false) {
                    failures.append("target database \"\(targetName)\" already exists on \(target.endpoint) and cutover did not create it")
                }
            }
            if try !control.canCreateDatabases() {
                failures.append("role \"\(target.user)\" may not create databases on \(target.endpoint) (ALTER ROLE \"\(target.user)\" CREATEDB, or use a superuser)")
            }
        } catch {
            failures.append("target server: \(error)")
        }
        return failures
    }

    public func isApplied() throws(DatabaseError) -> Bool {
        let control = try ControlSession(target, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
        return try control.database(target.database)?.comment.map(CutoverComment.isFinishedCopy) ?? false
    }

    public func apply() throws(DatabaseError) -> DatabaseStepReport {
        let clock = ContinuousClock()
        let started = clock.now
        let targetControl = try ControlSession(target, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
        // A copy killed midway may still be creating the target on the server: end that first.
        _ = try targetControl.endOrphanCreation(of: target.database)
        var details: [String: String] = ["method": resolvedMethod.rawValue, "source": source.database, "target": target.database]
        if let existing = try targetControl.database(target.database) {
            guard let comment = existing.comment, CutoverComment.isCutover(comment) else {
                throw .refused(step: description, reason: "target database \"\(target.database)\" already exists on \(target.endpoint) and cutover did not create it")
            }
            if CutoverComment.isFinishedCopy(comment) {
                details["already_applied"] = "true"
                return DatabaseStepReport(summary: "\(target.database) already exists: \(comment)", details: details)
            }
            // An interrupted dump copy: start again from nothing.
            _ = try targetControl.drop(target.database)
            details["dropped_unfinished_copy"] = "true"
        }
        switch resolvedMethod {
        case .automatic, .template:
            try copyByTemplate(targetControl, details: &details)
        case .dump:
            try copyByDump(targetControl)
        }
        if try targetControl.resetReadOnly(target.database) { details["reset_read_only"] = "true" }
        try targetControl.connection.query(
            "COMMENT ON DATABASE \(SQLText.identifier(target.database)) IS \(SQLText.literal(CutoverComment.copy(of: source.database, at: Journal.now())))")
        let elapsed = (clock.now - started).milliseconds
        details["elapsed_ms"] = String(elapsed)
        return DatabaseStepReport(summary: "copied \(source.database) → \(target.database) by \(resolvedMethod.rawValue) in \(elapsed) ms", details: details)
    }

    /// Source offline, its sessions terminated, `CREATE DATABASE … TEMPLATE` sent alone (it cannot run in a
    /// transaction block, 25001), source's ALLOW_CONNECTIONS put back whatever happened.
    private func copyByTemplate(_ control: ControlSession, details: inout [String: String]) throws(DatabaseError) {
        let clock = ContinuousClock()
        guard let info = try control.database(source.database) else {
            throw .databaseMissing(database: source.database, message: "no such database on \(source.endpoint)")
        }
        try control.setAllowConnections(source.database, false)
        let refusedSince = clock.now
        var failure: DatabaseError?
        do throws(DatabaseError) {
            details["terminated_sessions"] = String(try control.terminateSessions(of: source.database))
            try control.connection.query("CREATE DATABASE \(SQLText.identifier(target.database)) TEMPLATE \(SQLText.identifier(source.database))")
        } catch {
            failure = error
        }
        if info.allowsConnections {
            do throws(DatabaseError) {
                try restoreConnections(control)
            } catch {
                // The copy's own failure is the news; a failed restore is added to it, never hidden.
                let restoreFailure = "ALLOW_CONNECTIONS of \"\(source.database)\" could not be restored (run ALTER DATABASE \(SQLText.identifier(source.database)) ALLOW_CONNECTIONS true): \(error)"
                if let failure { throw .refused(step: description, reason: "\(failure); and \(restoreFailure)") }
                throw .refused(step: description, reason: restoreFailure)
            }
        }
        details["source_refused_connections_ms"] = String((clock.now - refusedSince).milliseconds)
        if let failure { throw failure }
    }

    /// Puts ALLOW_CONNECTIONS back on the source, on a fresh session if the first one is gone.
    private func restoreConnections(_ control: ControlSession) throws(DatabaseError) {
        do throws(DatabaseError) {
            try control.setAllowConnections(source.database, true)
        } catch {
            let fresh = try ControlSession(source, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
            try fresh.setAllowConnections(source.database, true)
        }
    }

    /// Creates the target from template0, marks it unfinished, pipes the dump into it; drops it on failure.
    private func copyByDump(_ control: ControlSession) throws(DatabaseError) {
        let sourceControl = try ControlSession(source, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
        guard try sourceControl.database(source.database) != nil else {
            throw .databaseMissing(database: source.database, message: "no such database on \(source.endpoint)")
        }
        let name = SQLText.identifier(target.database)
        // template0: template1 may hold objects of its own that would collide with the restore.
        try control.connection.query("CREATE DATABASE \(name) TEMPLATE template0")
        do throws(DatabaseError) {
            try control.connection.query(
                "COMMENT ON DATABASE \(name) IS \(SQLText.literal(CutoverComment.copyInProgress(of: source.database, since: Journal.now())))")
            try DumpPipe(source: source, target: target).run()
        } catch {
            _ = try? control.drop(target.database)
            throw error
        }
    }
}
