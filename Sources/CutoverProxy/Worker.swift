import CutoverCore
import Dispatch
import Foundation
import Synchronization

/// Something a worker owns and checks for deadlines and drains.
///
/// - Important: every method is called on the owning worker's queue.
protocol WorkerConnection: AnyObject {
    /// Monotonic milliseconds after which `deadlinePassed` is called; 0 means none.
    var deadline: UInt64 { get }
    func deadlinePassed(now: UInt64)
    /// The endpoint whose in-flight work this connection carries, if any.
    var servingTarget: EndpointTarget? { get }
    /// Closes at once (drain deadline, shutdown).
    func forceClose(reason: String)
}

/// One serial queue that owns a share of all connections, with what they share without locks:
/// a read buffer, the idle upstream pool and the access-log buffer.
///
/// Connections never hop queues: a client connection, its upstream connection and the pool it came
/// from all live on the same worker, so forwarding a request costs no queue switch.
final class Worker: @unchecked Sendable {  // confined to `queue`
    let index: Int
    /// The CPU its poller thread is bound to (`worker_cpu_affinity`); nil when the scheduler places it.
    let cpu: Int?
    let queue: DispatchQueue
    /// One read's worth of bytes; reused by every connection of this worker.
    let scratch: UnsafeMutableRawBufferPointer
    /// Head serialisation buffer, reused.
    var headBuffer: [UInt8] = []
    /// Joins a head and body bytes into one TLS write, reused.
    var tlsJoinBuffer: [UInt8] = []
    let pool: UpstreamPool
    /// Socket readiness for every channel of this worker.
    let poller: EventPoller
    private var connections: [ObjectIdentifier: WorkerConnection] = [:]
    /// Client connections this worker serves, counted from the moment an accept assigns one to it
    /// until it closes: read by every worker's accepts (`Listener.server`), so an atomic.
    let clientConnections = Atomic<Int>(0)
    var clientConnectionCount: Int { clientConnections.load(ordering: .relaxed) }
    private var sweepTimer: DispatchSourceTimer?
    let accessLog: AccessLog?
    /// Ids for requests that come without a sane `X-Request-Id` (see `RequestIDGenerator`).
    var requestIDs: RequestIDGenerator
    /// The forwarding origin of the last HTTP client accepted here. Clients behind one balancer
    /// or NAT share an address, and then share this one copy of its `Forwarded` element rather than
    /// each idle keep-alive connection holding its own.
    private var lastOrigin: HTTPForwarding.Origin?

    /// The origin of a client: the last one made when it matches, else a new one.
    func origin(address: String, proto: String, trusted: Bool) -> HTTPForwarding.Origin {
        if let lastOrigin, lastOrigin.address == address, lastOrigin.proto == proto, lastOrigin.trusted == trusted { return lastOrigin }
        let made = HTTPForwarding.Origin(address: address, proto: proto, trusted: trusted)
        lastOrigin = made
        return made
    }
    /// Random per process, so that two proxies' (or two generations') ids do not meet.
    private static let processTag = UInt32.random(in: 0...UInt32.max)
    /// Timeouts and limits for this worker's connections; replaced on reload (on this queue).
    var settings: ConnectionSettings

    /// The snapshot this worker last loaded, and the store's `version` it was loaded at.
    private var snapshot: ProxySnapshot?
    /// The store's version when `snapshot` was loaded: while the store still says it, nothing newer
    /// was published.
    private(set) var snapshotVersion: UInt64 = 0

    /// The current snapshot of `store`, loaded again only when one was published since the last
    /// call: one atomic read per request instead of a lock. A reader that raced a publish sees the
    /// previous snapshot, as it would have had it read a moment earlier.
    func snapshot(of store: SnapshotStore) -> ProxySnapshot {
        let version = store.version
        if let snapshot, version == snapshotVersion { return snapshot }
        let loaded = store.load()
        snapshot = loaded
        snapshotVersion = version
        return loaded
    }

    static let scratchSize = 64 * 1024
    static let sweepInterval = DispatchTimeInterval.milliseconds(100)

    init(index: Int, cpu: Int?, accessLog: AccessLog?, settings: ConnectionSettings) {
        self.index = index
        self.cpu = cpu
        self.queue = DispatchQueue(label: "cutover.worker.\(index)", qos: .userInitiated)
        self.scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Worker.scratchSize, alignment: 16)
        self.settings = settings
        self.pool = UpstreamPool(maxIdlePerEndpoint: settings.limits.maxIdleUpstreamPerEndpoint)
        self.poller = EventPoller(queue: queue, name: "cutover.poll.\(index)", cpu: cpu)
        self.accessLog = accessLog
        self.requestIDs = RequestIDGenerator(processTag: Worker.processTag, worker: index)
        headBuffer.reserveCapacity(4096)
    }

    /// Starts the deadline sweep.
    func start() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + Worker.sweepInterval, repeating: Worker.sweepInterval, leeway: .milliseconds(20))
        timer.setEventHandler { [unowned self] in self.sweep() }
        sweepTimer = timer
        timer.activate()
    }

    func register(_ connection: WorkerConnection) {
        connections[ObjectIdentifier(connection)] = connection
    }

    func unregister(_ connection: WorkerConnection) {
        connections.removeValue(forKey: ObjectIdentifier(connection))
    }

    var connectionCount: Int { connections.count }

    /// The connections at this moment (a copy: closing one mutates the registry).
    var connectionsSnapshot: [WorkerConnection] { Array(connections.values) }

    private func sweep() {
        let now = monotonicMilliseconds()
        var expired: [WorkerConnection] = []
        for connection in connections.values {
            let deadline = connection.deadline
            if deadline != 0 && deadline <= now { expired.append(connection) }
        }
        for connection in expired { connection.deadlinePassed(now: now) }
        accessLog?.flush(worker: index)
    }

    /// Force-closes every tunnel (TCP, or an HTTP connection upgraded to one) still serving `target`:
    /// its drain deadline passed.
    ///
    /// An HTTP exchange in flight is left to finish: `drain_timeout` bounds tunnels, which may last
    /// for ever, while a request is already bounded by `timeouts.upstream_response` (issue 17, defect 2).
    ///
    /// - Returns: how many were closed.
    func forceClose(servingTarget target: EndpointTarget) -> Int {
        let serving = connections.values.filter { $0 is TCPTunnel && $0.servingTarget === target }
        for connection in serving { connection.forceClose(reason: "drain deadline of \(target.qualifiedName)") }
        return serving.count
    }

    /// Closes every connection (end of shutdown).
    func closeAll(reason: String) {
        for connection in Array(connections.values) { connection.forceClose(reason: reason) }
        pool.closeAll()
        accessLog?.flush(worker: index)
    }
}
