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
        // In a fleet, a change is one etcd transaction around the local command (ProxyRuntime+Fleet).
        if let fleet { return try executeInFleet(command, json: json, link: fleet) }
        return try executeLocally(command, json: json)
    }

    /// Executes a command on this proxy alone.
    func executeLocally(_ command: AdminCommand, json: Bool) throws(AdminError) -> String {
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
        case .showFleet:
            return try showFleet(json: json)
        case .followEvents:
            // The admin socket streams it before it gets here (`stream(line:)`).
            throw AdminError(.conflict, "show events --follow streams on the admin socket only (or GET /events on the admin HTTP listener)")
        case .switchTo(let profile, let endpoint, let force, let wait, let guardWindow, let waitGuard):
            let started = try startSwitch(profile: profile, endpoint: endpoint, force: force, guardWindow: guardWindow)
            return try finishSwitch(started, wait: wait, waitGuard: waitGuard, json: json)
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
        case .readOnly(let profile, let gate):
            let released = try onControlQueue { () throws(AdminError) in try setReadOnly(profile: profile, gate: gate) }
            return answer(json: json, "readonly \(profile) \(gate.rawValue)", GateAnswer(profile: profile, readonly: gate, released: released),
                          extra: Self.readOnlyNote(gate, released: released))
        case .reload:
            let summary = try onControlQueue { () throws(AdminError) in try reload() }
            return answer(json: json, summary, NoAnswerData())
        case .addEndpoint(let profile, let endpoint, let address, let priority, let weight, let offline):
            let summary = try onControlQueue { () throws(AdminError) in
                try addEndpoint(profile: profile, endpoint: endpoint, address: address, priority: priority, weight: weight, offline: offline)
            }
            return answer(json: json, summary, SetEndpointAnswer(profile: profile, endpoint: endpoint))
        case .removeEndpoint(let profile, let endpoint):
            let draining = try onControlQueue { () throws(AdminError) in try startRemoval(profile: profile, endpoint: endpoint) }
            let drained = waitForDrains(draining).values.first
            let summary = try onControlQueue { () throws(AdminError) in try finishRemoval(profile: profile, endpoint: endpoint, drained: drained) }
            return answer(json: json, summary, SetEndpointAnswer(profile: profile, endpoint: endpoint))
        case .setEndpointHealth(let profile, let endpoint, let health, let cause):
            let summary = try onControlQueue { () throws(AdminError) in try setHealth(profile: profile, endpoint: endpoint, health: health, cause: cause) }
            return answer(json: json, summary, SetEndpointAnswer(profile: profile, endpoint: endpoint))
        case .deploy(let profile, let address, let name, let timeout):
            let (deployed, summary) = try deploy(profile: profile, address: address, name: name, timeout: timeout)
            return answer(json: json, summary, deployed)
        case .rollback(let profile):
            let rolledBack = try onControlQueue { () throws(AdminError) in try rollback(profile: profile) }
            return answer(json: json, "rolled \(profile) back to \(rolledBack.endpoint)", rolledBack)
        }
    }

    /// A switch made, before its waits: what it drains and the guard window it opened.
    struct StartedSwitch {
        let profile: String
        let endpoint: String
        let draining: [EndpointTarget]
        /// When the guard window opened; `nil` without `--guard`.
        let opened: MonotonicInstant?
        let guardWindow: Duration?
    }

    /// Switches `profile` to `endpoint` with one publish; the waits are `finishSwitch`'s (a fleet
    /// writes the switch to etcd between the two, so the other nodes do not wait for this one's drains).
    func startSwitch(profile: String, endpoint: String, force: Bool, guardWindow: Duration?) throws(AdminError) -> StartedSwitch {
        try onControlQueue { () throws(AdminError) in
            let draining = try switchTo(profile: profile, endpoint: endpoint, force: force, guardWindow: guardWindow)
            return StartedSwitch(profile: profile, endpoint: endpoint, draining: draining, opened: guards[profile]?.watch?.started, guardWindow: guardWindow)
        }
    }

    /// Waits as `--wait` / `--wait-guard` ask (for this proxy's drains and guard window), then answers.
    ///
    /// - Important: may block; call off the control queue.
    func finishSwitch(_ started: StartedSwitch, wait: Bool, waitGuard: Bool, json: Bool) throws(AdminError) -> String {
        let (profile, endpoint, draining) = (started.profile, started.endpoint, started.draining)
        var switched = SwitchAnswer(profile: profile, endpoint: endpoint, draining: draining.map(\.name))
        var notes: [String] = []
        if let opened = started.opened, waitGuard || wait {
            // The old endpoints stand by until the window ends: a wait for their drains is a wait for it.
            let verdict = waitForGuard(profile: profile, opened: opened)
            switched.guardWindow = controlQueue.sync { guardStatus(profile) }
            switch verdict {
            case .breach?:
                throw AdminError(.guardBreach, "switched \(profile) to \(endpoint), then \(verdict!.description)")
            case .superseded?:
                throw AdminError(.guardEnded, "switched \(profile) to \(endpoint), then the \(verdict!.description)")
            case .clean?, nil:
                notes.append(verdict?.description ?? "guard window replaced")
            }
        } else if started.opened != nil {
            switched.guardWindow = controlQueue.sync { guardStatus(profile) }
            notes.append("guard window \(DurationText.format(started.guardWindow ?? .zero)) open, \(draining.map(\.name).joined(separator: ", ")) standing by")
        }
        if wait {
            let outcomes = waitForDrains(draining.map(\.qualifiedName))
            switched.drains = outcomes
            notes.append(outcomes.isEmpty ? "nothing to drain" : outcomes.map { "\($0.key): \($0.value)" }.sorted().joined(separator: "; "))
        }
        return answer(json: json, "switched \(profile) to \(endpoint)", switched, extra: notes.isEmpty ? nil : notes.joined(separator: "; "))
    }

    @discardableResult
    func onControlQueue<T>(_ body: () throws(AdminError) -> T) throws(AdminError) -> T {
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

    /// Makes `endpoint` the only online endpoint of its priority (and better); returns those now
    /// draining. With `guardWindow` they stand by for a guard window; without, any open window ends
    /// (every operator's switch does: `switch`, `deploy`, `rollback`).
    func switchTo(profile profileName: String, endpoint name: String, force: Bool, guardWindow: Duration? = nil) throws(AdminError) -> [EndpointTarget] {
        let profile = try profileConfig(profileName)
        _ = try endpointConfig(profile, name)
        let previous = profile.endpoints.map(\.name).filter { $0 != name && runtime.profiles[profileName]?.endpoints[$0]?.admin == .online }
        let effects = try applyCommand(.switchRequested(endpoint: name, force: force, inFlight: inFlight(profile)), to: profile)
        // What `rollback` goes back to: the endpoints that were live before this switch.
        let replaced = previous.filter { runtime.profiles[profileName]?.endpoints[$0]?.admin != .online }
        if !replaced.isEmpty { lastReplaced[profileName] = replaced }
        let draining = effects.compactMap { effect -> EndpointTarget? in
            guard case .armDrainDeadline(let endpoint, _) = effect else { return nil }
            return target(profile: profileName, endpoint: endpoint)
        }
        guardAfterSwitch(profile: profile, live: name, replaced: draining.map(\.name), duration: guardWindow)
        return draining
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

    /// Pauses or resumes a profile; returns how many held requests a resume released (work another
    /// condition still holds, such as writes under `readonly hold`, stays and is not counted).
    @discardableResult
    func setPaused(profile profileName: String, paused: Bool) throws(AdminError) -> Int {
        let profile = try profileConfig(profileName)
        let queue = holdQueue(for: profileName)
        let wasPaused = runtime.profiles[profileName]?.paused ?? false
        let releasing = wasPaused ? queue.releasableByResume() : 0
        try applyCommand(paused ? .pauseRequested : .resumeRequested(releasing: releasing, keeping: queue.count - releasing), to: profile)
        return paused ? 0 : releasing
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

    func setGate(profile profileName: String, maintenance: Bool) throws(AdminError) {
        _ = try profileConfig(profileName)
        runtime.profiles[profileName]?.maintenance = maintenance
        events.record(profile: profileName, endpoint: nil, state: "maintenance \(maintenance ? "on" : "off")", cause: "maintenance command")
        publish()
    }

    /// Moves the read-only gate; returns how many held requests left the hold queue (leaving `hold`
    /// for `off` sends them to the backends, for `on` to a 503).
    @discardableResult
    func setReadOnly(profile profileName: String, gate: ReadOnlyGate) throws(AdminError) -> Int {
        _ = try profileConfig(profileName)
        runtime.profiles[profileName]?.readOnly = gate
        let released = publish()[profileName] ?? 0
        let cause = ["readonly command", Self.readOnlyNote(gate, released: released)].compactMap { $0 }.joined(separator: ", ")
        events.record(profile: profileName, endpoint: nil, state: "readonly \(gate.rawValue)", cause: cause)
        return released
    }

    /// What moving the gate did to held work, for the answer and the event; `nil` when nothing moved.
    static func readOnlyNote(_ gate: ReadOnlyGate, released: Int) -> String? {
        guard released > 0 else { return nil }
        switch gate {
        case .off: return "\(released) held released"
        case .on: return "\(released) held answered 503"
        // Only a publish that happened meanwhile (a resume) can release anything while the gate holds.
        case .hold: return "\(released) held released"
        }
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
