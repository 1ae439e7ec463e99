import Foundation

/// What the agent's role may do on the fenced database, and the refusal when that is not enough.
///
/// Pure: filled from one catalog query, so the decision is testable without a server.
public struct PrivilegeCheck: Sendable, Equatable {
    public var role: String
    public var owner: String
    public var database: String
    public var isSuperuser: Bool
    /// Member of the database owner's role (or the owner): may `ALTER DATABASE`.
    public var isOwnerMember: Bool
    /// Has the privileges of `pg_signal_backend`: may terminate other roles' sessions.
    public var canSignal: Bool
    /// Has the privileges of `pg_read_all_stats`: sees other roles' sessions in `pg_stat_activity`.
    public var readsAllStats: Bool

    /// The refusal to raise, or `nil` when the role has what the operation needs.
    ///
    /// `off` only needs `ALTER DATABASE`; `on` also terminates and must see every session (without
    /// `pg_read_all_stats` the drain query silently sees nothing and would report success).
    public func missing(forFence: Bool) -> DatabaseError? {
        if isSuperuser { return nil }
        var what: [String] = []
        var grants: [String] = []
        if !isOwnerMember {
            what.append("ALTER DATABASE \"\(database)\" (role \"\(role)\" is neither superuser nor a member of the owner \"\(owner)\")")
            grants.append("GRANT \"\(owner)\" TO \"\(role)\"")
        }
        if forFence && !canSignal {
            what.append("pg_signal_backend (to terminate sessions)")
            grants.append("GRANT pg_signal_backend TO \"\(role)\"")
        }
        if forFence && !readsAllStats {
            what.append("pg_read_all_stats (to see every session)")
            grants.append("GRANT pg_read_all_stats TO \"\(role)\"")
        }
        if what.isEmpty { return nil }
        return .missingPrivilege(what: what.joined(separator: "; "), hint: grants.joined(separator: "; "))
    }
}

/// Values as PostgreSQL stores them in `setconfig` (`name=value`).
enum SettingText {
    /// The value part of `name=value`.
    static func value(_ entry: String) -> String {
        guard let eq = entry.firstIndex(of: "=") else { return entry }
        return String(entry[entry.index(after: eq)...])
    }

    /// PostgreSQL's boolean spellings that mean on.
    static func isOn(_ value: String) -> Bool {
        ["on", "true", "yes", "1", "t", "y"].contains(value.lowercased())
    }
}

/// Quoting for the few statements that cannot take parameters (`ALTER DATABASE name …`).
enum SQLText {
    /// A double-quoted identifier.
    static func identifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A single-quoted literal.
    static func literal(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
