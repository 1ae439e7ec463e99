import CutoverCore
import Foundation

/// A streaming standby becomes a primary once it has replayed everything the primary wrote.
///
/// With a primary given, its `pg_current_wal_lsn()` is read first (normally just after the fence, so
/// nothing is written after it) and the standby's `pg_last_wal_replay_lsn()` is polled until it has
/// reached it, bounded by `catchUpTimeout`; then `pg_promote(true, 60)`. The promoted server inherits
/// the primary's `ALTER DATABASE … SET default_transaction_read_only` (it lives in WAL), so every
/// database's own setting of it is reset and a new session on the standby's database must start
/// read-write. A promoted standby cannot become a standby again: there is no undo.
public struct StandbyPromotion: DatabaseStep {
    /// The standby (its dbname is the database checked read-write afterwards).
    public var standby: ConnectionString
    /// The primary it follows, to wait for; `nil` promotes without waiting.
    public var primary: ConnectionString?
    /// How long the standby may take to replay up to the primary's position.
    public var catchUpTimeout: Duration
    /// Bound on each connection attempt.
    public var connectTimeout: Duration = .seconds(5)
    private let pollInterval: Duration = .milliseconds(20)

    /// A promotion of `standby` after it caught up with `primary`; nothing happens until `apply`.
    public init(standby: ConnectionString, primary: ConnectionString?, catchUpTimeout: Duration = .seconds(30)) {
        self.standby = standby
        self.primary = primary
        self.catchUpTimeout = catchUpTimeout
    }

    public var description: String {
        let wait = primary.map { " after it replayed up to \($0.endpoint)'s current WAL position (at most \(DurationText.format(catchUpTimeout)))" } ?? ""
        return "promote standby \(standby.endpoint)\(wait)"
    }

    public var undoStep: (any DatabaseStep)? { nil }

    public func preflight() -> [String] {
        var failures: [String] = []
        do throws(DatabaseError) {
            if try open(standby).scalar("SELECT pg_is_in_recovery()") != "t" {
                failures.append("\(standby.endpoint) is not a standby (pg_is_in_recovery() is false)")
            }
        } catch {
            failures.append("standby: \(error)")
        }
        if let primary {
            do throws(DatabaseError) {
                _ = try open(primary).scalar("SELECT pg_current_wal_lsn()")
            } catch {
                failures.append("primary: \(error)")
            }
        }
        return failures
    }

    public func isApplied() throws(DatabaseError) -> Bool {
        try open(standby).scalar("SELECT NOT pg_is_in_recovery()") == "t"
    }

    public func apply() throws(DatabaseError) -> DatabaseStepReport {
        let clock = ContinuousClock()
        let started = clock.now
        var details: [String: String] = ["standby": standby.endpoint]
        let session = try open(standby)
        if try session.scalar("SELECT pg_is_in_recovery()") == "t" {
            if let primary {
                try catchUp(session, primary: primary, details: &details)
            }
            let promoted = try session.scalar("SELECT pg_promote(true, 60)")
            guard promoted == "t" else {
                throw .notProven(database: standby.database, expected: "promoted", observed: "pg_promote(true, 60) returned \(promoted ?? "NULL") (not promoted within 60 s)")
            }
            details["promoted"] = "true"
        } else {
            details["already_primary"] = "true"
        }
        // A fresh session: the one above began its life in recovery.
        let after = try open(standby)
        let flagged = try after.query(
            """
            SELECT d.datname FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
             CROSS JOIN unnest(s.setconfig) c
             WHERE s.setrole = 0 AND c LIKE 'default\\_transaction\\_read\\_only=%' ORDER BY 1
            """
        ).compactMap { $0[0] }
        for name in flagged {
            try after.query("ALTER DATABASE \(SQLText.identifier(name)) RESET default_transaction_read_only")
        }
        details["reset_read_only"] = flagged.joined(separator: ",")
        // Proof from a new session with the standby's own connection string.
        let probe = try PostgresConnection(standby, connectTimeout: connectTimeout)
        let readOnly = try probe.scalar("SHOW transaction_read_only")
        guard readOnly == "off" else {
            throw .notProven(database: standby.database, expected: "read-write", observed: "a new session's transaction_read_only is \(readOnly ?? "?") after promotion (a role setting or ALTER SYSTEM keeps it read-only)")
        }
        let elapsed = (clock.now - started).milliseconds
        details["elapsed_ms"] = String(elapsed)
        let reset = flagged.isEmpty ? "" : "; reset default_transaction_read_only of \(flagged.joined(separator: ", "))"
        return DatabaseStepReport(summary: "promoted \(standby.endpoint) to primary in \(elapsed) ms\(reset)", details: details)
    }

    /// Polls the standby until it has replayed up to the primary's current WAL position.
    private func catchUp(_ session: PostgresConnection, primary: ConnectionString, details: inout [String: String]) throws(DatabaseError) {
        let clock = ContinuousClock()
        let started = clock.now
        guard let target = try open(primary).scalar("SELECT pg_current_wal_lsn()") else {
            throw .notProven(database: primary.database, expected: "a WAL position", observed: "pg_current_wal_lsn() returned NULL")
        }
        details["primary_lsn"] = target
        while true {
            let row = try session.query("SELECT pg_last_wal_replay_lsn()::text, coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", [target]).first
            let replayed = row?[0].flatMap { $0 } ?? "none"
            if row?[1] == "t" {
                details["replayed_lsn"] = replayed
                details["catch_up_ms"] = String((clock.now - started).milliseconds)
                return
            }
            if clock.now - started >= catchUpTimeout {
                throw .timedOut(what: "waiting for standby \(standby.endpoint) to replay up to \(target) (replayed: \(replayed)); it was not promoted", after: catchUpTimeout)
            }
            ControlSession.sleep(pollInterval)
        }
    }

    /// A session that is never read-only itself (the promoted server's databases may still be flagged).
    private func open(_ cs: ConnectionString) throws(DatabaseError) -> PostgresConnection {
        let connection = try PostgresConnection(cs, connectTimeout: connectTimeout)
        try connection.query("SET default_transaction_read_only = off")
        return connection
    }
}
