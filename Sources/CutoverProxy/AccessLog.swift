import Foundation
import Glibc

/// The per-request log: one line per exchange, buffered per worker and flushed on the worker's sweep,
/// so logging costs a memcpy per request instead of a system call.
final class AccessLog: @unchecked Sendable {  // buffer `i` is touched only on worker `i`'s queue
    private let fd: Int32
    private let ownsDescriptor: Bool
    private var buffers: [[UInt8]]

    /// Opens `destination` (`"stderr"` or a file path, appended to) for `workers` workers.
    init(destination: String, workers: Int) throws {
        if destination == "stderr" {
            fd = STDERR_FILENO
            ownsDescriptor = false
        } else {
            fd = open(destination, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Socket.Failure(call: "open access log \(destination)", code: errno) }
            ownsDescriptor = true
        }
        buffers = Array(repeating: [], count: workers)
    }

    deinit {
        if ownsDescriptor { close(fd) }
    }

    /// Appends one line for worker `worker`; flushed at the next sweep or when the buffer is large.
    func append(worker: Int, _ line: String) {
        buffers[worker].append(contentsOf: line.utf8)
        buffers[worker].append(UInt8(ascii: "\n"))
        if buffers[worker].count > 32 * 1024 { flush(worker: worker) }
    }

    func flush(worker: Int) {
        guard !buffers[worker].isEmpty else { return }
        buffers[worker].withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
        buffers[worker].removeAll(keepingCapacity: true)
    }
}

/// The proxy's own log of state changes and errors, one timestamped line each to standard error.
enum Log {
    static func info(_ message: String) { emit("info", message) }
    static func warning(_ message: String) { emit("warn", message) }
    static func error(_ message: String) { emit("error", message) }

    private static func emit(_ level: String, _ message: String) {
        let line = "\(Timestamp.now()) \(level) \(message)\n"
        _ = line.utf8CString.withUnsafeBufferPointer { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
    }
}

/// Wall-clock timestamps for logs and events, in UTC ISO 8601 with milliseconds.
enum Timestamp {
    static func now() -> String { format(Date()) }

    static func format(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(date.timeIntervalSince1970 * 1000) % 1000
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}
