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
                    socketAddress: Self.socketAddress(target.socketAddress, port: port),
                    // An agent listens on its own plain port, whatever the endpoint speaks.
                    tls: probe.type == .agent ? nil : target.upstreamTLS as? TLSClientContext,
                    // As HAProxy's send-proxy: checks of the traffic port carry a header too; a probe
                    // `port` of its own is another service (an agent among them), which may not expect one.
                    preamble: probe.port == nil && probe.type != .agent ? target.sendProxy.map(ProxyProtocol.localHeader) ?? [] : []))
            }
        }
        let changes = prober.update(plans) { [unowned self] plan, result in
            if let reply = result.agent { self.applyAgentShare(reply, profile: plan.profile, endpoint: plan.endpoint) }
            let outcome = result.outcome
            let event: EndpointHealth.Event = outcome.passed ? .probeSucceeded(outcome.text) : .probeFailed(outcome.text)
            self.applyHealth(event, profile: plan.profile, endpoint: plan.endpoint)
        }
        // New and changed probes count afresh from the endpoint's health; removed ones forget it.
        for plan in changes.started {
            applyHealth(.probeStarted(rise: plan.probe.rise, fall: plan.probe.fall), profile: plan.profile, endpoint: plan.endpoint)
        }
        for key in changes.dropped {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            applyHealth(.probeStopped, profile: parts[0], endpoint: parts[1])
            clearAgentShare(profile: parts[0], endpoint: parts[1])
        }
        // An agent's drain or weight ends with the agent probe (another type, or none, says nothing of them).
        for plan in changes.started where plan.probe.type != .agent {
            clearAgentShare(profile: plan.profile, endpoint: plan.endpoint)
        }
    }

    /// Applies the share of its weight an agent asked for (`drain`: 0, `NN%`, `ready`: all), with
    /// an event and a publish when it changed.
    ///
    /// - Important: call on `controlQueue`.
    private func applyAgentShare(_ reply: AgentReply, profile: String, endpoint: String) {
        guard let before = runtime.profiles[profile]?.endpoints[endpoint] else { return }
        let share = reply.share(after: before.agentShare)
        guard share != before.agentShare else { return }
        runtime.profiles[profile]?.endpoints[endpoint]?.agentShare = share
        let state = share == 0 ? "draining" : "weight \(share ?? 100)%"
        let cause = "agent: \(reply.words)" + (reply.message.map { " (\($0))" } ?? "")
        events.record(profile: profile, endpoint: endpoint, state: state, cause: cause)
        // Not persisted: the agent says it again after a restart.
        publish(persist: false)
    }

    /// Gives the endpoint its full weight back when an agent's share no longer applies.
    private func clearAgentShare(profile: String, endpoint: String) {
        guard runtime.profiles[profile]?.endpoints[endpoint]?.agentShare != nil else { return }
        runtime.profiles[profile]?.endpoints[endpoint]?.agentShare = nil
        publish(persist: false)
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
