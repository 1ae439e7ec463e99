import CutoverCore
import Foundation

/// Makes one PostgreSQL database read-only and back, proving each mode with a fresh session.
///
/// The recipe is the measured one of docs/agent.md, "What `db readonly on` does": `ALTER DATABASE d SET
/// default_transaction_read_only = on`, drain transactions older than the fence up to a grace period,
/// terminate every client session started before the fence (pre-fence sessions stay read-write
/// forever), then prove that a new session's write fails with SQLSTATE 25006. All statements that
/// change `d` run on a control session connected to another database: `ALTER DATABASE` itself fails
/// with 25006 on a session of a read-only database.
public struct ReadOnlyFence: Sendable {
    /// The fenced database's connection string; its `dbname` is the database `d`.
    public let target: ConnectionString
    /// The database the control session connects to (never `d`).
    public let controlDatabase: String
    public var connectTimeout: Duration = .seconds(5)
    /// How often the drain and the termination wait look at `pg_stat_activity`.
    public var pollInterval: Duration = .milliseconds(150)
    /// How long terminated sessions may take to disappear before the fence is given up.
    public var terminateTimeout: Duration = .seconds(5)

    /// - Important: `controlDatabase` must differ from the target's `dbname`.
    public init(target: ConnectionString, controlDatabase: String = "postgres") throws(DatabaseError) {
        guard controlDatabase != target.database else {
            throw .invalidConnectionString(message: "the control database must not be the fenced database \"\(target.database)\"; pick another with --control-db")
        }
        self.target = target
        self.controlDatabase = controlDatabase
    }

    public var database: String { target.database }

    // MARK: on

    /// Fences the database read-only, waiting up to `grace` for transactions older than the fence.
    ///
    /// Idempotent: when the database is already read-only the setting is left alone, but sessions
    /// started before this run are still drained and terminated, so a crashed earlier run is finished.
    /// Refuses (nothing changed) on missing privileges, overriding role settings and prepared
    /// transactions; undoes the setting when anything after it fails.
    public func on(grace: Duration) throws(DatabaseError) -> FenceReport {
        let clock = ContinuousClock()
        let started = clock.now
        let control = try openControl()
        try preflight(control, forFence: true)
        let previous = try databaseSetting(control)
        var report = FenceReport(action: "on", database: database, changed: false, previousSetting: previous)
        report.graceMs = grace.milliseconds
        let alreadyOn = previous.map(SettingText.isOn) ?? false
        if !alreadyOn {
            try control.query("ALTER DATABASE \(SQLText.identifier(database)) SET default_transaction_read_only = on")
            report.changed = true
        }
        do throws(DatabaseError) {
            // Taken after the commit: every backend that starts later reads the new setting.
            guard let fenceTime = try control.scalar("SELECT clock_timestamp()::text") else {
                throw DatabaseError.queryFailed(sqlstate: "XX000", message: "clock_timestamp() returned nothing")
            }
            let drainStart = clock.now
            try drain(control, fenceTime: fenceTime, grace: grace, into: &report)
            report.drainMs = (clock.now - drainStart).milliseconds
            try terminate(control, fenceTime: fenceTime, into: &report)
            try verifyReadOnly(control, into: &report)
        } catch {
            if report.changed { undoFence(control, previous: previous) }
            throw error
        }
        report.elapsedMs = (clock.now - started).milliseconds
        return report
    }

    /// Waits until no client transaction of `d` began before `fenceTime`, or `grace` has passed.
    private func drain(_ control: PostgresConnection, fenceTime: String, grace: Duration, into report: inout FenceReport) throws(DatabaseError) {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        // Each poll is its own autocommit statement: pg_stat_activity is snapshotted per transaction.
        let sql = """
            SELECT pid, coalesce(usename, ''), coalesce(state, ''), backend_xid IS NOT NULL,
                   (extract(epoch FROM clock_timestamp() - xact_start) * 1000)::bigint
              FROM pg_stat_activity
             WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND xact_start < $2::timestamptz
             ORDER BY pid
            """
        var seen: [Int32: SessionInfo] = [:]
        var order: [Int32] = []
        while true {
            let rows = try control.query(sql, [database, fenceTime])
            var open: Set<Int32> = []
            for row in rows {
                guard let pid = row[0].flatMap({ Int32($0) }) else { continue }
                open.insert(pid)
                if seen[pid] == nil {
                    order.append(pid)
                    seen[pid] = SessionInfo(
                        pid: pid, user: row[1] ?? "", state: row[2] ?? "", wrote: row[3] == "t",
                        transactionAgeMs: row[4].flatMap { Int64($0) } ?? 0)
                }
            }
            report.waitedFor = order.compactMap { seen[$0] }
            report.finished = order.filter { !open.contains($0) }
            if open.isEmpty || clock.now >= deadline { return }
            let remaining = deadline - clock.now
            sleep(for: remaining < pollInterval ? remaining : pollInterval)
        }
    }

    /// Terminates every client session of `d` started before `fenceTime` and waits for them to go.
    private func terminate(_ control: PostgresConnection, fenceTime: String, into report: inout FenceReport) throws(DatabaseError) {
        // backend_type 'client backend' leaves out walsenders (they serve replicas and logical copies).
        let sql = """
            SELECT pid FROM pg_stat_activity
             WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND backend_start < $2::timestamptz
             ORDER BY pid
            """
        var refused: [Int32] = []
        var lastMessage = ""
        for row in try control.query(sql, [database, fenceTime]) {
            guard let pidText = row[0], let pid = Int32(pidText) else { continue }
            do throws(DatabaseError) {
                // Without a timeout argument: signal them all, then poll (10 backends: 18 ms, not 1 s).
                if try control.scalar("SELECT pg_terminate_backend($1::int)", [pidText]) == "t" {
                    report.terminated.append(pid)
                }
            } catch {
                // 42501: a superuser's backend, and the agent is not superuser.
                refused.append(pid)
                lastMessage = error.description
            }
        }
        if !refused.isEmpty {
            throw .sessionsSurvived(database: database, pids: refused, message: lastMessage)
        }
        let clock = ContinuousClock()
        let deadline = clock.now + terminateTimeout
        var survivors: [Int32] = []
        while true {
            survivors = try control.query(sql, [database, fenceTime]).compactMap { $0[0].flatMap { Int32($0) } }
            if survivors.isEmpty || clock.now >= deadline { break }
            sleep(for: pollInterval)
        }
        if !survivors.isEmpty {
            throw .sessionsSurvived(
                database: database, pids: survivors,
                message: "still connected \(terminateTimeout.milliseconds) ms after pg_terminate_backend")
        }
    }

    /// Proves read-only from a fresh session with the application's own connection string.
    private func verifyReadOnly(_ control: PostgresConnection, into report: inout FenceReport) throws(DatabaseError) {
        let gids = try preparedTransactions(control)
        if !gids.isEmpty { throw .preparedTransactions(database: database, gids: gids) }
        let probe = try PostgresConnection(target, connectTimeout: connectTimeout)
        try probe.query("BEGIN")
        let readOnly = try probe.scalar("SHOW transaction_read_only") ?? "?"
        guard readOnly == "on" else {
            throw .notProven(database: database, expected: "read-only", observed: "a new session's transaction_read_only is \(readOnly); the fence was undone")
        }
        do throws(DatabaseError) {
            try probe.query("CREATE TABLE public.__cutover_ro_probe()")
            throw DatabaseError.notProven(database: database, expected: "read-only", observed: "a probe CREATE TABLE succeeded; the fence was undone")
        } catch .queryFailed(let state, let message) {
            // The read-only check runs before the privilege check, so any role gets 25006 here.
            guard state == "25006" else {
                throw .notProven(database: database, expected: "read-only", observed: "the probe write failed with SQLSTATE \(state) (\(message)) instead of 25006; the fence was undone")
            }
        }
        _ = try? probe.query("ROLLBACK")
        _ = try probe.query("SELECT 1")
        report.verified = true
        report.proof = "a new session starts read-only and its write fails with SQLSTATE 25006; reads work"
    }

    /// Puts the database setting back as it was before this run (best effort: the caller is already failing).
    private func undoFence(_ control: PostgresConnection, previous: String?) {
        let name = SQLText.identifier(database)
        if let previous {
            _ = try? control.query("ALTER DATABASE \(name) SET default_transaction_read_only = \(SQLText.literal(previous))")
        } else {
            _ = try? control.query("ALTER DATABASE \(name) RESET default_transaction_read_only")
        }
    }

    // MARK: off

    /// Gives the database back read-write and proves a write works; terminates nothing.
    ///
    /// `restoring` is the setting recorded before the fence: `"off"` sets it off explicitly,
    /// anything else removes the database's setting.
    public func off(restoring previous: String? = nil) throws(DatabaseError) -> FenceReport {
        let clock = ContinuousClock()
        let started = clock.now
        let control = try openControl()
        try preflight(control, forFence: false)
        let current = try databaseSetting(control)
        var report = FenceReport(action: "off", database: database, changed: false, previousSetting: current)
        if let current, SettingText.isOn(current) {
            let name = SQLText.identifier(database)
            if previous == "off" {
                try control.query("ALTER DATABASE \(name) SET default_transaction_read_only = off")
            } else {
                try control.query("ALTER DATABASE \(name) RESET default_transaction_read_only")
            }
            report.changed = true
        }
        try verifyReadWrite(into: &report)
        report.elapsedMs = (clock.now - started).milliseconds
        return report
    }

    /// Proves read-write from a fresh session: a table is created in a transaction that is rolled back.
    private func verifyReadWrite(into report: inout FenceReport) throws(DatabaseError) {
        let probe = try PostgresConnection(target, connectTimeout: connectTimeout)
        try probe.query("BEGIN")
        let readOnly = try probe.scalar("SHOW transaction_read_only") ?? "?"
        guard readOnly == "off" else {
            throw .notProven(database: database, expected: "read-write", observed: "a new session's transaction_read_only is still \(readOnly) (a role setting or the server configuration keeps it read-only)")
        }
        var how = "CREATE TABLE public.__cutover_rw_probe()"
        do throws(DatabaseError) {
            try probe.query(how)
        } catch .queryFailed("42501", _) {
            // PostgreSQL 15 grants no CREATE on schema public by default: a temporary table proves it as well.
            _ = try? probe.query("ROLLBACK")
            try probe.query("BEGIN")
            how = "CREATE TEMP TABLE __cutover_rw_probe()"
            try probe.query(how)
        }
        try probe.query("ROLLBACK")
        report.verified = true
        report.proof = "a new session starts read-write and its write (\(how), rolled back) succeeded"
    }

    // MARK: status

    /// Reads the database's mode, sessions and open work as the database reports them now.
    public func status() throws(DatabaseError) -> DatabaseStatus {
        let control = try openControl()
        _ = try databaseOwner(control)
        let setting = try databaseSetting(control)
        let counts = try control.query(
            """
            SELECT count(*), count(xact_start), count(backend_xid) FROM pg_stat_activity
             WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
            """, [database]
        ).first ?? []
        let seesAll = try control.scalar(
            "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') FROM pg_roles WHERE rolname = current_user")
        func int(_ i: Int) -> Int { i < counts.count ? counts[i].flatMap { Int($0) } ?? 0 : 0 }
        return DatabaseStatus(
            database: database,
            mode: setting.map(SettingText.isOn) == true ? "read-only" : "read-write",
            setting: setting, sessions: int(0), openTransactions: int(1), writeTransactions: int(2),
            preparedTransactions: try preparedTransactions(control), roleSettings: try roleSettings(control),
            seesAllSessions: seesAll == "t")
    }

    // MARK: shared queries

    /// Opens the control session (same connection string, other database) with bounded waits.
    private func openControl() throws(DatabaseError) -> PostgresConnection {
        let control = try PostgresConnection(target.setting("dbname", to: controlDatabase), connectTimeout: connectTimeout)
        // A fence must never hang behind a lock; and the control session must never be read-only itself.
        try control.query("SET lock_timeout = '10s'")
        try control.query("SET statement_timeout = '60s'")
        try control.query("SET default_transaction_read_only = off")
        return control
    }

    /// The owner of `d`; names a missing database.
    private func databaseOwner(_ control: PostgresConnection) throws(DatabaseError) -> String {
        guard let owner = try control.scalar("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", [database]) else {
            throw .databaseMissing(database: database, message: "no such database on \(target.endpoint)")
        }
        return owner
    }

    /// Checks, changing nothing, what `on` (`forFence`) or `off` would refuse before acting:
    /// missing privileges and, for `on`, superuser sessions, overriding role settings and prepared
    /// transactions. For `cutover upgrade plan`.
    public func check(forFence: Bool) throws(DatabaseError) {
        let control = try openControl()
        try preflight(control, forFence: forFence)
    }

    /// Refuses, before anything changes, what would make the fence fail or lie.
    private func preflight(_ control: PostgresConnection, forFence: Bool) throws(DatabaseError) {
        let owner = try databaseOwner(control)
        let row = try control.query(
            """
            SELECT current_user, rolsuper, pg_has_role(current_user, $1, 'MEMBER'),
                   pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
                   pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
              FROM pg_roles WHERE rolname = current_user
            """, [owner]
        ).first ?? []
        let me = row.first.flatMap { $0 } ?? target.user
        let flags = row.dropFirst().map { $0 == "t" }
        let privileges = PrivilegeCheck(
            role: me, owner: owner, database: database, isSuperuser: flags.first ?? false,
            isOwnerMember: flags.count > 1 && flags[1], canSignal: flags.count > 2 && flags[2],
            readsAllStats: flags.count > 3 && flags[3])
        if let error = privileges.missing(forFence: forFence) { throw error }
        guard forFence else { return }
        if !privileges.isSuperuser {
            // Only a superuser may terminate a superuser's session: refuse now rather than half-way.
            let pids = try control.query(
                """
                SELECT a.pid, a.usename FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
                 WHERE a.datname = $1 AND a.backend_type = 'client backend' AND r.rolsuper ORDER BY a.pid
                """, [database]
            ).map { "pid \($0[0] ?? "?") (\($0[1] ?? "?"))" }
            if !pids.isEmpty {
                throw .missingPrivilege(
                    what: "terminate superuser sessions of \"\(database)\": " + pids.joined(separator: ", "),
                    hint: "close them, or run the agent as a superuser")
            }
        }
        let overrides = try roleSettings(control)
        if !overrides.isEmpty { throw .conflictingRoleSettings(database: database, settings: overrides) }
        let gids = try preparedTransactions(control)
        if !gids.isEmpty { throw .preparedTransactions(database: database, gids: gids) }
    }

    /// The database-wide `default_transaction_read_only` value of `d`, if it has one.
    private func databaseSetting(_ control: PostgresConnection) throws(DatabaseError) -> String? {
        let value = try control.scalar(
            """
            SELECT c FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
             WHERE s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1)
               AND c LIKE 'default\\_transaction\\_read\\_only=%'
            """, [database])
        return value.map(SettingText.value)
    }

    /// Role and role-in-database settings of `default_transaction_read_only` that apply to `d`.
    private func roleSettings(_ control: PostgresConnection) throws(DatabaseError) -> [String] {
        try control.query(
            """
            SELECT s.setrole::regrole::text, CASE WHEN s.setdatabase = 0 THEN '' ELSE $1 END, c
              FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
             WHERE c LIKE 'default\\_transaction\\_read\\_only=%' AND s.setrole <> 0
               AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = $1))
             ORDER BY 1, 2
            """, [database]
        ).map { row in
            let role = row[0] ?? "?"
            let scope = (row[1] ?? "").isEmpty ? "role \(role)" : "role \(role) in database \(row[1] ?? "")"
            return "\(scope): \(row[2] ?? "")"
        }
    }

    /// Global ids of the transactions prepared on `d`.
    private func preparedTransactions(_ control: PostgresConnection) throws(DatabaseError) -> [String] {
        try control.query("SELECT gid FROM pg_prepared_xacts WHERE database = $1 ORDER BY prepared", [database]).compactMap { $0[0] }
    }

    private func sleep(for duration: Duration) {
        let micros = max(0, duration.milliseconds) * 1000
        if micros > 0 { usleep(useconds_t(micros)) }
    }
}
