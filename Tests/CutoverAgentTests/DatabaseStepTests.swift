import CutoverAgent
import CutoverCore
import Foundation
import XCTest

/// The database steps against one real PostgreSQL 15 cluster: each test makes its own databases and drops them.
final class DatabaseStepTests: ClusterTestCase {
    private var made: [String] = []
    private var files: [String] = []

    override func tearDownWithError() throws {
        guard let cluster else { return }
        let admin = try cluster.connect("postgres")
        for name in made {
            try admin.query("DROP DATABASE IF EXISTS \"\(name)\" WITH (FORCE)")
        }
        files.forEach { unlink($0) }
    }

    /// A fresh database `name` with a table, rows and a sequence that has moved on.
    func makeDatabase(_ name: String, rows: Int = 5) throws {
        made.append(name)
        try cluster.connect("postgres").query("CREATE DATABASE \"\(name)\"")
        let db = try cluster.connect(name)
        try db.query("CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL DEFAULT 'x')")
        try db.query("INSERT INTO items (note) SELECT 'row ' || g FROM generate_series(1, \(rows)) g")
        try db.query("DELETE FROM items WHERE id = 2")
        try db.query("CREATE VIEW notes AS SELECT note FROM items")
    }

    func dsn(_ name: String) throws -> ConnectionString { try ConnectionString(cluster.dsn(database: name)) }

    /// Rows and sequence position, as one comparable string.
    func contents(_ name: String) throws -> String {
        let db = try cluster.connect(name)
        let rows = try db.query("SELECT count(*), sum(id), string_agg(note, ',' ORDER BY id) FROM items").first ?? []
        let sequence = try db.query("SELECT last_value, is_called FROM items_id_seq").first ?? []
        return (rows + sequence).map { $0 ?? "NULL" }.joined(separator: "|")
    }

    func catalog(_ name: String) throws -> (allowConnections: String?, comment: String?)? {
        guard let row = try cluster.connect("postgres").query(
            "SELECT datallowconn::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", [name]
        ).first else { return nil }
        return (row[0], row[1])
    }

    func sqlFile(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "cutover-migration-\(UInt32.random(in: 0...UInt32.max)).sql"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        files.append(path)
        return path
    }

    // MARK: copy

    func test_templateCopy_terminatesTheSourcesSession_copiesDataAndSequences_andRestoresAllowConnections() throws {
        try makeDatabase("tpl_src")
        made.append("tpl_copy")
        let other = try cluster.connect("tpl_src")
        let copy = DatabaseCopy(source: try dsn("tpl_src"), target: try dsn("tpl_copy"))
        XCTAssertEqual(copy.resolvedMethod, .template)
        XCTAssertEqual(copy.preflight(), [])
        XCTAssertFalse(try copy.isApplied())

        let report = try copy.apply()

        XCTAssertEqual(report.details["method"], "template")
        XCTAssertEqual(report.details["terminated_sessions"], "1", report.text)
        XCTAssertNotNil(report.details["source_refused_connections_ms"].flatMap(Int.init), report.text)
        XCTAssertNil(try? other.query("SELECT 1"), "the source's other session was terminated")
        XCTAssertFalse(other.isAlive)
        XCTAssertEqual(try catalog("tpl_src")?.allowConnections, "true", "ALLOW_CONNECTIONS restored on the source")
        XCTAssertEqual(try contents("tpl_copy"), try contents("tpl_src"))
        XCTAssertTrue(try catalog("tpl_copy")?.comment?.hasPrefix("created by cutover: copy of tpl_src at ") ?? false)
        XCTAssertTrue(try copy.isApplied())
        XCTAssertEqual(try copy.apply().details["already_applied"], "true", "a second apply changes nothing")
        // The copy takes writes and its sequence continues where the source's was.
        let db = try cluster.connect("tpl_copy")
        XCTAssertEqual(try db.scalar("INSERT INTO items (note) VALUES ('new') RETURNING id"), "6")

        let undo = try XCTUnwrap(copy.undoStep)
        _ = try undo.apply()
        XCTAssertNil(try catalog("tpl_copy"))
        XCTAssertTrue(try undo.isApplied())
    }

    func test_templateCopy_ofAReadOnlyFencedSource_isReadWrite_andSourceThatRefusedConnectionsStaysSo() throws {
        try makeDatabase("ro_src")
        made.append("ro_copy")
        let admin = try cluster.connect("postgres")
        try admin.query("ALTER DATABASE ro_src SET default_transaction_read_only = on")
        try admin.query("ALTER DATABASE ro_src ALLOW_CONNECTIONS false")

        _ = try DatabaseCopy(source: try dsn("ro_src"), target: try dsn("ro_copy"), method: .template).apply()

        XCTAssertEqual(try catalog("ro_src")?.allowConnections, "false", "restored to what it was")
        let copy = try cluster.connect("ro_copy")
        XCTAssertEqual(try copy.scalar("SHOW transaction_read_only"), "off")
        try copy.query("INSERT INTO items (note) VALUES ('writable')")
    }

    func test_failedTemplateCopy_stillRestoresAllowConnections() throws {
        try makeDatabase("fail_src")
        made.append("fail_copy")
        let admin = try cluster.connect("postgres")
        // A role that owns the source and may create databases, but cannot terminate a superuser's session.
        try admin.query("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'copier') THEN CREATE ROLE copier LOGIN CREATEDB; END IF; END $$")
        try admin.query("GRANT pg_signal_backend TO copier")
        try admin.query("ALTER DATABASE fail_src OWNER TO copier")
        let superuserSession = try cluster.connect("fail_src")
        let copy = DatabaseCopy(source: try ConnectionString(cluster.dsn(database: "fail_src", user: "copier")),
                                target: try ConnectionString(cluster.dsn(database: "fail_copy", user: "copier")))

        let failures = copy.preflight()
        XCTAssertEqual(failures, ["sessions of \"fail_src\" this role cannot terminate: pid \(superuserSession.backendPID) (postgres)"])

        let error = assertThrows("sessions-survived") { _ = try copy.apply() }

        XCTAssertTrue(error?.description.contains("\(superuserSession.backendPID)") ?? false, "\(String(describing: error))")
        XCTAssertEqual(try catalog("fail_src")?.allowConnections, "true", "restored although the copy failed")
        XCTAssertNil(try catalog("fail_copy"))
        XCTAssertEqual(try superuserSession.scalar("SELECT 1"), "1")
    }

    func test_copy_refusesWhenTheTargetExists_andChangesNothing() throws {
        try makeDatabase("exists_src")
        try makeDatabase("exists_tgt", rows: 1)
        let before = try contents("exists_tgt")
        let copy = DatabaseCopy(source: try dsn("exists_src"), target: try dsn("exists_tgt"))
        XCTAssertEqual(copy.preflight().count, 1)
        XCTAssertTrue(copy.preflight().first?.contains("already exists") ?? false, "\(copy.preflight())")
        let error = assertThrows("refused") { _ = try copy.apply() }
        XCTAssertTrue(error?.description.contains("cutover did not create it") ?? false, "\(String(describing: error))")
        XCTAssertEqual(try contents("exists_tgt"), before)
        XCTAssertEqual(try catalog("exists_src")?.allowConnections, "true")
    }

    func test_copyPreflight_namesAMissingSource() throws {
        let failures = DatabaseCopy(source: try dsn("no_such_db"), target: try dsn("nowhere")).preflight()
        XCTAssertEqual(failures, ["source database \"no_such_db\" does not exist on 127.0.0.1:\(cluster.port)"])
    }

    // MARK: migration

    func test_migration_inOneTransaction_appliesAndRecordsItself() throws {
        try makeDatabase("mig_ok")
        let file = try sqlFile("""
            CREATE TABLE widgets (id int PRIMARY KEY, name text);
            INSERT INTO widgets VALUES (1, 'a;b'), (2, 'VACUUM');
            ALTER TABLE items ADD COLUMN size int;
            """)
        let migration = Migration(database: try dsn("mig_ok"), file: file)
        XCTAssertEqual(migration.preflight(), [])
        XCTAssertFalse(try migration.isApplied())

        let report = try migration.apply()

        XCTAssertEqual(report.details["mode"], "transaction")
        XCTAssertEqual(report.details["statements"], "3")
        let db = try cluster.connect("mig_ok")
        XCTAssertEqual(try db.scalar("SELECT string_agg(name, ',' ORDER BY id) FROM widgets"), "a;b,VACUUM")
        XCTAssertEqual(try db.scalar("SELECT count(*) FROM cutover.cutover_migrations WHERE file_sha = $1", [report.details["file_sha256"]]), "1")
        XCTAssertTrue(try migration.isApplied())
        XCTAssertEqual(try migration.apply().details["already_applied"], "true")
    }

    func test_migration_failingHalfway_leavesNothingOfIt() throws {
        try makeDatabase("mig_fail")
        let file = try sqlFile("""
            CREATE TABLE half (id int);
            INSERT INTO half VALUES (1);
            UPDATE items SET note = 'changed';
            INSERT INTO no_such_table VALUES (1);
            CREATE TABLE never (id int);
            """)
        let before = try contents("mig_fail")
        let migration = Migration(database: try dsn("mig_fail"), file: file)

        let error = assertThrows("query-failed") { _ = try migration.apply() }

        XCTAssertEqual(error?.sqlstate, "42P01")
        XCTAssertTrue(error?.description.contains("nothing of the migration remains") ?? false, "\(String(describing: error))")
        let db = try cluster.connect("mig_fail")
        XCTAssertEqual(try db.scalar("SELECT to_regclass('half') IS NULL AND to_regclass('cutover.cutover_migrations') IS NULL"), "t")
        XCTAssertEqual(try contents("mig_fail"), before)
        XCTAssertFalse(try migration.isApplied())
    }

    func test_concurrentlyIndex_isRefusedInTransactionalMode_andRunsWithTheDirective() throws {
        try makeDatabase("mig_conc")
        let sql = "CREATE INDEX CONCURRENTLY items_note_idx ON items (note);\n-- a comment saying VACUUM\nSELECT 1;\n"
        let refused = Migration(database: try dsn("mig_conc"), file: try sqlFile(sql))
        let failures = refused.preflight()
        XCTAssertEqual(failures.count, 1)
        XCTAssertTrue(failures.first?.contains("line 1: CREATE INDEX CONCURRENTLY cannot run inside a transaction block") ?? false, "\(failures)")
        XCTAssertTrue(failures.first?.contains("-- cutover: no-transaction") ?? false, "\(failures)")
        _ = assertThrows("refused") { _ = try refused.apply() }
        let db = try cluster.connect("mig_conc")
        XCTAssertEqual(try db.scalar("SELECT to_regclass('items_note_idx') IS NULL"), "t", "nothing ran")

        let accepted = Migration(database: try dsn("mig_conc"), file: try sqlFile("-- cutover: no-transaction\n" + sql))
        XCTAssertEqual(accepted.preflight(), [])
        let report = try accepted.apply()
        XCTAssertEqual(report.details["mode"], "no-transaction")
        XCTAssertEqual(try db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_note_idx'::regclass"), "t")
        XCTAssertTrue(try accepted.isApplied())
    }

    func test_migrationPreflight_namesAnUnreadableOrEmptyFile() throws {
        let missing = Migration(database: try dsn("app"), file: "/nonexistent/m.sql").preflight()
        XCTAssertEqual(missing, ["run /nonexistent/m.sql refused: cannot read /nonexistent/m.sql; nothing was changed"])
        let empty = try sqlFile("-- nothing but a comment\n;\n")
        XCTAssertEqual(Migration(database: try dsn("app"), file: empty).preflight(), ["run \(empty) refused: \(empty) holds no SQL statement; nothing was changed"])
    }

    // MARK: rename

    func test_rename_swapsTwoDatabasesAtomically_terminatingSessions_andUndoSwapsBack() throws {
        try makeDatabase("swap_live", rows: 1)
        try makeDatabase("swap_new", rows: 3)
        made.append("swap_old")
        let liveBefore = try contents("swap_live")
        let newBefore = try contents("swap_new")
        let session = try cluster.connect("swap_live")
        let rename = DatabaseRename(server: try dsn("postgres"), renames: [(from: "swap_live", to: "swap_old"), (from: "swap_new", to: "swap_live")])
        XCTAssertEqual(rename.preflight(), [])
        XCTAssertFalse(try rename.isApplied())

        let report = try rename.apply()

        XCTAssertEqual(report.details["terminated_sessions"], "1", report.text)
        XCTAssertFalse((try? session.query("SELECT 1")) != nil)
        XCTAssertEqual(try contents("swap_live"), newBefore)
        XCTAssertEqual(try contents("swap_old"), liveBefore)
        XCTAssertNil(try catalog("swap_new"))
        XCTAssertEqual(try catalog("swap_old")?.allowConnections, "true")
        XCTAssertEqual(try catalog("swap_live")?.allowConnections, "true")
        XCTAssertTrue(try rename.isApplied())

        let undo = try XCTUnwrap(rename.undoStep)
        XCTAssertEqual(undo.preflight(), [])
        _ = try undo.apply()
        XCTAssertEqual(try contents("swap_live"), liveBefore)
        XCTAssertEqual(try contents("swap_new"), newBefore)
        XCTAssertNil(try catalog("swap_old"))
    }

    func test_renamePreflight_namesMissingTakenAndControlDatabases() throws {
        try makeDatabase("ren_a", rows: 1)
        try makeDatabase("ren_b", rows: 1)
        let failures = DatabaseRename(
            server: try dsn("postgres"), renames: [(from: "ren_a", to: "ren_b"), (from: "ren_missing", to: "ren_c"), (from: "postgres", to: "pg2")]
        ).preflight()
        XCTAssertEqual(failures.count, 3, "\(failures)")
        XCTAssertTrue(failures[0].contains("\"ren_b\" is taken"), "\(failures)")
        XCTAssertTrue(failures[1].contains("no database \"ren_missing\""), "\(failures)")
        XCTAssertTrue(failures[2].contains("control database"), "\(failures)")
    }

    // MARK: drop

    func test_drop_refusesAForeignDatabase_dropsACutoverCopy_andForceDropsAnything() throws {
        try makeDatabase("foreign_db", rows: 1)
        let drop = DatabaseDrop(server: try dsn("postgres"), name: "foreign_db")
        XCTAssertEqual(drop.preflight().count, 1)
        let error = assertThrows("refused") { _ = try drop.apply() }
        XCTAssertTrue(error?.description.contains("cutover did not create \"foreign_db\"") ?? false, "\(String(describing: error))")
        XCTAssertNotNil(try catalog("foreign_db"))
        XCTAssertEqual(try catalog("foreign_db")?.allowConnections, "true")

        made.append("cutover_made")
        _ = try DatabaseCopy(source: try dsn("foreign_db"), target: try dsn("cutover_made")).apply()
        let session = try cluster.connect("cutover_made")
        let dropCopy = DatabaseDrop(server: try dsn("postgres"), name: "cutover_made")
        XCTAssertEqual(dropCopy.preflight(), [])
        let report = try dropCopy.apply()
        XCTAssertEqual(report.details["terminated_sessions"], "1")
        XCTAssertFalse((try? session.query("SELECT 1")) != nil)
        XCTAssertNil(try catalog("cutover_made"))
        XCTAssertTrue(try dropCopy.isApplied())

        _ = try DatabaseDrop(server: try dsn("postgres"), name: "foreign_db", onlyIfCreatedByCutover: false).apply()
        XCTAssertNil(try catalog("foreign_db"))
    }

    // MARK: schema-check

    func test_schemaCheck_passesOnTheSameSchema_andOnACopy_thenDetectsDriftAfterAlterTable() throws {
        try makeDatabase("schema_db")
        let fingerprint = try SchemaCheck.fingerprint(try dsn("schema_db"))
        XCTAssertEqual(fingerprint.count, 64)
        let check = SchemaCheck(database: try dsn("schema_db"), expectedFingerprint: fingerprint, versionQuery: nil, expectedVersion: nil)
        XCTAssertEqual(check.preflight(), [])
        XCTAssertEqual(try check.apply().details["fingerprint"], fingerprint)
        made.append("schema_copy")
        _ = try DatabaseCopy(source: try dsn("schema_db"), target: try dsn("schema_copy")).apply()
        XCTAssertEqual(try SchemaCheck.fingerprint(try dsn("schema_copy")), fingerprint, "a template copy has the same schema")
        // Data changes and cutover's own schema do not count.
        let db = try cluster.connect("schema_db")
        try db.query("INSERT INTO items (note) VALUES ('more')")
        try db.query("CREATE SCHEMA cutover; CREATE TABLE cutover.t (x int)")
        XCTAssertEqual(try SchemaCheck.fingerprint(try dsn("schema_db")), fingerprint)

        try db.query("ALTER TABLE items ADD COLUMN extra int")
        let error = assertThrows("drift") { _ = try check.apply() }
        XCTAssertTrue(error?.description.contains(fingerprint) ?? false, "names the expected value")
        XCTAssertEqual(check.preflight().count, 1)
        try db.query("ALTER TABLE items ALTER COLUMN note DROP NOT NULL")
        XCTAssertNotEqual(try SchemaCheck.fingerprint(try dsn("schema_db")), fingerprint)
        try db.query("ALTER TABLE items DROP COLUMN extra; ALTER TABLE items ALTER COLUMN note SET NOT NULL")
        XCTAssertEqual(try SchemaCheck.fingerprint(try dsn("schema_db")), fingerprint, "the same schema again, dropped column and all")
    }

    func test_schemaCheck_versionQuery_namesBothValues() throws {
        try makeDatabase("version_db")
        let db = try cluster.connect("version_db")
        try db.query("CREATE TABLE schema_version (v text); INSERT INTO schema_version VALUES ('42')")
        let query = "SELECT v FROM schema_version"
        XCTAssertEqual(try SchemaCheck(database: try dsn("version_db"), expectedFingerprint: nil, versionQuery: query, expectedVersion: "42").apply().details["version"], "42")
        let error = assertThrows("drift") {
            _ = try SchemaCheck(database: try dsn("version_db"), expectedFingerprint: nil, versionQuery: query, expectedVersion: "43").apply()
        }
        XCTAssertEqual(error?.description, "database \"version_db\" has drifted: SELECT v FROM schema_version is 42, the runbook expects 43")
    }
}
