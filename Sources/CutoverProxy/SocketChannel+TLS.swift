import CutoverCore
import Glibc

/// TLS inside the channel: the handshake is driven by the same epoll readiness as every other
/// byte, and the handler only hears of the channel once it carries plain bytes (a server-side
/// channel's first `channelReadable`, a client-side channel's `channelConnected`).
extension SocketChannel {
    /// A channel for a new upstream connection to `target`: TLS when the endpoint is configured so.
    convenience init(upstreamFD fd: Int32, to target: EndpointTarget, worker: Worker) {
        if let context = target.upstreamTLS as? TLSClientContext {
            self.init(fd: fd, worker: worker, tls: .client(context, endpoint: target.qualifiedName))
        } else {
            self.init(fd: fd, worker: worker)
        }
    }

    /// Whether the peer is reached over TLS (a tunnel then copies instead of splicing).
    var isTLS: Bool { tls != nil }

    /// For a channel that terminates TLS: `.some(nil)` while the handshake runs, then the server
    /// name the client sent (`.absent` without SNI); `nil` for a plain channel, whose bytes are the
    /// ClientHello itself. A failed handshake reads as `.absent`: the owner's next read fails.
    var terminatedServerName: TLSClientHello.ServerName?? {
        guard let tls, case .server = tls.role else { return nil }
        if tls.isHandshaking { return .some(nil) }
        return .some(tls.serverName.map { .found(Array($0.utf8)) } ?? .absent)
    }

    /// Why the TLS handshake failed, in words, if it did (for a 502's body and the log).
    var tlsFailure: String? { tls?.failureText }

    func startHandshake(_ tls: TLSStream) {
        tls.channel = self
        tls.startClock(now: monotonicMilliseconds())
        worker.register(tls)
        advanceHandshake(tls)
    }

    /// One handshake step; on its end, tells the handler what it is waiting for.
    func advanceHandshake(_ tls: TLSStream) {
        switch tls.handshake() {
        case .wantRead, .wantWrite:
            updateInterest()
        case .done:
            worker.unregister(tls)
            updateInterest()
            if case .client = tls.role {
                handler?.channelConnected(self, error: 0)
                return
            }
            // Bytes written during the handshake (a server that speaks first, in TCP mode) go out now.
            if hasPendingOutput { setWriteWanted(true) }
            if reading { handler?.channelReadable(self) }
        case .failed:
            handshakeEnded(tls)
        }
    }

    /// The handshake deadline passed (or the worker closes everything): the handler learns it as a failure.
    func handshakeAbandoned(reason: String) {
        guard let tls, tls.isHandshaking, !isClosed else { return }
        tls.abandon(reason: reason)
        handshakeEnded(tls)
    }

    private func handshakeEnded(_ tls: TLSStream) {
        worker.unregister(tls)
        updateInterest()  // a failed session is watched for nothing: its owner reads -2 and closes
        if case .client = tls.role {
            handler?.channelConnected(self, error: EPROTO)
        } else if reading {
            handler?.channelReadable(self)
        }
    }

    /// The epoll events a TLS channel needs: the handshake's, else the handler's plus a write a read
    /// is waiting on.
    func tlsInterest(_ tls: TLSStream, plain: UInt32) -> UInt32 {
        if tls.isFailed { return 0 }
        if tls.isHandshaking && !connecting {
            return tls.handshakeWantsWrite ? EventPoller.writable : EventPoller.readable
        }
        return tls.readWantsWrite ? plain | EventPoller.writable : plain
    }

    func readTLS(_ tls: TLSStream, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let waiting = tls.readWantsWrite
        let n = tls.read(into: buffer)
        if tls.readWantsWrite != waiting { updateInterest() }
        return n
    }

    /// The socket became writable for a read that needed it: read again.
    func readMayContinue(_ tls: TLSStream) {
        tls.readWantsWrite = false
        updateInterest()
        if reading && !isClosed { handler?.channelReadable(self) }
    }

    /// OpenSSL may hold decrypted bytes the socket will never signal again (a record bigger than
    /// the handler's read): hand them on now, a bounded number of times, then from the queue.
    func deliverBufferedPlaintext(_ tls: TLSStream) {
        var rounds = 0
        while tls.hasBufferedPlaintext && reading && !isClosed {
            rounds += 1
            if rounds > 16 {
                scheduleDelivery()
                return
            }
            handler?.channelReadable(self)
        }
    }

    /// Calls `channelReadable` from the worker's queue (never from inside the caller's own call).
    func scheduleDelivery() {
        guard !deliveryScheduled else { return }
        deliveryScheduled = true
        worker.queue.async { [self] in
            deliveryScheduled = false
            guard reading, !isClosed else { return }
            handler?.channelReadable(self)
            if let tls { deliverBufferedPlaintext(tls) }
        }
    }

    /// Two buffers as one TLS write (one record, one packet for a small response).
    func writeTLS(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        if hasPendingOutput || tls?.isHandshaking == true {
            queue(first)
            queue(second)
            return true
        }
        // Taken out of the worker (not copied) so appending does not copy its storage.
        var joined: [UInt8] = []
        swap(&joined, &worker.tlsJoinBuffer)
        joined.removeAll(keepingCapacity: true)
        joined.append(contentsOf: first)
        joined.append(contentsOf: second)
        let written = joined.withUnsafeBytes { write($0) }
        worker.tlsJoinBuffer = joined
        return written
    }

    func finishTLS(_ tls: TLSStream) {
        worker.unregister(tls)
        tls.sendCloseNotify()
        tls.free()
    }
}
