import CutoverCore
import Dispatch
import Foundation
import Synchronization

/// The control plane of a running proxy: config, runtime state, listeners, drains and snapshots.
///
/// Every change (an admin command, a signal, a probe result) runs on `controlQueue`, updates
/// `RuntimeState` and ends in one `publish`: a new immutable snapshot the workers pick up on their
/// next request. Workers never wait for this queue.
public final class ProxyRuntime: @unchecked Sendable {  // mutable state confined to `controlQueue`
    let controlQueue = DispatchQueue(label: "cutover.control")
    private(set) var config: Config
    /// The file `reload` re-reads; `nil` when started from command-line flags.
    let configPath: String?
    var runtime: RuntimeState
    private var generation: UInt64 = 0
    /// Long-lived endpoint objects by `profile/name`, reused while the address is unchanged.
    private var targets: [String: EndpointTarget] = [:]
    private var holdQueues: [String: HoldQueue] = [:]
    private(set) var listeners: [Listener] = []
    private var nextSlot = 0
    var drains: [String: Drain] = [:]
    /// How finished drains ended, for `switch --wait`.
    var drainOutcomes: [String: String] = [:]
    private var drainTimer: DispatchSourceTimer?
    /// Last health change per `profile/name`, for `show endpoints`.
    var lastHealthChange: [String: RuntimeEvent] = [:]
    /// Consecutive live-traffic failures per `signal|profile/name` (see `reportPassiveFailure`).
    var passiveFailures: [String: Int] = [:]
    /// Active health probes; scheduled and counted on `controlQueue` (see `startProbes`).
    lazy var prober = HealthProber(queue: controlQueue)
    let store: SnapshotStore
    let workers: [Worker]
    let events = EventLog()
    let stats = ProxyStats()
    let stateFile: StateFile?
    let accessLog: AccessLog?
    let shuttingDown = Atomic<Bool>(false)
    let startedAt = Date()

    /// An endpoint on its way from `draining` to `offline`.
    struct Drain {
        let target: EndpointTarget
        let deadline: UInt64
        let started: UInt64
    }

    /// Prepares the runtime (restoring the state file over the config); nothing listens until `start`.
    public init(config: Config, configPath: String?) throws {
        self.config = config
        self.configPath = configPath
        let workerCount = config.workers > 0 ? config.workers : max(1, ProcessInfo.processInfo.activeProcessorCount)
        let accessLog = config.accessLog == "off" ? nil : try AccessLog(destination: config.accessLog, workers: workerCount)
        self.accessLog = accessLog
        self.workers = (0..<workerCount).map {
            Worker(index: $0, accessLog: accessLog, settings: ConnectionSettings(config))
        }
        self.stateFile = config.stateFile.map(StateFile.init(path:))
        var state = RuntimeState(config: config)
        if let stateFile, let saved = try stateFile.read() {
            state = saved.reconciled(with: config)
            Log.info("restored runtime state from \(stateFile.path)")
        }
        self.runtime = state
        self.store = SnapshotStore(ProxySnapshot(routing: RoutingSnapshot(generation: 0, profiles: []), routeBySlot: [], holdQueues: []))
        self.targets = try resolveTargets(for: config)
    }

    /// Opens the listeners, starts the workers and publishes the first snapshot.
    public func start() throws {
        try controlQueue.sync {
            for listenerConfig in config.listeners {
                listeners.append(try openListener(listenerConfig))
            }
            publish(persist: false)
            startProbes()
        }
        for worker in workers { worker.queue.async { worker.start() } }
        controlQueue.sync {
            for listener in listeners { startAccepting(listener) }
        }
    }

    /// The port each listener is bound to, by listener name (port 0 in config becomes a real port).
    public var boundPorts: [String: UInt16] {
        controlQueue.sync { Dictionary(listeners.map { ($0.config.name, $0.boundPort) }, uniquingKeysWith: { a, _ in a }) }
    }

    private func openListener(_ listenerConfig: ListenerConfig) throws -> Listener {
        let listener = try Listener(config: listenerConfig, slot: nextSlot)
        nextSlot += 1
        Log.info("listening on \(listenerConfig.address.host):\(listener.boundPort) (\(listenerConfig.mode.rawValue), listener \(listenerConfig.name) → profile \(listenerConfig.profile))")
        return listener
    }

    private func startAccepting(_ listener: Listener) {
        let slot = listener.slot
        let mode = listener.config.mode
        listener.start(workers: workers) { [unowned self] worker, fd in
            self.accepted(fd: fd, on: worker, slot: slot, mode: mode)
        }
    }

    /// - Important: runs on `worker`'s queue.
    private func accepted(fd: Int32, on worker: Worker, slot: Int, mode: ListenerMode) {
        stats.acceptedConnections.wrappingAdd(1, ordering: .relaxed)
        let open = stats.openConnections.wrappingAdd(1, ordering: .relaxed).newValue
        if open > worker.settings.limits.maxConnections || shuttingDown.load(ordering: .relaxed) {
            stats.openConnections.wrappingSubtract(1, ordering: .relaxed)
            stats.refusedConnections.wrappingAdd(1, ordering: .relaxed)
            close(fd)
            return
        }
        Socket.setNoDelay(fd)
        switch mode {
        case .http: HTTPSession(fd: fd, worker: worker, runtime: self, slot: slot).start()
        case .tcp: TCPTunnel(fd: fd, worker: worker, runtime: self, slot: slot).start()
        }
    }

    /// Called by a connection when it closes, on its worker's queue.
    func connectionClosed() {
        stats.openConnections.wrappingSubtract(1, ordering: .relaxed)
    }

    /// The hold queue of a profile (created on first use).
    func holdQueue(for profile: String) -> HoldQueue {
        if let queue = holdQueues[profile] { return queue }
        let queue = HoldQueue()
        holdQueues[profile] = queue
        return queue
    }

    // MARK: - Publishing

    /// Builds and publishes a snapshot from the current config and runtime state, then applies its
    /// consequences: held work released, idle upstreams to non-candidates closed, state persisted.
    ///
    /// - Important: call on `controlQueue`.
    func publish(persist: Bool = true) {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        generation += 1
        let routing = RoutingSnapshot.build(config: config, runtime: runtime, generation: generation) { profile, endpoint in
            targets["\(profile.name)/\(endpoint.name)"]!
        }
        var routeBySlot = [ProfileRoute?](repeating: nil, count: nextSlot)
        for listener in listeners {
            routeBySlot[listener.slot] = routing.profile(named: listener.config.profile)
        }
        let holdQueuesByIndex = routing.profiles.map { holdQueue(for: $0.name) }
        store.publish(ProxySnapshot(routing: routing, routeBySlot: routeBySlot, holdQueues: holdQueuesByIndex))

        for route in routing.profiles {
            let released = holdQueue(for: route.name).published(
                generation: generation, paused: route.paused, available: !route.candidates.isEmpty,
                holdWhenUnavailable: route.config.holdWhenUnavailable)
            for held in released { held.release() }
        }
        let candidates = Set(routing.profiles.flatMap { $0.candidates.map(ObjectIdentifier.init) })
        closeIdleUpstreams(to: targets.values.filter { !candidates.contains(ObjectIdentifier($0)) })
        if persist { persistState() }
    }

    /// Closes, on every worker, the idle pooled connections to endpoints that take no new work.
    private func closeIdleUpstreams(to retired: [EndpointTarget]) {
        guard !retired.isEmpty else { return }
        for worker in workers {
            worker.queue.async { for target in retired { worker.pool.closeIdle(to: target) } }
        }
    }

    private func persistState() {
        guard let stateFile else { return }
        do {
            try stateFile.write(runtime)
        } catch {
            Log.error("\(error)")
        }
    }

    // MARK: - Targets and reload

    private func resolveTargets(for config: Config) throws -> [String: EndpointTarget] {
        var resolved: [String: EndpointTarget] = [:]
        for (p, profile) in config.profiles.enumerated() {
            for (e, endpoint) in profile.endpoints.enumerated() {
                let key = "\(profile.name)/\(endpoint.name)"
                if let existing = targets[key], existing.address == endpoint.address {
                    resolved[key] = existing
                    continue
                }
                let socketAddress: [UInt8]
                do {
                    socketAddress = try Socket.resolve(endpoint.address)
                } catch {
                    throw ConfigError(file: configPath ?? "(command line)", key: "profiles[\(p)].endpoints[\(e)].address", reason: "\(error)")
                }
                resolved[key] = EndpointTarget(profile: profile.name, name: endpoint.name, address: endpoint.address, socketAddress: socketAddress)
            }
        }
        return resolved
    }

    /// Re-reads the config file and applies it without dropping a connection; a config that fails
    /// validation, or a listener that cannot bind, changes nothing.
    ///
    /// - Important: call on `controlQueue`.
    func reload() throws(AdminError) -> String {
        guard let configPath else { throw AdminError(.conflict, "started without a config file; nothing to reload") }
        let next: Config
        do {
            next = try ConfigFile.load(path: configPath)
        } catch {
            Log.error("reload refused, keeping the running config: \(error)")
            throw AdminError(.invalidConfig, "\(error); the running config is unchanged")
        }
        let nextTargets: [String: EndpointTarget]
        do {
            nextTargets = try resolveTargets(for: next)
        } catch {
            throw AdminError(.invalidConfig, "\(error); the running config is unchanged")
        }
        // Open new listeners first: if one cannot bind, nothing has changed yet.
        var kept: [Listener] = []
        var opened: [Listener] = []
        for listenerConfig in next.listeners {
            if let existing = listeners.first(where: { $0.config.address == listenerConfig.address && $0.config.mode == listenerConfig.mode }) {
                existing.update(listenerConfig)
                kept.append(existing)
                continue
            }
            do {
                opened.append(try openListener(listenerConfig))
            } catch {
                for listener in opened { listener.close() }
                throw AdminError(.invalidConfig, "listener \(listenerConfig.name): \(error); the running config is unchanged")
            }
        }
        let closed = listeners.filter { old in !kept.contains { $0 === old } }
        for listener in closed {
            Log.info("closing listener \(listener.config.name) (removed from config)")
            listener.close()
        }
        for listener in opened { startAccepting(listener) }
        listeners = kept + opened
        // Endpoints removed, or moved to another address, keep no idle connections to the old place.
        closeIdleUpstreams(to: targets.values.filter { old in !nextTargets.values.contains { $0 === old } })
        config = next
        let settings = ConnectionSettings(next)
        for worker in workers { worker.queue.async { worker.settings = settings } }
        targets = nextTargets
        runtime = runtime.reconciled(with: next)
        drains = drains.filter { key, _ in targets[key] != nil }
        events.record(profile: "*", endpoint: nil, state: "reloaded", cause: "config \(configPath)")
        publish()
        startProbes()
        return "reloaded \(configPath): \(next.listeners.count) listeners, \(next.profiles.count) profiles"
    }

    // MARK: - Drains

    /// Marks an endpoint draining and starts watching it until it is empty or its deadline passes.
    ///
    /// - Important: call on `controlQueue`; the caller publishes.
    func startDrain(profile: ProfileConfig, endpoint: String) {
        let key = "\(profile.name)/\(endpoint)"
        guard let target = targets[key] else { return }
        runtime.profiles[profile.name]?.endpoints[endpoint]?.admin = .draining
        let now = monotonicMilliseconds()
        drains[key] = Drain(target: target, deadline: now + UInt64(profile.drainTimeout.milliseconds), started: now)
        drainOutcomes[key] = nil
        let inFlight = target.counters.inFlight.load(ordering: .relaxed)
        events.record(profile: profile.name, endpoint: endpoint, state: "draining", cause: "\(inFlight) in flight, deadline \(DurationText.format(profile.drainTimeout))")
        scheduleDrainTimer()
    }

    /// Stops watching a drain (the endpoint was set online or offline by hand).
    func cancelDrain(_ key: String) {
        drains[key] = nil
    }

    private func scheduleDrainTimer() {
        guard drainTimer == nil else { return }
        let timer = DispatchSource.makeTimerSource(queue: controlQueue)
        timer.schedule(deadline: .now() + .milliseconds(50), repeating: .milliseconds(50), leeway: .milliseconds(10))
        timer.setEventHandler { [unowned self] in self.checkDrains() }
        drainTimer = timer
        timer.activate()
    }

    private func checkDrains() {
        let now = monotonicMilliseconds()
        var changed = false
        for (key, drain) in drains {
            let target = drain.target
            let inFlight = target.counters.inFlight.load(ordering: .relaxed)
            let elapsed = DurationText.format(.milliseconds(Int64(now - drain.started)))
            if inFlight == 0 {
                finishDrain(key, target: target, outcome: "drained after \(elapsed)")
                changed = true
            } else if now >= drain.deadline {
                let closed = Mutex(0)
                let group = DispatchGroup()
                for worker in workers {
                    worker.queue.async(group: group) {
                        let n = worker.forceClose(servingTarget: target)
                        closed.withLock { $0 += n }
                    }
                }
                group.wait()
                let count = closed.withLock { $0 }
                target.counters.forceClosed.wrappingAdd(count, ordering: .relaxed)
                finishDrain(key, target: target, outcome: "drain deadline after \(elapsed): \(count) force-closed")
                changed = true
            }
        }
        if changed { publish() }
        if drains.isEmpty {
            drainTimer?.cancel()
            drainTimer = nil
        }
    }

    private func finishDrain(_ key: String, target: EndpointTarget, outcome: String) {
        drains[key] = nil
        drainOutcomes[key] = outcome
        if runtime.profiles[target.profile]?.endpoints[target.name]?.admin == .draining {
            runtime.profiles[target.profile]?.endpoints[target.name]?.admin = .offline
        }
        events.record(profile: target.profile, endpoint: target.name, state: "offline", cause: outcome)
    }

    func target(profile: String, endpoint: String) -> EndpointTarget? {
        targets["\(profile)/\(endpoint)"]
    }
}
