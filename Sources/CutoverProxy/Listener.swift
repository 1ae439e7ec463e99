import CutoverCore
import Dispatch
import Glibc
import Synchronization

/// How a listener's clients arrive, read once per accepted connection: the TLS certificates if it
/// terminates TLS, the HTTPS port a plain HTTP listener redirects to, whether a PROXY header comes
/// first, and whose forwarding fields are believed.
struct ListenerTransport: Sendable {
    let tls: TLSServerContext?
    let redirectHTTPSPort: UInt16?
    /// `proxy_protocol`: a PROXY header precedes everything else (TLS included).
    var proxyProtocol = false
    /// `trusted_proxies` (the listener's, or the top-level list).
    var trustedProxies = TrustedProxies()

    static let plain = ListenerTransport(tls: nil, redirectHTTPSPort: nil)

    /// Reads the listener's certificates (at start, at every reload, and for `--check`); a failure
    /// names `listeners[index].tls`, the file and the reason.
    static func load(
        _ listener: ListenerConfig, index: Int, file: String, timeouts: Timeouts, stats: TLSStats, trustedProxies: TrustedProxies = TrustedProxies()
    ) throws(ConfigError) -> ListenerTransport {
        var transport = ListenerTransport(tls: nil, redirectHTTPSPort: listener.redirectHTTPSPort)
        transport.proxyProtocol = listener.proxyProtocol
        transport.trustedProxies = trustedProxies
        guard let tls = listener.tls else { return transport }
        do {
            let context = try TLSServerContext(config: tls, mode: listener.mode, handshakeTimeout: timeouts.tlsHandshake, stats: stats)
            var secured = ListenerTransport(tls: context, redirectHTTPSPort: nil)
            secured.proxyProtocol = transport.proxyProtocol
            secured.trustedProxies = trustedProxies
            return secured
        } catch {
            throw ConfigError(file: file, key: "listeners[\(index)].tls", reason: "\(error)")
        }
    }
}

/// One listening socket, accepted from by every worker (one read source per worker on the same
/// descriptor). A new connection starts on the worker that accepted it, without a queue hop, unless
/// another worker serves fewer client connections: then it is handed to that one.
final class Listener: @unchecked Sendable {  // `config` and `slot` change only on the control queue
    let fd: Int32
    let slot: Int
    private(set) var config: ListenerConfig
    /// The port actually bound (differs from the config when it asked for port 0).
    let boundPort: UInt16
    private var sources: [DispatchSourceRead] = []
    /// Swapped whole by a reload; workers copy the reference at each accept, so a new certificate
    /// serves the next handshake and a connection keeps the one it started with.
    private let currentTransport: Mutex<ListenerTransport>

    convenience init(config: ListenerConfig, slot: Int, transport: ListenerTransport) throws {
        self.init(config: config, slot: slot, transport: transport, adopting: try Socket.listen(on: config.address))
    }

    /// A listener on a socket that is already listening (handed over by the proxy this one takes over).
    init(config: ListenerConfig, slot: Int, transport: ListenerTransport, adopting fd: Int32) {
        self.fd = fd
        self.slot = slot
        self.config = config
        self.boundPort = Socket.localPort(fd)
        self.currentTransport = Mutex(transport)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Updates the profile a reload routes this listener to, and its certificates (the socket stays open).
    func update(_ config: ListenerConfig, transport: ListenerTransport) {
        self.config = config
        currentTransport.withLock { $0 = transport }
    }

    /// What a connection accepted now gets.
    var transport: ListenerTransport { currentTransport.withLock { $0 } }

    /// Starts accepting on every worker; `accepted` runs on the queue of the worker that is to serve
    /// the connection, which has already counted it in `clientConnections`.
    func start(workers: [Worker], accepted: @escaping @Sendable (Worker, Int32) -> Void) {
        for worker in workers {
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: worker.queue)
            let listenerFD = fd
            source.setEventHandler {
                // Several workers wake for one connection; the losers see EAGAIN and go back to sleep.
                for _ in 0..<64 {
                    let client = Socket.accept(listenerFD)
                    if client < 0 { break }
                    let server = workers[Listener.server(acceptedBy: worker.index, of: workers.count) { workers[$0].clientConnectionCount }]
                    server.clientConnections.wrappingAdd(1, ordering: .relaxed)
                    if server === worker {
                        accepted(worker, client)
                    } else {
                        server.queue.async { accepted(server, client) }
                    }
                }
            }
            sources.append(source)
            source.activate()
        }
    }

    /// The worker to serve a connection accepted by worker `acceptor`, of `count`, given the client
    /// connections each serves: the acceptor unless another serves fewer, then the first that
    /// serves fewest.
    ///
    /// Why: the workers race for each accept, and the winner of a burst (a client pool connecting
    /// at once) took most of it: with `wrk -c50` and two workers, splits from 50:0 to 30:20 from one
    /// run to the next. A worker that serves more connections than another is the one whose
    /// requests wait (its thread is the busier), and on a machine with a core per worker an uneven
    /// split leaves a core idle. HAProxy hands accepted connections to the least loaded thread too
    /// (`tune.listener.multi-queue`). Connections, not requests, are counted: that is what a worker
    /// keeps until the client leaves.
    static func server(acceptedBy acceptor: Int, of count: Int, load: (Int) -> Int) -> Int {
        var chosen = acceptor
        var fewest = load(acceptor)
        for index in 0..<count where index != acceptor {
            let connections = load(index)
            if connections < fewest { (chosen, fewest) = (index, connections) }
        }
        return chosen
    }

    /// Stops accepting and closes the socket once every worker's source has stopped.
    func close() {
        let group = DispatchGroup()
        for source in sources {
            group.enter()
            source.setCancelHandler { group.leave() }
            source.cancel()
        }
        let fd = self.fd
        group.notify(queue: .global()) { Glibc.close(fd) }
        sources = []
    }
}
