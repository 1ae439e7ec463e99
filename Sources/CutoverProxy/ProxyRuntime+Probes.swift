import CutoverCore
import Dispatch
import Glibc

extension ProxyRuntime {
    /// (Re)starts active health probes for the current config: every endpoint with a probe (its own,
    /// else its profile's) is probed, whatever its admin state, so a switch target's health is known.
    /// Endpoints whose probe and address are unchanged keep their loop and rise/fall counters.
    ///
    /// - Important: call on `controlQueue`.
    func startProbes() {
        dispatchPrecondition(condition: .onQueue(controlQueue))
        var plans: [HealthProber.Plan] = []
        for profile in config.profiles {
            for endpoint in profile.endpoints {
                guard let probe = endpoint.probe ?? profile.probe,
                      let target = target(profile: profile.name, endpoint: endpoint.name) else { continue }
                let port = probe.port ?? endpoint.address.port
                plans.append(HealthProber.Plan(
                    profile: profile.name, endpoint: endpoint.name, probe: probe,
                    address: HostPort(host: endpoint.address.host, port: port),
                    socketAddress: Self.socketAddress(target.socketAddress, port: port)))
            }
        }
        let dropped = prober.update(plans) { [unowned self] plan, outcome, counter in
            self.probeFinished(plan, outcome: outcome, counter: &counter)
        }
        // Nothing will move these again: forget what the last probe said rather than keep it forever.
        for key in dropped {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2, let health = runtime.profiles[parts[0]]?.endpoints[parts[1]]?.health, health != .unknown else { continue }
            setHealth(profile: parts[0], endpoint: parts[1], health: .unknown, cause: "probe removed from the config")
        }
    }

    /// Counts one probe result, starting from the endpoint's current health (passive checks may have
    /// moved it), and records the change it causes.
    ///
    /// - Important: call on `controlQueue`.
    private func probeFinished(_ plan: HealthProber.Plan, outcome: ProbeOutcome, counter: inout HealthCounter) {
        guard let health = runtime.profiles[plan.profile]?.endpoints[plan.endpoint]?.health else { return }
        counter.adopt(health)
        guard let transition = counter.record(outcome) else { return }
        setHealth(profile: plan.profile, endpoint: plan.endpoint, health: transition.health, cause: transition.cause)
    }

    /// A resolved socket address with its port replaced (the probe's `port` override).
    static func socketAddress(_ bytes: [UInt8], port: UInt16) -> [UInt8] {
        var copy = bytes
        copy.withUnsafeMutableBytes { raw in
            let family = raw.load(as: sa_family_t.self)
            let offset: Int?
            switch Int32(family) {
            case AF_INET: offset = MemoryLayout<sockaddr_in>.offset(of: \.sin_port)
            case AF_INET6: offset = MemoryLayout<sockaddr_in6>.offset(of: \.sin6_port)
            default: offset = nil
            }
            guard let offset, offset + 2 <= raw.count else { return }
            raw.storeBytes(of: port.bigEndian, toByteOffset: offset, as: UInt16.self)
        }
        return copy
    }
}
