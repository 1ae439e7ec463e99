/// What operators and probes changed since start: layered over `Config` to build each `RoutingSnapshot`.
///
/// This is the value persisted in the state file, so that a restart keeps a switch, a pause or a gate.
public struct RuntimeState: Sendable, Equatable {
    public var profiles: [String: ProfileRuntime]

    public init(profiles: [String: ProfileRuntime] = [:]) {
        self.profiles = profiles
    }

    /// The runtime view of a config: admin states, priorities and weights as configured, health unknown.
    public init(config: Config) {
        var profiles: [String: ProfileRuntime] = [:]
        for profile in config.profiles {
            profiles[profile.name] = ProfileRuntime(profile: profile)
        }
        self.profiles = profiles
    }

    /// Carries runtime changes over to a new config: known endpoints keep their runtime values, new
    /// ones start as configured, and removed ones are dropped.
    public func reconciled(with config: Config) -> RuntimeState {
        var next = RuntimeState(config: config)
        for profile in config.profiles {
            guard let old = profiles[profile.name] else { continue }
            var merged = next.profiles[profile.name]!
            merged.paused = old.paused
            merged.maintenance = old.maintenance
            merged.readOnly = old.readOnly
            merged.guardWindow = old.guardWindow
            // Endpoints added at runtime stay while the config (which already includes them, see
            // `Config.including(addedEndpointsOf:)`) has them at the same address.
            merged.added = old.added.filter { profile.endpoint(named: $0.name)?.address == $0.address }
            for endpoint in profile.endpoints {
                if let kept = old.endpoints[endpoint.name] { merged.endpoints[endpoint.name] = kept }
            }
            next.profiles[profile.name] = merged
        }
        return next
    }

    /// What `reconciled(with:)` drops: the profiles and endpoints saved here that `config` no longer
    /// has, as sorted key paths (`profiles.web`, `profiles.web.endpoints.old`), so a restore can say
    /// what it did not carry over instead of dropping it silently.
    public func unmatched(by config: Config) -> [String] {
        var dropped: [String] = []
        for (name, profile) in profiles.sorted(by: { $0.key < $1.key }) {
            guard let configured = config.profile(named: name) else {
                dropped.append("profiles.\(name)")
                continue
            }
            for endpoint in profile.endpoints.keys.sorted() where !configured.endpoints.contains(where: { $0.name == endpoint }) {
                dropped.append("profiles.\(name).endpoints.\(endpoint)")
            }
        }
        return dropped
    }
}

/// Runtime state of one profile.
public struct ProfileRuntime: Sendable, Equatable {
    public var endpoints: [String: EndpointRuntime]
    /// New requests and connections are held, not forwarded.
    public var paused: Bool
    /// Every request is answered with the maintenance page, except bypassed ones.
    public var maintenance: Bool
    /// What becomes of unsafe requests: they pass (`off`), are refused (`on`) or wait (`hold`).
    public var readOnly: ReadOnlyGate
    /// The guard window open on the profile, if any: saved so that a restart knows one was.
    public var guardWindow: GuardRecord?
    /// Endpoints added by `add endpoint` (not in the config file), in the order they were added.
    public var added: [EndpointConfig]

    public init(
        endpoints: [String: EndpointRuntime], paused: Bool = false, maintenance: Bool = false, readOnly: ReadOnlyGate = .off,
        guardWindow: GuardRecord? = nil, added: [EndpointConfig] = []
    ) {
        self.endpoints = endpoints
        self.paused = paused
        self.maintenance = maintenance
        self.readOnly = readOnly
        self.guardWindow = guardWindow
        self.added = added
    }

    public init(profile: ProfileConfig) {
        var endpoints: [String: EndpointRuntime] = [:]
        for endpoint in profile.endpoints {
            endpoints[endpoint.name] = EndpointRuntime(admin: endpoint.state, priority: endpoint.priority, weight: endpoint.weight)
        }
        self.init(endpoints: endpoints)
    }
}

/// Runtime state of one endpoint: the admin state and weights the operator set, and the health probes saw.
public struct EndpointRuntime: Sendable, Equatable {
    public var admin: AdminState
    public var health: Health
    public var priority: Int
    public var weight: Int
    /// The share of `weight` the endpoint's agent probe last asked for, in percent (0 while it
    /// drains); `nil` for the full weight. Like health, not saved: the agent says it again.
    public var agentShare: Int?

    public init(admin: AdminState, health: Health = .unknown, priority: Int, weight: Int, agentShare: Int? = nil) {
        self.agentShare = agentShare
        self.admin = admin
        self.health = health
        self.priority = priority
        self.weight = weight
    }
}

/// What the state file keeps of an open guard window: who was judged and who stood by. Thresholds
/// and figures are not kept: a restart ends the window (see `GuardWindow.Event.restarted`).
public struct GuardRecord: Codable, Sendable, Equatable {
    /// The endpoint under judgement.
    public var live: String
    /// The endpoints standing by, in config order.
    public var standby: [String]

    public init(live: String, standby: [String]) {
        self.live = live
        self.standby = standby
    }
}
