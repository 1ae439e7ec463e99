/// What probes and live traffic say about one endpoint, as a value: its health, the rise/fall
/// counter of its active probe (a `HealthCounter`), and its passive failure streaks.
///
/// The rule, every (state, event) pair written out in `transition`:
/// - Probe results are counted by the `HealthCounter` while a probe runs; a result that arrives
///   after the probe was removed counts for nothing.
/// - Passive failures (connect refused/reset/timeouts, and 5xx answers when `passive.status_5xx`
///   is set) mark an endpoint down after `threshold` in a row, but only while an active probe
///   watches it: probes are what bring it back (after `rise` successes), so without one a passive
///   `down` would last until a restart.
/// - An answer on live traffic ends the passive streaks (a connection only ends the connection-failure
///   streak); so does the endpoint coming back up.
/// - A probe removed from the config forgets what the last one said: health goes back to `unknown`.
public struct EndpointHealth: Sendable, Equatable {
    /// Whether an active probe watches the endpoint, and if so where its counter stands.
    public enum State: Sendable, Equatable {
        /// No active probe; health as it was last set (restored, or `unknown`).
        case unprobed(Health)
        /// An active probe runs; the counter holds the health and the streak that can change it.
        case probed(HealthCounter)
    }

    /// Something probes or live traffic saw.
    public enum Event: Sendable, Equatable {
        /// An active probe (re)starts with these `rise`/`fall` counts (new endpoint, changed probe).
        case probeStarted(rise: Int, fall: Int)
        /// The probe was removed from the config.
        case probeStopped
        /// A probe passed; the text is the operator's (`probe: HTTP 200 on /healthz`).
        case probeSucceeded(String)
        /// A probe failed (`probe: connect refused`).
        case probeFailed(String)
        /// Live traffic failed; `threshold` in a row mark the endpoint down (0 = this signal is off).
        case passiveFailureSeen(PassiveSignal, cause: String, threshold: Int)
        /// Live traffic reached the endpoint fine, as far as `proof` goes.
        case passiveSuccessSeen(PassiveSuccess)
    }

    /// An order for the runtime, about this endpoint.
    public enum Effect: Sendable, Equatable {
        /// Health changed to `state` (`up`, `down`, `unknown`): add a line to `show events` and the log.
        case recordEvent(state: String, cause: String)
        /// Publish a routing snapshot with the new health (not persisted: probes re-learn it).
        case publishSnapshot
        /// Reset the endpoint's "has a passive streak" mark, which spares successes a queue hop.
        case clearPassiveMark
    }

    public private(set) var state: State
    /// Consecutive live-traffic failures per signal.
    public private(set) var passiveStreaks: [PassiveSignal: Int] = [:]

    /// The health of an endpoint that no probe watches yet.
    public init(health: Health = .unknown) {
        self.state = .unprobed(health)
    }

    /// The health routing uses.
    public var health: Health {
        switch state {
        case .unprobed(let health): return health
        case .probed(let counter): return counter.health
        }
    }

    /// Applies `event` and returns the effects to perform, in order.
    public mutating func transition(on event: Event) -> [Effect] {
        switch (state, event) {
        case (.unprobed(let health), .probeStarted(let rise, let fall)):
            state = .probed(HealthCounter(rise: rise, fall: fall, health: health))
            return []
        case (.probed(let counter), .probeStarted(let rise, let fall)):
            // A changed probe starts its streaks afresh from the health the old one reached.
            state = .probed(HealthCounter(rise: rise, fall: fall, health: counter.health))
            return []

        case (.unprobed, .probeStopped):
            return []
        case (.probed(let counter), .probeStopped):
            state = .unprobed(.unknown)
            passiveStreaks = [:]
            // Nothing will move it again: forget what the last probe said rather than keep it forever.
            guard counter.health != .unknown else { return [] }
            return [.recordEvent(state: Health.unknown.rawValue, cause: "probe removed from the config"), .publishSnapshot]

        case (.unprobed, .probeSucceeded), (.unprobed, .probeFailed):
            return []  // a run that finished after its probe was removed
        case (.probed(var counter), .probeSucceeded(let text)):
            let transition = counter.record(.success(text))
            state = .probed(counter)
            return changed(transition)
        case (.probed(var counter), .probeFailed(let text)):
            let transition = counter.record(.failure(text))
            state = .probed(counter)
            return changed(transition)

        case (.unprobed, .passiveFailureSeen):
            return []
        case (.probed(var counter), .passiveFailureSeen(let signal, let cause, let threshold)):
            guard threshold > 0 else { return [] }
            let count = (passiveStreaks[signal] ?? 0) + 1
            passiveStreaks[signal] = count
            guard count >= threshold, counter.health != .down else { return [] }
            // Counting restarts from down: the probe needs `rise` successes to bring it back.
            counter.adopt(.down)
            state = .probed(counter)
            return changed(HealthTransition(health: .down, cause: "passive: \(count) consecutive \(signal.rawValue), last: \(cause)"))

        case (.unprobed, .passiveSuccessSeen(let proof)), (.probed, .passiveSuccessSeen(let proof)):
            switch proof {
            case .connected:
                // A connection proves nothing about the answers: a 5xx streak goes on.
                passiveStreaks[.connectionFailure] = nil
            case .answered:
                passiveStreaks = [:]
            }
            return passiveStreaks.isEmpty ? [.clearPassiveMark] : []
        }
    }

    /// The effects of a health change decided by the counter or the passive rule.
    private mutating func changed(_ transition: HealthTransition?) -> [Effect] {
        guard let transition else { return [] }
        let recorded: [Effect] = [.recordEvent(state: transition.health.rawValue, cause: transition.cause), .publishSnapshot]
        switch transition.health {
        case .up:
            passiveStreaks = [:]
            return [.clearPassiveMark] + recorded
        case .down, .unknown:
            return recorded
        }
    }
}

/// How much a success on live traffic proves, and so which failure streaks it ends.
public enum PassiveSuccess: Sendable, Equatable {
    /// A connection was established: ends a streak of connection failures, not one of 5xx answers
    /// (a backend that accepts and then answers 502 must still be taken out).
    case connected
    /// A response that is not a counted 5xx: ends every streak.
    case answered
}

/// What live traffic can tell about an endpoint.
public enum PassiveSignal: String, Sendable, Hashable, CaseIterable {
    /// Connect refused, reset or timed out.
    case connectionFailure = "failures"
    /// The endpoint answered with a 5xx status (counted only when `passive.status_5xx` > 0).
    case serverError = "5xx answers"
}
