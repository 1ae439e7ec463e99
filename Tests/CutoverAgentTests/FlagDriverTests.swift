import CutoverAgent
import CutoverControl
import CutoverCore
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Each flag driver round-trips; every change is journaled before and after.
final class FlagDriverTests: ClusterTestCase {
    var directory: String!

    override func setUpWithError() throws {
        try super.setUpWithError()
        directory = NSTemporaryDirectory() + "cutover-flags-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    func test_fileFlag_roundTrips_andLeavesNoTempFile() throws {
        let flag = FileFlag(path: directory + "/maintenance", content: "upgrade 42\n")
        XCTAssertEqual(try flag.status().state, "off")
        XCTAssertEqual(try flag.on().state, "on")
        XCTAssertEqual(try String(contentsOfFile: directory + "/maintenance", encoding: .utf8), "upgrade 42\n")
        XCTAssertEqual(try flag.on().state, "on", "on twice is fine")
        XCTAssertEqual(try flag.status().state, "on")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["maintenance"])
        XCTAssertEqual(try flag.off().state, "off")
        XCTAssertEqual(try flag.off().state, "off", "off twice is fine")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/maintenance"))
    }

    func test_fileFlag_inMissingDirectory_failsNamingThePath() throws {
        let flag = FileFlag(path: directory + "/nodir/maintenance")
        XCTAssertThrowsError(try flag.on()) { XCTAssertTrue("\($0)".contains("nodir"), "\($0)") }
    }

    func test_sqlFlag_upsertsSettingsRow_andNotifies() throws {
        let app = try cluster.connect()
        try app.query("CREATE TABLE IF NOT EXISTS app_settings (key text PRIMARY KEY, value text NOT NULL)")
        let listener = try cluster.connect()
        try listener.query("LISTEN app_settings")
        let flag = SQLFlag(
            connectionString: try ConnectionString(cluster.dsn()),
            onSQL: "INSERT INTO app_settings VALUES ('maintenance', 'on') ON CONFLICT (key) DO UPDATE SET value = 'on'; NOTIFY app_settings, 'maintenance'",
            offSQL: "UPDATE app_settings SET value = 'off' WHERE key = 'maintenance'; NOTIFY app_settings, 'maintenance'",
            statusSQL: "SELECT value FROM app_settings WHERE key = 'maintenance'")
        XCTAssertEqual(try flag.status().state, "off")
        XCTAssertEqual(try flag.on().state, "on")
        XCTAssertEqual(try app.scalar("SELECT value FROM app_settings WHERE key = 'maintenance'"), "on")
        XCTAssertEqual(try flag.status().state, "on")
        XCTAssertEqual(try flag.off().state, "off")
        XCTAssertEqual(try flag.status().state, "off")
    }

    func test_sqlFlag_badStatement_isQueryFailedWithSQLSTATE() throws {
        let flag = SQLFlag(connectionString: try ConnectionString(cluster.dsn()), onSQL: "UPDATE no_such_table SET x = 1", offSQL: "SELECT 1", statusSQL: nil)
        XCTAssertThrowsError(try flag.on()) { XCTAssertTrue("\($0)".contains("42P01"), "\($0)") }
    }

    func test_proxyFlag_sendsOneLine_andReadsOKorERR() throws {
        let socketPath = directory + "/admin.sock"
        let server = try FakeAdminServer(path: socketPath) { line in
            line == "maintenance web on" || line == "maintenance web off" ? "OK \(line)"
                : line == "show profiles --json"
                ? JSONCoding.line(AdminAnswer(data: ProfilesAnswer(profiles: [ProfileStatus(name: "web", live: ["blue"], paused: false, maintenance: true, readonly: false, held: 0, endpoints: 2)])))
                : "ERR unknown-profile: no profile named nope"
        }
        defer { server.stop() }
        let flag = ProxyFlag(socketPath: socketPath, profile: "web", gate: .maintenance)
        XCTAssertEqual(try flag.on().state, "on")
        XCTAssertEqual(try flag.off().state, "off")
        XCTAssertEqual(try flag.status().state, "on")
        XCTAssertThrowsError(try ProxyFlag(socketPath: socketPath, profile: "nope", gate: .maintenance).on()) {
            XCTAssertEqual(($0 as? FlagError)?.code, "unknown-profile", "\($0)")
        }
        XCTAssertEqual(server.received, ["maintenance web on", "maintenance web off", "show profiles --json", "maintenance nope on"])
    }

    func test_proxyFlag_noSocket_isProxyUnreachable() throws {
        XCTAssertThrowsError(try ProxyFlag(socketPath: directory + "/none.sock", profile: "web", gate: .readonly).on()) {
            XCTAssertEqual(($0 as? FlagError)?.code, "proxy-unreachable", "\($0)")
        }
    }

    func test_journal_writesBeforeAndAfter_withUndo_andFailures() throws {
        let journal = Journal(path: directory + "/journal.jsonl")
        let flag = FileFlag(path: directory + "/maintenance")
        _ = try journal.record(action: "flag on", target: flag.target, undo: "flag off", describe: { (r: FlagResult) in r.state }) { try flag.on() }
        let broken = FileFlag(path: directory + "/nodir/flag")
        XCTAssertThrowsError(try journal.record(action: "flag on", target: broken.target, undo: "flag off", describe: { (r: FlagResult) in r.state }) { try broken.on() })
        let entries = journal.entries()
        XCTAssertEqual(entries.map(\.phase), ["before", "after", "before", "after"])
        XCTAssertEqual(entries[0].undo, "flag off")
        XCTAssertEqual(entries[0].id, entries[1].id)
        XCTAssertEqual(entries[1].result, "ok")
        XCTAssertEqual(entries[3].result, "failed")
        XCTAssertTrue(entries[3].detail?.contains("nodir") ?? false)
    }

    func test_journal_fenceOnAndOff_areJournaled() throws {
        let journal = Journal(path: directory + "/journal.jsonl")
        let fence = try ReadOnlyFence(target: ConnectionString(cluster.dsn()))
        _ = try journaled(journal, action: "db readonly on", target: fence.target.description, undo: "db readonly off", describe: { (r: FenceReport) in r.json }) {
            try fence.on(grace: .milliseconds(100))
        }
        _ = try journaled(journal, action: "db readonly off", target: fence.target.description, undo: "db readonly on", describe: { (r: FenceReport) in r.json }) {
            try fence.off()
        }
        let entries = journal.entries()
        XCTAssertEqual(entries.map(\.action), ["db readonly on", "db readonly on", "db readonly off", "db readonly off"])
        XCTAssertEqual(entries.map(\.phase), ["before", "after", "before", "after"])
        XCTAssertTrue(entries[1].detail?.contains("\"verified\":true") ?? false)
    }
}

/// The proxy's admin socket server answering each line with `answer(line)` and recording it.
final class FakeAdminServer: Sendable {
    private let server: AdminSocketServer
    private let log = LineLog()
    var path: String { server.path }
    var received: [String] { log.lines }

    init(path: String, answer: @escaping @Sendable (String) -> String) throws {
        let log = self.log
        server = AdminSocketServer(path: path) { line in
            log.append(line)
            return answer(line)
        }
        try server.start()
    }

    func stop() { server.stop() }
}

/// Lines a fake server received, behind a lock.
final class LineLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.withLock { stored } }
    func append(_ line: String) { lock.withLock { stored.append(line) } }
}
