import CutoverAgent
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
            line == "maintenance web on" || line == "maintenance web off" ? "OK \(line)" : line == "show profiles" ? "web online\nother online" : "ERR unknown-profile: no profile named nope"
        }
        defer { server.stop() }
        let flag = ProxyFlag(socketPath: socketPath, profile: "web", gate: .maintenance)
        XCTAssertEqual(try flag.on().state, "on")
        XCTAssertEqual(try flag.off().state, "off")
        XCTAssertTrue(try flag.status().detail.contains("web online"))
        XCTAssertThrowsError(try ProxyFlag(socketPath: socketPath, profile: "nope", gate: .maintenance).on()) {
            XCTAssertEqual(($0 as? FlagError)?.code, "unknown-profile", "\($0)")
        }
        XCTAssertEqual(server.received, ["maintenance web on", "maintenance web off", "show profiles", "maintenance nope on"])
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

/// A one-thread Unix-socket server that answers each request line with `answer(line)` and closes.
final class FakeAdminServer: @unchecked Sendable {
    private let fd: Int32
    private let log: LineLog
    private let thread: Thread
    let path: String

    var received: [String] { log.lines }

    init(path: String, answer: @escaping @Sendable (String) -> String) throws {
        self.path = path
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw FixtureError("cannot listen on \(path)") }
        let listening = fd
        let log = LineLog()
        self.log = log
        thread = Thread {
            while true {
                let client = accept(listening, nil, nil)
                if client < 0 { return }
                var buffer = [UInt8](repeating: 0, count: 1024)
                var data: [UInt8] = []
                while !data.contains(UInt8(ascii: "\n")) {
                    let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    data += buffer[0..<n]
                }
                let line = String(decoding: data.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
                log.append(line)
                let reply = Array((answer(line) + "\n").utf8)
                _ = reply.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                close(client)
            }
        }
        thread.start()
    }

    /// Stops accepting (shutdown wakes the blocked accept) and removes the socket file.
    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}

/// Lines a fake server received, behind a lock.
final class LineLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.withLock { stored } }
    func append(_ line: String) { lock.withLock { stored.append(line) } }
}
