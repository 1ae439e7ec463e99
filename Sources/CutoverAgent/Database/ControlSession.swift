import CutoverCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A session on a server's control database (never the one acted upon), with what the steps share:
/// reading a database's catalog row, refusing new connections, terminating sessions, dropping.
///
/// Why another database: `ALTER DATABASE d RENAME`/`DROP` fail from a session on `d`, a session on `d`
/// would itself block `CREATE DATABASE … TEMPLATE d`, and a read-only `d` fails `ALTER DATABASE` (25006).
final class ControlSession {
    /// One row of `pg_database` as the steps need it.
    struct DatabaseInfo {
        var oid: String
        var allowsConnections: Bool
        /// `COMMENT ON DATABASE`, if any.
        var comment: String?
        /// True when `comment` says cutover made it (a finished or an interrupted copy).
        var createdByCutover: Bool { comment.map(CutoverComment.isCutover) ?? false }
    }

    let connection: PostgresConnection
    let server: ConnectionString
    private let pollInterval: Duration = .milliseconds(20)

    /// Opens a session on `server` with `dbname` replaced by `controlDatabase`; never read-only, never
    /// waiting on a lock for more than 10 s, but no statement timeout (a template copy of a large
    /// database is one long statement).
    init(_ server: ConnectionString, controlDatabase: String, connectTimeout: Duration = .seconds(5)) throws(DatabaseError) {
        self.server = server
        connection = try PostgresConnection(server.setting("dbname", to: controlDatabase), connectTimeout: connectTimeout)
        try connection.query("SET lock_timeout = '10s'")
        try connection.query("SET default_transaction_read_only = off")
    }

    /// The catalog row of `name`, or `nil` when there is no such database.
    func database(_ name: String) throws(DatabaseError) -> DatabaseInfo? {
        guard let row = try connection.query(
            "SELECT oid::text, datallowconn, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", [name]
        ).first else { return nil }
        return DatabaseInfo(oid: row[0] ?? "", allowsConnections: row[1] == "t", comment: row[2])
    }

    /// The current name of the database with this oid (renames keep the oid).
    func name(ofOID oid: String) throws(DatabaseError) -> String? {
        try connection.scalar("SELECT datname FROM pg_database WHERE oid = $1::oid", [oid])
    }

    /// `ALTER DATABASE name ALLOW_CONNECTIONS value` (it also stops superusers; CONNECTION LIMIT 0 would not).
    func setAllowConnections(_ name: String, _ value: Bool) throws(DatabaseError) {
        try connection.query("ALTER DATABASE \(SQLText.identifier(name)) ALLOW_CONNECTIONS \(value)")
    }

    /// Terminates every other session on `name` and waits until none is left; returns how many went.
    ///
    /// Signals them all first, then polls (`pg_terminate_backend(pid, timeout)` waits 100 ms per backend).
    func terminateSessions(of name: String, timeout: Duration = .seconds(10)) throws(DatabaseError) -> Int {
        let list = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY pid"
        var terminated = 0
        var refused: [Int32] = []
        var lastMessage = ""
        for row in try connection.query(list, [name]) {
            guard let pidText = row[0], let pid = Int32(pidText) else { continue }
            do throws(DatabaseError) {
                if try connection.scalar("SELECT pg_terminate_backend($1::int)", [pidText]) == "t" { terminated += 1 }
            } catch {
                // 42501: a superuser's session, and this role is not superuser.
                refused.append(pid)
                lastMessage = error.description
            }
        }
        if !refused.isEmpty { throw .sessionsSurvived(database: name, pids: refused, message: lastMessage) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            let left = try connection.query(list, [name]).compactMap { $0[0].flatMap { Int32($0) } }
            if left.isEmpty { return terminated }
            if clock.now >= deadline {
                throw .sessionsSurvived(database: name, pids: left, message: "still connected \(timeout.milliseconds) ms after pg_terminate_backend")
            }
            Self.sleep(pollInterval)
        }
    }

    /// Ends any `CREATE DATABASE` of `name` still running for a runner that died: the server finishes
    /// a statement whose client is gone, so without this a copy killed midway would create its target
    /// after the rollback that dropped nothing. Terminated, the creation rolls back. Returns how many.
    func endOrphanCreation(of name: String, timeout: Duration = .seconds(10)) throws(DatabaseError) -> Int {
        let list = """
            SELECT pid FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND state = 'active' AND query ILIKE 'create database %'
               AND position(lower($1) IN lower(query)) > 0
            """
        let pids = try connection.query(list, [name]).compactMap { $0[0] }
        for pid in pids { _ = try? connection.scalar("SELECT pg_terminate_backend($1::int)", [pid]) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while try !connection.query(list, [name]).isEmpty {
            if clock.now >= deadline {
                throw .sessionsSurvived(database: name, pids: pids.compactMap { Int32($0) }, message: "CREATE DATABASE still running \(timeout.milliseconds) ms after pg_terminate_backend")
            }
            Self.sleep(pollInterval)
        }
        return pids.count
    }

    /// Whether this role may create databases: superuser or CREATEDB.
    func canCreateDatabases() throws(DatabaseError) -> Bool {
        try connection.scalar("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user") == "t"
    }

    /// Whether this role may drop or rename `name`: superuser or a member of its owner.
    func mayAlter(_ name: String) throws(DatabaseError) -> Bool {
        try connection.scalar(
            """
            SELECT r.rolsuper OR pg_has_role(current_user, d.datdba, 'MEMBER')
              FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = $1
            """, [name]) == "t"
    }

    /// Whether this role may rename `name`: superuser, or a member of its owner with CREATEDB.
    func mayRename(_ name: String) throws(DatabaseError) -> Bool {
        try connection.scalar(
            """
            SELECT r.rolsuper OR (r.rolcreatedb AND pg_has_role(current_user, d.datdba, 'MEMBER'))
              FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = $1
            """, [name]) == "t"
    }

    /// What would stop this role from terminating every session of `name`: superusers' sessions when it is
    /// not one, other roles' sessions without `pg_signal_backend`. Empty when nothing would.
    func unterminableSessions(of name: String) throws(DatabaseError) -> [String] {
        try connection.query(
            """
            SELECT a.pid, a.usename FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid, pg_roles me
             WHERE me.rolname = current_user AND NOT me.rolsuper AND a.datname = $1 AND a.pid <> pg_backend_pid()
               AND (r.rolsuper OR (NOT pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
                                   AND NOT pg_has_role(current_user, a.usesysid, 'MEMBER')))
             ORDER BY a.pid
            """, [name]
        ).map { "pid \($0[0] ?? "?") (\($0[1] ?? "?"))" }
    }

    /// Refuses connections to `name`, terminates its sessions and drops it; connections are allowed
    /// again when the drop fails. Returns the number of sessions terminated.
    func drop(_ name: String) throws(DatabaseError) -> Int {
        guard let info = try database(name) else { return 0 }
        try setAllowConnections(name, false)
        do throws(DatabaseError) {
            let terminated = try terminateSessions(of: name)
            try connection.query("DROP DATABASE \(SQLText.identifier(name))")
            return terminated
        } catch {
            if info.allowsConnections { _ = try? setAllowConnections(name, true) }
            throw error
        }
    }

    /// The database-wide `default_transaction_read_only` value of `name`, if it has one.
    func readOnlySetting(_ name: String) throws(DatabaseError) -> String? {
        try connection.scalar(
            """
            SELECT c FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
             WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1)
               AND c LIKE 'default\\_transaction\\_read\\_only=%'
            """, [name])
    }

    /// Removes `name`'s own `default_transaction_read_only` setting when it has one; true when it did.
    func resetReadOnly(_ name: String) throws(DatabaseError) -> Bool {
        guard try readOnlySetting(name) != nil else { return false }
        try connection.query("ALTER DATABASE \(SQLText.identifier(name)) RESET default_transaction_read_only")
        return true
    }

    static func sleep(_ duration: Duration) {
        let micros = max(0, duration.milliseconds) * 1000
        if micros > 0 { usleep(useconds_t(micros)) }
    }
}
