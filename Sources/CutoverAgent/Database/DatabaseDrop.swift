import CutoverCore
import Foundation

/// Drops a database, by default only one that cutover made (its comment says `created by cutover: …`).
///
/// New connections are refused and the database's sessions terminated first (`DROP DATABASE` fails
/// with 55006 while anyone is connected); when the drop fails, connections are allowed again.
/// There is no undo: the data is gone.
public struct DatabaseDrop: DatabaseStep {
    /// Any connection string to the server; its dbname is not used.
    public var server: ConnectionString
    /// The database dropped.
    public var name: String
    /// When true (the default), refuses a database whose comment does not say cutover created it.
    public var onlyIfCreatedByCutover: Bool
    /// Database the control session connects to; it cannot be dropped.
    public var controlDatabase: String
    /// Bound on each connection attempt.
    public var connectTimeout: Duration = .seconds(5)

    /// A drop of `name` on `server`; nothing happens until `apply`.
    public init(server: ConnectionString, name: String, onlyIfCreatedByCutover: Bool = true, controlDatabase: String = "postgres") {
        self.server = server
        self.name = name
        self.onlyIfCreatedByCutover = onlyIfCreatedByCutover
        self.controlDatabase = controlDatabase
    }

    public var description: String {
        "drop database \(name) on \(server.endpoint)" + (onlyIfCreatedByCutover ? " (only if cutover created it)" : "")
    }

    public var undoStep: (any DatabaseStep)? { nil }

    /// A database absent now passes: an earlier step of the same runbook may create it.
    public func preflight() -> [String] {
        if name == controlDatabase { return ["\"\(name)\" is the control database; pass another control database"] }
        do throws(DatabaseError) {
            let control = try ControlSession(server, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
            guard let info = try control.database(name) else { return [] }
            var failures: [String] = []
            if let refusal = refusal(info) { failures.append(refusal) }
            if try !control.mayAlter(name) {
                failures.append("role \"\(server.user)\" may not drop \"\(name)\" (needs superuser or membership in its owner)")
            }
            let blocked = try control.unterminableSessions(of: name)
            if !blocked.isEmpty { failures.append("sessions of \"\(name)\" this role cannot terminate: " + blocked.joined(separator: ", ")) }
            return failures
        } catch {
            return [error.description]
        }
    }

    public func isApplied() throws(DatabaseError) -> Bool {
        try ControlSession(server, controlDatabase: controlDatabase, connectTimeout: connectTimeout).database(name) == nil
    }

    public func apply() throws(DatabaseError) -> DatabaseStepReport {
        if name == controlDatabase {
            throw .refused(step: description, reason: "\"\(name)\" is the control database")
        }
        let control = try ControlSession(server, controlDatabase: controlDatabase, connectTimeout: connectTimeout)
        let orphans = try control.endOrphanCreation(of: name)
        guard let info = try control.database(name) else {
            return DatabaseStepReport(summary: "database \(name) is already absent on \(server.endpoint)", details: ["already_applied": "true"])
        }
        if let refusal = refusal(info) { throw .refused(step: description, reason: refusal) }
        let terminated = try control.drop(name)
        return DatabaseStepReport(
            summary: "dropped database \(name) on \(server.endpoint) (terminated \(terminated) session(s))",
            details: ["database": name, "terminated_sessions": String(terminated), "comment": info.comment ?? "", "ended_creations": String(orphans)])
    }

    /// Why this database may not be dropped, or `nil`.
    private func refusal(_ info: ControlSession.DatabaseInfo) -> String? {
        guard onlyIfCreatedByCutover, !info.createdByCutover else { return nil }
        let comment = info.comment.map { "its comment is \"\($0)\"" } ?? "it has no comment"
        return "cutover did not create \"\(name)\" (\(comment); it would say \"\(CutoverComment.prefix)…\"); only a forced drop (cutover db drop --force) removes it"
    }
}
