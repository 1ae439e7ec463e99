import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A streaming standby of a `PostgresCluster`, made with `pg_basebackup -R -X stream`, on its own port.
///
/// Opens replication to 127.0.0.1 in the primary's pg_hba.conf first (the fixture's `all` does not
/// cover the `replication` pseudo-database). `stop()` always removes the directory. Started with the
/// primary fixture's `max_prepared_transactions`, which a hot standby may not go below.
final class StandbyCluster: @unchecked Sendable {
    let root: String
    let port: Int
    private var running = false

    /// `port`: the standby's port when the caller must know it beforehand (a free one otherwise).
    init(of primary: PostgresCluster, port fixedPort: Int? = nil) throws {
        var template = Array((NSTemporaryDirectory() + "cutover-standby-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError("mkdtemp failed") }
        root = String(cString: made)
        port = try fixedPort ?? PostgresCluster.freePort()
        do {
            let hba = "\(primary.root)/db/pg_hba.conf"
            let rules = try String(contentsOfFile: hba, encoding: .utf8)
            if !rules.contains("host replication") {
                try ("host replication all 127.0.0.1/32 trust\n" + rules).write(toFile: hba, atomically: false, encoding: .utf8)
                try primary.connect("postgres").query("SELECT pg_reload_conf()")
            }
            try PostgresCluster.run("/bin/chown", ["postgres:postgres", root])
            try PostgresCluster.run("/bin/chmod", ["700", root])
            try PostgresCluster.asPostgres("\(PostgresCluster.bin)/pg_basebackup", [
                "-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-D", "\(root)/db", "-R", "-X", "stream", "-c", "fast",
            ])
            try PostgresCluster.asPostgres("\(PostgresCluster.bin)/pg_ctl", [
                "-D", "\(root)/db", "-l", "\(root)/db.log", "-w", "-t", "30", "-o",
                "-p \(port) -k \(root) -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_prepared_transactions=5",
                "start",
            ])
            running = true
        } catch {
            // A hot standby refuses settings below the primary's; the server log says which.
            let log = (try? String(contentsOfFile: "\(root)/db.log", encoding: .utf8)) ?? "(no log)"
            stop()
            throw FixtureError("\(error)\nstandby log:\n\(log.suffix(2000))")
        }
    }

    func stop() {
        if running {
            try? PostgresCluster.asPostgres("\(PostgresCluster.bin)/pg_ctl", ["-D", "\(root)/db", "-m", "fast", "-w", "stop"])
            running = false
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    func dsn(database: String = "app") -> String {
        "host=127.0.0.1 port=\(port) dbname=\(database) user=postgres"
    }
}
