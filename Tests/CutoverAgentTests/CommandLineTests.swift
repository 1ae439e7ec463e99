import CutoverAgent
import Foundation
import XCTest

/// The built `cutover` binary: exit codes and output of `db readonly` and `flag`.
final class CommandLineTests: ClusterTestCase {
    var binary: String { get throws { try CutoverChild.binary } }

    func cutover(_ arguments: String...) throws -> (status: Int32, output: String) {
        let (status, output) = try PostgresCluster.runCapturing(try binary, arguments)
        return (status, output)
    }

    override func tearDownWithError() throws {
        guard let cluster else { return }
        try cluster.connect("postgres").query("ALTER DATABASE app RESET default_transaction_read_only")
    }

    func test_dbReadonlyStatus_printsReadWrite_exit0() throws {
        let (status, output) = try cutover("db", "readonly", "status", "--dsn", cluster.dsn())
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("database \"app\": read-write"), output)
    }

    func test_dbReadonlyOnStatusOff_withJournal_andJSON() throws {
        let journal = NSTemporaryDirectory() + "cutover-cli-journal-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: journal) }
        let on = try cutover("db", "readonly", "on", "--dsn", cluster.dsn(), "--grace", "200ms", "--journal", journal)
        XCTAssertEqual(on.status, 0, on.output)
        XCTAssertTrue(on.output.contains("verified: a new session starts read-only"), on.output)
        let status = try cutover("db", "readonly", "status", "--dsn", cluster.dsn(), "--json")
        XCTAssertEqual(status.status, 0, status.output)
        XCTAssertTrue(status.output.contains("\"mode\":\"read-only\""), status.output)
        let off = try cutover("db", "readonly", "off", "--dsn", cluster.dsn(), "--json", "--journal", journal)
        XCTAssertEqual(off.status, 0, off.output)
        XCTAssertTrue(off.output.contains("\"verified\":true"), off.output)
        XCTAssertEqual(Journal(path: journal).entries().map(\.phase), ["before", "after", "before", "after"])
    }

    func test_dbReadonlyUnreachable_exit1_namesIt() throws {
        let port = try PostgresCluster.freePort()
        let (status, output) = try cutover("db", "readonly", "on", "--dsn", "host=127.0.0.1 port=\(port) dbname=app user=postgres")
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.contains("unreachable"), output)
    }

    func test_dbReadonlyUsageErrors_exit2() throws {
        XCTAssertEqual(try cutover("db", "readonly", "sideways", "--dsn", cluster.dsn()).status, 2)
        XCTAssertEqual(try cutover("db", "readonly", "on").status, 2)
        XCTAssertEqual(try cutover("db", "readonly", "on", "--dsn", cluster.dsn(), "--grace", "soon").status, 2)
        XCTAssertEqual(try cutover("flag", "on", "--driver", "carrier-pigeon").status, 2)
        XCTAssertEqual(try cutover("db", "--help").status, 0)
    }

    func test_dbReadonlyStatus_byConfiguredName_usesTheConfigDSN() throws {
        let path = NSTemporaryDirectory() + "cutover-cli-config-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = """
            {
              "listeners": [{ "name": "web", "address": "127.0.0.1:18080", "mode": "http", "profile": "web" }],
              "profiles": [{ "name": "web", "routing": "priority",
                "endpoints": [{ "name": "blue", "address": "127.0.0.1:19001", "priority": 1, "weight": 1, "state": "online" }] }],
              "databases": [{ "name": "primary", "driver": "postgres", "dsn": "\(cluster.dsn())" }]
            }
            """
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let found = try cutover("db", "readonly", "status", "primary", "--config", path)
        XCTAssertEqual(found.status, 0, found.output)
        XCTAssertTrue(found.output.contains("database \"app\": read-write"), found.output)
        let missing = try cutover("db", "readonly", "status", "replica", "--config", path)
        XCTAssertEqual(missing.status, 2, missing.output)
        XCTAssertTrue(missing.output.contains("configured: primary"), missing.output)
    }

    func test_flagFile_roundTrip_exit0() throws {
        let path = NSTemporaryDirectory() + "cutover-cli-flag-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(try cutover("flag", "on", "--driver", "file", "--path", path).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let status = try cutover("flag", "status", "--driver", "file", "--path", path, "--json")
        XCTAssertTrue(status.output.contains("\"state\":\"on\""), status.output)
        XCTAssertEqual(try cutover("flag", "off", "--driver", "file", "--path", path).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}
