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
        /// Draining, but held ready by an open guard window.
        let standingBy: Bool
        /// While draining: elapsed and left until the drain deadline.
        let drain: (elapsed: Duration, left: Duration)?
        /// Requests per second and percentiles over about the last minute; `nil` before the first sample.
        let recent: RecentTraffic?
        /// The share of `weight` the agent probe asked for, in percent; `nil` for all of it.
        let agentShare: Int?

        /// `1`, or `10 (50%)` while an agent asks for half of weight 10.
        var weightText: String { agentShare.map { "\(weight) (\($0)%)" } ?? String(weight) }

        /// `12.5`, `1.3`, `0.02`, or `-` before the first sample: per-second rates as operators read them.
        var rateText: String { recent.map { Self.figure($0.requestsPerSecond) } ?? "-" }
        /// `0.5ms`, `-` with nothing timed.
        var p50Text: String { recent?.p50Milliseconds.map { Self.figure($0) + "ms" } ?? "-" }
        var p99Text: String { recent?.p99Milliseconds.map { Self.figure($0) + "ms" } ?? "-" }

        /// Three significant figures at most, never an exponent (`1234`, `12.3`, `0.05`).
        static func figure(_ value: Double) -> String {
            if value >= 100 { return String(Int(value.rounded())) }
            let decimals = value >= 10 ? 1 : 2
            let scale = decimals == 1 ? 10.0 : 100.0
            let scaled = Int((value * scale).rounded())
            let whole = scaled / Int(scale), fraction = scaled % Int(scale)
            let digits = String(fraction)
            return "\(whole).\(String(repeating: "0", count: decimals - digits.count))\(digits)"
        }

        /// `draining 1.2s of 30s` in the text table; `draining (agent)` while the agent drains it.
        var stateText: String {
            if agentDrains { return "\(stateLabel) (agent)" }
            guard let drain, !standingBy else { return stateLabel }
            return "\(stateLabel) \(DurationText.format(drain.elapsed)) of \(DurationText.format(drain.elapsed + drain.left))"
        }

        /// `standby` while a guard window holds the endpoint ready, `draining` while its agent drains
        /// an online endpoint, else the admin state.
        var stateLabel: String { standingBy ? "standby" : agentDrains ? AdminState.draining.rawValue : state.rawValue }

        /// Online for the operator, but its agent asked for no new work.
        var agentDrains: Bool { state == .online && agentShare == 0 && !standingBy }

        /// The `show endpoints --json` row.
        var status: EndpointStatus {
            EndpointStatus(
                profile: profile, name: name, address: address, state: stateLabel, health: health.rawValue, priority: priority,
                weight: weight, live: live, inFlight: inFlight, connections: connections, lastChange: lastChange?.record,
                drainElapsedMs: drain?.elapsed.milliseconds, drainLeftMs: drain?.left.milliseconds,
                rate1m: recent.map { Self.rounded($0.requestsPerSecond) }, p50Ms: recent?.p50Milliseconds.map(Self.rounded),
                p99Ms: recent?.p99Milliseconds.map(Self.rounded), agentShare: agentShare)
        }

        /// Three decimals in JSON: the figures are estimates, more digits would be noise.
        private static func rounded(_ value: Double) -> Double {
            (value * 1000).rounded() / 1000
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
            let standby = standingBy(profile.name)
            let now = MonotonicInstant(milliseconds: monotonicMilliseconds())
            for endpoint in profile.endpoints {
                guard let state = runtime.profiles[profile.name]?.endpoints[endpoint.name],
                      let target = target(profile: profile.name, endpoint: endpoint.name) else { continue }
                views.append(EndpointView(
                    profile: profile.name, name: endpoint.name, address: endpoint.address.description, state: state.admin,
                    health: state.health, priority: state.priority, weight: state.weight,
                    live: route?.isCandidate(target) ?? false,
                    inFlight: target.counters.inFlight.load(ordering: .relaxed),
                    connections: target.counters.connections.load(ordering: .relaxed),
                    lastChange: lastHealthChange["\(profile.name)/\(endpoint.name)"], counters: target.counters,
                    standingBy: standby.contains(endpoint.name),
                    drain: drainProgress(drains["\(profile.name)/\(endpoint.name)"], now: now),
                    recent: recentTraffic(profile: profile.name, endpoint: endpoint.name), agentShare: state.agentShare))
            }
        }
        return views
    }

    /// How far a drain got: elapsed since it started, left until its deadline.
    private func drainProgress(_ lifecycle: EndpointLifecycle?, now: MonotonicInstant) -> (elapsed: Duration, left: Duration)? {
        switch lifecycle {
        case .draining(let drain)?, .closingTunnels(let drain)?:
            return (now.since(drain.started), drain.deadline.since(now))
        case .online?, .offline?, nil:
            return nil
        }
    }

    func showEndpoints(profile: String?, json: Bool) throws(AdminError) -> String {
        if let profile { _ = try profileConfig(profile) }
        let views = endpointViews(profile: profile)
        let guardLines = config.profiles.filter { profile == nil || $0.name == profile }.compactMap { guardStatus($0.name) }
        if json {
            return JSONCoding.line(AdminAnswer(data: EndpointsAnswer(endpoints: views.map(\.status), guards: guardLines.isEmpty ? nil : guardLines)))
        }
        let rows = views.map { view -> [String] in
            let change = view.lastChange.map { "\($0.state): \($0.cause)" } ?? "-"
            return [view.profile, view.name, view.address, view.stateText, view.health.rawValue, String(view.priority),
                    view.weightText, view.live ? "yes" : "no", String(view.inFlight), String(view.connections),
                    view.rateText, view.p50Text, view.p99Text, change]
        }
        return TextTable.render(
            header: ["PROFILE", "ENDPOINT", "ADDRESS", "STATE", "HEALTH", "PRIO", "WEIGHT", "LIVE", "INFLIGHT", "CONNS", "REQ/S", "P50", "P99", "LAST HEALTH CHANGE"],
            rows: rows) + guardLines.map { "\n" + $0.line }.joined()
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
        /// Requests and tunnels in flight on the profile's endpoints, and the writes among them.
        let inFlight: Int
        let writesInFlight: Int
        let holdTimeout: Duration
        /// The routes leading to the profile (see `ProfileStatus.routes`).
        let routes: [String]

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

        /// The `show profiles --json` row.
        var status: ProfileStatus {
            ProfileStatus(name: name, live: live, paused: paused, maintenance: maintenance, readonly: readOnly, held: held, endpoints: endpoints,
                          inFlight: inFlight, writesInFlight: writesInFlight, holdTimeoutMs: holdTimeout.milliseconds, routes: routes)
        }
    }

    /// - Important: call on `controlQueue`.
    func profileViews() -> [ProfileView] {
        let snapshot = store.load()
        return config.profiles.map { profile in
            let route = snapshot.routing.profile(named: profile.name)
            let state = runtime.profiles[profile.name]
            let counters = profile.endpoints.compactMap { target(profile: profile.name, endpoint: $0.name)?.counters }
            return ProfileView(
                name: profile.name, live: route?.candidates.map(\.name) ?? [], paused: state?.paused ?? false,
                maintenance: state?.maintenance ?? false, readOnly: state?.readOnly ?? .off,
                held: holdQueue(for: profile.name).count, endpoints: profile.endpoints.count,
                inFlight: counters.reduce(0) { $0 + $1.inFlight.load(ordering: .relaxed) },
                writesInFlight: counters.reduce(0) { $0 + $1.writesInFlight.load(ordering: .relaxed) },
                holdTimeout: profile.holdTimeout,
                routes: routes(to: profile.name))
        }
    }

    /// The listener routes leading to `profile`, in config order, the listeners' defaults included.
    private func routes(to profile: String) -> [String] {
        config.listeners.flatMap { listener in
            listener.routes.filter { $0.profile == profile }.map { "\(listener.name) \($0.summary)" }
                + (listener.profile == profile ? ["\(listener.name) default"] : [])
        }
    }

    func showProfiles(json: Bool) -> String {
        let views = profileViews()
        if json { return JSONCoding.line(AdminAnswer(data: ProfilesAnswer(profiles: views.map(\.status)))) }
        return TextTable.render(
            header: ["PROFILE", "LIVE", "GATES", "HELD", "ENDPOINTS", "ROUTES"],
            rows: views.map {
                [$0.name, $0.live.isEmpty ? "(none)" : $0.live.joined(separator: ","), $0.gates.isEmpty ? "-" : $0.gates.joined(separator: ","),
                 String($0.held), String($0.endpoints), $0.routes.isEmpty ? "-" : $0.routes.joined(separator: ", ")]
            })
    }

    /// Process-wide totals, as `show stats --json` answers them.
    func statsAnswer() -> StatsAnswer {
        StatsAnswer(
            uptimeSeconds: Int(Date().timeIntervalSince(startedAt)),
            connectionsOpen: stats.openConnections.load(ordering: .relaxed),
            connectionsAccepted: stats.acceptedConnections.load(ordering: .relaxed),
            connectionsRefused: stats.refusedConnections.load(ordering: .relaxed),
            connectionsEvicted: stats.evictedConnections.load(ordering: .relaxed),
            requests: stats.requests.load(ordering: .relaxed),
            proxyAnswered: stats.proxyAnswered.load(ordering: .relaxed),
            heldNow: stats.heldNow.load(ordering: .relaxed),
            heldTotal: stats.heldTotal.load(ordering: .relaxed),
            holdTimeouts: stats.holdTimeouts.load(ordering: .relaxed),
            switches: stats.switches.load(ordering: .relaxed),
            tunnels: stats.tunnels.load(ordering: .relaxed),
            snapshotGeneration: Int(store.load().generation),
            workers: workers.count,
            tlsHandshakes: stats.tls.handshakes.load(ordering: .relaxed),
            tlsHandshakeFailures: stats.tls.handshakeFailures.load(ordering: .relaxed),
            tlsPlainHTTP: stats.tls.plainHTTP.load(ordering: .relaxed),
            tlsUpstreamHandshakeFailures: stats.tls.upstreamHandshakeFailures.load(ordering: .relaxed),
            processGeneration: processGeneration, lastTakeover: tookOverAt.map(Timestamp.format),
            connectionsByWorker: workers.map(\.clientConnectionCount))
    }

    /// Process-wide totals by their snake_case names, in a fixed order (the text answer, metrics, status page).
    func statsValues() -> [(String, Int)] {
        let totals = statsAnswer()
        return [
            ("uptime_seconds", totals.uptimeSeconds),
            ("connections_open", totals.connectionsOpen),
            ("connections_accepted", totals.connectionsAccepted),
            ("connections_refused", totals.connectionsRefused),
            ("connections_evicted", totals.connectionsEvicted),
            ("requests", totals.requests),
            ("proxy_answered", totals.proxyAnswered),
            ("held_now", totals.heldNow),
            ("held_total", totals.heldTotal),
            ("hold_timeouts", totals.holdTimeouts),
            ("switches", totals.switches),
            ("tunnels", totals.tunnels),
            ("snapshot_generation", totals.snapshotGeneration),
            ("workers", totals.workers),
            ("tls_handshakes", totals.tlsHandshakes),
            ("tls_handshake_failures", totals.tlsHandshakeFailures),
            ("tls_plain_http", totals.tlsPlainHTTP),
            ("tls_upstream_handshake_failures", totals.tlsUpstreamHandshakeFailures),
            ("process_generation", totals.processGeneration),
        ]
    }

    func showStats(json: Bool) -> String {
        if json { return JSONCoding.line(AdminAnswer(data: statsAnswer())) }
        let takeover = tookOverAt.map { "\nlast_takeover \(Timestamp.format($0))" } ?? ""
        let byWorker = "\nconnections_by_worker " + workers.map { String($0.clientConnectionCount) }.joined(separator: " ")
        return statsValues().map { "\($0.0) \($0.1)" }.joined(separator: "\n") + byWorker + takeover
    }

    func showEvents(count: Int, json: Bool) -> String {
        let recent = events.last(count)
        if json { return JSONCoding.line(AdminAnswer(data: EventsAnswer(events: recent.map(\.record)))) }
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
