/// The `cluster` section: the etcd members that hold a fleet's runtime state, the key prefix under
/// which it lives, and this proxy's name in the fleet. Without it a proxy keeps its state alone.
public struct ClusterConfig: Sendable, Equatable {
    /// The etcd members' client URLs (`http://HOST:PORT`), tried in order.
    public var etcd: [EtcdMember]
    /// The key prefix of this fleet (`/cutover/prod`), without a trailing slash.
    public var prefix: String
    /// This proxy's name in the fleet (its key under `PREFIX/nodes/`).
    public var node: String
    /// Trust and client certificate for `https://` members (`cluster.tls`); `nil`: the system's
    /// authorities, no client certificate.
    public var tls: EtcdTLSConfig?
    /// etcd v3 authentication (`cluster.username` / `cluster.password`): the proxy asks each member
    /// for a token and sends it with every call. `nil`: etcd without auth.
    public var credentials: EtcdCredentials?

    public init(etcd: [EtcdMember], prefix: String, node: String, tls: EtcdTLSConfig? = nil, credentials: EtcdCredentials? = nil) {
        self.etcd = etcd
        self.prefix = prefix
        self.node = node
        self.tls = tls
        self.credentials = credentials
    }

    /// The key layout of this fleet.
    public var keys: FleetKeys { FleetKeys(prefix: prefix) }
}

/// `cluster.tls`: how the proxy speaks TLS to `https://` etcd members.
public struct EtcdTLSConfig: Sendable, Equatable {
    /// PEM bundle of the authorities that sign the members' certificates; the system store when `nil`.
    public var ca: String?
    /// PEM client certificate (chain) for members started with `--client-cert-auth`; with `key`.
    public var cert: String?
    /// PEM private key of `cert`.
    public var key: String?
    /// The name the members' certificates must carry; each member's host when `nil`.
    public var serverName: String?

    public init(ca: String? = nil, cert: String? = nil, key: String? = nil, serverName: String? = nil) {
        self.ca = ca
        self.cert = cert
        self.key = key
        self.serverName = serverName
    }
}

/// `cluster.username` and `cluster.password`: an etcd user (`etcdctl user add`, `auth enable`).
public struct EtcdCredentials: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

/// One etcd member's client address, parsed from `http://HOST:PORT` or `https://HOST:PORT`.
public struct EtcdMember: Sendable, Equatable, CustomStringConvertible {
    /// A host name or an IPv4 address.
    public var host: String
    /// The client port.
    public var port: UInt16
    /// Reached over TLS (`https://`).
    public var secure: Bool

    public init(host: String, port: UInt16, secure: Bool = false) {
        self.host = host
        self.port = port
        self.secure = secure
    }

    /// Parses `http://HOST:PORT` or `https://HOST:PORT` (a trailing `/` is accepted); `nil` for
    /// anything else, such as another scheme or a missing port.
    public init?(url: String) {
        let secure = url.hasPrefix("https://")
        guard secure || url.hasPrefix("http://") else { return nil }
        var rest = url.dropFirst(secure ? "https://".count : "http://".count)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":") else { return nil }
        let host = rest[..<colon]
        guard !host.isEmpty, !host.contains("/"), !host.contains("@"), let port = UInt16(rest[rest.index(after: colon)...]), port > 0 else { return nil }
        self.init(host: String(host), port: port, secure: secure)
    }

    /// `http://HOST:PORT` or `https://HOST:PORT`, as configured.
    public var description: String { "\(secure ? "https" : "http")://\(host):\(port)" }
}

/// Where a fleet's keys live under its prefix: `PREFIX/state` holds the whole `StateDocument`
/// (its `mod_revision` is the state's version), `PREFIX/nodes/NODE` each proxy's leased record.
///
/// One key for the whole state keeps every mutation a single compare-and-put on one revision, so
/// two operators cannot interleave half-changes, and a watcher never sees a torn state.
public struct FleetKeys: Sendable, Equatable {
    /// The fleet's prefix, without a trailing slash.
    public let prefix: String

    public init(prefix: String) {
        self.prefix = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
    }

    /// The key holding the fleet's `StateDocument`.
    public var state: String { prefix + "/state" }
    /// The prefix of every node record (ends in `/`).
    public var nodes: String { prefix + "/nodes/" }
    /// The key of `node`'s record.
    public func node(_ node: String) -> String { nodes + node }

    /// The node name in a key under `nodes`; `nil` for any other key.
    public func nodeName(ofKey key: String) -> String? {
        guard key.hasPrefix(nodes), key.count > nodes.count else { return nil }
        return String(key.dropFirst(nodes.count))
    }

    /// etcd's `range_end` for every key starting with `prefix`: the prefix with its last byte
    /// incremented (bytes that are 0xff are dropped first, as `clientv3.GetPrefixRangeEnd` does).
    public static func rangeEnd(ofPrefix prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]  // every key
    }
}

/// What each proxy publishes under `PREFIX/nodes/NODE`, leased so it vanishes when the proxy does.
public struct FleetNodeRecord: Codable, Sendable, Equatable {
    /// The node's name (also the last part of its key).
    public var node: String
    /// The `mod_revision` of the state document the node last applied.
    public var appliedRevision: Int64
    /// The node's `cutover` version.
    public var version: String

    public init(node: String, appliedRevision: Int64, version: String) {
        self.node = node
        self.appliedRevision = appliedRevision
        self.version = version
    }
}
