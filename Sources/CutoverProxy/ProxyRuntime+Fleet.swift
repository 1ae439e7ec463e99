import CutoverCore
import Dispatch
import Foundation

/// A fleet proxy (config `cluster`): the runtime state lives in etcd under `PREFIX/state`, one
/// document whose `mod_revision` is its version.
///
/// A mutation is computed here as without a fleet, then written with one txn comparing the
/// revision it was based on; a race is refused (`conflict`) and this proxy goes back to what etcd
/// holds. Every proxy watches the key and adopts each new document with one publish. etcd being
/// unreachable never stops traffic: the proxy serves the last state it applied (fail-static) and
/// refuses mutations (`store-unavailable`) until etcd answers again.
extension ProxyRuntime {
    // MARK: - Joining

    /// Reads (or creates) the fleet's state at start; when etcd does not answer, the proxy starts
    /// on the state it has (state file or config) and says so. Then starts the watch and lease threads.
    ///
    /// - Important: call from `init`, before anything is published. A TLS file that cannot be
    ///   used is a config error naming its key.
    func joinFleet(_ cluster: ClusterConfig) throws(ConfigError) {
        let link: FleetLink
        do {
            link = try FleetLink(cluster: cluster)
        } catch {
            let key: String
            switch error {
            case .certificate: key = "cluster.tls.cert"
            case .key, .keyMismatch: key = "cluster.tls.key"
            case .authorities: key = "cluster.tls.ca"
            case .context: key = "cluster.tls"
            }
            throw ConfigError(file: configPath ?? "(config)", key: key, reason: "\(error)")
        }
        fleet = link
        do {
            try syncFleetState(link, initial: true)
        } catch {
            link.markStore(.unavailable(reason: error.reason))
            Log.warning("fleet: etcd unreachable at start (\(error.reason)); serving the \(stateFile == nil ? "config's" : "local state file's") state until it answers")
        }
        Thread.detachNewThread { [self] in watchFleet(link) }
        Thread.detachNewThread { [self] in renewFleetLease(link) }
    }

    /// Reads the state key and adopts it when newer than what is served; creates it from the
    /// local state when the fleet has none yet.
    private func syncFleetState(_ link: FleetLink, initial: Bool = false) throws(EtcdClient.Failure) {
        if let (document, revision) = try link.readState() {
            link.markStore(.available)
            link.book.withLock { $0.stateRevision = max($0.stateRevision, revision) }
            if initial {
                runtime = runtime.adopting(document, config: config).state
                link.book.withLock {
                    $0.appliedRevision = revision
                    $0.document = document
                }
                Log.info("fleet \(link.keys.prefix): node \(link.cluster.node) starts on the fleet's state at revision \(revision)")
            } else {
                controlQueue.sync { adoptFleetState(document, revision: revision, link: link) }
                if link.book.withLock({ $0.ownChangePending != nil }) {
                    link.records.async { [self] in self.flushOwnChange(link) }  // etcd is back, still on our revision
                }
            }
        } else {
            let document = initial ? StateDocument(runtime) : controlQueue.sync { StateDocument(runtime) }
            switch try link.write(document, basedOn: 0) {
            case .written(let revision):
                link.markStore(.available)
                link.book.withLock {
                    $0.appliedRevision = revision
                    $0.stateRevision = revision
                    $0.document = document
                }
                Log.info("fleet \(link.keys.prefix): no state yet; wrote this node's at revision \(revision)")
            case .raced:
                try syncFleetState(link, initial: initial)  // another node created it first
                return
            }
        }
        try? link.putRecord(appliedRevision: link.book.withLock { $0.appliedRevision })
    }

    /// Adopts the fleet's `document` at `revision` with one publish, unless this proxy already
    /// serves that revision or a later one (`force`: go back to it whatever is served).
    ///
    /// - Important: call on `controlQueue`.
    func adoptFleetState(_ document: StateDocument, revision: Int64, link: FleetLink, force: Bool = false) {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        let applied = link.book.withLock { $0.appliedRevision }
        guard force || revision > applied else { return }
        let (next, draining) = runtime.adopting(document, config: config)
        let changed = next != runtime
        runtime = next
        let now = MonotonicInstant(milliseconds: monotonicMilliseconds())
        for key in draining where drains[key] == nil {
            let profile = config.profile(named: String(key.split(separator: "/", maxSplits: 1)[0]))
            drains[key] = EndpointLifecycle(admin: .draining, drain: nil, now: now, drainTimeout: profile?.drainTimeout ?? .seconds(30))
        }
        if !draining.isEmpty { scheduleDrainTimer() }
        link.book.withLock {
            $0.appliedRevision = revision
            $0.stateRevision = max($0.stateRevision, revision)
            $0.document = document
            $0.ownChangePending = nil  // the fleet's state moved on: it wins over a change not written yet
        }
        if changed {
            events.record(profile: "*", endpoint: nil, state: "fleet state adopted", cause: "etcd revision \(revision)")
            publish()
        }
        link.records.async { try? link.putRecord(appliedRevision: revision) }
    }

    // MARK: - Threads

    /// Watches the state key from the revision served; each put is adopted. When the stream ends,
    /// resyncs (any member) and watches again; the store is unavailable only if no member answers.
    private func watchFleet(_ link: FleetLink) {
        while true {
            let from = link.book.withLock { $0.appliedRevision } + 1
            do {
                try link.client.stream("/v3/watch", EtcdWatchRequest(key: link.keys.state, startRevision: from)) { message in
                    guard let answer = try? EtcdJSON.decoder.decode(EtcdStreamed<EtcdWatchResponse>.self, from: Data(message)), let result = answer.result else {
                        return false
                    }
                    if result.canceled == true { return false }  // compacted past `from`: resync
                    link.markStore(.available)
                    for event in result.events ?? [] where event.type == nil {
                        guard let kv = event.kv, let document = try? StateDocument.decode(kv.valueBytes) else { continue }
                        controlQueue.sync { adoptFleetState(document, revision: kv.revision, link: link) }
                    }
                    return true
                }
            } catch {
                // One member closing its stream (killed, restarted) says nothing of the others:
                // the resync below tries them all and decides.
                if link.book.withLock({ $0.store == .available }) { Log.info("fleet: watch ended (\(error.reason)); resyncing") }
            }
            do {
                try syncFleetState(link)
            } catch {
                link.markStore(.unavailable(reason: error.reason))
                usleep(200_000)  // every member refused: retry at a gentle pace
            }
        }
    }

    /// Keeps this node's record alive: renews its lease every second, puts the record again under
    /// a new lease when it expired (etcd was away longer than the TTL).
    private func renewFleetLease(_ link: FleetLink) {
        while true {
            usleep(1_000_000)
            do {
                if try !link.keepAlive() {
                    try link.putRecord(appliedRevision: link.book.withLock { $0.appliedRevision })
                }
                let wasDown = link.book.withLock { $0.store != .available }
                link.markStore(.available)
                if wasDown { try syncFleetState(link) }
            } catch {
                link.markStore(.unavailable(reason: error.reason))
            }
        }
    }

    // MARK: - Mutations

    /// Runs a mutating command as a fleet transaction: refused while etcd is unreachable, computed
    /// locally, written comparing the revision it was based on; a `switch` then waits until every
    /// live node applied the new revision, and only then for what `--wait` / `--wait-guard` ask.
    ///
    /// A fleet `switch --wait` is written before its wait: every node switches at once and drains
    /// its own old endpoint; the proxy the command was sent to waits for its own drains (and judges
    /// its own guard window: a breach's revert is written to etcd, so every node reverts).
    ///
    /// - Important: call off the control queue.
    func executeInFleet(_ command: AdminCommand, json: Bool, link: FleetLink) throws(AdminError) -> String {
        switch Self.fleetRole(command) {
        case .written: break
        case .local: return try executeLocally(command, json: json)
        case .thisNodeOnly:
            return try executeLocally(command, json: json) + (json ? "" : " (this node only: each proxy keeps its own view of health)")
        case .refused:
            throw AdminError(.fleetUnsupported, "add endpoint, remove endpoint and deploy change this proxy's endpoints, which each proxy of a fleet has from its own config: add the endpoint to every proxy's config and reload, then switch")
        }
        guard case .switchTo(let profile, let endpoint, let force, let wait, let guardWindow, let waitGuard) = command else {
            return try commit(link) { () throws(AdminError) in try executeLocally(command, json: json) }.result
        }
        let (started, revision) = try commit(link) { () throws(AdminError) in
            try startSwitch(profile: profile, endpoint: endpoint, force: force, guardWindow: guardWindow)
        }
        let applied = waitForFleet(link, revision: revision)
        if !applied.pending.isEmpty {
            throw AdminError(.notApplied, "switched \(profile) to \(endpoint) at revision \(revision), but \(applied.pending.joined(separator: ", ")) had not applied it after \(applied.waitedMs) ms (applied: \(applied.applied.joined(separator: ", ")))")
        }
        let answer = try finishSwitch(started, wait: wait, waitGuard: waitGuard, json: json)
        return Self.answer(answer, json: json, adding: applied)
    }

    /// Makes the local `change` and writes the resulting document to etcd in one txn on the
    /// revision it was based on; returns the change's result and the revision written. A race
    /// undoes the change (`conflict`), so does an unreachable etcd (`store-unavailable`).
    ///
    /// - Important: call off the control queue.
    private func commit<T>(_ link: FleetLink, _ change: () throws(AdminError) -> T) throws(AdminError) -> (result: T, revision: Int64) {
        link.commits.lock()
        defer { link.commits.unlock() }
        if case .unavailable(let reason) = link.book.withLock({ $0.store }) {
            link.counters.withLock { $0.refused += 1 }
            throw AdminError(.storeUnavailable, "etcd is unreachable (\(reason)); serving the last applied state, changes are refused until it is back")
        }
        let basedOn = controlQueue.sync { link.book.withLock { $0.appliedRevision } }
        let result = try change()
        let document = controlQueue.sync { StateDocument(runtime) }
        do {
            let revision = try write(document, basedOn: basedOn, link: link)
            return (result, revision)
        } catch {
            switch error {
            case .unreachable(let reason):
                link.counters.withLock { $0.refused += 1 }
                throw AdminError(.storeUnavailable, "etcd is unreachable (\(reason)); the change was not made")
            case .raced(let revision):
                throw AdminError(.conflict, "the fleet's state changed (revision \(revision), this node was at \(basedOn)) while this change was made; nothing was changed, look again and retry")
            }
        }
    }

    /// Why a document was not written.
    private enum WriteFailure: Error {
        /// etcd did not answer; this proxy went back to the last document etcd gave.
        case unreachable(String)
        /// Another change was written first (at `revision`); this proxy adopted it.
        case raced(revision: Int64)
    }

    /// Writes `document` (this proxy's runtime after a change) if the state key is still at
    /// `basedOn`. A race adopts what etcd holds; an unreachable etcd goes back to the last document
    /// it gave, unless `keepOnFailure` (a revert this proxy made for safety stays made).
    ///
    /// - Important: hold `commits`; call off the control queue.
    private func write(_ document: StateDocument, basedOn: Int64, link: FleetLink, keepOnFailure: Bool = false) throws(WriteFailure) -> Int64 {
        let written: FleetLink.Written
        do {
            written = try link.write(document, basedOn: basedOn)
        } catch {
            link.markStore(.unavailable(reason: error.reason))
            if !keepOnFailure { goBack(link) }
            throw .unreachable(error.reason)
        }
        switch written {
        case .raced(let current, let revision):
            link.counters.withLock { $0.conflicts += 1 }
            if let current { controlQueue.sync { adoptFleetState(current, revision: revision, link: link, force: true) } } else { goBack(link) }
            throw .raced(revision: revision)
        case .written(let revision):
            controlQueue.sync {
                link.book.withLock {
                    $0.appliedRevision = max($0.appliedRevision, revision)
                    $0.stateRevision = max($0.stateRevision, revision)
                    $0.document = document
                    $0.ownChangePending = nil
                }
            }
            try? link.putRecord(appliedRevision: revision)
            return revision
        }
    }

    /// Writes a change this proxy made by itself (a guard breach's revert) to etcd, so that every
    /// node makes it: on the fleet's own queue, after the control queue's current work (the change's
    /// effects) is done. When etcd does not answer, the change stays here and is written when it is
    /// back, unless the fleet's state moved meanwhile (then that state wins, as for any race).
    ///
    /// - Important: call on `controlQueue`.
    func writeOwnChange(cause: String) {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        guard let link = fleet else { return }
        link.book.withLock { $0.ownChangePending = cause }
        link.records.async { [self] in self.flushOwnChange(link) }
    }

    /// Writes the pending own change, if any, based on the revision this proxy serves.
    ///
    /// - Important: call off the control queue, without holding `commits`.
    private func flushOwnChange(_ link: FleetLink) {
        link.commits.lock()
        defer { link.commits.unlock() }
        let (cause, basedOn, document) = controlQueue.sync { () -> (String?, Int64, StateDocument) in
            let book = link.book.withLock { $0 }
            return (book.ownChangePending, book.appliedRevision, StateDocument(runtime))
        }
        guard let cause else { return }
        do {
            let revision = try write(document, basedOn: basedOn, link: link, keepOnFailure: true)
            Log.info("fleet: \(cause) written to etcd at revision \(revision)")
        } catch {
            switch error {
            case .unreachable(let reason):
                Log.warning("fleet: \(cause) is not in etcd yet (\(reason)); it is written when etcd is back")
            case .raced(let revision):
                link.book.withLock { $0.ownChangePending = nil }
                Log.warning("fleet: \(cause) was not written: the fleet's state changed first (revision \(revision)), this node follows it")
            }
        }
    }

    /// Back to the last document etcd gave, after a change that could not be written.
    private func goBack(_ link: FleetLink) {
        let (document, revision) = link.book.withLock { ($0.document, $0.appliedRevision) }
        guard let document else { return }
        controlQueue.sync { adoptFleetState(document, revision: revision, link: link, force: true) }
    }

    /// Polls the node records until every live node has applied `revision`, or the timeout.
    private func waitForFleet(_ link: FleetLink, revision: Int64) -> FleetApplied {
        let started = monotonicMilliseconds()
        let deadline = started + UInt64(FleetLink.applyTimeout.components.seconds * 1000)
        var roster = link.book.withLock { $0.roster }
        while true {
            if let read = try? link.readRoster() { roster = read }
            let pending = roster.behind(revision)
            let now = monotonicMilliseconds()
            if pending.isEmpty || now >= deadline {
                return FleetApplied(revision: revision, applied: roster.nodes.filter { !pending.contains($0) }, pending: pending, waitedMs: Int(now - started))
            }
            usleep(10_000)
        }
    }

    /// The local answer with the fleet's part: `(fleet revision R applied by a, b in N ms)` in text,
    /// key `fleet` in JSON.
    private static func answer(_ local: String, json: Bool, adding applied: FleetApplied) -> String {
        guard json else {
            return local + " (fleet revision \(applied.revision) applied by \(applied.applied.joined(separator: ", ")) in \(applied.waitedMs) ms)"
        }
        guard var decoded = try? JSONCoding.decode(AdminAnswer<SwitchAnswer>.self, from: local), decoded.data != nil else { return local }
        decoded.data?.fleet = applied
        return JSONCoding.line(decoded)
    }

    /// How a command meets the fleet: written to etcd, run on this proxy alone (read-only, or
    /// not part of the state document), or refused for now.
    enum FleetRole {
        case written
        case local
        /// Run here only, by design, and said so in the answer: `set endpoint … health` overrides
        /// this proxy's own view of health, which the fleet never shares.
        case thisNodeOnly
        /// Endpoints added at runtime change each proxy's config and targets: adopting them from
        /// etcd is not built yet, so a fleet refuses them (`fleet-unsupported`) rather than diverge.
        case refused
    }

    static func fleetRole(_ command: AdminCommand) -> FleetRole {
        switch command {
        case .switchTo, .setEndpoint, .pause, .resume, .maintenance, .readOnly, .rollback: return .written
        case .help, .showProfiles, .showEndpoints, .showStats, .showEvents, .followEvents, .showFleet, .reload: return .local
        case .setEndpointHealth: return .thisNodeOnly
        case .addEndpoint, .removeEndpoint, .deploy: return .refused
        }
    }

    // MARK: - Showing

    /// `show fleet`: this node, the store, and every live node's applied revision and lag.
    func showFleet(json: Bool) throws(AdminError) -> String {
        guard let link = fleet else {
            throw AdminError(.badArguments, "this proxy is not in a fleet (its config has no cluster section)")
        }
        let roster: FleetRoster
        do {
            roster = try link.readRoster()
            link.markStore(.available)
        } catch {
            link.markStore(.unavailable(reason: error.reason))
            roster = link.book.withLock { $0.roster }
        }
        let book = link.book.withLock { $0 }
        let fleetAnswer = FleetAnswer(
            node: link.cluster.node, prefix: link.keys.prefix, store: book.store, appliedRevision: book.appliedRevision,
            stateRevision: book.stateRevision, nodes: roster.statuses(stateRevision: book.stateRevision))
        if json { return JSONCoding.line(AdminAnswer(data: fleetAnswer)) }
        var lines = ["OK fleet \(fleetAnswer.prefix): node \(fleetAnswer.node), store \(fleetAnswer.store)\(fleetAnswer.storeError.map { " (\($0))" } ?? ""), applied revision \(fleetAnswer.appliedRevision) of \(fleetAnswer.stateRevision)"]
        for node in fleetAnswer.nodes {
            lines.append("  \(node.node)  applied \(node.appliedRevision)  lag \(node.lag)  version \(node.version)")
        }
        return lines.joined(separator: "\n")
    }

    /// The `cutover_fleet_*` families; none without a fleet.
    func writeFleetMetrics(_ m: inout PrometheusText) {
        guard let link = fleet else { return }
        let book = link.book.withLock { $0 }
        let counters = link.counters.withLock { $0 }
        let node = [("node", link.cluster.node)]
        m.family("cutover_fleet_store_reachable", .gauge, help: "1 while etcd answers; 0 while the proxy serves its last applied state and refuses changes.")
        m.sample("cutover_fleet_store_reachable", node, book.store == .available ? 1 : 0)
        m.family("cutover_fleet_applied_revision", .gauge, help: "The etcd revision of the fleet state this proxy serves (0: none from etcd yet).")
        m.sample("cutover_fleet_applied_revision", node, Int(book.appliedRevision))
        m.family("cutover_fleet_state_revision", .gauge, help: "The fleet state's etcd revision as last seen; above the applied one while this proxy lags.")
        m.sample("cutover_fleet_state_revision", node, Int(book.stateRevision))
        // Absent until etcd first answered: an age of "never" has no number.
        m.family("cutover_fleet_last_sync_age_seconds", .gauge, help: "Seconds since etcd last answered this proxy (watch, lease renewal or a change).")
        if let contact = book.lastContact {
            m.sample("cutover_fleet_last_sync_age_seconds", node, Double(monotonicMilliseconds() &- contact) / 1000)
        }
        m.family("cutover_fleet_mutations_refused_total", .counter, help: "Changes refused with store-unavailable because etcd did not answer.")
        m.sample("cutover_fleet_mutations_refused_total", node, counters.refused)
        m.family("cutover_fleet_conflicts_total", .counter, help: "Changes refused with conflict because another change was written first.")
        m.sample("cutover_fleet_conflicts_total", node, counters.conflicts)
    }

    /// `fleet: store available, revision R` for `/health`; `nil` without a fleet.
    var fleetHealthLine: String? {
        guard let link = fleet else { return nil }
        let book = link.book.withLock { $0 }
        switch book.store {
        case .available: return "fleet \(link.cluster.node): store available, revision \(book.appliedRevision)"
        case .unavailable(let reason): return "fleet \(link.cluster.node): store unavailable (\(reason)), serving revision \(book.appliedRevision)"
        }
    }
}
