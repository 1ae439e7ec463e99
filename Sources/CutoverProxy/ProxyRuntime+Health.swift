import CutoverCore
import Foundation

extension ProxyRuntime {
    /// Limits on client request heads, from the config.
    var headLimits: HTTPHeadLimits {
        HTTPHeadLimits(
            maxHeadBytes: config.limits.maxHeaderBytes, maxHeaderCount: config.limits.maxHeaderCount,
            maxStartLineBytes: config.limits.maxRequestLineBytes)
    }

    /// Limits on upstream response heads: generous, upstreams are trusted more than clients.
    var upstreamHeadLimits: HTTPHeadLimits {
        HTTPHeadLimits(maxHeadBytes: 65_536, maxHeaderCount: 256, maxStartLineBytes: 8_192)
    }

    static let defaultMaintenancePage = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>Down for maintenance</title>
        <style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>
        </head><body><h1>We'll be right back</h1>
        <p>This service is being upgraded. Please try again in a few moments.</p></body></html>

        """

    /// A live request could not reach `target` (refused, reset, timed out).
    ///
    /// - Important: callable from any queue; the count is kept on the control queue.
    func reportPassiveFailure(target: EndpointTarget, cause: String) {
        controlQueue.async { [self] in
            guard let profile = config.profile(named: target.profile), profile.passive.failures > 0 else { return }
            let key = target.qualifiedName
            let failures = (passiveFailures[key] ?? 0) + 1
            passiveFailures[key] = failures
            passiveFailureCount.store(passiveFailures.count, ordering: .relaxed)
            if failures >= profile.passive.failures {
                setHealth(profile: target.profile, endpoint: target.name, health: .down, cause: "passive: \(failures) consecutive failures, last: \(cause)")
            }
        }
    }

    /// A live connection to `target` succeeded: the passive failure streak ends.
    func reportPassiveSuccess(target: EndpointTarget) {
        // Most calls find no streak; skip the queue hop when there is nothing to reset.
        guard passiveFailureCount.load(ordering: .relaxed) > 0 else { return }
        controlQueue.async { [self] in
            passiveFailures[target.qualifiedName] = nil
            passiveFailureCount.store(passiveFailures.count, ordering: .relaxed)
        }
    }

    /// Records a health change seen by a probe or by live traffic, and republishes routing.
    ///
    /// - Important: call on `controlQueue`.
    func setHealth(profile: String, endpoint: String, health: Health, cause: String) {
        passiveFailureCount.store(passiveFailures.count, ordering: .relaxed)
        guard let current = runtime.profiles[profile]?.endpoints[endpoint], current.health != health else { return }
        runtime.profiles[profile]?.endpoints[endpoint]?.health = health
        if health == .up { passiveFailures["\(profile)/\(endpoint)"] = nil }
        events.record(profile: profile, endpoint: endpoint, state: health.rawValue, cause: cause)
        lastHealthChange["\(profile)/\(endpoint)"] = events.last(1).first
        publish(persist: false)
    }
}
