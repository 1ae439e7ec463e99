import CutoverCore
import Glibc

/// Idle keep-alive connections to endpoints, per worker (so taking one needs no lock).
///
/// A connection to an endpoint with `send_proxy` began with a PROXY header naming the client that
/// opened it, and the endpoint believes that header for the connection's whole life: handing it to
/// another client would make that client's requests arrive as the first one's. Such connections are
/// therefore pinned to the client connection that opened them (parked under its identity, taken only
/// by it, closed when it closes), so keep-alive still works within one client connection.
///
/// The pool is itself the handler of every parked connection (any readability means the upstream
/// closed it or misbehaved), so parking allocates nothing: no handler object per request, which cost
/// an allocation and several reference counts on each one. The channel's strong reference back to
/// the pool lasts only while it is parked; taking or closing it clears the handler.
final class UpstreamPool: ChannelHandler, @unchecked Sendable {  // confined to its worker's queue
    private var idle: [Key: Parked] = [:]
    /// Client connections with pinned connections parked, so a closing client without any costs nothing.
    private var pinnedClients: Set<ObjectIdentifier> = []
    let maxIdlePerEndpoint: Int

    /// Which parked connections a request may take: the endpoint's, and for `send_proxy` the client's.
    private struct Key: Hashable {
        let target: ObjectIdentifier
        let client: ObjectIdentifier?
    }

    /// The idle connections under one key, most recently parked last, and the endpoint they go to.
    ///
    /// A class, so taking and parking look the list up and change it where it is: changing a value
    /// in the dictionary in place goes through its `_modify` accessors, whose coroutine frames cost
    /// three allocations on every request.
    private final class Parked {
        let target: EndpointTarget
        var channels: [SocketChannel] = []

        init(target: EndpointTarget) {
            self.target = target
        }
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
        guard let parked = idle[Self.key(target, client: client)], let channel = parked.channels.popLast() else { return nil }
        channel.handler = nil
        return channel
    }

    /// Parks a connection whose last exchange ended cleanly; closes it if the pool is full.
    func park(_ channel: SocketChannel, target: EndpointTarget, for client: ObjectIdentifier) {
        let key = Self.key(target, client: client)
        let parked: Parked
        if let existing = idle[key] {
            parked = existing
        } else {
            parked = Parked(target: target)
            idle[key] = parked
        }
        guard parked.channels.count < maxIdlePerEndpoint else {
            close(channel, target: target)
            return
        }
        parked.channels.append(channel)
        channel.handler = self
        // An idle upstream that becomes readable has closed (or misbehaved): either way, drop it.
        channel.resumeReading()
        if let client = key.client { pinnedClients.insert(client) }
    }

    /// A parked connection became readable: the upstream closed it. Found by a search of the parked
    /// lists, which happens once per connection an upstream drops, never per request.
    func channelReadable(_ channel: SocketChannel) {
        for (key, parked) in idle {
            guard let index = parked.channels.firstIndex(where: { $0 === channel }) else { continue }
            parked.channels.remove(at: index)
            if parked.channels.isEmpty { idle[key] = nil }
            close(channel, target: parked.target)
            return
        }
        channel.close()
    }

    func channelDrained(_ channel: SocketChannel) {}

    /// Closes every idle connection to `target` (it is draining or gone).
    func closeIdle(to target: EndpointTarget) {
        let id = ObjectIdentifier(target)
        for key in idle.keys where key.target == id {
            for channel in idle.removeValue(forKey: key)?.channels ?? [] { close(channel, target: target) }
        }
    }

    /// Closes the connections pinned to a client connection that is closing (`send_proxy`).
    func closeIdle(pinnedTo client: ObjectIdentifier) {
        guard pinnedClients.remove(client) != nil else { return }
        for key in idle.keys where key.client == client {
            guard let parked = idle.removeValue(forKey: key) else { continue }
            for channel in parked.channels { close(channel, target: parked.target) }
        }
    }

    func closeAll() {
        for (_, parked) in idle {
            for channel in parked.channels { close(channel, target: parked.target) }
        }
        idle = [:]
        pinnedClients = []
    }

    func close(_ channel: SocketChannel, target: EndpointTarget) {
        channel.close()
        target.counters.connections.wrappingSubtract(1, ordering: .relaxed)
    }
}
