import CutoverCore
import Foundation

/// The `show` commands: what operators read in a terminal, and the same facts as JSON for scripts.
extension ProxyRuntime {
    /// One endpoint's facts, shared by the text table, JSON, metrics and the status page.
    struct EndpointView {
        let profile: String
        let name: String
        let address: String
        let state: AdminState
        let health: Health
        let priority: Int
        let weight: Int
        let live: Bool
        let inFlight: Int
        let connections: Int
        let lastChange: RuntimeEvent?
        let counters: EndpointCounters

        var json: [String: Any] {
            var object: [String: Any] = [
                "profile": profile, "name": name, "address": address, "state": state.rawValue, "health": health.rawValue,
                "priority": priority, "weight": weight, "live": live, "in_flight": inFlight, "connections": connections,
            ]
            if let lastChange { object["last_change"] = lastChange.json }
            return object
        }
    }

    /// Every endpoint of a profile (or of all), in config order.
    ///
    /// - Important: call on `controlQueue`.
    func endpointViews(profile filter: String? = nil) -> [EndpointView] {
        let snapshot = store.load()
        var views: [EndpointView] = []
        for profile in config.profiles where filter == nil || profile.name == filter {
            let route = snapshot.routing.profile(named: profile.name)
            for endpoint in profile.endpoints {
                guard let state = runtime.profiles[profile.name]?.endpoints[endpoint.name],
                      let target = target(profile: profile.name, endpoint: endpoint.name) else { continue }
                views.append(EndpointView(
                    profile: profile.name, name: endpoint.name, address: endpoint.address.description, state: state.admin,
                    health: state.health, priority: state.priority, weight: state.weight,
                    live: route?.isCandidate(target) ?? false,
                    inFlight: target.counters.inFlight.load(ordering: .relaxed),
                    connections: target.counters.connections.load(ordering: .relaxed),
                    lastChange: lastHealthChange["\(profile.name)/\(endpoint.name)"], counters: target.counters))
            }
        }
        return views
    }

    func showEndpoints(profile: String?, json: Bool) throws(AdminError) -> String {
        if let profile { _ = try profileConfig(profile) }
        let views = endpointViews(profile: profile)
        if json { return jsonLine(["endpoints": views.map(\.json)]) }
        let rows = views.map { view -> [String] in
            let change = view.lastChange.map { "\($0.state): \($0.cause)" } ?? "-"
            return [view.profile, view.name, view.address, view.state.rawValue, view.health.rawValue, String(view.priority),
                    String(view.weight), view.live ? "yes" : "no", String(view.inFlight), String(view.connections), change]
        }
        return TextTable.render(
            header: ["PROFILE", "ENDPOINT", "ADDRESS", "STATE", "HEALTH", "PRIO", "WEIGHT", "LIVE", "INFLIGHT", "CONNS", "LAST HEALTH CHANGE"],
            rows: rows)
    }

    /// One profile's summary, shared by `show profiles`, `/health` and the status page.
    struct ProfileView {
        let name: String
        let live: [String]
        let paused: Bool
        let maintenance: Bool
        let readOnly: ReadOnlyGate
        let held: Int
        let endpoints: Int

        var gates: [String] {
            [paused ? "paused" : nil, maintenance ? "maintenance" : nil, readOnlyLabel].compactMap { $0 }
        }

        /// `readonly` (writes refused) or `readonly-hold` (writes wait); `nil` while the gate is open.
        var readOnlyLabel: String? {
            switch readOnly {
            case .off: return nil
            case .on: return "readonly"
            case .hold: return "readonly-hold"
            }
        }

        var json: [String: Any] {
            // `readonly` keeps its Bool meaning (writes kept from the backends); `readonly_gate` says how.
            ["name": name, "live": live, "paused": paused, "maintenance": maintenance, "readonly": readOnly.isClosed,
             "readonly_gate": readOnly.rawValue, "held": held, "endpoints": endpoints]
        }
    }

    /// - Important: call on `controlQueue`.
    func profileViews() -> [ProfileView] {
        let snapshot = store.load()
        return config.profiles.map { profile in
            let route = snapshot.routing.profile(named: profile.name)
            let state = runtime.profiles[profile.name]
            return ProfileView(
                name: profile.name, live: route?.candidates.map(\.name) ?? [], paused: state?.paused ?? false,
                maintenance: state?.maintenance ?? false, readOnly: state?.readOnly ?? .off,
                held: holdQueue(for: profile.name).count, endpoints: profile.endpoints.count)
        }
    }

    func showProfiles(json: Bool) -> String {
        let views = profileViews()
        if json { return jsonLine(["profiles": views.map(\.json)]) }
        return TextTable.render(
            header: ["PROFILE", "LIVE", "GATES", "HELD", "ENDPOINTS"],
            rows: views.map { [$0.name, $0.live.isEmpty ? "(none)" : $0.live.joined(separator: ","), $0.gates.isEmpty ? "-" : $0.gates.joined(separator: ","), String($0.held), String($0.endpoints)] })
    }

    /// Process-wide totals.
    func statsValues() -> [(String, Int)] {
        [
            ("uptime_seconds", Int(Date().timeIntervalSince(startedAt))),
            ("connections_open", stats.openConnections.load(ordering: .relaxed)),
            ("connections_accepted", stats.acceptedConnections.load(ordering: .relaxed)),
            ("connections_refused", stats.refusedConnections.load(ordering: .relaxed)),
            ("requests", stats.requests.load(ordering: .relaxed)),
            ("proxy_answered", stats.proxyAnswered.load(ordering: .relaxed)),
            ("held_now", stats.heldNow.load(ordering: .relaxed)),
            ("held_total", stats.heldTotal.load(ordering: .relaxed)),
            ("hold_timeouts", stats.holdTimeouts.load(ordering: .relaxed)),
            ("switches", stats.switches.load(ordering: .relaxed)),
            ("tunnels", stats.tunnels.load(ordering: .relaxed)),
            ("snapshot_generation", Int(store.load().generation)),
            ("workers", workers.count),
        ]
    }

    func showStats(json: Bool) -> String {
        let values = statsValues()
        if json { return jsonLine(Dictionary(values, uniquingKeysWith: { a, _ in a })) }
        return values.map { "\($0.0) \($0.1)" }.joined(separator: "\n")
    }

    func showEvents(count: Int, json: Bool) -> String {
        let recent = events.last(count)
        if json { return jsonLine(["events": recent.map(\.json)]) }
        return recent.isEmpty ? "(no events yet)" : recent.map(\.line).joined(separator: "\n")
    }
}

/// Left-aligned columns for terminal output.
enum TextTable {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
