import Foundation
import Glibc
import Synchronization

/// One log destination written by a thread of its own, so that no worker queue ever waits on a
/// `write(2)`: callers append to a bounded buffer and return; the thread drains it.
///
/// A full buffer (a stalled terminal, a slow disk, a flood of lines) drops what does not fit and
/// counts the lines, for `/metrics`: under overload the log loses lines, never the proxy its
/// latency. A worker that wrote `stderr` synchronously blocked every connection it owns while a
/// piped `stderr` was full.
final class LogWriter: Sendable {
    private struct Pending {
        var bytes: [UInt8] = []
        var droppedLines = 0
    }

    private let fd: Int32
    private let capacity: Int
    private let pending = Mutex(Pending())
    /// Held while bytes are being written, so a synchronous `flush` keeps the order of lines.
    private let writing = Mutex(())
    private let wake = DispatchSemaphore(value: 0)

    /// The proxy's own log (state changes, warnings) on standard error.
    static let standardError = LogWriter(fd: STDERR_FILENO, capacity: 1 << 20, name: "cutover.log.stderr")

    /// Starts the writer thread for `fd`; at most `capacity` bytes wait at any time.
    init(fd: Int32, capacity: Int, name: String) {
        self.fd = fd
        self.capacity = capacity
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.start()
    }

    /// Lines dropped because the buffer was full, since start.
    var droppedLines: Int { pending.withLock { $0.droppedLines } }

    /// Queues `bytes` (`lines` whole lines) for the writer thread; never blocks on I/O.
    ///
    /// - Returns: false when they did not fit and were dropped (and counted).
    @discardableResult
    func submit(_ bytes: UnsafeRawBufferPointer, lines: Int) -> Bool {
        let (accepted, wasEmpty) = pending.withLock { state -> (Bool, Bool) in
            guard state.bytes.count + bytes.count <= capacity else {
                state.droppedLines += lines
                return (false, false)
            }
            let wasEmpty = state.bytes.isEmpty
            state.bytes.append(contentsOf: bytes)
            return (true, wasEmpty)
        }
        // One wake-up per batch: the thread takes everything queued when it runs.
        if wasEmpty { wake.signal() }
        return accepted
    }

    /// Writes whatever is queued now, on the caller's thread (before the process exits).
    func flush() {
        writing.withLock { _ in drain() }
    }

    private func run() {
        while true {
            wake.wait()
            writing.withLock { _ in drain() }
        }
    }

    private func drain() {
        let batch = pending.withLock { state -> [UInt8] in
            var taken: [UInt8] = []
            swap(&taken, &state.bytes)
            return taken
        }
        batch.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
        }
    }
}
