import CutoverAgent
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL 15 cluster in a temp dir owned by `postgres`, on a free loopback port.
///
/// One per test class (class setUp/tearDown). `stop()` always removes the directory.
final class PostgresCluster: @unchecked Sendable {
    static let bin = "/usr/lib/postgresql/15/bin"
    let root: String
    private(set) var port: Int
    private var running = false

    /// Creates, configures and starts the cluster; on any failure, removes what was made.
    init() throws {
        var template = Array((NSTemporaryDirectory() + "cutover-pg-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError("mkdtemp failed") }
        root = String(cString: made)
        port = try Self.freePort()
        do {
            try Self.run("/bin/chown", ["postgres:postgres", root])
            try Self.run("/bin/chmod", ["700", root])
            try Self.asPostgres("\(Self.bin)/initdb", ["-D", "\(root)/db", "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"])
            // First match wins: the password roles authenticate with SCRAM, everyone else is trusted.
            let hba = """
                host all pwuser 127.0.0.1/32 scram-sha-256
                local all all trust
                host all all 127.0.0.1/32 trust
                """
            try hba.write(toFile: "\(root)/db/pg_hba.conf", atomically: false, encoding: .utf8)
            try Self.run("/bin/chown", ["postgres:postgres", "\(root)/db/pg_hba.conf"])
            try startServer()
            running = true
            let admin = try PostgresConnection(ConnectionString(dsn(database: "postgres")))
            try admin.query("CREATE DATABASE app")
            try admin.query("CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD 'right'")
            let app = try PostgresConnection(ConnectionString(dsn()))
            try app.query("CREATE TABLE items (id serial PRIMARY KEY, note text NOT NULL)")
            try app.query("INSERT INTO items (note) VALUES ('seed')")
        } catch {
            stop()
            throw error
        }
    }

    /// Starts the server; a second time on another port if the first start fails, since the free
    /// port found by `freePort` may have been taken by someone else in between.
    private func startServer() throws {
        var failures: [String] = []
        for attempt in 1...2 {
            do {
                try Self.asPostgres("\(Self.bin)/pg_ctl", [
                    "-D", "\(root)/db", "-l", "\(root)/db.log", "-w", "-t", "30", "-o",
                    "-p \(port) -k \(root) -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_prepared_transactions=5",
                    "start",
                ])
                return
            } catch {
                // The server's own log says why it did not start; it is gone once the directory is.
                let log = (try? String(contentsOfFile: "\(root)/db.log", encoding: .utf8)) ?? "(no log)"
                failures.append("attempt \(attempt) on port \(port): \(error)\nserver log:\n\(log.suffix(2000))")
                port = try Self.freePort()
            }
        }
        throw FixtureError(failures.joined(separator: "\n"))
    }

    /// Stops the server (fast) and removes the directory; safe to call twice.
    func stop() {
        if running {
            try? Self.asPostgres("\(Self.bin)/pg_ctl", ["-D", "\(root)/db", "-m", "fast", "-w", "stop"])
            running = false
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// A keyword/value connection string to this cluster.
    func dsn(database: String = "app", user: String = "postgres", extra: String = "") -> String {
        "host=127.0.0.1 port=\(port) dbname=\(database) user=\(user)" + (extra.isEmpty ? "" : " " + extra)
    }

    /// A session as superuser `postgres`.
    func connect(_ database: String = "app", user: String = "postgres") throws -> PostgresConnection {
        try PostgresConnection(ConnectionString(dsn(database: database, user: user)))
    }

    /// Binds port 0 on 127.0.0.1 to learn a free port, then releases it.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError("socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw FixtureError("bind failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func asPostgres(_ tool: String, _ arguments: [String]) throws {
        try run("/usr/sbin/runuser", ["-u", "postgres", "--", tool] + arguments)
    }

    /// Runs a program to completion with posix_spawn and waitpid; throws with its output when it fails.
    ///
    /// Not Foundation's `Process`: a `runuser` child that forks a daemon was left unreaped by it and
    /// the wait hung. Output goes to a file, so a daemon inheriting it cannot hold a pipe open.
    @discardableResult
    static func run(_ path: String, _ arguments: [String]) throws -> String {
        let (status, output) = try runCapturing(path, arguments)
        guard status == 0 else {
            throw FixtureError("\(path) \(arguments.joined(separator: " ")) failed (exit \(status)): \(output)")
        }
        return output
    }

    /// Sets close-on-exec on every open descriptor above standard error.
    private static func markDescriptorsCloseOnExec() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for fd in names.compactMap(Int32.init) where fd > 2 {
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// Runs a program to completion; returns its exit status (-1 if killed) and its stdout+stderr.
    static func runCapturing(_ path: String, _ arguments: [String]) throws -> (Int32, String) {
        let outputPath = NSTemporaryDirectory() + "cutover-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // posix_spawn passes on every descriptor not marked close-on-exec, and the postmaster refuses
        // to start when inherited ones eat into its budget ("System allows 10, we need at least 58").
        markDescriptorsCloseOnExec()
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw FixtureError("cannot run \(path): errno \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED ? WEXITSTATUS : -1
        return (status & 0x7f == 0 ? (status >> 8) & 0xff : -1, output)
    }
}

/// A test class sharing one cluster across its tests: started in class setUp, always stopped in class tearDown.
class ClusterTestCase: XCTestCase {
    nonisolated(unsafe) static var clusters: [ObjectIdentifier: Result<PostgresCluster, Error>] = [:]

    override class func setUp() {
        super.setUp()
        clusters[ObjectIdentifier(self)] = Result { try PostgresCluster() }
    }

    override class func tearDown() {
        if case .success(let cluster) = clusters.removeValue(forKey: ObjectIdentifier(self)) { cluster.stop() }
        super.tearDown()
    }

    var cluster: PostgresCluster!

    override func setUpWithError() throws {
        guard let started = Self.clusters[ObjectIdentifier(Self.self)] else { throw FixtureError("no cluster for \(Self.self)") }
        cluster = try started.get()
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension XCTestCase {
    /// Asserts that `body` throws this DatabaseError case (compared by code); returns the error.
    @discardableResult
    func assertThrows(_ code: String, _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> DatabaseError? {
        do {
            try body()
            XCTFail("expected \(code), nothing thrown", file: file, line: line)
        } catch let error as DatabaseError {
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            return error
        } catch {
            XCTFail("expected \(code), got \(error)", file: file, line: line)
        }
        return nil
    }
}
