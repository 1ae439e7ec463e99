import CutoverAgent
import Foundation
import XCTest

/// The built `cutover` binary's database step commands: one run of each, exit codes, JSON, journal.
final class DBStepCommandTests: ClusterTestCase {
    private var files: [String] = []

    override func tearDownWithError() throws {
        files.forEach { unlink($0) }
        guard let cluster else { return }
        let admin = try cluster.connect("postgres")
        for name in ["cli_copy", "cli_old", "cli_other"] { try admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
    }

    var binary: String { get throws { try CutoverChild.binary } }

    func cutover(_ arguments: String...) throws -> (status: Int32, output: String) {
        try PostgresCluster.runCapturing(try binary, arguments)
    }

    func temporary(_ suffix: String) -> String {
        let path = NSTemporaryDirectory() + "cutover-cli-\(UUID().uuidString)\(suffix)"
        files.append(path)
        return path
    }

    func test_copyFingerprintSchemaCheckRenameDrop_roundTrip_withJournalAndJSON() throws {
        let journal = temporary(".jsonl")
        let copy = try cutover("db", "copy", "--from", cluster.dsn(), "--to", cluster.dsn(database: "cli_copy"), "--json", "--journal", journal)
        XCTAssertEqual(copy.status, 0, copy.output)
        XCTAssertTrue(copy.output.contains("\"method\":\"template\""), copy.output)

        let again = try cutover("db", "copy", "--from", cluster.dsn(), "--to", cluster.dsn(database: "cli_copy"))
        XCTAssertEqual(again.status, 0, "a cutover-made copy is already applied: \(again.output)")

        let fingerprint = try cutover("db", "fingerprint", "--dsn", cluster.dsn())
        XCTAssertEqual(fingerprint.status, 0, fingerprint.output)
        let hex = fingerprint.output.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(hex.count, 64, fingerprint.output)
        XCTAssertEqual(try cutover("db", "schema-check", "--dsn", cluster.dsn(database: "cli_copy"), "--fingerprint", hex).status, 0)
        try cluster.connect("cli_copy").query("ALTER TABLE items ADD COLUMN drift int")
        let drift = try cutover("db", "schema-check", "--dsn", cluster.dsn(database: "cli_copy"), "--fingerprint", hex)
        XCTAssertEqual(drift.status, 1)
        XCTAssertTrue(drift.output.contains("has drifted: the schema fingerprint is "), drift.output)

        let rename = try cutover("db", "rename", "--dsn", cluster.dsn(database: "postgres"), "cli_copy", "cli_old")
        XCTAssertEqual(rename.status, 0, rename.output)
        let refused = try cutover("db", "drop", "--dsn", cluster.dsn(database: "postgres"), "app")
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.output.contains("cutover did not create \"app\""), refused.output)
        let drop = try cutover("db", "drop", "--dsn", cluster.dsn(database: "postgres"), "cli_old", "--journal", journal)
        XCTAssertEqual(drop.status, 0, drop.output)

        let entries = Journal(path: journal).entries()
        XCTAssertEqual(entries.map(\.phase), ["before", "after", "before", "after"])
        let target = try ConnectionString(cluster.dsn(database: "cli_copy")).description
        XCTAssertEqual(entries.first?.undo, "cutover db drop --dsn '\(target)' cli_copy")
        XCTAssertEqual(entries.map(\.result), [nil, "ok", nil, "ok"])
    }

    func test_run_refusesConcurrentlyWithoutTheDirective_exit1_andRunsWithNoTransaction() throws {
        try cluster.connect("postgres").query("CREATE DATABASE cli_other")
        try cluster.connect("cli_other").query("CREATE TABLE t (a int)")
        let file = temporary(".sql")
        try "CREATE INDEX CONCURRENTLY t_a ON t (a);\n".write(toFile: file, atomically: true, encoding: .utf8)
        let refused = try cutover("db", "run", "--dsn", cluster.dsn(database: "cli_other"), file)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.output.contains("nothing was changed:"), refused.output)
        XCTAssertTrue(refused.output.contains("-- cutover: no-transaction"), refused.output)
        let accepted = try cutover("db", "run", "--dsn", cluster.dsn(database: "cli_other"), file, "--no-transaction")
        XCTAssertEqual(accepted.status, 0, accepted.output)
        XCTAssertEqual(try cluster.connect("cli_other").scalar("SELECT to_regclass('t_a') IS NOT NULL"), "t")
    }

    func test_configuredDatabaseNames_standForConnectionStrings() throws {
        let path = temporary(".json")
        let config = """
            {
              "listeners": [{ "name": "web", "address": "127.0.0.1:18080", "mode": "http", "profile": "web" }],
              "profiles": [{ "name": "web", "routing": "priority",
                "endpoints": [{ "name": "blue", "address": "127.0.0.1:19001", "priority": 1, "weight": 1, "state": "online" }] }],
              "databases": [{ "name": "primary", "driver": "postgres", "dsn": "\(cluster.dsn())" }]
            }
            """
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let byName = try cutover("db", "fingerprint", "--dsn", "primary", "--config", path)
        let byDSN = try cutover("db", "fingerprint", "--dsn", cluster.dsn())
        XCTAssertEqual(byName.status, 0, byName.output)
        XCTAssertEqual(byName.output, byDSN.output)
        let unknown = try cutover("db", "fingerprint", "--dsn", "replica", "--config", path)
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.output.contains("no database named 'replica'"), unknown.output)
    }

    func test_stepUsageErrors_exit2() throws {
        XCTAssertEqual(try cutover("db", "copy", "--from", cluster.dsn()).status, 2, "missing --to")
        XCTAssertEqual(try cutover("db", "copy", "--from", cluster.dsn(), "--to", cluster.dsn(), "--method", "teleport").status, 2)
        XCTAssertEqual(try cutover("db", "rename", "--dsn", cluster.dsn(), "a", "b", "c").status, 2)
        XCTAssertEqual(try cutover("db", "drop", "--dsn", cluster.dsn()).status, 2)
        XCTAssertEqual(try cutover("db", "run", "--dsn", cluster.dsn()).status, 2)
        XCTAssertEqual(try cutover("db", "schema-check", "--dsn", cluster.dsn(), "--version-query", "SELECT 1").status, 2)
        XCTAssertEqual(try cutover("db", "promote").status, 2)
        XCTAssertEqual(try cutover("db", "teleport").status, 2)
        XCTAssertEqual(try cutover("db", "drop", "--dsn", cluster.dsn(), "x", "--forse").status, 2)
    }
}
