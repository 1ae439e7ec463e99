import CutoverAgent
import CutoverCore
import Dispatch
import Foundation
import XCTest

/// The read-only fence against a real PostgreSQL 15 cluster (one cluster for the whole class).
final class ReadOnlyFenceTests: ClusterTestCase {
    /// Every test leaves `app` read-write, whatever happened.
    override func tearDownWithError() throws {
        guard let cluster else { return }
        let admin = try cluster.connect("postgres")
        try admin.query("ALTER DATABASE app RESET default_transaction_read_only")
        try admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'app' AND pid <> pg_backend_pid()")
    }

    func fence(_ dsn: String? = nil) throws -> ReadOnlyFence {
        try ReadOnlyFence(target: ConnectionString(dsn ?? cluster.dsn()))
    }

    func test_on_waitsForOpenWriter_thenTerminatesIt_andNewWritesFail25006() throws {
        let writer = try cluster.connect()
        try writer.query("BEGIN")
        try writer.query("INSERT INTO items (note) VALUES ('pre-fence-writer')")
        let idle = try cluster.connect()
        let started = ContinuousClock.now

        let report = try fence().on(grace: .seconds(2))

        let waited = ContinuousClock.now - started
        XCTAssertGreaterThanOrEqual(waited, .milliseconds(1900), "the drain must wait the grace period for the open writer")
        XCTAssertGreaterThanOrEqual(report.drainMs, 1900)
        XCTAssertTrue(report.changed)
        XCTAssertNil(report.previousSetting)
        XCTAssertEqual(report.waitedFor.map(\.pid), [writer.backendPID])
        XCTAssertEqual(report.waitedFor.first?.wrote, true)
        XCTAssertEqual(report.finished, [])
        XCTAssertEqual(Set(report.terminated), [writer.backendPID, idle.backendPID])
        XCTAssertTrue(report.verified)
        XCTAssertTrue(report.text.contains("terminated 2 session(s)"), report.text)
        XCTAssertTrue(report.json.contains("\"verified\":true"), report.json)

        // The writer's transaction was rolled back with its session; the idle one is gone too.
        XCTAssertThrowsError(try writer.query("COMMIT"))
        XCTAssertFalse(writer.isAlive)
        XCTAssertThrowsError(try idle.query("SELECT 1"))
        let fresh = try cluster.connect()
        XCTAssertEqual(try fresh.scalar("SELECT count(*) FROM items WHERE note = 'pre-fence-writer'"), "0")
        XCTAssertEqual(try fresh.scalar("SELECT count(*) FROM items WHERE note = 'seed'"), "1", "reads work")
        XCTAssertThrowsError(try fresh.query("INSERT INTO items (note) VALUES ('after-fence')")) {
            XCTAssertEqual(($0 as? DatabaseError)?.sqlstate, "25006", "\($0)")
        }
        XCTAssertEqual(try fence().status().mode, "read-only")
    }

    func test_writerCommittingDuringGrace_keepsItsRow_andIsReportedFinished() throws {
        let writer = try cluster.connect()
        try writer.query("BEGIN")
        try writer.query("INSERT INTO items (note) VALUES ('committed-in-grace')")
        // Commit only once the drain has listed the open writer: between its polls the fence's control
        // session sits idle with the drain's query as its last statement.
        let watcher = try cluster.connect("postgres")
        let drainListed = """
            SELECT count(*) FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND state = 'idle' AND query LIKE '%AND xact_start < $2::timestamptz%'
            """
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let session = writer
        nonisolated(unsafe) let observer = watcher
        nonisolated(unsafe) var committedDuringDrain = false
        DispatchQueue.global().async {
            committedDuringDrain = waitUntil(timeout: 4) { (try? observer.scalar(drainListed)) == "1" }
            _ = try? session.query("COMMIT")
            done.signal()
        }
        let report = try fence().on(grace: .seconds(5))
        done.wait()
        XCTAssertTrue(committedDuringDrain, "the drain never listed the open writer")
        XCTAssertEqual(report.finished, [writer.backendPID])
        XCTAssertLessThan(report.drainMs, 4000, "the drain ends as soon as the writer commits")
        XCTAssertTrue(report.verified)
        XCTAssertEqual(try cluster.connect().scalar("SELECT count(*) FROM items WHERE note = 'committed-in-grace'"), "1")
    }

    func test_off_restoresWrites_andTerminatesNothing() throws {
        _ = try fence().on(grace: .milliseconds(200))
        let openedWhileFenced = try cluster.connect()
        XCTAssertEqual(try openedWhileFenced.scalar("SELECT count(*) FROM items"), "1")

        let report = try fence().off()

        XCTAssertTrue(report.changed)
        XCTAssertTrue(report.verified, report.text)
        XCTAssertEqual(report.terminated, [])
        XCTAssertTrue(openedWhileFenced.isAlive)
        XCTAssertEqual(try openedWhileFenced.scalar("SELECT 1"), "1", "a session opened while fenced survives off")
        let fresh = try cluster.connect()
        try fresh.query("INSERT INTO items (note) VALUES ('after-off')")
        let status = try fence().status()
        XCTAssertEqual(status.mode, "read-write")
        XCTAssertNil(status.setting)
    }

    func test_status_matchesDatabase_inBothModes() throws {
        let writer = try cluster.connect()
        try writer.query("BEGIN")
        try writer.query("INSERT INTO items (note) VALUES ('status-writer')")
        let before = try fence().status()
        XCTAssertEqual(before.mode, "read-write")
        XCTAssertEqual(before.sessions, 1)
        XCTAssertEqual(before.openTransactions, 1)
        XCTAssertEqual(before.writeTransactions, 1)
        XCTAssertTrue(before.seesAllSessions)
        _ = try fence().on(grace: .milliseconds(100))
        let after = try fence().status()
        XCTAssertEqual(after.mode, "read-only")
        XCTAssertEqual(after.setting, "on")
        XCTAssertEqual(after.sessions, 0)
        XCTAssertEqual(after.writeTransactions, 0)
        XCTAssertTrue(after.text.contains("read-only"), after.text)
    }

    func test_onTwice_andOffTwice_areIdempotent() throws {
        let first = try fence().on(grace: .milliseconds(100))
        let second = try fence().on(grace: .milliseconds(100))
        XCTAssertTrue(first.changed)
        XCTAssertFalse(second.changed)
        XCTAssertEqual(second.previousSetting, "on")
        XCTAssertTrue(second.verified)
        XCTAssertTrue(try fence().off().changed)
        let again = try fence().off()
        XCTAssertFalse(again.changed)
        XCTAssertTrue(again.verified)
        XCTAssertEqual(try fence().status().mode, "read-write")
    }

    func test_roleWithoutPrivileges_isRefused_andDatabaseStaysReadWrite() throws {
        let admin = try cluster.connect("postgres")
        try admin.query("DROP ROLE IF EXISTS weak")
        try admin.query("CREATE ROLE weak LOGIN")
        let error = assertThrows("missing-privilege") { _ = try fence(cluster.dsn(user: "weak")).on(grace: .milliseconds(100)) }
        let text = error?.description ?? ""
        XCTAssertTrue(text.contains("pg_signal_backend") && text.contains("pg_read_all_stats") && text.contains("ALTER DATABASE"), text)
        XCTAssertEqual(try fence().status().mode, "read-write")
    }

    func test_ownerWithPredefinedRoles_canFenceWithoutSuperuser() throws {
        let admin = try cluster.connect("postgres")
        try admin.query("DROP DATABASE IF EXISTS shop")
        try admin.query("DROP ROLE IF EXISTS fencer")
        try admin.query("CREATE ROLE fencer LOGIN")
        try admin.query("GRANT pg_signal_backend, pg_read_all_stats TO fencer")
        try admin.query("CREATE DATABASE shop OWNER fencer")
        defer { _ = try? admin.query("DROP DATABASE shop WITH (FORCE)") }
        let shop = try ReadOnlyFence(target: ConnectionString(cluster.dsn(database: "shop", user: "fencer")))
        var superuserSession: PostgresConnection? = try cluster.connect("shop", user: "postgres")
        // A superuser's session cannot be terminated by a non-superuser: refused before any change.
        let error = assertThrows("missing-privilege") { _ = try shop.on(grace: .milliseconds(100)) }
        XCTAssertTrue(error?.description.contains("pid \(superuserSession!.backendPID) (postgres)") ?? false, "\(String(describing: error))")
        XCTAssertEqual(try shop.status().mode, "read-write")
        superuserSession = nil
        let fencerSession = try cluster.connect("shop", user: "fencer")
        let report = try shop.on(grace: .milliseconds(100))
        XCTAssertTrue(report.verified)
        XCTAssertEqual(report.terminated, [fencerSession.backendPID])
        XCTAssertThrowsError(try fencerSession.query("SELECT 1"), "the pre-fence session was terminated")
        XCTAssertTrue(try shop.off().verified)
    }

    func test_roleInDatabaseOverride_isRefused_namingIt() throws {
        let admin = try cluster.connect("postgres")
        try admin.query("DROP ROLE IF EXISTS bypass")
        try admin.query("CREATE ROLE bypass LOGIN")
        try admin.query("ALTER ROLE bypass IN DATABASE app SET default_transaction_read_only = off")
        defer { _ = try? admin.query("DROP ROLE bypass") }
        defer { _ = try? admin.query("ALTER ROLE bypass IN DATABASE app RESET ALL") }
        let error = assertThrows("role-override") { _ = try fence().on(grace: .milliseconds(100)) }
        XCTAssertTrue(error?.description.contains("role bypass in database app") ?? false, "\(String(describing: error))")
        XCTAssertEqual(try fence().status().mode, "read-write")
    }

    func test_preparedTransaction_isRefused_namingItsGid() throws {
        let session = try cluster.connect()
        try session.query("BEGIN")
        try session.query("INSERT INTO items (note) VALUES ('prepared')")
        try session.query("PREPARE TRANSACTION 'cutover-test-gid'")
        defer { _ = try? cluster.connect().query("ROLLBACK PREPARED 'cutover-test-gid'") }
        let error = assertThrows("prepared-transactions") { _ = try fence().on(grace: .milliseconds(100)) }
        XCTAssertTrue(error?.description.contains("cutover-test-gid") ?? false)
        XCTAssertEqual(try fence().status().preparedTransactions, ["cutover-test-gid"])
        XCTAssertEqual(try fence().status().mode, "read-write")
    }

    func test_wrongPort_isUnreachable() throws {
        let port = try PostgresCluster.freePort()
        let dsn = "host=127.0.0.1 port=\(port) dbname=app user=postgres"
        let error = assertThrows("unreachable") { _ = try fence(dsn).status() }
        XCTAssertTrue(error?.description.contains("127.0.0.1:\(port)") ?? false)
    }

    func test_wrongPassword_isAuthenticationFailed() throws {
        let error = assertThrows("auth-failed") { _ = try fence(cluster.dsn(user: "pwuser", extra: "password=wrong")).status() }
        XCTAssertTrue(error?.description.contains("pwuser") ?? false)
        // The right password works, so the failure above really was the password.
        XCTAssertEqual(try fence(cluster.dsn(user: "pwuser", extra: "password=right")).status().mode, "read-write")
    }

    func test_missingDatabase_isNamed() throws {
        _ = assertThrows("no-database") { _ = try fence(cluster.dsn(database: "nosuch")).status() }
        _ = assertThrows("no-database") { _ = try PostgresConnection(ConnectionString(cluster.dsn(database: "nosuch"))) }
    }

    func test_controlDatabaseEqualToTarget_isRefused() throws {
        XCTAssertThrowsError(try ReadOnlyFence(target: ConnectionString(cluster.dsn(database: "postgres"))))
    }
}
