/// The guard window of one profile as a value: after `switch … --guard DURATION` the old endpoint
/// stands by while the new one is judged on the answers it gives, and a breach reverts.
///
/// The rules, every (state, event) pair written out in `transition`:
/// - A window judges the whole span since the switch, every `interval` (the runtime's timer feeds
///   `intervalElapsed` with figures from counter deltas), so the figure an event quotes is what
///   users got from the new endpoint, not a sample.
/// - A breach reverts once: `revert` comes before `recordEvent`, so the routing snapshot that sends
///   new work back to the old endpoint is published before the event says so, and no request that
///   starts after the event reaches the reverted endpoint.
/// - After a window ended, whatever the way, nothing switches automatically: a green that recovers
///   stays where the revert put it (`ended` ignores figures). That is what keeps a revert from flapping.
/// - A manual switch, a restart, or a reload that removes one of the endpoints ends the window;
///   the old endpoints then finish their drain (`finishDrain`) unless the switch made them live.
public enum GuardWindow: Sendable, Equatable {
    /// No window was opened on the profile since the proxy started.
    case idle
    /// A window is judging `live`.
    case watching(Watch)
    /// The last window ended so; kept for `show endpoints` and `switch --wait-guard`.
    case ended(Watch, GuardVerdict)

    /// An open window: who is judged, who stands by, until when, against what, and the figures so far.
    public struct Watch: Sendable, Equatable {
        /// The endpoint the guarded switch made live, under judgement.
        public var live: String
        /// The endpoints that were live before, standing by in config order (a breach reverts to the first).
        public var standby: [String]
        /// When the window opened.
        public var started: MonotonicInstant
        /// When a window without a breach ends clean.
        public var ends: MonotonicInstant
        /// The thresholds, as configured when the window opened.
        public var thresholds: GuardConfig
        /// The first standby endpoint's recent p99 before the switch, for `max_p99_ratio`.
        public var standbyP99: GuardFigures.P99?
        /// What the live endpoint answered since the switch, as of the last judgement.
        public var figures: GuardFigures

        public init(
            live: String, standby: [String], started: MonotonicInstant, ends: MonotonicInstant, thresholds: GuardConfig,
            standbyP99: GuardFigures.P99? = nil, figures: GuardFigures = GuardFigures()
        ) {
            self.live = live
            self.standby = standby
            self.started = started
            self.ends = ends
            self.thresholds = thresholds
            self.standbyP99 = standbyP99
            self.figures = figures
        }
    }

    /// What happened to the profile, as the guard needs to know it.
    public enum Event: Sendable, Equatable {
        /// A switch with `--guard` made `live` the live endpoint; `standby` were live before.
        case switchedWithGuard(live: String, standby: [String], duration: Duration, thresholds: GuardConfig, standbyP99: GuardFigures.P99?)
        /// The judging timer fired; `figures` are the live endpoint's since the switch.
        case intervalElapsed(GuardFigures)
        /// An operator's `switch` (to `endpoint`) during the window.
        case manualSwitch(to: String)
        /// The proxy started with a window recorded in the state file; `live` is the endpoint the state file has online.
        case restarted(live: String)
        /// A reload removed `endpoint` from the profile.
        case endpointRemoved(String)
    }

    /// An order for the runtime.
    public enum Effect: Sendable, Equatable {
        /// Call `intervalElapsed` every `interval` from now.
        case armTimer(interval: Duration)
        /// No judging needed any more for this profile.
        case disarmTimer
        /// Switch back to `endpoint` in one publish (its drain is cancelled, the judged one drains).
        case revert(to: String, cause: String)
        /// `endpoint` stands by no longer: let its drain run to `offline` (if it still drains).
        case finishDrain(String)
        /// Add a line to `show events` and the log; `endpoint` is `nil` for the whole profile.
        case recordEvent(endpoint: String?, state: String, cause: String)
        /// The window ended so (for `switch --wait-guard`).
        case verdict(GuardVerdict)
        /// Save whether a window is open to the state file (a restart must know it was).
        case persistState
    }

    /// The open window, if any.
    public var watch: Watch? {
        switch self {
        case .watching(let watch): return watch
        case .idle, .ended: return nil
        }
    }

    /// The endpoints standing by now (empty when no window is open).
    public var standingBy: [String] { watch?.standby ?? [] }

    /// Applies `event` at `now`: the next window and the effects to perform, in order.
    public func transition(on event: Event, now: MonotonicInstant) -> (GuardWindow, [Effect]) {
        switch (self, event) {
        // A guarded switch opens a window (a window still open is ended by it first, as a manual switch).
        case (.idle, .switchedWithGuard(let live, let standby, let duration, let thresholds, let standbyP99)),
             (.ended, .switchedWithGuard(let live, let standby, let duration, let thresholds, let standbyP99)):
            return Self.open(live: live, standby: standby, duration: duration, thresholds: thresholds, standbyP99: standbyP99, now: now)
        case (.watching, .switchedWithGuard(let live, let standby, let duration, let thresholds, let standbyP99)):
            let (_, closing) = transition(on: .manualSwitch(to: live), now: now)
            let (opened, opening) = Self.open(live: live, standby: standby, duration: duration, thresholds: thresholds, standbyP99: standbyP99, now: now)
            // The new window's timer replaces the old one: drop the old window's disarm.
            return (opened, closing.filter { $0 != .disarmTimer } + opening)

        // The judging timer.
        case (.idle, .intervalElapsed), (.ended, .intervalElapsed):
            return (self, [.disarmTimer])  // a late tick; and no switch back after a window ended
        case (.watching(var watch), .intervalElapsed(let figures)):
            watch.figures = figures
            if let breach = figures.breach(of: watch.thresholds, standbyP99: watch.standbyP99) {
                let verdict = GuardVerdict.breach(breach, revertedTo: watch.standby.first)
                var effects: [Effect] = [.disarmTimer]
                if let back = watch.standby.first { effects.append(.revert(to: back, cause: "guard breach")) }
                effects += watch.standby.dropFirst().map(Effect.finishDrain)
                effects += [
                    .recordEvent(endpoint: watch.live, state: "reverted", cause: verdict.description),
                    .verdict(verdict), .persistState,
                ]
                return (.ended(watch, verdict), effects)
            }
            guard now >= watch.ends else { return (.watching(watch), []) }
            let verdict = GuardVerdict.clean(figures)
            return (.ended(watch, verdict), [.disarmTimer] + watch.standby.map(Effect.finishDrain) + [
                .recordEvent(endpoint: watch.live, state: "guarded", cause: verdict.description), .verdict(verdict), .persistState,
            ])

        // An operator's switch.
        case (.idle, .manualSwitch), (.ended, .manualSwitch):
            return (self, [])
        case (.watching(let watch), .manualSwitch(let endpoint)):
            return Self.close(watch, .superseded(by: "switch to \(endpoint)"))

        // A restart with a window in the state file.
        case (.idle, .restarted), (.ended, .restarted):
            return (self, [])
        case (.watching(let watch), .restarted(let live)):
            return Self.close(watch, .superseded(by: "restart, \(live) is live per the state file"))

        // A reload removed an endpoint.
        case (.idle, .endpointRemoved), (.ended, .endpointRemoved):
            return (self, [])
        case (.watching(var watch), .endpointRemoved(let endpoint)):
            guard endpoint == watch.live || watch.standby.contains(endpoint) else { return (self, []) }
            watch.standby.removeAll { $0 == endpoint }
            return Self.close(watch, .superseded(by: "reload removed \(endpoint)"))
        }
    }

    private static func open(
        live: String, standby: [String], duration: Duration, thresholds: GuardConfig, standbyP99: GuardFigures.P99?, now: MonotonicInstant
    ) -> (GuardWindow, [Effect]) {
        let watch = Watch(live: live, standby: standby, started: now, ends: now + duration, thresholds: thresholds, standbyP99: standbyP99)
        let standing = standby.isEmpty ? "nothing stands by" : standby.joined(separator: ", ") + " stand\(standby.count == 1 ? "s" : "") by"
        return (.watching(watch), [
            .recordEvent(endpoint: live, state: "guarded", cause: "guard window \(DurationText.format(duration)) opened, \(standing)"),
            .armTimer(interval: thresholds.interval), .persistState,
        ])
    }

    /// Ends `watch` without a judgement: the standby endpoints finish their drain.
    private static func close(_ watch: Watch, _ verdict: GuardVerdict) -> (GuardWindow, [Effect]) {
        (.ended(watch, verdict), [.disarmTimer] + watch.standby.map(Effect.finishDrain) + [
            .recordEvent(endpoint: watch.live, state: "guard ended", cause: verdict.description), .verdict(verdict), .persistState,
        ])
    }
}

/// How a guard window ended.
public enum GuardVerdict: Sendable, Equatable, CustomStringConvertible {
    /// The window ran its course without a breach.
    case clean(GuardFigures)
    /// A threshold was breached; the profile went back to `revertedTo` (nil: nothing stood by).
    case breach(GuardBreach, revertedTo: String?)
    /// Something else ended it before its time (a manual switch, a restart, a reload).
    case superseded(by: String)

    /// `clean`, `breach` or `superseded`, for JSON answers.
    public var outcome: String {
        switch self {
        case .clean: return "clean"
        case .breach: return "breach"
        case .superseded: return "superseded"
        }
    }

    /// Operator words: `guard window clean: 5xx ratio 0.00 over 812 requests, p99 1ms..5ms`,
    /// `guard breach: 5xx ratio 0.31 > 0.05 over 54 requests, reverted to blue`, `guard window ended by switch to blue`.
    public var description: String {
        switch self {
        case .clean(let figures):
            let p99 = figures.p99.map { ", p99 \($0)" } ?? ""
            return "guard window clean: 5xx ratio \(GuardBreach.format(figures.ratio5xx)) over \(figures.requests) requests, "
                + "\(figures.connectFailures) connect failures\(p99)"
        case .breach(let breach, let back):
            return "guard breach: \(breach)" + (back.map { ", reverted to \($0)" } ?? ", nothing to revert to")
        case .superseded(let cause):
            return "guard window ended by \(cause)"
        }
    }
}
