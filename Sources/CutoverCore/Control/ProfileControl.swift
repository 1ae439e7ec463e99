/// The operator's commands on one profile as a value: switch, `set endpoint`, pause and resume,
/// and the drains they start, each turned into the effects the runtime performs.
///
/// The profile decides *which* endpoints move (a switch drains every online endpoint of the same or
/// a better priority than the one chosen) and what is refused; each endpoint's `EndpointLifecycle`
/// decides how it moves. The admin states, priorities, weights and pause flag live in
/// `runtime` (the value the routing snapshot and the state file read); drains live in `drains`.
public struct ProfileControl: Sendable, Equatable {
    /// The profile as configured: endpoint order, `drain_timeout`, probes.
    public let config: ProfileConfig
    /// What operators changed: admin states, priorities, weights, pause, gates.
    public private(set) var runtime: ProfileRuntime
    /// The lifecycle of every endpoint that is draining, by endpoint name.
    public private(set) var drains: [String: EndpointLifecycle]

    /// A command or a drain fact for this profile.
    public enum Event: Sendable, Equatable {
        /// `switch PROFILE ENDPOINT [--force]`; `inFlight` is the work each endpoint has now.
        case switchRequested(endpoint: String, force: Bool, inFlight: [String: Int])
        /// A guard window breached: switch back to `endpoint` whatever its health (it was live a
        /// moment ago), recorded with `cause`.
        case revertRequested(endpoint: String, cause: String, inFlight: [String: Int])
        /// `set endpoint PROFILE/NAME [online|offline|drain] [priority N] [weight W]`.
        case endpointSetRequested(endpoint: String, state: AdminCommand.EndpointStateChange?, priority: Int?, weight: Int?, inFlight: Int)
        /// `pause PROFILE`.
        case pauseRequested
        /// `resume PROFILE`: `releasing` held requests and connections go once the pause is lifted,
        /// `keeping` stay because something else still holds them (writes under `readonly hold`).
        case resumeRequested(releasing: Int, keeping: Int)
        /// A fact about the drain of `endpoint` (`drainEmptied`, `drainDeadlinePassed`, `tunnelsClosed`).
        case drain(endpoint: String, EndpointLifecycle.Event)
    }

    /// An order for the runtime.
    public enum Effect: Sendable, Equatable {
        /// Add a line to `show events` and the log; `endpoint` is `nil` for the whole profile.
        case recordEvent(endpoint: String?, state: String, cause: String)
        /// Watch `endpoint`'s drain: report `drainEmptied` when nothing is in flight, `drainDeadlinePassed` at `deadline`.
        case armDrainDeadline(endpoint: String, deadline: MonotonicInstant)
        /// Stop watching `endpoint`'s drain.
        case disarmDrainDeadline(endpoint: String)
        /// Force-close every connection still serving `endpoint` (see `EndpointLifecycle.Effect.closeTunnels`),
        /// then report `tunnelsClosed`.
        case closeTunnels(endpoint: String)
        /// `endpoint`'s drain ended (for `switch --wait`).
        case drainEnded(endpoint: String, DrainOutcome)
        /// Count one switch in `cutover_switches_total`.
        case countSwitch
        /// Build and publish a new routing snapshot, and persist the runtime state if `persist`.
        case publishSnapshot(persist: Bool)
    }

    /// Why a command was refused; the runtime words it for the operator.
    public enum Refusal: Error, Sendable, Equatable {
        /// The profile has no endpoint of that name.
        case unknownEndpoint(String)
        /// The switch target's health is `down` (and `--force` was not given).
        case targetDown(String)
        /// The switch target has not passed a probe yet (and `--force` was not given).
        case targetUnproven(String)
    }

    /// The control of a profile configured as `config`, in runtime state `runtime`, with the drains in progress.
    public init(config: ProfileConfig, runtime: ProfileRuntime, drains: [String: EndpointLifecycle] = [:]) {
        self.config = config
        self.runtime = runtime
        self.drains = drains
    }

    /// Where `endpoint` stands (`offline` for a name the profile does not have).
    public func lifecycle(of endpoint: String, now: MonotonicInstant) -> EndpointLifecycle {
        let admin = runtime.endpoints[endpoint]?.admin ?? .offline
        if admin == .draining, let drain = drains[endpoint] { return drain }
        return EndpointLifecycle(admin: admin, drain: nil, now: now, drainTimeout: config.drainTimeout)
    }

    /// Applies `event` at `now` and returns the effects to perform, in order.
    public mutating func transition(on event: Event, now: MonotonicInstant) throws(Refusal) -> [Effect] {
        switch event {
        case .switchRequested(let endpoint, let force, let inFlight):
            return try switchTo(endpoint, force: force, cause: force ? "switch --force" : "switch", inFlight: inFlight, now: now)
        case .revertRequested(let endpoint, let cause, let inFlight):
            return try switchTo(endpoint, force: true, cause: cause, inFlight: inFlight, now: now)
        case .endpointSetRequested(let endpoint, let state, let priority, let weight, let inFlight):
            return try setEndpoint(endpoint, state: state, priority: priority, weight: weight, inFlight: inFlight, now: now)
        case .pauseRequested:
            switch runtime.paused {
            case false:
                runtime.paused = true
                return [.recordEvent(endpoint: nil, state: "paused", cause: "pause"), .publishSnapshot(persist: true)]
            case true:
                return []
            }
        case .resumeRequested(let releasing, let keeping):
            switch runtime.paused {
            case true:
                runtime.paused = false
                let cause = "resume, \(releasing) held released" + (keeping > 0 ? ", \(keeping) still held" : "")
                return [.recordEvent(endpoint: nil, state: "resumed", cause: cause), .publishSnapshot(persist: true)]
            case false:
                return []
            }
        case .drain(let endpoint, let fact):
            guard let before = runtime.endpoints[endpoint]?.admin else { return [] }  // removed by a reload
            let effects = move(endpoint, on: fact, now: now)
            // Routing only changes when the admin state does (closing tunnels is still draining).
            return runtime.endpoints[endpoint]?.admin == before ? effects : effects + [.publishSnapshot(persist: true)]
        }
    }

    /// Makes `name` the only online endpoint of its priority and better; the others drain.
    private mutating func switchTo(_ name: String, force: Bool, cause: String, inFlight: [String: Int], now: MonotonicInstant) throws(Refusal) -> [Effect] {
        guard let chosen = runtime.endpoints[name] else { throw .unknownEndpoint(name) }
        if !force {
            switch chosen.health {
            case .down: throw .targetDown(name)
            case .unknown where config.hasProbes: throw .targetUnproven(name)
            case .unknown, .up: break
            }
        }
        // Config order, so that answers and events list the old endpoints the same way every time.
        let replaced = config.endpoints.map(\.name).filter { other in
            guard other != name, let state = runtime.endpoints[other] else { return false }
            return state.admin == .online && state.priority <= chosen.priority
        }
        let before = lifecycle(of: name, now: now)
        var effects = move(name, on: .switchedTo(cause: cause), now: now)
        for other in replaced {
            effects += move(other, on: .switchedAway(inFlight: inFlight[other] ?? 0), now: now)
        }
        let alreadyLive = before == .online && replaced.isEmpty
        switch before {
        case .online, .offline:
            if !alreadyLive { effects.append(.recordEvent(endpoint: name, state: "online", cause: cause)) }
        case .draining, .closingTunnels:
            break  // its lifecycle recorded the switch back, with the cancelled drain
        }
        if !alreadyLive { effects.append(.countSwitch) }
        return effects + [.publishSnapshot(persist: true)]
    }

    private mutating func setEndpoint(
        _ name: String, state: AdminCommand.EndpointStateChange?, priority: Int?, weight: Int?, inFlight: Int, now: MonotonicInstant
    ) throws(Refusal) -> [Effect] {
        guard runtime.endpoints[name] != nil else { throw .unknownEndpoint(name) }
        var changes: [String] = []
        var effects: [Effect] = []
        switch state {
        case .online?:
            effects = move(name, on: .setOnline, now: now)
            changes.append("online")
        case .offline?:
            effects = move(name, on: .setOffline, now: now)
            changes.append("offline")
        case .drain?:
            effects = move(name, on: .drainRequested(inFlight: inFlight), now: now)
            // Say where the endpoint is: an offline endpoint has nothing to drain.
            changes.append(lifecycle(of: name, now: now) == .offline ? "offline (nothing to drain)" : "draining")
        case nil:
            break
        }
        if let priority {
            runtime.endpoints[name]?.priority = priority
            changes.append("priority \(priority)")
        }
        if let weight {
            runtime.endpoints[name]?.weight = weight
            changes.append("weight \(weight)")
        }
        return effects + [.recordEvent(endpoint: name, state: changes.joined(separator: " "), cause: "set endpoint"), .publishSnapshot(persist: true)]
    }

    /// Feeds `event` to `name`'s lifecycle, stores where it lands, and names its effects.
    private mutating func move(_ name: String, on event: EndpointLifecycle.Event, now: MonotonicInstant) -> [Effect] {
        let (next, effects) = lifecycle(of: name, now: now).transition(on: event, now: now, drainTimeout: config.drainTimeout)
        runtime.endpoints[name]?.admin = next.admin
        switch next {
        case .draining, .closingTunnels: drains[name] = next
        case .online, .offline: drains[name] = nil
        }
        return effects.map { effect in
            switch effect {
            case .recordEvent(let state, let cause): return .recordEvent(endpoint: name, state: state, cause: cause)
            case .armDrainDeadline(let deadline): return .armDrainDeadline(endpoint: name, deadline: deadline)
            case .disarmDrainDeadline: return .disarmDrainDeadline(endpoint: name)
            case .closeTunnels: return .closeTunnels(endpoint: name)
            case .drainEnded(let outcome): return .drainEnded(endpoint: name, outcome)
            }
        }
    }
}
