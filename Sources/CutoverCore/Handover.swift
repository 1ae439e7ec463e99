/// What a running proxy hands to the process taking it over (`cutover proxy --takeover`): the
/// JSON sent beside its listening descriptors, one entry per descriptor, in the same order.
///
/// The descriptors are the sockets themselves (SCM_RIGHTS), not copies of an address: connections
/// waiting in their accept queues are accepted by the new process instead of being reset.
public struct HandoverOffer: Codable, Sendable, Equatable {
    /// One listening socket.
    public struct Socket: Codable, Sendable, Equatable {
        /// `listener` (a proxy listener, named) or `admin_http` (the admin HTTP listener).
        public var kind: String
        /// The listener's name (`admin_http` for the admin listener).
        public var name: String
        /// The host as configured.
        public var host: String
        /// The port the socket is bound to (the real one when the config said 0).
        public var port: UInt16
        /// `http` or `tcp` for listeners.
        public var mode: String?

        public init(kind: String, name: String, host: String, port: UInt16, mode: String?) {
            self.kind = kind
            self.name = name
            self.host = host
            self.port = port
            self.mode = mode
        }

        /// Whether this socket serves `address` (a configured port 0 takes whatever port it has).
        func serves(_ address: HostPort) -> Bool {
            host == address.host && (address.port == 0 || address.port == port)
        }
    }

    /// The process handing over.
    public var pid: Int32
    /// Its version (logged by the new process).
    public var version: String
    /// Its process generation (1 for a proxy started afresh); the successor's is one more.
    public var generation: Int?
    public var sockets: [Socket]

    public init(pid: Int32, version: String, generation: Int? = nil, sockets: [Socket]) {
        self.pid = pid
        self.version = version
        self.generation = generation
        self.sockets = sockets
    }

    /// Which offered socket each of `config`'s listeners takes over, by listener index; a listener
    /// of the new config that matches none (a new name, address or mode) opens a socket of its own,
    /// and an offered one nothing takes is closed. A match is the same name, mode and address
    /// (port 0 in the new config matches the port the old one was given).
    public func listenerMatches(_ config: Config) -> [Int: Int] {
        var matches: [Int: Int] = [:]
        var taken = Set<Int>()
        for (index, listener) in config.listeners.enumerated() {
            let found = sockets.indices.first { offered in
                let socket = sockets[offered]
                return !taken.contains(offered) && socket.kind == "listener" && socket.name == listener.name
                    && socket.mode == listener.mode.rawValue && socket.serves(listener.address)
            }
            if let found {
                matches[index] = found
                taken.insert(found)
            }
        }
        return matches
    }

    /// The admin HTTP listener's socket, if offered and still wanted at `address` (port 0: any).
    public func adminHTTPMatch(_ address: HostPort?) -> Int? {
        guard let address else { return nil }
        return sockets.indices.first { sockets[$0].kind == "admin_http" && sockets[$0].serves(address) }
    }
}
