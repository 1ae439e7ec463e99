import CutoverCore
import Dispatch
import Foundation

/// The operator's commands: each is a plain function on the runtime, called alike by the admin
/// socket, `cutover ctl`, signals and tests.
extension ProxyRuntime {
    /// Executes one admin protocol line and returns the answer text (without the terminating blank line).
    ///
    /// - Important: may block (e.g. `switch --wait`); never call on a worker or the control queue.
    public func execute(line: String) -> String {
        // Asked for before parsing, so that a line that does not parse still gets a JSON error.
        let json = line.split(separator: " ").contains("--json")
        do {
            let parsed = try AdminCommand.parse(line)
            return try execute(parsed.command, json: json)
        } catch {
            return json ? jsonLine(["ok": false, "code": error.code.rawValue, "message": error.message]) : error.description
        }
    }

    /// Executes a parsed command; throws the `ERR` answer.
    public func execute(_ command: AdminCommand, json: Bool) throws(AdminError) -> String {
        switch command {
        case .help:
            return json ? jsonLine(["commands": AdminCommand.usage.split(separator: "\n").map(String.init)]) : AdminCommand.usage
        case .showProfiles:
            return controlQueue.sync { showProfiles(json: json) }
        case .showEndpoints(let profile):
            return try onControlQueue { () throws(AdminError) in try showEndpoints(profile: profile, json: json) }
        case .showStats:
            return controlQueue.sync { showStats(json: json) }
        case .showEvents(let count):
            return showEvents(count: count, json: json)
        case .switchTo(let profile, let endpoint, let force, let wait):
            let drained = try onControlQueue { () throws(AdminError) in try switchTo(profile: profile, endpoint: endpoint, force: force) }
            let waited = wait ? waitForDrains(drained) : nil
            return answer(json: json, "switched \(profile) to \(endpoint)", details: [
                "profile": profile, "endpoint": endpoint, "draining": drained.map { $0.components(separatedBy: "/").last ?? $0 },
            ] .merging(waited.map { ["drains": $0] } ?? [:]) { a, _ in a }, extra: waited.map { outcomes in
                outcomes.isEmpty ? "nothing to drain" : outcomes.map { "\($0.key): \($0.value)" }.sorted().joined(separator: "; ")
            })
        case .setEndpoint(let profile, let endpoint, let state, let priority, let weight):
            let summary = try onControlQueue { () throws(AdminError) in
                try setEndpoint(profile: profile, endpoint: endpoint, state: state, priority: priority, weight: weight)
            }
            return answer(json: json, summary, details: ["profile": profile, "endpoint": endpoint])
        case .pause(let profile):
            try onControlQueue { () throws(AdminError) in try setPaused(profile: profile, paused: true) }
            return answer(json: json, "paused \(profile): new requests and connections are held", details: ["profile": profile, "paused": true])
        case .resume(let profile):
            let released = try onControlQueue { () throws(AdminError) in try setPaused(profile: profile, paused: false) }
            return answer(json: json, "resumed \(profile): \(released) held released", details: ["profile": profile, "paused": false, "released": released])
        case .maintenance(let profile, let on):
            try onControlQueue { () throws(AdminError) in try setGate(profile: profile, maintenance: on) }
            return answer(json: json, "maintenance \(profile) \(on ? "on" : "off")", details: ["profile": profile, "maintenance": on])
        case .readOnly(let profile, let on):
            try onControlQueue { () throws(AdminError) in try setGate(profile: profile, readOnly: on) }
            return answer(json: json, "readonly \(profile) \(on ? "on" : "off")", details: ["profile": profile, "readonly": on])
        case .reload:
            let summary = try onControlQueue { () throws(AdminError) in try reload() }
            return answer(json: json, summary, details: [:])
        }
    }

    @discardableResult
    private func onControlQueue<T>(_ body: () throws(AdminError) -> T) throws(AdminError) -> T {
        let result: Result<T, AdminError> = controlQueue.sync { Result(catching: body) }
        return try result.get()
    }

    private func answer(json: Bool, _ text: String, details: [String: Any], extra: String? = nil) -> String {
        if json {
            var object = details
            object["ok"] = true
            object["message"] = text
            return jsonLine(object)
        }
        return "OK \(text)" + (extra.map { " (\($0))" } ?? "")
    }

    // MARK: - Mutations (on the control queue)

    func profileConfig(_ name: String) throws(AdminError) -> ProfileConfig {
        guard let profile = config.profile(named: name) else {
            throw AdminError(.unknownProfile, "no profile named \"\(name)\" (profiles: \(config.profiles.map(\.name).joined(separator: ", ")))")
        }
        return profile
    }

    func endpointConfig(_ profile: ProfileConfig, _ name: String) throws(AdminError) -> EndpointConfig {
        guard let endpoint = profile.endpoint(named: name) else {
            throw AdminError(.unknownEndpoint, "profile \(profile.name) has no endpoint \"\(name)\" (endpoints: \(profile.endpoints.map(\.name).joined(separator: ", ")))")
        }
        return endpoint
    }

    /// Makes `endpoint` the only online endpoint of its priority (and better); returns the keys now draining.
    func switchTo(profile profileName: String, endpoint name: String, force: Bool) throws(AdminError) -> [String] {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        guard var endpoints = runtime.profiles[profileName]?.endpoints, let chosen = endpoints[name] else {
            throw AdminError(.internalError, "no runtime state for \(profileName)/\(name)")
        }
        if !force {
            switch chosen.health {
            case .down:
                throw AdminError(.unhealthy, "\(profileName)/\(name) is down (\(lastHealthChange["\(profileName)/\(name)"]?.cause ?? "failed probes")); use --force to switch anyway")
            case .unknown where profile.hasProbes:
                throw AdminError(.unhealthy, "\(profileName)/\(name) has not passed a probe yet; wait for it to be up, or use --force")
            case .unknown, .up:
                break
            }
        }
        var draining: [String] = []
        for (other, state) in endpoints where other != name && state.admin == .online && state.priority <= chosen.priority {
            endpoints[other]?.admin = .draining
            draining.append("\(profileName)/\(other)")
        }
        let alreadyLive = chosen.admin == .online && draining.isEmpty
        endpoints[name]?.admin = .online
        runtime.profiles[profileName]?.endpoints = endpoints
        drainOutcomes = drainOutcomes.filter { key, _ in !draining.contains(key) }
        for key in draining { startDrain(profile: profile, endpoint: String(key.dropFirst(profileName.count + 1))) }
        if !alreadyLive {
            stats.switches.wrappingAdd(1, ordering: .relaxed)
            events.record(profile: profileName, endpoint: name, state: "online", cause: "switch\(force ? " --force" : "")")
        }
        publish()
        return draining
    }

    /// Changes an endpoint's admin state, priority or weight; returns a one-line summary.
    func setEndpoint(profile profileName: String, endpoint name: String, state: AdminCommand.EndpointStateChange?, priority: Int?, weight: Int?) throws(AdminError) -> String {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        let key = "\(profileName)/\(name)"
        var changes: [String] = []
        if let priority {
            runtime.profiles[profileName]?.endpoints[name]?.priority = priority
            changes.append("priority \(priority)")
        }
        if let weight {
            runtime.profiles[profileName]?.endpoints[name]?.weight = weight
            changes.append("weight \(weight)")
        }
        switch state {
        case .online:
            cancelDrain(key)
            runtime.profiles[profileName]?.endpoints[name]?.admin = .online
            changes.insert("online", at: 0)
        case .offline:
            cancelDrain(key)
            runtime.profiles[profileName]?.endpoints[name]?.admin = .offline
            changes.insert("offline", at: 0)
        case .drain:
            if runtime.profiles[profileName]?.endpoints[name]?.admin == .online {
                startDrain(profile: profile, endpoint: name)
            }
            changes.insert("draining", at: 0)
        case nil:
            break
        }
        events.record(profile: profileName, endpoint: name, state: changes.joined(separator: " "), cause: "set endpoint")
        publish()
        return "\(key) \(changes.joined(separator: " "))"
    }

    /// Pauses or resumes a profile; returns how many held requests a resume released.
    @discardableResult
    func setPaused(profile profileName: String, paused: Bool) throws(AdminError) -> Int {
        _ = try profileConfig(profileName)
        let held = holdQueue(for: profileName).count
        runtime.profiles[profileName]?.paused = paused
        events.record(profile: profileName, endpoint: nil, state: paused ? "paused" : "resumed", cause: paused ? "pause" : "resume, \(held) held released")
        publish()
        return paused ? 0 : held
    }

    func setGate(profile profileName: String, maintenance: Bool? = nil, readOnly: Bool? = nil) throws(AdminError) {
        _ = try profileConfig(profileName)
        if let maintenance {
            runtime.profiles[profileName]?.maintenance = maintenance
            events.record(profile: profileName, endpoint: nil, state: "maintenance \(maintenance ? "on" : "off")", cause: "maintenance command")
        }
        if let readOnly {
            runtime.profiles[profileName]?.readOnly = readOnly
            events.record(profile: profileName, endpoint: nil, state: "readonly \(readOnly ? "on" : "off")", cause: "readonly command")
        }
        publish()
    }

    /// Blocks until the given drains finished; returns how each ended.
    ///
    /// - Important: call off the control queue (it polls it).
    func waitForDrains(_ keys: [String]) -> [String: String] {
        while true {
            let (pending, outcomes) = controlQueue.sync { () -> (Bool, [String: String]) in
                let pending = keys.contains { drains[$0] != nil }
                return (pending, drainOutcomes.filter { keys.contains($0.key) })
            }
            if !pending { return outcomes }
            usleep(20_000)
        }
    }
}

/// One-line JSON for admin answers.
func jsonLine(_ object: Any) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}
