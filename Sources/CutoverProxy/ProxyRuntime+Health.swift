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

    /// What live traffic can tell about an endpoint.
    enum PassiveSignal: String {
        /// Connect refused, reset or timed out.
        case connectionFailure = "failures"
        /// The endpoint answered with a 5xx status (counted only when `passive.status_5xx` > 0).
        case serverError = "5xx answers"
    }

    /// Live traffic saw `target` fail; after the configured number in a row it is marked down.
    ///
    /// Only endpoints with an active probe are marked down: probes are what bring an endpoint back
    /// (after `rise` successes), so without one a passive `down` would last until a restart.
    /// - Important: callable from any queue; the count is kept on the control queue.
    func reportPassiveFailure(target: EndpointTarget, cause: String, signal: PassiveSignal = .connectionFailure) {
        // Marked before the hop, so that a success reported right after sees a streak to reset.
        target.counters.passiveStreak.store(1, ordering: .relaxed)
        controlQueue.async { [self] in
            guard let profile = config.profile(named: target.profile),
                  (profile.endpoint(named: target.name)?.probe ?? profile.probe) != nil else { return }
            let threshold = signal == .connectionFailure ? profile.passive.failures : profile.passive.status5xx
            guard threshold > 0 else { return }
            let key = "\(signal.rawValue)|\(target.qualifiedName)"
            let count = (passiveFailures[key] ?? 0) + 1
            passiveFailures[key] = count
            // Again here: a reset queued before this failure may have cleared the mark.
            target.counters.passiveStreak.store(1, ordering: .relaxed)
            if count >= threshold {
                setHealth(profile: target.profile, endpoint: target.name, health: .down, cause: "passive: \(count) consecutive \(signal.rawValue), last: \(cause)")
            }
        }
    }

    /// Live traffic reached `target` fine: its passive failure streaks end.
    func reportPassiveSuccess(target: EndpointTarget) {
        // Nearly every call finds no streak: then it costs one relaxed load, no queue hop.
        guard target.counters.passiveStreak.load(ordering: .relaxed) != 0 else { return }
        controlQueue.async { [self] in clearPassiveStreaks(target.qualifiedName) }
    }

    /// - Important: call on `controlQueue`.
    private func clearPassiveStreaks(_ qualifiedName: String) {
        for signal in [PassiveSignal.connectionFailure, .serverError] {
            passiveFailures["\(signal.rawValue)|\(qualifiedName)"] = nil
        }
        let parts = qualifiedName.split(separator: "/", maxSplits: 1).map(String.init)
        if parts.count == 2 { target(profile: parts[0], endpoint: parts[1])?.counters.passiveStreak.store(0, ordering: .relaxed) }
    }

    /// Records a health change seen by a probe or by live traffic, and republishes routing.
    ///
    /// - Important: call on `controlQueue`.
    func setHealth(profile: String, endpoint: String, health: Health, cause: String) {
        guard let current = runtime.profiles[profile]?.endpoints[endpoint], current.health != health else { return }
        runtime.profiles[profile]?.endpoints[endpoint]?.health = health
        if health == .up { clearPassiveStreaks("\(profile)/\(endpoint)") }
        events.record(profile: profile, endpoint: endpoint, state: health.rawValue, cause: cause)
        lastHealthChange["\(profile)/\(endpoint)"] = events.last(1).first
        publish(persist: false)
    }
}
