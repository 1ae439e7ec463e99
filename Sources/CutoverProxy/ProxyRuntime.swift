import CShims
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
    /// The config file's config with the endpoints `add endpoint` added (`Config.including(addedEndpointsOf:)`).
    var config: Config
    /// The file `reload` re-reads; `nil` when started from command-line flags.
    let configPath: String?
    var runtime: RuntimeState
    private var generation: UInt64 = 0
    /// Long-lived endpoint objects by `profile/name`, reused while the address is unchanged.
    var targets: [String: EndpointTarget] = [:]
    private var holdQueues: [String: HoldQueue] = [:]
    private(set) var listeners: [Listener] = []
    private var nextSlot = 0
    /// The lifecycle of every draining endpoint by `profile/name` (see `ProfileControl`).
    var drains: [String: EndpointLifecycle] = [:]
    /// How finished drains ended, for `switch --wait`.
    var drainOutcomes: [String: String] = [:]
    private var drainTimer: DispatchSourceTimer?
    /// Last health change per `profile/name`, for `show endpoints`.
    var lastHealthChange: [String: RuntimeEvent] = [:]
    /// What probes and live traffic said per `profile/name` (see `EndpointHealth`).
    var healthStates: [String: EndpointHealth] = [:]
    /// Health set by `set endpoint … health up|down` per `profile/name`; routing uses it instead of
    /// the probes' until `auto`.
    var healthOverrides: [String: Health] = [:]
    /// The endpoints the last switch of each profile replaced, for `rollback`.
    var lastReplaced: [String: [String]] = [:]
    /// Guard windows by profile name, their judging timers, and the live endpoint's counters at the
    /// guarded switch (see `ProxyRuntime+Guard`).
    var guards: [String: GuardWindow] = [:]
    var guardTimers: [String: DispatchSourceTimer] = [:]
    var guardBaselines: [String: GuardSample] = [:]
    /// A minute of counter samples per `profile/name`: recent rates and latency for `show endpoints`,
    /// `/status` and `max_p99_ratio`.
    var latencySamples: [String: CounterRing] = [:]
    var latencySampler: DispatchSourceTimer?
    /// Active health probes; scheduled and counted on `controlQueue` (see `startProbes`).
    lazy var prober = HealthProber(queue: controlQueue)
    let store: SnapshotStore
    let workers: [Worker]
    let events = EventLog()
    let stats = ProxyStats()
    let stateFile: StateFile?
    let accessLog: AccessLog?
    let shuttingDown = Atomic<Bool>(false)
    /// Set once a takeover succeeded (see `ProxyRuntime+Handover`).
    var handedOver = false
    /// 1 + the predecessor's generation after a takeover, and when it happened (`show stats`).
    var processGeneration = 1
    var tookOverAt: Date?
    /// The admin HTTP listener's socket, host and port, for a takeover.
    var adminHTTPSocket: (fd: Int32, host: String, port: UInt16)?
    let startedAt = Date()
    /// The link to the fleet's etcd (config `cluster`); `nil` for a proxy on its own.
    var fleet: FleetLink?

    /// The CPUs this process may run on (its affinity mask), ascending; empty if it cannot be read.
    static func allowedCPUs() -> [Int] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = cshims_allowed_cpus(&cpus, Int32(cpus.count))
        return count > 0 ? cpus.prefix(Int(count)).map(Int.init) : []
    }

    /// Prepares the runtime (restoring the state file over the config); nothing listens until `start`.
    public init(config fileConfig: Config, configPath: String?) throws {
        var config = fileConfig
        self.configPath = configPath
        let allowedCPUs = Self.allowedCPUs()
        let workerCount = config.workerCount(allowedCPUs: allowedCPUs, onlineCPUs: ProcessInfo.processInfo.activeProcessorCount)
        let accessLog = config.accessLog == "off" ? nil : try AccessLog(destination: config.accessLog, format: config.accessLogFormat, workers: workerCount)
        self.accessLog = accessLog
        self.workers = (0..<workerCount).map {
            Worker(index: $0, cpu: config.workerCPUAffinity.cpu(forWorker: $0, of: workerCount, allowed: allowedCPUs), accessLog: accessLog, settings: ConnectionSettings(config))
        }
        self.stateFile = config.stateFile.map(StateFile.init(path:))
        var state = RuntimeState(config: config)
        if let stateFile, let saved = try stateFile.read() {
            config = fileConfig.including(addedEndpointsOf: saved)
            state = saved.reconciled(with: config)
            for key in saved.unmatched(by: config) {
                Log.info("state file \(stateFile.path): \(key) is not in the config; its saved state is dropped")
            }
            let changes = state.restoredChanges(over: config)
            Log.info("restored runtime state from \(stateFile.path): " + (changes.isEmpty ? "as configured" : changes.joined(separator: "; ")))
        }
        self.config = config
        self.runtime = state
        self.store = SnapshotStore(ProxySnapshot(routing: RoutingSnapshot(generation: 0, profiles: []), listenerBySlot: [], holdQueues: []))
        self.targets = try resolveTargets(for: config)
        if let cluster = config.cluster { try joinFleet(cluster) }
    }

    /// Opens the listeners (or adopts `inherited` sockets, by listener index: a predecessor's in a
    /// takeover, systemd's with socket activation; `origin` says which in the log), starts the
    /// workers and publishes the first snapshot.
    public func start(inherited: [Int: Int32] = [:], inheritedFrom origin: String = "taken over") throws {
        try controlQueue.sync {
            for (index, listenerConfig) in config.listeners.enumerated() {
                let transport = try transport(for: listenerConfig, index: index, config: config)
                if let fd = inherited[index] {
                    let listener = Listener(config: listenerConfig, slot: nextSlot, transport: transport, adopting: fd)
                    nextSlot += 1
                    Log.info("listening on \(listenerConfig.address.host):\(listener.boundPort) (\(listenerConfig.mode.rawValue)\(Self.security(transport)), listener \(listenerConfig.name) → \(listenerConfig.routingSummary), \(origin))")
                    listeners.append(listener)
                } else {
                    listeners.append(try openListener(listenerConfig, transport: transport))
                }
            }
            publish(persist: false)
            startProbes()
            resumeRestoredDrains()
            endRestoredGuards()
            startLatencySampling()
        }
        for worker in workers { worker.queue.async { worker.start() } }
        let cpus = workers.compactMap(\.cpu)
        Log.info("\(workers.count) worker\(workers.count == 1 ? "" : "s")" + (cpus.isEmpty ? ", placed by the scheduler" : " on CPU\(cpus.count == 1 ? "" : "s") \(cpus.map(String.init).joined(separator: " ")) (worker_cpu_affinity auto)"))
        controlQueue.sync {
            for listener in listeners { startAccepting(listener) }
        }
    }

    /// The port each listener is bound to, by listener name (port 0 in config becomes a real port).
    public var boundPorts: [String: UInt16] {
        controlQueue.sync { Dictionary(listeners.map { ($0.config.name, $0.boundPort) }, uniquingKeysWith: { a, _ in a }) }
    }

    private func openListener(_ listenerConfig: ListenerConfig, transport: ListenerTransport) throws -> Listener {
        let listener = try Listener(config: listenerConfig, slot: nextSlot, transport: transport)
        nextSlot += 1
        Log.info("listening on \(listenerConfig.address.host):\(listener.boundPort) (\(listenerConfig.mode.rawValue)\(Self.security(transport)), listener \(listenerConfig.name) → \(listenerConfig.routingSummary))")
        return listener
    }

    /// ` over TLS, certificates for a.test,*.a.test; b.test` for a listener's log line.
    private static func security(_ transport: ListenerTransport) -> String {
        transport.tls.map { " over TLS, certificates for \($0.certificateNames.map { $0.joined(separator: ",") }.joined(separator: "; "))" } ?? ""
    }

    private func startAccepting(_ listener: Listener) {
        let slot = listener.slot
        let mode = listener.config.mode
        listener.start(workers: workers) { [unowned self, unowned listener] worker, fd in
            self.accepted(fd: fd, on: worker, slot: slot, mode: mode, transport: listener.transport)
        }
    }

    /// - Important: runs on `worker`'s queue.
    private func accepted(fd: Int32, on worker: Worker, slot: Int, mode: ListenerMode, transport: ListenerTransport) {
        stats.acceptedConnections.wrappingAdd(1, ordering: .relaxed)
        let open = stats.openConnections.wrappingAdd(1, ordering: .relaxed).newValue
        let shutting = shuttingDown.load(ordering: .relaxed)
        // At the cap, the HTTP client that has been idle longest (silent since it connected, or
        // between requests) makes room: otherwise sockets that say nothing would turn every real
        // client away until `header_read` or `idle` expires.
        if open > worker.settings.limits.maxConnections && (shutting || !evictIdleClient(on: worker)) {
            connectionClosed(on: worker)
            stats.refusedConnections.wrappingAdd(1, ordering: .relaxed)
            Self.refuse(fd, mode: transport.tls == nil ? mode : .tcp, reason: "the proxy is at max_connections")
            return
        }
        // Accepted while the listeners close (a shutdown, or a takeover's last accepts): the
        // connection is served, with `Connection: close`, never turned away: its client did
        // nothing wrong, and in a takeover the successor serves everything after it.
        Socket.setNoDelay(fd)
        guard transport.proxyProtocol else {
            return serve(fd: fd, on: worker, slot: slot, mode: mode, transport: transport, addresses: nil)
        }
        ProxyProtocolReader(fd: fd, worker: worker, runtime: self) { [unowned self] fd, addresses in
            self.serve(fd: fd, on: worker, slot: slot, mode: mode, transport: transport, addresses: addresses)
        }.start()
    }

    /// Starts the session or tunnel of an accepted connection; `addresses` are the client and the
    /// address it connected to as a PROXY header named them (`nil`: the socket's own).
    ///
    /// - Important: runs on `worker`'s queue.
    private func serve(fd: Int32, on worker: Worker, slot: Int, mode: ListenerMode, transport: ListenerTransport, addresses: ProxyProtocol.Addresses?) {
        switch mode {
        // A session looks the socket's ends up itself, and only if a request needs them.
        case .http: HTTPSession(fd: fd, worker: worker, runtime: self, slot: slot, transport: transport, addresses: addresses).start()
        case .tcp: TCPTunnel(fd: fd, worker: worker, runtime: self, slot: slot, transport: transport, addresses: addresses ?? Socket.addresses(fd)).start()
        }
    }

    /// Closes the longest-idle HTTP client connection of `worker`; false when it has none.
    ///
    /// - Important: runs on `worker`'s queue.
    private func evictIdleClient(on worker: Worker) -> Bool {
        guard let channel = worker.poller.longestIdleClient(where: { channel in
                // Bytes waiting unread mean the client has spoken (its request is on the way in):
                // under a flood of accepts it can look idle longest, and closing it would reset a
                // real request.
                guard Socket.bytesWaiting(channel.fd) == 0 else { return false }
                if let session = channel.handler as? HTTPSession { return session.servingTarget == nil }
                // A connection still silent before its PROXY header is as idle as one before its
                // request; a tunnel is never idle in this sense (a quiet database connection is busy).
                return channel.handler is ProxyProtocolReader
            }),
            let session = channel.handler as? WorkerConnection
        else { return false }
        session.forceClose(reason: "evicted: idle longest at max_connections")
        stats.evictedConnections.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// Turns a client away: HTTP gets a `503` with `Retry-After` (a bare close reads as a network
    /// fault), TCP a close. The request is not waited for; what has arrived is read first, so the
    /// close is a FIN and the 503 is not lost to a reset.
    private static func refuse(_ fd: Int32, mode: ListenerMode, reason: String) {
        if mode == .http {
            let answer = errorResponse(status: 503, message: "\(reason); try again", extraHeaders: [("Retry-After", "1")], close: true)
            _ = answer.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Glibc.shutdown(fd, Int32(SHUT_WR))
            var sink = [UInt8](repeating: 0, count: 4096)
            while sink.withUnsafeMutableBytes({ Glibc.read(fd, $0.baseAddress, $0.count) }) > 0 {}
        }
        close(fd)
    }

    /// Called by a client connection when it closes, on its worker's queue.
    func connectionClosed(on worker: Worker) {
        stats.openConnections.wrappingSubtract(1, ordering: .relaxed)
        worker.clientConnections.wrappingSubtract(1, ordering: .relaxed)
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
    /// - Returns: how many held requests and connections each profile released, by profile name.
    /// - Important: call on `controlQueue`.
    @discardableResult
    func publish(persist: Bool = true) -> [String: Int] {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        generation += 1
        let routing = RoutingSnapshot.build(config: config, runtime: runtime, generation: generation) { profile, endpoint in
            targets["\(profile.name)/\(endpoint.name)"]!
        }
        var listenerBySlot = [ListenerRouting?](repeating: nil, count: nextSlot)
        for listener in listeners {
            listenerBySlot[listener.slot] = routing.listener(named: listener.config.name)
        }
        let holdQueuesByIndex = routing.profiles.map { holdQueue(for: $0.name) }
        store.publish(ProxySnapshot(routing: routing, listenerBySlot: listenerBySlot, holdQueues: holdQueuesByIndex))

        var releasedCounts: [String: Int] = [:]
        for route in routing.profiles {
            let released = holdQueue(for: route.name).published(generation: generation, conditions: route.hold)
            for held in released { held.release() }
            releasedCounts[route.name] = released.count
        }
        let candidates = Set(routing.profiles.flatMap { $0.candidates.map(ObjectIdentifier.init) })
        closeIdleUpstreams(to: targets.values.filter { !candidates.contains(ObjectIdentifier($0)) })
        if persist { persistState() }
        return releasedCounts
    }

    /// Closes, on every worker, the idle pooled connections to endpoints that take no new work.
    private func closeIdleUpstreams(to retired: [EndpointTarget]) {
        guard !retired.isEmpty else { return }
        for worker in workers {
            worker.queue.async { for target in retired { worker.pool.closeIdle(to: target) } }
        }
    }

    func persistState() {
        // After a handover the state file is the successor's: this process only reads it.
        guard let stateFile, !handedOver else { return }
        do {
            try stateFile.write(runtime)
        } catch {
            Log.error("\(error)")
        }
    }

    // MARK: - Targets and reload

    func resolveTargets(for config: Config) throws -> [String: EndpointTarget] {
        var resolved: [String: EndpointTarget] = [:]
        for (p, profile) in config.profiles.enumerated() {
            for (e, endpoint) in profile.endpoints.enumerated() {
                let key = "\(profile.name)/\(endpoint.name)"
                if let existing = targets[key], existing.address == endpoint.address,
                   (existing.upstreamTLS as? TLSClientContext)?.config == endpoint.tls, existing.sendProxy == profile.sendProxy(to: endpoint) {
                    resolved[key] = existing
                    continue
                }
                let socketAddress: [UInt8]
                do {
                    socketAddress = try Socket.resolve(endpoint.address)
                } catch {
                    throw ConfigError(file: configPath ?? "(command line)", key: "profiles[\(p)].endpoints[\(e)].address", reason: "\(error)")
                }
                let upstreamTLS = try TLSClientContext.load(
                    endpoint, key: "profiles[\(p)].endpoints[\(e)].tls", file: configPath ?? "(command line)", timeouts: config.timeouts, stats: stats.tls)
                resolved[key] = EndpointTarget(
                    profile: profile.name, name: endpoint.name, address: endpoint.address, socketAddress: socketAddress, upstreamTLS: upstreamTLS,
                    sendProxy: profile.sendProxy(to: endpoint))
            }
        }
        return resolved
    }

    /// The certificates and redirect of a listener, read from disk now (at start and at every reload).
    private func transport(for listener: ListenerConfig, index: Int, config: Config) throws(ConfigError) -> ListenerTransport {
        try ListenerTransport.load(
            listener, index: index, file: configPath ?? "(command line)", timeouts: config.timeouts, stats: stats.tls,
            trustedProxies: config.trustedProxies(for: listener))
    }

    /// Re-reads the config file and applies it without dropping a connection; a config that fails
    /// validation, or a listener that cannot bind, changes nothing.
    ///
    /// - Important: call on `controlQueue`.
    func reload() throws(AdminError) -> String {
        guard let configPath else { throw AdminError(.conflict, "started without a config file; nothing to reload") }
        // systemd (Type=notify) sees the reload begin and end, refused or not.
        SystemdNotify.reloading()
        defer { SystemdNotify.send("READY=1") }
        let next: Config
        do {
            next = try ConfigFile.load(path: configPath).including(addedEndpointsOf: runtime)
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
        // Certificates are read before anything changes: a broken key refuses the whole reload.
        var transports: [ListenerTransport] = []
        for (index, listenerConfig) in next.listeners.enumerated() {
            do {
                transports.append(try transport(for: listenerConfig, index: index, config: next))
            } catch {
                Log.error("reload refused, keeping the running config and certificates: \(error)")
                throw AdminError(.invalidConfig, "\(error); the running config and certificates are unchanged")
            }
        }
        var updates: [(Listener, ListenerConfig, ListenerTransport)] = []
        for (listenerConfig, transport) in zip(next.listeners, transports) {
            // Same name first: two port-0 listeners share the configured address `127.0.0.1:0`,
            // and matching on it alone handed both configs to the first socket.
            let unclaimed = listeners.filter { old in !kept.contains { $0 === old } && old.config.address == listenerConfig.address && old.config.mode == listenerConfig.mode }
            if let existing = unclaimed.first(where: { $0.config.name == listenerConfig.name })
                ?? unclaimed.first(where: { _ in listenerConfig.address.port != 0 }) {
                updates.append((existing, listenerConfig, transport))
                kept.append(existing)
                continue
            }
            do {
                opened.append(try openListener(listenerConfig, transport: transport))
            } catch {
                for listener in opened { listener.close() }
                throw AdminError(.invalidConfig, "listener \(listenerConfig.name): \(error); the running config is unchanged")
            }
        }
        for (listener, listenerConfig, transport) in updates { listener.update(listenerConfig, transport: transport) }
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
        for profile in next.profiles {
            for name in guards[profile.name]?.watch.map({ [$0.live] + $0.standby }) ?? [] where profile.endpoint(named: name) == nil {
                guardEvent(.endpointRemoved(name), profile: profile)
            }
        }
        for name in guards.keys where next.profile(named: name) == nil {
            guardTimers.removeValue(forKey: name)?.cancel()
            guards[name] = nil
        }
        healthStates = healthStates.filter { key, _ in targets[key] != nil }
        healthOverrides = healthOverrides.filter { key, _ in targets[key] != nil }
        events.record(profile: "*", endpoint: nil, state: "reloaded", cause: "config \(configPath)")
        publish()
        startProbes()
        return "reloaded \(configPath): \(next.listeners.count) listeners, \(next.profiles.count) profiles"
    }

    // MARK: - Profile control

    /// Feeds `event` to the profile's `ProfileControl`, keeps the state it lands in, and performs
    /// its effects in order.
    ///
    /// - Important: call on `controlQueue`.
    @discardableResult
    func apply(_ event: ProfileControl.Event, to profile: ProfileConfig) throws(ProfileControl.Refusal) -> [ProfileControl.Effect] {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        guard let profileRuntime = runtime.profiles[profile.name] else { return [] }
        let prefix = profile.name + "/"
        var profileDrains: [String: EndpointLifecycle] = [:]
        for (key, lifecycle) in drains where key.hasPrefix(prefix) { profileDrains[String(key.dropFirst(prefix.count))] = lifecycle }
        var control = ProfileControl(config: profile, runtime: profileRuntime, drains: profileDrains)
        let effects = try control.transition(on: event, now: MonotonicInstant(milliseconds: monotonicMilliseconds()))
        // The new state is in place before any effect runs: an effect may feed the next event.
        runtime.profiles[profile.name] = control.runtime
        drains = drains.filter { key, _ in !key.hasPrefix(prefix) }
        for (name, lifecycle) in control.drains { drains[prefix + name] = lifecycle }
        for effect in effects { perform(effect, profile: profile) }
        return effects
    }

    private func perform(_ effect: ProfileControl.Effect, profile: ProfileConfig) {
        switch effect {
        case .recordEvent(let endpoint, let state, let cause):
            events.record(profile: profile.name, endpoint: endpoint, state: state, cause: cause)
        case .armDrainDeadline(let endpoint, _):
            drainOutcomes["\(profile.name)/\(endpoint)"] = nil  // `switch --wait` waits for this drain, not an older one
            scheduleDrainTimer()  // one timer watches every drain, see `checkDrains`
        case .disarmDrainDeadline:
            break  // the timer stops by itself once no drain is left
        case .closeTunnels(let endpoint):
            guard let target = target(profile: profile.name, endpoint: endpoint) else { return }
            let count = closeTunnels(to: target)
            _ = try? apply(.drain(endpoint: endpoint, .tunnelsClosed(count: count)), to: profile)
        case .drainEnded(let endpoint, let outcome):
            drainOutcomes["\(profile.name)/\(endpoint)"] = outcome.description
        case .countSwitch:
            stats.switches.wrappingAdd(1, ordering: .relaxed)
        case .publishSnapshot(let persist):
            publish(persist: persist)
        }
    }

    /// Endpoints the state file restored as `draining` drain again from now (nothing is in flight
    /// after a restart, so they end at the first check) instead of staying `draining` for ever.
    private func resumeRestoredDrains() {
        let now = MonotonicInstant(milliseconds: monotonicMilliseconds())
        for profile in config.profiles {
            for endpoint in profile.endpoints where runtime.profiles[profile.name]?.endpoints[endpoint.name]?.admin == .draining {
                drains["\(profile.name)/\(endpoint.name)"] = EndpointLifecycle(admin: .draining, drain: nil, now: now, drainTimeout: profile.drainTimeout)
            }
        }
        if !drains.isEmpty { scheduleDrainTimer() }
    }

    /// The work each endpoint of `profile` has in flight now, by endpoint name.
    func inFlight(_ profile: ProfileConfig) -> [String: Int] {
        var counts: [String: Int] = [:]
        for endpoint in profile.endpoints {
            counts[endpoint.name] = target(profile: profile.name, endpoint: endpoint.name)?.counters.inFlight.load(ordering: .relaxed) ?? 0
        }
        return counts
    }

    func scheduleDrainTimer() {
        guard drainTimer == nil else { return }
        let timer = DispatchSource.makeTimerSource(queue: controlQueue)
        timer.schedule(deadline: .now() + .milliseconds(50), repeating: .milliseconds(50), leeway: .milliseconds(10))
        timer.setEventHandler { [unowned self] in self.checkDrains() }
        drainTimer = timer
        timer.activate()
    }

    /// Every 50 ms while anything drains: reports the facts each drain waits for. In-flight counts
    /// are atomics the workers update, so polling them costs nothing on the hot path.
    private func checkDrains() {
        let now = MonotonicInstant(milliseconds: monotonicMilliseconds())
        for (key, lifecycle) in drains.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2, let profile = config.profile(named: parts[0]), let target = targets[key] else { continue }
            // Standing by for a guard window: new work goes elsewhere, in-flight work finishes, but the
            // endpoint stays ready to take over (not offline) until the window ends.
            if standingBy(parts[0]).contains(parts[1]) { continue }
            let fact: EndpointLifecycle.Event
            if target.counters.inFlight.load(ordering: .relaxed) == 0 {
                fact = .drainEmptied
            } else if case .draining(let drain) = lifecycle, now >= drain.deadline {
                fact = .drainDeadlinePassed
            } else {
                continue
            }
            _ = try? apply(.drain(endpoint: parts[1], fact), to: profile)
        }
        if drains.isEmpty || drains.keys.allSatisfy({ key in
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            return parts.count == 2 && standingBy(parts[0]).contains(parts[1])
        }) {
            drainTimer?.cancel()
            drainTimer = nil
        }
    }

    /// Closes, on every worker, the tunnels and upgraded connections to `target`; returns how many.
    private func closeTunnels(to target: EndpointTarget) -> Int {
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
        return count
    }

    func targetExists(_ key: String) -> Bool { targets[key] != nil }

    func target(profile: String, endpoint: String) -> EndpointTarget? {
        targets["\(profile)/\(endpoint)"]
    }
}
