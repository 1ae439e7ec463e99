import CutoverAgent
import CutoverCore
import Foundation
import XCTest

/// Steps that need a second server: a dump copy to another cluster, and promotion of a real streaming standby.
final class ReplicaAndDumpTests: XCTestCase {
    private var clusters: [PostgresCluster] = []
    private var standbys: [StandbyCluster] = []

    override func tearDown() {
        standbys.forEach { $0.stop() }
        clusters.forEach { $0.stop() }
        super.tearDown()
    }

    func startCluster() throws -> PostgresCluster {
        let cluster = try PostgresCluster()
        clusters.append(cluster)
        return cluster
    }

    func contents(_ db: PostgresConnection) throws -> String {
        let rows = try db.query("SELECT count(*), sum(id), string_agg(note, ',' ORDER BY id) FROM items").first ?? []
        let sequence = try db.query("SELECT last_value, is_called FROM items_id_seq").first ?? []
        return (rows + sequence).map { $0 ?? "NULL" }.joined(separator: "|")
    }

    func test_dumpCopy_toAnotherServer_copiesDataSequencesAndSchema_fromAReadOnlySource() throws {
        let source = try startCluster()
        let target = try startCluster()
        let app = try source.connect()
        try app.query("INSERT INTO items (note) SELECT 'row ' || g FROM generate_series(1, 50) g")
        try app.query("DELETE FROM items WHERE id % 7 = 0")
        try app.query("CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql AS 'SELECT 2 * x'")
        // Fenced, as it would be during a cutover: `pg_dump -C` would carry this into the restore and fail.
        try source.connect("postgres").query("ALTER DATABASE app SET default_transaction_read_only = on")
        let copy = DatabaseCopy(
            source: try ConnectionString(source.dsn()), target: try ConnectionString(target.dsn(database: "app_v2")))
        XCTAssertEqual(copy.resolvedMethod, .dump)
        XCTAssertEqual(copy.preflight(), [])

        let report = try copy.apply()

        XCTAssertEqual(report.details["method"], "dump", report.text)
        let copied = try target.connect("app_v2")
        let original = try source.connect()
        XCTAssertEqual(try contents(copied), try contents(original))
        XCTAssertEqual(try copied.scalar("SELECT twice(21)"), "42")
        XCTAssertEqual(try copied.scalar("SHOW transaction_read_only"), "off")
        XCTAssertEqual(try copied.scalar("INSERT INTO items (note) VALUES ('v2') RETURNING id"), "52", "the sequence continues")
        XCTAssertEqual(
            try SchemaCheck.fingerprint(try ConnectionString(target.dsn(database: "app_v2"))),
            try SchemaCheck.fingerprint(try ConnectionString(source.dsn())))
        XCTAssertTrue(try copy.isApplied())
        XCTAssertTrue(try target.connect("postgres").scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'app_v2'")?
            .hasPrefix("created by cutover: copy of app at ") ?? false)
        _ = try XCTUnwrap(copy.undoStep).apply()
        XCTAssertEqual(try target.connect("postgres").scalar("SELECT count(*) FROM pg_database WHERE datname = 'app_v2'"), "0")
    }

    func test_failedDumpCopy_namesTheToolAndDropsWhatItCreated() throws {
        let source = try startCluster()
        let target = try startCluster()
        // A grant to a role that exists only on the source server: pg_restore --exit-on-error stops there.
        try source.connect().query("CREATE TABLE ok (id int); CREATE ROLE only_here; GRANT SELECT ON ok TO only_here")
        let copy = DatabaseCopy(
            source: try ConnectionString(source.dsn()), target: try ConnectionString(target.dsn(database: "app_v2")))

        XCTAssertThrowsError(try copy.apply()) { error in
            let error = error as? DatabaseError
            XCTAssertEqual(error?.code, "tool-failed", "\(String(describing: error))")
            XCTAssertTrue(error?.description.hasPrefix("pg_restore failed (exit 1): ") ?? false, "\(String(describing: error))")
            XCTAssertTrue(error?.description.contains("only_here") ?? false, "the stderr tail names the cause: \(String(describing: error))")
        }
        XCTAssertEqual(try target.connect("postgres").scalar("SELECT count(*) FROM pg_database WHERE datname = 'app_v2'"), "0")
        XCTAssertFalse(try copy.isApplied())
    }

    func test_promote_ofARealStandby_afterAWriteOnTheFencedPrimary_hasTheRow_andTakesWrites() throws {
        let primary = try startCluster()
        let standby = try StandbyCluster(of: primary)
        standbys.append(standby)
        let standbyDSN = try ConnectionString(standby.dsn())
        try primary.connect().query("INSERT INTO items (note) VALUES ('last write before the fence')")
        try primary.connect("postgres").query("ALTER DATABASE app SET default_transaction_read_only = on")
        let promotion = StandbyPromotion(standby: standbyDSN, primary: try ConnectionString(primary.dsn()), catchUpTimeout: .seconds(10))
        XCTAssertEqual(promotion.preflight(), [])
        XCTAssertFalse(try promotion.isApplied())
        XCTAssertNil(promotion.undoStep)

        let report = try promotion.apply()

        XCTAssertEqual(report.details["promoted"], "true", report.text)
        XCTAssertNotNil(report.details["primary_lsn"])
        XCTAssertEqual(report.details["reset_read_only"], "app", report.text)
        XCTAssertTrue(try promotion.isApplied())
        let promoted = try PostgresConnection(standbyDSN)
        XCTAssertEqual(try promoted.scalar("SELECT count(*) FROM items WHERE note = 'last write before the fence'"), "1")
        XCTAssertEqual(try promoted.scalar("SHOW transaction_read_only"), "off")
        // Sequences are WAL-logged 32 values ahead, so the promoted server's next id skips some: never a reuse.
        let id = try XCTUnwrap(try promoted.scalar("INSERT INTO items (note) VALUES ('first write on the new primary') RETURNING id").flatMap(Int.init))
        XCTAssertGreaterThan(id, 2)
        XCTAssertTrue(promotion.preflight().first?.contains("is not a standby") ?? false)
        XCTAssertEqual(try promotion.apply().details["already_primary"], "true")
    }

    func test_promote_timesOutWhenTheStandbyCannotCatchUp_andLeavesItAStandby() throws {
        let primary = try startCluster()
        let standby = try StandbyCluster(of: primary)
        standbys.append(standby)
        let standbyDSN = try ConnectionString(standby.dsn())
        // Replay paused: the standby receives WAL but never reaches the primary's position.
        try PostgresConnection(standbyDSN).query("SELECT pg_wal_replay_pause()")
        try primary.connect().query("INSERT INTO items (note) VALUES ('not replayed')")
        let promotion = StandbyPromotion(standby: standbyDSN, primary: try ConnectionString(primary.dsn()), catchUpTimeout: .milliseconds(300))

        XCTAssertThrowsError(try promotion.apply()) { error in
            XCTAssertEqual((error as? DatabaseError)?.code, "timed-out", "\(error)")
        }
        XCTAssertFalse(try promotion.isApplied())
    }

    func test_cliPromote_ofARealStandby_exit0_json_andNotAStandbyAnyMore() throws {
        let primary = try startCluster()
        let standby = try StandbyCluster(of: primary)
        standbys.append(standby)
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cutover").path
        let candidates = [binary, Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("cutover").path]
        let cutover = try XCTUnwrap(candidates.first { FileManager.default.isExecutableFile(atPath: $0) }, "cutover binary not built")

        let (status, output) = try PostgresCluster.runCapturing(
            cutover, ["db", "promote", "--standby", standby.dsn(), "--primary", primary.dsn(), "--timeout", "10s", "--json"])

        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("\"promoted\":\"true\""), output)
        XCTAssertEqual(try PostgresConnection(ConnectionString(standby.dsn())).scalar("SELECT pg_is_in_recovery()"), "f")
        let again = try PostgresCluster.runCapturing(cutover, ["db", "promote", "--standby", standby.dsn(), "--json"])
        XCTAssertEqual(again.0, 0, "promoting a primary again is harmless: \(again.1)")
        XCTAssertTrue(again.1.contains("\"already_primary\":\"true\""), again.1)
    }
}
