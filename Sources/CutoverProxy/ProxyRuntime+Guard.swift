import CutoverCore
import Dispatch
import Foundation

/// Guard windows: the runtime side of `GuardWindow`. After `switch … --guard D` the new endpoint is
/// judged on the counters the hot path keeps anyway (sampled here, on the control queue, every
/// `guard.interval`), the old one stands by, and a breach switches back in one publish.
extension ProxyRuntime {
    /// The endpoints of `profile` standing by for an open window (their drains do not end meanwhile).
    func standingBy(_ profile: String) -> [String] {
        guards[profile]?.standingBy ?? []
    }

    /// After a switch made `live` the live endpoint of `profile`: opens a window when `duration` is
    /// given (the endpoints that were live before, now draining, stand by), and otherwise ends any
    /// open one, as every operator's switch does.
    ///
    /// - Important: call on `controlQueue`, right after the switch's publish.
    func guardAfterSwitch(profile: ProfileConfig, live: String, replaced: [String], duration: Duration?) {
        let event: GuardWindow.Event
        if let duration {
            guardBaselines[profile.name] = target(profile: profile.name, endpoint: live).map { GuardSample($0.counters) }
            let recent = replaced.first.flatMap { recentP99(profile: profile.name, endpoint: $0) }
            event = .switchedWithGuard(live: live, standby: replaced, duration: duration, thresholds: profile.guardThresholds, standbyP99: recent)
        } else {
            event = .manualSwitch(to: live)
        }
        guardEvent(event, profile: profile)
    }

    /// Feeds `event` to the profile's window and performs its effects in order.
    ///
    /// - Important: call on `controlQueue`.
    func guardEvent(_ event: GuardWindow.Event, profile: ProfileConfig) {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        let window = guards[profile.name] ?? .idle
        let (next, effects) = window.transition(on: event, now: MonotonicInstant(milliseconds: monotonicMilliseconds()))
        guards[profile.name] = next
        for effect in effects { perform(effect, profile: profile) }
    }

    private func perform(_ effect: GuardWindow.Effect, profile: ProfileConfig) {
        switch effect {
        case .armTimer(let interval):
            guardTimers[profile.name]?.cancel()
            let timer = DispatchSource.makeTimerSource(queue: controlQueue)
            let milliseconds = max(10, Int(interval.milliseconds))
            timer.schedule(deadline: .now() + .milliseconds(milliseconds), repeating: .milliseconds(milliseconds), leeway: .milliseconds(5))
            timer.setEventHandler { [unowned self] in self.judgeGuard(profile.name) }
            guardTimers[profile.name] = timer
            timer.activate()
        case .disarmTimer:
            guardTimers.removeValue(forKey: profile.name)?.cancel()
        case .revert(let endpoint, let cause):
            // Forced: the endpoint was live a moment ago and its probes kept running while it stood by.
            _ = try? apply(.revertRequested(endpoint: endpoint, cause: cause, inFlight: inFlight(profile)), to: profile)
            // In a fleet every node reverts: the judging proxy writes its revert to etcd.
            writeOwnChange(cause: "\(profile.name): guard revert to \(endpoint)")
        case .finishDrain:
            // The drain was only held back while the endpoint stood by; the drain timer ends it now.
            if !drains.isEmpty { scheduleDrainTimer() }
        case .recordEvent(let endpoint, let state, let cause):
            events.record(profile: profile.name, endpoint: endpoint, state: state, cause: cause)
        case .verdict:
            break  // `switch --wait-guard` reads the window itself (see `waitForGuard`)
        case .persistState:
            runtime.profiles[profile.name]?.guardWindow = guards[profile.name]?.watch.map { GuardRecord(live: $0.live, standby: $0.standby) }
            persistState()
        }
    }

    /// The judging tick: the live endpoint's figures since the switch, from two counter samples.
    private func judgeGuard(_ profileName: String) {
        guard let profile = config.profile(named: profileName), let watch = guards[profileName]?.watch,
              let target = target(profile: profileName, endpoint: watch.live), let baseline = guardBaselines[profileName] else {
            guardTimers.removeValue(forKey: profileName)?.cancel()
            return
        }
        guardEvent(.intervalElapsed(GuardFigures(from: baseline, to: GuardSample(target.counters))), profile: profile)
    }

    /// Blocks until the window opened at `opened` on `profile` ended; returns how.
    ///
    /// - Important: call off the control queue (it polls it).
    func waitForGuard(profile: String, opened: MonotonicInstant) -> GuardVerdict? {
        while true {
            let window = controlQueue.sync { guards[profile] ?? .idle }
            switch window {
            case .idle: return nil
            case .watching: break
            case .ended(let watch, let verdict):
                if watch.started == opened { return verdict }
                return nil  // a later window replaced it; the caller's window ended with it
            }
            usleep(20_000)
        }
    }

    /// The status of `profile`'s window (open, or the last that ended) now.
    func guardStatus(_ profile: String) -> GuardStatus? {
        guards[profile].flatMap { GuardStatus(profile: profile, window: $0, now: MonotonicInstant(milliseconds: monotonicMilliseconds())) }
    }

    // MARK: - Recent traffic of every endpoint: show endpoints, /status, max_p99_ratio

    /// Every `CounterRing.interval`: one sample per endpoint into its ring, so that "the last minute"
    /// (an endpoint's recent rate and percentiles, the old endpoint's recent p99) is over the minute
    /// before now, not over the proxy's whole life.
    func startLatencySampling() {
        let timer = DispatchSource.makeTimerSource(queue: controlQueue)
        let interval = Int(CounterRing.interval.milliseconds)
        timer.schedule(deadline: .now() + .milliseconds(interval), repeating: .milliseconds(interval), leeway: .seconds(1))
        timer.setEventHandler { [unowned self] in self.sampleLatency() }
        latencySampler = timer
        sampleLatency()
        timer.activate()
    }

    private func sampleLatency() {
        let now = MonotonicInstant(milliseconds: monotonicMilliseconds())
        for profile in config.profiles {
            for endpoint in profile.endpoints {
                guard let target = target(profile: profile.name, endpoint: endpoint.name) else { continue }
                latencySamples["\(profile.name)/\(endpoint.name)", default: CounterRing()].record(GuardSample(target.counters), at: now)
            }
        }
        latencySamples = latencySamples.filter { key, _ in targetExists(key) }
    }

    /// `endpoint`'s traffic from the oldest sample of its ring to its counters now; `nil` before
    /// its first sample.
    ///
    /// - Important: call on `controlQueue`.
    func recentTraffic(profile: String, endpoint: String) -> RecentTraffic? {
        guard let target = target(profile: profile, endpoint: endpoint) else { return nil }
        return latencySamples["\(profile)/\(endpoint)"]?.traffic(
            current: GuardSample(target.counters), now: MonotonicInstant(milliseconds: monotonicMilliseconds()))
    }

    /// `endpoint`'s p99 over the last minute or so; `nil` with fewer than `min_requests`-worth of answers
    /// timed (a ratio against a handful of answers would be noise).
    private func recentP99(profile: String, endpoint: String) -> GuardFigures.P99? {
        guard let oldest = latencySamples["\(profile)/\(endpoint)"]?.oldest?.sample, let target = target(profile: profile, endpoint: endpoint) else { return nil }
        let figures = GuardFigures(from: oldest, to: GuardSample(target.counters))
        let minimum = config.profile(named: profile)?.guardThresholds.minRequests ?? 20
        return figures.timed >= max(1, minimum) ? figures.p99 : nil
    }

    /// A restart with a window in the state file ends it, on the endpoint the file has live: the
    /// figures and thresholds were not saved, and a judgement on a fresh process would be on nothing.
    ///
    /// - Important: call on `controlQueue`, once at start.
    func endRestoredGuards() {
        let now = MonotonicInstant(milliseconds: monotonicMilliseconds())
        for profile in config.profiles {
            guard let record = runtime.profiles[profile.name]?.guardWindow else { continue }
            let live = runtime.profiles[profile.name]?.endpoints.filter { $0.value.admin == .online }.map(\.key).sorted() ?? []
            let liveText = live.isEmpty ? "no endpoint" : live.joined(separator: ", ")
            Log.info("\(profile.name): the guard window on \(record.live) (\(record.standby.joined(separator: ", ")) standing by) ends with the restart; \(liveText) live per the state file")
            guards[profile.name] = .watching(GuardWindow.Watch(
                live: record.live, standby: record.standby, started: now, ends: now, thresholds: profile.guardThresholds))
            guardEvent(.restarted(live: liveText), profile: profile)
        }
    }
}
