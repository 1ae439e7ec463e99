/// Applying the fleet's state document to a proxy's runtime, and reading the nodes' records: the
/// pure half of `ProxyRuntime+Fleet`.
extension RuntimeState {
    /// The runtime after adopting `document` (the fleet's state at some revision): admin states,
    /// priorities, weights, pauses and gates come from the document, health stays what this
    /// proxy's probes saw. An endpoint that took work here and is offline in the document drains
    /// rather than being cut: it is returned in `draining` as `profile/endpoint`, sorted.
    public func adopting(_ document: StateDocument, config: Config) -> (state: RuntimeState, draining: [String]) {
        var next = document.runtimeState.reconciled(with: config)
        var draining: [String] = []
        for (name, profile) in next.profiles {
            for (endpointName, endpoint) in profile.endpoints {
                guard let old = profiles[name]?.endpoints[endpointName] else { continue }
                next.profiles[name]?.endpoints[endpointName]?.health = old.health
                // The document never says draining (it saves a drain as offline); here a drain
                // is how in-flight work on an endpoint that just left finishes.
                if endpoint.admin == .offline && old.admin != .offline {
                    next.profiles[name]?.endpoints[endpointName]?.admin = .draining
                    draining.append("\(name)/\(endpointName)")
                }
            }
        }
        return (next, draining.sorted())
    }
}

/// What `show fleet` and a fleet switch know about the nodes: their records against a revision.
public struct FleetRoster: Sendable, Equatable {
    /// The live nodes' records, by node name (a node whose lease expired has none).
    public var records: [String: FleetNodeRecord]

    public init(records: [String: FleetNodeRecord]) {
        self.records = records
    }

    /// The nodes that have not yet applied `revision`, sorted.
    public func behind(_ revision: Int64) -> [String] {
        records.values.filter { $0.appliedRevision < revision }.map(\.node).sorted()
    }

    /// Every live node, sorted.
    public var nodes: [String] { records.keys.sorted() }

    /// One status per node, sorted by name; `lag` is how many etcd revisions the node's applied
    /// state is behind `stateRevision` (0: it serves the current state).
    public func statuses(stateRevision: Int64) -> [FleetNodeStatus] {
        records.values.sorted { $0.node < $1.node }.map {
            FleetNodeStatus(node: $0.node, appliedRevision: $0.appliedRevision, lag: max(0, stateRevision - $0.appliedRevision), version: $0.version)
        }
    }
}

/// Whether a fleet proxy can reach its store: mutations need it, serving never does.
public enum FleetStore: Sendable, Equatable {
    /// The last request to etcd succeeded.
    case available
    /// etcd did not answer (the reason, for `show fleet` and `/health`); the proxy serves the last
    /// state it applied and refuses mutations until etcd is back.
    case unavailable(reason: String)

    /// `available` or `unavailable`.
    public var name: String {
        switch self {
        case .available: return "available"
        case .unavailable: return "unavailable"
        }
    }
}

/// `show fleet --json`: this node, the store, and every live node's applied revision.
public struct FleetAnswer: Codable, Sendable, Equatable {
    /// The node answering.
    public var node: String
    /// The key prefix of the fleet.
    public var prefix: String
    /// `available` or `unavailable`.
    public var store: String
    /// Why the store is unavailable; absent when it is available.
    public var storeError: String?
    /// The revision of the state document this node serves.
    public var appliedRevision: Int64
    /// The state document's revision in etcd, as last seen.
    public var stateRevision: Int64
    /// The live nodes (as last read from etcd), sorted by name.
    public var nodes: [FleetNodeStatus]

    public init(node: String, prefix: String, store: FleetStore, appliedRevision: Int64, stateRevision: Int64, nodes: [FleetNodeStatus]) {
        self.node = node
        self.prefix = prefix
        self.store = store.name
        if case .unavailable(let reason) = store { self.storeError = reason }
        self.appliedRevision = appliedRevision
        self.stateRevision = stateRevision
        self.nodes = nodes
    }
}

/// One node in `show fleet`.
public struct FleetNodeStatus: Codable, Sendable, Equatable {
    /// The node's name.
    public var node: String
    /// The state revision it has applied.
    public var appliedRevision: Int64
    /// etcd revisions between the state's and the node's applied one; 0 when it serves the current state.
    public var lag: Int64
    /// Its `cutover` version.
    public var version: String

    public init(node: String, appliedRevision: Int64, lag: Int64, version: String) {
        self.node = node
        self.appliedRevision = appliedRevision
        self.lag = lag
        self.version = version
    }
}

/// What a fleet mutation adds to its answer (key `fleet` of `switch --json`): the revision it
/// wrote and the nodes that applied it.
public struct FleetApplied: Codable, Sendable, Equatable {
    /// The state revision the mutation wrote.
    public var revision: Int64
    /// The live nodes that applied it, sorted.
    public var applied: [String]
    /// The live nodes that had not applied it when the wait ended, sorted (empty on success).
    public var pending: [String]
    /// How long the wait for the nodes took, in milliseconds.
    public var waitedMs: Int

    public init(revision: Int64, applied: [String], pending: [String], waitedMs: Int) {
        self.revision = revision
        self.applied = applied
        self.pending = pending
        self.waitedMs = waitedMs
    }
}
