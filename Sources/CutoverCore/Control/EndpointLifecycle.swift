/// The operator's side of one endpoint (its admin state) as a value: online, offline, or on its
/// way from one to the other through a drain that knows when it started and when it must end.
///
/// The rule, every (state, event) pair written out in `transition`:
/// - Only a drain moves an endpoint to `offline` on its own, and only from `draining` or
///   `closingTunnels`: a report about a drain that no longer runs (the endpoint was switched back
///   online, or set by hand) changes nothing and records nothing. That is what keeps `show events`
///   from saying `offline (drained after 50ms)` about an endpoint a newer switch made live.
/// - A drain superseded by a switch or a `set endpoint` ends as `cancelled`, with who cancelled it.
/// - A second drain request (a second switch away, `set endpoint … drain`) keeps the first
///   deadline: asking again does not buy in-flight work more time.
/// - At the deadline the endpoint first closes its tunnels (`closingTunnels`), and becomes
///   `offline` once the runtime reports how many it closed, so the event can say so.
public enum EndpointLifecycle: Sendable, Equatable {
    /// Eligible for new work.
    case online
    /// Never chosen for new work.
    case offline
    /// Gets no new work; in-flight work finishes until the endpoint is empty or the deadline passes.
    case draining(EndpointDrain)
    /// The deadline passed with work left: the runtime is closing the endpoint's tunnels.
    case closingTunnels(EndpointDrain)

    /// When a drain started and when it must end.
    public struct EndpointDrain: Sendable, Equatable {
        public let started: MonotonicInstant
        /// `started` + the profile's `drain_timeout`.
        public let deadline: MonotonicInstant

        public init(started: MonotonicInstant, deadline: MonotonicInstant) {
            self.started = started
            self.deadline = deadline
        }
    }

    /// What happened to the endpoint: a command, or something the runtime saw while it drains.
    public enum Event: Sendable, Equatable {
        /// A switch chose this endpoint; `cause` is `switch` or `switch --force`.
        case switchedTo(cause: String)
        /// A switch chose another endpoint and this one must make way; `inFlight` requests and tunnels it has now.
        case switchedAway(inFlight: Int)
        /// `set endpoint … online`.
        case setOnline
        /// `set endpoint … offline`.
        case setOffline
        /// `set endpoint … drain`, with the work in flight now.
        case drainRequested(inFlight: Int)
        /// The runtime saw no work left in flight on the endpoint.
        case drainEmptied
        /// The runtime's drain timer fired (it may be late, or about an older drain).
        case drainDeadlinePassed
        /// The runtime closed the endpoint's tunnels at the deadline, `count` of them.
        case tunnelsClosed(count: Int)
    }

    /// An order for the runtime, about this endpoint.
    public enum Effect: Sendable, Equatable {
        /// Add a line to `show events` and the log.
        case recordEvent(state: String, cause: String)
        /// Watch the endpoint's in-flight count and report `drainEmptied`, or `drainDeadlinePassed` at `deadline`.
        case armDrainDeadline(MonotonicInstant)
        /// Stop watching the endpoint's drain.
        case disarmDrainDeadline
        /// Force-close the tunnels and upgraded connections still serving the endpoint (in-flight HTTP
        /// requests finish, bounded by `upstream_response`), then report `tunnelsClosed`.
        case closeTunnels
        /// The drain is over; `switch --wait` answers with this.
        case drainEnded(DrainOutcome)
    }

    /// The admin state the routing snapshot and the state file see.
    public var admin: AdminState {
        switch self {
        case .online: return .online
        case .offline: return .offline
        case .draining, .closingTunnels: return .draining
        }
    }

    /// The lifecycle of an endpoint in `admin` state; a `draining` one without its drain (restored
    /// from the state file) drains from `now`.
    public init(admin: AdminState, drain: EndpointDrain?, now: MonotonicInstant, drainTimeout: Duration) {
        switch admin {
        case .online: self = .online
        case .offline: self = .offline
        case .draining: self = .draining(drain ?? EndpointDrain(started: now, deadline: now + drainTimeout))
        }
    }

    /// The next lifecycle and the effects to perform, for `event` happening at `now`.
    ///
    /// `drainTimeout` is the profile's, used when a drain starts.
    public func transition(on event: Event, now: MonotonicInstant, drainTimeout: Duration) -> (EndpointLifecycle, [Effect]) {
        switch (self, event) {
        // A switch chose this endpoint.
        case (.online, .switchedTo), (.offline, .switchedTo):
            return (.online, [])
        case (.draining(let drain), .switchedTo(let cause)), (.closingTunnels(let drain), .switchedTo(let cause)):
            return cancelled(drain, by: cause, now: now)

        // A switch chose another endpoint.
        case (.online, .switchedAway(let inFlight)):
            return startDrain(inFlight: inFlight, now: now, drainTimeout: drainTimeout)
        case (.offline, .switchedAway):
            return (.offline, [])
        case (.draining, .switchedAway), (.closingTunnels, .switchedAway):
            return (self, [])

        // set endpoint … online / offline
        case (.online, .setOnline), (.offline, .setOnline):
            return (.online, [])
        case (.draining(let drain), .setOnline), (.closingTunnels(let drain), .setOnline):
            return cancelled(drain, by: "set endpoint online", now: now, to: .online, record: false)
        case (.online, .setOffline), (.offline, .setOffline):
            return (.offline, [])
        case (.draining(let drain), .setOffline), (.closingTunnels(let drain), .setOffline):
            return cancelled(drain, by: "set endpoint offline", now: now, to: .offline, record: false)

        // set endpoint … drain
        case (.online, .drainRequested(let inFlight)):
            return startDrain(inFlight: inFlight, now: now, drainTimeout: drainTimeout)
        case (.offline, .drainRequested):
            return (.offline, [])
        case (.draining, .drainRequested), (.closingTunnels, .drainRequested):
            return (self, [])

        // The runtime saw the endpoint empty.
        case (.online, .drainEmptied), (.offline, .drainEmptied):
            return (self, [])  // a late report about a drain that was cancelled
        case (.draining(let drain), .drainEmptied), (.closingTunnels(let drain), .drainEmptied):
            let outcome = DrainOutcome.emptied(after: now.since(drain.started))
            return (.offline, [.disarmDrainDeadline, .recordEvent(state: "offline", cause: outcome.description), .drainEnded(outcome)])

        // The drain timer fired.
        case (.online, .drainDeadlinePassed), (.offline, .drainDeadlinePassed), (.closingTunnels, .drainDeadlinePassed):
            return (self, [])
        case (.draining(let drain), .drainDeadlinePassed):
            // A timer armed for an older drain can fire early for this one.
            guard now >= drain.deadline else { return (self, []) }
            return (.closingTunnels(drain), [.closeTunnels])

        // The runtime closed the tunnels.
        case (.online, .tunnelsClosed), (.offline, .tunnelsClosed), (.draining, .tunnelsClosed):
            return (self, [])
        case (.closingTunnels(let drain), .tunnelsClosed(let count)):
            let outcome = DrainOutcome.deadlinePassed(after: now.since(drain.started), forceClosed: count)
            return (.offline, [.disarmDrainDeadline, .recordEvent(state: "offline", cause: outcome.description), .drainEnded(outcome)])
        }
    }

    private func startDrain(inFlight: Int, now: MonotonicInstant, drainTimeout: Duration) -> (EndpointLifecycle, [Effect]) {
        let drain = EndpointDrain(started: now, deadline: now + drainTimeout)
        return (.draining(drain), [
            .recordEvent(state: "draining", cause: "\(inFlight) in flight, deadline \(DurationText.format(drainTimeout))"),
            .armDrainDeadline(drain.deadline),
        ])
    }

    /// Ends `drain` because a command superseded it. A switch back records the endpoint online with
    /// the cancellation as its cause; `set endpoint` records its own line.
    private func cancelled(
        _ drain: EndpointDrain, by cause: String, now: MonotonicInstant, to next: EndpointLifecycle = .online, record: Bool = true
    ) -> (EndpointLifecycle, [Effect]) {
        let outcome = DrainOutcome.cancelled(after: now.since(drain.started), by: cause)
        let recorded: [Effect] = record ? [.recordEvent(state: "online", cause: "\(cause), \(outcome.description)")] : []
        return (next, [.disarmDrainDeadline] + recorded + [.drainEnded(outcome)])
    }
}

/// How a drain ended.
public enum DrainOutcome: Sendable, Equatable, CustomStringConvertible {
    /// No work was left in flight.
    case emptied(after: Duration)
    /// The deadline passed and `forceClosed` tunnels were closed.
    case deadlinePassed(after: Duration, forceClosed: Int)
    /// A newer command (`switch`, `set endpoint`) ended it; the endpoint is where that command put it.
    case cancelled(after: Duration, by: String)

    /// Operator words: `drained after 50ms`, `drain deadline after 30s: 2 force-closed`,
    /// `drain cancelled after 50ms`.
    public var description: String {
        switch self {
        case .emptied(let after): return "drained after \(DurationText.format(after))"
        case .deadlinePassed(let after, let count): return "drain deadline after \(DurationText.format(after)): \(count) force-closed"
        case .cancelled(let after, _): return "drain cancelled after \(DurationText.format(after))"
        }
    }
}
