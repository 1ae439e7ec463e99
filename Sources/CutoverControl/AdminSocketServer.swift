import Dispatch
import Foundation
import Glibc

/// A Unix stream socket that answers one command per line: each answer is the handler's text
/// followed by an empty line, so a client knows where a multi-line answer ends.
///
/// Admin traffic is rare and may block (`switch --wait`), so each admin connection gets a plain
/// blocking loop on its own queue, well away from the workers.
public final class AdminSocketServer: @unchecked Sendable {  // `fd` and `source` set once in `start`
    public let path: String
    private let mode: UInt16
    private let group: String?
    private let handler: @Sendable (String) -> String
    private let streamer: Streamer?

    /// Answers a line with a stream of answers instead of one (`show events --follow`); returns
    /// false when the line is not a streaming command. `send` sends one answer and returns false
    /// once the client is gone; an empty answer sends nothing and only asks whether it is still there.
    public typealias Streamer = @Sendable (_ line: String, _ send: (String) -> Bool) -> Bool
    private var fd: Int32 = -1
    private var source: DispatchSourceRead?
    private let acceptQueue = DispatchQueue(label: "cutover.admin.accept")
    /// Entered for each command from reading its line to sending its answer, so that a stopping
    /// process can let the answers in progress reach their clients.
    private let answering = DispatchGroup()

    /// A socket that cannot be set up, named for the operator.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init(path: String, mode: UInt16 = 0o600, group: String? = nil, streamer: Streamer? = nil, handler: @escaping @Sendable (String) -> String) {
        self.streamer = streamer
        self.path = path
        self.mode = mode
        self.group = group
        self.handler = handler
    }

    /// Binds the socket (replacing a stale one) with its mode and group, and starts accepting.
    public func start() throws {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw Failure(description: "admin socket \(path): a file that is not a socket is in the way")
            }
            unlink(path)
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "admin socket: socket(): \(String(cString: strerror(errno)))") }
        var createdFile = false
        do {
            guard var address = ControlSocket.unixAddress(path) else {
                throw Failure(description: "admin socket \(path): path longer than \(MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1) bytes")
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
                guard chown(path, uid_t.max, entry.pointee.gr_gid) == 0 else {
                    throw Failure(description: "admin socket \(path): chown to group \(group): \(String(cString: strerror(errno)))")
                }
            }
            guard chmod(path, mode_t(mode)) == 0 else { throw Failure(description: "admin socket \(path): chmod: \(String(cString: strerror(errno)))") }
            guard listen(fd, 64) == 0 else { throw Failure(description: "admin socket \(path): listen: \(String(cString: strerror(errno)))") }
        } catch {
            // A half-made socket must not linger: neither the descriptor nor a file others could find.
            close(fd)
            fd = -1
            if createdFile { unlink(path) }
            throw error
        }
        _ = fcntl(fd, F_SETFL, O_NONBLOCK)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: acceptQueue)
        let listenFD = fd
        let handler = self.handler
        let streamer = self.streamer
        let answering = self.answering
        source.setEventHandler {
            while true {
                let client = accept(listenFD, nil, nil)
                if client < 0 { break }
                DispatchQueue(label: "cutover.admin.connection").async { AdminSocketServer.serve(client, handler: handler, streamer: streamer, answering: answering) }
            }
        }
        self.source = source
        source.activate()
    }

    /// Stops accepting and removes the socket file.
    public func stop() {
        source?.cancel()
        source = nil
        if fd >= 0 {
            close(fd)
            fd = -1
            unlink(path)
        }
    }

    /// Waits until every command being answered has had its answer sent, at most `timeout`;
    /// false when some were still running. Call after `stop()`.
    public func waitForAnswersInProgress(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        return answering.wait(timeout: .now() + Double(seconds) + Double(attoseconds) / 1e18) == .success
    }

    private static func serve(_ fd: Int32, handler: @Sendable (String) -> String, streamer: Streamer?, answering: DispatchGroup) {
        defer { close(fd) }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            pending.append(contentsOf: buffer[0..<n])
            // A line longer than this is not a command: refuse instead of buffering without bound.
            if pending.count > 65_536 && !pending.contains(UInt8(ascii: "\n")) {
                _ = ControlSocket.sendAll(fd, Array("ERR bad-arguments: command line too long\n\n".utf8))
                return
            }
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                var line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                if line.hasSuffix("\r") { line.removeLast() }
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                // A stream ends the connection, and is not an answer a stopping process waits for.
                if let streamer, streamer(line, { $0.isEmpty ? peerIsThere(fd) : ControlSocket.sendAll(fd, Array(($0 + "\n\n").utf8)) }) { return }
                answering.enter()
                let answer = handler(line)
                let sent = ControlSocket.sendAll(fd, Array((answer + "\n\n").utf8))
                answering.leave()
                guard sent else { return }
            }
        }
    }

    /// Whether the client still holds its end: nothing to read (a hang-up reads as end of file; a
    /// streaming client only listens) and no error.
    private static func peerIsThere(_ fd: Int32) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 0
    }
}
