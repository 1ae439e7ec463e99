import Foundation
import Glibc

/// The client side of the admin protocol: send a line, read the answer up to its empty line.
public final class AdminClient {
    private var fd: Int32
    private let path: String
    private var buffered: [UInt8] = []

    /// A socket that cannot be reached, in words for the operator.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let timeout: Duration?

    /// Connects to the admin socket at `path`; with a `timeout`, a send or an answer that takes
    /// longer fails instead of waiting (scripts and the agent; `ctl` waits, for `switch --wait`).
    public init(path: String, timeout: Duration? = nil) throws {
        self.timeout = timeout
        self.path = path
        fd = try Self.connect(path: path, timeout: timeout)
    }

    private static func connect(path: String, timeout: Duration?) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket(): \(String(cString: strerror(errno)))") }
        if let timeout {
            let milliseconds = Self.milliseconds(timeout)
            var limit = timeval(tv_sec: Int(milliseconds / 1000), tv_usec: Int(milliseconds % 1000) * 1000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }
        guard var address = ControlSocket.unixAddress(path) else {
            close(fd)
            throw Failure(description: "admin socket path too long: \(path)")
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot connect to admin socket \(path): \(reason)")
        }
        return fd
    }

    deinit { close(fd) }

    /// Sends one command line and returns its answer (without the terminating empty line).
    ///
    /// A session left idle past the server's read timeout (an operator at the `ctl` prompt) was
    /// closed with `ERR timeout` before this line was read, so the line ran nowhere: it is sent
    /// again once on a new connection.
    public func send(_ line: String) throws -> String {
        let answer = try sendOnce(line)
        guard answer.hasPrefix(Self.timedOutPrefix) else { return answer }
        close(fd)
        buffered = []
        fd = try Self.connect(path: path, timeout: timeout)
        return try sendOnce(line)
    }

    /// How `AdminSocketServer` says it closed an idle session (the code `timeout`).
    static let timedOutPrefix = "ERR timeout: no command line within"

    private func sendOnce(_ line: String) throws -> String {
        // A server that refuses (`ERR busy`) may answer and close before reading the line: the
        // answer is still there to read.
        let sent = ControlSocket.sendAll(fd, Array((line + "\n").utf8))
        return try nextAnswer(sent: sent)
    }

    /// Reads the next answer: the one to the line just sent, or, after a streaming command
    /// (`show events --follow`), the next one the stream sends.
    public func nextAnswer() throws -> String {
        try nextAnswer(sent: true)
    }

    private func nextAnswer(sent: Bool) throws -> String {
        while true {
            if let end = terminator() {
                let answer = String(decoding: buffered[..<end], as: UTF8.self)
                buffered.removeSubrange(..<(end + 2))
                return answer
            }
            var chunk = [UInt8](repeating: 0, count: 16_384)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), let timeout {
                throw Failure(description: "no answer within \(Self.milliseconds(timeout)) ms")
            }
            guard n > 0 else { throw Failure(description: sent ? "admin socket closed before answering" : "admin socket closed while sending") }
            buffered.append(contentsOf: chunk[0..<n])
        }
    }

    // Core's `Duration.milliseconds` is out of reach here: this target depends on nothing of ours.
    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Index of the "\n\n" that ends an answer.
    private func terminator() -> Int? {
        guard buffered.count >= 2 else { return nil }
        for i in 0..<(buffered.count - 1) where buffered[i] == 10 && buffered[i + 1] == 10 {
            return i
        }
        return nil
    }
}
