import CutoverCore
import Glibc

/// Idle keep-alive connections to endpoints, per worker (so taking one needs no lock).
///
/// A connection to an endpoint with `send_proxy` began with a PROXY header naming the client that
/// opened it, and the endpoint believes that header for the connection's whole life: handing it to
/// another client would make that client's requests arrive as the first one's. Such connections are
/// therefore pinned to the client connection that opened them (parked under its identity, taken only
/// by it, closed when it closes), so keep-alive still works within one client connection.
final class UpstreamPool: @unchecked Sendable {  // confined to its worker's queue
    private var idle: [Key: [PooledUpstream]] = [:]
    /// Client connections with pinned connections parked, so a closing client without any costs nothing.
    private var pinnedClients: Set<ObjectIdentifier> = []
    let maxIdlePerEndpoint: Int

    /// Which parked connections a request may take: the endpoint's, and for `send_proxy` the client's.
    fileprivate struct Key: Hashable {
        let target: ObjectIdentifier
        let client: ObjectIdentifier?
    }

    init(maxIdlePerEndpoint: Int) {
        self.maxIdlePerEndpoint = maxIdlePerEndpoint
    }

    private static func key(_ target: EndpointTarget, client: ObjectIdentifier) -> Key {
        Key(target: ObjectIdentifier(target), client: target.sendProxy == nil ? nil : client)
    }

    /// The most recently parked connection to `target` that `client` may use, if any (LIFO keeps a
    /// few connections hot).
    func take(_ target: EndpointTarget, for client: ObjectIdentifier) -> SocketChannel? {
        // Mutated in place: copying the list out of the dictionary would copy (and retain) every
        // parked connection on each request.
        guard let parked = idle[Self.key(target, client: client)]?.popLast() else { return nil }
        parked.channel.handler = nil
        return parked.channel
    }

    /// Parks a connection whose last exchange ended cleanly; closes it if the pool is full.
    func park(_ channel: SocketChannel, target: EndpointTarget, for client: ObjectIdentifier) {
        let key = Self.key(target, client: client)
        let parked = PooledUpstream(channel: channel, target: target, key: key, pool: self)
        // One hash lookup per park (this runs once per request), not one to count and one to append.
        guard Self.append(parked, to: &idle[key, default: []], max: maxIdlePerEndpoint) else {
            close(channel, target: target)
            return
        }
        channel.handler = parked
        // An idle upstream that becomes readable has closed (or misbehaved): either way, drop it.
        channel.resumeReading()
        if let client = key.client { pinnedClients.insert(client) }
    }

    /// Appends unless the list already holds `max`; whether it did.
    private static func append(_ parked: PooledUpstream, to list: inout [PooledUpstream], max: Int) -> Bool {
        guard list.count < max else { return false }
        list.append(parked)
        return true
    }

    fileprivate func remove(_ parked: PooledUpstream) {
        idle[parked.key]?.removeAll { $0 === parked }
        close(parked.channel, target: parked.target)
    }

    /// Closes every idle connection to `target` (it is draining or gone).
    func closeIdle(to target: EndpointTarget) {
        let id = ObjectIdentifier(target)
        for key in idle.keys where key.target == id {
            for parked in idle.removeValue(forKey: key) ?? [] { close(parked.channel, target: target) }
        }
    }

    /// Closes the connections pinned to a client connection that is closing (`send_proxy`).
    func closeIdle(pinnedTo client: ObjectIdentifier) {
        guard pinnedClients.remove(client) != nil else { return }
        for key in idle.keys where key.client == client {
            for parked in idle.removeValue(forKey: key) ?? [] { close(parked.channel, target: parked.target) }
        }
    }

    func closeAll() {
        for (_, list) in idle {
            for parked in list { close(parked.channel, target: parked.target) }
        }
        idle = [:]
        pinnedClients = []
    }

    func close(_ channel: SocketChannel, target: EndpointTarget) {
        channel.close()
        target.counters.connections.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// The handler of a parked connection: any readability means the upstream closed it.
private final class PooledUpstream: ChannelHandler {
    let channel: SocketChannel
    let target: EndpointTarget
    let key: UpstreamPool.Key
    unowned let pool: UpstreamPool

    init(channel: SocketChannel, target: EndpointTarget, key: UpstreamPool.Key, pool: UpstreamPool) {
        self.channel = channel
        self.target = target
        self.key = key
        self.pool = pool
    }

    func channelReadable(_ channel: SocketChannel) {
        pool.remove(self)
    }

    func channelDrained(_ channel: SocketChannel) {}
}
