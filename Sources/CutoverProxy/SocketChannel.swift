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
    /// The peer ended its stream (`reset`: or failed) while reading was paused; only with
    /// `watchesHangUp`, once per pause.
    func channelHungUp(_ channel: SocketChannel, reset: Bool)
}

extension ChannelHandler {
    func channelConnected(_ channel: SocketChannel, error: Int32) {}
    func channelHungUp(_ channel: SocketChannel, reset: Bool) {}
}

/// One non-blocking socket watched by its worker's `EventPoller`: reads when asked, queues what the
/// kernel will not take yet, and tells its handler when that queue drains.
///
/// Reading and writing are driven by the handler: a handler that cannot pass bytes on pauses reading,
/// so a slow peer never makes the proxy buffer more than one read's worth per direction.
///
/// With TLS (`SocketChannel+TLS.swift`) the same calls carry plain bytes: the handshake runs inside
/// the channel before the handler hears anything, so sessions and tunnels do not know about TLS.
final class SocketChannel: @unchecked Sendable {  // confined to its worker's queue
    let fd: Int32
    private unowned let poller: EventPoller
    unowned let worker: Worker
    /// The TLS session on this socket, `nil` for plain TCP.
    let tls: TLSStream?
    private var token: UInt64 = 0
    /// The current owner; set to `nil` when the channel changes hands or closes (breaks the cycle).
    var handler: ChannelHandler?

    private(set) var reading = false
    /// While reading is paused, still watch for the peer's end of stream or reset (`EPOLLRDHUP`) and
    /// tell the handler (`channelHungUp`): a client whose request waits (held, connecting, upstream
    /// not taking the body) is not read, yet its going away must release the upstream at once.
    var watchesHangUp = false {
        didSet { if watchesHangUp != oldValue { updateInterest() } }
    }
    /// The hang-up was reported during this pause: level-triggered epoll would repeat it every round.
    private var hangUpReported = false
    private var writeWanted = false
    private(set) var connecting = false
    /// The epoll events currently registered (0 = not in epoll).
    private var interest: UInt32 = 0
    /// Bytes accepted by `write` that the kernel has not taken yet.
    private var pending: [UInt8] = []
    private var pendingOffset = 0
    /// Whether small writes made while the poller handles a round of events wait for the round's
    /// end (`EventPoller.deferWrite`). HTTP sessions set it on their plain sockets; tunnels leave it
    /// off, since a splice would overtake bytes still waiting. Turning it off sends them.
    var defersWrites = false {
        didSet { if !defersWrites { sendDeferredWritesNow() } }
    }
    /// Some of this round's writes wait in the poller: later ones must wait too, in order.
    private var hasDeferredWrites = false
    /// The largest write that waits for the end of the round: requests, heads and small bodies.
    /// Bigger ones are mostly bodies in flight, which a copy would only slow down.
    private static let deferredWriteLimit = 16 * 1024
    private(set) var isClosed = false
    /// A `channelReadable` is queued on the worker (TLS bytes or a failure the socket will not signal).
    var deliveryScheduled = false
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
    /// Bytes sent in the clear as soon as an outbound connect succeeds, before any TLS handshake
    /// and before the handler hears `channelConnected`: the PROXY header (`send_proxy`).
    var preamble: [UInt8] = []

    /// A channel on `fd`; with `tls`, a server-side handshake starts at once, a client-side one
    /// when the connect finishes (`awaitConnect`).
    init(fd: Int32, worker: Worker, tls role: TLSStream.Role? = nil) {
        self.fd = fd
        self.poller = worker.poller
        self.worker = worker
        self.tls = role.map { TLSStream(role: $0, fd: fd) }
        self.token = poller.register(self)
        self.openedRound = poller.round
        if let tls, case .server = tls.role { startHandshake(tls) }
    }

    /// Whether the peer has said nothing since its last answer and nothing is being written to it.
    var isIdleClient: Bool { !isOutbound && !isClosed && !hasPendingOutput && lastWriteRound >= lastReadRound }

    var hasPendingOutput: Bool { pendingOffset < pending.count }

    /// Starts delivering `channelReadable` to the handler.
    func resumeReading() {
        guard !isClosed, !reading else { return }
        reading = true
        hangUpReported = false
        updateInterest()
        if let tls, tls.hasBufferedPlaintext || tls.isFailed { scheduleDelivery() }
    }

    /// Stops `channelReadable` until `resumeReading`; the kernel buffer then pushes back on the peer.
    func pauseReading() {
        guard !isClosed, reading else { return }
        reading = false
        updateInterest()
    }

    var isReadingPaused: Bool { !reading }

    func updateInterest() {
        guard !isClosed else { return }
        var wanted = (reading ? EventPoller.readable : 0) | (writeWanted ? EventPoller.writable : 0)
        if let tls { wanted = tlsInterest(tls, plain: wanted) }
        if !reading && watchesHangUp && !hangUpReported && tls?.isHandshaking != true { wanted |= EventPoller.hungUp }
        poller.update(fd: fd, token: token, from: interest, to: wanted)
        interest = wanted
    }

    /// Called by the poller with the epoll events that fired.
    func handle(events: UInt32) {
        if let tls, tls.isHandshaking, !connecting {
            advanceHandshake(tls)
            return
        }
        if events & (EventPoller.writable | EventPoller.failed) != 0 {
            if writeWanted { writable() }
            if let tls, tls.readWantsWrite { readMayContinue(tls) }
        }
        if events & (EventPoller.readable | EventPoller.failed) != 0 && reading && !isClosed {
            handler?.channelReadable(self)
            if let tls { deliverBufferedPlaintext(tls) }
        } else if events & (EventPoller.hungUp | EventPoller.failed) != 0 && !reading && watchesHangUp && !hangUpReported && !isClosed {
            hangUpReported = true
            updateInterest()
            handler?.channelHungUp(self, reset: events & EventPoller.failed != 0)
        }
    }

    /// Reads once into `buffer`: the byte count, 0 at end of stream, or -1 when nothing is there
    /// (`EAGAIN`) — errors such as a reset are returned as `-2`.
    func read(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        if peerFailed { return -2 }
        if let tls {
            let n = readTLS(tls, into: buffer)
            if n > 0 { lastReadRound = poller.round }
            return n
        }
        // recv, not read: read takes the VFS path (access checks, fsnotify) before reaching the socket.
        let n = Glibc.recv(fd, buffer.baseAddress, buffer.count, 0)
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
        if bytes.count <= Self.deferredWriteLimit && (hasDeferredWrites || (defersWrites && poller.inRound && tls == nil && !hasPendingOutput)) {
            hasDeferredWrites = true
            poller.deferWrite(bytes, to: self)
            return true
        }
        if !sendDeferredWritesNow() { return false }
        if hasPendingOutput || tls?.isHandshaking == true {
            // Bytes for a peer still shaking hands wait here; the handshake's end flushes them.
            pending.append(contentsOf: bytes)
            return true
        }
        return sendNow(bytes)
    }

    /// Sends this round's waiting writes now, so that `hasPendingOutput` tells what the kernel did
    /// not take; false when the peer is gone.
    @discardableResult
    func sendDeferredWritesNow() -> Bool {
        !hasDeferredWrites || poller.sendDeferredWrites(of: self)
    }

    /// Sends a write that waited for the end of the round (`EventPoller.deferWrite`); false when
    /// the peer is gone (the poller tells the owner once the round's output is out).
    func sendDeferred(_ bytes: UnsafeRawBufferPointer) -> Bool {
        hasDeferredWrites = false
        guard !isClosed, !peerFailed else { return true }
        if hasPendingOutput {  // an earlier write of the round went out short: this one queues behind it
            pending.append(contentsOf: bytes)
            return true
        }
        if sendNow(bytes) { return true }
        peerFailed = true
        return false
    }

    /// Tells the owner that a write at the end of the round found the peer gone: it learns it from
    /// its next read, as when a queued write fails (`writable`).
    func deferredWriteFailed() {
        guard !isClosed else { return }
        handler?.channelReadable(self)
    }

    /// Sends `bytes` on a socket with nothing queued, queueing what the kernel does not take.
    private func sendNow(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = transmit(bytes.baseAddress! + offset, bytes.count - offset)
            if n > 0 {
                offset += n
                continue
            }
            if n == -1 { break }
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
        if !sendDeferredWritesNow() { return false }
        if tls != nil { return writeTLS(first, second) }
        if hasPendingOutput {
            pending.append(contentsOf: first)
            pending.append(contentsOf: second)
            return true
        }
        var sent: Int = withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { vectors in  // on the stack, not an array
            vectors[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count)
            vectors[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
            var message = msghdr()
            message.msg_iov = vectors.baseAddress
            message.msg_iovlen = 2
            var sent: Int
            repeat {
                sent = sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            } while sent < 0 && errno == EINTR
            return sent
        }
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

    func setWriteWanted(_ wanted: Bool) {
        guard !isClosed, writeWanted != wanted else { return }
        writeWanted = wanted
        updateInterest()
    }

    /// Sends what the socket takes now: the count, -1 when it is full, -2 when the peer is gone.
    private func transmit(_ base: UnsafeRawPointer, _ count: Int) -> Int {
        if let tls { return tls.write(base, count) }
        while true {
            let n = send(fd, base, count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2
        }
    }

    /// Appends to the output queue and waits for the socket (TLS writes that the socket refused).
    func queue(_ bytes: UnsafeRawBufferPointer) {
        if !hasPendingOutput {
            pending.removeAll(keepingCapacity: true)
            pendingOffset = 0
        }
        pending.append(contentsOf: bytes)
        setWriteWanted(true)
    }

    func writable() {
        if connecting {
            connecting = false
            setWriteWanted(false)
            var error = Socket.pendingError(fd)
            if error == 0, !preamble.isEmpty { error = sendPreamble() }
            if error == 0, let tls {
                // Connected: the handler hears `channelConnected` once the handshake is done.
                startHandshake(tls)
                return
            }
            handler?.channelConnected(self, error: error)
            return
        }
        if !sendDeferredWritesNow() {
            setWriteWanted(false)
            handler?.channelReadable(self)
            return
        }
        while hasPendingOutput {
            let n = pending.withUnsafeBytes { raw in
                transmit(raw.baseAddress! + pendingOffset, raw.count - pendingOffset)
            }
            if n > 0 {
                pendingOffset += n
                continue
            }
            if n == -1 { return }
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

    /// Sends `preamble` whole on a socket that has just connected; an errno when it cannot.
    ///
    /// A new connection's send buffer is empty and the preamble is at most a few hundred bytes, so
    /// the kernel takes it in one call; a short write is reported as a failure rather than queued,
    /// because queued bytes would go out after (and inside) the TLS handshake.
    private func sendPreamble() -> Int32 {
        defer { preamble = [] }
        let sent = preamble.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent == preamble.count { return 0 }
        return sent < 0 ? errno : EAGAIN
    }

    /// Gives the socket up without closing it: the poller forgets it and the descriptor is the
    /// caller's (a PROXY header was read; the session that serves the connection opens its own channel).
    func release() -> Int32 {
        sendDeferredWritesNow()
        poller.update(fd: fd, token: token, from: interest, to: 0)
        interest = 0
        poller.unregister(token: token)
        isClosed = true
        handler = nil
        return fd
    }

    /// Half-closes the sending side (propagates a peer's end of stream); over TLS, close_notify first.
    func shutdownWrite() {
        guard !isClosed else { return }
        sendDeferredWritesNow()
        tls?.sendCloseNotify()
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes the socket and forgets it in the poller.
    func close() {
        guard !isClosed else { return }
        // What this round wrote goes out first: an answer followed by a close, typically.
        sendDeferredWritesNow()
        poller.update(fd: fd, token: token, from: interest, to: 0)
        interest = 0
        poller.unregister(token: token)
        isClosed = true
        handler = nil
        pending = []
        pendingOffset = 0
        if let tls { finishTLS(tls) }
        Glibc.close(fd)
    }
}
