/// Rise/fall counting of probe results for one endpoint: when health changes, and why.
///
/// The rule, every case written out:
/// - `unknown`: `rise` consecutive successes → `up`; the first failure → `down` at once. An endpoint
///   counts as up only until its first probe result (with `unknown_is_up`), so a failed first check
///   must take it out rather than wait for `fall` more.
/// - `up`: `fall` consecutive failures → `down`; a success resets the streak.
/// - `down`: `rise` consecutive successes → `up`; a failure resets the streak.
/// - A change made elsewhere (passive checks marking the endpoint down) is `adopt`ed: counting restarts
///   from that state, so a passively downed endpoint also needs `rise` probe successes to come back.
public struct HealthCounter: Sendable, Equatable {
    /// Where the counter stands; each state keeps the streak that can move it on.
    public enum State: Sendable, Equatable {
        /// Not proven either way yet; `successes` so far.
        case unknown(successes: Int)
        /// Healthy; `failures` in a row so far.
        case up(failures: Int)
        /// Unhealthy; `successes` in a row so far.
        case down(successes: Int)
    }

    /// Consecutive successes that make an endpoint up (≥ 1).
    public let rise: Int
    /// Consecutive failures that make an up endpoint down (≥ 1).
    public let fall: Int
    public private(set) var state: State

    /// A counter starting from `health` with no streak.
    ///
    /// - Precondition: `rise` and `fall` are at least 1 (the config loader guarantees it).
    public init(rise: Int, fall: Int, health: Health = .unknown) {
        precondition(rise >= 1 && fall >= 1, "rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.state = HealthCounter.start(health)
    }

    /// A counter for a probe's `rise` and `fall`.
    public init(probe: ProbeConfig, health: Health = .unknown) {
        self.init(rise: probe.rise, fall: probe.fall, health: health)
    }

    /// The health this counter stands for.
    public var health: Health {
        switch state {
        case .unknown: return .unknown
        case .up: return .up
        case .down: return .down
        }
    }

    /// Counts one probe result; returns the health change it causes, if any, with its cause.
    public mutating func record(_ outcome: ProbeOutcome) -> HealthTransition? {
        switch (state, outcome) {
        case (.unknown(let successes), .success(let text)):
            return rising(from: successes, text: text, stay: State.unknown)
        case (.unknown, .failure(let text)):
            state = .down(successes: 0)
            return HealthTransition(health: .down, cause: text + " (first check)")
        case (.up, .success):
            state = .up(failures: 0)
            return nil
        case (.up(let failures), .failure(let text)):
            let streak = failures + 1
            guard streak >= fall else {
                state = .up(failures: streak)
                return nil
            }
            state = .down(successes: 0)
            return HealthTransition(health: .down, cause: text + HealthCounter.streak(streak, "failures"))
        case (.down(let successes), .success(let text)):
            return rising(from: successes, text: text, stay: State.down)
        case (.down, .failure):
            state = .down(successes: 0)
            return nil
        }
    }

    /// Restarts counting from `health` when it was changed by someone else (passive checks, a
    /// reload); a counter already in that state keeps its streak.
    public mutating func adopt(_ health: Health) {
        guard health != self.health else { return }
        state = HealthCounter.start(health)
    }

    /// One more success from `unknown` or `down`: up at `rise`, else the streak grows in place.
    private mutating func rising(from successes: Int, text: String, stay: (Int) -> State) -> HealthTransition? {
        let streak = successes + 1
        guard streak >= rise else {
            state = stay(streak)
            return nil
        }
        state = .up(failures: 0)
        return HealthTransition(health: .up, cause: text + HealthCounter.streak(streak, "successes"))
    }

    private static func start(_ health: Health) -> State {
        switch health {
        case .unknown: return .unknown(successes: 0)
        case .up: return .up(failures: 0)
        case .down: return .down(successes: 0)
        }
    }

    /// ` (3 consecutive failures)`, or nothing for a streak of one.
    private static func streak(_ count: Int, _ noun: String) -> String {
        count > 1 ? " (\(count) consecutive \(noun))" : ""
    }
}

/// A health change decided by a `HealthCounter`: the new health and the cause to record.
public struct HealthTransition: Sendable, Equatable {
    public let health: Health
    /// Operator words, e.g. `probe: HTTP 500 on /healthz (3 consecutive failures)`.
    public let cause: String

    public init(health: Health, cause: String) {
        self.health = health
        self.cause = cause
    }
}
