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
            return json ? JSONCoding.line(AdminAnswer(error)) : error.description
        }
    }

    /// Executes a parsed command; throws the `ERR` answer. JSON answers are the `AdminAnswer` types of Core.
    public func execute(_ command: AdminCommand, json: Bool) throws(AdminError) -> String {
        switch command {
        case .help:
            return json ? JSONCoding.line(AdminAnswer(data: HelpAnswer(commands: AdminCommand.usage.split(separator: "\n").map(String.init)))) : AdminCommand.usage
        case .showProfiles:
            return controlQueue.sync { showProfiles(json: json) }
        case .showEndpoints(let profile):
            return try onControlQueue { () throws(AdminError) in try showEndpoints(profile: profile, json: json) }
        case .showStats:
            return controlQueue.sync { showStats(json: json) }
        case .showEvents(let count):
            return showEvents(count: count, json: json)
        case .switchTo(let profile, let endpoint, let force, let wait):
            let draining = try onControlQueue { () throws(AdminError) in try switchTo(profile: profile, endpoint: endpoint, force: force) }
            var switched = SwitchAnswer(profile: profile, endpoint: endpoint, draining: draining.map(\.name))
            guard wait else { return answer(json: json, "switched \(profile) to \(endpoint)", switched) }
            let outcomes = waitForDrains(draining.map(\.qualifiedName))
            switched.drains = outcomes
            let summary = outcomes.isEmpty ? "nothing to drain" : outcomes.map { "\($0.key): \($0.value)" }.sorted().joined(separator: "; ")
            return answer(json: json, "switched \(profile) to \(endpoint)", switched, extra: summary)
        case .setEndpoint(let profile, let endpoint, let state, let priority, let weight):
            let summary = try onControlQueue { () throws(AdminError) in
                try setEndpoint(profile: profile, endpoint: endpoint, state: state, priority: priority, weight: weight)
            }
            return answer(json: json, summary, SetEndpointAnswer(profile: profile, endpoint: endpoint))
        case .pause(let profile):
            try onControlQueue { () throws(AdminError) in try setPaused(profile: profile, paused: true) }
            return answer(json: json, "paused \(profile): new requests and connections are held", PauseAnswer(profile: profile, paused: true))
        case .resume(let profile):
            let released = try onControlQueue { () throws(AdminError) in try setPaused(profile: profile, paused: false) }
            return answer(json: json, "resumed \(profile): \(released) held released", PauseAnswer(profile: profile, paused: false, released: released))
        case .maintenance(let profile, let on):
            try onControlQueue { () throws(AdminError) in try setGate(profile: profile, maintenance: on) }
            return answer(json: json, "maintenance \(profile) \(on ? "on" : "off")", GateAnswer(profile: profile, maintenance: on))
        case .readOnly(let profile, let on):
            try onControlQueue { () throws(AdminError) in try setGate(profile: profile, readOnly: on) }
            return answer(json: json, "readonly \(profile) \(on ? "on" : "off")", GateAnswer(profile: profile, readonly: on))
        case .reload:
            let summary = try onControlQueue { () throws(AdminError) in try reload() }
            return answer(json: json, summary, NoAnswerData())
        }
    }

    @discardableResult
    private func onControlQueue<T>(_ body: () throws(AdminError) -> T) throws(AdminError) -> T {
        let result: Result<T, AdminError> = controlQueue.sync { Result(catching: body) }
        return try result.get()
    }

    /// `OK text (extra)`, or the JSON envelope with `text` as its message beside the command's data.
    private func answer<Payload: Codable & Sendable>(json: Bool, _ text: String, _ data: Payload, extra: String? = nil) -> String {
        if json { return JSONCoding.line(AdminAnswer(message: text, data: data)) }
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

    /// Makes `endpoint` the only online endpoint of its priority (and better); returns those now draining.
    func switchTo(profile profileName: String, endpoint name: String, force: Bool) throws(AdminError) -> [EndpointTarget] {
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
        // Config order, so that answers and events list the old endpoints the same way every time.
        let draining = profile.endpoints.map(\.name).filter { other in
            guard other != name, let state = endpoints[other] else { return false }
            return state.admin == .online && state.priority <= chosen.priority
        }
        let alreadyLive = chosen.admin == .online && draining.isEmpty
        endpoints[name]?.admin = .online
        runtime.profiles[profileName]?.endpoints = endpoints
        for other in draining { startDrain(profile: profile, endpoint: other) }
        if !alreadyLive {
            stats.switches.wrappingAdd(1, ordering: .relaxed)
            events.record(profile: profileName, endpoint: name, state: "online", cause: "switch\(force ? " --force" : "")")
        }
        publish()
        return draining.compactMap { target(profile: profileName, endpoint: $0) }
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
