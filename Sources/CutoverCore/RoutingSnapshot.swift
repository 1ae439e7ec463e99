import Synchronization

/// An immutable routing table: every profile with the endpoints that may take new work, in order.
///
/// Built from config + runtime state and published whole; each HTTP request or TCP connection reads
/// the current snapshot once, so a switch is a single publish and nothing on the hot path locks.
public final class RoutingSnapshot: Sendable {
    public let generation: UInt64
    /// Profiles in config order; listeners keep the index, so routing is an array access.
    public let profiles: [ProfileRoute]
    /// Each listener's routes resolved to `profiles`, in config order.
    public let listeners: [ListenerRouting]

    public init(generation: UInt64, profiles: [ProfileRoute], listeners: [ListenerRouting] = []) {
        self.generation = generation
        self.profiles = profiles
        self.listeners = listeners
    }

    /// Builds the snapshot for a config and its runtime state.
    ///
    /// - Parameter target: the long-lived `EndpointTarget` of an endpoint (same object across snapshots).
    public static func build(
        config: Config, runtime: RuntimeState, generation: UInt64,
        target: (ProfileConfig, EndpointConfig) -> EndpointTarget
    ) -> RoutingSnapshot {
        let routes = config.profiles.enumerated().map { index, profile in
            let state = runtime.profiles[profile.name] ?? ProfileRuntime(profile: profile)
            let choice = EndpointSelection.candidates(profile: profile, runtime: state)
            let targets = choice.map { target(profile, profile.endpoints[$0.index]) }
            return ProfileRoute(
                index: index, config: profile, candidates: targets,
                schedule: WeightedSchedule.build(weights: choice.map(\.weight)),
                paused: state.paused, maintenance: state.maintenance, readOnly: state.readOnly)
        }
        // Routes are compiled with the snapshot, so a reload that adds, removes or reorders routes
        // is one publish like any switch.
        let listeners = config.listeners.map { ListenerRouting(listener: $0, profiles: routes) }
        return RoutingSnapshot(generation: generation, profiles: routes, listeners: listeners)
    }

    /// The route of the profile with this name.
    public func profile(named name: String) -> ProfileRoute? {
        profiles.first { $0.name == name }
    }

    /// The route of the profile `name`, found at `index` when the profile list did not change since
    /// that index was read (the per-request case) and by name otherwise.
    public func profile(at index: Int, named name: String) -> ProfileRoute? {
        if index < profiles.count, profiles[index].name == name { return profiles[index] }
        return profile(named: name)
    }

    /// The routing of the listener with this name.
    public func listener(named name: String) -> ListenerRouting? {
        listeners.first { $0.name == name }
    }
}

/// One profile in a snapshot: who gets new work and which gates are closed.
public final class ProfileRoute: Sendable {
    public let index: Int
    public let config: ProfileConfig
    /// Eligible endpoints of the best priority present; empty when nothing may take work.
    public let candidates: [EndpointTarget]
    /// Indices into `candidates` in weighted round-robin order.
    public let schedule: [Int]
    public let paused: Bool
    public let maintenance: Bool
    public let readOnly: ReadOnlyGate
    /// What holds new work in this snapshot; the hold queue releases by the same value.
    public let hold: HoldConditions
    private let cursor = Atomic<Int>(0)

    public init(index: Int, config: ProfileConfig, candidates: [EndpointTarget], schedule: [Int], paused: Bool, maintenance: Bool, readOnly: ReadOnlyGate) {
        self.index = index
        self.config = config
        self.candidates = candidates
        self.schedule = schedule
        self.paused = paused
        self.maintenance = maintenance
        self.readOnly = readOnly
        self.hold = HoldConditions(paused: paused, readOnly: readOnly, hasCandidates: !candidates.isEmpty, holdWhenUnavailable: config.holdWhenUnavailable)
    }

    public var name: String { config.name }

    /// The endpoint for the next piece of new work, or `nil` when none is eligible.
    public func pick() -> EndpointTarget? {
        switch candidates.count {
        case 0: return nil
        case 1: return candidates[0]
        default:
            let turn = cursor.wrappingAdd(1, ordering: .relaxed).oldValue
            return candidates[schedule[turn % schedule.count]]
        }
    }

    /// Whether `target` may still take new work in this snapshot.
    public func isCandidate(_ target: EndpointTarget) -> Bool {
        candidates.contains { $0 === target }
    }
}

/// Which endpoints of a profile may take new work: the pure rule behind every snapshot.
public enum EndpointSelection {
    /// An endpoint chosen for new work, by its index in the profile's config.
    public struct Choice: Sendable, Equatable {
        public let index: Int
        public let weight: Int
    }

    /// Online, healthy (or not yet probed, where allowed), non-zero-weight endpoints of the best priority
    /// present. When none qualifies and the profile fails open, the online ones of the best priority
    /// regardless of health. Returned in config order.
    public static func candidates(profile: ProfileConfig, runtime: ProfileRuntime) -> [Choice] {
        // Without any probe, health never leaves `unknown`: it must count as up or nothing would route.
        let unknownCounts = profile.unknownIsUp || !profile.hasProbes
        func state(_ endpoint: EndpointConfig) -> EndpointRuntime {
            runtime.endpoints[endpoint.name] ?? EndpointRuntime(admin: endpoint.state, priority: endpoint.priority, weight: endpoint.weight)
        }
        func healthy(_ s: EndpointRuntime) -> Bool {
            switch s.health {
            case .up: return true
            case .unknown: return unknownCounts
            case .down: return false
            }
        }
        let online = profile.endpoints.indices.filter {
            let s = state(profile.endpoints[$0])
            return s.admin == .online && s.schedulingWeight > 0
        }
        var eligible = online.filter { healthy(state(profile.endpoints[$0])) }
        if eligible.isEmpty && profile.failOpen { eligible = online }
        guard let best = eligible.map({ state(profile.endpoints[$0]).priority }).min() else { return [] }
        return eligible
            .filter { state(profile.endpoints[$0]).priority == best }
            .map { Choice(index: $0, weight: state(profile.endpoints[$0]).schedulingWeight) }
    }
}

extension EndpointRuntime {
    /// The weight routing uses: in hundredths, so that an agent's `50%` of weight 1 is half of its
    /// peers' share and not 0 (the schedule divides by the weights' greatest common divisor, so
    /// the cycle is no longer for it).
    public var schedulingWeight: Int { weight * (agentShare ?? 100) }
}

extension ProfileConfig {
    /// Whether any endpoint of this profile is actively probed.
    public var hasProbes: Bool { probe != nil || endpoints.contains { $0.probe != nil } }
}
