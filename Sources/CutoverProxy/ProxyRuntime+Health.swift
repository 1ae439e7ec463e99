import CutoverCore
import Foundation

extension ProxyRuntime {
    static let defaultMaintenancePage = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>Down for maintenance</title>
        <style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>
        </head><body><h1>We'll be right back</h1>
        <p>This service is being upgraded. Please try again in a few moments.</p></body></html>

        """

    /// What live traffic can tell about an endpoint (the signals `EndpointHealth` counts).
    typealias PassiveSignal = CutoverCore.PassiveSignal

    /// Live traffic saw `target` fail; after the configured number in a row it is marked down
    /// (only while an active probe watches it, see `EndpointHealth`).
    ///
    /// - Important: callable from any queue; the count is kept on the control queue.
    func reportPassiveFailure(target: EndpointTarget, cause: String, signal: PassiveSignal = .connectionFailure) {
        // Marked before the hop, so that a success reported right after sees a streak to reset.
        target.counters.passiveStreak.store(1, ordering: .relaxed)
        controlQueue.async { [self] in
            guard let profile = config.profile(named: target.profile) else { return }
            let threshold = signal == .connectionFailure ? profile.passive.failures : profile.passive.status5xx
            // Again here: a reset queued before this failure may have cleared the mark.
            target.counters.passiveStreak.store(1, ordering: .relaxed)
            applyHealth(.passiveFailureSeen(signal, cause: cause, threshold: threshold), profile: target.profile, endpoint: target.name)
        }
    }

    /// Live traffic reached `target` fine: its passive failure streaks end.
    func reportPassiveSuccess(target: EndpointTarget, proof: PassiveSuccess) {
        // Nearly every call finds no streak: then it costs one relaxed load, no queue hop.
        guard target.counters.passiveStreak.load(ordering: .relaxed) != 0 else { return }
        controlQueue.async { [self] in applyHealth(.passiveSuccessSeen(proof), profile: target.profile, endpoint: target.name) }
    }

    /// Feeds `event` to the endpoint's `EndpointHealth`, copies its health into the runtime state
    /// and performs its effects in order.
    ///
    /// - Important: call on `controlQueue`.
    func applyHealth(_ event: EndpointHealth.Event, profile: String, endpoint: String) {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        guard let current = runtime.profiles[profile]?.endpoints[endpoint]?.health else { return }
        let key = "\(profile)/\(endpoint)"
        var health = healthStates[key] ?? EndpointHealth(health: current)
        let effects = health.transition(on: event)
        healthStates[key] = health
        // An outside checker's verdict stands until `auto`; the probes keep counting meanwhile.
        runtime.profiles[profile]?.endpoints[endpoint]?.health = healthOverrides[key] ?? health.health
        for effect in effects {
            switch effect {
            case .recordEvent(let state, let cause):
                events.record(profile: profile, endpoint: endpoint, state: state, cause: cause)
                lastHealthChange[key] = events.last(1).first
            case .publishSnapshot:
                publish(persist: false)
            case .clearPassiveMark:
                target(profile: profile, endpoint: endpoint)?.counters.passiveStreak.store(0, ordering: .relaxed)
            }
        }
    }
}
