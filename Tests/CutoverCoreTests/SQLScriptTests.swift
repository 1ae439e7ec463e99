import CutoverCore
import XCTest

/// The migration scanner: statements split where the server would, forbidden ones found, strings and comments ignored.
final class SQLScriptTests: XCTestCase {
    func test_splitsAtTopLevelSemicolons_andDropsEmptyStatements() {
        let script = SQLScript("CREATE TABLE a (id int);;\n  INSERT INTO a VALUES (1);\n-- only a comment\n")
        XCTAssertEqual(script.statements.map(\.text), ["CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)"])
        XCTAssertEqual(script.statements.map(\.line), [1, 2])
        XCTAssertEqual(script.statements[0].words, ["CREATE", "TABLE", "A", "ID", "INT"])
    }

    func test_lastStatementWithoutSemicolon_isKept() {
        XCTAssertEqual(SQLScript("SELECT 1; SELECT 2").statements.map(\.text), ["SELECT 1", "SELECT 2"])
    }

    func test_semicolonsInsideStringsIdentifiersCommentsAndDollarBodies_doNotSplit() {
        let text = """
            INSERT INTO t VALUES ('a;b', 'it''s; here', E'back\\\\; slash\\';x');
            SELECT "odd;name" FROM t; /* a ; comment /* nested ; */ still ; */ SELECT 2;
            CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; SELECT 2; $body$ LANGUAGE sql;
            CREATE FUNCTION g() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;
            """
        let script = SQLScript(text)
        XCTAssertEqual(script.statements.count, 5, script.statements.map(\.text).joined(separator: "\n|"))
        XCTAssertEqual(script.statements.map { $0.words.first }, ["INSERT", "SELECT", "SELECT", "CREATE", "CREATE"])
    }

    func test_beginAtomicBody_isOneStatement() {
        let text = """
            CREATE FUNCTION h(x int) RETURNS int LANGUAGE sql
            BEGIN ATOMIC
              SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;
              SELECT 2;
            END;
            VACUUM;
            """
        let script = SQLScript(text)
        XCTAssertEqual(script.statements.count, 2, script.statements.map(\.text).joined(separator: "\n|"))
        XCTAssertEqual(script.statements[1].words, ["VACUUM"])
        XCTAssertEqual(script.transactionRefusals, [SQLScript.Refusal(what: "VACUUM", line: 6)])
    }

    func test_everyStatementThatCannotRunInATransaction_isRefused() {
        let cases: [(String, String)] = [
            ("CREATE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
            ("create unique index concurrently i on t (a)", "CREATE UNIQUE INDEX CONCURRENTLY"),
            ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"),
            ("REINDEX TABLE CONCURRENTLY t", "REINDEX … CONCURRENTLY"),
            ("REINDEX (VERBOSE) INDEX CONCURRENTLY i", "REINDEX … CONCURRENTLY"),
            ("VACUUM (ANALYZE) t", "VACUUM"),
            ("CREATE DATABASE x", "CREATE DATABASE"),
            ("DROP DATABASE IF EXISTS x", "DROP DATABASE"),
            ("ALTER SYSTEM SET work_mem = '8MB'", "ALTER SYSTEM"),
            ("CREATE TABLESPACE ts LOCATION '/x'", "CREATE TABLESPACE"),
            ("COMMIT", "COMMIT (transaction control: the migration's transaction is cutover's)"),
            ("BEGIN", "BEGIN (transaction control: the migration's transaction is cutover's)"),
        ]
        for (sql, what) in cases {
            XCTAssertEqual(SQLScript("SELECT 1;\n" + sql + ";").transactionRefusals, [SQLScript.Refusal(what: what, line: 2)], sql)
        }
    }

    func test_keywordsInStringsCommentsAndIdentifiers_areNotRefused() {
        let text = """
            -- CREATE INDEX CONCURRENTLY would be refused here
            /* VACUUM; */
            INSERT INTO notes VALUES ('CREATE INDEX CONCURRENTLY i ON t (a); VACUUM;');
            SELECT "VACUUM" FROM t;
            CREATE FUNCTION f() RETURNS void AS $$ BEGIN EXECUTE 'VACUUM'; COMMIT; END $$ LANGUAGE plpgsql;
            CREATE INDEX i ON t (a);
            ROLLBACK TO SAVEPOINT s;
            """
        XCTAssertEqual(SQLScript(text).transactionRefusals, [])
    }

    func test_refusalLine_countsNewlinesInsideStringsAndComments() {
        let text = "INSERT INTO t VALUES ('a\nb\nc');\n/* x\ny */\nCREATE INDEX CONCURRENTLY i ON t (a);"
        XCTAssertEqual(SQLScript(text).transactionRefusals.map(\.line), [6])
    }

    func test_directiveOnFirstLine_declaresNoTransaction() {
        XCTAssertTrue(SQLScript("-- cutover: no-transaction\nVACUUM;").declaresNoTransaction)
        XCTAssertTrue(SQLScript("\n  --   cutover:   no-transaction  \nVACUUM;").declaresNoTransaction)
        XCTAssertFalse(SQLScript("VACUUM;\n-- cutover: no-transaction").declaresNoTransaction)
        XCTAssertFalse(SQLScript("-- cutover: transaction\nVACUUM;").declaresNoTransaction)
    }

    func test_dollarParameterIsNotAQuote() {
        let script = SQLScript("PREPARE p AS SELECT $1; EXECUTE p(1);")
        XCTAssertEqual(script.statements.map { $0.words.first }, ["PREPARE", "EXECUTE"])
    }
}
