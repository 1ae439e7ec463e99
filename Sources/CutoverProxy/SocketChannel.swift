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

/// One non-blocking socket watched by its worker's `EventPoller`: reads when asked, queues what the
/// kernel will not take yet, and tells its handler when that queue drains.
///
/// Reading and writing are driven by the handler: a handler that cannot pass bytes on pauses reading,
/// so a slow peer never makes the proxy buffer more than one read's worth per direction.
final class SocketChannel: @unchecked Sendable {  // confined to its worker's queue
    let fd: Int32
    private unowned let poller: EventPoller
    private var token: UInt64 = 0
    /// The current owner; set to `nil` when the channel changes hands or closes (breaks the cycle).
    var handler: ChannelHandler?

    private var reading = false
    private var writeWanted = false
    private var connecting = false
    /// The epoll events currently registered (0 = not in epoll).
    private var interest: UInt32 = 0
    /// Bytes accepted by `write` that the kernel has not taken yet.
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    private(set) var isClosed = false
    /// A send failed because the peer is gone (reset, or closed while we wrote). The send consumed
    /// the socket's error, so a read would now see a plain end of stream; `read` reports the failure
    /// instead, so the owner releases both sides at once rather than wait to flush what never will.
    private var peerFailed = false
    /// The poller round of the last byte read and of the last write (see `EventPoller.round`): at
    /// `max_connections` a client channel whose peer has sent nothing since it was last answered
    /// (or nothing at all) is idle, and the one idle longest may be closed to make room.
    private(set) var lastReadRound: UInt64 = 0
    private(set) var lastWriteRound: UInt64 = 0
    private(set) var openedRound: UInt64 = 0
    /// Whether the proxy connected this socket (an upstream) rather than accepted it.
    private(set) var isOutbound = false

    init(fd: Int32, worker: Worker) {
        self.fd = fd
        self.poller = worker.poller
        self.token = poller.register(self)
        self.openedRound = poller.round
    }

    /// Whether the peer has said nothing since its last answer and nothing is being written to it.
    var isIdleClient: Bool { !isOutbound && !isClosed && !hasPendingOutput && lastWriteRound >= lastReadRound }

    var hasPendingOutput: Bool { pendingOffset < pending.count }

    /// Starts delivering `channelReadable` to the handler.
    func resumeReading() {
        guard !isClosed, !reading else { return }
        reading = true
        updateInterest()
    }

    /// Stops `channelReadable` until `resumeReading`; the kernel buffer then pushes back on the peer.
    func pauseReading() {
        guard !isClosed, reading else { return }
        reading = false
        updateInterest()
    }

    var isReadingPaused: Bool { !reading }

    private func updateInterest() {
        let wanted = (reading ? EventPoller.readable : 0) | (writeWanted ? EventPoller.writable : 0)
        poller.update(fd: fd, token: token, from: interest, to: wanted)
        interest = wanted
    }

    /// Called by the poller with the epoll events that fired.
    func handle(events: UInt32) {
        if events & (EventPoller.writable | EventPoller.failed) != 0 && writeWanted {
            writable()
        }
        if events & (EventPoller.readable | EventPoller.failed) != 0 && reading && !isClosed {
            handler?.channelReadable(self)
        }
    }

    /// Reads once into `buffer`: the byte count, 0 at end of stream, or -1 when nothing is there
    /// (`EAGAIN`) — errors such as a reset are returned as `-2`.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if peerFailed { return -2 }
        let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
        if n > 0 { lastReadRound = poller.round }
        if n >= 0 { return n }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2
    }

    /// Writes `bytes`, queueing what the kernel does not take; false when the peer is gone.
    @discardableResult
    func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed else { return false }
        guard bytes.count > 0 else { return true }
        lastWriteRound = poller.round
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
            setWriteWanted(true)
        }
        return true
    }

    /// Writes two buffers with one `sendmsg` (a response head and the first body bytes, say), so a
    /// small response costs one system call and one packet instead of two.
    @discardableResult
    func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed else { return false }
        if first.isEmpty { return write(second) }
        if second.isEmpty { return write(first) }
        lastWriteRound = poller.round
        if hasPendingOutput {
            pending.append(contentsOf: first)
            pending.append(contentsOf: second)
            return true
        }
        var vectors = [
            iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count),
        ]
        var sent: Int
        repeat {
            sent = vectors.withUnsafeMutableBufferPointer { buffer in
                var message = msghdr()
                message.msg_iov = buffer.baseAddress
                message.msg_iovlen = 2
                return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            }
        } while sent < 0 && errno == EINTR
        if sent < 0 {
            guard errno == EAGAIN || errno == EWOULDBLOCK else { return false }
            sent = 0
        }
        if sent == first.count + second.count { return true }
        pending.removeAll(keepingCapacity: true)
        pendingOffset = 0
        if sent < first.count {
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: first[sent...]))
            pending.append(contentsOf: second)
        } else {
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: second[(sent - first.count)...]))
        }
        setWriteWanted(true)
        return true
    }

    /// Writes a byte array (see `write(_:)`).
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Calls `channelDrained` once the socket can take more bytes (for writes made around this
    /// channel, such as `splice`).
    func awaitWritable() {
        setWriteWanted(true)
    }

    /// Waits for a non-blocking connect to finish, then calls `channelConnected`.
    func awaitConnect() {
        isOutbound = true
        connecting = true
        setWriteWanted(true)
    }

    private func setWriteWanted(_ wanted: Bool) {
        guard !isClosed, writeWanted != wanted else { return }
        writeWanted = wanted
        updateInterest()
    }

    private func writable() {
        if connecting {
            connecting = false
            setWriteWanted(false)
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
            peerFailed = true
            pending.removeAll()
            pendingOffset = 0
            setWriteWanted(false)
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
        setWriteWanted(false)
        handler?.channelDrained(self)
    }

    /// Half-closes the sending side (propagates a peer's end of stream).
    func shutdownWrite() {
        guard !isClosed else { return }
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes the socket and forgets it in the poller.
    func close() {
        guard !isClosed else { return }
        poller.update(fd: fd, token: token, from: interest, to: 0)
        interest = 0
        poller.unregister(token: token)
        isClosed = true
        handler = nil
        pending = []
        pendingOffset = 0
        Glibc.close(fd)
    }
}
