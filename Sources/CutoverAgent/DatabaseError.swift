import CutoverCore

/// Everything that can go wrong talking to a database, named the way an operator would say it.
///
/// Each case carries the value at fault (host and port, role, statement) so the one-line message is
/// enough to act on without reading a log.
public enum DatabaseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The connection string itself could not be parsed.
    case invalidConnectionString(message: String)
    /// No server answered at that address (refused, no route, timeout, no such socket).
    case unreachable(endpoint: String, message: String)
    /// The server answered but refused the role's credentials (SQLSTATE 28P01 / 28000).
    case authenticationFailed(role: String, message: String)
    /// The server has no database of that name (SQLSTATE 3D000).
    case databaseMissing(database: String, message: String)
    /// Any other failure while opening a connection.
    case connectionFailed(endpoint: String, message: String)
    /// An established session was closed under us (terminated by an administrator, server restart).
    case connectionLost(message: String)
    /// The agent's role lacks something the operation needs; nothing was changed.
    case missingPrivilege(what: String, hint: String)
    /// Role or role-in-database settings of `default_transaction_read_only` would beat the fence.
    case conflictingRoleSettings(database: String, settings: [String])
    /// Two-phase transactions prepared on the database would commit despite a read-only fence.
    case preparedTransactions(database: String, gids: [String])
    /// Sessions that could not be terminated (for example a superuser's, as a non-superuser).
    case sessionsSurvived(database: String, pids: [Int32], message: String)
    /// The probe did not prove the expected mode; whatever was changed has been undone.
    case notProven(database: String, expected: String, observed: String)
    /// A statement failed with this SQLSTATE.
    case queryFailed(sqlstate: String, message: String)
    /// A database step refused to act because of what it found; nothing was changed.
    case refused(step: String, reason: String)
    /// A client program (pg_dump, pg_restore) exited non-zero or could not be started.
    case toolFailed(tool: String, status: Int32, stderr: String)
    /// A bounded wait ran out.
    case timedOut(what: String, after: Duration)
    /// The database differs from what the runbook pins (schema fingerprint, version query).
    case drift(database: String, what: String, expected: String, observed: String)

    /// The SQLSTATE when the server sent one.
    public var sqlstate: String? {
        if case .queryFailed(let state, _) = self { return state }
        return nil
    }

    /// A short stable code for `ERR <code>: …` answers and scripts.
    public var code: String {
        switch self {
        case .invalidConnectionString: return "bad-dsn"
        case .unreachable: return "unreachable"
        case .authenticationFailed: return "auth-failed"
        case .databaseMissing: return "no-database"
        case .connectionFailed: return "connect-failed"
        case .connectionLost: return "connection-lost"
        case .missingPrivilege: return "missing-privilege"
        case .conflictingRoleSettings: return "role-override"
        case .preparedTransactions: return "prepared-transactions"
        case .sessionsSurvived: return "sessions-survived"
        case .notProven: return "not-proven"
        case .queryFailed: return "query-failed"
        case .refused: return "refused"
        case .toolFailed: return "tool-failed"
        case .timedOut: return "timed-out"
        case .drift: return "drift"
        }
    }

    public var description: String {
        switch self {
        case .invalidConnectionString(let message):
            return "invalid connection string: \(message)"
        case .unreachable(let endpoint, let message):
            return "database server \(endpoint) is unreachable: \(message)"
        case .authenticationFailed(let role, let message):
            return "authentication failed for role \"\(role)\": \(message)"
        case .databaseMissing(let database, let message):
            return "database \"\(database)\" does not exist: \(message)"
        case .connectionFailed(let endpoint, let message):
            return "could not connect to \(endpoint): \(message)"
        case .connectionLost(let message):
            return "the database session was closed: \(message)"
        case .missingPrivilege(let what, let hint):
            return "missing privilege: \(what) (\(hint)); nothing was changed"
        case .conflictingRoleSettings(let database, let settings):
            return "refusing to fence \"\(database)\": role settings of default_transaction_read_only would override it: "
                + settings.joined(separator: ", ") + " (remove them with ALTER ROLE … RESET default_transaction_read_only)"
        case .preparedTransactions(let database, let gids):
            return "refusing to fence \"\(database)\": prepared transactions would commit despite read-only: "
                + gids.joined(separator: ", ") + " (COMMIT PREPARED or ROLLBACK PREPARED them first)"
        case .sessionsSurvived(let database, let pids, let message):
            return "sessions of \"\(database)\" could not be terminated (pids \(pids.map(String.init).joined(separator: ", "))): "
                + "\(message); the fence was undone"
        case .notProven(let database, let expected, let observed):
            return "could not prove \"\(database)\" is \(expected): \(observed)"
        case .queryFailed(let sqlstate, let message):
            return "query failed (SQLSTATE \(sqlstate)): \(message)"
        case .refused(let step, let reason):
            return "\(step) refused: \(reason); nothing was changed"
        case .toolFailed(let tool, let status, let stderr):
            return "\(tool) failed (exit \(status))" + (stderr.isEmpty ? "" : ": \(stderr)")
        case .timedOut(let what, let after):
            return "timed out after \(DurationText.format(after)) \(what)"
        case .drift(let database, let what, let expected, let observed):
            return "database \"\(database)\" has drifted: \(what) is \(observed), the runbook expects \(expected)"
        }
    }
}
