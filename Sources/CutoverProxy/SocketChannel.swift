import Dispatch
import Glibc

/// What a channel tells the object that currently owns it.
///
/// - Important: called on the channel's worker queue.
protocol ChannelHandler: AnyObject {
    /// Bytes (or end of stream) can be read.
    func channelReadable(_ channel: SocketChannel)
    /// All output queued with `write` has reached the kernel.
    func channelDrained(_ channel: SocketChannel)
    /// A non-blocking connect finished; `error` is 0 on success.
    func channelConnected(_ channel: SocketChannel, error: Int32)
}

extension ChannelHandler {
    func channelConnected(_ channel: SocketChannel, error: Int32) {}
}

/// One non-blocking socket on Dispatch sources: reads when asked, queues what the kernel will not
/// take yet, and tells its handler when that queue drains.
///
/// Reading and writing are driven by the handler: a handler that cannot pass bytes on pauses reading,
/// so a slow peer never makes the proxy buffer more than one read's worth per direction.
final class SocketChannel: @unchecked Sendable {  // confined to `queue` (its worker's)
    let fd: Int32
    let queue: DispatchQueue
    /// The current owner; set to `nil` when the channel changes hands or closes (breaks the cycle).
    var handler: ChannelHandler?

    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var readPaused = true
    private var writeArmed = false
    private var connecting = false
    /// Bytes accepted by `write` that the kernel has not taken yet.
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    private(set) var isClosed = false
    /// Sources still to be cancelled before the descriptor may be closed.
    private var liveSources = 0

    init(fd: Int32, queue: DispatchQueue) {
        self.fd = fd
        self.queue = queue
    }

    var hasPendingOutput: Bool { pendingOffset < pending.count }

    /// Starts delivering `channelReadable` to the handler.
    func resumeReading() {
        guard !isClosed, readPaused else { return }
        readPaused = false
        if let source = readSource {
            source.resume()
        } else {
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [unowned self] in
                self.handler?.channelReadable(self)
            }
            source.setCancelHandler { [self] in self.sourceCancelled() }
            liveSources += 1
            readSource = source
            source.activate()
        }
    }

    /// Stops `channelReadable` until `resumeReading`; the kernel buffer then pushes back on the peer.
    func pauseReading() {
        guard !isClosed, !readPaused, let source = readSource else { return }
        readPaused = true
        source.suspend()
    }

    var isReadingPaused: Bool { readPaused }

    /// Reads once into `buffer`: the byte count, 0 at end of stream, or -1 when nothing is there
    /// (`EAGAIN`) — errors such as a reset are returned as `-2`.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
        if n >= 0 { return n }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2
    }

    /// Writes `bytes`, queueing what the kernel does not take; false when the peer is gone.
    @discardableResult
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed else { return false }
        guard bytes.count > 0 else { return true }
        if hasPendingOutput {
            pending.append(contentsOf: bytes)
            return true
        }
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n > 0 {
                offset += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
            if n < 0 && errno == EINTR { continue }
            return false
        }
        if offset < bytes.count {
            pending.removeAll(keepingCapacity: true)
            pendingOffset = 0
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            armWrite()
        }
        return true
    }

    /// Writes a byte array (see `write(_:)`).
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Waits for a non-blocking connect to finish, then calls `channelConnected`.
    func awaitConnect() {
        connecting = true
        armWrite()
    }

    private func armWrite() {
        guard !writeArmed, !isClosed else { return }
        writeArmed = true
        if let source = writeSource {
            source.resume()
            return
        }
        let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [unowned self] in self.writable() }
        source.setCancelHandler { [self] in self.sourceCancelled() }
        liveSources += 1
        writeSource = source
        source.activate()
    }

    private func disarmWrite() {
        guard writeArmed, let source = writeSource else { return }
        writeArmed = false
        source.suspend()
    }

    private func writable() {
        if connecting {
            connecting = false
            disarmWrite()
            handler?.channelConnected(self, error: Socket.pendingError(fd))
            return
        }
        while hasPendingOutput {
            let n = pending.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + pendingOffset, raw.count - pendingOffset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                pendingOffset += n
                continue
            }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return }
            // The peer is gone: the owner learns it from its next read.
            pending.removeAll()
            pendingOffset = 0
            disarmWrite()
            handler?.channelReadable(self)
            return
        }
        // Large bursts should not pin their peak size for the life of a keep-alive connection.
        if pending.capacity > 65_536 {
            pending = []
        } else {
            pending.removeAll(keepingCapacity: true)
        }
        pendingOffset = 0
        disarmWrite()
        handler?.channelDrained(self)
    }

    /// Half-closes the sending side (propagates a peer's end of stream).
    func shutdownWrite() {
        guard !isClosed else { return }
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes the socket: sources are cancelled and the descriptor closed once they have stopped.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        handler = nil
        pending = []
        pendingOffset = 0
        if liveSources == 0 {
            Glibc.close(fd)
            return
        }
        // A suspended source never delivers its cancellation: resume it first.
        if let source = readSource {
            source.cancel()
            if readPaused { source.resume() }
        }
        if let source = writeSource {
            source.cancel()
            if !writeArmed { source.resume() }
        }
    }

    private func sourceCancelled() {
        liveSources -= 1
        if liveSources == 0 {
            readSource = nil
            writeSource = nil
            Glibc.close(fd)
        }
    }
}
