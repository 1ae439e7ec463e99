import CutoverCore
import Foundation

/// Endpoints changed at runtime: `add endpoint`, `remove endpoint`, `set endpoint … health`, and
/// the one-shot `deploy` and `rollback` built from them and `switch`.
///
/// Added endpoints live in `RuntimeState` (and so in the state file) and are appended to the
/// config's profiles (`Config.including(addedEndpointsOf:)`), so a reload or a restart keeps them.
extension ProxyRuntime {
    /// How long `deploy` waits for the new endpoint's probes when `--timeout` is not given.
    static let defaultDeployTimeout = Duration.seconds(30)

    /// Adds an endpoint to a profile; the config's rules apply (name, weight range). Returns the summary.
    ///
    /// - Important: call on `controlQueue` (it resolves the address there, as a reload does).
    func addEndpoint(profile profileName: String, endpoint name: String, address: HostPort, priority: Int?, weight: Int?, offline: Bool) throws(AdminError) -> String {
        let profile = try profileConfig(profileName)
        if let existing = profile.endpoint(named: name) {
            throw AdminError(.conflict, "profile \(profileName) already has an endpoint \"\(name)\" (\(existing.address))")
        }
        let endpoint = EndpointConfig(name: name, address: address, priority: priority ?? 1, weight: weight ?? 1, state: offline ? .offline : .online)
        var candidate = config
        guard let index = candidate.profiles.firstIndex(where: { $0.name == profileName }) else { throw AdminError(.internalError, "profile vanished") }
        candidate.profiles[index].endpoints.append(endpoint)
        do {
            try ConfigLoader.validate(candidate, file: "add endpoint")
        } catch {
            throw AdminError(.badArguments, "add endpoint \(profileName)/\(name): \(error.key): \(error.reason)")
        }
        let socketAddress: [UInt8]
        do {
            socketAddress = try Socket.resolve(address)
        } catch {
            throw AdminError(.badArguments, "add endpoint \(profileName)/\(name): \(error)")
        }
        // Target, runtime and config change together: `publish` builds the snapshot from all three.
        targets["\(profileName)/\(name)"] = EndpointTarget(
            profile: profileName, name: name, address: address, socketAddress: socketAddress,
            sendProxy: candidate.profiles[index].sendProxy(to: endpoint))
        runtime.profiles[profileName]?.added.append(endpoint)
        runtime.profiles[profileName]?.endpoints[name] = EndpointRuntime(admin: endpoint.state, priority: endpoint.priority, weight: endpoint.weight)
        config = candidate
        let summary = "\(profileName)/\(name) \(address) \(endpoint.state.rawValue), priority \(endpoint.priority), weight \(endpoint.weight)"
        events.record(profile: profileName, endpoint: name, state: "added \(endpoint.state.rawValue)", cause: "add endpoint \(address)")
        publish()
        startProbes()
        return "added " + summary
    }

    /// The first half of `remove endpoint`: refuses an endpoint the config file defines, and starts
    /// draining one that takes work. Returns the drains to wait for.
    ///
    /// - Important: call on `controlQueue`.
    func startRemoval(profile profileName: String, endpoint name: String) throws(AdminError) -> [String] {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        guard runtime.profiles[profileName]?.added.contains(where: { $0.name == name }) ?? false else {
            throw AdminError(.conflict, "\(profileName)/\(name) is defined in the config file: remove it there and reload")
        }
        let key = "\(profileName)/\(name)"
        if runtime.profiles[profileName]?.endpoints[name]?.admin == .online {
            _ = try setEndpoint(profile: profileName, endpoint: name, state: .drain, priority: nil, weight: nil)
        }
        return drains[key] == nil ? [] : [key]
    }

    /// The second half of `remove endpoint`, once its drain ended: forgets the endpoint everywhere.
    ///
    /// - Important: call on `controlQueue`.
    func finishRemoval(profile profileName: String, endpoint name: String, drained: String?) throws(AdminError) -> String {
        let key = "\(profileName)/\(name)"
        guard let index = config.profiles.firstIndex(where: { $0.name == profileName }),
              runtime.profiles[profileName]?.added.contains(where: { $0.name == name }) ?? false else {
            throw AdminError(.conflict, "\(key) was removed meanwhile")
        }
        config.profiles[index].endpoints.removeAll { $0.name == name }
        runtime.profiles[profileName]?.added.removeAll { $0.name == name }
        runtime.profiles[profileName]?.endpoints[name] = nil
        lastHealthChange[key] = nil
        drains[key] = nil
        healthStates[key] = nil
        healthOverrides[key] = nil
        if let retired = targets.removeValue(forKey: key) {
            for worker in workers { worker.queue.async { worker.pool.closeIdle(to: retired) } }
        }
        let cause = "remove endpoint" + (drained.map { ", \($0)" } ?? "")
        events.record(profile: profileName, endpoint: name, state: "removed", cause: cause)
        publish()
        startProbes()
        return "removed \(key)" + (drained.map { " (\($0))" } ?? "")
    }

    /// `set endpoint … health up|down|auto`: an outside checker's verdict, or (`nil`) the probes' again.
    ///
    /// - Important: call on `controlQueue`.
    func setHealth(profile profileName: String, endpoint name: String, health: Health?, cause: String?) throws(AdminError) -> String {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        let key = "\(profileName)/\(name)"
        healthOverrides[key] = health
        let effective = health ?? healthStates[key]?.health ?? .unknown
        runtime.profiles[profileName]?.endpoints[name]?.health = effective
        let reason = health == nil ? "set endpoint health auto: probes decide (\(effective.rawValue))" : "set endpoint health" + (cause.map { ": \($0)" } ?? "")
        events.record(profile: profileName, endpoint: name, state: effective.rawValue, cause: reason)
        lastHealthChange[key] = events.last(1).first
        publish(persist: false)
        return "\(key) health \(effective.rawValue) (\(reason))"
    }

    /// `deploy`: adds (or reuses) the endpoint at `address`, waits until its probes pass, switches to
    /// it and waits for the old endpoint's drain. A failed wait changes no traffic and says why.
    ///
    /// - Important: blocks; call off the control queue.
    func deploy(profile profileName: String, address: HostPort, name: String?, timeout: Duration?) throws(AdminError) -> (SwitchAnswer, String) {
        let endpoint = try onControlQueue { () throws(AdminError) -> String in
            let profile = try profileConfig(profileName)
            if let existing = profile.endpoints.first(where: { $0.address == address }) {
                if let name, name != existing.name {
                    throw AdminError(.conflict, "\(address) is already endpoint \(profileName)/\(existing.name), not \(name)")
                }
                return existing.name
            }
            let chosen = name ?? Self.deployName(address)
            _ = try addEndpoint(profile: profileName, endpoint: chosen, address: address, priority: nil, weight: nil, offline: true)
            return chosen
        }
        let wait = timeout ?? Self.defaultDeployTimeout
        let deadline = ContinuousClock.now + wait
        while true {
            let (ready, why) = controlQueue.sync { () -> (Bool, String) in
                let state = runtime.profiles[profileName]?.endpoints[endpoint]
                let probed = config.profile(named: profileName)?.hasProbes ?? false
                let ready = state?.health == .up || (!probed && state?.health != .down)
                return (ready, lastHealthChange["\(profileName)/\(endpoint)"].map { "\($0.state): \($0.cause)" } ?? "no probe has passed yet")
            }
            if ready { break }
            guard ContinuousClock.now < deadline else {
                throw AdminError(.unhealthy, "deploy \(profileName) → \(endpoint) (\(address)): not up after \(DurationText.format(wait)) (\(why)); traffic unchanged, \(endpoint) stays offline")
            }
            usleep(50_000)
        }
        let draining = try onControlQueue { () throws(AdminError) in try switchTo(profile: profileName, endpoint: endpoint, force: false) }
        let outcomes = waitForDrains(draining.map(\.qualifiedName))
        let summary = outcomes.isEmpty ? "nothing to drain" : outcomes.map { "\($0.key): \($0.value)" }.sorted().joined(separator: "; ")
        let answer = SwitchAnswer(profile: profileName, endpoint: endpoint, draining: draining.map(\.name), drains: outcomes)
        return (answer, "deployed \(profileName) to \(endpoint) (\(address)) (\(summary))")
    }

    /// `rollback`: switches back to the endpoint the profile's last switch replaced, while it is still there.
    ///
    /// - Important: call on `controlQueue`.
    func rollback(profile profileName: String) throws(AdminError) -> SwitchAnswer {
        let profile = try profileConfig(profileName)
        guard let previous = lastReplaced[profileName]?.first(where: { profile.endpoint(named: $0) != nil }) else {
            throw AdminError(.conflict, "\(profileName) has no previous live endpoint to roll back to (no switch since start, or it was removed)")
        }
        let draining = try switchTo(profile: profileName, endpoint: previous, force: false)
        return SwitchAnswer(profile: profileName, endpoint: previous, draining: draining.map(\.name))
    }

    /// The endpoint name `deploy` gives an address when `--name` is not given: `127.0.0.1-9003`.
    static func deployName(_ address: HostPort) -> String {
        let host = String(address.host.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "-" })
        return "\(host)-\(address.port)"
    }
}
