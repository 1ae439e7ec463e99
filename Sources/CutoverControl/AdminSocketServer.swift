import Dispatch
import Foundation
import Glibc

/// A Unix stream socket that answers one command per line: each answer is the handler's text
/// followed by an empty line, so a client knows where a multi-line answer ends.
///
/// Connections are served by an `AdminSessionLoop`: one readiness loop and a few command threads,
/// so clients that connect and say nothing cost no thread, are closed after `limits.readTimeout`,
/// and make room for an operator at `limits.maxSessions` (see `AdminSessionLoop` for why).
public final class AdminSocketServer: @unchecked Sendable {  // `fd` and `loop` set once in `start`, before any use from elsewhere
    public let path: String
    private let mode: UInt16
    private let group: String?
    private let handler: @Sendable (String) -> String
    private let streamer: Streamer?

    /// Answers a line with a stream of answers instead of one (`show events --follow`): `nil` when
    /// the line is not a streaming command, else the first answer and the body of the stream, run
    /// on a thread of its own with a `send` that sends one answer and returns false once the client
    /// is gone (an empty answer sends nothing and only asks whether it is still there).
    public typealias Streamer = @Sendable (_ line: String) -> (first: String, follow: @Sendable (_ send: (String) -> Bool) -> Void)?
    /// Sessions, command threads and the read timeout.
    public let limits: AdminSessionLimits
    private var fd: Int32 = -1
    /// The socket file's inode: `stop` removes the path only while it is still this socket's.
    private var inode: ino_t = 0
    private var loop: AdminSessionLoop<String>?

    /// A socket that cannot be set up, named for the operator.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init(
        path: String, mode: UInt16 = 0o600, group: String? = nil, limits: AdminSessionLimits = .init(),
        streamer: Streamer? = nil, handler: @escaping @Sendable (String) -> String
    ) {
        self.streamer = streamer
        self.path = path
        self.limits = limits
        self.mode = mode
        self.group = group
        self.handler = handler
    }

    /// Binds the socket (replacing a stale one, or a running proxy's in a takeover) with its mode
    /// and group, and starts accepting.
    public func start() throws {
        (fd, inode) = try Self.bindUnix(path: path, mode: mode, group: group)
        let timeoutMs = AdminSessionLoop<String>.milliseconds(limits.readTimeout)
        let timeoutText = timeoutMs % 1000 == 0 ? "\(timeoutMs / 1000) s" : "\(timeoutMs) ms"
        let loop = AdminSessionLoop<String>(
            name: "cutover.admin", listenFD: fd, limits: limits,
            refusals: .init(
                busy: Array("ERR busy: \(limits.executors) admin commands are running (the limit); try again\n\n".utf8),
                timedOut: Array("\(AdminClient.timedOutPrefix) \(timeoutText); closing\n\n".utf8)),
            frame: Self.frameLine, answer: { [handler, streamer] line in
                if let stream = streamer?(line) {
                    return .init(bytes: Array((stream.first + "\n\n").utf8), keepOpen: false) { fd in
                        defer { close(fd) }
                        stream.follow { $0.isEmpty ? Self.peerIsThere(fd) : ControlSocket.sendAll(fd, Array(($0 + "\n\n").utf8)) }
                    }
                }
                return .init(bytes: Array((handler(line) + "\n\n").utf8), keepOpen: true)
            })
        self.loop = loop
        loop.start()
    }

    /// One command line at the start of `bytes` (blank lines skipped, a trailing CR dropped).
    static func frameLine(_ bytes: [UInt8]) -> AdminSessionLoop<String>.Framing {
        var start = 0
        while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var line = String(decoding: bytes[start..<newline], as: UTF8.self)
            if line.hasSuffix("\r") { line.removeLast() }
            start = newline + 1
            if !line.trimmingCharacters(in: .whitespaces).isEmpty { return .request(line, consumed: start) }
        }
        // A line longer than this is not a command: refuse instead of buffering without bound.
        if bytes.count > 65_536 { return .refuse(Array("ERR bad-arguments: command line too long\n\n".utf8)) }
        // Blank lines before any command are consumed with the next one; alone they are nothing.
        return .incomplete
    }

    /// Stops accepting and removes the socket file (unless a process taking over bound the path
    /// since); commands in progress still send their answers.
    public func stop() {
        guard fd >= 0 else { return }
        loop?.stop()  // the loop closes the listening descriptor
        fd = -1
        Self.unlinkIfOurs(path, inode: inode)
    }

    /// Removes `path` if it is still the socket with `inode`.
    public static func unlinkIfOurs(_ path: String, inode: ino_t) {
        var info = stat()
        if lstat(path, &info) == 0, info.st_ino == inode { unlink(path) }
    }

    /// A listening Unix socket at `path` with `mode` (and `group`), and the socket file's inode.
    ///
    /// It is bound at a temporary name and renamed into place: the path always names a socket that
    /// accepts (the old one until the rename, the new one after), so a client never finds "no such
    /// file" while a proxy restarts or hands over to its successor. A file at `path` that is not a
    /// socket is refused, never replaced.
    public static func bindUnix(path: String, mode: UInt16, group: String?, backlog: Int32 = 64) throws -> (Int32, ino_t) {
        var info = stat()
        if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) != S_IFSOCK {
            throw Failure(description: "admin socket \(path): a file that is not a socket is in the way")
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let temporary = path + ".\(getpid()).new"
        unlink(temporary)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "admin socket: socket(): \(String(cString: strerror(errno)))") }
        var createdFile = false
        do {
            guard var address = ControlSocket.unixAddress(temporary) else {
                throw Failure(description: "admin socket \(path): path longer than \(MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 8) bytes")
            }
            // The socket must never be reachable with looser permissions, not even for a moment.
            let previousMask = umask(0o177)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            umask(previousMask)
            guard bound == 0 else { throw Failure(description: "admin socket \(path): bind: \(String(cString: strerror(errno)))") }
            createdFile = true
            if let group {
                guard let entry = getgrnam(group) else { throw Failure(description: "admin socket \(path): no group named \(group)") }
                guard chown(temporary, uid_t.max, entry.pointee.gr_gid) == 0 else {
                    throw Failure(description: "admin socket \(path): chown to group \(group): \(String(cString: strerror(errno)))")
                }
            }
            guard chmod(temporary, mode_t(mode)) == 0 else { throw Failure(description: "admin socket \(path): chmod: \(String(cString: strerror(errno)))") }
            guard listen(fd, backlog) == 0 else { throw Failure(description: "admin socket \(path): listen: \(String(cString: strerror(errno)))") }
            guard lstat(temporary, &info) == 0, rename(temporary, path) == 0 else {
                throw Failure(description: "admin socket \(path): rename into place: \(String(cString: strerror(errno)))")
            }
            return (fd, info.st_ino)
        } catch {
            // A half-made socket must not linger: neither the descriptor nor a file others could find.
            close(fd)
            if createdFile { unlink(temporary) }
            throw error
        }
    }

    /// Waits until every command being answered has had its answer sent, at most `timeout`;
    /// false when some were still running. Call after `stop()`.
    public func waitForAnswersInProgress(timeout: Duration) -> Bool {
        loop?.waitForAnswersInProgress(timeout: timeout) ?? true
    }

    /// Sessions open, timed out, evicted and refused since start.
    public var counts: AdminSessionLoop<String>.Counts { loop?.counts ?? .init() }

    /// Whether a streaming client still holds its end: nothing to read (a hang-up reads as end of
    /// file; a streaming client only listens) and no error.
    private static func peerIsThere(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 0
    }
}
