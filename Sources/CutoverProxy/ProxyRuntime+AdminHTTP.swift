import CutoverCore
import Foundation

/// The admin HTTP listener's routes: `/health` and `/health/PROFILE` for outer load balancers,
/// `/metrics` for Prometheus, `/status` for people. Read-only: mutations go through the admin socket.
extension ProxyRuntime {
    /// Starts the optional admin HTTP listener (`/health`, `/metrics`, `/status`).
    ///
    /// The address and `admin.token` are read once: changing them takes a restart, not a reload.
    func startAdminHTTP(on address: HostPort, adopting: Int32? = nil) throws {
        let (token, limits) = controlQueue.sync { (config.admin.token, config.admin.sessionLimits) }
        let server = try AdminHTTPServer(address: address, adopting: adopting, token: token, limits: limits) { [self] request in
            adminHTTPResponse(to: request)
        }
        controlQueue.sync { adminHTTPSocket = (server.listenFD, address.host, server.port) }
        let bound = HostPort(host: address.host, port: server.port)
        Log.info("admin http on http://\(bound)/ (/health, /metrics, /status, /events)\(token == nil ? "" : ", bearer token required")")
    }

    /// Answers one authorized GET or HEAD request.
    ///
    /// - Important: runs on an admin HTTP thread; reads runtime state through `controlQueue`.
    func adminHTTPResponse(to request: AdminHTTPServer.Request) -> AdminHTTPServer.Response {
        switch request.path {
        case "/health":
            return processHealth()
        case "/metrics":
            return AdminHTTPServer.Response(status: 200, contentType: PrometheusText.contentType, body: metricsText())
        case "/status":
            return AdminHTTPServer.Response(status: 200, contentType: "text/html; charset=utf-8", body: statusPage().render())
        case "/events":
            return eventStreamResponse()
        case "/":
            return AdminHTTPServer.Response(status: 302, body: "see /status\n", headers: [("Location", "/status")])
        default:
            if request.path.hasPrefix("/health/") {
                return profileHealth(String(request.path.dropFirst("/health/".count)))
            }
            return AdminHTTPServer.Response(status: 404, body: "not found: \(request.path) (routes: /health, /health/PROFILE, /metrics, /status, /events)\n")
        }
    }

    // MARK: - Health

    /// 200 while the proxy runs and accepts; 503 once shutdown started, so a balancer moves away first.
    func processHealth() -> AdminHTTPServer.Response {
        if shuttingDown.load(ordering: .relaxed) {
            return AdminHTTPServer.Response(status: 503, body: "shutting down\n")
        }
        // A fleet proxy without its store still serves (fail-static): 200, and the body says so.
        return AdminHTTPServer.Response(status: 200, body: "ok\n" + (fleetHealthLine.map { $0 + "\n" } ?? ""))
    }

    /// 200 when the profile can serve: at least one live endpoint and no closed maintenance gate.
    /// A pause or a read-only gate still answers 200 (requests are held or partly served, not failed).
    func profileHealth(_ name: String) -> AdminHTTPServer.Response {
        let found = controlQueue.sync { () -> (ProfileView, [EndpointView])? in
            guard let view = profileViews().first(where: { $0.name == name }) else { return nil }
            return (view, endpointViews(profile: name))
        }
        guard let (profile, endpoints) = found else {
            return AdminHTTPServer.Response(status: 404, body: "unknown profile \"\(name)\"\n")
        }
        if shuttingDown.load(ordering: .relaxed) {
            return AdminHTTPServer.Response(status: 503, body: "unavailable: shutting down\n")
        }
        if profile.maintenance {
            return AdminHTTPServer.Response(status: 503, body: "unavailable: profile \(name) is in maintenance\n")
        }
        guard !profile.live.isEmpty else {
            let states = endpoints.map { "\($0.name) \($0.state.rawValue)/\($0.health.rawValue)" }.joined(separator: ", ")
            return AdminHTTPServer.Response(status: 503, body: "unavailable: profile \(name) has no live endpoint (\(states))\n")
        }
        let notes = [profile.paused ? "paused" : nil, profile.readOnlyLabel].compactMap { $0 }
        return AdminHTTPServer.Response(status: 200, body: "ok: live \(profile.live.joined(separator: ","))\(notes.isEmpty ? "" : " (\(notes.joined(separator: ", ")))")\n")
    }

    // MARK: - Metrics

    /// The whole exposition: process totals, per-profile gates and holds, per-endpoint counters.
    func metricsText() -> String {
        let (endpoints, profiles, stats, draining, probes, guardWindows) = controlQueue.sync {
            (endpointViews(), profileViews(), Dictionary(statsValues(), uniquingKeysWith: { a, _ in a }), drains.count, prober.records,
             config.profiles.compactMap { guardStatus($0.name) })
        }
        var m = PrometheusText()
        m.family("cutover_info", .gauge, help: "Always 1; the version label says which build runs.")
        m.sample("cutover_info", [("version", CutoverVersion.string)], 1)
        m.family("cutover_uptime_seconds", .gauge, help: "Seconds since the proxy started.")
        m.sample("cutover_uptime_seconds", [], stats["uptime_seconds"] ?? 0)
        m.family("cutover_shutting_down", .gauge, help: "1 once SIGTERM was received and the proxy drains.")
        m.sample("cutover_shutting_down", [], shuttingDown.load(ordering: .relaxed) ? 1 : 0)

        let totals: [(String, PrometheusText.Kind, String, String)] = [
            ("cutover_connections_open", .gauge, "connections_open", "Client connections open now."),
            ("cutover_connections_accepted_total", .counter, "connections_accepted", "Client connections accepted."),
            ("cutover_connections_refused_total", .counter, "connections_refused", "Client connections refused at max_connections."),
            ("cutover_connections_evicted_total", .counter, "connections_evicted", "Idle client connections closed at max_connections to make room for a new one."),
            ("cutover_client_requests_total", .counter, "requests", "HTTP requests received from clients, whatever their outcome."),
            ("cutover_proxy_answered_total", .counter, "proxy_answered", "Requests answered by the proxy itself (parse errors, gates, 502/503/504)."),
            ("cutover_held_now", .gauge, "held_now", "Requests and connections held now, all profiles."),
            ("cutover_held_total", .counter, "held_total", "Requests and connections ever held by a pause, a read-only hold or an unavailable profile."),
            ("cutover_hold_timeouts_total", .counter, "hold_timeouts", "Held requests answered 503 because hold_timeout or max_held was reached."),
            ("cutover_switches_total", .counter, "switches", "Switches that changed the live endpoint."),
            ("cutover_tunnels_total", .counter, "tunnels", "TCP tunnels and upgraded connections opened."),
            ("cutover_snapshot_generation", .gauge, "snapshot_generation", "Generation of the routing snapshot in use."),
        ]
        for (name, kind, key, help) in totals {
            m.family(name, kind, help: help)
            m.sample(name, [], stats[key] ?? 0)
        }
        m.family("cutover_worker_connections", .gauge, help: "Client connections each worker serves now (new ones go to the worker with the fewest).")
        for worker in workers {
            m.sample("cutover_worker_connections", [("worker", String(worker.index))], worker.clientConnectionCount)
        }
        m.family("cutover_proxy_answers_total", .counter, help: "Requests answered by the proxy itself, by reason (the total is cutover_proxy_answered_total).")
        for (reason, counter) in zip(ProxyAnswerReason.allCases, self.stats.proxyAnswersByReason) {
            m.sample("cutover_proxy_answers_total", [("reason", reason.rawValue)], counter.value.load(ordering: .relaxed))
        }
        m.family("cutover_proxy_protocol_errors_total", .counter, help: "Connections to a proxy_protocol listener closed for a missing, malformed or late PROXY header.")
        m.sample("cutover_proxy_protocol_errors_total", [], self.stats.proxyProtocolErrors.load(ordering: .relaxed))
        m.family("cutover_drains_in_progress", .gauge, help: "Endpoints draining now.")
        m.sample("cutover_drains_in_progress", [], draining)
        writeTLSMetrics(&m)
        // Logs are written off the worker queues through bounded buffers: what did not fit is counted here.
        m.family("cutover_log_lines_dropped_total", .counter, help: "Log lines dropped because their writer could not keep up (log: access or proxy).")
        m.sample("cutover_log_lines_dropped_total", [("log", "proxy")], LogWriter.standardError.droppedLines)
        m.sample("cutover_log_lines_dropped_total", [("log", "access")], accessLog?.droppedLines ?? 0)

        writeProfileMetrics(&m, profiles)
        writeEndpointMetrics(&m, endpoints)
        writeProbeMetrics(&m, probes)
        writeGuardMetrics(&m, guardWindows)
        writeFleetMetrics(&m)
        return m.text
    }

    /// The open (or last) guard window of each profile that had one: figures as the last judgement saw them.
    private func writeGuardMetrics(_ m: inout PrometheusText, _ windows: [GuardStatus]) {
        let families: [(String, String, (GuardStatus) -> Double)] = [
            ("cutover_guard_open", "1 while a guard window judges the profile's new endpoint.", { $0.state == "watching" ? 1 : 0 }),
            ("cutover_guard_time_left_seconds", "Seconds until the open guard window ends clean.", { Double($0.timeLeftMs) / 1000 }),
            ("cutover_guard_requests_judged", "Answers of the judged endpoint since the guarded switch.", { Double($0.requestsJudged) }),
            ("cutover_guard_5xx_ratio", "Share of 5xx among the judged answers.", { $0.ratio5xx }),
            ("cutover_guard_connect_failures", "Failed connects to the judged endpoint since the guarded switch.", { Double($0.connectFailures) }),
            ("cutover_guard_p99_upper_seconds", "Upper bound of the histogram bucket holding the judged endpoint's p99 (absent beyond the last bound).",
             { $0.p99UpperMs.map { Double($0) / 1000 } ?? .nan }),
            ("cutover_guard_breached", "1 when the last guard window ended with a breach (and a revert).", { $0.outcome == "breach" ? 1 : 0 }),
        ]
        for (name, help, value) in families {
            m.family(name, .gauge, help: help)
            for window in windows {
                let figure = value(window)
                if !figure.isNaN { m.sample(name, [("profile", window.profile), ("endpoint", window.live)], figure) }
            }
        }
    }

    private func writeProfileMetrics(_ m: inout PrometheusText, _ profiles: [ProfileView]) {
        let families: [(String, String, (ProfileView) -> Int)] = [
            ("cutover_held_requests", "Requests and connections held now, by profile.", { $0.held }),
            ("cutover_profile_live_endpoints", "Endpoints taking new work, by profile.", { $0.live.count }),
            ("cutover_profile_paused", "1 while the profile is paused (new work is held).", { $0.paused ? 1 : 0 }),
            ("cutover_profile_maintenance", "1 while the maintenance gate is closed.", { $0.maintenance ? 1 : 0 }),
            ("cutover_profile_readonly", "1 while the read-only gate keeps unsafe requests from the endpoints (on or hold).", { $0.readOnly.isClosed ? 1 : 0 }),
            ("cutover_profile_readonly_hold", "1 while the read-only gate holds unsafe requests rather than refusing them.", { $0.readOnly == .hold ? 1 : 0 }),
        ]
        for (name, help, value) in families {
            m.family(name, .gauge, help: help)
            for profile in profiles { m.sample(name, [("profile", profile.name)], value(profile)) }
        }
    }

    private func writeEndpointMetrics(_ m: inout PrometheusText, _ endpoints: [EndpointView]) {
        func labels(_ view: EndpointView) -> [(String, String)] { [("profile", view.profile), ("endpoint", view.name)] }

        m.family("cutover_requests_total", .counter, help: "Exchanges finished per endpoint, by response status class (none: ended without a response).")
        for view in endpoints {
            for (label, count) in view.counters.responsesByClass { m.sample("cutover_requests_total", labels(view) + [("class", label)], count) }
        }
        m.family("cutover_request_duration_seconds", .histogram, help: "Time from request head to the end of the relayed response, per endpoint.")
        for view in endpoints { m.histogram("cutover_request_duration_seconds", labels(view), view.counters.latency.reading()) }

        let gauges: [(String, String, (EndpointView) -> Int)] = [
            ("cutover_endpoint_in_flight", "Requests and tunnels being served by the endpoint now.", { $0.inFlight }),
            ("cutover_endpoint_connections", "Upstream connections open to the endpoint (in use or pooled).", { $0.connections }),
            ("cutover_endpoint_up", "1 when the endpoint's health is up, 0 when down or not yet known.", { $0.health == .up ? 1 : 0 }),
            ("cutover_endpoint_live", "1 when the endpoint takes new work in the current snapshot.", { $0.live ? 1 : 0 }),
            ("cutover_endpoint_priority", "Routing priority (lower wins).", { $0.priority }),
            ("cutover_endpoint_weight", "Routing weight among equals.", { $0.weight }),
        ]
        for (name, help, value) in gauges {
            m.family(name, .gauge, help: help)
            for view in endpoints { m.sample(name, labels(view), value(view)) }
        }
        m.family("cutover_endpoint_health", .gauge, help: "1 for the endpoint's current health state (unknown, up, down), 0 for the others.")
        for view in endpoints {
            for health in Health.allCases { m.sample("cutover_endpoint_health", labels(view) + [("health", health.rawValue)], view.health == health ? 1 : 0) }
        }
        m.family("cutover_endpoint_admin_state", .gauge, help: "1 for the endpoint's admin state (online, offline, draining), 0 for the others.")
        for view in endpoints {
            for state in AdminState.allCases { m.sample("cutover_endpoint_admin_state", labels(view) + [("state", state.rawValue)], view.state == state ? 1 : 0) }
        }
        let counters: [(String, String, (EndpointCounters) -> Int)] = [
            ("cutover_upstream_connect_errors_total", "Failed connects to the endpoint (refused, reset, timed out).", { $0.connectErrors.load(ordering: .relaxed) }),
            ("cutover_drain_force_closed_total", "Tunnels and upgraded connections force-closed at a drain deadline.", { $0.forceClosed.load(ordering: .relaxed) }),
            ("cutover_upstream_bytes_received_total", "Bytes received from the endpoint.", { $0.bytesIn.load(ordering: .relaxed) }),
            ("cutover_upstream_bytes_sent_total", "Request body bytes sent to the endpoint.", { $0.bytesOut.load(ordering: .relaxed) }),
        ]
        for (name, help, value) in counters {
            m.family(name, .counter, help: help)
            for view in endpoints { m.sample(name, labels(view), value(view.counters)) }
        }
    }

    /// Hook for active health probes (`ProxyRuntime+Probes.swift`): once the prober keeps per-endpoint
    /// results, write them here, e.g. `cutover_probe_success_total` / `cutover_probe_failure_total`
    /// (counters) and `cutover_probe_duration_seconds` (a `LatencyHistogram` per endpoint, written with
    /// `m.histogram`), each labelled `profile` and `endpoint`. Health itself is already exported as
    /// `cutover_endpoint_up` and `cutover_endpoint_health`.
    private func writeProbeMetrics(_ m: inout PrometheusText, _ records: [String: ProbeRecord]) {
        let sorted = records.sorted { $0.key < $1.key }
        func labels(_ key: String) -> [(String, String)] {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            return [("profile", parts[0]), ("endpoint", parts.count > 1 ? parts[1] : "")]
        }
        m.family("cutover_probes_total", .counter, help: "Active health probe runs, by result.")
        for (key, record) in sorted {
            m.sample("cutover_probes_total", labels(key) + [("result", "success")], record.successes)
            m.sample("cutover_probes_total", labels(key) + [("result", "failure")], record.failures)
        }
        m.family("cutover_probe_duration_seconds", .gauge, help: "How long the last probe run took.")
        for (key, record) in sorted {
            m.sample("cutover_probe_duration_seconds", labels(key), record.lastDuration.seconds)
        }
    }

    // MARK: - Status page

    /// Everything the status page shows, read in one visit to the control queue.
    func statusPage() -> StatusPage {
        let (profiles, endpoints, stats) = controlQueue.sync { (profileViews(), endpointViews(), statsValues()) }
        return StatusPage(
            profiles: profiles, endpoints: endpoints, events: events.last(StatusPage.eventCount).reversed(), stats: stats,
            shuttingDown: shuttingDown.load(ordering: .relaxed), generatedAt: Date())
    }
}
