import CutoverCore
import Glibc

/// The stage before a session on a `proxy_protocol` listener: reads the PROXY header the balancer
/// in front sends first, then hands the socket and the client it names to the HTTP session or TCP
/// tunnel, which never know there was a header.
///
/// Why the header is peeked (`MSG_PEEK`) and then consumed to its exact length: what follows it is
/// the connection's own bytes, an HTTP request or a TLS ClientHello, and TLS runs inside the next
/// stage's channel straight off the socket. Reading no byte past the header leaves those bytes
/// where the next stage (and OpenSSL) expect them, so no "initial bytes" need threading through.
/// While the parser says `incomplete` every byte seen is header, so those are consumed at once and
/// a header arriving in pieces does not keep the socket readable with nothing new.
///
/// Bounded by `timeouts.header_read`; a missing, malformed or late header closes the connection
/// and is counted (`cutover_proxy_protocol_errors_total`).
final class ProxyProtocolReader: WorkerConnection, ChannelHandler, @unchecked Sendable {  // confined to worker.queue
    private let channel: SocketChannel
    private let worker: Worker
    private unowned let runtime: ProxyRuntime
    /// Starts the stage that serves the connection: the socket, and who it is from.
    private let serve: (Int32, ProxyProtocol.Addresses?) -> Void
    /// Header bytes consumed so far (the header has not ended yet).
    private var header: [UInt8] = []
    private(set) var deadline: UInt64
    private var done = false

    init(fd: Int32, worker: Worker, runtime: ProxyRuntime, serve: @escaping (Int32, ProxyProtocol.Addresses?) -> Void) {
        self.channel = SocketChannel(fd: fd, worker: worker)
        self.worker = worker
        self.runtime = runtime
        self.serve = serve
        self.deadline = monotonicMilliseconds() + UInt64(worker.settings.timeouts.headerRead.milliseconds)
    }

    func start() {
        worker.register(self)
        channel.handler = self
        channel.resumeReading()
    }

    var servingTarget: EndpointTarget? { nil }

    func channelReadable(_ channel: SocketChannel) {
        guard !done else { return }
        let room = min(worker.scratch.count, ProxyProtocol.maxV2Length - header.count)
        let n = recv(channel.fd, worker.scratch.baseAddress, room, Int32(MSG_PEEK))
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            return fail("\(String(cString: strerror(errno))) before the PROXY header")
        }
        if n == 0 { return fail(header.isEmpty ? "closed before sending the PROXY header" : "closed inside the PROXY header") }
        let peeked = UnsafeRawBufferPointer(rebasing: worker.scratch[0..<n])
        let seen = header + peeked
        let parsed = ProxyProtocol.parse(seen)
        switch parsed {
        case .incomplete:
            consume(n)
            header += peeked
        case .proxied(let addresses, let length):
            consume(length - header.count)
            hand(over: addresses)
        case .local(let length):
            // The balancer's own connection (a health check): it is served as itself.
            consume(length - header.count)
            hand(over: nil)
        case .failed(let error):
            fail("\(error)")
        }
    }

    func channelDrained(_ channel: SocketChannel) {}

    /// Takes `count` peeked bytes out of the socket (they are header bytes, already seen).
    private func consume(_ count: Int) {
        var left = count
        while left > 0 {
            let n = recv(channel.fd, worker.scratch.baseAddress, left, 0)
            if n > 0 {
                left -= n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                // Peeked bytes are in the buffer: a read of them cannot come up short.
                return
            }
        }
    }

    private func hand(over addresses: ProxyProtocol.Addresses?) {
        done = true
        worker.unregister(self)
        let fd = channel.release()
        serve(fd, addresses)
    }

    func deadlinePassed(now: UInt64) {
        fail(header.isEmpty ? "no PROXY header within header_read" : "PROXY header incomplete within header_read")
    }

    func forceClose(reason: String) {
        close()
    }

    /// Closes the connection and counts it: a balancer that should send a header did not.
    private func fail(_ reason: String) {
        guard !done else { return }
        runtime.stats.proxyProtocolErrors.wrappingAdd(1, ordering: .relaxed)
        Log.warning("connection from \(Socket.peer(channel.fd).text) closed: \(reason)")
        close()
    }

    private func close() {
        guard !done else { return }
        done = true
        worker.unregister(self)
        channel.close()
        runtime.connectionClosed(on: worker)
    }
}
