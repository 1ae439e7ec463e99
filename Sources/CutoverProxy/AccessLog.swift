import CutoverCore
import Foundation
import Glibc

/// The per-request log: one line per exchange, buffered per worker and handed on the worker's sweep
/// (or when a buffer is large) to a `LogWriter`, whose own thread writes it: a request costs a memcpy,
/// and a slow destination costs dropped lines (counted), never a blocked worker.
final class AccessLog: @unchecked Sendable {  // buffer `i` is touched only on worker `i`'s queue
    private let fd: Int32
    private let ownsDescriptor: Bool
    private let writer: LogWriter
    private var buffers: [[UInt8]]
    private var lineCounts: [Int]
    private let format: AccessLogFormat
    /// One encoder per worker for `json` (an encoder is not `Sendable`; each stays on its worker's queue).
    private let encoders: [JSONEncoder]

    /// Bytes a worker collects before handing them on without waiting for its sweep.
    static let handOverBytes = 32 * 1024
    /// Bytes that may wait for the writer thread, all workers together (~40,000 lines).
    static let writerCapacity = 4 << 20

    /// Opens `destination` (`"stderr"` or a file path, appended to) for `workers` workers, writing `format`.
    init(destination: String, format: AccessLogFormat = .text, workers: Int) throws {
        self.format = format
        encoders = format == .json ? (0..<workers).map { _ in JSONCoding.encoder } : []
        if destination == "stderr" {
            fd = STDERR_FILENO
            ownsDescriptor = false
            // One writer per descriptor keeps access lines and the proxy's own lines whole.
            writer = LogWriter.standardError
        } else {
            fd = open(destination, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw Socket.Failure(call: "open access log \(destination)", code: errno) }
            ownsDescriptor = true
            writer = LogWriter(fd: fd, capacity: AccessLog.writerCapacity, name: "cutover.log.access")
        }
        buffers = Array(repeating: [], count: workers)
        lineCounts = Array(repeating: 0, count: workers)
    }

    deinit {
        if ownsDescriptor {
            writer.flush()
            close(fd)
        }
    }

    /// Lines dropped because the writer could not keep up, since start.
    var droppedLines: Int { writer.droppedLines }

    /// Appends `record`'s line for worker `worker`, in the log's format; handed on at the next sweep
    /// or when the buffer is large.
    ///
    /// - Important: call on worker `worker`'s queue.
    func append(worker: Int, _ record: AccessRecord) {
        switch format {
        case .text:
            buffers[worker].append(contentsOf: record.textLine.utf8)
        case .json:
            // Only non-finite doubles fail to encode, and a record has none.
            guard let data = try? encoders[worker].encode(record) else { return }
            buffers[worker].append(contentsOf: data)
        }
        buffers[worker].append(UInt8(ascii: "\n"))
        lineCounts[worker] += 1
        if buffers[worker].count > AccessLog.handOverBytes { flush(worker: worker) }
    }

    /// Hands worker `worker`'s lines to the writer thread; never blocks on I/O.
    ///
    /// - Important: call on worker `worker`'s queue.
    func flush(worker: Int) {
        guard !buffers[worker].isEmpty else { return }
        let lines = lineCounts[worker]
        _ = buffers[worker].withUnsafeBytes { writer.submit($0, lines: lines) }
        buffers[worker].removeAll(keepingCapacity: true)
        lineCounts[worker] = 0
    }

    /// Writes everything handed on so far (shutdown, after every worker flushed).
    func flushWriter() {
        writer.flush()
    }
}

/// The proxy's own log of state changes and errors, one timestamped line each to standard error,
/// written by `LogWriter.standardError`'s thread (a worker logging a 502 never waits on the terminal).
enum Log {
    static func info(_ message: String) { emit("info", message) }
    static func warning(_ message: String) { emit("warn", message) }
    static func error(_ message: String) { emit("error", message) }

    /// Writes every queued line now; call before the process exits.
    static func flush() { LogWriter.standardError.flush() }

    private static func emit(_ level: String, _ message: String) {
        var line = "\(Timestamp.now()) \(level) \(message)\n"
        _ = line.withUTF8 { LogWriter.standardError.submit(UnsafeRawBufferPointer($0), lines: 1) }
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
