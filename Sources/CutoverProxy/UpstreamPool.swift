import CutoverCore
import Glibc

/// Idle keep-alive connections to endpoints, per worker (so taking one needs no lock).
final class UpstreamPool: @unchecked Sendable {  // confined to its worker's queue
    private var idle: [ObjectIdentifier: [PooledUpstream]] = [:]
    let maxIdlePerEndpoint: Int

    init(maxIdlePerEndpoint: Int) {
        self.maxIdlePerEndpoint = maxIdlePerEndpoint
    }

    /// The most recently parked connection to `target`, if any (LIFO keeps a few connections hot).
    func take(_ target: EndpointTarget) -> SocketChannel? {
        // Mutated in place: copying the list out of the dictionary would copy (and retain) every
        // parked connection on each request.
        guard let parked = idle[ObjectIdentifier(target)]?.popLast() else { return nil }
        parked.channel.handler = nil
        return parked.channel
    }

    /// Parks a connection whose last exchange ended cleanly; closes it if the pool is full.
    func park(_ channel: SocketChannel, target: EndpointTarget) {
        let key = ObjectIdentifier(target)
        guard idle[key, default: []].count < maxIdlePerEndpoint else {
            close(channel, target: target)
            return
        }
        let parked = PooledUpstream(channel: channel, target: target, pool: self)
        channel.handler = parked
        // An idle upstream that becomes readable has closed (or misbehaved): either way, drop it.
        channel.resumeReading()
        idle[key, default: []].append(parked)
    }

    fileprivate func remove(_ parked: PooledUpstream) {
        let key = ObjectIdentifier(parked.target)
        idle[key]?.removeAll { $0 === parked }
        close(parked.channel, target: parked.target)
    }

    /// Closes every idle connection to `target` (it is draining or gone).
    func closeIdle(to target: EndpointTarget) {
        let key = ObjectIdentifier(target)
        for parked in idle.removeValue(forKey: key) ?? [] { close(parked.channel, target: target) }
    }

    func closeAll() {
        for (_, list) in idle {
            for parked in list { close(parked.channel, target: parked.target) }
        }
        idle = [:]
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
    unowned let pool: UpstreamPool

    init(channel: SocketChannel, target: EndpointTarget, pool: UpstreamPool) {
        self.channel = channel
        self.target = target
        self.pool = pool
    }

    func channelReadable(_ channel: SocketChannel) {
        pool.remove(self)
    }

    func channelDrained(_ channel: SocketChannel) {}
}
