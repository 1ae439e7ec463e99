import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `pg_dump -Fc --no-owner SOURCE | pg_restore --no-owner --exit-on-error -d TARGET`, run as two
/// child processes joined by a pipe, each with its standard error captured for the message.
///
/// Never `pg_dump -C`: a dump of a fenced database then carries `ALTER DATABASE … SET
/// default_transaction_read_only TO 'on'` before the data and the restore fails with 25006
/// (measured, research/db-mechanics.md §3). The target database is created by the caller.
/// Passwords travel in `PGPASSWORD`, never on the command line where `ps` shows them.
struct DumpPipe {
    var source: ConnectionString
    var target: ConnectionString

    /// Runs both programs to completion; throws `toolFailed` naming the one that failed first in the pipe's logic.
    func run() throws(DatabaseError) {
        let dump = try Self.locate("pg_dump")
        let restore = try Self.locate("pg_restore")
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .toolFailed(tool: "pg_dump", status: -1, stderr: "pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let dumpLog = Self.temporaryPath("pg_dump")
        let restoreLog = Self.temporaryPath("pg_restore")
        defer {
            unlink(dumpLog)
            unlink(restoreLog)
        }
        let dumpPID: pid_t
        do throws(DatabaseError) {
            dumpPID = try Self.spawn(
                dump, ["-Fc", "--no-owner", "-d", source.description], stdin: nil, stdout: fds[1], stderrPath: dumpLog,
                password: source.value("password"))
        } catch {
            close(fds[0]); close(fds[1])
            throw error
        }
        close(fds[1])
        let restorePID: pid_t
        do throws(DatabaseError) {
            restorePID = try Self.spawn(
                restore, ["--no-owner", "--exit-on-error", "-d", target.description], stdin: fds[0], stdout: nil,
                stderrPath: restoreLog, password: target.value("password"))
        } catch {
            close(fds[0])
            kill(dumpPID, SIGTERM)
            _ = Self.wait(dumpPID)
            throw error
        }
        close(fds[0])
        let restoreStatus = Self.wait(restorePID)
        let dumpStatus = Self.wait(dumpPID)
        // A restore that stops early kills the dump with SIGPIPE: the restore's message is the cause.
        if restoreStatus != 0 {
            throw .toolFailed(tool: "pg_restore", status: restoreStatus, stderr: Self.tail(restoreLog))
        }
        if dumpStatus != 0 {
            throw .toolFailed(tool: "pg_dump", status: dumpStatus, stderr: Self.tail(dumpLog))
        }
    }

    /// The program on PATH, else in the newest /usr/lib/postgresql/*/bin (Debian keeps them there).
    static func locate(_ tool: String) throws(DatabaseError) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") where access("\(directory)/\(tool)", X_OK) == 0 {
            return "\(directory)/\(tool)"
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            let candidate = "/usr/lib/postgresql/\(version)/bin/\(tool)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw .toolFailed(tool: tool, status: -1, stderr: "not found on PATH nor in /usr/lib/postgresql/*/bin (install the PostgreSQL client tools)")
    }

    private static func spawn(
        _ path: String, _ arguments: [String], stdin: Int32?, stdout: Int32?, stderrPath: String, password: String?
    ) throws(DatabaseError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin { posix_spawn_file_actions_adddup2(&actions, stdin, 0) } else { posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0) }
        if let stdout { posix_spawn_file_actions_adddup2(&actions, stdout, 1) } else { posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0) }
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var environment = ProcessInfo.processInfo.environment.filter { $0.key != "PGPASSWORD" }
        if let password { environment["PGPASSWORD"] = password }
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer {
            envp.forEach { free($0) }
            argv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard spawned == 0 else {
            throw .toolFailed(tool: (path as NSString).lastPathComponent, status: -1, stderr: "cannot start \(path): \(String(cString: strerror(spawned)))")
        }
        return pid
    }

    /// The exit status, or 128 + signal when it was killed.
    private static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    private static func temporaryPath(_ tool: String) -> String {
        NSTemporaryDirectory() + "cutover-\(tool)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
    }

    /// The last lines of a tool's standard error, joined for a one-line message.
    private static func tail(_ path: String) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return lines.suffix(4).joined(separator: " | ")
    }
}
