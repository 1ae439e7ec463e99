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
            let draining = try onControlQueue { () throws(AdminError) in try switchTo(profile: profile, endpoint: endpoint, force: force) }
            var details: [String: Any] = ["profile": profile, "endpoint": endpoint, "draining": draining.map(\.name)]
            guard wait else { return answer(json: json, "switched \(profile) to \(endpoint)", details: details) }
            let outcomes = waitForDrains(draining.map(\.qualifiedName))
            details["drains"] = outcomes
            let summary = outcomes.isEmpty ? "nothing to drain" : outcomes.map { "\($0.key): \($0.value)" }.sorted().joined(separator: "; ")
            return answer(json: json, "switched \(profile) to \(endpoint)", details: details, extra: summary)
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

    /// Makes `endpoint` the only online endpoint of its priority (and better); returns those now draining.
    func switchTo(profile profileName: String, endpoint name: String, force: Bool) throws(AdminError) -> [EndpointTarget] {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        let effects = try applyCommand(.switchRequested(endpoint: name, force: force, inFlight: inFlight(profile)), to: profile)
        return effects.compactMap { effect in
            guard case .armDrainDeadline(let endpoint, _) = effect else { return nil }
            return target(profile: profileName, endpoint: endpoint)
        }
    }

    /// Changes an endpoint's admin state, priority or weight; returns a one-line summary.
    func setEndpoint(profile profileName: String, endpoint name: String, state: AdminCommand.EndpointStateChange?, priority: Int?, weight: Int?) throws(AdminError) -> String {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        let inFlight = target(profile: profileName, endpoint: name)?.counters.inFlight.load(ordering: .relaxed) ?? 0
        let effects = try applyCommand(.endpointSetRequested(endpoint: name, state: state, priority: priority, weight: weight, inFlight: inFlight), to: profile)
        // The answer says what the event log says.
        let change = effects.lazy.compactMap { effect -> String? in
            guard case .recordEvent(name?, let state, "set endpoint") = effect else { return nil }
            return state
        }.first ?? ""
        return "\(profileName)/\(name) \(change)"
    }

    /// Pauses or resumes a profile; returns how many held requests a resume released.
    @discardableResult
    func setPaused(profile profileName: String, paused: Bool) throws(AdminError) -> Int {
        let profile = try profileConfig(profileName)
        let held = holdQueue(for: profileName).count
        try applyCommand(paused ? .pauseRequested : .resumeRequested(held: held), to: profile)
        return paused ? 0 : held
    }

    /// `apply` for an operator's command: a refusal becomes the `ERR` answer.
    @discardableResult
    private func applyCommand(_ event: ProfileControl.Event, to profile: ProfileConfig) throws(AdminError) -> [ProfileControl.Effect] {
        do {
            return try apply(event, to: profile)
        } catch {
            let key = { (name: String) in "\(profile.name)/\(name)" }
            switch error {
            case .unknownEndpoint(let name):
                throw AdminError(.unknownEndpoint, "profile \(profile.name) has no endpoint \"\(name)\" (endpoints: \(profile.endpoints.map(\.name).joined(separator: ", ")))")
            case .targetDown(let name):
                throw AdminError(.unhealthy, "\(key(name)) is down (\(lastHealthChange[key(name)]?.cause ?? "failed probes")); use --force to switch anyway")
            case .targetUnproven(let name):
                throw AdminError(.unhealthy, "\(key(name)) has not passed a probe yet; wait for it to be up, or use --force")
            }
        }
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
