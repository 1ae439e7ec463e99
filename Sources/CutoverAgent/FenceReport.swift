import CutoverCore
import Foundation

/// A client session of the fenced database, as `pg_stat_activity` showed it when the drain began.
public struct SessionInfo: Codable, Sendable, Equatable {
    public var pid: Int32
    public var user: String
    /// `active`, `idle in transaction`, …
    public var state: String
    /// True when the transaction had already written (`backend_xid` set).
    public var wrote: Bool
    /// Age of the open transaction when first seen.
    public var transactionAgeMs: Int64
}

/// What one `db readonly on|off` run did, for the operator (text) and for scripts (JSON).
public struct FenceReport: Codable, Sendable, Equatable {
    /// `on` or `off`.
    public var action: String
    public var database: String
    /// True when this run changed the database setting; false when it was already in that mode.
    public var changed: Bool
    /// The database's own `default_transaction_read_only` setting before the run (`nil`: none).
    public var previousSetting: String?
    /// Pre-fence transactions the drain waited for.
    public var waitedFor: [SessionInfo] = []
    /// Of those, the ones that ended by themselves during the grace period.
    public var finished: [Int32] = []
    /// Sessions started before the fence that were terminated (their open work rolled back).
    public var terminated: [Int32] = []
    public var graceMs: Int64 = 0
    /// Time spent waiting for pre-fence transactions.
    public var drainMs: Int64 = 0
    public var elapsedMs: Int64 = 0
    /// True when a fresh session proved the mode.
    public var verified: Bool = false
    /// What the proof observed, in words.
    public var proof: String = ""

    /// The mode the database is in after the run.
    public var mode: String { action == "on" ? "read-only" : "read-write" }

    /// A few lines for a person.
    public var text: String {
        var lines: [String] = []
        let setting = previousSetting.map { "default_transaction_read_only=\($0)" } ?? "none"
        lines.append("database \"\(database)\": \(mode) (\(changed ? "changed now" : "already \(mode), setting unchanged"); previous database setting: \(setting))")
        if action == "on" {
            if waitedFor.isEmpty {
                lines.append("  no transaction older than the fence was open: nothing to wait for")
            } else {
                let who = waitedFor.map { "pid \($0.pid) (\($0.user), \($0.state)\($0.wrote ? ", had written" : ""))" }
                lines.append("  waited \(drainMs) ms (grace \(graceMs) ms) for \(waitedFor.count) transaction(s) older than the fence: \(who.joined(separator: ", "))")
                lines.append("  finished by themselves: \(finished.isEmpty ? "none" : finished.map(String.init).joined(separator: ", "))")
            }
            lines.append("  terminated \(terminated.count) session(s) started before the fence\(terminated.isEmpty ? "" : ": pids " + terminated.map(String.init).joined(separator: ", "))")
        } else {
            lines.append("  terminated no session")
        }
        lines.append("  \(verified ? "verified" : "NOT verified"): \(proof)")
        lines.append("  elapsed \(elapsedMs) ms")
        return lines.joined(separator: "\n")
    }

    /// One JSON object in the shared style (snake_case keys, sorted).
    public var json: String { JSONCoding.line(self) }
}

/// What the database says about its read-only mode right now (not what the agent remembers).
public struct DatabaseStatus: Codable, Sendable, Equatable {
    public var database: String
    /// `read-only` or `read-write`, from the database's own setting.
    public var mode: String
    /// The database's `default_transaction_read_only` setting (`nil`: none).
    public var setting: String?
    /// Client sessions connected to the database (the agent's own excluded).
    public var sessions: Int
    /// Sessions with a transaction open.
    public var openTransactions: Int
    /// Open transactions that have written (`backend_xid` set).
    public var writeTransactions: Int
    /// Prepared (two-phase) transactions waiting on the database.
    public var preparedTransactions: [String]
    /// Role or role-in-database settings of `default_transaction_read_only` that beat the database's.
    public var roleSettings: [String]
    /// False when the agent's role cannot see other roles' sessions (no `pg_read_all_stats`).
    public var seesAllSessions: Bool

    public var text: String {
        var lines = ["database \"\(database)\": \(mode) (database setting: \(setting.map { "default_transaction_read_only=\($0)" } ?? "none"))"]
        lines.append("  \(sessions) client session(s), \(openTransactions) open transaction(s), \(writeTransactions) of them writing")
        lines.append("  prepared transactions: \(preparedTransactions.isEmpty ? "none" : preparedTransactions.joined(separator: ", "))")
        if !roleSettings.isEmpty { lines.append("  role settings that override the database's: \(roleSettings.joined(separator: ", "))") }
        if !seesAllSessions { lines.append("  warning: the agent's role lacks pg_read_all_stats; other roles' sessions may be missing from these counts") }
        return lines.joined(separator: "\n")
    }

    public var json: String { JSONCoding.line(self) }
}
